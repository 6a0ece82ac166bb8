//! The single-instance catalog: which owners (mailboxes, journals, archives)
//! hold which items, and which saveset each item references.
//!
//! Owns the reference model in memory (owners, items, trash, holds, the
//! reverse map from saveset to references) and the rules of every change.
//! Changes are catalog batch records in the segment log
//! (format-spec/catalog.md), appended with the same sequence numbers as
//! savesets, so the catalog is rebuilt at open by replaying them in order and
//! is exactly what was acknowledged. It never touches files itself: the
//! operations (`ops`) append its records through the log and bury dead
//! savesets through the engine.
//!
//! Memory: about 200 bytes a reference (forward map entry with the item
//! name, reverse map entry, owner and item names shared between them); the
//! catalog benchmark measures it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::catalog::{CatalogOp, MAX_NAME_BYTES};
use crate::id::SavesetId;
use crate::index::IdHash;
use crate::units::now_ms;

mod checkpoint;
mod ops;

pub(crate) use checkpoint::CatalogSnapshot;

/// One item's reference.
#[derive(Debug, Clone)]
struct ItemRef {
    id: SavesetId,
    trashed_at_ms: Option<u64>,
    hold: bool,
}

#[derive(Debug, Default)]
struct OwnerEntry {
    items: BTreeMap<Arc<str>, ItemRef>,
    hold: bool,
    trashed: u64,
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

/// A reference a purge drops: owner, item, saveset.
type Doomed = (Arc<str>, Arc<str>, SavesetId);

/// (owner, item), sharing the name allocations of the forward map.
type RefKey = (Arc<str>, Arc<str>);

/// The in-memory catalog.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    owners: HashMap<Arc<str>, OwnerEntry>,
    refs_of: HashMap<SavesetId, Vec<RefKey>, IdHash>,
    live: u64,
    trashed: u64,
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
    /// Live references.
    pub(crate) fn references(&self) -> u64 {
        self.live
    }

    /// References in trash.
    pub(crate) fn trashed(&self) -> u64 {
        self.trashed
    }

