//! The part table: where each part (a decoded attachment shared by split
//! messages) is stored, and how many live savesets list it.
//!
//! Owns part locations, reference counts and the part side of put, get and
//! burial: a composite saveset's parts are written before its recipe (each
//! only if not stored yet), counted once per live saveset that lists them,
//! and a part dies when the last such saveset does. Counts are rebuilt at
//! open from the footers' part maps after the catalog replay decided which
//! savesets live. Changes happen under the store's writer lock. It does not
//! parse MIME ([`crate::parts`] does) or choose what compaction moves.

use std::collections::HashMap;

use crate::engine::{Encoded, Engine};
use crate::error::{Error, Result};
use crate::format::composite::Recipe;
use crate::format::segment::{Codec, RecordKind, decode_payload, encode_payload};
use crate::id::SavesetId;
use crate::index::{IdHash, Index, Location, owned};
use crate::io::VFile;
use crate::log::Writer;
use crate::segment;

/// Locations and reference counts of parts.
#[derive(Default)]
pub(crate) struct PartTable {
    /// Part id → the record the store reads.
    pub(crate) index: Index,
    /// Part id → (live savesets listing it, decoded length).
    refs: HashMap<SavesetId, (u32, u64), IdHash>,
    /// Decoded bytes of live parts.
    live_bytes: u64,
    /// Decoded bytes the live savesets list, counting each listing.
    listed_bytes: u64,
}

impl PartTable {
    /// A blake3 digest of every part's place and its reference count and
    /// length, in id order.
    pub(crate) fn digest(&self) -> [u8; 32] {
        let (index, _) = owned(self.index.digest());
        let mut refs: Vec<(&SavesetId, &(u32, u64))> = self.refs.iter().collect();
        refs.sort_unstable_by_key(|(id, _)| id.0);
        let mut h = blake3::Hasher::new();
        h.update(&index);
        for (id, (count, len)) in refs {
            h.update(&id.0);
            h.update(&count.to_le_bytes());
            h.update(&len.to_le_bytes());
        }
        *h.finalize().as_bytes()
    }
}

/// Part figures for `stat`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PartTotals {
    pub(crate) parts: u64,
    pub(crate) live_bytes: u64,
    pub(crate) listed_bytes: u64,
}

impl PartTable {
    /// One more live saveset lists these parts (distinct ids).
    pub(crate) fn reference(&mut self, parts: &[(SavesetId, u64)]) {
        for &(id, len) in parts {
            let e = self.refs.entry(id).or_insert((0, len));
            if e.0 == 0 {
                self.live_bytes += len;
            }
            e.0 += 1;
            self.listed_bytes += len;
        }
    }

    /// A saveset listing these parts died; returns the parts now unlisted.
    pub(crate) fn release(&mut self, parts: &[SavesetId]) -> Vec<SavesetId> {
        let mut dead = Vec::new();
        for id in parts {
            if let Some(e) = self.refs.get_mut(id) {
                e.0 = e.0.saturating_sub(1);
                self.listed_bytes = self.listed_bytes.saturating_sub(e.1);
                if e.0 == 0 {
                    self.live_bytes = self.live_bytes.saturating_sub(e.1);
                    self.refs.remove(id);
                    dead.push(*id);
                }
            }
        }
        dead
    }

    /// Live savesets listing `id`.
    pub(crate) fn ref_count(&self, id: &SavesetId) -> u32 {
        self.refs.get(id).map_or(0, |e| e.0)
    }

    pub(crate) fn totals(&self) -> PartTotals {
        PartTotals {
            parts: self.refs.len() as u64,
            live_bytes: self.live_bytes,
            listed_bytes: self.listed_bytes,
        }
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        self.index.memory_bytes() + self.refs.capacity() * 56
    }

    /// Every part's (id, live savesets listing it, decoded length), by id.
    pub(crate) fn refs_sorted(&self) -> Vec<([u8; 32], u32, u64)> {
        let mut v: Vec<([u8; 32], u32, u64)> = self
            .refs
            .iter()
            .map(|(id, (count, len))| (id.0, *count, *len))
            .collect();
        v.sort_unstable();
        v
    }

