//! The built-in backup run: "Backing up units" copies every sealed segment
//! whose archive bit is set into a destination that opens as a store, each
//! copy fsynced and verified by checksum before the bit is cleared;
//! "Backing up resources" copies the manifest and the ended history runs.
//! A process over the engine: it reads segments through the log and marks
//! them through the lifecycle, and must not import the façade or above.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::format::manifest::{BackupDetection, PartitionEntry, PartitionState};
use crate::format::state::StateOp;
use crate::format::{MANIFEST_FILE, segment_file_name};
use crate::io::{VFile, Vfs, tmp_sibling};
use crate::jobs::{Job, Jobs, ProcessType};
use crate::lifecycle::{checksum_mismatch, hash_file};
use crate::log::SegmentState;
use crate::units::now_ms;

pub use crate::lifecycle::{
    BackupEntry, Cursor, FeedEntry, FeedPage, Pending, PendingExplained, PendingReason,
    SafetyCopies,
};

/// What `backup run` did.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct BackupRunReport {
    /// The destination store.
    pub dest: PathBuf,
    /// Segments copied and marked.
    pub copied_segments: Vec<u32>,
    /// Bytes copied.
    pub copied_bytes: u64,
}

impl Engine {
    /// The built-in backup, as two background processes. "Backing up
    /// units": seal the active segment (unless it holds only earlier backup
    /// marks), copy every sealed segment whose archive bit is set into `dest`
    /// (itself a store that opens as it is), fsync and verify each copy by
    /// checksum, then clear the bits. "Backing up resources": the manifest
    /// and the history log. Running it again copies nothing new; a run
    /// stopped before the bits are cleared copies those segments again.
    pub(crate) fn backup_run(&self, jobs: &Jobs, dest: &Path) -> Result<BackupRunReport> {
        let report = jobs.run(self, ProcessType::BackingUpUnits, |job| {
            self.backup_units(dest, job)
        })?;
        jobs.run(self, ProcessType::BackingUpResources, |job| {
            self.backup_resources(dest, job, jobs)
        })?;
        Ok(report)
    }

    fn dest_manifest(&self) -> crate::format::manifest::Manifest {
        let mut m = self.log.manifest();
        m.partitions = m
            .partitions
            .iter()
            .map(|p| PartitionEntry {
                path: format!("p{}", p.id),
                ..p.clone()
            })
            .collect();
        m
    }

    fn backup_units(&self, dest: &Path, job: &Job<'_>) -> Result<BackupRunReport> {
        self.log.seal_if_data()?;
        let list = self.backup_list()?;
        job.set_total(list.len() as u64);
        let vfs = self.log.vfs();
        let dest_manifest = self.dest_manifest();
        for p in &dest_manifest.partitions {
            let dir = dest.join(&p.path);
            vfs.create_dir_all(&dir)
                .map_err(|e| Error::io(&dir, "create directory", e))?;
        }
        // The key file, then the manifest, so DEST opens as a store (with
        // the same passphrases) whatever happens next.
        self.copy_key_file(dest)?;
        let manifest_path = dest.join(MANIFEST_FILE);
        vfs.write_atomic(&manifest_path, &dest_manifest.encode())
            .map_err(|e| Error::io(&manifest_path, "write manifest", e))?;
        let partition_of: HashMap<u32, u32> = self
            .segments()
            .into_iter()
            .map(|s| (s.id, s.partition))
            .collect();
        let mut copied = Vec::new();
        let mut copied_bytes = 0;
        let mut stopped = None;
        for entry in &list {
            if self.log.segment_handle(entry.segment).is_none() {
                // Compaction removed it since the list was made; its records
                // are in a newer segment, which the next run copies.
                job.advance(1);
                continue;
            }
            if let Err(e) = job.checkpoint().and_then(|_| {
                let pdir = dest.join(format!(
                    "p{}",
                    partition_of.get(&entry.segment).copied().unwrap_or(0)
                ));
                let target = pdir.join(segment_file_name(entry.segment, true));
                let (_, file, len) = self
                    .log
                    .segment_handle(entry.segment)
                    .ok_or_else(|| Error::corrupt(entry.segment, 0, "segment is missing"))?;
                copied_bytes +=
                    copy_verified(&*vfs, &*file, len, &target, entry.segment, &entry.checksum)?;
                vfs.sync_dir(&pdir)
                    .map_err(|e| Error::io(&pdir, "fsync directory", e))
            }) {
                stopped = Some(e);
                break;
            }
            copied.push(entry);
            job.advance(1);
        }
        // Clear the bits of what was copied, even when stopped early.
        let at_ms = now_ms();
        let ops: Vec<StateOp> = copied
            .iter()
            .filter_map(|e| {
                let mut checksum = [0u8; 32];
                hex::decode_to_slice(&e.checksum, &mut checksum).ok()?;
                Some(StateOp::BackupMark {
                    segment: e.segment,
                    checksum,
                    at_ms,
                })
            })
            .collect();
        if !ops.is_empty() {
            self.commit_state(ops)?;
        }
        if let Some(e) = stopped {
            return Err(e);
        }
        Ok(BackupRunReport {
            dest: dest.to_path_buf(),
            copied_segments: copied.iter().map(|e| e.segment).collect(),
            copied_bytes,
        })
    }

