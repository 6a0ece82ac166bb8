//! The end-to-end sizing benchmark behind `vaultstore bench`.
//!
//! Owns the synthetic mail generator and the measurement of a whole ingest:
//! it creates a throw-away store, delivers every message to several
//! mailboxes from many threads (each delivery a put, so copies deduplicate),
//! reads a sample back, and reports rates, ratios, latencies, index memory,
//! open time and a hardware projection. It uses only the public store API.
//!
//! The generated corpus imitates real mail, not zeros and not noise: RFC 5322
//! headers with Received chains, English-like text bodies whose size follows
//! a log-normal distribution, and a share of messages with a base64
//! attachment of incompressible bytes (as photos and PDFs are).
//! It drives the public `Store` API as a user does and must not reach
//! below the façade, so what it measures is what users get.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::segment::encode_payload;
use crate::id::SavesetId;
use crate::store::{InitOptions, OpenOptions, Store};

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Real mail to use instead of the generated corpus.
    pub corpus: Option<PathBuf>,
    /// Distinct messages to generate (ignored with `corpus`).
    pub messages: usize,
    /// Mailboxes every message is delivered to.
    pub copies: usize,
    /// Worker threads; `None` for all cores.
    pub threads: Option<usize>,
    /// Where to put the store; `None` for a temporary directory.
    pub dir: Option<PathBuf>,
    /// Seed of the generator.
    pub seed: u64,
    /// Concurrent writers issuing puts (at least `threads`).
    pub writers: usize,
    /// Projection: mailboxes of the organisation.
    pub mailboxes: u64,
    /// Projection: messages each mailbox receives a day.
    pub messages_per_day: u64,
    /// Projection: years the archive keeps mail.
    pub retention_years: u64,
    /// Encrypt the store (format-spec/encryption.md) under this passphrase and cost.
    pub encryption: Option<crate::crypto::Encryption>,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            corpus: None,
            messages: 20_000,
            copies: 3,
            threads: None,
            dir: None,
            seed: 7,
            writers: 32,
            mailboxes: 1000,
            messages_per_day: 50,
            retention_years: 7,
            encryption: None,
        }
    }
}

/// What the benchmark measured. Keys are the `--json` contract.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// "generated" or the corpus path.
    pub corpus: String,
    /// Worker threads used.
    pub threads: usize,
    /// Concurrent writers issuing puts.
    pub writers: usize,
    /// Distinct messages.
    pub messages: u64,
    /// Puts performed (messages × copies).
    pub deliveries: u64,
    /// Bytes offered by all puts.
    pub logical_bytes: u64,
    /// Bytes of distinct content.
    pub distinct_bytes: u64,
    /// Bytes of segment files after the ingest.
    pub stored_bytes: u64,
    /// Wall time of the ingest, seconds.
    pub ingest_seconds: f64,
    /// Puts per second.
    pub items_per_second: f64,
    /// Logical megabytes (10^6) per second.
    pub logical_mb_per_second: f64,
    /// Bytes written to disk per logical byte offered.
    pub bytes_written_per_logical_byte: f64,
    /// Logical bytes / distinct bytes.
    pub dedup_ratio: f64,
    /// Distinct bytes / stored bytes.
    pub compression_ratio: f64,
    /// Parts (attachments stored once for the split messages listing them).
    pub parts: u64,
    /// Stored bytes of those parts.
    pub part_bytes: u64,
    /// Share of logical bytes of the stored savesets that part dedup saved.
    pub part_dedup_share: f64,
    /// Put latency percentiles, microseconds.
    pub put_p50_us: f64,
    /// Put latency 99th percentile, microseconds.
    pub put_p99_us: f64,
    /// Get latency median, microseconds.
    pub get_p50_us: f64,
    /// Get latency 99th percentile, microseconds.
    pub get_p99_us: f64,
    /// Gets from a cold page cache (the segment files' pages dropped
    /// before each) beside one `pread` of as many bytes as each returned,
    /// at a random place of a segment file, dropped the same way; None
    /// when the kernel would not drop pages.
    pub cold_reads: Option<ColdReads>,
    /// `has` lookups per second over all threads (half present, half absent).
    pub has_per_second: f64,
    /// Index memory per saveset, bytes: heap measured by the counting
    /// allocator (building the index of the store's savesets) when it is
    /// installed, else the index's own estimate.
    pub index_bytes_per_saveset: f64,
    /// True when `index_bytes_per_saveset` was measured, not estimated.
    pub index_heap_measured: bool,
    /// Heap the whole store holds after open (index, catalog, part table,
    /// lifecycle), per saveset, measured; absent without the counter.
    pub open_heap_bytes_per_saveset: Option<f64>,
    /// Index memory for one million savesets, MiB.
    pub index_mib_per_million_savesets: f64,
    /// Time to open the store after the ingest, milliseconds.
    pub open_ms: f64,
    /// An encrypted store's key derivation at open (argon2id), milliseconds,
    /// not counted in `open_ms`; absent in the clear.
    pub kdf_ms: Option<f64>,
    /// Projection for a sample organisation.
    pub projection: Projection,
    /// blake3 over the distinct messages on all threads, MB/s (median of 3 runs).
    pub hash_limit_mb_per_second: f64,
    /// zstd at the store's level over the distinct messages on all threads,
    /// MB/s (median of 3 runs).
    pub compression_limit_mb_per_second: f64,
    /// Puts of new content (first copy of each message), MB/s.
    pub new_content_mb_per_second: f64,
    /// Puts of content already stored (the other copies), MB/s.
    pub duplicate_mb_per_second: f64,
    /// New-content ingest as a share of the compression limit.
    pub new_content_share_of_compression_limit: f64,
    /// Duplicate puts as a share of the hashing limit.
    pub duplicate_share_of_hash_limit: f64,
    /// New content through `put_many` batches of 512, MB/s (median of 3 runs).
    pub batched_new_content_mb_per_second: f64,
    /// That as a share of the compression limit.
    pub batched_share_of_compression_limit: f64,
}

