//! The object store client: `object_store`'s S3 client on a runtime of
//! its own (the `object-storage` feature, on by default).

use std::future::Future;
use std::ops::Range;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
    WriteMultipart,
};

use super::{ObjectEntry, ObjectUrl, UPLOAD_PART_BYTES, VFile, parse_credentials};
use crate::error::{Error, Result};

/// Parts of one upload in flight at once.
const UPLOAD_PARTS_IN_FLIGHT: usize = 4;

/// The runtime every object request runs on: two threads, made once.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("vaultstore-object")
            .enable_all()
            .build()
            .expect("the object storage runtime starts (threads and a timer)")
    })
}

/// Run `fut` on the object runtime and wait for it. Safe from any thread,
/// a tokio worker's included, because the caller only waits on a channel.
fn block<F>(fut: F) -> std::result::Result<F::Output, String>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime().spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv()
        .map_err(|_| "the object storage runtime dropped the request".to_string())
}

/// What went wrong, with every cause the error chain carries (a bare
/// "builder error" or "connection refused" says little without them).
trait Failure {
    fn describe(&self) -> String;
}

impl Failure for object_store::Error {
    fn describe(&self) -> String {
        let mut text = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            let more = c.to_string();
            if !text.contains(&more) {
                text.push_str(": ");
                text.push_str(&more);
            }
            cause = c.source();
        }
        text
    }
}

impl Failure for String {
    fn describe(&self) -> String {
        self.clone()
    }
}

impl Failure for &str {
    fn describe(&self) -> String {
        self.to_string()
    }
}

impl Failure for crate::error::Error {
    fn describe(&self) -> String {
        self.to_string()
    }
}

impl Failure for std::io::Error {
    fn describe(&self) -> String {
        self.to_string()
    }
}

/// A connection to one bucket and prefix.
pub struct ObjectClient {
    url: ObjectUrl,
    store: Arc<dyn ObjectStore>,
}

/// Retries and timeouts, from `VAULTSTORE_OBJECT_RETRIES` (default 5) and
/// `VAULTSTORE_OBJECT_TIMEOUT_MS` (a request's limit, default 30,000).
fn retry_policy() -> (RetryConfig, ClientOptions) {
    let number = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(default)
    };
    let retries = number("VAULTSTORE_OBJECT_RETRIES", 5) as usize;
    let timeout = Duration::from_millis(number("VAULTSTORE_OBJECT_TIMEOUT_MS", 30_000).max(1));
    let retry = RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
            base: 2.0,
        },
        max_retries: retries,
        retry_timeout: timeout * (retries as u32 + 1),
    };
    let options = ClientOptions::new()
        .with_timeout(timeout)
        .with_connect_timeout(timeout.min(Duration::from_secs(5)));
    (retry, options)
}

/// Access keys from the AWS credentials file, when the environment has none.
fn credentials_file() -> Option<(String, String, Option<String>)> {
    let path = std::env::var_os("AWS_SHARED_CREDENTIALS_FILE")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".aws/credentials"))
        })?;
    let text = std::fs::read_to_string(path).ok()?;
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
    parse_credentials(&text, &profile)
}

impl ObjectClient {
    /// A client for `url`. Makes no request: a wrong endpoint or key shows
    /// at the first one.
    pub fn connect(url: &ObjectUrl) -> Result<ObjectClient> {
        let (retry, options) = retry_policy();
        // Our timeouts first: `AWS_*` settings of the client (AWS_ALLOW_HTTP)
        // then apply over them instead of being replaced.
        let mut builder = AmazonS3Builder::new()
            .with_retry(retry)
            .with_client_options(options);
        for (key, value) in std::env::vars_os() {
            let (Some(key), Some(value)) = (key.to_str(), value.to_str()) else {
                continue;
            };
            if let Some(Ok(k)) = key
                .starts_with("AWS_")
                .then(|| key.to_ascii_lowercase().parse::<AmazonS3ConfigKey>())
            {
                builder = builder.with_config(k, value);
            }
        }
        builder = builder.with_bucket_name(&url.bucket);
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none()
            && let Some((key, secret, token)) = credentials_file()
        {
            builder = builder
                .with_access_key_id(key)
                .with_secret_access_key(secret);
            if let Some(token) = token {
                builder = builder.with_token(token);
            }
        }
        let store = builder.build().map_err(|e| Error::ObjectStore {
            url: url.to_string(),
            op: "connect",
            detail: e.to_string(),
        })?;
        Ok(ObjectClient {
            url: url.clone(),
            store: Arc::new(store),
        })
    }

    /// The bucket and prefix.
    pub fn url(&self) -> &ObjectUrl {
        &self.url
    }

    fn fail(&self, name: &str, op: &'static str, detail: impl Failure) -> Error {
        Error::ObjectStore {
            url: if name.is_empty() {
                self.url.to_string()
            } else {
                self.url.object(name)
            },
            op,
            detail: detail.describe(),
        }
    }

    fn path(&self, name: &str) -> ObjectPath {
        ObjectPath::from(self.url.key(name))
    }

