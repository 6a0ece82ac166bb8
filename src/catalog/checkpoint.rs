//! The catalog in a messages checkpoint (format-spec/checkpoint.md, "Kind
//! 2"). A snapshot freezes the catalog's changes (a pointer swap under its
//! lock) and shares them and the mapped base with the writer, which merges
//! them into the new tables without the lock; installing the new file
//! makes it the base and drops the frozen changes. Opening maps the tables
//! (`MappedCatalog`); nothing is loaded.

use std::io::Write;

use super::layers::MergedOwner;
use super::*;
use crate::format::checkpoint::{CheckpointWriter, Layout};
use crate::format::item_filter::{BLOCK_BYTES, FilterBuilder};
use crate::format::sealed_checkpoint::CheckpointFile;
use crate::format::sync_tables::{
    FanoutBuilder, ItemRow, OwnerRow, encode_reference, fanout_bits_for, messages,
};
use crate::index::OnDamage;

/// The catalog as it stood at one sequence: the frozen changes over the
/// base they were made on.
pub(crate) struct CatalogSnapshot {
    frozen: Vec<Arc<Changes>>,
    base: Option<Arc<MappedCatalog>>,
    generation: u64,
    references: u64,
}

impl Catalog {
    /// Freeze the changes for a generation: later changes go to a new top
    /// layer, and the snapshot shares the frozen ones and the base.
    pub(crate) fn freeze(&mut self) -> CatalogSnapshot {
        let top = std::mem::take(&mut self.changes);
        self.frozen.insert(0, Arc::new(top));
        CatalogSnapshot {
            frozen: self.frozen.clone(),
            base: self.base.clone(),
            generation: self.generation,
            references: self.live + self.trashed,
        }
    }

    /// The generation written from `snapshot` becomes the base; the
    /// changes it took in are dropped. False (nothing changes) when the
    /// catalog is no longer the one the snapshot was taken of (a reopen).
    pub(crate) fn install(&mut self, snapshot: &CatalogSnapshot, base: MappedCatalog) -> bool {
        let same_base = match (&self.base, &snapshot.base) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        let n = snapshot.frozen.len();
        let Some(keep) = self.frozen.len().checked_sub(n) else {
            return false;
        };
        let covered = self.frozen.iter().skip(keep);
        if !same_base
            || !covered
                .zip(&snapshot.frozen)
                .all(|(a, b)| Arc::ptr_eq(a, b))
        {
            return false;
        }
        self.frozen.truncate(keep);
        self.base = Some(Arc::new(base));
        self.generation += 1;
        true
    }

    /// The catalog of a messages file: its tables mapped, their shape
    /// checked; blocks are checked as lookups first read them.
    pub(crate) fn load_checkpoint(
        file: &str,
        bytes: Arc<CheckpointFile>,
        layout: &Layout,
        on_damage: OnDamage,
    ) -> Result<Catalog, String> {
        Ok(Catalog::mapped(MappedCatalog::new(
            file, bytes, layout, on_damage,
        )?))
    }

    /// Every row of a mapped catalog read and checked: names valid and in
    /// order, counts that match the rows, one reference row an item, in
    /// order, naming the item's saveset (for the fuzz targets and tools).
    pub(crate) fn check_all(&self) -> Result<(), String> {
        let Some(base) = &self.base else {
            return Ok(());
        };
        let text = |e: Error| e.to_string();
        // Owner names, their order and the runs were checked at open.
        for (n, (_, row)) in base.owners().iter().enumerate() {
            let mut last: Option<&str> = None;
            let mut trashed = 0;
            // Its item names follow each other from its item names offset.
            let mut name_at = row.item_names_offset;
            for k in row.first_item..row.first_item + row.items {
                let (item, r) = base.item_at_in_order(k).map_err(text)?;
                check_name("item", item).map_err(text)?;
                if last.is_some_and(|p| p.as_bytes() >= item.as_bytes()) {
                    return Err(format!("item row {k} out of order"));
                }
                if r.name_offset != name_at {
                    return Err(format!(
                        "item row {k}: name not where its owner's run puts it"
                    ));
                }
                name_at += u64::from(r.name_len);
                if !base.filter_may_hold(row, item).map_err(text)? {
                    return Err(format!("item row {k}: its owner's filter lacks it"));
                }
                last = Some(item);
                trashed += u64::from(r.trashed_at_ms.is_some());
            }
            if trashed != row.trashed {
                return Err(format!(
                    "owner row {n}: {} in trash, rows say {trashed}",
                    row.trashed
                ));
            }
        }
        let mut last: Option<([u8; 32], u64)> = None;
        for n in 0..base.reference_rows() {
            let (id, row) = base.reference_at_in_order(n).map_err(text)?;
            if last.is_some_and(|l| l >= (id, row)) {
                return Err(format!("reference row {n} out of order"));
            }
            last = Some((id, row));
            if base.item_at(row).map_err(text)?.1.id != id {
                return Err(format!("reference row {n}: its item names another saveset"));
            }
        }
        Ok(())
    }
}

