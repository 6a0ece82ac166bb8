//! Encryption at rest (format-spec/encryption.md): the master key and its
//! key slots, the subkeys derived from it, record sealing and keyed ids.
//!
//! Owns every use of a key: deriving a slot's key from a passphrase
//! (argon2id), wrapping and unwrapping the master key, sealing and opening
//! record payloads (XChaCha20-Poly1305 with random nonces), the segment
//! header's tag and the keyed saveset ids written to disk. It reads and
//! writes the `KEYS` file through [`crate::io`] and its bytes through
//! [`crate::format::key_file`]; it knows nothing of segments or the index.
//! Keys are wiped from memory when dropped.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::indexing_slicing))]

use std::path::Path;
use std::sync::Arc;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, Result};
use crate::format::checkpoint::CheckpointHeader;
use crate::format::key_file::{KEY_FILE, KdfParams, KeyFile, KeySlot, MAX_SLOTS};
use crate::format::sealed_checkpoint::BlockSealer;
use crate::io::Vfs;

/// argon2id's parameters for a new slot unless the operator sets others:
/// 256 MiB and 3 passes, about half a second on the 2-core machine we size for.
pub const DEFAULT_KDF: KdfParams = KdfParams {
    memory_kib: 256 << 10,
    iterations: 3,
    parallelism: 1,
};

/// Bytes a sealed payload adds to the encoded content: the nonce, the
/// plain id inside the ciphertext, and the tag.
pub const SEALED_OVERHEAD: u64 = crate::format::segment::SEALED_OVERHEAD;
/// Bytes of a nonce (XChaCha20-Poly1305).
pub const NONCE_BYTES: usize = 24;
const TAG_BYTES: usize = 16;
/// GCM's 96-bit nonce for a record: fixed, as every record has its own key.
const GCM_NONCE: [u8; 12] = [0; 12];
/// Bytes of the segment header's tag (format-spec/encryption.md).
pub const HEADER_TAG_BYTES: usize = 12;

const CONTEXT_RECORD: &str = "vaultstore 2026-12-04 record encryption key";
const CONTEXT_ID: &str = "vaultstore 2026-12-04 keyed saveset id";
const CONTEXT_HEADER: &str = "vaultstore 2026-12-04 segment header tag";
const CONTEXT_SIDE: &str = "vaultstore 2026-12-04 side file entry key";
const CONTEXT_CHECKPOINT: &str = "vaultstore 2026-12-04 checkpoint block key";
/// Bytes a sealed side-file entry adds: the nonce and the tag.
pub const SIDE_OVERHEAD: usize = NONCE_BYTES + TAG_BYTES;

/// A passphrase, wiped from memory when dropped. Never logged.
pub struct Passphrase(Zeroizing<Vec<u8>>);

impl Passphrase {
    /// Wrap the bytes of a passphrase; one trailing newline (as a file or a
    /// prompt leaves it) is not part of it.
    pub fn new(mut bytes: Vec<u8>) -> Result<Passphrase> {
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
        }
        let p = Passphrase(Zeroizing::new(bytes));
        if p.0.is_empty() {
            return Err(Error::Keys("the passphrase is empty".into()));
        }
        Ok(p)
    }

    /// The passphrase's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(..)")
    }
}

/// The store's 256-bit master key. Every other key is derived from it.
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl MasterKey {
    /// A fresh random master key, from the operating system's generator.
    pub fn random() -> Result<MasterKey> {
        let mut k = Zeroizing::new([0u8; 32]);
        fill_random(&mut *k)?;
        Ok(MasterKey(k))
    }

    /// A master key from its bytes (test vectors).
    pub fn from_bytes(bytes: [u8; 32]) -> MasterKey {
        MasterKey(Zeroizing::new(bytes))
    }
}

/// Fill `buf` from the operating system's random generator.
pub fn fill_random(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|e| Error::Crypto(format!("no random bytes: {e}")))
}

/// The key-encryption key argon2id derives from a passphrase and a slot's salt.
fn slot_key(pass: &Passphrase, salt: &[u8; 16], kdf: &KdfParams) -> Result<Zeroizing<[u8; 32]>> {
    kdf.check().map_err(Error::Keys)?;
    let params = argon2::Params::new(kdf.memory_kib, kdf.iterations, kdf.parallelism, Some(32))
        .map_err(|e| Error::Keys(format!("kdf parameters: {e}")))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(pass.as_bytes(), salt, &mut *out)
        .map_err(|e| Error::Crypto(format!("argon2id: {e}")))?;
    Ok(out)
}

