//! The sync cache processes (format-spec/checkpoint.md): "Processing
//! message sync cache", "Processing property sync cache" and "Processing
//! file sync cache" write one checkpoint kind each from one snapshot, the
//! last installing the generation; generations an open could not use are
//! recorded as "Failed to read data from cache" and make a rebuild due, as
//! does a log grown past the setting since the newest generation.
//! Writing and loading the files is the engine's (`engine::sync_cache`).

use serde_json::{Value, json};

use super::history::{HistoryEntry, Status};
use super::{Jobs, ProcessType};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::format::checkpoint::CheckpointKind;
use crate::units::now_ms;

/// Check one checkpoint file's bytes whole, as an open of a store sealed
/// as `sealing` says loads it: its kind, or why an open would not use it.
/// Never panics (a fuzz target's entry).
pub fn check_checkpoint(
    bytes: &[u8],
    sealing: &crate::crypto::Sealing,
) -> std::result::Result<CheckpointKind, String> {
    crate::engine::sync_cache::check_file(bytes, sealing)
}

/// The history status of a generation an open could not use.
pub const CACHE_READ_FAILED: &str = "Failed to read data from cache";

impl Engine {
    /// The three sync cache processes over one snapshot: the message and
    /// property sync caches write their kinds, then the file sync cache
    /// writes the index's and installs the generation.
    pub(crate) fn checkpoint(&self, jobs: &Jobs) -> Result<Value> {
        self.log.check_writable()?;
        let snap = self.snapshot()?;
        let mut written = Vec::new();
        for (process, kind) in [
            (ProcessType::MessageSyncCache, CheckpointKind::Messages),
            (ProcessType::PropertySyncCache, CheckpointKind::Properties),
            (ProcessType::FileSyncCache, CheckpointKind::Files),
        ] {
            let last = kind == CheckpointKind::Files;
            let out = jobs.run(self, process, |job| {
                job.set_total(if last { 2 } else { 1 });
                let file = snap.write_kind(self, kind)?;
                job.advance(1);
                let mut outcome = format!(
                    "{} checkpoint at sequence {} written ({})",
                    kind.name(),
                    snap.sequence(),
                    crate::units::format_bytes(file.len())
                );
                written.push(file);
                let mut installed = None;
                if last {
                    let done = snap.install(self, std::mem::take(&mut written))?;
                    job.advance(1);
                    outcome.push_str(&format!(
                        "; generation installed ({} savesets, {} references)",
                        done.savesets, done.references
                    ));
                    installed = Some(done);
                }
                job.set_outcome(outcome);
                Ok(installed)
            })?;
            if let Some(done) = out {
                let files: Vec<Value> = done
                    .files
                    .iter()
                    .map(|(k, path, len)| json!({"kind": k.name(), "path": path, "bytes": len}))
                    .collect();
                return Ok(json!({
                    "checkpoint_sequence": done.sequence,
                    "savesets": done.savesets,
                    "references": done.references,
                    "files": files,
                }));
            }
        }
        Err(Error::InvalidSetting(
            "the generation was not installed".into(),
        ))
    }

    /// Record each generation the open could not use, under the process
    /// of the kind that failed (the file sync cache when the generation did
    /// not describe the segments).
    pub(crate) fn record_cache_failures(&self, jobs: &Jobs) -> Result<()> {
        for why in &self.cache_failures {
            let process = if why.starts_with("messages-") {
                ProcessType::MessageSyncCache
            } else if why.starts_with("properties-") {
                ProcessType::PropertySyncCache
            } else {
                ProcessType::FileSyncCache
            };
            let run = jobs.history.next_run();
            let time_ms = now_ms();
            for status in [Status::Started, Status::Failed(CACHE_READ_FAILED.into())] {
                jobs.history.append(HistoryEntry {
                    time_ms,
                    run,
                    process: process.code(),
                    status,
                    detail: Some(why.clone()),
                })?;
            }
        }
        Ok(())
    }

    /// Processes due now whatever their schedule: the message cache to
    /// process, a sync cache generation to rebuild.
    pub(crate) fn urgent_processes(&self) -> Vec<ProcessType> {
        [
            (self.message_cache_due(), ProcessType::MessageCache),
            (self.sync_cache_due(), ProcessType::MessageSyncCache),
        ]
        .into_iter()
        .filter_map(|(due, p)| due.then_some(p))
        .collect()
    }

    /// A new generation is due at once when the open could not use one
    /// and none was written since, or when more log records follow the
    /// newest (or more index and catalog changes are held over it) than the setting
    /// allows; never while the store cannot write.
    pub(crate) fn sync_cache_due(&self) -> bool {
        if self.log.check_writable().is_err() {
            return false;
        }
        let rebuild = !self.cache_failures.is_empty() && self.checkpoint_sequence() == 0;
        let behind = self
            .log
            .last_sequence()
            .saturating_sub(self.checkpoint_sequence());
        // Compactions move savesets without a record each, and one record
        // can trash a whole owner: the changes held in memory count too.
        let changed = self.index.read().changed() as u64 + self.catalog.read().changed();
        let limit = self.log.manifest().checkpoint_after_records;
        rebuild || behind >= limit || changed >= limit
    }
}
