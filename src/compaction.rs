//! Compaction passes: defragmentation and redistribution.
//!
//! Owns choosing victim segments, copying their live records verbatim (same
//! header, crc and sequence: nothing is recompressed) into new segments
//! flagged as compaction output, committing by sealing them, switching the
//! index, and deleting the victims; and, at open, finishing or rolling back
//! a compaction a crash interrupted (format-spec/segment.md, "Compaction").
//! It never writes to the active segment and never changes what a record
//! says: the catalog is untouched, and the lifecycle only learns which
//! segments went away and which new ones hold BackupComplete savesets.
//!
//! Commit protocol, per output segment:
//! 1. reserve an id, create `segment-N.active` with the compaction flag;
//! 2. append a compaction record naming the victims, then their live records;
//! 3. seal it (footer, fsync, rename, directory fsync): the commit point;
//! 4. switch the index to the new locations (only where it still points at
//!    the old one: a saveset that died meanwhile stays dead);
//! 5. delete the victims.
//!
//! A crash before 3 leaves an unsealed output, removed at open; after 3, the
//! victims it names are removed at open. Readers never see a saveset missing:
//! until 4 they read the victims, whose open files outlive their deletion.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::crypto::Sealing;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::format::compaction::CompactionRecord;
use crate::format::manifest::PartitionState;
use crate::format::segment::{
    Codec, FooterEntry, RECORD_HEADER_BYTES, RecordHeader, RecordKind, SEGMENT_FLAG_COMPACTION,
    SegmentHeader,
};
use crate::id::SavesetId;
use crate::index::Location;
use crate::io::VFile;
use crate::jobs::{Job, Jobs, ProcessType};
use crate::log::{SegmentState, location};
use crate::segment::{self, ActiveSegment};
use crate::units::now_ms;

/// Default dead fraction above which defragmentation rewrites a segment.
pub const DEFAULT_THRESHOLD: f64 = 0.5;

/// Records are read from a victim in spans of about this many bytes, and a
/// larger record is streamed in pieces of this size.
const SPAN_BYTES: u64 = 8 << 20;

pub use crate::log::RemovedSegment;

/// A segment a pass left alone, and why.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct SkippedSegment {
    /// Segment id.
    pub segment: u32,
    /// Why it was not moved.
    pub reason: String,
}

/// What a defragmentation or redistribution did.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct CompactionReport {
    /// Segments rewritten and deleted.
    pub segments_read: Vec<u32>,
    /// Segments written.
    pub segments_written: Vec<u32>,
    /// Live savesets copied.
    pub savesets_moved: u64,
    /// Dead saveset records left behind.
    pub savesets_dropped: u64,
    /// Bytes read from victims.
    pub bytes_read: u64,
    /// Bytes written into new segments (whole files).
    pub bytes_written: u64,
    /// Bytes of victim files deleted minus bytes written.
    pub bytes_reclaimed: u64,
    /// Bytes written per byte reclaimed (the cost of reclaiming); `null`
    /// when nothing was reclaimed (a drain that only moves).
    pub write_amplification: Option<f64>,
    /// Wall time.
    pub seconds: f64,
    /// Bytes read from victims per second, in MB (10^6 bytes).
    pub megabytes_per_second: f64,
    /// Segments left in place.
    pub skipped: Vec<SkippedSegment>,
    /// Partitions retired by a drain (empty, no longer read at open).
    pub retired_partitions: Vec<u32>,
}

/// What `redistribute` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redistribution {
    /// Move every saveset out of this partition, then retire it.
    Drain(u32),
    /// Even out the fill of open partitions relative to their capacity.
    Balance,
}

/// A victim as planned: its records and the live ones among them.
struct Victim {
    id: u32,
    partition: u32,
    file: Arc<dyn VFile>,
    path: PathBuf,
    bytes: u64,
    /// Records to copy: live savesets and every catalog, state and
    /// compaction record.
    keep: Vec<FooterEntry>,
    dropped: u64,
    complete: bool,
    /// Part lists of composite records, by record offset.
    part_lists: std::collections::HashMap<u64, (u64, Vec<[u8; 32]>)>,
}

