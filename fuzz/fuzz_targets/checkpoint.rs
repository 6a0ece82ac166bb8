//! Checkpoint files of the sync caches (format-spec/checkpoint.md) on
//! arbitrary bytes, two ways: as a whole file (the frame's checks), and as
//! table contents framed correctly (checksums right) so that the rows of
//! each kind and their consistency checks are reached; both in the clear
//! and sealed (an encrypted store's). Loading never panics, whatever it
//! accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::Arc;

use vaultstore::crypto::{MasterKey, Sealing, StoreKeys};
use vaultstore::format::checkpoint::{CheckpointHeader, CheckpointKind, CheckpointWriter};
use vaultstore::jobs::sync_caches::check_checkpoint;

/// (table id, row bytes) of each kind, as the spec lists them.
fn tables(kind: CheckpointKind) -> &'static [(u32, u32)] {
    match kind {
        CheckpointKind::Files => &[(1, 88), (2, 40), (3, 40), (4, 48), (5, 16), (6, 24), (7, 8)],
        CheckpointKind::Messages => &[(1, 48), (2, 56), (3, 40), (4, 0), (5, 8), (6, 32)],
        CheckpointKind::Properties => &[(1, 32), (2, 40), (3, 8), (4, 56), (5, 24)],
    }
}

fuzz_target!(|data: &[u8]| {
    let keys = Arc::new(StoreKeys::derive(&MasterKey::from_bytes([7; 32]), [1; 16]));
    let sealings = [Sealing::Plain, Sealing::Encrypted(keys.clone())];
    for sealing in &sealings {
        let _ = check_checkpoint(data, sealing);
    }
    let Some((&first, mut rest)) = data.split_first() else {
        return;
    };
    let kind = CheckpointKind::ALL[first as usize % 3];
    let sealed = first & 0x80 != 0;
    let header = CheckpointHeader {
        kind,
        store_id: [1; 16],
        sequence: 9,
        created_ms: 0,
        salt: sealed.then_some([3; 12]),
    };
    let mut w = match sealed {
        true => {
            let sealer = keys.checkpoint_sealer(&header).unwrap();
            CheckpointWriter::sealed(Vec::new(), &header, sealer).unwrap()
        }
        false => CheckpointWriter::new(Vec::new(), &header).unwrap(),
    };
    for &(id, row) in tables(kind) {
        // Each table takes a length from the input, then that many bytes.
        let take = rest
            .first()
            .map_or(0, |&b| b as usize * 8)
            .min(rest.len().saturating_sub(1));
        let body = rest.get(1..1 + take).unwrap_or(&[]);
        rest = rest.get(1 + take..).unwrap_or(&[]);
        w.begin_table(id, row).unwrap();
        if row == 0 {
            w.data(body).unwrap();
        } else {
            for r in body.chunks_exact(row as usize) {
                w.row(r).unwrap();
            }
        }
    }
    let (file, _) = w.finish().unwrap();
    let _ = check_checkpoint(&file, &sealings[usize::from(sealed)]);
});
