//! The message cache: a durable queue, outside the segments, of the puts
//! and references a store accepts while its segment files must not change
//! (backup mode, and until the queue is processed after it). Owns the queue
//! file `message-cache/queue` (format-spec/message-cache.md): appends with
//! a shared fsync (group commit), recovery at open (a torn tail is cut off
//! and quarantined), reads of cached content, and the in-memory view of
//! what is still pending. In an encrypted store every entry is sealed
//! whole, bound to its offset (format-spec/encryption.md, "Side files").
//! It knows nothing of the catalog or the log: the engine decides what
//! goes in and moves it into the segments.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::indexing_slicing))]

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use crate::crypto::Sealing;
use crate::error::{Error, Result};
use crate::format::QUARANTINE_DIR;
use crate::format::message_cache::{
    CACHE_DIR, CacheEntry, CachedContent, ENTRY_HEADER_BYTES, HEADER_BYTES, PLAIN_VERSION,
    QUEUE_FILE, QUEUE_MAGIC, SEALED_VERSION, decode_entry, decode_entry_header, decode_header,
    encode_entry, encode_header,
};
use crate::format::segment::{Codec, decode_payload};
use crate::id::SavesetId;
use crate::io::{VFile, Vfs};

/// Where an entry's content lies in the queue file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ContentAt {
    /// Offset of the payload.
    pub(crate) offset: u64,
    /// Bytes of the payload.
    pub(crate) len: u64,
    /// How it is stored.
    pub(crate) codec: Codec,
    /// Bytes once decoded.
    pub(crate) logical_len: u64,
    /// Where the entry holding it begins and ends (a sealed entry is read
    /// and opened whole).
    pub(crate) entry: (u64, u64),
}

/// A pending entry: accepted, not yet in the segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Queued {
    /// Where the entry ends in the queue file (a processed mark names it).
    pub(crate) end: u64,
    /// When it was accepted, Unix ms.
    pub(crate) time_ms: u64,
    /// The saveset.
    pub(crate) id: SavesetId,
    /// The reference (owner, item, replace) it adds; `None` for a put.
    pub(crate) reference: Option<(String, String, bool)>,
    /// Its content, when the entry carries it.
    pub(crate) content: Option<ContentAt>,
}

/// The message cache of one store.
pub(crate) struct MessageCache {
    vfs: Arc<dyn Vfs>,
    store_dir: PathBuf,
    path: PathBuf,
    store_id: [u8; 16],
    sealing: Sealing,
    read_only: bool,
    state: Mutex<QueueState>,
    /// Bytes of the queue file known durable; held during an fsync.
    synced: Mutex<u64>,
}

#[derive(Default)]
struct QueueState {
    file: Option<Arc<dyn VFile>>,
    end: u64,
    failed: Option<String>,
    pending: VecDeque<Queued>,
    /// Content held by pending entries, with the end of the entry holding it.
    contents: HashMap<SavesetId, (ContentAt, u64)>,
    /// Content held by any entry of the file, processed or not.
    held: HashMap<SavesetId, ContentAt>,
    /// Pending references that replace an item's content.
    replaces: u64,
    /// Pending references to each saveset.
    referenced: HashMap<SavesetId, u64>,
    /// The newest pending reference of each item, with its entry's end.
    references: HashMap<(String, String), (SavesetId, u64)>,
}

/// The queue locked, for checks and appends that must not interleave.
pub(crate) struct QueueGuard<'a> {
    cache: &'a MessageCache,
    state: MutexGuard<'a, QueueState>,
}

