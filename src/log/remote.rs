//! Partitions in object storage (format-spec/object-storage.md).
//!
//! Owns a remote partition's two places: its staging directory in the store
//! (the active segment, sealed segments not yet uploaded, and each uploaded
//! segment's ends file) and its bucket prefix (sealed segments, one object
//! each, named as the local file was). Owns the upload of a sealed segment
//! (upload, read back and compare, switch readers to the object, then
//! remove the local file), the uploader thread, and the bounded cache of
//! byte ranges read from objects. It reaches bytes through `io` only and
//! must not interpret records beyond finding a segment's footer.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Condvar, Mutex, RwLock};

use super::volume::{SegmentFile, Volume};
use super::{SegmentInfo, SegmentState};
use crate::crypto::Sealing;
use crate::error::{Error, Result};
use crate::format::object_ends::{MAX_TAIL_BYTES, ObjectEnds};
use crate::format::segment::{SEGMENT_HEADER_BYTES, SegmentHeader, TRAILER_BYTES, decode_trailer};
use crate::format::{parse_segment_file_name, segment_file_name};
use crate::io::object::{ObjectClient, ObjectUrl};
use crate::io::{VFile, Vfs};
use crate::segment::ActiveSegment;

/// Default bound of the cache of ranges read from objects: 256 MiB.
pub const DEFAULT_OBJECT_CACHE_BYTES: u64 = 256 << 20;

/// Byte ranges read from objects, most recently used kept, bounded in bytes.
/// A read is served when an earlier read began at the same offset of the
/// same segment and was at least as long (a record is always read from its
/// start, so a second `get` of it hits).
pub(crate) struct RangeCache {
    limit: u64,
    inner: Mutex<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    ranges: HashMap<(u32, u64), (u64, Bytes)>,
    by_use: BTreeMap<u64, (u32, u64)>,
    bytes: u64,
    tick: u64,
}

impl RangeCache {
    pub(crate) fn new(limit: u64) -> RangeCache {
        RangeCache {
            limit,
            inner: Mutex::new(CacheInner::default()),
        }
    }

    fn get(&self, segment: u32, offset: u64, len: usize) -> Option<Bytes> {
        let mut c = self.inner.lock();
        c.tick += 1;
        let tick = c.tick;
        let (used, bytes) = c.ranges.get_mut(&(segment, offset))?;
        if bytes.len() < len {
            return None;
        }
        let old = std::mem::replace(used, tick);
        let hit = bytes.slice(..len);
        c.by_use.remove(&old);
        c.by_use.insert(tick, (segment, offset));
        Some(hit)
    }

    fn put(&self, segment: u32, offset: u64, bytes: Bytes) {
        // A scan's large reads would push out every hot record.
        if bytes.len() as u64 > self.limit / 8 {
            return;
        }
        let mut c = self.inner.lock();
        c.tick += 1;
        let tick = c.tick;
        c.bytes += bytes.len() as u64;
        if let Some((old, prev)) = c.ranges.insert((segment, offset), (tick, bytes)) {
            c.by_use.remove(&old);
            c.bytes -= prev.len() as u64;
        }
        c.by_use.insert(tick, (segment, offset));
        while c.bytes > self.limit {
            let Some((_, key)) = c.by_use.pop_first() else {
                break;
            };
            if let Some((_, gone)) = c.ranges.remove(&key) {
                c.bytes -= gone.len() as u64;
            }
        }
    }

    fn forget(&self, segment: u32) {
        let mut c = self.inner.lock();
        let keys: Vec<(u32, u64)> = c
            .ranges
            .keys()
            .filter(|k| k.0 == segment)
            .copied()
            .collect();
        for key in keys {
            if let Some((used, gone)) = c.ranges.remove(&key) {
                c.by_use.remove(&used);
                c.bytes -= gone.len() as u64;
            }
        }
    }
}

