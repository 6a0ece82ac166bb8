//! Import of real mail (Maildir, mbox files, directories of .eml files) and
//! export of an owner's items back to .eml files.
//!
//! Owns finding messages in an export, deciding what kind each file is, and
//! naming messages as items: a message file is the item named by its path
//! under the owner's folder, an mbox message is `PATH#N`. Re-importing the
//! same export is therefore idempotent.
//!
//! The kind of a file is decided by its place and name, never by its first
//! line alone (a Maildir message or an .eml export may well start with a
//! `From ` line, and must be stored byte for byte): see [`InputFormat`].
//! It stores through the public store API only (`archive_many`), in batches
//! whose contents are hashed and compressed in parallel on all cores.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use crate::catalog::Archived;
use crate::error::{Error, Result};
use crate::id::SavesetId;
use crate::store::Store;

/// What kind of input the files are.
///
/// With [`InputFormat::Auto`] each file is judged by its place and name:
/// - a file in a Maildir `cur/` or `new/` folder, or named `*.eml`, is one
///   message;
/// - a file named `*.mbox`, `*.mbx` or `mbox`, a file inside an `*.mbox`
///   folder (Apple Mail's export), or a file with a Thunderbird index beside
///   it (`NAME.msf`) is an mbox and is split on its `From ` lines;
/// - any other file is one message; if it starts with a `From ` line the
///   report carries a warning that `--format mbox` would split it.
///
/// Thunderbird's `.msf` index files beside an mbox are not mail and are
/// passed over. The other variants apply one kind to every file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum InputFormat {
    /// Decide per file by place and name.
    #[default]
    Auto,
    /// Every file is one message (Maildir's `tmp/` is passed over).
    Maildir,
    /// Every file is an mbox.
    Mbox,
    /// Every file is one message.
    Eml,
}

impl std::str::FromStr for InputFormat {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "maildir" => Ok(Self::Maildir),
            "mbox" => Ok(Self::Mbox),
            "eml" => Ok(Self::Eml),
            _ => Err(format!(
                "unknown format {s:?}: expected auto, maildir, mbox or eml"
            )),
        }
    }
}

/// What one file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileKind {
    /// One message, stored byte for byte.
    Message,
    /// One message whose kind was a guess (no telling place or name).
    GuessedMessage,
    /// An mbox, split into messages.
    Mbox,
    /// Not mail (a mail client's index): passed over.
    NotMail,
}

/// The kind of the file at `path` under `format`.
fn file_kind(path: &Path, format: InputFormat) -> FileKind {
    match format {
        InputFormat::Mbox => return FileKind::Mbox,
        InputFormat::Maildir | InputFormat::Eml => return FileKind::Message,
        InputFormat::Auto => {}
    }
    let lower = |s: Option<&std::ffi::OsStr>| s.map(|s| s.to_string_lossy().to_ascii_lowercase());
    let name = lower(path.file_name()).unwrap_or_default();
    let ext = lower(path.extension()).unwrap_or_default();
    let parent = lower(path.parent().and_then(Path::file_name)).unwrap_or_default();
    if parent == "cur" || parent == "new" || ext == "eml" {
        return FileKind::Message;
    }
    if ext == "msf" && path.with_extension("").is_file() {
        return FileKind::NotMail;
    }
    let thunderbird_index = {
        let mut msf = path.as_os_str().to_owned();
        msf.push(".msf");
        Path::new(&msf).is_file()
    };
    if ext == "mbox"
        || ext == "mbx"
        || name == "mbox"
        || parent.ends_with(".mbox")
        || thunderbird_index
    {
        return FileKind::Mbox;
    }
    FileKind::GuessedMessage
}

/// How to import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// What kind of input the files are.
    pub format: InputFormat,
    /// Every message goes to this owner.
    pub owner: Option<String>,
    /// Each top-level folder of the path is one owner (its name).
    pub owner_from_folder: bool,
    /// Show a progress bar (only drawn on a terminal).
    pub progress: bool,
}

