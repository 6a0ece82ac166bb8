//! Partitions: the directories, usually on separate volumes, that segments
//! live in.
//!
//! Owns adding, listing and closing partitions (entries of the manifest).
//! New segments go to the first open partition with room for a whole
//! segment under its capacity (rollover, in the log); a closed partition
//! takes no new segments and its existing ones stay readable. Moving
//! segments out of a partition is redistribution's job, not this module's.
//! It must not touch segment files or the writer: it changes the manifest
//! through the log's API.

use std::path::Path;

use serde::Serialize;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::format::manifest::{MAX_PATH_BYTES, PartitionEntry, PartitionState};
use crate::format::parse_segment_file_name;
use crate::io::object::{ObjectClient, ObjectUrl};

/// A partition as `partition list` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionStat {
    /// Partition id.
    pub id: u32,
    /// Its directory as recorded (relative to the store, or absolute).
    pub path: String,
    /// "open", "closed" or "retired".
    pub state: String,
    /// Bytes of segment files in it.
    pub bytes: u64,
    /// Capacity in bytes; 0 for no limit.
    pub capacity: u64,
    /// Free bytes on the partition's volume (absent for a retired partition
    /// or a volume that cannot be asked, and for object storage).
    pub free_bytes: Option<u64>,
    /// For a partition in object storage: why the last upload failed, while
    /// none has succeeded since.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload_error: Option<String>,
}

impl PartitionStat {
    /// What the partition fills: its capacity, or else its bytes plus the
    /// volume's free space; 0 when neither is known.
    pub fn fill_limit(&self) -> u64 {
        if self.capacity > 0 {
            self.capacity
        } else {
            self.free_bytes.map_or(0, |f| self.bytes + f)
        }
    }
}

/// The scheme of `text` when it is written as a URL (`scheme://…`, the
/// scheme a letter then letters, digits, `+`, `-` or `.`).
fn url_scheme(text: &str) -> Option<&str> {
    let (scheme, _) = text.split_once("://")?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    let valid = first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some(scheme)
}

