//! The rows of the three checkpoint kinds (format-spec/checkpoint.md,
//! "Kind 1", "Kind 2", "Kind 3"): fixed-size encodings and their checked
//! decodings. Bytes only: the container is [`super::checkpoint`], the
//! state they describe is the engine's.

use super::Reader;
use super::checkpoint::Table;

/// Table ids of the files kind.
pub mod files {
    /// The sealed segments covered.
    pub const SEGMENTS: u32 = 1;
    /// The saveset index.
    pub const SAVESETS: u32 = 2;
    /// The part index.
    pub const PARTS: u32 = 3;
    /// Part reference counts.
    pub const PART_REFS: u32 = 4;
    /// Segments compactions replaced.
    pub const REMOVED: u32 = 5;
    /// The active segment at the snapshot.
    pub const TAIL: u32 = 6;
    /// The fanout of the saveset index.
    pub const SAVESET_FANOUT: u32 = 7;
}

/// Table ids of the messages kind.
pub mod messages {
    /// Owners by name.
    pub const OWNERS: u32 = 1;
    /// Items, grouped by owner.
    pub const ITEMS: u32 = 2;
    /// References by saveset.
    pub const REFERENCES: u32 = 3;
    /// The names blob.
    pub const NAMES: u32 = 4;
    /// The fanout of the references table.
    pub const REFERENCE_FANOUT: u32 = 5;
    /// Each owner's item filter (format-spec/checkpoint.md, table 6).
    pub const ITEM_FILTER: u32 = 6;
}

/// Table ids of the properties kind.
pub mod properties {
    /// Savesets awaiting IndexCommitted.
    pub const AWAITING_INDEX: u32 = 1;
    /// Backup marks.
    pub const MARKS: u32 = 2;
    /// Compaction outputs complete.
    pub const COMPLETE: u32 = 3;
    /// The feed.
    pub const FEED: u32 = 4;
    /// Mode and cursor.
    pub const SETTINGS: u32 = 5;
}

fn short(what: &str) -> String {
    format!("{what} row truncated")
}

/// A covered sealed segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SegmentRow {
    /// Id.
    pub id: u32,
    /// Partition id.
    pub partition: u32,
    /// File length in bytes.
    pub file_len: u64,
    /// Saveset records, dead ones included.
    pub saveset_records: u64,
    /// Live savesets.
    pub savesets: u64,
    /// Their logical bytes.
    pub logical_bytes: u64,
    /// Dead savesets.
    pub dead_savesets: u64,
    /// Record bytes of dead savesets and parts.
    pub dead_bytes: u64,
    /// Live part records.
    pub parts: u64,
    /// Their bytes.
    pub part_bytes: u64,
    /// Created at, Unix ms.
    pub created_ms: u64,
}

impl SegmentRow {
    /// Bytes a row.
    pub const BYTES: usize = 88;

    /// Encode.
    pub fn encode(&self) -> [u8; Self::BYTES] {
        let mut out = [0u8; Self::BYTES];
        let mut w = Put(&mut out, 0);
        w.u32(self.id);
        w.u32(self.partition);
        for v in [
            self.file_len,
            self.saveset_records,
            self.savesets,
            self.logical_bytes,
            self.dead_savesets,
            self.dead_bytes,
            self.parts,
            self.part_bytes,
            self.created_ms,
        ] {
            w.u64(v);
        }
        out
    }

    /// Decode.
    pub fn decode(b: &[u8]) -> Result<SegmentRow, String> {
        let mut r = Reader::new(b);
        let s = || short("segment");
        Ok(SegmentRow {
            id: r.u32().ok_or_else(s)?,
            partition: r.u32().ok_or_else(s)?,
            file_len: r.u64().ok_or_else(s)?,
            saveset_records: r.u64().ok_or_else(s)?,
            savesets: r.u64().ok_or_else(s)?,
            logical_bytes: r.u64().ok_or_else(s)?,
            dead_savesets: r.u64().ok_or_else(s)?,
            dead_bytes: r.u64().ok_or_else(s)?,
            parts: r.u64().ok_or_else(s)?,
            part_bytes: r.u64().ok_or_else(s)?,
            created_ms: r.u64().ok_or_else(s)?,
        })
    }
}

