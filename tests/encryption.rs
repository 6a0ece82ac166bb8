//! Encryption at rest (format-spec/encryption.md): the spec's test vectors,
//! the real corpus through an encrypted store, no plaintext on disk,
//! tampering found where it is, and passphrases that change nothing when
//! wrong.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use vaultstore::crypto::{
    Encryption, KeyRing, MasterKey, NewSlot, Passphrase, Sealing, StoreKeys, Unlock, wrap_slot_with,
};
use vaultstore::format::checkpoint::{CheckpointHeader, CheckpointKind};
use vaultstore::format::key_file::{KdfParams, KeyFile};
use vaultstore::format::segment::{Codec, RecordHeader, RecordKind, SegmentHeader};
use vaultstore::io::StdFs;
use vaultstore::jobs::schedule::ProcessRequest;
use vaultstore::{Error, InitOptions, OpenOptions, SavesetId, Store};

const CHEAP: KdfParams = KdfParams {
    memory_kib: 64,
    iterations: 1,
    parallelism: 1,
};
const PASS: &str = "correct horse battery staple";

fn pass(s: &str) -> Passphrase {
    Passphrase::new(s.as_bytes().to_vec()).unwrap()
}

fn init_encrypted(dir: &Path, segment_bytes: u64) -> Store {
    let opts = InitOptions {
        segment_bytes,
        encryption: Some(Encryption {
            passphrase: Arc::new(pass(PASS)),
            kdf: CHEAP,
        }),
        ..InitOptions::default()
    };
    Store::init(dir, &opts).unwrap()
}

fn open_with(dir: &Path, passphrase: &str) -> vaultstore::Result<Store> {
    Store::open_with(
        dir,
        OpenOptions {
            unlock: Unlock::passphrase(pass(passphrase)),
            ..OpenOptions::default()
        },
    )
}

