//! The catalog's operations on the engine: archive, link, delete, restore,
//! purge, hold, and the queries. Each change is checked against the model,
//! appended as one catalog batch under the log's writer, applied, and made
//! durable before it returns; savesets it leaves without a reference die.
//! They must not write segment files: records go through the log's writer.

use super::*;
use crate::engine::Engine;

impl Engine {
    /// Store `content` (or find it stored) and add the reference
    /// (owner, item) → its id, as one durable step: when this returns `Ok`,
    /// both the content and the reference survive a crash.
    ///
    /// Archiving the same (owner, item) with the same content again is an
    /// idempotent success. With different content it is
    /// [`Error::ItemExists`] unless `replace` is true; replacing drops the
    /// old reference (its saveset dies if that was its last).
    pub fn archive(
        &self,
        owner: &str,
        item: &str,
        content: &[u8],
        replace: bool,
    ) -> Result<Archived> {
        let _route = self.route.read();
        if self.cache_active() {
            return self.archive_cached(owner, item, content, replace);
        }
        check_name("owner", owner)?;
        check_name("item", item)?;
        let prepared = self.prepare(content)?;
        let id = prepared.id;
        let mut catalog = self.catalog.write();
        let op = match catalog.lookup(owner, item)? {
            Some((existing, None)) if existing == id => {
                drop(catalog);
                self.duplicate(id)?;
                return Ok(Archived {
                    id,
                    new_content: false,
                    new_reference: false,
                });
            }
            Some((_, Some(_))) => return Err(in_trash(owner, item)),
            Some((_, None)) if replace => CatalogOp::Replace {
                owner: owner.into(),
                item: item.into(),
                id: id.0,
            },
            _ => CatalogOp::Add {
                owner: owner.into(),
                item: item.into(),
                id: id.0,
            },
        };
        catalog.check(&op)?;
        let (new_content, seq) = {
            let mut w = self.log.lock_writer();
            let new_content = self.ensure_content_locked(&mut w, &prepared, content)?;
            let seq = self.append_catalog_locked(&mut w, std::slice::from_ref(&op))?;
            (new_content, seq)
        };
        let fx = catalog.apply(&op)?;
        self.bury(&fx.dead);
        drop(catalog);
        self.log.wait_durable(seq)?;
        Ok(Archived {
            id,
            new_content,
            new_reference: true,
        })
    }

    /// Archive many items in one step: contents hashed and compressed in
    /// parallel, new contents and one catalog record appended together, one
    /// fsync for all. Each item succeeds or fails on its own (an item that
    /// references other content, or is in trash, is refused and the rest
    /// goes on); results are in input order.
    pub fn archive_many(&self, items: &[(&str, &str, &[u8])]) -> Result<Vec<Result<Archived>>> {
        use rayon::prelude::*;
        let _route = self.route.read();
        if self.cache_active() {
            return self.archive_many_cached(items);
        }
        // Hash everything, then compress each distinct new content once: in an
        // import most of a batch is the same message in other mailboxes.
        let ids: Vec<Result<SavesetId>> = items
            .par_iter()
            .map(|(owner, item, content)| {
                check_name("owner", owner)?;
                check_name("item", item)?;
                self.hash_checked(content)
            })
            .collect();
        let compress = crate::engine::first_occurrences(&ids);
        let prepared: Vec<Result<crate::engine::Prepared<'_>>> = items
            .par_iter()
            .zip(ids)
            .zip(compress)
            .map(
                |(((_, _, content), id), compress)| Ok(self.prepare_hashed(content, id?, compress)),
            )
            .collect();
        let mut catalog = self.catalog.write();
        let mut results: Vec<Result<Archived>> = Vec::with_capacity(items.len());
        let mut ops = Vec::new();
        let mut in_batch = std::collections::HashSet::new();
        let mut last = 0;
        {
            let mut w = self.log.lock_writer();
            for ((owner, item, content), p) in items.iter().zip(prepared) {
                let p = match p {
                    Ok(p) => p,
                    Err(e) => {
                        results.push(Err(e));
                        continue;
                    }
                };
                let same = |existing: SavesetId| Archived {
                    id: existing,
                    new_content: false,
                    new_reference: false,
                };
                match catalog.lookup(owner, item)? {
                    Some((existing, None)) if existing == p.id => {
                        results.push(Ok(same(existing)));
                        continue;
                    }
                    Some((_, Some(_))) => {
                        results.push(Err(in_trash(owner, item)));
                        continue;
                    }
                    Some((existing, None)) => {
                        results.push(Err(Error::ItemExists {
                            owner: owner.to_string(),
                            item: item.to_string(),
                            id: existing,
                        }));
                        continue;
                    }
                    None => {}
                }
                if !in_batch.insert((*owner, *item)) {
                    results.push(Err(Error::InvalidSetting(format!(
                        "item {item:?} of owner {owner:?} appears twice in one batch"
                    ))));
                    continue;
                }
                let new_content = self.ensure_content_locked(&mut w, &p, content)?;
                ops.push(CatalogOp::Add {
                    owner: owner.to_string(),
                    item: item.to_string(),
                    id: p.id.0,
                });
                results.push(Ok(Archived {
                    id: p.id,
                    new_content,
                    new_reference: true,
                }));
            }
            if !ops.is_empty() {
                last = self.append_catalog_locked(&mut w, &ops)?;
            }
        }
        for op in &ops {
            catalog.apply(op)?;
        }
        drop(catalog);
        // Acknowledge together; duplicates of content found in flight too.
        let appended = self.log.lock_writer().next_sequence_minus_one();
        self.log.wait_durable(last.max(appended))?;
        Ok(results)
    }

