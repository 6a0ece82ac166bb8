//! Background processes: what runs now, with progress, and a persistent
//! history of Time / Process / Status.
//!
//! Owns the process types an archive operator knows, the registry of running
//! processes (at most one of a type), cancellation at safe points, the
//! mapping from engine errors to the descriptions operators know, and the
//! history log ([`history`]). Each process is a real engine operation run
//! through `Jobs::run` (`Store::run_process` for library users); the mapping
//! is in the README. This module does not decide what the operations do, only
//! how they are run and recorded; it sits over the engine and under the
//! façade, and must not import `store`, `cli` or `service`.

pub mod history;
mod processes;
pub mod schedule;
pub mod sync_caches;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;
use serde::Serialize;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::units::now_ms;
use history::{HistoryEntry, HistoryLog, Status};

/// The background process types, by the names operators know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProcessType {
    /// Rebuild index and catalog from the segments and check the live state against it.
    FullResynchronization,
    /// Fold buffered catalog changes into the catalog checkpoint (not available yet).
    MessageSyncCache,
    /// Fold buffered saveset flags into their checkpoint (not available yet).
    PropertySyncCache,
    /// Seal aged segments (the segment index checkpoint is not available yet).
    FileSyncCache,
    /// Move the items accepted in backup mode into the segments.
    MessageCache,
    /// Rewrite sparse segments, reclaiming dead savesets' bytes.
    Defragmentation,
    /// Move savesets between partitions (drain one, or balance fill).
    Redistribution,
    /// Copy segments whose archive bit is set, then clear the bits.
    BackingUpUnits,
    /// Copy the manifest and the history.
    BackingUpResources,
    /// Purge owners deleted whole whose trash is past its retention.
    DeletingMacroObjects,
    /// Purge trashed references past the trash retention.
    DeletingMicroObjects,
    /// Drop dead savesets (done within the purges; bytes reclaimed by defragmentation).
    DeletingMessages,
    /// Drop owners and entries left without references (done within the purges).
    DeletingEmptyProperties,
}

impl ProcessType {
    /// Every type, in the order the console lists them.
    pub const ALL: [ProcessType; 13] = [
        ProcessType::FullResynchronization,
        ProcessType::MessageSyncCache,
        ProcessType::PropertySyncCache,
        ProcessType::FileSyncCache,
        ProcessType::MessageCache,
        ProcessType::Defragmentation,
        ProcessType::Redistribution,
        ProcessType::BackingUpUnits,
        ProcessType::BackingUpResources,
        ProcessType::DeletingMacroObjects,
        ProcessType::DeletingMicroObjects,
        ProcessType::DeletingMessages,
        ProcessType::DeletingEmptyProperties,
    ];

    /// The name shown to operators.
    pub fn name(self) -> &'static str {
        match self {
            ProcessType::FullResynchronization => "Full DB resynchronization",
            ProcessType::MessageSyncCache => "Processing message sync cache",
            ProcessType::PropertySyncCache => "Processing property sync cache",
            ProcessType::FileSyncCache => "Processing file sync cache",
            ProcessType::MessageCache => "Processing message cache",
            ProcessType::Defragmentation => "DB defragmentation",
            ProcessType::Redistribution => "Redistributing messages in DB",
            ProcessType::BackingUpUnits => "Backing up units",
            ProcessType::BackingUpResources => "Backing up resources",
            ProcessType::DeletingMacroObjects => "Deleting macro-objects from trash",
            ProcessType::DeletingMicroObjects => "Deleting micro-objects from trash",
            ProcessType::DeletingMessages => "Deleting messages",
            ProcessType::DeletingEmptyProperties => "Deleting empty properties",
        }
    }

    /// The code stored in the history log (format-spec/history.md).
    pub fn code(self) -> u8 {
        ProcessType::ALL
            .iter()
            .position(|p| *p == self)
            .map_or(0, |i| i as u8 + 1)
    }

    /// The type for a history code.
    pub fn from_code(code: u8) -> Option<ProcessType> {
        ProcessType::ALL
            .get((code as usize).checked_sub(1)?)
            .copied()
    }

    /// The engine operation behind the type, or why there is none yet.
    pub fn engine_operation(self) -> &'static str {
        match self {
            ProcessType::FullResynchronization => {
                "rebuild index and catalog from the segments alone and compare them with the live store"
            }
            ProcessType::FileSyncCache => {
                "seal the active segment when it is older than the seal age; write the index's checkpoint and install the generation"
            }
            ProcessType::BackingUpUnits => {
                "backup run: copy segments whose archive bit is set, verify, clear the bits"
            }
            ProcessType::BackingUpResources => "backup run: copy the manifest and the history log",
            ProcessType::DeletingMacroObjects => {
                "purge owners deleted whole (no live item) whose trash is past the trash retention"
            }
            ProcessType::DeletingMicroObjects => {
                "purge trashed references past the trash retention"
            }
            ProcessType::DeletingMessages => {
                "not a separate process: savesets die within the purges; their bytes await defragmentation"
            }
            ProcessType::DeletingEmptyProperties => {
                "not a separate process: owners left without references are dropped by the purges"
            }
            ProcessType::MessageSyncCache => {
                "write the catalog's checkpoint (with the other two kinds, from one snapshot)"
            }
            ProcessType::PropertySyncCache => "write the lifecycle's checkpoint",
            ProcessType::MessageCache => {
                "move the items the message cache took in backup mode into the segments, in order"
            }
            ProcessType::Defragmentation => "vaultstore defrag",
            ProcessType::Redistribution => "vaultstore redistribute",
        }
    }
}