/// What a slot's wrapping authenticates besides the key: the file's magic,
/// the store id and the slot's first 48 bytes (number, kdf, time, salt).
fn slot_aad(store_id: &[u8; 16], slot: &KeySlot) -> Vec<u8> {
    let mut aad = Vec::with_capacity(8 + 16 + 48);
    aad.extend_from_slice(&crate::format::key_file::MAGIC);
    aad.extend_from_slice(store_id);
    aad.extend_from_slice(&slot.aad_part());
    aad
}

/// What a new key slot says about itself: its number, its KDF cost and
/// when it was made.
#[derive(Debug, Clone, Copy)]
pub struct NewSlot {
    /// The slot's number, unique in the key file.
    pub number: u32,
    /// argon2id's parameters for this slot.
    pub kdf: KdfParams,
    /// Unix milliseconds.
    pub created_ms: u64,
}

/// Wrap `master` in a new slot under `pass`, with a random salt and nonce.
pub fn wrap_slot(
    master: &MasterKey,
    pass: &Passphrase,
    new: NewSlot,
    store_id: &[u8; 16],
) -> Result<KeySlot> {
    let mut salt = [0u8; 16];
    let mut nonce = [0u8; NONCE_BYTES];
    fill_random(&mut salt)?;
    fill_random(&mut nonce)?;
    wrap_slot_with(master, pass, new, store_id, (salt, nonce))
}

/// [`wrap_slot`] with a given salt and nonce (test vectors).
pub fn wrap_slot_with(
    master: &MasterKey,
    pass: &Passphrase,
    new: NewSlot,
    store_id: &[u8; 16],
    (salt, nonce): ([u8; 16], [u8; NONCE_BYTES]),
) -> Result<KeySlot> {
    let mut slot = KeySlot {
        number: new.number,
        kdf: new.kdf,
        created_ms: new.created_ms,
        salt,
        nonce,
        wrapped: [0; 48],
    };
    let kek = slot_key(pass, &salt, &new.kdf)?;
    let cipher = XChaCha20Poly1305::new((&*kek).into());
    let mut buf = *master.0;
    let tag = cipher
        .encrypt_in_place_detached(
            XNonce::from_slice(&nonce),
            &slot_aad(store_id, &slot),
            &mut buf,
        )
        .map_err(|_| Error::Crypto("wrapping the master key failed".into()))?;
    slot.wrapped[..32].copy_from_slice(&buf);
    slot.wrapped[32..].copy_from_slice(&tag);
    buf.zeroize();
    Ok(slot)
}

/// The master key from `slot` if `pass` is its passphrase.
pub fn unwrap_slot(
    slot: &KeySlot,
    pass: &Passphrase,
    store_id: &[u8; 16],
) -> Result<Option<MasterKey>> {
    let kek = slot_key(pass, &slot.salt, &slot.kdf)?;
    let cipher = XChaCha20Poly1305::new((&*kek).into());
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&slot.wrapped[..32]);
    let opened = cipher.decrypt_in_place_detached(
        XNonce::from_slice(&slot.nonce),
        &slot_aad(store_id, slot),
        &mut *key,
        slot.wrapped[32..].into(),
    );
    Ok(opened.ok().map(|_| MasterKey(key)))
}

/// The keys an open encrypted store works with, derived from its master key.
pub struct StoreKeys {
    record_key: Zeroizing<[u8; 32]>,
    side: XChaCha20Poly1305,
    id_key: Zeroizing<[u8; 32]>,
    header_key: Zeroizing<[u8; 32]>,
    checkpoint_key: Zeroizing<[u8; 32]>,
    store_id: [u8; 16],
}

impl std::fmt::Debug for StoreKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreKeys(..)")
    }
}

/// Why a sealed payload did not open.
pub const DAMAGED: &str = "sealed payload does not authenticate (damaged, moved or of another key)";

impl StoreKeys {
    /// Derive the store's keys from its master key.
    pub fn derive(master: &MasterKey, store_id: [u8; 16]) -> StoreKeys {
        let record = Zeroizing::new(blake3::derive_key(CONTEXT_RECORD, &*master.0));
        StoreKeys {
            record_key: record,
            side: XChaCha20Poly1305::new((&blake3::derive_key(CONTEXT_SIDE, &*master.0)).into()),
            id_key: Zeroizing::new(blake3::derive_key(CONTEXT_ID, &*master.0)),
            header_key: Zeroizing::new(blake3::derive_key(CONTEXT_HEADER, &*master.0)),
            checkpoint_key: Zeroizing::new(blake3::derive_key(CONTEXT_CHECKPOINT, &*master.0)),
            store_id,
        }
    }

