//! The sync caches: checkpoint generations of the engine's state
//! (format-spec/checkpoint.md). Owns taking the snapshot (under the state's
//! locks, in the writers' lock order, so it is the state after exactly one
//! sequence), writing the three files without those locks, installing them
//! once the sequence is durable, and finding and loading the newest valid
//! generation at open. Replaying the records after a generation is
//! `resume`'s. It must not change a segment: a checkpoint is a copy.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::Engine;
use crate::catalog::{Catalog, CatalogSnapshot, MappedCatalog};
use crate::crypto::Sealing;
use crate::error::{Error, Result};
use crate::format::checkpoint::{
    BlockChecks, CheckpointHeader, CheckpointKind, CheckpointWriter, Layout, SharedTable,
    TableBytes,
};
use crate::format::manifest::Manifest;
use crate::format::sealed_checkpoint::{BlockSealer, CheckpointFile, SealedFile};
use crate::format::sync_tables::{
    FanoutBuilder, SegmentRow, TailRow, decode_location, decode_part_ref, decode_removed,
    encode_location, encode_part_ref, encode_removed, fanout_bits_with, files,
};
use crate::format::{MANIFEST_FILE, SYNC_CACHE_DIR};
use crate::id::SavesetId;
use crate::index::{Index, IndexView, Location, MappedBase, OnDamage};
use crate::io::{MappedFile, VFile, Vfs};
use crate::lifecycle::{Lifecycle, LifecycleSnapshot};
use crate::log::{RemovedSegment, SegmentState};
use crate::part_table::PartTable;
use crate::units::now_ms;

/// The files kind's content at one sequence.
struct FilesSnapshot {
    segments: Vec<SegmentRow>,
    tail: Option<TailRow>,
    /// The index frozen at the snapshot: written by merging its base with
    /// its frozen changes, then installed as its new base.
    savesets: IndexView,
    parts: Vec<(SavesetId, Location)>,
    part_refs: Vec<([u8; 32], u32, u64)>,
    removed: Vec<RemovedSegment>,
}

/// The state after one sequence, ready to write.
pub(crate) struct Snapshot {
    sequence: u64,
    files: FilesSnapshot,
    catalog: CatalogSnapshot,
    lifecycle: LifecycleSnapshot,
}

/// What writing a generation did.
#[derive(Debug, Clone)]
pub(crate) struct CheckpointWritten {
    /// The sequence the generation covers.
    pub(crate) sequence: u64,
    /// Each kind's file and its length.
    pub(crate) files: Vec<(CheckpointKind, PathBuf, u64)>,
    /// Savesets and references it holds.
    pub(crate) savesets: u64,
    pub(crate) references: u64,
}

/// A generation read back at open: the state after `sequence`.
pub(crate) struct LoadedGeneration {
    pub(crate) sequence: u64,
    /// Covered sealed segments, by id.
    pub(crate) segments: BTreeMap<u32, SegmentRow>,
    /// The active segment at the snapshot.
    pub(crate) tail: Option<TailRow>,
    pub(crate) index: Index,
    pub(crate) parts: PartTable,
    pub(crate) removed: Vec<RemovedSegment>,
    pub(crate) catalog: Catalog,
    pub(crate) lifecycle: Lifecycle,
}

/// Buffered writes into a file of the seam, front to back.
struct SeamWriter {
    file: Arc<dyn VFile>,
    pos: u64,
    buf: Vec<u8>,
}

impl Write for SeamWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= 1 << 20 {
            self.flush()?;
        }
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.write_all_at(&self.buf, self.pos)?;
        self.pos += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }
}