fn keys_of(dir: &Path, store: &Store) -> Sealing {
    let ring = KeyRing::new(&StdFs, dir, store.manifest().store_id);
    Sealing::Encrypted(Arc::new(ring.unlock(&pass(PASS)).unwrap()))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Every file under `dir`, with its bytes.
fn every_file(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(every_file(&path));
        } else {
            out.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    out
}

// ---------------------------------------------------------------- vectors

/// The spec's vectors (format-spec/encryption.md, "Test vectors"): a key
/// file, the subkeys, a sealed record and a tagged segment header, from
/// fixed inputs. A third party checks an implementation against these.
#[test]
fn the_spec_vectors_hold() {
    let store_id: [u8; 16] = std::array::from_fn(|i| i as u8);
    let master = MasterKey::from_bytes(std::array::from_fn(|i| 0x40 + i as u8));
    let salt: [u8; 16] = std::array::from_fn(|i| 0xa0 + i as u8);
    let nonce: [u8; 24] = std::array::from_fn(|i| 0xb0 + i as u8);
    let kdf = KdfParams {
        memory_kib: 1024,
        iterations: 2,
        parallelism: 1,
    };
    let new = NewSlot {
        number: 0,
        kdf,
        created_ms: 1_764_806_400_000,
    };
    let slot = wrap_slot_with(&master, &pass(PASS), new, &store_id, (salt, nonce)).unwrap();
    let file = KeyFile {
        store_id,
        slots: vec![slot],
    };
    let key_file = file.encode();
    let keys = StoreKeys::derive(&master, store_id);

    let content = b"From: a@example.com\r\n\r\nhi\r\n";
    let id = *blake3::hash(content).as_bytes();
    let keyed = keys.keyed_id(&id);
    let mut h = RecordHeader::unsealed(
        RecordKind::Saveset,
        Codec::Raw,
        content.len() as u64,
        content.len() as u64,
        1,
        id,
        keyed,
    );
    let record_nonce: [u8; 24] = std::array::from_fn(|i| 0xc0 + i as u8);
    let sealed = keys
        .seal_with_nonce(None, &h.body_bytes(), &id, content, record_nonce)
        .unwrap();
    h.set_crc(&sealed);
    let record = [&h.encode()[..], &sealed[..]].concat();

    let header = SegmentHeader {
        segment_id: 1,
        partition_id: 0,
        created_ms: 1_764_806_400_000,
        store_id,
        flags: 0,
        encrypted: true,
        tag: [0; 12],
    };
    let tag = keys.header_tag(&header.tagged_bytes());
    let segment_header = SegmentHeader { tag, ..header }.encode();

    let got = [
        ("key file", hex(&key_file)),
        ("keyed id", hex(&keyed)),
        ("record", hex(&record)),
        ("segment header", hex(&segment_header)),
    ];
    for (what, value) in &got {
        eprintln!("{what}: {value}");
    }
    let expected = [
        ("key file", KEY_FILE_HEX),
        ("keyed id", KEYED_ID_HEX),
        ("record", RECORD_HEX),
        ("segment header", SEGMENT_HEADER_HEX),
    ];
    for ((what, value), (_, want)) in got.iter().zip(expected) {
        assert_eq!(value, want, "{what}");
    }
    // A checkpoint file's header and one sealed block: a saveset index
    // row (the content id, segment 1, offset 64), table 2, block 0.
    let header = CheckpointHeader {
        kind: CheckpointKind::Files,
        store_id,
        sequence: 7,
        created_ms: 1_764_806_400_000,
        salt: Some(std::array::from_fn(|i| 0xc0 + i as u8)),
    };
    let mut row = id.to_vec();
    row.extend_from_slice(&1u32.to_le_bytes());
    row.extend_from_slice(&64u32.to_le_bytes());
    let tag = keys
        .checkpoint_sealer(&header)
        .unwrap()
        .seal(2, 0, &mut row)
        .unwrap();
    assert_eq!(hex(&header.encode()), CHECKPOINT_HEADER_HEX);
    assert_eq!(hex(&row), CHECKPOINT_BLOCK_HEX);
    assert_eq!(hex(&tag), CHECKPOINT_TAG_HEX);
    // And the record opens back through the reader the store uses.
    let decoded = RecordHeader::decode(&record[..64]).unwrap();
    let sealing = Sealing::Encrypted(Arc::new(keys));
    let (opened, plain) =
        vaultstore::segment::open_payload(&sealing, 1, 64, decoded, record[64..].to_vec()).unwrap();
    assert_eq!((opened.id, plain.as_slice()), (id, &content[..]));
}

const KEY_FILE_HEX: &str = concat!(
    "56534b45595356310100000001000000000102030405060708090a0b0c0d0e0f00000000010000000004000002000000",
    "01000000000000000098a8e69a010000a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf",
    "c0c1c2c3c4c5c6c7a8239929879e7703f731aba9c08ad3a557670572a4418d16d9e667f81e75438ea42e319027e1007e",
    "293d21c3b06c7ebf0000000000000000f9655d8e",
);
const KEYED_ID_HEX: &str = "5f57130dc446e7b29ea8dd80dcb38ef9a18bf763e838cd215840c37dcb21a4df";
const RECORD_HEX: &str = concat!(
    "075586b60100010063000000000000001b0000000000000001000000000000005f57130dc446e7b29ea8dd80dcb38ef9",
    "a18bf763e838cd215840c37dcb21a4dfc0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7a8e0a0b5390fabe8",
    "596eed2fa535bd4d537c5a20470e28f9886c98d0637dd195b741d2028da04184b8f663d00bb22d9f312a4bcbcc790624",
    "1b8544d5d0cb3daa92fe5b92c56759d5c55f97",
);
const SEGMENT_HEADER_HEX: &str = concat!(
    "56535345474d4e54020000000100000000000000000000000098a8e69a010000000102030405060708090a0b0c0d0e0f",
    "63a1389da70ee24f048a1571a5630a36",
);

const CHECKPOINT_HEADER_HEX: &str = concat!(
    "565353594e4330310500010100100000000102030405060708090a0b0c0d0e0f07000000000000000098a8e69a010000",
    "c0c1c2c3c4c5c6c7c8c9cacb766c8ee4",
);
const CHECKPOINT_BLOCK_HEX: &str =
    "62d9ad4603ccc6df29faaf855b4b03c0974327a7eead82f3c65936ea1efe5a28af931ed49efc01fb";
const CHECKPOINT_TAG_HEX: &str = "402b7fe9c3fd92773a5d2a40e475a0df";

// ------------------------------------------------------- the real corpus

fn owner_name(i: usize) -> String {
    format!("owner.number.{}@archive.example.org", i % 5)
}

fn item_name(i: usize) -> String {
    format!("<item-{i:05}.unique-part@mail.example.org>")
}

/// Archive the corpus into `store`, each message under two owners.
fn archive_corpus(store: &Store, messages: &[Vec<u8>]) -> Vec<SavesetId> {
    let mut ids = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let a = store
            .archive(&owner_name(i), &item_name(i), m, false)
            .unwrap();
        store
            .archive(&owner_name(i + 1), &item_name(i), m, false)
            .unwrap();
        ids.push(a.id);
    }
    ids
}

/// 16-byte windows of `m` worth looking for: spread over the message, and
/// not runs of a few repeated bytes (a line of dashes could be anywhere).
fn windows(m: &[u8]) -> Vec<&[u8]> {
    let step = (m.len() / 8).max(16);
    (0..m.len().saturating_sub(16))
        .step_by(step)
        .map(|at| &m[at..at + 16])
        .filter(|w| {
            let mut seen: Vec<u8> = w.to_vec();
            seen.sort_unstable();
            seen.dedup();
            seen.len() >= 6
        })
        .collect()
}

