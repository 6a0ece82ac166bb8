//! The log: the set of segments, the one writer, group commit, sealing,
//! and recovery of the segment files at open.
//!
//! Owns the store directory's manifest and lock, every segment file (through
//! [`crate::io`]'s [`Vfs`], reached per partition as a [`Volume`]), the
//! writer and the durable sequence. Its API is small: append a record, wait
//! until it is durable, locate and read records, seal, list segments, and
//! swap segments for compaction. It knows records only as bytes with a kind
//! and an id: what a catalog batch or a saveset means is the state layer's
//! business (`catalog`, `part_table`, `lifecycle`, `engine`), and it must not
//! import them.
//!
//! Durability: a record is durable once [`Log::wait_durable`] returned for
//! its sequence (group commit: one leader's fdatasync covers every record
//! appended before it; writers never hold the append lock during an fsync),
//! and the log is durable in order. What that means for a put is written
//! on the façade, `store`, under "Durability".

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::manifest::{Manifest, PartitionEntry};
use crate::format::segment::{FooterEntry, RecordHeader, RecordKind};
use crate::index::Location;
use crate::io::object::ObjectUrl;
use crate::io::{StdFs, StoreLock, VFile, Vfs};
use crate::segment::{self, ActiveSegment};
use crate::units::now_ms;

mod open;
pub(crate) mod remote;
mod verify;
mod volume;
mod writer;

pub(crate) use open::{Coverage, ListedParts, Recovered};
use open::{saveset_count, write_manifest};
pub use remote::{DEFAULT_OBJECT_CACHE_BYTES, UploadReport};
pub(crate) use volume::LocalVolume;
pub use volume::Volume;
pub(crate) use writer::Writer;
/// Default size at which a segment is sealed: 128 MiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 128 << 20;
/// Default zstd level.
pub const DEFAULT_COMPRESSION_LEVEL: i32 = 3;
pub use crate::format::manifest::{MAX_SEGMENT_BYTES, MIN_SEGMENT_BYTES};

/// Settings chosen when a store is created.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// A segment is sealed when the next record would take it past this size.
    pub segment_bytes: u64,
    /// zstd level for new records.
    pub compression_level: i32,
    /// Seal the active segment once it is this old (milliseconds), so items
    /// on a quiet store still reach backup.
    pub seal_age_ms: u64,
    /// Encrypt the store under a new master key in one key slot
    /// (format-spec/encryption.md); `None` keeps it in the clear.
    pub encryption: Option<crate::crypto::Encryption>,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            compression_level: DEFAULT_COMPRESSION_LEVEL,
            seal_age_ms: crate::format::manifest::DEFAULT_SEAL_AGE_MS,
            encryption: None,
        }
    }
}

/// How to open a store.
#[derive(Clone)]
pub struct OpenOptions {
    /// Open without the write lock; nothing on disk is changed (no torn-tail
    /// repair, no sealing). Puts fail with [`Error::ReadOnly`].
    pub read_only: bool,
    /// Check the blake3 hash of every saveset `Store::get` returns (the
    /// crc is always checked). On by default.
    pub verify_hash: bool,
    /// The file system to go through (tests inject faults here).
    pub vfs: Arc<dyn Vfs>,
    /// Open from the newest valid checkpoint generation of the sync caches
    /// when there is one (format-spec/checkpoint.md); off, every record is
    /// replayed. On by default.
    pub use_sync_cache: bool,
    /// How to get the keys if the store is encrypted.
    pub unlock: crate::crypto::Unlock,
    /// Bound of the cache of byte ranges read from segments in object
    /// storage, in bytes.
    pub object_cache_bytes: u64,
    /// Upload sealed segments of partitions in object storage from a thread
    /// of this open (on by default; off, only `Store::upload_staged` and the
    /// file sync cache process upload).
    pub background_uploads: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            read_only: false,
            verify_hash: true,
            vfs: Arc::new(StdFs),
            use_sync_cache: true,
            unlock: crate::crypto::Unlock::Nothing,
            object_cache_bytes: DEFAULT_OBJECT_CACHE_BYTES,
            background_uploads: true,
        }
    }
}

/// Whether a segment still takes records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SegmentState {
    /// Records are appended to it.
    Active,
    /// Closed by a footer; never written again.
    Sealed,
}

/// One problem found by `Store::verify` or during open.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// Segment id.
    pub segment: u32,
    /// Byte offset in the segment file.
    pub offset: u64,
    /// The segment file.
    pub path: PathBuf,
    /// What is wrong.
    pub detail: String,
}