    /// The id written to disk for the saveset (or part, or batch) `id`:
    /// blake3 keyed under the id key, so nobody without the key can tell
    /// from the disk whether a known message is stored.
    pub fn keyed_id(&self, id: &[u8; 32]) -> [u8; 32] {
        *blake3::keyed_hash(&self.id_key, id).as_bytes()
    }

    /// The tag a segment header carries over its first 48 bytes.
    pub fn header_tag(&self, header: &[u8]) -> [u8; HEADER_TAG_BYTES] {
        let full = blake3::keyed_hash(&self.header_key, header);
        let mut tag = [0u8; HEADER_TAG_BYTES];
        tag.copy_from_slice(&full.as_bytes()[..HEADER_TAG_BYTES]);
        tag
    }

    /// The associated data of a record: the store id, the segment id for a
    /// footer (data records move between segments in compaction), and the
    /// record header's bytes 4..64.
    fn aad(&self, footer_of: Option<u32>, header_tail: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(16 + 4 + header_tail.len());
        aad.extend_from_slice(&self.store_id);
        if let Some(segment) = footer_of {
            aad.extend_from_slice(&segment.to_le_bytes());
        }
        aad.extend_from_slice(header_tail);
        aad
    }

    /// Seal `encoded` (a record's payload as its codec left it) with its
    /// plain id: `nonce ‖ ciphertext(plain_id ‖ encoded) ‖ tag`.
    /// `header_tail` is bytes 4..64 of the record header it will carry.
    pub fn seal(
        &self,
        footer_of: Option<u32>,
        header_tail: &[u8],
        plain_id: &[u8; 32],
        encoded: &[u8],
    ) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_BYTES];
        fill_random(&mut nonce)?;
        self.seal_with_nonce(footer_of, header_tail, plain_id, encoded, nonce)
    }

    /// [`Self::seal`] with a given nonce: for test vectors only. A nonce
    /// must never be used twice under one key; [`Self::seal`] draws each
    /// at random.
    pub fn seal_with_nonce(
        &self,
        footer_of: Option<u32>,
        header_tail: &[u8],
        plain_id: &[u8; 32],
        encoded: &[u8],
        nonce: [u8; NONCE_BYTES],
    ) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(encoded.len() + SEALED_OVERHEAD as usize);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain_id);
        out.extend_from_slice(encoded);
        let failed = |_| Error::Crypto("sealing a record failed".into());
        let tag = self
            .record_cipher(&nonce)
            .map_err(failed)?
            .seal_in_place_separate_tag(
                ring::aead::Nonce::assume_unique_for_key(GCM_NONCE),
                ring::aead::Aad::from(self.aad(footer_of, header_tail)),
                out.get_mut(NONCE_BYTES..).unwrap_or_default(),
            )
            .map_err(failed)?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// The record's own AES-256-GCM key, `blake3_keyed(record key, nonce)`:
    /// a key per record, so GCM's 96-bit nonce can be fixed and the random
    /// 192-bit record nonce never wears a key out.
    fn record_cipher(
        &self,
        nonce: &[u8],
    ) -> std::result::Result<ring::aead::LessSafeKey, ring::error::Unspecified> {
        let key = Zeroizing::new(*blake3::keyed_hash(&self.record_key, nonce).as_bytes());
        ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &*key)
            .map(ring::aead::LessSafeKey::new)
    }

    /// Seal one entry of a side file (the history log): `nonce ‖
    /// ciphertext ‖ tag` under the side key, bound to this store and to the
    /// file by its magic, so an entry cannot be moved into a segment, another
    /// kind of file or another store.
    pub fn seal_side(&self, magic: &[u8; 8], plain: &[u8]) -> Result<Vec<u8>> {
        self.seal_side_with(&self.side_aad(magic, None), plain)
    }

    /// Open an entry sealed by [`Self::seal_side`] for the same file kind.
    pub fn open_side(
        &self,
        magic: &[u8; 8],
        sealed: &[u8],
    ) -> std::result::Result<Vec<u8>, String> {
        self.open_side_with(&self.side_aad(magic, None), sealed)
    }

    /// Seal a side file entry that belongs at byte `offset` of its file
    /// (the message cache's queue): bound to its place as well, so entries
    /// cannot be reordered or moved within the file.
    pub fn seal_side_at(&self, magic: &[u8; 8], offset: u64, plain: &[u8]) -> Result<Vec<u8>> {
        self.seal_side_with(&self.side_aad(magic, Some(offset)), plain)
    }

    /// Open an entry sealed by [`Self::seal_side_at`] for the same place.
    pub fn open_side_at(
        &self,
        magic: &[u8; 8],
        offset: u64,
        sealed: &[u8],
    ) -> std::result::Result<Vec<u8>, String> {
        self.open_side_with(&self.side_aad(magic, Some(offset)), sealed)
    }

    fn seal_side_with(&self, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_BYTES];
        fill_random(&mut nonce)?;
        let mut out = Vec::with_capacity(plain.len() + SIDE_OVERHEAD);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let tag = self
            .side
            .encrypt_in_place_detached(
                XNonce::from_slice(&nonce),
                aad,
                out.get_mut(NONCE_BYTES..).unwrap_or_default(),
            )
            .map_err(|_| Error::Crypto("sealing a side file entry failed".into()))?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    fn open_side_with(&self, aad: &[u8], sealed: &[u8]) -> std::result::Result<Vec<u8>, String> {
        let tag_at = sealed.len().checked_sub(TAG_BYTES).ok_or(DAMAGED)?;
        let nonce = sealed.get(..NONCE_BYTES).ok_or(DAMAGED)?;
        let tag: [u8; TAG_BYTES] = sealed
            .get(tag_at..)
            .and_then(|t| t.try_into().ok())
            .ok_or(DAMAGED)?;
        let mut plain = sealed.get(NONCE_BYTES..tag_at).ok_or(DAMAGED)?.to_vec();
        self.side
            .decrypt_in_place_detached(XNonce::from_slice(nonce), aad, &mut plain, (&tag).into())
            .map_err(|_| DAMAGED.to_string())?;
        Ok(plain)
    }

    /// The associated data of a side file entry: the store id, the file's
    /// magic and, for an entry bound to its place, its offset (u64 LE).
    fn side_aad(&self, magic: &[u8; 8], offset: Option<u64>) -> Vec<u8> {
        let mut aad = Vec::with_capacity(32);
        aad.extend_from_slice(&self.store_id);
        aad.extend_from_slice(magic);
        if let Some(at) = offset {
            aad.extend_from_slice(&at.to_le_bytes());
        }
        aad
    }

    /// The sealer of one checkpoint file: AES-256-GCM under the file's own
    /// key, `blake3_keyed(checkpoint key, header bytes 0..60)` (the header
    /// carries a random salt, so no two files share a key, and a changed
    /// header changes the key); each block's nonce is its place in the file.
    pub fn checkpoint_sealer(&self, header: &CheckpointHeader) -> Result<Arc<dyn BlockSealer>> {
        let bytes = header.encode();
        let key =
            Zeroizing::new(*blake3::keyed_hash(&self.checkpoint_key, &bytes[..60]).as_bytes());
        let key = ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &*key)
            .map_err(|_| Error::Crypto("no checkpoint key".into()))?;
        Ok(Arc::new(CheckpointSealer(ring::aead::LessSafeKey::new(
            key,
        ))))
    }

    /// The plain id inside a sealed data record, without opening the rest:
    /// its 32 bytes are deciphered with the record's keystream (the AEAD
    /// ciphers from block 1 on) and must give the keyed id in its header,
    /// which nobody without the id key can forge. The content is not
    /// authenticated here: a read opens it whole. For the scan at open,
    /// which needs each record's id, not its content.
    pub fn peek_id(
        &self,
        keyed: &[u8; 32],
        sealed: &[u8],
    ) -> std::result::Result<[u8; 32], String> {
        use aes::cipher::{BlockEncrypt, KeyInit, generic_array::GenericArray};
        let nonce = sealed.get(..NONCE_BYTES).ok_or(DAMAGED)?;
        let mut id: [u8; 32] = sealed
            .get(NONCE_BYTES..NONCE_BYTES + 32)
            .and_then(|b| b.try_into().ok())
            .ok_or(DAMAGED)?;
        if (sealed.len() as u64) < SEALED_OVERHEAD {
            return Err(DAMAGED.into());
        }
        // GCM ciphers the plaintext with AES-CTR from counter block
        // `GCM_NONCE ‖ 2`: the id is the first two blocks.
        let key = Zeroizing::new(*blake3::keyed_hash(&self.record_key, nonce).as_bytes());
        let aes = aes::Aes256::new(GenericArray::from_slice(&*key));
        let counter_block = |counter: u32| {
            let mut block = [0u8; 16];
            let (nonce, count) = block.split_at_mut(12);
            nonce.copy_from_slice(&GCM_NONCE);
            count.copy_from_slice(&counter.to_be_bytes());
            GenericArray::from(block)
        };
        let mut stream = [counter_block(2), counter_block(3)];
        aes.encrypt_blocks(&mut stream);
        for (b, k) in id.iter_mut().zip(stream.iter().flatten()) {
            *b ^= k;
        }
        if self.keyed_id(&id) != *keyed {
            return Err("the keyed id in the header is not the sealed id's".into());
        }
        Ok(id)
    }

    /// Open a sealed payload: its plain id and the encoded content. Any
    /// change to the payload, the header or the store is refused.
    pub fn open(
        &self,
        footer_of: Option<u32>,
        header_tail: &[u8],
        mut sealed: Vec<u8>,
    ) -> std::result::Result<([u8; 32], Vec<u8>), String> {
        if (sealed.len() as u64) < SEALED_OVERHEAD {
            return Err(format!(
                "sealed payload of {} bytes is too short",
                sealed.len()
            ));
        }
        let tag_at = sealed.len() - TAG_BYTES;
        let cipher = self
            .record_cipher(sealed.get(..NONCE_BYTES).ok_or(DAMAGED)?)
            .map_err(|_| DAMAGED.to_string())?;
        let body = cipher
            .open_in_place(
                ring::aead::Nonce::assume_unique_for_key(GCM_NONCE),
                ring::aead::Aad::from(self.aad(footer_of, header_tail)),
                sealed.get_mut(NONCE_BYTES..).ok_or(DAMAGED)?,
            )
            .map_err(|_| DAMAGED.to_string())?;
        let id: [u8; 32] = body
            .get(..32)
            .and_then(|i| i.try_into().ok())
            .ok_or(DAMAGED)?;
        sealed.truncate(tag_at);
        sealed.drain(..NONCE_BYTES + 32);
        Ok((id, sealed))
    }
}

