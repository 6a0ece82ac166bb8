//! Compaction records (kind 0x06): the first record of a segment written by
//! compaction, naming the segments it replaces (format-spec/segment.md,
//! "Compaction record").
//!
//! The record commits with its segment: once the output is sealed, the
//! segments it names are superseded and a reader ignores (and a writer
//! deletes) them. Earlier compaction records are copied verbatim into later
//! outputs, so the chain of replaced segments survives further compaction.
//! Bytes only: it must not do I/O or decide what a compaction copies.

use super::Reader;

/// Most segments one record names.
pub const MAX_VICTIMS: u32 = 1 << 20;

/// The decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactionRecord {
    /// The segment this record was written into.
    pub output: u32,
    /// When the compaction ran, Unix ms.
    pub at_ms: u64,
    /// Every saveset moved here was BackupComplete in its old segment, and
    /// stays so although the new segment's archive bit is set.
    pub backup_complete: bool,
    /// The segments whose live records this one holds now, in id order.
    pub victims: Vec<u32>,
}

const FLAG_BACKUP_COMPLETE: u8 = 1;

impl CompactionRecord {
    /// Encode (format-spec/segment.md, "Compaction record").
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(20 + 4 * self.victims.len());
        out.extend_from_slice(&self.output.to_le_bytes());
        out.extend_from_slice(&self.at_ms.to_le_bytes());
        out.push(if self.backup_complete {
            FLAG_BACKUP_COMPLETE
        } else {
            0
        });
        out.extend_from_slice(&[0, 0, 0]);
        out.extend_from_slice(&(self.victims.len() as u32).to_le_bytes());
        for v in &self.victims {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// Decode untrusted bytes.
    pub fn decode(bytes: &[u8]) -> Result<CompactionRecord, String> {
        let short = || "compaction record truncated".to_string();
        let mut r = Reader::new(bytes);
        let output = r.u32().ok_or_else(short)?;
        let at_ms = r.u64().ok_or_else(short)?;
        let flags = r.u8().ok_or_else(short)?;
        let reserved = r.take(3).ok_or_else(short)?;
        if flags & !FLAG_BACKUP_COMPLETE != 0 || reserved != [0, 0, 0] {
            return Err("compaction record has unknown flags set".into());
        }
        let count = r.u32().ok_or_else(short)?;
        if count > MAX_VICTIMS
            || count as usize != r.remaining() / 4
            || !r.remaining().is_multiple_of(4)
        {
            return Err(format!(
                "compaction record names {count} segments in {} bytes",
                r.remaining()
            ));
        }
        let victims = (0..count)
            .map(|_| r.u32().ok_or_else(short))
            .collect::<Result<Vec<u32>, String>>()?;
        if victims.windows(2).any(|w| matches!(w, [a, b] if a >= b)) || victims.contains(&output) {
            return Err("compaction record's segments are not in increasing order".into());
        }
        Ok(CompactionRecord {
            output,
            at_ms,
            backup_complete: flags & FLAG_BACKUP_COMPLETE != 0,
            victims,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_bad_input() {
        let r = CompactionRecord {
            output: 9,
            at_ms: 1234,
            backup_complete: true,
            victims: vec![2, 3, 7],
        };
        let b = r.encode();
        assert_eq!(CompactionRecord::decode(&b).unwrap(), r);
        for cut in 0..b.len() {
            assert!(CompactionRecord::decode(&b[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = b.clone();
        extra.push(0);
        assert!(CompactionRecord::decode(&extra).is_err());
        let mut flags = b.clone();
        flags[12] = 0x80;
        assert!(CompactionRecord::decode(&flags).is_err());
        let unordered = CompactionRecord {
            victims: vec![3, 2],
            ..r.clone()
        };
        assert!(CompactionRecord::decode(&unordered.encode()).is_err());
        let names_itself = CompactionRecord {
            victims: vec![9],
            ..r
        };
        assert!(CompactionRecord::decode(&names_itself.encode()).is_err());
    }
}
