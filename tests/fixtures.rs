//! Golden fixtures: small stores written by this version and checked in
//! under `tests/fixtures/`, each with `expected.json`, what this code read
//! from it when it was written. The test opens a copy of each and compares
//! what it reads now, field by field: a change that alters the format fails
//! here even when encoder and decoder change together.
//!
//! `cargo test --release --test fixtures -- --ignored write_the_fixtures`
//! writes them again; do that only with a format change that keeps reading the old
//! fixtures (then add new ones beside them) or that refuses them with a clear
//! error (then the test says which error).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use vaultstore::compaction::Redistribution;
use vaultstore::{InitOptions, SavesetId, Store};

const FIXTURES: &[&str] = &["plain", "split", "compacted", "damaged"];

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn small() -> InitOptions {
    InitOptions {
        segment_bytes: 8 << 10,
        // Never aged: opening a fixture years from now must not seal it.
        seal_age_ms: 1000 * 365 * 86_400_000,
        ..InitOptions::default()
    }
}

fn base64_lines(data: &[u8]) -> String {
    let mut out = Vec::new();
    vaultstore::parts::encode_base64_lines(data, 76, true, &mut out);
    String::from_utf8(out).unwrap()
}

/// A message with a 9 KB attachment shared by every `n` (split: over 8 KiB).
fn with_attachment(n: u64) -> Vec<u8> {
    let mut rng = common::Rng(7);
    let attachment: Vec<u8> = (0..9_000).map(|_| rng.next() as u8).collect();
    format!(
        "From: a{n}@example.com\r\nSubject: report {n}\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b{n}\"\r\n\r\n--b{n}\r\nContent-Type: text/plain\r\n\r\ncopy {n}\r\n--b{n}\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--b{n}--\r\n",
        base64_lines(&attachment)
    )
    .into_bytes()
}

/// Archive `n` messages of `owner`.
fn archive(store: &Store, owner: &str, n: std::ops::Range<u64>) -> Vec<SavesetId> {
    n.map(|k| {
        store
            .archive(
                owner,
                &format!("<{k}@x>"),
                &common::message(k, 4_000),
                false,
            )
            .unwrap()
            .id
    })
    .collect()
}

fn write_plain(path: &Path) {
    let store = Store::init(path, &small()).unwrap();
    let ids = archive(&store, "alice", 0..12);
    archive(&store, "bob", 6..14);
    store.put(b"Subject: no reference\r\n\r\nkept\r\n").unwrap();
    store.delete("alice", Some("<3@x>")).unwrap();
    store.hold("bob", None, true).unwrap();
    store.mark_indexed(&ids[..5]).unwrap();
    store.seal().unwrap();
    archive(&store, "bob", 14..16);
    let listed = store.backup_list().unwrap();
    store
        .backup_mark(listed[0].segment, &listed[0].checksum)
        .unwrap();
}

fn write_split(path: &Path) {
    let store = Store::init(path, &small()).unwrap();
    for n in 0..4 {
        store
            .archive("carol", &format!("<r{n}@x>"), &with_attachment(n), false)
            .unwrap();
    }
    store.delete("carol", Some("<r0@x>")).unwrap();
    store.purge_trash(Duration::ZERO, None, None).unwrap();
}

fn write_compacted(path: &Path) {
    let store = Store::init(path, &small()).unwrap();
    archive(&store, "dave", 0..20);
    archive(&store, "erin", 20..30);
    store.delete("dave", None).unwrap();
    store.purge_trash(Duration::ZERO, None, None).unwrap();
    store.seal().unwrap();
    store.defrag(0.1).unwrap();
    store.redistribute(Redistribution::Balance).unwrap();
}

fn write_damaged(path: &Path) {
    write_plain(path);
    let store = Store::open(path).unwrap();
    let sealed = store.backup_list().unwrap();
    let active = store
        .segments()
        .into_iter()
        .find(|s| s.state == vaultstore::SegmentState::Active)
        .unwrap();
    drop(store);
    // A flipped byte inside the first record of a sealed segment
    // (header 64 bytes, record header 64 bytes: offset 200 is payload).
    let victim = &sealed[0].path;
    let mut bytes = std::fs::read(victim).unwrap();
    bytes[200] ^= 0x40;
    std::fs::write(victim, bytes).unwrap();
    // A torn tail: half a record header after the active segment's last record.
    let mut f = std::fs::File::options()
        .append(true)
        .open(&active.path)
        .unwrap();
    std::io::Write::write_all(&mut f, &[0x5a; 40]).unwrap();
}

/// The store's files, without the lock and the service's files.
fn copy_store(from: &Path, to: &Path) {
    common::copy_dir(from, to);
    for transient in ["LOCK", "service.sock", "metrics.log"] {
        let _ = std::fs::remove_file(to.join(transient));
    }
}

/// A path-free text for a problem.
fn problem(p: &vaultstore::Problem) -> Value {
    json!({"segment": p.segment, "offset": p.offset, "detail": p.detail})
}

