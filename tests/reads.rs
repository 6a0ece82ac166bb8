//! Haystack's rule, counted through the file layer's seam: with all
//! metadata in memory, a `get` of a whole message costs one read of its
//! segment (a record over `READ_AHEAD_BYTES` a second one, since its
//! header says how long it is), and a split message one read for its
//! recipe and one per part.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use vaultstore::io::{FaultOp, FaultyFs};
use vaultstore::{InitOptions, OpenOptions, SavesetId, Store};

/// Plain content comfortably under the read-ahead once compressed.
const SMALL: usize = 48 << 10;

#[test]
fn a_get_reads_its_segment_once_a_record_and_a_split_message_once_a_part() {
    let msgs = common::corpus_messages().unwrap_or_else(|| {
        (0..200)
            .map(|n| common::message(n, 1000 + 300 * n as usize))
            .collect()
    });
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let fs = FaultyFs::new();
    let opts = || OpenOptions {
        vfs: Arc::new(fs.clone()),
        ..OpenOptions::default()
    };
    let store = Store::init_with(&dir, &InitOptions::default(), opts()).unwrap();
    let ids: Vec<SavesetId> = msgs.iter().map(|m| store.put(m).unwrap().id).collect();
    store.seal().unwrap();
    drop(store);
    let store = Store::open_with(&dir, opts()).unwrap();

    let reads = Arc::new(AtomicU64::new(0));
    let counter = reads.clone();
    fs.set_hook(Some(Arc::new(move |op, path| {
        let segment = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("segment-"));
        if op == FaultOp::Read && segment {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    })));
    let (mut plain, mut split) = (0, 0);
    for (m, id) in msgs.iter().zip(&ids) {
        reads.store(0, Ordering::SeqCst);
        assert_eq!(store.get(id).unwrap(), *m);
        let n = reads.load(Ordering::SeqCst);
        match vaultstore::parts::split(m) {
            None if m.len() <= SMALL => {
                assert_eq!(n, 1, "a plain message of {} bytes", m.len());
                plain += 1;
            }
            None => assert!(n <= 2, "a plain message of {} bytes: {n} reads", m.len()),
            Some(s) => {
                let big = s.parts.iter().filter(|p| p.len() > SMALL).count() as u64;
                let records = 1 + s.parts.len() as u64;
                assert!(
                    n <= records + big,
                    "a split message of {} parts: {n} reads",
                    s.parts.len()
                );
                split += 1;
            }
        }
    }
    eprintln!("{plain} plain messages read once each, {split} split messages once a part");
    assert!(plain > 20, "the corpus exercised the plain case");
}