/// The item filters of the owners written so far, in a temporary file
/// until the names are written (about 1.3 bytes an item).
struct FilterSpill {
    filter: FilterBuilder,
    file: std::io::BufWriter<std::fs::File>,
    blocks: u64,
}

impl FilterSpill {
    fn new() -> std::io::Result<FilterSpill> {
        Ok(FilterSpill {
            filter: FilterBuilder::default(),
            file: std::io::BufWriter::with_capacity(1 << 20, tempfile::tempfile()?),
            blocks: 0,
        })
    }

    /// The owner's filter is complete: keep its blocks.
    fn keep_owner(&mut self) -> std::io::Result<()> {
        for block in self.filter.blocks() {
            self.file.write_all(block)?;
            self.blocks += 1;
        }
        Ok(())
    }

    /// The filter table: every block kept, in owner order.
    fn write_table<W: Write>(self, w: &mut CheckpointWriter<W>) -> std::io::Result<()> {
        use std::io::{Read, Seek};
        let mut file = self.file.into_inner().map_err(|e| e.into_error())?;
        file.seek(std::io::SeekFrom::Start(0))?;
        let mut r = std::io::BufReader::with_capacity(1 << 20, file);
        w.begin_table(messages::ITEM_FILTER, BLOCK_BYTES as u32)?;
        let mut block = [0u8; BLOCK_BYTES];
        for _ in 0..self.blocks {
            r.read_exact(&mut block)?;
            w.row(&block)?;
        }
        Ok(())
    }
}

/// Kept item rows of the old base: runs of (old row, new row, length).
#[derive(Default)]
struct KeptRows(Vec<(u64, u64, u64)>);

impl KeptRows {
    fn keep(&mut self, old: u64, new: u64) {
        match self.0.last_mut() {
            Some((o, n, len)) if *o + *len == old && *n + *len == new => *len += 1,
            _ => self.0.push((old, new, 1)),
        }
    }

    /// The new row of old row `old`, if it was kept.
    fn new_row(&self, old: u64) -> Option<u64> {
        let i = self
            .0
            .partition_point(|(o, _, _)| *o <= old)
            .checked_sub(1)?;
        let &(o, n, len) = self.0.get(i)?;
        (old < o + len).then(|| n + (old - o))
    }
}

