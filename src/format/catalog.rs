//! Catalog batch records (kind 0x04): the bytes of reference changes
//! (format-spec/catalog.md).
//!
//! A batch is a count followed by operations. Each operation is the
//! high-level change as it was accepted (add a reference, move to trash,
//! purge older than a time, hold); replaying the batches in sequence order
//! rebuilds the catalog exactly, because every input an operation depends on
//! (times included) is in the record.
//! Bytes only: it must not do I/O or know the in-memory catalog.

use super::Reader;

/// Longest owner or item name, in bytes (format-spec/catalog.md, "Limits").
pub const MAX_NAME_BYTES: usize = 1024;
/// Most operations in one batch.
pub const MAX_OPS_PER_BATCH: u32 = 1 << 20;

/// One catalog change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogOp {
    /// Add the reference (owner, item) → id.
    Add {
        /// Mailbox, journal or archive.
        owner: String,
        /// The archiving server's id of the message in that owner.
        item: String,
        /// The saveset.
        id: [u8; 32],
    },
    /// Point an existing live reference at other content.
    Replace {
        /// Owner.
        owner: String,
        /// Item.
        item: String,
        /// The new saveset.
        id: [u8; 32],
    },
    /// Move one item's reference to trash at `at_ms`.
    TrashItem {
        /// Owner.
        owner: String,
        /// Item.
        item: String,
        /// When, Unix ms.
        at_ms: u64,
    },
    /// Move every live reference of an owner to trash at `at_ms`.
    TrashOwner {
        /// Owner.
        owner: String,
        /// When, Unix ms.
        at_ms: u64,
    },
    /// Bring trashed references back: one item, or (item `None`) all of an owner's.
    Restore {
        /// Owner.
        owner: String,
        /// Item, or every trashed item of the owner.
        item: Option<String>,
    },
    /// Drop, for good, trashed references trashed at or before `cutoff_ms`
    /// and not on hold, within the scope given.
    Purge {
        /// Trashed at or before this time, Unix ms.
        cutoff_ms: u64,
        /// Only this owner (all owners when `None`).
        owner: Option<String>,
        /// Only this item of the owner.
        item: Option<String>,
    },
    /// Set or clear a legal hold on an owner or one item.
    Hold {
        /// Owner.
        owner: String,
        /// Item, or the owner as a whole.
        item: Option<String>,
        /// Set (true) or clear (false).
        on: bool,
    },
}

const OP_ADD: u8 = 0x01;
const OP_REPLACE: u8 = 0x02;
const OP_TRASH_ITEM: u8 = 0x03;
const OP_TRASH_OWNER: u8 = 0x04;
const OP_RESTORE: u8 = 0x05;
const OP_PURGE: u8 = 0x06;
const OP_HOLD: u8 = 0x07;

/// Encode a batch (format-spec/catalog.md).
pub fn encode_batch(ops: &[CatalogOp]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + ops.len() * 96);
    out.extend_from_slice(&(ops.len() as u32).to_le_bytes());
    for op in ops {
        match op {
            CatalogOp::Add { owner, item, id } | CatalogOp::Replace { owner, item, id } => {
                out.push(if matches!(op, CatalogOp::Add { .. }) {
                    OP_ADD
                } else {
                    OP_REPLACE
                });
                put_str(&mut out, owner);
                put_str(&mut out, item);
                out.extend_from_slice(id);
            }
            CatalogOp::TrashItem { owner, item, at_ms } => {
                out.push(OP_TRASH_ITEM);
                put_str(&mut out, owner);
                put_str(&mut out, item);
                out.extend_from_slice(&at_ms.to_le_bytes());
            }
            CatalogOp::TrashOwner { owner, at_ms } => {
                out.push(OP_TRASH_OWNER);
                put_str(&mut out, owner);
                out.extend_from_slice(&at_ms.to_le_bytes());
            }
            CatalogOp::Restore { owner, item } => {
                out.push(OP_RESTORE);
                put_str(&mut out, owner);
                put_opt(&mut out, item.as_deref());
            }
            CatalogOp::Purge {
                cutoff_ms,
                owner,
                item,
            } => {
                out.push(OP_PURGE);
                out.extend_from_slice(&cutoff_ms.to_le_bytes());
                put_opt(&mut out, owner.as_deref());
                put_opt(&mut out, item.as_deref());
            }
            CatalogOp::Hold { owner, item, on } => {
                out.push(OP_HOLD);
                put_str(&mut out, owner);
                put_opt(&mut out, item.as_deref());
                out.push(u8::from(*on));
            }
        }
    }
    out
}

