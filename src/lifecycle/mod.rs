//! The lifecycle: archive bits, backup marks, the pending-item lifecycle
//! and the post-processing feed (state kept over the log).
//!
//! Owns what makes the archiving server safe to replace a mailbox item by a
//! shortcut: which segments still need backing up (their archive bit), which
//! savesets await indexing, which became ready for post-processing and how
//! far the server has consumed that feed. Every change is a state batch
//! record in the segment log (format-spec/state.md), replayed in sequence
//! order at open. It reads segment files only to checksum them; it never
//! writes into the store's segments itself, and must not import the
//! processes above it (the built-in backup run is the `backup` process).
//!
//! Lifecycle of a saveset: Stored → IndexCommitted (the indexer calls
//! `mark_indexed`) → BackupComplete (its segment's archive bit was cleared).
//! With the "remove safety copies" setting `after-backup` (the default) a
//! saveset is ready for post-processing once BackupComplete; with
//! `immediately`, once Stored.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::Serialize;

use crate::catalog::Reference;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::format::manifest::BackupDetection;
use crate::format::state::StateOp;
use crate::id::SavesetId;
use crate::index::IdHash;
use crate::io::VFile;
use crate::log::SegmentState;
use crate::units::now_ms;

mod checkpoint;

pub(crate) use checkpoint::LifecycleSnapshot;

/// When the archiving server may remove a mailbox's safety copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SafetyCopies {
    /// Once the saveset is backed up (BackupComplete).
    #[default]
    AfterBackup,
    /// As soon as the saveset is stored.
    Immediately,
}

impl FromStr for SafetyCopies {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "after-backup" => Ok(SafetyCopies::AfterBackup),
            "immediately" => Ok(SafetyCopies::Immediately),
            other => Err(Error::InvalidSetting(format!(
                "remove safety copies must be after-backup or immediately, not {other:?}"
            ))),
        }
    }
}

impl fmt::Display for SafetyCopies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SafetyCopies::AfterBackup => "after-backup",
            SafetyCopies::Immediately => "immediately",
        })
    }
}

/// A position in the post-processing feed: the sequence of a feed event
/// (a backup mark, or a stored saveset) and how many of its entries come
/// before the position. Written `SEQUENCE.INDEX`; `0.0` is the beginning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Cursor {
    /// Sequence of the feed event.
    pub sequence: u64,
    /// Entries of that event before the position.
    pub index: u64,
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.sequence, self.index)
    }
}

impl FromStr for Cursor {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::InvalidSetting(format!("cursor {s:?} is not SEQUENCE.INDEX"));
        let (a, b) = s.trim().split_once('.').ok_or_else(bad)?;
        Ok(Cursor {
            sequence: a.parse().map_err(|_| bad())?,
            index: b.parse().map_err(|_| bad())?,
        })
    }
}

impl Serialize for Cursor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A change to the store's state settings; `None` leaves one as it is.
#[derive(Debug, Clone, Default)]
pub struct StateChange {
    /// Enter or leave the read-only state.
    pub read_only: Option<bool>,
    /// How backups of sealed segments are detected.
    pub backup_detection: Option<BackupDetection>,
    /// The longest backup mode lasts before it turns itself off.
    pub backup_mode_max: Option<std::time::Duration>,
    /// Log records after the newest sync cache generation that make a new one due.
    pub checkpoint_after_records: Option<u64>,
}

/// A sealed segment whose archive bit is set, as `backup list` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct BackupEntry {
    /// Segment id.
    pub segment: u32,
    /// The file to copy.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// blake3-256 of the file, hex: give it back to `backup mark`.
    pub checksum: String,
}

/// The operator's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Pending {
    /// Savesets stored but not IndexCommitted.
    pub awaiting_index: u64,
    /// Savesets whose segment has not been backed up.
    pub awaiting_backup: u64,
    /// Savesets ready for post-processing that the feed has not had acknowledged.
    pub ready_for_post_processing: u64,
    /// The setting in force.
    pub remove_safety_copies: SafetyCopies,
}