fn logical_rate(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64().max(1e-9)
}

/// Disk, memory and cores for an organisation, from the measured ratios.
#[derive(Debug, Clone, Serialize)]
pub struct Projection {
    /// Mailboxes.
    pub mailboxes: u64,
    /// Messages delivered per mailbox per day.
    pub messages_per_mailbox_per_day: u64,
    /// Years kept.
    pub retention_years: u64,
    /// Savesets stored at the end of the retention period.
    pub savesets: u64,
    /// Disk needed, GB (10^9).
    pub disk_gb: f64,
    /// Memory for the index, MiB.
    pub index_memory_mib: f64,
    /// Cores to ingest a day's mail in one hour at the measured rate.
    pub cores_for_one_hour_daily_ingest: f64,
}

/// Runs behind each limit and the batched ingest figure (their median).
const LIMIT_RUNS: usize = 3;

/// The median of `runs` measurements.
fn median_of(runs: usize, mut measure: impl FnMut() -> Result<f64>) -> Result<f64> {
    let mut rates = (0..runs.max(1))
        .map(|_| measure())
        .collect::<Result<Vec<f64>>>()?;
    rates.sort_by(f64::total_cmp);
    Ok(rates[rates.len() / 2])
}

/// Run the benchmark.
pub fn run_bench(cfg: &BenchConfig) -> Result<BenchReport> {
    let threads = cfg.threads.unwrap_or_else(num_cpus).max(1);
    let (messages, corpus_name) = match &cfg.corpus {
        Some(p) => (read_corpus(p)?, p.display().to_string()),
        None => (generate_corpus(cfg.messages, cfg.seed), "generated".into()),
    };
    if messages.is_empty() {
        return Err(Error::InvalidSetting("the corpus holds no message".into()));
    }
    let copies = cfg.copies.max(1);
    let tmp;
    let base: PathBuf = match &cfg.dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::Builder::new()
                .prefix("vaultstore-bench")
                .tempdir()
                .map_err(|e| Error::io(std::env::temp_dir(), "create temporary directory", e))?;
            tmp.path().to_path_buf()
        }
    };
    let store_dir = base.join("bench-store");
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::InvalidSetting(format!("thread pool: {e}")))?;
    // Puts come from many concurrent writers, as an archiving server's
    // workers do; they share fsyncs through group commit.
    let writers_pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.writers.max(threads))
        .build()
        .map_err(|e| Error::InvalidSetting(format!("thread pool: {e}")))?;

    let init = InitOptions {
        encryption: cfg.encryption.clone(),
        ..InitOptions::default()
    };
    let store = Arc::new(Store::init(&store_dir, &init)?);
    // Deliveries in an order where copies of one message arrive far apart,
    // as they do when mailboxes are archived one after another.
    let deliveries: Vec<usize> = (0..copies).flat_map(|_| 0..messages.len()).collect();
    // The first delivery of each distinct message is new content; every
    // other one (a real corpus may hold copies already) is a duplicate.
    let distinct: Vec<usize> = {
        let mut seen = std::collections::HashSet::new();
        (0..messages.len())
            .filter(|&i| seen.insert(SavesetId::of(&messages[i])))
            .collect()
    };
    let duplicates: Vec<usize> = {
        let mut first = vec![false; messages.len()];
        distinct.iter().for_each(|&i| first[i] = true);
        let later = deliveries.iter().enumerate();
        later
            .filter(|&(n, &i)| n >= messages.len() || !first[i])
            .map(|(_, &i)| i)
            .collect()
    };
    let distinct_bytes: u64 = distinct.iter().map(|&i| messages[i].len() as u64).sum();
    let logical_bytes: u64 = deliveries.iter().map(|&i| messages[i].len() as u64).sum();

    // The limits on this machine and data: blake3 and zstd on all threads,
    // each the median of a few runs (the machine may be shared).
    let level = store.manifest().compression_level;
    let distinct_messages: Vec<&[u8]> = distinct.iter().map(|&i| messages[i].as_slice()).collect();
    let hash_limit = median_of(LIMIT_RUNS, || {
        let t = Instant::now();
        pool.install(|| {
            distinct_messages.par_iter().for_each(|m| {
                std::hint::black_box(SavesetId::of(m));
            })
        });
        Ok(logical_rate(distinct_bytes, t.elapsed()))
    })?;
    let compression_limit = median_of(LIMIT_RUNS, || {
        let t = Instant::now();
        pool.install(|| {
            distinct_messages.par_iter().for_each(|m| {
                std::hint::black_box(encode_payload(m, level));
            })
        });
        Ok(logical_rate(distinct_bytes, t.elapsed()))
    })?;

    let timed_puts = |range: &[usize]| -> (Duration, Vec<Result<(SavesetId, Duration)>>) {
        let started = Instant::now();
        let out = writers_pool.install(|| {
            range
                .par_iter()
                .map(|&i| {
                    let t = Instant::now();
                    let put = store.put(&messages[i])?;
                    Ok((put.id, t.elapsed()))
                })
                .collect()
        });
        (started.elapsed(), out)
    };
    // First every message once (new content), then the other copies (duplicates).
    let (new_time, mut put_latencies) = timed_puts(&distinct);
    let (dup_time, dups) = timed_puts(&duplicates);
    put_latencies.extend(dups);
    let ingest = new_time + dup_time;
    let new_content_rate = logical_rate(distinct_bytes, new_time);
    // The same new content through the batched path bulk imports take
    // (put_many: parallel hash and compress, appends and fsync overlapping),
    // each run in a store of its own; the median run.
    let batched_dir = base.join("bench-store-batched");
    let batched_rate = median_of(LIMIT_RUNS, || {
        let batched = Store::init(&batched_dir, &init)?;
        let t = Instant::now();
        pool.install(|| -> Result<()> {
            for chunk in distinct_messages.chunks(512) {
                batched.put_many(chunk)?;
            }
            Ok(())
        })?;
        let rate = logical_rate(distinct_bytes, t.elapsed());
        drop(batched);
        let _ = std::fs::remove_dir_all(&batched_dir);
        Ok(rate)
    })?;
    let duplicate_rate = logical_rate(logical_bytes - distinct_bytes, dup_time);
    let mut put_us = Vec::with_capacity(put_latencies.len());
    let mut ids = Vec::with_capacity(messages.len());
    for r in put_latencies {
        let (id, d) = r?;
        put_us.push(d.as_secs_f64() * 1e6);
        ids.push(id);
    }
    ids.sort_unstable();
    ids.dedup();

    let sample: Vec<SavesetId> = ids
        .iter()
        .step_by((ids.len() / 5000).max(1))
        .copied()
        .collect();
    let get_us: Vec<f64> = pool.install(|| {
        sample
            .par_iter()
            .map(|id| {
                let t = Instant::now();
                let ok = store.get(id).is_ok();
                (ok, t.elapsed().as_secs_f64() * 1e6)
            })
            .filter(|(ok, _)| *ok)
            .map(|(_, us)| us)
            .collect()
    });

    let lookups = 2_000_000usize;
    let absent: Vec<SavesetId> = (0..1024u64)
        .map(|n| SavesetId::of(&n.to_le_bytes()))
        .collect();
    let t = Instant::now();
    let found: usize = pool.install(|| {
        (0..lookups)
            .into_par_iter()
            .filter(|&n| {
                if n % 2 == 0 {
                    store.has(&ids[n % ids.len()])
                } else {
                    store.has(&absent[n % absent.len()])
                }
            })
            .count()
    });
    let has_per_second = lookups as f64 / t.elapsed().as_secs_f64();
    debug_assert!(found >= lookups / 2);

    let stat = store.stat();
    drop(store);
    // An encrypted store's open runs the KDF once; it is timed apart.
    let (unlock, kdf_ms) = unlock_timed(&store_dir, cfg)?;
    let t = Instant::now();
    let (reopened, open_heap) = crate::heap::held_by(|| {
        Store::open_with(
            &store_dir,
            OpenOptions {
                unlock,
                ..OpenOptions::default()
            },
        )
    });
    let reopened = reopened?;
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    let stat_after = reopened.stat();
    let index_heap = index_heap_bytes(&reopened);
    let cold = cold_reads(&reopened, &sample, cfg.seed)?;
    if stat_after.savesets != stat.savesets {
        return Err(Error::InvalidSetting(format!(
            "reopened store holds {} savesets, expected {}",
            stat_after.savesets, stat.savesets
        )));
    }
    drop(reopened);
    if cfg.dir.is_some() {
        let _ = std::fs::remove_dir_all(&store_dir);
    }

    let secs = ingest.as_secs_f64().max(1e-9);
    let items_per_second = deliveries.len() as f64 / secs;
    let per_saveset = |bytes: u64| bytes as f64 / stat_after.savesets.max(1) as f64;
    // Measured heap when the counting allocator is installed; the index's
    // own estimate otherwise.
    let index_per = index_heap.map_or(per_saveset(stat_after.index_bytes), per_saveset);
    let dedup_ratio = logical_bytes as f64 / distinct_bytes.max(1) as f64;
    let compression_ratio = distinct_bytes as f64 / stat.stored_bytes.max(1) as f64;
    let projection = project(
        cfg.mailboxes,
        cfg.messages_per_day,
        cfg.retention_years,
        copies as f64,
        distinct_bytes as f64 / ids.len().max(1) as f64,
        compression_ratio,
        index_per,
        items_per_second / threads as f64,
    );
    Ok(BenchReport {
        hash_limit_mb_per_second: hash_limit,
        compression_limit_mb_per_second: compression_limit,
        new_content_mb_per_second: new_content_rate,
        duplicate_mb_per_second: duplicate_rate,
        new_content_share_of_compression_limit: new_content_rate / compression_limit.max(1e-9),
        batched_new_content_mb_per_second: batched_rate,
        batched_share_of_compression_limit: batched_rate / compression_limit.max(1e-9),
        duplicate_share_of_hash_limit: duplicate_rate / hash_limit.max(1e-9),
        corpus: corpus_name,
        threads,
        writers: cfg.writers.max(threads),
        messages: ids.len() as u64,
        deliveries: deliveries.len() as u64,
        logical_bytes,
        distinct_bytes,
        stored_bytes: stat.stored_bytes,
        ingest_seconds: secs,
        items_per_second,
        logical_mb_per_second: logical_bytes as f64 / 1e6 / secs,
        bytes_written_per_logical_byte: stat.stored_bytes as f64 / logical_bytes.max(1) as f64,
        dedup_ratio,
        compression_ratio,
        parts: stat.parts,
        part_bytes: stat.part_bytes,
        part_dedup_share: stat.part_dedup_share,
        put_p50_us: percentile(&mut put_us, 0.50),
        put_p99_us: percentile(&mut put_us, 0.99),
        get_p50_us: percentile(&mut get_us.clone(), 0.50),
        get_p99_us: percentile(&mut get_us.clone(), 0.99),
        cold_reads: cold,
        has_per_second,
        index_bytes_per_saveset: index_per,
        index_heap_measured: index_heap.is_some(),
        open_heap_bytes_per_saveset: open_heap.map(per_saveset),
        index_mib_per_million_savesets: index_per * 1e6 / (1 << 20) as f64,
        open_ms,
        kdf_ms,
        projection,
    })
}

