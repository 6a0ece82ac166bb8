//! The real corpus archived into three mailboxes: deleting and purging
//! mailboxes changes counts and dead bytes exactly, and what remains reads
//! back byte-identical after reopen.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use vaultstore::{InitOptions, SavesetId, Store};

#[test]
fn three_mailboxes_delete_purge_and_reopen() {
    let Some(messages) = common::corpus_messages() else {
        return;
    };
    let distinct: BTreeMap<SavesetId, &Vec<u8>> =
        messages.iter().map(|m| (SavesetId::of(m), m)).collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let mailboxes = ["alice@example.com", "bob@example.com", "journal"];
    {
        let store = Store::init(
            &path,
            &InitOptions {
                segment_bytes: 512 << 10,
                ..InitOptions::default()
            },
        )
        .unwrap();
        for (b, mailbox) in mailboxes.iter().enumerate() {
            for (n, m) in messages.iter().enumerate() {
                let a = store
                    .archive(mailbox, &format!("item-{n}"), m, false)
                    .unwrap();
                // Content is new only the first time it is seen anywhere.
                if b > 0 {
                    assert!(!a.new_content);
                }
            }
        }
        let st = store.stat();
        assert_eq!(st.references, 3 * messages.len() as u64);
        assert_eq!(st.owners, 3);
        assert_eq!(st.savesets, distinct.len() as u64);
        // Archiving again is idempotent.
        let again = store
            .archive(mailboxes[0], "item-0", &messages[0], false)
            .unwrap();
        assert!(!again.new_reference);
        assert_eq!(store.stat().references, st.references);
    }
    let store = Store::open(&path).unwrap();
    let before = store.stat();
    assert_eq!(before.references, 3 * messages.len() as u64);
    let first = SavesetId::of(&messages[0]);
    let holders: Vec<String> = store
        .refs(&first)
        .unwrap()
        .into_iter()
        .map(|r| r.owner)
        .collect();
    assert!(holders.len() >= 3, "{holders:?}");

    // Delete one mailbox and purge it: no saveset dies (two others hold them).
    store.delete(mailboxes[0], None).unwrap();
    assert_eq!(store.trash().unwrap().len(), messages.len());
    let r = store.purge_trash(Duration::ZERO, None, None).unwrap();
    assert_eq!(r.purged_references, messages.len() as u64);
    assert_eq!(r.dead_savesets, 0);
    assert_eq!(store.stat().dead_bytes, 0);
    assert_eq!(store.stat().owners, 2);

    // Delete the other two, put the journal on hold: purge keeps the journal.
    store.delete(mailboxes[1], None).unwrap();
    store.delete(mailboxes[2], None).unwrap();
    store.hold(mailboxes[2], None, true).unwrap();
    assert!(
        store
            .purge_trash(Duration::ZERO, Some(mailboxes[2]), None)
            .is_err()
    );
    let r = store.purge_trash(Duration::ZERO, None, None).unwrap();
    assert_eq!(r.purged_references, messages.len() as u64);
    assert_eq!(r.kept_on_hold, messages.len() as u64);
    assert_eq!(r.dead_savesets, 0);

    // Lift the hold and purge: every saveset dies, all saveset bytes are dead.
    store.hold(mailboxes[2], None, false).unwrap();
    let r = store.purge_trash(Duration::ZERO, None, None).unwrap();
    assert_eq!(r.dead_savesets, distinct.len() as u64);
    let st = store.stat();
    assert_eq!((st.savesets, st.references, st.owners), (0, 0, 0));
    assert!(!store.has(&first));
    assert!(store.get(&first).is_err());
    let saveset_record_bytes: u64 = distinct.len() as u64 * 64;
    assert!(
        st.dead_bytes > saveset_record_bytes,
        "dead bytes {}",
        st.dead_bytes
    );
    assert!(st.dead_bytes < st.stored_bytes);
    drop(store);

    // After reopen the catalog is exactly as acknowledged.
    let store = Store::open(&path).unwrap();
    let st2 = store.stat();
    assert_eq!((st2.savesets, st2.references, st2.owners), (0, 0, 0));
    assert_eq!(st2.dead_bytes, st.dead_bytes);
    assert_eq!(st2.dead_savesets, distinct.len() as u64);

    // Content archived again after it died is stored anew and readable.
    let a = store.archive("carol", "x", &messages[0], false).unwrap();
    assert!(a.new_content);
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.get(&first).unwrap(), messages[0]);
    assert!(store.verify().is_clean());
}

#[test]
fn partial_delete_keeps_remaining_items_readable_after_reopen() {
    let Some(messages) = common::corpus_messages() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    {
        let store = Store::init(&path, &InitOptions::default()).unwrap();
        for (n, m) in messages.iter().enumerate() {
            store
                .archive("alice", &format!("{n:04}"), m, false)
                .unwrap();
        }
        // Delete the even items and purge them.
        for n in (0..messages.len()).step_by(2) {
            store.delete("alice", Some(&format!("{n:04}"))).unwrap();
        }
        store
            .purge_trash(Duration::ZERO, Some("alice"), None)
            .unwrap();
    }
    let store = Store::open(&path).unwrap();
    let items = store.items("alice", None, usize::MAX).unwrap();
    assert_eq!(items.len(), messages.len() / 2);
    for it in &items {
        let n: usize = it.item.parse().unwrap();
        assert_eq!(n % 2, 1);
        let id: SavesetId = it.id.parse().unwrap();
        assert_eq!(store.get(&id).unwrap(), messages[n]);
    }
    // Paging: pages of 10 add up to the whole, in order.
    let mut after: Option<String> = None;
    let mut paged = Vec::new();
    loop {
        let page = store.items("alice", after.as_deref(), 10).unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|i| i.item.clone());
        paged.extend(page);
    }
    assert_eq!(paged, items);
}
