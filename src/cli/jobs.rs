//! Process commands: jobs (running, history, cancel), maintain, resync,
//! checkpoint.
//! Parsing and printing only: each command is one library call, and the file
//! must not hold engine logic or import `service`.

use super::*;
use crate::jobs::schedule::ProcessRequest;

#[derive(Subcommand, Debug)]
pub(super) enum Commands {
    /// Background processes: running now, their history, cancellation.
    Jobs(JobsArgs),
    /// Run the maintenance that is due, once (each step recorded in the history).
    Maintain {
        #[command(flatten)]
        store: StoreArg,
    },
    /// Full DB resynchronization: rebuild index and catalog from the segments and compare.
    Resync {
        #[command(flatten)]
        store: StoreArg,
    },
    /// Write a checkpoint of the sync caches now (the message, property and
    /// file sync cache processes), so the next open replays only what follows.
    Checkpoint {
        #[command(flatten)]
        store: StoreArg,
        /// The report as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub(super) fn run(command: Commands, show: bool) -> Result<ExitCode> {
    match command {
        Commands::Jobs(args) => return run_jobs(args),
        Commands::Maintain { store } => {
            let steps = super::remote::Target::open(&store)?.maintain()?;
            for step in &steps {
                say!("{}: {} ({})", step.process, step.status, step.detail);
            }
            if steps.iter().any(|step| !step.ok) {
                return Ok(ExitCode::from(1));
            }
        }
        Commands::Resync { store } => {
            let r: serde_json::Value =
                service::run_request(&store, ProcessRequest::Resynchronization, show)?;
            say!("{}", r["outcome"].as_str().unwrap_or_default());
        }
        Commands::Checkpoint { store, json } => {
            let r: serde_json::Value =
                service::run_request(&store, ProcessRequest::Checkpoint, show && !json)?;
            if json {
                say!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            } else {
                say!(
                    "checkpoint at sequence {}: {} savesets, {} references",
                    r["checkpoint_sequence"],
                    r["savesets"],
                    r["references"]
                );
                for f in r["files"].as_array().into_iter().flatten() {
                    let bytes = f["bytes"].as_u64().unwrap_or(0);
                    say!(
                        "  {:<10} {}",
                        f["kind"].as_str().unwrap_or_default(),
                        crate::units::format_bytes(bytes)
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Options of `vaultstore jobs`.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub(super) struct JobsArgs {
    #[command(subcommand)]
    command: Option<JobsCommand>,
    #[command(flatten)]
    store: Option<StoreArg>,
    /// A JSON array instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
pub(super) enum JobsCommand {
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
