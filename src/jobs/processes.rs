//! The process bodies the runner starts by request: sealing aged segments,
//! purging trash, defragmentation, redistribution, backup and the full
//! resynchronization, each reporting what it did as the JSON the CLI's
//! `--json` prints. What a process does is written in its own module
//! (compaction, backup, catalog); this file only maps a request to it and
//! must not import the façade or the presentation.

use std::time::Duration;

use serde_json::{Value, json};

use super::schedule::ProcessRequest;
use super::{Jobs, ProcessType};
use crate::engine::Engine;
use crate::error::{Error, Result};

/// A report as JSON (every report type serializes).
fn to_json<T: serde::Serialize>(report: T) -> Value {
    serde_json::to_value(report).unwrap_or(Value::Null)
}

impl Engine {
    /// Run `request` as its background process(es), recorded in the history;
    /// returns its report as JSON.
    pub(crate) fn run_request(&self, jobs: &Jobs, request: &ProcessRequest) -> Result<Value> {
        let retention = Duration::from_millis(self.log.manifest().trash_retention_ms);
        let out = match request {
            ProcessRequest::SealAged => json!({"outcome": self.seal_aged(jobs)?}),
            ProcessRequest::PurgeDeletedOwners => {
                json!({"outcome": self.purge_deleted_owners(jobs, retention)?})
            }
            ProcessRequest::PurgeTrash {
                older_than,
                owner,
                item,
            } => to_json(jobs.run(self, request.process(), |job| {
                job.set_total(1);
                let r = self.purge_trash(
                    older_than.unwrap_or(retention),
                    owner.as_deref(),
                    item.as_deref(),
                )?;
                job.advance(1);
                Ok(r)
            })?),
            ProcessRequest::Defragmentation { threshold } => {
                to_json(self.defrag(jobs, *threshold)?)
            }
            ProcessRequest::Redistribution(how) => to_json(self.redistribute(jobs, *how)?),
            ProcessRequest::Backup { to } => to_json(self.backup_run(jobs, to)?),
            ProcessRequest::Resynchronization => {
                json!({"outcome": self.full_resynchronization(jobs)?})
            }
            ProcessRequest::ProcessMessageCache => {
                json!({"outcome": self.process_message_cache(jobs)?})
            }
            ProcessRequest::Checkpoint => self.checkpoint(jobs)?,
        };
        let _ = jobs.prune_history(self.log.manifest().history_retention_ms);
        Ok(out)
    }

    /// "Processing file sync cache": seal the active segment if it is aged,
    /// then use the partitions' trigger files (backup detection `trigger`).
    fn seal_aged(&self, jobs: &Jobs) -> Result<String> {
        jobs.run(self, ProcessType::FileSyncCache, |job| {
            job.set_total(2);
            let sealed = self.log.seal_if_aged()?;
            job.advance(1);
            let mut outcome = match sealed {
                Some(id) => format!("sealed segment {id}"),
                None => "no aged segment".into(),
            };
            for t in self.process_triggers()? {
                let ids: Vec<String> = t.segments.iter().map(u32::to_string).collect();
                outcome.push_str(&format!(
                    "; trigger file of partition {} (written {}): {} segments marked backed up [{}]",
                    t.partition,
                    crate::units::format_time(t.written_ms),
                    t.segments.len(),
                    ids.join(", ")
                ));
            }
            // Segments sealed for partitions in object storage go there now
            // (the upload thread does it too; a failure shows here).
            let uploaded = self.log.upload_staged_if_any()?;
            if uploaded.segments > 0 {
                outcome.push_str(&format!(
                    "; uploaded {} segments ({}) to object storage",
                    uploaded.segments,
                    crate::units::format_bytes(uploaded.bytes)
                ));
            }
            job.advance(1);
            job.set_outcome(outcome.clone());
            Ok(outcome)
        })
    }

    /// "Deleting macro-objects from trash": purge owners deleted whole
    /// whose trash is past `retention`.
    fn purge_deleted_owners(&self, jobs: &Jobs, retention: Duration) -> Result<String> {
        jobs.run(self, ProcessType::DeletingMacroObjects, |job| {
            let owners: Vec<String> = self
                .owners()?
                .into_iter()
                .filter(|o| o.items == 0 && o.trashed > 0 && !o.hold)
                .map(|o| o.owner)
                .collect();
            job.set_total(owners.len() as u64);
            let mut purged = 0;
            for owner in owners {
                job.checkpoint()?;
                purged += self
                    .purge_trash(retention, Some(&owner), None)?
                    .purged_references;
                job.advance(1);
            }
            Ok(format!("{purged} references of deleted owners purged"))
        })
    }

