//! Segment files on disk: creating, appending, sealing, loading and scanning.
//!
//! Owns the life of one segment file: `segment-N.active` while records are
//! appended, then a footer and trailer are written and it is renamed to
//! `segment-N.sealed`, never to be written again. It reads and writes through
//! [`crate::io`] only and encodes bytes through [`crate::format::segment`].
//! It does not know about the index, the manifest or other segments: the
//! store decides which segment is active and what to do with what a scan finds.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::indexing_slicing))]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::crypto::Sealing;
use crate::error::{Error, Result};
use crate::format::segment::{
    FooterEntry, FooterSummary, PartList, RECORD_HEADER_BYTES, RecordHeader, RecordKind,
    SEGMENT_HEADER_BYTES, SegmentHeader, TRAILER_BYTES, decode_footer, decode_trailer,
    encode_footer, encode_trailer,
};
use crate::format::{segment::Codec, segment_file_name};
use crate::io::{VFile, Vfs};

/// Payloads up to this size are copied behind their header and written in one call.
const SMALL_RECORD_BYTES: usize = 256 << 10;

/// A segment open for appending. Only the store's writer holds one.
pub struct ActiveSegment {
    /// Segment id.
    pub id: u32,
    /// Partition id.
    pub partition_id: u32,
    /// Current path (`.active`).
    pub path: PathBuf,
    /// The open file.
    pub file: Arc<dyn VFile>,
    /// Offset where the next record goes.
    pub end: u64,
    /// Index of the records appended so far, for the footer.
    pub entries: Vec<FooterEntry>,
    /// Smallest and largest sequence appended (0, 0 when empty).
    pub sequences: (u64, u64),
    /// Creation time, Unix ms.
    pub created_ms: u64,
    /// The parts each composite record lists, for the footer.
    pub part_lists: Vec<PartList>,
    /// How the store's bytes are written (the footer is sealed too).
    pub sealing: Sealing,
}

impl ActiveSegment {
    /// Record the parts of the composite record just appended at `offset`.
    pub fn set_part_list(&mut self, offset: u64, message_len: u64, parts: Vec<[u8; 32]>) {
        if let Some(i) = self.entries.iter().rposition(|e| e.offset == offset) {
            self.part_lists.push(PartList {
                entry: i as u32,
                message_len,
                parts,
            });
        }
    }

    /// Create `dir/segment-N.active`, write its header and make both the
    /// file and its directory entry durable before any record goes in.
    pub fn create(
        vfs: &dyn Vfs,
        dir: &Path,
        header: SegmentHeader,
        sealing: &Sealing,
    ) -> Result<ActiveSegment> {
        let header = sealed_header(sealing, header);
        let path = dir.join(segment_file_name(header.segment_id, false));
        let file = vfs
            .create_new(&path)
            .map_err(|e| Error::io(&path, "create segment", e))?;
        let written = file
            .write_all_at(&header.encode(), 0)
            .and_then(|_| file.sync_data())
            .and_then(|_| vfs.sync_dir(dir));
        if let Err(e) = written {
            // Nothing was acknowledged in it; a leftover would only confuse recovery.
            let _ = vfs.remove_file(&path);
            return Err(Error::io(&path, "write segment header", e));
        }
        Ok(ActiveSegment {
            id: header.segment_id,
            partition_id: header.partition_id,
            path,
            file,
            end: SEGMENT_HEADER_BYTES as u64,
            entries: Vec::new(),
            sequences: (0, 0),
            created_ms: header.created_ms,
            part_lists: Vec::new(),
            sealing: sealing.clone(),
        })
    }

    /// Continue appending to a segment recovered at open.
    pub fn resume(
        loaded: &LoadedSegment,
        file: Arc<dyn VFile>,
        sealing: &Sealing,
    ) -> ActiveSegment {
        ActiveSegment {
            id: loaded.header.segment_id,
            partition_id: loaded.header.partition_id,
            path: loaded.path.clone(),
            file,
            end: loaded.data_end,
            entries: loaded.entries.clone(),
            sequences: loaded.sequences,
            created_ms: loaded.header.created_ms,
            part_lists: loaded.part_lists.clone(),
            sealing: sealing.clone(),
        }
    }

