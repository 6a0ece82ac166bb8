//! Sizing an archive from measured costs: `vaultstore bench --size ORG`.
//!
//! Owns the organisation model and the projection. It builds a store with
//! the organisation's shape through the engine's real paths (archive with
//! references, split attachments, deletions purged into dead space),
//! measures what each saveset and reference costs in disk and heap (the
//! counting allocator of [`crate::heap`]), how fast archiving, compaction
//! and backup run, and how long an open takes, then projects the
//! organisation's disk, memory, cores, backup volume and open time with
//! every assumption printed. It checks itself: the same measurement on a
//! tenth of the workload projects the full run, and the error of each
//! figure is reported. It uses the public store API only.
//! It must not reach below the façade.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::store::{InitOptions, Store};

/// An organisation to size.
#[derive(Debug, Clone, Serialize)]
pub struct Organisation {
    /// Mailboxes archived.
    pub mailboxes: u64,
    /// Messages each mailbox receives a day.
    pub messages_per_day: f64,
    /// Mailboxes of the organisation each message reaches (the copies
    /// single instance removes).
    pub recipients: f64,
    /// Average message size in bytes; `None` takes the sample's.
    pub message_bytes: Option<f64>,
    /// Share of messages with an attachment (0..=1), for the generated sample.
    pub attachment_share: f64,
    /// Years mail is kept.
    pub retention_years: f64,
    /// A journal mailbox receives a copy of every message.
    pub journaling: bool,
    /// Share of references users delete (then purged) over the retention.
    pub deletion_rate: f64,
    /// Busiest hour's archiving against the average hour.
    pub peak_factor: f64,
    /// Backups a day.
    pub backups_per_day: f64,
    /// Dead share at which segments are defragmented.
    pub defrag_threshold: f64,
    /// Capacity of each partition, bytes (empty: the volume's free space).
    pub partition_bytes: Vec<u64>,
}

impl Organisation {
    /// A preset: `small` (500 mailboxes), `medium` (10,000), `large`
    /// (100,000), or a number of mailboxes; the other figures are typical
    /// of office mail and can be changed one by one.
    pub fn preset(name: &str) -> Result<Organisation> {
        let mailboxes = match name {
            "small" => 500,
            "medium" => 10_000,
            "large" => 100_000,
            n => n.parse().map_err(|_| {
                Error::InvalidSetting(format!(
                    "--size {n:?}: expected small, medium, large or a number of mailboxes"
                ))
            })?,
        };
        Ok(Organisation {
            mailboxes,
            messages_per_day: 50.0,
            recipients: 3.0,
            message_bytes: None,
            attachment_share: 0.2,
            retention_years: 7.0,
            journaling: true,
            deletion_rate: 0.1,
            peak_factor: 4.0,
            backups_per_day: 1.0,
            defrag_threshold: crate::compaction::DEFAULT_THRESHOLD,
            partition_bytes: Vec::new(),
        })
    }

    fn check(&self) -> Result<()> {
        let share = |v: f64, what: &str| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(Error::InvalidSetting(format!(
                    "{what} {v} is out of range: it is a share from 0 to 1"
                )))
            }
        };
        share(self.attachment_share, "attachment share")?;
        share(self.deletion_rate, "deletion rate")?;
        share(self.defrag_threshold, "defragmentation threshold")?;
        if self.mailboxes == 0 || self.messages_per_day <= 0.0 || self.retention_years <= 0.0 {
            return Err(Error::InvalidSetting(
                "mailboxes, messages a day and retention must be more than 0".into(),
            ));
        }
        if self.recipients < 1.0 || self.peak_factor < 1.0 || self.backups_per_day <= 0.0 {
            return Err(Error::InvalidSetting(
                "recipients and the peak factor are at least 1, backups a day more than 0".into(),
            ));
        }
        Ok(())
    }
}

