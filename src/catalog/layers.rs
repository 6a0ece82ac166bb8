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

/// For each saveset, the items of one layer that reference it: chains of
/// item keys in one vector, found by the id's first 8 bytes. Ids that
/// share those bytes share a chain, so readers check each item's saveset.
/// 16 bytes a saveset in the map and 40 a reference in the chains, where
/// a map of whole ids to lists of keys cost 73 bytes a slot (and twice
/// the slots just after it grew).
#[derive(Debug, Default, Clone)]
pub(super) struct RefsOf {
    heads: HashMap<u64, usize, IdHash>,
    links: Vec<Link>,
    /// The first free link (freed links chain through `next`).
    free: Option<usize>,
}

#[derive(Debug, Clone)]
struct Link {
    key: Option<RefKey>,
    next: Option<usize>,
}

impl RefsOf {
    /// `key` references `id`.
    pub(super) fn add(&mut self, id: &SavesetId, key: RefKey) {
        let next = self.heads.get(&id.prefix_u64()).copied();
        let link = Link {
            key: Some(key),
            next,
        };
        let at = match self.free {
            Some(at) => {
                self.free = self.links.get(at).and_then(|l| l.next);
                if let Some(slot) = self.links.get_mut(at) {
                    *slot = link;
                }
                at
            }
            None => {
                self.links.push(link);
                self.links.len() - 1
            }
        };
        self.heads.insert(id.prefix_u64(), at);
    }

    /// (owner, item) no longer references `id`.
    pub(super) fn remove(&mut self, id: &SavesetId, owner: &str, item: &str) {
        let prefix = id.prefix_u64();
        let mut prev: Option<usize> = None;
        let mut at = self.heads.get(&prefix).copied();
        while let Some(n) = at {
            let Some(link) = self.links.get(n) else {
                return;
            };
            let next = link.next;
            if link
                .key
                .as_ref()
                .is_some_and(|(o, i)| &**o == owner && &**i == item)
            {
                match (prev, next) {
                    (Some(p), _) => {
                        if let Some(l) = self.links.get_mut(p) {
                            l.next = next;
                        }
                    }
                    (None, Some(next)) => {
                        self.heads.insert(prefix, next);
                    }
                    (None, None) => {
                        self.heads.remove(&prefix);
                    }
                }
                if let Some(l) = self.links.get_mut(n) {
                    *l = Link {
                        key: None,
                        next: self.free,
                    };
                }
                self.free = Some(n);
                return;
            }
            prev = Some(n);
            at = next;
        }
    }

    /// The items that may reference `id` (every one that does, and any
    /// that references an id of the same first 8 bytes).
    pub(super) fn keys(&self, id: &SavesetId) -> impl Iterator<Item = &RefKey> {
        let mut at = self.heads.get(&id.prefix_u64()).copied();
        std::iter::from_fn(move || {
            let link = self.links.get(at?)?;
            at = link.next;
            Some(link.key.as_ref())
        })
        .flatten()
    }

    /// Heap bytes, roughly.
    pub(super) fn heap_bytes(&self) -> usize {
        self.heads.capacity() * (16 + 1) * 8 / 7 + self.links.capacity() * size_of::<Link>()
    }
}

/// One layer of changes.
#[derive(Debug, Default, Clone)]
pub(crate) struct Changes {
    pub(super) owners: BTreeMap<Arc<str>, OwnerChange>,
    /// For each saveset, the items of this layer that reference it.
    pub(super) refs_of: RefsOf,
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
        if let (Some((b, first, _)), Some(row), Reading::Page(limit)) = (base, base_row, reading) {
            b.will_read_run(row, first, limit as u64)?;
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
        // The top layer's items are read before any other's.
        if let Some(t) = self.top {
            let top_item = |(o, i): &RefKey| t.owners.get(o).and_then(|c| c.items.get(i)).copied();
            if t.refs_of
                .keys(id)
                .any(|k| top_item(k).flatten().is_some_and(|r| r.id == *id))
            {
                return Ok(true);
            }
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
            for (o, i) in c.refs_of.keys(id) {
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

#[cfg(test)]
mod tests {
    use crate::catalog::Catalog;
    use crate::format::catalog::CatalogOp;
    use crate::id::SavesetId;

    fn op(replace: bool, owner: &str, item: &str, id: [u8; 32]) -> CatalogOp {
        let (owner, item) = (owner.to_string(), item.to_string());
        match replace {
            false => CatalogOp::Add { owner, item, id },
            true => CatalogOp::Replace { owner, item, id },
        }
    }

    fn refs(c: &Catalog, id: [u8; 32]) -> Vec<(String, String)> {
        c.refs(&SavesetId(id))
            .unwrap()
            .into_iter()
            .map(|r| (r.owner, r.item))
            .collect()
    }

    fn keys(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(o, i)| (o.to_string(), i.to_string()))
            .collect()
    }

    #[test]
    fn savesets_that_share_their_first_bytes_keep_their_own_references() {
        // One chain of the changes' map holds both: only the last byte differs.
        let a = [5u8; 32];
        let mut b = a;
        b[31] = 6;
        let mut c = Catalog::default();
        for (owner, item, id) in [
            ("o1", "i1", a),
            ("o1", "i2", b),
            ("o2", "i1", a),
            ("o2", "i3", b),
        ] {
            c.apply(&op(false, owner, item, id)).unwrap();
        }
        assert_eq!(refs(&c, a), keys(&[("o1", "i1"), ("o2", "i1")]));
        assert_eq!(refs(&c, b), keys(&[("o1", "i2"), ("o2", "i3")]));
        // A reference leaves the middle of the chain; `a` keeps another.
        let fx = c.apply(&op(true, "o1", "i1", b)).unwrap();
        assert!(fx.dead.is_empty(), "{:?}", fx.dead);
        // Its last one goes: `a` is dead, though `b` shares the chain.
        let fx = c.apply(&op(true, "o2", "i1", b)).unwrap();
        assert_eq!(fx.dead, [SavesetId(a)]);
        assert!(refs(&c, a).is_empty());
        // A freed link is used again, for `a`.
        c.apply(&op(false, "o3", "i1", a)).unwrap();
        assert_eq!(refs(&c, a), keys(&[("o3", "i1")]));
        let all_b = [("o1", "i1"), ("o1", "i2"), ("o2", "i1"), ("o2", "i3")];
        assert_eq!(refs(&c, b), keys(&all_b));
    }
}
