//! Partitions in object storage, against real S3 servers started on
//! loopback (tests/common/s3.rs): s3s-fs and moto, so two independent
//! implementations agree. The CLI tests give each child process its own
//! endpoint and keys; the library tests share one server, whose endpoint is
//! set in this process's environment once.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::s3::{S3Server, noise};
use vaultstore::{InitOptions, SavesetId, Store};

const BUCKET: &str = "vault-test";

fn vs(server: &S3Server, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vaultstore"))
        .args(args)
        .envs(server.env())
        .env_remove("VAULTSTORE_STORE")
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(out: Output) -> serde_json::Value {
    serde_json::from_str(&ok(out)).unwrap()
}

/// A store whose partition 0 is closed and whose new segments go to
/// `s3://vault-test/PREFIX`, with small segments.
fn remote_store(server: &S3Server, dir: &Path, prefix: &str) -> String {
    let st = dir.join("s");
    let st = st.to_str().unwrap().to_string();
    ok(vs(
        server,
        &["init", "--store", &st, "--segment-size", "256K"],
    ));
    let url = format!("s3://{BUCKET}/{prefix}");
    ok(vs(server, &["partition", "add", "--store", &st, &url]));
    ok(vs(server, &["partition", "close", "--store", &st, "0"]));
    st
}

/// Put every corpus message through the CLI; their ids, with the bytes.
fn put_corpus(server: &S3Server, st: &str, dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let messages = common::corpus_messages().unwrap_or_else(|| {
        (0..200)
            .map(|n| common::message(n, 3_000 + n as usize * 97))
            .collect()
    });
    let files = dir.join("in");
    std::fs::create_dir_all(&files).unwrap();
    let mut args = vec!["put".to_string(), "--store".into(), st.to_string()];
    for (n, m) in messages.iter().enumerate() {
        let f = files.join(format!("{n}.eml"));
        std::fs::write(&f, m).unwrap();
        args.push(f.to_str().unwrap().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = ok(vs(server, &args));
    let mut by_id = BTreeMap::new();
    for (line, m) in out.lines().zip(&messages) {
        let id = line.split(' ').next().unwrap().to_string();
        assert_eq!(id, SavesetId::of(m).to_string());
        by_id.insert(id, m.clone());
    }
    assert_eq!(
        by_id.len(),
        messages
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    );
    by_id
}

fn sealed_segments(server: &S3Server, st: &str) -> Vec<serde_json::Value> {
    json(vs(server, &["segments", "--store", st, "--json"]))
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["state"] == "sealed")
        .cloned()
        .collect()
}

fn staged_files(st: &str) -> Vec<String> {
    let dir = Path::new(st).join("objects/p1");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sealed"))
        .collect();
    names.sort();
    names
}

#[test]
fn the_corpus_in_object_storage_reads_back_after_a_restart_on_each_server() {
    for server in S3Server::all() {
        eprintln!("server: {}", server.kind);
        server.create_bucket(BUCKET);
        let tmp = tempfile::tempdir().unwrap();
        let st = remote_store(&server, tmp.path(), "corpus");
        let messages = put_corpus(&server, &st, tmp.path());
        ok(vs(&server, &["seal", "--store", &st]));
        // The writable opens above uploaded in the background already; this
        // finds what is left, if anything.
        json(vs(
            &server,
            &["partition", "upload", "--store", &st, "--json"],
        ));
        let sealed = sealed_segments(&server, &st);
        assert!(sealed.len() >= 3, "{} sealed", sealed.len());
        // Every sealed segment of partition 1 is an object now, and no
        // local copy is left; each object is the segment's size.
        let keys = server.keys(BUCKET, "corpus");
        for s in sealed.iter().filter(|s| s["partition"] == 1) {
            let location = s["location"].as_str().unwrap();
            let key = location
                .strip_prefix(&format!("s3://{BUCKET}/"))
                .unwrap_or_else(|| panic!("not in the bucket: {s}"));
            assert!(keys.iter().any(|k| k == key), "{key} not in {keys:?}");
        }
        assert!(staged_files(&st).is_empty(), "{:?}", staged_files(&st));
        // Each `get` is a new process: nothing cached but the ends files.
        for (id, bytes) in &messages {
            let out = vs(&server, &["get", "--store", &st, id]);
            assert_eq!(&ok_bytes(out), bytes, "saveset {id} on {}", server.kind);
        }
        let report = json(vs(&server, &["verify", "--store", &st, "--json"]));
        assert_eq!(report["problems"].as_array().unwrap().len(), 0, "{report}");
        assert!(report["records"].as_u64().unwrap() >= messages.len() as u64);
    }
}

fn ok_bytes(out: Output) -> Vec<u8> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn damage_in_an_object_is_reported_with_its_key_and_never_returned() {
    let Some(server) = S3Server::s3s_fs() else {
        return;
    };
    server.create_bucket(BUCKET);
    let tmp = tempfile::tempdir().unwrap();
    let st = remote_store(&server, tmp.path(), "damage");
    let messages = put_corpus(&server, &st, tmp.path());
    ok(vs(&server, &["seal", "--store", &st]));
    ok(vs(&server, &["partition", "upload", "--store", &st]));
    let first = sealed_segments(&server, &st)
        .into_iter()
        .find(|s| s["partition"] == 1)
        .unwrap();
    let url = first["location"].as_str().unwrap().to_string();
    let key = url.strip_prefix(&format!("s3://{BUCKET}/")).unwrap();
    let file = server.object_file(BUCKET, key).unwrap();
    // Flip a byte a third of the way in: inside some record.
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x40;
    std::fs::write(&file, &bytes).unwrap();
    let out = vs(&server, &["verify", "--store", &st, "--json"]);
    assert!(!out.status.success(), "verify found nothing");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let problems = report["problems"].as_array().unwrap();
    assert!(
        problems.iter().any(|p| p["path"].as_str() == Some(&url)),
        "{report}"
    );
    let failed: Vec<String> = messages
        .keys()
        .filter_map(|id| {
            let out = vs(&server, &["get", "--store", &st, id]);
            (!out.status.success()).then(|| String::from_utf8_lossy(&out.stderr).into_owned())
        })
        .collect();
    assert!(!failed.is_empty(), "no get saw the flipped byte");
    assert!(failed.iter().all(|e| e.contains(&url)), "{failed:?}");
    // A missing object: its gets fail naming the key, the others still work.
    std::fs::remove_file(&file).unwrap();
    let mut missing = 0;
    for (id, content) in &messages {
        let out = vs(&server, &["get", "--store", &st, id]);
        if out.status.success() {
            assert_eq!(&out.stdout, content);
        } else {
            missing += 1;
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains(key), "{err}");
        }
    }
    assert!(missing >= failed.len(), "{missing} < {}", failed.len());
}

#[test]
fn partition_add_refuses_a_missing_bucket_and_a_prefix_that_holds_segments() {
    let Some(server) = S3Server::all().into_iter().next() else {
        return;
    };
    server.create_bucket(BUCKET);
    let tmp = tempfile::tempdir().unwrap();
    let st = tmp.path().join("s");
    let st = st.to_str().unwrap();
    ok(vs(&server, &["init", "--store", st]));
    let out = vs(
        &server,
        &["partition", "add", "--store", st, "s3://no-such-bucket/x"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("s3://no-such-bucket"), "{err}");
    let list = json(vs(&server, &["partition", "list", "--store", st, "--json"]));
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    // A second store may not take the first one's prefix.
    let first = remote_store(&server, &tmp.path().join("a"), "taken");
    put_corpus(&server, &first, &tmp.path().join("a"));
    ok(vs(&server, &["seal", "--store", &first]));
    ok(vs(&server, &["partition", "upload", "--store", &first]));
    let out = vs(
        &server,
        &[
            "partition",
            "add",
            "--store",
            st,
            &format!("s3://{BUCKET}/taken"),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("holds segments already"),
        "{err}"
    );
    assert!(!Path::new(st).join("objects").join("p1").exists());
}

/// The server the library tests share, started by a thread that lives as
/// long as the process (the server dies with it).
fn shared_server() -> Option<&'static S3Server> {
    static SERVER: OnceLock<Option<S3Server>> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let server = S3Server::s3s_fs().or_else(S3Server::moto);
                if let Some(s) = &server {
                    s.create_bucket(BUCKET);
                    for (k, v) in s.env() {
                        // SAFETY: set once, before any test of this binary
                        // reads the environment (they all come through here).
                        unsafe { std::env::set_var(k, v) };
                    }
                }
                tx.send(server).unwrap();
                loop {
                    std::thread::park();
                }
            });
            rx.recv().unwrap()
        })
        .as_ref()
}

