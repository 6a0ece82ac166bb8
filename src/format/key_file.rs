//! The `KEYS` file of an encrypted store: the master key, wrapped once per
//! key slot (format-spec/encryption.md, "Key file").
//!
//! Bytes only: what a slot holds and how the file is laid out. Deriving a
//! key from a passphrase and unwrapping a slot are `crate::crypto`'s.

use super::Reader;

/// Magic number at offset 0.
pub const MAGIC: [u8; 8] = *b"VSKEYSV1";
/// Version of the key file layout.
pub const KEY_FILE_VERSION: u32 = 1;
/// Name of the file in the store directory.
pub const KEY_FILE: &str = "KEYS";
/// Bytes before the first slot.
pub const HEADER_BYTES: usize = 32;
/// Bytes of one slot.
pub const SLOT_BYTES: usize = 128;
/// Most slots a key file holds.
pub const MAX_SLOTS: usize = 32;
/// Bytes of a slot covered by its wrapping as associated data.
pub const SLOT_AAD_BYTES: usize = 48;
/// The one key derivation function: argon2id, version 0x13.
pub const KDF_ARGON2ID: u32 = 1;
/// Largest memory cost accepted, KiB (4 GiB): more than any machine we size for.
pub const MAX_MEMORY_KIB: u32 = 4 << 20;
/// Largest iteration count accepted.
pub const MAX_ITERATIONS: u32 = 64;
/// Largest parallelism accepted.
pub const MAX_PARALLELISM: u32 = 16;

/// argon2id's cost parameters, stored in each slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory, KiB (at least 8 × parallelism, at most [`MAX_MEMORY_KIB`]).
    pub memory_kib: u32,
    /// Passes over the memory (1 ..= [`MAX_ITERATIONS`]).
    pub iterations: u32,
    /// Lanes (1 ..= [`MAX_PARALLELISM`]).
    pub parallelism: u32,
}

impl KdfParams {
    /// Why these parameters are refused, if they are.
    pub fn check(&self) -> Result<(), String> {
        if self.parallelism == 0 || self.parallelism > MAX_PARALLELISM {
            return Err(format!(
                "kdf parallelism {} is outside 1..={MAX_PARALLELISM}",
                self.parallelism
            ));
        }
        if self.iterations == 0 || self.iterations > MAX_ITERATIONS {
            return Err(format!(
                "kdf iterations {} is outside 1..={MAX_ITERATIONS}",
                self.iterations
            ));
        }
        let least = 8 * self.parallelism;
        if self.memory_kib < least || self.memory_kib > MAX_MEMORY_KIB {
            return Err(format!(
                "kdf memory {} KiB is outside {least}..={MAX_MEMORY_KIB}",
                self.memory_kib
            ));
        }
        Ok(())
    }
}

/// One key slot: the master key wrapped under a key derived from one passphrase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySlot {
    /// The slot's number, unique in the file; never reused while the file lives.
    pub number: u32,
    /// argon2id's parameters for this slot.
    pub kdf: KdfParams,
    /// When the slot was added, Unix ms.
    pub created_ms: u64,
    /// argon2id's salt.
    pub salt: [u8; 16],
    /// XChaCha20-Poly1305 nonce of the wrapping.
    pub nonce: [u8; 24],
    /// The wrapped master key: 32 bytes of ciphertext, then the 16-byte tag.
    pub wrapped: [u8; 48],
}

impl KeySlot {
    /// The slot's first 48 bytes: what its wrapping authenticates.
    pub fn aad_part(&self) -> [u8; SLOT_AAD_BYTES] {
        let mut b = [0u8; SLOT_AAD_BYTES];
        b[0..4].copy_from_slice(&self.number.to_le_bytes());
        b[4..8].copy_from_slice(&KDF_ARGON2ID.to_le_bytes());
        b[8..12].copy_from_slice(&self.kdf.memory_kib.to_le_bytes());
        b[12..16].copy_from_slice(&self.kdf.iterations.to_le_bytes());
        b[16..20].copy_from_slice(&self.kdf.parallelism.to_le_bytes());
        // 20..24 reserved, zero
        b[24..32].copy_from_slice(&self.created_ms.to_le_bytes());
        b[32..48].copy_from_slice(&self.salt);
        b
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.aad_part());
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.wrapped);
        out.extend_from_slice(&[0u8; 8]);
    }
}

/// The whole key file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFile {
    /// The store's id (the manifest's): a slot of one store does not open another.
    pub store_id: [u8; 16],
    /// The slots, in the order they were added.
    pub slots: Vec<KeySlot>,
}