    /// Append one record at the end. On a failed write the file is cut back
    /// to where it was, so a failure leaves no partial record; if even that
    /// fails, the error says so and the caller must stop writing.
    pub fn append(&mut self, header: &RecordHeader, payload: &[u8]) -> Result<AppendOutcome> {
        let offset = self.end;
        if header.sealed.is_some() != self.sealing.keys().is_some() {
            // A record built without the store's sealing: never written.
            return Err(Error::Crypto(format!(
                "segment {}: a {:?} record {} the store's sealing",
                self.id,
                header.kind,
                if header.sealed.is_some() {
                    "sealed against"
                } else {
                    "in the clear against"
                }
            )));
        }
        // Small records go out in one write; a large payload is written from
        // the caller's buffer rather than copied (a 2 GiB item stays 2 GiB).
        if payload.len() <= SMALL_RECORD_BYTES {
            let mut buf = Vec::with_capacity(RECORD_HEADER_BYTES + payload.len());
            buf.extend_from_slice(&header.encode());
            buf.extend_from_slice(payload);
            self.write_or_cut(&buf, offset)?;
        } else {
            self.write_or_cut(&header.encode(), offset)?;
            self.write_or_cut(payload, offset + RECORD_HEADER_BYTES as u64)?;
        }
        self.end += header.record_bytes();
        self.entries.push(FooterEntry::of(header, offset));
        self.note_sequence(header.sequence);
        Ok(AppendOutcome { offset })
    }

    /// Append records copied verbatim (compaction) in one write. Returns
    /// their offsets. On failure the file is cut back as for [`Self::append`].
    pub fn append_many(&mut self, records: &[(RecordHeader, &[u8])]) -> Result<Vec<u64>> {
        let total: u64 = records.iter().map(|(h, _)| h.record_bytes()).sum();
        let mut buf = Vec::with_capacity(total as usize);
        let mut offsets = Vec::with_capacity(records.len());
        for (h, payload) in records {
            offsets.push(self.end + buf.len() as u64);
            buf.extend_from_slice(&h.encode());
            buf.extend_from_slice(payload);
        }
        self.write_or_cut(&buf, self.end)?;
        for ((h, _), offset) in records.iter().zip(&offsets) {
            self.entries.push(FooterEntry::of(h, *offset));
            self.note_sequence(h.sequence);
        }
        self.end += total;
        Ok(offsets)
    }

    /// Copy one large record verbatim from `src` (segment `src_segment`,
    /// record at `src_offset` with header `header`) in pieces of
    /// `piece` bytes, so memory stays bounded; the crc is checked over what
    /// was read, and a mismatch is an error naming the source.
    pub fn append_streamed(
        &mut self,
        header: &RecordHeader,
        src: &dyn VFile,
        src_segment: u32,
        src_offset: u64,
        piece: usize,
    ) -> Result<u64> {
        let offset = self.end;
        let mut crc = header.crc_hasher();
        let mut buf = vec![0u8; piece.min(header.stored_len as usize).max(1)];
        self.write_or_cut(&header.encode(), offset)?;
        let mut done = 0u64;
        while done < header.stored_len {
            let n = (header.stored_len - done).min(buf.len() as u64) as usize;
            let at = src_offset + RECORD_HEADER_BYTES as u64 + done;
            let piece = buf.get_mut(..n).unwrap_or_default();
            src.read_exact_at(piece, at).map_err(|e| {
                Error::corrupt(src_segment, src_offset, format!("read failed: {e}"))
            })?;
            crc.update(piece);
            self.write_or_cut(piece, offset + RECORD_HEADER_BYTES as u64 + done)?;
            done += n as u64;
        }
        if crc.finalize() != header.crc {
            let _ = self.file.set_len(offset);
            return Err(Error::corrupt(src_segment, src_offset, "crc mismatch"));
        }
        self.end += header.record_bytes();
        self.entries.push(FooterEntry::of(header, offset));
        self.note_sequence(header.sequence);
        Ok(offset)
    }

