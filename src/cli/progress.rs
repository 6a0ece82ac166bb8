//! Progress on stderr for the long commands (verify, backup run, export,
//! defrag, redistribute, resync, import): a bar with the rate and the time
//! left, drawn only on a terminal and never with `--quiet` or `--json`.
//!
//! Owns drawing only. Background processes report their progress to the
//! store already (`running_processes`), so for them a watcher thread polls
//! that; verify and export take a callback.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::error::Result;
use crate::jobs::RunningProcess;

/// Whether progress may be drawn: asked for, and stderr is a terminal.
pub(crate) fn wanted(enabled: bool) -> bool {
    enabled && std::io::stderr().is_terminal()
}

/// A bar of `total` units, or none when progress is not wanted.
pub(crate) fn bar(enabled: bool, total: u64, label: &str, bytes: bool) -> Option<ProgressBar> {
    if !wanted(enabled) {
        return None;
    }
    let template = if bytes {
        "{msg} {bar:40} {bytes}/{total_bytes}  {bytes_per_sec}  eta {eta}"
    } else {
        "{msg} {bar:40} {pos}/{len}  {per_sec}  eta {eta}"
    };
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(label.to_string());
    Some(bar)
}

/// Run `f`, a background process, showing its progress as `running`
/// reports it (done of total units, with the process's name).
pub(crate) fn of_process<T>(
    enabled: bool,
    running: impl Fn() -> Vec<RunningProcess> + Sync,
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let Some(bar) = bar(enabled, 0, "", false) else {
        return f();
    };
    let finished = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !finished.load(Ordering::Relaxed) {
                if let Some(p) = running().first() {
                    bar.set_message(p.process.clone());
                    bar.set_length(p.total);
                    bar.set_position(p.done);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        let result = f();
        finished.store(true, Ordering::Relaxed);
        bar.finish_and_clear();
        result
    })
}
