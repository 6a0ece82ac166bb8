//! The library's façade: [`Store`] composes the engine (the log and the
//! state kept over it) with the runner of background processes, and
//! forwards to them. It holds no algorithm: what a call does is written in
//! the layer that owns it (see the crate docs for the layers), and this
//! file only says which layer answers. Only `cli`, `service` and the tools
//! that drive the library as a user does (`import`, `bench`, `sizing`) sit
//! above it.
//! When a write is acknowledged: the crate docs, "Durability".

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::backup::BackupRunReport;
use crate::backup_mode::BackupModeStatus;
use crate::catalog::{Archived, ItemEntry, OwnerStat, PurgeReport, Reference, TrashEntry};
use crate::compaction::{CompactionReport, Redistribution, RemovedSegment};
use crate::engine::Engine;
use crate::error::Result;
use crate::format::FORMAT_VERSION;
use crate::format::manifest::Manifest;
use crate::id::SavesetId;
use crate::jobs::history::HistoryEntry;
use crate::jobs::schedule::{self, ProcessRequest, ScheduledProcess};
use crate::jobs::{Job, Jobs, ProcessType, RunningProcess};
use crate::lifecycle::{
    BackupEntry, Cursor, FeedPage, Pending, PendingExplained, SafetyCopies, StateChange,
};
use crate::partition::PartitionStat;

pub use crate::engine::{PUT_STEP_BYTES, Put, SegmentStat, Stat};
pub use crate::log::{
    DEFAULT_COMPRESSION_LEVEL, DEFAULT_SEGMENT_BYTES, InitOptions, MAX_SEGMENT_BYTES,
    MIN_SEGMENT_BYTES, OpenOptions, Problem, SegmentState, UploadReport, VerifyReport,
};

/// A vaultstore store: a directory of segments with an in-memory index.
///
/// `Store` is `Send + Sync`; share it with an `Arc`. Readers run
/// concurrently with writers; puts hash and compress outside any lock.
///
/// ```
/// use vaultstore::{InitOptions, Store};
/// let dir = tempfile::tempdir().unwrap();
/// let store = Store::init(dir.path().join("s"), &InitOptions::default()).unwrap();
/// let put = store.put(b"Subject: hi\r\n\r\nhello\r\n").unwrap();
/// assert!(put.new);
/// assert_eq!(store.get(&put.id).unwrap(), b"Subject: hi\r\n\r\nhello\r\n");
/// assert!(!store.put(b"Subject: hi\r\n\r\nhello\r\n").unwrap().new);
/// // Two mailboxes hold the same mail: stored once, referenced twice.
/// let a = store.archive("alice", "<1@x>", b"Subject: lunch\r\n\r\nnoon?\r\n", false).unwrap();
/// let b = store.archive("bob", "<1@x>", b"Subject: lunch\r\n\r\nnoon?\r\n", false).unwrap();
/// assert!(a.new_content && !b.new_content && store.refs(&a.id).unwrap().len() == 2);
/// ```
pub struct Store {
    engine: Engine,
    jobs: Jobs,
}

impl Store {
    /// Create a new store in `dir` (which must not exist or be empty) and open it.
    pub fn init(dir: impl AsRef<Path>, opts: &InitOptions) -> Result<Store> {
        Self::init_with(dir, opts, OpenOptions::default())
    }

    /// [`Store::init`] with explicit open options (a fault-injecting file system, say).
    pub fn init_with(
        dir: impl AsRef<Path>,
        opts: &InitOptions,
        open: OpenOptions,
    ) -> Result<Store> {
        let mut open = open;
        if let Some(keys) = crate::log::Log::create(dir.as_ref(), opts, &*open.vfs)? {
            open.unlock = crate::crypto::Unlock::Keys(keys);
        }
        Self::open_with(dir, open)
    }

    /// Open an existing store for reading and writing.
    pub fn open(dir: impl AsRef<Path>) -> Result<Store> {
        Self::open_with(dir, OpenOptions::default())
    }

