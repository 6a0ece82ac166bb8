//! The single-instance catalog: which owners (mailboxes, journals, archives)
//! hold which items, and which saveset each item references.
//!
//! Owns the reference model (owners, items, trash, holds, the reverse map
//! from saveset to references) and the rules of every change. Changes are
//! catalog batch records in the segment log (format-spec/catalog.md),
//! appended with the same sequence numbers as savesets, so the catalog is
//! rebuilt at open by replaying them in order and is exactly what was
//! acknowledged. It never touches files itself: the operations (`ops`)
//! append its records through the log and bury dead savesets through the
//! engine; a mapped generation is handed in by the sync cache.
//!
//! The model is layers (`layers`): changes in memory over the tables of a
//! mapped generation (`mapped`), merged into the next one by `checkpoint`.
//! Memory: a changed item costs about 260 bytes (its entry in its owner's
//! map, about 120 with the map's half-full nodes; its name, about 50; its
//! link from the saveset, 40, and the saveset's slot, 16 to 36); the
//! mapped tables are not heap. `benches/catalog_scale.rs` measures both.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::catalog::{CatalogOp, MAX_NAME_BYTES};
use crate::id::SavesetId;
use crate::units::now_ms;

mod checkpoint;
mod layers;
mod mapped;
mod ops;

pub(crate) use checkpoint::CatalogSnapshot;
use layers::{Changes, Layers, OwnerChange, OwnerStats, Reading};
pub(crate) use mapped::MappedCatalog;

/// One item's reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ItemRef {
    id: SavesetId,
    /// When it went to trash, Unix ms + 1; 0 when it is not in trash. (An
    /// `Option<u64>` adds 8 bytes to each of the millions of items a layer
    /// of changes may hold; the one time it cannot say, `u64::MAX` ms,
    /// reads back a millisecond earlier, 584 million years from now.)
    trashed: u64,
    hold: bool,
}

impl ItemRef {
    /// A new live reference without a hold.
    fn new(id: SavesetId) -> ItemRef {
        ItemRef {
            id,
            trashed: 0,
            hold: false,
        }
    }

    /// When it went to trash, if it is in trash.
    fn trashed_at_ms(&self) -> Option<u64> {
        self.trashed.checked_sub(1)
    }

    /// The same reference, in trash since `at_ms` (or out of it).
    fn with_trash(self, at_ms: Option<u64>) -> ItemRef {
        ItemRef {
            trashed: at_ms.map_or(0, |t| t.saturating_add(1)),
            ..self
        }
    }
}

/// What a change did beyond the catalog itself.
#[derive(Debug, Default, Clone)]
pub(crate) struct Effects {
    /// Savesets whose last reference is gone: they are dead.
    pub(crate) dead: Vec<SavesetId>,
    /// References dropped for good by a purge.
    pub(crate) purged: u64,
    /// Trashed references a purge left alone because of a hold.
    pub(crate) held: u64,
}

/// A reference to a saveset, as `refs` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reference {
    /// Owner.
    pub owner: String,
    /// Item.
    pub item: String,
    /// When it was moved to trash (Unix ms), if it is in trash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trashed_at_ms: Option<u64>,
}

/// An item of an owner, as `items` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemEntry {
    /// Item.
    pub item: String,
    /// The saveset it references.
    pub id: String,
    /// When it was moved to trash (Unix ms), if it is in trash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trashed_at_ms: Option<u64>,
    /// On legal hold itself (the owner's hold is reported by `owners`).
    pub hold: bool,
}

/// An owner with its counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OwnerStat {
    /// Owner.
    pub owner: String,
    /// Live references.
    pub items: u64,
    /// References in trash.
    pub trashed: u64,
    /// On legal hold as a whole.
    pub hold: bool,
}

/// A reference in trash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrashEntry {
    /// Owner.
    pub owner: String,
    /// Item.
    pub item: String,
    /// Saveset id.
    pub id: String,
    /// When it was moved to trash, Unix ms.
    pub trashed_at_ms: u64,
}

/// What `archive` and `link` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Archived {
    /// The saveset.
    pub id: SavesetId,
    /// True when the content was written; false when it was already stored.
    pub new_content: bool,
    /// True when a reference was added or changed; false when the same
    /// reference existed already (an idempotent repeat).
    pub new_reference: bool,
}

