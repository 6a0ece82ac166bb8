//! The MANIFEST file: store identity, settings and partitions
//! (format-spec/manifest.md).
//!
//! A fixed 16-byte header, a body of tagged fields, a crc32. New settings are
//! added as new tags; a tag with the high bit set is optional and a reader that
//! does not know it skips it, any other unknown tag makes the reader refuse.

use super::{ENCRYPTED_FORMAT_VERSION, FORMAT_VERSION, Reader};

/// Magic number at offset 0 (format-spec/manifest.md, "Header").
pub const MAGIC: [u8; 8] = *b"VSTMANIF";
/// Largest manifest a reader accepts (format-spec/manifest.md, "Limits").
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;
/// Longest partition path accepted.
pub const MAX_PATH_BYTES: usize = 4096;

const HEADER_BYTES: usize = 16;
const TAG_OPTIONAL: u16 = 0x8000;
const TAG_STORE_ID: u16 = 0x0001;
const TAG_CREATED_MS: u16 = 0x0002;
const TAG_SEGMENT_BYTES: u16 = 0x0003;
/// Smallest segment size a store may have (format-spec/manifest.md).
pub const MIN_SEGMENT_BYTES: u64 = 4096;
/// Largest segment size: record offsets in the index are 32-bit.
pub const MAX_SEGMENT_BYTES: u64 = u32::MAX as u64;
const TAG_COMPRESSION_LEVEL: u16 = 0x0004;
const TAG_NEXT_SEGMENT_ID: u16 = 0x0005;
const TAG_PARTITION: u16 = 0x0006;
const TAG_SEAL_AGE_MS: u16 = TAG_OPTIONAL | 0x0001;
const TAG_TRASH_RETENTION_MS: u16 = TAG_OPTIONAL | 0x0002;
const TAG_HISTORY_RETENTION_MS: u16 = TAG_OPTIONAL | 0x0003;
const TAG_MIN_FREE_BYTES: u16 = TAG_OPTIONAL | 0x0004;
const TAG_SCHEDULE: u16 = TAG_OPTIONAL | 0x0005;
const TAG_MAX_PROCESSES: u16 = TAG_OPTIONAL | 0x0006;
const TAG_READ_ONLY: u16 = TAG_OPTIONAL | 0x0007;
const TAG_BACKUP_DETECTION: u16 = TAG_OPTIONAL | 0x0008;
const TAG_BACKUP_MODE_SINCE: u16 = TAG_OPTIONAL | 0x0009;
const TAG_BACKUP_MODE_MAX_MS: u16 = TAG_OPTIONAL | 0x000A;
const TAG_CHECKPOINT_AFTER_RECORDS: u16 = TAG_OPTIONAL | 0x000B;

/// Log records after the newest sync cache generation past which a new one
/// is due, unless the operator sets another number.
pub const DEFAULT_CHECKPOINT_AFTER_RECORDS: u64 = 1_000_000;

/// Longest a store stays in backup mode unless the operator sets another
/// maximum: a backup job that died does not stop the store for ever.
pub const DEFAULT_BACKUP_MODE_MAX_MS: u64 = 24 * 3600 * 1000;

/// Background processes the service runs at once when the manifest does not say.
pub const DEFAULT_MAX_PROCESSES: u32 = 2;

/// Trash and history retention when the manifest does not say: 30 days.
pub const DEFAULT_RETENTION_MS: u64 = 30 * 24 * 3600 * 1000;

/// Seal age when the manifest does not say: one day.
pub const DEFAULT_SEAL_AGE_MS: u64 = 24 * 3600 * 1000;

/// How the store learns that a partition's segments were backed up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackupDetection {
    /// The backup tool calls `backup mark` with each segment's checksum.
    #[default]
    ArchiveBit,
    /// The backup tool writes a trigger file into the partition's directory.
    Trigger,
}

/// Whether a partition takes new segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionState {
    /// New segments may be created here.
    Open,
    /// No new segments here; existing ones stay readable.
    Closed,
    /// Drained by redistribution: holds no segment and is not read at open,
    /// so its volume can be removed.
    Retired,
}

