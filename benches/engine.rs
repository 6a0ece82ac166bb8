//! The hot path: put of new content, put of a duplicate, has and get, at
//! 2 KiB, 50 KiB and 1 MiB of mail-like content, on one thread and on all
//! cores. Throughput is reported in bytes and in items per second.
//!
//! Run: `cargo bench --bench engine`. Put of new content includes the fsync
//! of the acknowledgement (group commit shares it across threads).

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rayon::prelude::*;
use vaultstore::bench::generate_corpus;
use vaultstore::{InitOptions, SavesetId, Store};

const SIZES: &[(&str, usize)] = &[("2KiB", 2 << 10), ("50KiB", 50 << 10), ("1MiB", 1 << 20)];

/// Mail-like content of `len` bytes: generated messages glued together,
/// with a unique first line so every call gives new content.
struct Content {
    base: Vec<u8>,
}

impl Content {
    fn new(len: usize) -> Self {
        let mut base = Vec::with_capacity(len);
        for m in generate_corpus(64, 11) {
            base.extend_from_slice(&m);
            if base.len() >= len {
                break;
            }
        }
        base.truncate(len);
        Content { base }
    }
    fn variant(&self, n: u64) -> Vec<u8> {
        let mut v = self.base.clone();
        let tag = format!("X-Serial: {n:020}\r\n");
        let k = tag.len().min(v.len());
        v[..k].copy_from_slice(&tag.as_bytes()[..k]);
        v
    }
}

fn threads_options() -> Vec<usize> {
    let all = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    if all > 1 { vec![1, all] } else { vec![1] }
}

fn open_store() -> (tempfile::TempDir, Arc<Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path().join("s"), &InitOptions::default()).unwrap();
    (dir, Arc::new(store))
}

/// Run `per_item` for `n` items on `threads` threads; total wall time.
fn timed_parallel(threads: usize, n: u64, per_item: impl Fn(u64) + Sync + Send) -> Duration {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let start = Instant::now();
    pool.install(|| (0..n).into_par_iter().for_each(&per_item));
    start.elapsed()
}

fn put_new(c: &mut Criterion) {
    let mut g = c.benchmark_group("put_new");
    g.sample_size(10);
    for &(name, len) in SIZES {
        let content = Content::new(len);
        for threads in threads_options() {
            g.throughput(Throughput::Bytes(len as u64));
            g.bench_function(BenchmarkId::new(name, format!("{threads}t")), |b| {
                let (_dir, store) = open_store();
                let mut serial = 0u64;
                b.iter_custom(|iters| {
                    let start = serial;
                    serial += iters;
                    let contents: Vec<Vec<u8>> =
                        (start..start + iters).map(|n| content.variant(n)).collect();
                    timed_parallel(threads, iters, |i| {
                        store.put(&contents[i as usize]).unwrap();
                    })
                });
            });
        }
    }
    g.finish();
}

fn put_duplicate(c: &mut Criterion) {
    let mut g = c.benchmark_group("put_duplicate");
    for &(name, len) in SIZES {
        let content = Content::new(len).variant(0);
        let (_dir, store) = open_store();
        store.put(&content).unwrap();
        for threads in threads_options() {
            g.throughput(Throughput::Bytes(len as u64));
            g.bench_function(BenchmarkId::new(name, format!("{threads}t")), |b| {
                b.iter_custom(|iters| {
                    timed_parallel(threads, iters, |_| {
                        assert!(!store.put(&content).unwrap().new);
                    })
                });
            });
        }
    }
    g.finish();
}

fn get(c: &mut Criterion) {
    let mut g = c.benchmark_group("get");
    for &(name, len) in SIZES {
        let content = Content::new(len);
        let (_dir, store) = open_store();
        let count = (64 << 20) / len.max(1) as u64;
        let ids: Vec<SavesetId> = (0..count.clamp(16, 4096))
            .into_par_iter()
            .map(|n| store.put(&content.variant(n)).unwrap().id)
            .collect();
        for threads in threads_options() {
            g.throughput(Throughput::Bytes(len as u64));
            g.bench_function(BenchmarkId::new(name, format!("{threads}t")), |b| {
                b.iter_custom(|iters| {
                    timed_parallel(threads, iters, |i| {
                        let got = store.get(&ids[i as usize % ids.len()]).unwrap();
                        assert_eq!(got.len(), len);
                    })
                });
            });
        }
    }
    g.finish();
}

fn has(c: &mut Criterion) {
    let content = Content::new(2 << 10);
    let (_dir, store) = open_store();
    let ids: Vec<SavesetId> = (0..4096u64)
        .into_par_iter()
        .map(|n| store.put(&content.variant(n)).unwrap().id)
        .collect();
    let absent = SavesetId::of(b"absent");
    let mut g = c.benchmark_group("has");
    for threads in threads_options() {
        g.throughput(Throughput::Elements(1));
        g.bench_function(
            BenchmarkId::new("present_and_absent", format!("{threads}t")),
            |b| {
                b.iter_custom(|iters| {
                    timed_parallel(threads, iters, |i| {
                        let id = if i % 2 == 0 {
                            &ids[i as usize % ids.len()]
                        } else {
                            &absent
                        };
                        std::hint::black_box(store.has(id));
                    })
                });
            },
        );
    }
    g.finish();
}

criterion_group!(benches, put_new, put_duplicate, get, has);
criterion_main!(benches);
