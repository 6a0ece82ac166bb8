//! Partitions: rollover by capacity, closing, listing, and reopen.

mod common;

use std::path::Path;
use std::process::Command;

use vaultstore::{Error, InitOptions, SavesetId, Store};

#[test]
fn new_segments_roll_over_to_the_next_partition_with_room() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let other = dir.path().join("volume2");
    let store = Store::init(
        &path,
        &InitOptions {
            segment_bytes: 16 << 10,
            ..InitOptions::default()
        },
    )
    .unwrap();
    // Partition 0 may hold three segments; partition 1 (on another "volume") has no limit.
    store.partition_set_capacity(0, 3 * (16 << 10)).unwrap();
    let id1 = store.partition_add(&other, None).unwrap();
    assert_eq!(id1, 1);
    let mut ids = Vec::new();
    for n in 0..80 {
        ids.push(store.put(&common::message(n, 3000)).unwrap().id);
    }
    let parts = store.partitions();
    assert!(parts[0].bytes <= 3 * (16 << 10), "{parts:?}");
    assert!(parts[1].bytes > 0, "{parts:?}");
    for seg in store.segments() {
        let expected_dir = if seg.partition == 0 {
            path.join("p0")
        } else {
            other.clone()
        };
        assert!(seg.path.starts_with(&expected_dir), "{seg:?}");
    }
    // Closing partition 1 sends new segments back to... nowhere with room: refused clearly.
    store.partition_close(1).unwrap();
    store.seal().unwrap();
    let err = store.put(b"no room anywhere").unwrap_err();
    assert!(
        err.to_string().contains("no open partition has room"),
        "{err}"
    );
    drop(store);
    let store = Store::open(&path).unwrap();
    for id in &ids {
        assert!(store.get(id).is_ok());
    }
    assert_eq!(store.partitions()[1].state, "closed");
    assert!(store.verify().is_clean());
    assert!(!store.has(&SavesetId::of(b"no room anywhere")));
}

#[test]
fn partition_commands() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    drop(Store::init(&path, &InitOptions::default()).unwrap());
    let st = path.to_str().unwrap();
    let vs = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_vaultstore"))
            .args(args)
            .output()
            .unwrap()
    };
    let v2 = dir.path().join("v2");
    let out = vs(&[
        "partition",
        "add",
        "--store",
        st,
        v2.to_str().unwrap(),
        "--capacity",
        "1G",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = vs(&["partition", "list", "--store", st, "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in ["id", "path", "state", "bytes", "capacity"] {
        assert!(list[1].get(key).is_some(), "missing {key}");
    }
    assert_eq!(list[1]["capacity"], 1u64 << 30);
    assert_eq!(list[1]["state"], "open");
    // A non-empty directory is refused; so is closing the last open partition.
    std::fs::write(dir.path().join("busy"), b"x").unwrap();
    let out = vs(&[
        "partition",
        "add",
        "--store",
        st,
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        vs(&["partition", "close", "--store", st, "0"])
            .status
            .success()
    );
    let out = vs(&["partition", "close", "--store", st, "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("last open"));
    let store = Store::open(&path).unwrap();
    assert!(matches!(
        store.partition_close(7),
        Err(Error::InvalidSetting(_))
    ));
}

#[test]
fn a_volume_low_on_free_space_takes_no_new_segment() {
    use std::sync::Arc;
    use vaultstore::OpenOptions;
    use vaultstore::io::FaultyFs;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let fs = FaultyFs::new();
    let store = Store::init_with(
        &path,
        &InitOptions {
            segment_bytes: 16 << 10,
            ..InitOptions::default()
        },
        OpenOptions {
            vfs: Arc::new(fs.clone()),
            ..OpenOptions::default()
        },
    )
    .unwrap();
    let v2 = dir.path().join("volume2");
    store.partition_add(&v2, None).unwrap();
    store.set_min_free_space(1 << 30).unwrap();
    // The store's own volume reports 100 MiB free: below the threshold.
    fs.set_available_space(Some(("/s/p0", 100 << 20)));
    for n in 0..10 {
        store.put(&common::message(n, 3000)).unwrap();
    }
    let segs = store.segments();
    assert!(segs.iter().all(|s| s.partition == 1), "{segs:?}");
    // Space freed: new segments go to the first partition again.
    fs.set_available_space(None);
    store.set_min_free_space(0).unwrap();
    store.seal().unwrap();
    store.put(b"after space was freed").unwrap();
    assert_eq!(store.segments().last().unwrap().partition, 0);
    drop(store);
    assert_eq!(Store::open(&path).unwrap().manifest().min_free_bytes, 0);
}

/// A URL is not a partition path: `s3://bucket/x` used to succeed and
/// make a directory `s3:` inside the store. Now only a well-formed s3://
/// URL is taken (tests/object_storage.rs); every other is refused.
#[test]
fn a_url_is_refused_as_a_partition_path_and_nothing_is_created() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let store = Store::init(&dir, &InitOptions::default()).unwrap();
    for url in [
        "gs://bucket/x",
        "s3://Not_A_Bucket/x",
        "s3://bucket/a/../b",
        "https://example.com/p",
        "file:///srv/vault/p",
    ] {
        let err = store.partition_add(Path::new(url), None).unwrap_err();
        let scheme = url.split("://").next().unwrap();
        assert!(err.to_string().contains(&format!("{scheme}://")), "{err}");
    }
    assert!(!dir.join("s3:").exists() && !dir.join("gs:").exists());
    assert!(!dir.join("https:").exists() && !dir.join("objects").exists());
    assert_eq!(store.partitions().len(), 1);
    // A path with a colon in it is still a path.
    store.partition_add(Path::new("p:1"), None).unwrap();
    assert_eq!(store.partitions().len(), 2);
}