    /// The hash handshake: add the reference (owner, item) → `id` for content
    /// that is already stored, so a client that sent only the hash of a large
    /// item never sends its bytes. Content that is not stored is
    /// [`Error::NotStored`]: the client must send it with `Store::archive`.
    pub fn link(&self, owner: &str, item: &str, id: &SavesetId) -> Result<Archived> {
        let _route = self.route.read();
        if self.cache_active() {
            return self.link_cached(owner, item, id);
        }
        let added = self.link_many_direct(&[(owner, item, *id)])?;
        if added == 0 {
            // The same reference existed: acknowledge once its content is durable.
            self.duplicate(*id)?;
        }
        Ok(Archived {
            id: *id,
            new_content: false,
            new_reference: added == 1,
        })
    }

    /// Many references to stored content in one catalog record and one
    /// fsync (the batched hash handshake, and the path bulk imports take).
    /// References that exist already with the same id are skipped; any
    /// other refusal (a conflict, content not stored, a name repeated within
    /// the batch) refuses the whole batch and nothing is written.
    /// Returns how many references were added.
    pub fn link_many(&self, refs: &[(&str, &str, SavesetId)]) -> Result<usize> {
        let _route = self.route.read();
        if self.cache_active() {
            return self.link_many_cached(refs);
        }
        self.link_many_direct(refs)
    }

    fn link_many_direct(&self, refs: &[(&str, &str, SavesetId)]) -> Result<usize> {
        self.check_writable()?;
        let mut catalog = self.catalog.write();
        let mut ops = Vec::with_capacity(refs.len());
        let mut seen = std::collections::HashSet::with_capacity(refs.len());
        for &(owner, item, id) in refs {
            check_name("owner", owner)?;
            check_name("item", item)?;
            if !seen.insert((owner, item)) {
                return Err(Error::InvalidSetting(format!(
                    "item {item:?} of owner {owner:?} appears twice in one batch"
                )));
            }
            match catalog.lookup(owner, item)? {
                Some((existing, None)) if existing == id => continue,
                Some((_, Some(_))) => return Err(in_trash(owner, item)),
                Some((existing, None)) => {
                    return Err(Error::ItemExists {
                        owner: owner.into(),
                        item: item.into(),
                        id: existing,
                    });
                }
                None => {}
            }
            // Names checked and the item absent: all `check` asks of an `Add`.
            ops.push(CatalogOp::Add {
                owner: owner.into(),
                item: item.into(),
                id: id.0,
            });
        }
        if ops.is_empty() {
            return Ok(0);
        }
        let seq = {
            let mut w = self.log.lock_writer();
            if let Some(CatalogOp::Add { id, .. }) = ops.iter().find(|op| match op {
                CatalogOp::Add { id, .. } => !self.has(&SavesetId(*id)),
                _ => false,
            }) {
                return Err(Error::NotStored(SavesetId(*id)));
            }
            self.append_catalog_locked(&mut w, &ops)?
        };
        for op in &ops {
            catalog.apply(op)?;
        }
        drop(catalog);
        self.log.wait_durable(seq)?;
        Ok(ops.len())
    }

    /// Move to trash one item's reference (a micro-object) or, with `item`
    /// `None`, every live reference of the owner (a macro-object). Trashed
    /// references keep their savesets alive and can be restored until purged.
    pub fn delete(&self, owner: &str, item: Option<&str>) -> Result<()> {
        let at_ms = now_ms();
        let op = match item {
            Some(item) => CatalogOp::TrashItem {
                owner: owner.into(),
                item: item.into(),
                at_ms,
            },
            None => CatalogOp::TrashOwner {
                owner: owner.into(),
                at_ms,
            },
        };
        self.commit_catalog(op).map(|_| ())
    }

