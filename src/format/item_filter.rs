//! The item filter of a messages checkpoint (format-spec/checkpoint.md,
//! "Kind 2", table 6): for each owner, a split-block Bloom filter of its
//! item names, so a lookup of an item the owner does not have (every new
//! item an archive links) usually reads one 32-byte block, not the ten
//! probes of a binary search of the owner's run.
//!
//! The filter is Parquet's split-block Bloom filter (its salts and its
//! 256-bit blocks of eight 32-bit words), hashed with blake3 so a reader
//! needs no other hash. Bytes only: which owner's blocks are where is the
//! catalog's concern.

/// Bytes of a filter block: eight 32-bit words.
pub const BLOCK_BYTES: usize = 32;

/// Items an owner's filter holds a block for: about 10.7 bits an item,
/// for about 1% false positives (a false positive costs the search the
/// filter saves, nothing more).
pub const ITEMS_PER_BLOCK: u64 = 24;

/// Parquet's salts: word `i` of a block gets bit `(key * SALT[i]) >> 27`.
const SALT: [u32; 8] = [
    0x47b6_137b,
    0x4497_4d91,
    0x8824_ad5b,
    0xa2b7_289d,
    0x7054_95c7,
    0x2df1_424b,
    0x9efc_4947,
    0x5c6b_fb31,
];

/// Filter blocks of an owner with `items` items (none for none).
pub fn blocks_for(items: u64) -> u64 {
    items.div_ceil(ITEMS_PER_BLOCK)
}

/// Where a name falls in a filter of `blocks` blocks: its block, and the
/// eight words' bits that must all be set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Block number within the owner's filter.
    pub block: u64,
    masks: [u32; 8],
}

impl Probe {
    /// The probe of `name`: h = blake3(name); the block is
    /// `(u64le(h[0..8]) * blocks) >> 64`, the key `u32le(h[8..12])`.
    pub fn of(name: &[u8], blocks: u64) -> Probe {
        let h = blake3::hash(name);
        let (lo, rest) = h
            .as_bytes()
            .split_first_chunk::<8>()
            .unwrap_or((&[0; 8], &[]));
        let key = rest
            .first_chunk::<4>()
            .map_or(0, |k| u32::from_le_bytes(*k));
        let block = ((u128::from(u64::from_le_bytes(*lo)) * u128::from(blocks)) >> 64) as u64;
        let masks = SALT.map(|salt| 1u32 << (key.wrapping_mul(salt) >> 27));
        Probe { block, masks }
    }

    /// Whether `block` (32 bytes) has every bit of this probe: false means
    /// the name is certainly absent.
    pub fn maybe_in(&self, block: &[u8]) -> bool {
        block
            .chunks_exact(4)
            .zip(self.masks)
            .all(|(w, m)| word(w) & m == m)
            && block.len() == BLOCK_BYTES
    }

    fn set_in(&self, block: &mut [u8]) {
        for (w, m) in block.chunks_exact_mut(4).zip(self.masks) {
            let v = word(w) | m;
            w.copy_from_slice(&v.to_le_bytes());
        }
    }
}

fn word(w: &[u8]) -> u32 {
    w.try_into().map_or(0, u32::from_le_bytes)
}

/// One owner's filter being built: its blocks, sized for a known count.
#[derive(Debug, Default)]
pub struct FilterBuilder {
    bytes: Vec<u8>,
    blocks: u64,
}

impl FilterBuilder {
    /// An empty filter for `items` items.
    pub fn new(items: u64) -> FilterBuilder {
        let mut f = FilterBuilder::default();
        f.reset(items);
        f
    }

    /// Empty the filter and size it for `items` items, keeping its memory.
    pub fn reset(&mut self, items: u64) {
        self.blocks = blocks_for(items);
        self.bytes.clear();
        self.bytes.resize(self.blocks as usize * BLOCK_BYTES, 0);
    }

    /// Add an item name.
    pub fn add(&mut self, name: &[u8]) {
        if self.blocks == 0 {
            return;
        }
        let p = Probe::of(name, self.blocks);
        let at = p.block as usize * BLOCK_BYTES;
        if let Some(block) = self.bytes.get_mut(at..at + BLOCK_BYTES) {
            p.set_in(block);
        }
    }

    /// The blocks, in order: the owner's rows of the filter table.
    pub fn blocks(&self) -> impl Iterator<Item = &[u8]> {
        self.bytes.chunks_exact(BLOCK_BYTES)
    }

    /// Whether `name` may have been added (a test of the built filter).
    pub fn maybe_has(&self, name: &[u8]) -> bool {
        if self.blocks == 0 {
            return false;
        }
        let p = Probe::of(name, self.blocks);
        let at = p.block as usize * BLOCK_BYTES;
        self.bytes
            .get(at..at + BLOCK_BYTES)
            .is_some_and(|b| p.maybe_in(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: u64) -> String {
        format!("<{n:010}.{}@mail.example.com>", n.wrapping_mul(0x9e37_79b9))
    }

    #[test]
    fn every_added_name_is_found_and_few_others_are() {
        for items in [1u64, 23, 24, 25, 1000, 100_000] {
            let mut f = FilterBuilder::new(items);
            for n in 0..items {
                f.add(name(n).as_bytes());
            }
            assert_eq!(f.blocks().count() as u64, blocks_for(items));
            assert!((0..items).all(|n| f.maybe_has(name(n).as_bytes())));
            let tries = 20_000u64;
            let false_hits = (0..tries)
                .filter(|n| f.maybe_has(name(items + n).as_bytes()))
                .count();
            // About 1% at 24 items a block; a filter that says yes to
            // everything, or loses its bits, fails here or above.
            assert!(
                (false_hits as f64) < tries as f64 * 0.03,
                "{items} items: {false_hits} of {tries} absent names pass"
            );
        }
    }

    #[test]
    fn an_empty_owner_has_no_block_and_nothing() {
        let f = FilterBuilder::new(0);
        assert_eq!(f.blocks().count(), 0);
        assert!(!f.maybe_has(b"<a@b>"));
    }

    #[test]
    fn the_probe_is_the_specified_one() {
        // format-spec/checkpoint.md, table 6: the vector a reader checks.
        let p = Probe::of(b"<1@example.com>", 42);
        let h = blake3::hash(b"<1@example.com>");
        let h = h.as_bytes();
        let lo = u64::from_le_bytes(h[0..8].try_into().unwrap());
        assert_eq!(p.block, ((lo as u128 * 42) >> 64) as u64);
        let key = u32::from_le_bytes(h[8..12].try_into().unwrap());
        assert_eq!(p.masks[0], 1 << (key.wrapping_mul(0x47b6_137b) >> 27));
        let mut block = [0u8; 32];
        p.set_in(&mut block);
        // The vector of the spec, computed independently from its rules.
        assert_eq!(p.block, 15);
        assert_eq!(
            hex::encode(block),
            "0010000004000000008000000000010040000000002000000001000010000000"
        );
        assert_eq!(block.iter().map(|b| b.count_ones()).sum::<u32>(), 8);
        assert!(p.maybe_in(&block));
        assert!(!p.maybe_in(&[0u8; 32]));
    }
}
