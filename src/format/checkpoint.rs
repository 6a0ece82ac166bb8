//! Checkpoint files of the sync caches (format-spec/checkpoint.md): the
//! container every kind shares. A header naming the kind, the store and the
//! log sequence the file covers; tables of fixed-size rows (or one blob),
//! each cut into blocks with a crc32 per block; a directory of the tables and
//! a trailer at the end.
//!
//! The file is written once, front to back, and read through a memory map:
//! [`Layout::parse`] checks the frame (header, trailer, directory, every
//! table's checksum array) without touching table data, and [`Table`] checks
//! each block the first time a row in it is read, so opening a checkpoint of
//! many gigabytes reads a few kilobytes. An encrypted store's files seal
//! each block instead of summing it (`sealed_checkpoint`). Bytes only: it
//! must not do I/O beyond the `Write` it is handed, nor know what a row
//! means (the kinds' own modules do).

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Reader;
use super::sealed_checkpoint::{
    BlockSealer, SealedFile, TABLE_LIST, TAG_BYTES, TableData, table_list,
};
use crate::io::PageAdvice;

/// First bytes of every checkpoint file.
pub const CHECKPOINT_MAGIC: [u8; 8] = *b"VSSYNC01";
/// Last bytes of every checkpoint file.
pub const TRAILER_MAGIC: [u8; 8] = *b"VSSYNCND";
/// The version this build writes and the only one it reads.
pub const CHECKPOINT_VERSION: u16 = 5;
/// Bytes of table data one checksum covers.
pub const BLOCK_BYTES: u32 = 4096;
/// Header size.
pub const HEADER_BYTES: usize = 64;
/// Trailer size.
pub const TRAILER_BYTES: usize = 32;
/// Directory entry size.
pub const TABLE_ENTRY_BYTES: usize = 48;
/// Most tables one file holds.
pub const MAX_TABLES: u32 = 64;

/// The three kinds, one per sync cache process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckpointKind {
    /// File sync cache: the saveset and part index and the segment table.
    Files = 1,
    /// Message sync cache: the catalog.
    Messages = 2,
    /// Property sync cache: the lifecycle.
    Properties = 3,
}

impl CheckpointKind {
    /// Every kind, in the order a checkpoint writes them.
    pub const ALL: [CheckpointKind; 3] = [
        CheckpointKind::Files,
        CheckpointKind::Messages,
        CheckpointKind::Properties,
    ];

    fn from_u8(b: u8) -> Option<CheckpointKind> {
        Self::ALL.into_iter().find(|k| *k as u8 == b)
    }

    /// The file name prefix (format-spec/checkpoint.md, "Files").
    pub fn name(self) -> &'static str {
        match self {
            CheckpointKind::Files => "files",
            CheckpointKind::Messages => "messages",
            CheckpointKind::Properties => "properties",
        }
    }

    /// The file name of this kind's checkpoint at `sequence`.
    pub fn file_name(self, sequence: u64) -> String {
        format!("{}-{sequence:020}.ckpt", self.name())
    }

    /// Parse a file name back into (kind, sequence).
    pub fn parse_file_name(name: &str) -> Option<(CheckpointKind, u64)> {
        let (prefix, rest) = name.split_once('-')?;
        let kind = Self::ALL.into_iter().find(|k| k.name() == prefix)?;
        let digits = rest.strip_suffix(".ckpt")?;
        if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some((kind, digits.parse().ok()?))
    }
}

/// The header's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointHeader {
    /// Which sync cache.
    pub kind: CheckpointKind,
    /// The store's id, as in the manifest.
    pub store_id: [u8; 16],
    /// Every log record up to this sequence is in the file; none after it.
    pub sequence: u64,
    /// When it was written, Unix ms.
    pub created_ms: u64,
    /// A sealed file's random salt (its blocks are sealed under a key of
    /// this file alone); `None` in the clear.
    pub salt: Option<[u8; 12]>,
}