/// Everything this code reads from an opened store, without paths or
/// times of this run.
fn describe(store: &Store) -> Value {
    let st = store.stat();
    let segments: Vec<Value> = store
        .segments()
        .iter()
        .map(|s| {
            json!({"id": s.id, "partition": s.partition, "state": format!("{:?}", s.state),
                "bytes": s.bytes, "savesets": s.savesets, "dead_savesets": s.dead_savesets,
                "dead_bytes": s.dead_bytes, "parts": s.parts, "archive_bit": s.archive_bit,
                "created_ms": s.created_ms, "damage": s.damage})
        })
        .collect();
    let mut owners = Vec::new();
    let mut ids = std::collections::BTreeSet::new();
    for o in store.owners().unwrap() {
        let items = store.items(&o.owner, None, usize::MAX).unwrap();
        for i in &items {
            ids.insert(i.id.clone());
        }
        owners.push(
            json!({"owner": o.owner, "items": o.items, "trashed": o.trashed,
            "hold": o.hold, "list": serde_json::to_value(&items).unwrap()}),
        );
    }
    let savesets: Vec<Value> = ids
        .iter()
        .map(|id| {
            let id: SavesetId = id.parse().unwrap();
            let read = match store.get(&id) {
                Ok(content) => json!({"bytes": content.len()}),
                Err(e) => json!({"error": e.to_string()}),
            };
            json!({"id": id.to_string(), "refs": store.ref_count(&id).unwrap(), "read": read})
        })
        .collect();
    let verify = store.verify();
    json!({
        "stat": {"savesets": st.savesets, "logical_bytes": st.logical_bytes,
            "stored_bytes": st.stored_bytes, "segments": st.segments, "references": st.references,
            "trashed_references": st.trashed_references, "owners": st.owners,
            "dead_savesets": st.dead_savesets, "dead_bytes": st.dead_bytes, "parts": st.parts,
            "part_bytes": st.part_bytes},
        "segments": segments,
        "owners": owners,
        "savesets": savesets,
        "pending": serde_json::to_value(store.pending()).unwrap(),
        "recovery": store.recovery_report().iter().map(problem).collect::<Vec<_>>(),
        "verify": {"segments": verify.segments, "records": verify.records, "bytes": verify.bytes,
            "problems": verify.problems.iter().map(problem).collect::<Vec<_>>()},
    })
}

/// Open a copy of fixture `name` and describe it.
fn read_fixture(name: &str) -> Value {
    let scratch = tempfile::tempdir().unwrap();
    let copy = scratch.path().join(name);
    copy_store(&fixtures_dir().join(name).join("store"), &copy);
    let store = Store::open(&copy).unwrap();
    describe(&store)
}

fn write_fixtures() {
    for name in FIXTURES {
        let dir = fixtures_dir().join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join("store");
        match *name {
            "plain" => write_plain(&path),
            "split" => write_split(&path),
            "compacted" => write_compacted(&path),
            _ => write_damaged(&path),
        }
        copy_store(&path, &dir.join("store"));
        let expected = serde_json::to_string_pretty(&read_fixture(name)).unwrap();
        std::fs::write(dir.join("expected.json"), expected + "\n").unwrap();
    }
}

/// Writes the fixtures again: `cargo test --release --test fixtures --
/// --ignored write_the_fixtures`.
#[test]
#[ignore]
fn write_the_fixtures() {
    write_fixtures();
}

#[test]
fn every_fixture_reads_exactly_as_recorded() {
    for name in FIXTURES {
        let expected: Value = serde_json::from_str(
            &std::fs::read_to_string(fixtures_dir().join(name).join("expected.json")).unwrap(),
        )
        .unwrap();
        let got = read_fixture(name);
        for key in expected.as_object().unwrap().keys() {
            assert_eq!(got[key], expected[key], "fixture {name}: {key} differs");
        }
        assert_eq!(got, expected, "fixture {name}");
    }
}

#[test]
fn the_fixtures_hold_what_they_are_for() {
    let plain = read_fixture("plain");
    assert!(plain["stat"]["segments"].as_u64().unwrap() >= 3);
    assert_eq!(plain["stat"]["trashed_references"], 1);
    assert!(plain["verify"]["problems"].as_array().unwrap().is_empty());
    let split = read_fixture("split");
    assert!(split["stat"]["parts"].as_u64().unwrap() >= 1);
    let compacted = read_fixture("compacted");
    assert_eq!(compacted["stat"]["dead_savesets"], 0);
    assert!(compacted["segments"][0]["id"].as_u64().unwrap() > 1);
    let damaged = read_fixture("damaged");
    assert!(
        !damaged["recovery"].as_array().unwrap().is_empty(),
        "torn tail"
    );
    assert!(!damaged["verify"]["problems"].as_array().unwrap().is_empty());
    let unreadable = damaged["savesets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["read"].get("error").is_some())
        .count();
    assert_eq!(unreadable, 1, "one damaged record");
}