/// One partition in object storage.
pub(crate) struct RemotePartition {
    id: u32,
    client: ObjectClient,
    staging: PathBuf,
    vfs: Arc<dyn Vfs>,
    cache: Arc<RangeCache>,
    /// Object sizes, from listings and uploads.
    sizes: Mutex<HashMap<u32, u64>>,
    /// Ends files read so far.
    ends: Mutex<HashMap<u32, Arc<ObjectEnds>>>,
    /// The last upload failure, until an upload succeeds.
    last_error: Mutex<Option<String>>,
}

impl RemotePartition {
    /// Connect partition `id` at `url`, staging in `staging`.
    pub(crate) fn connect(
        id: u32,
        url: &ObjectUrl,
        staging: PathBuf,
        vfs: Arc<dyn Vfs>,
        cache: Arc<RangeCache>,
    ) -> Result<RemotePartition> {
        Ok(RemotePartition {
            id,
            client: ObjectClient::connect(url)?,
            staging,
            vfs,
            cache,
            sizes: Mutex::new(HashMap::new()),
            ends: Mutex::new(HashMap::new()),
            last_error: Mutex::new(None),
        })
    }

    /// The bucket and prefix.
    pub(crate) fn url(&self) -> &ObjectUrl {
        self.client.url()
    }

    /// The local directory of its active and not yet uploaded segments.
    pub(crate) fn staging(&self) -> &Path {
        &self.staging
    }

    /// Why the last upload failed, while nothing has been uploaded since.
    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error.lock().clone()
    }

    /// The segment ids with an ends file in the staging directory.
    fn ends_files(&self) -> Result<Vec<u32>> {
        let names = self
            .vfs
            .list_dir(&self.staging)
            .map_err(|e| Error::io(&self.staging, "list staging directory", e))?;
        Ok(names
            .iter()
            .filter_map(|n| {
                n.strip_prefix("segment-")?
                    .strip_suffix(".ends")?
                    .parse()
                    .ok()
            })
            .collect())
    }

    fn ends_path(&self, segment: u32) -> PathBuf {
        self.staging.join(format!("segment-{segment:010}.ends"))
    }

    /// The ends of `segment`'s object: remembered, or read from its ends
    /// file; `None` when that is missing or does not check (reads then go
    /// to the object).
    fn ends_of(&self, segment: u32) -> Option<Arc<ObjectEnds>> {
        if let Some(e) = self.ends.lock().get(&segment) {
            return Some(e.clone());
        }
        let path = self.ends_path(segment);
        let bytes = self.vfs.read_small(&path, MAX_TAIL_BYTES + 4096).ok()?;
        match ObjectEnds::decode(&bytes) {
            Ok(e) if e.segment == segment => {
                let e = Arc::new(e);
                self.ends.lock().insert(segment, e.clone());
                Some(e)
            }
            Ok(_) | Err(_) => {
                tracing::warn!("{}: ignored, reading the object instead", path.display());
                None
            }
        }
    }

    fn is_local(&self, path: &Path) -> bool {
        path.starts_with(&self.staging)
    }

    fn open_object(self: &Arc<Self>, path: &Path) -> Result<Arc<dyn VFile>> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::InvalidSetting(format!("{}: not a segment", path.display())))?;
        let (segment, _) = parse_segment_file_name(name)
            .ok_or_else(|| Error::InvalidSetting(format!("{}: not a segment", path.display())))?;
        let known = self.sizes.lock().get(&segment).copied();
        let len = match known.or_else(|| self.ends_of(segment).map(|e| e.object_len)) {
            Some(len) => len,
            None => {
                self.list_objects()?;
                self.sizes
                    .lock()
                    .get(&segment)
                    .copied()
                    .ok_or_else(|| Error::ObjectStore {
                        url: self.url().object(name),
                        op: "open",
                        detail: "no such object".into(),
                    })?
            }
        };
        Ok(Arc::new(ObjectFile {
            partition: self.clone(),
            segment,
            name: name.to_string(),
            len,
        }))
    }

    /// List the bucket's segment objects, remembering their sizes.
    fn list_objects(&self) -> Result<Vec<(u32, String)>> {
        let mut found = Vec::new();
        let mut sizes = self.sizes.lock();
        for o in self.client.list()? {
            if let Some((id, true)) = parse_segment_file_name(&o.name) {
                sizes.insert(id, o.size);
                found.push((id, o.name));
            }
        }
        Ok(found)
    }

    /// Remove every copy of `segment`: the local file, the object, its
    /// ends file and its cached ranges.
    fn remove_segment(&self, segment: u32, local: Option<&Path>) -> Result<()> {
        let name = segment_file_name(segment, true);
        self.client.delete(&name)?;
        self.cache.forget(segment);
        self.ends.lock().remove(&segment);
        self.sizes.lock().remove(&segment);
        let mut paths = vec![self.ends_path(segment), self.staging.join(&name)];
        paths.extend(local.map(Path::to_path_buf));
        for path in paths {
            if self.vfs.exists(&path) {
                self.vfs
                    .remove_file(&path)
                    .map_err(|e| Error::io(&path, "remove segment", e))?;
            }
        }
        self.vfs
            .sync_dir(&self.staging)
            .map_err(|e| Error::io(&self.staging, "fsync directory", e))
    }
}