/// The keys of the bench's store, and how long the KDF took to give them
/// (None in the clear).
fn unlock_timed(dir: &Path, cfg: &BenchConfig) -> Result<(crate::crypto::Unlock, Option<f64>)> {
    let Some(e) = &cfg.encryption else {
        return Ok((crate::crypto::Unlock::Nothing, None));
    };
    let t = Instant::now();
    let store_id = crate::log::Log::manifest_at(&crate::io::StdFs, dir)?.store_id;
    let keys =
        crate::crypto::KeyRing::new(&crate::io::StdFs, dir, store_id).unlock(&e.passphrase)?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    Ok((crate::crypto::Unlock::Keys(Arc::new(keys)), Some(ms)))
}

/// Heap of an index of `store`'s savesets, built as an open builds it, by
/// the counting allocator (None when it is not installed).
pub(crate) fn index_heap_bytes(store: &Store) -> Option<u64> {
    let ids = store.ids().ok()?;
    // Counted from before the input exists: the build consumes it (its
    // allocation may become the index's own), so what is left is the index.
    let before = crate::heap::live_bytes()?;
    let pairs: Vec<(SavesetId, crate::index::Location)> = ids
        .iter()
        .copied()
        .enumerate()
        .map(|(n, id)| {
            let loc = crate::index::Location {
                segment: 1 + (n / 100_000) as u32,
                offset: (n % 100_000) as u32 * 64,
            };
            (id, loc)
        })
        .collect();
    let (index, _) = crate::index::Index::build(pairs);
    let after = crate::heap::live_bytes()?;
    drop(index);
    drop(ids);
    Some(after.saturating_sub(before))
}

