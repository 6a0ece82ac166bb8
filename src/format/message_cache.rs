//! The message cache's bytes (format-spec/message-cache.md): the queue
//! file's header and its entries (a put, a reference, a processed mark,
//! or in an encrypted store's queue one of those sealed), each with a
//! crc32. Bytes only: sealing is `crypto`'s, and the file is written and
//! read by the `message_cache` module.

use super::Reader;
use super::catalog::MAX_NAME_BYTES;
use super::segment::{Codec, MAX_RECORD_BYTES};

/// Directory of the message cache, inside the store directory.
pub const CACHE_DIR: &str = "message-cache";
/// The queue file, inside [`CACHE_DIR`].
pub const QUEUE_FILE: &str = "queue";
/// First eight bytes of the queue file.
pub const QUEUE_MAGIC: [u8; 8] = *b"VSMSGCQ1";
/// Bytes of the queue file's header.
pub const HEADER_BYTES: u64 = 36;
/// Bytes of an entry's header (before its body).
pub const ENTRY_HEADER_BYTES: usize = 8;
/// Bytes of an entry's trailing crc32.
pub const ENTRY_CRC_BYTES: usize = 4;
/// Longest entry body: the largest saveset, its id and two names.
pub const MAX_BODY_BYTES: u64 = MAX_RECORD_BYTES + 64 + 2 * (MAX_NAME_BYTES as u64 + 2);
/// Bytes a sealed entry's body adds to the entry it seals (whose header
/// and crc it holds too): a 24-byte nonce and a 16-byte tag.
pub const SEALED_EXTRA_BYTES: u64 = 24 + 16;
/// Longest sealed entry body: the longest entry, whole, sealed.
pub const MAX_SEALED_BODY_BYTES: u64 =
    MAX_BODY_BYTES + (ENTRY_HEADER_BYTES + ENTRY_CRC_BYTES) as u64 + SEALED_EXTRA_BYTES;
/// Format version of a queue in the clear.
pub const PLAIN_VERSION: u32 = super::FORMAT_VERSION;
/// Format version of an encrypted store's queue: every entry sealed.
pub const SEALED_VERSION: u32 = super::ENCRYPTED_FORMAT_VERSION;

const KIND_PUT: u8 = 0x01;
const KIND_REFERENCE: u8 = 0x02;
const KIND_PROCESSED: u8 = 0x03;
const KIND_SEALED: u8 = 0x04;
const FLAG_REPLACE: u8 = 0x01;
const FLAG_CONTENT: u8 = 0x02;

/// Content carried by an entry, as stored (compressed or not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedContent<'a> {
    /// How the payload is stored.
    pub codec: Codec,
    /// Bytes of the content once decoded.
    pub logical_len: u64,
    /// The payload as stored.
    pub payload: &'a [u8],
}

/// One entry of the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheEntry<'a> {
    /// A saveset stored without a reference (`put`).
    Put {
        /// blake3 of the content.
        id: [u8; 32],
        /// When it was accepted, Unix ms.
        time_ms: u64,
        /// The content.
        content: CachedContent<'a>,
    },
    /// A reference (owner, item) → id (`archive`, `link`), with the content
    /// when neither the segments nor an earlier entry hold it.
    Reference {
        /// blake3 of the content.
        id: [u8; 32],
        /// When it was accepted, Unix ms.
        time_ms: u64,
        /// Replace the item's existing reference.
        replace: bool,
        /// Owner.
        owner: &'a str,
        /// Item.
        item: &'a str,
        /// The content, when this entry carries it.
        content: Option<CachedContent<'a>>,
    },
    /// Every entry that ends at or before `upto` is in the segments.
    Processed {
        /// A byte offset in the queue file.
        upto: u64,
    },
    /// One of the others, sealed (a version 2 queue's only kind): `nonce ‖
    /// ciphertext ‖ tag` of the entry's whole bytes, as [`encode_entry`]
    /// writes them in the clear.
    Sealed {
        /// The sealed bytes.
        body: &'a [u8],
    },
}

/// The queue file's header for a store, of [`PLAIN_VERSION`] or
/// [`SEALED_VERSION`].
pub fn encode_header(store_id: &[u8; 16], version: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_BYTES as usize);
    h.extend_from_slice(&QUEUE_MAGIC);
    h.extend_from_slice(&version.to_le_bytes());
    h.extend_from_slice(&[0; 4]);
    h.extend_from_slice(store_id);
    let crc = crc32fast::hash(&h);
    h.extend_from_slice(&crc.to_le_bytes());
    h
}

