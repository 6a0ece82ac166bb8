//! Defragmentation and redistribution: space really comes back, every live
//! saveset survives, backup state is kept, and the store reopens the same.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use vaultstore::{InitOptions, Redistribution, SavesetId, Store};

fn small_segments() -> InitOptions {
    InitOptions {
        segment_bytes: 256 << 10,
        ..InitOptions::default()
    }
}

/// Bytes of every file under `dir`.
fn bytes_on_disk(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let meta = e.metadata().unwrap();
        total += if meta.is_dir() {
            bytes_on_disk(&e.path())
        } else {
            meta.len()
        };
    }
    total
}

/// Segment files present in the store's partition directories.
fn segment_files(store: &Store) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for p in store.partitions() {
        let dir = if Path::new(&p.path).is_absolute() {
            Path::new(&p.path).to_path_buf()
        } else {
            store.dir().join(&p.path)
        };
        if p.state == "retired" {
            continue;
        }
        for e in std::fs::read_dir(dir).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            if name.starts_with("segment-") {
                out.insert(name);
            }
        }
    }
    out
}

/// Every segment file on disk is one the store lists, and the other way round.
fn assert_no_stray_files(store: &Store) {
    let listed: BTreeSet<String> = store
        .segments()
        .iter()
        .map(|s| s.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(segment_files(store), listed);
}

fn assert_reads(store: &Store, expected: &BTreeMap<SavesetId, Vec<u8>>) {
    for (id, content) in expected {
        assert_eq!(&store.get(id).unwrap(), content, "saveset {id}");
    }
}

#[test]
fn purging_two_of_three_corpus_mailboxes_then_defrag_reclaims_their_bytes() {
    let Some(messages) = common::corpus_messages() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let store = Store::init(&path, &small_segments()).unwrap();
    // Three mailboxes with different content: a third of the corpus each.
    let mailboxes = ["alice", "bob", "carol"];
    let mut kept = BTreeMap::new();
    for (n, m) in messages.iter().enumerate() {
        let owner = mailboxes[n % 3];
        store
            .archive(owner, &format!("item-{n}"), m, false)
            .unwrap();
    }
    for (n, m) in messages.iter().enumerate() {
        if n % 3 == 2 {
            kept.insert(SavesetId::of(m), m.clone());
        }
    }
    // Content shared with carol's mailbox stays live.
    let carol: BTreeSet<SavesetId> = kept.keys().copied().collect();
    store.seal().unwrap();
    let before = bytes_on_disk(&path);
    store.delete("alice", None).unwrap();
    store.delete("bob", None).unwrap();
    store.purge_trash(Duration::ZERO, None, None).unwrap();
    let stat = store.stat();
    assert_eq!(stat.savesets, carol.len() as u64);
    assert!(stat.dead_bytes > 0);

    let report = store.defrag(0.5).unwrap();
    assert!(!report.segments_read.is_empty());
    assert!(report.bytes_reclaimed > 0);
    let after = bytes_on_disk(&path);
    let stat = store.stat();
    // What is left is carol's content plus segments not sparse enough.
    let live_logical: u64 = kept.values().map(|m| m.len() as u64).sum();
    eprintln!(
        "before {before} after {after} stored {} dead left {} live logical {live_logical}; {report:?}",
        stat.stored_bytes, stat.dead_bytes
    );
    assert!(
        after < before * 55 / 100,
        "bytes on disk went from {before} to {after} only"
    );
    assert!(!path.join("quarantine").exists(), "nothing quarantined");
    assert_reads(&store, &kept);
    assert!(store.verify().is_clean());
    assert_no_stray_files(&store);

    // A full defragmentation (threshold 0) leaves no dead byte at all.
    store.defrag(0.0).unwrap();
    assert_eq!(store.stat().dead_bytes, 0);
    let summary = (store.stat().savesets, store.stat().stored_bytes);
    drop(store);
    let store = Store::open(&path).unwrap();
    assert!(
        store.recovery_report().is_empty(),
        "{:?}",
        store.recovery_report()
    );
    assert_eq!((store.stat().savesets, store.stat().stored_bytes), summary);
    assert_eq!(store.stat().dead_bytes, 0);
    assert_reads(&store, &kept);
    assert_eq!(store.refs(kept.keys().next().unwrap()).unwrap().len(), 1);
    assert!(store.verify().is_clean());
    assert_no_stray_files(&store);
    // The catalog survived the rewrite: carol's items are all there.
    assert_eq!(
        store.items("carol", None, usize::MAX).unwrap().len(),
        kept.len()
    );
}

#[test]
fn content_stored_again_after_it_died_survives_defrag_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let store = Store::init(&path, &small_segments()).unwrap();
    let m = common::message(1, 3000);
    let id = SavesetId::of(&m);
    store.archive("a", "1", &m, false).unwrap();
    for n in 0..60 {
        store
            .archive(
                "filler",
                &n.to_string(),
                &common::message(100 + n, 3000),
                false,
            )
            .unwrap();
    }
    store.delete("a", None).unwrap();
    store.purge_trash(Duration::ZERO, None, None).unwrap();
    assert!(!store.has(&id));
    store.seal().unwrap();
    // Stored again, in a later segment, referenced again.
    store.archive("b", "1", &m, false).unwrap();
    store.seal().unwrap();
    let r = store.defrag(0.0).unwrap();
    assert_eq!(r.savesets_dropped, 1);
    assert_eq!(store.get(&id).unwrap(), m);
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.get(&id).unwrap(), m);
    assert_eq!(store.refs(&id).unwrap().len(), 1);
    assert_eq!(store.stat().dead_savesets, 0);
    assert_eq!(store.stat().savesets, 61);
}

