//! The ends file decoder (format-spec/object-storage.md) on arbitrary bytes:
//! never panics; what it accepts encodes back to exactly the input, and
//! every range it serves lies inside the object it describes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vaultstore::format::object_ends::ObjectEnds;

fuzz_target!(|data: &[u8]| {
    let Ok(ends) = ObjectEnds::decode(data) else {
        return;
    };
    assert_eq!(ends.encode(), data);
    for (offset, len) in [(0u64, 1usize), (ends.tail_offset, 16), (ends.object_len.saturating_sub(16), 16)] {
        if let Some(bytes) = ends.slice(offset, len) {
            assert_eq!(bytes.len(), len);
            assert!(offset + len as u64 <= ends.object_len);
        }
    }
});
