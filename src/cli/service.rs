//! Service commands: serve (the HTTP service and its page) and token; and
//! the client through which a process command reaches the service that
//! holds the store (its Unix socket), so that `vaultstore defrag` works the
//! same whether or not `serve` runs. Parsing, printing and forwarding only:
//! the file must not hold engine logic.

use super::remote::{Body, Remote, Target};
use super::*;
use crate::jobs::schedule::ProcessRequest;

#[derive(Subcommand, Debug)]
pub(super) enum Commands {
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
        /// Time between two looks of the scheduler at which processes are due.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5s")]
        schedule_tick: std::time::Duration,
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
}

pub(super) fn run(command: Commands) -> Result<ExitCode> {
    match command {
        Commands::Serve {
            store,
            listen,
            max_body,
            header_timeout,
            body_timeout,
            max_connections,
            session_ttl,
            sample_interval,
            schedule_tick,
        } => {
            let s = store.open()?;
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
                schedule_tick,
            };
            crate::service::run(s, listen, opts)?;
        }
        Commands::Token {
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
    }
    Ok(ExitCode::SUCCESS)
}

/// The store's socket, where `serve` answers the CLI.
pub(super) const SOCKET_FILE: &str = crate::service::SOCKET_FILE;

/// Run `request` on the store: here when the store is free, or in the
/// service that holds its lock, through the store's socket. Either way the
/// report is the same JSON, read back as `T`, and progress is drawn from
/// the running process.
pub(super) fn run_request<T: serde::de::DeserializeOwned>(
    store: &StoreArg,
    request: ProcessRequest,
    show: bool,
) -> Result<T> {
    let report = match Target::open(store)? {
        Target::Local(s) => {
            progress::of_process(show, || s.running_processes(), || s.run_request(&request))?
        }
        Target::Service(remote) => {
            let mut body = request.to_json();
            body["wait"] = true.into();
            progress::of_process(
                show,
                || remote_running(&remote),
                || remote.call("POST", "/jobs", Body::Json(&body)),
            )?
        }
    };
    serde_json::from_value(report)
        .map_err(|e| Error::InvalidSetting(format!("the process's report is not understood: {e}")))
}

/// The processes the service runs now, for a progress bar.
fn remote_running(remote: &Remote) -> Vec<crate::jobs::RunningProcess> {
    let rows = remote.call("GET", "/jobs", Body::None).unwrap_or_default();
    let rows = rows.as_array().cloned().unwrap_or_default();
    rows.iter()
        .map(|r| crate::jobs::RunningProcess {
            run: r["run"].as_u64().unwrap_or(0),
            process: r["process"].as_str().unwrap_or_default().to_string(),
            started_ms: 0,
            done: r["done"].as_u64().unwrap_or(0),
            total: r["total"].as_u64().unwrap_or(0),
            percent: r["percent"].as_f64().unwrap_or(0.0),
        })
        .collect()
}