    /// The table a checkpoint holds: its index and reference counts.
    pub(crate) fn from_checkpoint(index: Index, refs: Vec<([u8; 32], u32, u64)>) -> PartTable {
        let mut table = PartTable {
            index,
            ..PartTable::default()
        };
        for (id, count, len) in refs {
            if count > 0 {
                table.live_bytes += len;
            }
            table.listed_bytes += u64::from(count) * len;
            table.refs.insert(SavesetId(id), (count, len));
        }
        table
    }
}

/// A part of a message being stored: its id, decoded bytes, and how it is
/// written if it is not stored by then.
pub(crate) struct PreparedPart {
    pub(crate) id: SavesetId,
    pub(crate) data: Vec<u8>,
    pub(crate) payload: PartPayload,
}

/// A prepared part's record payload.
pub(crate) enum PartPayload {
    /// Stored at preparation time: encoded only if it has died since.
    Unprepared,
    /// Written raw: the payload is the decoded bytes themselves (no copy).
    Raw,
    /// Written compressed.
    Zstd(Vec<u8>),
}

/// The split form of a message being stored.
pub(crate) struct PreparedComposite {
    pub(crate) message_len: u64,
    pub(crate) recipe_len: u64,
    pub(crate) parts: Vec<PreparedPart>,
}

impl PreparedComposite {
    fn part_ids(&self) -> Vec<[u8; 32]> {
        self.parts.iter().map(|p| p.id.0).collect()
    }
}

impl Engine {
    /// Split `content` if it is a MIME message worth splitting: returns
    /// the encoded recipe and the parts (compressed where not stored yet).
    pub(crate) fn prepare_composite(
        &self,
        content: &[u8],
        id: &SavesetId,
        level: i32,
    ) -> Option<(Encoded<'static>, PreparedComposite)> {
        let split = crate::parts::split_hashed(content, id)?;
        let recipe = split.recipe.encode();
        let stored: Vec<bool> = {
            let table = self.parts.read();
            split
                .recipe
                .parts
                .iter()
                .map(|p| owned(table.index.contains(&SavesetId(p.id))))
                .collect()
        };
        let parts = split
            .recipe
            .parts
            .iter()
            .zip(split.parts)
            .zip(stored)
            .map(|((p, data), stored)| {
                let payload = match stored {
                    true => PartPayload::Unprepared,
                    false => match encode_payload(&data, level) {
                        (Codec::Zstd, compressed) => PartPayload::Zstd(compressed.into_owned()),
                        (Codec::Raw, _) => PartPayload::Raw,
                    },
                };
                PreparedPart {
                    id: SavesetId(p.id),
                    data,
                    payload,
                }
            })
            .collect();
        let (codec, payload) = encode_payload(&recipe, level);
        let encoded = (codec, std::borrow::Cow::Owned(payload.into_owned()));
        Some((
            encoded,
            PreparedComposite {
                message_len: content.len() as u64,
                recipe_len: recipe.len() as u64,
                parts,
            },
        ))
    }

    /// Append the parts not stored yet, then the composite record; returns
    /// its location and sequence. Holds the writer lock (the caller's).
    pub(crate) fn append_composite_locked(
        &self,
        w: &mut Writer,
        id: SavesetId,
        composite: &PreparedComposite,
        (codec, recipe): &Encoded<'_>,
    ) -> Result<(Location, u64)> {
        let level = self.log.manifest().compression_level;
        for part in &composite.parts {
            if owned(self.parts.read().index.contains(&part.id)) {
                continue;
            }
            let fresh;
            let (codec, payload) = match &part.payload {
                PartPayload::Zstd(p) => (Codec::Zstd, p.as_slice()),
                PartPayload::Raw => (Codec::Raw, part.data.as_slice()),
                PartPayload::Unprepared => {
                    fresh = encode_payload(&part.data, level);
                    (fresh.0, fresh.1.as_ref())
                }
            };
            let (loc, _) = self.log.append_record_locked(
                w,
                RecordKind::Part,
                part.id,
                codec,
                payload,
                part.data.len() as u64,
            )?;
            self.parts.write().index.insert(part.id, loc);
        }
        let (loc, seq) = self.log.append_record_locked(
            w,
            RecordKind::Composite,
            id,
            *codec,
            recipe,
            composite.recipe_len,
        )?;
        w.set_part_list(loc, composite.message_len, composite.part_ids());
        self.log
            .note_composite_logical(loc, composite.message_len, composite.recipe_len);
        let listed: Vec<(SavesetId, u64)> = composite
            .parts
            .iter()
            .map(|p| (p.id, p.data.len() as u64))
            .collect();
        self.parts.write().reference(&listed);
        Ok((loc, seq))
    }

