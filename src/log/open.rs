//! Opening the log: create a store's manifest, list and load every segment
//! file, settle compactions a crash interrupted, finish interrupted seals,
//! cut torn tails (kept under `quarantine/`), and hand the records found to
//! the state layer to replay. Nothing here knows what a record means.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};
use rayon::prelude::*;

use super::{
    InitOptions, Log, OpenOptions, Problem, RemovedSegment, SegmentInfo, SegmentState, Volume,
    Writer, location,
};
use crate::crypto::Sealing;
use crate::error::{Error, Result};
use crate::format::compaction::CompactionRecord;
use crate::format::manifest::{
    MAX_MANIFEST_BYTES, MAX_SEGMENT_BYTES, MIN_SEGMENT_BYTES, Manifest, ManifestError,
    PartitionEntry, PartitionState,
};
use crate::format::segment::{FooterEntry, RecordKind, SEGMENT_HEADER_BYTES};
use crate::format::sync_tables::{SegmentRow, TailRow};
use crate::format::{FORMAT_VERSION, MANIFEST_FILE, QUARANTINE_DIR};
use crate::id::SavesetId;
use crate::index::Location;
use crate::io::{StoreLock, VFile, Vfs, tmp_sibling};
use crate::segment::{self, ActiveSegment, LoadedSegment};
use crate::units::now_ms;

/// What opening the log found, for the state layer to replay.
pub(crate) struct Recovered {
    /// Every record's footer entry with its segment, in no order.
    pub(crate) entries: Vec<(u32, FooterEntry)>,
    /// Composite records and the parts they list.
    pub(crate) composites: Vec<ListedParts>,
    /// Compaction outputs whose savesets were all BackupComplete.
    pub(crate) complete_outputs: Vec<u32>,
    /// Sealed segments taken from a checkpoint's rows (footers not read).
    pub(crate) covered: HashSet<u32>,
    /// Why the checkpoint's segments do not match the files found, if
    /// they do not: the state must then be replayed from every record.
    pub(crate) coverage_problem: Option<String>,
}

/// What a checkpoint generation says of the segments (format-spec/
/// checkpoint.md, "Opening from a generation").
pub(crate) struct Coverage<'a> {
    /// The sequence it covers.
    pub(crate) sequence: u64,
    /// Covered sealed segments.
    pub(crate) segments: &'a BTreeMap<u32, SegmentRow>,
    /// The active segment at the snapshot.
    pub(crate) tail: Option<TailRow>,
    /// Segments compactions had replaced by then.
    pub(crate) removed: &'a [RemovedSegment],
}

/// A composite record found at open and the parts it lists.
pub(crate) struct ListedParts {
    pub(crate) loc: Location,
    pub(crate) saveset: SavesetId,
    pub(crate) parts: Vec<SavesetId>,
}

/// A segment file as loaded at open: id, partition, path, sealed, and what loading found.
type LoadedFile = (
    u32,
    u32,
    PathBuf,
    bool,
    Result<Option<(Arc<dyn VFile>, LoadedSegment)>>,
);

