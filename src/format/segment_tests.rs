//! Tests of the segment bytes (format-spec/segment.md).
use super::*;

fn record(content: &[u8], seq: u64) -> Vec<u8> {
    let (codec, payload) = encode_payload(content, 3);
    let h = RecordHeader::new(
        RecordKind::Saveset,
        codec,
        content.len() as u64,
        seq,
        *blake3::hash(content).as_bytes(),
        &payload,
    );
    let mut out = h.encode().to_vec();
    out.extend_from_slice(&payload);
    out
}

#[test]
fn a_zstd_payload_is_one_frame_with_nothing_after_it() {
    let text = b"Subject: frames\r\n\r\nframe frame frame frame frame\r\n".repeat(40);
    let (codec, frame) = encode_payload(&text, 3);
    let frame: Vec<u8> = frame.into_owned();
    assert_eq!(codec, Codec::Zstd);
    assert_eq!(
        decode_payload(Codec::Zstd, frame.clone(), text.len() as u64).unwrap(),
        text
    );
    // A second frame after the first, or stray bytes: refused, although
    // the first frame's size matches the header.
    let two = [frame.as_slice(), frame.as_slice()].concat();
    let err = decode_payload(Codec::Zstd, two, text.len() as u64).unwrap_err();
    assert!(err.contains("after the zstd frame"), "{err}");
    let trailing = [frame.as_slice(), &[0u8; 3]].concat();
    let err = decode_payload(Codec::Zstd, trailing, text.len() as u64).unwrap_err();
    assert!(err.contains("3 bytes after the zstd frame"), "{err}");
}

fn entry(offset: u64, stored_len: u64, sequence: u64) -> FooterEntry {
    FooterEntry {
        id: [sequence as u8; 32],
        offset,
        stored_len,
        logical_len: stored_len,
        kind: RecordKind::Saveset,
        codec: Codec::Raw,
        sequence,
    }
}

#[test]
fn footer_entries_cover_the_data_with_no_gap() {
    let h = RECORD_HEADER_BYTES as u64;
    let first = entry(SEGMENT_HEADER_BYTES as u64, 100, 1);
    let second = entry(first.offset + h + 100, 50, 2);
    let end = second.offset + h + 50;
    let ok = encode_footer(&[first, second], end, (1, 2), &[]);
    assert_eq!(decode_footer(&ok).unwrap().entries.len(), 2);
    // A gap between records, before the first, or after the last.
    let gap = entry(second.offset + 8, 50, 2);
    let bad = encode_footer(&[first, gap], end + 8, (1, 2), &[]);
    assert!(decode_footer(&bad).unwrap_err().contains("out of place"));
    let late = entry(SEGMENT_HEADER_BYTES as u64 + 1, 100, 1);
    let bad = encode_footer(
        &[late],
        SEGMENT_HEADER_BYTES as u64 + 1 + h + 100,
        (1, 1),
        &[],
    );
    assert!(decode_footer(&bad).is_err());
    let bad = encode_footer(&[first, second], end + 64, (1, 2), &[]);
    assert!(
        decode_footer(&bad)
            .unwrap_err()
            .contains("not at the footer's data_end")
    );
}