#[test]
fn backup_state_survives_defrag_and_removed_segments_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let store = Store::init(&path, &small_segments()).unwrap();
    for n in 0..200 {
        let owner = if n % 2 == 0 { "even" } else { "odd" };
        store
            .archive(owner, &n.to_string(), &common::message(n, 4000), false)
            .unwrap();
    }
    let backup = dir.path().join("backup");
    store.backup_run(&backup).unwrap();
    // Acknowledge the feed so the backed-up segments may be rewritten.
    let page = store.feed(None, usize::MAX).unwrap();
    store.feed_ack(page.cursor).unwrap();
    assert_eq!(store.pending().awaiting_backup, 0);
    store.delete("odd", None).unwrap();
    store.purge_trash(Duration::ZERO, None, None).unwrap();
    let sealed_before: Vec<u32> = store.segments().iter().map(|s| s.id).collect();
    let r = store.defrag(0.0).unwrap();
    assert!(!r.segments_read.is_empty(), "{r:?}");
    // Moved savesets stay BackupComplete and do not come back in the feed.
    assert_eq!(store.pending().awaiting_backup, 0);
    assert_eq!(store.pending().ready_for_post_processing, 0);
    // The new segments carry their archive bit.
    let fresh: Vec<_> = store
        .segments()
        .into_iter()
        .filter(|s| r.segments_written.contains(&s.id))
        .collect();
    assert!(fresh.iter().all(|s| s.archive_bit));
    let removed: Vec<u32> = store.removed_segments().iter().map(|s| s.segment).collect();
    assert_eq!(removed, r.segments_read);
    assert!(removed.iter().all(|s| sealed_before.contains(s)));
    // Backing them up adds nothing to the feed either.
    store.backup_run(&backup).unwrap();
    assert_eq!(store.pending().ready_for_post_processing, 0);
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.pending().awaiting_backup, 0);
    assert_eq!(store.pending().ready_for_post_processing, 0);
    let removed_again: Vec<u32> = store.removed_segments().iter().map(|s| s.segment).collect();
    assert_eq!(removed_again, removed);
    // The backup copy, which holds old and new segments, opens to the same savesets.
    let copy = Store::open(&backup).unwrap();
    assert_eq!(copy.stat().savesets, store.stat().savesets);
    for id in store.ids().unwrap() {
        assert_eq!(copy.get(&id).unwrap(), store.get(&id).unwrap());
    }
}

