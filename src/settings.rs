//! The store's settings as an operator changes and reads them: one change
//! (the CLI's `settings` flags, the service's `PUT /settings` body) checked
//! whole, then applied through the façade; and the view both print (the
//! keys of `settings --json`). It drives the public API only: it must not
//! reach below the façade.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::format::manifest::BackupDetection;
use crate::jobs::ProcessType;
use crate::lifecycle::{SafetyCopies, StateChange};
use crate::store::Store;

/// What to change; `None` (or an empty schedule) leaves a setting as it is.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SettingsChange {
    /// How long references stay in trash before a purge takes them, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trash_retention_ms: Option<u64>,
    /// How long the process history is kept, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_retention_ms: Option<u64>,
    /// Free space kept on each partition's volume, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_free_bytes: Option<u64>,
    /// `after-backup` or `immediately`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove_safety_copies: Option<String>,
    /// Process schedules, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedule: Vec<ScheduleChange>,
    /// Most processes the service runs at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_processes: Option<u32>,
    /// Enter (`true`) or leave the read-only state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    /// `archive-bit` or `trigger`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_detection: Option<String>,
    /// The longest backup mode lasts before it turns itself off, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_mode_max_ms: Option<u64>,
    /// Log records after the newest sync cache generation that make a new one due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_after_records: Option<u64>,
}

/// One process's new interval: ms, 0 for never, `None` for its default.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScheduleChange {
    /// The process type's name, as `jobs types` lists it.
    pub process: String,
    /// Time between two runs, ms; 0 never; absent or null its default.
    #[serde(default)]
    pub interval_ms: Option<u64>,
}

impl SettingsChange {
    /// True when nothing would change (a read of the settings).
    pub fn is_empty(&self) -> bool {
        *self == SettingsChange::default()
    }

    /// Check every value, then apply them all: a bad one changes nothing.
    pub fn apply(&self, store: &Store) -> Result<()> {
        let mode: Option<SafetyCopies> = self
            .remove_safety_copies
            .as_deref()
            .map(str::parse)
            .transpose()?;
        let schedule: Vec<(ProcessType, Option<std::time::Duration>)> = self
            .schedule
            .iter()
            .map(|c| {
                let process: ProcessType = c.process.parse()?;
                crate::jobs::schedule::check_schedulable(process)?;
                Ok((process, c.interval_ms.map(std::time::Duration::from_millis)))
            })
            .collect::<Result<_>>()?;
        let backups = self
            .backup_detection
            .as_deref()
            .map(parse_backup_detection)
            .transpose()?;
        if self.backup_mode_max_ms == Some(0) {
            return Err(Error::InvalidSetting(
                "the maximum duration of backup mode must be more than zero".into(),
            ));
        }
        if self.checkpoint_after_records == Some(0) {
            return Err(Error::InvalidSetting(
                "a checkpoint must be due after at least one log record".into(),
            ));
        }
        if self.max_processes == Some(0) {
            return Err(Error::InvalidSetting(
                "at least one background process must be allowed to run".into(),
            ));
        }
        if let Some(mode) = mode {
            store.set_safety_copies(mode)?;
        }
        let ms = |v: Option<u64>| v.map(std::time::Duration::from_millis);
        if self.trash_retention_ms.is_some() || self.history_retention_ms.is_some() {
            store.set_retention(ms(self.trash_retention_ms), ms(self.history_retention_ms))?;
        }
        if let Some(bytes) = self.min_free_bytes {
            store.set_min_free_space(bytes)?;
        }
        for (process, interval) in schedule {
            store.set_schedule(process, interval)?;
        }
        if let Some(n) = self.max_processes {
            store.set_max_processes(n)?;
        }
        let state = StateChange {
            read_only: self.read_only,
            backup_detection: backups,
            backup_mode_max: ms(self.backup_mode_max_ms),
            checkpoint_after_records: self.checkpoint_after_records,
        };
        if state.read_only.is_some()
            || state.backup_detection.is_some()
            || state.backup_mode_max.is_some()
            || state.checkpoint_after_records.is_some()
        {
            store.set_state(&state)?;
        }
        Ok(())
    }
}

/// The settings as `settings --json` and `GET /settings` show them.
pub fn view(store: &Store) -> Value {
    let m = store.manifest();
    json!({
        "segment_bytes": m.segment_bytes,
        "compression_level": m.compression_level,
        "seal_age_ms": m.seal_age_ms,
        "trash_retention_ms": m.trash_retention_ms,
        "history_retention_ms": m.history_retention_ms,
        "min_free_bytes": m.min_free_bytes,
        "remove_safety_copies": store.safety_copies().to_string(),
        "max_processes": m.max_processes,
        "read_only": m.read_only,
        "backup_detection": backup_detection_name(m.backup_detection),
        "backup_mode_max_ms": m.backup_mode_max_ms,
        "checkpoint_after_records": m.checkpoint_after_records,
        "schedule": store.schedule(),
    })
}

/// The name of a backup detection mode, as settings show and take it.
pub fn backup_detection_name(d: BackupDetection) -> &'static str {
    match d {
        BackupDetection::ArchiveBit => "archive-bit",
        BackupDetection::Trigger => "trigger",
    }
}

fn parse_backup_detection(text: &str) -> Result<BackupDetection> {
    match text {
        "archive-bit" => Ok(BackupDetection::ArchiveBit),
        "trigger" => Ok(BackupDetection::Trigger),
        other => Err(Error::InvalidSetting(format!(
            "backup detection must be archive-bit or trigger, not {other:?}"
        ))),
    }
}
