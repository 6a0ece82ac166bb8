//! Catalog commands: archive, link, refs, items, owners, delete, trash, hold.
//! Parsing and printing only: each command is one library call, and the file
//! must not hold engine logic or import `service`.

use super::remote::Target;
use super::*;

#[derive(Subcommand, Debug)]
pub(super) enum Commands {
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
}

pub(super) fn run(command: Commands) -> Result<ExitCode> {
    match command {
        Commands::Archive {
            store,
            at,
            file,
            replace,
        } => {
            let content = read_input(file.as_deref())?;
            let s = Target::open(&store)?;
            let a = s.archive(&at.owner, &at.item, &content, replace)?;
            say!(
                "{} {}",
                a.id,
                if a.new_content { "new" } else { "duplicate" }
            );
        }
        Commands::Link { store, at, id } => {
            let id = parse_id(&id)?;
            let s = Target::open(&store)?;
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
        Commands::Refs { store, id, json } => {
            let id = parse_id(&id)?;
            let s = open_read_only(&store)?;
            if !s.has(&id) {
                return Err(Error::NotFound(id));
            }
            let refs = s.refs(&id)?;
            if json {
                print_json(&serde_json::to_value(&refs).unwrap_or_default());
            } else {
                for r in refs {
                    say!("{}\t{}{}", r.owner, r.item, trash_note(r.trashed_at_ms));
                }
            }
        }
        Commands::Items {
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
        Commands::Owners { store, json } => {
            let s = open_read_only(&store)?;
            let owners = s.owners()?;
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
        Commands::Delete { store, at } => {
            Target::open(&store)?.delete(&at.owner, at.item.as_deref())?;
            say!("moved to trash");
        }
        Commands::Trash(TrashCommand::List { store, json }) => {
            let s = open_read_only(&store)?;
            let trash = s.trash()?;
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
        Commands::Trash(TrashCommand::Restore { store, at }) => {
            Target::open(&store)?.restore(&at.owner, at.item.as_deref())?;
            say!("restored");
        }
        Commands::Trash(TrashCommand::Purge {
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
        Commands::Trash(TrashCommand::Purge {
            store,
            older_than,
            owner,
            item,
            dry_run: false,
            json,
        }) => {
            // A purge is a background process an operator sees in the history.
            let request = crate::jobs::schedule::ProcessRequest::PurgeTrash {
                older_than: Some(older_than),
                owner,
                item,
            };
            let r: crate::catalog::PurgeReport = service::run_request(&store, request, false)?;
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
        Commands::Hold(cmd) => {
            let (store, at, on) = match cmd {
                HoldCommand::Set {
                    store,
                    at,
                    custodian,
                } => (store, at, Some(custodian)),
                HoldCommand::Clear { store, at } => (store, at, None),
            };
            Target::open(&store)?.hold(&at.owner, at.item.as_deref(), on)?;
            say!("hold {}", if on.is_some() { "set" } else { "cleared" });
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug, Clone)]
pub(super) struct ItemArg {
    /// The owner (mailbox, journal, archive).
    #[arg(long)]
    owner: String,
    /// The archiving server's id for the item in that owner.
    #[arg(long)]
    item: String,
}

#[derive(Args, Debug, Clone)]
pub(super) struct OwnerItemArg {
    /// The owner (mailbox, journal, archive).
    #[arg(long)]
    owner: String,
    /// One item of the owner; the whole owner when absent.
    #[arg(long)]
    item: Option<String>,
}

#[derive(Subcommand, Debug)]
pub(super) enum TrashCommand {
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
pub(super) enum HoldCommand {
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

fn trash_note(trashed_at_ms: Option<u64>) -> String {
    trashed_at_ms
        .map(|t| format!("\tin trash since {}", format_time(t)))
        .unwrap_or_default()
}
