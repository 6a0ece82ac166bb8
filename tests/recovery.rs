//! Crash recovery: a torn tail in the active segment is cut off (and kept in
//! quarantine), everything acknowledged before it reads back.

mod common;

use std::fs;
use std::path::PathBuf;

use vaultstore::io::StdFs;
use vaultstore::io::Vfs;
use vaultstore::segment::scan;
use vaultstore::{InitOptions, SavesetId, SegmentState, Store};

fn active_segment(store: &Store) -> PathBuf {
    store
        .segments()
        .into_iter()
        .find(|s| s.state == SegmentState::Active)
        .expect("an active segment")
        .path
}

#[test]
fn truncating_the_active_segment_at_every_offset_of_its_last_records() {
    let dir = tempfile::tempdir().unwrap();
    let golden = dir.path().join("golden");
    let msgs: Vec<Vec<u8>> = (0..12)
        .map(|n| common::message(n, 300 + 97 * n as usize))
        .collect();
    let seg_path = {
        let store = Store::init(&golden, &InitOptions::default()).unwrap();
        for m in &msgs {
            store.put(m).unwrap();
        }
        active_segment(&store)
    };
    let rel = seg_path.strip_prefix(&golden).unwrap().to_path_buf();
    let file = StdFs.open_read(&seg_path).unwrap();
    let seg = scan(&seg_path, &*file, 1, &Default::default()).unwrap();
    assert_eq!(seg.entries.len(), msgs.len());
    let full_len = seg.file_len;
    // Cut anywhere inside the last three records.
    let first_cut = seg.entries[msgs.len() - 3].offset;
    let ends: Vec<u64> = seg
        .entries
        .iter()
        .map(|e| e.offset + 64 + e.stored_len)
        .collect();

    for cut in first_cut..full_len {
        let trial = dir.path().join(format!("cut-{cut}"));
        common::copy_dir(&golden, &trial);
        let f = fs::OpenOptions::new()
            .write(true)
            .open(trial.join(&rel))
            .unwrap();
        f.set_len(cut).unwrap();
        drop(f);

        let store = Store::open(&trial).unwrap_or_else(|e| panic!("cut {cut}: open failed: {e}"));
        let on_boundary = ends.contains(&cut);
        assert_eq!(
            store.recovery_report().is_empty(),
            on_boundary,
            "cut {cut}: {:?}",
            store.recovery_report()
        );
        for (m, end) in msgs.iter().zip(&ends) {
            let id = SavesetId::of(m);
            if *end <= cut {
                assert_eq!(store.get(&id).unwrap(), *m, "cut {cut}: saveset lost");
            } else {
                assert!(!store.has(&id), "cut {cut}: half-written saveset visible");
            }
        }
        // The store takes writes again, and reopens clean.
        let put = store.put(b"after recovery").unwrap();
        drop(store);
        let store = Store::open(&trial).unwrap();
        assert!(
            store.recovery_report().is_empty(),
            "cut {cut}: second open not clean"
        );
        assert_eq!(store.get(&put.id).unwrap(), b"after recovery");
        assert!(store.verify().is_clean(), "cut {cut}: verify not clean");
        if !on_boundary {
            let q = fs::read_dir(trial.join("quarantine")).unwrap().count();
            assert_eq!(q, 1, "cut {cut}: torn tail not kept in quarantine");
        }
        drop(store);
        fs::remove_dir_all(&trial).unwrap();
    }
}

#[test]
fn a_crash_between_footer_and_rename_finishes_the_seal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let (sealed_path, ids) = {
        let store = Store::init(&path, &InitOptions::default()).unwrap();
        let ids: Vec<_> = (0..5)
            .map(|n| store.put(&common::message(n, 500)).unwrap().id)
            .collect();
        store.seal().unwrap();
        let sealed = store.segments()[0].path.clone();
        (sealed, ids)
    };
    // Undo the rename: the footer is written but the file still says active.
    let active = sealed_path.with_extension("active");
    fs::rename(&sealed_path, &active).unwrap();
    let store = Store::open(&path).unwrap();
    let segs = store.segments();
    assert_eq!(segs.len(), 1);
    assert_eq!(segs[0].state, SegmentState::Sealed);
    assert!(segs[0].path.ends_with(sealed_path.file_name().unwrap()));
    for id in &ids {
        assert!(store.get(id).is_ok());
    }
    assert!(store.verify().is_clean());
}

#[test]
fn an_empty_segment_left_by_a_crash_during_creation_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let id = {
        let store = Store::init(&path, &InitOptions::default()).unwrap();
        let id = store.put(b"one").unwrap().id;
        store.seal().unwrap();
        id
    };
    // Segment 2 created, header never written.
    fs::write(path.join("p0/segment-0000000002.active"), b"").unwrap();
    let store = Store::open(&path).unwrap();
    assert_eq!(store.recovery_report().len(), 1);
    assert!(!path.join("p0/segment-0000000002.active").exists());
    assert!(store.get(&id).is_ok());
    // Ids are never reused: the next segment is 3.
    store.put(b"two").unwrap();
    let ids: Vec<u32> = store.segments().iter().map(|s| s.id).collect();
    assert_eq!(ids, vec![1, 3]);
}