impl std::fmt::Display for ProcessType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ProcessType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let want = s.trim().to_ascii_lowercase();
        ProcessType::ALL
            .iter()
            .find(|p| p.name().to_ascii_lowercase() == want)
            .copied()
            .ok_or_else(|| Error::InvalidSetting(format!("unknown process {s:?}")))
    }
}

/// The description an operator sees for an engine error in `process`.
/// The engine error itself is kept as the entry's detail.
pub fn operator_status(process: ProcessType, e: &Error) -> String {
    let text = match (process, e) {
        (_, Error::Cancelled { .. }) => "Cancelled by the operator",
        (_, Error::ObjectStore { .. }) => "Invalid response from the synchronization server",
        (ProcessType::Defragmentation, _) => "Database defragmentation failed",
        (ProcessType::FullResynchronization, _) => {
            "Failed to access the database during synchronization"
        }
        (_, Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::OutOfMemory => {
            "Memory allocation failed"
        }
        (_, Error::TooLarge { .. }) => "Not enough memory to process the message",
        (_, Error::ChecksumMismatch { .. }) => "Incomplete data received",
        (_, Error::Corrupt { .. } | Error::NotFound(_)) => {
            "Failed to read messages from the database"
        }
        (_, Error::Io { op, .. }) if op.starts_with("read") => {
            "Failed to read messages from the database"
        }
        (
            _,
            Error::ManifestCorrupt { .. }
            | Error::UnsupportedVersion { .. }
            | Error::NotAStore { .. },
        ) => "Failed to access the database during synchronization",
        _ => "Failed to process archived messages",
    };
    text.to_string()
}

/// A running process as `jobs` reports it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct RunningProcess {
    /// The run's id (as in the history).
    #[serde(default)]
    pub run: u64,
    /// The process type's name.
    pub process: String,
    /// When it started, Unix ms.
    pub started_ms: u64,
    /// Units done.
    pub done: u64,
    /// Units in all (0 while unknown).
    pub total: u64,
    /// Completion, 0 to 100.
    pub percent: f64,
}

struct RunState {
    run: u64,
    started_ms: u64,
    done: AtomicU64,
    total: AtomicU64,
    cancel: AtomicBool,
    /// What a finished run did, when it says (recorded with Finished).
    outcome: Mutex<Option<String>>,
}

/// Running processes and the history log of one store.
pub(crate) struct Jobs {
    vfs: Arc<dyn crate::io::Vfs>,
    pub(crate) history: HistoryLog,
    running: Mutex<HashMap<ProcessType, Arc<RunState>>>,
    /// Starters waiting for a run's id, by process type (see [`Jobs::expect`]).
    starters: Mutex<HashMap<ProcessType, Starter>>,
    progress_path: PathBuf,
    last_progress_ms: AtomicU64,
    dir: PathBuf,
}

/// Where a starter hears of its run: the run's id once it is recorded as
/// Started, or the error that stopped it before.
pub(crate) type Starter = std::sync::mpsc::Sender<Result<u64>>;

/// File where the running processes and their progress are published for
/// other processes (`vaultstore jobs`); informational only.
pub const PROGRESS_FILE: &str = "jobs.progress";

