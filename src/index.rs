//! The map from saveset id to the record's location.
//!
//! Owns lookups and changes of that map; never opens a file (a mapped base
//! is handed in by the sync cache). Three layers, read top down:
//!
//! * `changes`: ids added, moved or removed since the layers below (a hash
//!   map; a removal is a tombstone over them).
//! * `frozen`: the changes a sync cache generation being written holds,
//!   shared read-only with its writer ([`Index::freeze`]).
//! * `base`: entries sorted by id, immutable and shared by `Arc`. Either
//!   owned (built by a full replay: 40 bytes a saveset and a bucket
//!   directory over the ids' top bits) or the savesets table of a mapped
//!   checkpoint file with its fanout (format-spec/checkpoint.md, files
//!   tables 2 and 7), which the kernel pages in and out: no heap.
//!
//! An owned base takes the changes in by a merge once they exceed 1/16 of
//! it. A mapped base takes them in when the next generation, written from
//! the base and the frozen changes off the write path, is installed
//! ([`Index::install`]). Ids are uniform hashes, so buckets stay even.
//! `memory_bytes` estimates the heap from capacities; `tests/memory.rs`,
//! `vaultstore bench` and `benches/catalog_scale.rs` measure it.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::iter::Peekable;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::checkpoint::SharedTable;
use crate::format::sealed_checkpoint::CheckpointFile;
use crate::format::sync_tables::{
    bucket_rows_mapped, decode_fanout, decode_location, lower_bound_in_bucket,
};
use crate::id::SavesetId;

/// Where a record lives: segment id and byte offset of its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Location {
    /// Segment id.
    pub segment: u32,
    /// Offset of the record header in the segment file.
    pub offset: u32,
}

#[derive(Clone, Copy)]
#[repr(C)]
struct Entry {
    id: [u8; 32],
    segment: u32,
    offset: u32,
}

const MIN_CHANGES: usize = 4096;
/// Bytes of a mapped index row: id, segment, offset.
const ROW: u64 = 40;
const MAX_DIRECTORY_BITS: u32 = 20;

/// Ids are already uniform: hash by their first 8 bytes.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

/// A `HashMap` builder for maps keyed by saveset ids.
pub(crate) type IdHash = BuildHasherDefault<IdHasher>;

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Called once with the 32-byte key (arrays hash as one slice write
        // after a length prefix for slices only; `[u8; 32]` writes bytes).
        for chunk in bytes.chunks(8).take(1) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(b);
        }
    }
}

/// Entries of a base, in id order; an entry of a damaged block is an error.
type BaseRows<'a> = Box<dyn Iterator<Item = Result<([u8; 32], Location)>> + 'a>;

/// A digest of an index and its entries in id order.
pub type IndexDigest = ([u8; 32], Vec<(SavesetId, Location)>);

/// Changes over a base: `None` removes the id.
type Changes = HashMap<[u8; 32], Option<Location>, IdHash>;

/// What the owner of a mapped file does once a block of it fails its
/// check (the engine drops the generation so the next open replays).
pub type OnDamage = Arc<dyn Fn(&str) + Send + Sync>;

/// The savesets table of a mapped checkpoint file and its fanout.
pub struct MappedBase {
    file: Arc<str>,
    rows: SharedTable<CheckpointFile>,
    /// About 8 rows a bucket: read where it is mapped, not kept.
    fanout: SharedTable<CheckpointFile>,
    bits: u32,
    on_damage: OnDamage,
    reported: std::sync::Once,
}

impl MappedBase {
    /// The index table `rows` and its fanout table `fanout` of one mapped
    /// file named `file` (for errors). The fanout is read whole and checked
    /// (it is small); rows are checked block by block as lookups reach them.
    pub fn new(
        file: &str,
        rows: SharedTable<CheckpointFile>,
        fanout: SharedTable<CheckpointFile>,
        on_damage: OnDamage,
    ) -> std::result::Result<MappedBase, String> {
        fanout.will_need_all();
        let (_, bits) = decode_fanout(&fanout.table(), rows.table().rows())?;
        Ok(MappedBase {
            file: file.into(),
            rows,
            fanout,
            bits,
            on_damage,
            reported: std::sync::Once::new(),
        })
    }

