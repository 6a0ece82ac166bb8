//! Backup mode, and the "Processing message cache" process that ends it.
//! While backup mode is on, no file a backup copies changes and none is
//! deleted: writes to the segments are refused by the log, puts and
//! references go to the message cache (the engine routes them), and every
//! background process waits. When it ends (by `backup mode off`, or by its
//! maximum duration) the process moves the cached items into the segments
//! in order and empties the cache. A process over the engine: it must not
//! import the façade or above.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::jobs::{Job, Jobs, ProcessType};
use crate::units::{format_duration_ms, format_time, now_ms};

/// Entries moved into the segments per batch (one catalog record, one fsync).
const BATCH_ENTRIES: usize = 512;
/// Content bytes per batch, about.
const BATCH_BYTES: u64 = 16 << 20;
/// How long `backup mode on` waits for running processes to stop.
const STOP_WAIT: Duration = Duration::from_secs(120);

/// Backup mode as `backup mode status` reports it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct BackupModeStatus {
    /// True while the store is in backup mode.
    pub on: bool,
    /// When it began, Unix ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<u64>,
    /// When its maximum duration ends it, Unix ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ends_ms: Option<u64>,
    /// The maximum duration, ms.
    pub max_ms: u64,
    /// Items in the message cache, not yet in the segments.
    pub cached_items: u64,
    /// When the oldest of them was accepted, Unix ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_cached_ms: Option<u64>,
}

impl Engine {
    /// Backup mode now.
    pub(crate) fn backup_mode_status(&self) -> BackupModeStatus {
        let since_ms = self.log.backup_mode_since();
        let max_ms = self.log.manifest().backup_mode_max_ms;
        let (cached_items, oldest_cached_ms) = self.cache.pending();
        BackupModeStatus {
            on: since_ms.is_some(),
            since_ms,
            ends_ms: since_ms.map(|s| s.saturating_add(max_ms)),
            max_ms,
            cached_items,
            oldest_cached_ms,
        }
    }

