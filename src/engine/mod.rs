//! The engine: the state kept over the log, composed. Owns the in-memory
//! saveset index, the part table, the catalog and the lifecycle, rebuilt at
//! open by replaying the log's records in sequence order; and the rules that
//! tie them together: a put is indexed once, a saveset without references
//! dies (out of the index, its bytes counted dead in its segment), a read
//! goes through the index to the log. It reaches segment files only through
//! [`Log`]'s API, and it must not import the processes (`compaction`,
//! `backup`, `jobs`) or the façade (`store`) above it.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use parking_lot::{Mutex, RwLock};
use serde::Serialize;

use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::format::segment::{Codec, RecordKind, decode_payload};
use crate::format::state::{StateOp, encode_state_batch};
use crate::id::SavesetId;
use crate::index::{Index, Location};
use crate::lifecycle::Lifecycle;
use crate::log::{Located, Log, OpenOptions, SegmentState};
use crate::message_cache::MessageCache;
use crate::part_table::PartTable;
use crate::segment;

mod cached;
mod replay;
mod resume;
pub(crate) mod sync_cache;
mod verify;
mod write;

pub use write::PUT_STEP_BYTES;
pub(crate) use write::first_occurrences;

/// What a put did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Put {
    /// The saveset's id.
    pub id: SavesetId,
    /// True when the content was written; false when it was already stored.
    pub new: bool,
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
    /// The file, or the object's URL.
    pub path: PathBuf,
    /// Where it is: "local", or the URL of its object in object storage.
    pub location: String,
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
    /// In the operator's read-only state: writes are refused, reads work.
    pub read_only: bool,
    /// In backup mode since this time, Unix ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_mode_since_ms: Option<u64>,
    /// Items the message cache holds, not yet in the segments.
    pub message_cache_items: u64,
    /// The sequence of the newest checkpoint generation of the sync caches
    /// this store has (opened from, or written since); 0 when none.
    pub checkpoint_sequence: u64,
    /// Log records after that generation: what an open replays on top of it.
    pub overlay_records: u64,
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

/// The state over one store's log. `Store` composes it with the process
/// runner; processes (compaction, backup) work on it directly.
pub struct Engine {
    pub(crate) log: Log,
    pub(crate) index: RwLock<Index>,
    pub(crate) parts: RwLock<PartTable>,
    pub(crate) catalog: RwLock<Catalog>,
    pub(crate) lifecycle: Mutex<Lifecycle>,
    /// Held by a compaction pass, and by a resynchronization comparing states.
    pub(crate) compaction_pass: Mutex<()>,
    /// Writes accepted while the segments must not change (backup mode).
    pub(crate) cache: MessageCache,
    /// Held shared by a write while it decides between the log and the
    /// cache and writes; held alone to switch (backup mode on, the cache
    /// emptied), so no write is in flight to the other side.
    pub(crate) route: RwLock<()>,
    /// The newest checkpoint generation: opened from, or written since (0: none).
    pub(crate) checkpoint_sequence: std::sync::atomic::AtomicU64,
    /// Why checkpoint generations found at open were not used.
    pub(crate) cache_failures: Vec<String>,
}

impl Engine {
    /// True when the store is encrypted (format-spec/encryption.md).
    pub(crate) fn is_encrypted(&self) -> bool {
        self.log.sealing().keys().is_some()
    }

    /// Open the log and rebuild the state from its records.
    pub(crate) fn open(dir: &Path, opts: &OpenOptions) -> Result<Engine> {
        let mut failures = Vec::new();
        let mut opts = opts.clone();
        let sealing = match opts.use_sync_cache {
            true => Log::sealing_at(&*opts.vfs, dir, &opts.unlock)?,
            false => None,
        };
        if let Some(sealing) = sealing {
            // The keys are derived once: the log opens with them too.
            opts.unlock = sealing.unlock();
            let (generation, found_failures) =
                sync_cache::find_generation(&opts.vfs, dir, &sealing);
            failures = found_failures;
            if let Some(g) = generation {
                match Self::open_from(dir, &opts, g)? {
                    Ok(mut engine) => {
                        engine.cache_failures = failures;
                        return Ok(engine);
                    }
                    Err(why) => failures.push(why),
                }
            }
        }
        for why in &failures {
            tracing::warn!("sync cache not used: {why}; every record is replayed");
        }
        let mut engine = Self::open_replaying(dir, &opts)?;
        engine.cache_failures = failures;
        Ok(engine)
    }

