//! The background process history: an append-only log file with a crc per
//! entry (format-spec/history.md).
//!
//! Owns `history.log` in the store directory: appending entries durably,
//! reading them back (cutting a torn tail), and pruning entries older than
//! the retention by rewriting the file atomically. It knows nothing of the
//! processes themselves.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::indexing_slicing))]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;

use crate::crypto::{SIDE_OVERHEAD, Sealing};
use crate::error::{Error, Result};
use crate::format::Reader;
use crate::io::{VFile, Vfs};

/// File name of the history log in the store directory.
pub const HISTORY_FILE: &str = "history.log";
/// Magic at the start of the file (format-spec/history.md).
pub const HISTORY_MAGIC: [u8; 8] = *b"VSHISTRY";
const HEADER_BYTES: u64 = 16;
/// Largest entry a reader accepts.
pub const MAX_ENTRY_BYTES: u32 = 64 << 10;
/// Largest stored entry: a body and, in an encrypted store, its sealing.
const MAX_STORED_ENTRY_BYTES: u32 = MAX_ENTRY_BYTES + SIDE_OVERHEAD as u32;
/// Largest history file read whole.
pub const MAX_HISTORY_BYTES: u64 = 256 << 20;

/// What an entry says about a process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Status {
    /// The process started.
    Started,
    /// The process finished its work.
    Finished,
    /// The process ended early: the operator's description of why.
    Failed(String),
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Status::Started => f.write_str("Started"),
            Status::Finished => f.write_str("Finished"),
            Status::Failed(text) => f.write_str(text),
        }
    }
}

/// One line of the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// When, Unix milliseconds (UTC).
    pub time_ms: u64,
    /// The run this entry belongs to (Started and its end share it).
    pub run: u64,
    /// The process type's code (see `ProcessType`).
    pub process: u8,
    /// Started, Finished or an error description.
    pub status: Status,
    /// The underlying detail (segment, offset, OS error), when there is one.
    pub detail: Option<String>,
}

impl HistoryEntry {
    fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(64);
        body.extend_from_slice(&self.time_ms.to_le_bytes());
        body.extend_from_slice(&self.run.to_le_bytes());
        body.push(self.process);
        let (code, text) = match &self.status {
            Status::Started => (0u8, ""),
            Status::Finished => (1, ""),
            Status::Failed(t) => (2, t.as_str()),
        };
        body.push(code);
        put_text(&mut body, text);
        put_text(&mut body, self.detail.as_deref().unwrap_or(""));
        body
    }

    /// The entry as stored: length, crc and the body, sealed in an
    /// encrypted store (format-spec/encryption.md, "Side files").
    fn frame(&self, sealing: &Sealing) -> Result<Vec<u8>> {
        let body = match sealing.keys() {
            Some(keys) => keys.seal_side(&HISTORY_MAGIC, &self.encode())?,
            None => self.encode(),
        };
        let mut out = Vec::with_capacity(body.len() + 8);
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        out.extend_from_slice(&body);
        Ok(out)
    }

    fn decode(body: &[u8]) -> Option<HistoryEntry> {
        let mut r = Reader::new(body);
        let time_ms = r.u64()?;
        let run = r.u64()?;
        let process = r.u8()?;
        let code = r.u8()?;
        let text = get_text(&mut r)?;
        let detail = get_text(&mut r)?;
        if r.remaining() != 0 {
            return None;
        }
        let status = match code {
            0 => Status::Started,
            1 => Status::Finished,
            2 => Status::Failed(text),
            _ => return None,
        };
        Some(HistoryEntry {
            time_ms,
            run,
            process,
            status,
            detail: (!detail.is_empty()).then_some(detail),
        })
    }
}

fn put_text(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    let b = b.get(..b.len().min(u16::MAX as usize)).unwrap_or_default();
    out.extend_from_slice(&(b.len() as u16).to_le_bytes());
    out.extend_from_slice(b);
}

fn get_text(r: &mut Reader<'_>) -> Option<String> {
    let n = r.u16()? as usize;
    String::from_utf8(r.take(n)?.to_vec()).ok()
}