impl MessageCache {
    /// Open the cache of the store in `store_dir`: read the queue if there
    /// is one, cut off (and quarantine) a torn tail. Returns a note when
    /// something was cut. A queue of another store, whose header does not
    /// check, or in the clear in an encrypted store (or sealed in a plain
    /// one) is refused: it may hold acknowledged items.
    pub(crate) fn open(
        vfs: Arc<dyn Vfs>,
        store_dir: &Path,
        store_id: [u8; 16],
        sealing: Sealing,
        read_only: bool,
    ) -> Result<(MessageCache, Option<String>)> {
        let path = store_dir.join(CACHE_DIR).join(QUEUE_FILE);
        let cache = MessageCache {
            vfs,
            store_dir: store_dir.to_path_buf(),
            path,
            store_id,
            sealing,
            read_only,
            state: Mutex::new(QueueState::default()),
            synced: Mutex::new(0),
        };
        let note = if cache.vfs.exists(&cache.path) {
            cache.recover()?
        } else {
            None
        };
        Ok((cache, note))
    }

    fn corrupt(&self, detail: impl std::fmt::Display) -> Error {
        Error::MessageCache {
            path: self.path.clone(),
            detail: detail.to_string(),
        }
    }

    fn io(&self, op: &'static str, e: std::io::Error) -> Error {
        Error::io(&self.path, op, e)
    }

    /// This store's queue version: sealed when the store is encrypted.
    fn version(&self) -> u32 {
        match self.sealing {
            Sealing::Plain => PLAIN_VERSION,
            Sealing::Encrypted(_) => SEALED_VERSION,
        }
    }

    /// The entry's bytes as written in the clear, from its bytes as stored
    /// at `at`: `None` when they do not check (a torn tail). A sealed entry
    /// whose crc checks but that does not open under this store's key, at
    /// this offset, was forged or moved: an error, never a silent cut.
    fn plain_entry(&self, stored: Vec<u8>, at: u64) -> Result<Option<Vec<u8>>> {
        let sealed = match (decode_entry(&stored), self.sealing.keys()) {
            (Ok(CacheEntry::Sealed { body }), Some(keys)) => keys
                .open_side_at(&QUEUE_MAGIC, at, body)
                .map_err(|d| self.corrupt(format!("offset {at}: sealed entry {d}")))?,
            (Ok(_), Some(_)) => {
                return Err(self.corrupt(format!(
                    "offset {at}: an entry in the clear in an encrypted store's queue"
                )));
            }
            // A plain queue knows no sealed kind: as any unknown kind.
            (Ok(CacheEntry::Sealed { .. }) | Err(_), None) | (Err(_), Some(_)) => return Ok(None),
            (Ok(_), None) => return Ok(Some(stored)),
        };
        match decode_entry(&sealed) {
            Ok(CacheEntry::Sealed { .. }) | Err(_) => Err(self.corrupt(format!(
                "offset {at}: a sealed entry that opens but holds no entry"
            ))),
            Ok(_) => Ok(Some(sealed)),
        }
    }

    /// Read the queue entry by entry; entries after the last processed
    /// mark are pending.
    fn recover(&self) -> Result<Option<String>> {
        let file = if self.read_only {
            self.vfs.open_read(&self.path)
        } else {
            self.vfs.open_rw(&self.path)
        }
        .map_err(|e| self.io("open message cache", e))?;
        let len = file.len().map_err(|e| self.io("read message cache", e))?;
        let mut header = vec![0u8; len.min(HEADER_BYTES) as usize];
        file.read_exact_at(&mut header, 0)
            .map_err(|e| self.io("read message cache", e))?;
        let owner = match decode_header(&header) {
            Ok((_, version)) if version != self.version() => {
                return Err(self.corrupt(format!(
                    "the queue is of format version {version}, this store's is {} \
                     (a queue in the clear in an encrypted store, or sealed in a plain one)",
                    self.version()
                )));
            }
            Ok((owner, _)) => owner,
            // Cut short while it was created (or being created by the
            // writer as a reader looks): no entry was ever written.
            Err(_) if len <= HEADER_BYTES => {
                if self.read_only {
                    return Ok(None);
                }
                drop(file);
                self.remove_if_empty()?;
                return Ok(Some(format!(
                    "{}: a queue cut short at creation (no entry) removed",
                    self.path.display()
                )));
            }
            Err(d) => return Err(self.corrupt(d)),
        };
        if owner != self.store_id {
            return Err(self.corrupt("the queue belongs to another store"));
        }
        let mut st = self.state.lock();
        let mut at = HEADER_BYTES;
        while at < len {
            let Some(stored) = read_entry(&*file, at, len) else {
                break;
            };
            let end = at + stored.len() as u64;
            let Some(plain) = self.plain_entry(stored, at)? else {
                break;
            };
            match decode_entry(&plain) {
                Ok(entry) => st.take(&entry, at, end),
                Err(_) => break,
            }
            at = end;
        }
        st.end = at;
        *self.synced.lock() = at;
        let note = (at < len).then(|| {
            format!(
                "{}: {} bytes after offset {at} do not check (a torn tail): cut off",
                self.path.display(),
                len - at
            )
        });
        if !self.read_only {
            if at < len {
                self.quarantine_tail(&*file, at, len)?;
                file.set_len(at)
                    .and_then(|_| file.sync_data())
                    .map_err(|e| self.io("truncate message cache", e))?;
            }
            st.file = Some(file);
        }
        drop(st);
        if !self.read_only {
            self.remove_if_empty()?;
        }
        Ok(note)
    }