/// One reason savesets wait, as `pending --explain` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct PendingReason {
    /// `awaiting_index`, `awaiting_backup`, `segment_active`,
    /// `read_only_state` or `feed_not_acknowledged`.
    pub reason: &'static str,
    /// What the operator reads: what it waits for and what ends it.
    pub detail: String,
    /// Live savesets waiting for this.
    pub savesets: u64,
    /// When the oldest of them was stored, at the latest (its segment's
    /// creation), Unix ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_ms: Option<u64>,
    /// The segment this reason is about, if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segment: Option<u32>,
    /// Up to the asked number of the savesets, oldest segment first.
    pub items: Vec<String>,
}

/// Why savesets are pending: the counters and each reason.
#[derive(Debug, Clone, Serialize)]
pub struct PendingExplained {
    /// The counters `pending` shows.
    pub counters: Pending,
    /// Every reason that holds savesets back now, in lifecycle order.
    pub reasons: Vec<PendingReason>,
}

/// One entry of the post-processing feed.
#[derive(Debug, Clone, Serialize)]
pub struct FeedEntry {
    /// The saveset.
    pub id: String,
    /// The references it belongs to now (empty if it died meanwhile).
    pub references: Vec<Reference>,
}

/// A page of the feed and the cursor to ask from (and to acknowledge) next.
#[derive(Debug, Clone, Serialize)]
pub struct FeedPage {
    /// Ready savesets, in feed order.
    pub entries: Vec<FeedEntry>,
    /// The position after the last entry.
    pub cursor: Cursor,
}

#[derive(Debug, Clone)]
enum FeedEvent {
    /// Segments were backed up by one state record: their saveset records
    /// become ready, segment after segment.
    Mark {
        sequence: u64,
        segments: Vec<(u32, u64)>,
    },
    /// A saveset was stored under `immediately`.
    Stored { sequence: u64, id: SavesetId },
}

impl FeedEvent {
    fn sequence(&self) -> u64 {
        match self {
            FeedEvent::Mark { sequence, .. } | FeedEvent::Stored { sequence, .. } => *sequence,
        }
    }
    fn entries(&self) -> u64 {
        match self {
            FeedEvent::Mark { segments, .. } => segments.iter().map(|s| s.1).sum(),
            FeedEvent::Stored { .. } => 1,
        }
    }
}

/// Lifecycle state, rebuilt by replay; guarded by the store.
#[derive(Debug, Default)]
pub(crate) struct Lifecycle {
    awaiting_index: HashSet<SavesetId, IdHash>,
    marked: HashMap<u32, [u8; 32]>,
    mode: SafetyCopies,
    /// Feed events not yet fully acknowledged, in sequence order.
    events: Vec<FeedEvent>,
    ack: Cursor,
    checksums: HashMap<u32, [u8; 32]>,
    /// Segments written by compaction from backed-up segments: their
    /// savesets stay BackupComplete although the archive bit is set.
    complete: HashSet<u32>,
    /// The saveset records of segments in unacknowledged feed events, read
    /// from their footers once (such a segment is never compacted, so the
    /// list cannot change); dropped when the feed is acknowledged past them.
    feed_ids: HashMap<u32, std::sync::Arc<Vec<SavesetId>>>,
}

