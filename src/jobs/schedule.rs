//! The schedule of the periodic processes, and the requests that start a
//! process with its options (from the scheduler, the API or the CLI).
//!
//! Owns which process types have a periodic duty, their default intervals,
//! the operator's schedule as kept in the manifest, and when each is due.
//! It decides nothing about how a process runs (that is the runner, `Jobs`)
//! and must not import the façade or the service.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::ProcessType;
use super::history::{HistoryEntry, Status};
use crate::compaction::{DEFAULT_THRESHOLD, Redistribution};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::format::manifest::{Manifest, ScheduleEntry};

const MINUTE: u64 = 60_000;
const HOUR: u64 = 60 * MINUTE;

/// The process types that have a periodic duty, with their default
/// intervals (0: can be scheduled, off by default).
pub const SCHEDULABLE: &[(ProcessType, u64)] = &[
    // Seal the active segment once it is older than the seal age.
    (ProcessType::FileSyncCache, 10 * MINUTE),
    // Purge trash past the trash retention: deleted owners, then references.
    (ProcessType::DeletingMacroObjects, HOUR),
    (ProcessType::DeletingMicroObjects, HOUR),
    // Write a checkpoint generation of the sync caches (all three kinds).
    (ProcessType::MessageSyncCache, HOUR),
    // Rewrite segments past the dead threshold.
    (ProcessType::Defragmentation, 24 * HOUR),
    // Rebuild the state from the segments and compare: on request only.
    (ProcessType::FullResynchronization, 0),
];

/// One process type's schedule as the service applies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScheduledProcess {
    /// The process type's name.
    pub process: String,
    /// Time between two runs in ms; 0 when not scheduled.
    pub interval_ms: u64,
    /// True when the operator has not changed the default.
    pub default: bool,
    /// When its last run started, Unix ms.
    pub last_started_ms: Option<u64>,
    /// Why the scheduler does not start it now, however due it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waits: Option<String>,
}

/// A process with the options it runs with.
#[derive(Debug, Clone, PartialEq)]
pub enum ProcessRequest {
    /// Seal the active segment if it is older than the seal age.
    SealAged,
    /// Purge owners deleted whole whose trash is past the retention.
    PurgeDeletedOwners,
    /// Purge trashed references older than `older_than` (default: the
    /// trash retention), of one owner or item when given.
    PurgeTrash {
        /// Age in trash past which references go.
        older_than: Option<Duration>,
        /// Only this owner's references.
        owner: Option<String>,
        /// Only this item of the owner.
        item: Option<String>,
    },
    /// Rewrite segments whose dead share is at least `threshold`.
    Defragmentation {
        /// Dead share from 0 to 1.
        threshold: f64,
    },
    /// Drain a partition or balance fill.
    Redistribution(Redistribution),
    /// Copy segments whose archive bit is set, and the resources, to `to`.
    Backup {
        /// The destination store directory.
        to: PathBuf,
    },
    /// Rebuild the state from the segments and compare.
    Resynchronization,
    /// Move the message cache into the segments (ending backup mode if it
    /// has outlived its maximum duration).
    ProcessMessageCache,
    /// Write a checkpoint generation of the three sync caches.
    Checkpoint,
}

impl ProcessRequest {
    /// The process type that runs the request (the first, for a backup).
    pub fn process(&self) -> ProcessType {
        match self {
            ProcessRequest::SealAged => ProcessType::FileSyncCache,
            ProcessRequest::PurgeDeletedOwners => ProcessType::DeletingMacroObjects,
            // A whole owner's trash is a macro-object, as the console counts.
            ProcessRequest::PurgeTrash {
                owner: Some(_),
                item: None,
                ..
            } => ProcessType::DeletingMacroObjects,
            ProcessRequest::PurgeTrash { .. } => ProcessType::DeletingMicroObjects,
            ProcessRequest::Defragmentation { .. } => ProcessType::Defragmentation,
            ProcessRequest::Redistribution(_) => ProcessType::Redistribution,
            ProcessRequest::Backup { .. } => ProcessType::BackingUpUnits,
            ProcessRequest::Resynchronization => ProcessType::FullResynchronization,
            ProcessRequest::ProcessMessageCache => ProcessType::MessageCache,
            ProcessRequest::Checkpoint => ProcessType::MessageSyncCache,
        }
    }