#[allow(clippy::too_many_arguments)]
fn project(
    mailboxes: u64,
    per_day: u64,
    years: u64,
    copies: f64,
    avg_message_bytes: f64,
    compression_ratio: f64,
    index_per_saveset: f64,
    puts_per_core_second: f64,
) -> Projection {
    let deliveries = (mailboxes * per_day * 365 * years) as f64;
    let savesets = deliveries / copies.max(1.0);
    let disk = savesets * avg_message_bytes / compression_ratio.max(1e-9);
    let daily = (mailboxes * per_day) as f64;
    Projection {
        mailboxes,
        messages_per_mailbox_per_day: per_day,
        retention_years: years,
        savesets: savesets as u64,
        disk_gb: disk / 1e9,
        index_memory_mib: savesets * index_per_saveset / (1 << 20) as f64,
        cores_for_one_hour_daily_ingest: daily / 3600.0 / puts_per_core_second.max(1e-9),
    }
}

fn percentile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v[i.min(v.len() - 1)]
}

/// Latencies from a cold page cache, microseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ColdReads {
    /// `get` median.
    pub get_p50_us: f64,
    /// `get` 99th percentile.
    pub get_p99_us: f64,
    /// One `pread` of as many bytes: median.
    pub pread_p50_us: f64,
    /// One `pread` of as many bytes: 99th percentile.
    pub pread_p99_us: f64,
}

