//! Opening from a checkpoint generation (format-spec/checkpoint.md,
//! "Opening from a generation"): the state is the generation's, then the
//! records of the segments the log loaded (those the generation does not
//! cover) are gone through in sequence order. Records up to the
//! generation's sequence are in the state already, except where a
//! compaction moved them since; later ones are replayed with the live
//! engine's rules. Dead counts of the loaded segments are taken last, from
//! what the index holds. Anything that does not add up is a reason to
//! replay every record instead, which the caller does. Like `replay`, it
//! must not write.

use std::collections::{HashMap, HashSet, VecDeque};

use super::Engine;
use super::sync_cache::LoadedGeneration;
use crate::format::segment::{FooterEntry, RecordKind};
use crate::id::SavesetId;
use crate::index::Location;
use crate::log::{ListedParts, Recovered, location};

/// What the replay after a generation keeps track of.
struct Resume {
    sequence: u64,
    /// Segments the generation covered that a compaction removed since,
    /// with how many of their live records are still to be found moved
    /// (or dead).
    missing: HashMap<u32, u64>,
    /// Segments loaded from their footers: their dead counts are taken at
    /// the end.
    loaded: HashSet<u32>,
    /// Later copies of indexed savesets, by sequence.
    later: HashMap<SavesetId, VecDeque<(u64, Location)>>,
    /// Parts indexed from records after the generation.
    new_parts: Vec<SavesetId>,
    /// Which segment took the records of each segment compactions removed.
    replaced_by: HashMap<u32, u32>,
    /// Set when the state cannot be trusted.
    problem: Option<String>,
}

impl Resume {
    /// The state cannot be trusted: `why` is the first reason.
    fn fail(&mut self, why: String) {
        self.problem.get_or_insert(why);
    }

    /// The segment present now that holds what `segment` held, following
    /// compactions of compaction outputs.
    fn holder(&self, mut segment: u32) -> Option<u32> {
        for _ in 0..=self.replaced_by.len() {
            if self.loaded.contains(&segment) {
                return Some(segment);
            }
            segment = *self.replaced_by.get(&segment)?;
        }
        None
    }
}

impl Engine {
    /// Install `g` and go through the records after it; `Err` says why the
    /// store must be opened by a full replay instead.
    pub(super) fn resume(
        &mut self,
        g: LoadedGeneration,
        recovered: Recovered,
    ) -> std::result::Result<(), String> {
        let Recovered {
            mut entries,
            composites,
            complete_outputs,
            covered,
            ..
        } = recovered;
        let present: HashSet<u32> = self.log.segment_infos().keys().copied().collect();
        let mut r = Resume {
            sequence: g.sequence,
            missing: g
                .segments
                .values()
                .map(|s| (s.id, s.savesets + s.parts))
                .chain(g.tail.map(|t| (t.id, t.live)))
                .filter(|(id, _)| !present.contains(id))
                .collect(),
            loaded: present.difference(&covered).copied().collect(),
            later: HashMap::new(),
            new_parts: Vec::new(),
            replaced_by: self
                .log
                .removed_segments()
                .into_iter()
                .map(|r| (r.segment, r.replaced_by))
                .collect(),
            problem: None,
        };
        *self.index.get_mut() = g.index;
        *self.parts.get_mut() = g.parts;
        *self.catalog.get_mut() = g.catalog;
        *self.lifecycle.get_mut() = g.lifecycle;
        // Outputs found by their compaction records (the generation has
        // those it covered), before any state record is replayed.
        for id in &complete_outputs {
            self.lifecycle.get_mut().set_complete(*id);
        }
        entries.sort_by_key(|(_, e)| e.sequence);
        entries.dedup_by_key(|(_, e)| e.sequence);
        let lists: HashMap<Location, &ListedParts> =
            composites.iter().map(|c| (c.loc, c)).collect();
        let part_lens: HashMap<SavesetId, u64> = entries
            .iter()
            .filter(|(_, e)| e.kind == RecordKind::Part)
            .map(|(_, e)| (SavesetId(e.id), e.logical_len))
            .collect();
        for (seg, e) in &entries {
            if e.sequence <= r.sequence {
                self.relocate(*seg, e, &mut r);
                continue;
            }
            let id = SavesetId(e.id);
            let loc = location(*seg, e.offset);
            match e.kind {
                RecordKind::Saveset | RecordKind::Composite => {
                    let index = self.index.get_mut();
                    if index.contains(&id).map_err(|e| e.to_string())? {
                        r.later.entry(id).or_default().push_back((e.sequence, loc));
                    } else {
                        index.insert(id, loc);
                        if let Some(list) = lists.get(&loc) {
                            self.reference_listed(list, &part_lens);
                        }
                    }
                    self.lifecycle.get_mut().on_stored(id, e.sequence);
                }
                RecordKind::Part => {
                    let parts = self.parts.get_mut();
                    if !parts.index.contains(&id).map_err(|e| e.to_string())? {
                        parts.index.insert(id, loc);
                        r.new_parts.push(id);
                    }
                }
                RecordKind::Catalog => {
                    let dead = self
                        .replay_catalog_ops(*seg, e, true)
                        .map_err(|e| e.to_string())?;
                    for id in dead {
                        self.bury_resumed(id, e.sequence, &mut r);
                    }
                }
                RecordKind::State => self.replay_state(*seg, e),
                RecordKind::Compaction | RecordKind::Footer => {}
            }
        }
        self.finish_resume(&entries, r)
    }

