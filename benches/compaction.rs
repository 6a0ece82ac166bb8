//! Compaction throughput beside a plain file copy of the same bytes.
//!
//! Not a criterion benchmark: compaction consumes its input, so it runs once
//! per pass on a store built for it and reports figures.
//! `cargo bench --bench compaction` (VAULTSTORE_COMPACTION_MB=512 by
//! default: stored bytes of the store to build). It measures, in one run:
//!
//! - plain copy: read every sealed segment file, write it to a new file,
//!   fdatasync it: this machine's sequential copy bandwidth for these bytes;
//! - drain: `redistribute --drain` of the same segments into another
//!   partition (everything live: the same bytes copied, through the engine);
//! - defrag: half the savesets purged, then `defrag` at threshold 0.5.
//!
//! Throughput is bytes read from victim segments per second, compared with
//! the faster of two plain copies; the target is at least half of it.

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use vaultstore::bench::generate_corpus;
use vaultstore::{InitOptions, Redistribution, Store};

fn plain_copy(store: &Store, to: &Path) -> (u64, Duration) {
    std::fs::create_dir_all(to).unwrap();
    let mut buf = vec![0u8; 8 << 20];
    let mut bytes = 0;
    let t = Instant::now();
    for seg in store.segments() {
        let mut src = std::fs::File::open(&seg.path).unwrap();
        let mut dst = std::fs::File::create(to.join(seg.path.file_name().unwrap())).unwrap();
        loop {
            let n = src.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            dst.write_all(&buf[..n]).unwrap();
            bytes += n as u64;
        }
        dst.sync_data().unwrap();
    }
    (bytes, t.elapsed())
}

/// Flush other dirty pages first, so a pass does not pay for earlier writes.
fn settle() {
    let _ = std::process::Command::new("sync").status();
}

fn mb_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

fn main() {
    let target_mb: u64 = std::env::var("VAULTSTORE_COMPACTION_MB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(512);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let store = Store::init(
        &path,
        &InitOptions {
            segment_bytes: 32 << 20,
            ..InitOptions::default()
        },
    )
    .unwrap();
    // Two mailboxes of distinct mail, interleaved so every segment holds both.
    let mut n = 0usize;
    while store.stat().stored_bytes < target_mb << 20 {
        let batch = generate_corpus(4096, n as u64);
        for m in &batch {
            let owner = if n.is_multiple_of(2) { "keep" } else { "purge" };
            store.archive(owner, &n.to_string(), m, false).unwrap();
            n += 1;
        }
    }
    store.seal().unwrap();
    let stored = store.stat().stored_bytes;
    println!(
        "store: {n} savesets, {:.1} MB in {} segments",
        stored as f64 / 1e6,
        store.segments().len()
    );

    settle();
    let (copy_bytes, copy_time) = plain_copy(&store, &dir.path().join("copy"));
    let copy_rate = mb_per_s(copy_bytes, copy_time);
    std::fs::remove_dir_all(dir.path().join("copy")).unwrap();

    store.partition_add(Path::new("second"), None).unwrap();
    settle();
    let drain = store.redistribute(Redistribution::Drain(0)).unwrap();
    let drain_bytes: u64 = drain.bytes_read;
    let drain_rate = drain.megabytes_per_second;

    store.delete("purge", None).unwrap();
    store.purge_trash(Duration::ZERO, None, None).unwrap();
    settle();
    let defrag = store.defrag(0.5).unwrap();

    // A second plain copy, so both sides see the same machine state.
    settle();
    let (copy2_bytes, copy2_time) = plain_copy(&store, &dir.path().join("copy2"));
    let copy2_rate = mb_per_s(copy2_bytes, copy2_time);
    // The faster copy run is the bandwidth to beat (the conservative ratio).
    let copy_best = copy_rate.max(copy2_rate);

    println!("| pass | bytes read | bytes written | reclaimed | MB/s | ratio to plain copy |");
    println!("| --- | --- | --- | --- | --- | --- |");
    println!(
        "| plain copy (read, write, fdatasync) | {copy_bytes} | {copy_bytes} | - | {copy_rate:.0} / {copy2_rate:.0} | 1.00 |"
    );
    println!(
        "| drain (all live) | {drain_bytes} | {} | {} | {drain_rate:.0} | {:.2} |",
        drain.bytes_written,
        drain.bytes_reclaimed,
        drain_rate / copy_best
    );
    println!(
        "| defrag (half dead, threshold 0.5) | {} | {} | {} | {:.0} | {:.2} |",
        defrag.bytes_read,
        defrag.bytes_written,
        defrag.bytes_reclaimed,
        defrag.megabytes_per_second,
        defrag.megabytes_per_second / copy_best
    );
    println!(
        "defrag write amplification: {:.3}",
        defrag.write_amplification.unwrap_or(0.0)
    );
    assert!(store.verify().is_clean());
}
