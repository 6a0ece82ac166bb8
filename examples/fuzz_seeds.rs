//! Writes the seed corpora of the fuzz targets (fuzz/corpus/*/seed-*) from a
//! real store built on real-looking mail. Run from the repository root:
//! `cargo run --example fuzz_seeds`.

use std::fs;
use std::path::Path;

use vaultstore::bench::generate_corpus;
use vaultstore::format::catalog::{CatalogOp, encode_batch};
use vaultstore::format::state::{StateOp, encode_state_batch};
use vaultstore::{InitOptions, SegmentState, Store};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = Path::new("fuzz/corpus");
    let tmp = tempfile::tempdir()?;
    let store = Store::init(
        tmp.path().join("s"),
        &InitOptions {
            segment_bytes: 16 << 10,
            ..InitOptions::default()
        },
    )?;
    let mut small = generate_corpus(12, 3);
    small.retain(|m| m.len() < 6000);
    small.push(Vec::new());
    small.push((0..=255u8).collect());
    for m in &small {
        store.put(m)?;
    }
    store.seal()?;
    for m in small.iter().take(3) {
        store.put(&[m.as_slice(), b"x"].concat())?;
    }
    let segs = store.segments();
    for (i, seg) in segs.iter().enumerate() {
        let bytes = fs::read(&seg.path)?;
        let kind = if seg.state == SegmentState::Sealed {
            "sealed"
        } else {
            "active"
        };
        write(out, "segment_open", &format!("seed-{kind}-{i}"), &bytes)?;
        if i == 0 {
            // The first record, and the footer payload of a sealed segment.
            let len = 64 + u64::from_le_bytes(bytes[64 + 8..64 + 16].try_into()?) as usize;
            write(out, "record", "seed-first-record", &bytes[64..64 + len])?;
            let footer_at =
                u64::from_le_bytes(bytes[bytes.len() - 16..bytes.len() - 8].try_into()?) as usize;
            let payload_len =
                u64::from_le_bytes(bytes[footer_at + 8..footer_at + 16].try_into()?) as usize;
            write(
                out,
                "footer",
                "seed-footer",
                &bytes[footer_at + 64..footer_at + 64 + payload_len],
            )?;
            write(
                out,
                "record",
                "seed-footer-record",
                &bytes[footer_at..footer_at + 64 + payload_len],
            )?;
        }
    }
    write(
        out,
        "manifest",
        "seed-manifest",
        &fs::read(tmp.path().join("s/MANIFEST"))?,
    )?;
    for (i, m) in small.iter().take(4).enumerate() {
        write(out, "store_ops", &format!("seed-{i}"), m)?;
    }
    let ops = vec![
        CatalogOp::Add {
            owner: "alice".into(),
            item: "<1@x>".into(),
            id: [7; 32],
        },
        CatalogOp::TrashOwner {
            owner: "alice".into(),
            at_ms: 1_700_000_000_000,
        },
        CatalogOp::Purge {
            cutoff_ms: 1_700_000_000_000,
            owner: None,
            item: None,
        },
        CatalogOp::Hold {
            owner: "bob".into(),
            item: Some("<2@x>".into()),
            on: true,
        },
    ];
    write(out, "catalog_batch", "seed-batch", &encode_batch(&ops))?;
    let state = vec![
        StateOp::Indexed {
            ids: vec![[1; 32], [2; 32]],
        },
        StateOp::BackupMark {
            segment: 3,
            checksum: [4; 32],
            at_ms: 5,
        },
        StateOp::FeedAck {
            sequence: 6,
            index: 7,
        },
        StateOp::SafetyCopies { immediately: true },
    ];
    write(
        out,
        "state_batch",
        "seed-batch",
        &encode_state_batch(&state),
    )?;
    write(
        out,
        "compaction_record",
        "seed-record",
        &vaultstore::format::compaction::CompactionRecord {
            output: 9,
            at_ms: 1,
            backup_complete: true,
            victims: vec![2, 3, 5],
        }
        .encode(),
    )?;
    // A MIME message with a base64 attachment, and its recipe.
    let mut attachment = Vec::new();
    vaultstore::parts::encode_base64_lines(&[7u8; 7000], 76, true, &mut attachment);
    let mut message = b"From: a@example.com\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n".to_vec();
    message.extend_from_slice(&attachment);
    message.extend_from_slice(b"\r\n--b--\r\n");
    write(out, "split_rebuild", "seed-message", &message)?;
    if let Some(s) = vaultstore::parts::split(&message) {
        write(out, "split_rebuild", "seed-recipe", &s.recipe.encode())?;
    }
    // A history log with a few runs.
    store.backup_run(&tmp.path().join("dest"))?;
    for _ in store.maintain() {}
    write(
        out,
        "history",
        "seed-history",
        &fs::read(tmp.path().join("s/history.log"))?,
    )?;
    println!("seeds written under {}", out.display());
    Ok(())
}

fn write(out: &Path, target: &str, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let dir = out.join(target);
    fs::create_dir_all(&dir)?;
    fs::write(dir.join(name), bytes)
}