    /// An encrypted store's key file, copied as it is (its slots wrap the
    /// master key; nothing in it is readable without a passphrase).
    fn copy_key_file(&self, dest: &Path) -> Result<()> {
        if !self.is_encrypted() {
            return Ok(());
        }
        let vfs = self.log.vfs();
        let name = crate::format::key_file::KEY_FILE;
        let (from, to) = (self.log.dir().join(name), dest.join(name));
        let bytes = vfs
            .read_small(&from, 1 << 16)
            .map_err(|e| Error::io(&from, "read key file", e))?;
        vfs.write_atomic(&to, &bytes)
            .map_err(|e| Error::io(&to, "write key file", e))
    }

    fn backup_resources(&self, dest: &Path, job: &Job<'_>, jobs: &Jobs) -> Result<()> {
        job.set_total(2);
        let vfs = self.log.vfs();
        self.copy_key_file(dest)?;
        let manifest_path = dest.join(MANIFEST_FILE);
        vfs.write_atomic(&manifest_path, &self.dest_manifest().encode())
            .map_err(|e| Error::io(&manifest_path, "write manifest", e))?;
        job.advance(1);
        job.checkpoint()?;
        // Runs still going on (this one among them) are left out: in the
        // copy they would read as interrupted after a restore.
        let bytes = jobs.history.closed_runs_file()?;
        let target = dest.join(crate::jobs::history::HISTORY_FILE);
        vfs.write_atomic(&target, &bytes)
            .map_err(|e| Error::io(&target, "write history", e))?;
        job.advance(1);
        Ok(())
    }
}

/// Copy `file` (a sealed segment of `len` bytes) to `to` through a
/// temporary file, hashing as it goes; fsync, re-read the copy and compare
/// both hashes with `checksum` before renaming it into place.
fn copy_verified(
    vfs: &dyn Vfs,
    file: &dyn VFile,
    len: u64,
    to: &Path,
    segment: u32,
    checksum: &str,
) -> Result<u64> {
    let mut expected = [0u8; 32];
    hex::decode_to_slice(checksum, &mut expected)
        .map_err(|_| checksum_mismatch(segment, &[0; 32], checksum))?;
    let tmp = tmp_sibling(to);
    if vfs.exists(&tmp) {
        vfs.remove_file(&tmp)
            .map_err(|e| Error::io(&tmp, "remove stale copy", e))?;
    }
    let dst = vfs
        .create_new(&tmp)
        .map_err(|e| Error::io(&tmp, "create copy", e))?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    while at < len {
        let n = (len - at).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], at)
            .map_err(|e| Error::corrupt(segment, at, format!("read failed while copying: {e}")))?;
        hasher.update(&buf[..n]);
        dst.write_all_at(&buf[..n], at)
            .map_err(|e| Error::io(&tmp, "write copy", e))?;
        at += n as u64;
    }
    dst.sync_data()
        .map_err(|e| Error::io(&tmp, "fsync copy", e))?;
    if *hasher.finalize().as_bytes() != expected {
        let _ = vfs.remove_file(&tmp);
        return Err(checksum_mismatch(
            segment,
            &expected,
            "the bytes read while copying",
        ));
    }
    // Verify what reached the destination, not only what was sent.
    let reread = hash_file(&*dst, len).map_err(|e| Error::io(&tmp, "read copy back", e))?;
    if reread != expected {
        let _ = vfs.remove_file(&tmp);
        return Err(checksum_mismatch(
            segment,
            &expected,
            "the copy as read back",
        ));
    }
    vfs.rename(&tmp, to)
        .map_err(|e| Error::io(to, "rename copy", e))?;
    Ok(len)
}

