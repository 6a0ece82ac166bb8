//! Opening a segment from arbitrary bytes, both ways the store does: the
//! sealed fast path (trailer and footer) and the record-by-record scan with
//! its torn-tail detection. Neither may panic; what they accept must agree.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use vaultstore::io::MemFile;
use vaultstore::segment::{load_sealed, scan};

fuzz_target!(|data: &[u8]| {
    let file = MemFile::new(data.to_vec());
    let path = Path::new("segment-0000000001.sealed");
    let id = data.get(12..16).map(|b| u32::from_le_bytes(b.try_into().unwrap())).unwrap_or(1);
    let sealed = load_sealed(path, &file, id);
    let scanned = scan(path, &file, id);
    if let Ok(s) = &scanned {
        assert!(s.data_end <= data.len() as u64);
        let mut prev_end = 64;
        for e in &s.entries {
            assert_eq!(e.offset, prev_end);
            prev_end = e.offset + 64 + e.stored_len;
        }
        assert_eq!(prev_end, s.data_end);
    }
    // A footer that loads must describe records that exist: the scan of a
    // well-formed sealed segment reaches the same footer.
    if let (Ok(f), Ok(s)) = (&sealed, &scanned) {
        if s.has_footer {
            assert_eq!(f.entries, s.entries);
        }
    }
});
