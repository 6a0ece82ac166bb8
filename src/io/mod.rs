//! The one narrow layer between the engine and the file system.
//!
//! Every byte the engine reads or writes goes through [`Vfs`] and [`VFile`],
//! so tests can swap in [`FaultyFs`] and inject ENOSPC, EIO and short writes,
//! or [`PowerLossFs`] and lose what was never synced.
//! This module knows nothing of the format: it moves bytes and reports the OS
//! error with the path. It must not interpret what it reads.
//!
//! Everything a store writes is private to its owner: directories are
//! created 0700 and files 0600, whatever the umask, because an archive holds
//! every message of an organisation (format-spec/README.md, "Permissions").
//!
//! Why not mmap for reads: a mapping of a file another process truncates
//! turns into SIGBUS instead of an error, and mapped reads cannot be faulted
//! in tests. `pread` costs one syscall per record and keeps both properties.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::{Error, Result};

pub mod object;
pub mod power_loss;
pub use power_loss::PowerLossFs;

/// An open file: positional reads and writes only, so it can be shared
/// between threads without a cursor.
pub trait VFile: Send + Sync {
    /// Fill `buf` from `offset`; an early end of file is `UnexpectedEof`.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Write all of `buf` at `offset`.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// fdatasync: the file's data (and size) reach stable storage.
    fn sync_data(&self) -> io::Result<()>;
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Truncate or extend to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// True when the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
}

/// File-system operations the engine uses. Paths are absolute or relative to
/// the process's working directory; the engine always passes full paths.
pub trait Vfs: Send + Sync + 'static {
    /// Create a new file for reading and writing; fails if it exists.
    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn VFile>>;
    /// Open an existing file for reading and writing.
    fn open_rw(&self, path: &Path) -> io::Result<Arc<dyn VFile>>;
    /// Open an existing file for reading.
    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn VFile>>;
    /// Read a whole (small) file, refusing files longer than `limit` bytes.
    fn read_small(&self, path: &Path, limit: u64) -> io::Result<Vec<u8>>;
    /// Write a file whole: write a temporary sibling, fsync it, rename it
    /// over `path`, fsync the directory. Readers see the old or the new file.
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;
    /// Rename a file (atomic within one file system).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Delete a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Create a directory and its parents (new ones mode 0700), and make
    /// `path` itself mode 0700 if it existed (an empty directory a store or
    /// a partition is made in).
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// fsync a directory so that creations, renames and deletions in it are durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// The names of the entries of a directory, sorted.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// True when `path` exists.
    fn exists(&self, path: &Path) -> bool;
    /// Bytes available to this process on the volume holding `path`.
    fn available_space(&self, path: &Path) -> io::Result<u64> {
        fs4::available_space(path)
    }
    /// A whole immutable file for reading as bytes (a checkpoint). The real
    /// file system maps it; other file systems read it through `open_read`,
    /// so their faults and power cuts apply to it too.
    fn map_read(&self, path: &Path) -> io::Result<MappedFile> {
        let file = self.open_read(path)?;
        let len = usize::try_from(file.len()?).map_err(io::Error::other)?;
        let mut bytes = vec![0u8; len];
        file.read_exact_at(&mut bytes, 0)?;
        Ok(MappedFile::Read(bytes))
    }
    /// When `path` was last written, Unix ms (a sealed segment's seal time,
    /// a trigger file's writing).
    fn modified_ms(&self, path: &Path) -> io::Result<u64> {
        let t = std::fs::metadata(path)?.modified()?;
        Ok(t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis().min(u64::MAX as u128) as u64))
    }
}

/// An immutable file's bytes: a read-only memory map, or the bytes read.
pub enum MappedFile {
    /// Mapped by the real file system. The file must never be written or
    /// truncated while mapped: checkpoints are renamed into place whole.
    Map(memmap2::Mmap),
    /// Read whole (file systems that model faults, and empty files).
    Read(Vec<u8>),
}