    /// Open from a checkpoint generation; the inner `Err` says why the
    /// generation does not describe the segments found.
    fn open_from(
        dir: &Path,
        opts: &OpenOptions,
        g: sync_cache::LoadedGeneration,
    ) -> Result<std::result::Result<Engine, String>> {
        let coverage = crate::log::Coverage {
            sequence: g.sequence,
            segments: &g.segments,
            tail: g.tail,
            removed: &g.removed,
        };
        let (log, recovered) = Log::open_covered(dir, opts, Some(&coverage))?;
        if let Some(problem) = recovered.coverage_problem {
            return Ok(Err(problem));
        }
        let mut engine = Self::with_log(log, dir, opts)?;
        let sequence = g.sequence;
        match engine.resume(g, recovered) {
            Ok(()) => {
                engine.forget_removed_segments();
                *engine.checkpoint_sequence.get_mut() = sequence;
                Ok(Ok(engine))
            }
            Err(why) => Ok(Err(why)),
        }
    }

    /// Open by replaying every record of every segment.
    fn open_replaying(dir: &Path, opts: &OpenOptions) -> Result<Engine> {
        let (log, recovered) = Log::open(dir, opts)?;
        let mut engine = Self::with_log(log, dir, opts)?;
        for id in &recovered.complete_outputs {
            engine.lifecycle.get_mut().set_complete(*id);
        }
        engine.replay(recovered.entries, recovered.composites)?;
        engine.forget_removed_segments();
        Ok(engine)
    }

    /// Backup marks of segments compactions removed are dropped, as the
    /// compaction dropped them when it ran.
    fn forget_removed_segments(&mut self) {
        let gone: Vec<u32> = self
            .log
            .removed_segments()
            .iter()
            .map(|r| r.segment)
            .collect();
        self.lifecycle.get_mut().forget_segments(&gone);
    }

    /// An engine over `log` with empty state, its message cache opened.
    fn with_log(log: Log, dir: &Path, opts: &OpenOptions) -> Result<Engine> {
        let (cache, note) = MessageCache::open(
            opts.vfs.clone(),
            dir,
            log.manifest().store_id,
            log.sealing().clone(),
            opts.read_only,
        )?;
        if let Some(note) = note {
            tracing::warn!("{note}");
        }
        Ok(Engine {
            log,
            index: RwLock::new(Index::default()),
            parts: RwLock::new(PartTable::default()),
            catalog: RwLock::new(Catalog::default()),
            lifecycle: Mutex::new(Lifecycle::default()),
            compaction_pass: Mutex::new(()),
            cache,
            route: RwLock::new(()),
            checkpoint_sequence: 0.into(),
            cache_failures: Vec::new(),
        })
    }

    /// Digests of the in-memory state: index, part table, catalog, lifecycle.
    pub(crate) fn state_digest(&self) -> Result<StateDigest> {
        let (index, entries) = self.index.read().digest()?;
        Ok(StateDigest {
            index,
            entries,
            parts: self.parts.read().digest(),
            catalog: self.catalog.read().digest()?,
            lifecycle: self.lifecycle.lock().digest(),
        })
    }

