//! Segment files: header, records, footer and trailer (format-spec/segment.md).
//!
//! Pure encoding and decoding; no I/O. A decoder checks lengths against the
//! limits below before anything is allocated, and a record's fields are only
//! trusted by callers after [`RecordHeader::crc_matches`] says so.
//! It must not import anything above `format`.

use std::borrow::Cow;

use super::{ENCRYPTED_FORMAT_VERSION, FORMAT_VERSION, Reader};

/// Magic number of a segment header (format-spec/segment.md, "Segment header").
pub const SEGMENT_MAGIC: [u8; 8] = *b"VSSEGMNT";
/// Magic number closing a sealed segment (format-spec/segment.md, "Trailer").
pub const TRAILER_MAGIC: [u8; 8] = *b"VSSEGEND";
/// Size of the segment header.
pub const SEGMENT_HEADER_BYTES: usize = 64;
/// Size of a record header.
pub const RECORD_HEADER_BYTES: usize = 64;
/// Size of the trailer.
pub const TRAILER_BYTES: usize = 16;
/// Size of the footer summary that starts a footer record's payload.
pub const FOOTER_SUMMARY_BYTES: usize = 64;
/// Size of one footer entry.
pub const FOOTER_ENTRY_BYTES: usize = 72;
/// Largest saveset content, and largest stored payload, a reader accepts
/// (format-spec/segment.md, "Limits"). Checked before allocating.
pub const MAX_RECORD_BYTES: u64 = 4 << 30;

/// What a record holds (format-spec/segment.md, "Record kinds").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// A whole saveset: the payload is its content.
    Saveset,
    /// A part of split messages (an attachment, decoded): the payload is
    /// its content; the id is the blake3 of it (format-spec/parts.md).
    Part,
    /// A split saveset: the payload is its recipe; the id is the blake3 of
    /// the message the recipe rebuilds (format-spec/parts.md).
    Composite,
    /// A batch of catalog changes (format-spec/catalog.md); the id is the
    /// blake3 of the decoded batch.
    Catalog,
    /// A batch of lifecycle changes (format-spec/state.md); the id is the
    /// blake3 of the decoded batch.
    State,
    /// The first record of a segment written by compaction: which segments
    /// it replaces (format-spec/segment.md, "Compaction record").
    Compaction,
    /// The segment's footer: its record index. Always the last record.
    Footer,
}

impl RecordKind {
    /// The byte written on disk.
    pub fn to_byte(self) -> u8 {
        match self {
            RecordKind::Saveset => 0x01,
            RecordKind::Part => 0x02,
            RecordKind::Composite => 0x03,
            RecordKind::Catalog => 0x04,
            RecordKind::State => 0x05,
            RecordKind::Compaction => 0x06,
            RecordKind::Footer => 0x7F,
        }
    }
    /// Decode; unknown kinds are `None`.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            0x01 => Some(RecordKind::Saveset),
            0x02 => Some(RecordKind::Part),
            0x03 => Some(RecordKind::Composite),
            0x04 => Some(RecordKind::Catalog),
            0x05 => Some(RecordKind::State),
            0x06 => Some(RecordKind::Compaction),
            0x7F => Some(RecordKind::Footer),
            _ => None,
        }
    }
}

impl RecordKind {
    /// True when the record's id is the blake3 of its decoded content.
    pub fn is_content_addressed(self) -> bool {
        matches!(
            self,
            RecordKind::Saveset
                | RecordKind::Part
                | RecordKind::Catalog
                | RecordKind::State
                | RecordKind::Compaction
        )
    }

    /// True for the records a saveset id names: whole or split.
    pub fn is_saveset(self) -> bool {
        matches!(self, RecordKind::Saveset | RecordKind::Composite)
    }
}

/// How a payload is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// Stored as is (compression did not help).
    Raw,
    /// One zstd frame.
    Zstd,
}

