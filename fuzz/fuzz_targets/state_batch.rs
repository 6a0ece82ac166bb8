//! The state batch decoder on arbitrary bytes: never panics, never
//! allocates for counts the bytes cannot hold; what it accepts re-encodes
//! to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vaultstore::format::state::{decode_state_batch, encode_state_batch};

fuzz_target!(|data: &[u8]| {
    if let Ok(ops) = decode_state_batch(data) {
        assert_eq!(encode_state_batch(&ops), data);
    }
});