/// A record copied: which map it belongs to, its id, old and new place.
#[derive(Clone, Copy)]
struct Move {
    part: bool,
    id: SavesetId,
    old: Location,
    new: Location,
}

impl Victim {
    fn keep_bytes(&self) -> u64 {
        self.keep
            .iter()
            .map(|e| RECORD_HEADER_BYTES as u64 + e.stored_len)
            .sum()
    }
}

/// A sealed output, ready to switch to.
struct Output {
    segment: ActiveSegment,
    path: PathBuf,
    len: u64,
    moves: Vec<Move>,
}

impl Engine {
    /// Rewrite sealed segments whose dead fraction (dead bytes / file
    /// bytes) is at least `threshold`, as the "DB defragmentation" process.
    pub(crate) fn defrag(&self, jobs: &Jobs, threshold: f64) -> Result<CompactionReport> {
        check_threshold(threshold)?;
        jobs.run(self, ProcessType::Defragmentation, |job| {
            let _one = self.compaction_lock();
            let start = Instant::now();
            let victims = self.defrag_victims(threshold);
            let mut report = CompactionReport::default();
            self.compact(&victims, None, job, &mut report)?;
            Ok(finish(report, start))
        })
    }

    /// Move savesets between partitions, as the "Redistributing messages in
    /// DB" process: drain one (it is closed first, and retired once empty),
    /// or balance fill across open ones. Stopped or failed, it resumes
    /// where it left off when run again.
    pub(crate) fn redistribute(
        &self,
        jobs: &Jobs,
        how: Redistribution,
    ) -> Result<CompactionReport> {
        jobs.run(self, ProcessType::Redistribution, |job| {
            let _one = self.compaction_lock();
            let start = Instant::now();
            let mut report = CompactionReport::default();
            match how {
                Redistribution::Drain(p) => self.drain(p, job, &mut report)?,
                Redistribution::Balance => self.balance(job, &mut report)?,
            }
            Ok(finish(report, start))
        })
    }

    /// What `defrag(threshold)` would do, changing nothing: the segments
    /// it would rewrite, the savesets it would move and drop, the bytes it
    /// would read, write and reclaim, and the segments it would skip.
    pub fn defrag_plan(&self, threshold: f64) -> Result<CompactionReport> {
        check_threshold(threshold)?;
        let victims = self.defrag_victims(threshold);
        let mut report = CompactionReport::default();
        self.plan_report(&victims, &mut report)?;
        Ok(report)
    }

    /// What `redistribute(how)` would do, changing nothing (see
    /// `Store::defrag_plan`). A drain counts the active segment of the
    /// partition too: it is sealed first.
    pub fn redistribute_plan(&self, how: Redistribution) -> Result<CompactionReport> {
        let mut report = CompactionReport::default();
        let victims: Vec<u32> = match how {
            Redistribution::Drain(p) => {
                let entry = self.partition_entry(p)?;
                if entry.state == PartitionState::Retired {
                    return Ok(report);
                }
                self.segments()
                    .into_iter()
                    .filter(|s| s.partition == p)
                    .map(|s| s.id)
                    .collect()
            }
            Redistribution::Balance => self.balance_moves(),
        };
        self.plan_report(&victims, &mut report)?;
        // The active segment of a drained partition is sealed, then moved.
        if let Redistribution::Drain(_) = how {
            for skipped in std::mem::take(&mut report.skipped) {
                match self
                    .segments()
                    .into_iter()
                    .find(|s| s.id == skipped.segment)
                {
                    Some(s) if s.state == SegmentState::Active => {
                        report.segments_read.push(s.id);
                        report.bytes_read += s.bytes;
                        report.bytes_written += s.bytes - s.dead_bytes.min(s.bytes);
                        report.bytes_reclaimed += s.dead_bytes.min(s.bytes);
                        report.savesets_moved += s.savesets - s.dead_savesets.min(s.savesets);
                        report.savesets_dropped += s.dead_savesets.min(s.savesets);
                    }
                    _ => report.skipped.push(skipped),
                }
            }
        }
        Ok(report)
    }