    fn damaged(&self, detail: String) -> Error {
        self.reported.call_once(|| (self.on_damage)(&detail));
        Error::CacheDamaged {
            file: self.file.to_string(),
            detail,
        }
    }

    fn len(&self) -> u64 {
        self.rows.table().rows()
    }

    fn row(&self, n: u64) -> Result<([u8; 32], Location)> {
        let (id, segment, offset) = self
            .rows
            .table()
            .row(n)
            .and_then(decode_location)
            .map_err(|e| self.damaged(e))?;
        Ok((id, Location { segment, offset }))
    }

    /// One fanout bucket's rows, checked once (a block or two), then a
    /// binary search over their ids in place.
    fn find(&self, id: &[u8; 32]) -> Result<Option<Location>> {
        let rows = bucket_rows_mapped(&self.rows.table(), &self.fanout.table(), self.bits, id, ROW)
            .map_err(|e| self.damaged(e))?;
        let i = lower_bound_in_bucket(rows, ROW as usize, id);
        match rows.get(i * ROW as usize..(i + 1) * ROW as usize) {
            Some(row) if row.get(..32) == Some(&id[..]) => {
                let (_, segment, offset) = decode_location(row).map_err(|e| self.damaged(e))?;
                Ok(Some(Location { segment, offset }))
            }
            _ => Ok(None),
        }
    }
}

struct OwnedBase {
    entries: Vec<Entry>,
    directory: Vec<u32>,
    bits: u32,
}

impl OwnedBase {
    fn new(entries: Vec<Entry>) -> OwnedBase {
        let bits = directory_bits_for(entries.len());
        let directory = build_directory(&entries, bits);
        OwnedBase {
            entries,
            directory,
            bits,
        }
    }

    fn find(&self, id: &[u8; 32]) -> Option<Location> {
        let bucket = bucket_of(id, self.bits);
        let lo = self.directory[bucket] as usize;
        let hi = self.directory[bucket + 1] as usize;
        let slice = &self.entries[lo..hi];
        let i = slice.binary_search_by(|e| e.id.cmp(id)).ok()?;
        let e = &slice[i];
        Some(Location {
            segment: e.segment,
            offset: e.offset,
        })
    }
}

enum Base {
    Owned(OwnedBase),
    Mapped(MappedBase),
}

impl Base {
    fn find(&self, id: &[u8; 32]) -> Result<Option<Location>> {
        match self {
            Base::Owned(b) => Ok(b.find(id)),
            Base::Mapped(m) => m.find(id),
        }
    }

    /// Every entry, by id.
    fn iter(&self) -> BaseRows<'_> {
        match self {
            Base::Owned(b) => Box::new(b.entries.iter().map(|e| {
                Ok((
                    e.id,
                    Location {
                        segment: e.segment,
                        offset: e.offset,
                    },
                ))
            })),
            Base::Mapped(m) => Box::new((0..m.len()).map(|n| {
                m.rows.read_ahead_row(n);
                m.row(n)
            })),
        }
    }
}

/// The id → location map. Not thread-safe by itself: the store wraps it in a lock.
pub struct Index {
    base: Arc<Base>,
    frozen: Option<Arc<Changes>>,
    changes: Changes,
    len: usize,
}

impl Default for Index {
    fn default() -> Self {
        Self::owned(Vec::new())
    }
}

/// The index as it stood when a generation was begun: its base and the
/// changes frozen over it, shared with the generation's writer.
pub struct IndexView {
    base: Arc<Base>,
    frozen: Arc<Changes>,
    len: usize,
}

impl IndexView {
    /// Savesets in the view.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the view is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every (id, location) of the view, by id.
    pub fn iter(&self) -> impl Iterator<Item = Result<(SavesetId, Location)>> + '_ {
        merged(&self.base, sorted_changes([&*self.frozen]))
    }
}

impl Index {
    /// Build from (id, location) pairs. When an id appears twice, the first
    /// pair wins; the number of dropped duplicates is returned beside the index.
    pub fn build(pairs: Vec<(SavesetId, Location)>) -> (Index, usize) {
        let n = pairs.len();
        let mut entries: Vec<Entry> = pairs
            .into_iter()
            .map(|(id, loc)| Entry {
                id: id.0,
                segment: loc.segment,
                offset: loc.offset,
            })
            .collect();
        // Stable sort keeps "first wins" for duplicates.
        entries.sort_by_key(|e| e.id);
        entries.dedup_by(|b, a| a.id == b.id);
        let dropped = n - entries.len();
        entries.shrink_to_fit();
        (Self::owned(entries), dropped)
    }