impl Engine {
    /// Take the state after the last appended sequence. Locks in the
    /// writers' order (catalog, writer, lifecycle, index, parts): every
    /// change of a sequence up to the snapshot's is in it, none after.
    pub(crate) fn snapshot(&self) -> Result<Snapshot> {
        let mut catalog = self.catalog.write();
        let writer = self.log.lock_writer();
        let lifecycle = self.lifecycle.lock();
        let mut index = self.index.write();
        let parts = self.parts.read();
        let sequence = writer.next_sequence_minus_one();
        let tail = writer.active_tail().map(|(id, partition, bytes)| {
            let live = self
                .log
                .segment_info(id)
                .map_or(0, |s| s.savesets + s.parts);
            TailRow {
                id,
                partition,
                bytes,
                live,
            }
        });
        let segments = self
            .log
            .segment_infos()
            .iter()
            .filter(|(_, s)| s.state == SegmentState::Sealed && s.damage.is_none())
            .map(|(id, s)| SegmentRow {
                id: *id,
                partition: s.partition_id,
                file_len: s.bytes,
                saveset_records: s.saveset_records,
                savesets: s.savesets,
                logical_bytes: s.logical_bytes,
                dead_savesets: s.dead_savesets,
                dead_bytes: s.dead_bytes,
                parts: s.parts,
                part_bytes: s.part_bytes,
                created_ms: s.created_ms,
            })
            .collect();
        Ok(Snapshot {
            sequence,
            files: FilesSnapshot {
                segments,
                tail,
                parts: parts.index.iter().collect::<Result<_>>()?,
                savesets: index.freeze(),
                part_refs: parts.refs_sorted(),
                removed: self.log.removed_segments(),
            },
            catalog: catalog.freeze(),
            lifecycle: lifecycle.snapshot(),
        })
    }
}

/// One kind written under its temporary name.
pub(crate) struct TmpFile {
    kind: CheckpointKind,
    tmp: PathBuf,
    path: PathBuf,
    len: u64,
}

impl TmpFile {
    /// Its length in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }
}

impl Snapshot {
    /// The sequence the snapshot covers.
    pub(crate) fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Write `kind`'s file as `NAME.tmp`, fsynced.
    pub(crate) fn write_kind(&self, engine: &Engine, kind: CheckpointKind) -> Result<TmpFile> {
        let dir = engine.log.dir().join(SYNC_CACHE_DIR);
        let vfs = engine.log.vfs();
        vfs.create_dir_all(&dir)
            .map_err(|e| Error::io(&dir, "create directory", e))?;
        let sealing = engine.log.sealing();
        let salt = match sealing.keys() {
            Some(_) => {
                let mut salt = [0u8; 12];
                crate::crypto::fill_random(&mut salt)?;
                Some(salt)
            }
            None => None,
        };
        let header = CheckpointHeader {
            kind,
            store_id: engine.log.manifest().store_id,
            sequence: self.sequence,
            created_ms: now_ms(),
            salt,
        };
        let sealer = match sealing.keys() {
            Some(keys) => Some(keys.checkpoint_sealer(&header)?),
            None => None,
        };
        let path = dir.join(kind.file_name(self.sequence));
        let (tmp, len) = write_tmp(&*vfs, &path, &header, sealer, |w| match kind {
            CheckpointKind::Files => self.files.write(w),
            CheckpointKind::Messages => self.catalog.write(w),
            CheckpointKind::Properties => self.lifecycle.write(w),
        })?;
        Ok(TmpFile {
            kind,
            tmp,
            path,
            len,
        })
    }

    /// Install the three files once the snapshot's sequence is durable
    /// (nothing a checkpoint holds may be lost by a power cut the log
    /// survives), then remove older generations.
    pub(crate) fn install(
        &self,
        engine: &Engine,
        written: Vec<TmpFile>,
    ) -> Result<CheckpointWritten> {
        let dir = engine.log.dir().join(SYNC_CACHE_DIR);
        let vfs = engine.log.vfs();
        if written.len() != CheckpointKind::ALL.len() {
            return Err(Error::InvalidSetting(
                "a generation needs all three kinds".into(),
            ));
        }
        engine.log.wait_durable(self.sequence)?;
        for f in &written {
            vfs.rename(&f.tmp, &f.path)
                .map_err(|e| Error::io(&f.path, "install checkpoint", e))?;
        }
        vfs.sync_dir(&dir)
            .map_err(|e| Error::io(&dir, "sync directory", e))?;
        remove_others(&*vfs, &dir, Some(self.sequence));
        engine
            .checkpoint_sequence
            .store(self.sequence, std::sync::atomic::Ordering::Relaxed);
        self.swap_in_index(engine, &dir)?;
        self.swap_in_catalog(engine, &dir)?;
        Ok(CheckpointWritten {
            sequence: self.sequence,
            files: written
                .into_iter()
                .map(|f| (f.kind, f.path, f.len))
                .collect(),
            savesets: self.files.savesets.len() as u64,
            references: self.catalog.references(),
        })
    }
}

