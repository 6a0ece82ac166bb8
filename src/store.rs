//! Opens a store and ties the parts together: put, get, has, seal, stat, verify.
//!
//! Owns the store directory's life: the manifest, the lock, the set of
//! segments, the one writer and group commit. It delegates bytes to
//! [`crate::format`], files to [`crate::segment`] and [`crate::io`], and the
//! id → location map to [`crate::index`].
//!
//! # Durability
//! A saveset is *acknowledged* when [`Store::put`] returns `Ok`. By then its
//! record has been written to the active segment and that file has been
//! fdatasync'ed (and, for a segment created by this put, the segment file and
//! its directory entry were synced before the record was written). An
//! acknowledged saveset survives a crash or power loss of the machine,
//! assuming the disk honours fsync.
//!
//! Group commit: concurrent puts append under a short lock and then wait for
//! durability together. One thread (the leader) issues a single fdatasync that
//! covers every record appended before it, and every waiter whose record it
//! covered returns; writers never hold the append lock during an fsync.
//!
//! The log is durable in order: if a record is durable, every record appended
//! before it is too (a segment is fsynced before it is sealed and before the
//! next one takes records). [`Store::has`] therefore answers from memory
//! without waiting: a saveset it reports may still be in flight, but any write
//! acknowledged after it returned makes that saveset durable as well. A put
//! of content that is already present waits for durability before it reports
//! a duplicate.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};
use rayon::prelude::*;
use serde::Serialize;

use crate::backup::Lifecycle;
use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::format::catalog::decode_batch;
use crate::format::manifest::{
    MAX_MANIFEST_BYTES, Manifest, ManifestError, PartitionEntry, PartitionState,
};
use crate::format::segment::{
    Codec, FooterEntry, MAX_RECORD_BYTES, RecordHeader, RecordKind, SEGMENT_HEADER_BYTES,
    SegmentHeader, decode_payload, encode_payload,
};
use crate::format::state::{StateOp, decode_state_batch, encode_state_batch};
use crate::format::{
    FORMAT_VERSION, MANIFEST_FILE, QUARANTINE_DIR, parse_segment_file_name, segment_file_name,
};
use crate::id::SavesetId;
use crate::index::{Index, Location};
use crate::io::{StdFs, StoreLock, VFile, Vfs, tmp_sibling};
use crate::jobs::Jobs;
use crate::jobs::history::HistoryLog;
use crate::segment::{self, ActiveSegment, LoadedSegment};

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
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            compression_level: DEFAULT_COMPRESSION_LEVEL,
            seal_age_ms: crate::format::manifest::DEFAULT_SEAL_AGE_MS,
        }
    }
}

/// How to open a store.
#[derive(Clone)]
pub struct OpenOptions {
    /// Open without the write lock; nothing on disk is changed (no torn-tail
    /// repair, no sealing). Puts fail with [`Error::ReadOnly`].
    pub read_only: bool,
    /// Check the blake3 hash of every saveset [`Store::get`] returns (the
    /// crc is always checked). On by default.
    pub verify_hash: bool,
    /// The file system to go through (tests inject faults here).
    pub vfs: Arc<dyn Vfs>,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            read_only: false,
            verify_hash: true,
            vfs: Arc::new(StdFs),
        }
    }
}

/// What a put did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Put {
    /// The saveset's id.
    pub id: SavesetId,
    /// True when the content was written; false when it was already stored.
    pub new: bool,
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

/// Digests of everything the store keeps in memory, for comparing the live
/// state with one rebuilt from the segments (Full DB resynchronization).
pub(crate) struct StateDigest {
    index: [u8; 32],
    entries: Vec<(SavesetId, Location)>,
    parts: [u8; 32],
    catalog: [u8; 32],
    lifecycle: [u8; 32],
}

impl StateDigest {
    pub(crate) fn same_as(&self, other: &StateDigest) -> bool {
        self.difference(other).is_none()
    }

    /// What differs, in words naming the first differing index entry.
    pub(crate) fn difference(&self, other: &StateDigest) -> Option<String> {
        if self.index != other.index {
            return Some(first_index_difference(&self.entries, &other.entries));
        }
        [
            ("part table", self.parts, other.parts),
            ("catalog", self.catalog, other.catalog),
            ("lifecycle", self.lifecycle, other.lifecycle),
        ]
        .into_iter()
        .find(|(_, a, b)| a != b)
        .map(|(what, _, _)| format!("the {what} differs"))
    }
}

fn first_index_difference(
    live: &[(SavesetId, Location)],
    rebuilt: &[(SavesetId, Location)],
) -> String {
    let place = |l: &Location| format!("segment {} offset {}", l.segment, l.offset);
    let mut a = live.iter().peekable();
    let mut b = rebuilt.iter().peekable();
    loop {
        match (a.peek(), b.peek()) {
            (Some((ia, la)), Some((ib, lb))) if ia == ib => {
                if la != lb {
                    return format!(
                        "index entry of saveset {ia}: {} live, {} in the segments",
                        place(la),
                        place(lb)
                    );
                }
                a.next();
                b.next();
            }
            (Some((ia, _)), Some((ib, _))) if ia.0 < ib.0 => {
                return format!("saveset {ia} is indexed live but not in the segments");
            }
            (_, Some((ib, _))) => {
                return format!("saveset {ib} is in the segments but not indexed live");
            }
            (Some((ia, _)), None) => {
                return format!("saveset {ia} is indexed live but not in the segments");
            }
            (None, None) => return "the index differs".into(),
        }
    }
}

/// One segment as `segments` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentStat {
    /// Segment id.
    pub id: u32,
    /// Partition id.
    pub partition: u32,
    /// Active or sealed.
    pub state: SegmentState,
    /// Size of the file in bytes.
    pub bytes: u64,
    /// Savesets recorded in it.
    pub savesets: u64,
    /// Their total uncompressed size.
    pub logical_bytes: u64,
    /// Savesets in it that are dead.
    pub dead_savesets: u64,
    /// Record bytes of dead savesets and dead parts.
    pub dead_bytes: u64,
    /// Live part records in it (format-spec/parts.md).
    pub parts: u64,
    /// Set while the segment awaits backup (always for the active one).
    pub archive_bit: bool,
    /// The file.
    pub path: PathBuf,
    /// Creation time, Unix ms.
    pub created_ms: u64,
    /// Set when the segment could not be loaded; its savesets are unavailable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub damage: Option<String>,
}

/// Totals of a store.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stat {
    /// Savesets indexed.
    pub savesets: u64,
    /// Their total uncompressed size.
    pub logical_bytes: u64,
    /// Bytes of segment files on disk.
    pub stored_bytes: u64,
    /// Number of segment files.
    pub segments: u64,
    /// Heap bytes held by the in-memory index.
    pub index_bytes: u64,
    /// Live references (owner, item → saveset).
    pub references: u64,
    /// References in trash.
    pub trashed_references: u64,
    /// Owners in the catalog.
    pub owners: u64,
    /// Savesets whose last reference was purged (bytes not yet reclaimed).
    pub dead_savesets: u64,
    /// Record bytes of dead savesets, reclaimable by defragmentation.
    pub dead_bytes: u64,
    /// Approximate heap bytes held by the catalog.
    pub catalog_bytes: u64,
    /// Live parts: attachments stored once for the split messages listing them.
    pub parts: u64,
    /// Stored bytes of live part records.
    pub part_bytes: u64,
    /// Decoded bytes that part dedup did not store again (parts listed by
    /// more than one live saveset, counted for every extra listing).
    pub part_dedup_saved_bytes: u64,
    /// `part_dedup_saved_bytes` as a share of `logical_bytes`.
    pub part_dedup_share: f64,
    /// Heap bytes held by the part index and reference counts.
    pub part_table_bytes: u64,
}

/// One problem found by [`Store::verify`] or during open.
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

/// What [`Store::verify`] checked and found.
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

/// A payload ready to append: raw content is borrowed, not copied.
pub(crate) type Encoded<'a> = (Codec, Cow<'a, [u8]>);

/// Content hashed and compressed, ready to append.
pub(crate) struct Prepared<'a> {
    pub(crate) id: SavesetId,
    pub(crate) logical_len: u64,
    /// `None` when the content was already stored at preparation time.
    pub(crate) encoded: Option<Encoded<'a>>,
    /// Set when the content is a MIME message stored split: `encoded` is
    /// then its recipe.
    pub(crate) composite: Option<crate::part_table::PreparedComposite>,
}

impl Writer {
    /// The last sequence handed out.
    pub(crate) fn next_sequence_minus_one(&self) -> u64 {
        self.next_sequence - 1
    }