/// What an import did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportReport {
    /// Messages found.
    pub messages: u64,
    /// References added.
    pub references: u64,
    /// Messages whose content was new to the store.
    pub new_content: u64,
    /// Messages already stored (the same message in another mailbox, or re-imported).
    pub duplicates: u64,
    /// Bytes of the messages read.
    pub bytes: u64,
    /// Files and messages skipped, with why.
    pub skipped: Vec<Skipped>,
    /// Files imported in a way that may not be what was meant, with why.
    pub warnings: Vec<Skipped>,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// A file or message that was not imported (or, as a warning, one whose
/// kind was guessed).
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// The file (and `#N` for an mbox message).
    pub path: String,
    /// Why.
    pub reason: String,
}

/// One message source: a file, and the owner it goes to.
struct Source {
    owner: String,
    path: PathBuf,
    item_base: String,
    kind: FileKind,
}

/// Messages per batch: one catalog record and one fsync each.
const BATCH: usize = 512;

/// Stores a batch of (owner, item, content): one result per item, or the
/// error that stopped the whole batch ([`Store::archive_many`]'s contract).
pub type ArchiveBatch<'a> = dyn Fn(&[(&str, &str, &[u8])]) -> Result<Vec<Result<Archived>>> + 'a;

/// Import every message under `path` into `store`.
pub fn import(store: &Store, path: &Path, opts: &ImportOptions) -> Result<ImportReport> {
    import_into(&|items| store.archive_many(items), path, opts)
}

/// Import every message under `path` through `archive_many` (a store here,
/// or the service that holds it).
pub fn import_into(
    archive_many: &ArchiveBatch,
    path: &Path,
    opts: &ImportOptions,
) -> Result<ImportReport> {
    let started = Instant::now();
    let mut report = ImportReport::default();
    let sources = find_sources(path, opts, &mut report)?;
    let bar = progress_bar(opts.progress, sources.len() as u64);
    for chunk in sources.chunks(BATCH) {
        // Read and split in parallel; each source yields (owner, item, bytes).
        let loaded: Vec<Loaded> = chunk.par_iter().map(load_source).collect();
        let mut batch: Vec<Message> = Vec::new();
        for loaded in loaded {
            batch.extend(loaded.messages);
            report.skipped.extend(loaded.skipped);
            report.warnings.extend(loaded.warning);
        }
        let items: Vec<(&str, &str, &[u8])> = batch
            .iter()
            .map(|(o, i, c)| (o.as_str(), i.as_str(), c.as_slice()))
            .collect();
        let results = archive_many(&items)?;
        for ((owner, item, content), r) in batch.iter().zip(results) {
            report.messages += 1;
            report.bytes += content.len() as u64;
            match r {
                Ok(a) => {
                    report.references += u64::from(a.new_reference);
                    if a.new_content {
                        report.new_content += 1;
                    } else {
                        report.duplicates += 1;
                    }
                }
                Err(e) => report.skipped.push(Skipped {
                    path: format!("{owner}/{item}"),
                    reason: e.to_string(),
                }),
            }
        }
        if let Some(b) = &bar {
            b.inc(chunk.len() as u64);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

fn progress_bar(wanted: bool, total: u64) -> Option<indicatif::ProgressBar> {
    if !wanted || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total);
    let style =
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} files  {per_sec}  eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    Some(bar)
}

/// A message to archive: owner, item, bytes.
type Message = (String, String, Vec<u8>);
/// What one source file gave: its messages, or why it was skipped, and a
/// warning when its kind was a guess that may be wrong.
#[derive(Default)]
struct Loaded {
    messages: Vec<Message>,
    skipped: Option<Skipped>,
    warning: Option<Skipped>,
}

fn load_source(src: &Source) -> Loaded {
    let note = |reason: &str| {
        Some(Skipped {
            path: src.path.display().to_string(),
            reason: reason.to_string(),
        })
    };
    let skip = |reason: &str| Loaded {
        skipped: note(reason),
        ..Loaded::default()
    };
    let bytes = match std::fs::read(&src.path) {
        Ok(b) => b,
        Err(e) => return skip(&format!("unreadable: {e}")),
    };
    if bytes.is_empty() {
        return skip("empty file");
    }
    match src.kind {
        FileKind::NotMail => Loaded::default(),
        FileKind::Mbox => {
            let messages = split_mbox(&bytes);
            if messages.is_empty() {
                return skip("malformed mbox: no message found");
            }
            let messages = messages
                .into_iter()
                .enumerate()
                .map(|(n, m)| (src.owner.clone(), format!("{}#{}", src.item_base, n + 1), m))
                .collect();
            Loaded {
                messages,
                ..Loaded::default()
            }
        }
        FileKind::Message | FileKind::GuessedMessage => {
            let warning = (src.kind == FileKind::GuessedMessage && bytes.starts_with(b"From "))
                .then(|| {
                    note(
                        "starts with a \"From \" line but is not named or placed as an mbox: \
                         stored whole as one message (import it with --format mbox to split it)",
                    )
                })
                .flatten();
            Loaded {
                messages: vec![(src.owner.clone(), src.item_base.clone(), bytes)],
                skipped: None,
                warning,
            }
        }
    }
}

/// Find the files to import and the owner of each.
fn find_sources(
    path: &Path,
    opts: &ImportOptions,
    report: &mut ImportReport,
) -> Result<Vec<Source>> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, "open import source", e))?;
    let mut out = Vec::new();
    if opts.owner_from_folder {
        if !meta.is_dir() {
            return Err(Error::InvalidSetting(format!(
                "{}: --owner-from-folder needs a directory of mailbox folders",
                path.display()
            )));
        }
        for (name, kind) in sorted_entries(path)? {
            if kind == EntryKind::Dir {
                let folder = path.join(&name);
                collect(&folder, &folder, &name, opts.format, &mut out, report);
            }
        }
        return Ok(out);
    }
    let owner = opts.owner.clone().ok_or_else(|| {
        Error::InvalidSetting("import needs --owner or --owner-from-folder".into())
    })?;
    if meta.is_file() {
        let base = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.push(Source {
            owner,
            path: path.to_path_buf(),
            item_base: base,
            kind: file_kind(path, opts.format),
        });
    } else {
        collect(path, path, &owner, opts.format, &mut out, report);
    }
    Ok(out)
}