    /// Write at `at`; on failure cut the file back to the last whole record,
    /// so a failure leaves no partial record (or say the writer must stop).
    fn write_or_cut(&self, buf: &[u8], at: u64) -> Result<()> {
        self.file.write_all_at(buf, at).map_err(|e| {
            if self.file.set_len(self.end).is_ok() {
                Error::io(&self.path, "append record", e)
            } else {
                Error::WriterFailed {
                    path: self.path.clone(),
                    detail: format!(
                        "append failed ({e}) and the partial record could not be cut off"
                    ),
                }
            }
        })
    }

    /// Compaction copies old records, so sequences in a segment are not
    /// always increasing: keep the true smallest and largest.
    fn note_sequence(&mut self, sequence: u64) {
        if self.sequences.0 == 0 || sequence < self.sequences.0 {
            self.sequences.0 = sequence;
        }
        self.sequences.1 = self.sequences.1.max(sequence);
    }

    /// Write the footer and trailer, make them durable, and rename the file
    /// to `.sealed`. Returns the sealed path and file length.
    pub fn seal(&self, vfs: &dyn Vfs) -> Result<(PathBuf, u64)> {
        let footer = encode_footer(&self.entries, self.end, self.sequences, &self.part_lists);
        // The footer is not a log record: sequence 0, which no record has.
        let (header, payload) = build_record(
            &self.sealing,
            Some(self.id),
            RecordKind::Footer,
            Codec::Raw,
            footer.len() as u64,
            0,
            [0; 32],
            &footer,
        )?;
        let mut buf = Vec::with_capacity(RECORD_HEADER_BYTES + payload.len() + TRAILER_BYTES);
        buf.extend_from_slice(&header.encode());
        buf.extend_from_slice(&payload);
        buf.extend_from_slice(&encode_trailer(self.end));
        let len = self.end + buf.len() as u64;
        self.file
            .write_all_at(&buf, self.end)
            .map_err(|e| Error::io(&self.path, "write footer", e))?;
        self.file
            .sync_data()
            .map_err(|e| Error::io(&self.path, "fsync segment", e))?;
        let sealed = self.path.with_file_name(segment_file_name(self.id, true));
        vfs.rename(&self.path, &sealed)
            .map_err(|e| Error::io(&self.path, "rename sealed segment", e))?;
        let dir = sealed.parent().unwrap_or(Path::new("."));
        vfs.sync_dir(dir)
            .map_err(|e| Error::io(dir, "fsync directory", e))?;
        Ok((sealed, len))
    }
}

/// Where an append put a record.
#[derive(Debug, Clone, Copy)]
pub struct AppendOutcome {
    /// Offset of the record header.
    pub offset: u64,
}

/// What loading or scanning a segment found.
#[derive(Debug, Clone)]
pub struct LoadedSegment {
    /// The file it came from.
    pub path: PathBuf,
    /// Its header.
    pub header: SegmentHeader,
    /// Every valid record, in file order (footer excluded).
    pub entries: Vec<FooterEntry>,
    /// End of the valid records (where a footer is or the next record goes).
    pub data_end: u64,
    /// Length of the file as found.
    pub file_len: u64,
    /// Smallest and largest sequence number.
    pub sequences: (u64, u64),
    /// True when a valid footer and trailer close the file.
    pub has_footer: bool,
    /// The first bad record, if the scan stopped early: offset and why.
    pub damage: Option<(u64, String)>,
    /// The parts each composite record lists (entry indices into `entries`).
    pub part_lists: Vec<PartList>,
}

impl LoadedSegment {
    /// The part list of the composite record at `offset`, if any.
    pub fn part_list_at(&self, offset: u64) -> Option<&PartList> {
        self.part_lists.iter().find(|l| {
            self.entries
                .get(l.entry as usize)
                .is_some_and(|e| e.offset == offset)
        })
    }
}