    /// Note the parts of the composite record just appended at `loc`.
    pub(crate) fn set_part_list(&mut self, loc: Location, message_len: u64, parts: Vec<[u8; 32]>) {
        if let Some(a) = self.active.as_mut().filter(|a| a.id == loc.segment) {
            a.set_part_list(loc.offset as u64, message_len, parts);
        }
    }
}

/// The single appender's state; held only while appending.
pub(crate) struct Writer {
    active: Option<ActiveSegment>,
    next_sequence: u64,
    failed: Option<String>,
}

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
/// ```
pub struct Store {
    dir: PathBuf,
    vfs: Arc<dyn Vfs>,
    read_only: bool,
    verify_hash: bool,
    _lock: Option<StoreLock>,
    manifest: Mutex<Manifest>,
    pub(crate) index: RwLock<Index>,
    pub(crate) parts: RwLock<crate::part_table::PartTable>,
    pub(crate) segments: RwLock<BTreeMap<u32, SegmentInfo>>,
    writer: Mutex<Writer>,
    pub(crate) catalog: RwLock<Catalog>,
    pub(crate) lifecycle: Mutex<Lifecycle>,
    jobs: Jobs,
    durable_sequence: AtomicU64,
    /// True while a writer (the group commit's leader) is in fsync.
    syncing: Mutex<bool>,
    /// Signalled when a leader's fsync is done.
    synced: parking_lot::Condvar,
    pub(crate) recovery: Vec<Problem>,
    pub(crate) compaction: Mutex<crate::compaction::CompactionLog>,
    pub(crate) compaction_pass: Mutex<()>,
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn new_store_id(dir: &Path) -> [u8; 16] {
    let mut h = blake3::Hasher::new();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.update(&nanos.to_le_bytes());
    h.update(&std::process::id().to_le_bytes());
    h.update(dir.as_os_str().as_encoded_bytes());
    let stack_marker = 0u8;
    h.update(&(&stack_marker as *const u8 as usize).to_le_bytes());
    let mut id = [0u8; 16];
    id.copy_from_slice(&h.finalize().as_bytes()[..16]);
    id
}

fn validate_init(opts: &InitOptions) -> Result<()> {
    use crate::units::format_bytes;
    if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&opts.segment_bytes) {
        return Err(Error::InvalidSetting(format!(
            "segment size {} is out of range: it must be from {} to {}",
            format_bytes(opts.segment_bytes),
            format_bytes(MIN_SEGMENT_BYTES),
            format_bytes(MAX_SEGMENT_BYTES)
        )));
    }
    let levels = zstd::compression_level_range();
    if !levels.contains(&opts.compression_level) {
        return Err(Error::InvalidSetting(format!(
            "compression level {} is out of range: it must be from {} (fastest) to {} (smallest)",
            opts.compression_level,
            levels.start(),
            levels.end()
        )));
    }
    Ok(())
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
        let dir = dir.as_ref();
        validate_init(opts)?;
        let vfs = open.vfs.clone();
        if vfs.exists(dir) {
            let names = vfs
                .list_dir(dir)
                .map_err(|e| Error::io(dir, "list directory", e))?;
            if !names.is_empty() {
                return Err(Error::AlreadyExists {
                    path: dir.to_path_buf(),
                });
            }
        }
        // The store directory is private, even when it existed (empty).
        vfs.create_dir_all(dir)
            .map_err(|e| Error::io(dir, "create directory", e))?;
        let partition_dir = dir.join("p0");
        vfs.create_dir_all(&partition_dir)
            .map_err(|e| Error::io(&partition_dir, "create directory", e))?;
        let manifest = Manifest {
            store_id: new_store_id(dir),
            created_ms: now_ms(),
            segment_bytes: opts.segment_bytes,
            compression_level: opts.compression_level,
            next_segment_id: 1,
            partitions: vec![PartitionEntry {
                id: 0,
                state: PartitionState::Open,
                capacity_bytes: 0,
                path: "p0".into(),
            }],
            seal_age_ms: opts.seal_age_ms,
            trash_retention_ms: crate::format::manifest::DEFAULT_RETENTION_MS,
            history_retention_ms: crate::format::manifest::DEFAULT_RETENTION_MS,
            min_free_bytes: 0,
        };
        let path = dir.join(MANIFEST_FILE);
        vfs.write_atomic(&path, &manifest.encode())
            .map_err(|e| Error::io(&path, "write manifest", e))?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            // Make the store directory's own entry durable.
            let _ = vfs.sync_dir(parent);
        }
        Self::open_with(dir, open)
    }

    /// Open an existing store for reading and writing.
    pub fn open(dir: impl AsRef<Path>) -> Result<Store> {
        Self::open_with(dir, OpenOptions::default())
    }

    /// Open an existing store with options.
    pub fn open_with(dir: impl AsRef<Path>, opts: OpenOptions) -> Result<Store> {
        let dir = dir.as_ref().to_path_buf();
        let vfs = opts.vfs.clone();
        let manifest_path = dir.join(MANIFEST_FILE);
        if !vfs.exists(&manifest_path) {
            return Err(if !vfs.exists(&dir) {
                Error::StoreMissing { path: dir }
            } else if dir.is_file() {
                Error::StoreIsAFile { path: dir }
            } else {
                Error::NotAStore { path: dir }
            });
        }
        let lock = if opts.read_only {
            None
        } else {
            Some(StoreLock::acquire(&dir)?)
        };
        let manifest = read_manifest(&*vfs, &manifest_path)?;
        if !opts.read_only {
            let tmp = tmp_sibling(&manifest_path);
            if vfs.exists(&tmp) {
                let _ = vfs.remove_file(&tmp);
            }
        }
        let (history, history_note) = HistoryLog::open(vfs.clone(), &dir, opts.read_only)?;
        let jobs = Jobs::new(vfs.clone(), history, &dir);
        let mut store = Store {
            jobs,
            dir,
            vfs,
            read_only: opts.read_only,
            verify_hash: opts.verify_hash,
            _lock: lock,
            manifest: Mutex::new(manifest),
            index: RwLock::new(Index::default()),
            parts: RwLock::new(Default::default()),
            segments: RwLock::new(BTreeMap::new()),
            writer: Mutex::new(Writer {
                active: None,
                next_sequence: 1,
                failed: None,
            }),
            catalog: RwLock::new(Catalog::default()),
            lifecycle: Mutex::new(Lifecycle::default()),
            durable_sequence: AtomicU64::new(0),
            syncing: Mutex::new(false),
            synced: parking_lot::Condvar::new(),
            recovery: Vec::new(),
            compaction: Mutex::new(Default::default()),
            compaction_pass: Mutex::new(()),
        };
        store.recover()?;
        if let Some(note) = history_note {
            tracing::warn!("{note}");
        }
        for warning in store.loose_permissions() {
            tracing::warn!("{warning}");
        }
        if !store.read_only {
            // A process that was running when the engine stopped ended with an error.
            store.jobs.close_interrupted()?;
            let _ = store.prune_history();
            // A quiet store's old active segment is sealed so it can be backed up.
            store.seal_if_aged()?;
        }
        Ok(store)
    }

    /// Running processes and the history log.
    pub(crate) fn jobs(&self) -> &Jobs {
        &self.jobs
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
    pub(crate) fn update_manifest<T>(
        &self,
        f: impl FnOnce(&mut Manifest) -> Result<T>,
    ) -> Result<T> {
        self.check_writable()?;
        let mut m = self.manifest.lock();
        let mut next = m.clone();
        let out = f(&mut next)?;
        write_manifest(&*self.vfs, &self.dir, &next)?;
        *m = next;
        Ok(out)
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

    /// Digests of the in-memory state: index, part table, catalog, lifecycle.
    pub(crate) fn state_digest(&self) -> StateDigest {
        let (index, entries) = self.index.read().digest();
        StateDigest {
            index,
            entries,
            parts: self.parts.read().digest(),
            catalog: self.catalog.read().digest(),
            lifecycle: self.lifecycle.lock().digest(),
        }
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

    pub(crate) fn partition_dir(&self, p: &PartitionEntry) -> PathBuf {
        let path = Path::new(&p.path);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.dir.join(path)
        }
    }

    /// Load every segment, repair what a crash left, build the index.
    fn recover(&mut self) -> Result<()> {
        let manifest = self.manifest.lock().clone();
        let mut found: Vec<(u32, bool, u32, PathBuf)> = Vec::new();
        for p in &manifest.partitions {
            if p.state == PartitionState::Retired {
                // Drained by redistribution; its volume may be gone.
                continue;
            }
            let pdir = self.partition_dir(p);
            let names = self.vfs.list_dir(&pdir).map_err(|e| {
                Error::io(
                    &pdir,
                    "list partition directory (is the volume mounted?)",
                    e,
                )
            })?;
            for name in names {
                if let Some((id, sealed)) = parse_segment_file_name(&name) {
                    found.push((id, sealed, p.id, pdir.join(&name)));
                }
            }
        }
        found.sort_by_key(|f| (f.0, !f.1));
        // A crash between writing `.sealed` and removing `.active` cannot
        // happen (rename is atomic), so one id has one file; if both exist,
        // the sealed one wins and the other is reported.
        found.dedup_by(|b, a| {
            if a.0 == b.0 {
                self.recovery.push(Problem {
                    segment: b.0,
                    offset: 0,
                    path: b.3.clone(),
                    detail: "a second file for this segment id was ignored".into(),
                });
                true
            } else {
                false
            }
        });

        let vfs = self.vfs.clone();
        let read_only = self.read_only;
        let loaded: Vec<LoadedFile> = found
            .into_par_iter()
            .map(|(id, sealed, partition, path)| {
                let r = load_one(&*vfs, &path, id, sealed, read_only);
                (id, partition, path, sealed, r)
            })
            .collect();

        let loaded = self.settle_compactions(loaded)?;
        let last_active = loaded
            .iter()
            .filter(|l| !l.3 && matches!(l.4, Ok(Some(_))))
            .map(|l| l.0)
            .max();
        let mut replay: Vec<(u32, FooterEntry)> = Vec::new();
        let mut composites: Vec<ListedParts> = Vec::new();
        let mut max_sequence = 0u64;
        let mut max_segment = 0u32;
        let store_id = manifest.store_id;
        for (id, partition, path, sealed, result) in loaded {
            max_segment = max_segment.max(id);
            let (file, mut seg) = match result {
                Ok(Some(x)) => x,
                Ok(None) => {
                    self.recovery.push(Problem {
                        segment: id,
                        offset: 0,
                        path,
                        detail: "removed an empty segment left by a crash while creating it".into(),
                    });
                    continue;
                }
                Err(e) => {
                    self.note_damaged(id, partition, path, e);
                    continue;
                }
            };
            if seg.header.store_id != store_id {
                let e = Error::corrupt(id, 0, "segment belongs to another store");
                self.note_damaged(id, partition, path, e);
                continue;
            }
            if seg.header.partition_id != partition {
                self.recovery.push(Problem {
                    segment: id,
                    offset: 0,
                    path: path.clone(),
                    detail: format!(
                        "segment was created in partition {} but found in partition {partition}",
                        seg.header.partition_id
                    ),
                });
            }
            if let Some((offset, detail)) = seg.damage.clone() {
                self.handle_damage(id, &file, &mut seg, sealed, offset, detail)?;
            }
            max_sequence = max_sequence.max(seg.sequences.1);
            replay.extend(seg.entries.iter().map(|e| (id, *e)));
            composites.extend(seg.part_lists.iter().filter_map(|l| {
                let e = seg.entries.get(l.entry as usize)?;
                Some(ListedParts {
                    loc: location(id, e.offset),
                    saveset: SavesetId(e.id),
                    parts: l.parts.iter().map(|p| SavesetId(*p)).collect(),
                })
            }));
            let mut state = if sealed {
                SegmentState::Sealed
            } else {
                SegmentState::Active
            };
            let mut path = path;
            if !sealed && !self.read_only {
                if seg.has_footer || Some(id) != last_active {
                    // Finish a seal the crash interrupted, or close an older
                    // active segment: only one segment takes records.
                    let (p, len) = self.finish_seal(&seg, file.clone())?;
                    path = p;
                    seg.file_len = len;
                    state = SegmentState::Sealed;
                } else {
                    self.writer.lock().active = Some(ActiveSegment::resume(&seg, file.clone()));
                }
            }
            let bytes = if state == SegmentState::Active {
                seg.data_end
            } else {
                seg.file_len
            };
            let (parts, part_bytes) = seg.part_records();
            self.segments.get_mut().insert(
                id,
                SegmentInfo {
                    partition_id: partition,
                    path,
                    file,
                    state,
                    bytes,
                    savesets: saveset_count(&seg.entries),
                    saveset_records: saveset_count(&seg.entries),
                    logical_bytes: seg.saveset_logical_bytes(),
                    dead_savesets: 0,
                    dead_bytes: 0,
                    parts,
                    part_bytes,
                    created_ms: seg.header.created_ms,
                    damage: None,
                },
            );
        }
        self.replay(replay, composites)?;
        self.writer.get_mut().next_sequence = max_sequence + 1;
        self.durable_sequence.store(max_sequence, Ordering::SeqCst);
        if !self.read_only && max_segment >= manifest.next_segment_id {
            let mut m = self.manifest.lock();
            m.next_segment_id = max_segment + 1;
            write_manifest(&*self.vfs, &self.dir, &m)?;
        }
        Ok(())
    }

    /// Rebuild the index and the catalog from every record, in sequence
    /// order: savesets enter the index (earliest copy first), catalog batches
    /// are applied, and savesets they leave without a reference die.
    fn replay(
        &mut self,
        mut entries: Vec<(u32, FooterEntry)>,
        composites: Vec<ListedParts>,
    ) -> Result<()> {
        entries.sort_by_key(|(_, e)| e.sequence);
        // Sequences are unique; a second record with one is a copy made by a
        // compaction whose victims are still here (a damaged compaction
        // record): apply it once.
        entries.dedup_by_key(|(_, e)| e.sequence);
        let savesets: Vec<(SavesetId, Location, u64)> = entries
            .iter()
            .filter(|(_, e)| e.kind.is_saveset())
            .map(|(seg, e)| (SavesetId(e.id), location(*seg, e.offset), e.sequence))
            .collect();
        let (index, duplicates) =
            Index::build(savesets.iter().map(|&(id, loc, _)| (id, loc)).collect());
        *self.index.get_mut() = index;
        // Later copies of the same content (re-stored after it died, or left
        // by a crash): a saveset that dies falls back to its next copy.
        let mut later: HashMap<SavesetId, VecDeque<(u64, Location)>> = HashMap::new();
        if duplicates > 0 {
            let mut sorted = savesets;
            sorted.sort_by_key(|&(id, _, seq)| (id, seq));
            for group in sorted.chunk_by(|a, b| a.0 == b.0).filter(|g| g.len() > 1) {
                later.insert(
                    group[0].0,
                    group[1..].iter().map(|&(_, l, s)| (s, l)).collect(),
                );
            }
        }
        for (seg, e) in &entries {
            match e.kind {
                RecordKind::Saveset | RecordKind::Composite => self
                    .lifecycle
                    .get_mut()
                    .on_stored(SavesetId(e.id), e.sequence),
                RecordKind::Part => {}
                RecordKind::Catalog => self.replay_catalog(*seg, e, &mut later),
                RecordKind::State => self.replay_state(*seg, e),
                RecordKind::Compaction | RecordKind::Footer => {}
            }
        }
        self.replay_parts(&entries, composites);
        Ok(())
    }

    /// Once the catalog decided which savesets live: index the part
    /// records, count the live savesets listing each part, and count as
    /// dead the parts none lists (and extra copies).
    fn replay_parts(&mut self, entries: &[(u32, FooterEntry)], composites: Vec<ListedParts>) {
        let records: Vec<(SavesetId, Location, u64)> = entries
            .iter()
            .filter(|(_, e)| e.kind == RecordKind::Part)
            .map(|(seg, e)| (SavesetId(e.id), location(*seg, e.offset), e.logical_len))
            .collect();
        if records.is_empty() && composites.is_empty() {
            return;
        }
        let (index, _) = Index::build(records.iter().map(|&(id, loc, _)| (id, loc)).collect());
        let lens: HashMap<SavesetId, u64> = records.iter().map(|&(id, _, len)| (id, len)).collect();
        let mut missing = Vec::new();
        {
            let table = self.parts.get_mut();
            table.index = index;
            for c in &composites {
                if self.index.get_mut().get(&c.saveset) != Some(c.loc) {
                    continue;
                }
                let listed: Vec<(SavesetId, u64)> = c
                    .parts
                    .iter()
                    .map(|id| (*id, lens.get(id).copied().unwrap_or(0)))
                    .collect();
                for id in &c.parts {
                    if !table.index.contains(id) {
                        missing.push((c.loc, *id));
                    }
                }
                table.reference(&listed);
            }
        }
        for (loc, id) in missing {
            self.note_replay_problem(
                loc.segment,
                loc.offset as u64,
                format!("part {id} listed by saveset at this offset is missing"),
            );
        }
        for (id, loc, _) in records {
            let table = self.parts.get_mut();
            let indexed = table.index.get(&id) == Some(loc);
            if indexed && table.ref_count(&id) > 0 {
                continue;
            }
            if indexed {
                table.index.remove(&id);
            }
            self.count_dead(loc);
        }
    }

    fn replay_catalog(
        &mut self,
        seg: u32,
        e: &FooterEntry,
        later: &mut HashMap<SavesetId, VecDeque<(u64, Location)>>,
    ) {
        let ops = match self
            .read_batch(seg, e)
            .and_then(|b| decode_batch(&b).map_err(|d| Error::corrupt(seg, e.offset, d)))
        {
            Ok(ops) => ops,
            Err(err) => {
                self.note_replay_problem(seg, e.offset, format!("catalog batch unreadable: {err}"));
                return;
            }
        };
        for op in ops {
            let catalog = self.catalog.get_mut();
            if let Err(err) = catalog.check(&op) {
                self.note_replay_problem(seg, e.offset, format!("catalog change skipped: {err}"));
                continue;
            }
            let fx = catalog.apply(&op);
            for id in fx.dead {
                self.bury_at_replay(id, e.sequence, later);
            }
        }
    }

    fn replay_state(&mut self, seg: u32, e: &FooterEntry) {
        let ops = match self
            .read_batch(seg, e)
            .and_then(|b| decode_state_batch(&b).map_err(|d| Error::corrupt(seg, e.offset, d)))
        {
            Ok(ops) => ops,
            Err(err) => {
                self.note_replay_problem(seg, e.offset, format!("state batch unreadable: {err}"));
                return;
            }
        };
        for op in &ops {
            let records = |s: u32| self.saveset_records(s);
            self.lifecycle.lock().apply(op, e.sequence, records);
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

    /// Append one state batch and apply it in sequence order; durable on return.
    pub(crate) fn commit_state(&self, ops: Vec<StateOp>) -> Result<()> {
        let seq = {
            let mut w = self.lock_writer();
            let seq =
                self.append_batch_locked(&mut w, RecordKind::State, &encode_state_batch(&ops))?;
            let mut lc = self.lifecycle.lock();
            for op in &ops {
                lc.apply(op, seq, |s| self.saveset_records(s));
            }
            seq
        };
        self.wait_durable(seq)
    }

    /// Read and check a catalog or state batch record; returns the decoded bytes.
    fn read_batch(&self, segment: u32, e: &FooterEntry) -> Result<Vec<u8>> {
        let (file, limit) = {
            let segs = self.segments.read();
            let info = segs
                .get(&segment)
                .ok_or_else(|| Error::corrupt(segment, e.offset, "segment is missing"))?;
            (info.file.clone(), info.bytes)
        };
        segment::read_content_at(&*file, segment, e.offset, limit).map(|(_, content)| content)
    }

    fn note_replay_problem(&mut self, segment: u32, offset: u64, detail: String) {
        tracing::warn!("segment {segment} offset {offset}: {detail}");
        let path = self
            .segments
            .get_mut()
            .get(&segment)
            .map(|s| s.path.clone())
            .unwrap_or_default();
        self.recovery.push(Problem {
            segment,
            offset,
            path,
            detail,
        });
    }

    fn bury_at_replay(
        &mut self,
        id: SavesetId,
        died_at: u64,
        later: &mut HashMap<SavesetId, VecDeque<(u64, Location)>>,
    ) {
        // Compaction drops dead copies: the indexed copy may have been
        // written after this death (stored again later), and stays live.
        let indexed = self.index.get_mut().get(&id);
        let stored_later = indexed.is_some_and(|loc| {
            self.record_header_at(loc)
                .is_ok_and(|h| h.sequence > died_at)
        });
        if stored_later {
            return;
        }
        self.bury_in_replay(&[id]);
        // A copy written after the death is the live saveset now.
        if let Some(copies) = later.get_mut(&id) {
            while let Some(&(seq, loc)) = copies.front() {
                copies.pop_front();
                if seq > died_at {
                    self.index.get_mut().insert(id, loc);
                    break;
                }
                self.count_dead(loc);
            }
        }
    }

    /// Savesets without references are dead: out of the index, their record
    /// bytes counted as dead in their segment for defragmentation.
    pub(crate) fn bury(&self, ids: &[SavesetId]) {
        self.bury_with(ids, true)
    }

    /// At replay, part counts are taken after the catalog is replayed.
    fn bury_in_replay(&self, ids: &[SavesetId]) {
        self.bury_with(ids, false)
    }

    fn bury_with(&self, ids: &[SavesetId], release_parts: bool) {
        for id in ids {
            let removed = self.index.write().remove(id);
            if let Some(loc) = removed {
                let listed = self.count_dead(loc);
                if release_parts && !listed.is_empty() {
                    self.release_parts(&listed);
                }
                self.lifecycle.lock().on_dead(id);
            }
        }
    }

    /// Count the record at `loc` as dead in its segment. For a split
    /// saveset, returns the parts its recipe lists (read once, here).
    pub(crate) fn count_dead(&self, loc: Location) -> Vec<SavesetId> {
        let h = match self.record_header_at(loc) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!("counting dead bytes: {e}");
                return Vec::new();
            }
        };
        let mut listed = Vec::new();
        let logical = match h.kind {
            // A split saveset's logical size is the message's, in its recipe.
            RecordKind::Composite => match self.parts_listed_at(loc) {
                Ok((len, ids)) => {
                    listed = ids;
                    len
                }
                Err(e) => {
                    tracing::warn!("reading the parts of a dead saveset: {e}");
                    0
                }
            },
            _ => h.logical_len,
        };
        if let Some(info) = self.segments.write().get_mut(&loc.segment) {
            if h.kind == RecordKind::Part {
                info.parts = info.parts.saturating_sub(1);
                info.part_bytes = info.part_bytes.saturating_sub(h.record_bytes());
            } else {
                info.savesets = info.savesets.saturating_sub(1);
                info.logical_bytes = info.logical_bytes.saturating_sub(logical);
                info.dead_savesets += 1;
            }
            info.dead_bytes += h.record_bytes();
        }
        listed
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

    fn note_damaged(&mut self, id: u32, partition: u32, path: PathBuf, e: Error) {
        let (offset, detail) = match &e {
            Error::Corrupt { offset, detail, .. } => (*offset, detail.clone()),
            other => (0, other.to_string()),
        };
        tracing::warn!("segment {id} offset {offset}: {detail}; its savesets are unavailable");
        self.recovery.push(Problem {
            segment: id,
            offset,
            path: path.clone(),
            detail: detail.clone(),
        });
        // Keep it listed so operators see it; reads of it fail.
        if let Ok(file) = self.vfs.open_read(&path) {
            let bytes = file.len().unwrap_or(0);
            let mut info = SegmentInfo::empty(partition, path, file, bytes, 0);
            info.state = SegmentState::Sealed;
            info.damage = Some(detail);
            self.segments.get_mut().insert(id, info);
        }
    }

    /// A scan stopped at `offset`. In a sealed segment that is corruption:
    /// report it, keep the records before it. In the active segment it is a
    /// torn tail: keep the cut bytes in `quarantine/`, then truncate.
    fn handle_damage(
        &mut self,
        id: u32,
        file: &Arc<dyn VFile>,
        seg: &mut LoadedSegment,
        sealed: bool,
        offset: u64,
        detail: String,
    ) -> Result<()> {
        let what = if sealed {
            format!("sealed segment damaged: {detail}; records after this offset are unavailable")
        } else if self.read_only {
            // Not damage: a writer may be appending right now, and a crash's
            // torn tail is repaired by the next writable open.
            format!(
                "incomplete tail of {} bytes ignored ({detail})",
                seg.file_len - offset
            )
        } else {
            format!(
                "torn tail of {} bytes cut off ({detail})",
                seg.file_len - offset
            )
        };
        tracing::warn!("segment {id} offset {offset}: {what}");
        self.recovery.push(Problem {
            segment: id,
            offset,
            path: seg.path.clone(),
            detail: what,
        });
        if sealed || self.read_only {
            return Ok(());
        }
        self.quarantine_tail(id, file, offset, seg.file_len)?;
        file.set_len(offset)
            .and_then(|_| file.sync_data())
            .map_err(|e| Error::io(&seg.path, "truncate torn tail", e))?;
        seg.file_len = offset;
        seg.data_end = offset;
        seg.damage = None;
        Ok(())
    }

    fn quarantine_tail(&self, id: u32, file: &Arc<dyn VFile>, from: u64, to: u64) -> Result<()> {
        let len = to - from;
        if len == 0 {
            return Ok(());
        }
        let qdir = self.dir.join(QUARANTINE_DIR);
        self.vfs
            .create_dir_all(&qdir)
            .map_err(|e| Error::io(&qdir, "create directory", e))?;
        let mut bytes = vec![0u8; len as usize];
        file.read_exact_at(&mut bytes, from)
            .map_err(|e| Error::io(&qdir, "read torn tail", e))?;
        let path = qdir.join(format!("segment-{id:010}-at-{from}.bin"));
        self.vfs
            .write_atomic(&path, &bytes)
            .map_err(|e| Error::io(&path, "write quarantine file", e))
    }

    fn finish_seal(&self, seg: &LoadedSegment, file: Arc<dyn VFile>) -> Result<(PathBuf, u64)> {
        let active = ActiveSegment::resume(seg, file);
        if seg.has_footer {
            // The footer is already written and synced; only the rename is missing.
            let sealed = seg.path.with_file_name(segment_file_name(active.id, true));
            self.vfs
                .rename(&seg.path, &sealed)
                .map_err(|e| Error::io(&seg.path, "rename sealed segment", e))?;
            let dir = sealed.parent().unwrap_or(Path::new("."));
            self.vfs
                .sync_dir(dir)
                .map_err(|e| Error::io(dir, "fsync directory", e))?;
            return Ok((sealed, seg.file_len));
        }
        active.seal(&*self.vfs)
    }

    /// Store `content` as a saveset and return its id once it is durable
    /// (see the module docs for exactly when). Content already stored is not
    /// written again: the result says `new: false`.
    pub fn put(&self, content: &[u8]) -> Result<Put> {
        let prepared = self.prepare(content)?;
        let Some(encoded) = &prepared.encoded else {
            return self.duplicate(prepared.id);
        };
        let sequence = {
            let mut w = self.writer.lock();
            match self.append_saveset_locked(&mut w, &prepared, encoded)? {
                Some(seq) => seq,
                None => {
                    drop(w);
                    return self.duplicate(prepared.id);
                }
            }
        };
        self.wait_durable(sequence)?;
        Ok(Put {
            id: prepared.id,
            new: true,
        })
    }

    /// Store many savesets and acknowledge them together once durable.
    /// The batch goes through in steps of about [`PUT_STEP_BYTES`]: while the
    /// pool hashes and compresses one step, the previous one is appended,
    /// and a helper thread syncs the segment behind the appends, so
    /// preparing, writing and fsync overlap. Sizes are checked first: a
    /// refused batch writes nothing. Results are in input order.
    pub fn put_many(&self, contents: &[&[u8]]) -> Result<Vec<Put>> {
        self.check_writable()?;
        for c in contents {
            check_size(c)?;
        }
        if contents.is_empty() {
            return Ok(Vec::new());
        }
        let steps = put_steps(contents);
        let mut out = Vec::with_capacity(contents.len());
        let last = std::thread::scope(|scope| -> Result<u64> {
            let (appended, synced) = std::sync::mpsc::channel::<u64>();
            let syncer = scope.spawn(move || self.sync_behind(synced));
            let mut last = 0u64;
            let mut ready = self.prepare_step(&contents[steps[0].clone()]);
            for k in 0..steps.len() {
                let (done, next) = rayon::join(
                    || self.append_step(&ready),
                    || {
                        steps
                            .get(k + 1)
                            .map(|r| self.prepare_step(&contents[r.clone()]))
                    },
                );
                let (puts, upto) = done?;
                out.extend(puts);
                last = upto;
                // A syncer that stopped on an error is reported below.
                let _ = appended.send(last);
                ready = next.unwrap_or_default();
            }
            drop(appended);
            syncer
                .join()
                .map_err(|_| Error::InvalidSetting("segment sync thread panicked".into()))??;
            Ok(last)
        })?;
        self.wait_durable(last)?;
        Ok(out)
    }

    /// Hash and compress one step of a batch on the pool (sizes and
    /// writability were checked for the whole batch).
    fn prepare_step<'a>(&self, contents: &[&'a [u8]]) -> Vec<Prepared<'a>> {
        contents
            .par_iter()
            .map(|c| self.prepare_hashed(c, SavesetId::of(c), true))
            .collect()
    }

    /// Append one prepared step under the writer lock: its results and the
    /// sequence it must be durable up to (duplicates found here may be in
    /// flight from another writer).
    fn append_step(&self, prepared: &[Prepared<'_>]) -> Result<(Vec<Put>, u64)> {
        let mut w = self.writer.lock();
        let mut puts = Vec::with_capacity(prepared.len());
        for p in prepared {
            let seq = match &p.encoded {
                Some(enc) => self.append_saveset_locked(&mut w, p, enc)?,
                None => None,
            };
            puts.push(Put {
                id: p.id,
                new: seq.is_some(),
            });
        }
        Ok((puts, w.next_sequence - 1))
    }

    /// Sync the active segment up to the latest sequence received, until
    /// the sender hangs up: group commit behind a batch's appends.
    fn sync_behind(&self, appended: std::sync::mpsc::Receiver<u64>) -> Result<()> {
        while let Ok(mut upto) = appended.recv() {
            upto = appended.try_iter().fold(upto, u64::max);
            self.wait_durable(upto)?;
        }
        Ok(())
    }

    /// Hash (and, unless already stored, compress) content outside any lock.
    pub(crate) fn prepare<'a>(&self, content: &'a [u8]) -> Result<Prepared<'a>> {
        let id = self.hash_checked(content)?;
        Ok(self.prepare_hashed(content, id, true))
    }

    /// Check the size limit and hash.
    pub(crate) fn hash_checked(&self, content: &[u8]) -> Result<SavesetId> {
        self.check_writable()?;
        check_size(content)?;
        Ok(SavesetId::of(content))
    }

    /// Compress hashed content unless it is stored already or `compress`
    /// is false (another copy in the same batch is compressed instead).
    pub(crate) fn prepare_hashed<'a>(
        &self,
        content: &'a [u8],
        id: SavesetId,
        compress: bool,
    ) -> Prepared<'a> {
        let mut composite = None;
        let encoded = if !compress || self.index.read().contains(&id) {
            None
        } else {
            let level = self.manifest.lock().compression_level;
            match self.prepare_composite(content, &id, level) {
                Some((recipe, parts)) => {
                    composite = Some(parts);
                    Some(recipe)
                }
                None => Some(encode_payload(content, level)),
            }
        };
        Prepared {
            id,
            logical_len: content.len() as u64,
            encoded,
            composite,
        }
    }

    pub(crate) fn check_writable(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly {
                path: self.dir.clone(),
            });
        }
        Ok(())
    }

    /// Append a prepared saveset unless it is stored by now (`None`).
    pub(crate) fn append_saveset_locked(
        &self,
        w: &mut Writer,
        prepared: &Prepared<'_>,
        (codec, payload): &Encoded<'_>,
    ) -> Result<Option<u64>> {
        if self.index.read().contains(&prepared.id) {
            return Ok(None);
        }
        let (loc, seq) = match &prepared.composite {
            Some(composite) => self.append_composite_locked(
                w,
                prepared.id,
                composite,
                &(*codec, Cow::Borrowed(&**payload)),
            )?,
            None => self.append_record_locked(
                w,
                RecordKind::Saveset,
                prepared.id,
                *codec,
                payload,
                prepared.logical_len,
            )?,
        };
        self.index.write().insert(prepared.id, loc);
        self.lifecycle.lock().on_stored(prepared.id, seq);
        Ok(Some(seq))
    }

    /// Append one record of any kind with the next sequence number.
    pub(crate) fn append_record_locked(
        &self,
        w: &mut Writer,
        kind: RecordKind,
        id: SavesetId,
        codec: Codec,
        payload: &[u8],
        logical_len: u64,
    ) -> Result<(Location, u64)> {
        self.check_writer(w)?;
        let sequence = w.next_sequence;
        let header = RecordHeader::new(kind, codec, logical_len, sequence, id.0, payload);
        let loc = self.append_locked(w, &header, payload)?;
        w.next_sequence += 1;
        Ok((loc, sequence))
    }

    /// Make sure the prepared content is stored (it may have died since it
    /// was prepared); true when this wrote it.
    pub(crate) fn ensure_content_locked(
        &self,
        w: &mut Writer,
        prepared: &Prepared<'_>,
        content: &[u8],
    ) -> Result<bool> {
        if self.index.read().contains(&prepared.id) {
            return Ok(false);
        }
        if let Some(encoded) = &prepared.encoded {
            return Ok(self.append_saveset_locked(w, prepared, encoded)?.is_some());
        }
        // Not prepared (a copy in the same batch was, or it was stored at
        // preparation time and has died since): prepare it now.
        let fresh = self.prepare_hashed(content, prepared.id, true);
        match &fresh.encoded {
            Some(encoded) => Ok(self.append_saveset_locked(w, &fresh, encoded)?.is_some()),
            None => Ok(false),
        }
    }

    /// Append one catalog batch; returns its sequence.
    pub(crate) fn append_catalog_locked(
        &self,
        w: &mut Writer,
        ops: &[crate::format::catalog::CatalogOp],
    ) -> Result<u64> {
        let batch = crate::format::catalog::encode_batch(ops);
        self.append_batch_locked(w, RecordKind::Catalog, &batch)
    }

    /// Append an encoded catalog or state batch, content-addressed and
    /// compressed like a saveset; returns its sequence.
    fn append_batch_locked(&self, w: &mut Writer, kind: RecordKind, batch: &[u8]) -> Result<u64> {
        let level = self.manifest.lock().compression_level;
        let (codec, payload) = encode_payload(batch, level);
        let (_, seq) = self.append_record_locked(
            w,
            kind,
            SavesetId::of(batch),
            codec,
            &payload,
            batch.len() as u64,
        )?;
        Ok(seq)
    }

    /// The writer, for callers that append several records as one step.
    pub(crate) fn lock_writer(&self) -> parking_lot::MutexGuard<'_, Writer> {
        self.writer.lock()
    }

    pub(crate) fn duplicate(&self, id: SavesetId) -> Result<Put> {
        let appended = self.writer.lock().next_sequence - 1;
        self.wait_durable(appended)?;
        Ok(Put { id, new: false })
    }

    fn check_writer(&self, w: &Writer) -> Result<()> {
        match &w.failed {
            Some(detail) => Err(Error::WriterFailed {
                path: self.dir.clone(),
                detail: detail.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Append under the writer lock, rolling over to a new segment when the
    /// record would take the active one past the segment size.
    fn append_locked(
        &self,
        w: &mut Writer,
        header: &RecordHeader,
        payload: &[u8],
    ) -> Result<Location> {
        let (segment_bytes, seal_age_ms) = {
            let m = self.manifest.lock();
            (m.segment_bytes, m.seal_age_ms)
        };
        let now = now_ms();
        let full = w.active.as_ref().is_some_and(|a| {
            !a.entries.is_empty()
                && (a.end + header.record_bytes() > segment_bytes
                    || a.created_ms.saturating_add(seal_age_ms) <= now)
        });
        if full {
            self.seal_locked(w)?;
        }
        if w.active.is_none() {
            self.start_segment(w)?;
        }
        let active = w.active.as_mut().ok_or_else(|| Error::WriterFailed {
            path: self.dir.clone(),
            detail: "no active segment".into(),
        })?;
        let outcome = match active.append(header, payload) {
            Ok(o) => o,
            Err(e) => {
                if let Error::WriterFailed { detail, .. } = &e {
                    w.failed = Some(detail.clone());
                }
                return Err(e);
            }
        };
        let (id, end) = (active.id, active.end);
        if let Some(info) = self.segments.write().get_mut(&id) {
            info.bytes = end;
            if header.kind.is_saveset() {
                info.savesets += 1;
                info.saveset_records += 1;
                info.logical_bytes += header.logical_len;
            } else if header.kind == RecordKind::Part {
                info.parts += 1;
                info.part_bytes += header.record_bytes();
            }
        }
        Ok(location(id, outcome.offset))
    }

    fn start_segment(&self, w: &mut Writer) -> Result<()> {
        let (segment_id, partition) = self.reserve_segment(None)?;
        let header = SegmentHeader {
            segment_id,
            partition_id: partition.id,
            created_ms: now_ms(),
            store_id: self.manifest.lock().store_id,
            flags: 0,
        };
        let active = self.create_segment(&partition, header)?;
        w.active = Some(active);
        Ok(())
    }

    /// Create a segment file in `partition` and list it (as active).
    pub(crate) fn create_segment(
        &self,
        partition: &PartitionEntry,
        header: SegmentHeader,
    ) -> Result<ActiveSegment> {
        let dir = self.partition_dir(partition);
        let active = ActiveSegment::create(&*self.vfs, &dir, header)?;
        if !header.is_compaction_output() {
            self.segments.write().insert(
                header.segment_id,
                SegmentInfo::new(partition.id, &active, header.created_ms),
            );
        }
        Ok(active)
    }

    /// Choose the partition for a new segment and reserve its id durably, so
    /// an id is never handed out twice. `only` restricts the choice to one
    /// partition (redistribution); otherwise it is the first open partition
    /// with room for a whole segment (rollover).
    pub(crate) fn reserve_segment(&self, only: Option<u32>) -> Result<(u32, PartitionEntry)> {
        let used = self.partition_bytes();
        let mut m = self.manifest.lock();
        let segment_bytes = m.segment_bytes;
        let min_free = m.min_free_bytes;
        // The volume must keep `min_free` bytes after one more segment.
        // A volume whose free space cannot be read is not held back.
        let volume_has_room = |p: &PartitionEntry| {
            min_free == 0
                || self
                    .vfs
                    .available_space(&self.partition_dir(p))
                    .map_or(true, |free| free >= min_free.saturating_add(segment_bytes))
        };
        let partition = m
            .partitions
            .iter()
            .find(|p| {
                let used = used.get(&p.id).copied().unwrap_or(0);
                only.is_none_or(|o| o == p.id)
                    && p.state == PartitionState::Open
                    && (p.capacity_bytes == 0 || used + segment_bytes <= p.capacity_bytes)
                    && volume_has_room(p)
            })
            .cloned()
            .ok_or_else(|| match only {
                Some(o) => Error::InvalidSetting(format!(
                    "partition {o} is not open or has no room for a new segment"
                )),
                None => Error::InvalidSetting(
                    "no open partition has room for a new segment (add or reopen one)".into(),
                ),
            })?;
        let segment_id = m.next_segment_id;
        m.next_segment_id = segment_id + 1;
        if let Err(e) = write_manifest(&*self.vfs, &self.dir, &m) {
            m.next_segment_id = segment_id;
            return Err(e);
        }
        Ok((segment_id, partition))
    }

    /// List a sealed segment written by compaction.
    pub(crate) fn add_sealed_segment(
        &self,
        partition_id: u32,
        output: &ActiveSegment,
        path: PathBuf,
        len: u64,
    ) {
        let mut info = SegmentInfo::new(partition_id, output, output.created_ms);
        info.path = path;
        info.bytes = len;
        info.state = SegmentState::Sealed;
        let savesets = saveset_count(&output.entries);
        info.savesets = savesets;
        info.saveset_records = savesets;
        info.logical_bytes = output
            .entries
            .iter()
            .filter(|e| e.kind == RecordKind::Saveset)
            .map(|e| e.logical_len)
            .sum::<u64>()
            + output.part_lists.iter().map(|l| l.message_len).sum::<u64>();
        for e in output.entries.iter().filter(|e| e.kind == RecordKind::Part) {
            info.parts += 1;
            info.part_bytes += e.stored_len + crate::format::segment::RECORD_HEADER_BYTES as u64;
        }
        self.segments.write().insert(output.id, info);
    }

    fn seal_locked(&self, w: &mut Writer) -> Result<Option<u32>> {
        let Some(active) = w.active.as_ref() else {
            return Ok(None);
        };
        let (path, len) = match active.seal(&*self.vfs) {
            Ok(x) => x,
            Err(e) => {
                // The footer may be half written; the next open repairs it.
                w.failed = Some(e.to_string());
                return Err(e);
            }
        };
        let id = active.id;
        self.durable_sequence
            .fetch_max(active.sequences.1, Ordering::SeqCst);
        if let Some(info) = self.segments.write().get_mut(&id) {
            info.path = path;
            info.bytes = len;
            info.state = SegmentState::Sealed;
        }
        w.active = None;
        Ok(Some(id))
    }

    /// Seal the active segment if it is older than the store's seal age
    /// (and holds a record). Returns the id sealed.
    pub fn seal_if_aged(&self) -> Result<Option<u32>> {
        let age = self.manifest.lock().seal_age_ms;
        let aged =
            self.writer.lock().active.as_ref().is_some_and(|a| {
                !a.entries.is_empty() && a.created_ms.saturating_add(age) <= now_ms()
            });
        if aged { self.seal() } else { Ok(None) }
    }

    /// Seal the active segment if it holds savesets or catalog changes (not
    /// only lifecycle records): the built-in backup uses this so that its own
    /// backup marks do not make every run copy one more segment.
    pub(crate) fn seal_if_data(&self) -> Result<Option<u32>> {
        self.seal_if_holds(|kind| kind != RecordKind::State)
    }

    /// Seal the active segment if it holds a record of a kind `wanted` accepts.
    pub(crate) fn seal_if_holds(&self, wanted: impl Fn(RecordKind) -> bool) -> Result<Option<u32>> {
        let holds = self
            .writer
            .lock()
            .active
            .as_ref()
            .is_some_and(|a| a.entries.iter().any(|e| wanted(e.kind)));
        if holds { self.seal() } else { Ok(None) }
    }

    /// Take a sequence number for a record written outside the active
    /// segment (a compaction record), so sequences stay unique.
    pub(crate) fn reserve_sequence(&self) -> Result<u64> {
        let mut w = self.writer.lock();
        self.check_writer(&w)?;
        let seq = w.next_sequence;
        w.next_sequence += 1;
        Ok(seq)
    }

    /// The partition of the active segment, if one is active.
    pub(crate) fn active_partition(&self) -> Option<u32> {
        self.writer.lock().active.as_ref().map(|a| a.partition_id)
    }

    /// Seal the active segment now, even if it is not full, so it can be
    /// backed up. Returns the id sealed, or `None` when no segment was active
    /// or it held no record.
    pub fn seal(&self) -> Result<Option<u32>> {
        self.check_writable()?;
        let mut w = self.writer.lock();
        self.check_writer(&w)?;
        if w.active.as_ref().is_some_and(|a| a.entries.is_empty()) {
            return Ok(None);
        }
        self.seal_locked(&mut w)
    }

    /// Wait until every record up to `sequence` is durable, issuing the
    /// fsync ourselves if nobody else is (group commit): writers that arrive
    /// during a leader's fsync wait for it together and are woken at once,
    /// and one of those it did not cover leads the next.
    pub(crate) fn wait_durable(&self, sequence: u64) -> Result<()> {
        if self.durable_sequence.load(Ordering::SeqCst) >= sequence {
            return Ok(());
        }
        let mut syncing = self.syncing.lock();
        loop {
            if self.durable_sequence.load(Ordering::SeqCst) >= sequence {
                return Ok(());
            }
            if !*syncing {
                break;
            }
            self.synced.wait(&mut syncing);
        }
        *syncing = true;
        drop(syncing);
        let _leader = SyncLeader(self);
        self.sync_appended()
    }

    /// Fsync the active segment, making every record appended so far durable.
    fn sync_appended(&self) -> Result<()> {
        let (file, path, upto) = {
            let w = self.writer.lock();
            self.check_writer(&w)?;
            let upto = w.next_sequence - 1;
            match &w.active {
                Some(a) => (a.file.clone(), a.path.clone(), upto),
                None => {
                    // Everything appended is in sealed (synced) segments.
                    self.durable_sequence.fetch_max(upto, Ordering::SeqCst);
                    return Ok(());
                }
            }
        };
        if let Err(e) = file.sync_data() {
            // After a failed fsync the page cache may have dropped our
            // writes: nothing since the last good sync can be trusted until
            // a reopen re-reads the segment.
            self.writer.lock().failed = Some(format!("fsync of {} failed: {e}", path.display()));
            return Err(Error::io(&path, "fsync segment", e));
        }
        self.durable_sequence.fetch_max(upto, Ordering::SeqCst);
        Ok(())
    }

    /// True when a saveset with this id is stored. Answers from memory.
    pub fn has(&self, id: &SavesetId) -> bool {
        self.index.read().contains(id)
    }

    /// The exact content of saveset `id`. The record's crc is checked, and
    /// its blake3 hash unless the store was opened with `verify_hash: false`;
    /// damage is an [`Error::Corrupt`] naming segment and offset, never wrong bytes.
    pub fn get(&self, id: &SavesetId) -> Result<Vec<u8>> {
        let (loc, file, limit, damage) = self.locate(id)?;
        if let Some(d) = damage {
            return Err(Error::corrupt(loc.segment, loc.offset as u64, d));
        }
        let offset = loc.offset as u64;
        let (h, payload) = segment::read_record_at(&*file, loc.segment, offset, limit)?;
        if !h.kind.is_saveset() || h.id != id.0 {
            return Err(Error::corrupt(
                loc.segment,
                offset,
                "record does not hold the saveset the index points to",
            ));
        }
        let content = if h.kind == RecordKind::Composite {
            self.rebuild_composite(loc, &h, payload)?
        } else {
            decode_payload(h.codec, payload, h.logical_len)
                .map_err(|d| Error::corrupt(loc.segment, offset, d))?
        };
        if self.verify_hash && SavesetId::of(&content) != *id {
            return Err(Error::corrupt(loc.segment, offset, "hash mismatch"));
        }
        Ok(content)
    }

    /// Where saveset `id` is, with its segment's file. Compaction may move
    /// it between the index lookup and the segment lookup: then the index
    /// is asked again.
    fn locate(&self, id: &SavesetId) -> Result<Located> {
        self.locate_with(|| self.index.read().get(id))?
            .ok_or(Error::NotFound(*id))
    }

    /// Look a location up with `lookup` and find its segment. Compaction may
    /// move the record between the two steps (its old segment is gone from
    /// the map): then `lookup` is asked again. `None` when `lookup` is.
    pub(crate) fn locate_with(
        &self,
        lookup: impl Fn() -> Option<Location>,
    ) -> Result<Option<Located>> {
        let mut attempts = 0;
        loop {
            let Some(loc) = lookup() else {
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

    /// Totals: savesets, logical and stored bytes, segments, index memory.
    pub fn stat(&self) -> Stat {
        let catalog = self.catalog.read();
        let index = self.index.read();
        let parts = self.parts.read();
        let part_totals = parts.totals();
        let segs = self.segments.read();
        let logical_bytes: u64 = segs.values().map(|s| s.logical_bytes).sum();
        let saved = part_totals
            .listed_bytes
            .saturating_sub(part_totals.live_bytes);
        Stat {
            parts: part_totals.parts,
            part_bytes: segs.values().map(|s| s.part_bytes).sum(),
            part_dedup_saved_bytes: saved,
            part_dedup_share: if logical_bytes == 0 {
                0.0
            } else {
                saved as f64 / logical_bytes as f64
            },
            savesets: index.len() as u64,
            logical_bytes: segs.values().map(|s| s.logical_bytes).sum(),
            stored_bytes: segs.values().map(|s| s.bytes).sum(),
            segments: segs.len() as u64,
            index_bytes: index.memory_bytes() as u64,
            part_table_bytes: parts.memory_bytes() as u64,
            references: catalog.references(),
            trashed_references: catalog.trashed(),
            owners: catalog.owner_count(),
            dead_savesets: segs.values().map(|s| s.dead_savesets).sum(),
            dead_bytes: segs.values().map(|s| s.dead_bytes).sum(),
            catalog_bytes: catalog.memory_bytes() as u64,
        }
    }

    /// Every segment, by id.
    pub fn segments(&self) -> Vec<SegmentStat> {
        let lifecycle = self.lifecycle.lock();
        self.segments
            .read()
            .iter()
            .map(|(&id, s)| SegmentStat {
                id,
                partition: s.partition_id,
                state: s.state,
                bytes: s.bytes,
                savesets: s.savesets,
                logical_bytes: s.logical_bytes,
                dead_savesets: s.dead_savesets,
                dead_bytes: s.dead_bytes,
                parts: s.parts,
                archive_bit: s.state == SegmentState::Active || !lifecycle.is_marked(id),
                path: s.path.clone(),
                created_ms: s.created_ms,
                damage: s.damage.clone(),
            })
            .collect()
    }

    /// Every saveset id, in no particular order.
    pub fn ids(&self) -> Vec<SavesetId> {
        self.index.read().iter().map(|(id, _)| id).collect()
    }

    /// Read every record of every segment and check its crc, that it decodes,
    /// and that its content hashes to its id; check sealed segments' footers
    /// against their records.
    pub fn verify(&self) -> VerifyReport {
        self.verify_with_progress(&|_| {})
    }

    /// [`Store::verify`], calling `progress` with the bytes of each segment
    /// once it is checked (from any thread; they add up to the report's
    /// `bytes`, the segments' total as [`Store::stat`]'s `stored_bytes`).
    pub fn verify_with_progress(&self, progress: &(dyn Fn(u64) + Sync)) -> VerifyReport {
        let segs: Vec<(u32, SegmentInfo)> = self
            .segments
            .read()
            .iter()
            .map(|(&id, s)| (id, s.clone()))
            .collect();
        let results: Vec<VerifyReport> = segs
            .into_par_iter()
            .map(|(id, info)| {
                let mut r = verify_segment(id, &info);
                r.problems.extend(self.check_listed_parts(id, &info));
                progress(r.bytes);
                r
            })
            .collect();
        let mut report = VerifyReport {
            segments: 0,
            records: 0,
            bytes: 0,
            problems: Vec::new(),
        };
        for r in results {
            report.segments += r.segments;
            report.records += r.records;
            report.bytes += r.bytes;
            report.problems.extend(r.problems);
        }
        report
    }

    /// Every part a live split saveset in segment `id` lists is stored.
    fn check_listed_parts(&self, id: u32, info: &SegmentInfo) -> Vec<Problem> {
        if info.damage.is_some() {
            return Vec::new();
        }
        let loaded = match info.state {
            SegmentState::Sealed => segment::load_sealed(&info.path, &*info.file, id),
            SegmentState::Active => segment::scan(&info.path, &*info.file, id),
        };
        let Ok(seg) = loaded else {
            return Vec::new(); // verify_segment reports it
        };
        let index = self.index.read();
        let parts = self.parts.read();
        let mut problems = Vec::new();
        for list in &seg.part_lists {
            let Some(e) = seg.entries.get(list.entry as usize) else {
                continue;
            };
            if index.get(&SavesetId(e.id)) != Some(location(id, e.offset)) {
                continue;
            }
            for p in &list.parts {
                if !parts.index.contains(&SavesetId(*p)) {
                    problems.push(Problem {
                        segment: id,
                        offset: e.offset,
                        path: info.path.clone(),
                        detail: format!("part {} listed by this saveset is missing", SavesetId(*p)),
                    });
                }
            }
        }
        problems
    }

    /// The format version of this build.
    pub fn format_version() -> u32 {
        FORMAT_VERSION
    }
}

/// Where a saveset is: its location, its segment's file and length, and
/// the segment's damage if any.
pub(crate) type Located = (Location, Arc<dyn VFile>, u64, Option<String>);

/// A segment file as loaded at open: id, partition, path, sealed, and what loading found.
pub(crate) type LoadedFile = (
    u32,
    u32,
    PathBuf,
    bool,
    Result<Option<(Arc<dyn VFile>, LoadedSegment)>>,
);

pub(crate) fn location(segment: u32, offset: u64) -> Location {
    // Offsets fit: segments are at most MAX_SEGMENT_BYTES and roll over
    // before a record would start past it.
    Location {
        segment,
        offset: offset.min(u32::MAX as u64) as u32,
    }
}

fn saveset_count(entries: &[FooterEntry]) -> u64 {
    entries.iter().filter(|e| e.kind.is_saveset()).count() as u64
}

/// A composite record found at open and the parts it lists.
struct ListedParts {
    loc: Location,
    saveset: SavesetId,
    parts: Vec<SavesetId>,
}

fn read_manifest(vfs: &dyn Vfs, path: &Path) -> Result<Manifest> {
    let bytes = vfs
        .read_small(path, MAX_MANIFEST_BYTES)
        .map_err(|e| Error::io(path, "read manifest", e))?;
    Manifest::decode(&bytes).map_err(|e| match e {
        ManifestError::BadMagic => Error::NotAStore {
            path: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
        },
        ManifestError::Version(found) => Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found,
            supported: FORMAT_VERSION,
        },
        ManifestError::Corrupt(detail) => Error::ManifestCorrupt {
            path: path.to_path_buf(),
            detail,
        },
    })
}

fn write_manifest(vfs: &dyn Vfs, dir: &Path, m: &Manifest) -> Result<()> {
    let path = dir.join(MANIFEST_FILE);
    vfs.write_atomic(&path, &m.encode())
        .map_err(|e| Error::io(&path, "write manifest", e))
}

/// Open one segment file: footer fast path for sealed ones (falling back to
/// a scan when the footer is damaged), a scan for active ones.
fn load_one(
    vfs: &dyn Vfs,
    path: &Path,
    id: u32,
    sealed: bool,
    read_only: bool,
) -> Result<Option<(Arc<dyn VFile>, LoadedSegment)>> {
    let file = if sealed || read_only {
        vfs.open_read(path)
    } else {
        vfs.open_rw(path)
    }
    .map_err(|e| Error::io(path, "open segment", e))?;
    if sealed {
        match segment::load_sealed(path, &*file, id) {
            Ok(seg) => return Ok(Some((file, seg))),
            Err(e) if e.is_corruption() => {
                tracing::warn!("{e}; scanning the segment instead of trusting its footer");
                let mut seg = segment::scan(path, &*file, id)?;
                if seg.damage.is_none() && !seg.has_footer {
                    seg.damage = Some((seg.data_end, format!("footer unreadable: {e}")));
                }
                return Ok(Some((file, seg)));
            }
            Err(e) => return Err(e),
        }
    }
    let len = file.len().map_err(|e| Error::io(path, "stat segment", e))?;
    if len <= SEGMENT_HEADER_BYTES as u64
        && !read_only
        && segment::read_header(&*file, id, len).is_err()
    {
        // A crash while creating the segment: its header never became
        // durable, so no record was ever acknowledged in it.
        vfs.remove_file(path)
            .map_err(|e| Error::io(path, "remove torn segment", e))?;
        return Ok(None);
    }
    let seg = segment::scan(path, &*file, id)?;
    Ok(Some((file, seg)))
}

fn verify_segment(id: u32, info: &SegmentInfo) -> VerifyReport {
    let (path, file, limit) = (info.path.as_path(), &*info.file, info.bytes);
    let mut report = VerifyReport {
        segments: 1,
        records: 0,
        bytes: 0,
        problems: Vec::new(),
    };
    let problem = |offset: u64, detail: String| Problem {
        segment: id,
        offset,
        path: path.to_path_buf(),
        detail,
    };
    if let Some(d) = &info.damage {
        report.problems.push(problem(0, d.clone()));
        return report;
    }
    // A sealed segment is walked through its footer, so one bad record does
    // not hide the ones after it; the walk also checks the footer describes
    // the records back to back. An active segment (or a sealed one whose
    // footer is bad) is scanned record by record.
    let footer = match info.state {
        SegmentState::Sealed => match segment::load_sealed(path, file, id) {
            Ok(seg) => Some(seg),
            Err(e) => {
                report.problems.push(problem(0, e.to_string()));
                None
            }
        },
        SegmentState::Active => None,
    };
    let (entries, data_end) = match footer {
        Some(seg) => (seg.entries, seg.data_end),
        None => match segment::scan(path, file, id) {
            Ok(seg) => {
                let end = seg.data_end.min(limit);
                if let Some((off, d)) = seg.damage.filter(|(off, _)| *off < limit) {
                    report.problems.push(problem(off, d));
                }
                let entries = seg.entries.into_iter().filter(|e| e.offset < end).collect();
                (entries, end)
            }
            Err(e) => {
                report.problems.push(problem(0, e.to_string()));
                return report;
            }
        },
    };
    let mut expected = SEGMENT_HEADER_BYTES as u64;
    for e in entries {
        report.records += 1;
        if e.offset != expected {
            report.problems.push(problem(
                expected,
                format!("index says the next record is at {}", e.offset),
            ));
        }
        expected = e.offset + 64 + e.stored_len;
        let (h, payload) = match segment::read_record_at(file, id, e.offset, data_end) {
            Ok(x) => x,
            Err(err) => {
                report
                    .problems
                    .push(problem(e.offset, segment::detail_of(err)));
                continue;
            }
        };
        report.bytes += h.record_bytes();
        if h.id != e.id || h.stored_len != e.stored_len {
            report.problems.push(problem(
                e.offset,
                "record differs from its footer entry".into(),
            ));
            continue;
        }
        match decode_payload(h.codec, payload, h.logical_len) {
            Ok(content) if h.kind.is_content_addressed() && SavesetId::of(&content).0 != h.id => {
                report
                    .problems
                    .push(problem(e.offset, "hash mismatch".into()))
            }
            Ok(content) if h.kind == RecordKind::Composite => {
                if let Err(d) = crate::format::composite::Recipe::decode(&content) {
                    report.problems.push(problem(e.offset, d));
                }
            }
            Ok(_) => {}
            Err(d) => report.problems.push(problem(e.offset, d)),
        }
    }
    if expected != data_end && report.problems.is_empty() {
        report.problems.push(problem(
            expected,
            format!("records end at {expected} but data ends at {data_end}"),
        ));
    }
    report
}

/// A batch of puts goes through in steps of about this many content bytes.
pub const PUT_STEP_BYTES: usize = 4 << 20;

/// Refuse content over the record size limit.
fn check_size(content: &[u8]) -> Result<()> {
    if content.len() as u64 > MAX_RECORD_BYTES {
        return Err(Error::TooLarge {
            size: content.len() as u64,
            limit: MAX_RECORD_BYTES,
        });
    }
    Ok(())
}

/// Consecutive ranges of `contents` of about [`PUT_STEP_BYTES`] each (at
/// least one item).
fn put_steps(contents: &[&[u8]]) -> Vec<std::ops::Range<usize>> {
    let mut steps = Vec::new();
    let (mut start, mut bytes) = (0, 0usize);
    for (i, c) in contents.iter().enumerate() {
        bytes += c.len();
        if bytes >= PUT_STEP_BYTES {
            steps.push(start..i + 1);
            (start, bytes) = (i + 1, 0);
        }
    }
    if start < contents.len() {
        steps.push(start..contents.len());
    }
    steps
}

/// The group commit's leader: when its fsync is over (or it unwinds), the
/// writers waiting for it are woken.
struct SyncLeader<'a>(&'a Store);

impl Drop for SyncLeader<'_> {
    fn drop(&mut self) {
        *self.0.syncing.lock() = false;
        self.0.synced.notify_all();
    }
}