/// Check a header: magic, crc, version, reserved bytes; returns the store
/// id and the version (plain or sealed).
pub fn decode_header(h: &[u8]) -> Result<([u8; 16], u32), String> {
    let mut r = Reader::new(h);
    if r.array::<8>() != Some(QUEUE_MAGIC) {
        return Err("not a message cache queue (bad magic)".into());
    }
    let body = h.get(..32).ok_or("header is truncated")?;
    let crc = h
        .get(32..36)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or("header is truncated")?;
    if crc32fast::hash(body) != crc {
        return Err("header crc mismatch".into());
    }
    let version = r.u32().ok_or("header is truncated")?;
    if version != PLAIN_VERSION && version != SEALED_VERSION {
        return Err(format!(
            "format version {version} is not supported (this build reads versions \
             {PLAIN_VERSION} and {SEALED_VERSION})"
        ));
    }
    if r.u32() != Some(0) {
        return Err("reserved header bytes are not zero".into());
    }
    let store_id = r.array::<16>().ok_or("header is truncated")?;
    Ok((store_id, version))
}

/// An entry's bytes: header, body, crc.
pub fn encode_entry(entry: &CacheEntry<'_>) -> Vec<u8> {
    let mut body = Vec::new();
    let kind = match entry {
        CacheEntry::Put {
            id,
            time_ms,
            content,
        } => {
            body.extend_from_slice(id);
            body.extend_from_slice(&time_ms.to_le_bytes());
            put_content(&mut body, content);
            KIND_PUT
        }
        CacheEntry::Reference {
            id,
            time_ms,
            replace,
            owner,
            item,
            content,
        } => {
            body.extend_from_slice(id);
            body.extend_from_slice(&time_ms.to_le_bytes());
            let mut flags = 0;
            if *replace {
                flags |= FLAG_REPLACE;
            }
            if content.is_some() {
                flags |= FLAG_CONTENT;
            }
            body.push(flags);
            for name in [owner, item] {
                body.extend_from_slice(&(name.len() as u16).to_le_bytes());
                body.extend_from_slice(name.as_bytes());
            }
            if let Some(c) = content {
                put_content(&mut body, c);
            }
            KIND_REFERENCE
        }
        CacheEntry::Processed { upto } => {
            body.extend_from_slice(&upto.to_le_bytes());
            KIND_PROCESSED
        }
        CacheEntry::Sealed { body: sealed } => {
            body.extend_from_slice(sealed);
            KIND_SEALED
        }
    };
    let mut out = Vec::with_capacity(ENTRY_HEADER_BYTES + body.len() + ENTRY_CRC_BYTES);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.push(kind);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&body);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn put_content(body: &mut Vec<u8>, c: &CachedContent<'_>) {
    body.push(c.codec.to_byte());
    body.extend_from_slice(&c.logical_len.to_le_bytes());
    body.extend_from_slice(c.payload);
}

/// An entry header: the body's length, checked against the limit, and
/// the bytes the whole entry takes.
pub fn decode_entry_header(h: &[u8]) -> Result<(u32, u64), String> {
    let mut r = Reader::new(h);
    let len = r.u32().ok_or("entry header is truncated")?;
    let kind = r.u8().ok_or("entry header is truncated")?;
    if !(KIND_PUT..=KIND_SEALED).contains(&kind) {
        return Err(format!("unknown entry kind {kind:#04x}"));
    }
    if r.array::<3>() != Some([0; 3]) {
        return Err("reserved entry bytes are not zero".into());
    }
    let limit = match kind {
        KIND_SEALED => MAX_SEALED_BODY_BYTES,
        _ => MAX_BODY_BYTES,
    };
    if u64::from(len) > limit {
        return Err(format!("entry body of {len} bytes is over the limit"));
    }
    Ok((
        len,
        (ENTRY_HEADER_BYTES + ENTRY_CRC_BYTES) as u64 + u64::from(len),
    ))
}

/// Decode one whole entry (header, body, crc), checking everything.
pub fn decode_entry(bytes: &[u8]) -> Result<CacheEntry<'_>, String> {
    let header = bytes
        .get(..ENTRY_HEADER_BYTES)
        .ok_or("entry header is truncated")?;
    let (len, total) = decode_entry_header(header)?;
    if bytes.len() as u64 != total {
        return Err(format!(
            "entry is {} bytes, header says {total}",
            bytes.len()
        ));
    }
    let crc_at = ENTRY_HEADER_BYTES + len as usize;
    let stored = bytes
        .get(crc_at..)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or("entry crc is truncated")?;
    let covered = bytes.get(..crc_at).ok_or("entry is truncated")?;
    if crc32fast::hash(covered) != stored {
        return Err("entry crc mismatch".into());
    }
    let body = covered
        .get(ENTRY_HEADER_BYTES..)
        .ok_or("entry is truncated")?;
    let kind = header.get(4).copied().unwrap_or(0);
    decode_body(kind, body)
}

