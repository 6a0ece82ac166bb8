//! The ends file of a segment in object storage (format-spec/object-storage.md):
//! a local copy of the object's first bytes (the segment header) and of its
//! footer and trailer, so that opening a store reads no object.
//!
//! ```text
//! 0   8  magic "VSOBJEND"
//! 8   4  version, u32 LE = 1
//! 12  4  segment id, u32 LE
//! 16  8  object length, u64 LE
//! 24  4  head length H, u32 LE (the bytes at offset 0)
//! 28  8  tail offset T, u64 LE (the tail runs to the object's end)
//! 36  H  head bytes
//! ..  L-T tail bytes
//! ..  4  crc32 of every byte before it
//! ```

use crate::format::segment::SEGMENT_HEADER_BYTES;

/// Magic of an ends file.
pub const ENDS_MAGIC: [u8; 8] = *b"VSOBJEND";
/// Version of the layout above.
pub const ENDS_VERSION: u32 = 1;
const FIXED_BYTES: usize = 36;
/// Largest tail kept (a footer of a full segment is far smaller).
pub const MAX_TAIL_BYTES: u64 = 64 << 20;

/// The two ends of one segment object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEnds {
    /// Segment id.
    pub segment: u32,
    /// Length of the whole object.
    pub object_len: u64,
    /// Its first bytes.
    pub head: Vec<u8>,
    /// Where `tail` begins in the object.
    pub tail_offset: u64,
    /// Its bytes from `tail_offset` to the end.
    pub tail: Vec<u8>,
}

impl ObjectEnds {
    /// The bytes `[offset, offset + len)` when one end holds them whole.
    pub fn slice(&self, offset: u64, len: usize) -> Option<&[u8]> {
        let end = offset.checked_add(len as u64)?;
        if end <= self.head.len() as u64 {
            return self.head.get(offset as usize..end as usize);
        }
        if offset >= self.tail_offset && end <= self.object_len {
            let from = (offset - self.tail_offset) as usize;
            return self.tail.get(from..from + len);
        }
        None
    }

    /// Encode as the file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(FIXED_BYTES + self.head.len() + self.tail.len() + 4);
        b.extend_from_slice(&ENDS_MAGIC);
        b.extend_from_slice(&ENDS_VERSION.to_le_bytes());
        b.extend_from_slice(&self.segment.to_le_bytes());
        b.extend_from_slice(&self.object_len.to_le_bytes());
        b.extend_from_slice(&(self.head.len() as u32).to_le_bytes());
        b.extend_from_slice(&self.tail_offset.to_le_bytes());
        b.extend_from_slice(&self.head);
        b.extend_from_slice(&self.tail);
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decode and check an ends file; the error says what is wrong.
    pub fn decode(bytes: &[u8]) -> Result<ObjectEnds, String> {
        let fixed = bytes
            .get(..FIXED_BYTES)
            .ok_or("shorter than its fixed fields")?;
        if fixed.get(0..8) != Some(&ENDS_MAGIC[..]) {
            return Err("bad magic".into());
        }
        let u32_at = |at: usize| -> u32 {
            let mut a = [0u8; 4];
            a.copy_from_slice(fixed.get(at..at + 4).unwrap_or(&[0; 4]));
            u32::from_le_bytes(a)
        };
        let u64_at = |at: usize| -> u64 {
            let mut a = [0u8; 8];
            a.copy_from_slice(fixed.get(at..at + 8).unwrap_or(&[0; 8]));
            u64::from_le_bytes(a)
        };
        let version = u32_at(8);
        if version != ENDS_VERSION {
            return Err(format!(
                "version {version}, this build reads {ENDS_VERSION}"
            ));
        }
        let (segment, object_len, head_len, tail_offset) =
            (u32_at(12), u64_at(16), u32_at(24), u64_at(28));
        if head_len as usize > SEGMENT_HEADER_BYTES
            || u64::from(head_len) > object_len
            || tail_offset > object_len
            || object_len - tail_offset > MAX_TAIL_BYTES
        {
            return Err("lengths out of range".into());
        }
        let tail_len = (object_len - tail_offset) as usize;
        let body_end = FIXED_BYTES + head_len as usize + tail_len;
        if bytes.len() != body_end + 4 {
            return Err(format!(
                "{} bytes, the fields say {}",
                bytes.len(),
                body_end + 4
            ));
        }
        let (body, crc) = bytes.split_at(body_end);
        let mut c = [0u8; 4];
        c.copy_from_slice(crc);
        if crc32fast::hash(body) != u32::from_le_bytes(c) {
            return Err("crc mismatch".into());
        }
        let head_end = FIXED_BYTES + head_len as usize;
        Ok(ObjectEnds {
            segment,
            object_len,
            head: body.get(FIXED_BYTES..head_end).unwrap_or_default().to_vec(),
            tail_offset,
            tail: body.get(head_end..).unwrap_or_default().to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ObjectEnds {
        ObjectEnds {
            segment: 7,
            object_len: 1000,
            head: (0..64).collect(),
            tail_offset: 900,
            tail: (0..100).map(|i| i as u8 ^ 0x5a).collect(),
        }
    }

    #[test]
    fn ends_round_trip_and_serve_their_ranges() {
        let e = sample();
        let d = ObjectEnds::decode(&e.encode()).unwrap();
        assert_eq!(d, e);
        assert_eq!(d.slice(0, 64), Some(&e.head[..]));
        assert_eq!(d.slice(950, 50), Some(&e.tail[50..]));
        assert_eq!(d.slice(60, 8), None, "spans the head's end");
        assert_eq!(d.slice(899, 2), None, "starts before the tail");
        assert_eq!(d.slice(990, 20), None, "runs past the object");
    }

    #[test]
    fn every_flipped_byte_and_cut_is_refused() {
        let bytes = sample().encode();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            assert!(ObjectEnds::decode(&b).is_err(), "byte {i}");
        }
        for n in 0..bytes.len() {
            assert!(ObjectEnds::decode(&bytes[..n]).is_err(), "cut at {n}");
        }
    }
}