    fn quarantine_tail(&self, file: &dyn VFile, from: u64, len: u64) -> Result<()> {
        let dir = self.store_dir.join(QUARANTINE_DIR);
        let target = dir.join(format!("message-cache-at-{from}.bin"));
        let mut tail = vec![0u8; (len - from).min(64 << 20) as usize];
        file.read_exact_at(&mut tail, from)
            .map_err(|e| self.io("read message cache", e))?;
        self.vfs
            .create_dir_all(&dir)
            .map_err(|e| Error::io(&dir, "create directory", e))?;
        self.vfs
            .write_atomic(&target, &tail)
            .map_err(|e| Error::io(&target, "write quarantine", e))
    }

    /// Lock the queue for checks and appends.
    pub(crate) fn lock(&self) -> QueueGuard<'_> {
        QueueGuard {
            cache: self,
            state: self.state.lock(),
        }
    }

    /// True when no entry is pending.
    pub(crate) fn is_empty(&self) -> bool {
        self.state.lock().pending.is_empty()
    }

    /// Pending entries, and when the oldest was accepted.
    pub(crate) fn pending(&self) -> (u64, Option<u64>) {
        let st = self.state.lock();
        // Entries are pending in the order they were accepted.
        (
            st.pending.len() as u64,
            st.pending.front().map(|q| q.time_ms),
        )
    }

    /// True when the cache serves content `id` (see `serves`).
    pub(crate) fn has(&self, id: &SavesetId) -> bool {
        self.state.lock().serves(id).is_some()
    }

    /// The savesets of the first `limit` pending entries.
    pub(crate) fn pending_ids(&self, limit: usize) -> Vec<SavesetId> {
        let st = self.state.lock();
        st.pending.iter().take(limit).map(|q| q.id).collect()
    }

    /// The items whose newest pending reference is to `id`.
    pub(crate) fn refs(&self, id: &SavesetId) -> Vec<(String, String)> {
        let st = self.state.lock();
        if !st.referenced.contains_key(id) {
            return Vec::new();
        }
        let mut out: Vec<(String, String)> = st
            .references
            .iter()
            .filter(|(_, (to, _))| to == id)
            .map(|(key, _)| key.clone())
            .collect();
        out.sort();
        out
    }

    /// The newest pending reference of an item.
    pub(crate) fn reference(&self, owner: &str, item: &str) -> Option<SavesetId> {
        self.lock().reference(owner, item)
    }

    /// Content `id` from the queue, decoded and checked against its id;
    /// `None` when no pending entry holds it.
    pub(crate) fn get(&self, id: &SavesetId) -> Option<Result<Vec<u8>>> {
        let at = self.state.lock().serves(id)?;
        Some(self.read_content(id, at))
    }

    /// Where any entry of the queue, processed or not, holds content `id`:
    /// a reference accepted while a pending entry held it finds it here
    /// even if it died in the segments since (replaced away).
    pub(crate) fn held_anywhere(&self, id: &SavesetId) -> Option<ContentAt> {
        self.state.lock().held.get(id).copied()
    }

    /// Read and check content at `at`.
    pub(crate) fn read_content(&self, id: &SavesetId, at: ContentAt) -> Result<Vec<u8>> {
        let file = self.file_for_reading()?;
        let payload = match self.sealing {
            Sealing::Plain => {
                let mut payload = vec![0u8; at.len as usize];
                file.read_exact_at(&mut payload, at.offset)
                    .map_err(|e| self.io("read message cache", e))?;
                payload
            }
            Sealing::Encrypted(_) => self.read_sealed_payload(&*file, at)?,
        };
        let content = decode_payload(at.codec, payload, at.logical_len)
            .map_err(|d| self.corrupt(format!("offset {}: {d}", at.offset)))?;
        if SavesetId::of(&content) != *id {
            return Err(self.corrupt(format!(
                "offset {}: content does not hash to saveset {id}",
                at.offset
            )));
        }
        Ok(content)
    }

    /// The payload at `at` from its sealed entry, opened whole.
    fn read_sealed_payload(&self, file: &dyn VFile, at: ContentAt) -> Result<Vec<u8>> {
        let (entry_at, entry_end) = at.entry;
        let damaged = || self.corrupt(format!("offset {entry_at}: the entry does not check"));
        let mut stored = vec![0u8; entry_end.saturating_sub(entry_at) as usize];
        file.read_exact_at(&mut stored, entry_at)
            .map_err(|e| self.io("read message cache", e))?;
        let plain = self.plain_entry(stored, entry_at)?.ok_or_else(damaged)?;
        let from = at.offset.saturating_sub(entry_at) as usize;
        plain
            .get(from..from.saturating_add(at.len as usize))
            .map(<[u8]>::to_vec)
            .ok_or_else(damaged)
    }

    fn file_for_reading(&self) -> Result<Arc<dyn VFile>> {
        if let Some(f) = self.state.lock().file.clone() {
            return Ok(f);
        }
        self.vfs
            .open_read(&self.path)
            .map_err(|e| self.io("open message cache", e))
    }

    /// The first pending entries, at most `max` of them and about
    /// `max_bytes` of content, for processing in order.
    pub(crate) fn front(&self, max: usize, max_bytes: u64) -> Vec<Queued> {
        let st = self.state.lock();
        let mut bytes = 0;
        let mut out = Vec::new();
        for q in st.pending.iter().take(max) {
            if !out.is_empty() && bytes >= max_bytes {
                break;
            }
            bytes += q.content.map_or(0, |c| c.logical_len);
            out.push(q.clone());
        }
        out
    }

    /// Record durably that every entry ending at or before `upto` is in the
    /// segments, and forget them.
    pub(crate) fn mark_processed(&self, upto: u64) -> Result<()> {
        let end = self.lock().append(&CacheEntry::Processed { upto })?;
        self.sync_upto(end)?;
        let mut st = self.state.lock();
        while st.pending.front().is_some_and(|q| q.end <= upto) {
            if let Some(q) = st.pending.pop_front() {
                st.forget(&q);
            }
        }
        Ok(())
    }

    /// Remove the queue file when nothing is pending: the cache is empty.
    /// True when there is no queue file now.
    pub(crate) fn remove_if_empty(&self) -> Result<bool> {
        let mut st = self.state.lock();
        if !st.pending.is_empty() {
            return Ok(false);
        }
        if st.file.take().is_some() || self.vfs.exists(&self.path) {
            self.vfs
                .remove_file(&self.path)
                .map_err(|e| self.io("remove message cache", e))?;
            let dir = self.store_dir.join(CACHE_DIR);
            self.vfs
                .sync_dir(&dir)
                .map_err(|e| Error::io(&dir, "fsync directory", e))?;
        }
        *st = QueueState::default();
        *self.synced.lock() = 0;
        Ok(true)
    }

    /// Wait until the queue is durable up to `end`: one fsync covers every
    /// append made before it (group commit).
    pub(crate) fn sync_upto(&self, end: u64) -> Result<()> {
        let mut synced = self.synced.lock();
        if *synced >= end {
            return Ok(());
        }
        let (file, target) = {
            let st = self.state.lock();
            if let Some(f) = &st.failed {
                return Err(self.corrupt(format!("writes stopped: {f}")));
            }
            (st.file.clone(), st.end)
        };
        let Some(file) = file else {
            return Err(self.corrupt("the queue was removed with entries unsynced"));
        };
        if let Err(e) = file.sync_data() {
            // A failed fsync may have dropped pages: nothing after the last
            // good one is trusted until the store is reopened.
            self.state.lock().failed = Some(e.to_string());
            return Err(self.io("fsync message cache", e));
        }
        *synced = target;
        Ok(())
    }

    fn create_file(&self) -> Result<Arc<dyn VFile>> {
        let dir = self.store_dir.join(CACHE_DIR);
        self.vfs
            .create_dir_all(&dir)
            .map_err(|e| Error::io(&dir, "create directory", e))?;
        let file = self
            .vfs
            .create_new(&self.path)
            .map_err(|e| self.io("create message cache", e))?;
        file.write_all_at(&encode_header(&self.store_id, self.version()), 0)
            .and_then(|_| file.sync_data())
            .map_err(|e| self.io("write message cache", e))?;
        for d in [&dir, &self.store_dir] {
            self.vfs
                .sync_dir(d)
                .map_err(|e| Error::io(d, "fsync directory", e))?;
        }
        *self.synced.lock() = HEADER_BYTES;
        Ok(file)
    }
}