impl Codec {
    /// The byte written on disk.
    pub fn to_byte(self) -> u8 {
        match self {
            Codec::Raw => 0,
            Codec::Zstd => 1,
        }
    }
    /// Decode; unknown codecs are `None`.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Codec::Raw),
            1 => Some(Codec::Zstd),
            _ => None,
        }
    }
}

/// The 64-byte header at offset 0 of every segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The segment's id (also in its file name).
    pub segment_id: u32,
    /// The partition the segment was created in.
    pub partition_id: u32,
    /// Creation time, Unix milliseconds.
    pub created_ms: u64,
    /// The store this segment belongs to.
    pub store_id: [u8; 16],
    /// [`SEGMENT_FLAG_COMPACTION`] or zero.
    pub flags: u32,
    /// Written by an encrypted store: format version 2, and `tag` in bytes
    /// 48..60 (format-spec/encryption.md).
    pub encrypted: bool,
    /// The keyed tag over bytes 0..48 of an encrypted segment's header; zero otherwise.
    pub tag: [u8; 12],
}

/// Segment header flag: written by compaction (defragmentation or
/// redistribution). Such a segment counts only once it is sealed.
pub const SEGMENT_FLAG_COMPACTION: u32 = 1;

impl SegmentHeader {
    /// Encode (format-spec/segment.md, "Segment header").
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES] {
        let mut b = [0u8; SEGMENT_HEADER_BYTES];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        let version = if self.encrypted {
            ENCRYPTED_FORMAT_VERSION
        } else {
            FORMAT_VERSION
        };
        b[8..12].copy_from_slice(&version.to_le_bytes());
        b[12..16].copy_from_slice(&self.segment_id.to_le_bytes());
        b[16..20].copy_from_slice(&self.partition_id.to_le_bytes());
        b[20..24].copy_from_slice(&self.flags.to_le_bytes());
        b[24..32].copy_from_slice(&self.created_ms.to_le_bytes());
        b[32..48].copy_from_slice(&self.store_id);
        // 48..60: the tag of an encrypted segment, reserved zero otherwise.
        b[48..60].copy_from_slice(&self.tag);
        let crc = crc32fast::hash(&b[..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decode and validate magic, crc, version and reserved bytes.
    pub fn decode(b: &[u8]) -> Result<SegmentHeader, String> {
        let Some(b) = b.get(..SEGMENT_HEADER_BYTES) else {
            return Err(format!("segment header truncated to {} bytes", b.len()));
        };
        if b.get(..8) != Some(&SEGMENT_MAGIC[..]) {
            return Err("not a segment (bad magic)".into());
        }
        let mut r = Reader::new(b);
        r.take(8);
        let version = r.u32().unwrap_or(0);
        let segment_id = r.u32().unwrap_or(0);
        let partition_id = r.u32().unwrap_or(0);
        let flags = r.u32().unwrap_or(0);
        let created_ms = r.u64().unwrap_or(0);
        let store_id = r.array::<16>().unwrap_or_default();
        let tag = r.array::<12>().unwrap_or_default();
        let crc = r.u32().unwrap_or(0);
        if b.get(..60).map(crc32fast::hash) != Some(crc) {
            return Err("segment header crc mismatch".into());
        }
        let encrypted = match version {
            FORMAT_VERSION => false,
            ENCRYPTED_FORMAT_VERSION => true,
            _ => {
                return Err(format!(
                    "segment format version {version} is not supported (this build reads \
                     {FORMAT_VERSION} and {ENCRYPTED_FORMAT_VERSION})"
                ));
            }
        };
        if flags & !SEGMENT_FLAG_COMPACTION != 0 || (!encrypted && tag != [0; 12]) {
            return Err("segment header has unknown flags set".into());
        }
        Ok(SegmentHeader {
            segment_id,
            partition_id,
            created_ms,
            store_id,
            flags,
            encrypted,
            tag,
        })
    }

    /// The bytes an encrypted segment's tag covers (0..48).
    pub fn tagged_bytes(&self) -> [u8; 48] {
        let mut b = [0u8; 48];
        b.copy_from_slice(&self.encode()[..48]);
        b
    }

    /// True when compaction wrote this segment.
    pub fn is_compaction_output(&self) -> bool {
        self.flags & SEGMENT_FLAG_COMPACTION != 0
    }
}

/// The 64-byte header in front of every record's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// crc32 over header bytes 4..64 followed by the payload.
    pub crc: u32,
    /// What the record holds.
    pub kind: RecordKind,
    /// How the payload is encoded.
    pub codec: Codec,
    /// Payload bytes on disk.
    pub stored_len: u64,
    /// Bytes after decoding the payload.
    pub logical_len: u64,
    /// Store-wide sequence number, increasing in append order.
    pub sequence: u64,
    /// Content address (zero for a footer). For a sealed record, the plain
    /// id once the payload is opened; the keyed id until then.
    pub id: [u8; 32],
    /// A sealed record (flag bit 0; format-spec/encryption.md): the keyed id
    /// its header carries on disk. `None` for a record in the clear.
    pub sealed: Option<[u8; 32]>,
}

/// Bytes a sealed payload adds to the encoded content: a 24-byte nonce, the
/// 32-byte plain id inside the ciphertext, a 16-byte tag.
pub const SEALED_OVERHEAD: u64 = 72;

/// Record flag bit 0: the payload is sealed.
pub const RECORD_FLAG_SEALED: u16 = 1;

impl RecordHeader {
    /// Build a header for `payload`, computing its crc.
    pub fn new(
        kind: RecordKind,
        codec: Codec,
        logical_len: u64,
        sequence: u64,
        id: [u8; 32],
        payload: &[u8],
    ) -> RecordHeader {
        let mut h = RecordHeader {
            crc: 0,
            kind,
            codec,
            stored_len: payload.len() as u64,
            logical_len,
            sequence,
            id,
            sealed: None,
        };
        h.crc = h.compute_crc(payload);
        h
    }

    /// The header of a sealed record before its payload is sealed: what
    /// the seal authenticates is [`Self::body_bytes`]. Call
    /// [`Self::set_crc`] with the sealed payload.
    pub fn unsealed(
        kind: RecordKind,
        codec: Codec,
        encoded_len: u64,
        logical_len: u64,
        sequence: u64,
        id: [u8; 32],
        keyed_id: [u8; 32],
    ) -> RecordHeader {
        RecordHeader {
            crc: 0,
            kind,
            codec,
            stored_len: encoded_len + SEALED_OVERHEAD,
            logical_len,
            sequence,
            id,
            sealed: Some(keyed_id),
        }
    }

    /// Set the crc over this header and `payload` (as written).
    pub fn set_crc(&mut self, payload: &[u8]) {
        self.crc = self.compute_crc(payload);
    }

    /// Header bytes 4..64 as written: what the crc covers, and for a sealed
    /// record what its seal authenticates.
    pub fn body_bytes(&self) -> [u8; RECORD_HEADER_BYTES - 4] {
        let mut b = [0u8; RECORD_HEADER_BYTES - 4];
        b[0] = self.kind.to_byte();
        b[1] = self.codec.to_byte();
        let flags = if self.sealed.is_some() {
            RECORD_FLAG_SEALED
        } else {
            0
        };
        b[2..4].copy_from_slice(&flags.to_le_bytes());
        b[4..12].copy_from_slice(&self.stored_len.to_le_bytes());
        b[12..20].copy_from_slice(&self.logical_len.to_le_bytes());
        b[20..28].copy_from_slice(&self.sequence.to_le_bytes());
        b[28..60].copy_from_slice(self.sealed.as_ref().unwrap_or(&self.id));
        b
    }

    /// Bytes of encoded content in the payload (the payload less a seal's overhead).
    pub fn encoded_len(&self) -> u64 {
        match self.sealed {
            Some(_) => self.stored_len.saturating_sub(SEALED_OVERHEAD),
            None => self.stored_len,
        }
    }

    fn compute_crc(&self, payload: &[u8]) -> u32 {
        let mut h = self.crc_hasher();
        h.update(payload);
        h.finalize()
    }

    /// A crc32 hasher fed with this header's covered bytes: feed it the
    /// payload (in pieces, for a record too large to hold) and compare with `crc`.
    pub fn crc_hasher(&self) -> crc32fast::Hasher {
        let mut h = crc32fast::Hasher::new();
        h.update(&self.body_bytes());
        h
    }

    /// Encode (format-spec/segment.md, "Record").
    pub fn encode(&self) -> [u8; RECORD_HEADER_BYTES] {
        let mut b = [0u8; RECORD_HEADER_BYTES];
        b[0..4].copy_from_slice(&self.crc.to_le_bytes());
        b[4..].copy_from_slice(&self.body_bytes());
        b
    }

    /// Decode the fixed fields and check them against the limits. The crc is
    /// not checked here (it covers the payload): call [`Self::crc_matches`].
    pub fn decode(b: &[u8]) -> Result<RecordHeader, String> {
        let Some(b) = b.get(..RECORD_HEADER_BYTES) else {
            return Err(format!("record header truncated to {} bytes", b.len()));
        };
        let mut r = Reader::new(b);
        let crc = r.u32().unwrap_or(0);
        let kind_byte = r.u8().unwrap_or(0);
        let codec_byte = r.u8().unwrap_or(0xFF);
        let flags = r.u16().unwrap_or(0);
        let stored_len = r.u64().unwrap_or(0);
        let logical_len = r.u64().unwrap_or(0);
        let sequence = r.u64().unwrap_or(0);
        let id = r.array::<32>().unwrap_or_default();
        let kind = RecordKind::from_byte(kind_byte)
            .ok_or_else(|| format!("unknown record kind {kind_byte:#04x}"))?;
        let codec =
            Codec::from_byte(codec_byte).ok_or_else(|| format!("unknown codec {codec_byte}"))?;
        if flags & !RECORD_FLAG_SEALED != 0 {
            return Err(format!("unknown record flags {flags:#06x}"));
        }
        let sealed = (flags & RECORD_FLAG_SEALED != 0).then_some(id);
        let overhead = if sealed.is_some() { SEALED_OVERHEAD } else { 0 };
        if stored_len < overhead {
            return Err(format!("sealed record of {stored_len} bytes is too short"));
        }
        if stored_len > MAX_RECORD_BYTES || logical_len > MAX_RECORD_BYTES {
            return Err(format!(
                "record length {stored_len} (logical {logical_len}) exceeds the limit of {MAX_RECORD_BYTES}"
            ));
        }
        if codec == Codec::Raw && stored_len - overhead != logical_len {
            return Err("raw record with stored and logical lengths that differ".into());
        }
        Ok(RecordHeader {
            crc,
            kind,
            codec,
            stored_len,
            logical_len,
            sequence,
            id,
            sealed,
        })
    }

    /// True when the stored crc matches this header and `payload`.
    pub fn crc_matches(&self, payload: &[u8]) -> bool {
        self.compute_crc(payload) == self.crc
    }

    /// Bytes this record takes in the file, header included.
    pub fn record_bytes(&self) -> u64 {
        RECORD_HEADER_BYTES as u64 + self.stored_len
    }
}

/// Compress `content` at `level`, keeping it raw (borrowed, not copied)
/// when zstd does not make it smaller.
pub fn encode_payload(content: &[u8], level: i32) -> (Codec, Cow<'_, [u8]>) {
    if !worth_compressing(content, level) {
        return (Codec::Raw, Cow::Borrowed(content));
    }
    match compress(content, level) {
        Ok(c) if c.len() < content.len() => (Codec::Zstd, Cow::Owned(c)),
        _ => (Codec::Raw, Cow::Borrowed(content)),
    }
}

/// Content at least this large is sampled before it is compressed.
pub const SAMPLE_ABOVE_BYTES: usize = 256 << 10;
/// Bytes taken from each of the start, middle and end of the content.
const SAMPLE_WINDOW_BYTES: usize = 16 << 10;

/// Whether compressing `content` may pay. Large content (an attachment
/// that is a JPEG, a PDF or a zip) is often compressed already: three
/// windows of it are compressed first, and content whose sample shrinks by
/// less than 1/32 is stored raw without compressing the rest.
fn worth_compressing(content: &[u8], level: i32) -> bool {
    if content.len() < SAMPLE_ABOVE_BYTES {
        return true;
    }
    let w = SAMPLE_WINDOW_BYTES;
    let middle = content.len() / 2 - w / 2;
    let mut sample = Vec::with_capacity(3 * w);
    for start in [0, middle, content.len() - w] {
        sample.extend_from_slice(content.get(start..start + w).unwrap_or_default());
    }
    match compress(&sample, level) {
        Ok(c) => c.len() < sample.len() - sample.len() / 32,
        Err(_) => true,
    }
}

/// Creating a zstd context costs more than compressing a small message,
/// so contexts are kept and reused, most recently used first: with many
/// writer threads on few cores only a few are in use at once, and those
/// stay in cache (a context per thread would evict the others' tables).
static COMPRESSORS: parking_lot::Mutex<Vec<(i32, zstd::bulk::Compressor<'static>)>> =
    parking_lot::Mutex::new(Vec::new());

/// Idle contexts kept at most.
const IDLE_COMPRESSORS: usize = 64;

fn compress(content: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    let idle = {
        let mut pool = COMPRESSORS.lock();
        let at = pool.iter().rposition(|(l, _)| *l == level);
        at.map(|i| pool.remove(i))
    };
    let (_, mut c) = match idle {
        Some(c) => c,
        None => {
            let mut c = zstd::bulk::Compressor::new(level)?;
            // The frame must say its content size: readers check it before allocating.
            c.include_contentsize(true)?;
            (level, c)
        }
    };
    let out = c.compress(content);
    let mut pool = COMPRESSORS.lock();
    if pool.len() < IDLE_COMPRESSORS {
        pool.push((level, c));
    }
    out
}

thread_local! {
    /// Each thread's zstd decompression context, made once: creating one
    /// for every read was 3% of a `get` over HTTP.
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// Decompress one frame of at most `capacity` bytes with the thread's context.
fn decompress(frame: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let d = match slot.as_mut() {
            Some(d) => d,
            None => slot.insert(zstd::bulk::Decompressor::new()?),
        };
        d.decompress(frame, capacity)
    })
}

/// Decode a payload back to the content; the output length must equal
/// `logical_len`, which the caller has already bounded by [`MAX_RECORD_BYTES`].
pub fn decode_payload(codec: Codec, payload: Vec<u8>, logical_len: u64) -> Result<Vec<u8>, String> {
    let content = match codec {
        Codec::Raw => payload,
        Codec::Zstd => {
            // The frame says its own size; refuse a frame that disagrees with
            // the header before allocating for it.
            match zstd::zstd_safe::get_frame_content_size(&payload) {
                Ok(Some(n)) if n == logical_len => {}
                Ok(Some(n)) => {
                    return Err(format!(
                        "zstd frame holds {n} bytes, header says {logical_len}"
                    ));
                }
                _ => return Err("zstd frame without a valid content size".into()),
            }
            // Exactly one frame, with no dictionary, and nothing after it
            // (format-spec/segment.md, "Compression").
            match zstd::zstd_safe::find_frame_compressed_size(&payload) {
                Ok(n) if n == payload.len() => {}
                Ok(n) => {
                    return Err(format!(
                        "{} bytes after the zstd frame (one frame of {n} bytes is allowed)",
                        payload.len() - n
                    ));
                }
                Err(_) => return Err("zstd frame is malformed".into()),
            }
            if zstd::zstd_safe::get_dict_id_from_frame(&payload).is_some() {
                return Err("zstd frame needs a dictionary; none is allowed".into());
            }
            decompress(&payload, logical_len as usize).map_err(|e| format!("zstd: {e}"))?
        }
    };
    if content.len() as u64 != logical_len {
        return Err(format!(
            "decoded {} bytes, header says {logical_len}",
            content.len()
        ));
    }
    Ok(content)
}

/// A fully decoded record from a byte buffer: header, then content.
/// Used by the fuzz target and by tests; the store reads records from files.
pub fn decode_record(bytes: &[u8]) -> Result<(RecordHeader, Vec<u8>), String> {
    let h = RecordHeader::decode(bytes)?;
    let end = (RECORD_HEADER_BYTES as u64)
        .checked_add(h.stored_len)
        .filter(|&e| e <= bytes.len() as u64)
        .ok_or("record runs past the end of the buffer")?;
    let payload = bytes
        .get(RECORD_HEADER_BYTES..end as usize)
        .ok_or("record runs past the end of the buffer")?;
    if !h.crc_matches(payload) {
        return Err("crc mismatch".into());
    }
    let content = decode_payload(h.codec, payload.to_vec(), h.logical_len)?;
    if h.kind.is_content_addressed() && *blake3::hash(&content).as_bytes() != h.id {
        return Err("content does not hash to the record's id".into());
    }
    Ok((h, content))
}

/// One entry of a footer's record index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FooterEntry {
    /// The record's id.
    pub id: [u8; 32],
    /// Offset of the record header in the file.
    pub offset: u64,
    /// Payload bytes on disk.
    pub stored_len: u64,
    /// Decoded bytes.
    pub logical_len: u64,
    /// Record kind.
    pub kind: RecordKind,
    /// Payload codec.
    pub codec: Codec,
    /// The record's sequence number: replay at open follows it across segments.
    pub sequence: u64,
}