/// What one sizing run measured, per unit, on the engine's real paths.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UnitCosts {
    /// Distinct messages in the run.
    pub messages: u64,
    /// Live savesets after the deletions.
    pub savesets: u64,
    /// Live references after the deletions.
    pub references: u64,
    /// Bytes of the messages archived (each distinct message once).
    pub message_bytes: u64,
    /// Segment bytes after deletions and a full defragmentation.
    pub disk_bytes: u64,
    /// Dead bytes the deletions left before defragmentation.
    pub dead_bytes: u64,
    /// Parts (attachments split out and stored once).
    pub parts: u64,
    /// Heap the open store holds, bytes.
    pub heap_bytes: u64,
    /// Heap of an open empty store, bytes (the fixed part).
    pub heap_base_bytes: u64,
    /// Heap per live saveset, bytes: its index entry, measured by building
    /// the index of the store's savesets.
    pub heap_per_saveset: f64,
    /// Heap per live reference, bytes: the rest of the open store's heap
    /// (catalog, lifecycle, part table) over its references.
    pub heap_per_reference: f64,
    /// Disk bytes per byte of message archived (dedup of parts and
    /// compression included).
    pub disk_per_message_byte: f64,
    /// Archives (references added) per second per core.
    pub archives_per_core_second: f64,
    /// Defragmentation, megabytes read per second.
    pub defrag_mb_per_second: f64,
    /// Backup run, megabytes copied per second.
    pub backup_mb_per_second: f64,
    /// Open time, seconds.
    pub open_seconds: f64,
    /// Open time per live reference, seconds (the catalog replay dominates).
    pub open_seconds_per_reference: f64,
}

impl UnitCosts {
    /// Heap for `savesets` and `references`.
    fn heap_for(&self, savesets: f64, references: f64) -> f64 {
        self.heap_base_bytes as f64
            + savesets * self.heap_per_saveset
            + references * self.heap_per_reference
    }

    /// Disk for savesets averaging `message_bytes`.
    fn disk_for(&self, savesets: f64, message_bytes: f64) -> f64 {
        savesets * message_bytes * self.disk_per_message_byte
    }
}

/// The projection for an organisation, with what it assumed.
#[derive(Debug, Clone, Serialize)]
pub struct SizingProjection {
    /// Disk for the retention period: live, dead space, headroom.
    pub disk_bytes: f64,
    /// Live savesets' bytes.
    pub live_disk_bytes: f64,
    /// Dead space waiting for defragmentation (average at the threshold).
    pub dead_disk_bytes: f64,
    /// Headroom kept free (15%, and one segment).
    pub headroom_bytes: f64,
    /// Heap of the open store at the end of the retention period.
    pub memory_bytes: f64,
    /// Cores to archive the busiest hour as it arrives.
    pub cores: f64,
    /// Bytes a day's backups copy (new segments).
    pub backup_bytes_per_day: f64,
    /// Minutes one backup takes at the measured throughput.
    pub backup_window_minutes: f64,
    /// Open time of the full store, seconds.
    pub open_seconds: f64,
    /// Live savesets at the end of the retention period.
    pub savesets: f64,
    /// Live references at the end of the retention period.
    pub references: f64,
    /// Days until each partition fills, in rollover order.
    pub partition_full_days: Vec<f64>,
    /// Every assumption the figures rest on, in words.
    pub assumptions: Vec<String>,
}

/// How well a tenth of the run projects the whole of it.
#[derive(Debug, Clone, Serialize)]
pub struct SelfCheck {
    /// The sample's share of the full run.
    pub sample_share: f64,
    /// Disk the sample projects for the full run, and what it measured.
    pub projected_disk_bytes: f64,
    /// Measured disk of the full run.
    pub measured_disk_bytes: f64,
    /// |projected - measured| / measured.
    pub disk_error: f64,
    /// Heap the sample projects for the full run.
    pub projected_memory_bytes: f64,
    /// Measured heap of the full run.
    pub measured_memory_bytes: f64,
    /// |projected - measured| / measured.
    pub memory_error: f64,
    /// True when an error passes [`SELF_CHECK_LIMIT`].
    pub failed: bool,
}

/// An error of the self-check past this share is reported as a failure.
pub const SELF_CHECK_LIMIT: f64 = 0.15;

/// The whole sizing report (`--json` keys).
#[derive(Debug, Clone, Serialize)]
pub struct SizingReport {
    /// The organisation sized.
    pub organisation: Organisation,
    /// What the full run measured.
    pub measured: UnitCosts,
    /// The projection for the organisation.
    pub projection: SizingProjection,
    /// The self-check.
    pub self_check: SelfCheck,
    /// "generated" or the sample corpus's path.
    pub corpus: String,
}

