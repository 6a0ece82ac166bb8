//! Sealed checkpoint files (format-spec/encryption.md, "Side files: the
//! sync caches"): an encrypted store's checkpoints carry each block of
//! table data sealed, with its tag where a file in the clear has a crc32,
//! and a table list that authenticates the directory. Owns opening a
//! sealed file's blocks into memory the first time a row in them is read,
//! and the bytes a checkpoint's tables are read from ([`CheckpointFile`]).
//! Bytes only: the cipher is `crypto`'s, behind [`BlockSealer`].

use std::marker::PhantomData;
use std::sync::Arc;

use parking_lot::Mutex;

use super::checkpoint::{BLOCK_BYTES, BlockChecks, Layout, Table, TableBytes, TableEntry};
use crate::io::{MappedFile, PageAdvice};

/// Bytes of a sealed block's tag.
pub const TAG_BYTES: usize = 16;
/// The id of a sealed file's last table: the table list.
pub const TABLE_LIST: u32 = u32::MAX;
/// Bytes of one table's line in the table list.
const LIST_LINE_BYTES: usize = 24;

/// A table's data: bytes that live for `'a`, of which only ranges whose
/// blocks are checked are ever borrowed. A sealed file's plaintext is
/// written block by block while others are read, so no borrow may span a
/// block not yet opened; bytes in the clear never change.
#[derive(Clone, Copy)]
pub(crate) struct TableData<'a> {
    ptr: *const u8,
    len: usize,
    _bytes: PhantomData<&'a [u8]>,
}

// SAFETY: a `TableData` is a view of bytes that live for `'a` and are
// only read through it (see `get`), as a `&'a [u8]` would be.
unsafe impl Send for TableData<'_> {}
// SAFETY: as above.
unsafe impl Sync for TableData<'_> {}

impl<'a> TableData<'a> {
    pub(crate) fn of(bytes: &'a [u8]) -> TableData<'a> {
        TableData {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
            _bytes: PhantomData,
        }
    }

    /// # Safety
    /// `ptr..ptr + len` must stay allocated for `'a`, and bytes of it must
    /// not be written while a range returned by `get` covers them.
    pub(crate) unsafe fn raw(ptr: *const u8, len: usize) -> TableData<'a> {
        TableData {
            ptr,
            len,
            _bytes: PhantomData,
        }
    }

    /// Bytes `start..end`. Only for ranges whose blocks are checked: those
    /// are never written again.
    pub(crate) fn get(&self, start: usize, end: usize) -> Option<&'a [u8]> {
        if start > end || end > self.len {
            return None;
        }
        // SAFETY: in bounds of bytes alive for `'a` (`of`, `raw`); the
        // caller checked every block of the range, and a checked block is
        // never written again.
        Some(unsafe { std::slice::from_raw_parts(self.ptr.add(start), end - start) })
    }
}

/// Seals and opens the blocks of one checkpoint file (a key of that file
/// alone; each block's place is its nonce).
pub trait BlockSealer: Send + Sync {
    /// Seal block `block` of table `table` in place; returns its tag.
    fn seal(&self, table: u32, block: u64, data: &mut [u8]) -> Result<[u8; TAG_BYTES], String>;
    /// Open a block sealed by [`BlockSealer::seal`] in place; false when it
    /// does not authenticate at that place.
    fn open(&self, table: u32, block: u64, data: &mut [u8], tag: &[u8; TAG_BYTES]) -> bool;
}