impl CheckpointHeader {
    /// The header's 64 bytes (a sealed file's key is derived from them).
    pub fn encode(&self) -> [u8; HEADER_BYTES] {
        let mut out = [0u8; HEADER_BYTES];
        out[0..8].copy_from_slice(&CHECKPOINT_MAGIC);
        out[8..10].copy_from_slice(&CHECKPOINT_VERSION.to_le_bytes());
        out[10] = self.kind as u8;
        out[11] = u8::from(self.salt.is_some());
        out[12..16].copy_from_slice(&BLOCK_BYTES.to_le_bytes());
        out[16..32].copy_from_slice(&self.store_id);
        out[32..40].copy_from_slice(&self.sequence.to_le_bytes());
        out[40..48].copy_from_slice(&self.created_ms.to_le_bytes());
        if let Some(salt) = &self.salt {
            out[48..60].copy_from_slice(salt);
        }
        let crc = crc32fast::hash(&out[..60]);
        out[60..64].copy_from_slice(&crc.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Result<CheckpointHeader, String> {
        let head = bytes
            .get(..HEADER_BYTES)
            .ok_or_else(|| format!("file of {} bytes is shorter than a header", bytes.len()))?;
        let mut r = Reader::new(head);
        let short = || "header truncated".to_string();
        if r.array::<8>().ok_or_else(short)? != CHECKPOINT_MAGIC {
            return Err("not a checkpoint file (bad magic)".into());
        }
        let (body, crc) = head.split_at(60);
        let crc = u32::from_le_bytes(crc.try_into().map_err(|_| short())?);
        if crc32fast::hash(body) != crc {
            return Err("header crc mismatch".into());
        }
        let version = r.u16().ok_or_else(short)?;
        if version != CHECKPOINT_VERSION {
            return Err(format!(
                "checkpoint version {version}, this build reads {CHECKPOINT_VERSION}"
            ));
        }
        let kind_byte = r.u8().ok_or_else(short)?;
        let kind = CheckpointKind::from_u8(kind_byte)
            .ok_or_else(|| format!("unknown kind {kind_byte}"))?;
        let sealed = r.u8().ok_or_else(short)?;
        let block = r.u32().ok_or_else(short)?;
        if sealed > 1 || block != BLOCK_BYTES {
            return Err(format!(
                "block size {block} (this build reads {BLOCK_BYTES}) or sealing {sealed} unknown"
            ));
        }
        let store_id = r.array::<16>().ok_or_else(short)?;
        let sequence = r.u64().ok_or_else(short)?;
        let created_ms = r.u64().ok_or_else(short)?;
        let salt = r.array::<12>().ok_or_else(short)?;
        if sealed == 0 && salt != [0; 12] {
            return Err("reserved header bytes set".into());
        }
        Ok(CheckpointHeader {
            kind,
            store_id,
            sequence,
            created_ms,
            salt: (sealed == 1).then_some(salt),
        })
    }
}

/// A table's entry in the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableEntry {
    /// The table's id within its kind.
    pub id: u32,
    /// Bytes a row, or 0 for a blob.
    pub row_bytes: u32,
    /// Rows (a blob: 0).
    pub rows: u64,
    /// Where the data begins.
    pub data_offset: u64,
    /// Bytes of data.
    pub data_len: u64,
    /// Where the block checksums (u32 each, or a sealed file's 16-byte
    /// tags) begin.
    pub crcs_offset: u64,
    /// crc32 of the checksum array.
    pub crcs_crc: u32,
    /// In a sealed file (the header says; not a directory field).
    pub sealed: bool,
}

impl TableEntry {
    /// Blocks of its data.
    pub fn blocks(&self) -> u64 {
        self.data_len.div_ceil(u64::from(BLOCK_BYTES))
    }

    /// Bytes of one block's checksum: a crc32, or a sealed block's tag.
    pub fn sum_bytes(&self) -> u64 {
        if self.sealed { TAG_BYTES as u64 } else { 4 }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.id.to_le_bytes());
        out.extend_from_slice(&self.row_bytes.to_le_bytes());
        out.extend_from_slice(&self.rows.to_le_bytes());
        out.extend_from_slice(&self.data_offset.to_le_bytes());
        out.extend_from_slice(&self.data_len.to_le_bytes());
        out.extend_from_slice(&self.crcs_offset.to_le_bytes());
        out.extend_from_slice(&self.crcs_crc.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
    }

    fn decode(r: &mut Reader<'_>) -> Option<TableEntry> {
        let e = TableEntry {
            id: r.u32()?,
            row_bytes: r.u32()?,
            rows: r.u64()?,
            data_offset: r.u64()?,
            data_len: r.u64()?,
            crcs_offset: r.u64()?,
            crcs_crc: r.u32()?,
            sealed: false,
        };
        (r.u32()? == 0).then_some(e)
    }
}

/// A checked frame: the header and the table directory.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The header.
    pub header: CheckpointHeader,
    /// The tables, in file order.
    pub tables: Vec<TableEntry>,
}