    fn owned(entries: Vec<Entry>) -> Index {
        Index {
            len: entries.len(),
            base: Arc::new(Base::Owned(OwnedBase::new(entries))),
            frozen: None,
            changes: Changes::default(),
        }
    }

    /// An index whose base is a mapped checkpoint table.
    pub fn mapped(base: MappedBase) -> Index {
        Index {
            len: base.len() as usize,
            base: Arc::new(Base::Mapped(base)),
            frozen: None,
            changes: Changes::default(),
        }
    }

    /// Number of savesets indexed.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when the base is a mapped checkpoint table.
    pub fn is_mapped(&self) -> bool {
        matches!(*self.base, Base::Mapped(_))
    }

    /// Entries held in memory over the base (changes, frozen or not).
    pub fn changed(&self) -> usize {
        self.changes.len() + self.frozen.as_ref().map_or(0, |f| f.len())
    }

    /// Where `id` is, below the current changes.
    fn below(&self, id: &[u8; 32]) -> Result<Option<Location>> {
        if let Some(v) = self.frozen.as_ref().and_then(|f| f.get(id)) {
            return Ok(*v);
        }
        self.base.find(id)
    }

    /// Where `id` is stored, if it is. Fails only when a mapped block is
    /// damaged.
    pub fn get(&self, id: &SavesetId) -> Result<Option<Location>> {
        match self.changes.get(&id.0) {
            Some(v) => Ok(*v),
            None => self.below(&id.0),
        }
    }

    /// True when `id` is indexed.
    pub fn contains(&self, id: &SavesetId) -> Result<bool> {
        Ok(self.get(id)?.is_some())
    }

    /// Add or move `id`. Returns the previous location, if any. Never
    /// fails: a lookup on a damaged mapped block counts as absent (callers
    /// looked the id up just before, through the same block).
    pub fn insert(&mut self, id: SavesetId, loc: Location) -> Option<Location> {
        let prev = self.get(&id).ok().flatten();
        self.changes.insert(id.0, Some(loc));
        if prev.is_none() {
            self.len += 1;
        }
        self.merge_if_large();
        prev
    }

    /// Forget `id`. Returns where it was.
    pub fn remove(&mut self, id: &SavesetId) -> Result<Option<Location>> {
        let Some(prev) = self.get(id)? else {
            return Ok(None);
        };
        if self.below(&id.0)?.is_some() {
            self.changes.insert(id.0, None);
        } else {
            self.changes.remove(&id.0);
        }
        self.len -= 1;
        Ok(Some(prev))
    }

    /// Point `id` at `new` if it is at `old` now (a compaction's switch);
    /// false when it moved or died meanwhile. A lookup that fails on a
    /// damaged mapped block counts as at `old`: the id was read there
    /// when the compaction chose it, and a death since would have failed
    /// on the same block.
    pub fn move_if_at(&mut self, id: SavesetId, old: Location, new: Location) -> bool {
        match self.get(&id) {
            Ok(Some(at)) if at == old => {}
            Err(_) => {}
            Ok(_) => return false,
        }
        self.changes.insert(id.0, Some(new));
        self.merge_if_large();
        true
    }

