//! The store's operating states: the read-only state (every write refused,
//! reads served, kept across a restart), through the library and the service.

mod common;

use std::time::Duration;

use common::server::Server;
use reqwest::StatusCode;
use serde_json::{Value, json};
use vaultstore::compaction::Redistribution;
use vaultstore::lifecycle::{Cursor, StateChange};
use vaultstore::{Error, InitOptions, Store};

/// A store of `segment_bytes` segments in a new directory, with `count`
/// items of alice archived (`len` bytes each); their saveset ids.
fn archived_store(
    segment_bytes: u64,
    count: u64,
    len: usize,
) -> (
    tempfile::TempDir,
    std::path::PathBuf,
    Store,
    Vec<vaultstore::SavesetId>,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let opts = InitOptions {
        segment_bytes,
        ..InitOptions::default()
    };
    let store = Store::init(&path, &opts).unwrap();
    let ids = (0..count)
        .map(|n| {
            store
                .archive("alice", &n.to_string(), &common::message(n, len), false)
                .unwrap()
                .id
        })
        .collect();
    (dir, path, store, ids)
}

fn refused<T: std::fmt::Debug>(what: &str, r: vaultstore::Result<T>) {
    match r {
        Err(Error::ReadOnlyState { .. }) => {}
        other => panic!("{what}: expected the read-only state's refusal, got {other:?}"),
    }
}

#[test]
fn the_read_only_state_refuses_every_write_keeps_reads_and_survives_a_reopen() {
    let (dir, path, store, ids) = archived_store(64 << 10, 40, 4_000);
    store.delete("alice", Some("3")).unwrap();
    store.seal().unwrap();
    let listed = store.backup_list().unwrap();
    assert!(!listed.is_empty());
    let before = store.stat();
    store.set_state(&read_only(true)).unwrap();
    drop(store);

    // The state is in the manifest: a restart keeps it.
    let store = Store::open(&path).unwrap();
    assert!(store.stat().read_only);
    assert!(store.unhealthy().unwrap().contains("read-only state"));
    let msg = common::message(999, 1_000);
    refused("put", store.put(&msg));
    refused("put_many", store.put_many(&[&msg]));
    refused("archive", store.archive("bob", "x", &msg, false));
    refused("link", store.link("bob", "x", &ids[0]));
    refused("link_many", store.link_many(&[("bob", "x", ids[0])]));
    refused("delete", store.delete("alice", Some("1")));
    refused("restore", store.restore("alice", Some("3")));
    refused("hold", store.hold("alice", None, true));
    refused("purge", store.purge_trash(Duration::ZERO, None, None));
    refused("seal", store.seal());
    refused("mark_indexed", store.mark_indexed(&ids[..1]));
    refused(
        "backup_mark",
        store.backup_mark(listed[0].segment, &listed[0].checksum),
    );
    refused("feed_ack", store.feed_ack(Cursor::default()));
    refused("defrag", store.defrag(0.0));
    refused("redistribute", store.redistribute(Redistribution::Balance));
    refused("backup_run", store.backup_run(&dir.path().join("copy")));
    // Nothing is due to the scheduler, and it says why.
    assert!(store.due_processes(0).is_empty());
    assert!(store.schedule().iter().all(|s| s.waits.is_some()));
    // Reads work, and nothing changed.
    for (n, id) in ids.iter().enumerate() {
        assert_eq!(store.get(id).unwrap(), common::message(n as u64, 4_000));
    }
    assert_eq!(store.items("alice", None, 100).unwrap().len(), 40);
    let during = store.stat();
    assert_eq!(
        (during.savesets, during.references, during.stored_bytes),
        (before.savesets, before.references, before.stored_bytes)
    );
    assert!(store.verify().is_clean());

    // Leaving the state lets writes through again.
    store.set_state(&read_only(false)).unwrap();
    assert!(!store.stat().read_only);
    assert!(store.put(&msg).unwrap().new);
    store.delete("alice", Some("1")).unwrap();
}