/// What a directory entry is, from the listing itself where the file
/// system says (no `stat` a file: a big import lists many thousands).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EntryKind {
    Dir,
    File,
    Other,
}

/// A directory's visible entries, sorted by name, with their kinds.
/// Symbolic links and entries whose kind the listing does not give are
/// looked up (following links, as a path would be).
fn sorted_entries(dir: &Path) -> Result<Vec<(String, EntryKind)>> {
    let mut entries: Vec<(String, EntryKind)> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, "list directory", e))?
        .filter_map(|e| e.ok())
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let listed = e.file_type().ok().filter(|t| !t.is_symlink());
            let kind =
                match listed.or_else(|| std::fs::metadata(e.path()).ok().map(|m| m.file_type())) {
                    Some(t) if t.is_dir() => EntryKind::Dir,
                    Some(t) if t.is_file() => EntryKind::File,
                    _ => EntryKind::Other,
                };
            (name, kind)
        })
        .filter(|(n, _)| !n.starts_with('.'))
        .collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(entries)
}

/// Walk `dir`: Maildir folders (`cur`, `new`) and plain directories alike;
/// every regular file is a message or an mbox. Unreadable directories are
/// reported, not fatal.
fn collect(
    root: &Path,
    dir: &Path,
    owner: &str,
    format: InputFormat,
    out: &mut Vec<Source>,
    report: &mut ImportReport,
) {
    let entries = match sorted_entries(dir) {
        Ok(n) => n,
        Err(e) => {
            report.skipped.push(Skipped {
                path: dir.display().to_string(),
                reason: e.to_string(),
            });
            return;
        }
    };
    let maildir = entries
        .iter()
        .any(|(n, k)| n == "cur" && *k == EntryKind::Dir);
    for (name, kind) in entries {
        let p = dir.join(&name);
        // Maildir's tmp holds messages still being delivered.
        if name == "tmp" && maildir {
            continue;
        }
        if kind == EntryKind::Dir {
            collect(root, &p, owner, format, out, report);
        } else if kind == EntryKind::File {
            let rel = p
                .strip_prefix(root)
                .unwrap_or(&p)
                .to_string_lossy()
                .into_owned();
            out.push(Source {
                owner: owner.to_string(),
                kind: file_kind(&p, format),
                path: p,
                item_base: rel,
            });
        }
    }
}

