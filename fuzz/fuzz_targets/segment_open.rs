//! Opening a segment from arbitrary bytes, both ways the store does: the
//! sealed fast path (trailer and footer) and the record-by-record scan with
//! its torn-tail detection. Neither may panic; where what they accept
//! differs, verify's footer check must see it.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use vaultstore::format::segment::FooterEntry;
use vaultstore::io::MemFile;
use vaultstore::crypto::{MasterKey, Sealing, StoreKeys};
use vaultstore::segment::{load_sealed, read_record_sized_at, scan};

fuzz_target!(|data: &[u8]| {
    let file = MemFile::new(data.to_vec());
    let path = Path::new("segment-0000000001.sealed");
    let id = data
        .get(12..16)
        .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
        .unwrap_or(1);
    // Each input is read in the clear and as a segment of an encrypted
    // store with a fixed key (format-spec/encryption.md).
    for sealing in [Sealing::Plain, encrypted()] {
        check(&file, path, id, data, &sealing);
    }
});

fn encrypted() -> Sealing {
    let keys = StoreKeys::derive(&MasterKey::from_bytes([7; 32]), [1; 16]);
    Sealing::Encrypted(std::sync::Arc::new(keys))
}

fn check(file: &MemFile, path: &Path, id: u32, data: &[u8], sealing: &Sealing) {
    let sealed = load_sealed(path, file, id, sealing);
    let scanned = scan(path, file, id, sealing);
    if let Ok(s) = &scanned {
        assert!(s.data_end <= data.len() as u64);
        let mut prev_end = 64;
        for e in &s.entries {
            assert_eq!(e.offset, prev_end);
            prev_end = e.offset + 64 + e.stored_len;
        }
        assert_eq!(prev_end, s.data_end);
    }
    // A footer that loads is trusted at open (its crc, not its records).
    // Where it disagrees with the records the scan reads, verify's rule
    // (each entry equal, field by field, to the record at its offset)
    // must find an entry that misstates its record.
    if let (Ok(f), Ok(s)) = (&sealed, &scanned) {
        if s.has_footer && f.entries != s.entries {
            let caught = f.entries.iter().any(|e| {
                read_record_sized_at(file, id, e.offset, f.data_end, e.stored_len, sealing)
                    .map_or(true, |(h, _)| FooterEntry::of(&h, e.offset) != *e)
            });
            assert!(
                caught,
                "the footer differs from the records and no entry shows it"
            );
        }
    }
}