fn decode_body(kind: u8, body: &[u8]) -> Result<CacheEntry<'_>, String> {
    let mut r = Reader::new(body);
    let truncated = || "entry body is truncated".to_string();
    let entry = match kind {
        KIND_PUT => {
            let id = r.array::<32>().ok_or_else(truncated)?;
            let time_ms = r.u64().ok_or_else(truncated)?;
            let content = get_content(&mut r)?;
            CacheEntry::Put {
                id,
                time_ms,
                content,
            }
        }
        KIND_REFERENCE => {
            let id = r.array::<32>().ok_or_else(truncated)?;
            let time_ms = r.u64().ok_or_else(truncated)?;
            let flags = r.u8().ok_or_else(truncated)?;
            if flags & !(FLAG_REPLACE | FLAG_CONTENT) != 0 {
                return Err(format!("unknown reference flags {flags:#04x}"));
            }
            let owner = get_name(&mut r, "owner")?;
            let item = get_name(&mut r, "item")?;
            let content = if flags & FLAG_CONTENT != 0 {
                Some(get_content(&mut r)?)
            } else {
                None
            };
            CacheEntry::Reference {
                id,
                time_ms,
                replace: flags & FLAG_REPLACE != 0,
                owner,
                item,
                content,
            }
        }
        KIND_PROCESSED => CacheEntry::Processed {
            upto: r.u64().ok_or_else(truncated)?,
        },
        KIND_SEALED if body.len() as u64 >= SEALED_EXTRA_BYTES => CacheEntry::Sealed {
            body: r.take(r.remaining()).ok_or_else(truncated)?,
        },
        other => return Err(format!("unknown entry kind {other:#04x}")),
    };
    if r.remaining() != 0 {
        return Err(format!("{} bytes after the entry's fields", r.remaining()));
    }
    Ok(entry)
}

fn get_name<'a>(r: &mut Reader<'a>, what: &str) -> Result<&'a str, String> {
    let len = r.u16().ok_or("entry body is truncated")? as usize;
    if len == 0 || len > MAX_NAME_BYTES {
        return Err(format!("{what} name of {len} bytes"));
    }
    let bytes = r.take(len).ok_or("entry body is truncated")?;
    std::str::from_utf8(bytes).map_err(|_| format!("{what} name is not UTF-8"))
}

fn get_content<'a>(r: &mut Reader<'a>) -> Result<CachedContent<'a>, String> {
    let codec = r.u8().ok_or("entry body is truncated")?;
    let codec = Codec::from_byte(codec).ok_or_else(|| format!("unknown codec {codec}"))?;
    let logical_len = r.u64().ok_or("entry body is truncated")?;
    if logical_len > MAX_RECORD_BYTES {
        return Err(format!("content of {logical_len} bytes is over the limit"));
    }
    let payload = r.take(r.remaining()).ok_or("entry body is truncated")?;
    if codec == Codec::Raw && payload.len() as u64 != logical_len {
        return Err(format!(
            "raw content of {} bytes, entry says {logical_len}",
            payload.len()
        ));
    }
    Ok(CachedContent {
        codec,
        logical_len,
        payload,
    })
}

/// Decode a whole queue file: its store id, the entries that check in
/// order with their offsets, and the offset where checking stopped (the
/// file's length when every byte checks).
pub fn scan(bytes: &[u8]) -> Result<ScannedQueue<'_>, String> {
    let header = bytes
        .get(..HEADER_BYTES as usize)
        .ok_or("header is truncated")?;
    let (store_id, version) = decode_header(header)?;
    let mut entries = Vec::new();
    let mut at = HEADER_BYTES;
    while let Some(rest) = bytes.get(at as usize..).filter(|r| !r.is_empty()) {
        let Ok((_, total)) = rest
            .get(..ENTRY_HEADER_BYTES)
            .ok_or_else(String::new)
            .and_then(decode_entry_header)
        else {
            break;
        };
        let Some(Ok(entry)) = rest.get(..total as usize).map(decode_entry) else {
            break;
        };
        entries.push((at, entry));
        at += total;
    }
    Ok(ScannedQueue {
        store_id,
        version,
        entries,
        valid_up_to: at,
    })
}

