//! Import of real mail exports and export back, byte for byte.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use vaultstore::import::{ImportOptions, export, import};
use vaultstore::{InitOptions, SavesetId, Store};

fn workload(dir: &Path, size_mb: u32, seed: u32) -> Option<serde_json::Value> {
    let src = common::corpus_dir()?;
    let script = src.parent()?.join("mkworkload");
    let out = Command::new("python3")
        .arg(&script)
        .arg("--src")
        .arg(&src)
        .arg("--out")
        .arg(dir)
        .args([
            "--size-mb",
            &size_mb.to_string(),
            "--seed",
            &seed.to_string(),
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "SKIP: mkworkload failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    serde_json::from_slice(&std::fs::read(dir.join("MANIFEST.json")).ok()?).ok()
}

#[test]
fn a_generated_organisation_imports_with_exact_counts_and_exports_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let wl = dir.path().join("wl");
    let Some(manifest) = workload(&wl, 6, 11) else {
        return;
    };
    std::fs::remove_file(wl.join("MANIFEST.json")).unwrap();
    let store = Store::init(dir.path().join("s"), &InitOptions::default()).unwrap();
    let opts = ImportOptions {
        owner_from_folder: true,
        ..ImportOptions::default()
    };
    let r = import(&store, &wl, &opts).unwrap();
    assert!(r.skipped.is_empty(), "{:?}", r.skipped);
    assert_eq!(r.messages, manifest["deliveries"].as_u64().unwrap());
    assert_eq!(r.references, r.messages);
    // Exactly one copy of each distinct message is stored.
    assert_eq!(
        store.stat().savesets,
        manifest["unique_messages"].as_u64().unwrap()
    );
    assert_eq!(
        store.stat().logical_bytes,
        manifest["unique_bytes"].as_u64().unwrap()
    );
    assert_eq!(r.new_content, manifest["unique_messages"].as_u64().unwrap());
    // Mailboxes that received at least one message.
    let folders = std::fs::read_dir(&wl)
        .unwrap()
        .filter(|e| {
            std::fs::read_dir(e.as_ref().unwrap().path()).is_ok_and(|mut d| d.next().is_some())
        })
        .count();
    assert_eq!(store.owners().unwrap().len(), folders);
    // Importing again changes nothing.
    let again = import(&store, &wl, &opts).unwrap();
    assert_eq!((again.references, again.new_content), (0, 0));

    // Export every mailbox and compare file by file with the workload.
    for owner in store.owners().unwrap() {
        let out = dir.path().join("export").join(&owner.owner);
        let e = export(&store, &owner.owner, &out).unwrap();
        assert_eq!(e.messages, owner.items);
        let originals: BTreeSet<SavesetId> = std::fs::read_dir(wl.join(&owner.owner))
            .unwrap()
            .map(|f| SavesetId::of(&std::fs::read(f.unwrap().path()).unwrap()))
            .collect();
        let exported: BTreeSet<SavesetId> = std::fs::read_dir(&out)
            .unwrap()
            .map(|f| SavesetId::of(&std::fs::read(f.unwrap().path()).unwrap()))
            .collect();
        assert_eq!(exported, originals, "mailbox {}", owner.owner);
    }
}

#[test]
fn the_real_corpus_imports_its_mbox_messages_split_and_reports_bad_files() {
    let Some(src) = common::corpus_dir() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path().join("s"), &InitOptions::default()).unwrap();
    let opts = ImportOptions {
        owner: Some("archive".into()),
        ..ImportOptions::default()
    };
    let r = import(&store, &src.join("mbox"), &opts).unwrap();
    // Both mbox files of the corpus: their `From ` separators count the messages.
    let expected: usize = std::fs::read_dir(src.join("mbox"))
        .unwrap()
        .map(|f| {
            let b = std::fs::read(f.unwrap().path()).unwrap();
            b.split(|&c| c == b'\n')
                .filter(|l| l.starts_with(b"From "))
                .count()
        })
        .sum();
    assert_eq!(r.messages as usize, expected);
    for item in store.items("archive", None, usize::MAX).unwrap() {
        assert!(item.item.contains(".mbox#"), "{}", item.item);
    }
    // An unreadable and an empty file are reported and skipped; the rest goes in.
    let mixed = dir.path().join("mixed");
    std::fs::create_dir_all(&mixed).unwrap();
    std::fs::write(mixed.join("good.eml"), b"Subject: ok\r\n\r\nfine\r\n").unwrap();
    std::fs::write(mixed.join("empty.eml"), b"").unwrap();
    std::fs::write(mixed.join("bad.mbox"), b"no separator at all\n").unwrap();
    let r = import(&store, &mixed, &opts).unwrap();
    assert_eq!(r.messages, 1);
    assert_eq!(r.skipped.len(), 2, "{:?}", r.skipped);
}

/// A message as Thunderbird, `formail` and mail-gem's fixtures write it: a
/// `From ` line first, then the real message (from the corpus when present).
fn from_line_message() -> Vec<u8> {
    let body = common::corpus_messages()
        .and_then(|m| m.into_iter().next())
        .unwrap_or_else(|| common::message(7, 4000));
    let mut m = b"From alice@example.org Mon Jan  1 00:00:00 2024\n".to_vec();
    m.extend_from_slice(&body);
    m
}