#[test]
fn the_service_answers_503_with_retry_after_and_healthz_names_the_state() {
    let server = Server::start(1 << 20);
    let c = reqwest::blocking::Client::new();
    let item = |i: &str| format!("{}/owners/alice/items/{i}", server.url);
    let put = |i: &str| {
        c.put(item(i))
            .bearer_auth(&server.rw)
            .body(common::message(7, 2_000))
            .send()
            .unwrap()
    };
    let r = put("1");
    assert!(r.status().is_success());
    let id = r.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let settings = |body: Value| {
        c.put(format!("{}/settings", server.url))
            .bearer_auth(&server.rw)
            .json(&body)
            .send()
            .unwrap()
    };
    let r = settings(json!({"read_only": true}));
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().unwrap()["read_only"], true);

    let r = put("2");
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()["retry-after"], "60");
    let v: Value = r.json().unwrap();
    assert_eq!(v["error"], "read_only_state", "{v}");
    let r = c
        .get(format!("{}/savesets/{id}", server.url))
        .bearer_auth(&server.ro)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().unwrap().to_vec(), common::message(7, 2_000));
    let r = c.get(format!("{}/healthz", server.url)).send().unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let v: Value = r.json().unwrap();
    assert!(
        v["reason"].as_str().unwrap().contains("read-only state"),
        "{v}"
    );
    // A read-only token cannot end the state; a read-write one can.
    let r = c
        .put(format!("{}/settings", server.url))
        .bearer_auth(&server.ro)
        .json(&json!({"read_only": false}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        settings(json!({"read_only": false})).status(),
        StatusCode::OK
    );
    assert!(put("2").status().is_success());
    let r = c.get(format!("{}/healthz", server.url)).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

/// The reasons `pending --explain` gives, by name.
fn reasons<'a>(
    e: &'a vaultstore::backup::PendingExplained,
    name: &str,
) -> Vec<&'a vaultstore::backup::PendingReason> {
    e.reasons.iter().filter(|r| r.reason == name).collect()
}

#[test]
fn pending_explain_names_each_reason_with_its_savesets() {
    let (_dir, _path, store, ids) = archived_store(8 << 10, 60, 6_000);
    // The first 20 are indexed; one sealed segment is backed up.
    store.mark_indexed(&ids[..20]).unwrap();
    let listed = store.backup_list().unwrap();
    assert!(listed.len() >= 3, "{} sealed segments", listed.len());
    store
        .backup_mark(listed[0].segment, &listed[0].checksum)
        .unwrap();
    let segments = store.segments();
    let e = store.pending_explained(5).unwrap();

    let index = reasons(&e, "awaiting_index");
    assert_eq!(index.len(), 1);
    assert_eq!(index[0].savesets, 40);
    assert_eq!(index[0].items.len(), 5);
    let unindexed: Vec<String> = ids[20..].iter().map(|i| i.to_string()).collect();
    assert!(index[0].items.iter().all(|i| unindexed.contains(i)));
    let first_unindexed_segment = segments
        .iter()
        .filter(|s| s.savesets > 0)
        .map(|s| s.created_ms)
        .min();
    assert!(index[0].oldest_ms >= first_unindexed_segment);

    // One reason per sealed segment not backed up, with its live savesets.
    let backup = reasons(&e, "awaiting_backup");
    let expected: Vec<(u32, u64)> = segments
        .iter()
        .filter(|s| s.state == vaultstore::SegmentState::Sealed && s.archive_bit && s.savesets > 0)
        .map(|s| (s.id, s.savesets))
        .collect();
    let got: Vec<(u32, u64)> = backup
        .iter()
        .map(|r| (r.segment.unwrap(), r.savesets))
        .collect();
    assert_eq!(got, expected);
    assert!(!got.iter().any(|(s, _)| *s == listed[0].segment));
    assert!(
        backup
            .iter()
            .all(|r| r.detail.contains("never been backed up"))
    );

    let active = reasons(&e, "segment_active");
    let active_seg = segments
        .iter()
        .find(|s| s.state == vaultstore::SegmentState::Active)
        .unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(
        (active[0].segment, active[0].savesets),
        (Some(active_seg.id), active_seg.savesets)
    );
    assert!(reasons(&e, "read_only_state").is_empty());

    // The backed-up segment's savesets are ready and wait for the feed.
    let feed = reasons(&e, "feed_not_acknowledged");
    assert_eq!(feed.len(), 1);
    let marked = segments
        .iter()
        .find(|s| s.id == listed[0].segment)
        .unwrap()
        .savesets;
    assert_eq!(feed[0].savesets, marked);
    assert_eq!(e.counters.ready_for_post_processing, marked);
    let page = store.feed(None, 5).unwrap();
    let first: Vec<String> = page.entries.iter().map(|x| x.id.clone()).collect();
    assert_eq!(feed[0].items, first);
    assert!(feed[0].detail.contains("cursor 0.0"));
    // Every one of the 60 is in exactly one segment reason or the feed.
    let in_segments: u64 = backup.iter().chain(&active).map(|r| r.savesets).sum();
    assert_eq!(in_segments + feed[0].savesets, 60);
    let segment_reasons = || backup.iter().chain(&active);
    assert!(segment_reasons().all(|r| r.items.len() as u64 == r.savesets.min(5)));
    let distinct: std::collections::HashSet<&String> =
        segment_reasons().flat_map(|r| &r.items).collect();
    assert_eq!(
        distinct.len(),
        segment_reasons().map(|r| r.items.len()).sum::<usize>()
    );

    // In the read-only state the active segment also waits for the state.
    store.set_state(&read_only(true)).unwrap();
    let e = store.pending_explained(0).unwrap();
    assert_eq!(reasons(&e, "read_only_state").len(), 1);
    assert!(reasons(&e, "read_only_state")[0].items.is_empty());
    store.set_state(&read_only(false)).unwrap();

    // Each reason goes when what it waits for is done.
    store.mark_indexed(&ids).unwrap();
    let all = store.feed(None, 1_000).unwrap();
    store.feed_ack(all.cursor).unwrap();
    for l in &listed[1..] {
        store.backup_mark(l.segment, &l.checksum).unwrap();
    }
    let e = store.pending_explained(5).unwrap();
    assert!(reasons(&e, "awaiting_index").is_empty());
    assert!(reasons(&e, "awaiting_backup").is_empty());
    assert_eq!(reasons(&e, "segment_active").len(), 1);
    // The marks made more savesets ready: the feed waits again, past the old cursor.
    let feed = reasons(&e, "feed_not_acknowledged");
    assert_eq!(feed.len(), 1);
    assert!(feed[0].detail.contains(&all.cursor.to_string()));
}

