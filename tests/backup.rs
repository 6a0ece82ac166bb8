//! Archive bits, backup, the pending counters and the post-processing feed,
//! end to end on the real corpus, checked against a model at each step.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use vaultstore::backup::{Cursor, SafetyCopies};
use vaultstore::{Error, InitOptions, SavesetId, Store};

/// Drain the whole feed from the acknowledged cursor in pages of `page`.
fn drain(store: &Store, page: usize) -> (Vec<SavesetId>, Cursor) {
    let mut ids = Vec::new();
    let mut after = None;
    loop {
        let p = store.feed(after, page).unwrap();
        if p.entries.is_empty() {
            return (ids, p.cursor);
        }
        ids.extend(p.entries.iter().map(|e| e.id.parse::<SavesetId>().unwrap()));
        after = Some(p.cursor);
    }
}

#[test]
fn archive_index_backup_feed_restore() {
    let Some(messages) = common::corpus_messages() else {
        return;
    };
    let (first, second) = messages.split_at(messages.len() / 2);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let dest = dir.path().join("backup");
    let store = Store::init(
        &path,
        &InitOptions {
            segment_bytes: 256 << 10,
            ..InitOptions::default()
        },
    )
    .unwrap();

    let mut stored: BTreeSet<SavesetId> = BTreeSet::new();
    for (n, m) in first.iter().enumerate() {
        stored.insert(
            store
                .archive("alice", &format!("a{n}"), m, false)
                .unwrap()
                .id,
        );
    }
    let d = stored.len() as u64;
    let p = store.pending();
    assert_eq!(
        (
            p.awaiting_index,
            p.awaiting_backup,
            p.ready_for_post_processing
        ),
        (d, d, 0)
    );
    assert_eq!(p.remove_safety_copies, SafetyCopies::AfterBackup);

    // The indexer catches up on half.
    let half: Vec<SavesetId> = stored.iter().take(stored.len() / 2).copied().collect();
    assert_eq!(store.mark_indexed(&half).unwrap(), half.len());
    assert_eq!(
        store.mark_indexed(&half).unwrap(),
        0,
        "marking twice changes nothing"
    );
    assert!(matches!(
        store.mark_indexed(&[SavesetId::of(b"unknown")]),
        Err(Error::NotFound(_))
    ));
    assert_eq!(store.pending().awaiting_index, d - half.len() as u64);

    // Only sealed segments can be marked; a wrong checksum is refused.
    let active = store
        .segments()
        .into_iter()
        .find(|s| s.state == vaultstore::SegmentState::Active)
        .unwrap();
    assert!(store.backup_mark(active.id, &"0".repeat(64)).is_err());
    store.seal().unwrap();
    let list = store.backup_list().unwrap();
    assert!(!list.is_empty());
    let err = store
        .backup_mark(list[0].segment, &"ab".repeat(32))
        .unwrap_err();
    assert!(matches!(err, Error::ChecksumMismatch { .. }), "{err}");

    // The built-in backup copies everything, then nothing more.
    let r = store.backup_run(&dest).unwrap();
    assert_eq!(r.copied_segments.len(), list.len());
    assert!(store.backup_list().unwrap().is_empty());
    assert!(store.backup_run(&dest).unwrap().copied_segments.is_empty());
    let p = store.pending();
    assert_eq!((p.awaiting_backup, p.ready_for_post_processing), (0, d));

    // The feed: pages of 7, every stored saveset once, with its references.
    let page = store.feed(None, 7).unwrap();
    assert_eq!(page.entries.len(), 7.min(d as usize));
    assert!(
        page.entries
            .iter()
            .all(|e| e.references.iter().any(|r| r.owner == "alice"))
    );
    store.feed_ack(page.cursor).unwrap();
    assert_eq!(
        store.pending().ready_for_post_processing,
        d - page.entries.len() as u64
    );
    let (rest, end) = drain(&store, 7);
    let mut fed: BTreeSet<SavesetId> = page.entries.iter().map(|e| e.id.parse().unwrap()).collect();
    fed.extend(rest.iter().copied());
    assert_eq!(fed, stored);
    assert!(
        store
            .feed_ack(Cursor {
                sequence: end.sequence + 1,
                index: 0
            })
            .is_err()
    );

    // Changing the setting now would strand ready items: refused.
    let err = store
        .set_safety_copies(SafetyCopies::Immediately)
        .unwrap_err();
    assert!(err.to_string().contains("not yet post-processed"), "{err}");
    store.feed_ack(end).unwrap();
    assert_eq!(store.pending().ready_for_post_processing, 0);

    // More mail, a second backup copies only the new segments.
    let before: BTreeSet<u32> = store
        .segments()
        .iter()
        .filter(|s| s.state == vaultstore::SegmentState::Sealed)
        .map(|s| s.id)
        .collect();
    let mut second_ids = BTreeSet::new();
    for (n, m) in second.iter().enumerate() {
        let id = store.archive("bob", &format!("b{n}"), m, false).unwrap().id;
        if !stored.contains(&id) {
            second_ids.insert(id);
        }
    }
    let m = second_ids.len() as u64;
    assert_eq!(store.pending().awaiting_backup, m);
    let r = store.backup_run(&dest).unwrap();
    assert!(
        r.copied_segments.iter().all(|s| !before.contains(s)),
        "old segments copied again"
    );
    assert_eq!(store.pending().ready_for_post_processing, m);
    drop(store);

    // State survives reopen.
    let store = Store::open(&path).unwrap();
    let p = store.pending();
    assert_eq!((p.awaiting_backup, p.ready_for_post_processing), (0, m));
    assert_eq!(p.awaiting_index, d - half.len() as u64 + m);
    let (fed2, end2) = drain(&store, 50);
    assert_eq!(fed2.into_iter().collect::<BTreeSet<_>>(), second_ids);
    store.feed_ack(end2).unwrap();

    // Now the switch is allowed; new savesets are ready as soon as stored.
    store.set_safety_copies(SafetyCopies::Immediately).unwrap();
    let fresh = store
        .archive("carol", "c0", b"Subject: fresh\r\n\r\nnew\r\n", false)
        .unwrap()
        .id;
    let p = store.pending();
    assert_eq!((p.ready_for_post_processing, p.awaiting_backup), (1, 1));
    let (fed3, _) = drain(&store, 10);
    assert_eq!(fed3, vec![fresh]);
    drop(store);

    // Restore: the backup is a store; copied back it opens and verifies clean.
    let restored = dir.path().join("restored");
    common::copy_dir(&dest, &restored);
    let r = Store::open(&restored).unwrap();
    assert!(r.verify().is_clean());
    // A restore is not a failure: the copied history holds only ended runs.
    let history = r.history_since(0);
    assert!(!history.is_empty());
    for e in &history {
        assert!(
            !matches!(e.status, vaultstore::jobs::history::Status::Failed(_)),
            "restored history shows a failure: {e:?}"
        );
    }
    for id in stored.iter().chain(&second_ids) {
        assert!(r.get(id).is_ok(), "saveset {id} missing from the backup");
    }
    assert_eq!(
        r.items("alice", None, usize::MAX).unwrap().len(),
        first.len()
    );
}