/// One partition: a directory, perhaps on its own volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionEntry {
    /// Stable id, never reused.
    pub id: u32,
    /// Open or closed.
    pub state: PartitionState,
    /// Capacity in bytes; 0 means no limit.
    pub capacity_bytes: u64,
    /// Directory, relative to the store directory or absolute.
    pub path: String,
}

/// How often the service runs one process type on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleEntry {
    /// The process type's code (format-spec/history.md).
    pub process: u8,
    /// Time between two scheduled runs; 0 turns scheduling off.
    pub interval_ms: u64,
}

/// The decoded manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Random id of this store, also written in every segment header.
    pub store_id: [u8; 16],
    /// When the store was created, Unix milliseconds.
    pub created_ms: u64,
    /// A segment is sealed once appending the next record would pass this size.
    pub segment_bytes: u64,
    /// zstd level for new records.
    pub compression_level: i32,
    /// The id the next new segment gets; ids are never reused.
    pub next_segment_id: u32,
    /// The partitions, in the order rollover visits them.
    pub partitions: Vec<PartitionEntry>,
    /// An active segment older than this is sealed, so quiet stores still
    /// reach backup.
    pub seal_age_ms: u64,
    /// `maintain` purges trash older than this.
    pub trash_retention_ms: u64,
    /// History entries older than this are pruned.
    pub history_retention_ms: u64,
    /// A partition whose volume has less free space than this (plus one
    /// segment) takes no new segment; 0 turns the check off.
    pub min_free_bytes: u64,
    /// Schedules set by the operator, one per process type at most; a type
    /// not listed runs on its default schedule.
    pub schedule: Vec<ScheduleEntry>,
    /// Most background processes the service runs at once.
    pub max_processes: u32,
    /// The read-only state: every write is refused, reads work.
    pub read_only: bool,
    /// How backups of sealed segments are detected.
    pub backup_detection: BackupDetection,
    /// Backup mode: on since this time (Unix ms), off when `None`.
    pub backup_mode_since_ms: Option<u64>,
    /// Backup mode turns itself off after this long.
    pub backup_mode_max_ms: u64,
    /// A sync cache generation is due once this many log records follow the newest one.
    pub checkpoint_after_records: u64,
    /// The store is encrypted (format version 2; format-spec/encryption.md):
    /// its `KEYS` file holds the master key, and every segment is sealed.
    pub encrypted: bool,
}

/// Why a manifest could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestError {
    /// Wrong magic: not a manifest.
    BadMagic,
    /// Written by another format version.
    Version(u32),
    /// Damaged: the text says what.
    Corrupt(String),
}