/// Decode a whole history file of a store sealed as `sealing` says.
/// Returns the entries and the offset where valid entries end (a torn,
/// damaged or, when encrypted, unauthentic tail starts there).
pub fn decode_history(
    bytes: &[u8],
    sealing: &Sealing,
) -> std::result::Result<(Vec<HistoryEntry>, u64), String> {
    let mut r = Reader::new(bytes);
    if r.take(8) != Some(&HISTORY_MAGIC[..]) || bytes.len() < HEADER_BYTES as usize {
        return Err("not a history log (bad magic)".into());
    }
    let version = r.u32().unwrap_or(0);
    if version != history_version(sealing) {
        return Err(format!(
            "history format version {version} is not this store's ({})",
            history_version(sealing)
        ));
    }
    let mut entries = Vec::new();
    let mut at = HEADER_BYTES as usize;
    let mut r = Reader::new(bytes.get(at..).unwrap_or_default());
    // Each entry: length, crc, body; a torn or damaged one ends the log.
    while let (Some(len), Some(crc)) = (r.u32(), r.u32()) {
        let Some(stored) = r
            .take(len as usize)
            .filter(|_| len <= MAX_STORED_ENTRY_BYTES)
        else {
            break;
        };
        if crc32fast::hash(stored) != crc {
            break;
        }
        let body = match sealing.keys() {
            Some(keys) => match keys.open_side(&HISTORY_MAGIC, stored) {
                Ok(body) => std::borrow::Cow::Owned(body),
                Err(_) => break,
            },
            None => std::borrow::Cow::Borrowed(stored),
        };
        match HistoryEntry::decode(&body).filter(|_| body.len() <= MAX_ENTRY_BYTES as usize) {
            Some(e) => entries.push(e),
            None => break,
        }
        at += 8 + len as usize;
    }
    Ok((entries, at as u64))
}

/// Version 1 in the clear, 2 sealed (format-spec/history.md).
fn history_version(sealing: &Sealing) -> u32 {
    match sealing {
        Sealing::Plain => crate::format::FORMAT_VERSION,
        Sealing::Encrypted(_) => crate::format::ENCRYPTED_FORMAT_VERSION,
    }
}

fn header(sealing: &Sealing) -> [u8; HEADER_BYTES as usize] {
    let mut h = [0u8; HEADER_BYTES as usize];
    h[..8].copy_from_slice(&HISTORY_MAGIC);
    h[8..12].copy_from_slice(&history_version(sealing).to_le_bytes());
    h
}

/// The open history log.
pub struct HistoryLog {
    vfs: Arc<dyn Vfs>,
    path: PathBuf,
    sealing: Sealing,
    state: Mutex<LogState>,
}

struct LogState {
    file: Option<Arc<dyn VFile>>,
    end: u64,
    entries: Vec<HistoryEntry>,
}

impl HistoryLog {
    /// Open (creating if needed, unless `read_only`) the log in `dir` of a
    /// store sealed as `sealing` says. A damaged or torn tail is cut off
    /// (when writable) and reported.
    pub fn open(
        vfs: Arc<dyn Vfs>,
        dir: &Path,
        read_only: bool,
        sealing: Sealing,
    ) -> Result<(HistoryLog, Option<String>)> {
        let path = dir.join(HISTORY_FILE);
        let mut note = None;
        let (entries, end, file) = if vfs.exists(&path) {
            let bytes = vfs
                .read_small(&path, MAX_HISTORY_BYTES)
                .map_err(|e| Error::io(&path, "read history", e))?;
            match decode_history(&bytes, &sealing) {
                Ok((entries, end)) => {
                    if end < bytes.len() as u64 {
                        note = Some(format!(
                            "{}: {} damaged bytes at the end cut off at offset {end}",
                            path.display(),
                            bytes.len() as u64 - end
                        ));
                    }
                    let file = if read_only {
                        None
                    } else {
                        let f = vfs
                            .open_rw(&path)
                            .map_err(|e| Error::io(&path, "open history", e))?;
                        if end < bytes.len() as u64 {
                            f.set_len(end)
                                .and_then(|_| f.sync_data())
                                .map_err(|e| Error::io(&path, "truncate history", e))?;
                        }
                        Some(f)
                    };
                    (entries, end, file)
                }
                Err(detail) => {
                    // The history is information, not data: a damaged header
                    // is reported and a fresh log replaces it.
                    note = Some(format!(
                        "{}: {detail}; starting a new history",
                        path.display()
                    ));
                    let file = if read_only {
                        None
                    } else {
                        Some(Self::create(&*vfs, &path, true, &sealing)?)
                    };
                    (Vec::new(), HEADER_BYTES, file)
                }
            }
        } else {
            let file = if read_only {
                None
            } else {
                Some(Self::create(&*vfs, &path, false, &sealing)?)
            };
            (Vec::new(), HEADER_BYTES, file)
        };
        Ok((
            HistoryLog {
                vfs,
                path,
                sealing,
                state: Mutex::new(LogState { file, end, entries }),
            },
            note,
        ))
    }