    /// A record up to the generation's sequence: in the state already; a
    /// compaction may have moved it out of a segment that is gone.
    fn relocate(&mut self, seg: u32, e: &FooterEntry, r: &mut Resume) {
        if r.missing.is_empty() {
            return; // no segment went since the generation: nothing moved
        }
        let id = SavesetId(e.id);
        let map = match e.kind {
            RecordKind::Saveset | RecordKind::Composite => self.index.get_mut(),
            RecordKind::Part => &mut self.parts.get_mut().index,
            _ => return,
        };
        let cur = match map.get(&id) {
            Ok(Some(cur)) => cur,
            Ok(None) => return,
            Err(e) => return r.fail(e.to_string()),
        };
        // Only the copy in the segment that took the gone segment's records
        // (through any later compactions) is the record indexed.
        if !r.missing.contains_key(&cur.segment) || r.holder(cur.segment) != Some(seg) {
            return;
        }
        map.insert(id, location(seg, e.offset));
        if let Some(left) = r.missing.get_mut(&cur.segment) {
            *left = left.saturating_sub(1);
        }
    }

    /// Count the parts a composite stored after the generation lists.
    fn reference_listed(&mut self, list: &ListedParts, lens: &HashMap<SavesetId, u64>) {
        let listed: Vec<(SavesetId, u64)> = list
            .parts
            .iter()
            .map(|id| (*id, lens.get(id).copied().unwrap_or(0)))
            .collect();
        self.parts.get_mut().reference(&listed);
    }

    /// A saveset died at `died_at` (a catalog record after the generation):
    /// as the live engine buried it, and a later copy takes its place.
    fn bury_resumed(&mut self, id: SavesetId, died_at: u64, r: &mut Resume) {
        let loc = match self.index.get_mut().get(&id) {
            Ok(Some(loc)) => loc,
            Ok(None) => return,
            Err(e) => return r.fail(e.to_string()),
        };
        let stored_later = self
            .log
            .record_header_at(loc)
            .is_ok_and(|h| h.sequence > died_at);
        if stored_later {
            return;
        }
        if let Err(e) = self.index.get_mut().remove(&id) {
            return r.fail(e.to_string());
        }
        self.lifecycle.get_mut().on_dead(&id);
        let listed = self.note_dead_resumed(loc, r);
        if !listed.is_empty() {
            let dead = self.parts.get_mut().release(&listed);
            for part in dead {
                if let Ok(Some(part_loc)) = self.parts.get_mut().index.remove(&part) {
                    self.note_dead_resumed(part_loc, r);
                }
            }
        }
        if let Some(copies) = r.later.get_mut(&id) {
            while let Some(&(seq, copy)) = copies.front() {
                copies.pop_front();
                if seq > died_at {
                    self.index.get_mut().insert(id, copy);
                    break;
                }
            }
        }
    }

    /// A record at `loc` died: counted in a covered segment now (loaded
    /// segments are counted at the end); the parts a composite lists.
    fn note_dead_resumed(&mut self, loc: Location, r: &mut Resume) -> Vec<SavesetId> {
        if let Some(left) = r.missing.get_mut(&loc.segment) {
            *left = left.saturating_sub(1);
            // Its recipe went with the segment: which parts it listed is
            // unknown, so the part counts cannot be brought up to date.
            if !self.parts.get_mut().index.is_empty() && r.problem.is_none() {
                r.problem = Some(format!(
                    "a saveset of segment {}, which a compaction removed after the checkpoint, died after it",
                    loc.segment
                ));
            }
            return Vec::new();
        }
        if r.loaded.contains(&loc.segment) {
            return self
                .parts_listed_at(loc)
                .map(|(_, ids)| ids)
                .unwrap_or_default();
        }
        self.count_dead(loc)
    }

    /// Parts indexed after the generation that no live saveset lists are
    /// dead; every record of a loaded segment that is not its id's indexed
    /// copy is counted dead; and everything moved must have been found.
    fn finish_resume(
        &mut self,
        entries: &[(u32, FooterEntry)],
        r: Resume,
    ) -> std::result::Result<(), String> {
        if let Some(problem) = r.problem {
            return Err(problem);
        }
        if let Some((segment, left)) = r.missing.iter().find(|(_, left)| **left > 0) {
            return Err(format!(
                "{left} live records of segment {segment}, which a compaction removed after the checkpoint, were not found"
            ));
        }
        for id in &r.new_parts {
            let parts = self.parts.get_mut();
            if parts.ref_count(id) == 0 {
                parts.index.remove(id).map_err(|e| e.to_string())?;
            }
        }
        for (seg, e) in entries.iter().filter(|(seg, _)| r.loaded.contains(seg)) {
            let loc = location(*seg, e.offset);
            let id = SavesetId(e.id);
            let indexed = match e.kind {
                RecordKind::Saveset | RecordKind::Composite => self.index.get_mut().get(&id),
                RecordKind::Part => self.parts.get_mut().index.get(&id),
                _ => continue,
            };
            if indexed.map_err(|e| e.to_string())? != Some(loc) {
                self.count_dead(loc);
            }
        }
        Ok(())
    }
}
