//! Catalog at scale: memory per reference and open time with many references,
//! by a full replay and from a checkpoint generation of the sync caches
//! (heap counted by the allocator, RSS beside it; the last line is JSON).
//!
//! Not a criterion benchmark: it builds one large store and reports figures.
//! `cargo bench --bench catalog_scale` (VAULTSTORE_REFS=10000000 by default;
//! set it lower for a quick look). Each saveset is referenced from three
//! mailboxes of about 1,000 items each (1,000 to 100,000 mailboxes).
//!
//! From the generation it also measures: `items` of a 1,000-item mailbox
//! and `refs` of a saveset from a cold page cache (the store's files
//! dropped from it before the open, then random mailboxes and savesets,
//! p50 and p99); an open with 1,000,000 references linked after the
//! generation; `link_many` while a generation is written; and the disk's
//! sequential write rate (1 GiB written and fsynced) beside the
//! generation's. `VAULTSTORE_ENCRYPT=1` runs it all on an encrypted store
//! (sealed segments and sealed generations; the keys derived once, so no
//! open is timed with the KDF).

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use vaultstore::heap::{CountingAlloc, live_bytes};
use vaultstore::{InitOptions, SavesetId, Store};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// How every open of the run unlocks the store (keys, when encrypted).
static UNLOCK: OnceLock<vaultstore::crypto::Unlock> = OnceLock::new();

/// The store, encrypted under `VAULTSTORE_ENCRYPT=1`; its keys kept for
/// every later open.
fn init(path: &std::path::Path) -> Store {
    let encrypt = std::env::var("VAULTSTORE_ENCRYPT").is_ok_and(|v| v == "1");
    let pass = || vaultstore::crypto::Passphrase::new(b"catalog scale".to_vec()).unwrap();
    let opts = InitOptions {
        encryption: encrypt.then(|| vaultstore::crypto::Encryption {
            passphrase: Arc::new(pass()),
            kdf: vaultstore::format::key_file::KdfParams {
                memory_kib: 64,
                iterations: 1,
                parallelism: 1,
            },
        }),
        ..InitOptions::default()
    };
    let store = Store::init(path, &opts).unwrap();
    let unlock = if encrypt {
        let ring = vaultstore::crypto::KeyRing::new(
            &vaultstore::io::StdFs,
            path,
            store.manifest().store_id,
        );
        vaultstore::crypto::Unlock::Keys(Arc::new(ring.unlock(&pass()).unwrap()))
    } else {
        vaultstore::crypto::Unlock::Nothing
    };
    let _ = UNLOCK.set(unlock);
    store
}

/// Open options of the run: from the sync cache when there is one.
fn from_generation() -> vaultstore::OpenOptions {
    vaultstore::OpenOptions {
        unlock: UNLOCK.get().cloned().unwrap_or_default(),
        ..vaultstore::OpenOptions::default()
    }
}

