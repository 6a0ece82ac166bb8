//! Store commands: init, put, get, has, stat, segments, verify, seal, settings, partition.
//! Parsing and printing only: each command is one library call, and the file
//! must not hold engine logic or import `service`.

use super::remote::Target;
use super::*;
use crate::jobs::ProcessType;
use crate::settings::{ScheduleChange, SettingsChange};

/// `PROCESS=INTERVAL` of `settings --schedule`: a duration, `off` (never)
/// or `default` (`None`).
fn parse_schedule(
    text: &str,
) -> std::result::Result<(ProcessType, Option<std::time::Duration>), String> {
    let (name, every) = text.rsplit_once('=').ok_or_else(|| {
        format!("{text:?} is not PROCESS=INTERVAL (e.g. \"DB defragmentation=12h\")")
    })?;
    let process: ProcessType = name.parse().map_err(|e: Error| e.to_string())?;
    let interval = match every.trim() {
        "default" => None,
        "off" => Some(std::time::Duration::ZERO),
        d => Some(parse_duration(d)?),
    };
    Ok((process, interval))
}

#[derive(Subcommand, Debug)]
pub(super) enum Commands {
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
        /// Encrypt everything the store writes under a new master key, in a
        /// key slot for the passphrase (VAULTSTORE_PASSPHRASE,
        /// --passphrase-file, or asked twice).
        #[arg(long)]
        encrypt: bool,
        #[command(flatten)]
        kdf: super::keys::KdfArgs,
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
        /// How often `serve` runs a process on its own, e.g. "DB defragmentation=12h";
        /// `off` never, `default` its default (repeat for each process).
        #[arg(long, value_name = "PROCESS=INTERVAL", value_parser = parse_schedule)]
        schedule: Vec<(ProcessType, Option<std::time::Duration>)>,
        /// Most background processes `serve` runs at once.
        #[arg(long, value_name = "N")]
        max_processes: Option<u32>,
        /// The read-only state: `on` refuses every write (reads work), `off` ends it.
        #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
        read_only: Option<bool>,
        /// How backups are detected: archive-bit (`backup mark`) or trigger (a trigger file).
        #[arg(long, value_name = "MODE")]
        backup_detection: Option<String>,
        /// The longest backup mode lasts before it turns itself off (default 24h).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        backup_mode_max: Option<std::time::Duration>,
        /// Write a sync cache checkpoint once this many log records follow the last one.
        #[arg(long, value_name = "RECORDS")]
        checkpoint_after: Option<u64>,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Partitions (volumes): add, list, close.
    #[command(subcommand)]
    Partition(PartitionCommand),
}

pub(super) fn run(command: Commands, show: bool) -> Result<ExitCode> {
    match command {
        Commands::Init {
            store,
            segment_size,
            compression_level,
            seal_age,
            encrypt,
            kdf,
        } => {
            let defaults = InitOptions::default();
            let opts = InitOptions {
                segment_bytes: segment_size.unwrap_or(defaults.segment_bytes),
                compression_level: compression_level.unwrap_or(defaults.compression_level),
                seal_age_ms: seal_age.map_or(defaults.seal_age_ms, |d| {
                    d.as_millis().min(u64::MAX as u128) as u64
                }),
                encryption: match encrypt {
                    true => Some(super::keys::encryption(&store, &kdf)?),
                    false => None,
                },
            };
            let s = Store::init(&store.store, &opts)?;
            say!(
                "initialised store {} (segment size {}, compression level {})",
                s.dir().display(),
                format_bytes(opts.segment_bytes),
                opts.compression_level
            );
        }
        Commands::Put { store, files } => {
            let s = Target::open(&store)?;
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
        Commands::Get { store, id, output } => {
            let id = parse_id(&id)?;
            let s = open_read_only(&store)?;
            let content = s.get(&id)?;
            write_output(output.as_deref(), &content)?;
        }
        Commands::Has { store, id } => {
            let id = parse_id(&id)?;
            let s = open_read_only(&store)?;
            return Ok(if s.has(&id) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        Commands::Stat { store, json } => {
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
                if st.read_only {
                    say!("state             read-only: writes are refused");
                }
                if let Some(t) = st.backup_mode_since_ms {
                    say!("state             backup mode since {}", format_time(t));
                }
            }
        }
        Commands::Segments { store, json } => {
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
        Commands::Verify { store, json } => {
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
        Commands::Seal { store, aged } => match Target::open(&store)?.seal(aged)? {
            Some(id) => say!("sealed segment {id}"),
            None => say!("nothing to seal"),
        },
        Commands::Settings {
            store,
            remove_safety_copies,
            trash_retention,
            history_retention,
            min_free_space,
            schedule,
            max_processes,
            read_only,
            backup_detection,
            backup_mode_max,
            checkpoint_after,
            json,
        } => {
            let ms = |d: std::time::Duration| d.as_millis().min(u64::MAX as u128) as u64;
            let change = SettingsChange {
                trash_retention_ms: trash_retention.map(ms),
                history_retention_ms: history_retention.map(ms),
                min_free_bytes: min_free_space,
                remove_safety_copies,
                schedule: schedule
                    .into_iter()
                    .map(|(process, every)| ScheduleChange {
                        process: process.name().to_string(),
                        interval_ms: every.map(ms),
                    })
                    .collect(),
                max_processes,
                read_only,
                backup_detection,
                backup_mode_max_ms: backup_mode_max.map(ms),
                checkpoint_after_records: checkpoint_after,
            };
            let view = if change.is_empty() {
                crate::settings::view(&open_read_only(&store)?)
            } else {
                Target::open(&store)?.change_settings(&change)?
            };
            if json {
                print_json(&view);
            } else {
                super::settings::print_settings(&view);
            }
        }
        Commands::Partition(PartitionCommand::Add {
            store,
            path,
            capacity,
        }) => {
            let id = Target::open(&store)?.partition_add(&path, capacity)?;
            say!("added partition {id} at {}", path.display());
        }
        Commands::Partition(PartitionCommand::List { store, json }) => {
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
                        "{}\t{}\t{}\t{}\tcapacity {}{}",
                        p.id,
                        p.state,
                        p.path,
                        format_bytes(p.bytes),
                        cap,
                        p.upload_error
                            .map(|e| format!("\tUPLOAD FAILING: {e}"))
                            .unwrap_or_default()
                    );
                }
            }
        }
        Commands::Partition(PartitionCommand::Upload { store, json }) => {
            let report = store.open()?.upload_staged()?;
            if json {
                print_json(&serde_json::to_value(&report).unwrap_or_default());
            } else {
                say!(
                    "uploaded {} segments ({}) to object storage",
                    report.segments,
                    format_bytes(report.bytes)
                );
            }
        }
        Commands::Partition(PartitionCommand::Close { store, id }) => {
            Target::open(&store)?.partition_close(id)?;
            say!("partition {id} closed: it takes no new segments");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Subcommand, Debug)]
pub(super) enum PartitionCommand {
    /// Add a partition (a new or empty directory, or s3://BUCKET/PREFIX), open,
    /// with an optional capacity.
    Add {
        #[command(flatten)]
        store: StoreArg,
        /// The directory (absolute, or relative to the store), or an S3 URL
        /// (endpoint, region and keys from AWS_* or the AWS credentials file).
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
    /// Upload now the sealed segments still staged for partitions in object
    /// storage (a writable open does it in the background too).
    Upload {
        #[command(flatten)]
        store: StoreArg,
        /// One JSON object instead of text.
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
