//! The store's figures over time: `metrics.log`, a bounded series of
//! samples (format-spec/metrics.md) that `vaultstore serve` appends to once
//! a minute and the operator's page draws.
//!
//! Owns the file only: encoding, appending durably, reading back (cutting a
//! torn tail), and keeping it bounded by rewriting it atomically. It takes
//! samples as given; it knows nothing of the store or the service. Like the
//! history, it is information, not data: losing it loses no saveset.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::indexing_slicing))]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::io::{VFile, Vfs};

/// File name in the store directory.
pub const METRICS_FILE: &str = "metrics.log";
/// Magic at the start of the file.
pub const METRICS_MAGIC: [u8; 8] = *b"VSMETRIC";
const HEADER_BYTES: usize = 16;
/// Bytes of one sample on disk.
pub const SAMPLE_BYTES: usize = 80;
/// Samples kept: a week at one a minute.
pub const MAX_SAMPLES: usize = 7 * 24 * 60;

/// One sample of the store's figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Sample {
    /// When, Unix milliseconds.
    pub time_ms: u64,
    /// Live savesets.
    pub savesets: u64,
    /// Live references.
    pub references: u64,
    /// Logical bytes of the live savesets.
    pub logical_bytes: u64,
    /// Bytes of segment files.
    pub stored_bytes: u64,
    /// Dead bytes waiting for defragmentation.
    pub dead_bytes: u64,
    /// Savesets awaiting indexing.
    pub awaiting_index: u64,
    /// Savesets awaiting backup.
    pub awaiting_backup: u64,
    /// Savesets ready for post-processing.
    pub ready: u64,
}

impl Sample {
    fn fields(&self) -> [u64; 9] {
        [
            self.time_ms,
            self.savesets,
            self.references,
            self.logical_bytes,
            self.stored_bytes,
            self.dead_bytes,
            self.awaiting_index,
            self.awaiting_backup,
            self.ready,
        ]
    }

    /// The 80 bytes of a sample: crc32, reserved, nine u64 fields.
    pub fn encode(&self) -> [u8; SAMPLE_BYTES] {
        let mut b = [0u8; SAMPLE_BYTES];
        for (slot, v) in b[8..].chunks_exact_mut(8).zip(self.fields()) {
            slot.copy_from_slice(&v.to_le_bytes());
        }
        let crc = crc32fast::hash(&b[4..]);
        b[..4].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// A sample from its bytes, if whole and its crc and reserved bytes check.
    pub fn decode(b: &[u8]) -> Option<Sample> {
        let b: &[u8; SAMPLE_BYTES] = b.get(..SAMPLE_BYTES)?.try_into().ok()?;
        let crc = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        if crc != crc32fast::hash(&b[4..]) || b[4..8] != [0; 4] {
            return None;
        }
        // Nine u64 fields fill the 72 bytes after the crc and reserved bytes.
        let mut r = crate::format::Reader::new(&b[8..]);
        let mut f = || r.u64().unwrap_or(0);
        Some(Sample {
            time_ms: f(),
            savesets: f(),
            references: f(),
            logical_bytes: f(),
            stored_bytes: f(),
            dead_bytes: f(),
            awaiting_index: f(),
            awaiting_backup: f(),
            ready: f(),
        })
    }
}

fn header() -> [u8; HEADER_BYTES] {
    let mut h = [0u8; HEADER_BYTES];
    h[..8].copy_from_slice(&METRICS_MAGIC);
    h[8..12].copy_from_slice(&1u32.to_le_bytes());
    h
}

/// Decode a whole file: the samples, in order, up to the first that does
/// not check (a torn append). None when the header is not a metrics log.
pub fn decode_file(bytes: &[u8]) -> Option<Vec<Sample>> {
    if bytes.get(..HEADER_BYTES) != Some(&header()[..]) {
        return None;
    }
    Some(
        bytes
            .get(HEADER_BYTES..)?
            .chunks(SAMPLE_BYTES)
            .map_while(Sample::decode)
            .collect(),
    )
}

/// The open file (to append to) and the samples it holds.
type Series = (Option<Arc<dyn VFile>>, Vec<Sample>);

/// The series of one store, open for appending. Samples are kept in memory
/// too (a week of them is 800 KiB).
pub struct MetricsLog {
    vfs: Arc<dyn Vfs>,
    path: PathBuf,
    max: usize,
    state: Mutex<Series>,
}

impl MetricsLog {
    /// Open (or create) `metrics.log` in `dir`. A damaged file is replaced
    /// by an empty one, a torn tail cut off: the series is information.
    pub fn open(vfs: Arc<dyn Vfs>, dir: &Path) -> Result<MetricsLog> {
        Self::open_bounded(vfs, dir, MAX_SAMPLES)
    }

