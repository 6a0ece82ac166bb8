//! Import of real mail (Maildir, mbox files, directories of .eml files) and
//! export of an owner's items back to .eml files.
//!
//! Owns finding messages in an export and naming them as items: an .eml
//! file is the item named by its path under the owner's folder, an mbox
//! message is `PATH#N`. Re-importing the same export is therefore idempotent.
//! It stores through the public store API only (`archive_many`), in batches
//! whose contents are hashed and compressed in parallel on all cores.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::id::SavesetId;
use crate::store::Store;

/// How to import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
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
    /// Wall time, seconds.
    pub seconds: f64,
}

/// A file or message that was not imported.
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
}

/// Messages per batch: one catalog record and one fsync each.
const BATCH: usize = 512;

/// Import every message under `path` into `store`.
pub fn import(store: &Store, path: &Path, opts: &ImportOptions) -> Result<ImportReport> {
    let started = Instant::now();
    let mut report = ImportReport::default();
    let sources = find_sources(path, opts, &mut report)?;
    let bar = progress_bar(opts.progress, sources.len() as u64);
    for chunk in sources.chunks(BATCH) {
        // Read and split in parallel; each source yields (owner, item, bytes).
        let loaded: Vec<Loaded> = chunk.par_iter().map(load_source).collect();
        let mut batch: Vec<Message> = Vec::new();
        for (messages, skipped) in loaded {
            batch.extend(messages);
            report.skipped.extend(skipped);
        }
        let items: Vec<(&str, &str, &[u8])> = batch
            .iter()
            .map(|(o, i, c)| (o.as_str(), i.as_str(), c.as_slice()))
            .collect();
        let results = store.archive_many(&items)?;
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
/// What one source file gave: its messages, or why it was skipped.
type Loaded = (Vec<Message>, Option<Skipped>);

fn load_source(src: &Source) -> Loaded {
    let skip = |reason: String| Skipped {
        path: src.path.display().to_string(),
        reason,
    };
    let bytes = match std::fs::read(&src.path) {
        Ok(b) => b,
        Err(e) => return (Vec::new(), Some(skip(format!("unreadable: {e}")))),
    };
    if bytes.is_empty() {
        return (Vec::new(), Some(skip("empty file".into())));
    }
    if is_mbox(&src.path, &bytes) {
        let messages = split_mbox(&bytes);
        if messages.is_empty() {
            return (
                Vec::new(),
                Some(skip("malformed mbox: no message found".into())),
            );
        }
        let out = messages
            .into_iter()
            .enumerate()
            .map(|(n, m)| (src.owner.clone(), format!("{}#{}", src.item_base, n + 1), m))
            .collect();
        return (out, None);
    }
    (
        vec![(src.owner.clone(), src.item_base.clone(), bytes)],
        None,
    )
}

fn is_mbox(path: &Path, bytes: &[u8]) -> bool {
    path.extension().is_some_and(|e| e == "mbox" || e == "mbx") || bytes.starts_with(b"From ")
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
        for name in sorted_names(path)? {
            let folder = path.join(&name);
            if folder.is_dir() {
                collect(&folder, &folder, &name, &mut out, report);
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
        });
    } else {
        collect(path, path, &owner, &mut out, report);
    }
    Ok(out)
}

fn sorted_names(dir: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, "list directory", e))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    Ok(names)
}

/// Walk `dir`: Maildir folders (`cur`, `new`) and plain directories alike;
/// every regular file is a message or an mbox. Unreadable directories are
/// reported, not fatal.
fn collect(root: &Path, dir: &Path, owner: &str, out: &mut Vec<Source>, report: &mut ImportReport) {
    let names = match sorted_names(dir) {
        Ok(n) => n,
        Err(e) => {
            report.skipped.push(Skipped {
                path: dir.display().to_string(),
                reason: e.to_string(),
            });
            return;
        }
    };
    for name in names {
        let p = dir.join(&name);
        // Maildir's tmp holds messages still being delivered.
        if name == "tmp" && dir.join("cur").is_dir() {
            continue;
        }
        if p.is_dir() {
            collect(root, &p, owner, out, report);
        } else if p.is_file() {
            let rel = p
                .strip_prefix(root)
                .unwrap_or(&p)
                .to_string_lossy()
                .into_owned();
            out.push(Source {
                owner: owner.to_string(),
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
    let started = Instant::now();
    let planned = plan_export(store, owner, dir)?;
    let mut report = write_planned(store, &planned)?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Export every owner into `dir/<owner>/`, all in one parallel pass.
pub fn export_all(store: &Store, dir: &Path) -> Result<ExportReport> {
    let started = Instant::now();
    let mut planned = Vec::new();
    let mut folders = std::collections::HashSet::new();
    for o in store.owners() {
        let mut folder = safe_file_name(&o.owner);
        while !folders.insert(folder.clone()) {
            folder.push('_');
        }
        planned.extend(plan_export(store, &o.owner, &dir.join(folder))?);
    }
    let mut report = write_planned(store, &planned)?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

fn write_planned(store: &Store, planned: &[(PathBuf, SavesetId)]) -> Result<ExportReport> {
    let bytes: Result<Vec<u64>> = planned
        .par_iter()
        .map(|(path, id)| {
            let content = store.get(id)?;
            std::fs::write(path, &content).map_err(|e| Error::io(path, "write message", e))?;
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