impl Layout {
    /// Check the frame of a whole file: header, trailer, directory, bounds
    /// and every table's checksum array. Table data is not read.
    pub fn parse(bytes: &[u8]) -> Result<Layout, String> {
        let header = CheckpointHeader::decode(bytes)?;
        let len = bytes.len();
        if len < HEADER_BYTES + TRAILER_BYTES {
            return Err(format!("file of {len} bytes is too short for a trailer"));
        }
        let (_, trailer) = bytes.split_at(len - TRAILER_BYTES);
        let mut r = Reader::new(trailer);
        let short = || "trailer truncated".to_string();
        let dir_offset = r.u64().ok_or_else(short)?;
        let count = r.u32().ok_or_else(short)?;
        let dir_crc = r.u32().ok_or_else(short)?;
        let file_len = r.u64().ok_or_else(short)?;
        if r.array::<8>().ok_or_else(short)? != TRAILER_MAGIC {
            return Err("trailer magic missing (file cut short?)".into());
        }
        if file_len != len as u64 {
            return Err(format!("trailer says {file_len} bytes, file has {len}"));
        }
        if count > MAX_TABLES {
            return Err(format!("{count} tables, at most {MAX_TABLES}"));
        }
        let dir_len = count as usize * TABLE_ENTRY_BYTES;
        let dir_end = (len - TRAILER_BYTES) as u64;
        if dir_offset < HEADER_BYTES as u64 || dir_offset + dir_len as u64 != dir_end {
            return Err(format!(
                "directory at {dir_offset} does not end at the trailer"
            ));
        }
        let dir = bytes
            .get(dir_offset as usize..dir_end as usize)
            .ok_or_else(|| format!("directory at {dir_offset} out of bounds"))?;
        if crc32fast::hash(dir) != dir_crc {
            return Err(format!("directory at {dir_offset}: crc mismatch"));
        }
        let mut r = Reader::new(dir);
        let mut tables = Vec::with_capacity(count as usize);
        for n in 0..count {
            let mut e = TableEntry::decode(&mut r)
                .ok_or_else(|| format!("directory entry {n}: reserved bytes set"))?;
            e.sealed = header.salt.is_some();
            check_table(bytes, &e, dir_offset)?;
            tables.push(e);
        }
        Ok(Layout { header, tables })
    }

    /// The directory entry of table `id`.
    pub fn entry(&self, id: u32) -> Option<&TableEntry> {
        self.tables.iter().find(|t| t.id == id)
    }
}

/// A table's bounds, its shape and its checksum array.
fn check_table(bytes: &[u8], e: &TableEntry, dir_offset: u64) -> Result<(), String> {
    let bad = |what: &str| format!("table {} at {}: {what}", e.id, e.data_offset);
    let data_end = e
        .data_offset
        .checked_add(e.data_len)
        .ok_or_else(|| bad("length overflows"))?;
    let crcs_len = e.blocks() * e.sum_bytes();
    let crcs_end = e
        .crcs_offset
        .checked_add(crcs_len)
        .ok_or_else(|| bad("checksums overflow"))?;
    if e.data_offset < HEADER_BYTES as u64 || data_end > e.crcs_offset || crcs_end > dir_offset {
        return Err(bad("out of bounds"));
    }
    let shape_ok = match e.row_bytes {
        0 => e.rows == 0,
        n => e.rows.checked_mul(u64::from(n)) == Some(e.data_len),
    };
    if !shape_ok {
        return Err(bad("rows do not fill the data"));
    }
    let crcs = bytes
        .get(e.crcs_offset as usize..crcs_end as usize)
        .ok_or_else(|| bad("checksums out of bounds"))?;
    if crc32fast::hash(crcs) != e.crcs_crc {
        return Err(bad("block checksums: crc mismatch"));
    }
    Ok(())
}

/// A table of a mapped file: rows or blob ranges, each block checked (or,
/// sealed, opened) the first time it is read.
pub struct Table<'a, 'c> {
    entry: TableEntry,
    data: TableData<'a>,
    crcs: &'a [u8],
    checked: &'c BlockChecks,
    /// The sealed file whose plaintext `data` is, opened block by block.
    opener: Option<&'a SealedFile>,
}

/// Which blocks of a table have been checked (one bit each).
#[derive(Debug, Default)]
pub struct BlockChecks(Vec<AtomicU64>);