impl FooterEntry {
    /// The entry describing a record with header `h` at `offset`.
    pub fn of(h: &RecordHeader, offset: u64) -> FooterEntry {
        FooterEntry {
            id: h.id,
            offset,
            stored_len: h.stored_len,
            logical_len: h.logical_len,
            kind: h.kind,
            codec: h.codec,
            sequence: h.sequence,
        }
    }
}

/// The parts a composite record lists, as a footer carries them so that
/// part references are known at open without reading the records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartList {
    /// Index of the composite record's entry in the footer.
    pub entry: u32,
    /// Length of the message the recipe rebuilds.
    pub message_len: u64,
    /// The part ids, distinct, in the recipe's order.
    pub parts: Vec<[u8; 32]>,
}

/// Totals a footer carries besides its entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FooterSummary {
    /// Number of entries that follow.
    pub entry_count: u64,
    /// Sum of the entries' logical lengths.
    pub logical_bytes: u64,
    /// Offset where the footer record starts (= end of the data records).
    pub data_end: u64,
    /// Smallest sequence number in the segment (0 when empty).
    pub sequence_min: u64,
    /// Largest sequence number in the segment (0 when empty).
    pub sequence_max: u64,
    /// Bytes of the part map after the entries.
    pub part_map_bytes: u64,
}