#[test]
fn maildir_and_eml_files_starting_with_a_from_line_are_stored_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path().join("s"), &InitOptions::default()).unwrap();
    let msg = from_line_message();
    let src = dir.path().join("export");
    for sub in ["Maildir/cur", "Maildir/new", "Maildir/tmp", "Archive.mbox"] {
        std::fs::create_dir_all(src.join(sub)).unwrap();
    }
    std::fs::write(src.join("Maildir/cur/1700000000.1.host:2,S"), &msg).unwrap();
    std::fs::write(
        src.join("Maildir/new/1700000001.2.host"),
        &msg[..msg.len() - 1],
    )
    .unwrap();
    std::fs::write(src.join("saved.eml"), [&msg[..], b"\n"].concat()).unwrap();
    // No telling name or place: stored whole, with a warning.
    std::fs::write(src.join("Unsorted"), [&msg[..], b"\r\n"].concat()).unwrap();
    // mbox by name, by its Apple Mail folder, and by a Thunderbird index beside it.
    let two = [&msg[..], b"\n", &msg[..], b"x\n"].concat();
    std::fs::write(src.join("old.mbox"), &two).unwrap();
    std::fs::write(src.join("Archive.mbox/mbox"), &two).unwrap();
    std::fs::write(src.join("Inbox"), &two).unwrap();
    std::fs::write(
        src.join("Inbox.msf"),
        b"// <!-- <mdb:mork:z v=\"1.4\"/> -->",
    )
    .unwrap();
    let opts = ImportOptions {
        owner: Some("carol".into()),
        ..ImportOptions::default()
    };
    let r = import(&store, &src, &opts).unwrap();
    assert!(r.skipped.is_empty(), "{:?}", r.skipped);
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    assert!(r.warnings[0].path.ends_with("Unsorted"), "{:?}", r.warnings);
    let items: std::collections::BTreeMap<String, String> = store
        .items("carol", None, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|i| (i.item, i.id))
        .collect();
    let whole = [
        "Maildir/cur/1700000000.1.host:2,S",
        "Maildir/new/1700000001.2.host",
        "saved.eml",
        "Unsorted",
    ];
    for name in whole {
        let file = std::fs::read(src.join(name)).unwrap();
        let id: SavesetId = items[name].parse().unwrap();
        assert_eq!(
            store.get(&id).unwrap(),
            file,
            "{name} is stored byte for byte"
        );
    }
    for mbox in ["old.mbox", "Archive.mbox/mbox", "Inbox"] {
        assert!(items.contains_key(&format!("{mbox}#1")), "{items:?}");
        assert!(items.contains_key(&format!("{mbox}#2")), "{items:?}");
    }
    assert_eq!(items.len(), whole.len() + 6, "{items:?}");

    // --format mbox splits the file that auto stored whole; --format eml
    // keeps an mbox by name whole.
    let forced = ImportOptions {
        owner: Some("dave".into()),
        format: "mbox".parse().unwrap(),
        ..ImportOptions::default()
    };
    let r = import(&store, &src.join("Unsorted"), &forced).unwrap();
    assert_eq!((r.messages, r.warnings.len()), (1, 0));
    assert!(
        store.items("dave", None, 10).unwrap()[0]
            .item
            .ends_with("#1")
    );
    let whole_files = ImportOptions {
        owner: Some("erin".into()),
        format: "eml".parse().unwrap(),
        ..ImportOptions::default()
    };
    let r = import(&store, &src.join("old.mbox"), &whole_files).unwrap();
    assert_eq!(r.messages, 1);
    assert!(
        "mailbox"
            .parse::<vaultstore::import::InputFormat>()
            .is_err()
    );
}

/// The walk takes each entry's kind from the directory listing: a message
/// still in a Maildir's tmp is left out, and symbolic links to a message
/// file and to a folder are followed as their targets.
#[test]
fn the_walk_skips_maildir_tmp_and_follows_symbolic_links() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path().join("s"), &InitOptions::default()).unwrap();
    let msg = from_line_message();
    let src = dir.path().join("export");
    let elsewhere = dir.path().join("elsewhere");
    for sub in ["Maildir/cur", "Maildir/new", "Maildir/tmp"] {
        std::fs::create_dir_all(src.join(sub)).unwrap();
    }
    std::fs::create_dir_all(elsewhere.join("folder")).unwrap();
    std::fs::write(src.join("Maildir/cur/1.host:2,S"), &msg).unwrap();
    std::fs::write(src.join("Maildir/tmp/2.host"), b"Subject: half\r\n").unwrap();
    std::fs::write(elsewhere.join("linked.eml"), &msg).unwrap();
    std::fs::write(elsewhere.join("folder/inner.eml"), &msg).unwrap();
    std::os::unix::fs::symlink(elsewhere.join("linked.eml"), src.join("linked.eml")).unwrap();
    std::os::unix::fs::symlink(elsewhere.join("folder"), src.join("folder")).unwrap();
    let opts = ImportOptions {
        owner: Some("dave".into()),
        ..ImportOptions::default()
    };
    let r = import(&store, &src, &opts).unwrap();
    assert!(r.skipped.is_empty(), "{:?}", r.skipped);
    let items: Vec<String> = store
        .items("dave", None, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|i| i.item)
        .collect();
    assert_eq!(
        items,
        ["Maildir/cur/1.host:2,S", "folder/inner.eml", "linked.eml"]
    );
}