/// What a purge did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PurgeReport {
    /// References dropped for good.
    pub purged_references: u64,
    /// Savesets left without any reference, now dead.
    pub dead_savesets: u64,
    /// Trashed references kept because of a legal hold.
    pub kept_on_hold: u64,
}

/// A reference a purge drops: owner, item, reference.
type Doomed = (String, String, ItemRef);

/// (owner, item), sharing the name allocations of a layer's maps.
pub(super) type RefKey = (Arc<str>, Arc<str>);

/// The catalog: its changes over the frozen layers and the mapped base
/// (see `layers`), and its totals.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    changes: Changes,
    /// Changes a generation being written holds, newest first.
    frozen: Vec<Arc<Changes>>,
    base: Option<Arc<MappedCatalog>>,
    /// Counts the bases installed (see `OwnerChange::base`).
    generation: u64,
    live: u64,
    trashed: u64,
    owners: u64,
}

/// Check an owner or item name.
pub(crate) fn check_name(what: &'static str, name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(Error::InvalidName {
            what,
            detail: format!("must be 1 to {MAX_NAME_BYTES} bytes, got {}", name.len()),
        });
    }
    if name.chars().any(|c| c.is_control()) {
        return Err(Error::InvalidName {
            what,
            detail: format!("{name:?} contains a control character"),
        });
    }
    Ok(())
}

/// The trash time a purge of references older than `older_than` cuts at.
fn purge_cutoff(
    older_than: std::time::Duration,
    owner: Option<&str>,
    item: Option<&str>,
) -> Result<u64> {
    if item.is_some() && owner.is_none() {
        return Err(Error::InvalidSetting("an item needs its owner".into()));
    }
    Ok(now_ms().saturating_sub(older_than.as_millis().min(u64::MAX as u128) as u64))
}

fn owner_not_found(owner: &str) -> Error {
    Error::OwnerNotFound {
        owner: owner.into(),
    }
}

fn in_trash(owner: &str, item: &str) -> Error {
    Error::InTrash {
        owner: owner.into(),
        item: item.into(),
    }
}

fn item_not_found(owner: &str, item: &str) -> Error {
    Error::ItemNotFound {
        owner: owner.into(),
        item: item.into(),
    }
}

impl Catalog {
    /// A catalog whose base is the tables of a mapped generation.
    pub(crate) fn mapped(base: MappedCatalog) -> Catalog {
        let t = base.totals();
        Catalog {
            live: t.live,
            trashed: t.trashed,
            owners: t.owners,
            base: Some(Arc::new(base)),
            ..Catalog::default()
        }
    }