#[test]
fn the_corpus_round_trips_encrypted_dedups_as_plain_and_leaves_no_plaintext_on_disk() {
    let Some(messages) = common::corpus_messages() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (plain_dir, enc_dir) = (tmp.path().join("plain"), tmp.path().join("enc"));
    let plain = Store::init(
        &plain_dir,
        &InitOptions {
            segment_bytes: 256 << 10,
            ..InitOptions::default()
        },
    )
    .unwrap();
    let enc = init_encrypted(&enc_dir, 256 << 10);
    let ids = archive_corpus(&enc, &messages);
    assert_eq!(
        archive_corpus(&plain, &messages),
        ids,
        "ids are the plain blake3 ids"
    );
    // The same dedup as the plain store on the same input.
    let (p, e) = (plain.stat(), enc.stat());
    let counts = |s: &vaultstore::Stat| {
        (
            s.savesets,
            s.logical_bytes,
            s.references,
            s.parts,
            s.part_dedup_saved_bytes,
        )
    };
    assert_eq!(counts(&p), counts(&e));
    // Some dead savesets, so defragmentation copies sealed records.
    for i in (0..messages.len()).step_by(3) {
        for owner in [owner_name(i), owner_name(i + 1)] {
            enc.delete(&owner, Some(&item_name(i))).unwrap();
        }
    }
    enc.purge_trash(std::time::Duration::ZERO, None, None)
        .unwrap();
    enc.seal().unwrap();
    let report = enc.defrag(0.0).unwrap();
    assert!(!report.segments_written.is_empty(), "defragmentation ran");
    enc.full_resynchronization().unwrap();
    // The sync caches too: every file is searched below.
    enc.run_request(&ProcessRequest::Checkpoint).unwrap();
    let backup = tmp.path().join("backup");
    enc.backup_run(&backup).unwrap();
    drop(enc);

    let e = open_with(&enc_dir, PASS).unwrap().stat();
    assert!(e.savesets < p.savesets && e.dead_savesets == 0, "{e:?}");

    // Every message that is still referenced reads back exactly, from the
    // store and from its backup.
    for dir in [&enc_dir, &backup] {
        let store = open_with(dir, PASS).unwrap();
        assert!(store.verify().is_clean(), "{:?}", store.verify().problems);
        for (i, m) in messages.iter().enumerate() {
            let deleted = i % 3 == 0 && ids[..i].iter().all(|x| *x != ids[i]);
            if !deleted || store.has(&ids[i]) {
                assert_eq!(&store.get(&ids[i]).unwrap(), m, "message {i} in {dir:?}");
            }
        }
    }

    // Nothing on disk shows a message, an owner, an item or a plain id.
    let mut needles: Vec<Vec<u8>> = Vec::new();
    for m in &messages {
        needles.extend(windows(m).into_iter().map(<[u8]>::to_vec));
    }
    for i in 0..messages.len() + 1 {
        needles.push(owner_name(i).into_bytes());
        needles.push(item_name(i).into_bytes());
    }
    for id in &ids {
        needles.push(id.0.to_vec());
        needles.push(id.to_string().into_bytes());
    }
    let mut files = every_file(&enc_dir);
    files.extend(every_file(&backup));
    assert!(files.len() >= 6, "{files:?}");
    let sync_caches = files
        .iter()
        .filter(|(p, _)| p.to_string_lossy().contains("sync-cache"))
        .count();
    assert_eq!(sync_caches, 3, "a generation of three files is searched");
    for (path, bytes) in &files {
        for n in &needles {
            assert!(
                memchr::memmem::find(bytes, n).is_none(),
                "{} holds {:?}",
                path.display(),
                String::from_utf8_lossy(n)
            );
        }
    }
    // The check can fail: the plain store shows every id in its footers,
    // and what zstd left readable of the messages and names.
    let plain_files = every_file(&plain_dir);
    let in_plain = |n: &Vec<u8>| {
        plain_files
            .iter()
            .any(|(_, b)| memchr::memmem::find(b, n).is_some())
    };
    assert!(ids.iter().all(|id| in_plain(&id.0.to_vec())));
    let found = needles.iter().filter(|n| in_plain(n)).count();
    assert!(
        found > needles.len() / 5,
        "{found} of {} found in the clear",
        needles.len()
    );
}

// ----------------------------------------------------------- passphrases

#[test]
fn a_wrong_or_missing_passphrase_is_refused_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("enc");
    let store = init_encrypted(&dir, 1 << 20);
    store.put(b"Subject: kept\r\n\r\nbody\r\n").unwrap();
    drop(store);
    let before = every_file(&dir);
    let wrong = open_with(&dir, "correct horse battery stapler");
    assert!(
        matches!(wrong, Err(Error::WrongPassphrase)),
        "{:?}",
        wrong.err()
    );
    let none = Store::open(&dir);
    assert!(matches!(none, Err(Error::Crypto(_))), "{:?}", none.err());
    assert_eq!(every_file(&dir), before, "a refused open changed a file");
    open_with(&dir, PASS).unwrap();
}

