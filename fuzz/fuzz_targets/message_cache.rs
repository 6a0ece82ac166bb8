//! The message cache's queue decoder on arbitrary bytes: never panics;
//! every entry it accepts lies inside the input, in order, and encodes
//! back to exactly the bytes it was read from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vaultstore::format::message_cache::{
    HEADER_BYTES, PLAIN_VERSION, SEALED_VERSION, encode_entry, encode_header, scan,
};

fuzz_target!(|data: &[u8]| {
    check(data);
    // Most inputs fail the header: try them as entries behind a good one.
    for version in [PLAIN_VERSION, SEALED_VERSION] {
        let mut queue = encode_header(&[7; 16], version);
        queue.extend_from_slice(data);
        check(&queue);
    }
});

fn check(bytes: &[u8]) {
    let Ok(scanned) = scan(bytes) else { return };
    assert!(scanned.valid_up_to as usize <= bytes.len());
    let mut at = HEADER_BYTES;
    for (offset, entry) in &scanned.entries {
        assert_eq!(*offset, at);
        let encoded = encode_entry(entry);
        let end = at as usize + encoded.len();
        assert_eq!(&bytes[at as usize..end], encoded.as_slice());
        at = end as u64;
    }
    assert_eq!(at, scanned.valid_up_to);
}