    /// Fill `report` with what compacting `victims` would do: the records
    /// kept and dropped exactly, `bytes_read` as the kept records' bytes (a
    /// real pass reads spans, dead records between live ones included), the
    /// bytes written as the kept records plus
    /// each output's header, compaction record, footer and trailer (part
    /// maps of composite records not counted).
    fn plan_report(&self, victims: &[u32], report: &mut CompactionReport) -> Result<()> {
        let planned = self.plan_victims(victims, report)?;
        for v in &planned {
            report.segments_read.push(v.id);
            report.bytes_read += v.keep_bytes();
            report.savesets_moved += v.keep.iter().filter(|e| e.kind.is_saveset()).count() as u64;
            report.savesets_dropped += v.dropped;
        }
        let victim_bytes: u64 = planned.iter().map(|v| v.bytes).sum();
        let (complete, incomplete): (Vec<Victim>, Vec<Victim>) =
            planned.into_iter().partition(|v| v.complete);
        let segment_bytes = self.log.manifest().segment_bytes;
        for group in [complete, incomplete] {
            for chunk in chunk_victims(group, segment_bytes) {
                report.bytes_written += output_bytes(&chunk);
            }
        }
        report.bytes_reclaimed = victim_bytes.saturating_sub(report.bytes_written);
        report.write_amplification = (report.bytes_reclaimed > 0)
            .then(|| report.bytes_written as f64 / report.bytes_reclaimed as f64);
        Ok(())
    }

    /// Sealed segments whose dead share is at least `threshold`.
    fn defrag_victims(&self, threshold: f64) -> Vec<u32> {
        self.segments()
            .into_iter()
            .filter(|s| s.state == SegmentState::Sealed && s.dead_bytes > 0 && s.bytes > 0)
            .filter(|s| s.dead_bytes as f64 / s.bytes as f64 >= threshold)
            .map(|s| s.id)
            .collect()
    }

    /// The segments a balance would move, simulated on the current fills.
    fn balance_moves(&self) -> Vec<u32> {
        let mut fills = self.partition_fills();
        let mut segments = self.segments();
        let mut moved = Vec::new();
        let stuck = HashSet::new();
        // Each move narrows the gap, and a segment moves at most once here.
        while let Some(plan) = plan_balance_move(&fills, &segments, &stuck) {
            let Some(seg) = segments.iter_mut().find(|s| s.id == plan.segment) else {
                break;
            };
            for f in fills.iter_mut() {
                if f.0 == seg.partition {
                    f.1 -= seg.bytes.min(f.1);
                } else if f.0 == plan.to {
                    f.1 += seg.bytes;
                }
            }
            seg.partition = plan.to;
            // Moved once: a second move of the same bytes is never planned.
            seg.state = SegmentState::Active;
            moved.push(plan.segment);
        }
        moved
    }

    fn partition_entry(&self, partition: u32) -> Result<crate::format::manifest::PartitionEntry> {
        self.log
            .manifest()
            .partitions
            .into_iter()
            .find(|p| p.id == partition)
            .ok_or_else(|| Error::InvalidSetting(format!("partition {partition} does not exist")))
    }

