//! Where a store-changing command runs: on the store itself when it is
//! free, or, when `serve` holds its lock, in that service, reached over the
//! store's Unix socket. [`Target`] has one method per change the CLI makes,
//! answering the same values either way, so each command prints the same
//! lines, the same `--json` and exits with the same code wherever it ran.
//! Files and standard input are read here, by the user who runs the command.
//! HTTP plumbing only: no engine logic, and no import of `service`.

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixStream;

use serde_json::{Value, json};

use super::*;
use crate::catalog::Archived;
use crate::settings::SettingsChange;
use crate::store::Put;

/// The store a changing command works on.
pub(super) enum Target {
    /// The store, opened here with its writer lock.
    Local(Box<Store>),
    /// The service that holds the lock, through its socket.
    Service(Remote),
}

impl Target {
    /// Open the store for writing, or find the service that holds it.
    pub(super) fn open(store: &StoreArg) -> Result<Target> {
        match store.open() {
            Ok(s) => Ok(Target::Local(Box::new(s))),
            Err(e @ Error::Locked { .. }) => match Remote::of(&store.store) {
                Some(remote) => Ok(Target::Service(remote)),
                None => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    pub(super) fn put(&self, content: &[u8]) -> Result<Put> {
        match self {
            Target::Local(s) => s.put(content),
            Target::Service(r) => {
                let v = r.call("PUT", "/savesets", Body::Bytes(content))?;
                Ok(Put {
                    id: id_of(&v)?,
                    new: v["new"].as_bool().unwrap_or(false),
                })
            }
        }
    }

    pub(super) fn archive(
        &self,
        owner: &str,
        item: &str,
        content: &[u8],
        replace: bool,
    ) -> Result<Archived> {
        match self {
            Target::Local(s) => s.archive(owner, item, content, replace),
            Target::Service(r) => {
                let mut path = item_path(owner, Some(item), "");
                if replace {
                    path.push_str("?replace=true");
                }
                archived(&r.call("PUT", &path, Body::Bytes(content))?)
            }
        }
    }

    /// Archive many items: one batch locally; over the socket, several
    /// connections at once, so the service's group commit joins their fsyncs.
    /// An item the store refuses is that item's error, as locally.
    pub(super) fn archive_many(
        &self,
        items: &[(&str, &str, &[u8])],
    ) -> Result<Vec<Result<Archived>>> {
        let remote = match self {
            Target::Local(s) => return s.archive_many(items),
            Target::Service(r) => r,
        };
        const CONNECTIONS: usize = 16;
        let lanes: Vec<Lane> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..CONNECTIONS.min(items.len()))
                .map(|lane| {
                    scope.spawn(move || {
                        let mut conn = remote.connect()?;
                        let mut done = Vec::new();
                        for at in (lane..items.len()).step_by(CONNECTIONS) {
                            let (owner, item, content) = items[at];
                            let path = item_path(owner, Some(item), "");
                            let answer = match conn.exchange("PUT", &path, Body::Bytes(content))? {
                                Answer::Ok(v) => archived(&v),
                                Answer::Refused(e) => Err(e),
                            };
                            done.push((at, answer));
                        }
                        Ok(done)
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().unwrap_or_else(|_| Err(failed_client())))
                .collect()
        });
        let mut out: Vec<Option<Result<Archived>>> = items.iter().map(|_| None).collect();
        for lane in lanes {
            for (at, answer) in lane? {
                out[at] = Some(answer);
            }
        }
        Ok(out
            .into_iter()
            .map(|a| a.unwrap_or_else(|| Err(failed_client())))
            .collect())
    }

    pub(super) fn link(&self, owner: &str, item: &str, id: &SavesetId) -> Result<Archived> {
        match self {
            Target::Local(s) => s.link(owner, item, id),
            Target::Service(r) => {
                let body = json!({"id": id.to_string()});
                let v = r.call(
                    "POST",
                    &item_path(owner, Some(item), "/link"),
                    Body::Json(&body),
                )?;
                Ok(Archived {
                    id: id_of(&v)?,
                    new_content: false,
                    new_reference: v["new_reference"].as_bool().unwrap_or(false),
                })
            }
        }
    }

    pub(super) fn delete(&self, owner: &str, item: Option<&str>) -> Result<()> {
        match self {
            Target::Local(s) => s.delete(owner, item),
            Target::Service(r) => r
                .call("DELETE", &item_path(owner, item, ""), Body::None)
                .map(drop),
        }
    }

    pub(super) fn restore(&self, owner: &str, item: Option<&str>) -> Result<()> {
        match self {
            Target::Local(s) => s.restore(owner, item),
            Target::Service(r) => r
                .call("POST", &item_path(owner, item, "/restore"), Body::None)
                .map(drop),
        }
    }

    /// Set (`Some(custodian)`) or clear (`None`) a legal hold.
    pub(super) fn hold(&self, owner: &str, item: Option<&str>, on: Option<bool>) -> Result<()> {
        match (self, on) {
            (Target::Local(s), Some(true)) => s.hold_custodian(owner),
            (Target::Local(s), Some(false)) => s.hold(owner, item, true),
            (Target::Local(s), None) => s.hold(owner, item, false),
            (Target::Service(r), _) => {
                let mut path = item_path(owner, item, "/hold");
                if on == Some(true) {
                    path.push_str("?custodian=true");
                }
                let method = if on.is_some() { "PUT" } else { "DELETE" };
                r.call(method, &path, Body::None).map(drop)
            }
        }
    }

    /// Seal the active segment (only if aged, with `aged`): the id sealed.
    pub(super) fn seal(&self, aged: bool) -> Result<Option<u32>> {
        match self {
            Target::Local(s) if aged => s.seal_if_aged(),
            Target::Local(s) => s.seal(),
            Target::Service(r) => {
                let path = if aged { "/seal?aged=true" } else { "/seal" };
                let v = r.call("POST", path, Body::None)?;
                Ok(v["sealed"].as_u64().map(|id| id as u32))
            }
        }
    }

    /// Apply `change`, then the settings as `settings --json` shows them.
    pub(super) fn change_settings(&self, change: &SettingsChange) -> Result<Value> {
        match self {
            Target::Local(s) => {
                change.apply(s)?;
                Ok(crate::settings::view(s))
            }
            Target::Service(r) => {
                let body = serde_json::to_value(change).unwrap_or_default();
                r.call("PUT", "/settings", Body::Json(&body))
            }
        }
    }

    pub(super) fn partition_add(&self, path: &Path, capacity: Option<u64>) -> Result<u32> {
        match self {
            Target::Local(s) => s.partition_add(path, capacity),
            Target::Service(r) => {
                let body = json!({"path": path, "capacity": capacity});
                let v = r.call("POST", "/partitions", Body::Json(&body))?;
                Ok(v["id"].as_u64().unwrap_or_default() as u32)
            }
        }
    }

    pub(super) fn partition_close(&self, id: u32) -> Result<()> {
        match self {
            Target::Local(s) => s.partition_close(id),
            Target::Service(r) => r
                .call("POST", &format!("/partitions/{id}/close"), Body::None)
                .map(drop),
        }
    }

    pub(super) fn mark_indexed(&self, ids: &[SavesetId]) -> Result<usize> {
        match self {
            Target::Local(s) => s.mark_indexed(ids),
            Target::Service(r) => {
                let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
                let v = r.call("POST", "/indexed", Body::Json(&json!({ "ids": ids })))?;
                Ok(v["marked"].as_u64().unwrap_or_default() as usize)
            }
        }
    }

    pub(super) fn feed_ack(&self, cursor: crate::backup::Cursor) -> Result<()> {
        match self {
            Target::Local(s) => s.feed_ack(cursor),
            Target::Service(r) => {
                let body = json!({"cursor": cursor.to_string()});
                r.call("POST", "/feed/ack", Body::Json(&body)).map(drop)
            }
        }
    }

    /// Run the maintenance that is due, once.
    pub(super) fn maintain(&self) -> Result<Vec<crate::present::MaintenanceStep>> {
        match self {
            Target::Local(s) => Ok(crate::present::maintenance_steps(s.maintain())),
            Target::Service(r) => {
                let v = r.call("POST", "/maintain", Body::None)?;
                serde_json::from_value(v).map_err(|e| Error::Service {
                    message: format!("the service's maintenance report is not understood: {e}"),
                })
            }
        }
    }

    /// Turn backup mode on or off (a service processes the cache after off).
    pub(super) fn backup_mode(&self, on: bool) -> Result<crate::backup_mode::BackupModeStatus> {
        match self {
            Target::Local(s) => s.backup_mode(Some(on)),
            Target::Service(r) => {
                let v = r.call("POST", "/backup/mode", Body::Json(&json!({ "on": on })))?;
                serde_json::from_value(v).map_err(|e| Error::Service {
                    message: format!("the service's backup mode answer is not understood: {e}"),
                })
            }
        }
    }

    pub(super) fn backup_mark(&self, segment: u32, checksum: &str) -> Result<()> {
        match self {
            Target::Local(s) => s.backup_mark(segment, checksum),
            Target::Service(r) => {
                let body = json!({ "checksum": checksum });
                let path = format!("/backup/{segment}/mark");
                r.call("POST", &path, Body::Json(&body)).map(drop)
            }
        }
    }
}

/// What one connection of [`Target::archive_many`] did: (item's place, answer).
type Lane = Result<Vec<(usize, Result<Archived>)>>;

fn failed_client() -> Error {
    Error::Service {
        message: "a connection to the service failed".into(),
    }
}

fn id_of(v: &Value) -> Result<SavesetId> {
    v["id"]
        .as_str()
        .ok_or_else(|| Error::Service {
            message: format!("the service's answer has no id: {v}"),
        })?
        .parse()
}

fn archived(v: &Value) -> Result<Archived> {
    Ok(Archived {
        id: id_of(v)?,
        new_content: v["new_content"].as_bool().unwrap_or(false),
        new_reference: v["new_reference"].as_bool().unwrap_or(false),
    })
}

/// `/owners/OWNER[/items/ITEM]TAIL`, names percent-encoded.
fn item_path(owner: &str, item: Option<&str>, tail: &str) -> String {
    match item {
        Some(item) => format!("/owners/{}/items/{}{tail}", encode(owner), encode(item)),
        None => format!("/owners/{}{tail}", encode(owner)),
    }
}

/// Percent-encode all but RFC 3986's unreserved characters.
fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A request's body.
pub(super) enum Body<'a> {
    None,
    Json(&'a Value),
    Bytes(&'a [u8]),
}

/// The service's answer: its JSON, or its refusal (a 4xx) as an error.
pub(super) enum Answer {
    Ok(Value),
    Refused(Error),
}

/// The service that holds a store, by its socket.
pub(super) struct Remote {
    socket: PathBuf,
}

impl Remote {
    /// The service of the store at `dir`, when its socket is there.
    pub(super) fn of(dir: &Path) -> Option<Remote> {
        let socket = dir.join(super::service::SOCKET_FILE);
        socket.exists().then_some(Remote { socket })
    }

    pub(super) fn connect(&self) -> Result<Connection> {
        let stream = UnixStream::connect(&self.socket)
            .map_err(|e| Error::io(&self.socket, "talk to the service", e))?;
        Ok(Connection {
            socket: self.socket.clone(),
            reader: BufReader::new(stream),
        })
    }

    /// One request on a connection of its own; a refusal is the error.
    pub(super) fn call(&self, method: &str, path: &str, body: Body) -> Result<Value> {
        match self.connect()?.exchange(method, path, body)? {
            Answer::Ok(v) => Ok(v),
            Answer::Refused(e) => Err(e),
        }
    }
}

/// A kept-alive HTTP/1.1 connection to the service.
pub(super) struct Connection {
    socket: PathBuf,
    reader: BufReader<UnixStream>,
}

impl Connection {
    /// Send one request and read its answer. Errors are the connection's;
    /// the service's refusals come back as [`Answer::Refused`].
    pub(super) fn exchange(&mut self, method: &str, path: &str, body: Body) -> Result<Answer> {
        let json;
        let (kind, bytes): (&str, &[u8]) = match body {
            Body::None => ("", &[]),
            Body::Json(v) => {
                json = v.to_string();
                ("content-type: application/json\r\n", json.as_bytes())
            }
            Body::Bytes(b) => ("content-type: message/rfc822\r\n", b),
        };
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: localhost\r\n{kind}content-length: {}\r\n\r\n",
            bytes.len()
        );
        let socket = self.socket.clone();
        let failed = move |e: std::io::Error| Error::io(&socket, "talk to the service", e);
        let stream = self.reader.get_mut();
        let sent = stream
            .write_all(head.as_bytes())
            .and_then(|_| stream.write_all(bytes));
        // A refusal before the body was read (413) closes the connection:
        // its answer says more than the broken pipe.
        let (status, body) = match (sent, self.read_answer()) {
            (_, Ok(answer)) => answer,
            (Err(e), Err(_)) | (Ok(()), Err(e)) => return Err(failed(e)),
        };
        let value: Value = serde_json::from_slice(&body).unwrap_or_default();
        if status < 400 {
            return Ok(Answer::Ok(value));
        }
        let message = value["message"]
            .as_str()
            .map_or_else(|| format!("the service answered {status}"), str::to_string);
        let refusal = Error::Service { message };
        match status {
            400..=499 => Ok(Answer::Refused(refusal)),
            _ => Err(refusal),
        }
    }

    /// Status and body of one answer (a content-length or chunked body).
    fn read_answer(&mut self) -> std::io::Result<(u16, Vec<u8>)> {
        let bad =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("the service's answer is not HTTP"))?;
        let (mut length, mut chunked) = (0usize, false);
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let header = line.trim_end().to_ascii_lowercase();
            if header.is_empty() {
                break;
            }
            if let Some(v) = header.strip_prefix("content-length:") {
                length = v.trim().parse().map_err(|_| bad("bad content-length"))?;
            }
            if header.starts_with("transfer-encoding:") && header.contains("chunked") {
                chunked = true;
            }
        }
        if !chunked {
            let mut body = vec![0; length];
            self.reader.read_exact(&mut body)?;
            return Ok((status, body));
        }
        let mut body = Vec::new();
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim(), 16).map_err(|_| bad("bad chunk"))?;
            let mut chunk = vec![0; size + 2];
            self.reader.read_exact(&mut chunk)?;
            if size == 0 {
                return Ok((status, body));
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }
}