/// What `Store::verify` checked and found.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// Segments read.
    pub segments: u64,
    /// Records read and checked.
    pub records: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Everything that did not check out; empty when the store is clean.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// True when no problem was found.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

#[derive(Clone)]
pub(crate) struct SegmentInfo {
    pub(crate) partition_id: u32,
    pub(crate) path: PathBuf,
    pub(crate) file: Arc<dyn VFile>,
    pub(crate) state: SegmentState,
    pub(crate) bytes: u64,
    pub(crate) savesets: u64,
    /// Saveset records ever written to it, dead ones included (feed positions).
    pub(crate) saveset_records: u64,
    pub(crate) logical_bytes: u64,
    pub(crate) dead_savesets: u64,
    pub(crate) dead_bytes: u64,
    /// Live part records and their bytes.
    pub(crate) parts: u64,
    pub(crate) part_bytes: u64,
    pub(crate) created_ms: u64,
    pub(crate) damage: Option<String>,
}

impl SegmentInfo {
    fn new(partition_id: u32, segment: &ActiveSegment, created_ms: u64) -> SegmentInfo {
        SegmentInfo::empty(
            partition_id,
            segment.path.clone(),
            segment.file.clone(),
            segment.end,
            created_ms,
        )
    }

    /// An active segment of `bytes` with nothing counted in it yet.
    fn empty(
        partition_id: u32,
        path: PathBuf,
        file: Arc<dyn VFile>,
        bytes: u64,
        created_ms: u64,
    ) -> SegmentInfo {
        SegmentInfo {
            partition_id,
            path,
            file,
            state: SegmentState::Active,
            bytes,
            savesets: 0,
            saveset_records: 0,
            logical_bytes: 0,
            dead_savesets: 0,
            dead_bytes: 0,
            parts: 0,
            part_bytes: 0,
            created_ms,
            damage: None,
        }
    }
}

/// A segment compaction removed, for backup tools pruning their copies.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RemovedSegment {
    /// The removed segment.
    pub segment: u32,
    /// The segment its live records went to.
    pub replaced_by: u32,
    /// When, Unix ms.
    pub at_ms: u64,
}