    /// The request a scheduled run of `process` makes, with default options.
    pub fn scheduled(process: ProcessType) -> Option<ProcessRequest> {
        Some(match process {
            ProcessType::FileSyncCache => ProcessRequest::SealAged,
            ProcessType::DeletingMacroObjects => ProcessRequest::PurgeDeletedOwners,
            ProcessType::DeletingMicroObjects => ProcessRequest::PurgeTrash {
                older_than: None,
                owner: None,
                item: None,
            },
            ProcessType::Defragmentation => ProcessRequest::Defragmentation {
                threshold: DEFAULT_THRESHOLD,
            },
            ProcessType::FullResynchronization => ProcessRequest::Resynchronization,
            ProcessType::MessageCache => ProcessRequest::ProcessMessageCache,
            ProcessType::MessageSyncCache => ProcessRequest::Checkpoint,
            _ => return None,
        })
    }
}

impl ProcessRequest {
    /// The request as `POST /jobs` takes it: the process's name and its options.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({"process": self.process().name()});
        match self {
            ProcessRequest::PurgeTrash {
                older_than,
                owner,
                item,
            } => {
                if let Some(d) = older_than {
                    v["older_than_ms"] = (d.as_millis().min(u64::MAX as u128) as u64).into();
                }
                if let Some(o) = owner {
                    v["owner"] = o.as_str().into();
                }
                if let Some(i) = item {
                    v["item"] = i.as_str().into();
                }
            }
            ProcessRequest::Defragmentation { threshold } => v["threshold"] = (*threshold).into(),
            ProcessRequest::Redistribution(Redistribution::Drain(p)) => v["drain"] = (*p).into(),
            ProcessRequest::Redistribution(Redistribution::Balance) => v["balance"] = true.into(),
            ProcessRequest::Backup { to } => v["to"] = to.to_string_lossy().as_ref().into(),
            _ => {}
        }
        v
    }

    /// Read a request from `POST /jobs`'s body; every option is checked.
    pub fn from_json(v: &serde_json::Value) -> Result<ProcessRequest> {
        let bad = |what: &str| Error::InvalidSetting(what.to_string());
        let name = v.get("process").and_then(|p| p.as_str()).ok_or_else(|| {
            bad("the request names no process (\"process\": \"DB defragmentation\")")
        })?;
        let process: ProcessType = name.parse()?;
        let text = |key: &str| -> Result<Option<String>> {
            match v.get(key) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(x) => x
                    .as_str()
                    .map(|s| Some(s.to_string()))
                    .ok_or_else(|| bad(&format!("{key} must be a string"))),
            }
        };
        Ok(match process {
            ProcessType::FileSyncCache => ProcessRequest::SealAged,
            ProcessType::DeletingMacroObjects | ProcessType::DeletingMicroObjects => {
                let owner = text("owner")?;
                let item = text("item")?;
                let older_than = match v.get("older_than_ms") {
                    None | Some(serde_json::Value::Null) => None,
                    Some(x) => {
                        Some(Duration::from_millis(x.as_u64().ok_or_else(|| {
                            bad("older_than_ms must be a whole number")
                        })?))
                    }
                };
                if process == ProcessType::DeletingMacroObjects
                    && owner.is_none()
                    && older_than.is_none()
                {
                    ProcessRequest::PurgeDeletedOwners
                } else {
                    ProcessRequest::PurgeTrash {
                        older_than,
                        owner,
                        item,
                    }
                }
            }
            ProcessType::Defragmentation => ProcessRequest::Defragmentation {
                threshold: match v.get("threshold") {
                    None | Some(serde_json::Value::Null) => DEFAULT_THRESHOLD,
                    Some(x) => x
                        .as_f64()
                        .ok_or_else(|| bad("threshold must be a number from 0 to 1"))?,
                },
            },
            ProcessType::Redistribution => {
                match (v.get("drain").and_then(|d| d.as_u64()), v.get("balance")) {
                    (Some(p), None) => ProcessRequest::Redistribution(Redistribution::Drain(
                        u32::try_from(p).map_err(|_| bad("drain names no partition"))?,
                    )),
                    (None, Some(serde_json::Value::Bool(true))) => {
                        ProcessRequest::Redistribution(Redistribution::Balance)
                    }
                    _ => {
                        return Err(bad(
                            "a redistribution needs \"drain\": PARTITION or \"balance\": true",
                        ));
                    }
                }
            }
            ProcessType::BackingUpUnits => ProcessRequest::Backup {
                to: text("to")?
                    .filter(|t| !t.is_empty())
                    .map(PathBuf::from)
                    .ok_or_else(|| bad("a backup run needs \"to\": the destination directory"))?,
            },
            ProcessType::FullResynchronization => ProcessRequest::Resynchronization,
            ProcessType::MessageCache => ProcessRequest::ProcessMessageCache,
            ProcessType::MessageSyncCache | ProcessType::PropertySyncCache => {
                ProcessRequest::Checkpoint
            }
            other => {
                return Err(bad(&format!(
                    "{other} cannot be started on its own ({})",
                    other.engine_operation()
                )));
            }
        })
    }
}

