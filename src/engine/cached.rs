//! Writes through the message cache. While the store is in backup mode, and
//! until what it cached then is in the segments, puts and references go to
//! the message cache instead of the log, in the order they are accepted,
//! each checked against the catalog and the cache exactly as a direct write
//! would be; reads see them at once. Processing moves them into the segments
//! in that order, a batch at a time, each batch idempotent (a crash between
//! a batch being durable and its processed mark only makes the next run
//! find it stored). It must not touch the queue file but through
//! `message_cache`'s API.

use rayon::prelude::*;

use super::{Encoded, Engine, Put};
use crate::catalog::{Archived, Reference};
use crate::error::{Error, Result};
use crate::format::catalog::CatalogOp;
use crate::format::message_cache::{CacheEntry, CachedContent};
use crate::format::segment::encode_payload;
use crate::id::SavesetId;
use crate::message_cache::{QueueGuard, Queued};
use crate::units::now_ms;

impl Engine {
    /// True while writes go to the message cache: in backup mode, and
    /// until the cache is empty again.
    pub(crate) fn cache_active(&self) -> bool {
        self.log.backup_mode_since().is_some() || !self.cache.is_empty()
    }

    /// Refuse a write that changes the segments now: the log's refusals
    /// (open read-only, the read-only state, backup mode) and, while the
    /// message cache holds items, any write the cache does not take (it
    /// would overtake them).
    pub(crate) fn check_writable(&self) -> Result<()> {
        self.log.check_writable()?;
        let (pending, _) = self.cache.pending();
        if pending > 0 {
            return Err(Error::MessageCacheProcessing {
                path: self.log.dir().to_path_buf(),
                pending,
            });
        }
        Ok(())
    }

    /// True when content `id` is stored or cached.
    pub fn has_stored_or_cached(&self, id: &SavesetId) -> bool {
        self.has(id) || self.cache.has(id)
    }

    /// Content `id`, from the segments or the message cache.
    pub fn get_stored_or_cached(&self, id: &SavesetId) -> Result<Vec<u8>> {
        match self.get(id) {
            Err(Error::NotFound(_)) => self.cache.get(id).unwrap_or(Err(Error::NotFound(*id))),
            other => other,
        }
    }

    /// References to `id`: the catalog's, except items the cache points
    /// elsewhere, and the cache's.
    pub fn refs_with_cached(&self, id: &SavesetId) -> Result<Vec<Reference>> {
        let mut out: Vec<Reference> = self
            .refs(id)?
            .into_iter()
            .filter(|r| {
                self.cache
                    .reference(&r.owner, &r.item)
                    .is_none_or(|c| c == *id)
            })
            .collect();
        for (owner, item) in self.cache.refs(id) {
            if !out.iter().any(|r| r.owner == owner && r.item == item) {
                out.push(Reference {
                    owner,
                    item,
                    trashed_at_ms: None,
                });
            }
        }
        Ok(out)
    }

    /// Hash for the cache: the checks of a direct write but backup mode.
    fn hash_for_cache(&self, content: &[u8]) -> Result<SavesetId> {
        self.log.check_writable_to_cache()?;
        super::write::check_size(content)?;
        Ok(SavesetId::of(content))
    }

