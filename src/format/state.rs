//! State batch records (kind 0x05): the lifecycle of savesets and segments
//! (format-spec/state.md).
//!
//! IndexCommitted marks, backup marks (an archive bit cleared, with the
//! checksum of what was copied), the post-processing feed's acknowledged
//! cursor, and the "remove safety copies" setting. Like catalog batches they
//! are replayed in sequence order at open.
//! Bytes only: it must not do I/O or know the lifecycle's rules.

use super::Reader;

/// Most ids in one IndexCommitted operation.
pub const MAX_IDS_PER_OP: u32 = 1 << 22;

/// One lifecycle change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateOp {
    /// The archiving server's indexer has indexed these savesets.
    Indexed {
        /// Saveset ids.
        ids: Vec<[u8; 32]>,
    },
    /// A backup tool copied this sealed segment; its archive bit is cleared.
    BackupMark {
        /// Segment id.
        segment: u32,
        /// blake3-256 of the whole segment file as copied.
        checksum: [u8; 32],
        /// When, Unix ms.
        at_ms: u64,
    },
    /// The post-processing feed was consumed up to this cursor.
    FeedAck {
        /// Sequence of the feed event.
        sequence: u64,
        /// Entries of that event consumed.
        index: u64,
    },
    /// The "remove safety copies" setting changed.
    SafetyCopies {
        /// True: ready when stored; false: ready when backed up.
        immediately: bool,
    },
}

const OP_INDEXED: u8 = 0x01;
const OP_BACKUP_MARK: u8 = 0x02;
const OP_FEED_ACK: u8 = 0x03;
const OP_SAFETY_COPIES: u8 = 0x04;

/// Encode a batch (format-spec/state.md).
pub fn encode_state_batch(ops: &[StateOp]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(ops.len() as u32).to_le_bytes());
    for op in ops {
        match op {
            StateOp::Indexed { ids } => {
                out.push(OP_INDEXED);
                out.extend_from_slice(&(ids.len() as u32).to_le_bytes());
                for id in ids {
                    out.extend_from_slice(id);
                }
            }
            StateOp::BackupMark {
                segment,
                checksum,
                at_ms,
            } => {
                out.push(OP_BACKUP_MARK);
                out.extend_from_slice(&segment.to_le_bytes());
                out.extend_from_slice(checksum);
                out.extend_from_slice(&at_ms.to_le_bytes());
            }
            StateOp::FeedAck { sequence, index } => {
                out.push(OP_FEED_ACK);
                out.extend_from_slice(&sequence.to_le_bytes());
                out.extend_from_slice(&index.to_le_bytes());
            }
            StateOp::SafetyCopies { immediately } => {
                out.push(OP_SAFETY_COPIES);
                out.push(u8::from(*immediately));
            }
        }
    }
    out
}

/// Decode a batch whose record crc has been checked. Never panics.
pub fn decode_state_batch(bytes: &[u8]) -> Result<Vec<StateOp>, String> {
    let t = "state batch truncated";
    let mut r = Reader::new(bytes);
    let count = r.u32().ok_or(t)?;
    if count as usize > r.remaining() / 2 {
        return Err(format!("state batch claims {count} operations"));
    }
    let mut ops = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let op = match r.u8().ok_or(t)? {
            OP_INDEXED => {
                let n = r.u32().ok_or(t)?;
                if n > MAX_IDS_PER_OP || n as usize > r.remaining() / 32 {
                    return Err(format!("IndexCommitted operation claims {n} ids"));
                }
                let mut ids = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    ids.push(r.array::<32>().ok_or(t)?);
                }
                StateOp::Indexed { ids }
            }
            OP_BACKUP_MARK => StateOp::BackupMark {
                segment: r.u32().ok_or(t)?,
                checksum: r.array::<32>().ok_or(t)?,
                at_ms: r.u64().ok_or(t)?,
            },
            OP_FEED_ACK => StateOp::FeedAck {
                sequence: r.u64().ok_or(t)?,
                index: r.u64().ok_or(t)?,
            },
            OP_SAFETY_COPIES => StateOp::SafetyCopies {
                immediately: match r.u8().ok_or(t)? {
                    0 => false,
                    1 => true,
                    b => return Err(format!("safety copies flag {b}")),
                },
            },
            other => return Err(format!("unknown state op {other:#04x}")),
        };
        ops.push(op);
    }
    if r.remaining() != 0 {
        return Err("trailing bytes after the state batch".into());
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<StateOp> {
        vec![
            StateOp::Indexed {
                ids: vec![[1; 32], [2; 32]],
            },
            StateOp::BackupMark {
                segment: 7,
                checksum: [9; 32],
                at_ms: 11,
            },
            StateOp::FeedAck {
                sequence: 5,
                index: 3,
            },
            StateOp::SafetyCopies { immediately: true },
        ]
    }

    #[test]
    fn round_trips() {
        assert_eq!(
            decode_state_batch(&encode_state_batch(&sample())).unwrap(),
            sample()
        );
    }

    #[test]
    fn truncations_and_absurd_counts_are_refused() {
        let bytes = encode_state_batch(&sample());
        for n in 0..bytes.len() {
            assert!(decode_state_batch(&bytes[..n]).is_err(), "cut at {n}");
        }
        let mut b = bytes.clone();
        b[5..9].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_state_batch(&b).is_err());
    }
}
