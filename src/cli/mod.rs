//! The command line: argument parsing and output, no engine logic.
//!
//! Every command maps to one library call. Output for people goes to stdout
//! as plain lines; `--json` gives one JSON document with the keys documented
//! in the README (a contract for scripts and backup tools). Errors are one
//! line on stderr and exit code 2; `has` answers "absent" and `verify`
//! answers "damage found" with exit code 1.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::backup::Cursor;
use crate::bench::{BenchConfig, run_bench};
use crate::error::{Error, Result};
use crate::format::segment::MAX_RECORD_BYTES;
use crate::id::SavesetId;
use crate::store::{InitOptions, OpenOptions, Store};

pub use crate::present::{
    NO_HISTORY, format_bytes, format_duration_ms, format_seconds, format_time, history_rows,
    parse_bytes, parse_duration, parse_on_off, parse_time, period_since, rate, running_rows,
};

/// Print a line on stdout. A reader that went away (a listing piped to
/// `head`) ends the program quietly with exit 0, as `ls | head` does,
/// instead of a panic.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cli::say_raw(&format!("{}\n", format_args!($($arg)*)))
    };
}

/// Write `text` to stdout; see [`say!`].
pub(crate) fn say_raw(text: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        quit_on_closed_pipe(&e);
        eprintln!("vaultstore: error: <stdout>: write output: {e}");
        std::process::exit(2);
    }
}

/// Exit 0 at once when `e` says the reader of stdout is gone.
fn quit_on_closed_pipe(e: &std::io::Error) {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
}

// The command groups come after `say!`, which they use.
mod backup;
mod bench;
mod catalog;
mod compaction;
mod help;
mod import;
mod jobs;
mod keys;
mod progress;
mod remote;
mod service;
mod settings;
mod store;

/// vaultstore: content-addressed, log-structured storage for mail archives.
#[derive(Parser, Debug)]
#[command(name = "vaultstore", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Print less: no progress bars, and only errors on stderr.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Print more on stderr: -v what the engine does, -vv its details.
    #[arg(short, long, action = clap::ArgAction::Count, global = true, conflicts_with = "quiet")]
    verbose: u8,
}

#[derive(Args, Debug, Clone)]
pub(super) struct StoreArg {
    /// The store directory (or set VAULTSTORE_STORE).
    #[arg(long, env = "VAULTSTORE_STORE", value_name = "DIR")]
    store: PathBuf,
    /// An encrypted store's passphrase, from the first line of this file
    /// (else VAULTSTORE_PASSPHRASE, else a prompt on the terminal).
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
    /// Bound of the cache of ranges read from object storage (e.g. 1G).
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes, env = "VAULTSTORE_CACHE_SIZE")]
    cache_size: Option<u64>,
}

impl StoreArg {
    /// Open options that ask for the passphrase if the store is encrypted.
    fn open_options(&self, read_only: bool) -> OpenOptions {
        OpenOptions {
            read_only,
            unlock: keys::unlock(self),
            object_cache_bytes: self
                .cache_size
                .unwrap_or(crate::log::DEFAULT_OBJECT_CACHE_BYTES),
            ..OpenOptions::default()
        }
    }

    /// Open the store for reading and writing.
    fn open(&self) -> Result<Store> {
        Store::open_with(&self.store, self.open_options(false))
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    #[command(flatten)]
    Store(store::Commands),
    #[command(flatten)]
    Catalog(catalog::Commands),
    #[command(flatten)]
    Backup(backup::Commands),
    #[command(flatten)]
    Compaction(compaction::Commands),
    #[command(flatten)]
    Jobs(jobs::Commands),
    #[command(flatten)]
    Service(service::Commands),
    #[command(flatten)]
    Import(import::Commands),
    #[command(flatten)]
    Bench(bench::Commands),
    #[command(flatten)]
    Keys(keys::Commands),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (or, with --out DIR, write one per command into DIR).
    Man {
        /// Write vaultstore.1 and a page per command into this directory.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

/// Parse the command line and run it.
pub fn main() -> ExitCode {
    let matches = help::grouped(Cli::command()).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // The service logs one line per request; other commands only warnings.
    let serving = matches!(
        cli.command,
        Command::Service(service::Commands::Serve { .. })
    );
    init_tracing(match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (_, 0) if serving => "info",
        (_, 0) => "warn",
        (_, 1) => "info",
        _ => "debug",
    });
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vaultstore: error: {e}");
            ExitCode::from(2)
        }
    }
}

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VAULTSTORE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
        .try_init();
}

