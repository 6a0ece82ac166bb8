//! The real-mail corpus goes in and comes back byte for byte.

mod common;

use std::collections::HashMap;

use vaultstore::{InitOptions, SavesetId, Store};

#[test]
fn every_corpus_message_round_trips_across_reopen_and_dedups() {
    let Some(messages) = common::corpus_messages() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    // Small segments so the corpus spans many sealed segments and an active one.
    let opts = InitOptions {
        segment_bytes: 256 << 10,
        ..InitOptions::default()
    };
    let mut expected: HashMap<SavesetId, &[u8]> = HashMap::new();
    {
        let store = Store::init(&path, &opts).unwrap();
        for m in &messages {
            let put = store.put(m).unwrap();
            assert_eq!(put.id, SavesetId::of(m));
            assert_eq!(put.new, !expected.contains_key(&put.id));
            expected.insert(put.id, m);
        }
        assert!(
            store.segments().len() > 2,
            "corpus should span several segments"
        );
    }
    let store = Store::open(&path).unwrap();
    assert!(
        store.recovery_report().is_empty(),
        "{:?}",
        store.recovery_report()
    );
    let before = store.stat();
    assert_eq!(before.savesets, expected.len() as u64);
    for (id, content) in &expected {
        assert_eq!(store.get(id).unwrap(), *content, "saveset {id}");
    }
    // A second put of the whole corpus stores nothing new.
    for m in &messages {
        assert!(!store.put(m).unwrap().new);
    }
    let after = store.stat();
    assert_eq!(after.stored_bytes, before.stored_bytes);
    assert_eq!(after.savesets, before.savesets);
    assert!(store.verify().is_clean());
    // Real mail compresses: stored bytes are below the distinct logical bytes.
    let distinct: u64 = expected.values().map(|c| c.len() as u64).sum();
    assert_eq!(after.logical_bytes, distinct);
    assert!(after.stored_bytes < distinct);
}
