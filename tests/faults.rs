//! Injected I/O faults: each is a clear error, nothing acknowledged is lost,
//! and once the fault is gone work goes on where that is safe.

mod common;

use std::sync::Arc;

use vaultstore::io::{Fault, FaultKind, FaultOp, FaultyFs};
use vaultstore::{Error, InitOptions, OpenOptions, SavesetId, Store};

fn faulty_store(dir: &std::path::Path, segment_bytes: u64) -> (Store, FaultyFs) {
    let fs = FaultyFs::new();
    let opts = OpenOptions {
        vfs: Arc::new(fs.clone()),
        ..OpenOptions::default()
    };
    let store = Store::init_with(
        dir,
        &InitOptions {
            segment_bytes,
            ..InitOptions::default()
        },
        opts,
    )
    .unwrap();
    (store, fs)
}

fn fault(op: FaultOp, kind: FaultKind, path: &str, count: u64) -> Fault {
    Fault {
        op,
        kind,
        path_contains: path.into(),
        skip: 0,
        count,
    }
}

fn check_all(store: &Store, acked: &[Vec<u8>]) {
    for m in acked {
        assert_eq!(store.get(&SavesetId::of(m)).unwrap(), *m);
    }
}

#[test]
fn enospc_and_short_writes_on_append_roll_back_and_work_resumes() {
    for kind in [FaultKind::NoSpace, FaultKind::ShortWrite, FaultKind::Eio] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let (store, fs) = faulty_store(&path, 1 << 20);
        let mut acked = Vec::new();
        for n in 0..5 {
            let m = common::message(n, 2000);
            store.put(&m).unwrap();
            acked.push(m);
        }
        fs.inject(fault(FaultOp::Write, kind, "segment-", u64::MAX));
        let failing = common::message(100, 2000);
        let err = store.put(&failing).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{kind:?}: {err}");
        assert!(err.to_string().contains("append record"), "{err}");
        assert!(!store.has(&SavesetId::of(&failing)));
        check_all(&store, &acked);
        // Space freed: the same store goes on without a restart.
        fs.clear();
        for n in 5..10 {
            let m = common::message(n, 2000);
            store.put(&m).unwrap();
            acked.push(m);
        }
        drop(store);
        let store = Store::open(&path).unwrap();
        assert!(
            store.recovery_report().is_empty(),
            "{kind:?}: {:?}",
            store.recovery_report()
        );
        check_all(&store, &acked);
        assert!(!store.has(&SavesetId::of(&failing)));
        assert!(store.verify().is_clean());
        assert!(fs.injected() >= 1);
    }
}

#[test]
fn a_failed_fsync_stops_writes_until_reopen_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let (store, fs) = faulty_store(&path, 1 << 20);
    let mut acked = Vec::new();
    for n in 0..5 {
        let m = common::message(n, 1500);
        store.put(&m).unwrap();
        acked.push(m);
    }
    fs.inject(fault(FaultOp::Sync, FaultKind::Eio, "segment-", 1));
    let err = store.put(&common::message(50, 1500)).unwrap_err();
    assert!(err.to_string().contains("fsync"), "{err}");
    // The fsync fault is gone, but the writer cannot trust its page cache.
    let err = store.put(&common::message(51, 1500)).unwrap_err();
    assert!(matches!(err, Error::WriterFailed { .. }), "{err}");
    check_all(&store, &acked);
    drop(store);
    let store = Store::open(&path).unwrap();
    check_all(&store, &acked);
    store.put(&common::message(52, 1500)).unwrap();
    assert!(store.verify().is_clean());
}

