//! Backup commands: backup (list, mark, mode, run, removed), mark-indexed, pending, feed.
//! Parsing and printing only: each command is one library call, and the file
//! must not hold engine logic or import `service`.

use super::remote::Target;
use super::*;
use crate::backup_mode::BackupModeStatus;
use crate::jobs::schedule::ProcessRequest;

#[derive(Subcommand, Debug)]
pub(super) enum Commands {
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
        /// Group them by why they wait, with the oldest of each reason.
        #[arg(long)]
        explain: bool,
        /// With --explain: list this many savesets of each reason.
        #[arg(long, value_name = "N", default_value_t = 0, requires = "explain")]
        limit: usize,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Savesets ready for post-processing since a cursor; `feed ack CURSOR` acknowledges.
    Feed(FeedArgs),
}

pub(super) fn run(command: Commands, show: bool) -> Result<ExitCode> {
    match command {
        Commands::Backup(BackupCommand::Removed { store, json }) => {
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
        Commands::Backup(BackupCommand::List { store, json }) => {
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
        Commands::Backup(BackupCommand::Mark {
            store,
            segment,
            checksum,
        }) => {
            Target::open(&store)?.backup_mark(segment, &checksum)?;
            say!("segment {segment} marked as backed up");
        }
        Commands::Backup(BackupCommand::Run { store, to, json }) => {
            // The service that may run it has a working directory of its own.
            let to = std::path::absolute(&to).map_err(|e| Error::io(&to, "resolve path", e))?;
            let request = ProcessRequest::Backup { to };
            let r: crate::backup::BackupRunReport =
                service::run_request(&store, request, show && !json)?;
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
        Commands::Backup(BackupCommand::Mode { store, state, json }) => {
            let status = match state.as_str() {
                "status" => open_read_only(&store)?.backup_mode(None)?,
                "on" => Target::open(&store)?.backup_mode(true)?,
                _ => backup_mode_off(&store, show && !json)?,
            };
            if json {
                print_json(&serde_json::to_value(&status).unwrap_or_default());
            } else {
                print_backup_mode(&status);
            }
        }
        Commands::MarkIndexed { store, ids } => {
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
            let n = Target::open(&store)?.mark_indexed(&ids)?;
            say!("{n} savesets marked IndexCommitted");
        }
        Commands::Pending {
            store,
            explain: true,
            limit,
            json,
        } => {
            let explained = open_read_only(&store)?.pending_explained(limit)?;
            if json {
                print_json(&serde_json::to_value(&explained).unwrap_or_default());
            } else {
                print_explained(&explained);
            }
        }
        Commands::Pending { store, json, .. } => {
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
        Commands::Feed(FeedArgs {
            ack: Some(FeedAck::Ack { store, cursor }),
            ..
        }) => {
            let cursor: Cursor = cursor.parse()?;
            Target::open(&store)?.feed_ack(cursor)?;
            say!("acknowledged {cursor}");
        }
        Commands::Feed(FeedArgs {
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
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Subcommand, Debug)]
pub(super) enum BackupCommand {
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
    /// Backup mode: `on` keeps every file a backup copies as it is (writes go to the message
    /// cache) until `off`, which moves the cached items into the segments; `status` shows it.
    Mode {
        #[command(flatten)]
        store: StoreArg,
        /// on, off or status.
        #[arg(value_parser = ["on", "off", "status"])]
        state: String,
        /// One JSON object instead of text.
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
pub(super) struct FeedArgs {
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

#[derive(Subcommand, Debug)]
pub(super) enum FeedAck {
    /// Everything before CURSOR has been post-processed.
    Ack {
        #[command(flatten)]
        store: StoreArg,
        /// The cursor a feed page returned.
        cursor: String,
    },
}

fn print_explained(e: &crate::lifecycle::PendingExplained) {
    if e.reasons.is_empty() {
        say!("nothing is pending");
    }
    for r in &e.reasons {
        let oldest = r.oldest_ms.map_or(String::new(), |t| {
            format!(", oldest since {}", format_time(t))
        });
        let noun = if r.savesets == 1 {
            "saveset"
        } else {
            "savesets"
        };
        say!(
            "{} {noun}: {}{oldest}",
            r.savesets,
            r.reason.replace('_', " ")
        );
        say!("  {}", r.detail);
        for id in &r.items {
            say!("  {id}");
        }
    }
}

/// `backup mode off`: on a free store the cached items are moved into the
/// segments before it returns; a service does that in the background.
fn backup_mode_off(store: &StoreArg, show: bool) -> Result<BackupModeStatus> {
    let status = match Target::open(store)? {
        Target::Local(s) => s.backup_mode(Some(false))?,
        remote => return remote.backup_mode(false),
    };
    if status.cached_items == 0 {
        return Ok(status);
    }
    let _: serde_json::Value =
        service::run_request(store, ProcessRequest::ProcessMessageCache, show)?;
    open_read_only(store)?.backup_mode(None)
}

fn print_backup_mode(s: &BackupModeStatus) {
    match (s.since_ms, s.ends_ms) {
        (Some(since), Some(ends)) => say!(
            "backup mode     on since {} (ends by {} at the latest)",
            format_time(since),
            format_time(ends)
        ),
        _ => say!("backup mode     off"),
    }
    match s.oldest_cached_ms {
        Some(oldest) => say!(
            "message cache   {} items not yet in the segments (oldest {})",
            s.cached_items,
            format_time(oldest)
        ),
        None => say!("message cache   empty"),
    }
}