    /// "Deleting micro-objects from trash": purge references past `retention`.
    fn purge_expired_trash(&self, jobs: &Jobs, retention: Duration) -> Result<String> {
        jobs.run(self, ProcessType::DeletingMicroObjects, |job| {
            job.set_total(1);
            let r = self.purge_trash(retention, None, None)?;
            job.advance(1);
            Ok(format!(
                "{} references purged, {} savesets dead, {} kept on hold",
                r.purged_references, r.dead_savesets, r.kept_on_hold
            ))
        })
    }

    /// Run the processes that are due, once, each recorded in the history:
    /// seal an aged segment, purge owners and references whose trash is past
    /// its retention, prune the history. Returns what ran and how it ended.
    pub(crate) fn maintain(&self, jobs: &Jobs) -> Vec<(ProcessType, Result<String>)> {
        let retention = Duration::from_millis(self.log.manifest().trash_retention_ms);
        let mut out = Vec::new();
        if self.message_cache_due() {
            let r = self.process_message_cache(jobs);
            out.push((ProcessType::MessageCache, r));
        }
        out.extend([
            (ProcessType::FileSyncCache, self.seal_aged(jobs)),
            (
                ProcessType::DeletingMacroObjects,
                self.purge_deleted_owners(jobs, retention),
            ),
            (
                ProcessType::DeletingMicroObjects,
                self.purge_expired_trash(jobs, retention),
            ),
        ]);
        let _ = jobs.prune_history(self.log.manifest().history_retention_ms);
        out
    }

    /// What a writer does once it has opened the store: close as failed
    /// the runs left open, prune the history, seal an aged active segment,
    /// and end backup mode past its maximum duration. In backup mode
    /// nothing of that changes a file.
    pub(crate) fn settle_after_open(&self, jobs: &Jobs) -> Result<()> {
        if self.backup_mode_expired()
            && let Err(e) = self.process_message_cache(jobs)
        {
            tracing::warn!("ending backup mode past its maximum duration: {e}");
        }
        if self.log.backup_mode_since().is_some() {
            return Ok(());
        }
        jobs.close_interrupted()?;
        self.record_cache_failures(jobs)?;
        let _ = jobs.prune_history(self.log.manifest().history_retention_ms);
        self.log.seal_if_aged()?;
        Ok(())
    }

    /// Rebuild index and catalog from the segments alone (a second,
    /// read-only instance) and compare with the live store.
    pub(crate) fn full_resynchronization(&self, jobs: &Jobs) -> Result<String> {
        jobs.run(self, ProcessType::FullResynchronization, |job| {
            job.set_total(1);
            // No compaction moves records while the two are compared.
            let _no_compaction = self.compaction_pass.lock();
            let mut attempt = 0;
            let (live, rebuilt) = loop {
                let before = self.state_digest()?;
                let rebuilt = Engine::open(
                    self.log.dir(),
                    &crate::log::OpenOptions {
                        read_only: true,
                        vfs: self.log.vfs(),
                        use_sync_cache: false,
                        unlock: self.log.sealing().unlock(),
                        ..crate::log::OpenOptions::default()
                    },
                )?;
                let after = self.state_digest()?;
                // A write between the two digests: compare again.
                attempt += 1;
                if before.same_as(&after) || attempt == 3 {
                    break (after, rebuilt);
                }
            };
            let from_segments = rebuilt.state_digest()?;
            job.advance(1);
            if let Some(difference) = live.difference(&from_segments) {
                return Err(Error::Inconsistent {
                    path: self.log.dir().to_path_buf(),
                    detail: format!("the live state differs from the segments: {difference}"),
                });
            }
            Ok(format!(
                "index ({} savesets), catalog ({} references), parts and lifecycle rebuilt from the segments agree with the live store, entry for entry",
                rebuilt.stat().savesets,
                rebuilt.stat().references
            ))
        })
    }
}