impl QueueGuard<'_> {
    /// The newest pending reference of an item.
    pub(crate) fn reference(&self, owner: &str, item: &str) -> Option<SavesetId> {
        self.state
            .references
            .get(&(owner.to_string(), item.to_string()))
            .map(|(id, _)| *id)
    }

    /// True when the cache serves content `id`.
    pub(crate) fn has(&self, id: &SavesetId) -> bool {
        self.state.serves(id).is_some()
    }

    /// True when a pending entry replaces an item's content: content the
    /// segments hold may then die when it is processed.
    pub(crate) fn replaces_pending(&self) -> bool {
        self.state.replaces > 0
    }

    /// Where the queue ends: what a sync must cover for everything
    /// appended so far.
    pub(crate) fn end(&self) -> u64 {
        self.state.end
    }

    /// Append an entry (not yet durable: see [`MessageCache::sync_upto`]);
    /// returns where it ends.
    pub(crate) fn append(&mut self, entry: &CacheEntry<'_>) -> Result<u64> {
        let cache = self.cache;
        if cache.read_only {
            return Err(Error::ReadOnly {
                path: cache.store_dir.clone(),
            });
        }
        if let Some(f) = &self.state.failed {
            return Err(cache.corrupt(format!("writes stopped: {f}")));
        }
        let file = match self.state.file.clone() {
            Some(f) => f,
            None => {
                let f = cache.create_file()?;
                self.state.file = Some(f.clone());
                self.state.end = HEADER_BYTES;
                f
            }
        };
        let at = self.state.end;
        let bytes = match cache.sealing.keys() {
            Some(keys) => {
                let sealed = keys.seal_side_at(&QUEUE_MAGIC, at, &encode_entry(entry))?;
                encode_entry(&CacheEntry::Sealed { body: &sealed })
            }
            None => encode_entry(entry),
        };
        if let Err(e) = file.write_all_at(&bytes, at) {
            let _ = file.set_len(at);
            return Err(cache.io("append message cache", e));
        }
        let end = at + bytes.len() as u64;
        self.state.end = end;
        self.state.take(entry, at, end);
        Ok(end)
    }
}

