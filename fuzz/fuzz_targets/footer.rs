//! The footer and trailer decoders on arbitrary bytes: never panic; what
//! the footer decoder accepts re-encodes to a footer that decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vaultstore::format::segment::{decode_footer, decode_trailer, encode_footer};

fuzz_target!(|data: &[u8]| {
    let _ = decode_trailer(data.get(..16).unwrap_or(data));
    if let Ok(f) = decode_footer(data) {
        assert_eq!(f.summary.entry_count as usize, f.entries.len());
        let s = f.summary;
        let again = encode_footer(&f.entries, s.data_end, (s.sequence_min, s.sequence_max), &f.part_lists);
        let f2 = decode_footer(&again).unwrap();
        assert_eq!(f2.entries, f.entries);
        assert_eq!(f2.part_lists, f.part_lists);
        assert_eq!(f2.summary.data_end, s.data_end);
    }
});