#[test]
fn killing_backup_run_between_copy_and_mark_redoes_the_work() {
    let mut rng = common::Rng(common::seed());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let dest = dir.path().join("backup");
    let mut ids = Vec::new();
    {
        let store = Store::init(
            &path,
            &InitOptions {
                segment_bytes: 64 << 10,
                ..InitOptions::default()
            },
        )
        .unwrap();
        for m in vaultstore::bench::generate_corpus(60, rng.next()) {
            ids.push(
                store
                    .archive("alice", &format!("{}", ids.len()), &m, false)
                    .unwrap()
                    .id,
            );
        }
    }
    let distinct = ids.iter().collect::<BTreeSet<_>>().len() as u64;
    for trial in 0..10 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vaultstore"))
            .args(["backup", "run", "--store"])
            .arg(&path)
            .arg("--to")
            .arg(&dest)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(rng.below(20_000)));
        let _ = child.kill();
        let _ = child.wait();
        let store = Store::open(&path).unwrap_or_else(|e| panic!("trial {trial}: {e}"));
        let p = store.pending();
        // Every saveset is either awaiting backup or ready, never both or lost.
        assert_eq!(
            p.awaiting_backup + p.ready_for_post_processing,
            distinct,
            "trial {trial}"
        );
    }
    let store = Store::open(&path).unwrap();
    store.backup_run(&dest).unwrap();
    let p = store.pending();
    assert_eq!(
        (p.awaiting_backup, p.ready_for_post_processing),
        (0, distinct)
    );
    drop(store);
    let restored = dir.path().join("restored");
    common::copy_dir(&dest, &restored);
    let r = Store::open(&restored).unwrap();
    assert!(r.verify().is_clean());
    for id in &ids {
        assert!(r.get(id).is_ok());
    }
}

