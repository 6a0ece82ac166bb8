//! The catalog tables of a mapped messages checkpoint (format-spec/
//! checkpoint.md, "Kind 2"): owners, items, references, their fanout and
//! the names blob, searched in place. The kernel pages them in and out;
//! nothing here is copied to the heap but the references fanout.
//!
//! Owns reading those tables and reporting a damaged block (once, through
//! the engine's callback, which drops the sync cache). It never changes a
//! byte and knows nothing of the layers above it.

use std::cmp::Ordering;
use std::sync::{Arc, Once};

use super::ItemRef;
use crate::error::{Error, Result};
use crate::format::checkpoint::{Layout, SharedTable};
use crate::format::item_filter::{self, Probe};
use crate::format::sealed_checkpoint::CheckpointFile;
use crate::format::sync_tables::{
    ItemRow, OwnerRow, bucket_rows, decode_fanout, decode_reference, fanout_bucket,
    lower_bound_in_bucket, messages,
};
use crate::id::SavesetId;
use crate::index::OnDamage;

/// Bytes of a references row: id, item row.
const REF_ROW: u64 = 40;

/// Live and trashed references and present owners, from the owner rows.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Totals {
    pub(super) live: u64,
    pub(super) trashed: u64,
    pub(super) owners: u64,
}

/// The four catalog tables of one mapped file, the references fanout and
/// the owners (names and rows: about 100 bytes an owner, so a search for
/// an owner or an item's owner reads no page).
pub(crate) struct MappedCatalog {
    file: Arc<str>,
    owners: Vec<(Box<str>, OwnerRow)>,
    items: SharedTable<CheckpointFile>,
    refs: SharedTable<CheckpointFile>,
    names: SharedTable<CheckpointFile>,
    /// Each owner's item filter blocks, and where each owner's begin (one
    /// entry an owner, in owner order).
    filter: SharedTable<CheckpointFile>,
    filter_first: Vec<u64>,
    fanout: Vec<u64>,
    bits: u32,
    names_len: u64,
    totals: Totals,
    on_damage: OnDamage,
    reported: Once,
}

impl std::fmt::Debug for MappedCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedCatalog")
            .field("file", &self.file)
            .field("items", &self.item_rows())
            .finish()
    }
}

impl MappedCatalog {
    /// The tables of `bytes` (a file [`Layout::parse`] accepted). The
    /// owner rows and the fanout are read whole and checked for shape
    /// (continuous item runs, counts that add up); items, references and
    /// names are checked block by block as lookups reach them.
    pub(crate) fn new(
        file: &str,
        bytes: Arc<CheckpointFile>,
        layout: &Layout,
        on_damage: OnDamage,
    ) -> std::result::Result<MappedCatalog, String> {
        let entry = |id| {
            layout
                .entry(id)
                .copied()
                .ok_or_else(|| format!("messages table {id} missing"))
        };
        // Tables read whole at open are asked for whole; the others are
        // searched, a page at a time.
        let whole = |id| {
            let t = SharedTable::new(bytes.clone(), entry(id)?);
            t.will_need_all();
            Ok::<_, String>(t)
        };
        let lookups = |id| Ok::<_, String>(SharedTable::for_lookups(bytes.clone(), entry(id)?));
        let owners = whole(messages::OWNERS)?;
        let refs = lookups(messages::REFERENCES)?;
        let (fanout, bits) = decode_fanout(
            &whole(messages::REFERENCE_FANOUT)?.table(),
            refs.table().rows(),
        )?;
        let mut m = MappedCatalog {
            file: file.into(),
            owners: Vec::new(),
            items: lookups(messages::ITEMS)?,
            refs,
            names: lookups(messages::NAMES)?,
            filter: lookups(messages::ITEM_FILTER)?,
            filter_first: Vec::new(),
            fanout,
            bits,
            names_len: 0,
            totals: Totals::default(),
            on_damage,
            reported: Once::new(),
        };
        m.load_owners(&owners)?;
        Ok(m)
    }