fn open_read_only(store: &StoreArg) -> Result<Store> {
    Store::open_with(&store.store, store.open_options(true))
}

fn parse_id(text: &str) -> Result<SavesetId> {
    text.trim().parse()
}

fn run(cli: Cli) -> Result<ExitCode> {
    // Progress bars: on a terminal, unless --quiet; commands with --json
    // turn them off too.
    let show = !cli.quiet;
    match cli.command {
        Command::Store(c) => store::run(c, show),
        Command::Catalog(c) => catalog::run(c),
        Command::Backup(c) => backup::run(c, show),
        Command::Compaction(c) => compaction::run(c, show),
        Command::Jobs(c) => jobs::run(c, show),
        Command::Service(c) => service::run(c),
        Command::Import(c) => import::run(c, show),
        Command::Bench(c) => bench::run(c, show),
        Command::Keys(c) => keys::run(c),
        Command::Completions { shell } => {
            help::completions(Cli::command(), shell);
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { out } => {
            help::man(Cli::command(), out.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_json(v: &serde_json::Value) {
    say!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn read_input(file: Option<&Path>) -> Result<Vec<u8>> {
    let limit = MAX_RECORD_BYTES;
    let mut buf = Vec::new();
    let (what, res) = match file {
        Some(p) => {
            let f = std::fs::File::open(p).map_err(|e| Error::io(p, "open input", e))?;
            (p.to_path_buf(), f.take(limit + 1).read_to_end(&mut buf))
        }
        None => (
            PathBuf::from("<stdin>"),
            std::io::stdin()
                .lock()
                .take(limit + 1)
                .read_to_end(&mut buf),
        ),
    };
    res.map_err(|e| Error::io(&what, "read input", e))?;
    if buf.len() as u64 > limit {
        return Err(Error::TooLarge {
            size: buf.len() as u64,
            limit,
        });
    }
    Ok(buf)
}

fn write_output(path: Option<&Path>, content: &[u8]) -> Result<()> {
    match path {
        Some(p) => std::fs::write(p, content).map_err(|e| Error::io(p, "write output", e)),
        None => {
            let mut out = std::io::stdout().lock();
            match out.write_all(content).and_then(|_| out.flush()) {
                Ok(()) => Ok(()),
                // A reader that went away (`| head`) is not our error.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                Err(e) => Err(Error::io("<stdout>", "write output", e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        use std::time::Duration;
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("36h"), Ok(Duration::from_secs(36 * 3600)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        for bad in ["", "30", "-1d", "1y", "d", "99999999999999999999w"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times_parse_back() {
        for ms in [0u64, 951_782_400_000, 1_764_072_000_000, 4_102_444_800_000] {
            assert_eq!(parse_time(&format_time(ms)).unwrap(), ms);
        }
        assert_eq!(parse_time("2025-11-25").unwrap(), 1_764_028_800_000);
        assert_eq!(parse_time("12345").unwrap(), 12345);
        for bad in [
            "",
            "yesterday",
            "2025-13-01",
            "2025-11-25T25:00:00Z",
            "2025-11-25T10:00:00",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times_format_as_utc() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_time(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(format_time(1_764_072_000_000), "2025-11-25T12:00:00Z");
    }

    #[test]
    fn byte_counts_parse() {
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("1G"), Ok(1 << 30));
        assert_eq!(parse_bytes("2kb"), Ok(2048));
        assert!(parse_bytes("-1").is_err());
        assert!(parse_bytes("12 parsecs").is_err());
        assert!(parse_bytes("99999999999T").is_err());
        assert!(parse_bytes("").is_err());
    }
}