impl KeyFile {
    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES + SLOT_BYTES * self.slots.len() + 4);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&KEY_FILE_VERSION.to_le_bytes());
        out.extend_from_slice(&(self.slots.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.store_id);
        for s in &self.slots {
            s.encode(&mut out);
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parse and check a key file: magic, version, length, crc, then each
    /// slot's fields.
    pub fn decode(b: &[u8]) -> Result<KeyFile, String> {
        let body_len = b
            .len()
            .checked_sub(4)
            .ok_or("key file is shorter than its checksum")?;
        let (body, crc) = b.split_at(body_len);
        let mut r = Reader::new(body);
        if r.array::<8>() != Some(MAGIC) {
            return Err("not a vaultstore key file (bad magic)".into());
        }
        let version = r.u32().ok_or("key file header is short")?;
        if version != KEY_FILE_VERSION {
            return Err(format!(
                "key file version {version} is not supported (this build reads {KEY_FILE_VERSION})"
            ));
        }
        let count = r.u32().ok_or("key file header is short")? as usize;
        let store_id = r.array::<16>().ok_or("key file header is short")?;
        if count == 0 || count > MAX_SLOTS {
            return Err(format!("key file lists {count} slots (1..={MAX_SLOTS})"));
        }
        if r.remaining() != count * SLOT_BYTES {
            return Err(format!(
                "key file holds {} bytes of slots, {count} slots need {}",
                r.remaining(),
                count * SLOT_BYTES
            ));
        }
        if crc32fast::hash(body).to_le_bytes() != crc {
            return Err("key file checksum mismatch".into());
        }
        let mut slots: Vec<KeySlot> = Vec::with_capacity(count);
        for i in 0..count {
            let slot = decode_slot(&mut r).map_err(|d| format!("key slot {i}: {d}"))?;
            if slots.iter().any(|s| s.number == slot.number) {
                return Err(format!("key slot number {} appears twice", slot.number));
            }
            slots.push(slot);
        }
        Ok(KeyFile { store_id, slots })
    }
}

fn decode_slot(r: &mut Reader<'_>) -> Result<KeySlot, String> {
    let short = || "slot is short".to_string();
    let number = r.u32().ok_or_else(short)?;
    let kdf_id = r.u32().ok_or_else(short)?;
    if kdf_id != KDF_ARGON2ID {
        return Err(format!("unknown key derivation function {kdf_id}"));
    }
    let kdf = KdfParams {
        memory_kib: r.u32().ok_or_else(short)?,
        iterations: r.u32().ok_or_else(short)?,
        parallelism: r.u32().ok_or_else(short)?,
    };
    kdf.check()?;
    if r.u32().ok_or_else(short)? != 0 {
        return Err("reserved field is not zero".into());
    }
    let created_ms = r.u64().ok_or_else(short)?;
    let salt = r.array::<16>().ok_or_else(short)?;
    let nonce = r.array::<24>().ok_or_else(short)?;
    let wrapped = r.array::<48>().ok_or_else(short)?;
    if r.u64().ok_or_else(short)? != 0 {
        return Err("reserved field is not zero".into());
    }
    Ok(KeySlot {
        number,
        kdf,
        created_ms,
        salt,
        nonce,
        wrapped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(number: u32) -> KeySlot {
        KeySlot {
            number,
            kdf: KdfParams {
                memory_kib: 65536,
                iterations: 3,
                parallelism: 1,
            },
            created_ms: 1_700_000_000_000,
            salt: [1; 16],
            nonce: [2; 24],
            wrapped: [3; 48],
        }
    }

    #[test]
    fn a_key_file_round_trips_and_every_flip_is_refused() {
        let file = KeyFile {
            store_id: [9; 16],
            slots: vec![slot(0), slot(1)],
        };
        let bytes = file.encode();
        assert_eq!(bytes.len(), HEADER_BYTES + 2 * SLOT_BYTES + 4);
        assert_eq!(KeyFile::decode(&bytes).unwrap(), file);
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            assert!(KeyFile::decode(&b).is_err(), "flip at {i} accepted");
        }
        for cut in 0..bytes.len() {
            assert!(KeyFile::decode(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn duplicate_slot_numbers_and_bad_costs_are_refused() {
        let twice = KeyFile {
            store_id: [9; 16],
            slots: vec![slot(4), slot(4)],
        };
        assert!(
            KeyFile::decode(&twice.encode())
                .unwrap_err()
                .contains("twice")
        );
        let mut cheap = slot(0);
        cheap.kdf.memory_kib = 7;
        let file = KeyFile {
            store_id: [9; 16],
            slots: vec![cheap],
        };
        assert!(
            KeyFile::decode(&file.encode())
                .unwrap_err()
                .contains("memory")
        );
    }
}