/// Gets of `sample` (up to 300) with every segment file's cached pages
/// dropped before each, and as many preads of the same sizes at random
/// places of random segment files, dropped the same way: their 99th
/// percentiles, in microseconds. None when the kernel will not drop pages.
fn cold_reads(store: &Store, sample: &[SavesetId], seed: u64) -> Result<Option<ColdReads>> {
    let segments = store.segments();
    let files: Vec<(std::fs::File, u64, &Path)> = segments
        .iter()
        .filter_map(|s| {
            let f = std::fs::File::open(&s.path).ok()?;
            let len = f.metadata().ok()?.len();
            Some((f, len, s.path.as_path()))
        })
        .collect();
    let drop_all = || {
        files
            .iter()
            .all(|(f, ..)| crate::io::drop_cached_pages(f).is_ok())
    };
    let mut rng = crate::rng::SplitMix(seed ^ 0xC01D);
    let (mut gets, mut preads) = (Vec::new(), Vec::new());
    let mut buf = Vec::new();
    for id in sample.iter().step_by((sample.len() / 300).max(1)) {
        if files.is_empty() || !drop_all() {
            return Ok(None);
        }
        let t = Instant::now();
        let len = store.get(id)?.len();
        gets.push(t.elapsed().as_secs_f64() * 1e6);
        let (file, file_len, path) = &files[rng.below(files.len() as u64) as usize];
        let len = (len as u64).min(*file_len);
        let at = rng.below(file_len - len + 1);
        buf.resize(len as usize, 0);
        drop_all();
        let t = Instant::now();
        std::os::unix::fs::FileExt::read_exact_at(file, &mut buf, at)
            .map_err(|e| Error::io(path, "read", e))?;
        preads.push(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok(Some(ColdReads {
        get_p50_us: percentile(&mut gets, 0.50),
        get_p99_us: percentile(&mut gets, 0.99),
        pread_p50_us: percentile(&mut preads, 0.50),
        pread_p99_us: percentile(&mut preads, 0.99),
    }))
}

fn num_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

impl BenchReport {
    /// The report as aligned text lines.
    pub fn to_text(&self) -> String {
        let p = &self.projection;
        format!(
            "vaultstore bench: {} corpus, {} threads, {} concurrent writers\n\
             messages              {}\n\
             deliveries (puts)     {}\n\
             logical bytes         {}\n\
             distinct bytes        {}\n\
             stored bytes          {}\n\
             ingest                {:.2} s, {:.0} items/s, {:.1} MB/s logical\n\
             written per logical   {:.3} bytes\n\
             dedup ratio           {:.2}\n\
             compression ratio     {:.2}\n\
             parts                 {} stored once, {} bytes; part dedup saved {:.1}% of logical bytes\n\
             put latency           p50 {:.0} us, p99 {:.0} us\n\
             get latency           p50 {:.0} us, p99 {:.0} us\n\
             cold get              {}\n\
             has lookups           {:.0} /s\n\
             index memory          {:.1} bytes/saveset ({:.1} MiB per million), {}\n\
             heap after open       {}\n\
             open time             {:.1} ms\n\
             limits (all threads)  blake3 {:.0} MB/s, zstd {:.0} MB/s (medians of 3 runs)\n\
             new content           {:.0} MB/s ({:.0}% of the zstd limit) acknowledged one by one,\n\
             \x20                     {:.0} MB/s ({:.0}%) in batches of 512 (put_many, as import; median of 3)\n\
             duplicates            {:.0} MB/s ({:.0}% of the blake3 limit)\n\
             projection            {} mailboxes x {} messages/day x {} years, disk and index only:\n\
             \x20                     {} savesets, {:.0} GB disk, {:.0} MiB index memory\n\
             \x20                     (not a sizing: the catalog's memory is left out; `vaultstore bench --size ORG` sizes)\n",
            self.corpus,
            self.threads,
            self.writers,
            self.messages,
            self.deliveries,
            self.logical_bytes,
            self.distinct_bytes,
            self.stored_bytes,
            self.ingest_seconds,
            self.items_per_second,
            self.logical_mb_per_second,
            self.bytes_written_per_logical_byte,
            self.dedup_ratio,
            self.compression_ratio,
            self.parts,
            self.part_bytes,
            self.part_dedup_share * 100.0,
            self.put_p50_us,
            self.put_p99_us,
            self.get_p50_us,
            self.get_p99_us,
            self.cold_reads.map_or(
                "not measured (the kernel kept the pages)".into(),
                |c| format!(
                    "p50 {:.0} us, p99 {:.0} us; one pread of the same size p50 {:.0} us, p99 {:.0} us ({:.2}x at p99)",
                    c.get_p50_us,
                    c.get_p99_us,
                    c.pread_p50_us,
                    c.pread_p99_us,
                    c.get_p99_us / c.pread_p99_us.max(1e-9)
                )
            ),
            self.has_per_second,
            self.index_bytes_per_saveset,
            self.index_mib_per_million_savesets,
            if self.index_heap_measured {
                "heap measured by the counting allocator"
            } else {
                "estimated (no counting allocator)"
            },
            self.open_heap_bytes_per_saveset
                .map_or("not measured".to_string(), |b| format!(
                    "{b:.1} bytes/saveset (index, catalog, part table, lifecycle)"
                )),
            self.open_ms,
            self.hash_limit_mb_per_second,
            self.compression_limit_mb_per_second,
            self.new_content_mb_per_second,
            self.new_content_share_of_compression_limit * 100.0,
            self.batched_new_content_mb_per_second,
            self.batched_share_of_compression_limit * 100.0,
            self.duplicate_mb_per_second,
            self.duplicate_share_of_hash_limit * 100.0,
            p.mailboxes,
            p.messages_per_mailbox_per_day,
            p.retention_years,
            p.savesets,
            p.disk_gb,
            p.index_memory_mib,
        )
    }
}

/// Read every message under `path`: each regular file is one message,
/// except mbox files (name ending in `.mbox`, or content starting with
/// `From `), which are split on their `From ` separator lines.
pub fn read_corpus(path: &Path) -> Result<Vec<Vec<u8>>> {
    let mut files = Vec::new();
    collect_files(path, &mut files)?;
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let bytes = std::fs::read(&f).map_err(|e| Error::io(&f, "read corpus file", e))?;
        let is_mbox = f.extension().is_some_and(|e| e == "mbox") || bytes.starts_with(b"From ");
        if is_mbox {
            out.extend(crate::import::split_mbox(&bytes));
        } else if !bytes.is_empty() {
            out.push(bytes);
        }
    }
    Ok(out)
}

fn collect_files(path: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, "stat", e))?;
    if meta.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let rd = std::fs::read_dir(path).map_err(|e| Error::io(path, "list directory", e))?;
    for entry in rd {
        let entry = entry.map_err(|e| Error::io(path, "list directory", e))?;
        let p = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name.starts_with("LICENSE") {
            continue;
        }
        collect_files(&p, out)?;
    }
    Ok(())
}