impl Lifecycle {
    /// A blake3 digest of the whole lifecycle: savesets awaiting indexing,
    /// backup marks and checksums, segments kept complete, the mode, the
    /// feed's events and its acknowledged cursor.
    pub(crate) fn digest(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        let mut waiting: Vec<&SavesetId> = self.awaiting_index.iter().collect();
        waiting.sort_unstable_by_key(|id| id.0);
        for id in waiting {
            h.update(&id.0);
        }
        // `checksums` is a cache of file hashes, not state: left out.
        for map in [&self.marked] {
            let mut entries: Vec<(&u32, &[u8; 32])> = map.iter().collect();
            entries.sort_unstable();
            h.update(&(entries.len() as u64).to_le_bytes());
            for (segment, sum) in entries {
                h.update(&segment.to_le_bytes());
                h.update(sum);
            }
        }
        let mut complete: Vec<&u32> = self.complete.iter().collect();
        complete.sort_unstable();
        for s in complete {
            h.update(&s.to_le_bytes());
        }
        h.update(self.mode.to_string().as_bytes());
        for e in &self.events {
            match e {
                FeedEvent::Mark { sequence, segments } => {
                    h.update(&sequence.to_le_bytes());
                    for (s, n) in segments {
                        h.update(&s.to_le_bytes());
                        h.update(&n.to_le_bytes());
                    }
                }
                FeedEvent::Stored { sequence, id } => {
                    h.update(&sequence.to_le_bytes());
                    h.update(&id.0);
                }
            }
        }
        h.update(self.ack.to_string().as_bytes());
        *h.finalize().as_bytes()
    }

    /// A saveset record was appended (or replayed).
    pub(crate) fn on_stored(&mut self, id: SavesetId, sequence: u64) {
        self.awaiting_index.insert(id);
        if self.mode == SafetyCopies::Immediately {
            self.events.push(FeedEvent::Stored { sequence, id });
        }
    }

    /// A saveset died.
    pub(crate) fn on_dead(&mut self, id: &SavesetId) {
        self.awaiting_index.remove(id);
    }

    /// True when the segment's archive bit is cleared.
    pub(crate) fn is_marked(&self, segment: u32) -> bool {
        self.marked.contains_key(&segment)
    }

    /// True when the savesets in `segment` are BackupComplete: it was
    /// backed up, or compaction filled it from backed-up segments.
    pub(crate) fn is_backup_complete(&self, segment: u32) -> bool {
        self.is_marked(segment) || self.complete.contains(&segment)
    }

    /// Compaction wrote `segment` from backed-up segments.
    pub(crate) fn set_complete(&mut self, segment: u32) {
        self.complete.insert(segment);
    }

    /// Segments that unacknowledged feed events still read their entries
    /// from: compaction must leave them in place.
    pub(crate) fn segments_in_feed(&self) -> HashSet<u32> {
        self.events
            .iter()
            .filter_map(|e| match e {
                FeedEvent::Mark { segments, .. } => Some(segments.iter().map(|s| s.0)),
                FeedEvent::Stored { .. } => None,
            })
            .flatten()
            .collect()
    }

    /// Compaction deleted these segments.
    pub(crate) fn forget_segments(&mut self, segments: &[u32]) {
        for s in segments {
            self.marked.remove(s);
            self.complete.remove(s);
            self.checksums.remove(s);
        }
    }

    /// Apply a state change that passed its checks; `entries` is the number
    /// of saveset records of a marked segment.
    pub(crate) fn apply(&mut self, op: &StateOp, sequence: u64, entries: impl Fn(u32) -> u64) {
        match op {
            StateOp::Indexed { ids } => {
                for id in ids {
                    self.awaiting_index.remove(&SavesetId(*id));
                }
            }
            StateOp::BackupMark {
                segment, checksum, ..
            } => {
                let already_complete = self.complete.contains(segment);
                let n = if already_complete {
                    0
                } else {
                    entries(*segment)
                };
                // A segment compaction removed, or one whose savesets were
                // BackupComplete already, gives the feed nothing.
                if self.marked.insert(*segment, *checksum).is_none()
                    && self.mode == SafetyCopies::AfterBackup
                    && n > 0
                {
                    // Marks of one record share its sequence: one feed event.
                    match self.events.last_mut() {
                        Some(FeedEvent::Mark {
                            sequence: s,
                            segments,
                        }) if *s == sequence => segments.push((*segment, n)),
                        _ => self.events.push(FeedEvent::Mark {
                            sequence,
                            segments: vec![(*segment, n)],
                        }),
                    }
                }
            }
            StateOp::FeedAck { sequence, index } => {
                self.ack = Cursor {
                    sequence: *sequence,
                    index: *index,
                };
                let ack = self.ack;
                self.events.retain(|e| {
                    e.sequence() > ack.sequence
                        || (e.sequence() == ack.sequence && ack.index < e.entries())
                });
                let waiting: HashSet<u32> = self.segments_in_feed();
                self.feed_ids.retain(|s, _| waiting.contains(s));
            }
            StateOp::SafetyCopies { immediately } => {
                self.mode = if *immediately {
                    SafetyCopies::Immediately
                } else {
                    SafetyCopies::AfterBackup
                };
            }
        }
    }