// ------------------------------------------------------------- tampering

/// Flip bit 0 of byte `at` of `path`; with `fix_crc`, set the record at
/// `record` (its header there) to a valid crc again, so only the seal can
/// tell.
fn tamper(path: &Path, at: u64, record: Option<u64>) {
    let mut b = std::fs::read(path).unwrap();
    b[at as usize] ^= 1;
    if let Some(r) = record {
        let r = r as usize;
        let h = RecordHeader::decode(&b[r..r + 64]).unwrap();
        let end = r + 64 + h.stored_len as usize;
        let crc = crc32fast::hash(&b[r + 4..end]);
        b[r..r + 4].copy_from_slice(&crc.to_le_bytes());
    }
    std::fs::write(path, b).unwrap();
}

fn incompressible(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = common::Rng(seed);
    let mut m = format!("Subject: noise {seed}\r\n\r\n").into_bytes();
    m.resize(len, 0);
    for b in &mut m[40..] {
        *b = rng.next() as u8;
    }
    m
}

/// An encrypted store of two sealed segments of four records each, every
/// record of the same length.
fn two_segments(dir: &Path) -> (Vec<SavesetId>, Sealing) {
    let store = init_encrypted(dir, 4 * (64 + 72 + 2000) + 64);
    let ids: Vec<SavesetId> = (0..8)
        .map(|i| store.put(&incompressible(i, 2000)).unwrap().id)
        .collect();
    store.seal().unwrap();
    assert_eq!(store.segments().len(), 2, "{:?}", store.segments());
    let sealing = keys_of(dir, &store);
    (ids, sealing)
}

fn segment_path(dir: &Path, id: u32) -> PathBuf {
    dir.join("p0").join(format!("segment-{id:010}.sealed"))
}

/// The footer entries of sealed segment `id`.
fn entries(
    dir: &Path,
    id: u32,
    sealing: &Sealing,
) -> Vec<vaultstore::format::segment::FooterEntry> {
    let path = segment_path(dir, id);
    let file = vaultstore::io::MemFile::new(std::fs::read(&path).unwrap());
    vaultstore::segment::load_sealed(&path, &file, id, sealing)
        .unwrap()
        .entries
}

fn damage_at(store: &Store, segment: u32, offset: u64) -> bool {
    store
        .verify()
        .problems
        .iter()
        .any(|p| p.segment == segment && p.offset == offset)
}

#[test]
fn a_flipped_byte_in_a_payload_or_a_header_is_damage_at_its_record() {
    for (what, into_header) in [("payload", false), ("header", true)] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("enc");
        let (ids, sealing) = two_segments(&dir);
        let e = entries(&dir, 1, &sealing)[1];
        // Byte 50 of the header is in the keyed id; byte 64 + 100 in the ciphertext.
        let at = e.offset + if into_header { 50 } else { 164 };
        tamper(&segment_path(&dir, 1), at, Some(e.offset));
        let store = open_with(&dir, PASS).unwrap();
        let id = SavesetId(e.id);
        match store.get(&id) {
            Err(Error::Corrupt {
                segment, offset, ..
            }) => {
                assert_eq!((segment, offset), (1, e.offset), "{what}")
            }
            other => panic!("{what}: get gave {other:?}"),
        }
        assert!(
            damage_at(&store, 1, e.offset),
            "{what}: {:?}",
            store.verify().problems
        );
        for other in ids.iter().filter(|x| **x != id) {
            store.get(other).unwrap();
        }
    }
}

#[test]
fn a_flipped_byte_in_a_footer_is_found_and_the_records_still_read() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("enc");
    let (ids, sealing) = two_segments(&dir);
    let es = entries(&dir, 1, &sealing);
    let last = es.last().unwrap();
    let footer = last.offset + 64 + last.stored_len;
    // Byte 64 + 100 of the footer record: inside its sealed entries.
    tamper(&segment_path(&dir, 1), footer + 164, Some(footer));
    let store = open_with(&dir, PASS).unwrap();
    let report = store.verify();
    assert!(
        report.problems.iter().any(|p| p.segment == 1),
        "{:?}",
        report.problems
    );
    for id in &ids {
        store.get(id).unwrap();
    }
}