fn rss_bytes() -> u64 {
    // Resident set from /proc (Linux); 0 elsewhere.
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

fn main() {
    // `cargo bench` passes --bench; ignore arguments.
    let refs: usize = std::env::var("VAULTSTORE_REFS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000);
    let copies = 3usize;
    let savesets = refs.div_ceil(copies);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let store = init(&path);

    let t = Instant::now();
    let mut ids: Vec<SavesetId> = Vec::with_capacity(savesets);
    for chunk in (0..savesets).collect::<Vec<_>>().chunks(20_000) {
        let contents: Vec<Vec<u8>> = chunk
            .iter()
            .map(|n| format!("Message-ID: <{n}@bench>\r\n\r\nbody {n}\r\n").into_bytes())
            .collect();
        let refs: Vec<&[u8]> = contents.iter().map(|c| c.as_slice()).collect();
        ids.extend(store.put_many(&refs).unwrap().into_iter().map(|p| p.id));
    }
    let put_s = t.elapsed().as_secs_f64();
    // The indexer has indexed them, as in an archive at rest: nothing is
    // pending IndexCommitted (pending savesets cost heap until then).
    for chunk in ids.chunks(100_000) {
        store.mark_indexed(chunk).unwrap();
    }
    // Open time with savesets only (sealed footers plus the active scan),
    // then the index's heap: replayed, and mapped from a generation.
    drop(store);
    let (store, open_savesets_s, index_heap_replay) = timed_open(&path, replaying());
    assert_eq!(store.stat().savesets, savesets as u64);
    let (_, has_owned_per_s) = has_rate(&store, &ids);
    checkpoint_now(&store);
    drop(store);
    let (store, open_savesets_mapped_s, index_heap_mapped) = timed_open(&path, from_generation());
    assert_eq!(store.stat().savesets, savesets as u64);
    let (has_first_touch_per_s, has_per_s) = has_rate(&store, &ids);
    let rss_before = rss_bytes();
    let catalog_before = store.stat().catalog_bytes;

    // Beyond 20 million references a catalog replayed whole does not fit
    // in memory: generations are written back to back while linking (as
    // the service's schedule would), and no full replay is measured.
    let big = refs > 20_000_000;
    let t = Instant::now();
    let batch = 20_000;
    let mailboxes: Vec<String> = (0..(refs / 1000).clamp(1000, 100_000))
        .map(|m| format!("user{m:06}@example.com"))
        .collect();
    let linking_done = std::sync::atomic::AtomicBool::new(false);
    let added = std::thread::scope(|scope| {
        if big {
            scope.spawn(|| {
                while !linking_done.load(std::sync::atomic::Ordering::Relaxed) {
                    checkpoint_now(&store);
                }
            });
        }
        let mut added = 0usize;
        let mut pending: Vec<(usize, usize)> = Vec::with_capacity(batch);
        for n in 0..refs {
            pending.push((n % savesets, n));
            if pending.len() == batch || n + 1 == refs {
                let items: Vec<String> = pending
                    .iter()
                    .map(|&(_, k)| format!("<{k:010}@mail.example.com>"))
                    .collect();
                let refs: Vec<(&str, &str, SavesetId)> = pending
                    .iter()
                    .zip(&items)
                    .map(|(&(s, k), item)| {
                        (
                            mailboxes[k % mailboxes.len()].as_str(),
                            item.as_str(),
                            ids[s],
                        )
                    })
                    .collect();
                added += store.link_many(&refs).unwrap();
                pending.clear();
            }
        }
        linking_done.store(true, std::sync::atomic::Ordering::Relaxed);
        added
    });
    let link_s = t.elapsed().as_secs_f64();
    let rss_after = rss_bytes();
    let stat = store.stat();
    assert_eq!(added, refs);
    assert_eq!(stat.references, refs as u64);

    // A generation of everything, then opens: by a full replay, and from it.
    let t = Instant::now();
    let report = checkpoint_now(&store);
    let checkpoint_s = t.elapsed().as_secs_f64();
    let checkpoint_bytes: u64 = report["files"]
        .as_array()
        .map(|f| f.iter().filter_map(|f| f["bytes"].as_u64()).sum())
        .unwrap_or(0);
    drop(store);
    let (open_s, heap_replay) = if big {
        (f64::NAN, 0)
    } else {
        let (reopened, open_s, heap_replay) = timed_open(&path, replaying());
        assert_eq!(reopened.stat().references, refs as u64);
        (open_s, heap_replay)
    };
    drop_cached(&path);
    let (from_checkpoint, open_checkpoint_s, heap_checkpoint) =
        timed_open(&path, from_generation());
    let rss_checkpoint = rss_bytes();
    let st = from_checkpoint.stat();
    assert!(st.checkpoint_sequence > 0);
    assert_eq!(st.references, refs as u64);
    let cold = cold_lookups(&from_checkpoint, &mailboxes, &ids);
    let (has_cold_per_s, has_checkpoint_per_s) = has_rate(&from_checkpoint, &ids);

    // A million references after the generation, while the next one is
    // written; then an open that replays them over it.
    let after = 1_000_000usize;
    let (link_during_per_s, second_checkpoint_s) =
        link_during_checkpoint(&from_checkpoint, &mailboxes, &ids, after);
    drop(from_checkpoint);
    let (reopened_after, open_after_s, heap_after) = timed_open(&path, from_generation());
    assert_eq!(reopened_after.stat().references, (refs + after) as u64);
    drop(reopened_after);
    let disk_write_bytes_per_s = disk_write_rate(&path);

    println!(
        "catalog scale: {refs} references to {savesets} savesets from {} mailboxes",
        mailboxes.len()
    );
    println!("  put of savesets         {put_s:.1} s");
    println!(
        "  open with {savesets} savesets, no references: {open_savesets_s:.2} s replayed, {open_savesets_mapped_s:.2} s from a generation"
    );
    println!(
        "  heap after that open      {:.1} MB replayed ({:.1} bytes/saveset), {:.1} MB with the index mapped ({:.2} bytes/saveset)",
        index_heap_replay as f64 / 1e6,
        index_heap_replay as f64 / savesets as f64,
        index_heap_mapped as f64 / 1e6,
        index_heap_mapped as f64 / savesets as f64
    );
    println!(
        "  has, one thread           {has_owned_per_s:.0}/s on the replayed index, {has_per_s:.0}/s mapped ({:.2}x); the mapped one's first pass {has_first_touch_per_s:.0}/s",
        has_per_s / has_owned_per_s
    );
    println!(
        "  link_many (batches of {batch}) {link_s:.1} s, {:.0} references/s",
        refs as f64 / link_s
    );
    println!(
        "  catalog memory (estimate) {:.0} bytes/reference",
        (stat.catalog_bytes - catalog_before) as f64 / refs as f64
    );
    println!(
        "  resident memory growth    {:.0} bytes/reference",
        rss_after.saturating_sub(rss_before) as f64 / refs as f64
    );
    println!(
        "  index memory              {:.1} bytes/saveset",
        stat.index_bytes as f64 / stat.savesets as f64
    );
    println!("  open (replay)             {open_s:.2} s");
    println!(
        "  checkpoint written        {checkpoint_s:.2} s, {:.1} MB ({:.0} bytes/reference)",
        checkpoint_bytes as f64 / 1e6,
        checkpoint_bytes as f64 / refs as f64
    );
    println!(
        "  open from the checkpoint  {open_checkpoint_s:.2} s ({:.2}x the replay)",
        open_checkpoint_s / open_s
    );
    println!(
        "  heap after open           {:.0} MB replayed, {:.0} MB from the checkpoint ({:.0} bytes/reference); RSS {:.0} MB",
        heap_replay as f64 / 1e6,
        heap_checkpoint as f64 / 1e6,
        heap_checkpoint as f64 / refs as f64,
        rss_checkpoint as f64 / 1e6
    );
    println!(
        "  cold page cache, p50/p99  items(1,000-item mailbox) {:.2}/{:.2} ms, refs(id) {:.2}/{:.2} ms",
        cold.items_p50 * 1e3,
        cold.items_p99 * 1e3,
        cold.refs_p50 * 1e3,
        cold.refs_p99 * 1e3
    );
    println!(
        "  has from the generation   {has_checkpoint_per_s:.0}/s ({:.2}x the replayed index); the first pass after the cold open {has_cold_per_s:.0}/s",
        has_checkpoint_per_s / has_owned_per_s
    );
    println!(
        "  link_many while a generation is written {link_during_per_s:.0} references/s ({after} references; the generation took {second_checkpoint_s:.1} s)"
    );
    println!(
        "  open with {after} references after the generation {open_after_s:.2} s, heap {:.0} MB",
        heap_after as f64 / 1e6
    );
    println!(
        "  generation written at     {:.0} MB/s; the disk writes {:.0} MB/s sequentially ({:.0}%)",
        checkpoint_bytes as f64 / checkpoint_s / 1e6,
        disk_write_bytes_per_s / 1e6,
        100.0 * checkpoint_bytes as f64 / checkpoint_s / disk_write_bytes_per_s
    );
    println!(
        "{}",
        serde_json::json!({
            "references": refs,
            "savesets": savesets,
            "encrypted": std::env::var("VAULTSTORE_ENCRYPT").is_ok_and(|v| v == "1"),
            "open_seconds": open_checkpoint_s,
            "open_replay_seconds": open_s,
            "heap_bytes": heap_checkpoint,
            "rss_bytes": rss_checkpoint,
            "link_many_per_second": refs as f64 / link_s,
            "checkpoint_seconds": checkpoint_s,
            "checkpoint_bytes": checkpoint_bytes,
            "index_heap_bytes_replayed": index_heap_replay,
            "index_heap_bytes_mapped": index_heap_mapped,
            "has_per_second": has_per_s,
            "has_per_second_replayed": has_owned_per_s,
            "has_per_second_from_generation": has_checkpoint_per_s,
            "has_per_second_first_pass": has_first_touch_per_s,
            "has_per_second_first_pass_cold": has_cold_per_s,
            "items_cold_p50_seconds": cold.items_p50,
            "items_cold_p99_seconds": cold.items_p99,
            "refs_cold_p50_seconds": cold.refs_p50,
            "refs_cold_p99_seconds": cold.refs_p99,
            "link_many_during_checkpoint_per_second": link_during_per_s,
            "open_after_1m_seconds": open_after_s,
            "heap_after_1m_bytes": heap_after,
            "checkpoint_write_bytes_per_second": checkpoint_bytes as f64 / checkpoint_s,
            "disk_write_bytes_per_second": disk_write_bytes_per_s,
        })
    );
}

/// Latencies of reads from a cold page cache, seconds.
struct Cold {
    items_p50: f64,
    items_p99: f64,
    refs_p50: f64,
    refs_p99: f64,
}

/// Drop every file of the store at `path` from the page cache (no store
/// may be open: mapped pages are not dropped).
fn drop_cached(path: &std::path::Path) {
    for entry in walk(path) {
        if let Ok(f) = std::fs::File::open(&entry) {
            let _ = vaultstore::io::drop_cached_pages(&f);
        }
    }
}

fn walk(path: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(path).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn percentile(mut v: Vec<f64>, q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(((v.len() as f64 - 1.0) * q).round() as usize)
        .copied()
        .unwrap_or(0.0)
}

/// `items` of random mailboxes (1,000 items a page) and `refs` of random
/// savesets, 300 each, on a store opened after its files left the cache.
fn cold_lookups(store: &Store, mailboxes: &[String], ids: &[SavesetId]) -> Cold {
    let mut items = Vec::new();
    let mut refs = Vec::new();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n as u64) as usize
    };
    for _ in 0..300 {
        let owner = &mailboxes[next(mailboxes.len())];
        let t = Instant::now();
        let page = store.items(owner, None, 1000).unwrap();
        items.push(t.elapsed().as_secs_f64());
        assert!(!page.is_empty());
        let id = &ids[next(ids.len())];
        let t = Instant::now();
        let r = store.refs(id).unwrap();
        refs.push(t.elapsed().as_secs_f64());
        assert!(!r.is_empty());
    }
    Cold {
        items_p50: percentile(items.clone(), 0.5),
        items_p99: percentile(items, 0.99),
        refs_p50: percentile(refs.clone(), 0.5),
        refs_p99: percentile(refs, 0.99),
    }
}

/// Link `n` new references in batches of 20,000 while a generation is
/// written on another thread: references a second, and the seconds the
/// generation took.
fn link_during_checkpoint(
    store: &Store,
    mailboxes: &[String],
    ids: &[SavesetId],
    n: usize,
) -> (f64, f64) {
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let t = Instant::now();
            checkpoint_now(store);
            t.elapsed().as_secs_f64()
        });
        let t = Instant::now();
        for start in (0..n).step_by(20_000) {
            let items: Vec<String> = (start..(start + 20_000).min(n))
                .map(|k| format!("<late{k:010}@mail.example.com>"))
                .collect();
            let batch: Vec<(&str, &str, SavesetId)> = items
                .iter()
                .enumerate()
                .map(|(j, item)| {
                    let k = start + j;
                    (
                        mailboxes[k % mailboxes.len()].as_str(),
                        item.as_str(),
                        ids[k % ids.len()],
                    )
                })
                .collect();
            assert_eq!(store.link_many(&batch).unwrap(), batch.len());
        }
        let link_s = t.elapsed().as_secs_f64();
        (n as f64 / link_s, writer.join().unwrap())
    })
}

