//! The history log decoder on arbitrary bytes, in the clear and sealed:
//! never panics; the valid prefix it reports ends inside the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vaultstore::crypto::{MasterKey, Sealing, StoreKeys};
use vaultstore::jobs::history::decode_history;

fuzz_target!(|data: &[u8]| {
    let keys = StoreKeys::derive(&MasterKey::from_bytes([7; 32]), [1; 16]);
    for sealing in [Sealing::Plain, Sealing::Encrypted(std::sync::Arc::new(keys))] {
        if let Ok((_, end)) = decode_history(data, &sealing) {
            assert!(end as usize <= data.len());
        }
    }
});