impl LoadedSegment {
    /// Sum of logical bytes of the saveset records.
    pub fn saveset_logical_bytes(&self) -> u64 {
        let whole: u64 = self
            .entries
            .iter()
            .filter(|e| e.kind == RecordKind::Saveset)
            .map(|e| e.logical_len)
            .sum();
        whole + self.part_lists.iter().map(|l| l.message_len).sum::<u64>()
    }

    /// Number of part records and their bytes (headers included).
    pub fn part_records(&self) -> (u64, u64) {
        self.entries
            .iter()
            .filter(|e| e.kind == RecordKind::Part)
            .fold((0, 0), |(n, b), e| {
                (n + 1, b + RECORD_HEADER_BYTES as u64 + e.stored_len)
            })
    }
}

/// Read and check the segment header of `file`.
pub fn read_header(
    file: &dyn VFile,
    segment: u32,
    file_len: u64,
    sealing: &Sealing,
) -> Result<SegmentHeader> {
    if file_len < SEGMENT_HEADER_BYTES as u64 {
        return Err(Error::corrupt(
            segment,
            0,
            format!("file is {file_len} bytes, shorter than a segment header"),
        ));
    }
    let mut b = [0u8; SEGMENT_HEADER_BYTES];
    file.read_exact_at(&mut b, 0)
        .map_err(|e| Error::corrupt(segment, 0, format!("cannot read header: {e}")))?;
    let h = SegmentHeader::decode(&b).map_err(|d| Error::corrupt(segment, 0, d))?;
    if h.segment_id != segment {
        return Err(Error::corrupt(
            segment,
            0,
            format!("header names segment {}", h.segment_id),
        ));
    }
    match sealing.keys() {
        None if h.encrypted => Err(Error::corrupt(
            segment,
            0,
            "the segment is encrypted but the store is not",
        )),
        Some(_) if !h.encrypted => Err(Error::corrupt(
            segment,
            0,
            "the segment is in the clear in an encrypted store",
        )),
        Some(keys) if keys.header_tag(&h.tagged_bytes()) != h.tag => Err(Error::corrupt(
            segment,
            0,
            "segment header tag mismatch (damaged, or of another store or key)",
        )),
        _ => Ok(h),
    }
}

/// `header` as this store writes it: tagged and of format version 2 when
/// the store is encrypted.
pub fn sealed_header(sealing: &Sealing, mut header: SegmentHeader) -> SegmentHeader {
    header.encrypted = sealing.keys().is_some();
    header.tag = [0; 12];
    if let Some(keys) = sealing.keys() {
        header.tag = keys.header_tag(&header.tagged_bytes());
    }
    header
}

/// A record ready to append: its header and its payload as written. In an
/// encrypted store the payload is sealed and the header carries the keyed
/// id; `header.id` stays the plain id, for the footer. `footer_of` names
/// the segment a footer closes (a footer is bound to it).
#[allow(clippy::too_many_arguments)]
pub fn build_record<'a>(
    sealing: &Sealing,
    footer_of: Option<u32>,
    kind: RecordKind,
    codec: Codec,
    logical_len: u64,
    sequence: u64,
    id: [u8; 32],
    encoded: &'a [u8],
) -> Result<(RecordHeader, std::borrow::Cow<'a, [u8]>)> {
    let Some(keys) = sealing.keys() else {
        let h = RecordHeader::new(kind, codec, logical_len, sequence, id, encoded);
        return Ok((h, std::borrow::Cow::Borrowed(encoded)));
    };
    let keyed = if kind == RecordKind::Footer {
        [0; 32]
    } else {
        keys.keyed_id(&id)
    };
    let mut h = RecordHeader::unsealed(
        kind,
        codec,
        encoded.len() as u64,
        logical_len,
        sequence,
        id,
        keyed,
    );
    let sealed = keys.seal(footer_of, &h.body_bytes(), &id, encoded)?;
    h.set_crc(&sealed);
    Ok((h, std::borrow::Cow::Owned(sealed)))
}