/// The tail row: the segment active at the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TailRow {
    /// Segment id.
    pub id: u32,
    /// Partition id.
    pub partition: u32,
    /// Its bytes then.
    pub bytes: u64,
    /// Its live saveset and part records then.
    pub live: u64,
}

impl TailRow {
    /// Bytes a row.
    pub const BYTES: usize = 24;

    /// Encode.
    pub fn encode(&self) -> [u8; Self::BYTES] {
        let mut out = [0u8; Self::BYTES];
        let mut w = Put(&mut out, 0);
        w.u32(self.id);
        w.u32(self.partition);
        w.u64(self.bytes);
        w.u64(self.live);
        out
    }

    /// Decode.
    pub fn decode(b: &[u8]) -> Result<TailRow, String> {
        let mut r = Reader::new(b);
        let s = || short("tail");
        Ok(TailRow {
            id: r.u32().ok_or_else(s)?,
            partition: r.u32().ok_or_else(s)?,
            bytes: r.u64().ok_or_else(s)?,
            live: r.u64().ok_or_else(s)?,
        })
    }
}

/// An index row: id, segment, offset.
pub fn encode_location(id: &[u8; 32], segment: u32, offset: u32) -> [u8; 40] {
    let mut out = [0u8; 40];
    let mut w = Put(&mut out, 0);
    w.bytes(id);
    w.u32(segment);
    w.u32(offset);
    out
}

/// Decode an index row.
pub fn decode_location(b: &[u8]) -> Result<([u8; 32], u32, u32), String> {
    let mut r = Reader::new(b);
    let s = || short("index");
    Ok((
        r.array().ok_or_else(s)?,
        r.u32().ok_or_else(s)?,
        r.u32().ok_or_else(s)?,
    ))
}

/// Fanout bits for a table of `rows` ids: about 64 rows a bucket, so a
/// lookup reads one fanout entry pair and a page or two of rows.
pub fn fanout_bits_for(rows: u64) -> u32 {
    fanout_bits_with(rows, 64)
}

/// Fanout bits for `rows` ids, about `per_bucket` a bucket (at most
/// [`MAX_FANOUT_BITS`]).
pub fn fanout_bits_with(rows: u64, per_bucket: u64) -> u32 {
    (rows / per_bucket.max(1))
        .max(1)
        .ilog2()
        .min(MAX_FANOUT_BITS)
}

/// At most 2^24 buckets (128 MiB of fanout).
pub const MAX_FANOUT_BITS: u32 = 24;

/// The bucket of `id` under `bits` fanout bits: its top bits, big-endian.
pub fn fanout_bucket(id: &[u8; 32], bits: u32) -> usize {
    let mut b = [0u8; 8];
    b.copy_from_slice(&id[..8]);
    u64::from_be_bytes(b)
        .checked_shr(64 - bits)
        .filter(|_| bits > 0)
        .unwrap_or(0) as usize
}

/// The bytes of the rows of `table` (`row_bytes` each) in `id`'s bucket
/// of `fanout` (`bits` bits, as [`decode_fanout`] returned it): the rows a
/// search for `id` needs, their blocks checked.
pub fn bucket_rows<'a>(
    table: &Table<'a, '_>,
    fanout: &[u64],
    bits: u32,
    id: &[u8; 32],
    row_bytes: u64,
) -> Result<&'a [u8], String> {
    let b = fanout_bucket(id, bits);
    match (fanout.get(b), fanout.get(b + 1)) {
        (Some(&lo), Some(&hi)) if lo <= hi => table.range(lo * row_bytes, (hi - lo) * row_bytes),
        _ => Err(format!("fanout bucket {b} out of range")),
    }
}