    /// Every object directly under the prefix.
    pub fn list(&self) -> Result<Vec<ObjectEntry>> {
        let store = self.store.clone();
        let prefix =
            (!self.url.prefix.is_empty()).then(|| ObjectPath::from(self.url.prefix.as_str()));
        let listed = block(async move { store.list_with_delimiter(prefix.as_ref()).await })
            .map_err(|e| self.fail("", "list", e))?
            .map_err(|e| self.fail("", "list", e))?;
        Ok(listed
            .objects
            .into_iter()
            .filter_map(|o| {
                Some(ObjectEntry {
                    name: o.location.filename()?.to_string(),
                    size: o.size,
                })
            })
            .collect())
    }

    /// Bytes `range` of object `name`: one ranged GET. A short answer is
    /// an error, never returned as data.
    pub fn read_range(&self, name: &str, range: Range<u64>) -> Result<Bytes> {
        let store = self.store.clone();
        let path = self.path(name);
        let want = range.end - range.start;
        let bytes = block(async move { store.get_range(&path, range).await })
            .map_err(|e| self.fail(name, "ranged read", e))?
            .map_err(|e| self.fail(name, "ranged read", e))?;
        if bytes.len() as u64 != want {
            return Err(self.fail(
                name,
                "ranged read",
                format!("asked for {want} bytes, the server sent {}", bytes.len()),
            ));
        }
        Ok(bytes)
    }

    /// Upload the first `len` bytes of `file` as object `name` (in parts when
    /// larger than one part). An upload that fails
    /// is aborted, so it never becomes visible.
    pub fn upload(&self, name: &str, file: &dyn VFile, len: u64) -> Result<()> {
        let read = |offset: u64, n: usize| -> Result<Bytes> {
            let mut buf = vec![0u8; n];
            file.read_exact_at(&mut buf, offset)
                .map_err(|e| self.fail(name, "read the local copy to upload", e))?;
            Ok(Bytes::from(buf))
        };
        let path = self.path(name);
        if len <= UPLOAD_PART_BYTES as u64 {
            let bytes = read(0, len as usize)?;
            let store = self.store.clone();
            block(async move { store.put(&path, PutPayload::from(bytes)).await })
                .map_err(|e| self.fail(name, "upload", e))?
                .map_err(|e| self.fail(name, "upload", e))?;
            return Ok(());
        }
        let store = self.store.clone();
        let upload = block(async move { store.put_multipart(&path).await })
            .map_err(|e| self.fail(name, "start a multipart upload", e))?
            .map_err(|e| self.fail(name, "start a multipart upload", e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, UPLOAD_PART_BYTES);
        let mut offset = 0u64;
        while offset < len {
            let n = (len - offset).min(UPLOAD_PART_BYTES as u64) as usize;
            // The next part is read here while earlier ones are in flight.
            let bytes = match read(offset, n) {
                Ok(b) => b,
                Err(e) => {
                    let _ = block(async move { writer.abort().await });
                    return Err(e);
                }
            };
            let (back, waited) = block(async move {
                let waited = writer.wait_for_capacity(UPLOAD_PARTS_IN_FLIGHT).await;
                writer.put(bytes);
                (writer, waited)
            })
            .map_err(|e| self.fail(name, "upload a part", e))?;
            writer = back;
            if let Err(e) = waited {
                let _ = block(async move { writer.abort().await });
                return Err(self.fail(name, "upload a part", e));
            }
            offset += n as u64;
        }
        block(async move { writer.finish().await })
            .map_err(|e| self.fail(name, "complete the multipart upload", e))?
            .map_err(|e| self.fail(name, "complete the multipart upload", e))?;
        Ok(())
    }

    /// The size of object `name` (its HEAD) and its bytes in `ranges`,
    /// asked for together. A short range is an error.
    pub fn read_back(&self, name: &str, ranges: &[Range<u64>]) -> Result<(u64, Vec<Bytes>)> {
        let store = self.store.clone();
        let path = self.path(name);
        let asked = ranges.to_vec();
        let (head, got) =
            block(async move { tokio::join!(store.head(&path), store.get_ranges(&path, &asked)) })
                .map_err(|e| self.fail(name, "read back", e))?;
        let size = head.map_err(|e| self.fail(name, "read back", e))?.size;
        let got = got.map_err(|e| self.fail(name, "read back", e))?;
        for (r, b) in ranges.iter().zip(&got) {
            if b.len() as u64 != r.end - r.start {
                return Err(self.fail(
                    name,
                    "read back",
                    format!("bytes {}..{}: the server sent {}", r.start, r.end, b.len()),
                ));
            }
        }
        Ok((size, got))
    }

    /// Delete object `name` (deleting one that is gone succeeds).
    pub fn delete(&self, name: &str) -> Result<()> {
        let store = self.store.clone();
        let path = self.path(name);
        match block(async move { store.delete(&path).await })
            .map_err(|e| self.fail(name, "delete", e))?
        {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.fail(name, "delete", e)),
        }
    }
}
