//! The lifecycle in a properties checkpoint (format-spec/checkpoint.md,
//! "Kind 3"): a copy taken under the lifecycle's lock, written without it,
//! and the lifecycle loaded back from the tables.

use std::io::Write;

use super::*;
use crate::format::checkpoint::{BlockChecks, CheckpointWriter, Layout, TableBytes};
use crate::format::sealed_checkpoint::CheckpointFile;
use crate::format::sync_tables::{
    FeedRow, decode_segment, decode_segment_sum, decode_settings, encode_segment,
    encode_segment_sum, encode_settings, properties,
};

/// The lifecycle as it stood at one sequence, sorted.
pub(crate) struct LifecycleSnapshot {
    awaiting_index: Vec<[u8; 32]>,
    marked: Vec<(u32, [u8; 32])>,
    complete: Vec<u32>,
    feed: Vec<FeedRow>,
    immediately: bool,
    ack: Cursor,
}

fn sorted_sums(map: &HashMap<u32, [u8; 32]>) -> Vec<(u32, [u8; 32])> {
    let mut v: Vec<(u32, [u8; 32])> = map.iter().map(|(s, c)| (*s, *c)).collect();
    v.sort_unstable();
    v
}

impl Lifecycle {
    /// Everything but the caches (footers read, file checksums), sorted.
    pub(crate) fn snapshot(&self) -> LifecycleSnapshot {
        let mut awaiting_index: Vec<[u8; 32]> = self.awaiting_index.iter().map(|id| id.0).collect();
        awaiting_index.sort_unstable();
        let mut complete: Vec<u32> = self.complete.iter().copied().collect();
        complete.sort_unstable();
        let feed = self
            .events
            .iter()
            .flat_map(|e| match e {
                FeedEvent::Mark { sequence, segments } => segments
                    .iter()
                    .map(|&(segment, entries)| FeedRow::Mark {
                        sequence: *sequence,
                        segment,
                        entries,
                    })
                    .collect::<Vec<_>>(),
                FeedEvent::Stored { sequence, id } => vec![FeedRow::Stored {
                    sequence: *sequence,
                    id: id.0,
                }],
            })
            .collect();
        LifecycleSnapshot {
            awaiting_index,
            marked: sorted_sums(&self.marked),
            complete,
            feed,
            immediately: self.mode == SafetyCopies::Immediately,
            ack: self.ack,
        }
    }

    /// The lifecycle the tables of `bytes` hold, every block checked.
    pub(crate) fn load_checkpoint(
        file: &CheckpointFile,
        layout: &Layout,
    ) -> std::result::Result<Lifecycle, String> {
        let table = |id: u32| -> std::result::Result<(Vec<&[u8]>, u64), String> {
            let e = layout
                .entry(id)
                .ok_or_else(|| format!("properties table {id} missing"))?;
            let checks = BlockChecks::for_table(e);
            let t = file.table(e, &checks);
            let rows = (0..t.rows())
                .map(|n| t.row(n))
                .collect::<std::result::Result<_, _>>()?;
            Ok((rows, t.rows()))
        };
        let mut l = Lifecycle::default();
        for row in table(properties::AWAITING_INDEX)?.0 {
            let id: [u8; 32] = row.try_into().map_err(|_| "awaiting index row size")?;
            l.awaiting_index.insert(SavesetId(id));
        }
        for row in table(properties::MARKS)?.0 {
            let (s, c) = decode_segment_sum(row)?;
            l.marked.insert(s, c);
        }
        for row in table(properties::COMPLETE)?.0 {
            l.complete.insert(decode_segment(row)?);
        }
        for row in table(properties::FEED)?.0 {
            match FeedRow::decode(row)? {
                FeedRow::Mark {
                    sequence,
                    segment,
                    entries,
                } => match l.events.last_mut() {
                    Some(FeedEvent::Mark {
                        sequence: s,
                        segments,
                    }) if *s == sequence => segments.push((segment, entries)),
                    _ => l.events.push(FeedEvent::Mark {
                        sequence,
                        segments: vec![(segment, entries)],
                    }),
                },
                FeedRow::Stored { sequence, id } => l.events.push(FeedEvent::Stored {
                    sequence,
                    id: SavesetId(id),
                }),
            }
        }
        let (settings, n) = table(properties::SETTINGS)?;
        let [row] = settings.as_slice() else {
            return Err(format!("{n} settings rows, not 1"));
        };
        let (immediately, (sequence, index)) = decode_settings(row)?;
        l.mode = if immediately {
            SafetyCopies::Immediately
        } else {
            SafetyCopies::AfterBackup
        };
        l.ack = Cursor { sequence, index };
        Ok(l)
    }
}

impl LifecycleSnapshot {
    /// Write the five tables.
    pub(crate) fn write<W: Write>(&self, w: &mut CheckpointWriter<W>) -> std::io::Result<()> {
        w.begin_table(properties::AWAITING_INDEX, 32)?;
        for id in &self.awaiting_index {
            w.row(id)?;
        }
        w.begin_table(properties::MARKS, 40)?;
        for (s, c) in &self.marked {
            w.row(&encode_segment_sum(*s, c))?;
        }
        w.begin_table(properties::COMPLETE, 8)?;
        for s in &self.complete {
            w.row(&encode_segment(*s))?;
        }
        w.begin_table(properties::FEED, FeedRow::BYTES as u32)?;
        for f in &self.feed {
            w.row(&f.encode())?;
        }
        w.begin_table(properties::SETTINGS, 24)?;
        w.row(&encode_settings(
            self.immediately,
            (self.ack.sequence, self.ack.index),
        ))
    }
}
