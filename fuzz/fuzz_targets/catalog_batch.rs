//! The catalog batch decoder on arbitrary bytes: never panics, never
//! allocates for counts the bytes cannot hold; what it accepts re-encodes
//! to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vaultstore::format::catalog::{decode_batch, encode_batch};

fuzz_target!(|data: &[u8]| {
    if let Ok(ops) = decode_batch(data) {
        assert_eq!(encode_batch(&ops), data);
    }
});