#[test]
fn a_record_moved_from_one_segment_to_another_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("enc");
    let (_, sealing) = two_segments(&dir);
    let (a, b) = (entries(&dir, 1, &sealing)[0], entries(&dir, 2, &sealing)[0]);
    assert_eq!((a.offset, a.stored_len), (b.offset, b.stored_len));
    let from = std::fs::read(segment_path(&dir, 1)).unwrap();
    let mut into = std::fs::read(segment_path(&dir, 2)).unwrap();
    let span = a.offset as usize..(a.offset + 64 + a.stored_len) as usize;
    into[span.clone()].copy_from_slice(&from[span]);
    std::fs::write(segment_path(&dir, 2), into).unwrap();
    let store = open_with(&dir, PASS).unwrap();
    assert!(
        matches!(
            store.get(&SavesetId(b.id)),
            Err(Error::Corrupt { segment: 2, .. })
        ),
        "the record in b's place was returned"
    );
    assert!(
        damage_at(&store, 2, b.offset),
        "{:?}",
        store.verify().problems
    );
    // The record itself still reads where it belongs.
    store.get(&SavesetId(a.id)).unwrap();
}

#[test]
fn a_segment_of_another_store_with_the_same_passphrase_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, other) = (tmp.path().join("enc"), tmp.path().join("other"));
    let (ids, _) = two_segments(&dir);
    let stranger = init_encrypted(&other, 1 << 20);
    let foreign = stranger
        .put(b"Subject: not yours\r\n\r\nsecret\r\n")
        .unwrap()
        .id;
    stranger.seal().unwrap();
    drop(stranger);
    std::fs::copy(segment_path(&other, 1), segment_path(&dir, 1)).unwrap();
    let store = open_with(&dir, PASS).unwrap();
    assert!(!store.has(&foreign));
    assert!(store.verify().problems.iter().any(|p| p.segment == 1));
    // Segment 2 is untouched.
    store.get(&ids[7]).unwrap();
}

#[test]
fn a_flipped_byte_in_the_key_file_is_refused_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("enc");
    drop(init_encrypted(&dir, 1 << 20));
    let key_file = dir.join("KEYS");
    let len = std::fs::metadata(&key_file).unwrap().len();
    for at in [0, 20, 40, 90, len - 20, len - 1] {
        tamper(&key_file, at, None);
        let before = every_file(&dir);
        let r = open_with(&dir, PASS);
        assert!(r.is_err(), "a key file flipped at {at} opened");
        assert_eq!(every_file(&dir), before);
        tamper(&key_file, at, None);
    }
    open_with(&dir, PASS).unwrap();
}

// ------------------------------------------------------------ the CLI

fn cli(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_vaultstore"));
    c.args(args)
        .arg("--store")
        .arg(dir)
        .env_remove("VAULTSTORE_PASSPHRASE");
    for (k, v) in env {
        c.env(k, v);
    }
    c.stdin(std::process::Stdio::null()).output().unwrap()
}

#[test]
fn key_slots_are_added_listed_and_removed_from_the_cli_but_never_the_last() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("enc");
    let old = [("VAULTSTORE_PASSPHRASE", "first passphrase")];
    let new = [("VAULTSTORE_PASSPHRASE", "second passphrase")];
    let ok = |o: std::process::Output| {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    ok(cli(&dir, &["init", "--encrypt", "--kdf-memory", "1"], &old));
    let msg = tmp.path().join("m.eml");
    std::fs::write(&msg, b"Subject: cli\r\n\r\nbody\r\n").unwrap();
    let id = ok(cli(&dir, &["put", msg.to_str().unwrap()], &old));
    let id = id.split_whitespace().next().unwrap().to_string();
    ok(cli(
        &dir,
        &["key", "add", "--kdf-memory", "1"],
        &[old[0], ("VAULTSTORE_NEW_PASSPHRASE", "second passphrase")],
    ));
    // No new passphrase and no terminal: refused, naming where it can come from.
    let no_new = cli(&dir, &["key", "add", "--kdf-memory", "1"], &old);
    assert_eq!(no_new.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&no_new.stderr);
    assert!(stderr.contains("VAULTSTORE_NEW_PASSPHRASE"), "{stderr}");
    // A third slot from files: the new passphrase from --new-passphrase-file,
    // the one that authorises it from --passphrase-file (a trailing newline
    // is not part of either).
    let (auth, third) = (tmp.path().join("auth"), tmp.path().join("third"));
    std::fs::write(&auth, "first passphrase\n").unwrap();
    std::fs::write(&third, "third passphrase\n").unwrap();
    let (auth, third) = (auth.to_str().unwrap(), third.to_str().unwrap());
    ok(cli(
        &dir,
        &[
            "key",
            "add",
            "--kdf-memory",
            "1",
            "--passphrase-file",
            auth,
            "--new-passphrase-file",
            third,
        ],
        &[],
    ));
    let listed: serde_json::Value =
        serde_json::from_str(&ok(cli(&dir, &["key", "list", "--json"], &[]))).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 3, "{listed}");
    let by_file = tmp.path().join("by-file");
    std::fs::write(&by_file, "third passphrase").unwrap();
    assert_eq!(
        ok(cli(
            &dir,
            &["get", &id, "--passphrase-file", by_file.to_str().unwrap()],
            &[]
        ))
        .as_bytes(),
        b"Subject: cli\r\n\r\nbody\r\n"
    );
    ok(cli(&dir, &["key", "remove", "--slot", "0"], &new));
    let refused = cli(&dir, &["get", &id], &old);
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("wrong passphrase"), "{stderr}");
    assert_eq!(
        ok(cli(&dir, &["get", &id], &new)).as_bytes(),
        b"Subject: cli\r\n\r\nbody\r\n"
    );
    ok(cli(&dir, &["key", "remove", "--slot", "2"], &new));
    let last = cli(&dir, &["key", "remove", "--slot", "1"], &new);
    assert_eq!(last.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&last.stderr).contains("last"));
    let no_key = cli(&dir, &["stat"], &[]);
    assert_eq!(no_key.status.code(), Some(2));
}