impl BlockChecks {
    /// Room for every block of `entry`, none checked.
    pub fn for_table(entry: &TableEntry) -> BlockChecks {
        BlockChecks(
            (0..entry.blocks().div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect(),
        )
    }

    /// True once block `block` is checked (or opened): what was written
    /// before it was marked is visible to whoever sees the mark.
    pub(crate) fn is_checked(&self, block: u64) -> bool {
        self.0
            .get((block / 64) as usize)
            .is_some_and(|w| w.load(Ordering::Acquire) & (1 << (block % 64)) != 0)
    }

    pub(crate) fn set_checked(&self, block: u64) {
        if let Some(w) = self.0.get((block / 64) as usize) {
            w.fetch_or(1 << (block % 64), Ordering::Release);
        }
    }
}

impl<'a, 'c> Table<'a, 'c> {
    /// The table `entry` of `bytes` (a file in the clear that
    /// [`Layout::parse`] accepted).
    pub fn new(bytes: &'a [u8], entry: &TableEntry, checked: &'c BlockChecks) -> Table<'a, 'c> {
        let data_end = (entry.data_offset + entry.data_len) as usize;
        Table {
            entry: *entry,
            data: TableData::of(
                bytes
                    .get(entry.data_offset as usize..data_end)
                    .unwrap_or(&[]),
            ),
            crcs: sums_of(bytes, entry),
            checked,
            opener: None,
        }
    }

    /// The table `entry` of a sealed file, read from its plaintext.
    pub fn sealed(
        file: &'a SealedFile,
        entry: &TableEntry,
        checked: &'c BlockChecks,
    ) -> Table<'a, 'c> {
        let (ptr, len) = file.plaintext(entry.data_offset, entry.data_len);
        Table {
            entry: *entry,
            // SAFETY: the plaintext lives as long as `file`; its blocks are
            // written only by `open_block`, before they are marked checked.
            data: unsafe { TableData::raw(ptr, len) },
            crcs: sums_of(file.frame(), entry),
            checked,
            opener: Some(file),
        }
    }

    /// Rows in the table.
    pub fn rows(&self) -> u64 {
        self.entry.rows
    }

    /// Bytes of data in the table (a blob's length).
    pub fn data_len(&self) -> u64 {
        self.entry.data_len
    }

    /// Row `n`, its blocks checked.
    pub fn row(&self, n: u64) -> Result<&'a [u8], String> {
        let size = u64::from(self.entry.row_bytes);
        if n >= self.entry.rows {
            return Err(format!(
                "table {}: row {n} of {}",
                self.entry.id, self.entry.rows
            ));
        }
        self.range(n * size, size)
    }

    /// `len` bytes at `offset` of the data, their blocks checked.
    pub fn range(&self, offset: u64, len: u64) -> Result<&'a [u8], String> {
        let end = offset
            .checked_add(len)
            .filter(|e| *e <= self.entry.data_len)
            .ok_or_else(|| {
                format!(
                    "table {}: bytes {offset}+{len} past its {} bytes",
                    self.entry.id, self.entry.data_len
                )
            })?;
        if len > 0 {
            let block = u64::from(BLOCK_BYTES);
            for b in offset / block..=(end - 1) / block {
                self.check_block(b)?;
            }
        }
        self.data
            .get(offset as usize, end as usize)
            .ok_or_else(|| format!("table {}: bytes out of bounds", self.entry.id))
    }

    fn check_block(&self, b: u64) -> Result<(), String> {
        if self.checked.is_checked(b) {
            return Ok(());
        }
        match (self.opener, self.entry.sealed) {
            (Some(file), true) => return file.open_block(&self.entry, b, self.crcs, self.checked),
            (None, false) => {}
            _ => return Err(format!("table {}: sealed, and no key given", self.entry.id)),
        }
        let block = u64::from(BLOCK_BYTES);
        let start = (b * block) as usize;
        let end = ((b + 1) * block).min(self.entry.data_len) as usize;
        let want = self
            .crcs
            .get(b as usize * 4..b as usize * 4 + 4)
            .and_then(|s| s.try_into().ok())
            .map(u32::from_le_bytes);
        let got = self.data.get(start, end).map(crc32fast::hash);
        if want.is_none() || want != got {
            return Err(format!(
                "offset {}: block crc mismatch",
                self.entry.data_offset + start as u64
            ));
        }
        self.checked.set_checked(b);
        Ok(())
    }

    /// Check every block (a full verification).
    pub fn check_all(&self) -> Result<(), String> {
        (0..self.entry.blocks()).try_for_each(|b| self.check_block(b))
    }
}