    /// Bring back from trash one item, or every trashed item of the owner.
    pub fn restore(&self, owner: &str, item: Option<&str>) -> Result<()> {
        self.commit_catalog(CatalogOp::Restore {
            owner: owner.into(),
            item: item.map(Into::into),
        })
        .map(|_| ())
    }

    /// Drop for good the references that have been in trash for at least
    /// `older_than`, in the whole store or only for `owner` (and `item`).
    /// References under a legal hold are kept: a purge aimed at a held owner
    /// or item is [`Error::Held`]; a store-wide purge skips them and counts
    /// them in the report. Savesets left without any reference die: `has` and
    /// `get` no longer find them and their bytes count as dead in their
    /// segment until defragmentation reclaims them.
    pub fn purge_trash(
        &self,
        older_than: std::time::Duration,
        owner: Option<&str>,
        item: Option<&str>,
    ) -> Result<PurgeReport> {
        let cutoff_ms = purge_cutoff(older_than, owner, item)?;
        let fx = self.commit_catalog(CatalogOp::Purge {
            cutoff_ms,
            owner: owner.map(Into::into),
            item: item.map(Into::into),
        })?;
        Ok(PurgeReport {
            purged_references: fx.purged,
            dead_savesets: fx.dead.len() as u64,
            kept_on_hold: fx.held,
        })
    }

    /// What `Store::purge_trash` would do now, changing nothing: the
    /// same checks (an unknown owner or item, a held one), the same counts.
    pub fn purge_trash_plan(
        &self,
        older_than: std::time::Duration,
        owner: Option<&str>,
        item: Option<&str>,
    ) -> Result<PurgeReport> {
        let cutoff_ms = purge_cutoff(older_than, owner, item)?;
        let catalog = self.catalog.read();
        catalog.check(&CatalogOp::Purge {
            cutoff_ms,
            owner: owner.map(Into::into),
            item: item.map(Into::into),
        })?;
        catalog.purge_plan(cutoff_ms, owner, item)
    }

    /// Set (`on`) or clear a legal hold on an owner or one of its items.
    /// An owner or item the catalog does not know is refused; see
    /// `Store::hold_custodian` for an owner not archived yet.
    pub fn hold(&self, owner: &str, item: Option<&str>, on: bool) -> Result<()> {
        if item.is_none() && !self.catalog.read().has_owner(owner)? {
            return Err(if on {
                Error::HoldOnUnknownOwner {
                    owner: owner.into(),
                }
            } else {
                owner_not_found(owner)
            });
        }
        self.set_hold(owner, item, on)
    }

    /// Place a legal hold on an owner whether or not it has items yet (a
    /// custodian whose mail is still to be archived). `owners` lists it
    /// with no items and the hold.
    pub fn hold_custodian(&self, owner: &str) -> Result<()> {
        self.set_hold(owner, None, true)
    }

    fn set_hold(&self, owner: &str, item: Option<&str>, on: bool) -> Result<()> {
        self.commit_catalog(CatalogOp::Hold {
            owner: owner.into(),
            item: item.map(Into::into),
            on,
        })
        .map(|_| ())
    }

    /// Which owners and items reference a saveset (trashed ones included,
    /// with their time in trash).
    pub fn refs(&self, id: &SavesetId) -> Result<Vec<Reference>> {
        self.catalog.read().refs(id)
    }

    /// A page of an owner's items sorted by item, starting after `after`.
    pub fn items(&self, owner: &str, after: Option<&str>, limit: usize) -> Result<Vec<ItemEntry>> {
        self.catalog.read().items(owner, after, limit)
    }

    /// Every owner with its counts.
    pub fn owners(&self) -> Result<Vec<OwnerStat>> {
        self.catalog.read().owners()
    }

    /// Every reference in trash.
    pub fn trash(&self) -> Result<Vec<TrashEntry>> {
        self.catalog.read().trash()
    }

    /// Number of references (live or trashed) to a saveset.
    pub fn ref_count(&self, id: &SavesetId) -> Result<usize> {
        self.catalog.read().ref_count(id)
    }

    /// Check, append, apply and make durable one catalog change.
    fn commit_catalog(&self, op: CatalogOp) -> Result<Effects> {
        self.check_writable()?;
        let mut catalog = self.catalog.write();
        catalog.check(&op)?;
        let seq = {
            let mut w = self.log.lock_writer();
            self.append_catalog_locked(&mut w, std::slice::from_ref(&op))?
        };
        let fx = catalog.apply(&op)?;
        self.bury(&fx.dead);
        drop(catalog);
        self.log.wait_durable(seq)?;
        Ok(fx)
    }
}