/// Seals the blocks of one checkpoint file (`StoreKeys::checkpoint_sealer`).
struct CheckpointSealer(ring::aead::LessSafeKey);

/// A block's GCM nonce: its index (u64 LE) and its table's id (u32 LE),
/// unique within the file, whose key is its own.
fn block_nonce(table: u32, block: u64) -> ring::aead::Nonce {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&block.to_le_bytes());
    n[8..].copy_from_slice(&table.to_le_bytes());
    ring::aead::Nonce::assume_unique_for_key(n)
}

impl BlockSealer for CheckpointSealer {
    fn seal(
        &self,
        table: u32,
        block: u64,
        data: &mut [u8],
    ) -> std::result::Result<[u8; 16], String> {
        let tag = self
            .0
            .seal_in_place_separate_tag(block_nonce(table, block), ring::aead::Aad::empty(), data)
            .map_err(|_| "sealing a checkpoint block failed".to_string())?;
        tag.as_ref()
            .try_into()
            .map_err(|_| "a tag of another length".to_string())
    }

    fn open(&self, table: u32, block: u64, data: &mut [u8], tag: &[u8; 16]) -> bool {
        self.0
            .open_in_place_separate_tag(
                block_nonce(table, block),
                ring::aead::Aad::empty(),
                ring::aead::Tag::from(*tag),
                data,
                0..,
            )
            .is_ok()
    }
}