/// The first of `rows` (one fanout bucket's, `row_bytes` each, sorted by
/// their leading 32-byte id) whose id is not less than `id`: a binary
/// search on the ids' first 8 bytes (a compare of two numbers, not of two
/// slices), then a walk over any rows that share them. Rows out of order
/// (a damaged file the block checks passed) give a wrong row, never a
/// panic.
pub fn lower_bound_in_bucket(rows: &[u8], row_bytes: usize, id: &[u8; 32]) -> usize {
    let key = prefix_of(id);
    let row = |i: usize| rows.get(i * row_bytes..(i + 1) * row_bytes).unwrap_or(&[]);
    let n = rows.len() / row_bytes.max(1);
    let (mut first, mut len) = (0usize, n);
    while len > 1 {
        let half = len / 2;
        if prefix_of(row(first + half - 1)) < key {
            first += half;
        }
        len -= half;
    }
    if len == 1 && prefix_of(row(first)) < key {
        first += 1;
    }
    while first < n && prefix_of(row(first)) == key && row(first).get(..32) < Some(&id[..]) {
        first += 1;
    }
    first
}

/// The first 8 bytes of an id (or row) as a big-endian number: ids compare
/// as their prefixes do, unless those are equal.
fn prefix_of(bytes: &[u8]) -> u64 {
    bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

/// The same, with the fanout read where it is mapped (`fanout`, checked
/// whole at open by [`decode_fanout`]) rather than kept in memory: a
/// fanout fine enough for a bucket of a few rows costs the heap nothing.
pub fn bucket_rows_mapped<'a>(
    table: &Table<'a, '_>,
    fanout: &Table<'_, '_>,
    bits: u32,
    id: &[u8; 32],
    row_bytes: u64,
) -> Result<&'a [u8], String> {
    let b = fanout_bucket(id, bits) as u64;
    let pair = fanout.range(b * 8, 16)?;
    let entry = |at: usize| {
        pair.get(at..at + 8)
            .and_then(|e| e.try_into().ok())
            .map(u64::from_le_bytes)
    };
    match (entry(0), entry(8)) {
        (Some(lo), Some(hi)) if lo <= hi => table.range(lo * row_bytes, (hi - lo) * row_bytes),
        _ => Err(format!("fanout bucket {b} out of range")),
    }
}

/// Counts ids into buckets while a sorted table is written; `rows` then
/// gives the fanout table's rows.
#[derive(Debug)]
pub struct FanoutBuilder {
    bits: u32,
    starts: Vec<u64>,
    rows: u64,
}

impl FanoutBuilder {
    /// A fanout of `bits` bits.
    pub fn new(bits: u32) -> FanoutBuilder {
        FanoutBuilder {
            bits,
            starts: vec![0; (1usize << bits) + 1],
            rows: 0,
        }
    }

    /// The next id of the table (ids come sorted).
    pub fn add(&mut self, id: &[u8; 32]) {
        if let Some(n) = self.starts.get_mut(fanout_bucket(id, self.bits) + 1) {
            *n += 1;
        }
        self.rows += 1;
    }

    /// The fanout rows: entry b is the first row whose bucket is b or later;
    /// the last is the number of rows.
    pub fn rows(&self) -> Vec<u64> {
        let mut acc = 0;
        self.starts
            .iter()
            .map(|n| {
                acc += n;
                acc
            })
            .collect()
    }
}

/// Read a fanout table over a table of `rows` rows: its entries and its
/// bits, checked (2^bits + 1 entries, never decreasing, the last `rows`).
pub fn decode_fanout(table: &Table<'_, '_>, rows: u64) -> Result<(Vec<u64>, u32), String> {
    let n = table.rows();
    let bits = n.saturating_sub(1).checked_ilog2().unwrap_or(0);
    if n < 2 || n - 1 != 1 << bits || bits > MAX_FANOUT_BITS {
        return Err(format!("fanout of {n} entries is not 2^k + 1"));
    }
    let data = table.range(0, n * 8)?;
    let fanout: Vec<u64> = data
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
        .collect();
    let ordered = fanout.windows(2).all(|w| w.first() <= w.get(1));
    if fanout.first() != Some(&0) || !ordered || fanout.last() != Some(&rows) {
        return Err(format!("fanout does not describe a table of {rows} rows"));
    }
    Ok((fanout, bits))
}