/// Encode a footer payload (format-spec/segment.md, "Footer").
pub fn encode_footer(
    entries: &[FooterEntry],
    data_end: u64,
    sequences: (u64, u64),
    part_lists: &[PartList],
) -> Vec<u8> {
    let part_map = encode_part_map(part_lists);
    let mut out = Vec::with_capacity(
        FOOTER_SUMMARY_BYTES + entries.len() * FOOTER_ENTRY_BYTES + part_map.len(),
    );
    let logical: u64 = entries.iter().map(|e| e.logical_len).sum();
    let (seq_min, seq_max) = sequences;
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    out.extend_from_slice(&logical.to_le_bytes());
    out.extend_from_slice(&data_end.to_le_bytes());
    out.extend_from_slice(&seq_min.to_le_bytes());
    out.extend_from_slice(&seq_max.to_le_bytes());
    out.extend_from_slice(&(part_map.len() as u64).to_le_bytes());
    out.extend_from_slice(&[0u8; FOOTER_SUMMARY_BYTES - 48]);
    for e in entries {
        out.extend_from_slice(&e.id);
        out.extend_from_slice(&e.offset.to_le_bytes());
        out.extend_from_slice(&e.stored_len.to_le_bytes());
        out.extend_from_slice(&e.logical_len.to_le_bytes());
        out.extend_from_slice(&e.sequence.to_le_bytes());
        out.push(e.kind.to_byte());
        out.push(e.codec.to_byte());
        out.extend_from_slice(&[0u8; 6]);
    }
    out.extend_from_slice(&part_map);
    out
}