    /// Defragmentation and redistribution never run at the same time.
    fn compaction_lock(&self) -> parking_lot::MutexGuard<'_, ()> {
        self.compaction_pass.lock()
    }

    fn drain(&self, partition: u32, job: &Job<'_>, report: &mut CompactionReport) -> Result<()> {
        let entry = self.partition_entry(partition)?;
        if entry.state == PartitionState::Retired {
            return Ok(());
        }
        self.partition_close(partition)?;
        if self.log.active_partition() == Some(partition) {
            self.log.seal()?;
        }
        let victims: Vec<u32> = self
            .segments()
            .into_iter()
            .filter(|s| s.partition == partition)
            .map(|s| s.id)
            .collect();
        self.compact(&victims, None, job, report)?;
        let left = self
            .segments()
            .into_iter()
            .filter(|s| s.partition == partition)
            .count();
        if left == 0 {
            self.partition_retire(partition)?;
            report.retired_partitions.push(partition);
        }
        Ok(())
    }

    fn balance(&self, job: &Job<'_>, report: &mut CompactionReport) -> Result<()> {
        // Each move must shrink the spread of fill ratios; a segment that
        // cannot move is not tried again.
        let mut stuck: HashSet<u32> = HashSet::new();
        loop {
            job.checkpoint()?;
            let fills = self.partition_fills();
            let Some(plan) = plan_balance_move(&fills, &self.segments(), &stuck) else {
                return Ok(());
            };
            let before = report.segments_read.len();
            self.compact(&[plan.segment], Some(plan.to), job, report)?;
            if report.segments_read.len() == before {
                stuck.insert(plan.segment);
            }
        }
    }

    /// (partition, bytes, capacity) of every open partition; a partition
    /// without a capacity counts its volume's size.
    fn partition_fills(&self) -> Vec<(u32, u64, u64)> {
        let used = self.log.partition_bytes();
        self.log
            .manifest()
            .partitions
            .iter()
            .filter(|p| p.state == PartitionState::Open)
            .filter_map(|p| {
                let bytes = used.get(&p.id).copied().unwrap_or(0);
                let capacity = if p.capacity_bytes > 0 {
                    p.capacity_bytes
                } else {
                    let free = self
                        .log
                        .vfs()
                        .available_space(&self.log.partition_dir(p))
                        .ok()?;
                    bytes + free
                };
                Some((p.id, bytes, capacity.max(1)))
            })
            .collect()
    }

    /// Copy the live records of `victims` into new segments (in `partition`,
    /// or wherever new segments go) and delete the victims. Segments that
    /// cannot be compacted now are listed in the report, not an error.
    fn compact(
        &self,
        victims: &[u32],
        partition: Option<u32>,
        job: &Job<'_>,
        report: &mut CompactionReport,
    ) -> Result<()> {
        self.check_writable()?;
        let planned = self.plan_victims(victims, report)?;
        job.set_total(job_total(job) + planned.len() as u64);
        // Backed-up savesets and the others go to different outputs, so
        // that an output's savesets are all BackupComplete or none is.
        let (complete, incomplete): (Vec<Victim>, Vec<Victim>) =
            planned.into_iter().partition(|v| v.complete);
        let segment_bytes = self.log.manifest().segment_bytes;
        for group in [complete, incomplete] {
            for chunk in chunk_victims(group, segment_bytes) {
                job.checkpoint()?;
                let n = chunk.len() as u64;
                self.compact_chunk(chunk, partition, job, report)?;
                job.advance(n);
            }
        }
        Ok(())
    }

    /// Load each victim's record list and decide what stays live.
    fn plan_victims(&self, ids: &[u32], report: &mut CompactionReport) -> Result<Vec<Victim>> {
        let in_feed = self.lifecycle.lock().segments_in_feed();
        let mut out = Vec::new();
        for &id in ids {
            let info = self.log.segment_info(id);
            let Some(info) = info else { continue };
            let skip = if info.state != SegmentState::Sealed {
                Some("the active segment is never compacted".to_string())
            } else if let Some(d) = &info.damage {
                Some(format!("damaged: {d}"))
            } else if in_feed.contains(&id) {
                Some("its savesets wait in the post-processing feed (acknowledge it first)".into())
            } else {
                None
            };
            if let Some(reason) = skip {
                report.skipped.push(SkippedSegment {
                    segment: id,
                    reason,
                });
                continue;
            }
            let loaded = segment::load_sealed(&info.path, &*info.file, id, self.log.sealing())?;
            let part_lists = loaded
                .part_lists
                .iter()
                .filter_map(|l| {
                    let e = loaded.entries.get(l.entry as usize)?;
                    Some((e.offset, (l.message_len, l.parts.clone())))
                })
                .collect();
            let index = self.index.read();
            let parts = self.parts.read();
            let mut keep = Vec::new();
            let mut dead = Vec::new();
            for e in loaded.entries {
                let here = Some(location(id, e.offset));
                let live = match e.kind {
                    RecordKind::Saveset | RecordKind::Composite => {
                        index.get(&SavesetId(e.id))? == here
                    }
                    RecordKind::Part => parts.index.get(&SavesetId(e.id))? == here,
                    _ => true,
                };
                if live { keep.push(e) } else { dead.push(e) }
            }
            drop(parts);
            drop(index);
            out.push(Victim {
                id,
                partition: info.partition_id,
                file: info.file.clone(),
                path: info.path.clone(),
                bytes: info.bytes,
                keep,
                dropped: dead.iter().filter(|e| e.kind.is_saveset()).count() as u64,
                complete: self.lifecycle.lock().is_backup_complete(id),
                part_lists,
            });
        }
        Ok(out)
    }

    fn compact_chunk(
        &self,
        victims: Vec<Victim>,
        partition: Option<u32>,
        job: &Job<'_>,
        report: &mut CompactionReport,
    ) -> Result<()> {
        // Every death the plan relied on must be durable, and sealed before
        // the output in segment order, so that a backup taken in id order
        // never holds the output without the catalog change behind it.
        self.log.seal_if_holds(|k| k == RecordKind::Catalog)?;
        let (segment_id, part) = self.log.reserve_segment(partition)?;
        let header = SegmentHeader {
            segment_id,
            partition_id: part.id,
            created_ms: now_ms(),
            store_id: self.log.manifest().store_id,
            flags: SEGMENT_FLAG_COMPACTION,
            encrypted: false,
            tag: [0; 12],
        };
        let mut out = self.log.create_segment(&part, header)?;
        let complete = victims.iter().all(|v| v.complete);
        let written = self.write_output(&mut out, &victims, complete, job, report);
        let output = match written.and_then(|moves| {
            let (path, len) = self.log.seal_output(&out)?;
            Ok((moves, path, len))
        }) {
            Ok((moves, path, len)) => Output {
                segment: out,
                path,
                len,
                moves,
            },
            Err(e) => {
                // Not committed: the victims stay; a leftover is removed at open.
                let _ = self.log.vfs().remove_file(&out.path);
                return Err(e);
            }
        };
        self.switch(&output, &victims, complete);
        report.segments_written.push(segment_id);
        report.bytes_written += output.len;
        let victim_bytes: u64 = victims.iter().map(|v| v.bytes).sum();
        report.bytes_reclaimed += victim_bytes.saturating_sub(output.len);
        report.savesets_moved += output.moves.iter().filter(|m| !m.part).count() as u64;
        report.savesets_dropped += victims.iter().map(|v| v.dropped).sum::<u64>();
        for v in &victims {
            report.segments_read.push(v.id);
            self.delete_victim(v);
        }
        Ok(())
    }

    /// Append the compaction record and every kept record; returns the
    /// saveset moves.
    fn write_output(
        &self,
        out: &mut ActiveSegment,
        victims: &[Victim],
        complete: bool,
        job: &Job<'_>,
        report: &mut CompactionReport,
    ) -> Result<Vec<Move>> {
        let record = CompactionRecord {
            output: out.id,
            at_ms: now_ms(),
            backup_complete: complete,
            victims: victims.iter().map(|v| v.id).collect(),
        }
        .encode();
        let sequence = self.log.reserve_sequence()?;
        let (header, payload) = segment::build_record(
            &out.sealing,
            None,
            RecordKind::Compaction,
            Codec::Raw,
            record.len() as u64,
            sequence,
            SavesetId::of(&record).0,
            &record,
        )?;
        out.append(&header, &payload)?;
        let mut moves = Vec::new();
        for v in victims {
            job.checkpoint()?;
            report.bytes_read += copy_kept(v, out, &mut moves)?;
        }
        Ok(moves)
    }

    /// Point the index at the new copies, list the output, forget the victims.
    fn switch(&self, output: &Output, victims: &[Victim], complete: bool) {
        let _catalog = self.catalog.write();
        let mut lifecycle = self.lifecycle.lock();
        let out = &output.segment;
        self.log.list_output(out, output.path.clone(), output.len);
        let mut died_meanwhile = Vec::new();
        {
            let mut index = self.index.write();
            let mut parts = self.parts.write();
            for m in &output.moves {
                let map = if m.part {
                    &mut parts.index
                } else {
                    &mut *index
                };
                if !map.move_if_at(m.id, m.old, m.new) {
                    died_meanwhile.push(m.new);
                }
            }
        }
        for loc in died_meanwhile {
            self.count_dead(loc);
        }
        let ids: Vec<u32> = victims.iter().map(|v| v.id).collect();
        self.log.forget_replaced(&ids, out.id);
        if complete {
            lifecycle.set_complete(out.id);
        }
        lifecycle.forget_segments(&ids);
    }

    fn delete_victim(&self, v: &Victim) {
        if let Err(e) = self.log.remove_segment_file(v.partition, &v.path) {
            // Superseded already; the next open removes it.
            tracing::warn!(
                "segment {}: could not delete it after compaction ({e}); the next open will",
                v.id
            );
        }
    }
}

