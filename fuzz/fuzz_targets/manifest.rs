//! The manifest decoder on arbitrary bytes: never panics; whatever it
//! accepts re-encodes to a manifest that decodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vaultstore::format::manifest::Manifest;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Manifest::decode(data) {
        assert_eq!(Manifest::decode(&m.encode()), Ok(m));
    }
});