/// How a store's bytes are written: in the clear, or sealed under its keys.
#[derive(Debug, Clone, Default)]
pub enum Sealing {
    /// Format version 1: payloads in the clear, plain ids.
    #[default]
    Plain,
    /// Format version 2: sealed payloads and keyed ids.
    Encrypted(Arc<StoreKeys>),
}

impl Sealing {
    /// The keys, when the store is encrypted.
    pub fn keys(&self) -> Option<&StoreKeys> {
        match self {
            Sealing::Plain => None,
            Sealing::Encrypted(k) => Some(k),
        }
    }

    /// An unlock that opens this store again (a second instance).
    pub fn unlock(&self) -> Unlock {
        match self {
            Sealing::Plain => Unlock::Nothing,
            Sealing::Encrypted(k) => Unlock::Keys(k.clone()),
        }
    }

    /// The id written to disk for `id`.
    pub fn disk_id(&self, id: &[u8; 32]) -> [u8; 32] {
        match self {
            Sealing::Plain => *id,
            Sealing::Encrypted(k) => k.keyed_id(id),
        }
    }
}

/// How an open gets the keys of an encrypted store. A store in the clear
/// ignores it.
#[derive(Clone, Default)]
pub enum Unlock {
    /// No key: an encrypted store is refused.
    #[default]
    Nothing,
    /// Ask for the passphrase (only if the store is encrypted).
    Ask(Arc<dyn Fn() -> Result<Passphrase> + Send + Sync>),
    /// Keys already unlocked (a second instance of an open store).
    Keys(Arc<StoreKeys>),
}