/// The corpus generator: the same seed gives the same corpus.
use crate::rng::SplitMix as Rng;

const WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "in",
    "a",
    "is",
    "that",
    "for",
    "it",
    "as",
    "was",
    "with",
    "be",
    "by",
    "on",
    "not",
    "he",
    "this",
    "are",
    "or",
    "his",
    "from",
    "at",
    "which",
    "but",
    "have",
    "an",
    "had",
    "they",
    "you",
    "were",
    "their",
    "one",
    "all",
    "we",
    "can",
    "her",
    "has",
    "there",
    "been",
    "if",
    "more",
    "when",
    "will",
    "would",
    "who",
    "so",
    "no",
    "meeting",
    "report",
    "quarter",
    "budget",
    "please",
    "review",
    "attached",
    "thanks",
    "regards",
    "project",
    "schedule",
    "customer",
    "invoice",
    "contract",
    "update",
    "team",
    "tomorrow",
    "office",
    "agenda",
    "minutes",
    "proposal",
    "deadline",
    "approval",
    "forecast",
    "sales",
    "account",
    "shipment",
    "delivery",
    "order",
    "question",
    "answer",
    "issue",
    "ticket",
    "release",
    "server",
    "archive",
    "mailbox",
    "policy",
    "compliance",
    "retention",
    "legal",
    "hold",
    "document",
    "draft",
    "final",
    "version",
    "call",
    "conference",
    "room",
    "friday",
    "monday",
];

