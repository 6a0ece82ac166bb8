//! The `KEYS` file from arbitrary bytes (format-spec/encryption.md, "Key
//! file"): decoding never panics, and what decodes encodes back to the
//! same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vaultstore::format::key_file::KeyFile;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = KeyFile::decode(data) {
        assert_eq!(file.encode(), data, "a key file that decodes must encode to its bytes");
        for slot in &file.slots {
            assert!(slot.kdf.check().is_ok());
        }
    }
});