fn library_store(dir: &Path, prefix: &str) -> (PathBuf, Store) {
    let path = dir.join("s");
    let store = Store::init(
        &path,
        &InitOptions {
            segment_bytes: 64 << 10,
            ..InitOptions::default()
        },
    )
    .unwrap();
    store
        .partition_add(Path::new(&format!("s3://{BUCKET}/{prefix}")), None)
        .unwrap();
    store.partition_close(0).unwrap();
    (path, store)
}

#[test]
fn defragmentation_rewrites_remote_segments_and_deletes_their_objects() {
    let Some(server) = shared_server() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (path, store) = library_store(tmp.path(), "defrag");
    let mut kept = Vec::new();
    for n in 0..120u64 {
        let owner = if n % 2 == 0 { "keep" } else { "drop" };
        let content = noise(n, 4_000);
        store
            .archive(owner, &format!("i{n}"), &content, false)
            .unwrap();
        if n % 2 == 0 {
            kept.push(content);
        }
    }
    store.seal().unwrap();
    store.upload_staged().unwrap();
    let before = server.keys(BUCKET, "defrag");
    assert!(before.len() >= 4, "{before:?}");
    store.delete("drop", None).unwrap();
    store
        .purge_trash(std::time::Duration::ZERO, None, None)
        .unwrap();
    let report = store.defrag(0.3).unwrap();
    assert!(!report.segments_read.is_empty(), "{report:?}");
    store.upload_staged().unwrap();
    let after = server.keys(BUCKET, "defrag");
    for v in &report.segments_read {
        let name = format!("defrag/segment-{v:010}.sealed");
        assert!(before.contains(&name), "{name} was not uploaded before");
        assert!(!after.contains(&name), "{name} still in the bucket");
    }
    drop(store);
    let store = Store::open(&path).unwrap();
    for c in &kept {
        assert_eq!(&store.get(&SavesetId::of(c)).unwrap(), c);
    }
    assert!(store.verify().is_clean());
    assert!(
        store
            .segments()
            .iter()
            .filter(|s| s.partition == 1 && s.state == vaultstore::SegmentState::Sealed)
            .all(|s| s.location.starts_with("s3://")),
        "{:?}",
        store.segments()
    );
}