/// A part reference row: id, count, decoded length.
pub fn encode_part_ref(id: &[u8; 32], count: u32, len: u64) -> [u8; 48] {
    let mut out = [0u8; 48];
    let mut w = Put(&mut out, 0);
    w.bytes(id);
    w.u32(count);
    w.u32(0);
    w.u64(len);
    out
}

/// Decode a part reference row.
pub fn decode_part_ref(b: &[u8]) -> Result<([u8; 32], u32, u64), String> {
    let mut r = Reader::new(b);
    let s = || short("part reference");
    let id = r.array().ok_or_else(s)?;
    let count = r.u32().ok_or_else(s)?;
    if r.u32().ok_or_else(s)? != 0 {
        return Err("part reference row: reserved bytes set".into());
    }
    Ok((id, count, r.u64().ok_or_else(s)?))
}

/// A removed segment row: segment, replaced by, at.
pub fn encode_removed(segment: u32, replaced_by: u32, at_ms: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    let mut w = Put(&mut out, 0);
    w.u32(segment);
    w.u32(replaced_by);
    w.u64(at_ms);
    out
}

/// Decode a removed segment row.
pub fn decode_removed(b: &[u8]) -> Result<(u32, u32, u64), String> {
    let mut r = Reader::new(b);
    let s = || short("removed segment");
    Ok((
        r.u32().ok_or_else(s)?,
        r.u32().ok_or_else(s)?,
        r.u64().ok_or_else(s)?,
    ))
}

/// An owner row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnerRow {
    /// Offset of the name in the names blob.
    pub name_offset: u64,
    /// Length of the name.
    pub name_len: u32,
    /// On legal hold.
    pub hold: bool,
    /// Its first item row.
    pub first_item: u64,
    /// Its items (live and in trash).
    pub items: u64,
    /// Of them in trash.
    pub trashed: u64,
    /// Where its items' names begin in the names blob (they follow each
    /// other in item row order, up to the next owner's): a page of its
    /// items asks for its rows and their names at once.
    pub item_names_offset: u64,
}

impl OwnerRow {
    /// Bytes a row.
    pub const BYTES: usize = 48;

    /// Encode.
    pub fn encode(&self) -> [u8; Self::BYTES] {
        let mut out = [0u8; Self::BYTES];
        let mut w = Put(&mut out, 0);
        w.u64(self.name_offset);
        w.u32(self.name_len);
        w.u32(u32::from(self.hold));
        w.u64(self.first_item);
        w.u64(self.items);
        w.u64(self.trashed);
        w.u64(self.item_names_offset);
        out
    }

    /// Decode.
    pub fn decode(b: &[u8]) -> Result<OwnerRow, String> {
        let mut r = Reader::new(b);
        let s = || short("owner");
        let name_offset = r.u64().ok_or_else(s)?;
        let name_len = r.u32().ok_or_else(s)?;
        let flags = r.u32().ok_or_else(s)?;
        if flags > 1 {
            return Err(format!("owner row: unknown flags {flags:#x}"));
        }
        Ok(OwnerRow {
            name_offset,
            name_len,
            hold: flags == 1,
            first_item: r.u64().ok_or_else(s)?,
            items: r.u64().ok_or_else(s)?,
            trashed: r.u64().ok_or_else(s)?,
            item_names_offset: r.u64().ok_or_else(s)?,
        })
    }
}

/// An item row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemRow {
    /// Offset of the name in the names blob.
    pub name_offset: u64,
    /// Length of the name.
    pub name_len: u32,
    /// On legal hold.
    pub hold: bool,
    /// When moved to trash, Unix ms.
    pub trashed_at_ms: Option<u64>,
    /// Id.
    pub id: [u8; 32],
}

const ITEM_HOLD: u32 = 1;
const ITEM_TRASHED: u32 = 2;

impl ItemRow {
    /// Bytes a row.
    pub const BYTES: usize = 56;