/// Decode a batch whose record crc has been checked. Never panics.
pub fn decode_batch(bytes: &[u8]) -> Result<Vec<CatalogOp>, String> {
    let mut r = Reader::new(bytes);
    let count = r.u32().ok_or("catalog batch truncated")?;
    // Every operation takes at least 5 bytes: refuse counts the bytes cannot hold.
    if count > MAX_OPS_PER_BATCH || count as usize > r.remaining() / 5 {
        return Err(format!("catalog batch claims {count} operations"));
    }
    let mut ops = Vec::with_capacity(count as usize);
    for _ in 0..count {
        ops.push(decode_op(&mut r)?);
    }
    if r.remaining() != 0 {
        return Err("trailing bytes after the catalog batch".into());
    }
    Ok(ops)
}

fn decode_op(r: &mut Reader<'_>) -> Result<CatalogOp, String> {
    let tag = r.u8().ok_or("catalog op truncated")?;
    let t = "catalog op truncated";
    Ok(match tag {
        OP_ADD | OP_REPLACE => {
            let owner = get_str(r)?;
            let item = get_str(r)?;
            let id = r.array::<32>().ok_or(t)?;
            if tag == OP_ADD {
                CatalogOp::Add { owner, item, id }
            } else {
                CatalogOp::Replace { owner, item, id }
            }
        }
        OP_TRASH_ITEM => CatalogOp::TrashItem {
            owner: get_str(r)?,
            item: get_str(r)?,
            at_ms: r.u64().ok_or(t)?,
        },
        OP_TRASH_OWNER => CatalogOp::TrashOwner {
            owner: get_str(r)?,
            at_ms: r.u64().ok_or(t)?,
        },
        OP_RESTORE => CatalogOp::Restore {
            owner: get_str(r)?,
            item: get_opt(r)?,
        },
        OP_PURGE => CatalogOp::Purge {
            cutoff_ms: r.u64().ok_or(t)?,
            owner: get_opt(r)?,
            item: get_opt(r)?,
        },
        OP_HOLD => CatalogOp::Hold {
            owner: get_str(r)?,
            item: get_opt(r)?,
            on: match r.u8().ok_or(t)? {
                0 => false,
                1 => true,
                b => return Err(format!("hold flag {b}")),
            },
        },
        other => return Err(format!("unknown catalog op {other:#04x}")),
    })
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
        None => out.push(0),
    }
}

fn get_str(r: &mut Reader<'_>) -> Result<String, String> {
    let len = r.u16().ok_or("catalog name truncated")? as usize;
    if len == 0 || len > MAX_NAME_BYTES {
        return Err(format!("catalog name of {len} bytes"));
    }
    let b = r.take(len).ok_or("catalog name truncated")?;
    String::from_utf8(b.to_vec()).map_err(|_| "catalog name is not UTF-8".to_string())
}

fn get_opt(r: &mut Reader<'_>) -> Result<Option<String>, String> {
    match r.u8().ok_or("catalog op truncated")? {
        0 => Ok(None),
        1 => Ok(Some(get_str(r)?)),
        b => Err(format!("optional flag {b}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<CatalogOp> {
        vec![
            CatalogOp::Add {
                owner: "alice@example.com".into(),
                item: "<1@x>".into(),
                id: [3; 32],
            },
            CatalogOp::Replace {
                owner: "a".into(),
                item: "b".into(),
                id: [4; 32],
            },
            CatalogOp::TrashItem {
                owner: "a".into(),
                item: "b".into(),
                at_ms: 5,
            },
            CatalogOp::TrashOwner {
                owner: "journal".into(),
                at_ms: 6,
            },
            CatalogOp::Restore {
                owner: "a".into(),
                item: None,
            },
            CatalogOp::Purge {
                cutoff_ms: 7,
                owner: Some("a".into()),
                item: Some("b".into()),
            },
            CatalogOp::Hold {
                owner: "bob".into(),
                item: None,
                on: true,
            },
        ]
    }

    #[test]
    fn batches_round_trip() {
        let ops = sample();
        assert_eq!(decode_batch(&encode_batch(&ops)).unwrap(), ops);
    }

    #[test]
    fn truncations_are_refused() {
        let bytes = encode_batch(&sample());
        for n in 0..bytes.len() {
            assert!(decode_batch(&bytes[..n]).is_err(), "cut at {n}");
        }
    }

    #[test]
    fn absurd_counts_are_refused_before_allocating() {
        let mut bytes = encode_batch(&sample());
        bytes[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_batch(&bytes).is_err());
    }
}