/// Split an mbox file into messages. A message starts after a `From ` line
/// at the start of the file or after a line break. When its header has a
/// `Content-Length` that lands exactly on the next `From ` line (or the end
/// of the file), that length is trusted, so unescaped `From ` lines inside
/// bodies do not split the message; otherwise the next `From ` line ends it.
/// The separator line is not part of the message; nothing is unescaped.
pub fn split_mbox(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut pos = 0;
    // Skip anything before the first separator (a malformed start).
    if !bytes.starts_with(b"From ") {
        match find_from_line(bytes, 0) {
            Some(p) => pos = p,
            None => return out,
        }
    }
    while pos < bytes.len() {
        let start = line_end(bytes, pos);
        let end = content_length_end(bytes, start)
            .or_else(|| find_from_line(bytes, start))
            .unwrap_or(bytes.len());
        if end > start {
            out.push(bytes[start..end].to_vec());
        }
        pos = end;
    }
    out
}

fn line_end(bytes: &[u8], pos: usize) -> usize {
    bytes[pos..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |i| pos + i + 1)
}

/// The offset of the next line starting with `From ` at or after `from`.
fn find_from_line(bytes: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < bytes.len() {
        if (i == 0 || bytes[i - 1] == b'\n') && bytes[i..].starts_with(b"From ") {
            return Some(i);
        }
        i = line_end(bytes, i);
    }
    None
}

/// Where a message that starts at `start` ends according to its
/// Content-Length header, if the header exists and lands on a boundary.
fn content_length_end(bytes: &[u8], start: usize) -> Option<usize> {
    let head_end = find_subslice(&bytes[start..], b"\n\n")
        .map(|i| start + i + 2)
        .or_else(|| find_subslice(&bytes[start..], b"\r\n\r\n").map(|i| start + i + 4))?;
    let head = &bytes[start..head_end];
    let len: usize = head.split(|&b| b == b'\n').find_map(|line| {
        let line = std::str::from_utf8(line).ok()?;
        let (k, v) = line.split_once(':')?;
        k.eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse().ok())?
    })?;
    let end = head_end.checked_add(len)?;
    if end > bytes.len() {
        return None;
    }
    // The body may be followed by the blank line mbox puts before `From `.
    let mut next = end;
    while next < bytes.len() && (bytes[next] == b'\n' || bytes[next] == b'\r') {
        next += 1;
    }
    (next == bytes.len() || bytes[next..].starts_with(b"From ")).then_some(next)
}

