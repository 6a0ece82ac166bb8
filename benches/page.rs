//! The operator's page at archive scale: the store view and a page of the
//! segment list drawn for 100,000 segments, 100 million references and a
//! week of samples. Not criterion: it prints the median of five draws.
//! `cargo bench --bench page` (VAULTSTORE_SEGMENTS to change the count).
//!
//! It draws from figures, not from a built store (a store of 100,000
//! segments is 100,000 files); the handlers add only the store's own
//! `segments()` and `stat()`, which read memory.

use std::path::PathBuf;
use std::time::Instant;

use vaultstore::backup::{Pending, PendingExplained, PendingReason, SafetyCopies};
use vaultstore::metrics::Sample;
use vaultstore::partition::PartitionStat;
use vaultstore::service::view;
use vaultstore::{SegmentStat, SegmentState, Stat};

fn median_ms(mut f: impl FnMut() -> usize) -> (f64, usize) {
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..5 {
        let t = Instant::now();
        size = f();
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    (times[2], size)
}

fn main() {
    let n: usize = std::env::var("VAULTSTORE_SEGMENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let now = 1_800_000_000_000u64;
    let segments: Vec<SegmentStat> = (0..n)
        .map(|i| SegmentStat {
            id: i as u32 + 1,
            partition: (i % 3) as u32,
            state: if i + 1 == n {
                SegmentState::Active
            } else {
                SegmentState::Sealed
            },
            bytes: 128 << 20,
            savesets: 3000,
            logical_bytes: 180 << 20,
            dead_savesets: (i % 97) as u64 * 30,
            dead_bytes: (i % 97) as u64 * (1 << 20),
            parts: 200,
            archive_bit: i % 10 == 0,
            path: PathBuf::from(format!("p{}/segment-{:010}.sealed", i % 3, i + 1)),
            location: "local".into(),
            created_ms: now - (n - i) as u64 * 60_000,
            damage: None,
        })
        .collect();
    let stat = Stat {
        savesets: n as u64 * 3000,
        references: 100_000_000,
        segments: n as u64,
        stored_bytes: n as u64 * (128 << 20),
        ..Stat::default()
    };
    let counters = Pending {
        awaiting_index: 1200,
        awaiting_backup: 30_000,
        ready_for_post_processing: 4_500,
        remove_safety_copies: SafetyCopies::AfterBackup,
    };
    // One reason per segment awaiting backup, as a store behind on backups has.
    let reasons = (0..(n as u32).min(1_000))
        .map(|segment| PendingReason {
            reason: "awaiting_backup",
            detail: format!("segment {segment} was sealed and has never been backed up"),
            savesets: 30,
            oldest_ms: Some(now - 86_400_000),
            segment: Some(segment),
            items: Vec::new(),
        })
        .collect();
    let pending = PendingExplained { counters, reasons };
    let partitions: Vec<PartitionStat> = (0..3)
        .map(|id| PartitionStat {
            id,
            path: format!("/vault/p{id}"),
            state: "open".into(),
            bytes: n as u64 / 3 * (128 << 20),
            capacity: 0,
            free_bytes: Some(4 << 40),
            upload_error: None,
        })
        .collect();
    let samples: Vec<Sample> = (0..vaultstore::metrics::MAX_SAMPLES as u64)
        .map(|k| Sample {
            time_ms: now - (10_080 - k) * 60_000,
            savesets: k * 1000,
            references: k * 9000,
            logical_bytes: k << 30,
            stored_bytes: k << 29,
            dead_bytes: (k % 500) << 25,
            awaiting_index: k % 300,
            awaiting_backup: k % 900,
            ready: k % 50,
        })
        .collect();
    let since = now - 7 * 86_400_000;
    let (store_ms, store_bytes) = median_ms(|| {
        view::render_store(
            &stat,
            &pending,
            &segments,
            &partitions,
            &samples,
            "1w",
            since,
            now,
        )
        .len()
    });
    let mut list = segments.clone();
    let (list_ms, list_bytes) =
        median_ms(|| view::segment_page(&mut list, "dead", true, 7, now).len());
    println!(
        "page: store view for {n} segments, 100,000,000 references and {} samples: {store_ms:.1} ms, {} of HTML",
        samples.len(),
        vaultstore::units::format_bytes(store_bytes as u64)
    );
    println!(
        "page: one page of the segment list sorted by dead bytes: {list_ms:.1} ms, {}",
        vaultstore::units::format_bytes(list_bytes as u64)
    );
}
