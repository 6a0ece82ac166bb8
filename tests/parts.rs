//! Part-level single instance: attachments stored once across different
//! messages, messages back byte-identical, parts reclaimed only when no live
//! saveset lists them.

mod common;

use std::time::Duration;

use vaultstore::parts::{rebuild, split};
use vaultstore::{InitOptions, SavesetId, Store};

fn base64_lines(data: &[u8]) -> String {
    let mut out = Vec::new();
    vaultstore::parts::encode_base64_lines(data, 76, true, &mut out);
    String::from_utf8(out).unwrap()
}

/// Message `n` of a family: different headers and text, the same attachment.
fn with_attachment(n: u64, attachment: &[u8]) -> Vec<u8> {
    format!(
        "From: sender{n}@example.com\r\nTo: team@example.com\r\nSubject: quarterly report, copy {n}\r\nMessage-ID: <{n}.report@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b{n}\"\r\n\r\n--b{n}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello, copy {n} of the report is attached.\r\n--b{n}\r\nContent-Type: application/pdf; name=\"report.pdf\"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"report.pdf\"\r\n\r\n{}\r\n--b{n}--\r\n",
        base64_lines(attachment)
    )
    .into_bytes()
}

fn attachment(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = common::Rng(seed);
    (0..len).map(|_| rng.next() as u8).collect()
}

#[test]
fn every_corpus_message_round_trips_through_split_and_rebuild() {
    let Some(messages) = common::corpus_messages() else {
        return;
    };
    let mut split_count = 0;
    for m in &messages {
        if let Some(s) = split(m) {
            split_count += 1;
            let refs: Vec<&[u8]> = s.parts.iter().map(Vec::as_slice).collect();
            assert_eq!(&rebuild(&s.recipe, &refs).unwrap(), m);
        }
    }
    eprintln!("{split_count} of {} corpus messages split", messages.len());
    // And through a store, after reopen.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let store = Store::init(&path, &InitOptions::default()).unwrap();
    let ids: Vec<SavesetId> = messages.iter().map(|m| store.put(m).unwrap().id).collect();
    drop(store);
    let store = Store::open(&path).unwrap();
    for (id, m) in ids.iter().zip(&messages) {
        assert_eq!(&store.get(id).unwrap(), m);
    }
    assert!(store.verify().is_clean());
}

/// The split finds bodies by reading headers, not by parsing the MIME tree.
/// Checked against a full MIME parser: every base64 leaf body of 2 KiB or
/// more that it decodes, laid out regularly (its re-encoding is its text),
/// is split out.
#[test]
fn every_regular_body_a_mime_parser_finds_is_split_out() {
    use mail_parser::{Encoding, MessageParser, PartType};
    let mut messages = common::corpus_messages().unwrap_or_default();
    messages.extend(vaultstore::bench::generate_corpus(300, 5));
    let (mut expected, mut found) = (0, 0);
    for m in messages
        .iter()
        .filter(|m| m.len() >= vaultstore::parts::MIN_MESSAGE_BYTES)
    {
        let Some(parsed) = MessageParser::default().parse(m) else {
            continue;
        };
        let ids: Vec<[u8; 32]> = split(m)
            .map(|s| s.recipe.parts.iter().map(|p| p.id).collect())
            .unwrap_or_default();
        for part in &parsed.parts {
            let (PartType::Binary(decoded) | PartType::InlineBinary(decoded)) = &part.body else {
                continue;
            };
            if part.encoding != Encoding::Base64
                || decoded.len() < vaultstore::parts::MIN_PART_BYTES
            {
                continue;
            }
            let text = m[part.offset_body as usize..part.offset_end as usize].trim_ascii();
            let first = text.split(|&b| b == b'\n').next().unwrap_or_default();
            let crlf = first.ends_with(b"\r");
            let mut again = Vec::new();
            let line_len = (first.len() - usize::from(crlf)) as u16;
            vaultstore::parts::encode_base64_lines(decoded, line_len, crlf, &mut again);
            if again != text {
                continue;
            }
            expected += 1;
            found += usize::from(ids.contains(SavesetId::of(decoded).as_bytes()));
        }
    }
    eprintln!("{found} of {expected} regular base64 bodies split out");
    assert!(
        expected >= 50,
        "the generated mail alone has more: {expected}"
    );
    assert_eq!(found, expected);
}

/// A recipe may list at most 65,536 parts (readers refuse more): a message
/// with more attachments splits that many and keeps the rest literal.
#[test]
fn a_message_with_more_attachments_than_a_recipe_holds_still_round_trips() {
    use vaultstore::format::composite::{MAX_PARTS, Recipe};
    let bodies = MAX_PARTS as usize + 3;
    let mut m = b"Subject: many\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n".to_vec();
    let mut attachment = vec![0u8; vaultstore::parts::MIN_PART_BYTES];
    for n in 0..bodies {
        attachment[..8].copy_from_slice(&(n as u64).to_le_bytes());
        m.extend_from_slice(b"--b\r\nContent-Transfer-Encoding: base64\r\n\r\n");
        vaultstore::parts::encode_base64_lines(&attachment, 76, true, &mut m);
        m.extend_from_slice(b"\r\n");
    }
    m.extend_from_slice(b"--b--\r\n");
    let s = split(&m).expect("split");
    assert_eq!(s.recipe.parts.len(), MAX_PARTS as usize);
    let decoded = Recipe::decode(&s.recipe.encode()).expect("a reader takes the recipe");
    let refs: Vec<&[u8]> = s.parts.iter().map(Vec::as_slice).collect();
    assert!(rebuild(&decoded, &refs).unwrap() == m);
}

