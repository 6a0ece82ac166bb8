//! Bytes on disk, and nothing else.
//!
//! Each submodule encodes and decodes one structure described in
//! `format-spec/`: [`manifest`] (the store's MANIFEST file) and [`segment`]
//! (segment header, records, footer, trailer). Decoders treat their input as
//! untrusted: they check magic, version and checksum before using a field and
//! check every length against a limit before allocating. They never touch
//! files; the store and the segment module do the I/O.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::indexing_slicing))]

pub mod catalog;
pub mod checkpoint;
pub mod compaction;
pub mod composite;
pub mod item_filter;
pub mod key_file;
pub mod manifest;
pub mod message_cache;
pub mod object_ends;
pub mod sealed_checkpoint;
pub mod segment;
pub mod state;
pub mod sync_tables;

/// The format version of a store in the clear
/// (format-spec/README.md, "Versions").
pub const FORMAT_VERSION: u32 = 1;

/// The format version of an encrypted store: version 1's structures, with
/// sealed records, keyed ids and tagged segment headers
/// (format-spec/encryption.md). A build that reads only version 1 refuses it.
pub const ENCRYPTED_FORMAT_VERSION: u32 = 2;

/// Name of the manifest file in the store directory (format-spec/manifest.md).
pub const MANIFEST_FILE: &str = "MANIFEST";

/// Directory, inside the store, of the staging directories of partitions in
/// object storage: `objects/pN` (format-spec/object-storage.md).
pub const OBJECT_STAGING_DIR: &str = "objects";

/// Name of the lock file in the store directory (format-spec/README.md, "Store layout").
pub const LOCK_FILE: &str = "LOCK";

/// Directory, inside the store, of the sync caches' checkpoint files
/// (format-spec/checkpoint.md).
pub const SYNC_CACHE_DIR: &str = "sync-cache";

/// Directory, inside the store, where damaged tails cut off during recovery
/// are kept for inspection (format-spec/segment.md, "Recovery").
pub const QUARANTINE_DIR: &str = "quarantine";

/// File name of a segment with this id in `state` (format-spec/README.md, "Store layout").
pub fn segment_file_name(id: u32, sealed: bool) -> String {
    if sealed {
        format!("segment-{id:010}.sealed")
    } else {
        format!("segment-{id:010}.active")
    }
}

/// Parse a segment file name back into (id, sealed). Other names give `None`.
pub fn parse_segment_file_name(name: &str) -> Option<(u32, bool)> {
    let rest = name.strip_prefix("segment-")?;
    let (digits, sealed) = if let Some(d) = rest.strip_suffix(".sealed") {
        (d, true)
    } else if let Some(d) = rest.strip_suffix(".active") {
        (d, false)
    } else {
        return None;
    };
    if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((digits.parse().ok()?, sealed))
}

/// Little-endian reader over a byte slice that reports running past the end
/// instead of panicking.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }
    pub(crate) fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    pub(crate) fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    pub(crate) fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    pub(crate) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip() {
        for (id, sealed) in [(0, false), (1, true), (u32::MAX, true)] {
            let name = segment_file_name(id, sealed);
            assert_eq!(parse_segment_file_name(&name), Some((id, sealed)));
        }
        assert_eq!(parse_segment_file_name("segment-1.sealed"), None);
        assert_eq!(parse_segment_file_name("segment-000000000a.sealed"), None);
        assert_eq!(
            parse_segment_file_name("segment-0000000001.sealed.tmp"),
            None
        );
    }
}