impl Engine {
    /// Add a partition at `path` (an empty or new directory, absolute or
    /// relative to the store), open, with an optional capacity in bytes.
    pub fn partition_add(&self, path: &Path, capacity_bytes: Option<u64>) -> Result<u32> {
        let text = path
            .to_str()
            .filter(|t| !t.is_empty() && t.len() <= MAX_PATH_BYTES)
            .ok_or_else(|| {
                Error::InvalidSetting(format!("{} is not a usable partition path", path.display()))
            })?
            .to_string();
        if let Some(scheme) = url_scheme(&text) {
            // Taken as a path, `gs://b/x` would make a directory `gs:` in the store.
            if scheme != "s3" {
                return Err(Error::InvalidSetting(format!(
                    "{text}: {scheme}:// is not supported; a partition is a directory or \
                     s3://BUCKET/PREFIX"
                )));
            }
            return self.partition_add_remote(&text, capacity_bytes);
        }
        let vfs = self.log.vfs();
        let dir = if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.log.dir().join(path)
        };
        if vfs.exists(&dir) {
            let names = vfs
                .list_dir(&dir)
                .map_err(|e| Error::io(&dir, "list directory", e))?;
            if !names.is_empty() {
                return Err(Error::AlreadyExists { path: dir });
            }
        }
        vfs.create_dir_all(&dir)
            .map_err(|e| Error::io(&dir, "create partition directory", e))?;
        vfs.sync_dir(&dir)
            .map_err(|e| Error::io(&dir, "fsync directory", e))?;
        self.log.update_manifest(|m| {
            if m.partitions.iter().any(|p| p.path == text) {
                return Err(Error::InvalidSetting(format!(
                    "partition {text} exists already"
                )));
            }
            let id = m.partitions.iter().map(|p| p.id + 1).max().unwrap_or(0);
            m.partitions.push(PartitionEntry {
                id,
                state: PartitionState::Open,
                capacity_bytes: capacity_bytes.unwrap_or(0),
                path: text.clone(),
            });
            Ok(id)
        })
    }

    /// Add a partition in object storage at `text` (`s3://BUCKET/PREFIX`):
    /// the bucket must answer and hold no segment under the prefix.
    fn partition_add_remote(&self, text: &str, capacity_bytes: Option<u64>) -> Result<u32> {
        let url = ObjectUrl::parse(text).ok_or_else(|| {
            Error::InvalidSetting(format!(
                "{text}: not a usable s3:// URL; write s3://BUCKET/PREFIX, the bucket 3 to 63 \
                 lowercase letters, digits, dots and hyphens"
            ))
        })?;
        let held = ObjectClient::connect(&url)?.list()?;
        if let Some(o) = held
            .iter()
            .find(|o| parse_segment_file_name(&o.name).is_some())
        {
            return Err(Error::InvalidSetting(format!(
                "{url} holds segments already ({}); a partition starts empty",
                o.name
            )));
        }
        let path = url.to_string();
        let entry = self.log.update_manifest(|m| {
            if m.partitions.iter().any(|p| p.path == path) {
                return Err(Error::InvalidSetting(format!(
                    "partition {path} exists already"
                )));
            }
            let id = m.partitions.iter().map(|p| p.id + 1).max().unwrap_or(0);
            let entry = PartitionEntry {
                id,
                state: PartitionState::Open,
                capacity_bytes: capacity_bytes.unwrap_or(0),
                path: path.clone(),
            };
            m.partitions.push(entry.clone());
            Ok(entry)
        })?;
        let staging = self.log.partition_dir(&entry);
        let vfs = self.log.vfs();
        vfs.create_dir_all(&staging)
            .and_then(|_| vfs.sync_dir(&staging))
            .map_err(|e| Error::io(&staging, "create staging directory", e))?;
        self.log.remote(&entry)?;
        self.log.start_uploader()?;
        Ok(entry.id)
    }

    /// Every partition with its fill.
    pub fn partitions(&self) -> Vec<PartitionStat> {
        let used = self.log.partition_bytes();
        self.log
            .manifest()
            .partitions
            .iter()
            .map(|p| PartitionStat {
                id: p.id,
                path: p.path.clone(),
                state: match p.state {
                    PartitionState::Open => "open".into(),
                    PartitionState::Closed => "closed".into(),
                    PartitionState::Retired => "retired".into(),
                },
                bytes: used.get(&p.id).copied().unwrap_or(0),
                capacity: p.capacity_bytes,
                upload_error: self.log.upload_error(p.id),
                free_bytes: (p.state != PartitionState::Retired
                    && ObjectUrl::parse(&p.path).is_none())
                .then(|| {
                    self.log
                        .vfs()
                        .available_space(&self.log.partition_dir(p))
                        .ok()
                })
                .flatten(),
            })
            .collect()
    }

    /// Set a partition's capacity in bytes (0: no limit).
    pub fn partition_set_capacity(&self, id: u32, capacity_bytes: u64) -> Result<()> {
        self.update_partition(id, |p| p.capacity_bytes = capacity_bytes)
    }

    /// Change partition `id`'s manifest entry through `f`, durably.
    fn update_partition(&self, id: u32, f: impl FnOnce(&mut PartitionEntry)) -> Result<()> {
        self.log.update_manifest(|m| {
            let p = m
                .partitions
                .iter_mut()
                .find(|p| p.id == id)
                .ok_or_else(|| Error::InvalidSetting(format!("partition {id} does not exist")))?;
            f(p);
            Ok(())
        })
    }

    /// Keep at least `bytes` free on every partition's volume: a partition
    /// whose volume would fall below it with one more segment takes none
    /// (0 turns the check off).
    pub fn set_min_free_space(&self, bytes: u64) -> Result<()> {
        self.log.update_manifest(|m| {
            m.min_free_bytes = bytes;
            Ok(())
        })
    }

    /// Close a partition: it takes no new segments (the active segment, if
    /// it is there, fills up as usual). The last open partition cannot be
    /// closed.
    pub fn partition_close(&self, id: u32) -> Result<()> {
        self.log.update_manifest(|m| {
            let open = m
                .partitions
                .iter()
                .filter(|p| p.state == PartitionState::Open)
                .count();
            let p = m
                .partitions
                .iter_mut()
                .find(|p| p.id == id)
                .ok_or_else(|| Error::InvalidSetting(format!("partition {id} does not exist")))?;
            if p.state != PartitionState::Open {
                return Ok(());
            }
            if open == 1 {
                return Err(Error::InvalidSetting(format!(
                    "partition {id} is the last open one; add another before closing it"
                )));
            }
            p.state = PartitionState::Closed;
            Ok(())
        })
    }

    /// Retire a drained partition: it holds no segment and is no longer
    /// read at open, so its volume can be removed.
    pub(crate) fn partition_retire(&self, id: u32) -> Result<()> {
        if self.log.partition_bytes().get(&id).copied().unwrap_or(0) > 0 {
            return Err(Error::InvalidSetting(format!(
                "partition {id} still holds segments"
            )));
        }
        self.update_partition(id, |p| p.state = PartitionState::Retired)
    }
}