/// The size of the output segment `chunk` is copied into (format-spec/
/// segment.md): header, compaction record, kept records, footer, trailer.
fn output_bytes(chunk: &[Victim]) -> u64 {
    use crate::format::segment::{
        FOOTER_ENTRY_BYTES, FOOTER_SUMMARY_BYTES, SEGMENT_HEADER_BYTES, TRAILER_BYTES,
    };
    let kept: u64 = chunk.iter().map(Victim::keep_bytes).sum();
    let entries = chunk.iter().map(|v| v.keep.len() as u64).sum::<u64>() + 1;
    let compaction_record = RECORD_HEADER_BYTES as u64 + 20 + 4 * chunk.len() as u64;
    SEGMENT_HEADER_BYTES as u64
        + compaction_record
        + kept
        + FOOTER_SUMMARY_BYTES as u64
        + entries * FOOTER_ENTRY_BYTES as u64
        + TRAILER_BYTES as u64
}

fn check_threshold(threshold: f64) -> Result<()> {
    if (0.0..=1.0).contains(&threshold) {
        Ok(())
    } else {
        Err(Error::InvalidSetting(format!(
            "defragmentation threshold {threshold} is out of range: it is a dead share from 0 (any dead byte) to 1 (wholly dead)"
        )))
    }
}