    fn ready(&self) -> u64 {
        self.events
            .iter()
            .map(|e| {
                let skip = if e.sequence() == self.ack.sequence {
                    self.ack.index
                } else {
                    0
                };
                e.entries().saturating_sub(skip)
            })
            .sum()
    }

    /// The cursor just past the last feed entry.
    fn end(&self) -> Cursor {
        match self.events.last() {
            Some(e) => Cursor {
                sequence: e.sequence(),
                index: e.entries(),
            },
            None => self.ack,
        }
    }
}

pub(crate) fn checksum_mismatch(segment: u32, expected: &[u8; 32], given: &str) -> Error {
    Error::ChecksumMismatch {
        segment,
        expected: hex::encode(expected),
        given: given.chars().take(80).collect(),
    }
}

impl Engine {
    /// The indexer has indexed these savesets: they become IndexCommitted.
    /// Ids not stored are refused (nothing is marked); ids already indexed
    /// are skipped. Returns how many were newly marked.
    pub fn mark_indexed(&self, ids: &[SavesetId]) -> Result<usize> {
        self.check_writable()?;
        if let Some(missing) = ids.iter().find(|id| !self.has(id)) {
            return Err(Error::NotFound(*missing));
        }
        let fresh: Vec<[u8; 32]> = {
            let lc = self.lifecycle.lock();
            let mut seen = HashSet::new();
            ids.iter()
                .filter(|id| lc.awaiting_index.contains(id) && seen.insert(**id))
                .map(|id| id.0)
                .collect()
        };
        if fresh.is_empty() {
            return Ok(0);
        }
        let n = fresh.len();
        self.commit_state(vec![StateOp::Indexed { ids: fresh }])?;
        Ok(n)
    }

    /// Sealed segments whose archive bit is set, with the checksum a backup
    /// tool must give back to `backup_mark`.
    pub fn backup_list(&self) -> Result<Vec<BackupEntry>> {
        let mut out = Vec::new();
        for seg in self.segments() {
            if seg.state != SegmentState::Sealed || seg.damage.is_some() {
                continue;
            }
            if self.lifecycle.lock().is_marked(seg.id) {
                continue;
            }
            let checksum = self.segment_checksum(seg.id)?;
            out.push(BackupEntry {
                segment: seg.id,
                path: seg.path,
                bytes: seg.bytes,
                checksum: hex::encode(checksum),
            });
        }
        Ok(out)
    }

    /// blake3 of a sealed segment file (cached: sealed segments never change).
    pub(crate) fn segment_checksum(&self, segment: u32) -> Result<[u8; 32]> {
        if let Some(c) = self.lifecycle.lock().checksums.get(&segment) {
            return Ok(*c);
        }
        let (path, file, len) = self
            .log
            .segment_handle(segment)
            .ok_or_else(|| Error::InvalidSetting(format!("segment {segment} does not exist")))?;
        let c = hash_file(&*file, len).map_err(|e| Error::io(&path, "read segment", e))?;
        self.lifecycle.lock().checksums.insert(segment, c);
        Ok(c)
    }

