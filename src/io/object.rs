//! Object storage: an S3-compatible bucket, the second place bytes can live.
//!
//! Owns the connection to a bucket (through the `object_store` crate, on a
//! small runtime of its own so the synchronous engine can call it from any
//! thread, the service's included), the retry policy, and moving whole
//! files and byte ranges by object name. Like the rest of `io` it knows
//! nothing of the format: names and bytes only.
//!
//! Credentials come from the usual `AWS_*` variables, or else from the AWS
//! credentials file (`AWS_SHARED_CREDENTIALS_FILE`, default
//! `~/.aws/credentials`, profile `AWS_PROFILE` or `default`). They are never
//! logged, never written to the store, and never part of an error.

use std::future::Future;
use std::ops::Range;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
    WriteMultipart,
};

use super::VFile;
use crate::error::{Error, Result};

/// Bytes a multipart upload sends in one part (S3 wants at least 5 MiB).
pub const UPLOAD_PART_BYTES: usize = 8 << 20;
/// Parts of one upload in flight at once.
const UPLOAD_PARTS_IN_FLIGHT: usize = 4;

/// `s3://BUCKET/PREFIX`, as a partition is written in the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectUrl {
    /// The bucket.
    pub bucket: String,
    /// The prefix objects are named under, without slashes at either end
    /// (may be empty).
    pub prefix: String,
}

impl ObjectUrl {
    /// Parse `s3://BUCKET[/PREFIX]`; `None` for any other text.
    pub fn parse(text: &str) -> Option<ObjectUrl> {
        let rest = text.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        let prefix = prefix.trim_matches('/');
        let prefix_ok = prefix
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != ".." || prefix.is_empty())
            && !prefix.contains(['\\', '\0']);
        (bucket_ok && prefix_ok).then(|| ObjectUrl {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }

    /// The URL of object `name` under the prefix.
    pub fn object(&self, name: &str) -> String {
        format!("s3://{}/{}", self.bucket, self.key(name))
    }

    /// The key of object `name`: the prefix, a slash, the name.
    fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }
}

impl std::fmt::Display for ObjectUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

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

/// An object in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEntry {
    /// Its name under the prefix.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
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

/// The access key, secret and session token of `profile` in an AWS
/// credentials file's text.
fn parse_credentials(text: &str, profile: &str) -> Option<(String, String, Option<String>)> {
    let (mut key, mut secret, mut token) = (None, None, None);
    let mut in_profile = false;
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_profile = name.trim() == profile;
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if !in_profile {
            continue;
        }
        let v = v.trim().to_string();
        match k.trim() {
            "aws_access_key_id" => key = Some(v),
            "aws_secret_access_key" => secret = Some(v),
            "aws_session_token" => token = Some(v),
            _ => {}
        }
    }
    Some((key?, secret?, token))
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
    /// larger than one part), and return their blake3. An upload that fails
    /// is aborted, so it never becomes visible.
    pub fn upload(&self, name: &str, file: &dyn VFile, len: u64) -> Result<[u8; 32]> {
        let mut hasher = blake3::Hasher::new();
        let read = |offset: u64, n: usize, hasher: &mut blake3::Hasher| -> Result<Bytes> {
            let mut buf = vec![0u8; n];
            file.read_exact_at(&mut buf, offset)
                .map_err(|e| self.fail(name, "read the local copy to upload", e))?;
            hasher.update(&buf);
            Ok(Bytes::from(buf))
        };
        let path = self.path(name);
        if len <= UPLOAD_PART_BYTES as u64 {
            let bytes = read(0, len as usize, &mut hasher)?;
            let store = self.store.clone();
            block(async move { store.put(&path, PutPayload::from(bytes)).await })
                .map_err(|e| self.fail(name, "upload", e))?
                .map_err(|e| self.fail(name, "upload", e))?;
            return Ok(*hasher.finalize().as_bytes());
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
            let bytes = match read(offset, n, &mut hasher) {
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
        Ok(*hasher.finalize().as_bytes())
    }

    /// Read object `name` back whole: its length and blake3.
    pub fn hash_object(&self, name: &str) -> Result<(u64, [u8; 32])> {
        let store = self.store.clone();
        let path = self.path(name);
        block(async move {
            let got = store.get(&path).await?;
            let mut stream = got.into_stream();
            let mut hasher = blake3::Hasher::new();
            let mut len = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                len += chunk.len() as u64;
                hasher.update(&chunk);
            }
            Ok::<_, object_store::Error>((len, *hasher.finalize().as_bytes()))
        })
        .map_err(|e| self.fail(name, "read back", e))?
        .map_err(|e| self.fail(name, "read back", e))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_to_bucket_and_prefix() {
        let u = ObjectUrl::parse("s3://archive-1/vault/p2/").unwrap();
        assert_eq!(u.bucket, "archive-1");
        assert_eq!(u.prefix, "vault/p2");
        assert_eq!(
            u.object("segment-3.sealed"),
            "s3://archive-1/vault/p2/segment-3.sealed"
        );
        assert_eq!(ObjectUrl::parse("s3://bucket").unwrap().prefix, "");
        for bad in [
            "s3://",
            "s3://UPPER/x",
            "s3://ab/x",
            "s3://b_b/x",
            "s3://bucket/a/../b",
            "gs://bucket/x",
            "/tmp/x",
        ] {
            assert!(ObjectUrl::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn the_credentials_file_gives_the_profiles_keys() {
        let text = "[default]\naws_access_key_id = A1\naws_secret_access_key=S1\n\n[other]\naws_access_key_id=A2\naws_secret_access_key = S2\naws_session_token = T2\n";
        assert_eq!(
            parse_credentials(text, "default"),
            Some(("A1".into(), "S1".into(), None))
        );
        assert_eq!(
            parse_credentials(text, "other"),
            Some(("A2".into(), "S2".into(), Some("T2".into())))
        );
        assert_eq!(parse_credentials(text, "none"), None);
    }
}