impl Snapshot {
    /// The files kind just installed becomes the index's base: the heap
    /// the frozen changes (and an owned base) held is given back.
    fn swap_in_index(&self, engine: &Engine, dir: &Path) -> Result<()> {
        let path = dir.join(CheckpointKind::Files.file_name(self.sequence));
        let name = file_name_of(&path);
        let damaged = |detail| Error::CacheDamaged {
            file: name.clone(),
            detail,
        };
        let bytes = engine
            .log
            .vfs()
            .map_read(&path)
            .map_err(|e| Error::io(&path, "map checkpoint", e))?;
        let layout = Layout::parse(&bytes).map_err(damaged)?;
        let file = checkpoint_file(bytes, &layout, engine.log.sealing()).map_err(damaged)?;
        let on_damage = drop_generation(engine.log.vfs(), dir.to_path_buf());
        let base = mapped_base(&name, Arc::new(file), on_damage).map_err(damaged)?;
        engine.index.write().install(&self.files.savesets, base);
        Ok(())
    }

    /// The messages kind just installed becomes the catalog's base.
    fn swap_in_catalog(&self, engine: &Engine, dir: &Path) -> Result<()> {
        let path = dir.join(CheckpointKind::Messages.file_name(self.sequence));
        let name = file_name_of(&path);
        let damaged = |detail| Error::CacheDamaged {
            file: name.clone(),
            detail,
        };
        let bytes = engine
            .log
            .vfs()
            .map_read(&path)
            .map_err(|e| Error::io(&path, "map checkpoint", e))?;
        let layout = Layout::parse(&bytes).map_err(damaged)?;
        let file = checkpoint_file(bytes, &layout, engine.log.sealing()).map_err(damaged)?;
        let on_damage = drop_generation(engine.log.vfs(), dir.to_path_buf());
        let base =
            MappedCatalog::new(&name, Arc::new(file), &layout, on_damage).map_err(damaged)?;
        engine.catalog.write().install(&self.catalog, base);
        Ok(())
    }
}

/// A mapped checkpoint file as its tables are read: a sealed one opened
/// under the store's keys. A sealed file in a store in the clear, or one in
/// the clear in an encrypted store, is refused.
fn checkpoint_file(
    bytes: MappedFile,
    layout: &Layout,
    sealing: &Sealing,
) -> std::result::Result<CheckpointFile, String> {
    match (sealing.keys(), layout.header.salt.is_some()) {
        (None, false) => Ok(CheckpointFile::Clear(bytes)),
        (Some(keys), true) => {
            let sealer = keys
                .checkpoint_sealer(&layout.header)
                .map_err(|e| e.to_string())?;
            Ok(CheckpointFile::Sealed(SealedFile::new(
                bytes, layout, sealer,
            )?))
        }
        (None, true) => Err("a sealed checkpoint in a store in the clear".into()),
        (Some(_), false) => Err("a checkpoint in the clear in an encrypted store".into()),
    }
}

fn file_name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The saveset index table of a files checkpoint, mapped, with its fanout.
fn mapped_base(
    name: &str,
    bytes: Arc<CheckpointFile>,
    on_damage: OnDamage,
) -> std::result::Result<MappedBase, String> {
    let layout = Layout::parse(bytes.frame())?;
    let entry = |id| {
        layout
            .entry(id)
            .copied()
            .ok_or_else(|| format!("table {id} missing"))
    };
    let rows = SharedTable::for_lookups(bytes.clone(), entry(files::SAVESETS)?);
    let fanout = SharedTable::for_lookups(bytes.clone(), entry(files::SAVESET_FANOUT)?);
    MappedBase::new(name, rows, fanout, on_damage)
}