    /// A backup tool copied `segment` and gives the checksum of what it
    /// copied: clear its archive bit. A checksum that differs from the
    /// segment's is refused ([`Error::ChecksumMismatch`]), so a segment is
    /// never marked backed up from a bad copy. Marking twice is harmless.
    pub fn backup_mark(&self, segment: u32, checksum_hex: &str) -> Result<()> {
        self.check_writable()?;
        let seg = self
            .segments()
            .into_iter()
            .find(|s| s.id == segment)
            .ok_or_else(|| Error::InvalidSetting(format!("segment {segment} does not exist")))?;
        if seg.state != SegmentState::Sealed {
            return Err(Error::InvalidSetting(format!(
                "segment {segment} is active: only sealed segments can be backed up (run seal first)"
            )));
        }
        let expected = self.segment_checksum(segment)?;
        if hex::encode(expected) != checksum_hex.trim().to_ascii_lowercase() {
            return Err(checksum_mismatch(segment, &expected, checksum_hex));
        }
        if self.lifecycle.lock().is_marked(segment) {
            return Ok(());
        }
        self.commit_state(vec![StateOp::BackupMark {
            segment,
            checksum: expected,
            at_ms: now_ms(),
        }])
    }

    /// Counters for the operator: how many savesets wait for indexing, for
    /// backup, and are ready for post-processing. Ready counts only live
    /// savesets (the server can act on nothing else): exactly what the feed
    /// lists. Segments' record lists are read from their footers once.
    pub fn pending(&self) -> Pending {
        let (awaiting_index, mode, raw_ready) = {
            let lc = self.lifecycle.lock();
            (lc.awaiting_index.len() as u64, lc.mode, lc.ready())
        };
        let awaiting_backup = {
            let lc = self.lifecycle.lock();
            self.log
                .segments_brief()
                .into_iter()
                .filter(|(id, _)| !lc.is_backup_complete(*id))
                .map(|(_, savesets)| savesets)
                .sum()
        };
        let ready = self.live_feed_entries().unwrap_or_else(|e| {
            tracing::warn!("counting the feed's live savesets: {e}");
            raw_ready
        });
        Pending {
            awaiting_index,
            awaiting_backup,
            ready_for_post_processing: ready,
            remove_safety_copies: mode,
        }
    }

    /// Why savesets are pending, reason by reason: the message cache (and
    /// backup mode), the index, each sealed segment not backed up, the
    /// active segment, the read-only state and the feed; `limit` savesets
    /// of each are listed.
    pub fn pending_explained(&self, limit: usize) -> Result<PendingExplained> {
        let counters = self.pending();
        let segments = self.segments();
        let created: HashMap<u32, u64> = segments.iter().map(|s| (s.id, s.created_ms)).collect();
        // Up to `limit` live savesets of each segment, from one pass over the
        // index, only when they are to be listed (the page lists none).
        let mut by_segment: HashMap<u32, Vec<SavesetId>> = HashMap::new();
        if limit > 0 {
            for entry in self.index.read().iter() {
                let (id, loc) = entry?;
                let listed = by_segment.entry(loc.segment).or_default();
                if listed.len() < limit {
                    listed.push(id);
                }
            }
        }
        let mut reasons = Vec::new();
        reasons.extend(self.message_cache_reason(limit));
        reasons.extend(self.awaiting_index_reason(&created, limit));
        let lc_complete: HashSet<u32> = {
            let lc = self.lifecycle.lock();
            segments
                .iter()
                .filter(|s| lc.is_backup_complete(s.id))
                .map(|s| s.id)
                .collect()
        };
        let manifest = self.log.manifest();
        let age = manifest.seal_age_ms;
        let how = match manifest.backup_detection {
            BackupDetection::ArchiveBit => "a backup tool copies it and runs `backup mark`",
            BackupDetection::Trigger => {
                "backup software copies its partition and writes IgnoreArchiveBitTrigger.txt there"
            }
        };
        for seg in &segments {
            if seg.savesets == 0 || lc_complete.contains(&seg.id) {
                continue;
            }
            let ids = by_segment.get(&seg.id).map_or(&[][..], Vec::as_slice);
            let items: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
            let (reason, detail) = if seg.state == SegmentState::Sealed {
                let sealed = self
                    .log
                    .vfs()
                    .modified_ms(&seg.path)
                    .map_or("at an unknown time".into(), |t| {
                        format!("at {}", crate::units::format_time(t))
                    });
                let detail = format!(
                    "segment {} was sealed {sealed} and has never been backed up: {how}",
                    seg.id
                );
                ("awaiting_backup", detail)
            } else {
                let left = seg.created_ms.saturating_add(age).saturating_sub(now_ms());
                let detail = format!(
                    "segment {} is still active: it is sealed when full or in {} (the seal age), then backed up",
                    seg.id,
                    crate::units::format_seconds(left as f64 / 1000.0)
                );
                ("segment_active", detail)
            };
            reasons.push(PendingReason {
                reason,
                detail,
                savesets: seg.savesets,
                oldest_ms: Some(seg.created_ms),
                segment: Some(seg.id),
                items: items.clone(),
            });
            if let Some(since) = self
                .log
                .backup_mode_since()
                .filter(|_| reason == "segment_active")
            {
                reasons.push(PendingReason {
                    reason: "backup_mode",
                    detail: format!(
                        "the store is in backup mode since {}: the active segment is not sealed until `backup mode off`",
                        crate::units::format_time(since)
                    ),
                    savesets: seg.savesets,
                    oldest_ms: Some(seg.created_ms),
                    segment: Some(seg.id),
                    items: items.clone(),
                });
            }
            if reason == "segment_active" && self.log.in_read_only_state() {
                reasons.push(PendingReason {
                    reason: "read_only_state",
                    detail: "the store is in the read-only state: the active segment is not sealed until `settings --read-only off`".into(),
                    savesets: seg.savesets,
                    oldest_ms: Some(seg.created_ms),
                    segment: Some(seg.id),
                    items,
                });
            }
        }
        reasons.extend(self.feed_reason(&counters, limit)?);
        Ok(PendingExplained { counters, reasons })
    }