/// The disk's sequential write rate: 1 GiB in 1 MiB writes, fsynced.
fn disk_write_rate(path: &std::path::Path) -> f64 {
    use std::io::Write;
    let file = path.join("disk-rate.tmp");
    let block = vec![0x5au8; 1 << 20];
    let t = Instant::now();
    let mut f = std::fs::File::create(&file).unwrap();
    for _ in 0..1024 {
        f.write_all(&block).unwrap();
    }
    f.sync_all().unwrap();
    let rate = (1u64 << 30) as f64 / t.elapsed().as_secs_f64();
    drop(f);
    let _ = std::fs::remove_file(&file);
    rate
}

/// Write a generation of the sync caches now; the process's report.
fn checkpoint_now(store: &Store) -> serde_json::Value {
    store
        .run_request(&vaultstore::jobs::schedule::ProcessRequest::Checkpoint)
        .unwrap()
}

/// `has` of a million ids (a pseudo-random order), per second: the first
/// pass (a mapped index's pages are first touched, or read from the disk)
/// and the second, the steady rate a running service sees.
fn has_rate(store: &Store, ids: &[SavesetId]) -> (f64, f64) {
    let pass = || {
        let n = ids.len().min(1_000_000);
        let step = 7_919 % ids.len().max(1);
        let t = Instant::now();
        let mut found = 0usize;
        for k in 0..n {
            found += usize::from(store.has(&ids[(k * step.max(1)) % ids.len()]));
        }
        assert_eq!(found, n);
        n as f64 / t.elapsed().as_secs_f64()
    };
    let first = pass();
    (first, pass())
}

/// Open the store at `path`: the store, the seconds the open took and the
/// heap it holds (counted by the allocator, from before the open).
fn timed_open(path: &std::path::Path, opts: vaultstore::OpenOptions) -> (Store, f64, u64) {
    let heap_closed = live_bytes().unwrap_or(0);
    let t = Instant::now();
    let store = Store::open_with(path, opts).unwrap();
    let seconds = t.elapsed().as_secs_f64();
    (
        store,
        seconds,
        live_bytes().unwrap_or(0).saturating_sub(heap_closed),
    )
}

/// Open by replaying every record (no sync cache).
fn replaying() -> vaultstore::OpenOptions {
    vaultstore::OpenOptions {
        use_sync_cache: false,
        ..from_generation()
    }
}
