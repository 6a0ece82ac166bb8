//! The catalog in a messages checkpoint (format-spec/checkpoint.md, "Kind
//! 2"): a snapshot taken under the catalog's lock (names shared, not
//! copied), written without it, and the catalog loaded back from the tables.

use std::io::Write;

use super::*;
use crate::format::checkpoint::{BlockChecks, CheckpointWriter, Layout, Table};
use crate::format::sync_tables::{ItemRow, OwnerRow, decode_reference, encode_reference, messages};

/// One owner in a snapshot: name, hold, references in trash, items by name.
type OwnerSnapshot = (Arc<str>, bool, u64, Vec<(Arc<str>, ItemRef)>);

/// The catalog as it stood at one sequence, sorted, sharing its names.
pub(crate) struct CatalogSnapshot {
    owners: Vec<OwnerSnapshot>,
}

impl Catalog {
    /// Everything, owners and items in name order (bytes).
    pub(crate) fn snapshot(&self) -> CatalogSnapshot {
        let mut owners: Vec<_> = self
            .owners
            .iter()
            .map(|(name, o)| {
                let items = o
                    .items
                    .iter()
                    .map(|(i, r)| (i.clone(), r.clone()))
                    .collect();
                (name.clone(), o.hold, o.trashed, items)
            })
            .collect();
        owners.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        CatalogSnapshot { owners }
    }

    /// The catalog the tables of `bytes` hold, every block checked.
    pub(crate) fn load_checkpoint(bytes: &[u8], layout: &Layout) -> Result<Catalog, String> {
        let tables = [
            messages::OWNERS,
            messages::ITEMS,
            messages::REFERENCES,
            messages::NAMES,
        ]
        .map(|id| {
            layout
                .entry(id)
                .ok_or(format!("messages table {id} missing"))
        });
        let [owners_e, items_e, refs_e, names_e] = tables;
        let (owners_e, items_e, refs_e, names_e) = (owners_e?, items_e?, refs_e?, names_e?);
        let checks: Vec<BlockChecks> = [owners_e, items_e, refs_e, names_e]
            .iter()
            .map(|e| BlockChecks::for_table(e))
            .collect();
        let [c0, c1, c2, c3] = checks.as_slice() else {
            return Err("messages tables".into());
        };
        let owners_t = Table::new(bytes, owners_e, c0);
        let items_t = Table::new(bytes, items_e, c1);
        let refs_t = Table::new(bytes, refs_e, c2);
        let names_t = Table::new(bytes, names_e, c3);
        let name = |offset: u64, len: u32| -> Result<Arc<str>, String> {
            let b = names_t.range(offset, u64::from(len))?;
            let s = std::str::from_utf8(b).map_err(|_| format!("name at {offset} is not UTF-8"))?;
            Ok(Arc::from(s))
        };
        let mut cat = Catalog::default();
        let mut item_keys: Vec<(Arc<str>, Arc<str>)> = Vec::with_capacity(items_t.rows() as usize);
        let mut item_ids: Vec<[u8; 32]> = Vec::with_capacity(items_t.rows() as usize);
        let mut previous: Option<Arc<str>> = None;
        for n in 0..owners_t.rows() {
            let o = OwnerRow::decode(owners_t.row(n)?)?;
            let owner = name(o.name_offset, o.name_len)?;
            check_name("owner", &owner).map_err(|e| e.to_string())?;
            if previous
                .as_ref()
                .is_some_and(|p| p.as_bytes() >= owner.as_bytes())
            {
                return Err(format!("owner row {n} out of order"));
            }
            previous = Some(owner.clone());
            if o.first_item != item_keys.len() as u64 {
                return Err(format!(
                    "owner row {n}: items do not follow the previous owner's"
                ));
            }
            let mut entry = OwnerEntry {
                hold: o.hold,
                ..OwnerEntry::default()
            };
            for k in o.first_item..o.first_item.saturating_add(o.items) {
                let row = ItemRow::decode(items_t.row(k)?)?;
                let item = name(row.name_offset, row.name_len)?;
                check_name("item", &item).map_err(|e| e.to_string())?;
                if entry.items.keys().next_back().is_some_and(|p| **p >= *item) {
                    return Err(format!("item row {k} out of order"));
                }
                if row.trashed_at_ms.is_some() {
                    entry.trashed += 1;
                    cat.trashed += 1;
                } else {
                    cat.live += 1;
                }
                let r = ItemRef {
                    id: SavesetId(row.id),
                    trashed_at_ms: row.trashed_at_ms,
                    hold: row.hold,
                };
                entry.items.insert(item.clone(), r);
                item_keys.push((owner.clone(), item));
                item_ids.push(row.id);
            }
            if entry.trashed != o.trashed {
                return Err(format!(
                    "owner row {n}: {} in trash, rows say {}",
                    o.trashed, entry.trashed
                ));
            }
            cat.owners.insert(owner, entry);
        }
        if item_keys.len() as u64 != items_t.rows() {
            return Err("item rows no owner lists".into());
        }
        cat.load_references(&refs_t, &item_keys, &item_ids)?;
        Ok(cat)
    }