/// The sample mail: a corpus, or generated messages with the
/// organisation's attachment share.
pub fn sample_mail(
    org: &Organisation,
    corpus: Option<&Path>,
    messages: usize,
    seed: u64,
) -> Result<Vec<Vec<u8>>> {
    match corpus {
        Some(p) => crate::bench::read_corpus(p),
        None => Ok(crate::bench::generate_corpus_with(
            messages,
            seed,
            org.attachment_share,
        )),
    }
}

/// Size `org`: measure on `mail` in a store under `dir`, then project.
pub fn size(
    org: &Organisation,
    mail: &[Vec<u8>],
    dir: &Path,
    corpus: String,
) -> Result<SizingReport> {
    org.check()?;
    if mail.len() < 20 {
        return Err(Error::InvalidSetting(
            "sizing needs at least 20 sample messages".into(),
        ));
    }
    let full = measure(org, mail, &dir.join("sizing-full"))?;
    let tenth = &mail[..mail.len() / 10];
    let sample = measure(org, tenth, &dir.join("sizing-sample"))?;
    let self_check = self_check(&sample, &full, tenth.len() as f64 / mail.len() as f64);
    let projection = project(org, &full, dir);
    Ok(SizingReport {
        organisation: org.clone(),
        measured: full,
        projection,
        self_check,
        corpus,
    })
}

/// Project the full run from the sample's unit costs and compare.
fn self_check(sample: &UnitCosts, full: &UnitCosts, share: f64) -> SelfCheck {
    let projected_disk = sample.disk_for(
        1.0,
        full.message_bytes as f64 * full.savesets as f64 / full.messages.max(1) as f64,
    );
    let projected_memory = sample.heap_for(full.savesets as f64, full.references as f64);
    let error = |p: f64, m: f64| (p - m).abs() / m.max(1.0);
    let disk_error = error(projected_disk, full.disk_bytes as f64);
    let memory_error = error(projected_memory, full.heap_bytes as f64);
    SelfCheck {
        sample_share: share,
        projected_disk_bytes: projected_disk,
        measured_disk_bytes: full.disk_bytes as f64,
        disk_error,
        projected_memory_bytes: projected_memory,
        measured_memory_bytes: full.heap_bytes as f64,
        memory_error,
        failed: disk_error > SELF_CHECK_LIMIT || memory_error > SELF_CHECK_LIMIT,
    }
}

/// Mailboxes the measurement spreads the sample over: enough that
/// recipients are distinct, few enough that each holds many items.
fn run_mailboxes(org: &Organisation, messages: usize) -> usize {
    ((messages as f64 / 20.0) as usize).clamp(org.recipients.ceil() as usize + 2, 400)
}

