//! Sizing checked against itself: a tenth of a workload projects the whole
//! of it within 15%, on disk and on measured heap. The workload has
//! references in many mailboxes, split attachments and dead space (users
//! delete, the trash is purged, nothing journals). This binary counts every
//! allocation, so it holds this one test.

use vaultstore::heap::CountingAlloc;
use vaultstore::sizing::{Organisation, SELF_CHECK_LIMIT, sample_mail, size};

#[global_allocator]
static HEAP: CountingAlloc = CountingAlloc;

#[test]
fn a_tenth_of_the_workload_projects_its_disk_and_heap_within_15_percent() {
    let dir = tempfile::tempdir().unwrap();
    let mut org = Organisation::preset("small").unwrap();
    org.journaling = false;
    org.deletion_rate = 0.3;
    org.attachment_share = 0.3;
    org.recipients = 2.5;
    let mail = sample_mail(&org, None, 5000, 11).unwrap();
    let report = size(&org, &mail, dir.path(), "generated".into()).unwrap();
    let m = &report.measured;
    let c = &report.self_check;
    eprintln!(
        "sizing self-check: disk {:.1}% off, heap {:.1}% off ({} savesets, {} references, {} parts, {} dead bytes)",
        c.disk_error * 100.0,
        c.memory_error * 100.0,
        m.savesets,
        m.references,
        m.parts,
        m.dead_bytes
    );
    // The workload is what it claims to be.
    assert!(m.parts > 100, "split attachments: {}", m.parts);
    assert!(m.dead_bytes > 0, "deletions left dead space");
    assert!(
        m.savesets < m.messages,
        "some messages died with all their copies"
    );
    assert!(m.references as f64 > 1.5 * m.savesets as f64);
    assert!(
        m.heap_per_saveset > 30.0 && m.heap_per_reference > 30.0,
        "{m:?}"
    );
    // And a tenth of it projects the whole.
    assert!(c.disk_error < SELF_CHECK_LIMIT, "{c:?}");
    assert!(c.memory_error < SELF_CHECK_LIMIT, "{c:?}");
    assert!(!c.failed);
    // The projection has every figure a buyer needs, with its assumptions.
    let v = serde_json::to_value(&report).unwrap();
    for key in [
        "disk_bytes",
        "memory_bytes",
        "cores",
        "backup_bytes_per_day",
        "open_seconds",
    ] {
        assert!(v["projection"][key].as_f64().unwrap() > 0.0, "{key}: {v}");
    }
    assert!(v["self_check"]["disk_error"].is_number());
    assert!(report.projection.assumptions.len() >= 6);
    // Memory is most of what a buyer misses: references dominate it.
    let p = &report.projection;
    assert!(p.references * m.heap_per_reference > p.savesets * m.heap_per_saveset);
}