    /// The saveset at `loc` (a composite record with header `h` and
    /// `payload`) rebuilt from its parts; damage names the part, its
    /// segment and offset.
    pub(crate) fn rebuild_composite(
        &self,
        loc: Location,
        h: &crate::format::segment::RecordHeader,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>> {
        let offset = loc.offset as u64;
        let decoded = decode_payload(h.codec, payload, h.logical_len)
            .map_err(|d| Error::corrupt(loc.segment, offset, d))?;
        let recipe =
            Recipe::decode(&decoded).map_err(|d| Error::corrupt(loc.segment, offset, d))?;
        let mut parts = Vec::with_capacity(recipe.parts.len());
        for p in &recipe.parts {
            parts.push(self.read_part(loc, &SavesetId(p.id))?);
        }
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        crate::parts::rebuild(&recipe, &refs).ok_or_else(|| {
            Error::corrupt(
                loc.segment,
                offset,
                "recipe does not match its parts' lengths",
            )
        })
    }

    /// The decoded bytes of part `id`, listed by the composite at `from`.
    fn read_part(&self, from: Location, id: &SavesetId) -> Result<Vec<u8>> {
        let located = self
            .log
            .locate_with(|| self.parts.read().index.get(id))
            .map_err(|e| match e {
                Error::Corrupt {
                    segment,
                    offset,
                    detail,
                } => Error::corrupt(segment, offset, format!("part {id}: {detail}")),
                other => other,
            })?;
        let Some((loc, file, limit, _)) = located else {
            return Err(Error::corrupt(
                from.segment,
                from.offset as u64,
                format!("part {id} is missing"),
            ));
        };
        read_part_at(
            &*file,
            limit,
            loc,
            id,
            self.log.verifies_hashes(),
            self.log.sealing(),
        )
    }

    /// The message length and distinct part ids a composite record at
    /// `loc` lists (read from disk).
    pub(crate) fn parts_listed_at(&self, loc: Location) -> Result<(u64, Vec<SavesetId>)> {
        let (file, limit) = self
            .log
            .segment_file(loc.segment)
            .ok_or_else(|| Error::corrupt(loc.segment, loc.offset as u64, "segment is missing"))?;
        let (h, payload) = segment::read_record_at(
            &*file,
            loc.segment,
            loc.offset as u64,
            limit,
            self.log.sealing(),
        )?;
        let (len, ids) = segment::part_list_of(&h, &payload)
            .map_err(|d| Error::corrupt(loc.segment, loc.offset as u64, d))?;
        Ok((len, ids.into_iter().map(SavesetId).collect()))
    }

    /// A composite saveset listing `ids` died: its parts lose a listing,
    /// and the ones no live saveset lists any more die too.
    pub(crate) fn release_parts(&self, ids: &[SavesetId]) {
        let _w = self.log.lock_writer();
        let dead = self.parts.write().release(ids);
        for id in dead {
            let removed = owned(self.parts.write().index.remove(&id));
            if let Some(part_loc) = removed {
                self.count_dead(part_loc);
            }
        }
    }
}

/// Read, check and decode the part record at `loc`.
fn read_part_at(
    file: &dyn VFile,
    limit: u64,
    loc: Location,
    id: &SavesetId,
    verify_hash: bool,
    sealing: &crate::crypto::Sealing,
) -> Result<Vec<u8>> {
    let offset = loc.offset as u64;
    let named = |d: String| Error::corrupt(loc.segment, offset, format!("part {id}: {d}"));
    let (h, payload) = segment::read_record_at(file, loc.segment, offset, limit, sealing)
        .map_err(|e| named(segment::detail_of(e)))?;
    if h.kind != RecordKind::Part || h.id != id.0 {
        return Err(named(
            "record does not hold the part the index points to".into(),
        ));
    }
    let data = decode_payload(h.codec, payload, h.logical_len).map_err(named)?;
    if verify_hash && SavesetId::of(&data) != *id {
        return Err(named("hash mismatch".into()));
    }
    Ok(data)
}