/// How a file's bytes will be read, for whoever holds them (a memory map
/// passes it to the kernel; bytes in memory ignore it). Offsets are the
/// file's; the advice is a hint and never fails.
pub trait PageAdvice {
    /// `len` bytes at `offset` are read at random: a fault there should
    /// read its page, not a readahead window.
    fn random(&self, _offset: u64, _len: u64) {}
    /// `len` bytes at `offset` are read soon: start reading them now.
    fn will_need(&self, _offset: u64, _len: u64) {}
}

impl PageAdvice for Vec<u8> {}

impl MappedFile {
    fn advise(&self, advice: memmap2::Advice, offset: u64, len: u64) {
        let MappedFile::Map(m) = self else {
            return;
        };
        let (Ok(offset), Ok(len)) = (usize::try_from(offset), usize::try_from(len)) else {
            return;
        };
        if len > 0 && offset < m.len() {
            // Advice: a kernel that refuses it reads as it would anyway.
            let _ = m.advise_range(advice, offset, len.min(m.len() - offset));
        }
    }
}

impl PageAdvice for MappedFile {
    fn random(&self, offset: u64, len: u64) {
        self.advise(memmap2::Advice::Random, offset, len);
    }
    fn will_need(&self, offset: u64, len: u64) {
        self.advise(memmap2::Advice::WillNeed, offset, len);
    }
}

impl AsRef<[u8]> for MappedFile {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl std::ops::Deref for MappedFile {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            MappedFile::Map(m) => m,
            MappedFile::Read(v) => v,
        }
    }
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdFs;

struct StdFile(File);

impl VFile for StdFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(&self.0, buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(&self.0, buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
}

impl Vfs for StdFs {
    fn map_read(&self, path: &Path) -> io::Result<MappedFile> {
        let file = File::open(path)?;
        if file.metadata()?.len() == 0 {
            return Ok(MappedFile::Read(Vec::new()));
        }
        // SAFETY: checkpoint files are written whole under a temporary
        // name and renamed into place; nothing writes or truncates them
        // afterwards (format-spec/checkpoint.md), so the mapped bytes do not
        // change under the reader.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        Ok(MappedFile::Map(map))
    }
    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn VFile>> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(path)?;
        Ok(Arc::new(StdFile(f)))
    }
    fn open_rw(&self, path: &Path) -> io::Result<Arc<dyn VFile>> {
        let f = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Arc::new(StdFile(f)))
    }
    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn VFile>> {
        Ok(Arc::new(StdFile(File::open(path)?)))
    }
    fn read_small(&self, path: &Path, limit: u64) -> io::Result<Vec<u8>> {
        let f = File::open(path)?;
        let len = f.metadata()?.len();
        if len > limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("file is {len} bytes, more than the {limit} allowed"),
            ));
        }
        let mut out = Vec::with_capacity(len as usize);
        f.take(limit + 1).read_to_end(&mut out)?;
        Ok(out)
    }
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let tmp = tmp_sibling(path);
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(FILE_MODE)
                .open(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, path)?;
        self.sync_dir(parent_of(path))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(path)?;
        fs::set_permissions(path, fs::Permissions::from_mode(DIR_MODE))
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(path)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
}

/// Mode of every directory a store creates: its owner only.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file a store creates: its owner only.
pub const FILE_MODE: u32 = 0o600;

/// The directories among `dirs` that other local users may enter or read
/// (any group or other permission bit), each with a sentence saying so.
/// Files inside a private directory are out of their reach whatever their
/// own mode, so the directories are what is checked.
pub fn loose_dirs(dirs: &[PathBuf]) -> Vec<String> {
    dirs.iter()
        .filter_map(|d| {
            let mode = fs::metadata(d).ok()?.permissions().mode() & 0o777;
            (mode & 0o077 != 0).then(|| {
                format!(
                    "{} is open to other local users (mode {mode:o}): every message in it can be read; chmod 700 it",
                    d.display()
                )
            })
        })
        .collect()
}

