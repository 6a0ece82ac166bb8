//! Bearer tokens of the service: a read-write and a read-only token, kept
//! in the store's `TOKENS` file (mode 0600), created and rotated by
//! `vaultstore token`. The service re-reads the file when it changes, so a
//! rotation takes effect without a restart.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use parking_lot::RwLock;

use crate::error::{Error, Result};

/// Name of the token file in the store directory.
pub const TOKENS_FILE: &str = "TOKENS";

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Everything.
    ReadWrite,
    /// GET and HEAD only: monitoring and backup listing.
    ReadOnly,
}

#[derive(Default, Clone)]
struct TokenPair {
    read_write: Option<String>,
    read_only: Option<String>,
}

fn tokens_path(store: &Path) -> PathBuf {
    store.join(TOKENS_FILE)
}

fn read_pair(path: &Path) -> Result<TokenPair> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(TokenPair::default()),
        Err(e) => return Err(Error::io(path, "read tokens", e)),
    };
    let mut pair = TokenPair::default();
    for line in text.lines() {
        match line.split_once(' ') {
            Some(("read-write", t)) => pair.read_write = Some(t.trim().to_string()),
            Some(("read-only", t)) => pair.read_only = Some(t.trim().to_string()),
            _ => {}
        }
    }
    Ok(pair)
}

fn write_pair(path: &Path, pair: &TokenPair) -> Result<()> {
    let mut text = String::new();
    if let Some(t) = &pair.read_write {
        text.push_str(&format!("read-write {t}\n"));
    }
    if let Some(t) = &pair.read_only {
        text.push_str(&format!("read-only {t}\n"));
    }
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| Error::io(&tmp, "create tokens", e))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(&tmp, "write tokens", e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, "rename tokens", e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io(path, "set token file mode", e))
}

/// 32 random bytes from the kernel, as 64 hex digits.
fn new_token() -> Result<String> {
    let mut bytes = [0u8; 32];
    let path = Path::new("/dev/urandom");
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .map_err(|e| Error::io(path, "read random bytes", e))?;
    Ok(hex::encode(bytes))
}

/// The token of kind `access` for the store at `store`, created if there
/// is none, replaced by a new one when `rotate`.
pub fn token(store: &Path, access: Access, rotate: bool) -> Result<String> {
    if !store.join(crate::format::MANIFEST_FILE).exists() {
        return Err(Error::NotAStore {
            path: store.to_path_buf(),
        });
    }
    let path = tokens_path(store);
    let mut pair = read_pair(&path)?;
    let slot = match access {
        Access::ReadWrite => &mut pair.read_write,
        Access::ReadOnly => &mut pair.read_only,
    };
    if slot.is_none() || rotate {
        *slot = Some(new_token()?);
        let t = slot.clone().unwrap_or_default();
        write_pair(&path, &pair)?;
        return Ok(t);
    }
    Ok(slot.clone().unwrap_or_default())
}

/// The service's view of the token file.
pub(crate) struct Tokens {
    path: PathBuf,
    cached: RwLock<(Option<SystemTime>, TokenPair)>,
}

impl Tokens {
    pub(crate) fn new(store: &Path) -> Result<Tokens> {
        let path = tokens_path(store);
        let pair = read_pair(&path)?;
        let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        Ok(Tokens {
            path,
            cached: RwLock::new((mtime, pair)),
        })
    }

    /// What `presented` allows, if anything.
    pub(crate) fn check(&self, presented: &str) -> Option<Access> {
        let mtime = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        if self.cached.read().0 != mtime {
            let pair = read_pair(&self.path).unwrap_or_default();
            *self.cached.write() = (mtime, pair);
        }
        let cached = self.cached.read();
        let pair = &cached.1;
        if pair
            .read_write
            .as_deref()
            .is_some_and(|t| same(t, presented))
        {
            Some(Access::ReadWrite)
        } else if pair
            .read_only
            .as_deref()
            .is_some_and(|t| same(t, presented))
        {
            Some(Access::ReadOnly)
        } else {
            None
        }
    }
}

/// Compare without stopping at the first difference.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_created_kept_rotated_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("s");
        assert!(
            token(&store, Access::ReadWrite, false).is_err(),
            "not a store"
        );
        drop(crate::Store::init(&store, &Default::default()).unwrap());
        let rw = token(&store, Access::ReadWrite, false).unwrap();
        assert_eq!(rw.len(), 64);
        assert_eq!(token(&store, Access::ReadWrite, false).unwrap(), rw);
        let ro = token(&store, Access::ReadOnly, false).unwrap();
        assert_ne!(ro, rw);
        let mode = std::fs::metadata(store.join(TOKENS_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let tokens = Tokens::new(&store).unwrap();
        assert_eq!(tokens.check(&rw), Some(Access::ReadWrite));
        assert_eq!(tokens.check(&ro), Some(Access::ReadOnly));
        assert_eq!(tokens.check("nope"), None);
        assert_eq!(tokens.check(""), None);
        let rotated = token(&store, Access::ReadWrite, true).unwrap();
        assert_ne!(rotated, rw);
        // The file's time may not change within its resolution: force a reload.
        *tokens.cached.write() = (None, TokenPair::default());
        assert_eq!(tokens.check(&rw), None);
        assert_eq!(tokens.check(&rotated), Some(Access::ReadWrite));
        assert_eq!(tokens.check(&ro), Some(Access::ReadOnly));
    }
}
