//! The in-memory map from saveset id to the record's location.
//!
//! Owns memory only: it is rebuilt at open from segment footers and scans and
//! never touches a file. Layout, chosen to stay under 48 bytes a saveset:
//!
//! * `base`: a vector of 40-byte entries (32-byte id, segment u32, offset
//!   u32) sorted by id, with a bucket directory over the ids' top bits so a
//!   lookup is one directory read and a binary search over a handful of
//!   entries. Ids are uniform hashes, so buckets stay even.
//! * `recent`: a hash map for ids added since the last merge, folded into
//!   `base` once it holds more than 1/16 of `base` (or a small minimum).
//!
//! Steady state: 40 bytes an entry in `base`, at most ~1/16 more for
//! `recent` (~45 bytes a slot), and under one byte a saveset of directory:
//! about 44 bytes a saveset. `memory_bytes` estimates it from capacities;
//! `tests/memory.rs` and `vaultstore bench` measure the heap it holds with a
//! counting allocator.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

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

/// Marks an entry of `base` whose saveset was removed; dropped at the next merge.
const REMOVED: u32 = u32::MAX;
const MIN_RECENT: usize = 4096;
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

/// The id → location map. Not thread-safe by itself: the store wraps it in a lock.
pub struct Index {
    base: Vec<Entry>,
    directory: Vec<u32>,
    directory_bits: u32,
    removed_in_base: usize,
    recent: HashMap<[u8; 32], Location, BuildHasherDefault<IdHasher>>,
}

impl Default for Index {
    fn default() -> Self {
        Self::from_entries(Vec::new())
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
        (Self::from_entries(entries), dropped)
    }

    fn from_entries(base: Vec<Entry>) -> Index {
        let bits = directory_bits_for(base.len());
        let directory = build_directory(&base, bits);
        Index {
            base,
            directory,
            directory_bits: bits,
            removed_in_base: 0,
            recent: HashMap::default(),
        }
    }

    /// Number of savesets indexed.
    pub fn len(&self) -> usize {
        self.base.len() - self.removed_in_base + self.recent.len()
    }

    /// True when nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn base_position(&self, id: &[u8; 32]) -> Option<usize> {
        let bucket = bucket_of(id, self.directory_bits);
        let lo = self.directory[bucket] as usize;
        let hi = self.directory[bucket + 1] as usize;
        let slice = &self.base[lo..hi];
        slice
            .binary_search_by(|e| e.id.cmp(id))
            .ok()
            .map(|i| lo + i)
    }

    /// Where `id` is stored, if it is.
    pub fn get(&self, id: &SavesetId) -> Option<Location> {
        if let Some(i) = self.base_position(&id.0) {
            let e = &self.base[i];
            if e.segment == REMOVED {
                return None;
            }
            return Some(Location {
                segment: e.segment,
                offset: e.offset,
            });
        }
        self.recent.get(&id.0).copied()
    }

    /// True when `id` is indexed.
    pub fn contains(&self, id: &SavesetId) -> bool {
        self.get(id).is_some()
    }

    /// Add or move `id`. Returns the previous location, if any.
    pub fn insert(&mut self, id: SavesetId, loc: Location) -> Option<Location> {
        if let Some(i) = self.base_position(&id.0) {
            let e = &mut self.base[i];
            let prev = (e.segment != REMOVED).then_some(Location {
                segment: e.segment,
                offset: e.offset,
            });
            if prev.is_none() {
                self.removed_in_base -= 1;
            }
            e.segment = loc.segment;
            e.offset = loc.offset;
            return prev;
        }
        let prev = self.recent.insert(id.0, loc);
        if self.recent.len() > MIN_RECENT.max(self.base.len() / 16) {
            self.merge();
        }
        prev
    }

    /// Forget `id`. Returns where it was.
    pub fn remove(&mut self, id: &SavesetId) -> Option<Location> {
        if let Some(i) = self.base_position(&id.0) {
            let e = &mut self.base[i];
            if e.segment == REMOVED {
                return None;
            }
            let prev = Location {
                segment: e.segment,
                offset: e.offset,
            };
            e.segment = REMOVED;
            self.removed_in_base += 1;
            return Some(prev);
        }
        self.recent.remove(&id.0)
    }

    /// Every (id, location), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (SavesetId, Location)> + '_ {
        let base = self.base.iter().filter(|e| e.segment != REMOVED).map(|e| {
            (
                SavesetId(e.id),
                Location {
                    segment: e.segment,
                    offset: e.offset,
                },
            )
        });
        base.chain(self.recent.iter().map(|(k, v)| (SavesetId(*k), *v)))
    }

    /// Fold `recent` into `base`, dropping removed entries.
    fn merge(&mut self) {
        let mut add: Vec<Entry> = self
            .recent
            .drain()
            .map(|(id, loc)| Entry {
                id,
                segment: loc.segment,
                offset: loc.offset,
            })
            .collect();
        add.sort_unstable_by_key(|e| e.id);
        let old = std::mem::take(&mut self.base);
        let mut merged = Vec::with_capacity(old.len() - self.removed_in_base + add.len());
        let mut a = old.into_iter().filter(|e| e.segment != REMOVED).peekable();
        let mut b = add.into_iter().peekable();
        loop {
            let take_a = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) => x.id < y.id,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let next = if take_a { a.next() } else { b.next() };
            merged.extend(next);
        }
        self.recent = HashMap::default();
        *self = Self::from_entries(merged);
    }

    /// A blake3 digest of every entry (id, segment, offset) in id order:
    /// equal for two indexes that map the same ids to the same places,
    /// however they were built. Returns the sorted entries too, for naming
    /// a difference.
    pub fn digest(&self) -> ([u8; 32], Vec<(SavesetId, Location)>) {
        let mut entries: Vec<(SavesetId, Location)> = self.iter().collect();
        entries.sort_unstable_by_key(|(id, _)| id.0);
        let mut h = blake3::Hasher::new();
        for (id, loc) in &entries {
            h.update(&id.0);
            h.update(&loc.segment.to_le_bytes());
            h.update(&loc.offset.to_le_bytes());
        }
        (*h.finalize().as_bytes(), entries)
    }

    /// Bytes of heap this index holds (entries, directory, hash map slots).
    pub fn memory_bytes(&self) -> usize {
        // hashbrown keeps one control byte a slot and fills at most 7/8 of its slots.
        let slot = std::mem::size_of::<([u8; 32], Location)>() + 1;
        let slots = self.recent.capacity().div_ceil(7) * 8;
        self.base.capacity() * std::mem::size_of::<Entry>()
            + self.directory.capacity() * 4
            + slots * slot
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
                assert_eq!(index.remove(&id(n / 2)), model.remove(&id(n / 2)));
            }
        }
        assert_eq!(index.len(), model.len());
        for n in 0..31_000u64 {
            assert_eq!(index.get(&id(n)), model.get(&id(n)).copied(), "id {n}");
        }
        assert_eq!(index.iter().count(), model.len());
    }

    #[test]
    fn build_keeps_the_first_of_duplicates() {
        let pairs = vec![(id(1), loc(1)), (id(2), loc(2)), (id(1), loc(9))];
        let (index, dropped) = Index::build(pairs);
        assert_eq!(dropped, 1);
        assert_eq!(index.get(&id(1)), Some(loc(1)));
    }
}