    /// Compress content the segments and the cache do not hold yet.
    fn encode_unless_held<'a>(&self, content: &'a [u8], id: &SavesetId) -> Option<Encoded<'a>> {
        (!self.has_stored_or_cached(id))
            .then(|| encode_payload(content, self.log.compression_level()))
    }

    /// `put` through the cache.
    pub(crate) fn put_cached(&self, content: &[u8]) -> Result<Put> {
        Ok(self.put_many_cached(&[content])?.remove(0))
    }

    /// `put_many` through the cache: one fsync for the batch.
    pub(crate) fn put_many_cached(&self, contents: &[&[u8]]) -> Result<Vec<Put>> {
        let ids = contents
            .par_iter()
            .map(|c| self.hash_for_cache(c))
            .collect::<Result<Vec<_>>>()?;
        let encoded: Vec<Option<Encoded<'_>>> = contents
            .par_iter()
            .zip(&ids)
            .map(|(c, id)| self.encode_unless_held(c, id))
            .collect();
        let mut q = self.cache.lock();
        let mut out = Vec::with_capacity(contents.len());
        for ((content, id), enc) in contents.iter().zip(ids).zip(encoded) {
            if self.has(&id) || q.has(&id) {
                out.push(Put { id, new: false });
                continue;
            }
            let (codec, payload) =
                enc.unwrap_or_else(|| encode_payload(content, self.log.compression_level()));
            q.append(&CacheEntry::Put {
                id: id.0,
                time_ms: now_ms(),
                content: CachedContent {
                    codec,
                    logical_len: content.len() as u64,
                    payload: &payload,
                },
            })?;
            out.push(Put { id, new: true });
        }
        self.sync_cache(q)?;
        Ok(out)
    }

    /// Make everything appended so far durable: the cache (duplicates
    /// found there may still be in flight), and the log, since content found
    /// in the segments may be a record the processing appended and has not
    /// synced yet (or whose fsync failed: then this fails too).
    fn sync_cache(&self, q: QueueGuard<'_>) -> Result<()> {
        let end = q.end();
        drop(q);
        self.cache.sync_upto(end)?;
        let appended = self.log.lock_writer().next_sequence_minus_one();
        self.log.wait_durable(appended)
    }

    /// `archive` through the cache.
    pub(crate) fn archive_cached(
        &self,
        owner: &str,
        item: &str,
        content: &[u8],
        replace: bool,
    ) -> Result<Archived> {
        crate::catalog::check_name("owner", owner)?;
        crate::catalog::check_name("item", item)?;
        let id = self.hash_for_cache(content)?;
        let encoded = self.encode_unless_held(content, &id);
        let mut q = self.cache.lock();
        let wanted = Wanted {
            owner,
            item,
            id,
            replace,
        };
        let out = self.reference_locked(&mut q, &wanted, encoded, Some(content))?;
        self.sync_cache(q)?;
        Ok(out)
    }

    /// `archive_many` through the cache: each item succeeds or fails on its
    /// own, one fsync for the batch.
    pub(crate) fn archive_many_cached(
        &self,
        items: &[(&str, &str, &[u8])],
    ) -> Result<Vec<Result<Archived>>> {
        let ids: Vec<Result<SavesetId>> = items
            .par_iter()
            .map(|(owner, item, content)| {
                crate::catalog::check_name("owner", owner)?;
                crate::catalog::check_name("item", item)?;
                self.hash_for_cache(content)
            })
            .collect();
        let compress = super::write::first_occurrences(&ids);
        let encoded: Vec<Option<Encoded<'_>>> = items
            .par_iter()
            .zip(&ids)
            .zip(compress)
            .map(|(((_, _, c), id), compress)| match id {
                Ok(id) if compress => self.encode_unless_held(c, id),
                _ => None,
            })
            .collect();
        let mut q = self.cache.lock();
        let mut in_batch = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(items.len());
        for (((owner, item, content), id), enc) in items.iter().zip(ids).zip(encoded) {
            let id = match id {
                Ok(id) => id,
                Err(e) => {
                    out.push(Err(e));
                    continue;
                }
            };
            if !in_batch.insert((*owner, *item)) {
                out.push(Err(twice_in_batch(owner, item)));
                continue;
            }
            let wanted = Wanted {
                owner,
                item,
                id,
                replace: false,
            };
            match self.reference_locked(&mut q, &wanted, enc, Some(content)) {
                Err(e @ Error::Io { .. }) | Err(e @ Error::MessageCache { .. }) => return Err(e),
                r => out.push(r),
            }
        }
        self.sync_cache(q)?;
        Ok(out)
    }

    /// `link_many` through the cache: every reference is checked first and
    /// any refusal refuses the batch; returns how many were added.
    pub(crate) fn link_many_cached(&self, refs: &[(&str, &str, SavesetId)]) -> Result<usize> {
        self.log.check_writable_to_cache()?;
        let mut q = self.cache.lock();
        let mut seen = std::collections::HashSet::new();
        let mut fresh = Vec::new();
        for &(owner, item, id) in refs {
            crate::catalog::check_name("owner", owner)?;
            crate::catalog::check_name("item", item)?;
            if !seen.insert((owner, item)) {
                return Err(twice_in_batch(owner, item));
            }
            let wanted = Wanted {
                owner,
                item,
                id,
                replace: false,
            };
            if self.check_reference_locked(&q, &wanted)? {
                if !self.surely_held(&q, &id) {
                    return Err(Error::NotStored(id));
                }
                fresh.push(wanted);
            }
        }
        for wanted in &fresh {
            self.reference_locked(&mut q, wanted, None, None)?;
        }
        self.sync_cache(q)?;
        Ok(fresh.len())
    }

    /// `link` through the cache.
    pub(crate) fn link_cached(&self, owner: &str, item: &str, id: &SavesetId) -> Result<Archived> {
        let added = self.link_many_cached(&[(owner, item, *id)])?;
        Ok(Archived {
            id: *id,
            new_content: false,
            new_reference: added == 1,
        })
    }

    /// Check a reference against the cache, then the catalog, as a direct
    /// write would be checked: false when it exists already with this id.
    fn check_reference_locked(&self, q: &QueueGuard<'_>, w: &Wanted<'_>) -> Result<bool> {
        let cached = q.reference(w.owner, w.item);
        let existing = match cached {
            Some(id) => Some((id, None)),
            None => self.catalog.read().lookup(w.owner, w.item)?,
        };
        match existing {
            Some((e, None)) if e == w.id => return Ok(false),
            Some((e, None)) if !w.replace => {
                return Err(Error::ItemExists {
                    owner: w.owner.to_string(),
                    item: w.item.to_string(),
                    id: e,
                });
            }
            _ => {}
        }
        if cached.is_none() {
            // Trash and holds live in the catalog: cached items have neither.
            let op = match existing {
                Some(_) => CatalogOp::Replace {
                    owner: w.owner.into(),
                    item: w.item.into(),
                    id: w.id.0,
                },
                None => CatalogOp::Add {
                    owner: w.owner.into(),
                    item: w.item.into(),
                    id: w.id.0,
                },
            };
            self.catalog.read().check(&op)?;
        }
        Ok(true)
    }

    /// True when content `id` is sure to be stored when a reference to it
    /// is processed: a pending entry carries it, or the segments hold it and
    /// no pending replace can make it die first. Otherwise an archive
    /// carries its content, and a link is answered as for content not
    /// stored (the client sends the bytes).
    fn surely_held(&self, q: &QueueGuard<'_>, id: &SavesetId) -> bool {
        q.has(id) || (self.has(id) && !q.replaces_pending())
    }

    /// Check a reference and append it, with the content unless the
    /// segments or the cache hold it (not durable yet).
    fn reference_locked(
        &self,
        q: &mut QueueGuard<'_>,
        w: &Wanted<'_>,
        encoded: Option<Encoded<'_>>,
        content: Option<&[u8]>,
    ) -> Result<Archived> {
        if !self.check_reference_locked(q, w)? {
            return Ok(Archived {
                id: w.id,
                new_content: false,
                new_reference: false,
            });
        }
        let held = self.has(&w.id) || q.has(&w.id);
        let carried = match (self.surely_held(q, &w.id), encoded, content) {
            (true, _, _) => None,
            (false, Some(e), Some(c)) => Some((e, c.len() as u64)),
            (false, None, Some(c)) => Some((
                encode_payload(c, self.log.compression_level()),
                c.len() as u64,
            )),
            (false, _, None) => return Err(Error::NotStored(w.id)),
        };
        q.append(&CacheEntry::Reference {
            id: w.id.0,
            time_ms: now_ms(),
            replace: w.replace,
            owner: w.owner,
            item: w.item,
            content: carried
                .as_ref()
                .map(|((codec, payload), logical_len)| CachedContent {
                    codec: *codec,
                    logical_len: *logical_len,
                    payload,
                }),
        })?;
        Ok(Archived {
            id: w.id,
            new_content: !held,
            new_reference: true,
        })
    }

    /// Move one batch of pending entries into the segments, durably. An
    /// item appears at most once in `batch`, and a replace only last (its
    /// lookups all happen before any reference is applied, and a replace
    /// may kill content a later entry refers to). Entries found stored already (a
    /// batch stored before a crash kept its processed mark from being
    /// written) change nothing. Returns the references that could not be
    /// stored (none, unless the store changed under the cache).
    pub(crate) fn store_cached(&self, batch: &[Queued]) -> Result<Vec<String>> {
        // Content this batch needs and the segments do not hold: carried by
        // its entry, or (a reference accepted while an earlier entry held
        // it, that died since) held by that earlier entry.
        let contents: Vec<Option<Vec<u8>>> = batch
            .par_iter()
            .map(|q| {
                q.content
                    .or_else(|| self.cache.held_anywhere(&q.id))
                    .filter(|_| !self.has(&q.id))
                    .map(|at| self.cache.read_content(&q.id, at))
                    .transpose()
            })
            .collect::<Result<_>>()?;
        let prepared: Vec<Option<super::Prepared<'_>>> = contents
            .par_iter()
            .zip(batch)
            .map(|(c, q)| c.as_deref().map(|c| self.prepare_hashed(c, q.id, true)))
            .collect();
        let mut catalog = self.catalog.write();
        let mut ops = Vec::new();
        let mut skipped = Vec::new();
        let last = {
            let mut w = self.log.lock_writer();
            for ((q, p), c) in batch.iter().zip(&prepared).zip(&contents) {
                if let (Some(p), Some(c)) = (p, c) {
                    self.ensure_content_locked(&mut w, p, c)?;
                }
                let Some((owner, item, replace)) = &q.reference else {
                    continue;
                };
                let op = match catalog.lookup(owner, item)? {
                    Some((e, None)) if e == q.id => continue,
                    Some((_, None)) if *replace => CatalogOp::Replace {
                        owner: owner.clone(),
                        item: item.clone(),
                        id: q.id.0,
                    },
                    None => CatalogOp::Add {
                        owner: owner.clone(),
                        item: item.clone(),
                        id: q.id.0,
                    },
                    Some(_) => {
                        skipped.push(format!("{owner}/{item}: the item changed in the catalog"));
                        continue;
                    }
                };
                if !self.has(&q.id) {
                    skipped.push(format!("{owner}/{item}: saveset {} is not stored", q.id));
                    continue;
                }
                ops.push(op);
            }
            if !ops.is_empty() {
                self.append_catalog_locked(&mut w, &ops)?;
            }
            w.next_sequence_minus_one()
        };
        for op in &ops {
            let fx = catalog.apply(op)?;
            self.bury(&fx.dead);
        }
        drop(catalog);
        self.log.wait_durable(last)?;
        Ok(skipped)
    }
}

/// A reference a write asks for.
struct Wanted<'a> {
    owner: &'a str,
    item: &'a str,
    id: SavesetId,
    replace: bool,
}

fn twice_in_batch(owner: &str, item: &str) -> Error {
    Error::InvalidSetting(format!(
        "item {item:?} of owner {owner:?} appears twice in one batch"
    ))
}