/// The error for a lock file that cannot be opened: a store that cannot be
/// written at all (read-only mount, no permission) says so in those words.
fn lock_error(store_dir: &Path, lock: &Path, e: io::Error) -> Error {
    let read_only = e.kind() == io::ErrorKind::PermissionDenied
        || e.kind() == io::ErrorKind::ReadOnlyFilesystem;
    if read_only {
        Error::NotWritable {
            path: store_dir.to_path_buf(),
            source: e,
        }
    } else {
        Error::io(lock, "open lock file", e)
    }
}

/// The temporary name `write_atomic` writes before renaming.
pub fn tmp_sibling(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// The exclusive write lock on a store: an OS file lock (released by the OS
/// when the process dies, so a crash never leaves a stale lock) on `LOCK`,
/// with the holder's pid written inside for the error message.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

impl StoreLock {
    /// Take the lock or report who holds it.
    pub fn acquire(store_dir: &Path) -> Result<StoreLock> {
        let path = store_dir.join(crate::format::LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(&path)
            .map_err(|e| lock_error(store_dir, &path, e))?;
        // Our own pid in the file means another handle of this process holds
        // the lock, or a child forked a moment ago still shares its file
        // description until it execs: wait a little before calling it locked.
        let own_pid = std::process::id().to_string();
        let mut attempts = 0;
        let result = loop {
            match file.try_lock() {
                Err(TryLockError::WouldBlock) if attempts < 100 => {
                    let mut text = String::new();
                    let _ = file.read_at_start(&mut text);
                    if text.trim() != own_pid {
                        break Err(TryLockError::WouldBlock);
                    }
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                other => break other,
            }
        };
        match result {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_at_start(&mut text);
                let pid = text.trim();
                return Err(Error::Locked {
                    path: store_dir.to_path_buf(),
                    pid: if pid.is_empty() {
                        "unknown".into()
                    } else {
                        pid.chars().take(20).collect()
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(Error::io(&path, "lock", e)),
        }
        let pid = std::process::id().to_string();
        file.set_len(0)
            .and_then(|_| file.write_all_at(pid.as_bytes(), 0))
            .map_err(|e| Error::io(&path, "write lock file", e))?;
        Ok(StoreLock { _file: file })
    }
}

trait ReadAtStart {
    fn read_at_start(&self, out: &mut String) -> io::Result<()>;
}

impl ReadAtStart for File {
    /// The (small) lock file's text, read from offset 0 whatever the cursor.
    fn read_at_start(&self, out: &mut String) -> io::Result<()> {
        let mut buf = [0u8; 32];
        let n = FileExt::read_at(self, &mut buf, 0)?;
        out.push_str(&String::from_utf8_lossy(&buf[..n]));
        Ok(())
    }
}

/// Which operation a [`Fault`] applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultOp {
    /// `write_all_at` and `write_atomic`.
    Write,
    /// `sync_data` and `sync_dir`.
    Sync,
    /// `read_exact_at` and `read_small`.
    Read,
    /// `create_new`.
    Create,
    /// `rename`.
    Rename,
    /// `remove_file`.
    Remove,
}

/// What an injected fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Fail with ENOSPC (no space left on device) without writing.
    NoSpace,
    /// Fail with EIO without doing the operation.
    Eio,
    /// Write only the first half of the buffer, then fail with EIO
    /// (writes only; other operations treat it as `Eio`).
    ShortWrite,
}

/// One injected fault: on operation `op` of a path containing `path_contains`,
/// after `skip` matching calls have succeeded, fail `count` times.
#[derive(Debug, Clone)]
pub struct Fault {
    /// The operation to fail.
    pub op: FaultOp,
    /// How it fails.
    pub kind: FaultKind,
    /// Only paths whose text contains this (empty: every path).
    pub path_contains: String,
    /// Matching calls to let through first.
    pub skip: u64,
    /// How many calls to fail after that (`u64::MAX`: until cleared).
    pub count: u64,
}

#[derive(Default)]
struct FaultState {
    faults: Vec<Fault>,
    injected: u64,
    /// Free space to report, for paths containing the text, instead of the
    /// volume's (a "full disk").
    available_space: Option<(String, u64)>,
}

/// A callback run before an operation of [`FaultyFs`], with the path: tests
/// use it to act in the middle of a process (cancel it, hold an fsync).
pub type OpHook = Arc<dyn Fn(FaultOp, &Path) + Send + Sync>;

/// A [`Vfs`] over the real file system that fails on command. Shared by
/// clones, so a test keeps one handle and gives the store another.
#[derive(Clone, Default)]
pub struct FaultyFs {
    state: Arc<Mutex<FaultState>>,
    hook: Arc<Mutex<Option<OpHook>>>,
}

impl FaultyFs {
    /// A file system with no faults armed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Arm a fault.
    pub fn inject(&self, fault: Fault) {
        self.state.lock().faults.push(fault);
    }

    /// Disarm every fault ("the disk was repaired, space was freed").
    pub fn clear(&self) {
        self.state.lock().faults.clear();
    }

    /// Report `bytes` of free space for paths containing `path_contains`
    /// (`None`: the real figure everywhere).
    pub fn set_available_space(&self, fake: Option<(&str, u64)>) {
        self.state.lock().available_space = fake.map(|(p, n)| (p.to_string(), n));
    }

    /// Run `hook` before every operation from now on (`None` removes it).
    pub fn set_hook(&self, hook: Option<OpHook>) {
        *self.hook.lock() = hook;
    }

    /// How many faults fired so far.
    pub fn injected(&self) -> u64 {
        self.state.lock().injected
    }

    fn check(&self, op: FaultOp, path: &Path) -> Option<FaultKind> {
        let hook = self.hook.lock().clone();
        if let Some(h) = hook {
            h(op, path);
        }
        let mut st = self.state.lock();
        let text = path.to_string_lossy();
        let mut fired = None;
        for f in st.faults.iter_mut() {
            if f.op != op || f.count == 0 || !text.contains(f.path_contains.as_str()) {
                continue;
            }
            if f.skip > 0 {
                f.skip -= 1;
                continue;
            }
            if f.count != u64::MAX {
                f.count -= 1;
            }
            fired = Some(f.kind);
            break;
        }
        if fired.is_some() {
            st.injected += 1;
        }
        fired
    }
}

fn fault_error(kind: FaultKind) -> io::Error {
    match kind {
        FaultKind::NoSpace => io::Error::from_raw_os_error(28), // ENOSPC
        FaultKind::Eio | FaultKind::ShortWrite => io::Error::from_raw_os_error(5), // EIO
    }
}

struct FaultyFile {
    inner: Arc<dyn VFile>,
    path: PathBuf,
    fs: FaultyFs,
}

impl VFile for FaultyFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if let Some(k) = self.fs.check(FaultOp::Read, &self.path) {
            return Err(fault_error(k));
        }
        self.inner.read_exact_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        match self.fs.check(FaultOp::Write, &self.path) {
            Some(FaultKind::ShortWrite) => {
                self.inner.write_all_at(&buf[..buf.len() / 2], offset)?;
                Err(fault_error(FaultKind::ShortWrite))
            }
            Some(k) => Err(fault_error(k)),
            None => self.inner.write_all_at(buf, offset),
        }
    }
    fn sync_data(&self) -> io::Result<()> {
        if let Some(k) = self.fs.check(FaultOp::Sync, &self.path) {
            return Err(fault_error(k));
        }
        self.inner.sync_data()
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
}

impl FaultyFs {
    fn wrap(&self, inner: Arc<dyn VFile>, path: &Path) -> Arc<dyn VFile> {
        Arc::new(FaultyFile {
            inner,
            path: path.to_path_buf(),
            fs: self.clone(),
        })
    }
}

impl Vfs for FaultyFs {
    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn VFile>> {
        if let Some(k) = self.check(FaultOp::Create, path) {
            return Err(fault_error(k));
        }
        Ok(self.wrap(StdFs.create_new(path)?, path))
    }
    fn open_rw(&self, path: &Path) -> io::Result<Arc<dyn VFile>> {
        Ok(self.wrap(StdFs.open_rw(path)?, path))
    }
    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn VFile>> {
        Ok(self.wrap(StdFs.open_read(path)?, path))
    }
    fn read_small(&self, path: &Path, limit: u64) -> io::Result<Vec<u8>> {
        if let Some(k) = self.check(FaultOp::Read, path) {
            return Err(fault_error(k));
        }
        StdFs.read_small(path, limit)
    }
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        if let Some(k) = self.check(FaultOp::Write, path) {
            return Err(fault_error(k));
        }
        StdFs.write_atomic(path, bytes)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        if let Some(k) = self.check(FaultOp::Rename, from) {
            return Err(fault_error(k));
        }
        StdFs.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        if let Some(k) = self.check(FaultOp::Remove, path) {
            return Err(fault_error(k));
        }
        StdFs.remove_file(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        StdFs.create_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        if let Some(k) = self.check(FaultOp::Sync, path) {
            return Err(fault_error(k));
        }
        StdFs.sync_dir(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        StdFs.list_dir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        StdFs.exists(path)
    }
    fn available_space(&self, path: &Path) -> io::Result<u64> {
        let fake = self.state.lock().available_space.clone();
        match fake {
            Some((p, n)) if path.to_string_lossy().contains(p.as_str()) => Ok(n),
            _ => StdFs.available_space(path),
        }
    }
}

/// A file held in memory: for fuzzing the segment readers on arbitrary bytes
/// without touching the disk, and for tests.
#[derive(Default)]
pub struct MemFile {
    bytes: parking_lot::RwLock<Vec<u8>>,
}

impl MemFile {
    /// A file with these contents.
    pub fn new(bytes: Vec<u8>) -> Self {
        MemFile {
            bytes: parking_lot::RwLock::new(bytes),
        }
    }

    /// A copy of the current contents.
    pub fn contents(&self) -> Vec<u8> {
        self.bytes.read().clone()
    }
}

impl VFile for MemFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let b = self.bytes.read();
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let end = start.checked_add(buf.len());
        match end.and_then(|e| b.get(start..e)) {
            Some(s) => {
                buf.copy_from_slice(s);
                Ok(())
            }
            None => Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
        }
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut b = self.bytes.write();
        let start =
            usize::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let end = start + buf.len();
        if b.len() < end {
            b.resize(end, 0);
        }
        b[start..end].copy_from_slice(buf);
        Ok(())
    }
    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.bytes.read().len() as u64)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        self.bytes.write().resize(len, 0);
        Ok(())
    }
}

/// Ask the kernel to drop the cached pages of `file` (a cold read next), for
/// benchmarks of reads from the disk. Advice: the kernel may keep pages
/// that are dirty or mapped.
pub fn drop_cached_pages(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: posix_fadvise reads no memory; the descriptor is open for the
    // duration of the call.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_that_cannot_be_written_says_only_reads_work() {
        let dir = Path::new("/srv/vault");
        for kind in [
            io::ErrorKind::PermissionDenied,
            io::ErrorKind::ReadOnlyFilesystem,
        ] {
            let e = lock_error(dir, &dir.join("LOCK"), io::Error::from(kind));
            assert!(matches!(e, Error::NotWritable { .. }), "{e}");
            assert!(e.to_string().contains("only read commands work"), "{e}");
        }
        let other = lock_error(dir, &dir.join("LOCK"), io::Error::other("disk on fire"));
        assert!(matches!(other, Error::Io { .. }), "{other}");
    }
}
