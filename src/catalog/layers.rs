//! The catalog's layers and every read through them. Read top down:
//!
//! * the changes since the last generation (mutable, the catalog's own);
//! * frozen changes a generation being written holds, newest first,
//!   shared read-only with its writer;
//! * the base: the mapped tables of the last generation, if any.
//!
//! A layer holds changes per item, not per owner: an owner's counts and
//! hold, and each item it changed (`None` removes an item of the layers
//! below). A journal of a million items that gains one item costs one
//! entry. Owns the merge of the layers in name order; it never changes a
//! layer (the catalog does) nor reads a file but through the base.

use std::collections::{BTreeMap, HashMap, HashSet, btree_map};
use std::iter::Peekable;
use std::ops::Bound;
use std::sync::Arc;

use super::mapped::{MappedCatalog, item_ref};
use super::{ItemRef, RefKey};
use crate::error::Result;
use crate::format::sync_tables::OwnerRow;
use crate::id::SavesetId;
use crate::index::IdHash;

/// An owner's counts and hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct OwnerStats {
    pub(super) hold: bool,
    /// Items, live and in trash.
    pub(super) items: u64,
    /// Of them in trash.
    pub(super) trashed: u64,
}

impl OwnerStats {
    /// An owner is known while it has an item or a hold.
    pub(super) fn present(&self) -> bool {
        self.items > 0 || self.hold
    }

    fn of_row(row: &OwnerRow) -> OwnerStats {
        OwnerStats {
            hold: row.hold,
            items: row.items,
            trashed: row.trashed,
        }
    }
}

/// One owner's changes in a layer: its counts as they stand after them,
/// and the items it changed.
#[derive(Debug, Default, Clone)]
pub(super) struct OwnerChange {
    pub(super) stat: OwnerStats,
    pub(super) items: BTreeMap<Arc<str>, Option<ItemRef>>,
    /// The owner's row in the base of generation `.0`, found when the
    /// change was made (lookups of its other items skip the search).
    pub(super) base: Option<(u64, Option<OwnerRow>)>,
}

/// The items of one layer that reference one saveset (mostly one).
#[derive(Debug, Clone)]
pub(super) enum RefList {
    One(RefKey),
    Many(Vec<RefKey>),
}

impl RefList {
    pub(super) fn push(&mut self, key: RefKey) {
        match self {
            RefList::One(first) => *self = RefList::Many(vec![first.clone(), key]),
            RefList::Many(list) => list.push(key),
        }
    }

    /// Drop (owner, item); true when the list is then empty.
    pub(super) fn remove(&mut self, owner: &str, item: &str) -> bool {
        let is = |(o, i): &RefKey| &**o == owner && &**i == item;
        match self {
            RefList::One(key) => is(key),
            RefList::Many(list) => {
                if let Some(pos) = list.iter().position(is) {
                    list.swap_remove(pos);
                }
                list.is_empty()
            }
        }
    }

    pub(super) fn keys(&self) -> &[RefKey] {
        match self {
            RefList::One(key) => std::slice::from_ref(key),
            RefList::Many(list) => list,
        }
    }
}

/// One layer of changes.
#[derive(Debug, Default, Clone)]
pub(crate) struct Changes {
    pub(super) owners: BTreeMap<Arc<str>, OwnerChange>,
    /// For each saveset, the items of this layer that reference it.
    pub(super) refs_of: HashMap<SavesetId, RefList, IdHash>,
    /// Item entries held (changed items and removals).
    pub(super) entries: u64,
}

/// An owner in name order, as the layers show it.
pub(super) struct MergedOwner<'a> {
    pub(super) name: &'a str,
    pub(super) stat: OwnerStats,
    /// Its row in the base, if the base holds it.
    pub(super) base: Option<OwnerRow>,
}

/// An item in name order, as the layers show it.
pub(super) struct MergedItem<'a> {
    pub(super) name: &'a str,
    pub(super) r: ItemRef,
    /// The base's row of the same name and the saveset it names there.
    pub(super) base: Option<(u64, SavesetId)>,
}

/// A view of some layers over an optional base.
#[derive(Clone, Copy)]
pub(super) struct Layers<'a> {
    pub(super) top: Option<&'a Changes>,
    pub(super) frozen: &'a [Arc<Changes>],
    pub(super) base: Option<&'a MappedCatalog>,
    /// Which base this is (owner rows a change remembers are of one).
    pub(super) generation: u64,
}

