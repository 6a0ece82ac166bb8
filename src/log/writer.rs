//! The writer: appending records to the active segment under one lock,
//! rolling over to a new segment (reserving its id durably first), sealing,
//! and group commit (one fsync covering every waiter it can). Only this file
//! changes the active segment.
//! It must not know what a record means.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use super::{Log, SegmentInfo, SegmentState, location, saveset_count, write_manifest};
use crate::error::{Error, Result};
use crate::format::manifest::{PartitionEntry, PartitionState};
use crate::format::segment::{Codec, RecordHeader, RecordKind, SegmentHeader, encode_payload};
use crate::id::SavesetId;
use crate::index::Location;
use crate::segment::ActiveSegment;
use crate::units::now_ms;

impl Writer {
    /// The last sequence handed out.
    pub(crate) fn next_sequence_minus_one(&self) -> u64 {
        self.next_sequence - 1
    }

    /// The active segment's id, partition and end, if one is active.
    pub(crate) fn active_tail(&self) -> Option<(u32, u32, u64)> {
        self.active.as_ref().map(|a| (a.id, a.partition_id, a.end))
    }

    /// Note the parts of the composite record just appended at `loc`.
    pub(crate) fn set_part_list(&mut self, loc: Location, message_len: u64, parts: Vec<[u8; 32]>) {
        if let Some(a) = self.active.as_mut().filter(|a| a.id == loc.segment) {
            a.set_part_list(loc.offset as u64, message_len, parts);
        }
    }
}

/// The single appender's state; held only while appending.
pub(crate) struct Writer {
    pub(super) active: Option<ActiveSegment>,
    pub(super) next_sequence: u64,
    pub(super) failed: Option<String>,
}

impl Log {
    /// Append one record of any kind with the next sequence number.
    pub(crate) fn append_record_locked(
        &self,
        w: &mut Writer,
        kind: RecordKind,
        id: SavesetId,
        codec: Codec,
        payload: &[u8],
        logical_len: u64,
    ) -> Result<(Location, u64)> {
        self.check_writer(w)?;
        let sequence = w.next_sequence;
        let (header, payload) = crate::segment::build_record(
            &self.sealing,
            None,
            kind,
            codec,
            logical_len,
            sequence,
            id.0,
            payload,
        )?;
        let loc = self.append_locked(w, &header, &payload)?;
        w.next_sequence += 1;
        Ok((loc, sequence))
    }

    /// Append an encoded catalog or state batch, content-addressed and
    /// compressed like a saveset; returns its sequence.
    pub(crate) fn append_batch_locked(
        &self,
        w: &mut Writer,
        kind: RecordKind,
        batch: &[u8],
    ) -> Result<u64> {
        let level = self.manifest.lock().compression_level;
        let (codec, payload) = encode_payload(batch, level);
        let (_, seq) = self.append_record_locked(
            w,
            kind,
            SavesetId::of(batch),
            codec,
            &payload,
            batch.len() as u64,
        )?;
        Ok(seq)
    }