/// Open the payload of a record whose crc was checked: in an encrypted
/// store, authenticate and decrypt it and check that the keyed id in the
/// header is the one of the plain id inside (then `h.id` is the plain id).
/// A record of the wrong kind for the store is damage.
pub fn open_payload(
    sealing: &Sealing,
    segment: u32,
    offset: u64,
    mut h: RecordHeader,
    payload: Vec<u8>,
) -> Result<(RecordHeader, Vec<u8>)> {
    match (sealing.keys(), h.sealed) {
        (None, None) => Ok((h, payload)),
        (None, Some(_)) => Err(Error::corrupt(
            segment,
            offset,
            "sealed record in a store that is not encrypted",
        )),
        (Some(_), None) => Err(Error::corrupt(
            segment,
            offset,
            "record in the clear in an encrypted store",
        )),
        (Some(keys), Some(keyed)) => {
            let footer_of = (h.kind == RecordKind::Footer).then_some(segment);
            let (id, encoded) = keys
                .open(footer_of, &h.body_bytes(), payload)
                .map_err(|d| Error::corrupt(segment, offset, d))?;
            let expected = if h.kind == RecordKind::Footer {
                (id == [0; 32]).then_some([0; 32])
            } else {
                Some(keys.keyed_id(&id))
            };
            if expected != Some(keyed) {
                return Err(Error::corrupt(
                    segment,
                    offset,
                    "the keyed id in the header is not the sealed id's",
                ));
            }
            h.id = id;
            Ok((h, encoded))
        }
    }
}

/// Check a record header read without its payload against the footer
/// entry that lists it (id, length, sequence); on success the header names
/// the plain id, as an opened one does.
pub fn matches_entry(sealing: &Sealing, h: &mut RecordHeader, e: &FooterEntry) -> bool {
    let same = h.id == sealing.disk_id(&e.id)
        && h.sealed.is_some() == sealing.keys().is_some()
        && h.stored_len == e.stored_len
        && h.sequence == e.sequence;
    if same {
        h.id = e.id;
    }
    same
}

/// Load a sealed segment from its trailer and footer only (fast path at open).
pub fn load_sealed(
    path: &Path,
    file: &dyn VFile,
    segment: u32,
    sealing: &Sealing,
) -> Result<LoadedSegment> {
    let file_len = file.len().map_err(|e| Error::io(path, "stat segment", e))?;
    let header = read_header(file, segment, file_len, sealing)?;
    let min_len = (SEGMENT_HEADER_BYTES + RECORD_HEADER_BYTES + TRAILER_BYTES) as u64;
    if file_len < min_len {
        return Err(Error::corrupt(
            segment,
            file_len,
            "sealed segment too short for a footer",
        ));
    }
    let trailer_at = file_len - TRAILER_BYTES as u64;
    let mut t = [0u8; TRAILER_BYTES];
    file.read_exact_at(&mut t, trailer_at)
        .map_err(|e| Error::io(path, "read trailer", e))?;
    let footer_at = decode_trailer(&t)
        .ok_or_else(|| Error::corrupt(segment, trailer_at, "bad trailer magic"))?;
    if footer_at < SEGMENT_HEADER_BYTES as u64
        || footer_at + RECORD_HEADER_BYTES as u64 > trailer_at
    {
        return Err(Error::corrupt(
            segment,
            trailer_at,
            "trailer points outside the file",
        ));
    }
    let (h, payload) = read_record_at(file, segment, footer_at, trailer_at, sealing)?;
    if h.kind != RecordKind::Footer {
        return Err(Error::corrupt(
            segment,
            footer_at,
            "trailer does not point at a footer",
        ));
    }
    if footer_at + h.record_bytes() != trailer_at {
        return Err(Error::corrupt(
            segment,
            footer_at,
            "footer does not end at the trailer",
        ));
    }
    let footer = decode_footer(&payload).map_err(|d| Error::corrupt(segment, footer_at, d))?;
    check_summary(segment, footer_at, &footer.summary)?;
    let summary = footer.summary;
    let entries = footer.entries;
    Ok(LoadedSegment {
        path: path.to_path_buf(),
        header,
        entries,
        data_end: footer_at,
        file_len,
        sequences: (summary.sequence_min, summary.sequence_max),
        has_footer: true,
        damage: None,
        part_lists: footer.part_lists,
    })
}