const NAMES: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "yolanda",
];

/// Generate `n` distinct mail messages.
pub fn generate_corpus(n: usize, seed: u64) -> Vec<Vec<u8>> {
    generate_corpus_with(n, seed, 0.2)
}

/// [`generate_corpus`] with `attachment_share` (0..=1) of the messages
/// carrying an attachment.
pub fn generate_corpus_with(n: usize, seed: u64, attachment_share: f64) -> Vec<Vec<u8>> {
    let percent = (attachment_share.clamp(0.0, 1.0) * 100.0).round() as u64;
    (0..n)
        .into_par_iter()
        .map(|i| {
            generate_message(
                &mut Rng(seed ^ (i as u64).wrapping_mul(0xA24B_AED4_963E_E407)),
                i,
                percent,
            )
        })
        .collect()
}

fn generate_message(rng: &mut Rng, serial: usize, attachment_percent: u64) -> Vec<u8> {
    let from = NAMES[rng.below(NAMES.len() as u64) as usize];
    let to = NAMES[rng.below(NAMES.len() as u64) as usize];
    let day = 1 + rng.below(28);
    let mut m = String::with_capacity(4096);
    for hop in 0..(2 + rng.below(4)) {
        m.push_str(&format!(
            "Received: from mx{hop}.example.net (mx{hop}.example.net [192.0.2.{}])\r\n\tby mail.example.com with ESMTPS id {:016x}\r\n\tfor <{to}@example.com>; Mon, {day} Mar 2025 {:02}:{:02}:{:02} +0000\r\n",
            rng.below(250),
            rng.next(),
            rng.below(24),
            rng.below(60),
            rng.below(60)
        ));
    }
    let subject: Vec<&str> = (0..(3 + rng.below(6)))
        .map(|_| WORDS[rng.below(WORDS.len() as u64) as usize])
        .collect();
    m.push_str(&format!(
        "From: {from} <{from}@example.com>\r\nTo: {to} <{to}@example.com>\r\nSubject: {}\r\nDate: Mon, {day} Mar 2025 10:00:00 +0000\r\nMessage-ID: <{serial}.{:x}@example.com>\r\nMIME-Version: 1.0\r\n",
        subject.join(" "),
        rng.next()
    ));
    let words = rng.lognormal(350.0, 0.9).clamp(10.0, 40_000.0) as usize;
    let mut body = String::with_capacity(words * 7);
    let mut line = 0;
    for w in 0..words {
        let word = WORDS[rng.below(WORDS.len() as u64) as usize];
        body.push_str(word);
        line += word.len() + 1;
        if line > 70 {
            body.push_str("\r\n");
            line = 0;
        } else {
            body.push(' ');
        }
        if w % 60 == 59 {
            body.push_str("\r\n\r\n");
            line = 0;
        }
    }
    let attach = rng.below(100) < attachment_percent;
    if !attach {
        m.push_str("Content-Type: text/plain; charset=utf-8\r\n\r\n");
        m.push_str(&body);
        m.push_str("\r\n");
        return m.into_bytes();
    }
    let boundary = format!("=_b{:x}", rng.next());
    m.push_str(&format!(
        "Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n--{boundary}\r\nContent-Type: application/octet-stream; name=\"file{serial}.bin\"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"file{serial}.bin\"\r\n\r\n"
    ));
    let size = rng.lognormal(80_000.0, 1.1).clamp(2_000.0, 4_000_000.0) as usize;
    let mut raw = Vec::with_capacity(size + 8);
    while raw.len() < size {
        raw.extend_from_slice(&rng.next().to_le_bytes());
    }
    raw.truncate(size);
    m.push_str(&base64_lines(&raw));
    m.push_str(&format!("--{boundary}--\r\n"));
    m.into_bytes()
}