fn finish(mut report: CompactionReport, start: Instant) -> CompactionReport {
    report.seconds = start.elapsed().as_secs_f64();
    report.write_amplification = (report.bytes_reclaimed > 0)
        .then(|| report.bytes_written as f64 / report.bytes_reclaimed as f64);
    if report.seconds > 0.0 {
        report.megabytes_per_second = report.bytes_read as f64 / 1e6 / report.seconds;
    }
    report
}

fn job_total(job: &Job<'_>) -> u64 {
    job.total()
}

/// Group victims into outputs of at most `segment_bytes` of kept records
/// (a victim too large alone gets an output of its own).
fn chunk_victims(victims: Vec<Victim>, segment_bytes: u64) -> Vec<Vec<Victim>> {
    let mut chunks: Vec<Vec<Victim>> = Vec::new();
    let mut size = 0u64;
    for v in victims {
        let b = v.keep_bytes();
        match chunks.last_mut() {
            Some(c) if size + b <= segment_bytes => {
                size += b;
                c.push(v);
            }
            _ => {
                size = b;
                chunks.push(vec![v]);
            }
        }
    }
    chunks
}

/// Copy a victim's kept records into `out`, reading spans of records in
/// one call and checking each crc; returns the bytes read.
fn copy_kept(v: &Victim, out: &mut ActiveSegment, moves: &mut Vec<Move>) -> Result<u64> {
    let sealing = out.sealing.clone();
    let mut read = 0u64;
    let mut buf = Vec::new();
    let mut i = 0;
    while i < v.keep.len() {
        let first = &v.keep[i];
        let end_of = |e: &FooterEntry| e.offset + RECORD_HEADER_BYTES as u64 + e.stored_len;
        if end_of(first) - first.offset > SPAN_BYTES {
            let h = header_at(v, first, &sealing)?;
            let at = out.append_streamed(&h, &*v.file, v.id, first.offset, SPAN_BYTES as usize)?;
            note_move(v, first, out, at, moves);
            read += h.record_bytes();
            i += 1;
            continue;
        }
        let mut j = i + 1;
        while j < v.keep.len() && end_of(&v.keep[j]) - first.offset <= SPAN_BYTES {
            j += 1;
        }
        let span_end = end_of(&v.keep[j - 1]);
        buf.resize((span_end - first.offset) as usize, 0);
        v.file
            .read_exact_at(&mut buf, first.offset)
            .map_err(|e| Error::corrupt(v.id, first.offset, format!("read failed: {e}")))?;
        read += buf.len() as u64;
        let mut records = Vec::with_capacity(j - i);
        for e in &v.keep[i..j] {
            let at = (e.offset - first.offset) as usize;
            let mut h = RecordHeader::decode(&buf[at..at + RECORD_HEADER_BYTES])
                .map_err(|d| Error::corrupt(v.id, e.offset, d))?;
            let payload =
                &buf[at + RECORD_HEADER_BYTES..at + RECORD_HEADER_BYTES + e.stored_len as usize];
            check_copy(v.id, e, &mut h, payload, &sealing)?;
            records.push((h, payload));
        }
        let offsets = out.append_many(&records)?;
        for (e, at) in v.keep[i..j].iter().zip(offsets) {
            note_move(v, e, out, at, moves);
        }
        i = j;
    }
    Ok(read)
}