#[test]
fn a_flipped_byte_in_the_active_segment_is_damage_when_read_never_data() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("enc");
    let store = init_encrypted(&dir, 1 << 20);
    let ids: Vec<SavesetId> = (0..4)
        .map(|i| store.put(&incompressible(i, 2000)).unwrap().id)
        .collect();
    drop(store);
    let path = dir.join("p0").join(format!("segment-{:010}.active", 1));
    let second = 64 + (64 + 72 + 2000);
    // In the content: the open reads only the ids of savesets, so the
    // record stays listed, and every read of it is damage.
    let content = second + 64 + 24 + 32 + 500;
    tamper(&path, content, Some(second));
    let store = open_with(&dir, PASS).unwrap();
    match store.get(&ids[1]) {
        Err(Error::Corrupt {
            segment, offset, ..
        }) => assert_eq!((segment, offset), (1, second)),
        other => panic!("a damaged record read as {other:?}"),
    }
    assert!(
        damage_at(&store, 1, second),
        "{:?}",
        store.verify().problems
    );
    store.get(&ids[0]).unwrap();
    drop(store);
    tamper(&path, content, Some(second));
    // In the sealed id: the scan at open stops there, as at a torn tail
    // (segment.md, "Recovery"): the rest is cut off into quarantine and
    // reported; nothing of it is returned as data.
    tamper(&path, second + 64 + 30, Some(second));
    let store = open_with(&dir, PASS).unwrap();
    let report = store.recovery_report();
    assert!(
        report.iter().any(|p| p.segment == 1 && p.offset == second),
        "{report:?}"
    );
    assert!(!store.has(&ids[1]) && !store.has(&ids[3]));
    store.get(&ids[0]).unwrap();
}

// ------------------------------------------------------------ history

/// Archive one message, run the maintenance processes, then cut the last
/// history entry: the reopened store shows that run as interrupted.
fn history_with_an_interrupted_run(dir: &Path, open: impl Fn() -> Store) -> Vec<u8> {
    {
        let store = open();
        store.put(b"Subject: history\r\n\r\nbody\r\n").unwrap();
        for _ in store.maintain() {}
    }
    let log = dir.join("history.log");
    let full = std::fs::read(&log).unwrap();
    std::fs::write(&log, &full[..full.len() - 5]).unwrap();
    assert!(common::newest_run_interrupted(&open()) >= 6);
    std::fs::read(&log).unwrap()
}

#[test]
fn the_history_log_is_sealed_and_a_forged_entry_ends_it() {
    let tmp = tempfile::tempdir().unwrap();
    let plain_dir = tmp.path().join("plain");
    drop(Store::init(&plain_dir, &InitOptions::default()).unwrap());
    let in_clear = history_with_an_interrupted_run(&plain_dir, || Store::open(&plain_dir).unwrap());
    let dir = tmp.path().join("enc");
    drop(init_encrypted(&dir, 1 << 20));
    let sealed = history_with_an_interrupted_run(&dir, || open_with(&dir, PASS).unwrap());
    for text in ["interrupted", "Failed to process"] {
        let found = |b: &[u8]| b.windows(text.len()).any(|w| w == text.as_bytes());
        assert!(found(&in_clear), "{text:?} not in the plain history");
        assert!(!found(&sealed), "{text:?} in the sealed history");
    }
    // The first entry forged: its crc fixed up, its seal broken. The log
    // ends before it; the store opens and starts the history again.
    let entries = open_with(&dir, PASS).unwrap().history_since(0).len();
    let mut forged = sealed.clone();
    forged[16 + 8 + 40] ^= 1;
    let len = u32::from_le_bytes(forged[16..20].try_into().unwrap()) as usize;
    let crc = crc32fast::hash(&forged[24..24 + len]);
    forged[20..24].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(dir.join("history.log"), &forged).unwrap();
    let store = open_with(&dir, PASS).unwrap();
    assert!(entries > 0);
    assert_eq!(store.history_since(0).len(), 0);
    assert!(store.has(&SavesetId::of(b"Subject: history\r\n\r\nbody\r\n")));
}

// ------------------------------------------------------------ backup mode