    /// Items in the message cache: accepted, not yet in the segments.
    fn message_cache_reason(&self, limit: usize) -> Option<PendingReason> {
        let (pending, oldest_ms) = self.cache.pending();
        if pending == 0 {
            return None;
        }
        let (reason, detail) = match self.log.backup_mode_since() {
            Some(since) => (
                "backup_mode",
                format!(
                    "the store is in backup mode since {}: items wait in the message cache until `backup mode off`",
                    crate::units::format_time(since)
                ),
            ),
            None => (
                "message_cache",
                "the message cache has not been processed: \"Processing message cache\" moves its items into the segments".into(),
            ),
        };
        Some(PendingReason {
            reason,
            detail,
            savesets: pending,
            oldest_ms,
            segment: None,
            items: self
                .cache
                .pending_ids(limit)
                .iter()
                .map(SavesetId::to_string)
                .collect(),
        })
    }

    fn awaiting_index_reason(
        &self,
        created: &HashMap<u32, u64>,
        limit: usize,
    ) -> Option<PendingReason> {
        let waiting: Vec<SavesetId> = self
            .lifecycle
            .lock()
            .awaiting_index
            .iter()
            .copied()
            .collect();
        let mut located: Vec<(u64, u32, SavesetId)> = {
            let index = self.index.read();
            waiting
                .iter()
                .filter_map(|id| {
                    let seg = index.get(id).ok().flatten()?.segment;
                    Some((created.get(&seg).copied().unwrap_or(0), seg, *id))
                })
                .collect()
        };
        if located.is_empty() {
            return None;
        }
        located.sort_unstable();
        Some(PendingReason {
            reason: "awaiting_index",
            detail: "stored but not IndexCommitted: the indexer marks them with `mark-indexed` (POST /indexed)".into(),
            savesets: located.len() as u64,
            oldest_ms: located.first().map(|l| l.0),
            segment: None,
            items: located.iter().take(limit).map(|l| l.2.to_string()).collect(),
        })
    }