/// The log of one store: its segments and the writer that appends to them.
pub(crate) struct Log {
    dir: PathBuf,
    vfs: Arc<dyn Vfs>,
    read_only: bool,
    /// The operator's read-only state (the manifest's), checked on every write.
    read_only_state: std::sync::atomic::AtomicBool,
    /// Backup mode: when it began (Unix ms), 0 when off (the manifest's).
    backup_mode_since: AtomicU64,
    verify_hash: bool,
    _lock: Option<StoreLock>,
    manifest: Mutex<Manifest>,
    segments: Arc<remote::SegmentMap>,
    writer: Mutex<Writer>,
    durable_sequence: AtomicU64,
    /// True while a writer (the group commit's leader) is in fsync.
    syncing: Mutex<bool>,
    /// Signalled when a leader's fsync is done.
    synced: parking_lot::Condvar,
    /// Problems found and handled at open (and by the state's replay).
    recovery: Vec<Problem>,
    /// Segments compactions replaced, by id.
    removed: Mutex<BTreeMap<u32, RemovedSegment>>,
    /// In the clear, or sealed under the store's keys.
    sealing: crate::crypto::Sealing,
    /// Partitions in object storage, connected at open or when added.
    remotes: Arc<remote::Remotes>,
    /// Ranges read from their objects.
    object_cache: Arc<remote::RangeCache>,
    /// Held by whoever uploads staged segments (one pass at a time).
    upload_busy: Arc<Mutex<()>>,
    /// The upload thread, while a writable store has a remote partition.
    uploader: Mutex<Option<remote::Uploader>>,
    /// Whether that thread may run ([`OpenOptions::background_uploads`]).
    background_uploads: bool,
}
impl Log {
    /// Every segment, by id, for reading (hold it briefly: appends wait).
    pub(crate) fn segment_infos(
        &self,
    ) -> parking_lot::RwLockReadGuard<'_, BTreeMap<u32, SegmentInfo>> {
        self.segments.read()
    }

    /// One segment's description.
    pub(crate) fn segment_info(&self, segment: u32) -> Option<SegmentInfo> {
        self.segments.read().get(&segment).cloned()
    }

    /// Count a record of `kind` (`logical` bytes of content, `record_bytes`
    /// on disk) as dead in its segment, for defragmentation.
    pub(crate) fn note_dead(
        &self,
        loc: Location,
        kind: RecordKind,
        logical: u64,
        record_bytes: u64,
    ) {
        if let Some(info) = self.segments.write().get_mut(&loc.segment) {
            if kind == RecordKind::Part {
                info.parts = info.parts.saturating_sub(1);
                info.part_bytes = info.part_bytes.saturating_sub(record_bytes);
            } else {
                info.savesets = info.savesets.saturating_sub(1);
                info.logical_bytes = info.logical_bytes.saturating_sub(logical);
                info.dead_savesets += 1;
            }
            info.dead_bytes += record_bytes;
        }
    }

    /// Swap segments for a compaction, first step: list its sealed
    /// `output` (before the index points into it, so a reader never finds a
    /// location whose segment is missing).
    pub(crate) fn list_output(&self, output: &ActiveSegment, path: PathBuf, len: u64) {
        self.add_sealed_segment(output.partition_id, output, path, len);
        self.kick_uploader();
    }

    /// Swap segments for a compaction, last step: forget the `victims`
    /// `replaced_by` replaced (the caller deletes their files next).
    pub(crate) fn forget_replaced(&self, victims: &[u32], replaced_by: u32) {
        {
            let mut segs = self.segments.write();
            for id in victims {
                segs.remove(id);
            }
        }
        let at_ms = now_ms();
        let mut removed = self.removed.lock();
        for &id in victims {
            removed.insert(
                id,
                RemovedSegment {
                    segment: id,
                    replaced_by,
                    at_ms,
                },
            );
        }
    }

    /// Segments replaced by compactions since this store was created
    /// (as far as their records tell), by id.
    pub(crate) fn removed_segments(&self) -> Vec<RemovedSegment> {
        self.removed.lock().values().cloned().collect()
    }

    /// Note a problem found while the state was rebuilt at open.
    pub(crate) fn note_problem(&mut self, problem: Problem) {
        tracing::warn!(
            "segment {} offset {}: {}",
            problem.segment,
            problem.offset,
            problem.detail
        );
        self.recovery.push(problem);
    }

    /// The zstd level new records are written with.
    pub(crate) fn compression_level(&self) -> i32 {
        self.manifest.lock().compression_level
    }

    /// The path of a segment file, if listed.
    pub(crate) fn segment_path(&self, segment: u32) -> Option<PathBuf> {
        self.segments.read().get(&segment).map(|s| s.path.clone())
    }

    /// Why the log takes no writes now, `None` when it does.
    pub(crate) fn unhealthy(&self) -> Option<String> {
        if self.read_only {
            return Some("the store is open read-only".into());
        }
        if self.in_read_only_state() {
            return Some("the store is in the read-only state".into());
        }
        let w = self.writer.lock();
        w.failed
            .as_ref()
            .map(|d| format!("writes stopped until the store is reopened: {d}"))
    }

    /// True when opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Bytes of segment files in each partition.
    pub(crate) fn partition_bytes(&self) -> HashMap<u32, u64> {
        let mut out = HashMap::new();
        for s in self.segments.read().values() {
            *out.entry(s.partition_id).or_insert(0) += s.bytes;
        }
        out
    }

    /// Change the manifest through `f` and write it durably; the in-memory
    /// copy changes only once the file has.
    /// In backup mode the manifest is one of the files a backup copies,
    /// so nothing changes it (see [`Log::switch_backup_mode`]).
    pub(crate) fn update_manifest<T>(
        &self,
        f: impl FnOnce(&mut Manifest) -> Result<T>,
    ) -> Result<T> {
        self.check_not_in_backup_mode()?;
        self.update_manifest_always(f)
    }

    /// Turn backup mode on (since `since_ms`) or off: the one manifest
    /// change made at the edges of a backup.
    pub(crate) fn switch_backup_mode(&self, since_ms: Option<u64>) -> Result<()> {
        self.update_manifest_always(|m| {
            m.backup_mode_since_ms = since_ms;
            Ok(())
        })
    }

    fn update_manifest_always<T>(&self, f: impl FnOnce(&mut Manifest) -> Result<T>) -> Result<T> {
        // Settings change in the read-only state too: it is one of them.
        self.check_open_for_writing()?;
        let mut m = self.manifest.lock();
        let mut next = m.clone();
        let out = f(&mut next)?;
        write_manifest(&*self.vfs, &self.dir, &next)?;
        self.read_only_state.store(next.read_only, Ordering::SeqCst);
        self.backup_mode_since
            .store(next.backup_mode_since_ms.unwrap_or(0), Ordering::SeqCst);
        *m = next;
        Ok(out)
    }

    /// When backup mode began, `None` when the store is not in it.
    pub(crate) fn backup_mode_since(&self) -> Option<u64> {
        Some(self.backup_mode_since.load(Ordering::SeqCst)).filter(|t| *t > 0)
    }

    fn check_not_in_backup_mode(&self) -> Result<()> {
        match self.backup_mode_since() {
            Some(since_ms) => Err(Error::BackupMode {
                path: self.dir.clone(),
                since_ms,
            }),
            None => Ok(()),
        }
    }

    /// True while the operator keeps the store in the read-only state.
    pub(crate) fn in_read_only_state(&self) -> bool {
        self.read_only_state.load(Ordering::SeqCst)
    }

    /// Change the trash and history retention (kept in the manifest).
    pub fn set_retention(
        &self,
        trash: Option<std::time::Duration>,
        history: Option<std::time::Duration>,
    ) -> Result<()> {
        let ms = |d: std::time::Duration| d.as_millis().min(u64::MAX as u128) as u64;
        self.update_manifest(|m| {
            if let Some(t) = trash {
                m.trash_retention_ms = ms(t);
            }
            if let Some(h) = history {
                m.history_retention_ms = ms(h);
            }
            Ok(())
        })
    }

    /// The file system the store goes through.
    pub(crate) fn sealing(&self) -> &crate::crypto::Sealing {
        &self.sealing
    }

    pub(crate) fn vfs(&self) -> Arc<dyn Vfs> {
        self.vfs.clone()
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Problems found and handled while opening: torn tails cut off (and
    /// kept under `quarantine/`), segments that could not be loaded.
    pub fn recovery_report(&self) -> &[Problem] {
        &self.recovery
    }

    /// A copy of the manifest as loaded (settings and partitions).
    pub fn manifest(&self) -> Manifest {
        self.manifest.lock().clone()
    }

    /// Sentences naming the store's directories (the store and each
    /// partition) that other local users may read; `open` and `serve` warn
    /// with them.
    pub fn loose_permissions(&self) -> Vec<String> {
        let mut dirs = vec![self.dir.clone()];
        dirs.extend(
            self.manifest
                .lock()
                .partitions
                .iter()
                .map(|p| self.partition_dir(p)),
        );
        crate::io::loose_dirs(&dirs)
    }

    /// The volume holding partition `p`'s segments: the one way to its files.
    pub(crate) fn volume(&self, p: &PartitionEntry) -> Box<dyn Volume> {
        if ObjectUrl::parse(&p.path).is_none() {
            return Box::new(LocalVolume::new(self.partition_dir(p), self.vfs.clone()));
        }
        match self.remote(p) {
            Ok(r) => Box::new(remote::RemoteVolume(r)),
            Err(e) => Box::new(volume::UnreachableVolume(e.to_string())),
        }
    }

    /// The connection of remote partition `p`, made on first use.
    pub(crate) fn remote(&self, p: &PartitionEntry) -> Result<Arc<remote::RemotePartition>> {
        let url = ObjectUrl::parse(&p.path).ok_or_else(|| {
            Error::InvalidSetting(format!("partition {} is not in object storage", p.id))
        })?;
        if let Some(r) = self.remotes.lock().get(&p.id) {
            return Ok(r.clone());
        }
        let staging = self.partition_dir(p);
        let r = Arc::new(remote::RemotePartition::connect(
            p.id,
            &url,
            staging,
            self.vfs.clone(),
            self.object_cache.clone(),
        )?);
        Ok(self.remotes.lock().entry(p.id).or_insert(r).clone())
    }

    /// Start the upload thread if the store is writable and has a partition
    /// in object storage (and it is not running yet).
    pub(crate) fn start_uploader(&self) -> Result<()> {
        if self.read_only || !self.background_uploads || self.remotes.lock().is_empty() {
            return Ok(());
        }
        let mut uploader = self.uploader.lock();
        if uploader.is_none() {
            *uploader = Some(remote::Uploader::spawn(
                self.segments.clone(),
                self.remotes.clone(),
                self.upload_busy.clone(),
            )?);
        }
        Ok(())
    }

    /// Wake the upload thread: a segment was sealed.
    fn kick_uploader(&self) {
        if let Some(u) = self.uploader.lock().as_ref() {
            u.kick();
        }
    }

    /// Upload every sealed segment still staged for a partition in object
    /// storage, now, in this thread.
    pub(crate) fn upload_staged(&self) -> Result<UploadReport> {
        if self.read_only {
            return Err(Error::ReadOnly {
                path: self.dir.clone(),
            });
        }
        remote::upload_staged(&self.segments, &self.remotes, &self.upload_busy)
    }

    /// [`Log::upload_staged`] on a store with a partition in object
    /// storage; nothing on others (and on a read-only open).
    pub(crate) fn upload_staged_if_any(&self) -> Result<UploadReport> {
        if self.read_only || self.remotes.lock().is_empty() {
            return Ok(UploadReport::default());
        }
        self.upload_staged()
    }

    /// Where segment `info` is: "local", or its object's URL.
    pub(crate) fn location(&self, info: &SegmentInfo) -> String {
        let remote = self.remotes.lock().contains_key(&info.partition_id);
        match info.path.to_str() {
            Some(url) if remote && url.starts_with("s3://") => url.to_string(),
            _ => "local".to_string(),
        }
    }

    /// `e`, and when it is damage in a segment in object storage, with the
    /// object's URL added to its detail.
    pub(crate) fn naming_object(&self, e: Error) -> Error {
        match e {
            Error::Corrupt {
                segment,
                offset,
                detail,
            } => {
                let url = self
                    .segments
                    .read()
                    .get(&segment)
                    .map(|s| self.location(s))
                    .filter(|l| l != "local");
                let detail = match url {
                    Some(url) => format!("{detail} (object {url})"),
                    None => detail,
                };
                Error::Corrupt {
                    segment,
                    offset,
                    detail,
                }
            }
            other => other,
        }
    }

    /// Why the last upload to remote partition `id` failed, if it has not
    /// succeeded since.
    pub(crate) fn upload_error(&self, id: u32) -> Option<String> {
        self.remotes.lock().get(&id).and_then(|r| r.last_error())
    }

    /// The volume of partition `id`, if it exists.
    fn volume_of(&self, id: u32) -> Option<Box<dyn Volume>> {
        let m = self.manifest.lock();
        let p = m.partitions.iter().find(|p| p.id == id)?;
        Some(self.volume(p))
    }

    /// Seal a segment written outside the writer (a compaction output) in
    /// its partition's volume.
    pub(crate) fn seal_output(&self, output: &ActiveSegment) -> Result<(PathBuf, u64)> {
        match self.volume_of(output.partition_id) {
            Some(v) => v.seal(output),
            None => Err(Error::InvalidSetting(format!(
                "partition {} does not exist",
                output.partition_id
            ))),
        }
    }

    /// Remove a segment file of partition `partition` durably.
    pub(crate) fn remove_segment_file(&self, partition: u32, path: &Path) -> Result<()> {
        match self.volume_of(partition) {
            Some(v) => v.remove(path),
            None => Err(Error::InvalidSetting(format!(
                "partition {partition} does not exist"
            ))),
        }
    }

    /// The local directory of partition `p`: its own, or for a partition in
    /// object storage its staging directory in the store.
    pub(crate) fn partition_dir(&self, p: &PartitionEntry) -> PathBuf {
        if ObjectUrl::parse(&p.path).is_some() {
            return self
                .dir
                .join(crate::format::OBJECT_STAGING_DIR)
                .join(format!("p{}", p.id));
        }
        let path = Path::new(&p.path);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.dir.join(path)
        }
    }

    /// Total saveset records ever written to a segment.
    pub(crate) fn saveset_records(&self, segment: u32) -> u64 {
        self.segments
            .read()
            .get(&segment)
            .map_or(0, |s| s.saveset_records)
    }

    /// Path, open file and length of a segment.
    pub(crate) fn segment_handle(&self, segment: u32) -> Option<(PathBuf, Arc<dyn VFile>, u64)> {
        self.segments
            .read()
            .get(&segment)
            .map(|s| (s.path.clone(), s.file.clone(), s.bytes))
    }

    /// (segment id, live savesets) for every segment.
    pub(crate) fn segments_brief(&self) -> Vec<(u32, u64)> {
        self.segments
            .read()
            .iter()
            .map(|(&id, s)| (id, s.savesets))
            .collect()
    }

    /// Read and check a catalog or state batch record; returns the decoded bytes.
    pub(crate) fn read_batch(&self, segment: u32, e: &FooterEntry) -> Result<Vec<u8>> {
        let (file, limit) = {
            let segs = self.segments.read();
            let info = segs
                .get(&segment)
                .ok_or_else(|| Error::corrupt(segment, e.offset, "segment is missing"))?;
            (info.file.clone(), info.bytes)
        };
        segment::read_content_at(&*file, segment, e.offset, limit, &self.sealing)
            .map(|(_, content)| content)
    }

    /// A segment's open file and readable length.
    pub(crate) fn segment_file(&self, segment: u32) -> Option<(Arc<dyn VFile>, u64)> {
        self.segments
            .read()
            .get(&segment)
            .map(|s| (s.file.clone(), s.bytes))
    }

    /// True when reads check blake3 hashes.
    pub(crate) fn verifies_hashes(&self) -> bool {
        self.verify_hash
    }

    /// Add the difference between a composite's message and recipe lengths
    /// to its segment's logical bytes (the append counted the recipe).
    pub(crate) fn note_composite_logical(&self, loc: Location, message_len: u64, recipe_len: u64) {
        if let Some(info) = self.segments.write().get_mut(&loc.segment) {
            info.logical_bytes = (info.logical_bytes + message_len).saturating_sub(recipe_len);
        }
    }

    /// The header of the record at `loc` (its crc is not checked here).
    pub(crate) fn record_header_at(&self, loc: Location) -> Result<RecordHeader> {
        let file = {
            let segs = self.segments.read();
            let info = segs.get(&loc.segment).ok_or_else(|| {
                Error::corrupt(loc.segment, loc.offset as u64, "segment is missing")
            })?;
            info.file.clone()
        };
        let mut hb = [0u8; crate::format::segment::RECORD_HEADER_BYTES];
        file.read_exact_at(&mut hb, loc.offset as u64)
            .map_err(|e| {
                Error::corrupt(loc.segment, loc.offset as u64, format!("read failed: {e}"))
            })?;
        RecordHeader::decode(&hb).map_err(|d| Error::corrupt(loc.segment, loc.offset as u64, d))
    }
    /// Refuse a write to the segments: opened read-only, the read-only
    /// state, backup mode.
    pub(crate) fn check_writable(&self) -> Result<()> {
        self.check_writable_to_cache()?;
        self.check_not_in_backup_mode()
    }

    /// Refuse a write to the message cache: opened read-only, the
    /// read-only state (backup mode is what the cache is for).
    pub(crate) fn check_writable_to_cache(&self) -> Result<()> {
        self.check_open_for_writing()?;
        if self.in_read_only_state() {
            return Err(Error::ReadOnlyState {
                path: self.dir.clone(),
            });
        }
        Ok(())
    }

    /// Refuse when the store was opened read-only (the state aside).
    fn check_open_for_writing(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly {
                path: self.dir.clone(),
            });
        }
        Ok(())
    }

    /// Look a location up with `lookup` and find its segment. Compaction may
    /// move the record between the two steps (its old segment is gone from
    /// the map): then `lookup` is asked again. `None` when `lookup` is.
    pub(crate) fn locate_with(
        &self,
        lookup: impl Fn() -> Result<Option<Location>>,
    ) -> Result<Option<Located>> {
        let mut attempts = 0;
        loop {
            let Some(loc) = lookup()? else {
                return Ok(None);
            };
            let segs = self.segments.read();
            match segs.get(&loc.segment) {
                Some(info) => {
                    return Ok(Some((
                        loc,
                        info.file.clone(),
                        info.bytes,
                        info.damage.clone(),
                    )));
                }
                None if attempts < 3 => attempts += 1,
                None => {
                    return Err(Error::corrupt(
                        loc.segment,
                        loc.offset as u64,
                        "segment is missing",
                    ));
                }
            }
        }
    }
}

/// Where a saveset is: its location, its segment's file and length, and
/// the segment's damage if any.
pub(crate) type Located = (Location, Arc<dyn VFile>, u64, Option<String>);

pub(crate) fn location(segment: u32, offset: u64) -> Location {
    // Offsets fit: segments are at most MAX_SEGMENT_BYTES and roll over
    // before a record would start past it.
    Location {
        segment,
        offset: offset.min(u32::MAX as u64) as u32,
    }
}