    fn layers(&self) -> Layers<'_> {
        Layers {
            top: Some(&self.changes),
            frozen: &self.frozen,
            base: self.base.as_deref(),
            generation: self.generation,
        }
    }

    /// Live references.
    pub(crate) fn references(&self) -> u64 {
        self.live
    }

    /// References in trash.
    pub(crate) fn trashed(&self) -> u64 {
        self.trashed
    }

    /// Owners known (with live or trashed references, or a hold).
    pub(crate) fn owner_count(&self) -> u64 {
        self.owners
    }

    /// Item changes held in memory over the mapped base (every item when
    /// the store was opened by a full replay).
    pub(crate) fn changed(&self) -> u64 {
        self.changes.entries + self.frozen.iter().map(|f| f.entries).sum::<u64>()
    }

    /// A blake3 digest of every reference (owner, item, saveset, time in
    /// trash, hold) and every owner's hold, in name order.
    pub(crate) fn digest(&self) -> Result<[u8; 32]> {
        let layers = self.layers();
        let mut h = blake3::Hasher::new();
        let text = |h: &mut blake3::Hasher, s: &str| {
            h.update(&(s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        };
        for o in layers.owners()? {
            text(&mut h, o.name);
            h.update(&[u8::from(o.stat.hold)]);
            h.update(&o.stat.items.to_le_bytes());
            for it in layers.items_from(o.name, o.base.as_ref(), None, Reading::InOrder)? {
                let it = it?;
                text(&mut h, it.name);
                h.update(&it.r.id.0);
                h.update(&it.r.trashed_at_ms().map_or(u64::MAX, |t| t).to_le_bytes());
                h.update(&[u8::from(it.r.hold)]);
            }
        }
        Ok(*h.finalize().as_bytes())
    }

    /// The reference (owner, item), if any.
    pub(crate) fn lookup(
        &self,
        owner: &str,
        item: &str,
    ) -> Result<Option<(SavesetId, Option<u64>)>> {
        Ok(self
            .layers()
            .item(owner, item)?
            .map(|r| (r.id, r.trashed_at_ms())))
    }

    /// Whether `owner` is known (an item or a hold).
    pub(crate) fn has_owner(&self, owner: &str) -> Result<bool> {
        Ok(self.present_owner(owner)?.is_some())
    }

    fn present_owner(&self, owner: &str) -> Result<Option<OwnerStats>> {
        Ok(self.layers().owner_stat(owner)?.filter(OwnerStats::present))
    }

    fn owner_or_not_found(&self, owner: &str) -> Result<OwnerStats> {
        self.present_owner(owner)?
            .ok_or_else(|| owner_not_found(owner))
    }

    /// Check that `op` can be applied; nothing changes.
    pub(crate) fn check(&self, op: &CatalogOp) -> Result<()> {
        let item_of = |owner: &str, item: &str| self.layers().item(owner, item);
        match op {
            CatalogOp::Add { owner, item, .. } => {
                check_name("owner", owner)?;
                check_name("item", item)?;
                if let Some(existing) = item_of(owner, item)? {
                    return Err(Error::ItemExists {
                        owner: owner.clone(),
                        item: item.clone(),
                        id: existing.id,
                    });
                }
            }
            CatalogOp::Replace { owner, item, .. } => match item_of(owner, item)? {
                None => return Err(item_not_found(owner, item)),
                Some(r) if r.trashed_at_ms().is_some() => return Err(in_trash(owner, item)),
                Some(_) => self.check_not_held(owner, Some(item))?,
            },
            CatalogOp::TrashItem { owner, item, .. } => match item_of(owner, item)? {
                None => return Err(item_not_found(owner, item)),
                Some(r) if r.trashed_at_ms().is_some() => return Err(in_trash(owner, item)),
                Some(_) => {}
            },
            CatalogOp::TrashOwner { owner, .. } => {
                let o = self.owner_or_not_found(owner)?;
                if o.items == o.trashed {
                    return Err(Error::NothingToDo(format!(
                        "owner {owner:?} has no live item to delete"
                    )));
                }
            }
            CatalogOp::Restore { owner, item } => {
                let o = self.owner_or_not_found(owner)?;
                match item {
                    Some(item) => match item_of(owner, item)? {
                        None => return Err(item_not_found(owner, item)),
                        Some(r) if r.trashed_at_ms().is_none() => {
                            return Err(Error::NothingToDo(format!(
                                "item {item:?} of owner {owner:?} is not in trash"
                            )));
                        }
                        Some(_) => {}
                    },
                    None if o.trashed == 0 => {
                        return Err(Error::NothingToDo(format!(
                            "owner {owner:?} has nothing in trash"
                        )));
                    }
                    None => {}
                }
            }
            CatalogOp::Purge { owner, item, .. } => {
                if let Some(owner) = owner {
                    self.owner_or_not_found(owner)?;
                    if let Some(item) = item {
                        let r = item_of(owner, item)?.ok_or_else(|| item_not_found(owner, item))?;
                        if r.trashed_at_ms().is_none() {
                            return Err(Error::NothingToDo(format!(
                                "item {item:?} of owner {owner:?} is not in trash"
                            )));
                        }
                    }
                    // A purge aimed at something on hold is refused outright.
                    self.check_not_held(owner, item.as_deref())?;
                }
            }
            CatalogOp::Hold { owner, item, .. } => {
                check_name("owner", owner)?;
                if let Some(item) = item {
                    item_of(owner, item)?.ok_or_else(|| item_not_found(owner, item))?;
                }
            }
        }
        Ok(())
    }

    fn check_not_held(&self, owner: &str, item: Option<&str>) -> Result<()> {
        let Some(o) = self.present_owner(owner)? else {
            return Ok(());
        };
        if o.hold {
            return Err(Error::Held {
                owner: owner.into(),
                item: None,
            });
        }
        if let Some(item) = item
            && self.layers().item(owner, item)?.is_some_and(|r| r.hold)
        {
            return Err(Error::Held {
                owner: owner.into(),
                item: Some(item.into()),
            });
        }
        Ok(())
    }

    /// Apply a change that [`Catalog::check`] accepted. An error is a
    /// damaged block of the mapped base (the change may be half applied;
    /// the sync cache is dropped, and the next open replays the log).
    pub(crate) fn apply(&mut self, op: &CatalogOp) -> Result<Effects> {
        let mut fx = Effects::default();
        match op {
            CatalogOp::Add { owner, item, id } => {
                // `check` found no such item.
                self.put_item(owner, item, None, Some(ItemRef::new(SavesetId(*id))))?;
            }
            CatalogOp::Replace { owner, item, id } => {
                let old = self.layers().item(owner, item)?;
                self.put_item(owner, item, old, Some(ItemRef::new(SavesetId(*id))))?;
                if let Some(old) = old {
                    self.release(old.id, &mut fx)?;
                }
            }
            CatalogOp::TrashItem { owner, item, at_ms } => {
                if let Some(r) = self.layers().item(owner, item)?
                    && r.trashed_at_ms().is_none()
                {
                    self.put_item(owner, item, Some(r), Some(r.with_trash(Some(*at_ms))))?;
                }
            }
            CatalogOp::TrashOwner { owner, at_ms } => {
                for (item, r) in self.items_where(owner, |r| r.trashed_at_ms().is_none())? {
                    self.put_item(owner, &item, Some(r), Some(r.with_trash(Some(*at_ms))))?;
                }
            }
            CatalogOp::Restore { owner, item } => {
                let trashed = match item {
                    Some(item) => self
                        .layers()
                        .item(owner, item)?
                        .map(|r| (item.clone(), r))
                        .into_iter()
                        .collect(),
                    None => self.items_where(owner, |r| r.trashed_at_ms().is_some())?,
                };
                for (item, r) in trashed
                    .into_iter()
                    .filter(|(_, r)| r.trashed_at_ms().is_some())
                {
                    self.put_item(owner, &item, Some(r), Some(r.with_trash(None)))?;
                }
            }
            CatalogOp::Purge {
                cutoff_ms,
                owner,
                item,
            } => self.purge(*cutoff_ms, owner.as_deref(), item.as_deref(), &mut fx)?,
            CatalogOp::Hold { owner, item, on } => match item {
                Some(item) => {
                    if let Some(r) = self.layers().item(owner, item)? {
                        self.put_item(owner, item, Some(r), Some(ItemRef { hold: *on, ..r }))?;
                    }
                }
                None => {
                    let change = self.owner_change(owner)?.1;
                    let before = change.stat;
                    change.stat.hold = *on;
                    let after = change.stat;
                    self.settle_owner(owner, before, after)?;
                }
            },
        }
        Ok(fx)
    }

    /// An owner's items that `keep` selects, with their references.
    fn items_where(
        &self,
        owner: &str,
        keep: impl Fn(&ItemRef) -> bool,
    ) -> Result<Vec<(String, ItemRef)>> {
        let mut out = Vec::new();
        for it in self
            .layers()
            .items_of(owner, None, Reading::Page(usize::MAX))?
        {
            let it = it?;
            if keep(&it.r) {
                out.push((it.name.to_string(), it.r));
            }
        }
        Ok(out)
    }

    /// The top layer's change of `owner` and its shared name; made from
    /// the owner as the layers below show it (counts, base row) when the
    /// top layer has none yet.
    fn owner_change(&mut self, owner: &str) -> Result<(Arc<str>, &mut OwnerChange)> {
        if !self.changes.owners.contains_key(owner) {
            let layers = self.layers();
            let change = OwnerChange {
                stat: layers.owner_stat(owner)?.unwrap_or_default(),
                items: BTreeMap::new(),
                base: Some((self.generation, layers.base_owner(owner)?)),
            };
            self.changes.owners.insert(Arc::from(owner), change);
        }
        let exact = (Bound::Included(owner), Bound::Included(owner));
        match self.changes.owners.range_mut::<str, _>(exact).next() {
            Some((name, change)) => Ok((name.clone(), change)),
            None => unreachable!("the owner's change was inserted above"),
        }
    }

    /// Set item (owner, item) from `old` (as the layers show it now) to
    /// `new` (`None` removes it), keeping the totals, the owner's counts
    /// and the top layer's reverse lists.
    fn put_item(
        &mut self,
        owner: &str,
        item: &str,
        old: Option<ItemRef>,
        new: Option<ItemRef>,
    ) -> Result<()> {
        // A removal needs a tombstone only over a layer that has the item.
        let tombstone = new.is_none() && self.layers().below_top().item(owner, item)?.is_some();
        let (mut live, mut trashed) = (self.live, self.trashed);
        let (owner_key, change) = self.owner_change(owner)?;
        let before = change.stat;
        let after = count(before, old.as_ref(), -1, (&mut live, &mut trashed));
        let after = count(after, new.as_ref(), 1, (&mut live, &mut trashed));
        change.stat = after;
        let (item_key, top_old) = match change.items.get_key_value(item) {
            Some((k, v)) => (k.clone(), Some(*v)),
            None => (Arc::from(item), None),
        };
        let entries = if new.is_none() && !tombstone {
            -i64::from(change.items.remove(item).is_some())
        } else {
            i64::from(change.items.insert(item_key.clone(), new).is_none())
        };
        self.changes.entries = self.changes.entries.saturating_add_signed(entries);
        (self.live, self.trashed) = (live, trashed);
        if let Some(Some(o)) = top_old {
            self.unlist(o.id, owner, item);
        }
        if let Some(n) = new {
            self.changes.refs_of.add(&n.id, (owner_key, item_key));
        }
        self.settle_owner(owner, before, after)
    }

    /// Drop (owner, item) from the top layer's list of `id`.
    fn unlist(&mut self, id: SavesetId, owner: &str, item: &str) {
        self.changes.refs_of.remove(&id, owner, item);
    }

    /// Count an owner in or out; forget the top layer's change of an owner
    /// no longer present when no layer below knows it.
    fn settle_owner(&mut self, owner: &str, before: OwnerStats, after: OwnerStats) -> Result<()> {
        match (before.present(), after.present()) {
            (false, true) => self.owners += 1,
            (true, false) => self.owners -= 1,
            _ => {}
        }
        if after.present() {
            return Ok(());
        }
        let empty = self
            .changes
            .owners
            .get(owner)
            .is_some_and(|o| o.items.is_empty() && !o.stat.present());
        if empty
            && !self
                .layers()
                .below_top()
                .owner_stat(owner)?
                .is_some_and(|s| s.present())
        {
            self.changes.owners.remove(owner);
        }
        Ok(())
    }

    /// A reference to `id` went: the saveset is dead if it was its last.
    fn release(&mut self, id: SavesetId, fx: &mut Effects) -> Result<()> {
        if !self.layers().is_referenced(&id)? {
            fx.dead.push(id);
        }
        Ok(())
    }

    fn purge(
        &mut self,
        cutoff_ms: u64,
        owner: Option<&str>,
        item: Option<&str>,
        fx: &mut Effects,
    ) -> Result<()> {
        let (doomed, held) = self.purge_selection(cutoff_ms, owner, item)?;
        fx.held += held;
        for (owner, name, r) in doomed {
            self.put_item(&owner, &name, Some(r), None)?;
            self.release(r.id, fx)?;
            fx.purged += 1;
        }
        Ok(())
    }

    /// The trashed references a purge would drop (owner, item, saveset),
    /// owner by owner, and how many it would keep for a legal hold.
    fn purge_selection(
        &self,
        cutoff_ms: u64,
        owner: Option<&str>,
        item: Option<&str>,
    ) -> Result<(Vec<Doomed>, u64)> {
        let layers = self.layers();
        let owners: Vec<(String, OwnerStats)> = match owner {
            Some(o) => self
                .present_owner(o)?
                .map(|s| (o.to_string(), s))
                .into_iter()
                .collect(),
            None => layers
                .owners()?
                .into_iter()
                .map(|o| (o.name.to_string(), o.stat))
                .collect(),
        };
        let mut doomed = Vec::new();
        let mut held = 0;
        for (owner, o) in owners.into_iter().filter(|(_, o)| o.trashed > 0) {
            let candidates = match item {
                Some(i) => layers
                    .item(&owner, i)?
                    .map(|r| (i.to_string(), r))
                    .into_iter()
                    .collect(),
                None => self.items_where(&owner, |r| r.trashed_at_ms().is_some())?,
            };
            for (name, r) in candidates {
                if r.trashed_at_ms().is_some_and(|t| t <= cutoff_ms) {
                    if o.hold || r.hold {
                        held += 1;
                    } else {
                        doomed.push((owner.clone(), name, r));
                    }
                }
            }
        }
        Ok((doomed, held))
    }

    /// What a purge would do, changing nothing.
    pub(crate) fn purge_plan(
        &self,
        cutoff_ms: u64,
        owner: Option<&str>,
        item: Option<&str>,
    ) -> Result<PurgeReport> {
        let (doomed, held) = self.purge_selection(cutoff_ms, owner, item)?;
        let mut dropped: HashMap<SavesetId, usize> = HashMap::new();
        for (_, _, r) in &doomed {
            *dropped.entry(r.id).or_default() += 1;
        }
        let mut dead = 0;
        for (id, n) in &dropped {
            if self.ref_count(id)? == *n {
                dead += 1;
            }
        }
        Ok(PurgeReport {
            purged_references: doomed.len() as u64,
            dead_savesets: dead,
            kept_on_hold: held,
        })
    }

    /// The references of a saveset, sorted by owner then item.
    pub(crate) fn refs(&self, id: &SavesetId) -> Result<Vec<Reference>> {
        let mut out: Vec<Reference> = self
            .layers()
            .references(id, false)?
            .into_iter()
            .map(|(owner, item, r)| Reference {
                owner,
                item,
                trashed_at_ms: r.trashed_at_ms(),
            })
            .collect();
        out.sort_by(|a, b| (&a.owner, &a.item).cmp(&(&b.owner, &b.item)));
        Ok(out)
    }

    /// Number of references (live or in trash) to a saveset.
    pub(crate) fn ref_count(&self, id: &SavesetId) -> Result<usize> {
        Ok(self.layers().references(id, false)?.len())
    }

    /// A page of an owner's items, sorted by item, strictly after `after`.
    pub(crate) fn items(
        &self,
        owner: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ItemEntry>> {
        self.owner_or_not_found(owner)?;
        self.layers()
            .items_of(owner, after, Reading::Page(limit))?
            .take(limit)
            .map(|it| {
                it.map(|it| ItemEntry {
                    item: it.name.to_string(),
                    id: it.r.id.to_string(),
                    trashed_at_ms: it.r.trashed_at_ms(),
                    hold: it.r.hold,
                })
            })
            .collect()
    }

    /// Every owner with counts, sorted by name.
    pub(crate) fn owners(&self) -> Result<Vec<OwnerStat>> {
        Ok(self
            .layers()
            .owners()?
            .into_iter()
            .map(|o| OwnerStat {
                owner: o.name.to_string(),
                items: o.stat.items - o.stat.trashed,
                trashed: o.stat.trashed,
                hold: o.stat.hold,
            })
            .collect())
    }

    /// Everything in trash, sorted by owner then item.
    pub(crate) fn trash(&self) -> Result<Vec<TrashEntry>> {
        let layers = self.layers();
        let mut out = Vec::new();
        for o in layers.owners()?.into_iter().filter(|o| o.stat.trashed > 0) {
            for it in layers.items_from(o.name, o.base.as_ref(), None, Reading::Page(usize::MAX))? {
                let it = it?;
                if let Some(t) = it.r.trashed_at_ms() {
                    out.push(TrashEntry {
                        owner: o.name.to_string(),
                        item: it.name.to_string(),
                        id: it.r.id.to_string(),
                        trashed_at_ms: t,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Approximate heap bytes the changes hold (for the memory figures);
    /// a mapped base is not heap.
    pub(crate) fn memory_bytes(&self) -> usize {
        std::iter::once(&self.changes)
            .chain(self.frozen.iter().map(|f| &**f))
            .map(changes_bytes)
            .sum()
    }
}

/// Add (`sign` 1) or take away (-1) the reference `r` from an owner's
/// counts `stat` and the totals (live, in trash); the counts after.
fn count(
    mut stat: OwnerStats,
    r: Option<&ItemRef>,
    sign: i64,
    (live, trashed): (&mut u64, &mut u64),
) -> OwnerStats {
    if let Some(r) = r {
        let add = |n: &mut u64| *n = n.saturating_add_signed(sign);
        add(&mut stat.items);
        if r.trashed_at_ms().is_some() {
            add(&mut stat.trashed);
            add(trashed);
        } else {
            add(live);
        }
    }
    stat
}

/// Approximate heap bytes of one layer of changes.
fn changes_bytes(c: &Changes) -> usize {
    let mut total = c.refs_of.heap_bytes();
    for (name, o) in &c.owners {
        total += name.len() + 16 + 64;
        for (item, _) in o.items.iter() {
            // BTreeMap slot (key + value, ~2/3 full nodes), item name
            // allocation (two counters + bytes).
            total += (16 + std::mem::size_of::<Option<ItemRef>>()) * 3 / 2 + 16 + item.len();
        }
    }
    total
}