/// The trigger file backup software writes into a partition's directory
/// once it has backed the partition up (the name Enterprise Vault uses).
pub const TRIGGER_FILE: &str = "IgnoreArchiveBitTrigger.txt";

/// What one trigger file did.
#[derive(Debug, Clone, Serialize)]
pub struct TriggerUse {
    /// The partition whose directory held it.
    pub partition: u32,
    /// When the backup software wrote it, Unix ms.
    pub written_ms: u64,
    /// Segments sealed before then, now marked backed up.
    pub segments: Vec<u32>,
    /// Where it was renamed to, so that it is used once.
    pub renamed_to: PathBuf,
}

impl Engine {
    /// With backup detection `trigger`: for each partition whose directory
    /// holds a trigger file, mark as backed up every sealed segment of that
    /// partition sealed (its file last written) before the trigger was
    /// written, then rename the trigger. The marks are durable before the
    /// rename: a crash between the two uses the trigger again, and segments
    /// already marked are skipped. With `archive-bit`, triggers are left alone.
    pub(crate) fn process_triggers(&self) -> Result<Vec<TriggerUse>> {
        let m = self.log.manifest();
        if m.backup_detection != BackupDetection::Trigger {
            return Ok(Vec::new());
        }
        let vfs = self.log.vfs();
        let mut out = Vec::new();
        for p in m
            .partitions
            .iter()
            .filter(|p| p.state != PartitionState::Retired)
        {
            let dir = self.log.partition_dir(p);
            let trigger = dir.join(TRIGGER_FILE);
            if !vfs.exists(&trigger) {
                continue;
            }
            let written_ms = vfs
                .modified_ms(&trigger)
                .map_err(|e| Error::io(&trigger, "read the trigger file's time", e))?;
            let segments = self.mark_sealed_before(p.id, written_ms, &*vfs)?;
            let renamed_to = dir.join(format!("IgnoreArchiveBitTrigger.{written_ms}.used"));
            vfs.rename(&trigger, &renamed_to)
                .and_then(|_| vfs.sync_dir(&dir))
                .map_err(|e| Error::io(&trigger, "rename the used trigger file", e))?;
            out.push(TriggerUse {
                partition: p.id,
                written_ms,
                segments,
                renamed_to,
            });
        }
        Ok(out)
    }

    /// Mark backed up the sealed segments of `partition` whose archive bit
    /// is set and whose file was last written before `before_ms`.
    fn mark_sealed_before(
        &self,
        partition: u32,
        before_ms: u64,
        vfs: &dyn Vfs,
    ) -> Result<Vec<u32>> {
        let covered: Vec<u32> = self
            .segments()
            .into_iter()
            .filter(|s| s.partition == partition && s.state == SegmentState::Sealed)
            .filter(|s| s.archive_bit && s.damage.is_none())
            .filter(|s| vfs.modified_ms(&s.path).is_ok_and(|t| t < before_ms))
            .map(|s| s.id)
            .collect();
        let mut ops = Vec::with_capacity(covered.len());
        for &segment in &covered {
            ops.push(StateOp::BackupMark {
                segment,
                checksum: self.segment_checksum(segment)?,
                at_ms: now_ms(),
            });
        }
        if !ops.is_empty() {
            self.commit_state(ops)?;
        }
        Ok(covered)
    }
}
