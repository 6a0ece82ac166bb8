//! Structure-aware: arbitrary sequences of store operations, checked against
//! a map. Includes cutting the active segment short (a crash with a torn
//! tail), after which every saveset acknowledged before the cut must remain,
//! and defragmentation, after which every live saveset must remain.
#![no_main]

use std::collections::HashMap;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use vaultstore::{InitOptions, SavesetId, SegmentState, Store};

#[derive(Arbitrary, Debug)]
enum Op {
    Put(Vec<u8>),
    /// A MIME message with one of three attachments (stored split, the
    /// attachment shared with other messages).
    PutMime(u8, u16),
    PutCopy(u8),
    Get(u8),
    Seal,
    Reopen,
    /// Reopen after cutting this many bytes off the active segment.
    CrashTorn(u16),
    /// Catalog changes on a small name space; results are checked for
    /// consistency with a reopened store rather than predicted.
    Archive(u8, u8, u8),
    Delete(u8, Option<u8>),
    Purge(u8),
    Restore(u8),
    Hold(u8, bool),
    /// Lifecycle: mark indexed, back up a sealed segment, read and ack the feed.
    MarkIndexed(u8),
    BackupFirst,
    FeedAck(u8),
    /// Defragment every sealed segment with a dead record (threshold 0).
    Defrag,
}

fn mime_message(attachment: u8, serial: u16) -> Vec<u8> {
    let data: Vec<u8> = (0..9000u32).map(|i| (i.wrapping_mul(2654435761) >> (8 + attachment)) as u8).collect();
    let mut body = Vec::new();
    vaultstore::parts::encode_base64_lines(&data, 76, true, &mut body);
    let mut m = format!("From: a{serial}@example.com\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nmessage {serial}\r\n--b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n").into_bytes();
    m.extend_from_slice(&body);
    m.extend_from_slice(b"\r\n--b--\r\n");
    m
}

fuzz_target!(|ops: Vec<Op>| {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let opts = InitOptions { segment_bytes: 4096, ..InitOptions::default() };
    let mut store = Some(Store::init(&path, &opts).unwrap());
    let mut model: HashMap<SavesetId, Vec<u8>> = HashMap::new();
    let mut order: Vec<SavesetId> = Vec::new();
    for op in ops.into_iter().take(64) {
        let s = store.as_ref().unwrap();
        match op {
            Op::Put(bytes) => {
                let put = s.put(&bytes).unwrap();
                assert_eq!(put.new, !model.contains_key(&put.id));
                if put.new {
                    order.push(put.id);
                }
                model.insert(put.id, bytes);
            }
            Op::PutMime(which, serial) => {
                let bytes = mime_message(which % 3, serial);
                let put = s.put(&bytes).unwrap();
                assert_eq!(put.new, !model.contains_key(&put.id));
                if put.new {
                    order.push(put.id);
                }
                model.insert(put.id, bytes);
            }
            Op::PutCopy(i) => {
                if let Some(id) = order.get(i as usize % order.len().max(1)) {
                    let c = model[id].clone();
                    assert!(!s.put(&c).unwrap().new);
                }
            }
            Op::Get(i) => {
                if let Some(id) = order.get(i as usize % order.len().max(1)) {
                    assert_eq!(&s.get(id).unwrap(), &model[id]);
                }
            }
            Op::Seal => {
                s.seal().unwrap();
            }
            Op::Reopen => {
                drop(store.take());
                store = Some(Store::open(&path).unwrap());
            }
            Op::Archive(owner, item, which) => {
                if let Some(id) = order.get(which as usize % order.len().max(1)) {
                    let c = model[id].clone();
                    let _ = s.archive(&format!("o{}", owner % 3), &format!("i{}", item % 4), &c, which % 2 == 0);
                }
            }
            Op::Delete(owner, item) => {
                let _ = s.delete(&format!("o{}", owner % 3), item.map(|i| format!("i{}", i % 4)).as_deref());
            }
            Op::Purge(owner) => {
                let scope = (owner % 4 < 3).then(|| format!("o{}", owner % 4));
                let _ = s.purge_trash(std::time::Duration::ZERO, scope.as_deref(), None);
            }
            Op::Restore(owner) => {
                let _ = s.restore(&format!("o{}", owner % 3), None);
            }
            Op::Hold(owner, on) => {
                let _ = s.hold(&format!("o{}", owner % 3), None, on);
            }
            Op::MarkIndexed(i) => {
                if let Some(id) = order.get(i as usize % order.len().max(1)) {
                    s.mark_indexed(&[*id]).unwrap();
                }
            }
            Op::BackupFirst => {
                if let Some(e) = s.backup_list().unwrap().first() {
                    s.backup_mark(e.segment, &e.checksum).unwrap();
                }
            }
            Op::FeedAck(n) => {
                let page = s.feed(None, n as usize).unwrap();
                assert!(page.entries.len() <= n as usize);
                s.feed_ack(page.cursor).unwrap();
            }
            Op::Defrag => {
                s.defrag(0.0).unwrap();
                assert_eq!(
                    s.segments().iter().filter(|g| g.state == SegmentState::Sealed && g.dead_bytes > 0).count(),
                    s.defrag(0.0).unwrap().skipped.len(),
                    "a second pass finds only segments it must skip"
                );
            }
            Op::CrashTorn(cut) => {
                let active = s.segments().into_iter().find(|g| g.state == SegmentState::Active);
                drop(store.take());
                if let Some(a) = active {
                    let f = std::fs::OpenOptions::new().write(true).open(&a.path).unwrap();
                    let len = f.metadata().unwrap().len();
                    f.set_len(len.saturating_sub(cut as u64).max(64)).unwrap();
                }
                let reopened = Store::open(&path).unwrap();
                // The active segment holds the newest records, so what the cut
                // loses is a suffix of the acknowledgement order.
                let kept = order.iter().take_while(|id| reopened.has(id)).count();
                assert!(order[kept..].iter().all(|id| !reopened.has(id)));
                for id in order.drain(kept..) {
                    model.remove(&id);
                }
                store = Some(reopened);
            }
        }
        // A purge or a replacement may have killed content: it leaves the model.
        let s = store.as_ref().unwrap();
        let dead: Vec<SavesetId> = order.iter().filter(|id| !s.has(id)).copied().collect();
        for id in dead {
            assert_eq!(s.ref_count(&id).unwrap(), 0, "a referenced saveset died");
            model.remove(&id);
        }
        order.retain(|id| model.contains_key(id));
    }
    let s = store.unwrap();
    for (id, c) in &model {
        assert_eq!(&s.get(id).unwrap(), c);
    }
    assert!(s.verify().is_clean());
    // The catalog replays to the same state.
    let (owners, trash, stat, s_pending) = (s.owners().unwrap(), s.trash().unwrap(), s.stat(), s.pending());
    let (parts, part_bytes, dead_bytes) = (stat.parts, stat.part_bytes, stat.dead_bytes);
    drop(s);
    let r = Store::open(&path).unwrap();
    assert_eq!(r.owners().unwrap(), owners);
    assert_eq!(r.trash().unwrap(), trash);
    assert_eq!(r.stat().references, stat.references);
    assert_eq!(r.stat().savesets, stat.savesets);
    // Part counts and dead bytes are rebuilt to the same figures.
    assert_eq!((r.stat().parts, r.stat().part_bytes), (parts, part_bytes));
    assert_eq!(r.stat().dead_bytes, dead_bytes);
    let pending = s_pending;
    assert_eq!(r.pending(), pending);
});