fn base64_lines(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len() * 4 / 3 + data.len() / 38 + 4);
    for (i, chunk) in data.chunks(3).enumerate() {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        out.push(ALPHABET[(n >> 18) as usize & 63] as char);
        out.push(ALPHABET[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            ALPHABET[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            ALPHABET[n as usize & 63] as char
        } else {
            '='
        });
        if i % 19 == 18 {
            out.push_str("\r\n");
        }
    }
    out.push_str("\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_is_deterministic_and_mail_like() {
        let a = generate_corpus(50, 1);
        assert_eq!(a, generate_corpus(50, 1));
        assert_ne!(a, generate_corpus(50, 2));
        for m in &a {
            assert!(m.starts_with(b"Received: "));
            assert!(m.windows(4).any(|w| w == b"\r\n\r\n"));
        }
        let total: usize = a.iter().map(|m| m.len()).sum();
        let compressed: usize = a
            .iter()
            .map(|m| zstd::bulk::compress(m, 3).unwrap().len())
            .sum();
        let ratio = total as f64 / compressed as f64;
        // Real mail compresses, but not like zeros.
        assert!((1.2..8.0).contains(&ratio), "ratio {ratio}");
    }

    #[test]
    fn a_small_bench_reports_consistent_figures() {
        let r = run_bench(&BenchConfig {
            messages: 200,
            copies: 3,
            threads: Some(2),
            ..BenchConfig::default()
        })
        .unwrap();
        assert_eq!(r.deliveries, 600);
        assert_eq!(r.messages, 200);
        assert!((r.dedup_ratio - 3.0).abs() < 1e-9);
        assert!(r.compression_ratio > 1.0);
        assert!(r.stored_bytes < r.distinct_bytes);
    }
}
