//! The one seam through which the log reaches segment files: a [`Volume`]
//! holds the segments of one partition. Today every volume is a local
//! directory ([`LocalVolume`], through [`crate::io::Vfs`] so tests inject
//! faults); the object tier adds a second kind here, and neither compaction
//! nor backup changes. A volume knows file names and bytes, never what a
//! record means.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::crypto::Sealing;
use crate::error::{Error, Result};
use crate::format::parse_segment_file_name;
use crate::format::segment::SegmentHeader;
use crate::io::{VFile, Vfs};
use crate::segment::ActiveSegment;

/// A segment file a volume holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentFile {
    /// Segment id, from the file name.
    pub id: u32,
    /// True for `segment-N.sealed`, false for `segment-N.active`.
    pub sealed: bool,
    /// Where it is.
    pub path: PathBuf,
}

/// Where the segment files of one partition live.
pub trait Volume: Send + Sync {
    /// Every segment file, in no order (other names are ignored).
    fn list(&self) -> Result<Vec<SegmentFile>>;
    /// Open a segment file, for appending too when `writable`.
    fn open(&self, path: &Path, writable: bool) -> Result<Arc<dyn VFile>>;
    /// Create a new active segment with `header`, durably.
    fn create(&self, header: SegmentHeader, sealing: &Sealing) -> Result<ActiveSegment>;
    /// Seal an active segment: footer, fsync, rename, directory fsync.
    fn seal(&self, segment: &ActiveSegment) -> Result<(PathBuf, u64)>;
    /// Remove a segment file durably (its directory entry too).
    fn remove(&self, path: &Path) -> Result<()>;
    /// Bytes free for new segments, when the volume can tell.
    fn available_space(&self) -> Option<u64>;
}

/// A partition directory on a local file system.
pub(crate) struct LocalVolume {
    dir: PathBuf,
    vfs: Arc<dyn Vfs>,
}

impl LocalVolume {
    pub(crate) fn new(dir: PathBuf, vfs: Arc<dyn Vfs>) -> LocalVolume {
        LocalVolume { dir, vfs }
    }
}

impl Volume for LocalVolume {
    fn list(&self) -> Result<Vec<SegmentFile>> {
        let names = self.vfs.list_dir(&self.dir).map_err(|e| {
            Error::io(
                &self.dir,
                "list partition directory (is the volume mounted?)",
                e,
            )
        })?;
        Ok(names
            .into_iter()
            .filter_map(|name| {
                let (id, sealed) = parse_segment_file_name(&name)?;
                Some(SegmentFile {
                    id,
                    sealed,
                    path: self.dir.join(&name),
                })
            })
            .collect())
    }

    fn open(&self, path: &Path, writable: bool) -> Result<Arc<dyn VFile>> {
        if writable {
            self.vfs.open_rw(path)
        } else {
            self.vfs.open_read(path)
        }
        .map_err(|e| Error::io(path, "open segment", e))
    }

    fn create(&self, header: SegmentHeader, sealing: &Sealing) -> Result<ActiveSegment> {
        ActiveSegment::create(&*self.vfs, &self.dir, header, sealing)
    }

    fn seal(&self, segment: &ActiveSegment) -> Result<(PathBuf, u64)> {
        segment.seal(&*self.vfs)
    }

    fn remove(&self, path: &Path) -> Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        self.vfs
            .remove_file(path)
            .and_then(|_| self.vfs.sync_dir(dir))
            .map_err(|e| Error::io(path, "remove segment", e))
    }

    fn available_space(&self) -> Option<u64> {
        self.vfs.available_space(&self.dir).ok()
    }
}

/// A partition whose volume cannot be reached (an object store that could
/// not be connected): every operation fails with why.
pub(crate) struct UnreachableVolume(pub(crate) String);

impl UnreachableVolume {
    fn error(&self) -> Error {
        Error::InvalidSetting(self.0.clone())
    }
}

impl Volume for UnreachableVolume {
    fn list(&self) -> Result<Vec<SegmentFile>> {
        Err(self.error())
    }

    fn open(&self, _: &Path, _: bool) -> Result<Arc<dyn VFile>> {
        Err(self.error())
    }

    fn create(&self, _: SegmentHeader, _: &Sealing) -> Result<ActiveSegment> {
        Err(self.error())
    }

    fn seal(&self, _: &ActiveSegment) -> Result<(PathBuf, u64)> {
        Err(self.error())
    }

    fn remove(&self, _: &Path) -> Result<()> {
        Err(self.error())
    }

    fn available_space(&self) -> Option<u64> {
        None
    }
}