/// The block checksums of table `entry` in a file's bytes.
fn sums_of<'a>(bytes: &'a [u8], entry: &TableEntry) -> &'a [u8] {
    let end = entry.crcs_offset + entry.blocks() * entry.sum_bytes();
    bytes
        .get(entry.crcs_offset as usize..end as usize)
        .unwrap_or(&[])
}

/// Bytes a table is read from: a file in the clear, or a sealed file's
/// plaintext; and where to send advice about its pages.
pub trait TableBytes: PageAdvice + Send + Sync {
    /// Table `entry` of these bytes.
    fn table<'a, 'c>(&'a self, entry: &TableEntry, checks: &'c BlockChecks) -> Table<'a, 'c>;
}

/// Bytes a front-to-back reader asks for ahead of the row it reads.
const READ_AHEAD_BYTES: u64 = 8 << 20;

/// A table that holds a share of its file's bytes (a mapping), for
/// lookups long after open; its blocks are checked as they are first read.
pub struct SharedTable<B> {
    bytes: std::sync::Arc<B>,
    entry: TableEntry,
    checks: BlockChecks,
    /// Where the front-to-back reader's last request ends (data offset).
    ahead: AtomicU64,
}

impl<B: TableBytes> SharedTable<B> {
    /// Table `entry` of `bytes` (a file [`Layout::parse`] accepted).
    pub fn new(bytes: std::sync::Arc<B>, entry: TableEntry) -> SharedTable<B> {
        SharedTable {
            checks: BlockChecks::for_table(&entry),
            bytes,
            entry,
            ahead: AtomicU64::new(0),
        }
    }

    /// The same, for lookups: a page fault in its data reads that page
    /// only (the default window is the device's readahead, megabytes, for
    /// a lookup that needs a few hundred bytes).
    ///
    /// Its block checksums (4 bytes a block) are asked for whole, now:
    /// then a lookup's first read of a block waits for one page, not two.
    pub fn for_lookups(bytes: std::sync::Arc<B>, entry: TableEntry) -> SharedTable<B> {
        bytes.random(entry.data_offset, entry.data_len);
        bytes.will_need(entry.crcs_offset, entry.blocks() * entry.sum_bytes());
        SharedTable::new(bytes, entry)
    }

    /// The table, to read rows from.
    pub fn table(&self) -> Table<'_, '_> {
        self.bytes.table(&self.entry, &self.checks)
    }

    /// `len` bytes of data at `offset` are read next: start reading them
    /// (one request for what would be a fault a page).
    pub fn will_need(&self, offset: u64, len: u64) {
        let end = offset.saturating_add(len).min(self.entry.data_len);
        if offset < end {
            self.bytes
                .will_need(self.entry.data_offset + offset, end - offset);
        }
    }

    /// Rows `first..first + count` are read next.
    pub fn will_need_rows(&self, first: u64, count: u64) {
        let size = u64::from(self.entry.row_bytes);
        self.will_need(first.saturating_mul(size), count.saturating_mul(size));
    }

    /// The whole table is read next (a table read at open).
    pub fn will_need_all(&self) {
        self.will_need(0, self.entry.data_len);
    }

    /// A reader going front to back is at data `offset`: keep a window
    /// ahead of it requested, a few megabytes at a time.
    pub fn read_ahead(&self, offset: u64) {
        let ahead = self.ahead.load(Ordering::Relaxed);
        // Far behind the window: a new pass from the front.
        let new_pass = offset.saturating_add(READ_AHEAD_BYTES) < ahead;
        if !new_pass && offset.saturating_add(READ_AHEAD_BYTES / 2) < ahead {
            return;
        }
        let from = if new_pass { offset } else { ahead.max(offset) };
        let to = offset.saturating_add(READ_AHEAD_BYTES);
        self.ahead.store(to, Ordering::Relaxed);
        self.will_need(from, to - from);
    }

    /// Row `n` is read next by a reader going front to back.
    pub fn read_ahead_row(&self, n: u64) {
        self.read_ahead(n.saturating_mul(u64::from(self.entry.row_bytes)));
    }
}

/// Writes one checkpoint file front to back into `W`.
pub struct CheckpointWriter<W: Write> {
    out: W,
    pos: u64,
    tables: Vec<TableEntry>,
    open: Option<OpenTable>,
    /// Seals each block of a sealed file (its header has a salt).
    sealer: Option<Arc<dyn BlockSealer>>,
}