    /// Every (id, location), by id.
    pub fn iter(&self) -> impl Iterator<Item = Result<(SavesetId, Location)>> + '_ {
        let layers = [self.frozen.as_deref(), Some(&self.changes)];
        merged(&self.base, sorted_changes(layers.into_iter().flatten()))
    }

    /// Begin a generation: the changes so far are frozen (still read by
    /// lookups, beneath new changes) and shared with the returned view,
    /// which is the index as it stands now.
    pub fn freeze(&mut self) -> IndexView {
        let changes = std::mem::take(&mut self.changes);
        let frozen = match self.frozen.take() {
            None => changes,
            Some(older) => {
                let mut all = (*older).clone();
                all.extend(changes);
                all
            }
        };
        let frozen = Arc::new(frozen);
        self.frozen = Some(frozen.clone());
        IndexView {
            base: self.base.clone(),
            frozen,
            len: self.len,
        }
    }

    /// The generation written from `view` is installed: its table becomes
    /// the base, and the frozen changes it holds are dropped. Returns false
    /// (and changes nothing) when the index moved on from `view` by another
    /// way (a merge or a newer freeze): it is then complete without it.
    pub fn install(&mut self, view: &IndexView, base: MappedBase) -> bool {
        let same_frozen = self
            .frozen
            .as_ref()
            .is_some_and(|f| Arc::ptr_eq(f, &view.frozen));
        if !same_frozen || !Arc::ptr_eq(&self.base, &view.base) || base.len() as usize != view.len {
            return false;
        }
        self.base = Arc::new(Base::Mapped(base));
        self.frozen = None;
        true
    }

    /// Fold the changes into an owned base once they are large. A mapped
    /// base waits for the next generation instead.
    fn merge_if_large(&mut self) {
        let Base::Owned(base) = &*self.base else {
            return;
        };
        if self.changes.len() <= MIN_CHANGES.max(base.entries.len() / 16) {
            return;
        }
        let mut entries: Vec<Entry> = Vec::with_capacity(self.len);
        entries.extend(self.iter().filter_map(|r| r.ok()).map(|(id, loc)| Entry {
            id: id.0,
            segment: loc.segment,
            offset: loc.offset,
        }));
        *self = Self::owned(entries);
    }

    /// A blake3 digest of every entry (id, segment, offset) in id order:
    /// equal for two indexes that map the same ids to the same places,
    /// however they were built. Returns the sorted entries too, for naming
    /// a difference.
    pub fn digest(&self) -> Result<IndexDigest> {
        let entries = self.iter().collect::<Result<Vec<_>>>()?;
        let mut h = blake3::Hasher::new();
        for (id, loc) in &entries {
            h.update(&id.0);
            h.update(&loc.segment.to_le_bytes());
            h.update(&loc.offset.to_le_bytes());
        }
        Ok((*h.finalize().as_bytes(), entries))
    }

    /// Bytes of heap this index holds (owned entries, directory or fanout,
    /// hash map slots). A mapped table is not heap.
    pub fn memory_bytes(&self) -> usize {
        let base = match &*self.base {
            Base::Owned(b) => {
                b.entries.capacity() * std::mem::size_of::<Entry>() + b.directory.capacity() * 4
            }
            // The rows and the fanout are mapped; what blocks were
            // checked is a bit a block.
            Base::Mapped(m) => {
                (m.rows.table().data_len() + m.fanout.table().data_len()) as usize / 4096 / 8
            }
        };
        base + map_bytes(&self.changes) + self.frozen.as_deref().map_or(0, map_bytes)
    }
}

/// The value of a lookup or change of an index with an owned base (the
/// part index, a full replay's): only mapped blocks fail, so it never does.
pub(crate) fn owned<T: Default>(r: Result<T>) -> T {
    r.unwrap_or_default()
}

fn map_bytes(m: &Changes) -> usize {
    // hashbrown keeps one control byte a slot and fills at most 7/8 of its slots.
    let slot = std::mem::size_of::<([u8; 32], Option<Location>)>() + 1;
    m.capacity().div_ceil(7) * 8 * slot
}

/// The union of change layers, later ones winning, sorted by id.
fn sorted_changes<'a>(
    layers: impl IntoIterator<Item = &'a Changes>,
) -> Vec<([u8; 32], Option<Location>)> {
    let mut all: HashMap<[u8; 32], Option<Location>, IdHash> = HashMap::default();
    for layer in layers {
        all.extend(layer.iter().map(|(k, v)| (*k, *v)));
    }
    let mut v: Vec<_> = all.into_iter().collect();
    v.sort_unstable_by_key(|(id, _)| *id);
    v
}

/// A base's entries with sorted changes over them, by id.
fn merged(
    base: &Base,
    changes: Vec<([u8; 32], Option<Location>)>,
) -> impl Iterator<Item = Result<(SavesetId, Location)>> + '_ {
    Merged {
        base: base.iter().peekable(),
        changes: changes.into_iter().peekable(),
    }
}

struct Merged<'a, C: Iterator<Item = ([u8; 32], Option<Location>)>> {
    base: Peekable<BaseRows<'a>>,
    changes: Peekable<C>,
}

