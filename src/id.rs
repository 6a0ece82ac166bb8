//! Saveset ids: the blake3-256 hash of a saveset's uncompressed content.
//!
//! Owns parsing and printing ids (64 lowercase hex digits). It knows nothing
//! about where a saveset is stored.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// The content address of a saveset: blake3-256 of its uncompressed bytes.
///
/// ```
/// use vaultstore::SavesetId;
/// let id = SavesetId::of(b"hello");
/// assert_eq!(id.to_string().len(), 64);
/// assert_eq!(id.to_string().parse::<SavesetId>().unwrap(), id);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SavesetId(pub [u8; 32]);

impl SavesetId {
    /// Hash `content` to its id.
    pub fn of(content: &[u8]) -> Self {
        SavesetId(*blake3::hash(content).as_bytes())
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The first 8 bytes as a big-endian integer: uniformly distributed, used
    /// for bucketing in the index.
    pub fn prefix_u64(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[..8]);
        u64::from_be_bytes(b)
    }
}

impl fmt::Display for SavesetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // On the stack: ids are printed by the thousand (a page of items).
        let mut text = [0u8; 64];
        hex::encode_to_slice(self.0, &mut text).map_err(|_| fmt::Error)?;
        f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for SavesetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SavesetId({self})")
    }
}

impl FromStr for SavesetId {
    type Err = Error;

    /// Parse 64 hex digits (either case). Anything else is [`Error::InvalidId`].
    fn from_str(text: &str) -> Result<Self, Error> {
        let invalid = || Error::InvalidId {
            text: text.chars().take(80).collect(),
        };
        if text.len() != 64 {
            return Err(invalid());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).map_err(|_| invalid())?;
        Ok(SavesetId(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_it_prints() {
        let id = SavesetId::of(b"message");
        assert_eq!(id.to_string().parse::<SavesetId>().unwrap(), id);
        assert_eq!(
            id.to_string().to_uppercase().parse::<SavesetId>().unwrap(),
            id
        );
    }

    #[test]
    fn rejects_bad_text() {
        for bad in ["", "abc", &"g".repeat(64), &"a".repeat(63), &"a".repeat(65)] {
            assert!(matches!(
                bad.parse::<SavesetId>(),
                Err(Error::InvalidId { .. })
            ));
        }
    }
}