#[test]
fn segments_in_the_unacknowledged_feed_are_left_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path().join("s"), &small_segments()).unwrap();
    for n in 0..100 {
        store
            .archive("a", &n.to_string(), &common::message(n, 4000), false)
            .unwrap();
    }
    store.backup_run(&dir.path().join("b")).unwrap();
    store.delete("a", None).unwrap();
    store.purge_trash(Duration::ZERO, None, None).unwrap();
    let r = store.defrag(0.5).unwrap();
    assert!(r.segments_read.is_empty());
    assert!(!r.skipped.is_empty());
    assert!(r.skipped[0].reason.contains("feed"), "{:?}", r.skipped);
    let page = store.feed(None, usize::MAX).unwrap();
    store.feed_ack(page.cursor).unwrap();
    let r = store.defrag(0.5).unwrap();
    assert!(!r.segments_read.is_empty());
    assert!(r.skipped.is_empty(), "{:?}", r.skipped);
}

#[test]
fn drain_moves_everything_out_and_retires_the_partition() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let store = Store::init(&path, &small_segments()).unwrap();
    let mut expected = BTreeMap::new();
    for n in 0..150 {
        let m = common::message(n, 5000);
        store.archive("a", &n.to_string(), &m, false).unwrap();
        expected.insert(SavesetId::of(&m), m);
    }
    let p1 = store.partition_add(Path::new("second"), None).unwrap();
    let r = store.redistribute(Redistribution::Drain(0)).unwrap();
    assert_eq!(r.retired_partitions, vec![0]);
    assert!(store.segments().iter().all(|s| s.partition == p1));
    assert_reads(&store, &expected);
    assert!(store.verify().is_clean());
    // Running it again does nothing; the partition's files are gone.
    let again = store.redistribute(Redistribution::Drain(0)).unwrap();
    assert!(again.segments_read.is_empty());
    let p0_files = std::fs::read_dir(path.join("p0")).unwrap().count();
    assert_eq!(p0_files, 0);
    drop(store);
    // The retired directory is not needed any more.
    std::fs::remove_dir(path.join("p0")).unwrap();
    let store = Store::open(&path).unwrap();
    assert_reads(&store, &expected);
    assert_eq!(store.items("a", None, usize::MAX).unwrap().len(), 150);
    assert_eq!(store.partitions()[0].state, "retired");
}

#[test]
fn balance_evens_fill_by_capacity() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let store = Store::init(&path, &small_segments()).unwrap();
    let mut expected = BTreeMap::new();
    for n in 0..300 {
        let m = common::message(n, 5000);
        store.archive("a", &n.to_string(), &m, false).unwrap();
        expected.insert(SavesetId::of(&m), m);
    }
    store.seal().unwrap();
    let cap = 8 << 20;
    store.partition_set_capacity(0, cap).unwrap();
    store.partition_add(Path::new("p1"), Some(cap)).unwrap();
    let fill = |store: &Store| -> Vec<u64> { store.partitions().iter().map(|p| p.bytes).collect() };
    let before = fill(&store);
    assert_eq!(before[1], 0);
    let r = store.redistribute(Redistribution::Balance).unwrap();
    let after = fill(&store);
    eprintln!("{before:?} -> {after:?}: {r:?}");
    let seg = store.segments().iter().map(|s| s.bytes).max().unwrap();
    assert!(after[0].abs_diff(after[1]) <= seg, "{after:?}");
    assert_reads(&store, &expected);
    // Balanced already: a second run moves nothing.
    assert!(
        store
            .redistribute(Redistribution::Balance)
            .unwrap()
            .segments_read
            .is_empty()
    );
}