/// What a damaged block of a mapped generation does: every file of the
/// sync cache is removed, so the next open replays the segments (and the
/// history records why), and a new generation is written after it.
fn drop_generation(vfs: Arc<dyn Vfs>, cache: PathBuf) -> OnDamage {
    Arc::new(move |detail: &str| {
        tracing::error!(
            "sync cache damaged ({detail}): removed; the next open replays the segments"
        );
        remove_others(&*vfs, &cache, None);
    })
}

/// Write one file as `PATH.tmp`, fsynced; returns its path and length.
fn write_tmp(
    vfs: &dyn Vfs,
    path: &Path,
    header: &CheckpointHeader,
    sealer: Option<Arc<dyn BlockSealer>>,
    body: impl FnOnce(&mut CheckpointWriter<SeamWriter>) -> std::io::Result<()>,
) -> Result<(PathBuf, u64)> {
    let tmp = crate::io::tmp_sibling(path);
    if vfs.exists(&tmp) {
        vfs.remove_file(&tmp)
            .map_err(|e| Error::io(&tmp, "remove", e))?;
    }
    let file = vfs
        .create_new(&tmp)
        .map_err(|e| Error::io(&tmp, "create checkpoint", e))?;
    let out = SeamWriter {
        file: file.clone(),
        pos: 0,
        buf: Vec::with_capacity(1 << 20),
    };
    let io = |e| Error::io(&tmp, "write checkpoint", e);
    let mut w = match sealer {
        Some(sealer) => CheckpointWriter::sealed(out, header, sealer),
        None => CheckpointWriter::new(out, header),
    }
    .map_err(io)?;
    body(&mut w).map_err(io)?;
    let (mut out, len) = w.finish().map_err(io)?;
    out.flush().map_err(io)?;
    file.sync_data().map_err(io)?;
    Ok((tmp, len))
}

/// Remove every file of the directory but the generation `keep`
/// (temporary files, older and unfinished generations). Best effort: a
/// file left is removed by the next writer.
fn remove_others(vfs: &dyn Vfs, dir: &Path, keep: Option<u64>) {
    let Ok(names) = vfs.list_dir(dir) else {
        return;
    };
    for name in names {
        let kept = CheckpointKind::parse_file_name(&name).is_some_and(|(_, s)| Some(s) == keep);
        if !kept {
            let _ = vfs.remove_file(&dir.join(&name));
        }
    }
}

impl FilesSnapshot {
    fn write<W: Write>(&self, w: &mut CheckpointWriter<W>) -> std::io::Result<()> {
        w.begin_table(files::SEGMENTS, SegmentRow::BYTES as u32)?;
        for s in &self.segments {
            w.row(&s.encode())?;
        }
        self.write_savesets(w)?;
        w.begin_table(files::PARTS, 40)?;
        for (id, loc) in &self.parts {
            w.row(&encode_location(&id.0, loc.segment, loc.offset))?;
        }
        w.begin_table(files::PART_REFS, 48)?;
        for (id, count, len) in &self.part_refs {
            w.row(&encode_part_ref(id, *count, *len))?;
        }
        w.begin_table(files::REMOVED, 16)?;
        for r in &self.removed {
            w.row(&encode_removed(r.segment, r.replaced_by, r.at_ms))?;
        }
        w.begin_table(files::TAIL, TailRow::BYTES as u32)?;
        if let Some(tail) = &self.tail {
            w.row(&tail.encode())?;
        }
        Ok(())
    }
}