    /// Encode.
    pub fn encode(&self) -> [u8; Self::BYTES] {
        let mut out = [0u8; Self::BYTES];
        let mut w = Put(&mut out, 0);
        w.u64(self.name_offset);
        w.u32(self.name_len);
        let mut flags = 0;
        if self.hold {
            flags |= ITEM_HOLD;
        }
        if self.trashed_at_ms.is_some() {
            flags |= ITEM_TRASHED;
        }
        w.u32(flags);
        w.u64(self.trashed_at_ms.unwrap_or(0));
        w.bytes(&self.id);
        out
    }

    /// Decode.
    pub fn decode(b: &[u8]) -> Result<ItemRow, String> {
        let mut r = Reader::new(b);
        let s = || short("item");
        let name_offset = r.u64().ok_or_else(s)?;
        let name_len = r.u32().ok_or_else(s)?;
        let flags = r.u32().ok_or_else(s)?;
        if flags & !(ITEM_HOLD | ITEM_TRASHED) != 0 {
            return Err(format!("item row: unknown flags {flags:#x}"));
        }
        let at = r.u64().ok_or_else(s)?;
        if flags & ITEM_TRASHED == 0 && at != 0 {
            return Err("item row: a trash time without the trash flag".into());
        }
        Ok(ItemRow {
            name_offset,
            name_len,
            hold: flags & ITEM_HOLD != 0,
            trashed_at_ms: (flags & ITEM_TRASHED != 0).then_some(at),
            id: r.array().ok_or_else(s)?,
        })
    }
}

/// A reference row: saveset id, item row.
pub fn encode_reference(id: &[u8; 32], item_row: u64) -> [u8; 40] {
    let mut out = [0u8; 40];
    let mut w = Put(&mut out, 0);
    w.bytes(id);
    w.u64(item_row);
    out
}

/// Decode a reference row.
pub fn decode_reference(b: &[u8]) -> Result<([u8; 32], u64), String> {
    let mut r = Reader::new(b);
    let s = || short("reference");
    Ok((r.array().ok_or_else(s)?, r.u64().ok_or_else(s)?))
}

/// A segment row with a checksum (marks): 40 bytes.
pub fn encode_segment_sum(segment: u32, sum: &[u8; 32]) -> [u8; 40] {
    let mut out = [0u8; 40];
    let mut w = Put(&mut out, 0);
    w.u32(segment);
    w.u32(0);
    w.bytes(sum);
    out
}

/// Decode a segment row with a checksum.
pub fn decode_segment_sum(b: &[u8]) -> Result<(u32, [u8; 32]), String> {
    let mut r = Reader::new(b);
    let s = || short("segment checksum");
    let segment = r.u32().ok_or_else(s)?;
    if r.u32().ok_or_else(s)? != 0 {
        return Err("segment checksum row: reserved bytes set".into());
    }
    Ok((segment, r.array().ok_or_else(s)?))
}

/// A segment row (complete): 8 bytes.
pub fn encode_segment(segment: u32) -> [u8; 8] {
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&segment.to_le_bytes());
    out
}

/// Decode a segment row.
pub fn decode_segment(b: &[u8]) -> Result<u32, String> {
    let mut r = Reader::new(b);
    let s = || short("segment");
    let segment = r.u32().ok_or_else(s)?;
    if r.u32().ok_or_else(s)? != 0 {
        return Err("segment row: reserved bytes set".into());
    }
    Ok(segment)
}

/// A feed row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedRow {
    /// One segment of a backup mark event.
    Mark {
        /// The feed event's sequence.
        sequence: u64,
        /// The segment.
        segment: u32,
        /// Saveset records it makes ready.
        entries: u64,
    },
    /// A saveset stored under `immediately`.
    Stored {
        /// The event's sequence.
        sequence: u64,
        /// The saveset.
        id: [u8; 32],
    },
}

impl FeedRow {
    /// Bytes a row.
    pub const BYTES: usize = 56;

