//! Archiving latency through the service while a defragmentation rewrites
//! half the store, beside the same load with nothing running: 16 clients
//! PUT /owners/O/items/I; p50 and p99 of each phase, and their ratio.
//!
//! `cargo bench --bench service_load [-- --items N]`. One run on this
//! machine; the figures are in the README ("Inside the service").

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use vaultstore::service::auth::{Access, token};
use vaultstore::{InitOptions, Store};

const CLIENTS: usize = 16;

fn percentile(sorted: &[Duration], p: usize) -> f64 {
    sorted[(sorted.len() - 1) * p / 100].as_secs_f64() * 1e3
}

/// 16 clients archive `per_client` new items each; every latency.
fn archive_load(url: &str, rw: &str, phase: &str, per_client: usize) -> Vec<Duration> {
    let handles: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (url, rw, phase) = (url.to_string(), rw.to_string(), phase.to_string());
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::new();
                let corpus = vaultstore::bench::generate_corpus(per_client, 1000 + c as u64);
                corpus
                    .into_iter()
                    .enumerate()
                    .map(|(i, mut mail)| {
                        mail.extend_from_slice(format!("{phase}-{c}-{i}").as_bytes());
                        let t = Instant::now();
                        let r = client
                            .put(format!("{url}/owners/{phase}{c}/items/{i}"))
                            .bearer_auth(&rw)
                            .body(mail)
                            .send()
                            .expect("archive");
                        assert!(r.status().is_success(), "{}", r.status());
                        t.elapsed()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all: Vec<Duration> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort();
    all
}

fn main() {
    let items: usize = std::env::args()
        .skip_while(|a| a != "--items")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let store = Store::init(
        &path,
        &InitOptions {
            segment_bytes: 8 << 20,
            ..InitOptions::default()
        },
    )
    .unwrap();
    // Half of the store dies: every other owner's items are purged.
    let corpus = vaultstore::bench::generate_corpus(items, 7);
    let batch: Vec<(String, String, &[u8])> = corpus
        .iter()
        .enumerate()
        .map(|(i, m)| (format!("o{}", i % 100), i.to_string(), m.as_slice()))
        .collect();
    for chunk in batch.chunks(512) {
        let refs: Vec<(&str, &str, &[u8])> = chunk
            .iter()
            .map(|(o, i, m)| (o.as_str(), i.as_str(), *m))
            .collect();
        store.archive_many(&refs).unwrap();
    }
    for o in (0..100).step_by(2) {
        store.delete(&format!("o{o}"), None).unwrap();
    }
    store.purge_trash(Duration::ZERO, None, None).unwrap();
    store.seal().unwrap();
    let stat = store.stat();
    let rw = token(&path, Access::ReadWrite, false).unwrap();
    let store = Arc::new(store);
    let served = common::serve(store.clone());
    let url = served.url.clone();
    println!(
        "store: {} savesets, {} MB stored, {} MB dead ({:.0}%)",
        stat.savesets,
        stat.stored_bytes / 1_000_000,
        stat.dead_bytes / 1_000_000,
        stat.dead_bytes as f64 * 100.0 / stat.stored_bytes.max(1) as f64
    );
    let per_client = 150;
    let idle = archive_load(&url, &rw, "idle", per_client);
    let defrag = {
        let store = store.clone();
        std::thread::spawn(move || store.defrag(0.4).unwrap())
    };
    let busy = archive_load(&url, &rw, "busy", per_client);
    let still_running = !defrag.is_finished();
    let report = defrag.join().unwrap();
    println!(
        "defragmentation: {} segments rewritten, {} MB reclaimed in {:.1} s{}",
        report.segments_read.len(),
        report.bytes_reclaimed / 1_000_000,
        report.seconds,
        if still_running {
            " (ran through the whole busy phase)"
        } else {
            " (ended before the busy phase did)"
        }
    );
    let (p50i, p99i, p50b, p99b) = (
        percentile(&idle, 50),
        percentile(&idle, 99),
        percentile(&busy, 50),
        percentile(&busy, 99),
    );
    println!(
        "archive latency, {CLIENTS} clients, {} archives a phase:",
        idle.len()
    );
    println!("  nothing running       p50 {p50i:.2} ms  p99 {p99i:.2} ms");
    println!("  defragmentation runs  p50 {p50b:.2} ms  p99 {p99b:.2} ms");
    println!("  p99 ratio             {:.2}x", p99b / p99i);
    served.stop();
}
