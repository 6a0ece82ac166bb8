//! Verifying the store: the log's checks, plus that every part a live
//! split saveset lists is stored.
//! It must not repair anything: verify only reports.

use super::Engine;
use crate::id::SavesetId;
use crate::log::{Problem, SegmentInfo, SegmentState, VerifyReport, location};
use crate::segment;

impl Engine {
    /// Read every record of every segment and check its crc, that it decodes,
    /// and that its content hashes to its id; check sealed segments' footers
    /// against their records.
    pub fn verify(&self) -> VerifyReport {
        self.verify_with_progress(&|_| {})
    }

    /// [`Engine::verify`], calling `progress` with the bytes of each segment
    /// once it is checked (from any thread; they add up to the report's
    /// `bytes`, the segments' total as [`Engine::stat`]'s `stored_bytes`).
    pub fn verify_with_progress(&self, progress: &(dyn Fn(u64) + Sync)) -> VerifyReport {
        self.log
            .verify_segments(&|id, info| self.check_listed_parts(id, info), progress)
    }

    /// Every part a live split saveset in segment `id` lists is stored.
    fn check_listed_parts(&self, id: u32, info: &SegmentInfo) -> Vec<Problem> {
        if info.damage.is_some() {
            return Vec::new();
        }
        let loaded = match info.state {
            SegmentState::Sealed => {
                segment::load_sealed(&info.path, &*info.file, id, self.log.sealing())
            }
            SegmentState::Active => segment::scan(&info.path, &*info.file, id, self.log.sealing()),
        };
        let Ok(seg) = loaded else {
            return Vec::new(); // verify_segment reports it
        };
        let index = self.index.read();
        let parts = self.parts.read();
        let mut problems = Vec::new();
        for list in &seg.part_lists {
            let Some(e) = seg.entries.get(list.entry as usize) else {
                continue;
            };
            // A damaged sync cache block is the index's to report (on the
            // lookup that reaches it), not this segment's.
            if index.get(&SavesetId(e.id)).ok().flatten() != Some(location(id, e.offset)) {
                continue;
            }
            for p in &list.parts {
                if !parts.index.contains(&SavesetId(*p)).unwrap_or(false) {
                    problems.push(Problem {
                        segment: id,
                        offset: e.offset,
                        path: info.path.clone(),
                        detail: format!("part {} listed by this saveset is missing", SavesetId(*p)),
                    });
                }
            }
        }
        problems
    }
}