impl FilesSnapshot {
    /// The index, merged from its base and frozen changes in id order, and
    /// its fanout.
    fn write_savesets<W: Write>(&self, w: &mut CheckpointWriter<W>) -> std::io::Result<()> {
        let mut fanout = FanoutBuilder::new(fanout_bits_with(self.savesets.len() as u64, 8));
        let mut last: Option<[u8; 32]> = None;
        w.begin_table(files::SAVESETS, 40)?;
        for entry in self.savesets.iter() {
            let (id, loc) = entry.map_err(std::io::Error::other)?;
            if last.is_some_and(|l| l >= id.0) {
                return Err(std::io::Error::other("index entries out of order"));
            }
            last = Some(id.0);
            fanout.add(&id.0);
            w.row(&encode_location(&id.0, loc.segment, loc.offset))?;
        }
        w.begin_table(files::SAVESET_FANOUT, 8)?;
        for start in fanout.rows() {
            w.row(&start.to_le_bytes())?;
        }
        Ok(())
    }
}

/// Every row of table `id`, each block checked.
fn rows<'a, T>(
    file: &'a CheckpointFile,
    layout: &Layout,
    id: u32,
    decode: impl Fn(&'a [u8]) -> std::result::Result<T, String>,
) -> std::result::Result<Vec<T>, String> {
    let e = layout
        .entry(id)
        .ok_or_else(|| format!("table {id} missing"))?;
    let checks = BlockChecks::for_table(e);
    let t = file.table(e, &checks);
    (0..t.rows()).map(|n| decode(t.row(n)?)).collect()
}

/// An index from rows that must be sorted by id without repeats.
fn index_from(rows: Vec<([u8; 32], u32, u32)>) -> std::result::Result<Index, String> {
    if rows.windows(2).any(|w| w[0].0 >= w[1].0) {
        return Err("index rows out of order".into());
    }
    let pairs = rows
        .into_iter()
        .map(|(id, segment, offset)| (SavesetId(id), Location { segment, offset }))
        .collect();
    Ok(Index::build(pairs).0)
}

fn load_files(
    name: &str,
    on_damage: OnDamage,
    mapped: &Arc<CheckpointFile>,
    layout: &Layout,
    g: &mut LoadedGeneration,
) -> std::result::Result<(), String> {
    let bytes: &CheckpointFile = mapped;
    for row in rows(bytes, layout, files::SEGMENTS, SegmentRow::decode)? {
        if g.segments.insert(row.id, row).is_some() {
            return Err(format!("segment {} listed twice", row.id));
        }
    }
    g.tail = rows(bytes, layout, files::TAIL, TailRow::decode)?
        .into_iter()
        .next();
    g.index = Index::mapped(mapped_base(name, mapped.clone(), on_damage)?);
    let part_index = index_from(rows(bytes, layout, files::PARTS, decode_location)?)?;
    let refs = rows(bytes, layout, files::PART_REFS, decode_part_ref)?;
    if refs.windows(2).any(|w| w[0].0 >= w[1].0) {
        return Err("part reference rows out of order".into());
    }
    g.parts = PartTable::from_checkpoint(part_index, refs);
    g.removed = rows(bytes, layout, files::REMOVED, decode_removed)?
        .into_iter()
        .map(|(segment, replaced_by, at_ms)| RemovedSegment {
            segment,
            replaced_by,
            at_ms,
        })
        .collect();
    Ok(())
}

/// Why a generation could not be used, for the history.
pub(crate) type CacheFailure = String;

/// The newest generation of `dir`'s sync cache whose three files pass
/// every check, loaded; and what was wrong with newer ones.
pub(crate) fn find_generation(
    vfs: &Arc<dyn Vfs>,
    dir: &Path,
    sealing: &Sealing,
) -> (Option<LoadedGeneration>, Vec<CacheFailure>) {
    let cache = dir.join(SYNC_CACHE_DIR);
    let Ok(names) = vfs.list_dir(&cache) else {
        return (None, Vec::new());
    };
    let mut kinds: BTreeMap<u64, Vec<CheckpointKind>> = BTreeMap::new();
    for (kind, seq) in names
        .iter()
        .filter_map(|n| CheckpointKind::parse_file_name(n))
    {
        kinds.entry(seq).or_default().push(kind);
    }
    let store_id = match vfs
        .read_small(
            &dir.join(MANIFEST_FILE),
            crate::format::manifest::MAX_MANIFEST_BYTES,
        )
        .ok()
        .and_then(|b| Manifest::decode(&b).ok())
    {
        Some(m) => m.store_id,
        None => return (None, Vec::new()),
    };
    let mut failures = Vec::new();
    for (&sequence, present) in kinds.iter().rev() {
        if present.len() != CheckpointKind::ALL.len() {
            continue;
        }
        match load_generation(vfs, &cache, store_id, sequence, sealing) {
            Ok(g) => return (Some(g), failures),
            Err(why) => failures.push(why),
        }
    }
    (None, failures)
}