impl Manifest {
    /// Encode to bytes (format-spec/manifest.md).
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        field(&mut body, TAG_STORE_ID, &self.store_id);
        field(&mut body, TAG_CREATED_MS, &self.created_ms.to_le_bytes());
        field(
            &mut body,
            TAG_SEGMENT_BYTES,
            &self.segment_bytes.to_le_bytes(),
        );
        field(
            &mut body,
            TAG_COMPRESSION_LEVEL,
            &self.compression_level.to_le_bytes(),
        );
        field(
            &mut body,
            TAG_NEXT_SEGMENT_ID,
            &self.next_segment_id.to_le_bytes(),
        );
        field(&mut body, TAG_SEAL_AGE_MS, &self.seal_age_ms.to_le_bytes());
        field(
            &mut body,
            TAG_TRASH_RETENTION_MS,
            &self.trash_retention_ms.to_le_bytes(),
        );
        field(
            &mut body,
            TAG_HISTORY_RETENTION_MS,
            &self.history_retention_ms.to_le_bytes(),
        );
        field(
            &mut body,
            TAG_MIN_FREE_BYTES,
            &self.min_free_bytes.to_le_bytes(),
        );
        for e in &self.schedule {
            let mut v = Vec::with_capacity(12);
            v.push(e.process);
            v.extend_from_slice(&[0, 0, 0]);
            v.extend_from_slice(&e.interval_ms.to_le_bytes());
            field(&mut body, TAG_SCHEDULE, &v);
        }
        field(
            &mut body,
            TAG_MAX_PROCESSES,
            &self.max_processes.to_le_bytes(),
        );
        if self.read_only {
            field(&mut body, TAG_READ_ONLY, &[1]);
        }
        if self.backup_detection == BackupDetection::Trigger {
            field(&mut body, TAG_BACKUP_DETECTION, &[1]);
        }
        if let Some(since) = self.backup_mode_since_ms {
            field(&mut body, TAG_BACKUP_MODE_SINCE, &since.to_le_bytes());
        }
        if self.backup_mode_max_ms != DEFAULT_BACKUP_MODE_MAX_MS {
            let max = self.backup_mode_max_ms.to_le_bytes();
            field(&mut body, TAG_BACKUP_MODE_MAX_MS, &max);
        }
        if self.checkpoint_after_records != DEFAULT_CHECKPOINT_AFTER_RECORDS {
            let n = self.checkpoint_after_records.to_le_bytes();
            field(&mut body, TAG_CHECKPOINT_AFTER_RECORDS, &n);
        }
        for p in &self.partitions {
            let mut v = Vec::with_capacity(16 + p.path.len());
            v.extend_from_slice(&p.id.to_le_bytes());
            v.push(match p.state {
                PartitionState::Open => 0,
                PartitionState::Closed => 1,
                PartitionState::Retired => 2,
            });
            v.extend_from_slice(&[0, 0, 0]);
            v.extend_from_slice(&p.capacity_bytes.to_le_bytes());
            v.extend_from_slice(p.path.as_bytes());
            field(&mut body, TAG_PARTITION, &v);
        }
        let mut out = Vec::with_capacity(HEADER_BYTES + body.len() + 4);
        out.extend_from_slice(&MAGIC);
        let version = if self.encrypted {
            ENCRYPTED_FORMAT_VERSION
        } else {
            FORMAT_VERSION
        };
        out.extend_from_slice(&version.to_le_bytes());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decode and validate. Never panics; every field is checked.
    pub fn decode(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let corrupt = |s: &str| ManifestError::Corrupt(s.to_string());
        if bytes.get(..8) != Some(&MAGIC[..]) {
            return Err(ManifestError::BadMagic);
        }
        let mut r = Reader::new(bytes);
        r.take(8);
        let version = r.u32().ok_or_else(|| corrupt("truncated header"))?;
        if version != FORMAT_VERSION && version != ENCRYPTED_FORMAT_VERSION {
            return Err(ManifestError::Version(version));
        }
        let body_len = r.u32().ok_or_else(|| corrupt("truncated header"))? as usize;
        let expected = HEADER_BYTES
            .checked_add(body_len)
            .and_then(|n| n.checked_add(4))
            .ok_or_else(|| corrupt("body length overflows"))?;
        if bytes.len() != expected {
            return Err(ManifestError::Corrupt(format!(
                "file is {} bytes, header says {expected}",
                bytes.len()
            )));
        }
        let (covered, crc) = bytes.split_at(expected - 4);
        let stored_crc = u32::from_le_bytes(crc.try_into().map_err(|_| corrupt("truncated crc"))?);
        if crc32fast::hash(covered) != stored_crc {
            return Err(corrupt("crc mismatch"));
        }
        Self::decode_body(
            version == ENCRYPTED_FORMAT_VERSION,
            covered
                .get(HEADER_BYTES..)
                .ok_or_else(|| corrupt("truncated header"))?,
        )
    }