impl std::fmt::Debug for Unlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unlock::Nothing => "Unlock::Nothing",
            Unlock::Ask(_) => "Unlock::Ask",
            Unlock::Keys(_) => "Unlock::Keys",
        })
    }
}

impl Unlock {
    /// With a passphrase given now.
    pub fn passphrase(pass: Passphrase) -> Unlock {
        let pass = Arc::new(pass);
        Unlock::Ask(Arc::new(move || {
            Ok(Passphrase(Zeroizing::new(pass.0.to_vec())))
        }))
    }

    /// How the store in `dir` is sealed: in the clear unless its manifest
    /// says it is encrypted, then under the keys this unlock yields.
    pub fn sealing(
        &self,
        vfs: &dyn Vfs,
        dir: &Path,
        store_id: [u8; 16],
        encrypted: bool,
    ) -> Result<Sealing> {
        if !encrypted {
            return Ok(Sealing::Plain);
        }
        let keys = match self {
            Unlock::Nothing => {
                return Err(Error::Crypto(format!(
                    "store {} is encrypted: give its passphrase (VAULTSTORE_PASSPHRASE, \
                     --passphrase-file, or at the prompt)",
                    dir.display()
                )));
            }
            Unlock::Ask(ask) => Arc::new(KeyRing::new(vfs, dir, store_id).unlock(&ask()?)?),
            Unlock::Keys(keys) => keys.clone(),
        };
        if keys.store_id != store_id {
            return Err(Error::Crypto("the keys given are another store's".into()));
        }
        Ok(Sealing::Encrypted(keys))
    }
}

/// What `init --encrypt` needs: the first slot's passphrase and its cost.
#[derive(Debug, Clone)]
pub struct Encryption {
    /// The passphrase of slot 0.
    pub passphrase: Arc<Passphrase>,
    /// argon2id's parameters for slot 0.
    pub kdf: KdfParams,
}

/// One slot as `key list` shows it (nothing secret).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SlotInfo {
    /// The slot's number.
    pub number: u32,
    /// When it was added, Unix ms.
    pub created_ms: u64,
    /// argon2id memory, KiB.
    pub memory_kib: u32,
    /// argon2id passes.
    pub iterations: u32,
    /// argon2id lanes.
    pub parallelism: u32,
}

/// The store's key file, read and written whole through the file seam.
pub struct KeyRing<'a> {
    vfs: &'a dyn Vfs,
    path: std::path::PathBuf,
    store_id: [u8; 16],
}