/// A sealed segment in object storage, read by ranged GETs through the
/// partition's ends and the range cache. It is never written.
struct ObjectFile {
    partition: Arc<RemotePartition>,
    segment: u32,
    name: String,
    len: u64,
}

impl VFile for ObjectFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if offset.saturating_add(buf.len() as u64) > self.len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("read past the object's {} bytes", self.len),
            ));
        }
        if buf.is_empty() {
            return Ok(());
        }
        let p = &self.partition;
        if let Some(bytes) = p
            .ends_of(self.segment)
            .as_ref()
            .and_then(|e| e.slice(offset, buf.len()))
        {
            buf.copy_from_slice(bytes);
            return Ok(());
        }
        if let Some(bytes) = p.cache.get(self.segment, offset, buf.len()) {
            buf.copy_from_slice(&bytes);
            return Ok(());
        }
        let bytes = p
            .client
            .read_range(&self.name, offset..offset + buf.len() as u64)
            .map_err(|e| io::Error::other(e.to_string()))?;
        buf.copy_from_slice(&bytes);
        p.cache.put(self.segment, offset, bytes);
        Ok(())
    }

    fn write_all_at(&self, _: &[u8], _: u64) -> io::Result<()> {
        Err(read_only_object())
    }

    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.len)
    }

    fn set_len(&self, _: u64) -> io::Result<()> {
        Err(read_only_object())
    }
}

fn read_only_object() -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        "a segment in object storage is sealed and never written",
    )
}

/// The volume of a remote partition: new segments in its staging
/// directory, sealed ones in the bucket once uploaded.
pub(crate) struct RemoteVolume(pub(crate) Arc<RemotePartition>);

impl Volume for RemoteVolume {
    fn list(&self) -> Result<Vec<SegmentFile>> {
        let p = &self.0;
        let mut files = super::LocalVolume::new(p.staging.clone(), p.vfs.clone()).list()?;
        // A segment still staged is read there: its upload was not finished
        // (or its local copy not yet removed).
        let mut known: std::collections::HashSet<u32> = files.iter().map(|f| f.id).collect();
        // A bucket that does not answer does not keep the store closed: the
        // ends files name every segment this store uploaded, and reads of
        // them fail naming the object until it answers again.
        let listed = p.list_objects().unwrap_or_else(|e| {
            tracing::warn!("{e}; opening from the ends files");
            Vec::new()
        });
        for (id, name) in listed {
            if known.insert(id) {
                files.push(SegmentFile {
                    id,
                    sealed: true,
                    path: PathBuf::from(p.url().object(&name)),
                });
            }
        }
        // An uploaded segment whose object the listing lacks is still a
        // segment: its reads fail naming the object, never silently absent.
        for id in p.ends_files()? {
            if known.insert(id) {
                tracing::warn!(
                    "{}: uploaded but not listed",
                    p.url().object(&segment_file_name(id, true))
                );
                files.push(SegmentFile {
                    id,
                    sealed: true,
                    path: PathBuf::from(p.url().object(&segment_file_name(id, true))),
                });
            }
        }
        Ok(files)
    }