    fn decode_body(encrypted: bool, body: &[u8]) -> Result<Manifest, ManifestError> {
        let corrupt = |s: String| ManifestError::Corrupt(s);
        let mut m = Manifest {
            store_id: [0; 16],
            created_ms: 0,
            segment_bytes: 0,
            compression_level: 0,
            next_segment_id: 0,
            partitions: Vec::new(),
            seal_age_ms: DEFAULT_SEAL_AGE_MS,
            trash_retention_ms: DEFAULT_RETENTION_MS,
            history_retention_ms: DEFAULT_RETENTION_MS,
            min_free_bytes: 0,
            schedule: Vec::new(),
            max_processes: DEFAULT_MAX_PROCESSES,
            read_only: false,
            backup_detection: BackupDetection::ArchiveBit,
            backup_mode_since_ms: None,
            backup_mode_max_ms: DEFAULT_BACKUP_MODE_MAX_MS,
            checkpoint_after_records: DEFAULT_CHECKPOINT_AFTER_RECORDS,
            encrypted,
        };
        let (mut seen_id, mut seen_size, mut seen_level, mut seen_next) =
            (false, false, false, false);
        let mut r = Reader::new(body);
        while r.remaining() > 0 {
            let tag = r
                .u16()
                .ok_or_else(|| corrupt("truncated field tag".into()))?;
            let len = r
                .u32()
                .ok_or_else(|| corrupt("truncated field length".into()))?;
            let value = r
                .take(len as usize)
                .ok_or_else(|| corrupt(format!("field {tag:#06x} runs past the end")))?;
            let mut v = Reader::new(value);
            let bad = || corrupt(format!("field {tag:#06x} has a bad length {len}"));
            match tag {
                TAG_STORE_ID => {
                    m.store_id = v.array().filter(|_| len == 16).ok_or_else(bad)?;
                    seen_id = true;
                }
                TAG_CREATED_MS => m.created_ms = v.u64().filter(|_| len == 8).ok_or_else(bad)?,
                TAG_SEGMENT_BYTES => {
                    m.segment_bytes = v.u64().filter(|_| len == 8).ok_or_else(bad)?;
                    seen_size = true;
                }
                TAG_COMPRESSION_LEVEL => {
                    m.compression_level = v.u32().filter(|_| len == 4).ok_or_else(bad)? as i32;
                    seen_level = true;
                }
                TAG_NEXT_SEGMENT_ID => {
                    m.next_segment_id = v.u32().filter(|_| len == 4).ok_or_else(bad)?;
                    seen_next = true;
                }
                TAG_PARTITION => m.partitions.push(decode_partition(value).ok_or_else(bad)?),
                TAG_SEAL_AGE_MS => m.seal_age_ms = v.u64().filter(|_| len == 8).ok_or_else(bad)?,
                TAG_TRASH_RETENTION_MS => {
                    m.trash_retention_ms = v.u64().filter(|_| len == 8).ok_or_else(bad)?
                }
                TAG_MIN_FREE_BYTES => {
                    m.min_free_bytes = v.u64().filter(|_| len == 8).ok_or_else(bad)?
                }
                TAG_HISTORY_RETENTION_MS => {
                    m.history_retention_ms = v.u64().filter(|_| len == 8).ok_or_else(bad)?
                }
                TAG_SCHEDULE => {
                    let e = decode_schedule(value).ok_or_else(bad)?;
                    if m.schedule.iter().any(|x| x.process == e.process) {
                        return Err(corrupt(format!("process {} is scheduled twice", e.process)));
                    }
                    m.schedule.push(e);
                }
                TAG_MAX_PROCESSES => {
                    m.max_processes = v.u32().filter(|n| len == 4 && *n > 0).ok_or_else(bad)?
                }
                TAG_READ_ONLY => {
                    m.read_only = v.u8().filter(|b| len == 1 && *b <= 1).ok_or_else(bad)? == 1
                }
                TAG_BACKUP_DETECTION => {
                    m.backup_detection = match v.u8().filter(|_| len == 1) {
                        Some(0) => BackupDetection::ArchiveBit,
                        Some(1) => BackupDetection::Trigger,
                        _ => return Err(bad()),
                    }
                }
                TAG_BACKUP_MODE_SINCE => {
                    let since = v.u64().filter(|t| len == 8 && *t > 0).ok_or_else(bad)?;
                    m.backup_mode_since_ms = Some(since)
                }
                TAG_BACKUP_MODE_MAX_MS => {
                    m.backup_mode_max_ms = v.u64().filter(|t| len == 8 && *t > 0).ok_or_else(bad)?
                }
                TAG_CHECKPOINT_AFTER_RECORDS => {
                    m.checkpoint_after_records =
                        v.u64().filter(|n| len == 8 && *n > 0).ok_or_else(bad)?
                }
                t if t & TAG_OPTIONAL != 0 => {}
                t => return Err(corrupt(format!("unknown required field {t:#06x}"))),
            }
        }
        if !(seen_id && seen_size && seen_level && seen_next) {
            return Err(corrupt("a required field is missing".into()));
        }
        if m.partitions.is_empty() {
            return Err(corrupt("no partition".into()));
        }
        if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&m.segment_bytes) {
            return Err(corrupt(format!(
                "segment_bytes {} is outside {MIN_SEGMENT_BYTES}..={MAX_SEGMENT_BYTES}",
                m.segment_bytes
            )));
        }
        Ok(m)
    }
}

