//! Writing savesets: hash and compress outside any lock, append under the
//! log's writer unless the content is stored already, index it, and wait
//! for durability (the log's group commit).
//! It must not touch segment files or the active segment but through the
//! log's writer API.

use std::borrow::Cow;

use rayon::prelude::*;

use super::{Encoded, Engine, Prepared, Put};
use crate::error::{Error, Result};
use crate::format::segment::{MAX_RECORD_BYTES, RecordKind, encode_payload};
use crate::id::SavesetId;
use crate::log::Writer;

impl Engine {
    /// Store `content` as a saveset and return its id once it is durable
    /// (see the log's docs for exactly when). Content already stored is not
    /// written again: the result says `new: false`.
    pub fn put(&self, content: &[u8]) -> Result<Put> {
        let _route = self.route.read();
        if self.cache_active() {
            return self.put_cached(content);
        }
        let prepared = self.prepare(content)?;
        let Some(encoded) = &prepared.encoded else {
            return self.duplicate(prepared.id);
        };
        let sequence = {
            let mut w = self.log.lock_writer();
            match self.append_saveset_locked(&mut w, &prepared, encoded)? {
                Some(seq) => seq,
                None => {
                    drop(w);
                    return self.duplicate(prepared.id);
                }
            }
        };
        self.log.wait_durable(sequence)?;
        Ok(Put {
            id: prepared.id,
            new: true,
        })
    }

    /// Store many savesets and acknowledge them together once durable.
    /// The batch goes through in steps of about [`PUT_STEP_BYTES`]: while the
    /// pool hashes and compresses one step, the previous one is appended,
    /// and a helper thread syncs the segment behind the appends, so
    /// preparing, writing and fsync overlap. Sizes are checked first: a
    /// refused batch writes nothing. Results are in input order.
    pub fn put_many(&self, contents: &[&[u8]]) -> Result<Vec<Put>> {
        let _route = self.route.read();
        if self.cache_active() {
            return self.put_many_cached(contents);
        }
        self.log.check_writable()?;
        for c in contents {
            check_size(c)?;
        }
        if contents.is_empty() {
            return Ok(Vec::new());
        }
        let steps = put_steps(contents);
        let mut out = Vec::with_capacity(contents.len());
        let last = std::thread::scope(|scope| -> Result<u64> {
            let (appended, synced) = std::sync::mpsc::channel::<u64>();
            let syncer = scope.spawn(move || self.sync_behind(synced));
            let mut last = 0u64;
            let mut ready = self.prepare_step(&contents[steps[0].clone()]);
            for k in 0..steps.len() {
                let (done, next) = rayon::join(
                    || self.append_step(&ready),
                    || {
                        steps
                            .get(k + 1)
                            .map(|r| self.prepare_step(&contents[r.clone()]))
                    },
                );
                let (puts, upto) = done?;
                out.extend(puts);
                last = upto;
                // A syncer that stopped on an error is reported below.
                let _ = appended.send(last);
                ready = next.unwrap_or_default();
            }
            drop(appended);
            syncer
                .join()
                .map_err(|_| Error::InvalidSetting("segment sync thread panicked".into()))??;
            Ok(last)
        })?;
        self.log.wait_durable(last)?;
        Ok(out)
    }