    fn feed_reason(&self, counters: &Pending, limit: usize) -> Result<Option<PendingReason>> {
        if counters.ready_for_post_processing == 0 {
            return Ok(None);
        }
        let ack = self.lifecycle.lock().ack;
        let mut items = Vec::new();
        self.walk_feed(None, |id| {
            if items.len() >= limit {
                return false;
            }
            if self.has(id) {
                items.push(id.to_string());
            }
            true
        })?;
        Ok(Some(PendingReason {
            reason: "feed_not_acknowledged",
            detail: format!(
                "ready for post-processing, but the archiving server has acknowledged the feed only up to cursor {ack}: it reads `feed` and runs `feed ack`"
            ),
            savesets: counters.ready_for_post_processing,
            oldest_ms: None,
            segment: None,
            items,
        }))
    }

    /// Live savesets among the unacknowledged feed entries.
    fn live_feed_entries(&self) -> Result<u64> {
        let mut live = 0;
        self.walk_feed(None, |id| {
            live += u64::from(self.has(id));
            true
        })?;
        Ok(live)
    }

    /// The saveset records of `segment` (cached while it is in the feed).
    fn feed_ids_of(&self, segment: u32) -> Result<std::sync::Arc<Vec<SavesetId>>> {
        if let Some(ids) = self.lifecycle.lock().feed_ids.get(&segment) {
            return Ok(ids.clone());
        }
        let ids = std::sync::Arc::new(self.saveset_records_of(segment)?);
        self.lifecycle.lock().feed_ids.insert(segment, ids.clone());
        Ok(ids)
    }

