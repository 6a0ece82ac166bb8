//! The metrics log decoder on arbitrary bytes: never panics; every sample
//! it returns re-encodes to the bytes it was read from, in order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vaultstore::metrics::{SAMPLE_BYTES, decode_file};

fuzz_target!(|data: &[u8]| {
    if let Some(samples) = decode_file(data) {
        assert!(16 + samples.len() * SAMPLE_BYTES <= data.len());
        for (i, s) in samples.iter().enumerate() {
            let at = 16 + i * SAMPLE_BYTES;
            assert_eq!(&s.encode()[..], &data[at..at + SAMPLE_BYTES]);
        }
    }
});
