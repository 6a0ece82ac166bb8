//! Many threads at once: readers beside writers, and group commit.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};

use vaultstore::io::{FaultOp, FaultyFs};
use vaultstore::{InitOptions, OpenOptions, SavesetId, Store};

#[test]
fn readers_and_writers_together_never_see_wrong_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        Store::init(
            dir.path().join("s"),
            &InitOptions {
                segment_bytes: 64 << 10,
                ..InitOptions::default()
            },
        )
        .unwrap(),
    );
    let threads = 8;
    let per_thread = 150u64;
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|r| {
            let store = store.clone();
            let done = done.clone();
            std::thread::spawn(move || {
                let mut reads = 0u64;
                let mut rng = common::Rng(r);
                while !done.load(Ordering::Relaxed) {
                    let n = rng.below(threads * per_thread);
                    let m = common::message(n % 300, 900 + (n % 300) as usize);
                    let id = SavesetId::of(&m);
                    if store.has(&id) {
                        assert_eq!(store.get(&id).unwrap(), m);
                        reads += 1;
                    }
                }
                reads
            })
        })
        .collect();
    let writers: Vec<_> = (0..threads)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut new = 0;
                for i in 0..per_thread {
                    // Threads overlap on content: 300 distinct messages in all.
                    let n = (t * per_thread + i) % 300;
                    let m = common::message(n, 900 + n as usize);
                    if store.put(&m).unwrap().new {
                        new += 1;
                    }
                }
                new
            })
        })
        .collect();
    let new: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    done.store(true, Ordering::Relaxed);
    let reads: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert_eq!(new, 300, "each distinct message stored exactly once");
    assert_eq!(store.stat().savesets, 300);
    eprintln!("{reads} concurrent reads checked");
    let report = store.verify();
    assert!(report.is_clean());
    assert_eq!(report.records, 300, "no duplicate records written");
}

#[derive(Clone, Default)]
struct Gate {
    closed: Arc<AtomicBool>,
    syncs: Arc<AtomicU64>,
}

#[test]
fn concurrent_writers_share_one_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let store = Arc::new(
        Store::init_with(
            dir.path().join("s"),
            &InitOptions::default(),
            OpenOptions {
                vfs: Arc::new(fs.clone()),
                ..OpenOptions::default()
            },
        )
        .unwrap(),
    );
    store.put(b"warm-up: creates the active segment").unwrap();
    // Count segment fsyncs and hold them at a gate while it is closed.
    let gate = Gate::default();
    let g = gate.clone();
    fs.set_hook(Some(Arc::new(move |op, path: &Path| {
        if op == FaultOp::Sync && path.to_string_lossy().contains("segment-") {
            g.syncs.fetch_add(1, Ordering::SeqCst);
            while g.closed.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
        }
    })));
    gate.closed.store(true, Ordering::SeqCst);

    // The first writer becomes the leader and blocks in its fsync.
    let leader = {
        let store = store.clone();
        std::thread::spawn(move || store.put(b"leader").unwrap())
    };
    while gate.syncs.load(Ordering::SeqCst) == 0 {
        std::thread::yield_now();
    }
    // Seven more append while the leader's fsync is in flight.
    let followers = 7;
    let barrier = Arc::new(Barrier::new(followers));
    let handles: Vec<_> = (0..followers)
        .map(|i| {
            let store = store.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                store.put(format!("follower {i}").as_bytes()).unwrap()
            })
        })
        .collect();
    while store.stat().savesets < 1 + 1 + followers as u64 {
        std::thread::yield_now();
    }
    gate.closed.store(false, Ordering::SeqCst);
    assert!(leader.join().unwrap().new);
    for h in handles {
        assert!(h.join().unwrap().new);
    }
    // One fsync for the leader, one shared by all seven followers.
    assert_eq!(gate.syncs.load(Ordering::SeqCst), 2);
}

#[test]
fn put_many_stores_in_order_with_one_acknowledgement() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path().join("s"), &InitOptions::default()).unwrap();
    let first = store.put(b"already there").unwrap().id;
    let contents: Vec<Vec<u8>> = (0..50).map(|n| common::message(n, 700)).collect();
    let mut batch: Vec<&[u8]> = contents.iter().map(|c| c.as_slice()).collect();
    batch.push(b"already there");
    batch.push(contents[3].as_slice());
    let puts = store.put_many(&batch).unwrap();
    assert_eq!(puts.len(), 52);
    for (p, c) in puts.iter().zip(&batch) {
        assert_eq!(p.id, SavesetId::of(c));
        assert_eq!(store.get(&p.id).unwrap(), *c);
    }
    assert!(puts[..50].iter().all(|p| p.new));
    assert_eq!(puts[50].id, first);
    assert!(
        !puts[50].new && !puts[51].new,
        "duplicates inside and outside the batch"
    );
    assert_eq!(store.stat().savesets, 51);
}

#[test]
fn a_batch_of_many_steps_keeps_its_order_and_its_duplicates_apart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let store = Store::init(&path, &InitOptions::default()).unwrap();
    // About five steps, with copies of earlier items in later steps.
    let size = vaultstore::store::PUT_STEP_BYTES / 40;
    let contents: Vec<Vec<u8>> = (0..200).map(|n| common::message(n, size)).collect();
    let mut batch: Vec<&[u8]> = contents.iter().map(Vec::as_slice).collect();
    for n in (0..200).step_by(37) {
        batch.push(contents[n].as_slice());
    }
    let puts = store.put_many(&batch).unwrap();
    assert_eq!(puts.len(), batch.len());
    for (i, (p, c)) in puts.iter().zip(&batch).enumerate() {
        assert_eq!(p.id, SavesetId::of(c));
        assert_eq!(p.new, i < 200, "item {i}");
    }
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.stat().savesets, 200);
    for c in &contents {
        assert_eq!(store.get(&SavesetId::of(c)).unwrap(), *c);
    }
}