fn check_summary(segment: u32, footer_at: u64, s: &FooterSummary) -> Result<()> {
    if s.data_end != footer_at {
        return Err(Error::corrupt(
            segment,
            footer_at,
            "footer summary disagrees with its offset",
        ));
    }
    Ok(())
}

/// Read the record at `offset`, checking its header, that it ends before
/// `limit`, and its crc. The payload is returned still encoded. Made for
/// reads at random places (a `get`): one disk operation up to
/// [`READ_AHEAD_BYTES`]; a scan that knows each record's size reads it
/// exactly with [`read_record_sized_at`].
pub fn read_record_at(
    file: &dyn VFile,
    segment: u32,
    offset: u64,
    limit: u64,
    sealing: &Sealing,
) -> Result<(RecordHeader, Vec<u8>)> {
    let (h, payload) = read_record_with(file, segment, offset, limit, READ_AHEAD_BYTES)?;
    open_payload(sealing, segment, offset, h, payload)
}

/// [`read_record_at`] for a record whose payload is said (by a footer) to
/// be `stored_len` bytes: one read of exactly header and payload, checked
/// the same way.
pub fn read_record_sized_at(
    file: &dyn VFile,
    segment: u32,
    offset: u64,
    limit: u64,
    stored_len: u64,
    sealing: &Sealing,
) -> Result<(RecordHeader, Vec<u8>)> {
    let exact = (RECORD_HEADER_BYTES as u64).saturating_add(stored_len);
    let (h, payload) = read_record_with(file, segment, offset, limit, exact)?;
    open_payload(sealing, segment, offset, h, payload)
}

fn read_record_with(
    file: &dyn VFile,
    segment: u32,
    offset: u64,
    limit: u64,
    read_ahead: u64,
) -> Result<(RecordHeader, Vec<u8>)> {
    if offset + RECORD_HEADER_BYTES as u64 > limit {
        return Err(Error::corrupt(
            segment,
            offset,
            "record header runs past the end",
        ));
    }
    // One read for the header and, speculatively, the payload: a record of
    // up to READ_AHEAD_BYTES (most mail) costs a single disk operation.
    let first = (limit - offset)
        .min(read_ahead)
        .max(RECORD_HEADER_BYTES as u64) as usize;
    let mut buf = vec![0u8; first];
    file.read_exact_at(&mut buf, offset)
        .map_err(|e| read_error(segment, offset, e))?;
    let hb = buf
        .get(..RECORD_HEADER_BYTES)
        .ok_or_else(|| Error::corrupt(segment, offset, "record header runs past the end"))?;
    let h = RecordHeader::decode(hb).map_err(|d| Error::corrupt(segment, offset, d))?;
    let end = offset + h.record_bytes();
    if end > limit {
        return Err(Error::corrupt(
            segment,
            offset,
            format!("record of {} bytes runs past the end", h.stored_len),
        ));
    }
    let stored = h.stored_len as usize;
    let payload = if RECORD_HEADER_BYTES + stored <= buf.len() {
        buf.truncate(RECORD_HEADER_BYTES + stored);
        buf.drain(..RECORD_HEADER_BYTES);
        buf
    } else {
        // A larger record: the rest in a second read, into place.
        let mut payload = vec![0u8; stored];
        let have = buf.len() - RECORD_HEADER_BYTES;
        let (head, rest) = payload.split_at_mut(have);
        head.copy_from_slice(buf.get(RECORD_HEADER_BYTES..).unwrap_or_default());
        file.read_exact_at(rest, offset + buf.len() as u64)
            .map_err(|e| read_error(segment, offset, e))?;
        payload
    };
    if !h.crc_matches(&payload) {
        return Err(Error::corrupt(segment, offset, "crc mismatch"));
    }
    Ok((h, payload))
}