/// Build the organisation's shape from `mail` in a store at `dir` and
/// measure its unit costs.
pub fn measure(org: &Organisation, mail: &[Vec<u8>], dir: &Path) -> Result<UnitCosts> {
    let _ = std::fs::remove_dir_all(dir);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let heap_base = {
        let empty = dir.join("empty");
        drop(Store::init(&empty, &InitOptions::default())?);
        let (s, held) = crate::heap::held_by(|| Store::open(&empty));
        drop(s?);
        held.unwrap_or(0)
    };
    let path = dir.join("store");
    let store = Store::init(&path, &InitOptions::default())?;
    let boxes = run_mailboxes(org, mail.len());
    // Deliveries: each message to `recipients` distinct mailboxes (a
    // fractional average rounds per message), and to the journal.
    let mut deliveries: Vec<(String, String, usize)> = Vec::new();
    let mut rng = 0x5EED_u64;
    for (i, _) in mail.iter().enumerate() {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let whole = org.recipients.floor();
        let extra = ((rng >> 11) as f64 / (1u64 << 53) as f64) < org.recipients - whole;
        let k = (whole as usize + usize::from(extra)).clamp(1, boxes);
        // k distinct mailboxes, drawn at random as real recipients are.
        let mut chosen: Vec<usize> = Vec::with_capacity(k);
        while chosen.len() < k {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let mailbox = (rng >> 33) as usize % boxes;
            if !chosen.contains(&mailbox) {
                chosen.push(mailbox);
            }
        }
        for mailbox in chosen {
            deliveries.push((format!("user{mailbox:04}"), format!("msg-{i}"), i));
        }
        if org.journaling {
            deliveries.push(("journal".into(), format!("msg-{i}"), i));
        }
    }
    let started = Instant::now();
    for chunk in deliveries.chunks(512) {
        let batch: Vec<(&str, &str, &[u8])> = chunk
            .iter()
            .map(|(o, it, i)| (o.as_str(), it.as_str(), mail[*i].as_slice()))
            .collect();
        for r in store.archive_many(&batch)? {
            r?;
        }
    }
    let archive_seconds = started.elapsed().as_secs_f64();
    // Deletions: whole mailboxes' worth of references, purged (the journal
    // is kept: compliance copies are not deleted by users).
    let deleted_boxes = (org.deletion_rate * boxes as f64).round() as usize;
    for b in 0..deleted_boxes {
        match store.delete(&format!("user{b:04}"), None) {
            Ok(()) | Err(Error::OwnerNotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    store.purge_trash(Duration::ZERO, None, None)?;
    store.seal()?;
    let dead_bytes = store.stat().dead_bytes;
    let mut defrag = store.defrag(0.0)?;
    if defrag.bytes_read == 0 {
        // Nothing died (a journal keeps every message): measure the same
        // copy path by draining the partition into another.
        store.partition_add(&dir.join("second-partition"), None)?;
        defrag = store.redistribute(crate::compaction::Redistribution::Drain(0))?;
    }
    let backup_dir = dir.join("backup");
    let t = Instant::now();
    let backup = store.backup_run(&backup_dir)?;
    let backup_seconds = t.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&backup_dir);
    let stat = store.stat();
    let message_bytes: u64 = mail.iter().map(|m| m.len() as u64).sum();
    drop(store);

    // Heap of the open store, and of an index of its savesets built as an
    // open builds it: the index is what a saveset costs (with its part
    // entries); the rest (catalog, lifecycle) grows with the references.
    let (heap1, open1) = open_and_measure(&path)?;
    let index_heap = {
        let store = crate::store::Store::open_with(
            &path,
            crate::store::OpenOptions {
                read_only: true,
                ..Default::default()
            },
        )?;
        crate::bench::index_heap_bytes(&store).unwrap_or(0)
    };
    let _ = std::fs::remove_dir_all(dir);
    let savesets = stat.savesets.max(1) as f64;
    let references = stat.references.max(1) as f64;
    let per_saveset = index_heap as f64 / savesets;
    let per_reference =
        ((heap1 as f64 - heap_base as f64 - index_heap as f64) / references).max(0.0);
    Ok(UnitCosts {
        messages: mail.len() as u64,
        savesets: stat.savesets,
        references: stat.references,
        message_bytes,
        disk_bytes: stat.stored_bytes,
        dead_bytes,
        parts: stat.parts,
        heap_bytes: heap1,
        heap_base_bytes: heap_base,
        heap_per_saveset: per_saveset,
        heap_per_reference: per_reference,
        disk_per_message_byte: stat.stored_bytes as f64
            / (message_bytes as f64 * stat.savesets as f64 / mail.len() as f64).max(1.0),
        archives_per_core_second: deliveries.len() as f64
            / archive_seconds.max(1e-9)
            / threads as f64,
        defrag_mb_per_second: defrag.megabytes_per_second,
        backup_mb_per_second: backup.copied_bytes as f64 / 1e6 / backup_seconds.max(1e-9),
        open_seconds: open1,
        open_seconds_per_reference: open1 / references,
    })
}

/// Open the store at `path`: the heap it holds and the seconds it took.
fn open_and_measure(path: &Path) -> Result<(u64, f64)> {
    let t = Instant::now();
    let (store, held) = crate::heap::held_by(|| Store::open(path));
    let seconds = t.elapsed().as_secs_f64();
    let store = store?;
    let held = held.ok_or_else(|| {
        Error::InvalidSetting(
            "sizing measures heap with the counting allocator, which this program does not install"
                .into(),
        )
    })?;
    drop(store);
    Ok((held, seconds))
}

/// The organisation's figures from the measured unit costs.
pub fn project(org: &Organisation, m: &UnitCosts, dir: &Path) -> SizingProjection {
    let days = org.retention_years * 365.0;
    let deliveries_per_day = org.mailboxes as f64 * org.messages_per_day;
    let messages_per_day = deliveries_per_day / org.recipients.max(1.0);
    let journal_per_day = if org.journaling {
        messages_per_day
    } else {
        0.0
    };
    // A saveset dies only when every reference to it is deleted; the
    // journal's copy is never deleted.
    let all_deleted = if org.journaling {
        0.0
    } else {
        org.deletion_rate.powf(org.recipients)
    };
    let savesets = messages_per_day * days * (1.0 - all_deleted);
    let references = (deliveries_per_day * (1.0 - org.deletion_rate) + journal_per_day) * days;
    let sample_message = m.message_bytes as f64 / m.messages.max(1) as f64;
    let message_bytes = org.message_bytes.unwrap_or(sample_message);
    let live = m.disk_for(savesets, message_bytes);
    // Between passes a segment collects dead bytes up to the threshold, on
    // average half of it; but no more than the share of savesets that die
    // (none, when a journal keeps every message).
    let dead_share = (org.defrag_threshold / 2.0).min(all_deleted);
    let dead = live * dead_share / (1.0 - dead_share).max(1e-9);
    let segment = crate::store::DEFAULT_SEGMENT_BYTES as f64;
    let headroom = (live + dead) * 0.15 + segment;
    let daily_bytes = m.disk_for(messages_per_day, message_bytes);
    let daily_dead = m.disk_for(messages_per_day * org.deletion_rate, message_bytes);
    let peak_per_second = (deliveries_per_day + journal_per_day) / 86_400.0 * org.peak_factor;
    let open_seconds = m.open_seconds_per_reference * references;
    let capacities: Vec<u64> = if org.partition_bytes.is_empty() {
        crate::io::Vfs::available_space(&crate::io::StdFs, dir)
            .map(|b| vec![b])
            .unwrap_or_default()
    } else {
        org.partition_bytes.clone()
    };
    let growth = (daily_bytes + daily_dead).max(1.0);
    let mut filled = 0.0;
    let partition_full_days = capacities
        .iter()
        .map(|&c| {
            filled += c as f64;
            filled / growth
        })
        .collect();
    let backup_bytes_per_day = daily_bytes;
    let assumptions = vec![
        format!(
            "{} mailboxes x {} messages a day, each message to {} mailboxes{}: {:.0} distinct messages and {:.0} references a day",
            org.mailboxes,
            org.messages_per_day,
            org.recipients,
            if org.journaling {
                " and the journal"
            } else {
                ""
            },
            messages_per_day,
            deliveries_per_day + journal_per_day
        ),
        format!(
            "kept {} years; users delete {:.0}% of references{}",
            org.retention_years,
            org.deletion_rate * 100.0,
            if org.journaling {
                " (the journal keeps every message alive)".to_string()
            } else {
                format!(
                    ", a message dies when all its copies are ({:.2}%)",
                    all_deleted * 100.0
                )
            }
        ),
        format!(
            "average message {} ({}), {:.3} bytes on disk per message byte measured (parts stored once, zstd)",
            crate::units::format_bytes(message_bytes as u64),
            if org.message_bytes.is_some() {
                "given"
            } else {
                "the sample's"
            },
            m.disk_per_message_byte
        ),
        format!(
            "dead space: segments are defragmented at {:.0}% dead; {:.1}% of the disk is dead on average (half the threshold, at most the share of savesets that die)",
            org.defrag_threshold * 100.0,
            dead_share * 100.0
        ),
        "headroom: 15% of the disk kept free, and one whole segment".into(),
        format!(
            "memory: {:.1} bytes of heap a saveset (its index entry) and {:.1} a reference (catalog, lifecycle, part table), measured on the open store, plus {} fixed",
            m.heap_per_saveset,
            m.heap_per_reference,
            crate::units::format_bytes(m.heap_base_bytes)
        ),
        format!(
            "cores: the busiest hour is {} times the average; {:.0} archives a second per core measured",
            org.peak_factor, m.archives_per_core_second
        ),
        "open time grows with the references (the catalog replay)".into(),
        format!(
            "backup: {} a day in new segments, {} backups a day at {:.0} MB/s measured",
            crate::units::format_bytes(backup_bytes_per_day as u64),
            org.backups_per_day,
            m.backup_mb_per_second
        ),
    ];
    SizingProjection {
        disk_bytes: live + dead + headroom,
        live_disk_bytes: live,
        dead_disk_bytes: dead,
        headroom_bytes: headroom,
        memory_bytes: m.heap_for(savesets, references),
        cores: peak_per_second / m.archives_per_core_second.max(1e-9),
        backup_bytes_per_day,
        backup_window_minutes: backup_bytes_per_day
            / org.backups_per_day
            / (m.backup_mb_per_second.max(1e-9) * 1e6)
            / 60.0,
        open_seconds,
        savesets,
        references,
        partition_full_days,
        assumptions,
    }
}

impl SizingReport {
    /// The report as text; an failed self-check in red on a terminal.
    pub fn to_text(&self, color: bool) -> String {
        use crate::units::format_bytes;
        let p = &self.projection;
        let m = &self.measured;
        let c = &self.self_check;
        let b = |x: f64| format_bytes(x.max(0.0) as u64);
        let mut out = format!(
            "vaultstore sizing: {} mailboxes, measured on {} sample messages ({})\n\
             measured              {} savesets, {} references: {} on disk, {} heap\n\
             \x20                     heap {:.1} bytes a saveset (index), {:.1} a reference (catalog and the rest); {:.3} disk bytes a message byte\n\
             \x20                     archive {:.0}/s a core, defrag {:.0} MB/s, backup {:.0} MB/s, open {:.3} s\n\
             projection ({} years)\n\
             \x20 disk                {} ({} live, {} dead space, {} headroom)\n\
             \x20 memory              {}\n\
             \x20 cores (peak hour)   {:.4}\n\
             \x20 backup              {} a day, {} a backup\n\
             \x20 open time           {:.1} s\n\
             \x20 savesets            {:.0}, references {:.0}\n",
            self.organisation.mailboxes,
            m.messages,
            self.corpus,
            m.savesets,
            m.references,
            format_bytes(m.disk_bytes),
            format_bytes(m.heap_bytes),
            m.heap_per_saveset,
            m.heap_per_reference,
            m.disk_per_message_byte,
            m.archives_per_core_second,
            m.defrag_mb_per_second,
            m.backup_mb_per_second,
            m.open_seconds,
            self.organisation.retention_years,
            b(p.disk_bytes),
            b(p.live_disk_bytes),
            b(p.dead_disk_bytes),
            b(p.headroom_bytes),
            b(p.memory_bytes),
            p.cores,
            b(p.backup_bytes_per_day),
            crate::units::format_seconds(p.backup_window_minutes * 60.0),
            p.open_seconds,
            p.savesets,
            p.references,
        );
        for (n, days) in p.partition_full_days.iter().enumerate() {
            out.push_str(&format!(
                "\x20 partition {n}         full after {:.0} days ({:.1} years)\n",
                days,
                days / 365.0
            ));
        }
        out.push_str("assumptions\n");
        for a in &p.assumptions {
            out.push_str(&format!("  - {a}\n"));
        }
        let line = format!(
            "self-check            a {:.0}% sample projects the full run: disk {} vs {} measured ({:.1}% off), heap {} vs {} ({:.1}% off){}",
            c.sample_share * 100.0,
            b(c.projected_disk_bytes),
            b(c.measured_disk_bytes),
            c.disk_error * 100.0,
            b(c.projected_memory_bytes),
            b(c.measured_memory_bytes),
            c.memory_error * 100.0,
            if c.failed {
                format!(
                    ": FAILED, more than {:.0}% off; do not trust this projection",
                    SELF_CHECK_LIMIT * 100.0
                )
            } else {
                String::new()
            }
        );
        if c.failed && color {
            out.push_str(&format!("\x1b[1;31m{line}\x1b[0m\n"));
        } else {
            out.push_str(&line);
            out.push('\n');
        }
        out
    }
}

/// Where sizing puts its stores: `dir`, or a temporary directory.
pub fn work_dir(dir: Option<&Path>) -> Result<(PathBuf, Option<tempfile::TempDir>)> {
    match dir {
        Some(d) => Ok((d.to_path_buf(), None)),
        None => {
            let tmp = tempfile::Builder::new()
                .prefix("vaultstore-sizing")
                .tempdir()
                .map_err(|e| Error::io(std::env::temp_dir(), "create temporary directory", e))?;
            Ok((tmp.path().to_path_buf(), Some(tmp)))
        }
    }
}