/// The table list of a sealed file: for each table before it, its id, row
/// size, rows and data length, so the (unsealed) directory cannot drop,
/// shorten or reshape a table unnoticed.
pub fn table_list(tables: &[TableEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(tables.len() * LIST_LINE_BYTES);
    for t in tables.iter().filter(|t| t.id != TABLE_LIST) {
        out.extend_from_slice(&t.id.to_le_bytes());
        out.extend_from_slice(&t.row_bytes.to_le_bytes());
        out.extend_from_slice(&t.rows.to_le_bytes());
        out.extend_from_slice(&t.data_len.to_le_bytes());
    }
    out
}

/// A sealed file: its bytes as stored, and their plaintext in an anonymous
/// mapping of the same length, at the same offsets. A block is opened into
/// it the first time a row in it is read; pages never read take no memory,
/// and pages read stay resident until the file is dropped.
pub struct SealedFile {
    file: MappedFile,
    /// Owns the plaintext mapping (written through `plain`, never borrowed
    /// whole: tables borrow only blocks already opened).
    _mapping: memmap2::MmapMut,
    plain: *mut u8,
    sealer: Arc<dyn BlockSealer>,
    /// Held while a block is opened, so two readers never write one block.
    opening: Mutex<()>,
}

// SAFETY: the plaintext is written only under `opening`, into blocks not
// yet marked opened, and read only in blocks marked opened (Release/Acquire
// on the mark): the raw pointer is shared as the mapping it points into.
unsafe impl Send for SealedFile {}
// SAFETY: as above.
unsafe impl Sync for SealedFile {}

impl SealedFile {
    /// A sealed file whose frame [`Layout::parse`] accepted as `layout`:
    /// its table list is opened and must match the directory.
    pub fn new(
        file: MappedFile,
        layout: &Layout,
        sealer: Arc<dyn BlockSealer>,
    ) -> Result<SealedFile, String> {
        if layout.header.salt.is_none() {
            return Err("a checkpoint in the clear where a sealed one belongs".into());
        }
        let mut mapping = memmap2::MmapMut::map_anon(file.len().max(1))
            .map_err(|e| format!("no memory for the plaintext: {e}"))?;
        let plain = mapping.as_mut_ptr();
        let sealed = SealedFile {
            file,
            _mapping: mapping,
            plain,
            sealer,
            opening: Mutex::new(()),
        };
        sealed.check_table_list(layout)?;
        Ok(sealed)
    }

    fn check_table_list(&self, layout: &Layout) -> Result<(), String> {
        let entry = layout
            .entry(TABLE_LIST)
            .ok_or("no table list (a sealed file always ends with one)")?;
        let checks = BlockChecks::for_table(entry);
        let table = Table::sealed(self, entry, &checks);
        let listed = table.range(0, table.data_len())?;
        if listed != table_list(&layout.tables) {
            return Err("the table list does not match the directory".into());
        }
        Ok(())
    }

    /// The file's bytes as stored (the frame is in the clear).
    pub fn frame(&self) -> &[u8] {
        &self.file
    }

    /// Where `len` bytes of plaintext at file offset `offset` live (an
    /// empty range past the end).
    pub(crate) fn plaintext(&self, offset: u64, len: u64) -> (*const u8, usize) {
        let file_len = self.file.len() as u64;
        let start = offset.min(file_len);
        let len = len.min(file_len - start);
        // SAFETY: `start` is within the mapping (as long as the file).
        (unsafe { self.plain.add(start as usize) }, len as usize)
    }

    /// Open block `b` of table `entry` into the plaintext and mark it
    /// opened in `checks`; `tags` is the table's tag array.
    pub(crate) fn open_block(
        &self,
        entry: &TableEntry,
        b: u64,
        tags: &[u8],
        checks: &BlockChecks,
    ) -> Result<(), String> {
        let _opening = self.opening.lock();
        if checks.is_checked(b) {
            return Ok(());
        }
        let block = u64::from(BLOCK_BYTES);
        let start = entry.data_offset + b * block;
        let end = (start + block).min(entry.data_offset + entry.data_len);
        let damaged = || format!("offset {start}: sealed block does not authenticate");
        let tag: [u8; TAG_BYTES] = tags
            .get(b as usize * TAG_BYTES..(b as usize + 1) * TAG_BYTES)
            .and_then(|t| t.try_into().ok())
            .ok_or_else(damaged)?;
        let mut data = self
            .file
            .get(start as usize..end as usize)
            .ok_or_else(damaged)?
            .to_vec();
        if !self.sealer.open(entry.id, b, &mut data, &tag) {
            return Err(damaged());
        }
        // SAFETY: `start..end` lies in the file, so in the mapping; no
        // reader borrows it until it is marked below, and no other writer
        // runs (`opening` is held).
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.plain.add(start as usize), data.len())
        };
        checks.set_checked(b);
        Ok(())
    }
}

/// The bytes of one checkpoint file, as its tables are read.
pub enum CheckpointFile {
    /// A store in the clear: the file itself.
    Clear(MappedFile),
    /// An encrypted store: opened block by block.
    Sealed(SealedFile),
}

impl CheckpointFile {
    /// The file's bytes as stored: the frame ([`Layout::parse`]).
    pub fn frame(&self) -> &[u8] {
        match self {
            CheckpointFile::Clear(m) => m,
            CheckpointFile::Sealed(s) => s.frame(),
        }
    }

    fn mapped(&self) -> &MappedFile {
        match self {
            CheckpointFile::Clear(m) => m,
            CheckpointFile::Sealed(s) => &s.file,
        }
    }
}

impl PageAdvice for CheckpointFile {
    fn random(&self, offset: u64, len: u64) {
        self.mapped().random(offset, len);
    }
    fn will_need(&self, offset: u64, len: u64) {
        self.mapped().will_need(offset, len);
    }
}