struct OpenTable {
    entry: TableEntry,
    /// Each block's checksum (crc32 LE) or tag, in order.
    sums: Vec<u8>,
    hasher: crc32fast::Hasher,
    in_block: u32,
    /// A sealed file's block being filled (sealed whole, then written).
    block: Vec<u8>,
}

impl<W: Write> CheckpointWriter<W> {
    /// Start a file in the clear: the header is written at once.
    pub fn new(out: W, header: &CheckpointHeader) -> std::io::Result<Self> {
        Self::start(out, header, None)
    }

    /// Start a sealed file (its header must have a salt): each block of
    /// table data is sealed by `sealer` and carries its tag.
    pub fn sealed(
        out: W,
        header: &CheckpointHeader,
        sealer: Arc<dyn BlockSealer>,
    ) -> std::io::Result<Self> {
        if header.salt.is_none() {
            return Err(std::io::Error::other("a sealed checkpoint needs a salt"));
        }
        Self::start(out, header, Some(sealer))
    }

    fn start(
        mut out: W,
        header: &CheckpointHeader,
        sealer: Option<Arc<dyn BlockSealer>>,
    ) -> std::io::Result<Self> {
        if header.salt.is_some() && sealer.is_none() {
            return Err(std::io::Error::other("a salt without a sealer"));
        }
        out.write_all(&header.encode())?;
        Ok(CheckpointWriter {
            out,
            pos: HEADER_BYTES as u64,
            tables: Vec::new(),
            open: None,
            sealer,
        })
    }

    /// Begin table `id` of rows of `row_bytes` (0: a blob).
    pub fn begin_table(&mut self, id: u32, row_bytes: u32) -> std::io::Result<()> {
        self.end_table()?;
        // A block is checked (or opened) whole: aligned to the page, a
        // cold read of one is one page read, not two.
        let pad = self.pos.next_multiple_of(u64::from(BLOCK_BYTES)) - self.pos;
        self.out.write_all(&vec![0; pad as usize])?;
        self.pos += pad;
        self.open = Some(OpenTable {
            entry: TableEntry {
                id,
                row_bytes,
                rows: 0,
                data_offset: self.pos,
                data_len: 0,
                crcs_offset: 0,
                crcs_crc: 0,
                sealed: self.sealer.is_some(),
            },
            sums: Vec::new(),
            hasher: crc32fast::Hasher::new(),
            in_block: 0,
            block: Vec::new(),
        });
        Ok(())
    }

    /// Append one row (its length must be the table's row size).
    pub fn row(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let size = self.open.as_ref().map(|t| t.entry.row_bytes);
        if size != Some(bytes.len() as u32) {
            return Err(std::io::Error::other(format!(
                "row of {} bytes in a table of {size:?}",
                bytes.len()
            )));
        }
        self.data(bytes)?;
        if let Some(t) = &mut self.open {
            t.entry.rows += 1;
        }
        Ok(())
    }

    /// Append bytes to the open table's data (a blob's).
    pub fn data(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        let t = self
            .open
            .as_mut()
            .ok_or_else(|| std::io::Error::other("no table open"))?;
        t.entry.data_len += bytes.len() as u64;
        if let Some(sealer) = &self.sealer {
            while !bytes.is_empty() {
                let room = BLOCK_BYTES as usize - t.block.len();
                let (now, rest) = bytes.split_at(room.min(bytes.len()));
                t.block.extend_from_slice(now);
                if t.block.len() == BLOCK_BYTES as usize {
                    self.pos += seal_block(&mut self.out, &**sealer, t)?;
                }
                bytes = rest;
            }
            return Ok(());
        }
        self.out.write_all(bytes)?;
        self.pos += bytes.len() as u64;
        while !bytes.is_empty() {
            let room = (BLOCK_BYTES - t.in_block) as usize;
            let (now, rest) = bytes.split_at(room.min(bytes.len()));
            t.hasher.update(now);
            t.in_block += now.len() as u32;
            if t.in_block == BLOCK_BYTES {
                let h = std::mem::take(&mut t.hasher);
                t.sums.extend_from_slice(&h.finalize().to_le_bytes());
                t.in_block = 0;
            }
            bytes = rest;
        }
        Ok(())
    }

    /// Bytes of the open table's data so far (a blob's next offset).
    pub fn data_len(&self) -> u64 {
        self.open.as_ref().map_or(0, |t| t.entry.data_len)
    }