impl<C: Iterator<Item = ([u8; 32], Option<Location>)>> Iterator for Merged<'_, C> {
    type Item = Result<(SavesetId, Location)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let order = match (self.base.peek(), self.changes.peek()) {
                // An error passes through as the next item.
                (Some(Err(_)), _) => Ordering::Less,
                (Some(Ok((b, _))), Some((c, _))) => b.cmp(c),
                (Some(Ok(_)), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => return None,
            };
            if order == Ordering::Equal {
                self.base.next();
            }
            if order == Ordering::Less {
                return self
                    .base
                    .next()
                    .map(|r| r.map(|(id, loc)| (SavesetId(id), loc)));
            }
            if let Some((id, Some(loc))) = self.changes.next() {
                return Some(Ok((SavesetId(id), loc)));
            }
        }
    }
}

fn directory_bits_for(n: usize) -> u32 {
    // About four entries a bucket.
    let bits = (n.max(1) as u64).ilog2().saturating_sub(2);
    bits.min(MAX_DIRECTORY_BITS)
}

fn bucket_of(id: &[u8; 32], bits: u32) -> usize {
    if bits == 0 {
        return 0;
    }
    (SavesetId(*id).prefix_u64() >> (64 - bits)) as usize
}

fn build_directory(base: &[Entry], bits: u32) -> Vec<u32> {
    let buckets = 1usize << bits;
    let mut dir = Vec::with_capacity(buckets + 1);
    let mut i = 0usize;
    for b in 0..buckets {
        while i < base.len() && bucket_of(&base[i].id, bits) < b {
            i += 1;
        }
        dir.push(i as u32);
    }
    dir.push(base.len() as u32);
    dir
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> SavesetId {
        SavesetId::of(&n.to_le_bytes())
    }
    fn loc(n: u64) -> Location {
        Location {
            segment: (n % 7) as u32,
            offset: n as u32,
        }
    }

    #[test]
    fn agrees_with_a_hash_map_through_merges() {
        let mut model = HashMap::new();
        let (mut index, _) = Index::build((0..1000).map(|n| (id(n), loc(n))).collect());
        for n in 0..1000 {
            model.insert(id(n), loc(n));
        }
        for n in 500..30_000u64 {
            index.insert(id(n), loc(n + 1));
            model.insert(id(n), loc(n + 1));
            if n % 3 == 0 {
                assert_eq!(index.remove(&id(n / 2)).unwrap(), model.remove(&id(n / 2)));
            }
            if n % 7001 == 0 {
                let _view = index.freeze();
            }
        }
        assert_eq!(index.len(), model.len());
        for n in 0..31_000u64 {
            assert_eq!(
                index.get(&id(n)).unwrap(),
                model.get(&id(n)).copied(),
                "id {n}"
            );
        }
        let listed: Vec<_> = index.iter().map(|r| r.unwrap()).collect();
        assert_eq!(listed.len(), model.len());
        assert!(listed.windows(2).all(|w| w[0].0.0 < w[1].0.0));
    }

    #[test]
    fn build_keeps_the_first_of_duplicates() {
        let pairs = vec![(id(1), loc(1)), (id(2), loc(2)), (id(1), loc(9))];
        let (index, dropped) = Index::build(pairs);
        assert_eq!(dropped, 1);
        assert_eq!(index.get(&id(1)).unwrap(), Some(loc(1)));
    }

    #[test]
    fn a_view_keeps_the_state_it_was_frozen_at() {
        let (mut index, _) = Index::build((0..100).map(|n| (id(n), loc(n))).collect());
        index.insert(id(100), loc(100));
        index.remove(&id(3)).unwrap();
        let view = index.freeze();
        index.insert(id(101), loc(101));
        index.remove(&id(4)).unwrap();
        index.insert(id(5), loc(500));
        let seen: HashMap<SavesetId, Location> = view.iter().map(|r| r.unwrap()).collect();
        assert_eq!(seen.len(), 100);
        assert!(!seen.contains_key(&id(3)) && !seen.contains_key(&id(101)));
        assert_eq!((seen[&id(4)], seen[&id(5)]), (loc(4), loc(5)));
        assert_eq!(index.len(), 100);
        assert_eq!(index.get(&id(5)).unwrap(), Some(loc(500)));
        assert_eq!(index.get(&id(4)).unwrap(), None);
    }
}
