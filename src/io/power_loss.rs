//! A power-loss model of the file system, for tests: [`PowerLossFs`] wraps
//! another [`Vfs`] (the real one, or [`FaultyFs`](super::FaultyFs)) and
//! keeps, for every file the store changes, what was last synced. Power can
//! be cut at a chosen operation (it and every later one fail with EIO, as a
//! machine that is off does nothing), and [`PowerLossFs::crash`] then turns
//! the live files into one possible post-crash image, chosen by a seed:
//!
//! - a file's unsynced bytes are all kept, all dropped, or kept in a random
//!   subset of 4 KiB pages (torn at page boundaries), its size rolled back
//!   to the synced size or not (bytes of an extension never written read as
//!   zeros);
//! - creations, renames and removals not followed by an fsync of their
//!   directory are undone, each directory keeping a random prefix of them
//!   (a journaling file system commits a directory's changes in order).
//!
//! What it does not model: directories themselves are created durably, and
//! a rename counts against the destination's directory only. The model
//! reads and writes the real files with `std::fs` to take its images; it
//! must not be used outside tests and tools.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{VFile, Vfs};

/// Page size of torn writes.
pub const PAGE: usize = 4096;

/// A file the model follows, by identity (it keeps it across renames).
#[derive(Clone)]
struct Tracked {
    path: PathBuf,
    /// The content as of the last sync (or as found, when first touched).
    durable: Vec<u8>,
}

/// A directory change not yet made durable by an fsync of `dir`.
enum DirOp {
    Create {
        dir: PathBuf,
        id: u64,
    },
    Rename {
        dir: PathBuf,
        id: u64,
        from: PathBuf,
        replaced: Option<(u64, Tracked)>,
    },
    Remove {
        dir: PathBuf,
        id: u64,
        file: Tracked,
    },
}

impl DirOp {
    fn dir(&self) -> &Path {
        match self {
            DirOp::Create { dir, .. } | DirOp::Rename { dir, .. } | DirOp::Remove { dir, .. } => {
                dir
            }
        }
    }
}

#[derive(Default)]
struct PowerState {
    files: BTreeMap<u64, Tracked>,
    by_path: BTreeMap<PathBuf, u64>,
    next_id: u64,
    pending: Vec<DirOp>,
    /// Operations done so far.
    ops: u64,
    /// Power goes when this many operations have been done.
    cut_at: Option<u64>,
    off: bool,
}

/// What a crash did, for a failing test's message.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CrashReport {
    /// Directory changes undone.
    pub undone: usize,
    /// Directory changes kept although never synced.
    pub kept: usize,
    /// Files whose unsynced bytes were all dropped.
    pub rolled_back: usize,
    /// Files torn at page boundaries.
    pub torn: usize,
    /// Files whose unsynced bytes all survived.
    pub survived: usize,
}

/// A [`Vfs`] that can lose power; see the module's doc. Clones share state.
#[derive(Clone)]
pub struct PowerLossFs {
    inner: Arc<dyn Vfs>,
    state: Arc<Mutex<PowerState>>,
}

fn power_off() -> io::Error {
    io::Error::other("the power is off")
}