    /// Every owner row and name, checked: names valid and in order, item
    /// runs that follow each other and cover the items table, one
    /// reference row an item, the filter blocks their counts call for;
    /// and the totals they give.
    fn load_owners(
        &mut self,
        owners: &SharedTable<CheckpointFile>,
    ) -> std::result::Result<(), String> {
        let owners = owners.table();
        let rows = (0..owners.rows())
            .map(|n| OwnerRow::decode(owners.row(n)?))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        // Owner names lead the names blob: one request for all of them.
        let names_end = rows
            .last()
            .map_or(0, |o| o.name_offset + u64::from(o.name_len));
        self.names.will_need(0, names_end);
        let names = self.names.table();
        self.names_len = names.data_len();
        let mut t = Totals::default();
        let mut next = 0u64;
        // Item names follow the owners', each owner's after the previous.
        let mut item_names_at = names_end;
        let mut filter_blocks = 0u64;
        for (n, o) in rows.into_iter().enumerate() {
            if o.first_item != next || o.trashed > o.items || (o.items == 0 && !o.hold) {
                return Err(format!("owner row {n}: item run or counts out of shape"));
            }
            let names_in_order = if n == 0 {
                o.item_names_offset == names_end
            } else {
                o.item_names_offset >= item_names_at
            };
            if !names_in_order || o.item_names_offset > self.names_len {
                return Err(format!("owner row {n}: item names offset out of shape"));
            }
            item_names_at = o.item_names_offset;
            let name = std::str::from_utf8(names.range(o.name_offset, u64::from(o.name_len))?)
                .map_err(|_| format!("owner row {n}: name not UTF-8"))?;
            super::check_name("owner", name).map_err(|e| format!("owner row {n}: {e}"))?;
            if self
                .owners
                .last()
                .is_some_and(|(p, _)| p.as_bytes() >= name.as_bytes())
            {
                return Err(format!("owner row {n} out of order"));
            }
            self.owners.push((name.into(), o));
            self.filter_first.push(filter_blocks);
            filter_blocks = filter_blocks.saturating_add(item_filter::blocks_for(o.items));
            next = next.saturating_add(o.items);
            t.live += o.items - o.trashed;
            t.trashed += o.trashed;
            t.owners += 1;
        }
        if next != self.item_rows() || self.refs.table().rows() != next {
            return Err(format!(
                "owners list {next} items; the tables hold {} items and {} references",
                self.item_rows(),
                self.refs.table().rows()
            ));
        }
        if filter_blocks != self.filter.table().rows() {
            return Err(format!(
                "owners call for {filter_blocks} item filter blocks; the table holds {}",
                self.filter.table().rows()
            ));
        }
        self.totals = t;
        Ok(())
    }

    pub(super) fn totals(&self) -> Totals {
        self.totals
    }

    fn damaged(&self, detail: String) -> Error {
        self.reported.call_once(|| (self.on_damage)(&detail));
        Error::CacheDamaged {
            file: self.file.to_string(),
            detail,
        }
    }

    /// The owners, by name: name and row.
    pub(super) fn owners(&self) -> &[(Box<str>, OwnerRow)] {
        &self.owners
    }

    pub(super) fn item_rows(&self) -> u64 {
        self.items.table().rows()
    }

    pub(super) fn reference_rows(&self) -> u64 {
        self.refs.table().rows()
    }

    fn name(&self, offset: u64, len: u32) -> Result<&str> {
        let bytes = self
            .names
            .table()
            .range(offset, u64::from(len))
            .map_err(|e| self.damaged(e))?;
        std::str::from_utf8(bytes).map_err(|_| self.damaged(format!("name at {offset}: not UTF-8")))
    }

    /// Item row `n`: its name and content.
    pub(super) fn item_at(&self, n: u64) -> Result<(&str, ItemRow)> {
        let row = self
            .items
            .table()
            .row(n)
            .and_then(ItemRow::decode)
            .map_err(|e| self.damaged(e))?;
        Ok((self.name(row.name_offset, row.name_len)?, row))
    }