#[test]
fn generated_mail_round_trips_and_shares_its_attachments() {
    let messages = vaultstore::bench::generate_corpus(600, 11);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let store = Store::init(&path, &InitOptions::default()).unwrap();
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let puts = store.put_many(&refs).unwrap();
    let stat = store.stat();
    eprintln!(
        "parts {} part_bytes {} saved {} share {:.3}",
        stat.parts, stat.part_bytes, stat.part_dedup_saved_bytes, stat.part_dedup_share
    );
    drop(store);
    let store = Store::open(&path).unwrap();
    for (p, m) in puts.iter().zip(&messages) {
        assert_eq!(&store.get(&p.id).unwrap(), m);
    }
    let again = store.stat();
    assert_eq!(again.parts, stat.parts);
    assert_eq!(again.part_bytes, stat.part_bytes);
    assert_eq!(again.part_dedup_saved_bytes, stat.part_dedup_saved_bytes);
    assert_eq!(again.logical_bytes, stat.logical_bytes);
    assert!(store.verify().is_clean());
}

#[test]
fn one_attachment_in_a_hundred_messages_is_stored_once_until_the_last_goes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let store = Store::init(
        &path,
        &InitOptions {
            segment_bytes: 1 << 20,
            ..InitOptions::default()
        },
    )
    .unwrap();
    let pdf = attachment(1, 300_000);
    let messages: Vec<Vec<u8>> = (0..100).map(|n| with_attachment(n, &pdf)).collect();
    for (n, m) in messages.iter().enumerate() {
        store.archive("team", &n.to_string(), m, false).unwrap();
    }
    let stat = store.stat();
    assert_eq!(stat.savesets, 100);
    assert_eq!(stat.parts, 1, "the attachment is stored once");
    // 100 messages of about 400 KiB each take little more than one attachment.
    assert!(
        stat.stored_bytes < 2 * pdf.len() as u64,
        "stored {} bytes",
        stat.stored_bytes
    );
    assert_eq!(stat.part_dedup_saved_bytes, 99 * pdf.len() as u64);
    for (n, m) in messages.iter().enumerate() {
        assert_eq!(&store.get(&SavesetId::of(m)).unwrap(), m, "message {n}");
    }

    // Delete 99 of them and defragment: the attachment stays.
    for n in 0..99 {
        store.delete("team", Some(&n.to_string())).unwrap();
    }
    store.purge_trash(Duration::ZERO, None, None).unwrap();
    store.seal().unwrap();
    store.defrag(0.0).unwrap();
    let stat = store.stat();
    assert_eq!((stat.savesets, stat.parts), (1, 1));
    assert_eq!(
        store.get(&SavesetId::of(&messages[99])).unwrap(),
        messages[99]
    );
    assert!(store.verify().is_clean());
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(
        store.get(&SavesetId::of(&messages[99])).unwrap(),
        messages[99]
    );
    assert_eq!(store.stat().parts, 1);

    // Delete the last one: the attachment dies, and defragmentation takes its bytes.
    store.delete("team", Some("99")).unwrap();
    store.purge_trash(Duration::ZERO, None, None).unwrap();
    let stat = store.stat();
    assert_eq!((stat.savesets, stat.parts, stat.part_bytes), (0, 0, 0));
    assert!(stat.dead_bytes > pdf.len() as u64);
    store.seal().unwrap();
    store.defrag(0.0).unwrap();
    let stat = store.stat();
    assert_eq!(stat.dead_bytes, 0);
    assert!(
        stat.stored_bytes < pdf.len() as u64 / 4,
        "stored {}",
        stat.stored_bytes
    );
    assert!(store.verify().is_clean());
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!((store.stat().parts, store.stat().dead_bytes), (0, 0));
}

#[test]
fn an_attachment_stored_again_after_it_died_is_written_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let store = Store::init(&path, &InitOptions::default()).unwrap();
    let pdf = attachment(2, 50_000);
    let a = with_attachment(1, &pdf);
    let b = with_attachment(2, &pdf);
    store.archive("x", "1", &a, false).unwrap();
    store.delete("x", None).unwrap();
    store.purge_trash(Duration::ZERO, None, None).unwrap();
    assert_eq!(store.stat().parts, 0);
    store.archive("y", "1", &b, false).unwrap();
    assert_eq!(store.stat().parts, 1);
    assert_eq!(store.get(&SavesetId::of(&b)).unwrap(), b);
    store.seal().unwrap();
    store.defrag(0.0).unwrap();
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.get(&SavesetId::of(&b)).unwrap(), b);
    assert_eq!(store.stat().parts, 1);
    assert_eq!(store.stat().savesets, 1);
    assert_eq!(store.stat().dead_savesets, 0);
}

#[test]
fn a_damaged_part_is_named_by_get_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let store = Store::init(&path, &InitOptions::default()).unwrap();
    let pdf = attachment(3, 80_000);
    let m = with_attachment(1, &pdf);
    let id = store.put(&m).unwrap().id;
    store.seal().unwrap();
    let seg = store.segments()[0].clone();
    drop(store);
    // The part record comes first: flip a byte in the middle of its payload.
    let mut bytes = std::fs::read(&seg.path).unwrap();
    bytes[64 + 64 + 20_000] ^= 0x40;
    std::fs::write(&seg.path, &bytes).unwrap();
    let store = Store::open(&path).unwrap();
    let err = store.get(&id).unwrap_err().to_string();
    let part = SavesetId::of(&pdf).to_string();
    assert!(err.contains(&part), "{err}");
    assert!(err.contains(&format!("segment {}", seg.id)), "{err}");
    assert!(err.contains("offset 64"), "{err}");
    let report = store.verify();
    assert!(!report.is_clean());
    assert_eq!(report.problems[0].offset, 64);
}