    /// [`MetricsLog::open`] keeping at most `max` samples.
    pub fn open_bounded(vfs: Arc<dyn Vfs>, dir: &Path, max: usize) -> Result<MetricsLog> {
        let max = max.max(1);
        let path = dir.join(METRICS_FILE);
        let existing = if vfs.exists(&path) {
            let bytes = vfs
                .read_small(&path, (HEADER_BYTES + SAMPLE_BYTES * max * 2) as u64)
                .ok();
            bytes.and_then(|b| decode_file(&b))
        } else {
            None
        };
        let samples = existing.unwrap_or_default();
        let log = MetricsLog {
            vfs,
            path,
            max,
            state: Mutex::new((None, Vec::new())),
        };
        log.rewrite(samples)?;
        Ok(log)
    }

    /// Write `samples` (the newest [`MAX_SAMPLES`]) as the whole file,
    /// atomically, and append after them from now on.
    fn rewrite(&self, mut samples: Vec<Sample>) -> Result<()> {
        if samples.len() > self.max {
            samples.drain(..samples.len() - self.max);
        }
        let mut bytes = header().to_vec();
        for s in &samples {
            bytes.extend_from_slice(&s.encode());
        }
        self.vfs
            .write_atomic(&self.path, &bytes)
            .map_err(|e| Error::io(&self.path, "write metrics", e))?;
        let file = self
            .vfs
            .open_rw(&self.path)
            .map_err(|e| Error::io(&self.path, "open metrics", e))?;
        *self.state.lock() = (Some(file), samples);
        Ok(())
    }

    /// Append a sample durably; past the bound by an eighth, the file is
    /// rewritten with the newest [`MAX_SAMPLES`].
    pub fn append(&self, sample: Sample) -> Result<()> {
        let full = {
            let mut st = self.state.lock();
            let offset = (HEADER_BYTES + st.1.len() * SAMPLE_BYTES) as u64;
            if let Some(file) = &st.0 {
                file.write_all_at(&sample.encode(), offset)
                    .and_then(|_| file.sync_data())
                    .map_err(|e| Error::io(&self.path, "append metrics", e))?;
            }
            st.1.push(sample);
            st.1.len() > self.max + self.max / 8
        };
        if full {
            let samples = self.state.lock().1.clone();
            self.rewrite(samples)?;
        }
        Ok(())
    }

    /// Samples at or after `since_ms`, oldest first.
    pub fn since(&self, since_ms: u64) -> Vec<Sample> {
        self.state
            .lock()
            .1
            .iter()
            .filter(|s| s.time_ms >= since_ms)
            .copied()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t: u64) -> Sample {
        Sample {
            time_ms: t,
            savesets: t * 2,
            stored_bytes: t * 1000,
            ready: 3,
            ..Sample::default()
        }
    }

    #[test]
    fn samples_survive_a_reopen_a_torn_tail_is_cut_and_the_file_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let vfs: Arc<dyn Vfs> = Arc::new(crate::io::StdFs);
        let max = 64;
        let log = MetricsLog::open_bounded(vfs.clone(), dir.path(), max).unwrap();
        for t in 1..=5 {
            log.append(sample(t)).unwrap();
        }
        drop(log);
        // A torn append: half a sample at the end.
        let path = dir.path().join(METRICS_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&sample(6).encode()[..40]);
        std::fs::write(&path, &bytes).unwrap();
        let log = MetricsLog::open_bounded(vfs.clone(), dir.path(), max).unwrap();
        assert_eq!(log.since(0), (1..=5).map(sample).collect::<Vec<_>>());
        assert_eq!(log.since(4).len(), 2);
        // Bounded: never more than the bound and an eighth.
        for t in 6..(max as u64 + 200) {
            log.append(sample(t)).unwrap();
        }
        let n = log.since(0).len();
        assert!(n <= max + max / 8, "{n}");
        let on_disk = std::fs::metadata(&path).unwrap().len() as usize;
        assert_eq!(on_disk, HEADER_BYTES + n * SAMPLE_BYTES);
        drop(log);
        let log = MetricsLog::open_bounded(vfs, dir.path(), max).unwrap();
        assert_eq!(log.since(0).len(), max);
        assert_eq!(log.since(0).last().unwrap().time_ms, max as u64 + 199);
        // A file written from the spec alone (the fuzz seed, made by a short
        // script from format-spec/metrics.md) reads back.
        let seed = include_bytes!("../fuzz/corpus/metrics/seed-two-samples");
        let read = decode_file(seed).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!((read[1].savesets, read[1].ready), (12, 1));
        let torn = include_bytes!("../fuzz/corpus/metrics/seed-torn");
        assert_eq!(decode_file(torn).unwrap().len(), 1);
        // A flipped byte ends the series there.
        let mut b = sample(9).encode();
        b[20] ^= 1;
        assert!(Sample::decode(&b).is_none());
    }
}
