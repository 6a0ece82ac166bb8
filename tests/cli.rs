//! The CLI contract: command names, output lines, JSON keys, exit codes.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn vs(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vaultstore"))
        .args(args)
        .env_remove("VAULTSTORE_STORE")
        .output()
        .unwrap()
}

fn vs_stdin(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vaultstore"))
        .args(args)
        .env_remove("VAULTSTORE_STORE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The process may exit (with an error) before reading its input.
    let _ = child.stdin.take().unwrap().write_all(input);
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn put_get_has_stat_segments_verify() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let st = s(&store);
    let out = vs(&[
        "init",
        "--store",
        st,
        "--segment-size",
        "64KiB",
        "--compression-level",
        "5",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let file = dir.path().join("m.eml");
    let content = common::message(1, 5000);
    std::fs::write(&file, &content).unwrap();
    let out = vs(&["put", "--store", st, s(&file)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let line = text(&out.stdout);
    let id = vaultstore::SavesetId::of(&content).to_string();
    assert_eq!(line, format!("{id} new\n"));

    let out = vs_stdin(&["put", "--store", st], &content);
    assert_eq!(text(&out.stdout), format!("{id} duplicate\n"));

    let out = vs(&["get", "--store", st, &id]);
    assert!(out.status.success());
    assert_eq!(out.stdout, content);
    let back = dir.path().join("back.eml");
    assert!(
        vs(&["get", "--store", st, &id, "-o", s(&back)])
            .status
            .success()
    );
    assert_eq!(std::fs::read(&back).unwrap(), content);

    assert_eq!(vs(&["has", "--store", st, &id]).status.code(), Some(0));
    let absent = vaultstore::SavesetId::of(b"nope").to_string();
    assert_eq!(vs(&["has", "--store", st, &absent]).status.code(), Some(1));

    // --store from the environment.
    let out = Command::new(env!("CARGO_BIN_EXE_vaultstore"))
        .args(["stat", "--json"])
        .env("VAULTSTORE_STORE", st)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["savesets"], 1);
    assert_eq!(v["logical_bytes"], content.len() as u64);
    assert!(v["stored_bytes"].as_u64().unwrap() > 64);
    assert_eq!(v["segments"], 1);

    assert!(vs(&["seal", "--store", st]).status.success());
    let out = vs(&["segments", "--store", st, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let seg = &v[0];
    for key in ["id", "partition", "state", "bytes", "savesets", "path"] {
        assert!(seg.get(key).is_some(), "missing key {key}");
    }
    assert_eq!(seg["state"], "sealed");
    assert_eq!(seg["savesets"], 1);

    let out = vs(&["verify", "--store", st]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("clean"));
}

#[test]
fn verify_exits_non_zero_naming_segment_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let st = s(&store);
    assert!(vs(&["init", "--store", st]).status.success());
    for n in 0..3 {
        let out = vs_stdin(&["put", "--store", st], &common::message(n, 3000));
        assert!(out.status.success());
    }
    assert!(vs(&["seal", "--store", st]).status.success());
    let seg = store.join("p0/segment-0000000001.sealed");
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[64 + 64 + 10] ^= 0xFF; // inside the first record's payload
    std::fs::write(&seg, bytes).unwrap();
    let out = vs(&["verify", "--store", st]);
    assert_eq!(out.status.code(), Some(1));
    let t = text(&out.stdout);
    assert!(t.contains("segment 1 offset 64: crc mismatch"), "{t}");
}

#[test]
fn bad_input_gives_one_clear_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let st = s(&store);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["stat", "--store", st],
            "does not exist: create it with",
        ),
        (
            vec!["init", "--store", st, "--segment-size", "12"],
            "segment size 12 B",
        ),
        (
            vec!["init", "--store", st, "--compression-level", "99"],
            "compression level 99",
        ),
    ];
    for (args, needle) in &cases {
        let out = vs(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    }
    assert!(vs(&["init", "--store", st]).status.success());
    let unknown = vaultstore::SavesetId::of(b"x").to_string();
    let missing = dir.path().join("missing.eml");
    let not_hex = "g".repeat(64);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["init", "--store", st], "refusing to overwrite"),
        (
            vec!["get", "--store", st, "xyz"],
            "expected 64 hexadecimal digits",
        ),
        (
            vec!["has", "--store", st, &not_hex],
            "expected 64 hexadecimal digits",
        ),
        (vec!["get", "--store", st, &unknown], "not found"),
        (vec!["put", "--store", st, s(&missing)], "missing.eml"),
    ];
    for (args, needle) in &cases {
        let out = vs(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    }
    // Absurd values are refused by the parser, not wrapped around.
    let out = vs(&[
        "init",
        "--store",
        s(&dir.path().join("x")),
        "--segment-size",
        "-5",
    ]);
    assert_ne!(out.status.code(), Some(0));
}

#[test]
fn a_second_writer_is_told_who_holds_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let holder = vaultstore::Store::init(&store, &vaultstore::InitOptions::default()).unwrap();
    let out = vs_stdin(&["put", "--store", s(&store)], b"x");
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    let expected = format!(
        "store {} is locked by pid {}",
        store.display(),
        std::process::id()
    );
    assert!(err.contains(&expected), "{err}");
    // Readers are not blocked by the writer.
    let id = holder.put(b"held").unwrap().id.to_string();
    assert_eq!(vs(&["get", "--store", s(&store), &id]).stdout, b"held");
}

#[test]
fn an_empty_file_is_a_valid_saveset() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let st = s(&store);
    assert!(vs(&["init", "--store", st]).status.success());
    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    let out = vs(&["put", "--store", st, s(&empty)]);
    assert!(out.status.success());
    let id = text(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert_eq!(id, vaultstore::SavesetId::of(b"").to_string());
    let out = vs(&["get", "--store", st, &id]);
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
}

#[test]
fn catalog_commands() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let st = s(&store);
    assert!(vs(&["init", "--store", st]).status.success());
    let mail = common::message(7, 4000);
    let out = vs_stdin(
        &[
            "archive", "--store", st, "--owner", "alice", "--item", "<7@x>",
        ],
        &mail,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = vaultstore::SavesetId::of(&mail).to_string();
    assert_eq!(text(&out.stdout), format!("{id} new\n"));
    let out = vs_stdin(
        &[
            "archive", "--store", st, "--owner", "bob", "--item", "<7@x>",
        ],
        &mail,
    );
    assert_eq!(text(&out.stdout), format!("{id} duplicate\n"));
    // The handshake: link by hash, and a clear error for unknown content.
    let out = vs(&[
        "link", "--store", st, "--owner", "journal", "--item", "j1", &id,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let unknown = vaultstore::SavesetId::of(b"never sent").to_string();
    let out = vs(&[
        "link", "--store", st, "--owner", "journal", "--item", "j2", &unknown,
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("send its content"),
        "{}",
        text(&out.stderr)
    );
    // Different content for the same item is refused without --replace.
    let other = common::message(8, 100);
    let out = vs_stdin(
        &[
            "archive", "--store", st, "--owner", "alice", "--item", "<7@x>",
        ],
        &other,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("already references"));

    let out = vs(&["refs", "--store", st, &id, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let owners: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["owner"].as_str().unwrap())
        .collect();
    assert_eq!(owners, ["alice", "bob", "journal"]);
    let out = vs(&["items", "--store", st, "--owner", "alice", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["item"], "<7@x>");
    assert_eq!(v[0]["id"], id.as_str());

    assert!(
        vs(&["delete", "--store", st, "--owner", "alice"])
            .status
            .success()
    );
    assert!(
        vs(&["delete", "--store", st, "--owner", "bob", "--item", "<7@x>"])
            .status
            .success()
    );
    let out = vs(&["trash", "list", "--store", st, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert!(
        vs(&["trash", "restore", "--store", st, "--owner", "bob"])
            .status
            .success()
    );
    assert!(
        vs(&["hold", "set", "--store", st, "--owner", "alice"])
            .status
            .success()
    );
    let out = vs(&["trash", "purge", "--store", st, "--owner", "alice"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("owner \"alice\" is on legal hold"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        vs(&["hold", "clear", "--store", st, "--owner", "alice"])
            .status
            .success()
    );
    let out = vs(&[
        "trash",
        "purge",
        "--store",
        st,
        "--older-than",
        "30d",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["purged_references"], 0, "nothing is 30 days old");
    let out = vs(&[
        "trash",
        "purge",
        "--store",
        st,
        "--older-than",
        "0s",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["purged_references"], 1);
    assert_eq!(v["dead_savesets"], 0, "bob and journal still hold it");

    let out = vs(&["stat", "--store", st, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in ["references", "owners", "dead_savesets", "dead_bytes"] {
        assert!(v.get(key).is_some(), "stat lacks {key}");
    }
    assert_eq!(v["references"], 2);
    assert_eq!(v["owners"], 2);
    let out = vs(&["trash", "purge", "--store", st, "--older-than", "3 days"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn backup_and_lifecycle_commands() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let dest = dir.path().join("dest");
    let st = s(&store);
    assert!(
        vs(&["init", "--store", st, "--seal-age", "1d"])
            .status
            .success()
    );
    let mut ids = Vec::new();
    for n in 0..4 {
        let out = vs_stdin(
            &[
                "archive",
                "--store",
                st,
                "--owner",
                "alice",
                "--item",
                &format!("i{n}"),
            ],
            &common::message(n, 3000),
        );
        ids.push(
            text(&out.stdout)
                .split_whitespace()
                .next()
                .unwrap()
                .to_string(),
        );
    }
    let pending = |st: &str| -> serde_json::Value {
        serde_json::from_slice(&vs(&["pending", "--store", st, "--json"]).stdout).unwrap()
    };
    let p = pending(st);
    assert_eq!(
        (
            p["awaiting_index"].as_u64(),
            p["awaiting_backup"].as_u64(),
            p["ready_for_post_processing"].as_u64()
        ),
        (Some(4), Some(4), Some(0))
    );

    // mark-indexed: ids as arguments, and one a line on stdin.
    assert!(
        vs(&["mark-indexed", "--store", st, &ids[0]])
            .status
            .success()
    );
    let out = vs_stdin(
        &["mark-indexed", "--store", st],
        format!("{}\n{}\n", ids[1], ids[2]).as_bytes(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(pending(st)["awaiting_index"], 1);

    // backup list / mark with the checksum a tool computed itself.
    assert!(vs(&["seal", "--store", st]).status.success());
    let list: serde_json::Value =
        serde_json::from_slice(&vs(&["backup", "list", "--store", st, "--json"]).stdout).unwrap();
    let entry = &list[0];
    for key in ["segment", "path", "bytes", "checksum"] {
        assert!(entry.get(key).is_some(), "backup list lacks {key}");
    }
    let copied = std::fs::read(entry["path"].as_str().unwrap()).unwrap();
    let checksum = blake3::hash(&copied).to_hex().to_string();
    assert_eq!(entry["checksum"], checksum.as_str());
    let segment = entry["segment"].to_string();
    let out = vs(&[
        "backup",
        "mark",
        "--store",
        st,
        &segment,
        "--checksum",
        &"0".repeat(64),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("checksum mismatch"));
    assert!(
        vs(&[
            "backup",
            "mark",
            "--store",
            st,
            &segment,
            "--checksum",
            &checksum
        ])
        .status
        .success()
    );
    assert_eq!(pending(st)["awaiting_backup"], 0);
    assert_eq!(pending(st)["ready_for_post_processing"], 4);

    // The feed, through the environment variable too, and its acknowledgement.
    let out = Command::new(env!("CARGO_BIN_EXE_vaultstore"))
        .args(["feed", "--limit", "3", "--json"])
        .env("VAULTSTORE_STORE", st)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let page: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(page["entries"].as_array().unwrap().len(), 3);
    assert_eq!(page["entries"][0]["references"][0]["owner"], "alice");
    let cursor = page["cursor"].as_str().unwrap().to_string();
    assert!(
        vs(&["feed", "ack", "--store", st, &cursor])
            .status
            .success()
    );
    assert_eq!(pending(st)["ready_for_post_processing"], 1);
    let page: serde_json::Value =
        serde_json::from_slice(&vs(&["feed", "--store", st, "--json"]).stdout).unwrap();
    assert_eq!(page["entries"].as_array().unwrap().len(), 1);
    let out = vs(&["feed", "ack", "--store", st, "not-a-cursor"]);
    assert_eq!(out.status.code(), Some(2));

    // Settings: the switch is refused while an item is ready and unacknowledged.
    let out = vs(&[
        "settings",
        "--store",
        st,
        "--remove-safety-copies",
        "immediately",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("not yet post-processed"));
    let out = vs(&[
        "settings",
        "--store",
        st,
        "--remove-safety-copies",
        "sometimes",
    ]);
    assert_eq!(out.status.code(), Some(2));

    // backup run copies, then copies nothing new.
    let out = vs(&[
        "archive",
        "--store",
        st,
        "--owner",
        "bob",
        "--item",
        "b",
        s(&dir.path().join("none")),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let _ = vs_stdin(
        &["archive", "--store", st, "--owner", "bob", "--item", "b"],
        b"late mail",
    );
    let r: serde_json::Value = serde_json::from_slice(
        &vs(&["backup", "run", "--store", st, "--to", s(&dest), "--json"]).stdout,
    )
    .unwrap();
    assert_eq!(r["copied_segments"].as_array().unwrap().len(), 1, "{r}");
    let r: serde_json::Value = serde_json::from_slice(
        &vs(&["backup", "run", "--store", st, "--to", s(&dest), "--json"]).stdout,
    )
    .unwrap();
    assert_eq!(r["copied_segments"].as_array().unwrap().len(), 0, "{r}");
    assert_eq!(vs(&["verify", "--store", s(&dest)]).status.code(), Some(0));
}

#[test]
fn verify_does_not_fail_on_an_active_segment_tail_in_flight_or_torn() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let st = s(&store);
    assert!(vs(&["init", "--store", st]).status.success());
    let out = vs_stdin(&["put", "--store", st], &common::message(1, 2000));
    let id = text(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    // Half a record at the end of the active segment, as a crash (or a
    // writer in mid-append) leaves it.
    let seg = store.join("p0/segment-0000000001.active");
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&[0x55; 40]).unwrap();
    drop(f);
    let out = vs(&["verify", "--store", st]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert_eq!(
        vs(&["get", "--store", st, &id]).stdout,
        common::message(1, 2000)
    );
    // A writable open cuts the tail off and keeps it in quarantine.
    assert!(vs_stdin(&["put", "--store", st], b"next").status.success());
    assert_eq!(
        std::fs::read_dir(store.join("quarantine")).unwrap().count(),
        1
    );
}

#[test]
fn defrag_redistribute_and_backup_removed() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let st = s(&store);
    assert!(
        vs(&["init", "--store", st, "--segment-size", "64KiB"])
            .status
            .success()
    );
    for n in 0..40u64 {
        let file = dir.path().join(format!("{n}.eml"));
        let mut m = common::message(n, 3000);
        let mut rng = common::Rng(n);
        m.extend((0..3000).map(|_| b'a' + rng.below(26) as u8));
        std::fs::write(&file, m).unwrap();
        let owner = if n % 2 == 0 { "keep" } else { "gone" };
        let item = n.to_string();
        let out = vs(&[
            "archive",
            "--store",
            st,
            "--owner",
            owner,
            "--item",
            &item,
            s(&file),
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    assert!(
        vs(&["delete", "--store", st, "--owner", "gone"])
            .status
            .success()
    );
    // A dry run counts what the purge will do and changes nothing.
    let json_of = |args: &[&str]| -> serde_json::Value {
        let out = vs(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let purge = [
        "trash",
        "purge",
        "--store",
        st,
        "--older-than",
        "0s",
        "--json",
    ];
    let planned = json_of(&[&purge[..], &["--dry-run"]].concat());
    assert_eq!(planned["dry_run"], true);
    assert_eq!(planned["purged_references"], 20, "{planned}");
    let trash = json_of(&["trash", "list", "--store", st, "--json"]);
    assert_eq!(trash.as_array().unwrap().len(), 20, "the dry run purged");
    let done = json_of(&purge);
    for key in ["purged_references", "dead_savesets", "kept_on_hold"] {
        assert_eq!(planned[key], done[key], "{key}: {planned} vs {done}");
    }
    assert!(vs(&["seal", "--store", st]).status.success());

    let out = vs(&["segments", "--store", st, "--json"]);
    let segs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let first = &segs[0];
    assert!(first["dead_bytes"].as_u64().unwrap() > 0, "{first}");
    assert_eq!(first["archive_bit"], true);

    // A threshold outside 0..=1 is refused with exit 2.
    let out = vs(&["defrag", "--store", st, "--threshold", "1.5"]);
    assert_eq!(out.status.code(), Some(2));
    let before = json_of(&["stat", "--store", st, "--json"]);
    let planned = json_of(&[
        "defrag",
        "--store",
        st,
        "--threshold",
        "0.3",
        "-n",
        "--json",
    ]);
    assert_eq!(
        json_of(&["stat", "--store", st, "--json"]),
        before,
        "the dry run changed the store"
    );
    let out = vs(&["defrag", "--store", st, "--threshold", "0.3", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in ["segments_read", "savesets_moved", "savesets_dropped"] {
        assert_eq!(planned[key], r[key], "{key}: {planned} vs {r}");
    }
    let planned_reclaim = planned["bytes_reclaimed"].as_f64().unwrap();
    let reclaimed = r["bytes_reclaimed"].as_f64().unwrap();
    assert!(
        (planned_reclaim - reclaimed).abs() <= 0.05 * reclaimed,
        "{planned} vs {r}"
    );
    // Nothing left to rewrite: the text says why, segment by segment.
    let out = vs(&["defrag", "--store", st, "--threshold", "0.3"]);
    let t = text(&out.stdout);
    assert!(
        t.contains("nothing to rewrite: no sealed segment is at least 30% dead"),
        "{t}"
    );
    assert!(t.contains("% dead ("), "{t}");
    for key in [
        "segments_read",
        "segments_written",
        "bytes_read",
        "bytes_written",
        "bytes_reclaimed",
        "write_amplification",
    ] {
        assert!(r.get(key).is_some(), "{key} missing from {r}");
    }
    let read = r["segments_read"].as_array().unwrap().len();
    assert!(read > 0, "{r}");
    assert!(r["bytes_reclaimed"].as_u64().unwrap() > 0);

    let out = vs(&["backup", "removed", "--store", st, "--json"]);
    let removed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(removed.as_array().unwrap().len(), read);
    assert!(removed[0].get("replaced_by").is_some());

    // Drain partition 0 into a new one: it ends retired.
    let second = dir.path().join("second");
    assert!(
        vs(&["partition", "add", "--store", st, s(&second)])
            .status
            .success()
    );
    let out = vs(&["redistribute", "--store", st]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "--drain or --balance is required"
    );
    let segments_in_p0: Vec<u64> = json_of(&["segments", "--store", st, "--json"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["partition"] == 0)
        .map(|g| g["id"].as_u64().unwrap())
        .collect();
    let planned = json_of(&[
        "redistribute",
        "--store",
        st,
        "--drain",
        "0",
        "--dry-run",
        "--json",
    ]);
    let mut planned_ids: Vec<u64> = planned["segments_read"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    planned_ids.sort();
    assert_eq!(planned_ids, segments_in_p0, "{planned}");
    let parts = json_of(&["partition", "list", "--store", st, "--json"]);
    assert_eq!(
        parts[0]["state"], "open",
        "the dry run closed the partition"
    );
    let out = vs(&["redistribute", "--store", st, "--drain", "0", "--dry-run"]);
    assert!(text(&out.stdout).contains("dry run: nothing changed"));
    let out = vs(&["redistribute", "--store", st, "--drain", "0"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("partition 0 is empty and retired"));
    let out = vs(&["partition", "list", "--store", st, "--json"]);
    let parts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(parts[0]["state"], "retired");
    let out = vs(&["redistribute", "--store", st, "--balance", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = vs(&["jobs", "history", "--store", st]);
    let history = text(&out.stdout);
    assert!(history.contains("DB defragmentation"), "{history}");
    assert!(
        history.contains("Redistributing messages in DB"),
        "{history}"
    );
    let out = vs(&["verify", "--store", st]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    let out = vs(&["items", "--store", st, "--owner", "keep", "--json"]);
    let items: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(items.as_array().unwrap().len(), 20);
}

#[test]
fn a_hold_on_an_unknown_owner_or_item_is_refused_unless_placed_for_a_custodian() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let st = s(&store);
    assert!(vs(&["init", "--store", st]).status.success());
    let out = vs_stdin(
        &["archive", "--store", st, "--owner", "alice", "--item", "1"],
        b"Subject: x\r\n\r\ny\r\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    // A mistyped owner: refused, nothing created.
    let out = vs(&["hold", "set", "--store", st, "--owner", "carol"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("owner \"carol\" not found: no hold placed"),
        "{}",
        text(&out.stderr)
    );
    let out = vs(&[
        "hold", "set", "--store", st, "--owner", "alice", "--item", "2",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("item \"2\" of owner \"alice\" not found"));
    let out = vs(&["hold", "clear", "--store", st, "--owner", "carol"]);
    assert_eq!(out.status.code(), Some(2));
    let out = vs(&["owners", "--store", st, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    // Placed on purpose for a custodian: listed as such.
    let out = vs(&[
        "hold",
        "set",
        "--store",
        st,
        "--owner",
        "carol",
        "--custodian",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = vs(&["owners", "--store", st]);
    assert!(
        text(&out.stdout).contains("carol\t0 items\t0 in trash\ton hold (custodian"),
        "{}",
        text(&out.stdout)
    );
    // Mail archived for the custodian later is held.
    let out = vs_stdin(
        &["archive", "--store", st, "--owner", "carol", "--item", "1"],
        b"Subject: z\r\n\r\ny\r\n",
    );
    assert!(out.status.success());
    assert!(
        vs(&["delete", "--store", st, "--owner", "carol"])
            .status
            .success()
    );
    let out = vs(&["trash", "purge", "--store", st, "--owner", "carol"]);
    assert!(
        text(&out.stderr).contains("on legal hold"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_store_is_private_to_its_owner_and_looser_modes_are_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    // An existing empty directory with the usual 0755 becomes private too.
    let store = dir.path().join("store");
    std::fs::create_dir(&store).unwrap();
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o755)).unwrap();
    let st = s(&store);
    assert!(vs(&["init", "--store", st]).status.success());
    let out = vs_stdin(&["put", "--store", st], b"Subject: private\r\n\r\nx\r\n");
    assert!(out.status.success());
    assert!(vs(&["seal", "--store", st]).status.success());
    assert!(vs(&["token", "--store", st]).status.success());
    let extra = dir.path().join("second");
    assert!(
        vs(&["partition", "add", "--store", st, s(&extra)])
            .status
            .success()
    );
    assert_eq!(mode(&store), 0o700);
    assert_eq!(mode(&extra), 0o700);
    let mut files = 0;
    for d in [store.clone(), store.join("p0")] {
        for f in std::fs::read_dir(&d).unwrap() {
            let p = f.unwrap().path();
            if p.is_dir() {
                assert_eq!(mode(&p), 0o700, "{}", p.display());
            } else {
                assert_eq!(mode(&p), 0o600, "{}", p.display());
                files += 1;
            }
        }
    }
    assert!(
        files >= 5,
        "manifest, lock, history, tokens, segments: {files}"
    );
    // Opened with a looser mode: a warning naming the directory.
    std::fs::set_permissions(&extra, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = vs(&["stat", "--store", st]);
    assert!(out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("second is open to other local users (mode 755)"),
        "{err}"
    );
}

#[test]
fn errors_say_what_to_do_and_ranges_are_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere");
    let out = vs(&["stat", "--store", s(&missing)]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("does not exist") && err.contains("vaultstore init --store"),
        "{err}"
    );
    assert!(err.contains("VAULTSTORE_STORE"), "{err}");
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let err = text(&vs(&["put", "--store", s(&file)]).stderr);
    assert!(err.contains("is a file, not a store"), "{err}");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let err = text(&vs(&["stat", "--store", s(&empty)]).stderr);
    assert!(
        err.contains("not a vaultstore store") && err.contains("vaultstore init"),
        "{err}"
    );
    let store = dir.path().join("store");
    let out = vs(&["init", "--store", s(&store), "--compression-level", "99"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("out of range: it must be from") && err.contains("(smallest)"),
        "{err}"
    );
    let err = text(&vs(&["init", "--store", s(&store), "--segment-size", "1KiB"]).stderr);
    assert!(
        err.contains("segment size 1 KiB is out of range: it must be from"),
        "{err}"
    );
    assert!(vs(&["init", "--store", s(&store)]).status.success());
    let err = text(&vs(&["defrag", "--store", s(&store), "--threshold", "1.5"]).stderr);
    assert!(
        err.contains("out of range: it is a dead share from 0"),
        "{err}"
    );
}

#[test]
fn a_listing_piped_to_a_reader_that_goes_away_exits_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    {
        let st = vaultstore::Store::init(&store, &vaultstore::InitOptions::default()).unwrap();
        let items: Vec<(String, String, Vec<u8>)> = (0..4000)
            .map(|n| {
                (
                    "alice".into(),
                    format!("item-{n:06}"),
                    common::message(n, 200),
                )
            })
            .collect();
        let refs: Vec<(&str, &str, &[u8])> = items
            .iter()
            .map(|(o, i, c)| (o.as_str(), i.as_str(), c.as_slice()))
            .collect();
        st.archive_many(&refs).unwrap();
    }
    // Like `vaultstore items ... | head -1`: read a little, then close the pipe.
    let mut child = Command::new(env!("CARGO_BIN_EXE_vaultstore"))
        .args(["items", "--store", s(&store), "--owner", "alice"])
        .env_remove("VAULTSTORE_STORE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
}

/// Run the binary under a pseudo-terminal (util-linux `script`), so that
/// stderr is a terminal; None when `script` is not installed.
fn on_a_terminal(args: &[&str]) -> Option<String> {
    let line = std::iter::once(env!("CARGO_BIN_EXE_vaultstore"))
        .chain(args.iter().copied())
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let out = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env_remove("VAULTSTORE_STORE")
        .output()
        .ok()?;
    Some(text(&out.stdout))
}

#[test]
fn long_commands_show_progress_on_a_terminal_unless_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let st = s(&store);
    assert!(vs(&["init", "--store", st]).status.success());
    for n in 0..20u64 {
        let out = vs_stdin(
            &[
                "archive",
                "--store",
                st,
                "--owner",
                "o",
                "--item",
                &n.to_string(),
            ],
            &common::message(n, 20_000),
        );
        assert!(out.status.success());
    }
    assert!(vs(&["seal", "--store", st]).status.success());
    let export = dir.path().join("out");
    let cases: [(&[&str], &str); 2] = [
        (&["verify", "--store", st], "verify"),
        (
            &["export", "--store", st, "--owner", "o", "--to", s(&export)],
            "export",
        ),
    ];
    for (args, label) in cases {
        let Some(shown) = on_a_terminal(args) else {
            eprintln!("SKIP: no `script` to make a terminal");
            return;
        };
        assert!(
            shown.contains(&format!("{label} ")) && shown.contains("eta"),
            "{shown:?}"
        );
        let quiet = on_a_terminal(&[&["-q"], args].concat()).unwrap();
        assert!(!quiet.contains("eta"), "{quiet:?}");
        // Piped, as in every other test: no bar either.
        assert!(!text(&vs(args).stderr).contains("eta"));
    }
}

#[test]
fn help_is_grouped_and_completions_and_man_pages_are_generated() {
    let out = vs(&["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for heading in [
        "Store:",
        "Catalog:",
        "Backup:",
        "Compaction:",
        "Processes:",
        "Service:",
    ] {
        assert!(help.contains(heading), "{heading} missing: {help}");
    }
    assert!(help.contains("e.g. vaultstore defrag --store /srv/vault --threshold 0.5 --dry-run"));
    assert!(help.contains("Exit codes: 0 done; 1 done in part"));
    for (shell, marker) in [
        ("bash", "_vaultstore()"),
        ("zsh", "#compdef vaultstore"),
        ("fish", "complete -c vaultstore"),
    ] {
        let out = vs(&["completions", shell]);
        assert!(out.status.success());
        assert!(text(&out.stdout).contains(marker), "{shell}");
    }
    let out = vs(&["man"]);
    assert!(text(&out.stdout).contains(".TH vaultstore 1"));
    let dir = tempfile::tempdir().unwrap();
    let pages = dir.path().join("man1");
    assert!(vs(&["man", "--out", s(&pages)]).status.success());
    for page in [
        "vaultstore.1",
        "vaultstore-init.1",
        "vaultstore-trash-purge.1",
    ] {
        assert!(pages.join(page).is_file(), "{page}");
    }
}