fn field(out: &mut Vec<u8>, tag: u16, value: &[u8]) {
    out.extend_from_slice(&tag.to_le_bytes());
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(value);
}

fn decode_schedule(value: &[u8]) -> Option<ScheduleEntry> {
    if value.len() != 12 || value.get(1..4).is_none_or(|r| r.iter().any(|&b| b != 0)) {
        return None;
    }
    let mut r = Reader::new(value);
    let process = r.u8()?;
    r.take(3)?;
    Some(ScheduleEntry {
        process,
        interval_ms: r.u64()?,
    })
}

fn decode_partition(value: &[u8]) -> Option<PartitionEntry> {
    let mut r = Reader::new(value);
    let id = r.u32()?;
    let state = match r.u8()? {
        0 => PartitionState::Open,
        1 => PartitionState::Closed,
        2 => PartitionState::Retired,
        _ => return None,
    };
    // Reserved bytes must be zero: a later version may give them a meaning.
    if r.take(3)?.iter().any(|&b| b != 0) {
        return None;
    }
    let capacity_bytes = r.u64()?;
    let path_bytes = r.take(r.remaining())?;
    if path_bytes.is_empty() || path_bytes.len() > MAX_PATH_BYTES {
        return None;
    }
    let path = std::str::from_utf8(path_bytes).ok()?.to_string();
    Some(PartitionEntry {
        id,
        state,
        capacity_bytes,
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            store_id: [7; 16],
            created_ms: 1_700_000_000_000,
            segment_bytes: 64 << 20,
            compression_level: 3,
            next_segment_id: 12,
            partitions: vec![PartitionEntry {
                id: 0,
                state: PartitionState::Open,
                capacity_bytes: 0,
                path: "p0".into(),
            }],
            seal_age_ms: 3_600_000,
            trash_retention_ms: 7,
            history_retention_ms: 8,
            min_free_bytes: 9,
            schedule: vec![
                ScheduleEntry {
                    process: 4,
                    interval_ms: 60_000,
                },
                ScheduleEntry {
                    process: 6,
                    interval_ms: 0,
                },
            ],
            max_processes: 3,
            read_only: true,
            backup_detection: BackupDetection::Trigger,
            backup_mode_since_ms: Some(1_700_000_000_000),
            backup_mode_max_ms: 3_600_000,
            checkpoint_after_records: 5_000,
            encrypted: false,
        }
    }

    #[test]
    fn backup_mode_round_trips_and_a_zero_time_is_refused() {
        let decoded = Manifest::decode(&sample().encode()).unwrap();
        assert_eq!(decoded.backup_mode_since_ms, Some(1_700_000_000_000));
        assert_eq!(decoded.backup_mode_max_ms, 3_600_000);
        assert_eq!(decoded.checkpoint_after_records, 5_000);
        for tag in [
            TAG_BACKUP_MODE_SINCE,
            TAG_BACKUP_MODE_MAX_MS,
            TAG_CHECKPOINT_AFTER_RECORDS,
        ] {
            let bytes = sample().encode();
            let at = bytes
                .windows(2)
                .rposition(|w| w == tag.to_le_bytes())
                .unwrap()
                + 6;
            let mut b = bytes.clone();
            b[at..at + 8].fill(0);
            assert!(Manifest::decode(&with_crc(b)).is_err(), "{tag:#x}");
        }
        let off = Manifest {
            backup_mode_since_ms: None,
            backup_mode_max_ms: DEFAULT_BACKUP_MODE_MAX_MS,
            ..sample()
        };
        let decoded = Manifest::decode(&off.encode()).unwrap();
        assert_eq!(decoded.backup_mode_since_ms, None);
        assert_eq!(decoded.backup_mode_max_ms, DEFAULT_BACKUP_MODE_MAX_MS);
    }

    #[test]
    fn a_bad_read_only_or_backup_detection_value_is_refused() {
        for tag in [TAG_READ_ONLY, TAG_BACKUP_DETECTION] {
            let bytes = sample().encode();
            let at = bytes
                .windows(2)
                .rposition(|w| w == tag.to_le_bytes())
                .unwrap()
                + 6;
            let mut b = bytes.clone();
            b[at] = 2;
            let b = with_crc(b);
            assert!(matches!(
                Manifest::decode(&b),
                Err(ManifestError::Corrupt(_))
            ));
        }
        let mut plain = sample();
        plain.read_only = false;
        plain.backup_detection = BackupDetection::ArchiveBit;
        let decoded = Manifest::decode(&plain.encode()).unwrap();
        assert!(!decoded.read_only);
        assert_eq!(decoded.backup_detection, BackupDetection::ArchiveBit);
    }

    #[test]
    fn a_bad_schedule_or_process_limit_is_refused() {
        // Reserved bytes of a schedule entry.
        let bytes = sample().encode();
        let tag = TAG_SCHEDULE.to_le_bytes();
        let at = bytes.windows(2).position(|w| w == tag).unwrap() + 6;
        for reserved in at + 1..at + 4 {
            let mut b = bytes.clone();
            b[reserved] = 1;
            assert!(Manifest::decode(&with_crc(b)).is_err(), "byte {reserved}");
        }
        // One process scheduled twice.
        let mut m = sample();
        m.schedule.push(m.schedule[0]);
        let err = Manifest::decode(&m.encode()).unwrap_err();
        assert!(
            matches!(&err, ManifestError::Corrupt(d) if d.contains("twice")),
            "{err:?}"
        );
        // No process may run at all.
        let m = Manifest {
            max_processes: 0,
            read_only: false,
            backup_detection: BackupDetection::ArchiveBit,
            ..sample()
        };
        assert!(Manifest::decode(&m.encode()).is_err());
    }

    /// The manifest with its crc made right again after an edit.
    fn with_crc(mut bytes: Vec<u8>) -> Vec<u8> {
        let n = bytes.len() - 4;
        let crc = crc32fast::hash(&bytes[..n]);
        bytes[n..].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    #[test]
    fn reserved_partition_bytes_and_an_out_of_range_segment_size_are_refused() {
        let bytes = sample().encode();
        let path = bytes.windows(2).rposition(|w| w == b"p0").unwrap();
        for reserved in path - 11..path - 8 {
            let mut b = bytes.clone();
            b[reserved] = 1;
            let err = Manifest::decode(&with_crc(b)).unwrap_err();
            assert!(matches!(err, ManifestError::Corrupt(_)), "{err:?}");
        }
        for size in [0, 4095, u32::MAX as u64 + 1] {
            let m = Manifest {
                segment_bytes: size,
                ..sample()
            };
            let err = Manifest::decode(&m.encode()).unwrap_err();
            assert!(
                matches!(&err, ManifestError::Corrupt(d) if d.contains("segment_bytes")),
                "{size}: {err:?}"
            );
        }
        for size in [MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES] {
            let m = Manifest {
                segment_bytes: size,
                ..sample()
            };
            assert_eq!(Manifest::decode(&m.encode()).unwrap(), m);
        }
    }

    #[test]
    fn round_trips() {
        let m = sample();
        assert_eq!(Manifest::decode(&m.encode()).unwrap(), m);
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let bytes = sample().encode();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            assert!(Manifest::decode(&b).is_err(), "flip at {i} not detected");
        }
    }

    #[test]
    fn every_truncation_is_detected() {
        let bytes = sample().encode();
        for n in 0..bytes.len() {
            assert!(Manifest::decode(&bytes[..n]).is_err());
        }
    }

    #[test]
    fn other_versions_are_refused() {
        let mut b = sample().encode();
        b[8] = 3;
        assert_eq!(Manifest::decode(&b), Err(ManifestError::Version(3)));
    }
}