impl QueueState {
    /// Where the cache serves content `id` from: a pending entry that holds
    /// it, or any entry of the file when a pending reference refers to it
    /// (the segments may have let it die since: processing stores it again).
    fn serves(&self, id: &SavesetId) -> Option<ContentAt> {
        if let Some((at, _)) = self.contents.get(id) {
            return Some(*at);
        }
        self.held
            .get(id)
            .copied()
            .filter(|_| self.referenced.contains_key(id))
    }

    /// Take an entry that begins at `at` and ends at `end` into the view.
    fn take(&mut self, entry: &CacheEntry<'_>, at: u64, end: u64) {
        let content_at = |c: &CachedContent<'_>, body_before: u64| ContentAt {
            offset: at + ENTRY_HEADER_BYTES as u64 + body_before,
            len: c.payload.len() as u64,
            codec: c.codec,
            logical_len: c.logical_len,
            entry: (at, end),
        };
        let queued = match entry {
            // Opened before it is taken (`plain_entry`).
            CacheEntry::Sealed { .. } => return,
            CacheEntry::Processed { upto } => {
                while self.pending.front().is_some_and(|q| q.end <= *upto) {
                    if let Some(q) = self.pending.pop_front() {
                        self.forget(&q);
                    }
                }
                return;
            }
            CacheEntry::Put {
                id,
                time_ms,
                content,
            } => Queued {
                end,
                time_ms: *time_ms,
                id: SavesetId(*id),
                reference: None,
                // id, time, codec, logical length.
                content: Some(content_at(content, 32 + 8 + 1 + 8)),
            },
            CacheEntry::Reference {
                id,
                time_ms,
                replace,
                owner,
                item,
                content,
            } => {
                let names = (2 + owner.len() + 2 + item.len()) as u64;
                Queued {
                    end,
                    time_ms: *time_ms,
                    id: SavesetId(*id),
                    reference: Some((owner.to_string(), item.to_string(), *replace)),
                    content: content
                        .as_ref()
                        .map(|c| content_at(c, 32 + 8 + 1 + names + 1 + 8)),
                }
            }
        };
        if let Some(c) = queued.content {
            self.contents.entry(queued.id).or_insert((c, end));
            self.held.entry(queued.id).or_insert(c);
        }
        if let Some((owner, item, replace)) = &queued.reference {
            self.references
                .insert((owner.clone(), item.clone()), (queued.id, end));
            self.replaces += u64::from(*replace);
            *self.referenced.entry(queued.id).or_default() += 1;
        }
        self.pending.push_back(queued);
    }

    /// Drop what a processed entry contributed to the view.
    fn forget(&mut self, q: &Queued) {
        if self.contents.get(&q.id).is_some_and(|(_, e)| *e == q.end) {
            self.contents.remove(&q.id);
        }
        if let Some((owner, item, replace)) = &q.reference {
            self.replaces -= u64::from(*replace);
            if let Some(n) = self.referenced.get_mut(&q.id) {
                *n -= 1;
                if *n == 0 {
                    self.referenced.remove(&q.id);
                }
            }
            let key = (owner.clone(), item.clone());
            if self.references.get(&key).is_some_and(|(_, e)| *e == q.end) {
                self.references.remove(&key);
            }
        }
    }
}

/// Bytes the entry at `at` takes, from its header.
fn entry_len(file: &dyn VFile, at: u64) -> Option<u64> {
    let mut h = [0u8; ENTRY_HEADER_BYTES];
    file.read_exact_at(&mut h, at).ok()?;
    decode_entry_header(&h).ok().map(|(_, total)| total)
}

/// The whole entry at `at`, if its header checks and it fits before `len`.
fn read_entry(file: &dyn VFile, at: u64, len: u64) -> Option<Vec<u8>> {
    let total = entry_len(file, at)?;
    if at.checked_add(total)? > len {
        return None;
    }
    let mut bytes = vec![0u8; total as usize];
    file.read_exact_at(&mut bytes, at).ok()?;
    Some(bytes)
}
