//! The footer and trailer decoders on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vaultstore::format::segment::{decode_footer, decode_trailer, encode_footer};

fuzz_target!(|data: &[u8]| {
    let _ = decode_trailer(data.get(..16).unwrap_or(data));
    if let Ok((summary, entries)) = decode_footer(data) {
        assert_eq!(summary.entry_count as usize, entries.len());
        let again = encode_footer(&entries, summary.data_end, (summary.sequence_min, summary.sequence_max));
        let (s2, e2) = decode_footer(&again).unwrap();
        assert_eq!(e2, entries);
        assert_eq!(s2.data_end, summary.data_end);
    }
});