    fn create(
        vfs: &dyn Vfs,
        path: &Path,
        replace: bool,
        sealing: &Sealing,
    ) -> Result<Arc<dyn VFile>> {
        if replace {
            vfs.write_atomic(path, &header(sealing))
                .map_err(|e| Error::io(path, "write history", e))?;
            return vfs
                .open_rw(path)
                .map_err(|e| Error::io(path, "open history", e));
        }
        let f = vfs
            .create_new(path)
            .map_err(|e| Error::io(path, "create history", e))?;
        f.write_all_at(&header(sealing), 0)
            .and_then(|_| f.sync_data())
            .map_err(|e| Error::io(path, "write history", e))?;
        if let Some(dir) = path.parent() {
            let _ = vfs.sync_dir(dir);
        }
        Ok(f)
    }

    /// Append an entry durably.
    pub fn append(&self, entry: HistoryEntry) -> Result<()> {
        let mut st = self.state.lock();
        let Some(file) = st.file.clone() else {
            return Err(Error::ReadOnly {
                path: self.path.clone(),
            });
        };
        let bytes = entry.frame(&self.sealing)?;
        let end = st.end;
        if let Err(e) = file
            .write_all_at(&bytes, end)
            .and_then(|_| file.sync_data())
        {
            let _ = file.set_len(end);
            return Err(Error::io(&self.path, "append history", e));
        }
        st.end += bytes.len() as u64;
        st.entries.push(entry);
        Ok(())
    }

    /// Entries at or after `since_ms`, newest first.
    pub fn since(&self, since_ms: u64) -> Vec<HistoryEntry> {
        let st = self.state.lock();
        let mut out: Vec<HistoryEntry> = st
            .entries
            .iter()
            .filter(|e| e.time_ms >= since_ms)
            .cloned()
            .collect();
        // Newest first; entries of the same millisecond keep their append
        // order reversed (a stable sort of the reversed log).
        out.reverse();
        out.sort_by_key(|e| std::cmp::Reverse(e.time_ms));
        out
    }

    /// Every entry, oldest first.
    pub fn all(&self) -> Vec<HistoryEntry> {
        self.state.lock().entries.clone()
    }

    /// The log as a file that holds only runs that have ended: what a backup
    /// copies, so that a restored store does not show the runs that were
    /// going on during the copy (the backup itself among them) as
    /// interrupted. Entries keep their order (sealed afresh when encrypted).
    pub fn closed_runs_file(&self) -> Result<Vec<u8>> {
        let st = self.state.lock();
        let ended: std::collections::HashSet<u64> = st
            .entries
            .iter()
            .filter(|e| e.status != Status::Started)
            .map(|e| e.run)
            .collect();
        self.file_of(st.entries.iter().filter(|e| ended.contains(&e.run)))
    }