fn parent(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

impl PowerLossFs {
    /// The model over `inner`, with the power on and nothing tracked.
    pub fn new(inner: Arc<dyn Vfs>) -> Self {
        PowerLossFs {
            inner,
            state: Arc::new(Mutex::new(PowerState::default())),
        }
    }

    /// Operations done so far (each call to the file system is one).
    pub fn ops(&self) -> u64 {
        self.state.lock().ops
    }

    /// Cut the power once `ops` operations have been done (the next fails).
    pub fn cut_at(&self, ops: u64) {
        self.state.lock().cut_at = Some(ops);
    }

    /// Cut the power now.
    pub fn cut(&self) {
        self.state.lock().off = true;
    }

    /// True once the power is off.
    pub fn is_off(&self) -> bool {
        self.state.lock().off
    }

    /// One operation: refused when the power is off or goes now.
    fn step(&self) -> io::Result<()> {
        let mut st = self.state.lock();
        if st.off || st.cut_at.is_some_and(|at| st.ops >= at) {
            st.off = true;
            return Err(power_off());
        }
        st.ops += 1;
        Ok(())
    }

    /// The id of the file at `path`, following it from now on (its current
    /// content counts as durable: it was not changed since power came on).
    fn track(st: &mut PowerState, path: &Path) -> u64 {
        if let Some(&id) = st.by_path.get(path) {
            return id;
        }
        let durable = fs::read(path).unwrap_or_default();
        Self::insert(st, path, durable)
    }

    fn insert(st: &mut PowerState, path: &Path, durable: Vec<u8>) -> u64 {
        st.next_id += 1;
        let id = st.next_id;
        let path = path.to_path_buf();
        st.files.insert(
            id,
            Tracked {
                path: path.clone(),
                durable,
            },
        );
        st.by_path.insert(path, id);
        id
    }

    fn wrap(&self, inner: Arc<dyn VFile>, id: Option<u64>) -> Arc<dyn VFile> {
        Arc::new(PowerFile {
            inner,
            id,
            fs: self.clone(),
        })
    }

    /// Turn the live files into one possible image after a power cut,
    /// chosen by `seed`, and start again with the power on and that image
    /// durable. The store using this file system must be dropped first.
    pub fn crash(&self, seed: u64) -> io::Result<CrashReport> {
        let mut st = self.state.lock();
        st.off = true;
        let mut rng = Rng(seed);
        let mut report = CrashReport::default();
        let pending = std::mem::take(&mut st.pending);
        // Each directory keeps a prefix of its unsynced changes.
        let mut keep: BTreeMap<PathBuf, usize> = BTreeMap::new();
        let mut counts: BTreeMap<PathBuf, usize> = BTreeMap::new();
        for op in &pending {
            *counts.entry(op.dir().to_path_buf()).or_default() += 1;
        }
        for (dir, n) in &counts {
            keep.insert(dir.clone(), rng.below(*n as u64 + 1) as usize);
        }
        let mut seen: BTreeMap<PathBuf, usize> = BTreeMap::new();
        let mut undo = Vec::new();
        for op in pending {
            let n = seen.entry(op.dir().to_path_buf()).or_default();
            *n += 1;
            if *n > keep[op.dir()] {
                undo.push(op);
            } else {
                report.kept += 1;
            }
        }
        report.undone = undo.len();
        for op in undo.into_iter().rev() {
            undo_op(&mut st, op)?;
        }
        let files: Vec<Tracked> = st.files.values().cloned().collect();
        for file in files {
            let Ok(live) = fs::read(&file.path) else {
                continue;
            };
            if live == file.durable {
                continue;
            }
            let image = match rng.below(4) {
                0 => {
                    report.survived += 1;
                    continue;
                }
                1 => {
                    report.rolled_back += 1;
                    file.durable.clone()
                }
                _ => {
                    report.torn += 1;
                    torn(&live, &file.durable, &mut rng)
                }
            };
            fs::write(&file.path, image)?;
        }
        *st = PowerState::default();
        Ok(report)
    }
}

/// Undo one directory change on the real files and in the model.
fn undo_op(st: &mut PowerState, op: DirOp) -> io::Result<()> {
    match op {
        DirOp::Create { id, .. } => {
            if let Some(file) = st.files.remove(&id) {
                st.by_path.remove(&file.path);
                remove_if_there(&file.path)?;
            }
        }
        DirOp::Rename {
            id, from, replaced, ..
        } => {
            if let Some(file) = st.files.get_mut(&id) {
                let to = std::mem::replace(&mut file.path, from.clone());
                st.by_path.remove(&to);
                st.by_path.insert(from.clone(), id);
                fs::rename(&to, &from)?;
                if let Some((old, tracked)) = replaced {
                    fs::write(&to, &tracked.durable)?;
                    st.by_path.insert(to, old);
                    st.files.insert(old, tracked);
                }
            }
        }
        DirOp::Remove { id, file, .. } => {
            fs::write(&file.path, &file.durable)?;
            st.by_path.insert(file.path.clone(), id);
            st.files.insert(id, file);
        }
    }
    Ok(())
}

fn remove_if_there(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The synced content with a random subset of the live pages over it, at
/// the live or the synced size; bytes never written read as zeros.
fn torn(live: &[u8], durable: &[u8], rng: &mut Rng) -> Vec<u8> {
    let size = if rng.below(2) == 0 {
        live.len()
    } else {
        durable.len()
    };
    let mut image = durable.to_vec();
    image.resize(size, 0);
    for start in (0..size).step_by(PAGE) {
        let end = (start + PAGE).min(size);
        let page = |b: &[u8]| b.get(start..end.min(b.len())).map(<[u8]>::to_vec);
        if page(live) != page(durable) && rng.below(2) == 0 {
            image[start..end].fill(0);
            let have = end.min(live.len()).max(start);
            image[start..have].copy_from_slice(&live[start..have]);
        }
    }
    image
}

/// The same seed, the same crash.
use crate::rng::SplitMix as Rng;

struct PowerFile {
    inner: Arc<dyn VFile>,
    /// The tracked file (none for a file opened to read).
    id: Option<u64>,
    fs: PowerLossFs,
}

impl VFile for PowerFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.fs.step()?;
        self.inner.read_exact_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.fs.step()?;
        self.inner.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.fs.step()?;
        self.inner.sync_data()?;
        let Some(id) = self.id else {
            return Ok(());
        };
        let len = self.inner.len()?;
        let mut now = vec![0; len as usize];
        self.inner.read_exact_at(&mut now, 0)?;
        if let Some(file) = self.fs.state.lock().files.get_mut(&id) {
            file.durable = now;
        }
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        self.fs.step()?;
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.fs.step()?;
        self.inner.set_len(len)
    }
}