#[test]
fn an_old_active_segment_is_sealed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    {
        let store = Store::init(
            &path,
            &InitOptions {
                seal_age_ms: 50,
                ..InitOptions::default()
            },
        )
        .unwrap();
        store.put(b"quiet store").unwrap();
        assert!(store.backup_list().unwrap().is_empty());
    }
    std::thread::sleep(Duration::from_millis(120));
    let store = Store::open(&path).unwrap();
    assert_eq!(
        store.backup_list().unwrap().len(),
        1,
        "aged segment sealed so it can be backed up"
    );
}

#[test]
fn ready_for_post_processing_counts_exactly_the_live_savesets_the_feed_lists() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(
        dir.path().join("s"),
        &InitOptions {
            segment_bytes: 64 << 10,
            ..InitOptions::default()
        },
    )
    .unwrap();
    // Real mail when present: 60 messages, each in one of three mailboxes.
    let mut mail = common::corpus_messages().unwrap_or_default();
    mail.truncate(30);
    mail.extend((0..60 - mail.len() as u64).map(|n| common::message(n, 3000)));
    let owners = ["alice", "bob", "carol"];
    for (n, m) in mail.iter().enumerate() {
        store
            .archive(owners[n % 3], &format!("m{n}"), m, false)
            .unwrap();
    }
    store.backup_run(&dir.path().join("backup")).unwrap();
    let before = store.pending().ready_for_post_processing;
    let distinct = store.stat().savesets;
    assert_eq!(before, distinct, "every backed-up saveset is ready");
    // Purge bob's mail after the backup: those savesets die.
    store.delete("bob", None).unwrap();
    store
        .purge_trash(Duration::ZERO, Some("bob"), None)
        .unwrap();
    let live = store.stat().savesets;
    assert!(live < distinct, "bob's savesets died");
    let ready = store.pending().ready_for_post_processing;
    assert_eq!(ready, live, "purged savesets still counted as ready");
    // The feed lists exactly those: every counted saveset, nothing dead.
    let (fed, end) = drain(&store, 7);
    assert_eq!(fed.len() as u64, ready);
    for id in &fed {
        assert!(store.has(id), "the feed lists dead saveset {id}");
        assert!(!store.refs(id).unwrap().is_empty());
    }
    let fed: BTreeSet<SavesetId> = fed.into_iter().collect();
    assert_eq!(
        fed,
        store.ids().unwrap().into_iter().collect::<BTreeSet<_>>()
    );
    // Acknowledged, nothing is ready; and it stays so after reopen.
    store.feed_ack(end).unwrap();
    assert_eq!(store.pending().ready_for_post_processing, 0);
    drop(store);
    let store = Store::open(dir.path().join("s")).unwrap();
    assert_eq!(store.pending().ready_for_post_processing, 0);
    assert!(store.feed(None, 100).unwrap().entries.is_empty());
}