    fn open(&self, path: &Path, writable: bool) -> Result<Arc<dyn VFile>> {
        if self.0.is_local(path) {
            return super::LocalVolume::new(self.0.staging.clone(), self.0.vfs.clone())
                .open(path, writable);
        }
        self.0.open_object(path)
    }

    fn create(&self, header: SegmentHeader, sealing: &Sealing) -> Result<ActiveSegment> {
        ActiveSegment::create(&*self.0.vfs, &self.0.staging, header, sealing)
    }

    fn seal(&self, segment: &ActiveSegment) -> Result<(PathBuf, u64)> {
        segment.seal(&*self.0.vfs)
    }

    fn remove(&self, path: &Path) -> Result<()> {
        let segment = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(parse_segment_file_name)
            .map(|(id, _)| id)
            .ok_or_else(|| Error::InvalidSetting(format!("{}: not a segment", path.display())))?;
        let local = self.0.is_local(path).then_some(path);
        self.0.remove_segment(segment, local)
    }

    fn available_space(&self) -> Option<u64> {
        None
    }
}

/// The ends of a sealed segment file: its header and its footer to the end.
fn read_ends(file: &dyn VFile, path: &Path, segment: u32, len: u64) -> Result<ObjectEnds> {
    let read = |offset: u64, n: usize| -> Result<Vec<u8>> {
        let mut buf = vec![0u8; n];
        file.read_exact_at(&mut buf, offset)
            .map_err(|e| Error::io(path, "read segment ends", e))?;
        Ok(buf)
    };
    let too_short = (SEGMENT_HEADER_BYTES + TRAILER_BYTES) as u64;
    if len < too_short {
        return Err(Error::corrupt(
            segment,
            0,
            "sealed segment too short to upload",
        ));
    }
    let trailer_at = len - TRAILER_BYTES as u64;
    let footer_at = decode_trailer(&read(trailer_at, TRAILER_BYTES)?)
        .filter(|&f| {
            f >= SEGMENT_HEADER_BYTES as u64 && f < trailer_at && len - f <= MAX_TAIL_BYTES
        })
        .ok_or_else(|| Error::corrupt(segment, trailer_at, "bad trailer; not uploaded"))?;
    Ok(ObjectEnds {
        segment,
        object_len: len,
        head: read(0, SEGMENT_HEADER_BYTES)?,
        tail_offset: footer_at,
        tail: read(footer_at, (len - footer_at) as usize)?,
    })
}

/// Bytes read back from each upload part to check it.
const SAMPLE_BYTES: u64 = 4096;

