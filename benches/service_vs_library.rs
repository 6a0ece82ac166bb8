//! The service beside the library underneath it, on the same content in
//! the same run: archiving new mail one item a call from 64 clients (HTTP:
//! `PUT /owners/O/items/I` on keep-alive connections; library: 64 threads
//! calling `Store::archive`), and reading 50 KiB messages (`GET
//! /savesets/ID` against `Store::get`). Prints each rate and the ratio.
//!
//! `cargo bench --bench service_vs_library [-- --items N]`. One run on
//! this machine; the figures are in the README ("Performance").

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use vaultstore::service::auth::{Access, token};
use vaultstore::{InitOptions, SavesetId, Store};

const CLIENTS: usize = 64;
const READ_BYTES: usize = 50 << 10;

/// Items handed out to `CLIENTS` workers until none is left; seconds taken.
fn run(items: usize, work: impl Fn(usize) + Sync) -> f64 {
    let next = AtomicUsize::new(0);
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..CLIENTS {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= items {
                        break;
                    }
                    work(i);
                }
            });
        }
    });
    t.elapsed().as_secs_f64()
}

/// A message of about `len` bytes, distinct for each `n` (and `phase`).
fn mail(phase: &str, n: usize, len: usize, corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut m = format!("X-Bench: {phase} {n}\r\n").into_bytes();
    while m.len() < len {
        m.extend_from_slice(&corpus[(n + m.len()) % corpus.len()]);
    }
    m.truncate(len.max(64));
    m
}

fn arg(name: &str, default: usize) -> usize {
    std::env::args()
        .skip_while(|a| a != name)
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let items = arg("--items", 6_000);
    let corpus = vaultstore::bench::generate_corpus(2_000, 11);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let store = Arc::new(Store::init(&path, &InitOptions::default()).unwrap());
    let rw = token(&path, Access::ReadWrite, false).unwrap();
    let served = common::serve(store.clone());
    let url = served.url.clone();
    // One connection pool shared by the workers: each request takes an
    // idle keep-alive connection (one per worker at most).
    let shared = reqwest::blocking::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .unwrap();
    let client = |_: usize| &shared;

    // Archive: the same sizes of new mail through each path.
    let sizes: Vec<usize> = corpus.iter().map(Vec::len).collect();
    let size = |i: usize| sizes[i % sizes.len()];
    let bytes: usize = (0..items).map(size).sum();
    let lib = run(items, |i| {
        let m = mail("lib", i, size(i), &corpus);
        store
            .archive(&format!("lib{}", i % 100), &i.to_string(), &m, false)
            .unwrap();
    });
    let http = run(items, |i| {
        let m = mail("http", i, size(i), &corpus);
        let r = client(i)
            .put(format!("{url}/owners/http{}/items/{i}", i % 100))
            .bearer_auth(&rw)
            .body(m)
            .send()
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    });
    let mb = bytes as f64 / 1e6;
    println!("archive, {items} new items of {mb:.0} MB, one a call, {CLIENTS} clients:");
    println!(
        "  library {:>8.0} items/s {:>7.1} MB/s",
        items as f64 / lib,
        mb / lib
    );
    println!(
        "  HTTP    {:>8.0} items/s {:>7.1} MB/s",
        items as f64 / http,
        mb / http
    );
    println!("  HTTP / library {:.2}", lib / http);

    // Get: 50 KiB messages, each read once a pass.
    let reads = items.min(4_000);
    let ids: Vec<SavesetId> = (0..reads)
        .map(|i| store.put(&mail("read", i, READ_BYTES, &corpus)).unwrap().id)
        .collect();
    store.seal().unwrap();
    let rmb = (reads * READ_BYTES) as f64 / 1e6;
    let lib = run(reads, |i| {
        assert_eq!(store.get(&ids[i]).unwrap().len(), READ_BYTES);
    });
    let http = run(reads, |i| {
        let r = client(i)
            .get(format!("{url}/savesets/{}", ids[i]))
            .bearer_auth(&rw)
            .send()
            .unwrap();
        assert_eq!(r.bytes().unwrap().len(), READ_BYTES);
    });
    println!("get, {reads} messages of 50 KiB ({rmb:.0} MB), {CLIENTS} clients:");
    println!(
        "  library {:>8.0} gets/s {:>7.1} MB/s",
        reads as f64 / lib,
        rmb / lib
    );
    println!(
        "  HTTP    {:>8.0} gets/s {:>7.1} MB/s",
        reads as f64 / http,
        rmb / http
    );
    println!("  HTTP / library {:.2}", lib / http);
    served.stop();
}