impl Engine {
    /// Run `process` every `interval` (zero: never), or on its default
    /// schedule again (`None`); kept in the manifest.
    pub(crate) fn set_schedule(
        &self,
        process: ProcessType,
        interval: Option<Duration>,
    ) -> Result<()> {
        check_schedulable(process)?;
        self.log.update_manifest(|m| {
            m.schedule = with_schedule(m, process, interval);
            Ok(())
        })
    }

    /// The most background processes the service runs at once (1 or more).
    pub(crate) fn set_max_processes(&self, n: u32) -> Result<()> {
        if n == 0 {
            return Err(Error::InvalidSetting(
                "at least one background process must be allowed to run".into(),
            ));
        }
        self.log.update_manifest(|m| {
            m.max_processes = n;
            Ok(())
        })
    }
}

/// The default interval of a schedulable type, `None` for the others.
fn default_interval(process: ProcessType) -> Option<u64> {
    SCHEDULABLE
        .iter()
        .find(|(p, _)| *p == process)
        .map(|(_, ms)| *ms)
}

/// Refuse a schedule for a type without a periodic duty.
pub(crate) fn check_schedulable(process: ProcessType) -> Result<()> {
    match default_interval(process) {
        Some(_) => Ok(()),
        None => {
            let names: Vec<&str> = SCHEDULABLE.iter().map(|(p, _)| p.name()).collect();
            Err(Error::InvalidSetting(format!(
                "{process} has no periodic duty to schedule; these do: {}",
                names.join(", ")
            )))
        }
    }
}

/// The manifest's schedule with `process` set to `interval` (`None`: back
/// to the default).
pub(crate) fn with_schedule(
    m: &Manifest,
    process: ProcessType,
    interval: Option<Duration>,
) -> Vec<ScheduleEntry> {
    let mut out: Vec<ScheduleEntry> = m
        .schedule
        .iter()
        .filter(|e| e.process != process.code())
        .copied()
        .collect();
    if let Some(d) = interval {
        out.push(ScheduleEntry {
            process: process.code(),
            interval_ms: d.as_millis().min(u64::MAX as u128) as u64,
        });
    }
    out.sort_by_key(|e| e.process);
    out
}

/// Every schedulable type's schedule, with when it last started.
/// `waits` says why none may start now, if so.
pub(crate) fn schedule(
    m: &Manifest,
    history: &[HistoryEntry],
    waits: Option<String>,
) -> Vec<ScheduledProcess> {
    SCHEDULABLE
        .iter()
        .map(|&(process, default_ms)| {
            let set = m.schedule.iter().find(|e| e.process == process.code());
            ScheduledProcess {
                process: process.name().into(),
                interval_ms: set.map_or(default_ms, |e| e.interval_ms),
                default: set.is_none(),
                last_started_ms: last_started(history, process),
                waits: waits.clone(),
            }
        })
        .collect()
}

fn last_started(history: &[HistoryEntry], process: ProcessType) -> Option<u64> {
    history
        .iter()
        .filter(|e| e.process == process.code() && e.status == Status::Started)
        .map(|e| e.time_ms)
        .max()
}

