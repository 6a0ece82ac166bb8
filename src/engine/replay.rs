//! Rebuilding the state at open: every record the log found, in sequence
//! order, enters the index, the catalog, the lifecycle and the part table.
//! It must not write: repairs of files are the log's, done before replay.

use std::collections::{HashMap, VecDeque};

use super::Engine;
use crate::error::{Error, Result};
use crate::format::catalog::{CatalogOp, decode_batch};
use crate::format::segment::{FooterEntry, RecordKind};
use crate::format::state::decode_state_batch;
use crate::id::SavesetId;
use crate::index::{Index, Location, owned};
use crate::log::{ListedParts, Problem, location};

impl Engine {
    /// Rebuild the index and the catalog from every record, in sequence
    /// order: savesets enter the index (earliest copy first), catalog batches
    /// are applied, and savesets they leave without a reference die.
    pub(super) fn replay(
        &mut self,
        mut entries: Vec<(u32, FooterEntry)>,
        composites: Vec<ListedParts>,
    ) -> Result<()> {
        entries.sort_by_key(|(_, e)| e.sequence);
        // Sequences are unique; a second record with one is a copy made by a
        // compaction whose victims are still here (a damaged compaction
        // record): apply it once.
        entries.dedup_by_key(|(_, e)| e.sequence);
        let savesets: Vec<(SavesetId, Location, u64)> = entries
            .iter()
            .filter(|(_, e)| e.kind.is_saveset())
            .map(|(seg, e)| (SavesetId(e.id), location(*seg, e.offset), e.sequence))
            .collect();
        let (index, duplicates) =
            Index::build(savesets.iter().map(|&(id, loc, _)| (id, loc)).collect());
        *self.index.get_mut() = index;
        // Later copies of the same content (re-stored after it died, or left
        // by a crash): a saveset that dies falls back to its next copy.
        let mut later: HashMap<SavesetId, VecDeque<(u64, Location)>> = HashMap::new();
        if duplicates > 0 {
            let mut sorted = savesets;
            sorted.sort_by_key(|&(id, _, seq)| (id, seq));
            for group in sorted.chunk_by(|a, b| a.0 == b.0).filter(|g| g.len() > 1) {
                later.insert(
                    group[0].0,
                    group[1..].iter().map(|&(_, l, s)| (s, l)).collect(),
                );
            }
        }
        for (seg, e) in &entries {
            match e.kind {
                RecordKind::Saveset | RecordKind::Composite => self
                    .lifecycle
                    .get_mut()
                    .on_stored(SavesetId(e.id), e.sequence),
                RecordKind::Part => {}
                RecordKind::Catalog => self.replay_catalog(*seg, e, &mut later),
                RecordKind::State => self.replay_state(*seg, e),
                RecordKind::Compaction | RecordKind::Footer => {}
            }
        }
        self.replay_parts(&entries, composites);
        Ok(())
    }

    /// Once the catalog decided which savesets live: index the part
    /// records, count the live savesets listing each part, and count as
    /// dead the parts none lists (and extra copies).
    fn replay_parts(&mut self, entries: &[(u32, FooterEntry)], composites: Vec<ListedParts>) {
        let records: Vec<(SavesetId, Location, u64)> = entries
            .iter()
            .filter(|(_, e)| e.kind == RecordKind::Part)
            .map(|(seg, e)| (SavesetId(e.id), location(*seg, e.offset), e.logical_len))
            .collect();
        if records.is_empty() && composites.is_empty() {
            return;
        }
        // The newest copy of a part is the live one: the engine writes a
        // part again only after its last copy died (a compaction's copies
        // share the original's sequence and were deduplicated above).
        let (index, _) = Index::build(
            records
                .iter()
                .rev()
                .map(|&(id, loc, _)| (id, loc))
                .collect(),
        );
        let lens: HashMap<SavesetId, u64> = records.iter().map(|&(id, _, len)| (id, len)).collect();
        let mut missing = Vec::new();
        {
            let table = self.parts.get_mut();
            table.index = index;
            for c in &composites {
                if owned(self.index.get_mut().get(&c.saveset)) != Some(c.loc) {
                    continue;
                }
                let listed: Vec<(SavesetId, u64)> = c
                    .parts
                    .iter()
                    .map(|id| (*id, lens.get(id).copied().unwrap_or(0)))
                    .collect();
                for id in &c.parts {
                    if owned(table.index.get(id)).is_none() {
                        missing.push((c.loc, *id));
                    }
                }
                table.reference(&listed);
            }
        }
        for (loc, id) in missing {
            self.note_replay_problem(
                loc.segment,
                loc.offset as u64,
                format!("part {id} listed by saveset at this offset is missing"),
            );
        }
        for (id, loc, _) in records {
            let table = self.parts.get_mut();
            let indexed = owned(table.index.get(&id)) == Some(loc);
            if indexed && table.ref_count(&id) > 0 {
                continue;
            }
            if indexed {
                owned(table.index.remove(&id));
            }
            self.count_dead(loc);
        }
    }