/// Turn backup mode on, archive `messages` (each under two owners, so
/// references with and without content) and put one more: the queue's
/// bytes, and the ids.
fn queue_of(store: &Store, dir: &Path, messages: &[Vec<u8>]) -> (Vec<u8>, Vec<SavesetId>) {
    store.backup_mode(Some(true)).unwrap();
    let mut ids = archive_corpus(store, messages);
    ids.push(
        store
            .put(b"Subject: a put in backup mode\r\n\r\nbody\r\n")
            .unwrap()
            .id,
    );
    (std::fs::read(dir.join("message-cache/queue")).unwrap(), ids)
}

/// Where the queue's second entry begins (its header is 36 bytes, an
/// entry's length u32 is followed by 8 more bytes of header and crc).
fn second_entry(queue: &[u8]) -> usize {
    36 + 12 + u32::from_le_bytes(queue[36..40].try_into().unwrap()) as usize
}

#[test]
fn backup_mode_on_an_encrypted_store_seals_the_message_cache_and_reads_it_back() {
    let Some(messages) = common::corpus_messages() else {
        return;
    };
    let messages = &messages[..messages.len().min(40)];
    let tmp = tempfile::tempdir().unwrap();
    let (plain_dir, dir) = (tmp.path().join("plain"), tmp.path().join("enc"));
    let plain = Store::init(&plain_dir, &InitOptions::default()).unwrap();
    let (in_clear, _) = queue_of(&plain, &plain_dir, messages);
    let store = init_encrypted(&dir, 1 << 20);
    let (sealed, ids) = queue_of(&store, &dir, messages);
    drop(store);
    let total: usize = messages.iter().map(Vec::len).sum();
    assert!(sealed.len() > total / 4, "the content is in the queue");

    // No message, owner, item or plain id in the sealed queue; the same
    // needles are in the plain store's queue, so the check can fail.
    let mut needles: Vec<Vec<u8>> = messages
        .iter()
        .flat_map(|m| windows(m).into_iter().map(<[u8]>::to_vec))
        .collect();
    for i in 0..messages.len() + 1 {
        needles.push(owner_name(i).into_bytes());
        needles.push(item_name(i).into_bytes());
    }
    needles.extend(ids.iter().map(|id| id.0.to_vec()));
    for n in &needles {
        assert!(
            memchr::memmem::find(&sealed, n).is_none(),
            "the sealed queue holds {:?}",
            String::from_utf8_lossy(n)
        );
    }
    let found = needles
        .iter()
        .filter(|n| memchr::memmem::find(&in_clear, n).is_some())
        .count();
    assert!(
        found > needles.len() / 5,
        "{found} of {} in the clear",
        needles.len()
    );

    // Reopened, the pending items read back from the sealed queue; then
    // processed into the segments, and the queue is gone.
    let store = open_with(&dir, PASS).unwrap();
    let status = store.backup_mode(None).unwrap();
    assert!(status.on);
    assert_eq!(status.cached_items as usize, 2 * messages.len() + 1);
    let check = |store: &Store| {
        for (i, m) in messages.iter().enumerate() {
            assert_eq!(&store.get(&ids[i]).unwrap(), m, "message {i}");
            assert!(store.refs(&ids[i]).unwrap().len() >= 2, "message {i}");
        }
    };
    check(&store);
    store.backup_mode(Some(false)).unwrap();
    store.maintain();
    assert!(!dir.join("message-cache/queue").exists());
    assert_eq!(store.backup_mode(None).unwrap().cached_items, 0);
    check(&store);
    assert!(store.verify().is_clean(), "{:?}", store.verify().problems);
    drop(store);
    check(&open_with(&dir, PASS).unwrap());
}

#[test]
fn a_forged_moved_or_unsealed_queue_entry_is_refused_and_nothing_is_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("enc");
    let store = init_encrypted(&dir, 1 << 20);
    let messages: Vec<Vec<u8>> = (0..3).map(|k| incompressible(k, 3000)).collect();
    let (good, ids) = queue_of(&store, &dir, &messages);
    drop(store);
    let queue = dir.join("message-cache/queue");
    let refused = |bytes: &[u8], why: &str| {
        std::fs::write(&queue, bytes).unwrap();
        let e = open_with(&dir, PASS).err().expect(why).to_string();
        assert!(e.contains("message-cache"), "{why}: {e}");
        assert_eq!(
            std::fs::read(&queue).unwrap(),
            bytes,
            "{why}: the queue is kept"
        );
        e
    };
    // A byte of the first entry flipped, its crc fixed up.
    let second = second_entry(&good);
    let mut forged = good.clone();
    forged[36 + 8 + 30] ^= 1;
    let crc = crc32fast::hash(&forged[36..second - 4]);
    forged[second - 4..second].copy_from_slice(&crc.to_le_bytes());
    let e = refused(&forged, "a forged entry");
    assert!(e.contains("offset 36"), "{e}");
    // The first entry dropped: the second, whole, now at its offset.
    let mut moved = good[..36].to_vec();
    moved.extend_from_slice(&good[second..]);
    refused(&moved, "a moved entry");
    // The header says version 1 (in the clear) in an encrypted store.
    let mut unsealed = good.clone();
    unsealed[8..12].copy_from_slice(&1u32.to_le_bytes());
    let crc = crc32fast::hash(&unsealed[..32]);
    unsealed[32..36].copy_from_slice(&crc.to_le_bytes());
    let e = refused(&unsealed, "a queue in the clear");
    assert!(e.contains("version 1"), "{e}");
    // The good queue opens, and every item reads back.
    std::fs::write(&queue, &good).unwrap();
    let store = open_with(&dir, PASS).unwrap();
    for (id, m) in ids.iter().zip(&messages) {
        assert_eq!(&store.get(id).unwrap(), m);
    }
}