/// The types due at `now_ms`: scheduled, and started last at least an
/// interval ago (or, never run, an interval after `since_ms`, when the
/// service started: a restart does not set every process off at once).
pub(crate) fn due(schedule: &[ScheduledProcess], now_ms: u64, since_ms: u64) -> Vec<ProcessType> {
    schedule
        .iter()
        .filter(|s| s.interval_ms > 0 && s.waits.is_none())
        .filter(|s| {
            let from = s.last_started_ms.unwrap_or(since_ms);
            now_ms.saturating_sub(from) >= s.interval_ms
        })
        .filter_map(|s| s.process.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(process: ProcessType, ms: u64) -> HistoryEntry {
        HistoryEntry {
            time_ms: ms,
            run: ms,
            process: process.code(),
            status: Status::Started,
            detail: None,
        }
    }

    #[test]
    fn a_process_is_due_an_interval_after_its_last_start_or_the_service_start() {
        let m = Manifest::decode(&sample_manifest()).unwrap();
        let history = vec![entry(ProcessType::FileSyncCache, 1_000)];
        let s = schedule(&m, &history, None);
        let seal = 10 * MINUTE;
        // Sealing last started at 1 s: due at 1 s + 10 min, not before.
        assert!(!due(&s, 1_000 + seal - 1, 0).contains(&ProcessType::FileSyncCache));
        assert!(due(&s, 1_000 + seal, 0).contains(&ProcessType::FileSyncCache));
        // Never run: an hour after the service started.
        assert!(!due(&s, 5_000 + HOUR - 1, 5_000).contains(&ProcessType::DeletingMicroObjects));
        assert!(due(&s, 5_000 + HOUR, 5_000).contains(&ProcessType::DeletingMicroObjects));
        // Off by default.
        assert!(!due(&s, u64::MAX / 2, 0).contains(&ProcessType::FullResynchronization));
    }

    #[test]
    fn nothing_is_due_while_processes_wait_and_the_schedule_says_why() {
        let m = Manifest::decode(&sample_manifest()).unwrap();
        let s = schedule(&m, &[], Some("the store is in the read-only state".into()));
        assert!(due(&s, u64::MAX / 2, 0).is_empty());
        assert!(
            s.iter()
                .all(|p| p.waits.as_deref().is_some_and(|w| w.contains("read-only")))
        );
        assert!(!due(&schedule(&m, &[], None), u64::MAX / 2, 0).is_empty());
    }

    #[test]
    fn the_operator_s_schedule_replaces_the_default_and_can_turn_a_process_off() {
        let mut m = Manifest::decode(&sample_manifest()).unwrap();
        m.schedule = with_schedule(
            &m,
            ProcessType::Defragmentation,
            Some(Duration::from_secs(0)),
        );
        m.schedule = with_schedule(
            &m,
            ProcessType::FullResynchronization,
            Some(Duration::from_secs(7 * 86_400)),
        );
        let s = schedule(&m, &[], None);
        let defrag = s
            .iter()
            .find(|x| x.process == "DB defragmentation")
            .unwrap();
        assert_eq!((defrag.interval_ms, defrag.default), (0, false));
        assert!(!due(&s, u64::MAX / 2, 0).contains(&ProcessType::Defragmentation));
        assert!(due(&s, 7 * 86_400_000, 0).contains(&ProcessType::FullResynchronization));
        // Back to the default.
        m.schedule = with_schedule(&m, ProcessType::Defragmentation, None);
        let s = schedule(&m, &[], None);
        let defrag = s
            .iter()
            .find(|x| x.process == "DB defragmentation")
            .unwrap();
        assert_eq!((defrag.interval_ms, defrag.default), (24 * HOUR, true));
        assert!(check_schedulable(ProcessType::BackingUpUnits).is_err());
        assert!(check_schedulable(ProcessType::DeletingMicroObjects).is_ok());
    }

    fn sample_manifest() -> Vec<u8> {
        use crate::format::manifest::{PartitionEntry, PartitionState};
        Manifest {
            store_id: [1; 16],
            created_ms: 0,
            segment_bytes: 1 << 20,
            compression_level: 3,
            next_segment_id: 1,
            partitions: vec![PartitionEntry {
                id: 0,
                state: PartitionState::Open,
                capacity_bytes: 0,
                path: "p0".into(),
            }],
            seal_age_ms: 1,
            trash_retention_ms: 1,
            history_retention_ms: 1,
            min_free_bytes: 0,
            schedule: Vec::new(),
            max_processes: 2,
            read_only: false,
            backup_detection: Default::default(),
            backup_mode_since_ms: None,
            backup_mode_max_ms: 1,
            checkpoint_after_records: 1,
            encrypted: false,
        }
        .encode()
    }
}
