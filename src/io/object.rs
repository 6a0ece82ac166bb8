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

use super::VFile;

#[cfg(feature = "object-storage")]
mod client;
#[cfg(feature = "object-storage")]
pub use client::ObjectClient;

#[cfg(not(feature = "object-storage"))]
mod absent;
#[cfg(not(feature = "object-storage"))]
pub use absent::ObjectClient;

/// Bytes a multipart upload sends in one part (S3 wants at least 5 MiB).
pub const UPLOAD_PART_BYTES: usize = 8 << 20;

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

/// An object in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEntry {
    /// Its name under the prefix.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
}

/// The access key, secret and session token of `profile` in an AWS
/// credentials file's text.
#[cfg_attr(not(feature = "object-storage"), allow(dead_code))]
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