fn other(e: impl ToString) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl CatalogSnapshot {
    fn layers(&self) -> Layers<'_> {
        Layers {
            top: None,
            frozen: &self.frozen,
            base: self.base.as_deref(),
            generation: self.generation,
        }
    }

    /// References in the snapshot (live and in trash).
    pub(crate) fn references(&self) -> u64 {
        self.references
    }

    /// Write the six tables, merging the frozen changes into the base as
    /// streams: items (then owners) in name order, references in (id,
    /// item row) order with their fanout, the names, then the item
    /// filters (built with the items, kept in a temporary file meanwhile).
    pub(crate) fn write<W: Write>(&self, w: &mut CheckpointWriter<W>) -> std::io::Result<()> {
        let layers = self.layers();
        let owners = layers.owners().map_err(other)?;
        let mut kept = KeptRows::default();
        let mut fresh: Vec<([u8; 32], u64)> = Vec::new();
        let mut filters = FilterSpill::new()?;
        let owner_rows = self.write_items(w, &owners, &mut kept, &mut fresh, &mut filters)?;
        w.begin_table(messages::OWNERS, OwnerRow::BYTES as u32)?;
        for o in &owner_rows {
            w.row(&o.encode())?;
        }
        let items = owner_rows.last().map_or(0, |o| o.first_item + o.items);
        fresh.sort_unstable();
        self.write_references(w, items, &kept, &fresh)?;
        w.begin_table(messages::NAMES, 0)?;
        for o in &owners {
            w.data(o.name.as_bytes())?;
        }
        for o in &owners {
            for it in layers
                .items_from(o.name, o.base.as_ref(), None, Reading::InOrder)
                .map_err(other)?
            {
                w.data(it.map_err(other)?.name.as_bytes())?;
            }
        }
        filters.write_table(w)
    }

    /// The items table; the owner rows. Names are placed owners' first
    /// (the searches for an owner read few pages), then items' in row
    /// order. An item whose base row names
    /// the same saveset keeps that row's reference (`kept`); any other is
    /// a `fresh` reference.
    fn write_items<W: Write>(
        &self,
        w: &mut CheckpointWriter<W>,
        owners: &[MergedOwner<'_>],
        kept: &mut KeptRows,
        fresh: &mut Vec<([u8; 32], u64)>,
        filters: &mut FilterSpill,
    ) -> std::io::Result<Vec<OwnerRow>> {
        let layers = self.layers();
        let mut owner_names_at = 0u64;
        let mut names_at: u64 = owners.iter().map(|o| o.name.len() as u64).sum();
        let mut row = 0u64;
        let mut owner_rows = Vec::with_capacity(owners.len());
        w.begin_table(messages::ITEMS, ItemRow::BYTES as u32)?;
        for o in owners {
            let name_offset = owner_names_at;
            owner_names_at += o.name.len() as u64;
            let first_item = row;
            let item_names_offset = names_at;
            let mut trashed = 0;
            filters.filter.reset(o.stat.items);
            for it in layers
                .items_from(o.name, o.base.as_ref(), None, Reading::InOrder)
                .map_err(other)?
            {
                let it = it.map_err(other)?;
                let item = ItemRow {
                    name_offset: names_at,
                    name_len: it.name.len() as u32,
                    hold: it.r.hold,
                    trashed_at_ms: it.r.trashed_at_ms(),
                    id: it.r.id.0,
                };
                w.row(&item.encode())?;
                filters.filter.add(it.name.as_bytes());
                names_at += it.name.len() as u64;
                match it.base {
                    Some((old, id)) if id == it.r.id => kept.keep(old, row),
                    _ => fresh.push((it.r.id.0, row)),
                }
                trashed += u64::from(it.r.trashed_at_ms().is_some());
                row += 1;
            }
            let items = row - first_item;
            if items != o.stat.items || trashed != o.stat.trashed {
                return Err(other(format!(
                    "owner {:?}: counts say {} items, {} in trash; the layers hold {items}, {trashed}",
                    o.name, o.stat.items, o.stat.trashed
                )));
            }
            filters.keep_owner()?;
            owner_rows.push(OwnerRow {
                name_offset,
                name_len: o.name.len() as u32,
                hold: o.stat.hold,
                first_item,
                items,
                trashed,
                item_names_offset,
            });
        }
        Ok(owner_rows)
    }

    /// The references table, one row an item: the base's kept rows moved
    /// to their new item rows (in order still: the move is monotonic)
    /// merged with the fresh ones; then its fanout.
    fn write_references<W: Write>(
        &self,
        w: &mut CheckpointWriter<W>,
        items: u64,
        kept: &KeptRows,
        fresh: &[([u8; 32], u64)],
    ) -> std::io::Result<()> {
        let mut fanout = FanoutBuilder::new(fanout_bits_for(items));
        let mut written = 0u64;
        let mut emit = |w: &mut CheckpointWriter<W>, (id, row): ([u8; 32], u64)| {
            fanout.add(&id);
            written += 1;
            w.row(&encode_reference(&id, row))
        };
        w.begin_table(messages::REFERENCES, 40)?;
        let mut fresh = fresh.iter().copied().peekable();
        if let Some(base) = &self.base {
            for n in 0..base.reference_rows() {
                let (id, old) = base.reference_at_in_order(n).map_err(other)?;
                let Some(row) = kept.new_row(old) else {
                    continue;
                };
                while let Some(f) = fresh.next_if(|f| *f < (id, row)) {
                    emit(w, f)?;
                }
                emit(w, (id, row))?;
            }
        }
        for f in fresh {
            emit(w, f)?;
        }
        if written != items {
            return Err(other(format!("{written} reference rows for {items} items")));
        }
        w.begin_table(messages::REFERENCE_FANOUT, 8)?;
        for start in fanout.rows() {
            w.row(&start.to_le_bytes())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::checkpoint::{CheckpointHeader, CheckpointKind};
    use crate::rng::SplitMix;

    const HEADER: CheckpointHeader = CheckpointHeader {
        kind: CheckpointKind::Messages,
        store_id: [1; 16],
        sequence: 1,
        created_ms: 0,
        salt: None,
    };

    fn generation_bytes(snapshot: &CatalogSnapshot) -> Vec<u8> {
        let mut w = CheckpointWriter::new(Vec::new(), &HEADER).unwrap();
        snapshot.write(&mut w).unwrap();
        w.finish().unwrap().0
    }

    fn write_generation(snapshot: &CatalogSnapshot) -> MappedCatalog {
        let bytes = generation_bytes(snapshot);
        let layout = Layout::parse(&bytes).unwrap();
        let bytes = Arc::new(CheckpointFile::Clear(crate::io::MappedFile::Read(bytes)));
        MappedCatalog::new("test", bytes, &layout, Arc::new(|_: &str| {})).unwrap()
    }

    fn random_op(rng: &mut SplitMix) -> CatalogOp {
        let owner = format!("owner{}", rng.below(5));
        let item = format!("<{}@x>", rng.below(40));
        let id = [rng.below(12) as u8; 32];
        let at_ms = 1 + rng.below(100);
        let one = |rng: &mut SplitMix| (rng.below(2) == 0).then(|| item.clone());
        match rng.below(10) {
            0..=3 => CatalogOp::Add { owner, item, id },
            4 => CatalogOp::Replace { owner, item, id },
            5 => CatalogOp::TrashItem { owner, item, at_ms },
            6 => CatalogOp::TrashOwner { owner, at_ms },
            7 => CatalogOp::Restore {
                item: one(rng),
                owner,
            },
            8 => CatalogOp::Purge {
                cutoff_ms: rng.below(120),
                item: None,
                owner: (rng.below(2) == 0).then_some(owner),
            },
            _ => CatalogOp::Hold {
                item: one(rng),
                on: rng.below(3) > 0,
                owner,
            },
        }
    }

    /// One op on both catalogs: the same verdict, the same effects.
    fn apply_both(plain: &mut Catalog, layered: &mut Catalog, op: &CatalogOp) {
        let verdict = plain.check(op).map_err(|e| e.to_string());
        assert_eq!(
            verdict,
            layered.check(op).map_err(|e| e.to_string()),
            "{op:?}"
        );
        if verdict.is_ok() {
            let a = plain.apply(op).unwrap();
            let b = layered.apply(op).unwrap();
            assert_eq!(
                (a.dead, a.purged, a.held),
                (b.dead, b.purged, b.held),
                "{op:?}"
            );
        }
    }

    fn assert_same(plain: &Catalog, layered: &Catalog) {
        assert_eq!(plain.digest().unwrap(), layered.digest().unwrap());
        assert_eq!(plain.owners().unwrap(), layered.owners().unwrap());
        assert_eq!(plain.trash().unwrap(), layered.trash().unwrap());
        let counts = |c: &Catalog| (c.references(), c.trashed(), c.owner_count());
        assert_eq!(counts(plain), counts(layered));
        for n in 0..12u8 {
            let id = SavesetId([n; 32]);
            assert_eq!(plain.refs(&id).unwrap(), layered.refs(&id).unwrap());
        }
        for o in plain.owners().unwrap() {
            let page = |c: &Catalog| c.items(&o.owner, Some("<2"), 7).unwrap();
            assert_eq!(page(plain), page(layered));
        }
    }

    /// Generations written while changes go on (frozen, then installed or
    /// abandoned as a failed write) answer as a catalog that never had one.
    #[test]
    fn generations_written_while_changes_go_on_agree_with_a_plain_catalog() {
        for seed in 0..150 {
            let mut rng = SplitMix(seed);
            let mut plain = Catalog::default();
            let mut layered = Catalog::default();
            for _ in 0..6 {
                for _ in 0..rng.below(60) {
                    apply_both(&mut plain, &mut layered, &random_op(&mut rng));
                }
                let snapshot = layered.freeze();
                for _ in 0..rng.below(30) {
                    apply_both(&mut plain, &mut layered, &random_op(&mut rng));
                }
                assert_same(&plain, &layered);
                let base = write_generation(&snapshot);
                if rng.below(4) > 0 {
                    assert!(layered.install(&snapshot, base));
                    layered.check_all().unwrap();
                }
                assert_same(&plain, &layered);
            }
        }
    }

    /// A generation whose tables are changed byte by byte, then framed
    /// again with right checksums (so the row checks, not the crcs, meet
    /// the change): the whole-file check and every read either accept it
    /// or refuse it with an error; none panics.
    #[test]
    fn changed_tables_with_right_checksums_are_refused_or_read_never_panic() {
        let mut rng = SplitMix(7);
        let mut catalog = Catalog::default();
        let mut plain = Catalog::default();
        for _ in 0..300 {
            apply_both(&mut plain, &mut catalog, &random_op(&mut rng));
        }
        let valid = generation_bytes(&catalog.freeze());
        let layout = Layout::parse(&valid).unwrap();
        let (mut accepted, mut refused) = (0, 0);
        for _ in 0..3000 {
            let mut w = CheckpointWriter::new(Vec::new(), &HEADER).unwrap();
            let victim = rng.below(layout.tables.len() as u64) as usize;
            for (n, e) in layout.tables.iter().enumerate() {
                let start = e.data_offset as usize;
                let mut data = valid[start..start + e.data_len as usize].to_vec();
                if n == victim && !data.is_empty() {
                    for _ in 0..1 + rng.below(3) {
                        let at = rng.below(data.len() as u64) as usize;
                        data[at] ^= 1 << rng.below(8);
                    }
                }
                w.begin_table(e.id, e.row_bytes).unwrap();
                if e.row_bytes == 0 {
                    w.data(&data).unwrap();
                } else {
                    for row in data.chunks_exact(e.row_bytes as usize) {
                        w.row(row).unwrap();
                    }
                }
            }
            let bytes = w.finish().unwrap().0;
            match crate::engine::sync_cache::check_file(&bytes, &crate::crypto::Sealing::Plain) {
                Ok(_) => accepted += 1,
                Err(_) => refused += 1,
            }
            // Reads of a mapped catalog with the change: errors, not panics.
            let layout = Layout::parse(&bytes).unwrap();
            let bytes = Arc::new(CheckpointFile::Clear(crate::io::MappedFile::Read(bytes)));
            if let Ok(c) = Catalog::load_checkpoint("t", bytes, &layout, Arc::new(|_: &str| {})) {
                let _ = c.digest();
                let _ = c.trash();
                for n in 0..12u8 {
                    let _ = c.refs(&SavesetId([n; 32]));
                }
                for n in 0..5 {
                    let _ = c.items(&format!("owner{n}"), None, 100);
                }
            }
        }
        // A flipped id or trash time is a valid catalog, other flips are not.
        assert!(
            accepted > 0 && refused > 0,
            "{accepted} accepted, {refused} refused"
        );
    }
}