    /// Item row `n` for a reader going front to back through the items
    /// (a generation's merge, a full check): the kernel reads ahead of it.
    pub(super) fn item_at_in_order(&self, n: u64) -> Result<(&str, ItemRow)> {
        self.items.read_ahead_row(n);
        let item = self.item_at(n)?;
        self.names.read_ahead(item.1.name_offset);
        Ok(item)
    }

    /// Reference row `n` for a reader going front to back.
    pub(super) fn reference_at_in_order(&self, n: u64) -> Result<([u8; 32], u64)> {
        self.refs.read_ahead_row(n);
        self.reference_at(n)
    }

    /// At most `count` items of owner `o` from row `first` on are read
    /// next (a page): their rows and names are asked for at once. The
    /// names of a page that ends inside the run are an estimate from the
    /// run's average name; one past it is read when reached.
    pub(super) fn will_read_run(&self, o: &OwnerRow, first: u64, count: u64) -> Result<()> {
        let run_end = o.first_item + o.items;
        let count = count.min(run_end.saturating_sub(first));
        if count == 0 {
            return Ok(());
        }
        self.items.will_need_rows(first, count);
        let names_end = self.item_names_end(o);
        let start = if first == o.first_item {
            o.item_names_offset
        } else {
            self.item_name_span(first)?.0
        };
        let end = if first + count == run_end {
            names_end
        } else {
            let average = names_end.saturating_sub(o.item_names_offset) / o.items.max(1);
            let estimate = average.saturating_mul(count).saturating_mul(5) / 4;
            start.saturating_add(estimate).min(names_end)
        };
        self.names.will_need(start, end.saturating_sub(start));
        Ok(())
    }

    /// Where the names of owner `o`'s items end: where the next owner's
    /// begin, or the blob's end.
    fn item_names_end(&self, o: &OwnerRow) -> u64 {
        let run_end = o.first_item + o.items;
        let next = self.owners.partition_point(|(_, r)| r.first_item < run_end);
        self.owners
            .get(next)
            .map_or(self.names_len, |(_, r)| r.item_names_offset)
    }

    /// Item rows `rows` (anywhere) and their names are read next: every
    /// row requested at once, then every name.
    pub(super) fn will_read_items(&self, rows: &[u64]) -> Result<()> {
        if rows.len() < 2 {
            return Ok(());
        }
        for &n in rows {
            self.items.will_need_rows(n, 1);
        }
        for &n in rows {
            let (offset, len) = self.item_name_span(n)?;
            self.names.will_need(offset, u64::from(len));
        }
        Ok(())
    }

    /// Where item row `n`'s name is in the names blob.
    fn item_name_span(&self, n: u64) -> Result<(u64, u32)> {
        let row = self.items.table().row(n).map_err(|e| self.damaged(e))?;
        match (row.get(..8), row.get(8..12)) {
            (Some(o), Some(l)) => Ok((
                u64::from_le_bytes(o.try_into().unwrap_or_default()),
                u32::from_le_bytes(l.try_into().unwrap_or_default()),
            )),
            _ => Err(self.damaged(format!("item row {n} truncated"))),
        }
    }

    /// The name bytes of item row `n` (for searches: the row is decoded
    /// and the name checked as UTF-8 only when it is returned).
    fn item_name(&self, n: u64) -> Result<&[u8]> {
        let (offset, len) = self.item_name_span(n)?;
        self.names
            .table()
            .range(offset, u64::from(len))
            .map_err(|e| self.damaged(e))
    }

    /// Reference row `n`: saveset id, item row.
    pub(super) fn reference_at(&self, n: u64) -> Result<([u8; 32], u64)> {
        self.refs
            .table()
            .row(n)
            .and_then(decode_reference)
            .map_err(|e| self.damaged(e))
    }

    /// The owner row named `owner`.
    pub(super) fn find_owner(&self, owner: &str) -> Result<Option<OwnerRow>> {
        Ok(self
            .owners
            .binary_search_by(|(name, _)| name.as_bytes().cmp(owner.as_bytes()))
            .ok()
            .and_then(|i| self.owners.get(i))
            .map(|(_, row)| *row))
    }