impl Vfs for PowerLossFs {
    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn VFile>> {
        self.step()?;
        let file = self.inner.create_new(path)?;
        let mut st = self.state.lock();
        if let Some(old) = st.by_path.remove(path) {
            st.files.remove(&old);
        }
        let id = Self::insert(&mut st, path, Vec::new());
        st.pending.push(DirOp::Create {
            dir: parent(path),
            id,
        });
        drop(st);
        Ok(self.wrap(file, Some(id)))
    }
    fn open_rw(&self, path: &Path) -> io::Result<Arc<dyn VFile>> {
        self.step()?;
        let file = self.inner.open_rw(path)?;
        let id = Self::track(&mut self.state.lock(), path);
        Ok(self.wrap(file, Some(id)))
    }
    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn VFile>> {
        self.step()?;
        Ok(self.wrap(self.inner.open_read(path)?, None))
    }
    fn read_small(&self, path: &Path, limit: u64) -> io::Result<Vec<u8>> {
        self.step()?;
        self.inner.read_small(path, limit)
    }
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        self.step()?;
        self.inner.write_atomic(path, bytes)?;
        // Written, synced, renamed and its directory synced: all durable,
        // with every earlier change in that directory.
        let mut st = self.state.lock();
        if let Some(old) = st.by_path.remove(path) {
            st.files.remove(&old);
        }
        Self::insert(&mut st, path, bytes.to_vec());
        let dir = parent(path);
        st.pending.retain(|op| op.dir() != dir);
        Ok(())
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.step()?;
        let mut st = self.state.lock();
        let id = Self::track(&mut st, from);
        let replaced = if to.exists() {
            let old = Self::track(&mut st, to);
            st.by_path.remove(to);
            st.files.remove(&old).map(|t| (old, t))
        } else {
            None
        };
        if let Err(e) = self.inner.rename(from, to) {
            if let Some((old, tracked)) = replaced {
                st.by_path.insert(to.to_path_buf(), old);
                st.files.insert(old, tracked);
            }
            return Err(e);
        }
        st.by_path.remove(from);
        st.by_path.insert(to.to_path_buf(), id);
        if let Some(file) = st.files.get_mut(&id) {
            file.path = to.to_path_buf();
        }
        st.pending.push(DirOp::Rename {
            dir: parent(to),
            id,
            from: from.to_path_buf(),
            replaced,
        });
        Ok(())
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.step()?;
        let mut st = self.state.lock();
        let id = Self::track(&mut st, path);
        self.inner.remove_file(path)?;
        st.by_path.remove(path);
        if let Some(file) = st.files.remove(&id) {
            st.pending.push(DirOp::Remove {
                dir: parent(path),
                id,
                file,
            });
        }
        Ok(())
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.step()?;
        self.inner.create_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.step()?;
        self.inner.sync_dir(path)?;
        self.state.lock().pending.retain(|op| op.dir() != path);
        Ok(())
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.step()?;
        self.inner.list_dir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        self.step().is_ok() && self.inner.exists(path)
    }
    fn available_space(&self, path: &Path) -> io::Result<u64> {
        self.step()?;
        self.inner.available_space(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::StdFs;

    fn model() -> (tempfile::TempDir, PowerLossFs) {
        (
            tempfile::tempdir().unwrap(),
            PowerLossFs::new(Arc::new(StdFs)),
        )
    }

    #[test]
    fn what_was_synced_with_its_directory_survives_every_crash() {
        for seed in 0..50 {
            let (dir, fs) = model();
            let path = dir.path().join("a");
            let f = fs.create_new(&path).unwrap();
            f.write_all_at(&[7; 10_000], 0).unwrap();
            f.sync_data().unwrap();
            fs.sync_dir(dir.path()).unwrap();
            f.write_all_at(&[9; 5000], 10_000).unwrap();
            drop(f);
            fs.crash(seed).unwrap();
            let after = std::fs::read(&path).unwrap();
            assert_eq!(after[..10_000], [7; 10_000], "seed {seed}");
            assert!(
                after.len() == 10_000 || after.len() == 15_000,
                "seed {seed}"
            );
        }
    }

    #[test]
    fn unsynced_changes_are_lost_for_some_seeds_and_kept_for_others() {
        let (mut gone, mut kept, mut torn) = (0, 0, 0);
        for seed in 0..100 {
            let (dir, fs) = model();
            let old = dir.path().join("old");
            std::fs::write(&old, [1; 3 * PAGE]).unwrap();
            let f = fs.open_rw(&old).unwrap();
            f.write_all_at(&[2; 3 * PAGE], 0).unwrap();
            let new = dir.path().join("new");
            fs.create_new(&new).unwrap().sync_data().unwrap();
            fs.crash(seed).unwrap();
            gone += usize::from(!new.exists());
            let after = std::fs::read(&old).unwrap();
            let twos = after.iter().filter(|&&b| b == 2).count();
            kept += usize::from(twos == 3 * PAGE);
            torn += usize::from(twos > 0 && twos < 3 * PAGE);
            // Torn only at page boundaries.
            assert_eq!(twos % PAGE, 0, "seed {seed}");
        }
        assert!(gone > 10 && kept > 10 && torn > 10, "{gone} {kept} {torn}");
    }

    #[test]
    fn an_unsynced_rename_over_a_file_is_undone_with_the_old_file_back() {
        let mut undone = 0;
        for seed in 0..40 {
            let (dir, fs) = model();
            let (tmp, target) = (dir.path().join("t.tmp"), dir.path().join("t"));
            std::fs::write(&target, b"old").unwrap();
            std::fs::write(&tmp, b"new").unwrap();
            fs.rename(&tmp, &target).unwrap();
            let report = fs.crash(seed).unwrap();
            let now = std::fs::read(&target).unwrap();
            if report.undone == 1 {
                undone += 1;
                assert_eq!(now, b"old");
                assert_eq!(std::fs::read(&tmp).unwrap(), b"new");
            } else {
                assert_eq!(now, b"new");
                assert!(!tmp.exists());
            }
        }
        assert!(undone > 5 && undone < 35, "{undone}");
    }

    #[test]
    fn power_cut_at_an_operation_fails_it_and_every_later_one() {
        let (dir, fs) = model();
        fs.cut_at(fs.ops() + 2);
        let f = fs.create_new(&dir.path().join("x")).unwrap();
        f.write_all_at(b"1", 0).unwrap();
        assert!(f.sync_data().is_err());
        assert!(f.write_all_at(b"2", 1).is_err());
        assert!(fs.is_off());
    }
}