fn find_subslice(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// What an export did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ExportReport {
    /// Messages written.
    pub messages: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// Write every live item of `owner` to `dir` as `<item>.eml` (names made
/// safe for a file system, never outside `dir`), in parallel.
pub fn export(store: &Store, owner: &str, dir: &Path) -> Result<ExportReport> {
    export_with_progress(store, Some(owner), dir, &|_, _| {})
}

/// Export every owner into `dir/<owner>/`, all in one parallel pass.
pub fn export_all(store: &Store, dir: &Path) -> Result<ExportReport> {
    export_with_progress(store, None, dir, &|_, _| {})
}

/// [`export`] of one owner (or, with `None`, [`export_all`]), calling
/// `progress(messages, total)` first with 0 written, then after each
/// message written (from any thread).
pub fn export_with_progress(
    store: &Store,
    owner: Option<&str>,
    dir: &Path,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<ExportReport> {
    let started = Instant::now();
    let planned = match owner {
        Some(owner) => plan_export(store, owner, dir)?,
        None => plan_export_all(store, dir)?,
    };
    let total = planned.len() as u64;
    progress(0, total);
    let done = std::sync::atomic::AtomicU64::new(0);
    let tick = || {
        let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        progress(n, total);
    };
    let mut report = write_planned(store, &planned, &tick)?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Plan every owner's export into `dir/<owner>/`.
fn plan_export_all(store: &Store, dir: &Path) -> Result<Vec<(PathBuf, SavesetId)>> {
    let mut planned = Vec::new();
    let mut folders = std::collections::HashSet::new();
    for o in store.owners()? {
        let mut folder = safe_file_name(&o.owner);
        while !folders.insert(folder.clone()) {
            folder.push('_');
        }
        planned.extend(plan_export(store, &o.owner, &dir.join(folder))?);
    }
    Ok(planned)
}

fn write_planned(
    store: &Store,
    planned: &[(PathBuf, SavesetId)],
    tick: &(dyn Fn() + Sync),
) -> Result<ExportReport> {
    let bytes: Result<Vec<u64>> = planned
        .par_iter()
        .map(|(path, id)| {
            let content = store.get(id)?;
            std::fs::write(path, &content).map_err(|e| Error::io(path, "write message", e))?;
            tick();
            Ok(content.len() as u64)
        })
        .collect();
    let bytes = bytes?;
    Ok(ExportReport {
        messages: bytes.len() as u64,
        bytes: bytes.iter().sum(),
        seconds: 0.0,
    })
}

/// File names for an owner's live items under `dir` (created).
fn plan_export(store: &Store, owner: &str, dir: &Path) -> Result<Vec<(PathBuf, SavesetId)>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, "create directory", e))?;
    let items: Vec<(String, SavesetId)> = store
        .items(owner, None, usize::MAX)?
        .into_iter()
        .filter(|i| i.trashed_at_ms.is_none())
        .filter_map(|i| Some((i.item, i.id.parse().ok()?)))
        .collect();
    let mut names = std::collections::HashSet::new();
    let planned: Vec<(PathBuf, SavesetId)> = items
        .into_iter()
        .map(|(item, id)| {
            let base = safe_file_name(&item);
            let mut name = format!("{base}.eml");
            let mut n = 1;
            while !names.insert(name.clone()) {
                n += 1;
                name = format!("{base}-{n}.eml");
            }
            (dir.join(name), id)
        })
        .collect();
    Ok(planned)
}

/// An item name as one safe file name: path separators and anything not
/// plainly printable become `_`; never empty, never `.` or `..`.
fn safe_file_name(item: &str) -> String {
    let mut s: String = item
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-+@=,".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(200)
        .collect();
    if s.is_empty() || s.chars().all(|c| c == '.') {
        s = format!("item_{s}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbox_splits_on_from_lines() {
        let mbox = b"From a@b Mon Jan 1 00:00:00 2024\nSubject: one\n\nbody\n>From quoted\n\nFrom c@d Tue Jan 2 00:00:00 2024\nSubject: two\n\nx\n";
        let parts = split_mbox(mbox);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], b"Subject: one\n\nbody\n>From quoted\n\n");
        assert_eq!(parts[1], b"Subject: two\n\nx\n");
    }

    #[test]
    fn content_length_keeps_from_lines_inside_bodies() {
        let body = b"first line\nFrom the desk of nobody\nlast\n";
        let mut mbox =
            format!("From - \nSubject: a\nContent-Length: {}\n\n", body.len()).into_bytes();
        mbox.extend_from_slice(body);
        mbox.extend_from_slice(b"\nFrom - \nSubject: b\n\nsecond\n");
        let parts = split_mbox(&mbox);
        assert_eq!(parts.len(), 2, "{parts:?}");
        assert!(parts[0].ends_with(b"last\n\n"));
        assert_eq!(parts[1], b"Subject: b\n\nsecond\n");
        // A wrong Content-Length is ignored rather than trusted.
        let bad = b"From - \nContent-Length: 3\n\nabcdef\nFrom - \nSubject: c\n\nz\n";
        assert_eq!(split_mbox(bad).len(), 2);
    }

    #[test]
    fn file_names_are_safe() {
        assert_eq!(safe_file_name("<1@x>"), "_1@x_");
        assert_eq!(safe_file_name("../../etc/passwd"), ".._.._etc_passwd");
        assert_eq!(safe_file_name(".."), "item_..");
        assert_eq!(safe_file_name(""), "item_");
    }
}