#[test]
fn record_round_trips_compressed_and_raw() {
    let text = b"Subject: hello\r\n\r\nhello hello hello hello hello hello\r\n".repeat(20);
    let (h, c) = decode_record(&record(&text, 5)).unwrap();
    assert_eq!(c, text);
    assert_eq!(h.codec, Codec::Zstd);
    assert_eq!(h.sequence, 5);
    let noise: Vec<u8> = (0..200u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let (h, c) = decode_record(&record(&noise, 6)).unwrap();
    assert_eq!(c, noise);
    assert_eq!(h.codec, Codec::Raw);
}

#[test]
fn large_content_that_samples_as_incompressible_is_stored_raw() {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let noise: Vec<u8> = (0..SAMPLE_ABOVE_BYTES + 4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let (codec, payload) = encode_payload(&noise, 3);
    assert_eq!((codec, &*payload), (Codec::Raw, &noise[..]));
    // Text in the sampled windows: compressed as a whole.
    let mut mixed = noise.clone();
    let text = b"Quarterly figures attached, see the table below.\r\n".repeat(400);
    let mid = mixed.len() / 2 - text.len() / 2;
    mixed[..text.len()].copy_from_slice(&text);
    mixed[mid..mid + text.len()].copy_from_slice(&text);
    let (codec, payload) = encode_payload(&mixed, 3);
    assert_eq!(codec, Codec::Zstd);
    assert!(payload.len() < mixed.len());
    // Below the sampling size, compressed if it pays.
    let small = &noise[..SAMPLE_ABOVE_BYTES - 1];
    assert_eq!(encode_payload(small, 3).0, Codec::Raw);
}

#[test]
fn every_flipped_bit_in_a_record_is_detected() {
    let bytes = record(&b"From: a@b\r\n\r\nbody text body text\r\n".repeat(4), 1);
    for i in 0..bytes.len() {
        for bit in [0x01, 0x80] {
            let mut b = bytes.clone();
            b[i] ^= bit;
            assert!(decode_record(&b).is_err(), "flip {bit:#x} at {i} missed");
        }
    }
}

#[test]
fn segment_header_round_trips_and_refuses_damage() {
    let h = SegmentHeader {
        segment_id: 9,
        partition_id: 2,
        created_ms: 123,
        store_id: [1; 16],
        flags: SEGMENT_FLAG_COMPACTION,
        encrypted: false,
        tag: [0; 12],
    };
    let b = h.encode();
    assert_eq!(SegmentHeader::decode(&b).unwrap(), h);
    for i in 0..b.len() {
        let mut c = b;
        c[i] ^= 4;
        assert!(SegmentHeader::decode(&c).is_err());
    }
}

#[test]
fn footer_round_trips() {
    let entries: Vec<FooterEntry> = (0..3u64)
        .map(|i| FooterEntry {
            id: [i as u8; 32],
            offset: 64 + i * 100,
            stored_len: 36,
            logical_len: 80,
            kind: RecordKind::Saveset,
            codec: Codec::Zstd,
            sequence: 10 + i,
        })
        .collect();
    let payload = encode_footer(&entries, 364, (10, 12), &[]);
    let f = decode_footer(&payload).unwrap();
    assert_eq!(f.entries, entries);
    assert_eq!(f.summary.entry_count, 3);
    assert_eq!(f.summary.logical_bytes, 240);
    assert_eq!((f.summary.sequence_min, f.summary.sequence_max), (10, 12));
    assert!(f.part_lists.is_empty());

    // A composite entry needs its part list, and gets it back.
    let mut with_composite = entries.clone();
    with_composite[1].kind = RecordKind::Composite;
    assert!(decode_footer(&encode_footer(&with_composite, 364, (10, 12), &[])).is_err());
    let lists = vec![PartList {
        entry: 1,
        message_len: 5000,
        parts: vec![[9; 32], [8; 32]],
    }];
    let payload = encode_footer(&with_composite, 364, (10, 12), &lists);
    let f = decode_footer(&payload).unwrap();
    assert_eq!(f.part_lists, lists);
    assert_eq!(f.summary.part_map_bytes, 4 + 16 + 64);
    // A list naming an entry that is not composite is refused.
    let wrong = vec![PartList {
        entry: 0,
        ..lists[0].clone()
    }];
    assert!(decode_footer(&encode_footer(&with_composite, 364, (10, 12), &wrong)).is_err());
    for cut in 1..payload.len() - 64 - 3 * 72 {
        assert!(
            decode_footer(&payload[..payload.len() - cut]).is_err(),
            "cut {cut}"
        );
    }
}

#[test]
fn oversized_lengths_are_refused_before_allocation() {
    let mut b = record(b"x", 1);
    b[12..20].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(RecordHeader::decode(&b).is_err());
}