#[test]
fn faults_while_rolling_over_to_a_new_segment() {
    // Each step of a rollover fails once: sealing (footer write, fsync,
    // rename), reserving the id (manifest), creating the new segment.
    let steps = [
        fault(FaultOp::Write, FaultKind::NoSpace, "MANIFEST", 1),
        fault(FaultOp::Create, FaultKind::NoSpace, "segment-", 1),
        fault(FaultOp::Rename, FaultKind::Eio, "segment-", 1),
        fault(FaultOp::Sync, FaultKind::Eio, "p0", 1),
    ];
    for step in steps {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let (store, fs) = faulty_store(&path, 4096);
        let mut acked = Vec::new();
        let mut failures = 0;
        fs.inject(Fault {
            skip: 1,
            ..step.clone()
        });
        for n in 0..200 {
            let m = common::message(n, 1500);
            match store.put(&m) {
                Ok(_) => acked.push(m),
                Err(Error::WriterFailed { .. }) => break,
                Err(_) => failures += 1,
            }
        }
        assert!(failures >= 1, "{step:?} never fired");
        check_all(&store, &acked);
        drop(store);
        let store = Store::open(&path).unwrap();
        check_all(&store, &acked);
        for n in 1000..1100 {
            let m = common::message(n, 1500);
            store.put(&m).unwrap();
            acked.push(m);
        }
        drop(store);
        let store = Store::open(&path).unwrap();
        check_all(&store, &acked);
        assert!(
            store.verify().is_clean(),
            "{step:?}: {:?}",
            store.verify().problems
        );
        // Segment ids are never handed out twice.
        let ids: Vec<u32> = store.segments().iter().map(|s| s.id).collect();
        let mut sorted = ids.clone();
        sorted.dedup();
        assert_eq!(ids, sorted);
    }
}

#[test]
fn a_read_error_names_segment_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let (store, fs) = faulty_store(&path, 1 << 20);
    let id = store.put(b"some mail").unwrap().id;
    fs.inject(fault(FaultOp::Read, FaultKind::Eio, "segment-", 1));
    match store.get(&id) {
        Err(Error::Corrupt {
            segment: 1,
            offset: 64,
            detail,
        }) => {
            assert!(detail.contains("read failed"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(store.get(&id).unwrap(), b"some mail");
}

#[test]
fn a_store_directory_without_permission_is_a_clear_error() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    drop(Store::init(&path, &InitOptions::default()).unwrap());
    let p0 = path.join("p0");
    std::fs::set_permissions(&p0, std::fs::Permissions::from_mode(0o000)).unwrap();
    // root ignores permission bits; only check when they apply.
    let denied = std::fs::read_dir(&p0).is_err();
    let result = Store::open(&path);
    std::fs::set_permissions(&p0, std::fs::Permissions::from_mode(0o755)).unwrap();
    if denied {
        let err = result.err().expect("open must fail");
        assert!(err.to_string().contains("p0"), "{err}");
    } else {
        eprintln!("SKIP: running as root, permission bits are not enforced");
    }
}

#[test]
fn a_failed_fsync_behind_a_batch_fails_the_batch_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let (store, fs) = faulty_store(&path, 64 << 20);
    let acked: Vec<Vec<u8>> = (0..20).map(|n| common::message(n, 3000)).collect();
    let refs: Vec<&[u8]> = acked.iter().map(Vec::as_slice).collect();
    store.put_many(&refs).unwrap();
    // A batch of several steps, synced behind its appends, and one of
    // those syncs fails: the batch is refused.
    let step = vaultstore::store::PUT_STEP_BYTES;
    let big: Vec<Vec<u8>> = (100..112).map(|n| common::message(n, step / 3)).collect();
    let refs: Vec<&[u8]> = big.iter().map(Vec::as_slice).collect();
    fs.inject(Fault {
        skip: 1,
        ..fault(FaultOp::Sync, FaultKind::Eio, "segment-", 1)
    });
    let err = store.put_many(&refs).unwrap_err();
    assert!(err.to_string().contains("fsync"), "{err}");
    assert!(matches!(
        store.put(&common::message(200, 100)).unwrap_err(),
        Error::WriterFailed { .. }
    ));
    check_all(&store, &acked);
    drop(store);
    let store = Store::open(&path).unwrap();
    check_all(&store, &acked);
    // The refused batch goes through again in full.
    let puts = store.put_many(&refs).unwrap();
    assert_eq!(puts.len(), big.len());
    check_all(&store, &big);
    assert!(store.verify().is_clean());
}
