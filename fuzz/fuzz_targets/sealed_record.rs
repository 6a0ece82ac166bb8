//! The AEAD framing of records (format-spec/encryption.md, "Sealed
//! records"): a record header and payload from arbitrary bytes never panic
//! when opened under a fixed key, and nothing opens unless it was sealed
//! under that key; content sealed here opens back to itself, and any one
//! flipped bit is refused.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use vaultstore::crypto::{MasterKey, Sealing, StoreKeys};
use vaultstore::format::segment::{Codec, RECORD_HEADER_BYTES, RecordHeader, RecordKind};
use vaultstore::segment::{build_record, open_payload};

fuzz_target!(|data: &[u8]| {
    let keys = StoreKeys::derive(&MasterKey::from_bytes([7; 32]), [1; 16]);
    let sealing = Sealing::Encrypted(Arc::new(keys));
    // Arbitrary bytes as a record: refused or opened, never a panic.
    if let Some(hb) = data.get(..RECORD_HEADER_BYTES) {
        if let Ok(h) = RecordHeader::decode(hb) {
            let payload = data[RECORD_HEADER_BYTES..].to_vec();
            if h.crc_matches(&payload) {
                let _ = open_payload(&sealing, 1, 64, h, payload);
            }
        }
    }
    // The input as content: sealed, then opened back; a flip is refused.
    let id = *blake3::hash(data).as_bytes();
    let (h, payload) =
        build_record(&sealing, None, RecordKind::Saveset, Codec::Raw, data.len() as u64, 1, id, data)
            .expect("sealing works");
    let bytes = [&h.encode()[..], &payload[..]].concat();
    let decoded = RecordHeader::decode(&bytes[..RECORD_HEADER_BYTES]).expect("header decodes");
    let (opened, content) =
        open_payload(&sealing, 1, 64, decoded, payload.to_vec()).expect("opens");
    assert_eq!((opened.id, content.as_slice()), (id, data));
    let at = (id[0] as usize * 7919 + data.len()) % bytes.len();
    let mut flipped = bytes.clone();
    flipped[at] ^= 1 << (id[1] % 8);
    if let Ok(h) = RecordHeader::decode(&flipped[..RECORD_HEADER_BYTES]) {
        let refused = open_payload(&sealing, 1, 64, h, flipped[RECORD_HEADER_BYTES..].to_vec());
        assert!(refused.is_err() || at < 4, "a flipped byte at {at} opened");
    }
});