fn encode_part_map(lists: &[PartList]) -> Vec<u8> {
    let mut out = Vec::new();
    if lists.is_empty() {
        return out;
    }
    out.extend_from_slice(&(lists.len() as u32).to_le_bytes());
    for l in lists {
        out.extend_from_slice(&l.entry.to_le_bytes());
        out.extend_from_slice(&(l.parts.len() as u32).to_le_bytes());
        out.extend_from_slice(&l.message_len.to_le_bytes());
        for p in &l.parts {
            out.extend_from_slice(p);
        }
    }
    out
}

/// Decode a footer's part map: one list per composite entry, in entry order.
fn decode_part_map(bytes: &[u8], entries: &[FooterEntry]) -> Result<Vec<PartList>, String> {
    let composites = entries
        .iter()
        .filter(|e| e.kind == RecordKind::Composite)
        .count();
    if bytes.is_empty() {
        return if composites == 0 {
            Ok(Vec::new())
        } else {
            Err("footer has composite entries but no part map".into())
        };
    }
    let mut r = Reader::new(bytes);
    let count = r.u32().ok_or("part map truncated")? as usize;
    if count != composites {
        return Err(format!(
            "part map lists {count} composite records, the entries hold {composites}"
        ));
    }
    let mut lists = Vec::with_capacity(count);
    let mut next = 0usize;
    for _ in 0..count {
        let entry = r.u32().ok_or("part map truncated")?;
        let n = r.u32().ok_or("part map truncated")? as usize;
        let message_len = r.u64().ok_or("part map truncated")?;
        if n > r.remaining() / 32 || message_len > MAX_RECORD_BYTES {
            return Err("part map entry out of bounds".into());
        }
        let e = entries
            .get(entry as usize)
            .filter(|e| e.kind == RecordKind::Composite && entry as usize >= next)
            .ok_or_else(|| {
                format!("part map names entry {entry}, not a composite record in order")
            })?;
        let _ = e;
        next = entry as usize + 1;
        let parts = (0..n)
            .map(|_| r.array::<32>().ok_or("part map truncated"))
            .collect::<Result<Vec<_>, _>>()?;
        lists.push(PartList {
            entry,
            message_len,
            parts,
        });
    }
    if r.remaining() != 0 {
        return Err("trailing bytes after the part map".into());
    }
    Ok(lists)
}