impl TableBytes for CheckpointFile {
    fn table<'a, 'c>(&'a self, entry: &TableEntry, checks: &'c BlockChecks) -> Table<'a, 'c> {
        match self {
            CheckpointFile::Clear(m) => Table::new(m, entry, checks),
            CheckpointFile::Sealed(s) => Table::sealed(s, entry, checks),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::checkpoint::{CheckpointHeader, CheckpointKind, CheckpointWriter};

    /// A stand-in cipher: XOR with a keystream of the place, and a tag
    /// that sums the plaintext with the place. Not a cipher; enough to
    /// test the framing.
    struct Toy;

    fn stream(table: u32, block: u64, i: usize) -> u8 {
        (table as u8) ^ (block as u8).wrapping_mul(31) ^ (i as u8).wrapping_mul(7) ^ 0x5a
    }

    fn toy_tag(table: u32, block: u64, plain: &[u8]) -> [u8; TAG_BYTES] {
        let mut h = blake3::Hasher::new();
        h.update(&table.to_le_bytes());
        h.update(&block.to_le_bytes());
        h.update(plain);
        let mut tag = [0u8; TAG_BYTES];
        tag.copy_from_slice(&h.finalize().as_bytes()[..TAG_BYTES]);
        tag
    }

    impl BlockSealer for Toy {
        fn seal(&self, table: u32, block: u64, data: &mut [u8]) -> Result<[u8; TAG_BYTES], String> {
            let tag = toy_tag(table, block, data);
            for (i, b) in data.iter_mut().enumerate() {
                *b ^= stream(table, block, i);
            }
            Ok(tag)
        }
        fn open(&self, table: u32, block: u64, data: &mut [u8], tag: &[u8; TAG_BYTES]) -> bool {
            for (i, b) in data.iter_mut().enumerate() {
                *b ^= stream(table, block, i);
            }
            toy_tag(table, block, data) == *tag
        }
    }

    fn sealed_sample() -> Vec<u8> {
        let header = CheckpointHeader {
            kind: CheckpointKind::Files,
            store_id: [3; 16],
            sequence: 9,
            created_ms: 1,
            salt: Some([8; 12]),
        };
        let mut w = CheckpointWriter::sealed(Vec::new(), &header, Arc::new(Toy)).unwrap();
        w.begin_table(1, 12).unwrap();
        for n in 0..1000u32 {
            let mut row = [0xeeu8; 12];
            row[..4].copy_from_slice(&n.to_le_bytes());
            w.row(&row).unwrap();
        }
        w.begin_table(2, 0).unwrap();
        w.data(b"owner names and item names").unwrap();
        w.finish().unwrap().0
    }

    fn open(bytes: &[u8]) -> Result<(SealedFile, Layout), String> {
        let layout = Layout::parse(bytes)?;
        let file = SealedFile::new(MappedFile::Read(bytes.to_vec()), &layout, Arc::new(Toy))?;
        Ok((file, layout))
    }

    #[test]
    fn sealed_rows_read_back_and_nothing_is_in_the_clear() {
        let bytes = sealed_sample();
        assert!(!bytes.windows(4).any(|w| w == b"name"));
        let (file, layout) = open(&bytes).unwrap();
        let file = CheckpointFile::Sealed(file);
        let e = layout.entry(1).unwrap();
        assert_eq!(e.sum_bytes(), 16);
        let checks = BlockChecks::for_table(e);
        let t = file.table(e, &checks);
        // Row 341 crosses the first block's end (4092..4104).
        for n in [0, 341, 999] {
            assert_eq!(&t.row(n).unwrap()[..4], &(n as u32).to_le_bytes());
        }
        let e = layout.entry(2).unwrap();
        let checks = BlockChecks::for_table(e);
        assert_eq!(file.table(e, &checks).range(6, 5).unwrap(), b"names");
        // Read as a file in the clear, a sealed table is refused.
        let checks = BlockChecks::for_table(layout.entry(1).unwrap());
        let clear = Table::new(&bytes, layout.entry(1).unwrap(), &checks);
        assert!(clear.row(0).unwrap_err().contains("sealed"));
    }

    #[test]
    fn a_flipped_block_byte_fails_that_block_only() {
        let mut bytes = sealed_sample();
        let e = *Layout::parse(&bytes).unwrap().entry(1).unwrap();
        bytes[(e.data_offset + 500 * 12) as usize] ^= 1;
        let (file, layout) = open(&bytes).unwrap();
        let checks = BlockChecks::for_table(layout.entry(1).unwrap());
        let t = Table::sealed(&file, layout.entry(1).unwrap(), &checks);
        assert!(t.row(0).is_ok());
        let err = t.row(500).unwrap_err();
        assert!(err.contains("does not authenticate"), "{err}");
        assert!(t.check_all().is_err());
    }

    #[test]
    fn a_directory_that_shortens_a_table_is_refused() {
        let bytes = sealed_sample();
        let layout = Layout::parse(&bytes).unwrap();
        // Table 1 cut to its first block, directory crc fixed up: every
        // block left authenticates, the table list does not.
        let dir_at = u64::from_le_bytes(bytes[bytes.len() - 32..][..8].try_into().unwrap());
        let mut cut = bytes.clone();
        let row_at = dir_at as usize;
        assert_eq!(layout.tables[0].id, 1);
        cut[row_at + 8..row_at + 16].copy_from_slice(&(4092u64 / 12).to_le_bytes());
        cut[row_at + 24..row_at + 32].copy_from_slice(&(4092u64).to_le_bytes());
        let tags_at = layout.tables[0].crcs_offset as usize;
        let tags_crc = crc32fast::hash(&cut[tags_at..tags_at + 16]);
        cut[row_at + 40..row_at + 44].copy_from_slice(&tags_crc.to_le_bytes());
        let dir_end = bytes.len() - 32;
        let crc = crc32fast::hash(&cut[row_at..dir_end]);
        cut[dir_end + 12..dir_end + 16].copy_from_slice(&crc.to_le_bytes());
        let err = open(&cut).err().unwrap();
        assert!(err.contains("table list"), "{err}");
    }
}
