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

/// A message with a 300 KiB attachment (incompressible, like a PDF), as
/// stored split (the attachment a part shared by all variants) or, with its
/// transfer encoding renamed so nothing is split, whole.
fn attachment_message(n: u64, split: bool) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let attachment: Vec<u8> = (0..300 << 10)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let mut body = Vec::new();
    vaultstore::parts::encode_base64_lines(&attachment, 76, true, &mut body);
    let cte = if split { "base64" } else { "x-bs64" };
    let mut m = format!(
        "From: a@example.com\r\nTo: b@example.com\r\nSubject: contract {n:04}\r\nMessage-ID: <{n:04}@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nPlease find the contract attached.\r\n--b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: {cte}\r\n\r\n"
    )
    .into_bytes();
    m.extend_from_slice(&body);
    m.extend_from_slice(b"\r\n--b--\r\n");
    m
}

/// Reading a split message (recipe + part, rebuilt and hash-checked)
/// against reading a whole message of the same size.
fn get_split(c: &mut Criterion) {
    let mut g = c.benchmark_group("get_split_vs_whole");
    for split in [true, false] {
        let (_dir, store) = open_store();
        let ids: Vec<SavesetId> = (0..64)
            .map(|n| store.put(&attachment_message(n, split)).unwrap().id)
            .collect();
        assert_eq!(store.stat().parts, if split { 1 } else { 0 });
        let len = attachment_message(0, split).len();
        g.throughput(Throughput::Bytes(len as u64));
        let name = if split { "split" } else { "whole" };
        g.bench_function(BenchmarkId::new(name, "1t"), |b| {
            b.iter_custom(|iters| {
                timed_parallel(1, iters, |i| {
                    let got = store.get(&ids[i as usize % ids.len()]).unwrap();
                    assert_eq!(got.len(), len);
                })
            });
        });
    }
    g.finish();
}

criterion_group!(benches, put_new, put_duplicate, get, has, get_split);
criterion_main!(benches);