    /// The writer, for callers that append several records as one step.
    pub(crate) fn lock_writer(&self) -> parking_lot::MutexGuard<'_, Writer> {
        self.writer.lock()
    }
    fn check_writer(&self, w: &Writer) -> Result<()> {
        match &w.failed {
            Some(detail) => Err(Error::WriterFailed {
                path: self.dir.clone(),
                detail: detail.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Append under the writer lock, rolling over to a new segment when the
    /// record would take the active one past the segment size.
    fn append_locked(
        &self,
        w: &mut Writer,
        header: &RecordHeader,
        payload: &[u8],
    ) -> Result<Location> {
        let (segment_bytes, seal_age_ms) = {
            let m = self.manifest.lock();
            (m.segment_bytes, m.seal_age_ms)
        };
        let now = now_ms();
        let full = w.active.as_ref().is_some_and(|a| {
            !a.entries.is_empty()
                && (a.end + header.record_bytes() > segment_bytes
                    || a.created_ms.saturating_add(seal_age_ms) <= now)
        });
        if full {
            self.seal_locked(w)?;
        }
        if w.active.is_none() {
            self.start_segment(w)?;
        }
        let active = w.active.as_mut().ok_or_else(|| Error::WriterFailed {
            path: self.dir.clone(),
            detail: "no active segment".into(),
        })?;
        let outcome = match active.append(header, payload) {
            Ok(o) => o,
            Err(e) => {
                if let Error::WriterFailed { detail, .. } = &e {
                    w.failed = Some(detail.clone());
                }
                return Err(e);
            }
        };
        let (id, end) = (active.id, active.end);
        if let Some(info) = self.segments.write().get_mut(&id) {
            info.bytes = end;
            if header.kind.is_saveset() {
                info.savesets += 1;
                info.saveset_records += 1;
                info.logical_bytes += header.logical_len;
            } else if header.kind == RecordKind::Part {
                info.parts += 1;
                info.part_bytes += header.record_bytes();
            }
        }
        Ok(location(id, outcome.offset))
    }

    fn start_segment(&self, w: &mut Writer) -> Result<()> {
        let (segment_id, partition) = self.reserve_segment(None)?;
        let header = SegmentHeader {
            segment_id,
            partition_id: partition.id,
            created_ms: now_ms(),
            store_id: self.manifest.lock().store_id,
            flags: 0,
            encrypted: false,
            tag: [0; 12],
        };
        let active = self.create_segment(&partition, header)?;
        w.active = Some(active);
        Ok(())
    }

    /// Create a segment file in `partition` and list it (as active).
    pub(crate) fn create_segment(
        &self,
        partition: &PartitionEntry,
        header: SegmentHeader,
    ) -> Result<ActiveSegment> {
        let active = self.volume(partition).create(header, &self.sealing)?;
        if !header.is_compaction_output() {
            self.segments.write().insert(
                header.segment_id,
                SegmentInfo::new(partition.id, &active, header.created_ms),
            );
        }
        Ok(active)
    }

    /// Choose the partition for a new segment and reserve its id durably, so
    /// an id is never handed out twice. `only` restricts the choice to one
    /// partition (redistribution); otherwise it is the first open partition
    /// with room for a whole segment (rollover).
    pub(crate) fn reserve_segment(&self, only: Option<u32>) -> Result<(u32, PartitionEntry)> {
        let used = self.partition_bytes();
        let mut m = self.manifest.lock();
        let segment_bytes = m.segment_bytes;
        let min_free = m.min_free_bytes;
        // The volume must keep `min_free` bytes after one more segment.
        // A volume whose free space cannot be read is not held back.
        let volume_has_room = |p: &PartitionEntry| {
            min_free == 0
                || self
                    .volume(p)
                    .available_space()
                    .is_none_or(|free| free >= min_free.saturating_add(segment_bytes))
        };
        let partition = m
            .partitions
            .iter()
            .find(|p| {
                let used = used.get(&p.id).copied().unwrap_or(0);
                only.is_none_or(|o| o == p.id)
                    && p.state == PartitionState::Open
                    && (p.capacity_bytes == 0 || used + segment_bytes <= p.capacity_bytes)
                    && volume_has_room(p)
            })
            .cloned()
            .ok_or_else(|| match only {
                Some(o) => Error::InvalidSetting(format!(
                    "partition {o} is not open or has no room for a new segment"
                )),
                None => Error::InvalidSetting(
                    "no open partition has room for a new segment (add or reopen one)".into(),
                ),
            })?;
        let segment_id = m.next_segment_id;
        m.next_segment_id = segment_id + 1;
        if let Err(e) = write_manifest(&*self.vfs, &self.dir, &m) {
            m.next_segment_id = segment_id;
            return Err(e);
        }
        Ok((segment_id, partition))
    }

    /// List a sealed segment written by compaction.
    pub(super) fn add_sealed_segment(
        &self,
        partition_id: u32,
        output: &ActiveSegment,
        path: PathBuf,
        len: u64,
    ) {
        let mut info = SegmentInfo::new(partition_id, output, output.created_ms);
        info.path = path;
        info.bytes = len;
        info.state = SegmentState::Sealed;
        let savesets = saveset_count(&output.entries);
        info.savesets = savesets;
        info.saveset_records = savesets;
        info.logical_bytes = output
            .entries
            .iter()
            .filter(|e| e.kind == RecordKind::Saveset)
            .map(|e| e.logical_len)
            .sum::<u64>()
            + output.part_lists.iter().map(|l| l.message_len).sum::<u64>();
        for e in output.entries.iter().filter(|e| e.kind == RecordKind::Part) {
            info.parts += 1;
            info.part_bytes += e.stored_len + crate::format::segment::RECORD_HEADER_BYTES as u64;
        }
        self.segments.write().insert(output.id, info);
    }

    fn seal_locked(&self, w: &mut Writer) -> Result<Option<u32>> {
        let Some(active) = w.active.as_ref() else {
            return Ok(None);
        };
        let (path, len) = match self.seal_output(active) {
            Ok(x) => x,
            Err(e) => {
                // The footer may be half written; the next open repairs it.
                w.failed = Some(e.to_string());
                return Err(e);
            }
        };
        let id = active.id;
        self.durable_sequence
            .fetch_max(active.sequences.1, Ordering::SeqCst);
        if let Some(info) = self.segments.write().get_mut(&id) {
            info.path = path;
            info.bytes = len;
            info.state = SegmentState::Sealed;
        }
        w.active = None;
        self.kick_uploader();
        Ok(Some(id))
    }

    /// Seal the active segment if it is older than the store's seal age
    /// (and holds a record). Returns the id sealed. In the read-only state
    /// and in backup mode it waits: sealing renames a file.
    pub fn seal_if_aged(&self) -> Result<Option<u32>> {
        if self.in_read_only_state() || self.backup_mode_since().is_some() {
            return Ok(None);
        }
        let age = self.manifest.lock().seal_age_ms;
        let aged =
            self.writer.lock().active.as_ref().is_some_and(|a| {
                !a.entries.is_empty() && a.created_ms.saturating_add(age) <= now_ms()
            });
        if aged { self.seal() } else { Ok(None) }
    }

    /// Seal the active segment if it holds savesets or catalog changes (not
    /// only lifecycle records): the built-in backup uses this so that its own
    /// backup marks do not make every run copy one more segment.
    pub(crate) fn seal_if_data(&self) -> Result<Option<u32>> {
        self.seal_if_holds(|kind| kind != RecordKind::State)
    }

    /// Seal the active segment if it holds a record of a kind `wanted` accepts.
    pub(crate) fn seal_if_holds(&self, wanted: impl Fn(RecordKind) -> bool) -> Result<Option<u32>> {
        let holds = self
            .writer
            .lock()
            .active
            .as_ref()
            .is_some_and(|a| a.entries.iter().any(|e| wanted(e.kind)));
        if holds { self.seal() } else { Ok(None) }
    }

    /// Take a sequence number for a record written outside the active
    /// segment (a compaction record), so sequences stay unique.
    pub(crate) fn reserve_sequence(&self) -> Result<u64> {
        let mut w = self.writer.lock();
        self.check_writer(&w)?;
        let seq = w.next_sequence;
        w.next_sequence += 1;
        Ok(seq)
    }

    /// The last sequence given out.
    pub(crate) fn last_sequence(&self) -> u64 {
        self.writer.lock().next_sequence - 1
    }

    /// The partition of the active segment, if one is active.
    pub(crate) fn active_partition(&self) -> Option<u32> {
        self.writer.lock().active.as_ref().map(|a| a.partition_id)
    }

    /// Seal the active segment now, even if it is not full, so it can be
    /// backed up. Returns the id sealed, or `None` when no segment was active
    /// or it held no record.
    pub fn seal(&self) -> Result<Option<u32>> {
        self.check_writable()?;
        let mut w = self.writer.lock();
        self.check_writer(&w)?;
        if w.active.as_ref().is_some_and(|a| a.entries.is_empty()) {
            return Ok(None);
        }
        self.seal_locked(&mut w)
    }

    /// Wait until every record up to `sequence` is durable, issuing the
    /// fsync ourselves if nobody else is (group commit): writers that arrive
    /// during a leader's fsync wait for it together and are woken at once,
    /// and one of those it did not cover leads the next.
    pub(crate) fn wait_durable(&self, sequence: u64) -> Result<()> {
        if self.durable_sequence.load(Ordering::SeqCst) >= sequence {
            return Ok(());
        }
        let mut syncing = self.syncing.lock();
        loop {
            if self.durable_sequence.load(Ordering::SeqCst) >= sequence {
                return Ok(());
            }
            if !*syncing {
                break;
            }
            self.synced.wait(&mut syncing);
        }
        *syncing = true;
        drop(syncing);
        let _leader = SyncLeader(self);
        self.sync_appended()
    }

    /// Fsync the active segment, making every record appended so far durable.
    fn sync_appended(&self) -> Result<()> {
        let (file, path, upto) = {
            let w = self.writer.lock();
            self.check_writer(&w)?;
            let upto = w.next_sequence - 1;
            match &w.active {
                Some(a) => (a.file.clone(), a.path.clone(), upto),
                None => {
                    // Everything appended is in sealed (synced) segments.
                    self.durable_sequence.fetch_max(upto, Ordering::SeqCst);
                    return Ok(());
                }
            }
        };
        if let Err(e) = file.sync_data() {
            // After a failed fsync the page cache may have dropped our
            // writes: nothing since the last good sync can be trusted until
            // a reopen re-reads the segment.
            self.writer.lock().failed = Some(format!("fsync of {} failed: {e}", path.display()));
            return Err(Error::io(&path, "fsync segment", e));
        }
        self.durable_sequence.fetch_max(upto, Ordering::SeqCst);
        Ok(())
    }
}

/// The group commit's leader: when its fsync is over (or it unwinds), the
/// writers waiting for it are woken.
struct SyncLeader<'a>(&'a Log);

impl Drop for SyncLeader<'_> {
    fn drop(&mut self) {
        *self.0.syncing.lock() = false;
        self.0.synced.notify_all();
    }
}