    fn end_table(&mut self) -> std::io::Result<()> {
        let Some(mut t) = self.open.take() else {
            return Ok(());
        };
        match &self.sealer {
            Some(sealer) if !t.block.is_empty() => {
                self.pos += seal_block(&mut self.out, &**sealer, &mut t)?;
            }
            Some(_) => {}
            None if t.in_block > 0 => t.sums.extend_from_slice(&t.hasher.finalize().to_le_bytes()),
            None => {}
        }
        t.entry.crcs_offset = self.pos;
        t.entry.crcs_crc = crc32fast::hash(&t.sums);
        self.out.write_all(&t.sums)?;
        self.pos += t.sums.len() as u64;
        self.tables.push(t.entry);
        Ok(())
    }

    /// Write the directory and the trailer (a sealed file's table list
    /// first); returns the sink and the file's length.
    pub fn finish(mut self) -> std::io::Result<(W, u64)> {
        self.end_table()?;
        if self.sealer.is_some() {
            let list = table_list(&self.tables);
            self.begin_table(TABLE_LIST, 0)?;
            self.data(&list)?;
            self.end_table()?;
        }
        let mut dir = Vec::with_capacity(self.tables.len() * TABLE_ENTRY_BYTES);
        for t in &self.tables {
            t.encode(&mut dir);
        }
        let dir_offset = self.pos;
        let len = dir_offset + dir.len() as u64 + TRAILER_BYTES as u64;
        let mut trailer = Vec::with_capacity(TRAILER_BYTES);
        trailer.extend_from_slice(&dir_offset.to_le_bytes());
        trailer.extend_from_slice(&(self.tables.len() as u32).to_le_bytes());
        trailer.extend_from_slice(&crc32fast::hash(&dir).to_le_bytes());
        trailer.extend_from_slice(&len.to_le_bytes());
        trailer.extend_from_slice(&TRAILER_MAGIC);
        self.out.write_all(&dir)?;
        self.out.write_all(&trailer)?;
        Ok((self.out, len))
    }
}

