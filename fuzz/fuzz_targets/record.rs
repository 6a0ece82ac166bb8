//! The record decoder on arbitrary bytes: never panics, never allocates
//! beyond the limits, and whatever it accepts re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vaultstore::format::segment::{RECORD_HEADER_BYTES, RecordHeader, decode_record};

fuzz_target!(|data: &[u8]| {
    if let Ok((h, content)) = decode_record(data) {
        assert_eq!(h.logical_len as usize, content.len());
        let end = RECORD_HEADER_BYTES + h.stored_len as usize;
        let again = RecordHeader::new(h.kind, h.codec, h.logical_len, h.sequence, h.id, &data[RECORD_HEADER_BYTES..end]);
        assert_eq!(&again.encode()[..], &data[..RECORD_HEADER_BYTES]);
    }
});