pub(super) fn saveset_count(entries: &[FooterEntry]) -> u64 {
    entries.iter().filter(|e| e.kind.is_saveset()).count() as u64
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
impl Log {
    /// At open: remove outputs of compactions that never committed (not
    /// sealed) and the segments committed compactions replaced; note which
    /// outputs hold BackupComplete savesets and which segments were removed.
    /// Read-only opens skip those files without deleting them.
    fn settle_compactions(
        &mut self,
        loaded: Vec<LoadedFile>,
        complete_outputs: &mut Vec<u32>,
    ) -> Result<Vec<LoadedFile>> {
        let mut superseded = HashSet::new();
        let mut unfinished = HashSet::new();
        for (id, _, path, sealed, result) in &loaded {
            let Ok(Some((file, seg))) = result else {
                continue;
            };
            if !seg.header.is_compaction_output() {
                continue;
            }
            if !*sealed && !seg.has_footer {
                unfinished.insert(*id);
                continue;
            }
            for e in seg
                .entries
                .iter()
                .filter(|e| e.kind == RecordKind::Compaction)
            {
                match read_compaction_record(&**file, *id, e, seg.data_end, &self.sealing) {
                    Ok(rec) => {
                        if rec.output == *id && rec.backup_complete {
                            complete_outputs.push(*id);
                        }
                        for &v in &rec.victims {
                            superseded.insert(v);
                            self.removed.get_mut().entry(v).or_insert(RemovedSegment {
                                segment: v,
                                replaced_by: rec.output,
                                at_ms: rec.at_ms,
                            });
                        }
                    }
                    Err(err) => self.recovery.push(Problem {
                        segment: *id,
                        offset: e.offset,
                        path: path.clone(),
                        detail: format!("compaction record unreadable: {err}"),
                    }),
                }
            }
        }
        let mut keep = Vec::with_capacity(loaded.len());
        for l in loaded {
            let why = if unfinished.contains(&l.0) {
                "output of a compaction that did not finish"
            } else if superseded.contains(&l.0) {
                "replaced by a finished compaction"
            } else {
                keep.push(l);
                continue;
            };
            if self.read_only {
                tracing::info!("segment {}: {why}; ignored", l.0);
                continue;
            }
            tracing::info!("segment {}: {why}; removed", l.0);
            self.remove_segment_file(l.1, &l.2)?;
        }
        Ok(keep)
    }

    /// Does the checkpoint describe these files? Every covered segment is
    /// here unchanged or was replaced by a compaction found here, and the
    /// segment that was active still holds what it held.
    fn coverage_problem(
        &self,
        c: &Coverage<'_>,
        covered: &HashSet<u32>,
        loaded: &[LoadedFile],
    ) -> Option<String> {
        let replaced = self.removed.lock();
        if let Some(id) = c
            .segments
            .keys()
            .find(|id| !covered.contains(id) && !replaced.contains_key(id))
        {
            return Some(format!(
                "segment {id} is missing or changed since the checkpoint"
            ));
        }
        let TailRow { id, bytes: end, .. } = c.tail?;
        if replaced.contains_key(&id) {
            return None;
        }
        let found = loaded.iter().find(|l| l.0 == id).and_then(|l| match &l.4 {
            Ok(Some((_, seg))) => Some(seg.data_end),
            _ => None,
        });
        match found {
            Some(data_end) if data_end >= end => None,
            None if end <= SEGMENT_HEADER_BYTES as u64 => None,
            _ => Some(format!(
                "segment {id} holds less than the {end} bytes it held at the checkpoint"
            )),
        }
    }

    /// Create a new store's directory and manifest in `dir`, which must not
    /// exist or be empty (the caller opens it next).
    /// Returns the keys of an encrypted store, so its first open need not
    /// derive them again.
    pub(crate) fn create(
        dir: &Path,
        opts: &InitOptions,
        vfs: &dyn Vfs,
    ) -> Result<Option<Arc<crate::crypto::StoreKeys>>> {
        validate_init(opts)?;
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
            schedule: Vec::new(),
            max_processes: crate::format::manifest::DEFAULT_MAX_PROCESSES,
            read_only: false,
            backup_detection: Default::default(),
            backup_mode_since_ms: None,
            backup_mode_max_ms: crate::format::manifest::DEFAULT_BACKUP_MODE_MAX_MS,
            checkpoint_after_records: crate::format::manifest::DEFAULT_CHECKPOINT_AFTER_RECORDS,
            encrypted: opts.encryption.is_some(),
        };
        // The key file before the manifest: a store is a store once its
        // manifest exists, and an encrypted one is useless without its keys.
        let keys = match &opts.encryption {
            Some(e) => Some(Arc::new(
                crate::crypto::KeyRing::new(vfs, dir, manifest.store_id).create(
                    &e.passphrase,
                    e.kdf,
                    manifest.created_ms,
                )?,
            )),
            None => None,
        };
        let path = dir.join(MANIFEST_FILE);
        vfs.write_atomic(&path, &manifest.encode())
            .map_err(|e| Error::io(&path, "write manifest", e))?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            // Make the store directory's own entry durable.
            let _ = vfs.sync_dir(parent);
        }
        Ok(keys)
    }

    /// The manifest of the store in `dir`, read without opening the store.
    pub(crate) fn manifest_at(vfs: &dyn Vfs, dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST_FILE);
        if !vfs.exists(&path) {
            return Err(Error::NotAStore {
                path: dir.to_path_buf(),
            });
        }
        read_manifest(vfs, &path)
    }

    /// True when the manifest in `dir` says the store is encrypted (false
    /// when it cannot be read: the open that follows reports that).
    /// The store's sealing, its keys unlocked (once, for what is read
    /// before the log: the sync cache); `None` without a manifest to read
    /// (the open then says why).
    pub(crate) fn sealing_at(
        vfs: &dyn Vfs,
        dir: &Path,
        unlock: &crate::crypto::Unlock,
    ) -> Result<Option<Sealing>> {
        let Ok(m) = read_manifest(vfs, &dir.join(MANIFEST_FILE)) else {
            return Ok(None);
        };
        unlock.sealing(vfs, dir, m.store_id, m.encrypted).map(Some)
    }

    /// Open the log of the store in `dir`: take the lock (unless read-only),
    /// load every segment and repair what a crash left. Returns the records
    /// for the state layer to replay.
    pub(crate) fn open(dir: &Path, opts: &OpenOptions) -> Result<(Log, Recovered)> {
        Self::open_covered(dir, opts, None)
    }

    /// Open as [`Log::open`] does, taking the sealed segments `coverage`
    /// lists from its rows instead of their footers.
    pub(crate) fn open_covered(
        dir: &Path,
        opts: &OpenOptions,
        coverage: Option<&Coverage<'_>>,
    ) -> Result<(Log, Recovered)> {
        let dir = dir.to_path_buf();
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
        // The keys first: a wrong passphrase changes nothing, not even the lock.
        let sealing = {
            let m = read_manifest(&*vfs, &manifest_path)?;
            opts.unlock.sealing(&*vfs, &dir, m.store_id, m.encrypted)?
        };
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
        let mut log = Log {
            dir,
            vfs,
            read_only: opts.read_only,
            read_only_state: manifest.read_only.into(),
            backup_mode_since: manifest.backup_mode_since_ms.unwrap_or(0).into(),
            verify_hash: opts.verify_hash,
            _lock: lock,
            manifest: Mutex::new(manifest),
            segments: Arc::new(RwLock::new(BTreeMap::new())),
            writer: Mutex::new(Writer {
                active: None,
                next_sequence: 1,
                failed: None,
            }),
            durable_sequence: AtomicU64::new(0),
            syncing: Mutex::new(false),
            synced: parking_lot::Condvar::new(),
            recovery: Vec::new(),
            removed: Mutex::new(BTreeMap::new()),
            sealing,
            remotes: Arc::default(),
            object_cache: Arc::new(super::remote::RangeCache::new(opts.object_cache_bytes)),
            upload_busy: Arc::default(),
            uploader: Mutex::new(None),
            background_uploads: opts.background_uploads,
        };
        log.connect_remotes()?;
        let recovered = log.recover(coverage)?;
        log.start_uploader()?;
        Ok((log, recovered))
    }

    /// Connect every partition in object storage, and make sure its
    /// staging directory exists.
    fn connect_remotes(&self) -> Result<()> {
        let manifest = self.manifest.lock().clone();
        for p in manifest
            .partitions
            .iter()
            .filter(|p| p.state != PartitionState::Retired)
        {
            if crate::io::object::ObjectUrl::parse(&p.path).is_none() {
                continue;
            }
            let r = self.remote(p)?;
            if !self.read_only && !self.vfs.exists(r.staging()) {
                self.vfs
                    .create_dir_all(r.staging())
                    .map_err(|e| Error::io(r.staging(), "create staging directory", e))?;
            }
        }
        Ok(())
    }

    /// Load every segment and repair what a crash left; the records found.
    fn recover(&mut self, coverage: Option<&Coverage<'_>>) -> Result<Recovered> {
        let manifest = self.manifest.lock().clone();
        let mut found: Vec<(u32, bool, u32, PathBuf)> = Vec::new();
        for p in &manifest.partitions {
            if p.state == PartitionState::Retired {
                // Drained by redistribution; its volume may be gone.
                continue;
            }
            for f in self.volume(p).list()? {
                found.push((f.id, f.sealed, p.id, f.path));
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

        let volumes: BTreeMap<u32, Box<dyn Volume>> = manifest
            .partitions
            .iter()
            .map(|p| (p.id, self.volume(p)))
            .collect();
        let read_only = self.read_only;
        let sealing = &self.sealing;
        let loaded: Vec<(LoadedFile, bool)> = found
            .into_par_iter()
            .map(|(id, sealed, partition, path)| {
                let row = coverage
                    .and_then(|c| c.segments.get(&id))
                    .filter(|r| sealed && r.partition == partition);
                let mut taken_from_row = false;
                let r = match volumes.get(&partition) {
                    Some(v) => match row {
                        Some(row) => {
                            load_covered(&**v, &path, id, row, &mut taken_from_row, sealing)
                        }
                        None => load_one(&**v, &path, id, sealed, read_only, sealing),
                    },
                    None => Err(Error::InvalidSetting(format!(
                        "partition {partition} does not exist"
                    ))),
                };
                ((id, partition, path, sealed, r), taken_from_row)
            })
            .collect();

        let mut complete_outputs = Vec::new();
        let (loaded, from_rows): (Vec<LoadedFile>, Vec<bool>) = loaded.into_iter().unzip();
        let covered: HashSet<u32> = loaded
            .iter()
            .zip(from_rows)
            .filter(|(_, from_row)| *from_row)
            .map(|(l, _)| l.0)
            .collect();
        let loaded = self.settle_compactions(loaded, &mut complete_outputs)?;
        let coverage_problem = coverage.and_then(|c| self.coverage_problem(c, &covered, &loaded));
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
                    self.writer.lock().active =
                        Some(ActiveSegment::resume(&seg, file.clone(), &self.sealing));
                }
            }
            let bytes = if state == SegmentState::Active {
                seg.data_end
            } else {
                seg.file_len
            };
            if let Some(row) = coverage
                .filter(|_| covered.contains(&id))
                .and_then(|c| c.segments.get(&id))
            {
                self.segments
                    .write()
                    .insert(id, covered_info(row, path, file));
                continue;
            }
            let (parts, part_bytes) = seg.part_records();
            self.segments.write().insert(
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
        if let Some(c) = coverage {
            max_sequence = max_sequence.max(c.sequence);
            for r in c.removed {
                self.removed
                    .get_mut()
                    .entry(r.segment)
                    .or_insert_with(|| r.clone());
            }
        }
        self.writer.get_mut().next_sequence = max_sequence + 1;
        self.durable_sequence.store(max_sequence, Ordering::SeqCst);
        if !self.read_only && max_segment >= manifest.next_segment_id {
            let mut m = self.manifest.lock();
            m.next_segment_id = max_segment + 1;
            write_manifest(&*self.vfs, &self.dir, &m)?;
        }
        Ok(Recovered {
            entries: replay,
            composites,
            complete_outputs,
            covered,
            coverage_problem,
        })
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
            self.segments.write().insert(id, info);
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
        // A footer found in an active segment was written by a seal the
        // crash interrupted: it may never have been synced (its trailer
        // page torn while the footer's survived). Write footer and trailer
        // again from the records, sync, then rename.
        file.set_len(seg.data_end)
            .map_err(|e| Error::io(&seg.path, "cut the unsynced footer", e))?;
        let active = ActiveSegment::resume(seg, file, &self.sealing);
        self.seal_output(&active)
    }
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

pub(super) fn write_manifest(vfs: &dyn Vfs, dir: &Path, m: &Manifest) -> Result<()> {
    let path = dir.join(MANIFEST_FILE);
    vfs.write_atomic(&path, &m.encode())
        .map_err(|e| Error::io(&path, "write manifest", e))
}

/// Open one segment file: footer fast path for sealed ones (falling back to
/// a scan when the footer is damaged), a scan for active ones.
fn load_one(
    volume: &dyn Volume,
    path: &Path,
    id: u32,
    sealed: bool,
    read_only: bool,
    sealing: &Sealing,
) -> Result<Option<(Arc<dyn VFile>, LoadedSegment)>> {
    let file = volume.open(path, !sealed && !read_only)?;
    if sealed {
        match segment::load_sealed(path, &*file, id, sealing) {
            Ok(seg) => return Ok(Some((file, seg))),
            Err(e) if e.is_corruption() => {
                tracing::warn!("{e}; scanning the segment instead of trusting its footer");
                let mut seg = segment::scan(path, &*file, id, sealing)?;
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
        && segment::read_header(&*file, id, len, sealing).is_err()
    {
        // A crash while creating the segment: its header never became
        // durable, so no record was ever acknowledged in it.
        volume.remove(path)?;
        return Ok(None);
    }
    let seg = segment::scan(path, &*file, id, sealing)?;
    Ok(Some((file, seg)))
}

/// A sealed segment a checkpoint covers: the file is opened and its header
/// checked, its footer is not read. A file of another length is loaded as
/// any other (and the coverage check refuses the checkpoint).
fn load_covered(
    volume: &dyn Volume,
    path: &Path,
    id: u32,
    row: &SegmentRow,
    taken_from_row: &mut bool,
    sealing: &Sealing,
) -> Result<Option<(Arc<dyn VFile>, LoadedSegment)>> {
    let file = volume.open(path, false)?;
    let len = file.len().map_err(|e| Error::io(path, "stat segment", e))?;
    if len != row.file_len {
        return load_one(volume, path, id, true, true, sealing);
    }
    *taken_from_row = true;
    let header = segment::read_header(&*file, id, len, sealing)?;
    let seg = LoadedSegment {
        path: path.to_path_buf(),
        header,
        entries: Vec::new(),
        data_end: len,
        file_len: len,
        sequences: (0, 0),
        has_footer: true,
        damage: None,
        part_lists: Vec::new(),
    };
    Ok(Some((file, seg)))
}

/// The description of a covered segment, from its row.
fn covered_info(row: &SegmentRow, path: PathBuf, file: Arc<dyn VFile>) -> SegmentInfo {
    let mut info = SegmentInfo::empty(row.partition, path, file, row.file_len, row.created_ms);
    info.state = SegmentState::Sealed;
    info.saveset_records = row.saveset_records;
    info.savesets = row.savesets;
    info.logical_bytes = row.logical_bytes;
    info.dead_savesets = row.dead_savesets;
    info.dead_bytes = row.dead_bytes;
    info.parts = row.parts;
    info.part_bytes = row.part_bytes;
    info
}

fn read_compaction_record(
    file: &dyn VFile,
    segment: u32,
    e: &FooterEntry,
    limit: u64,
    sealing: &Sealing,
) -> Result<CompactionRecord> {
    let (_, content) = segment::read_content_at(file, segment, e.offset, limit, sealing)?;
    CompactionRecord::decode(&content).map_err(|d| Error::corrupt(segment, e.offset, d))
}