    /// A blake3 digest of every reference (owner, item, saveset, time in
    /// trash, hold) and every owner's hold, in name order.
    pub(crate) fn digest(&self) -> [u8; 32] {
        let mut owners: Vec<(&Arc<str>, &OwnerEntry)> = self.owners.iter().collect();
        owners.sort_by(|a, b| a.0.cmp(b.0));
        let mut h = blake3::Hasher::new();
        let text = |h: &mut blake3::Hasher, s: &str| {
            h.update(&(s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        };
        for (name, o) in owners {
            text(&mut h, name);
            h.update(&[u8::from(o.hold)]);
            h.update(&(o.items.len() as u64).to_le_bytes());
            for (item, r) in &o.items {
                text(&mut h, item);
                h.update(&r.id.0);
                h.update(&r.trashed_at_ms.map_or(u64::MAX, |t| t).to_le_bytes());
                h.update(&[u8::from(r.hold)]);
            }
        }
        *h.finalize().as_bytes()
    }

    /// Owners known (with live or trashed references, or a hold).
    pub(crate) fn owner_count(&self) -> u64 {
        self.owners.len() as u64
    }

    /// The reference (owner, item), if any.
    pub(crate) fn lookup(&self, owner: &str, item: &str) -> Option<(SavesetId, Option<u64>)> {
        let r = self.owners.get(owner)?.items.get(item)?;
        Some((r.id, r.trashed_at_ms))
    }

    /// Check that `op` can be applied; nothing changes.
    pub(crate) fn check(&self, op: &CatalogOp) -> Result<()> {
        match op {
            CatalogOp::Add { owner, item, .. } => {
                check_name("owner", owner)?;
                check_name("item", item)?;
                if let Some((existing, _)) = self.lookup(owner, item) {
                    return Err(Error::ItemExists {
                        owner: owner.clone(),
                        item: item.clone(),
                        id: existing,
                    });
                }
            }
            CatalogOp::Replace { owner, item, .. } => match self.lookup(owner, item) {
                None => return Err(item_not_found(owner, item)),
                Some((_, Some(_))) => return Err(in_trash(owner, item)),
                Some(_) => self.check_not_held(owner, Some(item))?,
            },
            CatalogOp::TrashItem { owner, item, .. } => match self.lookup(owner, item) {
                None => return Err(item_not_found(owner, item)),
                Some((_, Some(_))) => return Err(in_trash(owner, item)),
                Some(_) => {}
            },
            CatalogOp::TrashOwner { owner, .. } => {
                let o = self
                    .owners
                    .get(owner.as_str())
                    .ok_or_else(|| owner_not_found(owner))?;
                if o.items.len() as u64 == o.trashed {
                    return Err(Error::NothingToDo(format!(
                        "owner {owner:?} has no live item to delete"
                    )));
                }
            }
            CatalogOp::Restore { owner, item } => {
                let o = self
                    .owners
                    .get(owner.as_str())
                    .ok_or_else(|| owner_not_found(owner))?;
                match item {
                    Some(item) => match o.items.get(item.as_str()) {
                        None => return Err(item_not_found(owner, item)),
                        Some(r) if r.trashed_at_ms.is_none() => {
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
                    let o = self
                        .owners
                        .get(owner.as_str())
                        .ok_or_else(|| owner_not_found(owner))?;
                    if let Some(item) = item {
                        let r = o
                            .items
                            .get(item.as_str())
                            .ok_or_else(|| item_not_found(owner, item))?;
                        if r.trashed_at_ms.is_none() {
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
                    self.lookup(owner, item)
                        .ok_or_else(|| item_not_found(owner, item))?;
                }
            }
        }
        Ok(())
    }

    fn check_not_held(&self, owner: &str, item: Option<&str>) -> Result<()> {
        let Some(o) = self.owners.get(owner) else {
            return Ok(());
        };
        if o.hold {
            return Err(Error::Held {
                owner: owner.into(),
                item: None,
            });
        }
        if let Some(item) = item.filter(|i| o.items.get(*i).is_some_and(|r| r.hold)) {
            return Err(Error::Held {
                owner: owner.into(),
                item: Some(item.into()),
            });
        }
        Ok(())
    }

    /// Apply a change that [`Catalog::check`] accepted.
    pub(crate) fn apply(&mut self, op: &CatalogOp) -> Effects {
        let mut fx = Effects::default();
        match op {
            CatalogOp::Add { owner, item, id } => {
                self.add_ref(owner, item, SavesetId(*id));
            }
            CatalogOp::Replace { owner, item, id } => {
                if let Some(old) = self.remove_ref(owner, item) {
                    self.release(old, owner, item, &mut fx);
                }
                self.add_ref(owner, item, SavesetId(*id));
            }
            CatalogOp::TrashItem { owner, item, at_ms } => {
                if let Some(o) = self.owners.get_mut(owner.as_str()) {
                    let fresh = o
                        .items
                        .get_mut(item.as_str())
                        .filter(|r| r.trashed_at_ms.is_none())
                        .map(|r| r.trashed_at_ms = Some(*at_ms))
                        .is_some();
                    if fresh {
                        o.trashed += 1;
                        self.live -= 1;
                        self.trashed += 1;
                    }
                }
            }
            CatalogOp::TrashOwner { owner, at_ms } => {
                if let Some(o) = self.owners.get_mut(owner.as_str()) {
                    for r in o.items.values_mut().filter(|r| r.trashed_at_ms.is_none()) {
                        r.trashed_at_ms = Some(*at_ms);
                        o.trashed += 1;
                        self.live -= 1;
                        self.trashed += 1;
                    }
                }
            }
            CatalogOp::Restore { owner, item } => {
                if let Some(o) = self.owners.get_mut(owner.as_str()) {
                    let restore = |r: &mut ItemRef| r.trashed_at_ms.take().is_some();
                    let n = match item {
                        Some(item) => o
                            .items
                            .get_mut(item.as_str())
                            .map_or(0, |r| u64::from(restore(r))),
                        None => o.items.values_mut().map(|r| u64::from(restore(r))).sum(),
                    };
                    o.trashed -= n;
                    self.trashed -= n;
                    self.live += n;
                }
            }
            CatalogOp::Purge {
                cutoff_ms,
                owner,
                item,
            } => self.purge(*cutoff_ms, owner.as_deref(), item.as_deref(), &mut fx),
            CatalogOp::Hold { owner, item, on } => {
                let o = self.owners.entry(Arc::from(owner.as_str())).or_default();
                match item {
                    Some(item) => {
                        if let Some(r) = o.items.get_mut(item.as_str()) {
                            r.hold = *on;
                        }
                    }
                    None => o.hold = *on,
                }
                self.drop_if_empty(owner);
            }
        }
        fx
    }

    fn add_ref(&mut self, owner: &str, item: &str, id: SavesetId) {
        let owner_key = match self.owners.get_key_value(owner) {
            Some((k, _)) => k.clone(),
            None => {
                let k: Arc<str> = Arc::from(owner);
                self.owners.insert(k.clone(), OwnerEntry::default());
                k
            }
        };
        let item_key: Arc<str> = Arc::from(item);
        if let Some(o) = self.owners.get_mut(owner) {
            o.items.insert(
                item_key.clone(),
                ItemRef {
                    id,
                    trashed_at_ms: None,
                    hold: false,
                },
            );
        }
        self.refs_of
            .entry(id)
            .or_default()
            .push((owner_key, item_key));
        self.live += 1;
    }

    /// Remove (owner, item) from the forward map; returns its saveset.
    fn remove_ref(&mut self, owner: &str, item: &str) -> Option<SavesetId> {
        let o = self.owners.get_mut(owner)?;
        let r = o.items.remove(item)?;
        if r.trashed_at_ms.is_some() {
            o.trashed -= 1;
            self.trashed -= 1;
        } else {
            self.live -= 1;
        }
        Some(r.id)
    }

    /// Drop (owner, item) from `id`'s reverse list; a saveset left with no
    /// reference is dead.
    fn release(&mut self, id: SavesetId, owner: &str, item: &str, fx: &mut Effects) {
        if let Some(list) = self.refs_of.get_mut(&id) {
            if let Some(pos) = list.iter().position(|(o, i)| &**o == owner && &**i == item) {
                list.swap_remove(pos);
            }
            if list.is_empty() {
                self.refs_of.remove(&id);
                fx.dead.push(id);
            }
        }
    }

    fn drop_if_empty(&mut self, owner: &str) {
        if self
            .owners
            .get(owner)
            .is_some_and(|o| o.items.is_empty() && !o.hold)
        {
            self.owners.remove(owner);
        }
    }

    fn purge(&mut self, cutoff_ms: u64, owner: Option<&str>, item: Option<&str>, fx: &mut Effects) {
        let (doomed, held) = self.purge_selection(cutoff_ms, owner, item);
        fx.held += held;
        let mut owners: Vec<Arc<str>> = Vec::new();
        for (owner, name, id) in doomed {
            self.remove_ref(&owner, &name);
            self.release(id, &owner, &name, fx);
            fx.purged += 1;
            if owners.last() != Some(&owner) {
                owners.push(owner);
            }
        }
        for owner in owners {
            self.drop_if_empty(&owner);
        }
    }

    /// The trashed references a purge would drop (owner, item, saveset),
    /// owner by owner, and how many it would keep for a legal hold.
    fn purge_selection(
        &self,
        cutoff_ms: u64,
        owner: Option<&str>,
        item: Option<&str>,
    ) -> (Vec<Doomed>, u64) {
        let owners: Box<dyn Iterator<Item = (&Arc<str>, &OwnerEntry)>> = match owner {
            Some(o) => Box::new(self.owners.get_key_value(o).into_iter()),
            None => Box::new(self.owners.iter()),
        };
        let mut doomed = Vec::new();
        let mut held = 0;
        for (owner, o) in owners.filter(|(_, o)| o.trashed > 0) {
            for (name, r) in &o.items {
                if item.is_some_and(|i| i != &**name) {
                    continue;
                }
                if r.trashed_at_ms.is_some_and(|t| t <= cutoff_ms) {
                    if o.hold || r.hold {
                        held += 1;
                    } else {
                        doomed.push((owner.clone(), name.clone(), r.id));
                    }
                }
            }
        }
        (doomed, held)
    }

    /// What a purge would do, changing nothing.
    pub(crate) fn purge_plan(
        &self,
        cutoff_ms: u64,
        owner: Option<&str>,
        item: Option<&str>,
    ) -> PurgeReport {
        let (doomed, held) = self.purge_selection(cutoff_ms, owner, item);
        let mut dropped: HashMap<SavesetId, usize> = HashMap::new();
        for (_, _, id) in &doomed {
            *dropped.entry(*id).or_default() += 1;
        }
        let dead = dropped
            .iter()
            .filter(|(id, n)| self.ref_count(id) == **n)
            .count();
        PurgeReport {
            purged_references: doomed.len() as u64,
            dead_savesets: dead as u64,
            kept_on_hold: held,
        }
    }

    /// The references of a saveset, sorted by owner then item.
    pub(crate) fn refs(&self, id: &SavesetId) -> Vec<Reference> {
        let mut out: Vec<Reference> = self
            .refs_of
            .get(id)
            .into_iter()
            .flatten()
            .map(|(o, i)| Reference {
                owner: o.to_string(),
                item: i.to_string(),
                trashed_at_ms: self.lookup(o, i).and_then(|(_, t)| t),
            })
            .collect();
        out.sort_by(|a, b| (&a.owner, &a.item).cmp(&(&b.owner, &b.item)));
        out
    }

    /// Number of references (live or in trash) to a saveset.
    pub(crate) fn ref_count(&self, id: &SavesetId) -> usize {
        self.refs_of.get(id).map_or(0, Vec::len)
    }

    /// A page of an owner's items, sorted by item, strictly after `after`.
    pub(crate) fn items(
        &self,
        owner: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ItemEntry>> {
        let o = self
            .owners
            .get(owner)
            .ok_or_else(|| owner_not_found(owner))?;
        let range: Box<dyn Iterator<Item = (&Arc<str>, &ItemRef)>> = match after {
            Some(a) => Box::new(
                o.items
                    .range::<str, _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)),
            ),
            None => Box::new(o.items.iter()),
        };
        Ok(range
            .take(limit)
            .map(|(name, r)| ItemEntry {
                item: name.to_string(),
                id: r.id.to_string(),
                trashed_at_ms: r.trashed_at_ms,
                hold: r.hold,
            })
            .collect())
    }

    /// Every owner with counts, sorted by name.
    pub(crate) fn owners(&self) -> Vec<OwnerStat> {
        let mut out: Vec<OwnerStat> = self
            .owners
            .iter()
            .map(|(name, o)| OwnerStat {
                owner: name.to_string(),
                items: o.items.len() as u64 - o.trashed,
                trashed: o.trashed,
                hold: o.hold,
            })
            .collect();
        out.sort_by(|a, b| a.owner.cmp(&b.owner));
        out
    }

    /// Everything in trash, sorted by owner then item.
    pub(crate) fn trash(&self) -> Vec<TrashEntry> {
        let mut out = Vec::new();
        let mut owners: Vec<(&Arc<str>, &OwnerEntry)> =
            self.owners.iter().filter(|(_, o)| o.trashed > 0).collect();
        owners.sort_by(|a, b| a.0.cmp(b.0));
        for (owner, o) in owners {
            for (item, r) in &o.items {
                if let Some(t) = r.trashed_at_ms {
                    out.push(TrashEntry {
                        owner: owner.to_string(),
                        item: item.to_string(),
                        id: r.id.to_string(),
                        trashed_at_ms: t,
                    });
                }
            }
        }
        out
    }

    /// Approximate heap bytes held (for the memory-per-reference figure).
    pub(crate) fn memory_bytes(&self) -> usize {
        let mut total = self.refs_of.capacity() * (32 + 24 + 1) * 8 / 7;
        for (name, o) in &self.owners {
            total += name.len() + 16 + 64;
            for (item, _) in o.items.iter() {
                // BTreeMap slot (key + value, ~2/3 full nodes), item name
                // allocation (two counters + bytes), reverse entry.
                total += (16 + std::mem::size_of::<ItemRef>()) * 3 / 2 + 16 + item.len() + 32;
            }
        }
        total
    }
}
