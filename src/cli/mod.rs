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

mod help;
mod progress;

use crate::backup::Cursor;
use crate::bench::{BenchConfig, run_bench};
use crate::error::{Error, Result};
use crate::format::segment::MAX_RECORD_BYTES;
use crate::id::SavesetId;
use crate::store::{InitOptions, OpenOptions, Store};

pub use crate::present::{
    NO_HISTORY, format_bytes, format_duration_ms, format_seconds, format_time, history_rows,
    parse_bytes, parse_duration, parse_time, period_since, rate, running_rows,
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
struct StoreArg {
    /// The store directory (or set VAULTSTORE_STORE).
    #[arg(long, env = "VAULTSTORE_STORE", value_name = "DIR")]
    store: PathBuf,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a new store.
    Init {
        #[command(flatten)]
        store: StoreArg,
        /// Seal a segment when it would grow past this size (e.g. 134217728, 128MiB, 1G).
        #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
        segment_size: Option<u64>,
        /// zstd compression level for new savesets.
        #[arg(long, value_name = "N", allow_negative_numbers = true)]
        compression_level: Option<i32>,
        /// Seal the active segment once it is this old (e.g. 24h), so items on a
        /// quiet store still reach backup.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        seal_age: Option<std::time::Duration>,
    },
    /// Store savesets from FILEs (or standard input); prints `<id> new` or
    /// `<id> duplicate` for each, in order, as soon as it is acknowledged.
    Put {
        #[command(flatten)]
        store: StoreArg,
        /// The files to store; standard input when none.
        files: Vec<PathBuf>,
    },
    /// Write a saveset's exact bytes to standard output or a file.
    Get {
        #[command(flatten)]
        store: StoreArg,
        /// The saveset id (64 hex digits).
        id: String,
        /// Write to this file instead of standard output.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Exit 0 when the saveset is stored, 1 when it is not.
    Has {
        #[command(flatten)]
        store: StoreArg,
        /// The saveset id (64 hex digits).
        id: String,
    },
    /// Totals: savesets, logical and stored bytes, segments.
    Stat {
        #[command(flatten)]
        store: StoreArg,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List segments with their state, size and saveset count.
    Segments {
        #[command(flatten)]
        store: StoreArg,
        /// A JSON array instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Read every record and check crc and hash; exit 1 if anything is damaged.
    Verify {
        #[command(flatten)]
        store: StoreArg,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Seal the active segment now so it can be backed up.
    Seal {
        #[command(flatten)]
        store: StoreArg,
        /// Only if it is older than the store's seal age.
        #[arg(long)]
        aged: bool,
    },
    /// Archive bits: list, mark, or run the built-in backup.
    #[command(subcommand)]
    Backup(BackupCommand),
    /// The indexer indexed these savesets (ids as arguments, or one a line on stdin).
    MarkIndexed {
        #[command(flatten)]
        store: StoreArg,
        /// Saveset ids; read from standard input when none are given.
        ids: Vec<String>,
    },
    /// How many savesets await indexing, backup, and post-processing.
    Pending {
        #[command(flatten)]
        store: StoreArg,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Savesets ready for post-processing since a cursor; `feed ack CURSOR` acknowledges.
    Feed(FeedArgs),
    /// Import a Maildir, an mbox file or a directory of .eml files.
    Import {
        #[command(flatten)]
        store: StoreArg,
        /// Every message goes to this owner.
        #[arg(
            long,
            required_unless_present = "owner_from_folder",
            conflicts_with = "owner_from_folder"
        )]
        owner: Option<String>,
        /// Each top-level folder of PATH is one owner (its name).
        #[arg(long)]
        owner_from_folder: bool,
        /// What the files are: auto (by place and name: Maildir cur/ and new/
        /// and *.eml are one message each, *.mbox and mbox files are split),
        /// maildir, mbox or eml (every file of that kind).
        #[arg(long, default_value = "auto", value_parser = ["auto", "maildir", "mbox", "eml"])]
        format: String,
        /// What to import.
        path: PathBuf,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write an owner's items (or, with --all-owners, everyone's) back as .eml files.
    Export {
        #[command(flatten)]
        store: StoreArg,
        /// The owner.
        #[arg(
            long,
            required_unless_present = "all_owners",
            conflicts_with = "all_owners"
        )]
        owner: Option<String>,
        /// Every owner, each into its own folder under PATH.
        #[arg(long)]
        all_owners: bool,
        /// The directory to write to.
        #[arg(long, value_name = "PATH")]
        to: PathBuf,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Partitions (volumes): add, list, close.
    #[command(subcommand)]
    Partition(PartitionCommand),
    /// Background processes: running now, their history, cancellation.
    Jobs(JobsArgs),
    /// Run the maintenance that is due, once (each step recorded in the history).
    Maintain {
        #[command(flatten)]
        store: StoreArg,
    },
    /// Serve the store over HTTP: the API and the operator's page (loopback unless told otherwise).
    Serve {
        #[command(flatten)]
        store: StoreArg,
        /// Address to listen on.
        #[arg(long, default_value = crate::service::DEFAULT_LISTEN)]
        listen: std::net::SocketAddr,
        /// Largest request body (e.g. 64MiB); larger ones get 413.
        #[arg(long, value_name = "BYTES", value_parser = parse_bytes, default_value = "64MiB")]
        max_body: u64,
        /// Time a client has to send a request's headers (idle connections close after it too).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
        header_timeout: std::time::Duration,
        /// Time a client has to send a request's whole body (408 after it).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "120s")]
        body_timeout: std::time::Duration,
        /// Most connections open at once (from 1 to 65536); one more gets 503.
        #[arg(long, value_name = "N", default_value_t = crate::service::DEFAULT_MAX_CONNECTIONS as u32,
              value_parser = clap::value_parser!(u32).range(1..=65536))]
        max_connections: u32,
        /// Lifetime of an operator's page session.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "12h")]
        session_ttl: std::time::Duration,
        /// Time between two samples of the store's figures for the page's charts.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "60s")]
        sample_interval: std::time::Duration,
    },
    /// Print the service's bearer token (created if missing; kept in the store, mode 0600).
    Token {
        #[command(flatten)]
        store: StoreArg,
        /// The read-only token (monitoring, backup listing) instead of the read-write one.
        #[arg(long)]
        read_only: bool,
        /// Replace the token with a new one (the old one stops working at once).
        #[arg(long)]
        rotate: bool,
    },
    /// DB defragmentation: rewrite sealed segments whose dead fraction is at least the threshold.
    Defrag {
        #[command(flatten)]
        store: StoreArg,
        /// Dead bytes / segment bytes at or above which a segment is rewritten (0..=1).
        #[arg(long, default_value_t = crate::compaction::DEFAULT_THRESHOLD)]
        threshold: f64,
        /// Print what would be done, change nothing.
        #[arg(long, short = 'n')]
        dry_run: bool,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Move savesets between partitions: empty one (then retire it), or balance fill.
    #[command(group(clap::ArgGroup::new("how").required(true).args(["drain", "balance"])))]
    Redistribute {
        #[command(flatten)]
        store: StoreArg,
        /// Move everything out of this partition (closing it first), then retire it.
        #[arg(long, value_name = "PARTITION")]
        drain: Option<u32>,
        /// Even out fill relative to capacity across open partitions.
        #[arg(long)]
        balance: bool,
        /// Print what would be done, change nothing.
        #[arg(long, short = 'n')]
        dry_run: bool,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Full DB resynchronization: rebuild index and catalog from the segments and compare.
    Resync {
        #[command(flatten)]
        store: StoreArg,
    },
    /// Show or change store settings.
    Settings {
        #[command(flatten)]
        store: StoreArg,
        /// How long references stay in trash before `maintain` purges them.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        trash_retention: Option<std::time::Duration>,
        /// How long background process history is kept.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        history_retention: Option<std::time::Duration>,
        /// Keep this much free on each partition's volume; new segments go to the next partition.
        #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
        min_free_space: Option<u64>,
        /// When mailbox safety copies may go: after-backup or immediately.
        #[arg(long, value_name = "MODE")]
        remove_safety_copies: Option<String>,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Archive an item: store FILE (or standard input) and reference it from
    /// (owner, item); prints `<id> new` or `<id> duplicate`.
    Archive {
        #[command(flatten)]
        store: StoreArg,
        #[command(flatten)]
        at: ItemArg,
        /// The message; standard input when absent.
        file: Option<PathBuf>,
        /// Replace the content the item references now.
        #[arg(long)]
        replace: bool,
    },
    /// Reference content that is already stored, by id (the hash handshake).
    Link {
        #[command(flatten)]
        store: StoreArg,
        #[command(flatten)]
        at: ItemArg,
        /// The saveset id (64 hex digits).
        id: String,
    },
    /// Which owners and items reference a saveset.
    Refs {
        #[command(flatten)]
        store: StoreArg,
        /// The saveset id (64 hex digits).
        id: String,
        /// A JSON array instead of text.
        #[arg(long)]
        json: bool,
    },
    /// An owner's items, sorted, a page at a time.
    Items {
        #[command(flatten)]
        store: StoreArg,
        /// The owner (mailbox, journal, archive).
        #[arg(long)]
        owner: String,
        /// Start after this item.
        #[arg(long)]
        after: Option<String>,
        /// Items per page.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        /// A JSON array instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Every owner with its counts of items, trashed items and hold.
    Owners {
        #[command(flatten)]
        store: StoreArg,
        /// A JSON array instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Move an item (or, without --item, every item of the owner) to trash.
    Delete {
        #[command(flatten)]
        store: StoreArg,
        #[command(flatten)]
        at: OwnerItemArg,
    },
    /// List, restore or purge references in trash.
    #[command(subcommand)]
    Trash(TrashCommand),
    /// Set or clear a legal hold on an owner or one item.
    #[command(subcommand)]
    Hold(HoldCommand),
    /// End-to-end sizing benchmark on a generated mail corpus (or --corpus).
    Bench(Box<BenchArgs>),
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

#[derive(Subcommand, Debug)]
enum PartitionCommand {
    /// Add a partition directory (new or empty), open, with an optional capacity.
    Add {
        #[command(flatten)]
        store: StoreArg,
        /// The directory: absolute, or relative to the store.
        path: PathBuf,
        /// New segments go elsewhere once it holds this much (e.g. 500G).
        #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
        capacity: Option<u64>,
    },
    /// Every partition: id, path, state, bytes, capacity.
    List {
        #[command(flatten)]
        store: StoreArg,
        /// A JSON array instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Take no new segments in partition ID.
    Close {
        #[command(flatten)]
        store: StoreArg,
        /// The partition id.
        id: u32,
    },
}

#[derive(Subcommand, Debug)]
enum BackupCommand {
    /// Sealed segments whose archive bit is set: segment, path, bytes, checksum.
    List {
        #[command(flatten)]
        store: StoreArg,
        /// A JSON array instead of text.
        #[arg(long)]
        json: bool,
    },
    /// A backup tool copied SEGMENT: clear its archive bit (the checksum must match).
    Mark {
        #[command(flatten)]
        store: StoreArg,
        /// The segment id.
        segment: u32,
        /// blake3 of what was copied, as `backup list` printed it.
        #[arg(long)]
        checksum: String,
    },
    /// Segments removed by compaction (backup tools prune their copies): segment, replaced_by, at.
    Removed {
        #[command(flatten)]
        store: StoreArg,
        /// A JSON array instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Seal, copy every segment whose bit is set and the manifest to DEST, verify, clear the bits.
    Run {
        #[command(flatten)]
        store: StoreArg,
        /// The backup destination (itself a store).
        #[arg(long, value_name = "DEST")]
        to: PathBuf,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Options of `vaultstore feed`.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
struct FeedArgs {
    #[command(subcommand)]
    ack: Option<FeedAck>,
    #[command(flatten)]
    store: Option<StoreArg>,
    /// Start after this cursor (default: the last acknowledged one).
    #[arg(long, value_name = "CURSOR")]
    after: Option<String>,
    /// Entries at most.
    #[arg(long, default_value_t = 1000)]
    limit: usize,
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Options of `vaultstore jobs`.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
struct JobsArgs {
    #[command(subcommand)]
    command: Option<JobsCommand>,
    #[command(flatten)]
    store: Option<StoreArg>,
    /// A JSON array instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum JobsCommand {
    /// Time / Process / Status, newest first.
    History {
        #[command(flatten)]
        store: StoreArg,
        /// 24h, 3d or 1w (default 24h).
        #[arg(long, conflicts_with = "since")]
        period: Option<String>,
        /// Everything since this time (2026-11-25T08:00:00Z, 2026-11-25, or Unix ms).
        #[arg(long)]
        since: Option<String>,
        /// A JSON array instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Ask a running process to stop at its next safe point.
    Cancel {
        #[command(flatten)]
        store: StoreArg,
        /// The process, by its name ("Backing up units").
        process: String,
    },
    /// Every process type and the engine operation behind it.
    Types {
        /// A JSON array instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum FeedAck {
    /// Everything before CURSOR has been post-processed.
    Ack {
        #[command(flatten)]
        store: StoreArg,
        /// The cursor a feed page returned.
        cursor: String,
    },
}

#[derive(Args, Debug, Clone)]
struct ItemArg {
    /// The owner (mailbox, journal, archive).
    #[arg(long)]
    owner: String,
    /// The archiving server's id for the item in that owner.
    #[arg(long)]
    item: String,
}

#[derive(Args, Debug, Clone)]
struct OwnerItemArg {
    /// The owner (mailbox, journal, archive).
    #[arg(long)]
    owner: String,
    /// One item of the owner; the whole owner when absent.
    #[arg(long)]
    item: Option<String>,
}

#[derive(Subcommand, Debug)]
enum TrashCommand {
    /// Everything in trash.
    List {
        #[command(flatten)]
        store: StoreArg,
        /// A JSON array instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Bring an item (or every trashed item of the owner) back.
    Restore {
        #[command(flatten)]
        store: StoreArg,
        #[command(flatten)]
        at: OwnerItemArg,
    },
    /// Drop for good what has been in trash at least DURATION (default 0s: all).
    Purge {
        #[command(flatten)]
        store: StoreArg,
        /// Age in trash, like 0s, 90m, 36h, 30d, 2w.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "0s")]
        older_than: std::time::Duration,
        /// Only this owner.
        #[arg(long)]
        owner: Option<String>,
        /// Only this item of the owner.
        #[arg(long, requires = "owner")]
        item: Option<String>,
        /// Print what would be done, change nothing.
        #[arg(long, short = 'n')]
        dry_run: bool,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum HoldCommand {
    /// Put an owner or item on legal hold: its references cannot be purged.
    /// An owner or item not in the catalog is refused, unless --custodian.
    Set {
        #[command(flatten)]
        store: StoreArg,
        #[command(flatten)]
        at: OwnerItemArg,
        /// Hold an owner whose mail is not archived yet (a custodian).
        #[arg(long, conflicts_with = "item")]
        custodian: bool,
    },
    /// Lift a legal hold.
    Clear {
        #[command(flatten)]
        store: StoreArg,
        #[command(flatten)]
        at: OwnerItemArg,
    },
}

/// Options of `vaultstore bench`.
#[derive(Args, Debug)]
struct BenchArgs {
    /// Directory of real mail (.eml files, mbox files, Maildir) instead of the generated corpus.
    #[arg(long, value_name = "PATH")]
    corpus: Option<PathBuf>,
    /// Distinct messages to generate.
    #[arg(long, default_value_t = 20_000)]
    messages: usize,
    /// Deliver every message to this many mailboxes (each delivery is a put).
    #[arg(long, default_value_t = 3)]
    copies: usize,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Where to create the benchmark store (default: a temporary directory,
    /// removed afterwards). Point it at the volume you are sizing.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Seed of the generated corpus.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Concurrent writers issuing puts (they share fsyncs by group commit).
    #[arg(long, default_value_t = 32)]
    writers: usize,
    /// Size an organisation: small (500 mailboxes), medium (10,000), large
    /// (100,000) or a number of mailboxes; the figures below refine it.
    #[arg(long, value_name = "ORG")]
    size: Option<String>,
    /// Mailboxes in the organisation (default 1000, or the --size preset's).
    #[arg(long)]
    mailboxes: Option<u64>,
    /// Messages each mailbox receives a day (default 50).
    #[arg(long)]
    messages_per_day: Option<f64>,
    /// Years of retention (default 7).
    #[arg(long)]
    retention_years: Option<f64>,
    /// Sizing: mailboxes of the organisation each message reaches (default 3).
    #[arg(long, requires = "size")]
    recipients: Option<f64>,
    /// Sizing: average message size (default: the sample's), e.g. 75KiB.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes, requires = "size")]
    message_size: Option<u64>,
    /// Sizing: share of messages with an attachment, 0 to 1 (default 0.2).
    #[arg(long, requires = "size")]
    attachment_share: Option<f64>,
    /// Sizing: a journal mailbox copies every message (on or off; default on).
    #[arg(long, value_parser = ["on", "off"], requires = "size")]
    journaling: Option<String>,
    /// Sizing: share of references users delete, 0 to 1 (default 0.1).
    #[arg(long, requires = "size")]
    deletion_rate: Option<f64>,
    /// Sizing: busiest hour against the average hour (default 4).
    #[arg(long, requires = "size")]
    peak_factor: Option<f64>,
    /// Sizing: backups a day (default 1).
    #[arg(long, requires = "size")]
    backups_per_day: Option<f64>,
    /// Sizing: a partition's capacity (repeat for each; default: the volume's free space).
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes, requires = "size")]
    partition_size: Vec<u64>,
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Parse the command line and run it.
pub fn main() -> ExitCode {
    let matches = help::grouped(Cli::command()).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // The service logs one line per request; other commands only warnings.
    let serving = matches!(cli.command, Command::Serve { .. });
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
    Store::open_with(
        &store.store,
        OpenOptions {
            read_only: true,
            ..OpenOptions::default()
        },
    )
}

fn parse_id(text: &str) -> Result<SavesetId> {
    text.trim().parse()
}

fn run(cli: Cli) -> Result<ExitCode> {
    // Progress bars: on a terminal, unless --quiet; commands with --json
    // turn them off too.
    let show = !cli.quiet;
    match cli.command {
        Command::Init {
            store,
            segment_size,
            compression_level,
            seal_age,
        } => {
            let defaults = InitOptions::default();
            let opts = InitOptions {
                segment_bytes: segment_size.unwrap_or(defaults.segment_bytes),
                compression_level: compression_level.unwrap_or(defaults.compression_level),
                seal_age_ms: seal_age.map_or(defaults.seal_age_ms, |d| {
                    d.as_millis().min(u64::MAX as u128) as u64
                }),
            };
            let s = Store::init(&store.store, &opts)?;
            say!(
                "initialised store {} (segment size {}, compression level {})",
                s.dir().display(),
                format_bytes(opts.segment_bytes),
                opts.compression_level
            );
        }
        Command::Put { store, files } => {
            let s = Store::open(&store.store)?;
            let inputs: Vec<Option<&Path>> = if files.is_empty() {
                vec![None]
            } else {
                files.iter().map(|f| Some(f.as_path())).collect()
            };
            let mut out = std::io::stdout().lock();
            for input in inputs {
                let put = s.put(&read_input(input)?)?;
                // One line per acknowledged saveset, flushed at once: a caller
                // may rely on every line it read being durable.
                let line = format!("{} {}\n", put.id, if put.new { "new" } else { "duplicate" });
                out.write_all(line.as_bytes())
                    .and_then(|_| out.flush())
                    .map_err(|e| Error::io("<stdout>", "write output", e))?;
            }
        }
        Command::Get { store, id, output } => {
            let id = parse_id(&id)?;
            let s = open_read_only(&store)?;
            let content = s.get(&id)?;
            write_output(output.as_deref(), &content)?;
        }
        Command::Has { store, id } => {
            let id = parse_id(&id)?;
            let s = open_read_only(&store)?;
            return Ok(if s.has(&id) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        Command::Stat { store, json } => {
            let s = open_read_only(&store)?;
            let st = s.stat();
            if json {
                print_json(&serde_json::to_value(&st).unwrap_or_default());
            } else {
                say!("savesets          {}", st.savesets);
                say!("logical bytes     {}", format_bytes(st.logical_bytes));
                say!("stored bytes      {}", format_bytes(st.stored_bytes));
                say!("segments          {}", st.segments);
                say!("references        {}", st.references);
                say!("in trash          {}", st.trashed_references);
                say!("owners            {}", st.owners);
                say!("dead savesets     {}", st.dead_savesets);
                say!("dead bytes        {}", format_bytes(st.dead_bytes));
                say!("index memory      {}", format_bytes(st.index_bytes));
                say!("catalog memory    {}", format_bytes(st.catalog_bytes));
                say!(
                    "parts             {} ({} stored)",
                    st.parts,
                    format_bytes(st.part_bytes)
                );
                say!(
                    "part dedup saved  {} ({:.1}% of logical bytes)",
                    format_bytes(st.part_dedup_saved_bytes),
                    st.part_dedup_share * 100.0
                );
                say!("part table memory {}", format_bytes(st.part_table_bytes));
            }
        }
        Command::Segments { store, json } => {
            let s = open_read_only(&store)?;
            let segs = s.segments();
            if json {
                print_json(&serde_json::to_value(&segs).unwrap_or_default());
            } else {
                say!(
                    "{:>10}  {:>9}  {:<6}  {:>10}  {:>9}  {:>10}  {:>5}  path",
                    "id",
                    "partition",
                    "state",
                    "size",
                    "savesets",
                    "dead",
                    "dead%"
                );
                for g in segs {
                    let state = match g.state {
                        crate::store::SegmentState::Active => "active",
                        crate::store::SegmentState::Sealed => "sealed",
                    };
                    let dead_share = if g.bytes > 0 {
                        g.dead_bytes as f64 * 100.0 / g.bytes as f64
                    } else {
                        0.0
                    };
                    say!(
                        "{:>10}  {:>9}  {:<6}  {:>10}  {:>9}  {:>10}  {:>4.0}%  {}{}",
                        g.id,
                        g.partition,
                        state,
                        format_bytes(g.bytes),
                        g.savesets,
                        format_bytes(g.dead_bytes),
                        dead_share,
                        g.path.display(),
                        g.damage
                            .map(|d| format!("  DAMAGED: {d}"))
                            .unwrap_or_default()
                    );
                }
            }
        }
        Command::Verify { store, json } => {
            let s = open_read_only(&store)?;
            let bar = progress::bar(show && !json, s.stat().stored_bytes, "verify", true);
            let mut report = s.verify_with_progress(&|bytes| {
                if let Some(b) = &bar {
                    b.inc(bytes);
                }
            });
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            // Problems met while opening are findings too, except the tail of
            // the active segment (in flight, or repaired at the next writable open).
            for p in s.recovery_report() {
                if p.detail.starts_with("incomplete tail") {
                    continue;
                }
                if !report
                    .problems
                    .iter()
                    .any(|q| q.segment == p.segment && q.offset == p.offset)
                {
                    report.problems.push(p.clone());
                }
            }
            if json {
                print_json(&serde_json::to_value(&report).unwrap_or_default());
            } else {
                for p in &report.problems {
                    say!(
                        "segment {} offset {}: {} ({})",
                        p.segment,
                        p.offset,
                        p.detail,
                        p.path.display()
                    );
                }
                say!(
                    "{} segments, {} records, {} checked: {}",
                    report.segments,
                    report.records,
                    format_bytes(report.bytes),
                    if report.is_clean() {
                        "clean".to_string()
                    } else {
                        format!("{} problem(s)", report.problems.len())
                    }
                );
            }
            if !report.is_clean() {
                return Ok(ExitCode::from(1));
            }
        }
        Command::Seal { store, aged } => {
            let s = Store::open(&store.store)?;
            match if aged { s.seal_if_aged()? } else { s.seal()? } {
                Some(id) => say!("sealed segment {id}"),
                None => say!("nothing to seal"),
            }
        }
        Command::Backup(BackupCommand::Removed { store, json }) => {
            let s = open_read_only(&store)?;
            let removed = s.removed_segments();
            if json {
                print_json(&serde_json::to_value(&removed).unwrap_or_default());
            } else {
                for r in removed {
                    say!("{}\t{}\t{}", r.segment, r.replaced_by, format_time(r.at_ms));
                }
            }
        }
        Command::Backup(BackupCommand::List { store, json }) => {
            let s = open_read_only(&store)?;
            let list = s.backup_list()?;
            if json {
                print_json(&serde_json::to_value(&list).unwrap_or_default());
            } else {
                for e in list {
                    say!(
                        "{}\t{}\t{}\t{}",
                        e.segment,
                        e.bytes,
                        e.checksum,
                        e.path.display()
                    );
                }
            }
        }
        Command::Backup(BackupCommand::Mark {
            store,
            segment,
            checksum,
        }) => {
            let s = Store::open(&store.store)?;
            s.backup_mark(segment, &checksum)?;
            say!("segment {segment} marked as backed up");
        }
        Command::Backup(BackupCommand::Run { store, to, json }) => {
            let s = Store::open(&store.store)?;
            let r = progress::of_process(&s, show && !json, || s.backup_run(&to))?;
            if json {
                print_json(&serde_json::to_value(&r).unwrap_or_default());
            } else {
                say!(
                    "copied {} segments ({}) to {}",
                    r.copied_segments.len(),
                    format_bytes(r.copied_bytes),
                    r.dest.display()
                );
            }
        }
        Command::MarkIndexed { store, ids } => {
            let texts: Vec<String> = if ids.is_empty() {
                let mut input = String::new();
                std::io::stdin()
                    .lock()
                    .take(256 << 20)
                    .read_to_string(&mut input)
                    .map_err(|e| Error::io("<stdin>", "read ids", e))?;
                input
                    .lines()
                    .map(str::to_string)
                    .filter(|l| !l.trim().is_empty())
                    .collect()
            } else {
                ids
            };
            let ids: Vec<SavesetId> = texts.iter().map(|t| parse_id(t)).collect::<Result<_>>()?;
            let s = Store::open(&store.store)?;
            let n = s.mark_indexed(&ids)?;
            say!("{n} savesets marked IndexCommitted");
        }
        Command::Pending { store, json } => {
            let s = open_read_only(&store)?;
            let p = s.pending();
            if json {
                print_json(&serde_json::to_value(p).unwrap_or_default());
            } else {
                say!("awaiting index              {}", p.awaiting_index);
                say!("awaiting backup             {}", p.awaiting_backup);
                say!(
                    "ready for post-processing   {}",
                    p.ready_for_post_processing
                );
                say!("remove safety copies        {}", p.remove_safety_copies);
            }
        }
        Command::Feed(FeedArgs {
            ack: Some(FeedAck::Ack { store, cursor }),
            ..
        }) => {
            let cursor: Cursor = cursor.parse()?;
            let s = Store::open(&store.store)?;
            s.feed_ack(cursor)?;
            say!("acknowledged {cursor}");
        }
        Command::Feed(FeedArgs {
            ack: None,
            store,
            after,
            limit,
            json,
        }) => {
            let store = store.ok_or_else(|| Error::InvalidSetting("feed needs --store".into()))?;
            let after = after.map(|a| a.parse::<Cursor>()).transpose()?;
            let s = open_read_only(&store)?;
            let page = s.feed(after, limit)?;
            if json {
                print_json(&serde_json::to_value(&page).unwrap_or_default());
            } else {
                for e in &page.entries {
                    let refs: Vec<String> = e
                        .references
                        .iter()
                        .map(|r| format!("{}/{}", r.owner, r.item))
                        .collect();
                    say!("{}\t{}", e.id, refs.join(" "));
                }
                say!("cursor {}", page.cursor);
            }
        }
        Command::Settings {
            store,
            remove_safety_copies,
            trash_retention,
            history_retention,
            min_free_space,
            json,
        } => {
            let changes = remove_safety_copies.is_some()
                || trash_retention.is_some()
                || history_retention.is_some()
                || min_free_space.is_some();
            let s = if changes {
                Store::open(&store.store)?
            } else {
                open_read_only(&store)?
            };
            if let Some(mode) = remove_safety_copies {
                s.set_safety_copies(mode.parse()?)?;
            }
            if trash_retention.is_some() || history_retention.is_some() {
                s.set_retention(trash_retention, history_retention)?;
            }
            if let Some(bytes) = min_free_space {
                s.set_min_free_space(bytes)?;
            }
            let m = s.manifest();
            let mode = s.safety_copies();
            if json {
                print_json(&serde_json::json!({
                    "segment_bytes": m.segment_bytes,
                    "compression_level": m.compression_level,
                    "seal_age_ms": m.seal_age_ms,
                    "trash_retention_ms": m.trash_retention_ms,
                    "history_retention_ms": m.history_retention_ms,
                    "min_free_bytes": m.min_free_bytes,
                    "remove_safety_copies": mode.to_string(),
                }));
            } else {
                say!("segment size           {}", format_bytes(m.segment_bytes));
                say!("compression level      {}", m.compression_level);
                say!(
                    "seal age               {}",
                    format_duration_ms(m.seal_age_ms)
                );
                say!("remove safety copies   {mode}");
                say!(
                    "trash retention        {}",
                    format_duration_ms(m.trash_retention_ms)
                );
                say!(
                    "history retention      {}",
                    format_duration_ms(m.history_retention_ms)
                );
                say!("min free space         {}", format_bytes(m.min_free_bytes));
            }
        }
        Command::Jobs(args) => return run_jobs(args),
        Command::Partition(PartitionCommand::Add {
            store,
            path,
            capacity,
        }) => {
            let s = Store::open(&store.store)?;
            let id = s.partition_add(&path, capacity)?;
            say!("added partition {id} at {}", path.display());
        }
        Command::Partition(PartitionCommand::List { store, json }) => {
            let s = open_read_only(&store)?;
            let list = s.partitions();
            if json {
                print_json(&serde_json::to_value(&list).unwrap_or_default());
            } else {
                for p in list {
                    let cap = if p.capacity == 0 {
                        "no limit".to_string()
                    } else {
                        format_bytes(p.capacity)
                    };
                    say!(
                        "{}\t{}\t{}\t{}\tcapacity {}",
                        p.id,
                        p.state,
                        p.path,
                        format_bytes(p.bytes),
                        cap
                    );
                }
            }
        }
        Command::Partition(PartitionCommand::Close { store, id }) => {
            let s = Store::open(&store.store)?;
            s.partition_close(id)?;
            say!("partition {id} closed: it takes no new segments");
        }
        Command::Import {
            store,
            owner,
            owner_from_folder,
            format,
            path,
            json,
        } => {
            let s = Store::open(&store.store)?;
            let opts = crate::import::ImportOptions {
                format: format.parse().map_err(Error::InvalidSetting)?,
                owner,
                owner_from_folder,
                progress: show && !json,
            };
            let r = crate::import::import(&s, &path, &opts)?;
            if json {
                print_json(&serde_json::to_value(&r).unwrap_or_default());
            } else {
                for sk in &r.skipped {
                    eprintln!("vaultstore: skipped {}: {}", sk.path, sk.reason);
                }
                for w in &r.warnings {
                    eprintln!("vaultstore: warning: {}: {}", w.path, w.reason);
                }
                say!(
                    "imported {} messages ({}) in {}, {:.1} MB/s: {} new, {} already stored, {} references added, {} skipped",
                    r.messages,
                    format_bytes(r.bytes),
                    format_seconds(r.seconds),
                    r.bytes as f64 / 1e6 / r.seconds.max(1e-9),
                    r.new_content,
                    r.duplicates,
                    r.references,
                    r.skipped.len()
                );
            }
            if !r.skipped.is_empty() {
                return Ok(ExitCode::from(1));
            }
        }
        Command::Export {
            store,
            owner,
            all_owners,
            to,
            json,
        } => {
            let s = open_read_only(&store)?;
            let owner = owner.filter(|_| !all_owners);
            let bar = progress::bar(show && !json, 0, "export", false);
            let r = crate::import::export_with_progress(&s, owner.as_deref(), &to, &|n, total| {
                if let Some(b) = &bar {
                    b.set_length(total);
                    b.set_position(n);
                }
            })?;
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            if json {
                print_json(&serde_json::to_value(&r).unwrap_or_default());
            } else {
                say!(
                    "exported {} messages ({}) to {} in {}",
                    r.messages,
                    format_bytes(r.bytes),
                    to.display(),
                    format_seconds(r.seconds)
                );
            }
        }
        Command::Maintain { store } => {
            let s = Store::open(&store.store)?;
            let mut failed = false;
            for (process, outcome) in s.maintain() {
                match outcome {
                    Ok(text) => say!("{process}: Finished ({text})"),
                    Err(e) => {
                        failed = true;
                        say!(
                            "{process}: {} ({e})",
                            crate::jobs::operator_status(process, &e)
                        );
                    }
                }
            }
            if failed {
                return Ok(ExitCode::from(1));
            }
        }
        Command::Serve {
            store,
            listen,
            max_body,
            header_timeout,
            body_timeout,
            max_connections,
            session_ttl,
            sample_interval,
        } => {
            let s = Store::open(&store.store)?;
            eprintln!(
                "serving {} on http://{listen} (token: vaultstore token --store ...)",
                store.store.display()
            );
            let opts = crate::service::ServeOptions {
                max_body,
                header_timeout,
                body_timeout,
                max_connections: max_connections as usize,
                session_ttl,
                sample_interval,
            };
            crate::service::run(s, listen, opts)?;
        }
        Command::Token {
            store,
            read_only,
            rotate,
        } => {
            use crate::service::auth::{Access, token};
            let access = if read_only {
                Access::ReadOnly
            } else {
                Access::ReadWrite
            };
            say!("{}", token(&store.store, access, rotate)?);
        }
        Command::Defrag {
            store,
            threshold,
            dry_run,
            json,
        } => {
            let (s, r) = if dry_run {
                let s = open_read_only(&store)?;
                let r = s.defrag_plan(threshold)?;
                (s, r)
            } else {
                let s = Store::open(&store.store)?;
                let r = progress::of_process(&s, show && !json, || s.defrag(threshold))?;
                (s, r)
            };
            print_compaction(&r, json, dry_run);
            if !json && r.segments_read.is_empty() && r.skipped.is_empty() {
                explain_nothing_to_defrag(&s, threshold);
            }
        }
        Command::Redistribute {
            store,
            drain,
            balance: _,
            dry_run,
            json,
        } => {
            let how = match drain {
                Some(p) => crate::compaction::Redistribution::Drain(p),
                None => crate::compaction::Redistribution::Balance,
            };
            let r = if dry_run {
                open_read_only(&store)?.redistribute_plan(how)?
            } else {
                let s = Store::open(&store.store)?;
                progress::of_process(&s, show && !json, || s.redistribute(how))?
            };
            print_compaction(&r, json, dry_run);
        }
        Command::Resync { store } => {
            let s = Store::open(&store.store)?;
            say!(
                "{}",
                progress::of_process(&s, show, || s.full_resynchronization())?
            );
        }
        Command::Archive {
            store,
            at,
            file,
            replace,
        } => {
            let content = read_input(file.as_deref())?;
            let s = Store::open(&store.store)?;
            let a = s.archive(&at.owner, &at.item, &content, replace)?;
            say!(
                "{} {}",
                a.id,
                if a.new_content { "new" } else { "duplicate" }
            );
        }
        Command::Link { store, at, id } => {
            let id = parse_id(&id)?;
            let s = Store::open(&store.store)?;
            let a = s.link(&at.owner, &at.item, &id)?;
            say!(
                "{} {}",
                a.id,
                if a.new_reference {
                    "linked"
                } else {
                    "already linked"
                }
            );
        }
        Command::Refs { store, id, json } => {
            let id = parse_id(&id)?;
            let s = open_read_only(&store)?;
            if !s.has(&id) {
                return Err(Error::NotFound(id));
            }
            let refs = s.refs(&id);
            if json {
                print_json(&serde_json::to_value(&refs).unwrap_or_default());
            } else {
                for r in refs {
                    say!("{}\t{}{}", r.owner, r.item, trash_note(r.trashed_at_ms));
                }
            }
        }
        Command::Items {
            store,
            owner,
            after,
            limit,
            json,
        } => {
            let s = open_read_only(&store)?;
            let items = s.items(&owner, after.as_deref(), limit)?;
            if json {
                print_json(&serde_json::to_value(&items).unwrap_or_default());
            } else {
                for i in items {
                    say!(
                        "{}\t{}{}{}",
                        i.item,
                        i.id,
                        if i.hold { "\ton hold" } else { "" },
                        trash_note(i.trashed_at_ms)
                    );
                }
            }
        }
        Command::Owners { store, json } => {
            let s = open_read_only(&store)?;
            let owners = s.owners();
            if json {
                print_json(&serde_json::to_value(&owners).unwrap_or_default());
            } else {
                for o in owners {
                    let hold = match (o.hold, o.items + o.trashed) {
                        (false, _) => "",
                        (true, 0) => "\ton hold (custodian: nothing archived yet)",
                        (true, _) => "\ton hold",
                    };
                    say!(
                        "{}\t{} items\t{} in trash{hold}",
                        o.owner,
                        o.items,
                        o.trashed
                    );
                }
            }
        }
        Command::Delete { store, at } => {
            let s = Store::open(&store.store)?;
            s.delete(&at.owner, at.item.as_deref())?;
            say!("moved to trash");
        }
        Command::Trash(TrashCommand::List { store, json }) => {
            let s = open_read_only(&store)?;
            let trash = s.trash();
            if json {
                print_json(&serde_json::to_value(&trash).unwrap_or_default());
            } else {
                for t in trash {
                    say!(
                        "{}\t{}\t{}\t{}",
                        t.owner,
                        t.item,
                        t.id,
                        format_time(t.trashed_at_ms)
                    );
                }
            }
        }
        Command::Trash(TrashCommand::Restore { store, at }) => {
            let s = Store::open(&store.store)?;
            s.restore(&at.owner, at.item.as_deref())?;
            say!("restored");
        }
        Command::Trash(TrashCommand::Purge {
            store,
            older_than,
            owner,
            item,
            dry_run: true,
            json,
        }) => {
            let s = open_read_only(&store)?;
            let r = s.purge_trash_plan(older_than, owner.as_deref(), item.as_deref())?;
            if json {
                let mut v = serde_json::to_value(r).unwrap_or_default();
                v["dry_run"] = serde_json::Value::Bool(true);
                print_json(&v);
            } else {
                say!(
                    "would purge {} references; {} savesets would die; {} would be kept on legal hold (dry run: nothing changed)",
                    r.purged_references,
                    r.dead_savesets,
                    r.kept_on_hold
                );
            }
        }
        Command::Trash(TrashCommand::Purge {
            store,
            older_than,
            owner,
            item,
            dry_run: false,
            json,
        }) => {
            let s = Store::open(&store.store)?;
            // A purge is a background process an operator sees in the history.
            let process = if owner.is_some() && item.is_none() {
                crate::jobs::ProcessType::DeletingMacroObjects
            } else {
                crate::jobs::ProcessType::DeletingMicroObjects
            };
            let r = s.run_process(process, |job| {
                job.set_total(1);
                let r = s.purge_trash(older_than, owner.as_deref(), item.as_deref())?;
                job.advance(1);
                Ok(r)
            })?;
            if json {
                print_json(&serde_json::to_value(r).unwrap_or_default());
            } else {
                say!(
                    "purged {} references; {} savesets dead; {} kept on legal hold",
                    r.purged_references,
                    r.dead_savesets,
                    r.kept_on_hold
                );
            }
        }
        Command::Hold(cmd) => {
            let (store, at, on) = match cmd {
                HoldCommand::Set {
                    store,
                    at,
                    custodian,
                } => (store, at, Some(custodian)),
                HoldCommand::Clear { store, at } => (store, at, None),
            };
            let s = Store::open(&store.store)?;
            match on {
                Some(true) => s.hold_custodian(&at.owner)?,
                Some(false) => s.hold(&at.owner, at.item.as_deref(), true)?,
                None => s.hold(&at.owner, at.item.as_deref(), false)?,
            }
            say!("hold {}", if on.is_some() { "set" } else { "cleared" });
        }
        Command::Completions { shell } => help::completions(Cli::command(), shell),
        Command::Man { out } => help::man(Cli::command(), out.as_deref())?,
        Command::Bench(args) if args.size.is_some() => return run_sizing(*args, show),
        Command::Bench(args) => {
            let cfg = BenchConfig {
                corpus: args.corpus,
                messages: args.messages,
                copies: args.copies,
                threads: args.threads,
                dir: args.dir,
                seed: args.seed,
                writers: args.writers,
                mailboxes: args.mailboxes.unwrap_or(1000),
                messages_per_day: args.messages_per_day.unwrap_or(50.0).round() as u64,
                retention_years: args.retention_years.unwrap_or(7.0).round() as u64,
            };
            let report = run_bench(&cfg)?;
            if args.json {
                print_json(&serde_json::to_value(&report).unwrap_or_default());
            } else {
                say_raw(&report.to_text());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run_jobs(args: JobsArgs) -> Result<ExitCode> {
    use crate::jobs::ProcessType;
    match args.command {
        None => {
            let store = args
                .store
                .ok_or_else(|| Error::InvalidSetting("jobs needs --store".into()))?;
            let s = open_read_only(&store)?;
            let running = s.running_processes();
            if args.json {
                let rows = running_rows(&running);
                print_json(&serde_json::Value::Array(rows));
            } else if running.is_empty() {
                say!("No background process is running");
            } else {
                for r in running {
                    say!(
                        "{}\t{:.1}%\t{} of {}\t{:.1}/s\tstarted {}",
                        r.process,
                        r.percent,
                        r.done,
                        r.total,
                        rate(r.done, r.started_ms),
                        format_time(r.started_ms)
                    );
                }
            }
        }
        Some(JobsCommand::History {
            store,
            period,
            since,
            json,
        }) => {
            let since_ms = match since {
                Some(t) => parse_time(&t)?,
                None => period_since(period.as_deref().unwrap_or("24h"))?,
            };
            let s = open_read_only(&store)?;
            let rows = s.history_since(since_ms);
            if json {
                let rows = history_rows(&rows);
                print_json(&serde_json::Value::Array(rows));
            } else if rows.is_empty() {
                say!("{NO_HISTORY}");
            } else {
                say!("{:<20}  {:<34}  Status", "Time", "Process");
                for e in rows {
                    let process =
                        ProcessType::from_code(e.process).map_or("unknown process", |p| p.name());
                    let detail = e.detail.map(|d| format!(" ({d})")).unwrap_or_default();
                    say!(
                        "{:<20}  {:<34}  {}{}",
                        format_time(e.time_ms),
                        process,
                        e.status,
                        detail
                    );
                }
            }
        }
        Some(JobsCommand::Cancel { store, process }) => {
            let process: ProcessType = process.parse()?;
            let s = open_read_only(&store)?;
            s.cancel_process(process)?;
            say!("asked {process} to stop at its next safe point");
        }
        Some(JobsCommand::Types { json }) => {
            if json {
                let rows: Vec<serde_json::Value> = ProcessType::ALL
                    .iter()
                    .map(|p| serde_json::json!({"process": p.name(), "engine_operation": p.engine_operation()}))
                    .collect();
                print_json(&serde_json::Value::Array(rows));
            } else {
                for p in ProcessType::ALL {
                    say!("{:<34}  {}", p.name(), p.engine_operation());
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn trash_note(trashed_at_ms: Option<u64>) -> String {
    trashed_at_ms
        .map(|t| format!("\tin trash since {}", format_time(t)))
        .unwrap_or_default()
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

/// `vaultstore bench --size ORG`: measure, project, check.
fn run_sizing(args: BenchArgs, show: bool) -> Result<ExitCode> {
    let mut org = crate::sizing::Organisation::preset(args.size.as_deref().unwrap_or("small"))?;
    org.mailboxes = args.mailboxes.unwrap_or(org.mailboxes);
    org.messages_per_day = args.messages_per_day.unwrap_or(org.messages_per_day);
    org.retention_years = args.retention_years.unwrap_or(org.retention_years);
    org.recipients = args.recipients.unwrap_or(org.recipients);
    org.message_bytes = args.message_size.map(|b| b as f64);
    org.attachment_share = args.attachment_share.unwrap_or(org.attachment_share);
    org.journaling = args
        .journaling
        .as_deref()
        .map_or(org.journaling, |j| j == "on");
    org.deletion_rate = args.deletion_rate.unwrap_or(org.deletion_rate);
    org.peak_factor = args.peak_factor.unwrap_or(org.peak_factor);
    org.backups_per_day = args.backups_per_day.unwrap_or(org.backups_per_day);
    org.partition_bytes = args.partition_size;
    let mail = crate::sizing::sample_mail(&org, args.corpus.as_deref(), args.messages, args.seed)?;
    let (dir, _tmp) = crate::sizing::work_dir(args.dir.as_deref())?;
    let corpus = args
        .corpus
        .as_ref()
        .map_or("generated".to_string(), |p| p.display().to_string());
    if show && !args.json {
        eprintln!(
            "sizing: measuring {} sample messages and a tenth of them...",
            mail.len()
        );
    }
    let report = crate::sizing::size(&org, &mail, &dir, corpus)?;
    if args.json {
        print_json(&serde_json::to_value(&report).unwrap_or_default());
    } else {
        let color = std::io::IsTerminal::is_terminal(&std::io::stdout());
        say_raw(&report.to_text(color));
    }
    Ok(if report.self_check.failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_compaction(r: &crate::compaction::CompactionReport, json: bool, dry_run: bool) {
    if json {
        let mut v = serde_json::to_value(r).unwrap_or_default();
        if dry_run {
            v["dry_run"] = serde_json::Value::Bool(true);
        }
        print_json(&v);
        return;
    }
    if dry_run {
        say!(
            "would rewrite {} segments ({}): {} savesets moved, {} dead dropped",
            r.segments_read.len(),
            format_bytes(r.bytes_read),
            r.savesets_moved,
            r.savesets_dropped
        );
        say!(
            "would write {} and reclaim {}",
            format_bytes(r.bytes_written),
            format_bytes(r.bytes_reclaimed)
        );
        for s in &r.skipped {
            say!("segment {} would be left in place: {}", s.segment, s.reason);
        }
        say!("dry run: nothing changed");
        return;
    }
    say!(
        "segments rewritten: {} into {}",
        r.segments_read.len(),
        r.segments_written.len()
    );
    say!(
        "savesets moved: {}, dead left behind: {}",
        r.savesets_moved,
        r.savesets_dropped
    );
    say!(
        "read {}, written {}, reclaimed {}",
        format_bytes(r.bytes_read),
        format_bytes(r.bytes_written),
        format_bytes(r.bytes_reclaimed)
    );
    match r.write_amplification {
        Some(w) => say!("write amplification: {w:.3}"),
        None => say!("write amplification: n/a (nothing reclaimed)"),
    }
    say!(
        "time: {} ({:.1} MB/s read)",
        format_seconds(r.seconds),
        r.megabytes_per_second
    );
    for p in &r.retired_partitions {
        say!("partition {p} is empty and retired");
    }
    for s in &r.skipped {
        say!("segment {} left in place: {}", s.segment, s.reason);
    }
}

/// Why a defragmentation rewrote nothing: each sealed segment's dead share
/// against the threshold, the deadest first (ten at most).
fn explain_nothing_to_defrag(s: &Store, threshold: f64) {
    let mut sealed: Vec<crate::store::SegmentStat> = s
        .segments()
        .into_iter()
        .filter(|g| g.state == crate::store::SegmentState::Sealed && g.bytes > 0)
        .collect();
    if sealed.is_empty() {
        say!(
            "nothing to rewrite: no segment is sealed yet (the active segment is never compacted; `vaultstore seal` seals it)"
        );
        return;
    }
    let share = |g: &crate::store::SegmentStat| g.dead_bytes as f64 / g.bytes as f64;
    sealed.sort_by(|a, b| share(b).total_cmp(&share(a)));
    say!(
        "nothing to rewrite: no sealed segment is at least {:.0}% dead (--threshold {threshold})",
        threshold * 100.0
    );
    for g in sealed.iter().take(10) {
        say!(
            "segment {}: {:.1}% dead ({} of {})",
            g.id,
            share(g) * 100.0,
            format_bytes(g.dead_bytes),
            format_bytes(g.bytes)
        );
    }
    if sealed.len() > 10 {
        say!("... and {} more segments, less dead", sealed.len() - 10);
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