impl<'a> Layers<'a> {
    fn changes(self) -> impl Iterator<Item = &'a Changes> {
        self.top.into_iter().chain(self.frozen.iter().map(|c| &**c))
    }

    /// The layers under the top one.
    pub(super) fn below_top(self) -> Layers<'a> {
        Layers { top: None, ..self }
    }

    /// An owner's counts and hold (an owner no longer present may show
    /// empty counts: a change over the base that emptied it).
    pub(super) fn owner_stat(self, owner: &str) -> Result<Option<OwnerStats>> {
        if let Some(o) = self.changes().find_map(|c| c.owners.get(owner)) {
            return Ok(Some(o.stat));
        }
        match self.base {
            Some(b) => Ok(b.find_owner(owner)?.map(|r| OwnerStats::of_row(&r))),
            None => Ok(None),
        }
    }

    /// The owner's row in the base: remembered by a change, or searched.
    pub(super) fn base_owner(self, owner: &str) -> Result<Option<OwnerRow>> {
        let Some(b) = self.base else {
            return Ok(None);
        };
        let remembered = self
            .changes()
            .filter_map(|c| c.owners.get(owner)?.base)
            .find(|(g, _)| *g == self.generation);
        match remembered {
            Some((_, row)) => Ok(row),
            None => b.find_owner(owner),
        }
    }

    /// Item `item` of `owner`.
    pub(super) fn item(self, owner: &str, item: &str) -> Result<Option<ItemRef>> {
        let mut remembered = None;
        for c in self.changes() {
            if let Some(o) = c.owners.get(owner) {
                if let Some(v) = o.items.get(item) {
                    return Ok(*v);
                }
                remembered = remembered.or(o.base.filter(|(g, _)| *g == self.generation));
            }
        }
        let Some(b) = self.base else {
            return Ok(None);
        };
        let row = match remembered {
            Some((_, row)) => row,
            None => b.find_owner(owner)?,
        };
        match row {
            Some(row) => Ok(b.item_in(&row, item)?.map(|(_, r)| r)),
            None => Ok(None),
        }
    }

    /// Whether a layer of changes holds item (owner, item).
    fn changes_hold(self, owner: &str, item: &str) -> bool {
        self.changes().any(|c| {
            c.owners
                .get(owner)
                .is_some_and(|o| o.items.contains_key(item))
        })
    }

    /// Every present owner, in name order (bytes).
    pub(super) fn owners(self) -> Result<Vec<MergedOwner<'a>>> {
        let mut merged: BTreeMap<&'a str, (Option<OwnerStats>, Option<OwnerRow>)> = BTreeMap::new();
        // Top layer first: the first stat seen for a name is the one shown.
        for c in self.changes() {
            for (name, o) in &c.owners {
                merged.entry(&**name).or_insert((Some(o.stat), None));
            }
        }
        let mut out = Vec::new();
        let mut changed = merged.into_iter().peekable();
        if let Some(b) = self.base {
            for (name, row) in b.owners() {
                let (name, row): (&str, OwnerRow) = (name, *row);
                while let Some((c, (stat, _))) = changed.next_if(|(c, _)| *c < name) {
                    push_present(&mut out, c, stat, None);
                }
                let stat = match changed.next_if(|(c, _)| *c == name) {
                    Some((_, (stat, _))) => stat,
                    None => Some(OwnerStats::of_row(&row)),
                };
                push_present(&mut out, name, stat, Some(row));
            }
        }
        for (c, (stat, _)) in changed {
            push_present(&mut out, c, stat, None);
        }
        Ok(out)
    }

    /// The items of `owner` after `after` (or all), merged in name order.
    pub(super) fn items_of(
        self,
        owner: &str,
        after: Option<&str>,
        reading: Reading,
    ) -> Result<ItemCursor<'a>> {
        let base = self.base_owner(owner)?;
        self.items_from(owner, base.as_ref(), after, reading)
    }

    /// The items of an owner whose base row (if any) is known.
    pub(super) fn items_from(
        self,
        owner: &str,
        base_row: Option<&OwnerRow>,
        after: Option<&str>,
        reading: Reading,
    ) -> Result<ItemCursor<'a>> {
        let lower = match after {
            Some(a) => Bound::Excluded(a),
            None => Bound::Unbounded,
        };
        let layers = self
            .changes()
            .filter_map(|c| c.owners.get(owner))
            .map(|o| {
                o.items
                    .range::<str, _>((lower, Bound::Unbounded))
                    .peekable()
            })
            .collect();
        let base = match (self.base, base_row) {
            (Some(b), Some(row)) => Some((
                b,
                b.first_item_after(row, after)?,
                row.first_item + row.items,
            )),
            _ => None,
        };
        if let (Some((b, first, end)), Reading::Page(limit)) = (base, reading) {
            b.will_read_run(first, (end - first).min(limit as u64))?;
        }
        Ok(ItemCursor {
            layers,
            base,
            base_peek: None,
            in_order: matches!(reading, Reading::InOrder),
        })
    }

    /// Whether any item references `id`.
    pub(super) fn is_referenced(self, id: &SavesetId) -> Result<bool> {
        // The top layer's list is exact: its items are read before any other.
        if self.top.is_some_and(|t| t.refs_of.contains_key(id)) {
            return Ok(true);
        }
        Ok(!self.references(id, true)?.is_empty())
    }

    /// The items referencing `id`, with their references, in no order;
    /// with `first`, stop at the first found.
    pub(super) fn references(
        self,
        id: &SavesetId,
        first: bool,
    ) -> Result<Vec<(String, String, ItemRef)>> {
        let mut seen: HashSet<(String, String)> = HashSet::new();
        let mut out = Vec::new();
        // A key is checked against the layers above the one listing it;
        // a base row no change shadows is the answer itself.
        let mut consider = |owner: &str, item: &str, listed: Option<ItemRef>| -> Result<bool> {
            if !seen.insert((owner.to_string(), item.to_string())) {
                return Ok(false);
            }
            let r = match listed {
                Some(r) if !self.changes_hold(owner, item) => Some(r),
                _ => self.item(owner, item)?,
            };
            match r {
                Some(r) if r.id == *id => {
                    out.push((owner.to_string(), item.to_string(), r));
                    Ok(first)
                }
                _ => Ok(false),
            }
        };
        for c in self.changes() {
            for (o, i) in c.refs_of.get(id).map(RefList::keys).unwrap_or_default() {
                if consider(o, i, None)? {
                    return Ok(out);
                }
            }
        }
        if let Some(b) = self.base {
            let rows = b.item_rows_of(id)?;
            b.will_read_items(&rows)?;
            for n in rows {
                let (owner, _) = b.owner_of_item(n)?;
                let (item, row) = b.item_at(n)?;
                if consider(owner, item, Some(item_ref(&row)))? {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }
}

fn push_present<'a>(
    out: &mut Vec<MergedOwner<'a>>,
    name: &'a str,
    stat: Option<OwnerStats>,
    base: Option<OwnerRow>,
) {
    if let Some(stat) = stat.filter(OwnerStats::present) {
        out.push(MergedOwner { name, stat, base });
    }
}

type LayerItems<'a> = Peekable<btree_map::Range<'a, Arc<str>, Option<ItemRef>>>;

/// How a cursor reads its owner's base rows.
#[derive(Debug, Clone, Copy)]
pub(super) enum Reading {
    /// At most this many items (a page): they are requested at once.
    Page(usize),
    /// Every owner's items in turn (a generation's merge, a digest): the
    /// kernel reads ahead.
    InOrder,
}

/// An owner's items merged from its layers and its base run.
pub(super) struct ItemCursor<'a> {
    layers: Vec<LayerItems<'a>>,
    /// The base, the next row of the owner's run and the run's end.
    base: Option<(&'a MappedCatalog, u64, u64)>,
    base_peek: Option<(&'a str, u64, ItemRef)>,
    in_order: bool,
}

impl<'a> ItemCursor<'a> {
    fn peek_base(&mut self) -> Result<()> {
        if self.base_peek.is_none()
            && let Some((b, next, end)) = &mut self.base
            && *next < *end
        {
            let (name, row) = if self.in_order {
                b.item_at_in_order(*next)?
            } else {
                b.item_at(*next)?
            };
            self.base_peek = Some((name, *next, item_ref(&row)));
            *next += 1;
        }
        Ok(())
    }

    fn step(&mut self) -> Result<Option<MergedItem<'a>>> {
        loop {
            self.peek_base()?;
            let mut least: Option<&'a str> = self.base_peek.as_ref().map(|p| p.0);
            for l in &mut self.layers {
                if let Some((k, _)) = l.peek() {
                    let k: &'a str = k;
                    least = Some(least.map_or(k, |m| m.min(k)));
                }
            }
            let Some(name) = least else {
                return Ok(None);
            };
            let mut value: Option<Option<ItemRef>> = None;
            for l in &mut self.layers {
                if let Some((_, v)) = l.next_if(|(k, _)| &***k == name) {
                    value.get_or_insert(*v);
                }
            }
            let base = match self.base_peek.take_if(|p| p.0 == name) {
                Some((_, row, r)) => {
                    let id = r.id;
                    value.get_or_insert(Some(r));
                    Some((row, id))
                }
                None => None,
            };
            if let Some(Some(r)) = value {
                return Ok(Some(MergedItem { name, r, base }));
            }
        }
    }
}

impl<'a> Iterator for ItemCursor<'a> {
    type Item = Result<MergedItem<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.step().transpose()
    }
}