fn cancel_file(dir: &std::path::Path, process: ProcessType) -> PathBuf {
    dir.join(format!("jobs.cancel-{}", process.code()))
}

impl Jobs {
    /// The processes of the store in `dir`, with its history log opened
    /// (sealed as the store is); a cut or replaced history is reported.
    pub(crate) fn open(
        vfs: Arc<dyn crate::io::Vfs>,
        dir: &std::path::Path,
        read_only: bool,
        sealing: crate::crypto::Sealing,
    ) -> Result<Jobs> {
        let (history, note) = HistoryLog::open(vfs.clone(), dir, read_only, sealing)?;
        if let Some(note) = note {
            tracing::warn!("{note}");
        }
        Ok(Jobs {
            vfs,
            history,
            running: Mutex::new(HashMap::new()),
            starters: Mutex::new(HashMap::new()),
            progress_path: dir.join(PROGRESS_FILE),
            last_progress_ms: AtomicU64::new(0),
            dir: dir.to_path_buf(),
        })
    }

    /// Processes that were Started but never ended: the engine stopped
    /// while they ran. Record them as failed so none shows as running.
    pub(crate) fn close_interrupted(&self) -> Result<usize> {
        let all = self.history.all();
        let mut open: HashMap<u64, &HistoryEntry> = HashMap::new();
        for e in &all {
            match e.status {
                Status::Started => {
                    open.insert(e.run, e);
                }
                _ => {
                    open.remove(&e.run);
                }
            }
        }
        let mut runs: Vec<&&HistoryEntry> = open.values().collect();
        runs.sort_by_key(|e| e.run);
        for e in &runs {
            let process = ProcessType::from_code(e.process);
            let status = match process {
                Some(ProcessType::Defragmentation) => "Database defragmentation failed",
                Some(ProcessType::FullResynchronization) => {
                    "Failed to access the database during synchronization"
                }
                _ => "Failed to process archived messages",
            };
            self.history.append(HistoryEntry {
                time_ms: now_ms().max(e.time_ms),
                run: e.run,
                process: e.process,
                status: Status::Failed(status.into()),
                detail: Some("interrupted: the engine stopped while the process ran".into()),
            })?;
        }
        self.remove(&self.progress_path);
        for p in ProcessType::ALL {
            self.remove(&cancel_file(&self.dir, p));
        }
        Ok(runs.len())
    }

    fn remove(&self, path: &std::path::Path) {
        if self.vfs.exists(path) {
            let _ = self.vfs.remove_file(path);
        }
    }

    fn publish(&self, force: bool) {
        let now = now_ms();
        let last = self.last_progress_ms.load(Ordering::Relaxed);
        if !force && now < last + 500 {
            return;
        }
        self.last_progress_ms.store(now, Ordering::Relaxed);
        let list = self.running_list();
        if list.is_empty() {
            self.remove(&self.progress_path);
            return;
        }
        if let Ok(text) = serde_json::to_vec(&list) {
            let _ = self.vfs.write_atomic(&self.progress_path, &text);
        }
    }

    fn running_list(&self) -> Vec<RunningProcess> {
        let mut out: Vec<RunningProcess> = self
            .running
            .lock()
            .iter()
            .map(|(p, st)| {
                let done = st.done.load(Ordering::Relaxed);
                let total = st.total.load(Ordering::Relaxed);
                RunningProcess {
                    run: st.run,
                    process: p.name().into(),
                    started_ms: st.started_ms,
                    done,
                    total,
                    percent: if total == 0 {
                        0.0
                    } else {
                        (done as f64 * 100.0 / total as f64).min(100.0)
                    },
                }
            })
            .collect();
        out.sort_by_key(|r| r.started_ms);
        out
    }
}

/// The handle a running process reports progress through and checks for
/// cancellation at its safe points.
pub struct Job<'a> {
    jobs: &'a Jobs,
    process: ProcessType,
    state: Arc<RunState>,
}