impl<'a> KeyRing<'a> {
    /// The key file of the store in `dir` whose id is `store_id`.
    pub fn new(vfs: &'a dyn Vfs, dir: &Path, store_id: [u8; 16]) -> KeyRing<'a> {
        KeyRing {
            vfs,
            path: dir.join(KEY_FILE),
            store_id,
        }
    }

    /// Write the key file of a new store: a fresh master key in one slot.
    pub fn create(&self, pass: &Passphrase, kdf: KdfParams, now_ms: u64) -> Result<StoreKeys> {
        let master = MasterKey::random()?;
        let slot = wrap_slot(
            &master,
            pass,
            NewSlot {
                number: 0,
                kdf,
                created_ms: now_ms,
            },
            &self.store_id,
        )?;
        self.write(&KeyFile {
            store_id: self.store_id,
            slots: vec![slot],
        })?;
        Ok(StoreKeys::derive(&master, self.store_id))
    }

    /// Read and check the key file.
    pub fn read(&self) -> Result<KeyFile> {
        let limit = (32 + 128 * MAX_SLOTS + 4) as u64;
        let bytes = self.vfs.read_small(&self.path, limit).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::Crypto(format!(
                    "{}: the store is encrypted but its key file is missing",
                    self.path.display()
                ))
            } else {
                Error::io(&self.path, "read key file", e)
            }
        })?;
        let file = KeyFile::decode(&bytes)
            .map_err(|d| Error::Crypto(format!("{}: {d}", self.path.display())))?;
        if file.store_id != self.store_id {
            return Err(Error::Crypto(format!(
                "{}: the key file belongs to another store",
                self.path.display()
            )));
        }
        Ok(file)
    }

    fn write(&self, file: &KeyFile) -> Result<()> {
        self.vfs
            .write_atomic(&self.path, &file.encode())
            .map_err(|e| Error::io(&self.path, "write key file", e))
    }

    /// The master key, through whichever slot `pass` opens, and that slot's number.
    fn master(&self, file: &KeyFile, pass: &Passphrase) -> Result<(MasterKey, u32)> {
        for slot in &file.slots {
            if let Some(master) = unwrap_slot(slot, pass, &self.store_id)? {
                return Ok((master, slot.number));
            }
        }
        Err(Error::WrongPassphrase)
    }

    /// Open the store's keys with `pass`.
    pub fn unlock(&self, pass: &Passphrase) -> Result<StoreKeys> {
        let file = self.read()?;
        let (master, _) = self.master(&file, pass)?;
        Ok(StoreKeys::derive(&master, self.store_id))
    }

    /// The slots, for `key list`.
    pub fn list(&self) -> Result<Vec<SlotInfo>> {
        Ok(self.read()?.slots.iter().map(slot_info).collect())
    }

    /// Add a slot for `new`, authorised by `pass` (a passphrase of the store).
    /// Returns the new slot's number. No data is rewritten.
    pub fn add(
        &self,
        pass: &Passphrase,
        new: &Passphrase,
        kdf: KdfParams,
        now_ms: u64,
    ) -> Result<u32> {
        let mut file = self.read()?;
        if file.slots.len() >= MAX_SLOTS {
            return Err(Error::Keys(format!(
                "the key file already holds {MAX_SLOTS} slots"
            )));
        }
        let (master, _) = self.master(&file, pass)?;
        let number = file.slots.iter().map(|s| s.number + 1).max().unwrap_or(0);
        let slot = NewSlot {
            number,
            kdf,
            created_ms: now_ms,
        };
        file.slots
            .push(wrap_slot(&master, new, slot, &self.store_id)?);
        self.write(&file)?;
        Ok(number)
    }

    /// Remove slot `number`, authorised by `pass`. The last slot stays.
    pub fn remove(&self, pass: &Passphrase, number: u32) -> Result<()> {
        let mut file = self.read()?;
        self.master(&file, pass)?;
        if !file.slots.iter().any(|s| s.number == number) {
            return Err(Error::Keys(format!("no key slot {number}")));
        }
        if file.slots.len() == 1 {
            return Err(Error::Keys(format!(
                "key slot {number} is the last one: without it nobody could open the store \
                 (add another first)"
            )));
        }
        file.slots.retain(|s| s.number != number);
        self.write(&file)
    }
}