    /// Append one state batch and apply it in sequence order; durable on return.
    pub(crate) fn commit_state(&self, ops: Vec<StateOp>) -> Result<()> {
        let seq = {
            let mut w = self.log.lock_writer();
            let seq = self.log.append_batch_locked(
                &mut w,
                RecordKind::State,
                &encode_state_batch(&ops),
            )?;
            let mut lc = self.lifecycle.lock();
            for op in &ops {
                lc.apply(op, seq, |s| self.log.saveset_records(s));
            }
            seq
        };
        self.log.wait_durable(seq)
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
            let removed = match self.index.write().remove(id) {
                Ok(removed) => removed,
                Err(e) => {
                    // Dead in the catalog, which is durable; the index keeps
                    // it until the next open rebuilds from the segments.
                    tracing::warn!("saveset {id} died but stays indexed: {e}");
                    None
                }
            };
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
        let h = match self.log.record_header_at(loc) {
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
        self.log.note_dead(loc, h.kind, logical, h.record_bytes());
        listed
    }

    /// True when a saveset with this id is stored. Answers from memory
    /// (or a mapped sync cache). A block of it that fails its check
    /// answers no: the put that follows reports the damage.
    pub fn has(&self, id: &SavesetId) -> bool {
        self.index.read().contains(id).unwrap_or(false)
    }

    /// The exact content of saveset `id`. The record's crc is checked, and
    /// its blake3 hash unless the store was opened with `verify_hash: false`;
    /// damage is an [`Error::Corrupt`] naming segment and offset, never wrong bytes.
    /// Damage in a segment in object storage names its object too.
    pub fn get(&self, id: &SavesetId) -> Result<Vec<u8>> {
        self.get_located(id).map_err(|e| self.log.naming_object(e))
    }

    fn get_located(&self, id: &SavesetId) -> Result<Vec<u8>> {
        let (loc, file, limit, damage) = self.locate(id)?;
        if let Some(d) = damage {
            return Err(Error::corrupt(loc.segment, loc.offset as u64, d));
        }
        let offset = loc.offset as u64;
        let (h, payload) =
            segment::read_record_at(&*file, loc.segment, offset, limit, self.log.sealing())?;
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
        if self.log.verifies_hashes() && SavesetId::of(&content) != *id {
            return Err(Error::corrupt(loc.segment, offset, "hash mismatch"));
        }
        Ok(content)
    }

    /// Where saveset `id` is, with its segment's file. Compaction may move
    /// it between the index lookup and the segment lookup: then the index
    /// is asked again.
    fn locate(&self, id: &SavesetId) -> Result<Located> {
        self.log
            .locate_with(|| self.index.read().get(id))?
            .ok_or(Error::NotFound(*id))
    }

    /// Totals: savesets, logical and stored bytes, segments, index memory.
    pub fn stat(&self) -> Stat {
        // The writer's lock before the state's: a writer holds it while it
        // takes the index's (lock order writer, then index).
        let overlay_records = self
            .log
            .last_sequence()
            .saturating_sub(self.checkpoint_sequence());
        let catalog = self.catalog.read();
        let index = self.index.read();
        let parts = self.parts.read();
        let part_totals = parts.totals();
        let segs = self.log.segment_infos();
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
            read_only: self.log.in_read_only_state(),
            backup_mode_since_ms: self.log.backup_mode_since(),
            message_cache_items: self.cache.pending().0,
            references: catalog.references(),
            trashed_references: catalog.trashed(),
            owners: catalog.owner_count(),
            dead_savesets: segs.values().map(|s| s.dead_savesets).sum(),
            dead_bytes: segs.values().map(|s| s.dead_bytes).sum(),
            catalog_bytes: catalog.memory_bytes() as u64,
            checkpoint_sequence: self.checkpoint_sequence(),
            overlay_records,
        }
    }

    /// The newest checkpoint generation's sequence (0: none).
    pub(crate) fn checkpoint_sequence(&self) -> u64 {
        self.checkpoint_sequence
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Every segment, by id.
    pub fn segments(&self) -> Vec<SegmentStat> {
        let lifecycle = self.lifecycle.lock();
        self.log
            .segment_infos()
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
                location: self.log.location(s),
                created_ms: s.created_ms,
                damage: s.damage.clone(),
            })
            .collect()
    }

    /// Every saveset id, by id.
    pub fn ids(&self) -> Result<Vec<SavesetId>> {
        self.index
            .read()
            .iter()
            .map(|r| r.map(|(id, _)| id))
            .collect()
    }
}
