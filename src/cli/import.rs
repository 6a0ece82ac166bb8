//! Import and export of mail: Maildir, mbox and .eml in; .eml files out.
//! Parsing and printing only: each command is one library call, and the file
//! must not hold engine logic or import `service`.

use super::remote::Target;
use super::*;

#[derive(Subcommand, Debug)]
pub(super) enum Commands {
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
}

pub(super) fn run(command: Commands, show: bool) -> Result<ExitCode> {
    match command {
        Commands::Import {
            store,
            owner,
            owner_from_folder,
            format,
            path,
            json,
        } => {
            let s = Target::open(&store)?;
            let opts = crate::import::ImportOptions {
                format: format.parse().map_err(Error::InvalidSetting)?,
                owner,
                owner_from_folder,
                progress: show && !json,
            };
            let r = crate::import::import_into(&|items| s.archive_many(items), &path, &opts)?;
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
        Commands::Export {
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
    }
    Ok(ExitCode::SUCCESS)
}
