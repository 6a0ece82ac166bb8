//! The object store client of a build without the `object-storage`
//! feature (the fuzz targets, say): every request is an error that says so.

use std::ops::Range;

use bytes::Bytes;

use super::{ObjectEntry, ObjectUrl, VFile};
use crate::error::{Error, Result};

/// A client that cannot connect: this build has no object storage.
pub struct ObjectClient {
    url: ObjectUrl,
}

impl ObjectClient {
    fn absent<T>(&self) -> Result<T> {
        Err(Error::ObjectStore {
            url: self.url.to_string(),
            op: "connect",
            detail: "this build has no object storage (cargo feature object-storage)".into(),
        })
    }

    /// Always an error in this build.
    pub fn connect(url: &ObjectUrl) -> Result<ObjectClient> {
        ObjectClient { url: url.clone() }.absent()
    }

    /// The bucket and prefix.
    pub fn url(&self) -> &ObjectUrl {
        &self.url
    }

    /// Always an error in this build.
    pub fn list(&self) -> Result<Vec<ObjectEntry>> {
        self.absent()
    }

    /// Always an error in this build.
    pub fn read_range(&self, _: &str, _: Range<u64>) -> Result<Bytes> {
        self.absent()
    }

    /// Always an error in this build.
    pub fn upload(&self, _: &str, _: &dyn VFile, _: u64) -> Result<()> {
        self.absent()
    }

    /// Always an error in this build.
    pub fn read_back(&self, _: &str, _: &[Range<u64>]) -> Result<(u64, Vec<Bytes>)> {
        self.absent()
    }

    /// Always an error in this build.
    pub fn delete(&self, _: &str) -> Result<()> {
        self.absent()
    }
}