fn header_at(v: &Victim, e: &FooterEntry, sealing: &Sealing) -> Result<RecordHeader> {
    let mut hb = [0u8; RECORD_HEADER_BYTES];
    v.file
        .read_exact_at(&mut hb, e.offset)
        .map_err(|err| Error::corrupt(v.id, e.offset, format!("read failed: {err}")))?;
    let mut h = RecordHeader::decode(&hb).map_err(|d| Error::corrupt(v.id, e.offset, d))?;
    if !segment::matches_entry(sealing, &mut h, e) {
        return Err(Error::corrupt(
            v.id,
            e.offset,
            "record differs from its footer entry",
        ));
    }
    Ok(h)
}

/// A record is copied only if it is what the footer says and its crc holds:
/// compaction never spreads damage into a new segment. A sealed record is
/// copied as it is, still sealed: compaction needs no key but the id's.
fn check_copy(
    segment: u32,
    e: &FooterEntry,
    h: &mut RecordHeader,
    payload: &[u8],
    sealing: &Sealing,
) -> Result<()> {
    if !segment::matches_entry(sealing, h, e) {
        return Err(Error::corrupt(
            segment,
            e.offset,
            "record differs from its footer entry",
        ));
    }
    if !h.crc_matches(payload) {
        return Err(Error::corrupt(segment, e.offset, "crc mismatch"));
    }
    Ok(())
}

fn note_move(v: &Victim, e: &FooterEntry, out: &mut ActiveSegment, at: u64, moves: &mut Vec<Move>) {
    if let Some((len, parts)) = v.part_lists.get(&e.offset) {
        out.set_part_list(at, *len, parts.clone());
    }
    if e.kind.is_saveset() || e.kind == RecordKind::Part {
        moves.push(Move {
            part: e.kind == RecordKind::Part,
            id: SavesetId(e.id),
            old: location(v.id, e.offset),
            new: location(out.id, at),
        });
    }
}

/// One balancing move: a segment and the partition it goes to.
struct BalanceMove {
    segment: u32,
    to: u32,
}

/// The move from the fullest to the emptiest open partition (by fill
/// ratio) that narrows the gap between them, if any.
fn plan_balance_move(
    fills: &[(u32, u64, u64)],
    segments: &[crate::engine::SegmentStat],
    stuck: &HashSet<u32>,
) -> Option<BalanceMove> {
    let ratio = |bytes: u64, cap: u64| bytes as f64 / cap as f64;
    let full = fills
        .iter()
        .max_by(|a, b| ratio(a.1, a.2).total_cmp(&ratio(b.1, b.2)))?;
    let empty = fills
        .iter()
        .min_by(|a, b| ratio(a.1, a.2).total_cmp(&ratio(b.1, b.2)))?;
    if full.0 == empty.0 {
        return None;
    }
    let gap = ratio(full.1, full.2) - ratio(empty.1, empty.2);
    segments
        .iter()
        .filter(|s| s.partition == full.0 && s.state == SegmentState::Sealed)
        .filter(|s| s.damage.is_none() && !stuck.contains(&s.id))
        .filter(|s| {
            let after = ratio(full.1 - s.bytes, full.2) - ratio(empty.1 + s.bytes, empty.2);
            after.abs() < gap
        })
        .max_by_key(|s| s.bytes)
        .map(|s| BalanceMove {
            segment: s.id,
            to: empty.0,
        })
}