/// Check an uploaded object against the local file: its size, its two ends
/// (header; footer and trailer) and 4 KiB at a place of every part, all
/// read back in one round of requests. A part lost, cut or out of order
/// shows; reading the whole object back cost more than the upload itself
/// (README, "Object storage").
fn check_upload(
    p: &RemotePartition,
    name: &str,
    file: &dyn VFile,
    path: &Path,
    ends: &ObjectEnds,
) -> Result<()> {
    let len = ends.object_len;
    let part = crate::io::object::UPLOAD_PART_BYTES as u64;
    let mut ranges = vec![0..ends.head.len() as u64, ends.tail_offset..len];
    for start in (0..len).step_by(part as usize) {
        let room = (len - start).min(part).saturating_sub(SAMPLE_BYTES);
        let seed = blake3::hash(&[&ends.segment.to_le_bytes()[..], &start.to_le_bytes()].concat());
        let mut at = [0u8; 8];
        at.copy_from_slice(&seed.as_bytes()[..8]);
        let offset = start + u64::from_le_bytes(at) % (room + 1);
        ranges.push(offset..(offset + SAMPLE_BYTES).min(len));
    }
    let (size, got) = p.client.read_back(name, &ranges)?;
    let differs = |detail: String| Error::ObjectStore {
        url: p.url().object(name),
        op: "check the upload",
        detail,
    };
    if size != len {
        return Err(differs(format!(
            "the object is {size} bytes, the segment {len}"
        )));
    }
    for (r, theirs) in ranges.iter().zip(&got) {
        let mut ours = vec![0u8; (r.end - r.start) as usize];
        file.read_exact_at(&mut ours, r.start)
            .map_err(|e| Error::io(path, "read to check the upload", e))?;
        if ours != theirs[..] {
            return Err(differs(format!(
                "bytes {}..{} differ from the segment's",
                r.start, r.end
            )));
        }
    }
    Ok(())
}

/// Segments, by id, as the log lists them.
pub(crate) type SegmentMap = RwLock<BTreeMap<u32, SegmentInfo>>;

/// Upload sealed segment `id` if it is staged in `p`: upload, read back and
/// compare, write its ends file, switch readers to the object, then remove
/// the local file. Returns the bytes uploaded (0: nothing to do). A crash at
/// any step leaves the local file, which the next upload sends again.
pub(crate) fn upload_segment(
    segments: &SegmentMap,
    p: &Arc<RemotePartition>,
    id: u32,
) -> Result<u64> {
    let staged = segments.read().get(&id).and_then(|s| {
        (s.state == SegmentState::Sealed && s.partition_id == p.id && p.is_local(&s.path))
            .then(|| (s.path.clone(), s.file.clone(), s.bytes))
    });
    let Some((path, file, len)) = staged else {
        return Ok(0);
    };
    let name = segment_file_name(id, true);
    p.client.upload(&name, &*file, len)?;
    let ends = read_ends(&*file, &path, id, len)?;
    check_upload(p, &name, &*file, &path, &ends)?;
    let ends_path = p.ends_path(id);
    p.vfs
        .write_atomic(&ends_path, &ends.encode())
        .map_err(|e| Error::io(&ends_path, "write ends file", e))?;
    p.ends.lock().insert(id, Arc::new(ends));
    p.sizes.lock().insert(id, len);
    let object = PathBuf::from(p.url().object(&name));
    let switched = {
        let mut segs = segments.write();
        match segs.get_mut(&id) {
            Some(info) if info.path == path => {
                info.file = p.open_object(&object)?;
                info.path = object;
                true
            }
            _ => false,
        }
    };
    if !switched {
        // Compaction removed the segment meanwhile: so goes its object.
        p.remove_segment(id, None)?;
        return Ok(0);
    }
    p.vfs
        .remove_file(&path)
        .and_then(|_| p.vfs.sync_dir(&p.staging))
        .map_err(|e| Error::io(&path, "remove the uploaded local copy", e))?;
    *p.last_error.lock() = None;
    Ok(len)
}

/// What an upload pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct UploadReport {
    /// Segments uploaded.
    pub segments: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// Partitions in object storage, by id.
pub(crate) type Remotes = Mutex<HashMap<u32, Arc<RemotePartition>>>;