    /// Hash and compress one step of a batch on the pool (sizes and
    /// writability were checked for the whole batch).
    fn prepare_step<'a>(&self, contents: &[&'a [u8]]) -> Vec<Prepared<'a>> {
        contents
            .par_iter()
            .map(|c| self.prepare_hashed(c, SavesetId::of(c), true))
            .collect()
    }

    /// Append one prepared step under the writer lock: its results and the
    /// sequence it must be durable up to (duplicates found here may be in
    /// flight from another writer).
    fn append_step(&self, prepared: &[Prepared<'_>]) -> Result<(Vec<Put>, u64)> {
        let mut w = self.log.lock_writer();
        let mut puts = Vec::with_capacity(prepared.len());
        for p in prepared {
            let seq = match &p.encoded {
                Some(enc) => self.append_saveset_locked(&mut w, p, enc)?,
                None => None,
            };
            puts.push(Put {
                id: p.id,
                new: seq.is_some(),
            });
        }
        Ok((puts, w.next_sequence_minus_one()))
    }

    /// Sync the active segment up to the latest sequence received, until
    /// the sender hangs up: group commit behind a batch's appends.
    fn sync_behind(&self, appended: std::sync::mpsc::Receiver<u64>) -> Result<()> {
        while let Ok(mut upto) = appended.recv() {
            upto = appended.try_iter().fold(upto, u64::max);
            self.log.wait_durable(upto)?;
        }
        Ok(())
    }

    /// Hash (and, unless already stored, compress) content outside any lock.
    pub(crate) fn prepare<'a>(&self, content: &'a [u8]) -> Result<Prepared<'a>> {
        let id = self.hash_checked(content)?;
        Ok(self.prepare_hashed(content, id, true))
    }

    /// Check the size limit and hash.
    pub(crate) fn hash_checked(&self, content: &[u8]) -> Result<SavesetId> {
        self.log.check_writable()?;
        check_size(content)?;
        Ok(SavesetId::of(content))
    }

    /// Compress hashed content unless it is stored already or `compress`
    /// is false (another copy in the same batch is compressed instead).
    pub(crate) fn prepare_hashed<'a>(
        &self,
        content: &'a [u8],
        id: SavesetId,
        compress: bool,
    ) -> Prepared<'a> {
        let mut composite = None;
        // A damaged mapped block answers "not stored": the content is
        // prepared, and the append's own check reports the damage.
        let stored = self.index.read().contains(&id).unwrap_or(false);
        let encoded = if !compress || stored {
            None
        } else {
            let level = self.log.compression_level();
            match self.prepare_composite(content, &id, level) {
                Some((recipe, parts)) => {
                    composite = Some(parts);
                    Some(recipe)
                }
                None => Some(encode_payload(content, level)),
            }
        };
        Prepared {
            id,
            logical_len: content.len() as u64,
            encoded,
            composite,
        }
    }

    /// Append a prepared saveset unless it is stored by now (`None`).
    pub(crate) fn append_saveset_locked(
        &self,
        w: &mut Writer,
        prepared: &Prepared<'_>,
        (codec, payload): &Encoded<'_>,
    ) -> Result<Option<u64>> {
        if self.index.read().contains(&prepared.id)? {
            return Ok(None);
        }
        let (loc, seq) = match &prepared.composite {
            Some(composite) => self.append_composite_locked(
                w,
                prepared.id,
                composite,
                &(*codec, Cow::Borrowed(&**payload)),
            )?,
            None => self.log.append_record_locked(
                w,
                RecordKind::Saveset,
                prepared.id,
                *codec,
                payload,
                prepared.logical_len,
            )?,
        };
        self.index.write().insert(prepared.id, loc);
        self.lifecycle.lock().on_stored(prepared.id, seq);
        Ok(Some(seq))
    }

    /// Make sure the prepared content is stored (it may have died since it
    /// was prepared); true when this wrote it.
    pub(crate) fn ensure_content_locked(
        &self,
        w: &mut Writer,
        prepared: &Prepared<'_>,
        content: &[u8],
    ) -> Result<bool> {
        if self.index.read().contains(&prepared.id)? {
            return Ok(false);
        }
        if let Some(encoded) = &prepared.encoded {
            return Ok(self.append_saveset_locked(w, prepared, encoded)?.is_some());
        }
        // Not prepared (a copy in the same batch was, or it was stored at
        // preparation time and has died since): prepare it now.
        let fresh = self.prepare_hashed(content, prepared.id, true);
        match &fresh.encoded {
            Some(encoded) => Ok(self.append_saveset_locked(w, &fresh, encoded)?.is_some()),
            None => Ok(false),
        }
    }

    /// Append one catalog batch; returns its sequence.
    pub(crate) fn append_catalog_locked(
        &self,
        w: &mut Writer,
        ops: &[crate::format::catalog::CatalogOp],
    ) -> Result<u64> {
        let batch = crate::format::catalog::encode_batch(ops);
        self.log.append_batch_locked(w, RecordKind::Catalog, &batch)
    }

    /// Wait until everything appended so far is durable (the content found
    /// stored may still be in flight) and report a duplicate.
    pub(crate) fn duplicate(&self, id: SavesetId) -> Result<Put> {
        let appended = self.log.lock_writer().next_sequence_minus_one();
        self.log.wait_durable(appended)?;
        Ok(Put { id, new: false })
    }
}

/// For each id of a batch, true at its first occurrence: each distinct
/// content of a batch is compressed once (in an import most of a batch is
/// the same message in other mailboxes).
pub(crate) fn first_occurrences(ids: &[Result<SavesetId>]) -> Vec<bool> {
    let mut first = std::collections::HashSet::new();
    ids.iter()
        .map(|id| id.as_ref().is_ok_and(|id| first.insert(*id)))
        .collect()
}

/// Bytes of content a `put_many` step prepares while the previous one is
/// appended: large enough to keep the disk busy, small enough to bound memory.
pub const PUT_STEP_BYTES: usize = 4 << 20;

/// Refuse content over the record size limit.
pub(crate) fn check_size(content: &[u8]) -> Result<()> {
    if content.len() as u64 > MAX_RECORD_BYTES {
        return Err(Error::TooLarge {
            size: content.len() as u64,
            limit: MAX_RECORD_BYTES,
        });
    }
    Ok(())
}

/// Consecutive ranges of `contents` of about [`PUT_STEP_BYTES`] each (at
/// least one item).
fn put_steps(contents: &[&[u8]]) -> Vec<std::ops::Range<usize>> {
    let mut steps = Vec::new();
    let (mut start, mut bytes) = (0, 0usize);
    for (i, c) in contents.iter().enumerate() {
        bytes += c.len();
        if bytes >= PUT_STEP_BYTES {
            steps.push(start..i + 1);
            (start, bytes) = (i + 1, 0);
        }
    }
    if start < contents.len() {
        steps.push(start..contents.len());
    }
    steps
}