/// Check one checkpoint file whole, as an open would load it (for the
/// fuzz targets and tools): its kind, or why it would be refused.
pub(crate) fn check_file(
    bytes: &[u8],
    sealing: &Sealing,
) -> std::result::Result<CheckpointKind, String> {
    let layout = Layout::parse(bytes)?;
    let mut g = empty_generation(layout.header.sequence);
    let mapped = Arc::new(checkpoint_file(
        MappedFile::Read(bytes.to_vec()),
        &layout,
        sealing,
    )?);
    match layout.header.kind {
        CheckpointKind::Files => {
            load_files("checked", Arc::new(|_: &str| {}), &mapped, &layout, &mut g)?;
            check_sorted(&g.index)?;
        }
        CheckpointKind::Messages => {
            let catalog =
                Catalog::load_checkpoint("checked", mapped, &layout, Arc::new(|_: &str| {}))?;
            catalog.check_all()?;
        }
        CheckpointKind::Properties => g.lifecycle = Lifecycle::load_checkpoint(&mapped, &layout)?,
    }
    Ok(layout.header.kind)
}

/// Every entry of a mapped index read, each block checked, in strictly
/// increasing id order (the writer's promise a lookup relies on).
fn check_sorted(index: &Index) -> std::result::Result<(), String> {
    let mut last: Option<SavesetId> = None;
    for entry in index.iter() {
        let (id, _) = entry.map_err(|e| e.to_string())?;
        if last.is_some_and(|l| l.0 >= id.0) {
            return Err("index rows out of order".into());
        }
        last = Some(id);
    }
    Ok(())
}

fn empty_generation(sequence: u64) -> LoadedGeneration {
    LoadedGeneration {
        sequence,
        segments: BTreeMap::new(),
        tail: None,
        index: Index::default(),
        parts: PartTable::default(),
        removed: Vec::new(),
        catalog: Catalog::default(),
        lifecycle: Lifecycle::default(),
    }
}

fn load_generation(
    vfs: &Arc<dyn Vfs>,
    cache: &Path,
    store_id: [u8; 16],
    sequence: u64,
    sealing: &Sealing,
) -> std::result::Result<LoadedGeneration, String> {
    let mut g = empty_generation(sequence);
    for kind in CheckpointKind::ALL {
        let path = cache.join(kind.file_name(sequence));
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let fail = |why: String| format!("{name}: {why}");
        let mapped = vfs.map_read(&path).map_err(|e| fail(e.to_string()))?;
        let layout = Layout::parse(&mapped).map_err(fail)?;
        let h = layout.header;
        if h.kind != kind || h.sequence != sequence || h.store_id != store_id {
            return Err(fail("header names another kind, sequence or store".into()));
        }
        let bytes = Arc::new(checkpoint_file(mapped, &layout, sealing).map_err(fail)?);
        match kind {
            CheckpointKind::Files => {
                let on_damage = drop_generation(vfs.clone(), cache.to_path_buf());
                load_files(&name, on_damage, &bytes, &layout, &mut g).map_err(fail)?
            }
            CheckpointKind::Messages => {
                let on_damage = drop_generation(vfs.clone(), cache.to_path_buf());
                g.catalog = Catalog::load_checkpoint(&name, bytes.clone(), &layout, on_damage)
                    .map_err(fail)?
            }
            CheckpointKind::Properties => {
                g.lifecycle = Lifecycle::load_checkpoint(&bytes, &layout).map_err(fail)?
            }
        }
    }
    Ok(g)
}