/// Seal the open table's filled block in place, write it, keep its tag;
/// returns the bytes written.
fn seal_block<W: Write>(
    out: &mut W,
    sealer: &dyn BlockSealer,
    t: &mut OpenTable,
) -> std::io::Result<u64> {
    let index = t.sums.len() as u64 / TAG_BYTES as u64;
    let tag = sealer
        .seal(t.entry.id, index, &mut t.block)
        .map_err(std::io::Error::other)?;
    out.write_all(&t.block)?;
    t.sums.extend_from_slice(&tag);
    let written = t.block.len() as u64;
    t.block.clear();
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes that record the advice given about them.
    struct Advised(Vec<u8>, parking_lot::Mutex<Vec<(&'static str, u64, u64)>>);

    impl AsRef<[u8]> for Advised {
        fn as_ref(&self) -> &[u8] {
            &self.0
        }
    }

    impl TableBytes for Advised {
        fn table<'a, 'c>(&'a self, entry: &TableEntry, checks: &'c BlockChecks) -> Table<'a, 'c> {
            Table::new(&self.0, entry, checks)
        }
    }

    impl PageAdvice for Advised {
        fn random(&self, offset: u64, len: u64) {
            self.1.lock().push(("random", offset, len));
        }
        fn will_need(&self, offset: u64, len: u64) {
            self.1.lock().push(("will_need", offset, len));
        }
    }

    #[test]
    fn a_reader_going_front_to_back_is_kept_a_window_ahead_every_pass() {
        let entry = TableEntry {
            id: 1,
            row_bytes: 1024,
            rows: 32 << 10,
            data_offset: 4096,
            data_len: 32 << 20,
            crcs_offset: (32 << 20) + 4096,
            crcs_crc: 0,
            sealed: false,
        };
        let bytes = std::sync::Arc::new(Advised(Vec::new(), Default::default()));
        let table = SharedTable::for_lookups(bytes.clone(), entry);
        let calls = |b: &Advised| std::mem::take(&mut *b.1.lock());
        assert_eq!(
            calls(&bytes),
            [
                ("random", 4096, 32 << 20),
                ("will_need", (32 << 20) + 4096, 8192 * 4)
            ]
        );
        let pass = || {
            for n in 0..(12 << 10) {
                table.read_ahead_row(n);
            }
        };
        pass();
        // Rows 0..12 Mi bytes: windows requested at 0, 4 and 8 MiB, each
        // reaching 8 MiB past where the reader was, none twice.
        let first = calls(&bytes);
        assert_eq!(
            first,
            [
                ("will_need", 4096, 8 << 20),
                ("will_need", 4096 + (8 << 20), 4 << 20),
                ("will_need", 4096 + (12 << 20), 4 << 20)
            ]
        );
        // A second pass from the front asks again.
        pass();
        assert_eq!(calls(&bytes), first);
        table.will_need_rows(30 << 10, 4 << 10);
        assert_eq!(calls(&bytes), [("will_need", 4096 + (30 << 20), 2 << 20)]);
    }

    fn header() -> CheckpointHeader {
        CheckpointHeader {
            kind: CheckpointKind::Messages,
            store_id: [7; 16],
            sequence: 42,
            created_ms: 1_700_000_000_000,
            salt: None,
        }
    }

    fn sample() -> Vec<u8> {
        let mut w = CheckpointWriter::new(Vec::new(), &header()).unwrap();
        w.begin_table(1, 12).unwrap();
        for n in 0..1000u32 {
            let mut row = [0u8; 12];
            row[..4].copy_from_slice(&n.to_le_bytes());
            w.row(&row).unwrap();
        }
        w.begin_table(2, 0).unwrap();
        w.data(b"owner names and item names").unwrap();
        w.finish().unwrap().0
    }

    #[test]
    fn round_trip() {
        let bytes = sample();
        let layout = Layout::parse(&bytes).unwrap();
        assert_eq!(layout.header, header());
        let e = layout.entry(1).unwrap();
        let checks = BlockChecks::for_table(e);
        let t = Table::new(&bytes, e, &checks);
        assert_eq!(t.rows(), 1000);
        assert_eq!(&t.row(999).unwrap()[..4], &999u32.to_le_bytes());
        assert!(t.row(1000).is_err());
        let e = layout.entry(2).unwrap();
        let checks = BlockChecks::for_table(e);
        let blob = Table::new(&bytes, e, &checks);
        assert_eq!(blob.range(6, 5).unwrap(), b"names");
    }

    #[test]
    fn a_flipped_data_byte_fails_its_block_only() {
        let mut bytes = sample();
        let layout = Layout::parse(&bytes).unwrap();
        let e = *layout.entry(1).unwrap();
        // Row 500 is in the second block (rows of 12 bytes, blocks of 4096).
        bytes[(e.data_offset + 500 * 12) as usize] ^= 1;
        let layout = Layout::parse(&bytes).unwrap();
        let checks = BlockChecks::for_table(&e);
        let t = Table::new(&bytes, layout.entry(1).unwrap(), &checks);
        assert!(t.row(0).is_ok());
        let err = t.row(500).unwrap_err();
        assert!(err.contains("block crc mismatch"), "{err}");
        assert!(t.check_all().is_err());
    }

    #[test]
    fn every_frame_byte_is_checked() {
        let bytes = sample();
        let layout = Layout::parse(&bytes).unwrap();
        let data: Vec<(u64, u64)> = layout
            .tables
            .iter()
            .map(|t| (t.data_offset, t.data_offset + t.data_len))
            .collect();
        // The zeros that align each table's data to a block, from where
        // the file before it ends: read by nothing.
        let mut padding = Vec::new();
        let mut end = HEADER_BYTES as u64;
        for t in &layout.tables {
            padding.push((end, t.data_offset));
            end = t.crcs_offset + t.blocks() * t.sum_bytes();
        }
        for pos in 0..bytes.len() {
            let within = |r: &[(u64, u64)]| r.iter().any(|&(a, b)| (a..b).contains(&(pos as u64)));
            if within(&data) || within(&padding) {
                continue;
            }
            let mut bad = bytes.clone();
            bad[pos] ^= 0x10;
            assert!(Layout::parse(&bad).is_err(), "flip at {pos} accepted");
        }
    }

    #[test]
    fn cut_files_are_refused() {
        let bytes = sample();
        for len in [0, 10, HEADER_BYTES, bytes.len() / 2, bytes.len() - 1] {
            assert!(Layout::parse(&bytes[..len]).is_err(), "cut at {len}");
        }
    }

    #[test]
    fn file_names_round_trip() {
        for kind in CheckpointKind::ALL {
            let name = kind.file_name(12345);
            assert_eq!(CheckpointKind::parse_file_name(&name), Some((kind, 12345)));
        }
        assert_eq!(CheckpointKind::parse_file_name("files-12.ckpt"), None);
        assert_eq!(
            CheckpointKind::parse_file_name("other-00000000000000000012.ckpt"),
            None
        );
    }
}
