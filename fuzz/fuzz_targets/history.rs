//! The history log decoder on arbitrary bytes: never panics; the valid
//! prefix it reports ends inside the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vaultstore::jobs::history::decode_history;

fuzz_target!(|data: &[u8]| {
    if let Ok((_, end)) = decode_history(data) {
        assert!(end as usize <= data.len());
    }
});