    /// Open a store with options: replay the log, close as failed the runs
    /// left open, prune the history, seal an aged active segment.
    pub fn open_with(dir: impl AsRef<Path>, opts: OpenOptions) -> Result<Store> {
        let dir = dir.as_ref();
        let engine = Engine::open(dir, &opts)?;
        let sealing = engine.log.sealing().clone();
        let jobs = Jobs::open(opts.vfs.clone(), dir, opts.read_only, sealing)?;
        let store = Store { engine, jobs };
        for warning in store.loose_permissions() {
            tracing::warn!("{warning}");
        }
        if !opts.read_only {
            store.engine.settle_after_open(&store.jobs)?;
        }
        Ok(store)
    }

    /// The engine under the façade, for the layers that work on it.
    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The format version of this build.
    pub fn format_version() -> u32 {
        FORMAT_VERSION
    }

    // The log: settings, seals, recovery.

    /// True when opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.engine.log.is_read_only()
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        self.engine.log.dir()
    }

    /// A copy of the manifest as loaded (settings and partitions).
    pub fn manifest(&self) -> Manifest {
        self.engine.log.manifest()
    }

    /// Problems found and handled while opening: torn tails cut off (and
    /// kept under `quarantine/`), segments that could not be loaded.
    pub fn recovery_report(&self) -> &[Problem] {
        self.engine.log.recovery_report()
    }

    /// Sentences naming the store's directories that other local users may
    /// read (the store, each partition); `open` and `serve` warn with them.
    pub fn loose_permissions(&self) -> Vec<String> {
        self.engine.log.loose_permissions()
    }

    /// Change the trash and history retention (kept in the manifest).
    pub fn set_retention(
        &self,
        trash: Option<std::time::Duration>,
        history: Option<std::time::Duration>,
    ) -> Result<()> {
        self.engine.log.set_retention(trash, history)
    }

    /// Seal the active segment now so it can be backed up: the id sealed,
    /// `None` when no segment was active or it held no record.
    pub fn seal(&self) -> Result<Option<u32>> {
        self.engine.log.seal()
    }

    /// Seal the active segment if it is older than the store's seal age
    /// (and holds a record). Returns the id sealed.
    pub fn seal_if_aged(&self) -> Result<Option<u32>> {
        self.engine.log.seal_if_aged()
    }

    /// Segments removed by compaction, oldest first.
    pub fn removed_segments(&self) -> Vec<RemovedSegment> {
        self.engine.log.removed_segments()
    }

    // Processes, each recorded in the history.

    /// Run `work` as a background process of type `process`: one of a type
    /// at a time, Started and the outcome (Finished, or the operator's
    /// description of the error) recorded in the history.
    pub fn run_process<T>(
        &self,
        process: ProcessType,
        work: impl FnOnce(&Job<'_>) -> Result<T>,
    ) -> Result<T> {
        self.jobs.run(&self.engine, process, work)
    }

    /// Processes running in this store now, with progress. A store opened
    /// read-only reports what the writing process publishes.
    pub fn running_processes(&self) -> Vec<RunningProcess> {
        self.jobs.running_processes(self.is_read_only())
    }

    /// Ask a running process to stop at its next safe point. Works across
    /// processes: the request is also left as a file the runner checks.
    pub fn cancel_process(&self, process: ProcessType) -> Result<()> {
        self.jobs.cancel_process(process, self.is_read_only())
    }

    /// History entries at or after `since_ms`, newest first.
    pub fn history_since(&self, since_ms: u64) -> Vec<HistoryEntry> {
        self.jobs.history.since(since_ms)
    }

    /// Drop history entries older than the history retention.
    pub fn prune_history(&self) -> Result<usize> {
        self.jobs
            .prune_history(self.manifest().history_retention_ms)
    }

    /// Run the due processes once, each recorded in the history (seal,
    /// purges past the trash retention, history pruning): how each ended.
    pub fn maintain(&self) -> Vec<(ProcessType, Result<String>)> {
        self.engine.maintain(&self.jobs)
    }

    /// Rebuild index and catalog from the segments alone (a second,
    /// read-only instance) and compare with the live store.
    pub fn full_resynchronization(&self) -> Result<String> {
        self.engine.full_resynchronization(&self.jobs)
    }

    /// "DB defragmentation": rewrite sealed segments at least `threshold` dead (bytes).
    pub fn defrag(&self, threshold: f64) -> Result<CompactionReport> {
        self.engine.defrag(&self.jobs, threshold)
    }

    /// Move savesets between partitions, as the "Redistributing messages in
    /// DB" process: drain one (it is closed first, and retired once empty),
    /// or balance fill across open ones. Stopped or failed, it resumes
    /// where it left off when run again.
    pub fn redistribute(&self, how: Redistribution) -> Result<CompactionReport> {
        self.engine.redistribute(&self.jobs, how)
    }

    /// The built-in backup ("Backing up units", then "Backing up
    /// resources"): sealed segments whose archive bit is set are copied into
    /// `dest` (a store that opens as it is), verified, then their bits
    /// cleared; then the manifest and history (see `backup`).
    pub fn backup_run(&self, dest: &Path) -> Result<BackupRunReport> {
        self.engine.backup_run(&self.jobs, dest)
    }

    /// Run `request` as its background process, here and now; its report
    /// as the CLI's `--json` prints it.
    pub fn run_request(&self, request: &ProcessRequest) -> Result<serde_json::Value> {
        self.engine.run_request(&self.jobs, request)
    }

    /// Start `request` on a thread of its own, when fewer than the store's
    /// `max_processes` run and none of its type does; returns the run's id
    /// once it is recorded as Started. Its outcome goes to the history.
    pub fn start(self: &Arc<Self>, request: ProcessRequest) -> Result<u64> {
        self.engine.check_can_run(request.process())?;
        let (process, max) = (request.process(), self.manifest().max_processes);
        let store = self.clone();
        self.jobs.start(process, max as usize, move || {
            store.run_request(&request).map(|_| ())
        })
    }

    /// Ask the running process with run id `run` to stop at its next safe point.
    pub fn cancel_run(&self, run: u64) -> Result<()> {
        self.jobs.cancel_run(run, self.is_read_only())
    }

    /// Ask every running process to stop at its next safe point (shutdown).
    pub fn cancel_all_processes(&self) {
        self.jobs.cancel_all()
    }

    /// The schedule of every process type with a periodic duty.
    pub fn schedule(&self) -> Vec<ScheduledProcess> {
        let waits = self.engine.why_processes_wait();
        schedule::schedule(&self.manifest(), &self.jobs.history.all(), waits)
    }

    /// The process types due now (see [`ScheduledProcess`]); `since_ms` is
    /// when the scheduler started.
    pub fn due_processes(&self, since_ms: u64) -> Vec<ProcessType> {
        let urgent = self.engine.urgent_processes();
        let due = schedule::due(&self.schedule(), crate::units::now_ms(), since_ms);
        let rest = due.into_iter().filter(|p| !urgent.contains(p));
        urgent.iter().copied().chain(rest).collect()
    }

    /// Run `process` every `interval` (zero: never), or on its default
    /// schedule again (`None`).
    pub fn set_schedule(&self, process: ProcessType, interval: Option<Duration>) -> Result<()> {
        self.engine.set_schedule(process, interval)
    }

    /// The most background processes the service runs at once (1 or more).
    pub fn set_max_processes(&self, n: u32) -> Result<()> {
        self.engine.set_max_processes(n)
    }

    // Savesets, the catalog, the lifecycle, partitions: the engine.

    /// True when a saveset with this id is stored. Answers from memory.
    pub fn has(&self, id: &SavesetId) -> bool {
        self.engine.has_stored_or_cached(id)
    }

    /// The exact content of saveset `id`. The record's crc is checked, and
    /// its blake3 hash unless the store was opened with `verify_hash: false`;
    /// damage is an [`Error::Corrupt`](crate::Error::Corrupt) naming segment and offset, never wrong bytes.
    pub fn get(&self, id: &SavesetId) -> Result<Vec<u8>> {
        self.engine.get_stored_or_cached(id)
    }

    /// Why the store does not take writes now (read-only, or writes stopped
    /// after a failed fsync), `None` when it does.
    pub fn unhealthy(&self) -> Option<String> {
        self.engine.log.unhealthy()
    }

    /// Totals: savesets, logical and stored bytes, segments, index memory.
    pub fn stat(&self) -> Stat {
        self.engine.stat()
    }

    /// Every segment, by id.
    pub fn segments(&self) -> Vec<SegmentStat> {
        self.engine.segments()
    }

    /// Every saveset id, by id.
    pub fn ids(&self) -> Result<Vec<SavesetId>> {
        self.engine.ids()
    }

    /// Store `content` as a saveset and return its id once it is durable
    /// (see the module docs for exactly when). Content already stored is not
    /// written again: the result says `new: false`.
    pub fn put(&self, content: &[u8]) -> Result<Put> {
        self.engine.put(content)
    }

    /// Store many savesets and acknowledge them together once durable.
    /// The batch goes through in steps of about [`PUT_STEP_BYTES`]: while the
    /// pool hashes and compresses one step, the previous one is appended,
    /// and a helper thread syncs the segment behind the appends, so
    /// preparing, writing and fsync overlap. Sizes are checked first: a
    /// refused batch writes nothing. Results are in input order.
    pub fn put_many(&self, contents: &[&[u8]]) -> Result<Vec<Put>> {
        self.engine.put_many(contents)
    }

    /// Read every record of every segment and check its crc, that it decodes,
    /// and that its content hashes to its id; check sealed segments' footers
    /// against their records.
    pub fn verify(&self) -> VerifyReport {
        self.engine.verify()
    }

    /// [`Store::verify`], calling `progress` with the bytes of each segment
    /// once it is checked (from any thread; they add up to the report's
    /// `bytes`, the segments' total as [`Store::stat`]'s `stored_bytes`).
    pub fn verify_with_progress(&self, progress: &(dyn Fn(u64) + Sync)) -> VerifyReport {
        self.engine.verify_with_progress(progress)
    }

    /// Store `content` (or find it stored) and add the reference
    /// (owner, item) → its id, as one durable step: when this returns `Ok`,
    /// both the content and the reference survive a crash.
    ///
    /// Archiving the same (owner, item) with the same content again is an
    /// idempotent success. With different content it is
    /// [`Error::ItemExists`](crate::Error::ItemExists) unless `replace` is true; replacing drops the
    /// old reference (its saveset dies if that was its last).
    pub fn archive(
        &self,
        owner: &str,
        item: &str,
        content: &[u8],
        replace: bool,
    ) -> Result<Archived> {
        self.engine.archive(owner, item, content, replace)
    }

    /// Archive many items in one step: contents hashed and compressed in
    /// parallel, new contents and one catalog record appended together, one
    /// fsync for all. Each item succeeds or fails on its own (an item that
    /// references other content, or is in trash, is refused and the rest
    /// goes on); results are in input order.
    pub fn archive_many(&self, items: &[(&str, &str, &[u8])]) -> Result<Vec<Result<Archived>>> {
        self.engine.archive_many(items)
    }

    /// The hash handshake: add the reference (owner, item) → `id` for content
    /// that is already stored, so a client that sent only the hash of a large
    /// item never sends its bytes. Content that is not stored is
    /// [`Error::NotStored`](crate::Error::NotStored): the client must send it with [`Store::archive`].
    pub fn link(&self, owner: &str, item: &str, id: &SavesetId) -> Result<Archived> {
        self.engine.link(owner, item, id)
    }

    /// Many references to stored content in one catalog record and one
    /// fsync (the batched hash handshake, and the path bulk imports take).
    /// References that exist already with the same id are skipped; any
    /// other refusal (a conflict, content not stored, a name repeated within
    /// the batch) refuses the whole batch and nothing is written.
    /// Returns how many references were added.
    pub fn link_many(&self, refs: &[(&str, &str, SavesetId)]) -> Result<usize> {
        self.engine.link_many(refs)
    }

    /// Move to trash one item's reference (a micro-object) or, with `item`
    /// `None`, every live reference of the owner (a macro-object). Trashed
    /// references keep their savesets alive and can be restored until purged.
    pub fn delete(&self, owner: &str, item: Option<&str>) -> Result<()> {
        self.engine.delete(owner, item)
    }

    /// Bring back from trash one item, or every trashed item of the owner.
    pub fn restore(&self, owner: &str, item: Option<&str>) -> Result<()> {
        self.engine.restore(owner, item)
    }

    /// Drop for good the references in trash for at least `older_than`, in
    /// the store or of `owner` (and `item`). A purge aimed at a held owner or
    /// item is [`Error::Held`](crate::Error::Held); a store-wide one skips
    /// and counts them. Savesets left without a reference die (their bytes
    /// are dead until defragmentation).
    pub fn purge_trash(
        &self,
        older_than: std::time::Duration,
        owner: Option<&str>,
        item: Option<&str>,
    ) -> Result<PurgeReport> {
        self.engine.purge_trash(older_than, owner, item)
    }

    /// What [`Store::purge_trash`] would do now, changing nothing: the
    /// same checks (an unknown owner or item, a held one), the same counts.
    pub fn purge_trash_plan(
        &self,
        older_than: std::time::Duration,
        owner: Option<&str>,
        item: Option<&str>,
    ) -> Result<PurgeReport> {
        self.engine.purge_trash_plan(older_than, owner, item)
    }

    /// Set (`on`) or clear a legal hold on an owner or one of its items.
    /// An owner or item the catalog does not know is refused; see
    /// [`Store::hold_custodian`] for an owner not archived yet.
    pub fn hold(&self, owner: &str, item: Option<&str>, on: bool) -> Result<()> {
        self.engine.hold(owner, item, on)
    }

    /// Hold an owner whether or not it has items yet (a custodian whose mail
    /// is still to be archived): `owners` lists it with no items.
    pub fn hold_custodian(&self, owner: &str) -> Result<()> {
        self.engine.hold_custodian(owner)
    }

    /// Which owners and items reference a saveset (trashed ones included,
    /// with their time in trash).
    pub fn refs(&self, id: &SavesetId) -> Result<Vec<Reference>> {
        self.engine.refs_with_cached(id)
    }

    /// A page of an owner's items sorted by item, starting after `after`.
    pub fn items(&self, owner: &str, after: Option<&str>, limit: usize) -> Result<Vec<ItemEntry>> {
        self.engine.items(owner, after, limit)
    }

    /// Every owner with its counts.
    pub fn owners(&self) -> Result<Vec<OwnerStat>> {
        self.engine.owners()
    }

    /// Every reference in trash.
    pub fn trash(&self) -> Result<Vec<TrashEntry>> {
        self.engine.trash()
    }

    /// Number of references (live or trashed) to a saveset.
    pub fn ref_count(&self, id: &SavesetId) -> Result<usize> {
        self.engine.ref_count(id)
    }

    /// The indexer has indexed these savesets: they become IndexCommitted.
    /// Ids not stored are refused (nothing is marked); ids already indexed
    /// are skipped. Returns how many were newly marked.
    pub fn mark_indexed(&self, ids: &[SavesetId]) -> Result<usize> {
        self.engine.mark_indexed(ids)
    }

    /// Sealed segments whose archive bit is set, with the checksum a backup
    /// tool must give back to `backup_mark`.
    pub fn backup_list(&self) -> Result<Vec<BackupEntry>> {
        self.engine.backup_list()
    }

    /// A backup tool copied `segment` and gives the checksum of what it
    /// copied: clear its archive bit. A checksum that differs from the
    /// segment's is refused ([`Error::ChecksumMismatch`](crate::Error::ChecksumMismatch)), so a segment is
    /// never marked backed up from a bad copy. Marking twice is harmless.
    pub fn backup_mark(&self, segment: u32, checksum_hex: &str) -> Result<()> {
        self.engine.backup_mark(segment, checksum_hex)
    }

    /// Counters for the operator: how many savesets wait for indexing, for
    /// backup, and are ready for post-processing (live ones: what the feed lists).
    pub fn pending(&self) -> Pending {
        self.engine.pending()
    }

    /// Why savesets are pending, reason by reason, listing `limit` of each.
    pub fn pending_explained(&self, limit: usize) -> Result<PendingExplained> {
        self.engine.pending_explained(limit)
    }

    /// The setting in force.
    pub fn safety_copies(&self) -> SafetyCopies {
        self.engine.safety_copies()
    }

    /// Change the "remove safety copies" setting. Refused while savesets are
    /// stored but not yet post-processed, because those are the items that
    /// would otherwise stay pending for ever.
    pub fn set_safety_copies(&self, mode: SafetyCopies) -> Result<()> {
        self.engine.set_safety_copies(mode)
    }

    /// Savesets that became ready for post-processing after `after` (the
    /// last acknowledged cursor when `None`, or when `after` is older), at
    /// most `limit`, with the references they belong to.
    pub fn feed(&self, after: Option<Cursor>, limit: usize) -> Result<FeedPage> {
        self.engine.feed(after, limit)
    }

    /// The archiving server has post-processed everything before `cursor`.
    /// After a crash the feed resumes from the last acknowledged cursor.
    pub fn feed_ack(&self, cursor: Cursor) -> Result<()> {
        self.engine.feed_ack(cursor)
    }

    /// Add a partition at `path` (an empty or new directory, absolute or
    /// relative to the store), open, with an optional capacity in bytes.
    pub fn partition_add(&self, path: &Path, capacity_bytes: Option<u64>) -> Result<u32> {
        self.engine.partition_add(path, capacity_bytes)
    }

    /// Upload now every sealed segment still staged for a partition in
    /// object storage.
    pub fn upload_staged(&self) -> Result<UploadReport> {
        self.engine.log.upload_staged()
    }

    /// Every partition with its fill.
    pub fn partitions(&self) -> Vec<PartitionStat> {
        self.engine.partitions()
    }

    /// Set a partition's capacity in bytes (0: no limit).
    pub fn partition_set_capacity(&self, id: u32, capacity_bytes: u64) -> Result<()> {
        self.engine.partition_set_capacity(id, capacity_bytes)
    }

    /// Keep at least `bytes` free on every partition's volume: a partition
    /// whose volume would fall below it with one more segment takes none
    /// (0 turns the check off).
    pub fn set_min_free_space(&self, bytes: u64) -> Result<()> {
        self.engine.set_min_free_space(bytes)
    }

    /// Change the state settings: the read-only state, how backups are
    /// detected, the longest backup mode lasts.
    pub fn set_state(&self, change: &StateChange) -> Result<()> {
        self.engine.set_state(change)
    }

    /// Backup mode: on (returns once no process runs), off (the cached
    /// items wait for `ProcessRequest::ProcessMessageCache`), or as it is.
    pub fn backup_mode(&self, on: Option<bool>) -> Result<BackupModeStatus> {
        match on {
            Some(true) => self.engine.backup_mode_on(&self.jobs),
            Some(false) => self.engine.backup_mode_off(),
            None => Ok(self.engine.backup_mode_status()),
        }
    }

    /// Close a partition: it takes no new segments (the active segment, if
    /// it is there, fills up as usual). The last open partition cannot be
    /// closed.
    pub fn partition_close(&self, id: u32) -> Result<()> {
        self.engine.partition_close(id)
    }

    /// What `defrag(threshold)` would do, changing nothing: the segments
    /// it would rewrite, the savesets it would move and drop, the bytes it
    /// would read, write and reclaim, and the segments it would skip.
    pub fn defrag_plan(&self, threshold: f64) -> Result<CompactionReport> {
        self.engine.defrag_plan(threshold)
    }

    /// What `redistribute(how)` would do, changing nothing (see
    /// [`Store::defrag_plan`]). A drain counts the active segment of the
    /// partition too: it is sealed first.
    pub fn redistribute_plan(&self, how: Redistribution) -> Result<CompactionReport> {
        self.engine.redistribute_plan(how)
    }
}
