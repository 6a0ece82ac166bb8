//! The compaction record decoder on arbitrary bytes: never panics, never
//! allocates for counts the bytes cannot hold; what it accepts re-encodes
//! to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vaultstore::format::compaction::CompactionRecord;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = CompactionRecord::decode(data) {
        assert_eq!(r.encode(), data);
    }
});