#[test]
fn readers_and_writers_keep_working_during_defragmentation() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let store = Arc::new(Store::init(&path, &small_segments()).unwrap());
    let mut rng = common::Rng(common::seed());
    // Every third message carries one of two attachments (stored split, the
    // attachment a shared part that compaction moves too).
    let attachments: Vec<Vec<u8>> = (0..2u64)
        .map(|a| {
            let mut r = common::Rng(500 + a);
            (0..10_000).map(|_| r.next() as u8).collect()
        })
        .collect();
    let mut noisy = |n: u64| {
        let mut m = common::message(n, 2000);
        m.extend((0..2000).map(|_| b'a' + rng.below(26) as u8));
        if n.is_multiple_of(3) {
            let mut body = Vec::new();
            vaultstore::parts::encode_base64_lines(
                &attachments[(n % 2) as usize],
                76,
                true,
                &mut body,
            );
            let mut mime = b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n\r\n".to_vec();
            mime.extend_from_slice(&m);
            mime.extend_from_slice(b"\r\n--b\r\nContent-Transfer-Encoding: base64\r\n\r\n");
            mime.extend_from_slice(&body);
            mime.extend_from_slice(b"\r\n--b--\r\n");
            return mime;
        }
        m
    };
    // Stable items are read throughout; doomed ones are deleted as we go.
    let mut stable = Vec::new();
    let mut doomed = Vec::new();
    for n in 0..400u64 {
        let m = noisy(n);
        let owner = if n % 2 == 0 { "stable" } else { "doomed" };
        store.archive(owner, &n.to_string(), &m, false).unwrap();
        if n % 2 == 0 {
            stable.push((SavesetId::of(&m), m));
        } else {
            doomed.push(n);
        }
    }
    type Model = Arc<Mutex<Vec<(SavesetId, Vec<u8>)>>>;
    let written: Model = Arc::new(Mutex::new(stable));
    let done = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for r in 0..2u64 {
        let (store, written, done) = (store.clone(), written.clone(), done.clone());
        threads.push(std::thread::spawn(move || {
            let mut rng = common::Rng(r);
            let mut reads = 0u64;
            while !done.load(Ordering::SeqCst) || reads < 100 {
                let (id, m) = {
                    let w = written.lock().unwrap();
                    w[rng.below(w.len() as u64) as usize].clone()
                };
                assert_eq!(store.get(&id).unwrap(), m, "read of {id}");
                reads += 1;
            }
            reads
        }));
    }
    let writer = {
        let (store, written, done) = (store.clone(), written.clone(), done.clone());
        let fresh: Vec<Vec<u8>> = (1000..1300).map(&mut noisy).collect();
        std::thread::spawn(move || {
            for (i, m) in fresh.into_iter().enumerate() {
                store.archive("new", &i.to_string(), &m, false).unwrap();
                written.lock().unwrap().push((SavesetId::of(&m), m));
                if let Some(n) = doomed.get(i) {
                    store.delete("doomed", Some(&n.to_string())).unwrap();
                    store
                        .purge_trash(Duration::ZERO, Some("doomed"), None)
                        .unwrap();
                }
                if done.load(Ordering::SeqCst) {
                    break;
                }
            }
        })
    };
    let mut passes = 0;
    let mut moved = 0;
    while !writer.is_finished() || passes < 3 {
        let r = store.defrag(0.2).unwrap();
        moved += r.savesets_moved;
        passes += 1;
    }
    done.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let reads: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    eprintln!("{passes} passes moved {moved} savesets during {reads} reads");
    assert!(moved > 0);
    let expected: BTreeMap<SavesetId, Vec<u8>> = written.lock().unwrap().iter().cloned().collect();
    assert_reads(&store, &expected);
    assert!(store.verify().is_clean());
    assert_no_stray_files(&store);
    let live = store.stat().savesets;
    assert_eq!(
        live,
        200 + 300,
        "stable and new savesets live, every doomed one dead"
    );
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.stat().savesets, live);
    assert_reads(&store, &expected);
    assert!(store.verify().is_clean());
}