    /// The reverse map, checked against the items: one row per item, in
    /// (id, item row) order.
    fn load_references(
        &mut self,
        refs_t: &Table<'_, '_>,
        item_keys: &[(Arc<str>, Arc<str>)],
        item_ids: &[[u8; 32]],
    ) -> Result<(), String> {
        if refs_t.rows() != item_keys.len() as u64 {
            return Err(format!(
                "{} reference rows for {} items",
                refs_t.rows(),
                item_keys.len()
            ));
        }
        let mut last: Option<([u8; 32], u64)> = None;
        for n in 0..refs_t.rows() {
            let (id, row) = decode_reference(refs_t.row(n)?)?;
            if last.is_some_and(|l| l >= (id, row)) {
                return Err(format!("reference row {n} out of order"));
            }
            last = Some((id, row));
            let key = item_keys
                .get(row as usize)
                .ok_or_else(|| format!("reference row {n}: item row {row} missing"))?;
            if item_ids.get(row as usize) != Some(&id) {
                return Err(format!("reference row {n}: its item names another saveset"));
            }
            self.refs_of
                .entry(SavesetId(id))
                .or_default()
                .push(key.clone());
        }
        Ok(())
    }
}

impl CatalogSnapshot {
    /// Write the four tables.
    pub(crate) fn write<W: Write>(&self, w: &mut CheckpointWriter<W>) -> std::io::Result<()> {
        // Names first into memory offsets: owners' and items' names in order.
        let mut names_len = 0u64;
        let mut place = |s: &str| {
            let at = names_len;
            names_len += s.len() as u64;
            at
        };
        let mut owner_rows = Vec::with_capacity(self.owners.len());
        let mut item_rows = Vec::new();
        let mut refs: Vec<([u8; 32], u64)> = Vec::new();
        for (name, hold, trashed, items) in &self.owners {
            owner_rows.push(OwnerRow {
                name_offset: place(name),
                name_len: name.len() as u32,
                hold: *hold,
                first_item: item_rows.len() as u64,
                items: items.len() as u64,
                trashed: *trashed,
            });
            for (item, r) in items {
                refs.push((r.id.0, item_rows.len() as u64));
                item_rows.push(ItemRow {
                    name_offset: place(item),
                    name_len: item.len() as u32,
                    hold: r.hold,
                    trashed_at_ms: r.trashed_at_ms,
                    id: r.id.0,
                });
            }
        }
        refs.sort_unstable();
        w.begin_table(messages::OWNERS, OwnerRow::BYTES as u32)?;
        for o in &owner_rows {
            w.row(&o.encode())?;
        }
        w.begin_table(messages::ITEMS, ItemRow::BYTES as u32)?;
        for i in &item_rows {
            w.row(&i.encode())?;
        }
        w.begin_table(messages::REFERENCES, 40)?;
        for (id, row) in &refs {
            w.row(&encode_reference(id, *row))?;
        }
        w.begin_table(messages::NAMES, 0)?;
        for (name, _, _, items) in &self.owners {
            w.data(name.as_bytes())?;
            for (item, _) in items {
                w.data(item.as_bytes())?;
            }
        }
        Ok(())
    }

    /// References in the snapshot (live and in trash).
    pub(crate) fn references(&self) -> u64 {
        self.owners.iter().map(|o| o.3.len() as u64).sum()
    }
}