/// Upload every sealed segment staged in a remote partition, oldest first;
/// stops at the first failure (recorded on its partition) and returns it.
pub(crate) fn upload_staged(
    segments: &SegmentMap,
    remotes: &Remotes,
    busy: &Mutex<()>,
) -> Result<UploadReport> {
    let _one_at_a_time = busy.lock();
    let parts: Vec<Arc<RemotePartition>> = remotes.lock().values().cloned().collect();
    let staged: Vec<(u32, Arc<RemotePartition>)> = segments
        .read()
        .iter()
        .filter(|(_, s)| s.state == SegmentState::Sealed)
        .filter_map(|(&id, s)| {
            let p = parts
                .iter()
                .find(|p| p.id == s.partition_id && p.is_local(&s.path))?;
            Some((id, p.clone()))
        })
        .collect();
    let mut report = UploadReport::default();
    for (id, p) in staged {
        match upload_segment(segments, &p, id) {
            Ok(0) => {}
            Ok(n) => {
                report.segments += 1;
                report.bytes += n;
            }
            Err(e) => {
                *p.last_error.lock() = Some(e.to_string());
                return Err(e);
            }
        }
    }
    Ok(report)
}

/// The thread that uploads sealed segments of remote partitions: at start,
/// when kicked after a seal, and every few seconds; after a failure it
/// waits longer, up to a minute, and tries again.
pub(crate) struct Uploader {
    signal: Arc<(Mutex<UploaderState>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct UploaderState {
    stop: bool,
    kicked: bool,
}

impl Uploader {
    pub(crate) fn spawn(
        segments: Arc<SegmentMap>,
        remotes: Arc<Remotes>,
        busy: Arc<Mutex<()>>,
    ) -> Result<Uploader> {
        let signal: Arc<(Mutex<UploaderState>, Condvar)> = Arc::default();
        let theirs = signal.clone();
        let thread = std::thread::Builder::new()
            .name("vaultstore-upload".into())
            .spawn(move || {
                let mut pause = Duration::from_secs(2);
                loop {
                    pause = match upload_staged(&segments, &remotes, &busy) {
                        Ok(_) => Duration::from_secs(2),
                        Err(e) => {
                            tracing::warn!("upload to object storage: {e}; trying again");
                            (pause * 2).min(Duration::from_secs(60))
                        }
                    };
                    let (state, wake) = &*theirs;
                    let mut s = state.lock();
                    if !s.stop && !s.kicked {
                        wake.wait_for(&mut s, pause);
                    }
                    if s.stop {
                        return;
                    }
                    s.kicked = false;
                }
            })
            .map_err(|e| Error::io("vaultstore-upload", "start the upload thread", e))?;
        Ok(Uploader {
            signal,
            thread: Some(thread),
        })
    }

    /// Look for staged segments now (a segment was just sealed).
    pub(crate) fn kick(&self) {
        let (state, wake) = &*self.signal;
        state.lock().kicked = true;
        wake.notify_one();
    }
}

impl Drop for Uploader {
    fn drop(&mut self) {
        let (state, wake) = &*self.signal;
        state.lock().stop = true;
        wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_range_cache_keeps_recent_ranges_within_its_bound() {
        let c = RangeCache::new(800);
        c.put(1, 0, Bytes::from(vec![1u8; 100]));
        c.put(1, 100, Bytes::from(vec![2u8; 100]));
        assert_eq!(c.get(1, 0, 50).as_deref(), Some(&[1u8; 50][..]));
        assert!(c.get(1, 0, 101).is_none(), "longer than what was read");
        assert!(c.get(1, 50, 10).is_none(), "another start");
        c.put(2, 0, Bytes::from(vec![3u8; 101]));
        assert!(
            !c.inner.lock().ranges.contains_key(&(2, 0)),
            "over an eighth of the bound"
        );
        for i in 0..7 {
            c.put(3, i * 100, Bytes::from(vec![4u8; 100]));
        }
        // 900 bytes were put; the least recently used (1, 100) went.
        assert!(c.get(1, 100, 1).is_none());
        assert!(c.get(1, 0, 1).is_some());
        assert!(c.inner.lock().bytes <= 800);
        c.forget(3);
        assert_eq!(c.inner.lock().bytes, 100);
    }
}