// ------------------------------------------------------------ sync caches

/// What a store answers about the corpus: every message, its references,
/// and each owner's items.
fn answers(store: &Store, ids: &[SavesetId], messages: &[Vec<u8>]) -> String {
    let mut out = String::new();
    for (id, m) in ids.iter().zip(messages) {
        assert_eq!(&store.get(id).unwrap(), m);
        out.push_str(&format!("{id} {:?}\n", store.refs(id).unwrap()));
    }
    for o in store.owners().unwrap() {
        let items = store.items(&o.owner, None, 10_000).unwrap();
        out.push_str(&format!("{o:?} {items:?}\n"));
    }
    out
}

fn checkpoint_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("sync-cache"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

#[test]
fn an_encrypted_store_opens_from_sealed_sync_caches_and_a_forged_one_falls_back() {
    let Some(messages) = common::corpus_messages() else {
        return;
    };
    let messages = &messages[..messages.len().min(80)];
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("enc");
    let store = init_encrypted(&dir, 256 << 10);
    let ids = archive_corpus(&store, messages);
    store.delete(&owner_name(3), Some(&item_name(3))).unwrap();
    store.seal().unwrap();
    let seq = store.run_request(&ProcessRequest::Checkpoint).unwrap()["checkpoint_sequence"]
        .as_u64()
        .unwrap();
    let before = answers(&store, &ids, messages);
    drop(store);

    // Nothing of the corpus in the sealed files; the plain store's files
    // of the same content show its ids, owners and items.
    let plain_dir = tmp.path().join("plain");
    let plain = Store::init(&plain_dir, &InitOptions::default()).unwrap();
    archive_corpus(&plain, messages);
    plain.run_request(&ProcessRequest::Checkpoint).unwrap();
    drop(plain);
    let mut needles: Vec<Vec<u8>> = (0..messages.len())
        .flat_map(|i| [owner_name(i).into_bytes(), item_name(i).into_bytes()])
        .collect();
    needles.extend(ids.iter().map(|id| id.0.to_vec()));
    let found_in = |dir: &Path| {
        let files: Vec<Vec<u8>> = checkpoint_files(dir)
            .iter()
            .map(|f| std::fs::read(f).unwrap())
            .collect();
        needles
            .iter()
            .filter(|n| files.iter().any(|b| memchr::memmem::find(b, n).is_some()))
            .count()
    };
    assert_eq!(found_in(&dir), 0);
    assert_eq!(found_in(&plain_dir), needles.len());

    // Opened from the generation, the store answers exactly as before.
    let store = open_with(&dir, PASS).unwrap();
    assert_eq!(store.stat().checkpoint_sequence, seq);
    assert_eq!(answers(&store, &ids, messages), before);
    drop(store);

    // A byte of the messages file's last block forged: the table list
    // there no longer opens, the open replays the segments and says why.
    let files = checkpoint_files(&dir);
    let messages_file = files
        .iter()
        .find(|f| f.to_string_lossy().contains("messages-"))
        .unwrap();
    let mut bytes = std::fs::read(messages_file).unwrap();
    let dir_at = u64::from_le_bytes(bytes[bytes.len() - 32..][..8].try_into().unwrap()) as usize;
    // The table list's tag is the last 16 bytes before the directory.
    bytes[dir_at - 20] ^= 1;
    std::fs::write(messages_file, &bytes).unwrap();
    let store = open_with(&dir, PASS).unwrap();
    assert_eq!(store.stat().checkpoint_sequence, 0);
    let failed: Vec<String> = store
        .history_since(0)
        .into_iter()
        .filter(|e| e.status.to_string() == "Failed to read data from cache")
        .filter_map(|e| e.detail)
        .collect();
    assert!(
        failed.iter().any(|d| d.contains("does not authenticate")),
        "{failed:?}"
    );
    assert_eq!(answers(&store, &ids, messages), before);
}