    /// A whole log file holding `entries`.
    fn file_of<'a>(&self, entries: impl Iterator<Item = &'a HistoryEntry>) -> Result<Vec<u8>> {
        let mut bytes = header(&self.sealing).to_vec();
        for e in entries {
            bytes.extend_from_slice(&e.frame(&self.sealing)?);
        }
        Ok(bytes)
    }

    /// Drop entries older than `before_ms` by rewriting the log atomically.
    /// Returns how many were dropped.
    pub fn prune(&self, before_ms: u64) -> Result<usize> {
        let mut st = self.state.lock();
        if st.file.is_none() {
            return Ok(0);
        }
        let keep: Vec<HistoryEntry> = st
            .entries
            .iter()
            .filter(|e| e.time_ms >= before_ms)
            .cloned()
            .collect();
        let dropped = st.entries.len() - keep.len();
        if dropped == 0 {
            return Ok(0);
        }
        let bytes = self.file_of(keep.iter())?;
        self.vfs
            .write_atomic(&self.path, &bytes)
            .map_err(|e| Error::io(&self.path, "rewrite history", e))?;
        st.file = Some(
            self.vfs
                .open_rw(&self.path)
                .map_err(|e| Error::io(&self.path, "open history", e))?,
        );
        st.end = bytes.len() as u64;
        st.entries = keep;
        Ok(dropped)
    }

    /// The next run number (one more than any recorded).
    pub fn next_run(&self) -> u64 {
        self.state
            .lock()
            .entries
            .iter()
            .map(|e| e.run)
            .max()
            .unwrap_or(0)
            + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(t: u64, status: Status) -> HistoryEntry {
        HistoryEntry {
            time_ms: t,
            run: t,
            process: 3,
            status,
            detail: Some("segment 4 offset 64: crc mismatch".into()),
        }
    }

    fn sealings() -> [Sealing; 2] {
        let keys = crate::crypto::StoreKeys::derive(
            &crate::crypto::MasterKey::from_bytes([7; 32]),
            [1; 16],
        );
        [Sealing::Plain, Sealing::Encrypted(Arc::new(keys))]
    }

    #[test]
    fn entries_round_trip_and_a_torn_tail_is_cut() {
        for sealing in sealings() {
            let mut bytes = header(&sealing).to_vec();
            let entries = vec![
                entry(1, Status::Started),
                entry(2, Status::Finished),
                entry(3, Status::Failed("Database defragmentation failed".into())),
            ];
            for e in &entries {
                bytes.extend_from_slice(&e.frame(&sealing).unwrap());
            }
            let full = bytes.len() as u64;
            assert_eq!(
                decode_history(&bytes, &sealing).unwrap(),
                (entries.clone(), full)
            );
            for cut in HEADER_BYTES as usize..bytes.len() {
                let (got, end) = decode_history(&bytes[..cut], &sealing).unwrap();
                assert!(end <= cut as u64);
                assert_eq!(got[..], entries[..got.len()]);
            }
            let mut flipped = bytes.clone();
            flipped[full as usize - 3] ^= 1;
            assert_eq!(decode_history(&flipped, &sealing).unwrap().0.len(), 2);
        }
    }

    #[test]
    fn a_sealed_entry_is_unreadable_without_its_keys_and_a_forged_one_ends_the_log() {
        let [plain, sealed] = sealings();
        let e = entry(1, Status::Failed("Database defragmentation failed".into()));
        let mut bytes = header(&sealed).to_vec();
        bytes.extend_from_slice(&e.frame(&sealed).unwrap());
        let text = b"defragmentation";
        assert!(!bytes.windows(text.len()).any(|w| w == text));
        assert!(
            decode_history(&bytes, &plain).is_err(),
            "version 2 read as 1"
        );
        let mut in_clear = header(&plain).to_vec();
        in_clear.extend_from_slice(&e.frame(&plain).unwrap());
        assert!(in_clear.windows(text.len()).any(|w| w == text));
        assert!(
            decode_history(&in_clear, &sealed).is_err(),
            "version 1 read as 2"
        );
        // A flipped byte with the crc fixed up: the crc passes, the seal does not.
        let at = HEADER_BYTES as usize;
        bytes[at + 8 + 30] ^= 1;
        let crc = crc32fast::hash(&bytes[at + 8..]);
        bytes[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            decode_history(&bytes, &sealed).unwrap(),
            (vec![], at as u64)
        );
    }
}