fn slot_info(s: &KeySlot) -> SlotInfo {
    SlotInfo {
        number: s.number,
        created_ms: s.created_ms,
        memory_kib: s.kdf.memory_kib,
        iterations: s.kdf.iterations,
        parallelism: s.kdf.parallelism,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: KdfParams = KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    fn pass(s: &str) -> Passphrase {
        Passphrase::new(s.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn a_slot_opens_with_its_passphrase_only_and_for_its_store_only() {
        let master = MasterKey::random().unwrap();
        let slot = wrap_slot(
            &master,
            &pass("correct horse"),
            NewSlot {
                number: 0,
                kdf: CHEAP,
                created_ms: 1,
            },
            &[1; 16],
        )
        .unwrap();
        let opened = unwrap_slot(&slot, &pass("correct horse"), &[1; 16])
            .unwrap()
            .unwrap();
        assert_eq!(*opened.0, *master.0);
        assert!(
            unwrap_slot(&slot, &pass("correct horsE"), &[1; 16])
                .unwrap()
                .is_none()
        );
        assert!(
            unwrap_slot(&slot, &pass("correct horse"), &[2; 16])
                .unwrap()
                .is_none()
        );
        let mut renumbered = slot.clone();
        renumbered.number = 1;
        assert!(
            unwrap_slot(&renumbered, &pass("correct horse"), &[1; 16])
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_sealed_payload_opens_only_unchanged_and_under_its_header() {
        let keys = StoreKeys::derive(&MasterKey::from_bytes([7; 32]), [1; 16]);
        let header = [5u8; 60];
        let sealed = keys.seal(None, &header, &[9; 32], b"hello").unwrap();
        assert_eq!(sealed.len() as u64, 5 + SEALED_OVERHEAD);
        let (id, content) = keys.open(None, &header, sealed.clone()).unwrap();
        assert_eq!((id, content.as_slice()), ([9; 32], &b"hello"[..]));
        for i in 0..sealed.len() {
            let mut b = sealed.clone();
            b[i] ^= 1;
            assert!(keys.open(None, &header, b).is_err(), "flip at {i} opened");
        }
        let mut other_header = header;
        other_header[20] ^= 1;
        assert!(keys.open(None, &other_header, sealed.clone()).is_err());
        assert!(keys.open(Some(3), &header, sealed.clone()).is_err());
        let other_store = StoreKeys::derive(&MasterKey::from_bytes([7; 32]), [2; 16]);
        assert!(other_store.open(None, &header, sealed).is_err());
    }

    #[test]
    fn the_peeked_id_is_the_sealed_one_and_a_changed_one_is_refused() {
        let keys = StoreKeys::derive(&MasterKey::from_bytes([7; 32]), [1; 16]);
        let id = *blake3::hash(b"content").as_bytes();
        let keyed = keys.keyed_id(&id);
        let sealed = keys.seal(None, &[3; 60], &id, b"content").unwrap();
        assert_eq!(keys.peek_id(&keyed, &sealed).unwrap(), id);
        for i in 0..NONCE_BYTES + 32 {
            let mut b = sealed.clone();
            b[i] ^= 1;
            assert!(keys.peek_id(&keyed, &b).is_err(), "flip at {i} peeked");
        }
        assert!(keys.peek_id(&keys.keyed_id(&[0; 32]), &sealed).is_err());
    }

    #[test]
    fn a_side_entry_opens_only_unchanged_in_its_file_and_store() {
        let keys = StoreKeys::derive(&MasterKey::from_bytes([7; 32]), [1; 16]);
        let sealed = keys.seal_side(b"VSHISTRY", b"an entry").unwrap();
        assert_eq!(sealed.len(), 8 + SIDE_OVERHEAD);
        assert_eq!(keys.open_side(b"VSHISTRY", &sealed).unwrap(), b"an entry");
        for i in 0..sealed.len() {
            let mut b = sealed.clone();
            b[i] ^= 1;
            assert!(
                keys.open_side(b"VSHISTRY", &b).is_err(),
                "flip at {i} opened"
            );
        }
        assert!(keys.open_side(b"VSMSGCCH", &sealed).is_err());
        assert!(
            keys.open_side(b"VSHISTRY", &sealed[..SIDE_OVERHEAD - 1])
                .is_err()
        );
        let other_store = StoreKeys::derive(&MasterKey::from_bytes([7; 32]), [2; 16]);
        assert!(other_store.open_side(b"VSHISTRY", &sealed).is_err());
        assert_ne!(keys.seal_side(b"VSHISTRY", b"an entry").unwrap(), sealed);
    }

    #[test]
    fn the_same_content_sealed_twice_differs() {
        let keys = StoreKeys::derive(&MasterKey::from_bytes([7; 32]), [1; 16]);
        let mut nonces = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let sealed = keys.seal(None, &[0; 60], &[0; 32], b"same").unwrap();
            assert!(
                nonces.insert(sealed[..NONCE_BYTES].to_vec()),
                "a nonce repeated"
            );
        }
    }

    #[test]
    fn keyed_ids_differ_from_plain_ones_and_between_stores() {
        let a = StoreKeys::derive(&MasterKey::from_bytes([7; 32]), [1; 16]);
        let b = StoreKeys::derive(&MasterKey::from_bytes([8; 32]), [1; 16]);
        let id = *blake3::hash(b"a message").as_bytes();
        assert_ne!(a.keyed_id(&id), id);
        assert_ne!(a.keyed_id(&id), b.keyed_id(&id));
        assert_eq!(a.keyed_id(&id), a.keyed_id(&id));
    }

    #[test]
    fn slots_are_added_and_removed_but_never_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let vfs = crate::io::StdFs;
        let ring = KeyRing::new(&vfs, dir.path(), [4; 16]);
        ring.create(&pass("first"), CHEAP, 1).unwrap();
        assert!(matches!(
            ring.unlock(&pass("wrong")),
            Err(Error::WrongPassphrase)
        ));
        let n = ring.add(&pass("first"), &pass("second"), CHEAP, 2).unwrap();
        assert_eq!(n, 1);
        assert!(matches!(
            ring.add(&pass("wrong"), &pass("third"), CHEAP, 3),
            Err(Error::WrongPassphrase)
        ));
        ring.remove(&pass("second"), 0).unwrap();
        assert!(matches!(
            ring.unlock(&pass("first")),
            Err(Error::WrongPassphrase)
        ));
        ring.unlock(&pass("second")).unwrap();
        let err = ring.remove(&pass("second"), 1).unwrap_err().to_string();
        assert!(err.contains("last"), "{err}");
        assert_eq!(ring.list().unwrap().len(), 1);
    }
}