/// What [`scan`] found.
#[derive(Debug)]
pub struct ScannedQueue<'a> {
    /// The store the queue belongs to.
    pub store_id: [u8; 16],
    /// Its format version: [`SEALED_VERSION`] holds only sealed entries.
    pub version: u32,
    /// Entries that check, with their offsets, in order.
    pub entries: Vec<(u64, CacheEntry<'a>)>,
    /// Where the entries that check end.
    pub valid_up_to: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<CacheEntry<'static>> {
        let content = CachedContent {
            codec: Codec::Raw,
            logical_len: 5,
            payload: b"hello",
        };
        vec![
            CacheEntry::Put {
                id: [1; 32],
                time_ms: 5,
                content: content.clone(),
            },
            CacheEntry::Reference {
                id: [2; 32],
                time_ms: 6,
                replace: true,
                owner: "alice",
                item: "<1@x>",
                content: Some(content),
            },
            CacheEntry::Reference {
                id: [1; 32],
                time_ms: 7,
                replace: false,
                owner: "bob",
                item: "<1@x>",
                content: None,
            },
            CacheEntry::Processed { upto: 99 },
        ]
    }

    fn file(entries: &[CacheEntry<'_>]) -> Vec<u8> {
        let mut bytes = encode_header(&[7; 16], PLAIN_VERSION);
        for e in entries {
            bytes.extend_from_slice(&encode_entry(e));
        }
        bytes
    }

    #[test]
    fn entries_round_trip() {
        let bytes = file(&sample());
        let scanned = scan(&bytes).unwrap();
        assert_eq!(scanned.store_id, [7; 16]);
        let got: Vec<_> = scanned.entries.iter().map(|(_, e)| e.clone()).collect();
        assert_eq!(got, sample());
        assert_eq!(scanned.valid_up_to, bytes.len() as u64);
    }

    #[test]
    fn a_sealed_queue_carries_its_entries_verbatim() {
        let sealed = [0xa5u8; 60];
        let mut bytes = encode_header(&[7; 16], SEALED_VERSION);
        let entry = CacheEntry::Sealed { body: &sealed };
        bytes.extend_from_slice(&encode_entry(&entry));
        let scanned = scan(&bytes).unwrap();
        assert_eq!(scanned.version, SEALED_VERSION);
        assert_eq!(scanned.entries, vec![(HEADER_BYTES, entry)]);
        // Shorter than a nonce and a tag: nothing was ever sealed there.
        let mut short = encode_header(&[7; 16], SEALED_VERSION);
        short.extend_from_slice(&encode_entry(&CacheEntry::Sealed {
            body: &sealed[..39],
        }));
        assert!(scan(&short).unwrap().entries.is_empty());
        let other = encode_header(&[7; 16], 3);
        assert!(scan(&other).unwrap_err().contains("version 3"));
    }

    #[test]
    fn a_torn_or_flipped_entry_ends_the_scan_there() {
        let bytes = file(&sample());
        let second = scan(&bytes).unwrap().entries[1].0 as usize;
        for cut in [bytes.len() - 1, second + 3, second + 20] {
            let s = scan(&bytes[..cut]).unwrap();
            assert!(s.valid_up_to <= cut as u64, "cut {cut}");
            assert!(s.entries.iter().all(|(at, _)| *at < cut as u64));
        }
        let mut flipped = bytes.clone();
        flipped[second + 40] ^= 1;
        let s = scan(&flipped).unwrap();
        assert_eq!((s.entries.len(), s.valid_up_to), (1, second as u64));
    }

    #[test]
    fn a_bad_header_is_refused() {
        let mut bytes = file(&sample());
        bytes[9] ^= 1;
        assert!(scan(&bytes).unwrap_err().contains("crc"));
        assert!(scan(b"VSMSGCQ1").is_err());
        assert!(scan(b"not a queue at all, not at all, no!!").is_err());
    }

    #[test]
    fn unknown_flags_kinds_and_bad_names_are_refused() {
        let e = encode_entry(&sample()[2]);
        let mut bad_flags = e.clone();
        bad_flags[8 + 40] |= 0x80;
        let mut bad_kind = e.clone();
        bad_kind[4] = 9;
        let mut bad_name = e.clone();
        bad_name[8 + 41] = 0;
        bad_name[8 + 42] = 0;
        for mut b in [bad_flags, bad_kind, bad_name] {
            let n = b.len() - 4;
            let crc = crc32fast::hash(&b[..n]);
            b[n..].copy_from_slice(&crc.to_le_bytes());
            assert!(decode_entry(&b).is_err());
        }
    }
}
