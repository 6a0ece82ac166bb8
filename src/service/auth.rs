//! Bearer tokens of the service: a read-write and a read-only token, kept
//! in the store's `TOKENS` file (mode 0600), created and rotated by
//! `vaultstore token`. The service re-reads the file when it changes, so a
//! rotation takes effect without a restart. A file that others may write,
//! or a token that is not 64 hex digits, is refused (no token is valid then).
//!
//! Also the page's sessions: a login exchanges a token for a session id of
//! its own, which expires and can be closed; the long-lived token never
//! travels in a cookie.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::{Mutex, RwLock};

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

/// Hex digits in a token (32 random bytes).
pub const TOKEN_HEX_DIGITS: usize = 64;

fn read_pair(path: &Path) -> Result<TokenPair> {
    match std::fs::metadata(path) {
        Ok(m) if m.permissions().mode() & 0o022 != 0 => {
            return Err(Error::InvalidSetting(format!(
                "{}: the token file is writable by other users (mode {:o}); \
                 no token is accepted until it is mode 0600 (chmod 600)",
                path.display(),
                m.permissions().mode() & 0o777
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(TokenPair::default()),
        _ => {}
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, "read tokens", e))?;
    let mut pair = TokenPair::default();
    for (n, line) in text.lines().enumerate() {
        let Some((kind, t)) = line.split_once(' ') else {
            continue;
        };
        let slot = match kind {
            "read-write" => &mut pair.read_write,
            "read-only" => &mut pair.read_only,
            _ => continue,
        };
        let t = t.trim();
        if t.len() != TOKEN_HEX_DIGITS || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::InvalidSetting(format!(
                "{} line {}: a {kind} token must be {TOKEN_HEX_DIGITS} hexadecimal digits \
                 (make a new one with `vaultstore token --rotate`)",
                path.display(),
                n + 1
            )));
        }
        *slot = Some(t.to_string());
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
            // A file that cannot be trusted allows nothing.
            let pair = read_pair(&self.path).unwrap_or_else(|e| {
                tracing::warn!("{e}");
                TokenPair::default()
            });
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

/// Most sessions kept at once; the one closest to expiry makes room.
pub const MAX_SESSIONS: usize = 4096;
/// Default lifetime of a page session.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

struct Session {
    /// The token the session was opened with: rotating it ends the session.
    token: String,
    expires: Instant,
}

/// The page's sessions, in memory: a restart logs everyone out.
pub(crate) struct Sessions {
    ttl: Duration,
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    pub(crate) fn new(ttl: Duration) -> Sessions {
        Sessions {
            ttl,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// How long a session lasts.
    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A new session for `token` (already checked); returns its id.
    pub(crate) fn open(&self, token: &str) -> Result<String> {
        let id = new_token()?;
        let now = Instant::now();
        let mut map = self.map.lock();
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(
            id.clone(),
            Session {
                token: token.to_string(),
                expires: now + self.ttl,
            },
        );
        Ok(id)
    }

    /// The token behind a live session.
    pub(crate) fn token_of(&self, id: &str) -> Option<String> {
        let mut map = self.map.lock();
        match map.get(id) {
            Some(s) if s.expires > Instant::now() => Some(s.token.clone()),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    /// End a session (logout).
    pub(crate) fn close(&self, id: &str) {
        self.map.lock().remove(id);
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

    #[test]
    fn a_token_file_others_may_write_or_with_malformed_tokens_allows_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("s");
        drop(crate::Store::init(&store, &Default::default()).unwrap());
        let rw = token(&store, Access::ReadWrite, false).unwrap();
        let path = store.join(TOKENS_FILE);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o620)).unwrap();
        let e = Tokens::new(&store)
            .err()
            .expect("group-writable file refused");
        assert!(e.to_string().contains("writable by other users"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(Tokens::new(&store).is_ok());
        // An empty token line must not let an empty cookie in.
        for bad in [
            "read-write \n",
            "read-write abc\n",
            &format!("read-write {rw}x\n"),
        ] {
            std::fs::write(&path, bad).unwrap();
            let e = Tokens::new(&store).err().expect("malformed token refused");
            assert!(e.to_string().contains("64 hexadecimal digits"), "{e}");
        }
        std::fs::write(&path, format!("read-write {rw}\n")).unwrap();
        let tokens = Tokens::new(&store).unwrap();
        std::fs::write(&path, "read-write \n").unwrap();
        *tokens.cached.write() = (None, TokenPair::default());
        assert_eq!(tokens.check(""), None);
        assert_eq!(tokens.check(&rw), None);
    }

    #[test]
    fn sessions_expire_close_and_are_bounded() {
        let s = Sessions::new(Duration::from_millis(200));
        let a = s.open("t1").unwrap();
        assert_eq!(a.len(), TOKEN_HEX_DIGITS);
        assert_eq!(s.token_of(&a).as_deref(), Some("t1"));
        assert_eq!(s.token_of("t1"), None, "the token is not a session id");
        s.close(&a);
        assert_eq!(s.token_of(&a), None);
        let b = s.open("t2").unwrap();
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(s.token_of(&b), None, "expired");
        let long = Sessions::new(Duration::from_secs(60));
        let first = long.open("t").unwrap();
        for _ in 0..MAX_SESSIONS {
            long.open("t").unwrap();
        }
        assert_eq!(long.map.lock().len(), MAX_SESSIONS);
        assert_eq!(long.token_of(&first), None, "the oldest made room");
    }
}
