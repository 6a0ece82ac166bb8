//! Real S3 servers on loopback for the object-storage tests: `s3s-fs` (Rust,
//! objects as files on disk) and moto's server mode (Python). Each is
//! started on a free port with keys of its own, and killed when dropped
//! (or when the test process dies). A server that is not installed is
//! skipped with a message; `.ci/run` installs both.

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Access key and secret every test server is started with.
pub const ACCESS_KEY: &str = "vaultstore-test-key";
pub const SECRET_KEY: &str = "vaultstore-test-secret-0123456789";

/// Bytes that do not compress, so segments are as large as their content.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// One running S3 server.
pub struct S3Server {
    /// "s3s-fs" or "moto".
    pub kind: &'static str,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    child: Child,
    /// Where s3s-fs keeps objects (bucket/key as directories and files).
    root: Option<tempfile::TempDir>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn installed(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".cargo/bin"));
    }
    dirs.into_iter()
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Start `command`, killed with SIGKILL when this process dies, and wait
/// until `port` takes connections.
fn start(mut command: Command, port: u16) -> Child {
    // SAFETY: prctl is async-signal-safe; it only sets the child's own flag.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("S3 server exited at start: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "S3 server did not listen in 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

impl S3Server {
    /// Every server kind installed here, started.
    pub fn all() -> Vec<S3Server> {
        let servers: Vec<S3Server> = [S3Server::s3s_fs(), S3Server::moto()]
            .into_iter()
            .flatten()
            .collect();
        if servers.is_empty() {
            eprintln!(
                "SKIP: no S3 server installed (cargo install s3s-fs --version 0.14.1 \
                 --features binary; pip install 'moto[server]')"
            );
        }
        servers
    }

    /// s3s-fs, if installed.
    pub fn s3s_fs() -> Option<S3Server> {
        let Some(program) = installed("s3s-fs") else {
            eprintln!(
                "SKIP for s3s-fs: not installed (cargo install s3s-fs --version 0.14.1 --features binary)"
            );
            return None;
        };
        let root = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut c = Command::new(program);
        c.args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(root.path());
        let child = start(c, port);
        Some(S3Server {
            kind: "s3s-fs",
            endpoint: format!("http://127.0.0.1:{port}"),
            child,
            root: Some(root),
        })
    }

    /// moto's server, if installed.
    pub fn moto() -> Option<S3Server> {
        let Some(program) = installed("moto_server") else {
            eprintln!("SKIP for moto: not installed (pip install 'moto[server]')");
            return None;
        };
        let port = free_port();
        let mut c = Command::new(program);
        c.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        let child = start(c, port);
        Some(S3Server {
            kind: "moto",
            endpoint: format!("http://127.0.0.1:{port}"),
            child,
            root: None,
        })
    }

    /// The environment a client of this server needs.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_REGION", "us-east-1".into()),
            ("VAULTSTORE_OBJECT_RETRIES", "2".into()),
            ("VAULTSTORE_OBJECT_TIMEOUT_MS", "10000".into()),
        ]
    }

    /// Create a bucket: a directory for s3s-fs, an unsigned PUT for moto.
    pub fn create_bucket(&self, bucket: &str) {
        match &self.root {
            Some(root) => std::fs::create_dir_all(root.path().join(bucket)).unwrap(),
            None => {
                let r = reqwest::blocking::Client::new()
                    .put(format!("{}/{bucket}", self.endpoint))
                    .send()
                    .unwrap();
                assert!(r.status().is_success(), "create bucket: {}", r.status());
            }
        }
    }

    /// The file holding object `key` of `bucket` (s3s-fs only).
    pub fn object_file(&self, bucket: &str, key: &str) -> Option<PathBuf> {
        Some(self.root.as_ref()?.path().join(bucket).join(key))
    }

    /// The keys of `bucket` under `prefix`, from the server's files
    /// (s3s-fs) or a listing (moto).
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        match &self.root {
            Some(root) => {
                let dir = root.path().join(bucket).join(prefix);
                let mut keys: Vec<String> = std::fs::read_dir(&dir)
                    .map(|d| {
                        d.filter_map(|e| e.ok())
                            .filter(|e| e.path().is_file())
                            .map(|e| format!("{prefix}/{}", e.file_name().to_string_lossy()))
                            .collect()
                    })
                    .unwrap_or_default();
                keys.sort();
                keys
            }
            None => {
                let body = reqwest::blocking::get(format!(
                    "{}/{bucket}?list-type=2&prefix={prefix}/",
                    self.endpoint
                ))
                .unwrap()
                .text()
                .unwrap();
                let mut keys: Vec<String> = body
                    .split("<Key>")
                    .skip(1)
                    .filter_map(|s| s.split("</Key>").next())
                    .map(str::to_string)
                    .collect();
                keys.sort();
                keys
            }
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