    /// Turn backup mode on: from here writes go to the message cache. The
    /// switch waits for writes in flight to the segments; then every
    /// running process is asked to stop, and this returns once none runs,
    /// so the files a backup copies no longer change. Turning it on again
    /// changes nothing.
    pub(crate) fn backup_mode_on(&self, jobs: &Jobs) -> Result<BackupModeStatus> {
        if self.log.backup_mode_since().is_none() {
            let _route = self.route.write();
            self.log.switch_backup_mode(Some(now_ms()))?;
        }
        jobs.cancel_all();
        let started = Instant::now();
        loop {
            let running = jobs.running_processes(false);
            let Some(p) = running.first() else { break };
            if started.elapsed() > STOP_WAIT {
                return Err(Error::InvalidSetting(format!(
                    "backup mode is on, but {} did not stop within {} s: files may change until it ends",
                    p.process,
                    STOP_WAIT.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(self.backup_mode_status())
    }

    /// Turn backup mode off (the message cache is processed next, by the
    /// caller). Turning it off again changes nothing.
    pub(crate) fn backup_mode_off(&self) -> Result<BackupModeStatus> {
        if self.log.backup_mode_since().is_some() {
            self.log.switch_backup_mode(None)?;
        }
        Ok(self.backup_mode_status())
    }

    /// True when backup mode has outlived its maximum duration.
    pub(crate) fn backup_mode_expired(&self) -> bool {
        self.backup_mode_status()
            .ends_ms
            .is_some_and(|end| end <= now_ms())
    }

    /// Why background processes other than "Processing message cache"
    /// wait now, if they do: the read-only state, backup mode, items in
    /// the message cache.
    pub(crate) fn why_processes_wait(&self) -> Option<String> {
        let s = self.backup_mode_status();
        if self.log.in_read_only_state() {
            Some("the store is in the read-only state".into())
        } else if let Some(since) = s.since_ms {
            Some(format!(
                "the store is in backup mode since {}",
                format_time(since)
            ))
        } else if s.cached_items > 0 {
            Some(format!(
                "the message cache holds {} items not yet in the segments",
                s.cached_items
            ))
        } else {
            None
        }
    }

    /// Refuse to run `process` now: every process but "Processing message
    /// cache" waits while the segments must not change or the cache holds
    /// items; that one runs once backup mode is off or past its maximum.
    pub(crate) fn check_can_run(&self, process: ProcessType) -> Result<()> {
        if process != ProcessType::MessageCache {
            return self.check_writable();
        }
        if self.backup_mode_expired() {
            return self.log.check_writable_to_cache();
        }
        self.log.check_writable()
    }

    /// True when "Processing message cache" has work: cached items with
    /// backup mode off, or backup mode past its maximum duration.
    pub(crate) fn message_cache_due(&self) -> bool {
        let s = self.backup_mode_status();
        (!s.on && s.cached_items > 0) || self.backup_mode_expired()
    }

    /// "Processing message cache": end backup mode if it has outlived its
    /// maximum duration (the run's history entry says so), then move the
    /// cached items into the segments in order and empty the cache.
    pub(crate) fn process_message_cache(&self, jobs: &Jobs) -> Result<String> {
        let mut ended = None;
        if let Some(since) = self.log.backup_mode_since() {
            if !self.backup_mode_expired() {
                return Err(Error::BackupMode {
                    path: self.log.dir().to_path_buf(),
                    since_ms: since,
                });
            }
            self.backup_mode_off()?;
            ended = Some(since);
        }
        jobs.run(self, ProcessType::MessageCache, |job| {
            let moved = self.drain_cache(job)?;
            let mut outcome = match ended {
                Some(since) => format!(
                    "backup mode, on since {}, ended after its maximum duration of {}; ",
                    format_time(since),
                    format_duration_ms(self.log.manifest().backup_mode_max_ms)
                ),
                None => String::new(),
            };
            outcome.push_str(&moved);
            job.set_outcome(outcome.clone());
            Ok(outcome)
        })
    }

    /// Move batches into the segments until the cache is empty; then,
    /// with no write in flight, remove the queue so writes go to the
    /// segments again.
    fn drain_cache(&self, job: &Job<'_>) -> Result<String> {
        let (mut moved, mut skipped) = (0u64, Vec::new());
        job.set_total(self.cache.pending().0);
        loop {
            job.checkpoint()?;
            let batch = one_item_once(self.cache.front(BATCH_ENTRIES, BATCH_BYTES));
            let Some(last) = batch.last() else {
                let _route = self.route.write();
                if self.cache.remove_if_empty()? {
                    break;
                }
                continue;
            };
            skipped.extend(self.store_cached(&batch)?);
            self.cache.mark_processed(last.end)?;
            moved += batch.len() as u64;
            let left = self.cache.pending().0;
            job.set_total(moved + left);
            job.advance(batch.len() as u64);
        }
        for s in &skipped {
            tracing::warn!("message cache: not stored: {s}");
        }
        Ok(match skipped.len() {
            0 => format!("{moved} cached items moved into the segments"),
            n => format!(
                "{moved} cached items moved into the segments; {n} references could not be stored: {}",
                skipped.join("; ")
            ),
        })
    }
}

/// The longest prefix of `front` in which no item appears twice and that
/// ends at its first replace: a batch's lookups all come before its
/// references are applied, and a replace may kill content (the segments
/// then store it again for a later entry that refers to it).
fn one_item_once(front: Vec<crate::message_cache::Queued>) -> Vec<crate::message_cache::Queued> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(front.len());
    for q in front {
        let Some((owner, item, replace)) = &q.reference else {
            out.push(q);
            continue;
        };
        if !seen.insert((owner.clone(), item.clone())) {
            break;
        }
        let last = *replace;
        out.push(q);
        if last {
            break;
        }
    }
    out
}