    /// The first item row of `owner` whose name is after `after` (or its
    /// first), by binary search; its run ends at `first_item + items`.
    pub(super) fn first_item_after(&self, owner: &OwnerRow, after: Option<&str>) -> Result<u64> {
        let Some(after) = after else {
            return Ok(owner.first_item);
        };
        let (mut a, mut z) = (owner.first_item, owner.first_item + owner.items);
        while a < z {
            let mid = a + (z - a) / 2;
            if self.item_name(mid)? <= after.as_bytes() {
                a = mid + 1;
            } else {
                z = mid;
            }
        }
        Ok(a)
    }

    /// Item `item` in the run of owner row `o`, if the tables hold it: its
    /// filter block first (most absent items end there), then a binary
    /// search of the run.
    pub(super) fn item_in(&self, o: &OwnerRow, item: &str) -> Result<Option<(u64, ItemRef)>> {
        if !self.filter_may_hold(o, item)? {
            return Ok(None);
        }
        let (mut a, mut z) = (o.first_item, o.first_item + o.items);
        while a < z {
            let mid = a + (z - a) / 2;
            match self.item_name(mid)?.cmp(item.as_bytes()) {
                Ordering::Less => a = mid + 1,
                Ordering::Greater => z = mid,
                Ordering::Equal => return Ok(Some((mid, item_ref(&self.item_at(mid)?.1)))),
            }
        }
        Ok(None)
    }

    /// Whether owner `o`'s filter may hold `item` (false: it does not).
    pub(super) fn filter_may_hold(&self, o: &OwnerRow, item: &str) -> Result<bool> {
        let blocks = item_filter::blocks_for(o.items);
        if blocks == 0 {
            return Ok(false);
        }
        // The owner whose run starts at `o`'s (an owner with no item has
        // an empty run and no block, and is passed over).
        let i = self
            .owners
            .partition_point(|(_, r)| r.first_item + r.items <= o.first_item);
        let Some(&first) = self.filter_first.get(i) else {
            return Err(self.damaged(format!("owner at item row {}: no filter", o.first_item)));
        };
        let probe = Probe::of(item.as_bytes(), blocks);
        let block = self
            .filter
            .table()
            .row(first + probe.block)
            .map_err(|e| self.damaged(format!("item filter: {e}")))?;
        Ok(probe.maybe_in(block))
    }

    /// The owner (name and row) whose item run holds item row `n`.
    pub(super) fn owner_of_item(&self, n: u64) -> Result<(&str, OwnerRow)> {
        let i = self
            .owners
            .partition_point(|(_, row)| row.first_item + row.items <= n);
        match self.owners.get(i) {
            Some((name, row)) if row.first_item <= n => Ok((name, *row)),
            _ => Err(self.damaged(format!("item row {n}: no owner lists it"))),
        }
    }

    /// The item rows referencing `id`: its fanout bucket, a binary search
    /// for its first row, then its run.
    pub(super) fn item_rows_of(&self, id: &SavesetId) -> Result<Vec<u64>> {
        // The bucket may straddle two pages: ask for both at once.
        let b = fanout_bucket(&id.0, self.bits);
        if let (Some(&lo), Some(&hi)) = (self.fanout.get(b), self.fanout.get(b + 1)) {
            self.refs.will_need_rows(lo, hi.saturating_sub(lo));
        }
        let rows = bucket_rows(&self.refs.table(), &self.fanout, self.bits, &id.0, REF_ROW)
            .map_err(|e| self.damaged(format!("references: {e}")))?;
        let first = lower_bound_in_bucket(rows, REF_ROW as usize, &id.0);
        rows.chunks_exact(REF_ROW as usize)
            .skip(first)
            .take_while(|r| r.get(..32) == Some(&id.0[..]))
            .map(|r| decode_reference(r).map(|(_, n)| n))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| self.damaged(e))
    }
}

/// The reference an item row holds.
pub(super) fn item_ref(row: &ItemRow) -> ItemRef {
    ItemRef {
        hold: row.hold,
        ..ItemRef::new(SavesetId(row.id)).with_trash(row.trashed_at_ms)
    }
}