    /// Encode.
    pub fn encode(&self) -> [u8; Self::BYTES] {
        let mut out = [0u8; Self::BYTES];
        let mut w = Put(&mut out, 0);
        match self {
            FeedRow::Mark {
                sequence,
                segment,
                entries,
            } => {
                w.u64(*sequence);
                w.u32(1);
                w.u32(*segment);
                w.u64(*entries);
                w.bytes(&[0; 32]);
            }
            FeedRow::Stored { sequence, id } => {
                w.u64(*sequence);
                w.u32(2);
                w.u32(0);
                w.u64(0);
                w.bytes(id);
            }
        }
        out
    }

    /// Decode.
    pub fn decode(b: &[u8]) -> Result<FeedRow, String> {
        let mut r = Reader::new(b);
        let s = || short("feed");
        let sequence = r.u64().ok_or_else(s)?;
        let kind = r.u32().ok_or_else(s)?;
        let segment = r.u32().ok_or_else(s)?;
        let entries = r.u64().ok_or_else(s)?;
        let id: [u8; 32] = r.array().ok_or_else(s)?;
        match kind {
            1 if id == [0; 32] => Ok(FeedRow::Mark {
                sequence,
                segment,
                entries,
            }),
            2 if segment == 0 && entries == 0 => Ok(FeedRow::Stored { sequence, id }),
            _ => Err(format!(
                "feed row: kind {kind} with fields it does not have"
            )),
        }
    }
}

/// The settings row: safety copies immediately, cursor (sequence, index).
pub fn encode_settings(immediately: bool, ack: (u64, u64)) -> [u8; 24] {
    let mut out = [0u8; 24];
    let mut w = Put(&mut out, 0);
    w.u64(u64::from(immediately));
    w.u64(ack.0);
    w.u64(ack.1);
    out
}

/// Decode the settings row.
pub fn decode_settings(b: &[u8]) -> Result<(bool, (u64, u64)), String> {
    let mut r = Reader::new(b);
    let s = || short("settings");
    let mode = r.u64().ok_or_else(s)?;
    if mode > 1 {
        return Err(format!("settings row: safety copies {mode}"));
    }
    Ok((mode == 1, (r.u64().ok_or_else(s)?, r.u64().ok_or_else(s)?)))
}

/// A little-endian writer into a fixed buffer (sizes are the callers' constants).
struct Put<'a>(&'a mut [u8], usize);

