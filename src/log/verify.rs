//! Verifying the log: every record of every segment read back and checked
//! (crc, decoding, blake3 of content-addressed records, footer against
//! records). What records mean (a part a recipe lists, say) is checked by
//! the caller's `also`.
//! It must not repair anything: verify only reports.

use rayon::prelude::*;

use super::{Log, Problem, SegmentInfo, SegmentState, VerifyReport};
use crate::format::segment::{FooterEntry, RecordKind, SEGMENT_HEADER_BYTES, decode_payload};
use crate::id::SavesetId;
use crate::segment;

/// A check the state layer adds for one segment.
pub(crate) type SegmentCheck<'a> = &'a (dyn Fn(u32, &SegmentInfo) -> Vec<Problem> + Sync);

impl Log {
    /// Verify every segment in parallel, adding what `also` finds in each,
    /// and calling `progress` with each segment's bytes once it is checked.
    pub(crate) fn verify_segments(
        &self,
        also: SegmentCheck<'_>,
        progress: &(dyn Fn(u64) + Sync),
    ) -> VerifyReport {
        let segs: Vec<(u32, SegmentInfo)> = self
            .segments
            .read()
            .iter()
            .map(|(&id, s)| (id, s.clone()))
            .collect();
        let results: Vec<VerifyReport> = segs
            .into_par_iter()
            .map(|(id, info)| {
                let mut r = verify_segment(id, &info, &self.sealing);
                r.problems.extend(also(id, &info));
                progress(r.bytes);
                r
            })
            .collect();
        let mut report = VerifyReport {
            segments: 0,
            records: 0,
            bytes: 0,
            problems: Vec::new(),
        };
        for r in results {
            report.segments += r.segments;
            report.records += r.records;
            report.bytes += r.bytes;
            report.problems.extend(r.problems);
        }
        report
    }
}

fn verify_segment(id: u32, info: &SegmentInfo, sealing: &crate::crypto::Sealing) -> VerifyReport {
    let (path, file, limit) = (info.path.as_path(), &*info.file, info.bytes);
    let mut report = VerifyReport {
        segments: 1,
        records: 0,
        bytes: 0,
        problems: Vec::new(),
    };
    let problem = |offset: u64, detail: String| Problem {
        segment: id,
        offset,
        path: path.to_path_buf(),
        detail,
    };
    if let Some(d) = &info.damage {
        report.problems.push(problem(0, d.clone()));
        return report;
    }
    // A sealed segment is walked through its footer, so one bad record does
    // not hide the ones after it; the walk also checks the footer describes
    // the records back to back. An active segment (or a sealed one whose
    // footer is bad) is scanned record by record.
    let footer = match info.state {
        SegmentState::Sealed => match segment::load_sealed(path, file, id, sealing) {
            Ok(seg) => Some(seg),
            Err(e) => {
                report.problems.push(problem(0, e.to_string()));
                None
            }
        },
        SegmentState::Active => None,
    };
    let (entries, data_end) = match footer {
        Some(seg) => (seg.entries, seg.data_end),
        None => match segment::scan(path, file, id, sealing) {
            Ok(seg) => {
                let end = seg.data_end.min(limit);
                if let Some((off, d)) = seg.damage.filter(|(off, _)| *off < limit) {
                    report.problems.push(problem(off, d));
                }
                let entries = seg.entries.into_iter().filter(|e| e.offset < end).collect();
                (entries, end)
            }
            Err(e) => {
                report.problems.push(problem(0, e.to_string()));
                return report;
            }
        },
    };
    let mut expected = SEGMENT_HEADER_BYTES as u64;
    for e in entries {
        report.records += 1;
        if e.offset != expected {
            report.problems.push(problem(
                expected,
                format!("index says the next record is at {}", e.offset),
            ));
        }
        expected = e.offset + 64 + e.stored_len;
        let read =
            segment::read_record_sized_at(file, id, e.offset, data_end, e.stored_len, sealing);
        let (h, payload) = match read {
            Ok(x) => x,
            Err(err) => {
                report
                    .problems
                    .push(problem(e.offset, segment::detail_of(err)));
                continue;
            }
        };
        report.bytes += h.record_bytes();
        // Every field: a footer is trusted at open, so one that passes
        // its crc but misstates a record (its size, kind or sequence) is
        // found here.
        if FooterEntry::of(&h, e.offset) != e {
            report.problems.push(problem(
                e.offset,
                "record differs from its footer entry".into(),
            ));
            continue;
        }
        match decode_payload(h.codec, payload, h.logical_len) {
            Ok(content) if h.kind.is_content_addressed() && SavesetId::of(&content).0 != h.id => {
                report
                    .problems
                    .push(problem(e.offset, "hash mismatch".into()))
            }
            Ok(content) if h.kind == RecordKind::Composite => {
                if let Err(d) = crate::format::composite::Recipe::decode(&content) {
                    report.problems.push(problem(e.offset, d));
                }
            }
            Ok(_) => {}
            Err(d) => report.problems.push(problem(e.offset, d)),
        }
    }
    if expected != data_end && report.problems.is_empty() {
        report.problems.push(problem(
            expected,
            format!("records end at {expected} but data ends at {data_end}"),
        ));
    }
    report
}