impl Job<'_> {
    /// The units of work in all, as set so far.
    pub fn total(&self) -> u64 {
        self.state.total.load(Ordering::SeqCst)
    }

    /// Set the amount of work, in units the process chooses.
    pub fn set_total(&self, total: u64) {
        self.state.total.store(total, Ordering::Relaxed);
        self.jobs.publish(false);
    }

    /// Count `n` more units done.
    pub fn advance(&self, n: u64) {
        self.state.done.fetch_add(n, Ordering::Relaxed);
        self.jobs.publish(false);
    }

    /// Say what the run did: the history records it beside Finished.
    pub fn set_outcome(&self, outcome: String) {
        *self.state.outcome.lock() = Some(outcome);
    }

    /// A safe point: `Err(Cancelled)` if the operator asked to cancel.
    pub fn checkpoint(&self) -> Result<()> {
        let requested = self.state.cancel.load(Ordering::Relaxed)
            || self
                .jobs
                .vfs
                .exists(&cancel_file(&self.jobs.dir, self.process));
        if requested {
            return Err(Error::Cancelled {
                process: self.process.name().into(),
            });
        }
        Ok(())
    }
}

impl Jobs {
    /// Run `work` on `engine` as a background process of type `process`: at
    /// most one of a type at a time, Started and the outcome (Finished, or
    /// the operator's description of the error with the engine error as
    /// detail) recorded in the history.
    pub(crate) fn run<T>(
        &self,
        engine: &Engine,
        process: ProcessType,
        work: impl FnOnce(&Job<'_>) -> Result<T>,
    ) -> Result<T> {
        engine.check_can_run(process)?;
        let jobs = self;
        let state = {
            let mut running = jobs.running.lock();
            if let Some(st) = running.get(&process) {
                return Err(Error::AlreadyRunning {
                    process: process.name().into(),
                    started_ms: st.started_ms,
                });
            }
            let st = Arc::new(RunState {
                run: jobs.history.next_run(),
                started_ms: now_ms(),
                done: AtomicU64::new(0),
                total: AtomicU64::new(0),
                cancel: AtomicBool::new(false),
                outcome: Mutex::new(None),
            });
            running.insert(process, st.clone());
            if let Some(starter) = jobs.starters.lock().remove(&process) {
                let _ = starter.send(Ok(st.run));
            }
            st
        };
        let record = |status: Status, detail: Option<String>| {
            jobs.history.append(HistoryEntry {
                time_ms: now_ms(),
                run: state.run,
                process: process.code(),
                status,
                detail,
            })
        };
        let result = record(Status::Started, None).and_then(|_| {
            jobs.publish(true);
            let job = Job {
                jobs,
                process,
                state: state.clone(),
            };
            work(&job)
        });
        let ended = match &result {
            Ok(_) => record(Status::Finished, state.outcome.lock().take()),
            Err(e) => record(
                Status::Failed(operator_status(process, e)),
                Some(e.to_string()),
            ),
        };
        jobs.running.lock().remove(&process);
        jobs.remove(&cancel_file(&jobs.dir, process));
        jobs.publish(true);
        let value = result?;
        ended?;
        Ok(value)
    }

    /// Processes running in this store now, with progress. A store opened
    /// read-only reports what the writing process publishes.
    pub(crate) fn running_processes(&self, read_only: bool) -> Vec<RunningProcess> {
        let jobs = self;
        if read_only {
            return jobs
                .vfs
                .read_small(&jobs.progress_path, 1 << 20)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
        }
        jobs.running_list()
    }

    /// Ask a running process to stop at its next safe point. Works across
    /// processes: the request is also left as a file the runner checks.
    pub(crate) fn cancel_process(&self, process: ProcessType, read_only: bool) -> Result<()> {
        let jobs = self;
        if let Some(st) = jobs.running.lock().get(&process) {
            st.cancel.store(true, Ordering::Relaxed);
            return Ok(());
        }
        let running = self
            .running_processes(read_only)
            .iter()
            .any(|r| r.process == process.name());
        if !running {
            return Err(Error::NothingToDo(format!("{process} is not running")));
        }
        let path = cancel_file(&jobs.dir, process);
        jobs.vfs
            .write_atomic(&path, b"cancel")
            .map_err(|e| Error::io(&path, "write cancel request", e))
    }

    /// Register `starter` to hear the run id of the next `process` run, when
    /// fewer than `max` processes run and none of that type runs or is
    /// being started.
    pub(crate) fn expect(&self, process: ProcessType, max: usize, starter: Starter) -> Result<()> {
        let running = self.running.lock();
        let mut starters = self.starters.lock();
        if let Some(st) = running.get(&process) {
            return Err(Error::AlreadyRunning {
                process: process.name().into(),
                started_ms: st.started_ms,
            });
        }
        if starters.contains_key(&process) {
            return Err(Error::AlreadyRunning {
                process: process.name().into(),
                started_ms: now_ms(),
            });
        }
        if running.len() + starters.len() >= max {
            return Err(Error::TooManyProcesses {
                running: running.len() + starters.len(),
                max,
            });
        }
        starters.insert(process, starter);
        Ok(())
    }

    /// Start `work`, which runs `process` through [`Jobs::run`], on a thread
    /// of its own, when fewer than `max` processes run and none of its type
    /// does; returns the run's id once it is recorded as Started, or the
    /// error that stopped it before.
    pub(crate) fn start(
        &self,
        process: ProcessType,
        max: usize,
        work: impl FnOnce() -> Result<()> + Send + 'static,
    ) -> Result<u64> {
        let (starter, started) = std::sync::mpsc::channel();
        self.expect(process, max, starter.clone())?;
        let spawned = std::thread::Builder::new()
            .name(format!("process-{}", process.code()))
            .spawn(move || {
                if let Err(e) = work() {
                    tracing::warn!("{process}: {e}");
                    // Heard only when it failed before it was recorded.
                    let _ = starter.send(Err(e));
                }
            });
        let heard = match spawned {
            Ok(_) => started.recv().unwrap_or_else(|_| {
                Err(Error::InvalidSetting(format!(
                    "{process} ended before it started"
                )))
            }),
            Err(e) => Err(Error::InvalidSetting(format!(
                "cannot start {process}: {e}"
            ))),
        };
        self.starters.lock().remove(&process);
        heard
    }

    /// Ask the running process with run id `run` to stop at its next safe point.
    pub(crate) fn cancel_run(&self, run: u64, read_only: bool) -> Result<()> {
        let running = self.running_processes(read_only);
        let found = running.iter().find(|r| r.run == run);
        let process = found.and_then(|r| r.process.parse().ok()).ok_or_else(|| {
            Error::NothingToDo(format!("no process with run id {run} is running"))
        })?;
        self.cancel_process(process, read_only)
    }

    /// Ask every running process to stop at its next safe point.
    pub(crate) fn cancel_all(&self) {
        for st in self.running.lock().values() {
            st.cancel.store(true, Ordering::Relaxed);
        }
    }

    /// Drop history entries older than `keep_ms`.
    pub(crate) fn prune_history(&self, keep_ms: u64) -> Result<usize> {
        self.history.prune(now_ms().saturating_sub(keep_ms))
    }
}

#[cfg(test)]
mod tests {
    use crate::index::Location;
    use crate::{InitOptions, Store};