/// Bytes `read_record_at` reads at once: a record (header and payload) up
/// to this size is read with one disk operation.
pub const READ_AHEAD_BYTES: u64 = 64 << 10;

fn read_error(segment: u32, offset: u64, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        Error::corrupt(segment, offset, "file ends inside the record")
    } else {
        Error::corrupt(segment, offset, format!("read failed: {e}"))
    }
}

/// Walk a segment record by record from its header. Stops at the first
/// record that does not check out (recording where and why in `damage`) or
/// at a valid footer. Used for the active segment at open, for a sealed
/// segment whose footer is damaged, and by verify.
pub fn scan(
    path: &Path,
    file: &dyn VFile,
    segment: u32,
    sealing: &Sealing,
) -> Result<LoadedSegment> {
    let file_len = file.len().map_err(|e| Error::io(path, "stat segment", e))?;
    let header = read_header(file, segment, file_len, sealing)?;
    let mut out = LoadedSegment {
        path: path.to_path_buf(),
        header,
        entries: Vec::new(),
        data_end: SEGMENT_HEADER_BYTES as u64,
        file_len,
        sequences: (0, 0),
        has_footer: false,
        damage: None,
        part_lists: Vec::new(),
    };
    let mut offset = SEGMENT_HEADER_BYTES as u64;
    let mut window = Window::default();
    while offset < file_len {
        let (h, payload) = match window.record(file, segment, offset, file_len, sealing) {
            Ok(r) => r,
            Err(e) => {
                out.damage = Some((offset, detail_of(e)));
                break;
            }
        };
        if h.kind == RecordKind::Footer {
            let trailer_ok = offset + h.record_bytes() + TRAILER_BYTES as u64 == file_len
                && decode_footer(&payload).is_ok();
            if trailer_ok {
                out.has_footer = true;
            } else {
                out.damage = Some((offset, "footer is damaged or not at the end".into()));
            }
            break;
        }
        if h.kind == RecordKind::Composite {
            match part_list_of(&h, &payload) {
                Ok((message_len, parts)) => out.part_lists.push(PartList {
                    entry: out.entries.len() as u32,
                    message_len,
                    parts,
                }),
                Err(d) => {
                    out.damage = Some((offset, d));
                    break;
                }
            }
        }
        if out.sequences.0 == 0 || h.sequence < out.sequences.0 {
            out.sequences.0 = h.sequence;
        }
        out.sequences.1 = out.sequences.1.max(h.sequence);
        out.entries.push(FooterEntry::of(&h, offset));
        offset += h.record_bytes();
        out.data_end = offset;
    }
    Ok(out)
}

/// Read the record at `offset` (checked like [`read_record_at`]), decode
/// it, and check that its content hashes to its id. For records whose id is
/// the blake3 of their content: batches, compaction records, parts.
pub fn read_content_at(
    file: &dyn VFile,
    segment: u32,
    offset: u64,
    limit: u64,
    sealing: &Sealing,
) -> Result<(RecordHeader, Vec<u8>)> {
    let (h, payload) = read_record_at(file, segment, offset, limit, sealing)?;
    let content = crate::format::segment::decode_payload(h.codec, payload, h.logical_len)
        .map_err(|d| Error::corrupt(segment, offset, d))?;
    if *blake3::hash(&content).as_bytes() != h.id {
        return Err(Error::corrupt(segment, offset, "hash mismatch"));
    }
    Ok((h, content))
}

/// The message length and distinct part ids a composite record's payload lists.
pub fn part_list_of(
    h: &RecordHeader,
    payload: &[u8],
) -> std::result::Result<(u64, Vec<[u8; 32]>), String> {
    let decoded = crate::format::segment::decode_payload(h.codec, payload.to_vec(), h.logical_len)?;
    let recipe = crate::format::composite::Recipe::decode(&decoded)?;
    let len = recipe
        .rebuilt_len()
        .ok_or("recipe rebuilds to more bytes than a record holds")?;
    let mut ids: Vec<[u8; 32]> = Vec::with_capacity(recipe.parts.len());
    for p in &recipe.parts {
        if !ids.contains(&p.id) {
            ids.push(p.id);
        }
    }
    Ok((len, ids))
}