    /// Visit the feed's entries after `after` (or the acknowledged cursor)
    /// in order, with the cursor just past each; stop when `visit` says so.
    fn walk_feed_from(
        &self,
        after: Option<Cursor>,
        mut visit: impl FnMut(&SavesetId, Cursor) -> bool,
    ) -> Result<()> {
        let (events, ack) = {
            let lc = self.lifecycle.lock();
            (lc.events.clone(), lc.ack)
        };
        let from = after.map_or(ack, |a| a.max(ack));
        for e in events.iter().filter(|e| e.sequence() >= from.sequence) {
            let start = if e.sequence() == from.sequence {
                from.index
            } else {
                0
            };
            if start >= e.entries() {
                continue;
            }
            let ids: Vec<SavesetId> = match e {
                FeedEvent::Stored { id, .. } => vec![*id],
                FeedEvent::Mark { segments, .. } => {
                    let mut ids = Vec::new();
                    for (segment, _) in segments {
                        ids.extend(self.feed_ids_of(*segment)?.iter().copied());
                    }
                    ids
                }
            };
            for (i, id) in ids.iter().enumerate().skip(start as usize) {
                let cursor = Cursor {
                    sequence: e.sequence(),
                    index: i as u64 + 1,
                };
                if !visit(id, cursor) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn walk_feed(
        &self,
        after: Option<Cursor>,
        mut visit: impl FnMut(&SavesetId) -> bool,
    ) -> Result<()> {
        self.walk_feed_from(after, |id, _| visit(id))
    }

    /// Enter or leave the read-only state, choose how backups are detected,
    /// set the longest backup mode lasts; `None` leaves each as it is. Kept
    /// in the manifest.
    pub(crate) fn set_state(&self, change: &StateChange) -> Result<()> {
        let max_ms = change
            .backup_mode_max
            .map(|d| d.as_millis().min(u64::MAX as u128) as u64);
        if max_ms == Some(0) {
            return Err(Error::InvalidSetting(
                "the maximum duration of backup mode must be more than zero".into(),
            ));
        }
        if change.checkpoint_after_records == Some(0) {
            return Err(Error::InvalidSetting(
                "a checkpoint must be due after at least one log record".into(),
            ));
        }
        self.log.update_manifest(|m| {
            m.checkpoint_after_records = change
                .checkpoint_after_records
                .unwrap_or(m.checkpoint_after_records);
            m.read_only = change.read_only.unwrap_or(m.read_only);
            m.backup_detection = change.backup_detection.unwrap_or(m.backup_detection);
            m.backup_mode_max_ms = max_ms.unwrap_or(m.backup_mode_max_ms);
            Ok(())
        })
    }

    /// The setting in force.
    pub fn safety_copies(&self) -> SafetyCopies {
        self.lifecycle.lock().mode
    }

    /// Change the "remove safety copies" setting. Refused while savesets are
    /// stored but not yet post-processed, because those are the items that
    /// would otherwise stay pending for ever.
    pub fn set_safety_copies(&self, mode: SafetyCopies) -> Result<()> {
        self.check_writable()?;
        let p = self.pending();
        if p.remove_safety_copies == mode {
            return Ok(());
        }
        let stuck = p.ready_for_post_processing
            + if p.remove_safety_copies == SafetyCopies::AfterBackup {
                p.awaiting_backup
            } else {
                0
            };
        if stuck > 0 {
            return Err(Error::InvalidSetting(format!(
                "cannot change remove safety copies from {} to {mode}: {stuck} savesets are stored but not yet post-processed ({} awaiting backup, {} ready and not acknowledged); they would stay pending for ever",
                p.remove_safety_copies, p.awaiting_backup, p.ready_for_post_processing
            )));
        }
        self.commit_state(vec![StateOp::SafetyCopies {
            immediately: mode == SafetyCopies::Immediately,
        }])
    }

    /// Savesets that became ready for post-processing after `after` (the
    /// last acknowledged cursor when `None`, or when `after` is older), at
    /// most `limit`, with the references they belong to.
    pub fn feed(&self, after: Option<Cursor>, limit: usize) -> Result<FeedPage> {
        let ack = self.lifecycle.lock().ack;
        let mut cursor = after.map_or(ack, |a| a.max(ack));
        let mut entries = Vec::new();
        let mut failed = None;
        self.walk_feed_from(after, |id, past| {
            // A saveset purged since it was backed up is gone: there is
            // nothing left for the server to post-process. It is passed over.
            if !self.has(id) {
                cursor = past;
                return true;
            }
            if entries.len() >= limit {
                return false;
            }
            match self.refs(id) {
                Ok(references) => entries.push(FeedEntry {
                    id: id.to_string(),
                    references,
                }),
                Err(e) => {
                    failed = Some(e);
                    return false;
                }
            }
            cursor = past;
            true
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        Ok(FeedPage { entries, cursor })
    }

    /// The archiving server has post-processed everything before `cursor`.
    /// After a crash the feed resumes from the last acknowledged cursor.
    pub fn feed_ack(&self, cursor: Cursor) -> Result<()> {
        self.check_writable()?;
        let (ack, end) = {
            let lc = self.lifecycle.lock();
            (lc.ack, lc.end())
        };
        if cursor < ack || cursor > end {
            return Err(Error::InvalidSetting(format!(
                "cursor {cursor} is outside the feed (acknowledged {ack}, end {end})"
            )));
        }
        if cursor == ack {
            return Ok(());
        }
        self.commit_state(vec![StateOp::FeedAck {
            sequence: cursor.sequence,
            index: cursor.index,
        }])
    }

    /// The saveset records of a segment, in file order (from its footer).
    fn saveset_records_of(&self, segment: u32) -> Result<Vec<SavesetId>> {
        let (path, file, _) = self
            .log
            .segment_handle(segment)
            .ok_or_else(|| Error::corrupt(segment, 0, "segment is missing"))?;
        let loaded = crate::segment::load_sealed(&path, &*file, segment, self.log.sealing())?;
        Ok(loaded
            .entries
            .iter()
            .filter(|e| e.kind.is_saveset())
            .map(|e| SavesetId(e.id))
            .collect())
    }
}

/// blake3 of the first `len` bytes of a file, read in 1 MiB pieces.
pub(crate) fn hash_file(file: &dyn VFile, len: u64) -> std::io::Result<[u8; 32]> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    while at < len {
        let n = (len - at).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], at)?;
        hasher.update(&buf[..n]);
        at += n as u64;
    }
    Ok(*hasher.finalize().as_bytes())
}