    fn replay_catalog(
        &mut self,
        seg: u32,
        e: &FooterEntry,
        later: &mut HashMap<SavesetId, VecDeque<(u64, Location)>>,
    ) {
        let dead = self
            .replay_catalog_ops(seg, e, false)
            .unwrap_or_else(|err| {
                // Only a mapped base can fail a read; a full replay has none.
                self.note_replay_problem(
                    seg,
                    e.offset,
                    format!("catalog batch not applied: {err}"),
                );
                Vec::new()
            });
        for id in dead {
            self.bury_at_replay(id, e.sequence, later);
        }
    }

    /// Apply one catalog batch; the savesets it left without a reference,
    /// in order. An error is a damaged block of a mapped catalog.
    ///
    /// With `trust_adds` (replaying over a generation), an `Add` is
    /// applied without its check: the log holds only changes checked
    /// against the very state the replay rebuilds, and the check of an
    /// `Add` is a search of the mapped items (a page read at scale).
    pub(super) fn replay_catalog_ops(
        &mut self,
        seg: u32,
        e: &FooterEntry,
        trust_adds: bool,
    ) -> Result<Vec<SavesetId>> {
        let mut dead = Vec::new();
        let ops = match self
            .log
            .read_batch(seg, e)
            .and_then(|b| decode_batch(&b).map_err(|d| Error::corrupt(seg, e.offset, d)))
        {
            Ok(ops) => ops,
            Err(err) => {
                self.note_replay_problem(seg, e.offset, format!("catalog batch unreadable: {err}"));
                return Ok(dead);
            }
        };
        for op in ops {
            let catalog = self.catalog.get_mut();
            let trusted = trust_adds && matches!(op, CatalogOp::Add { .. });
            match if trusted { Ok(()) } else { catalog.check(&op) } {
                Err(err @ Error::CacheDamaged { .. }) => return Err(err),
                Err(err) => {
                    let why = format!("catalog change skipped: {err}");
                    self.note_replay_problem(seg, e.offset, why);
                    continue;
                }
                Ok(()) => {}
            }
            dead.extend(catalog.apply(&op)?.dead);
        }
        Ok(dead)
    }

    pub(super) fn replay_state(&mut self, seg: u32, e: &FooterEntry) {
        let ops = match self
            .log
            .read_batch(seg, e)
            .and_then(|b| decode_state_batch(&b).map_err(|d| Error::corrupt(seg, e.offset, d)))
        {
            Ok(ops) => ops,
            Err(err) => {
                self.note_replay_problem(seg, e.offset, format!("state batch unreadable: {err}"));
                return;
            }
        };
        for op in &ops {
            let records = |s: u32| self.log.saveset_records(s);
            self.lifecycle.lock().apply(op, e.sequence, records);
        }
    }

    fn bury_at_replay(
        &mut self,
        id: SavesetId,
        died_at: u64,
        later: &mut HashMap<SavesetId, VecDeque<(u64, Location)>>,
    ) {
        // Compaction drops dead copies: the indexed copy may have been
        // written after this death (stored again later), and stays live.
        let indexed = owned(self.index.get_mut().get(&id));
        let stored_later = indexed.is_some_and(|loc| {
            self.log
                .record_header_at(loc)
                .is_ok_and(|h| h.sequence > died_at)
        });
        if stored_later {
            return;
        }
        self.bury_in_replay(&[id]);
        // A copy written after the death is the live saveset now.
        if let Some(copies) = later.get_mut(&id) {
            while let Some(&(seq, loc)) = copies.front() {
                copies.pop_front();
                if seq > died_at {
                    self.index.get_mut().insert(id, loc);
                    break;
                }
                self.count_dead(loc);
            }
        }
    }

    fn note_replay_problem(&mut self, segment: u32, offset: u64, detail: String) {
        let path = self.log.segment_path(segment).unwrap_or_default();
        self.log.note_problem(Problem {
            segment,
            offset,
            path,
            detail,
        });
    }
}