#[test]
fn a_backup_of_a_store_in_object_storage_restores_locally() {
    if shared_server().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (_, store) = library_store(tmp.path(), "backup");
    let mut ids = Vec::new();
    for n in 0..60u64 {
        ids.push(store.put(&common::message(n, 5_000)).unwrap().id);
    }
    store.seal().unwrap();
    store.upload_staged().unwrap();
    let dest = tmp.path().join("backup");
    store.backup_run(&dest).unwrap();
    drop(store);
    let restored = Store::open(&dest).unwrap();
    for (n, id) in ids.iter().enumerate() {
        assert_eq!(restored.get(id).unwrap(), common::message(n as u64, 5_000));
    }
    assert!(restored.verify().is_clean());
    assert!(restored.segments().iter().all(|s| s.location == "local"));
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn a_killed_upload_never_shows_as_a_segment_and_the_next_one_finishes() {
    let Some(server) = S3Server::all().into_iter().next() else {
        return;
    };
    server.create_bucket(BUCKET);
    let tmp = tempfile::tempdir().unwrap();
    let st = tmp.path().join("s");
    let st = st.to_str().unwrap().to_string();
    // 20 MiB segments: each upload is a multipart one of three parts.
    ok(vs(
        &server,
        &["init", "--store", &st, "--segment-size", "20M"],
    ));
    ok(vs(
        &server,
        &[
            "partition",
            "add",
            "--store",
            &st,
            &format!("s3://{BUCKET}/killed"),
        ],
    ));
    ok(vs(&server, &["partition", "close", "--store", &st, "0"]));
    // Until the killed uploads, the background uploads of the writable
    // opens find no server, so every segment stays staged.
    let nowhere = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_vaultstore"))
            .args(args)
            .envs(server.env())
            .env(
                "AWS_ENDPOINT",
                format!("http://127.0.0.1:{}", closed_port()),
            )
            .env("VAULTSTORE_OBJECT_RETRIES", "0")
            .output()
            .unwrap()
    };
    let files = tmp.path().join("in");
    std::fs::create_dir_all(&files).unwrap();
    let mut contents = BTreeMap::new();
    let mut args = vec!["put".to_string(), "--store".into(), st.clone()];
    for n in 0..24u64 {
        let c = noise(n, 2 << 20);
        let f = files.join(format!("{n}.bin"));
        std::fs::write(&f, &c).unwrap();
        args.push(f.to_str().unwrap().to_string());
        contents.insert(SavesetId::of(&c).to_string(), c);
    }
    ok(nowhere(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    ok(nowhere(&["seal", "--store", &st]));
    assert!(server.keys(BUCKET, "killed").is_empty());
    let sealed: BTreeMap<String, u64> = sealed_segments(&server, &st)
        .iter()
        .map(|s| {
            let id = s["id"].as_u64().unwrap();
            (
                format!("killed/segment-{id:010}.sealed"),
                s["bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(sealed.len() >= 2, "{sealed:?}");
    assert_eq!(staged_files(&st).len(), sealed.len());
    let seed = common::seed();
    let mut interrupted = 0;
    for round in 0..6u64 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vaultstore"))
            .args(["partition", "upload", "--store", &st])
            .envs(server.env())
            .spawn()
            .unwrap();
        let wait = 30 + (seed.wrapping_add(round * 7919) % 400);
        std::thread::sleep(std::time::Duration::from_millis(wait));
        if child.try_wait().unwrap().is_none() {
            interrupted += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
        // Whatever the bucket shows is whole: an object is a complete segment.
        for key in server.keys(BUCKET, "killed") {
            let want = sealed
                .get(&key)
                .unwrap_or_else(|| panic!("unexpected object {key}"));
            if let Some(f) = server.object_file(BUCKET, &key) {
                assert_eq!(std::fs::metadata(f).unwrap().len(), *want, "{key}");
            }
        }
        let report = json(vs(&server, &["verify", "--store", &st, "--json"]));
        assert_eq!(
            report["problems"].as_array().unwrap().len(),
            0,
            "round {round}: {report}"
        );
    }
    assert!(interrupted > 0, "no upload was killed while it ran");
    ok(vs(&server, &["partition", "upload", "--store", &st]));
    assert!(staged_files(&st).is_empty(), "{:?}", staged_files(&st));
    assert_eq!(
        server.keys(BUCKET, "killed"),
        sealed.keys().cloned().collect::<Vec<_>>()
    );
    for (id, c) in &contents {
        assert_eq!(&ok_bytes(vs(&server, &["get", "--store", &st, id])), c);
    }
}

#[test]
fn a_local_partition_drains_into_the_bucket_under_eight_writers() {
    if shared_server().is_none() {
        return;
    }
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("s");
    let store = Arc::new(
        Store::init(
            &path,
            &InitOptions {
                segment_bytes: 64 << 10,
                ..InitOptions::default()
            },
        )
        .unwrap(),
    );
    let mut before = Vec::new();
    for n in 0..200u64 {
        let c = common::message(n, 3_000);
        store.archive("early", &format!("i{n}"), &c, false).unwrap();
        before.push(c);
    }
    store
        .partition_add(Path::new(&format!("s3://{BUCKET}/drain")), None)
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..8u64)
        .map(|w| {
            let (store, stop) = (store.clone(), stop.clone());
            let early = before.clone();
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) || n < 20 {
                    let c = common::message(10_000 + w * 100_000 + n, 2_500);
                    store
                        .archive(&format!("w{w}"), &format!("i{n}"), &c, false)
                        .unwrap();
                    acked.push(c);
                    // Everything acknowledged so far reads back, throughout.
                    let probe = &acked[(n as usize * 7) % acked.len()];
                    assert_eq!(&store.get(&SavesetId::of(probe)).unwrap(), probe);
                    let old = &early[(n as usize * 13) % early.len()];
                    assert_eq!(&store.get(&SavesetId::of(old)).unwrap(), old);
                    n += 1;
                }
                acked
            })
        })
        .collect();
    let report = store
        .redistribute(vaultstore::Redistribution::Drain(0))
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    let mut all = before;
    for w in writers {
        all.extend(w.join().unwrap());
    }
    assert!(report.savesets_moved >= 200, "{report:?}");
    store.seal().unwrap();
    store.upload_staged().unwrap();
    let parts = store.partitions();
    assert_eq!(parts[0].state, "retired", "{parts:?}");
    drop(Arc::try_unwrap(store).ok().unwrap());
    let store = Store::open(&path).unwrap();
    for s in store.segments() {
        assert_eq!(s.partition, 1, "{s:?}");
        if s.state == vaultstore::SegmentState::Sealed {
            assert!(s.location.starts_with("s3://"), "{s:?}");
        }
    }
    for c in &all {
        assert_eq!(&store.get(&SavesetId::of(c)).unwrap(), c);
    }
    assert!(store.verify().is_clean());
}