impl Put<'_> {
    fn bytes(&mut self, b: &[u8]) {
        if let Some(dst) = self.0.get_mut(self.1..self.1 + b.len()) {
            dst.copy_from_slice(b);
        }
        self.1 += b.len();
    }
    fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mapped_fanout_finds_every_row_and_no_other() {
        use crate::format::checkpoint::{
            BlockChecks, CheckpointHeader, CheckpointKind, CheckpointWriter, Layout,
        };
        let mut ids: Vec<[u8; 32]> = (0u64..3000)
            .map(|n| *blake3::hash(&n.to_le_bytes()).as_bytes())
            .collect();
        ids.sort();
        let bits = fanout_bits_with(ids.len() as u64, 8);
        let header = CheckpointHeader {
            kind: CheckpointKind::Files,
            store_id: [1; 16],
            sequence: 1,
            created_ms: 0,
            salt: None,
        };
        let mut w = CheckpointWriter::new(Vec::new(), &header).unwrap();
        let mut fanout = FanoutBuilder::new(bits);
        w.begin_table(files::SAVESETS, 40).unwrap();
        for id in &ids {
            fanout.add(id);
            w.row(&encode_location(id, 1, 2)).unwrap();
        }
        w.begin_table(files::SAVESET_FANOUT, 8).unwrap();
        for start in fanout.rows() {
            w.row(&start.to_le_bytes()).unwrap();
        }
        let bytes = w.finish().unwrap().0;
        let layout = Layout::parse(&bytes).unwrap();
        let (rows, fan) = (
            *layout.entry(files::SAVESETS).unwrap(),
            *layout.entry(files::SAVESET_FANOUT).unwrap(),
        );
        let (row_checks, fan_checks) =
            (BlockChecks::for_table(&rows), BlockChecks::for_table(&fan));
        let rows = Table::new(&bytes, &rows, &row_checks);
        let fan = Table::new(&bytes, &fan, &fan_checks);
        assert_eq!(decode_fanout(&fan, rows.rows()).unwrap().1, bits);
        for id in &ids {
            let bucket = bucket_rows_mapped(&rows, &fan, bits, id, 40).unwrap();
            assert!(
                bucket.len() <= 40 * 40,
                "a bucket of {} rows",
                bucket.len() / 40
            );
            let at = lower_bound_in_bucket(bucket, 40, id) * 40;
            assert_eq!(bucket.get(at..at + 32), Some(&id[..]));
            let mut absent = *id;
            absent[31] ^= 1;
            let at = lower_bound_in_bucket(bucket, 40, &absent) * 40;
            assert_ne!(bucket.get(at..at + 32), Some(&absent[..]));
        }
    }

    #[test]
    fn a_bucket_search_finds_the_first_row_not_below_the_id() {
        // Ids that share their first 8 bytes (only the later bytes order
        // them), ids between rows, before the first and after the last.
        let mut ids: Vec<[u8; 32]> = Vec::new();
        for n in 0u8..40 {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&(u64::from(n / 4) << 40).to_be_bytes());
            id[31] = n * 2;
            ids.push(id);
        }
        let rows: Vec<u8> = ids
            .iter()
            .flat_map(|id| id.iter().copied().chain([7u8; 8]))
            .collect();
        let mut probes = ids.clone();
        for id in &ids {
            let mut between = *id;
            between[31] += 1;
            probes.push(between);
        }
        probes.push([0; 32]);
        probes.push([0xff; 32]);
        for probe in &probes {
            let want = ids.iter().take_while(|id| *id < probe).count();
            assert_eq!(lower_bound_in_bucket(&rows, 40, probe), want, "{probe:?}");
        }
        assert_eq!(lower_bound_in_bucket(&[], 40, &[0; 32]), 0);
    }

    #[test]
    fn rows_round_trip() {
        let seg = SegmentRow {
            id: 3,
            partition: 1,
            file_len: 9,
            saveset_records: 8,
            savesets: 7,
            logical_bytes: 6,
            dead_savesets: 5,
            dead_bytes: 4,
            parts: 3,
            part_bytes: 2,
            created_ms: 1,
        };
        assert_eq!(SegmentRow::decode(&seg.encode()).unwrap(), seg);
        let item = ItemRow {
            name_offset: 10,
            name_len: 5,
            hold: true,
            trashed_at_ms: Some(77),
            id: [9; 32],
        };
        assert_eq!(ItemRow::decode(&item.encode()).unwrap(), item);
        let owner = OwnerRow {
            name_offset: 1,
            name_len: 2,
            hold: false,
            first_item: 3,
            items: 4,
            trashed: 1,
            item_names_offset: 9,
        };
        assert_eq!(OwnerRow::decode(&owner.encode()).unwrap(), owner);
        for f in [
            FeedRow::Mark {
                sequence: 5,
                segment: 2,
                entries: 10,
            },
            FeedRow::Stored {
                sequence: 6,
                id: [1; 32],
            },
        ] {
            assert_eq!(FeedRow::decode(&f.encode()).unwrap(), f);
        }
        assert_eq!(
            decode_location(&encode_location(&[2; 32], 4, 5)).unwrap(),
            ([2; 32], 4, 5)
        );
        assert_eq!(
            decode_settings(&encode_settings(true, (3, 4))).unwrap(),
            (true, (3, 4))
        );
    }

    #[test]
    fn unknown_flags_are_refused() {
        let mut b = ItemRow {
            name_offset: 0,
            name_len: 1,
            hold: false,
            trashed_at_ms: None,
            id: [0; 32],
        }
        .encode();
        b[12] = 4;
        assert!(ItemRow::decode(&b).is_err());
        let mut b = encode_part_ref(&[0; 32], 1, 2);
        b[36] = 1;
        assert!(decode_part_ref(&b).is_err());
    }
}