/// Decode a footer payload whose crc has been checked. Entries must cover
/// the data area in file order with no gap and no overlap.
pub fn decode_footer(payload: &[u8]) -> Result<Footer, String> {
    let mut r = Reader::new(payload);
    let entry_count = r.u64().ok_or("footer summary truncated")?;
    let logical_bytes = r.u64().ok_or("footer summary truncated")?;
    let data_end = r.u64().ok_or("footer summary truncated")?;
    let sequence_min = r.u64().ok_or("footer summary truncated")?;
    let sequence_max = r.u64().ok_or("footer summary truncated")?;
    let part_map_bytes = r.u64().ok_or("footer summary truncated")?;
    if r.take(FOOTER_SUMMARY_BYTES - 48)
        .ok_or("footer summary truncated")?
        .iter()
        .any(|&b| b != 0)
    {
        return Err("footer summary has reserved bytes set".into());
    }
    let entries_bytes = (r.remaining() as u64)
        .checked_sub(part_map_bytes)
        .ok_or("footer part map larger than the footer")?;
    let expected = entries_bytes / FOOTER_ENTRY_BYTES as u64;
    if !entries_bytes.is_multiple_of(FOOTER_ENTRY_BYTES as u64) || expected != entry_count {
        return Err(format!(
            "footer says {entry_count} entries but holds {entries_bytes} bytes of entries"
        ));
    }
    let mut entries = Vec::with_capacity(entry_count as usize);
    let mut next_free = SEGMENT_HEADER_BYTES as u64;
    for _ in 0..entry_count {
        let id = r.array::<32>().ok_or("footer entry truncated")?;
        let offset = r.u64().ok_or("footer entry truncated")?;
        let stored_len = r.u64().ok_or("footer entry truncated")?;
        let logical_len = r.u64().ok_or("footer entry truncated")?;
        let sequence = r.u64().ok_or("footer entry truncated")?;
        let kind = r
            .u8()
            .and_then(RecordKind::from_byte)
            .ok_or("footer entry with unknown kind")?;
        let codec = r
            .u8()
            .and_then(Codec::from_byte)
            .ok_or("footer entry with unknown codec")?;
        if r.take(6)
            .ok_or("footer entry truncated")?
            .iter()
            .any(|&b| b != 0)
        {
            return Err("footer entry with reserved bytes set".into());
        }
        if sequence < sequence_min || sequence > sequence_max {
            return Err(format!(
                "footer entry sequence {sequence} outside the summary's range"
            ));
        }
        let end = offset
            .checked_add(RECORD_HEADER_BYTES as u64)
            .and_then(|x| x.checked_add(stored_len))
            .ok_or("footer entry length overflows")?;
        // Records follow each other with no gap (nothing pads them), from
        // the end of the segment header to `data_end`.
        if offset != next_free || end > data_end || stored_len > MAX_RECORD_BYTES {
            return Err(format!(
                "footer entry at offset {offset} is out of place (the previous record ends at {next_free})"
            ));
        }
        next_free = end;
        entries.push(FooterEntry {
            id,
            offset,
            stored_len,
            logical_len,
            kind,
            codec,
            sequence,
        });
    }
    if next_free != data_end {
        return Err(format!(
            "footer entries end at {next_free}, not at the footer's data_end {data_end}"
        ));
    }
    let part_lists = decode_part_map(r.take(r.remaining()).unwrap_or_default(), &entries)?;
    Ok(Footer {
        summary: FooterSummary {
            entry_count,
            logical_bytes,
            data_end,
            sequence_min,
            sequence_max,
            part_map_bytes,
        },
        entries,
        part_lists,
    })
}

/// A decoded footer.
#[derive(Debug, Clone)]
pub struct Footer {
    /// Totals.
    pub summary: FooterSummary,
    /// One entry per record, in file order.
    pub entries: Vec<FooterEntry>,
    /// The parts each composite record lists.
    pub part_lists: Vec<PartList>,
}

/// Encode the 16-byte trailer pointing back at the footer record.
pub fn encode_trailer(footer_offset: u64) -> [u8; TRAILER_BYTES] {
    let mut b = [0u8; TRAILER_BYTES];
    b[0..8].copy_from_slice(&footer_offset.to_le_bytes());
    b[8..16].copy_from_slice(&TRAILER_MAGIC);
    b
}

/// Decode a trailer: the footer record's offset, or `None` if the magic is wrong.
pub fn decode_trailer(b: &[u8]) -> Option<u64> {
    if b.len() != TRAILER_BYTES || b.get(8..16) != Some(&TRAILER_MAGIC[..]) {
        return None;
    }
    Some(u64::from_le_bytes(b.get(0..8)?.try_into().ok()?))
}

#[cfg(test)]
#[path = "segment_tests.rs"]
mod tests;