    fn store_with_mail(dir: &std::path::Path) -> Store {
        let store = Store::init(dir.join("s"), &InitOptions::default()).unwrap();
        for n in 0..50u32 {
            let mail = format!("Subject: {n}\r\n\r\nbody {n}\r\n");
            store
                .archive("alice", &n.to_string(), mail.as_bytes(), false)
                .unwrap();
        }
        store.delete("alice", Some("7")).unwrap();
        store
    }

    #[test]
    fn resync_names_an_index_entry_changed_behind_its_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_mail(dir.path());
        assert!(store.full_resynchronization().unwrap().contains("agree"));
        // Same counts, one entry pointing elsewhere: only contents show it.
        let (id, loc) = store.engine().index.read().iter().nth(3).unwrap().unwrap();
        let moved = Location {
            segment: loc.segment,
            offset: loc.offset + 64,
        };
        store.engine().index.write().insert(id, moved);
        let err = store.full_resynchronization().unwrap_err().to_string();
        assert!(
            err.contains(&format!("index entry of saveset {id}"))
                && err.contains(&format!("offset {} live", loc.offset + 64))
                && err.contains(&format!("offset {} in the segments", loc.offset)),
            "{err}"
        );
    }

    #[test]
    fn resync_sees_a_catalog_change_the_counts_do_not_show() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_mail(dir.path());
        // A hold placed in memory only: every count stays the same.
        let op = crate::format::catalog::CatalogOp::Hold {
            owner: "alice".into(),
            item: Some("3".into()),
            on: true,
        };
        store.engine().catalog.write().apply(&op).unwrap();
        let err = store.full_resynchronization().unwrap_err().to_string();
        assert!(err.contains("the catalog differs"), "{err}");
    }
}