/// A read-ahead buffer for walking a segment: one `pread` of up to 4 MiB
/// serves many small records instead of two calls per record.
#[derive(Default)]
struct Window {
    start: u64,
    buf: Vec<u8>,
}

const WINDOW_BYTES: u64 = 4 << 20;

impl Window {
    /// `len` bytes at `offset` (which the caller checked lie before `limit`).
    fn bytes(
        &mut self,
        file: &dyn VFile,
        segment: u32,
        offset: u64,
        len: u64,
        limit: u64,
    ) -> Result<&[u8]> {
        let inside = offset >= self.start && offset + len <= self.start + self.buf.len() as u64;
        if !inside {
            let want = len.max(WINDOW_BYTES).min(limit - offset);
            self.buf.resize(want as usize, 0);
            file.read_exact_at(&mut self.buf, offset)
                .map_err(|e| read_error(segment, offset, e))?;
            self.start = offset;
        }
        let at = (offset - self.start) as usize;
        self.buf
            .get(at..at + len as usize)
            .ok_or_else(|| Error::corrupt(segment, offset, "read window is short"))
    }

    /// The record at `offset`, checked and opened like [`read_record_at`];
    /// the payload of a record in the clear borrows the window.
    fn record(
        &mut self,
        file: &dyn VFile,
        segment: u32,
        offset: u64,
        limit: u64,
        sealing: &Sealing,
    ) -> Result<(RecordHeader, std::borrow::Cow<'_, [u8]>)> {
        if offset + RECORD_HEADER_BYTES as u64 > limit {
            return Err(Error::corrupt(
                segment,
                offset,
                "record header runs past the end",
            ));
        }
        let hb = self.bytes(file, segment, offset, RECORD_HEADER_BYTES as u64, limit)?;
        let h = RecordHeader::decode(hb).map_err(|d| Error::corrupt(segment, offset, d))?;
        if offset + h.record_bytes() > limit {
            return Err(Error::corrupt(
                segment,
                offset,
                format!("record of {} bytes runs past the end", h.stored_len),
            ));
        }
        let payload = self.bytes(
            file,
            segment,
            offset + RECORD_HEADER_BYTES as u64,
            h.stored_len,
            limit,
        )?;
        if !h.crc_matches(payload) {
            return Err(Error::corrupt(segment, offset, "crc mismatch"));
        }
        if h.sealed.is_none() && sealing.keys().is_none() {
            return Ok((h, std::borrow::Cow::Borrowed(payload)));
        }
        // A sealed saveset or part: only its id is needed (and checked
        // against the keyed one); the rest is opened when it is read.
        if let (Some(keys), Some(keyed), true) = (sealing.keys(), h.sealed, skims(h.kind)) {
            let mut h = h;
            h.id = keys
                .peek_id(&keyed, payload)
                .map_err(|d| Error::corrupt(segment, offset, d))?;
            return Ok((h, std::borrow::Cow::Borrowed(&[])));
        }
        let (h, opened) = open_payload(sealing, segment, offset, h, payload.to_vec())?;
        Ok((h, std::borrow::Cow::Owned(opened)))
    }
}

/// Records a scan reads only the id of, in an encrypted store: whole
/// savesets and parts. Composite recipes (their part lists), batches,
/// compaction records and footers are opened whole.
fn skims(kind: RecordKind) -> bool {
    matches!(kind, RecordKind::Saveset | RecordKind::Part)
}

/// The detail of a corruption error without its segment/offset prefix.
pub(crate) fn detail_of(e: Error) -> String {
    match e {
        Error::Corrupt { detail, .. } => detail,
        other => other.to_string(),
    }
}
