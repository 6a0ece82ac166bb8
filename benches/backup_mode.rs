//! What backup mode costs: archiving new mail one item a call from 64
//! threads straight into the segments, then the same amount into the
//! message cache (backup mode on), then moving the cache into the segments
//! ("Processing message cache"). Prints each rate and the ratios.
//!
//! `cargo bench --bench backup_mode [-- --items N]`. One run on this
//! machine; the figures are in the README ("Backup mode").

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use vaultstore::jobs::schedule::ProcessRequest;
use vaultstore::{InitOptions, Store};

const THREADS: usize = 64;

/// Archive `n` new items (corpus mail made distinct) from 64 threads; seconds.
fn archive(store: &Store, corpus: &[Vec<u8>], tag: &str, n: usize) -> f64 {
    let next = AtomicUsize::new(0);
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let mut m = corpus[i % corpus.len()].clone();
                    m.extend_from_slice(format!("\r\nX-Bench: {tag} {i}\r\n").as_bytes());
                    store
                        .archive(&format!("{tag}{}", i % 100), &i.to_string(), &m, false)
                        .unwrap();
                }
            });
        }
    });
    t.elapsed().as_secs_f64()
}

fn main() {
    let items: usize = std::env::args()
        .skip_while(|a| a != "--items")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(6_000);
    let corpus = vaultstore::bench::generate_corpus(2_000, 5);
    let mb = (0..items)
        .map(|i| corpus[i % corpus.len()].len())
        .sum::<usize>() as f64
        / 1e6;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path().join("s"), &InitOptions::default()).unwrap();
    let direct = archive(&store, &corpus, "direct", items);
    store.backup_mode(Some(true)).unwrap();
    let cached = archive(&store, &corpus, "cached", items);
    let queue = std::fs::metadata(dir.path().join("s/message-cache/queue")).map_or(0, |m| m.len());
    store.backup_mode(Some(false)).unwrap();
    let t = Instant::now();
    store
        .run_request(&ProcessRequest::ProcessMessageCache)
        .unwrap();
    let processing = t.elapsed().as_secs_f64();
    assert!(store.verify().is_clean());
    println!("{items} new items of {mb:.0} MB each phase, one a call, {THREADS} threads:");
    let rate = |s: f64| format!("{:>7.0} items/s {:>6.1} MB/s", items as f64 / s, mb / s);
    println!("  archive into the segments      {}", rate(direct));
    println!(
        "  archive into the message cache {}  ({:.2} of direct; queue {:.0} MB)",
        rate(cached),
        direct / cached,
        queue as f64 / 1e6
    );
    println!("  processing the message cache   {}", rate(processing));
}
