//! Service commands: serve (the HTTP service and its page) and token; and
//! the client through which a process command reaches the service that
//! holds the store (its Unix socket), so that `vaultstore defrag` works the
//! same whether or not `serve` runs. Parsing, printing and forwarding only:
//! the file must not hold engine logic.

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

/// Run `request` on the store: here when the store is free, or in the
/// service that holds its lock, through the store's socket. Either way the
/// report is the same JSON, read back as `T`, and progress is drawn from
/// the running process.
pub(super) fn run_request<T: serde::de::DeserializeOwned>(
    store: &StoreArg,
    request: ProcessRequest,
    show: bool,
) -> Result<T> {
    let report = match Store::open(&store.store) {
        Ok(s) => progress::of_process(show, || s.running_processes(), || s.run_request(&request))?,
        Err(e @ Error::Locked { .. }) => {
            let socket = store.store.join(crate::service::SOCKET_FILE);
            if !socket.exists() {
                return Err(e);
            }
            let mut body = request.to_json();
            body["wait"] = true.into();
            let body = body.to_string();
            progress::of_process(
                show,
                || remote_running(&socket),
                || exchange(&socket, "POST", "/jobs", Some(body.as_bytes())),
            )?
        }
        Err(e) => return Err(e),
    };
    serde_json::from_value(report)
        .map_err(|e| Error::InvalidSetting(format!("the process's report is not understood: {e}")))
}

/// The processes the service runs now, for a progress bar.
fn remote_running(socket: &Path) -> Vec<crate::jobs::RunningProcess> {
    let rows = exchange(socket, "GET", "/jobs", None).unwrap_or_default();
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

/// One HTTP/1.1 request over the store's socket; the answer's JSON, or the
/// service's error as this command's error.
fn exchange(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> Result<serde_json::Value> {
    use std::os::unix::net::UnixStream;
    let failed = |e: std::io::Error| Error::io(socket, "talk to the service", e);
    let mut stream = UnixStream::connect(socket).map_err(failed)?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n");
    if let Some(b) = body {
        head.push_str(&format!(
            "content-type: application/json\r\ncontent-length: {}\r\n",
            b.len()
        ));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).map_err(failed)?;
    stream.write_all(body.unwrap_or_default()).map_err(failed)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).map_err(failed)?;
    let (status, body) = parse_answer(&answer)
        .ok_or_else(|| Error::InvalidSetting("the service's answer is not HTTP".into()))?;
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if status >= 400 {
        let message = value["message"]
            .as_str()
            .map_or_else(|| format!("the service answered {status}"), str::to_string);
        return Err(Error::Service { message });
    }
    Ok(value)
}

/// Status and body of an HTTP/1.1 answer (a content-length or chunked body).
fn parse_answer(answer: &[u8]) -> Option<(u16, Vec<u8>)> {
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&answer[..split]).ok()?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let body = &answer[split + 4..];
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    if !chunked {
        return Some((status, body.to_vec()));
    }
    let (mut out, mut rest) = (Vec::new(), body);
    loop {
        let end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(&rest[..end]).ok()?.trim(), 16).ok()?;
        if size == 0 {
            return Some((status, out));
        }
        let chunk = rest.get(end + 2..end + 2 + size)?;
        out.extend_from_slice(chunk);
        rest = rest.get(end + 4 + size..)?;
    }
}