/// Set a file's modification time to `ms` (Unix ms).
fn set_mtime(path: &std::path::Path, ms: u64) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(std::time::UNIX_EPOCH + Duration::from_millis(ms))
        .unwrap();
}

/// Run "Processing file sync cache" as `maintain` does; its outcome.
fn file_sync_cache(store: &Store) -> String {
    let ran = store.maintain();
    let (_, outcome) = ran
        .iter()
        .find(|(p, _)| *p == vaultstore::jobs::ProcessType::FileSyncCache)
        .unwrap();
    outcome.as_ref().unwrap().clone()
}

#[test]
fn a_trigger_file_marks_the_segments_sealed_before_it_once() {
    use vaultstore::backup::TRIGGER_FILE;
    let (_dir, path, store, _) = archived_store(8 << 10, 40, 6_000);
    store.seal().unwrap();
    let sealed = store.backup_list().unwrap();
    assert!(sealed.len() >= 4, "{} sealed", sealed.len());
    // The older half was sealed two hours ago, the rest one hour ago.
    let now = vaultstore::units::now_ms();
    let half = sealed.len() / 2;
    for (i, s) in sealed.iter().enumerate() {
        set_mtime(&s.path, now - if i < half { 7_200_000 } else { 3_600_000 });
    }
    let partition_dir = sealed[0].path.parent().unwrap().to_path_buf();
    let trigger = partition_dir.join(TRIGGER_FILE);
    // A trigger written 90 minutes ago: older than the newer half.
    std::fs::write(&trigger, b"backup done").unwrap();
    set_mtime(&trigger, now - 5_400_000);

    // With archive-bit detection the trigger is not used.
    file_sync_cache(&store);
    assert!(trigger.exists());
    assert_eq!(store.backup_list().unwrap().len(), sealed.len());

    let trigger_detection = StateChange {
        backup_detection: Some(vaultstore::format::manifest::BackupDetection::Trigger),
        ..StateChange::default()
    };
    store.set_state(&trigger_detection).unwrap();
    let outcome = file_sync_cache(&store);
    assert!(
        outcome.contains(&format!("{half} segments marked backed up")),
        "{outcome}"
    );
    let left: Vec<u32> = store
        .backup_list()
        .unwrap()
        .iter()
        .map(|b| b.segment)
        .collect();
    let newer: Vec<u32> = sealed[half..].iter().map(|b| b.segment).collect();
    assert_eq!(left, newer);
    // Used once: renamed, and the history says what it did.
    assert!(!trigger.exists());
    let used = partition_dir.join(format!("IgnoreArchiveBitTrigger.{}.used", now - 5_400_000));
    assert!(used.exists());
    let history = store.history_since(0);
    assert!(
        history.iter().any(|h| h
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("trigger file of partition"))),
        "{history:?}"
    );
    // Their savesets are BackupComplete: ready for post-processing.
    let marked: u64 = store
        .segments()
        .iter()
        .filter(|s| !newer.contains(&s.id) && s.state == vaultstore::SegmentState::Sealed)
        .map(|s| s.savesets)
        .sum();
    assert_eq!(store.pending().ready_for_post_processing, marked);

    // A crash after the marks and before the rename uses the trigger again:
    // nothing is marked twice.
    std::fs::copy(&used, &trigger).unwrap();
    set_mtime(&trigger, now - 5_400_000);
    let outcome = file_sync_cache(&store);
    assert!(outcome.contains("0 segments marked backed up"), "{outcome}");
    assert_eq!(store.backup_list().unwrap().len(), newer.len());

    // A later trigger covers the rest, and the marks survive a reopen.
    std::fs::write(&trigger, b"backup done").unwrap();
    file_sync_cache(&store);
    assert!(store.backup_list().unwrap().is_empty());
    drop(store);
    let store = Store::open(&path).unwrap();
    assert!(store.backup_list().unwrap().is_empty());
    assert!(store.verify().is_clean());
}

fn read_only(on: bool) -> StateChange {
    StateChange {
        read_only: Some(on),
        ..StateChange::default()
    }
}
