//! The sync caches' checkpoints (format-spec/checkpoint.md): a store opened
//! from a generation answers exactly as before it was closed and as a full
//! replay of its segments, whatever happened after the checkpoint
//! (catalog changes, backup marks, compactions, crashes); a damaged or
//! foreign generation is not used and loses nothing.

mod common;

use std::path::Path;

use common::Rng;
use vaultstore::jobs::schedule::ProcessRequest;
use vaultstore::{InitOptions, OpenOptions, SavesetId, Store};

/// Everything a client can ask, as one text: counters, owners, items,
/// trash, references of every saveset, segments and their dead counts,
/// pending counters.
fn fingerprint(s: &Store) -> String {
    try_fingerprint(s).unwrap()
}

/// The fingerprint, or the first error a read met (a damaged block of a
/// mapped generation).
fn try_fingerprint(s: &Store) -> Result<String, String> {
    let text = |e: vaultstore::Error| e.to_string();
    let st = s.stat();
    let mut out = format!(
        "savesets {} refs {} trashed {} owners {} dead {} {} parts {} {} logical {} stored {}\n",
        st.savesets,
        st.references,
        st.trashed_references,
        st.owners,
        st.dead_savesets,
        st.dead_bytes,
        st.parts,
        st.part_bytes,
        st.logical_bytes,
        st.stored_bytes
    );
    for o in s.owners().map_err(text)? {
        out.push_str(&format!("{o:?}\n"));
        for i in s.items(&o.owner, None, usize::MAX).map_err(text)? {
            out.push_str(&format!("  {i:?}\n"));
        }
    }
    out.push_str(&format!("trash {:?}\n", s.trash().map_err(text)?));
    let mut ids = s.ids().map_err(text)?;
    ids.sort_by_key(|id| id.0);
    for id in ids {
        out.push_str(&format!("{id} {:?}\n", s.refs(&id).map_err(text)?));
    }
    for seg in s.segments() {
        out.push_str(&format!(
            "segment {} {:?} bytes {} savesets {} logical {} dead {} {} parts {} bit {}\n",
            seg.id,
            seg.state,
            seg.bytes,
            seg.savesets,
            seg.logical_bytes,
            seg.dead_savesets,
            seg.dead_bytes,
            seg.parts,
            seg.archive_bit
        ));
    }
    out.push_str(&format!("{:?}\n", s.pending()));
    Ok(out)
}

fn checkpoint(s: &Store) -> u64 {
    let out = s.run_request(&ProcessRequest::Checkpoint).unwrap();
    out["checkpoint_sequence"].as_u64().unwrap()
}

fn open(dir: &Path) -> Store {
    Store::open(dir).unwrap()
}

fn open_replaying(dir: &Path) -> Store {
    Store::open_with(
        dir,
        OpenOptions {
            use_sync_cache: false,
            ..OpenOptions::default()
        },
    )
    .unwrap()
}

/// Contents: real messages when the corpus is there (split ones among
/// them), generated ones otherwise.
fn contents() -> Vec<Vec<u8>> {
    match common::corpus_messages() {
        Some(m) => {
            // Split messages (attachments stored as parts) and plain ones.
            let (split, plain): (Vec<_>, Vec<_>) = m
                .into_iter()
                .filter(|b| b.len() < 400_000)
                .partition(|b| vaultstore::parts::split(b).is_some());
            split
                .into_iter()
                .take(30)
                .chain(plain.into_iter().take(30))
                .collect()
        }
        None => (0..60)
            .map(|n| common::message(n, 300 + n as usize * 40))
            .collect(),
    }
}

const OWNERS: &[&str] = &["alice@example.com", "bob@example.com", "journal"];

/// One random change to the store.
fn step(s: &Store, rng: &mut Rng, msgs: &[Vec<u8>], dir: &Path) {
    let owner = OWNERS[rng.below(OWNERS.len() as u64) as usize];
    let item = format!("<{}@mail>", rng.below(40));
    let msg = &msgs[rng.below(msgs.len() as u64) as usize];
    match rng.below(14) {
        0..=4 => {
            let _ = s.archive(owner, &item, msg, rng.below(4) == 0);
        }
        5 => {
            let _ = s.put(msg);
        }
        6 => {
            let _ = s.delete(owner, Some(&item));
        }
        7 => {
            let _ = s.restore(owner, Some(&item));
        }
        8 => {
            let _ = s.purge_trash(std::time::Duration::ZERO, None, None);
        }
        9 => {
            let _ = s.hold(owner, None, rng.below(3) == 0);
        }
        10 => {
            let ids = s.ids().unwrap();
            let n = ids.len().min(5);
            let _ = s.mark_indexed(&ids[..n]);
        }
        11 => {
            let _ = s.seal();
        }
        12 => {
            for b in s.backup_list().unwrap().into_iter().take(2) {
                s.backup_mark(b.segment, &b.checksum).unwrap();
            }
        }
        _ => {
            let _ = s.defrag(0.01);
            let _ = dir;
        }
    }
}

/// A new store in `dir` with `items` messages of `len` bytes archived by one owner.
fn store_of(dir: &Path, items: u64, len: usize) -> Store {
    let s = Store::init(dir, &small_segments()).unwrap();
    for n in 0..items {
        s.archive(
            "owner",
            &format!("<{n}@x>"),
            &common::message(n, len),
            false,
        )
        .unwrap();
    }
    s
}

fn small_segments() -> InitOptions {
    InitOptions {
        segment_bytes: 64 << 10,
        ..InitOptions::default()
    }
}

/// Random changes with checkpoints and reopens between them: after each
/// reopen the store answers as before closing, as a full replay does, and
/// the resynchronization finds the two states equal entry by entry.
#[test]
fn reopening_from_a_checkpoint_answers_as_before() {
    let msgs = contents();
    let seed = common::seed();
    for round in 0..6u64 {
        let mut rng = Rng(seed ^ round.wrapping_mul(0x9e37_79b9));
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("s");
        let mut s = Store::init(&dir, &small_segments()).unwrap();
        let mut used = 0;
        for k in 0..12 {
            for _ in 0..(5 + rng.below(30)) {
                step(&s, &mut rng, &msgs, &dir);
            }
            if rng.below(3) > 0 && std::env::var("NO_CKPT").is_err() {
                checkpoint(&s);
            }
            if k % 2 == 1 {
                // Changes after the checkpoint, then a reopen.
                for _ in 0..rng.below(20) {
                    step(&s, &mut rng, &msgs, &dir);
                }
            }
            let before = fingerprint(&s);
            drop(s);
            s = open(&dir);
            let st = s.stat();
            if st.checkpoint_sequence > 0 {
                used += 1;
            }
            let after = fingerprint(&s);
            if after != before {
                for (a, b) in after.lines().zip(before.lines()).filter(|(a, b)| a != b) {
                    eprintln!("after:  {a}\nbefore: {b}");
                }
            }
            assert_eq!(
                after, before,
                "seed {seed} round {round} step {k}: reopened from checkpoint {} differs",
                st.checkpoint_sequence
            );
            let replayed = fingerprint(&open_replaying_copy(&dir));
            for (a, b) in replayed.lines().zip(before.lines()).filter(|(a, b)| a != b) {
                eprintln!("replayed: {a}\nbefore:   {b}");
            }
            assert_eq!(replayed, before, "full replay differs");
            assert!(
                s.full_resynchronization().unwrap().contains("agree"),
                "resynchronization disagrees"
            );
        }
        let st = s.stat();
        eprintln!(
            "round {round}: {used} of 12 reopens from a checkpoint; {} savesets, {} parts, {} segments",
            st.savesets, st.parts, st.segments
        );
        assert!(
            used > 0 || std::env::var("NO_CKPT").is_ok(),
            "no reopen used a checkpoint"
        );
    }
}

/// A full replay of a copy of the store (the original stays open).
fn open_replaying_copy(dir: &Path) -> Store {
    let copy = dir.with_extension("copy");
    let _ = std::fs::remove_dir_all(&copy);
    common::copy_dir(dir, &copy);
    open_replaying(&copy)
}

/// The generation is used: no footer of a covered segment is read.
#[test]
fn an_open_from_a_checkpoint_skips_the_covered_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let s = store_of(&dir, 400, 2000);
    let seq = checkpoint(&s);
    assert!(seq > 0);
    let before = fingerprint(&s);
    drop(s);
    // Damage every sealed segment's footer: an open that read one would
    // report it (and scan instead).
    for e in std::fs::read_dir(dir.join("p0")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "sealed") {
            let len = std::fs::metadata(&p).unwrap().len();
            let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
            use std::os::unix::fs::FileExt;
            f.write_all_at(b"XXXX", len - 40).unwrap();
        }
    }
    let s = open(&dir);
    assert_eq!(s.stat().checkpoint_sequence, seq);
    assert!(s.recovery_report().is_empty(), "{:?}", s.recovery_report());
    assert_eq!(fingerprint(&s), before);
    let id = SavesetId::of(&common::message(7, 2000));
    assert_eq!(s.get(&id).unwrap(), common::message(7, 2000));
}

/// Every byte of every file of a generation flipped in turn: the open falls
/// back to the full replay and answers the same. The saveset index is
/// mapped and checked block by block as lookups reach it: a flip there is
/// reported by the lookup (naming the file), the generation is dropped,
/// and the next open replays.
#[test]
fn a_damaged_checkpoint_falls_back_to_the_full_replay() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let s = store_of(&dir, 600, 900);
    s.delete("owner", Some("<3@x>")).unwrap();
    // Content larger than a segment seals the active one: the open then
    // looks up few records itself, and lookups reach most index blocks
    // first after it.
    let mut rng = Rng(common::seed() ^ 1);
    let big: Vec<u8> = (0..80_000).map(|_| rng.below(256) as u8).collect();
    s.archive("owner", "<big@x>", &big, false).unwrap();
    checkpoint(&s);
    let before = fingerprint(&s);
    drop(s);
    let cache = dir.join("sync-cache");
    let files: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 3);
    let originals: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    let mut rng = Rng(common::seed());
    let mut lazily_found = std::collections::BTreeMap::new();
    for (f, original) in files.iter().zip(&originals) {
        let kind = f
            .file_name()
            .unwrap()
            .to_string_lossy()
            .split('-')
            .next()
            .unwrap()
            .to_string();
        for _ in 0..24 {
            let pos = rng.below(original.len() as u64) as usize;
            let mut bad = original.clone();
            bad[pos] ^= 1 << rng.below(8);
            // A generation found damaged is removed: put it back first.
            for (g, bytes) in files.iter().zip(&originals) {
                std::fs::write(g, bytes).unwrap();
            }
            std::fs::write(f, &bad).unwrap();
            let s = open_read_only(&dir);
            if s.stat().checkpoint_sequence > 0 {
                // Used: every read answers as before, or the first read of
                // the damaged block fails, naming the file, and the cache
                // is gone.
                let why = format!("{} flipped at {pos}: generation used", f.display());
                match try_fingerprint(&s) {
                    Ok(fp) => assert_eq!(fp, before, "{why}"),
                    Err(e) => {
                        assert!(e.contains("sync cache"), "{e}");
                        drop(s);
                        assert!(std::fs::read_dir(&cache).unwrap().next().is_none(), "{why}");
                        let s = open_read_only(&dir);
                        assert_eq!(s.stat().checkpoint_sequence, 0, "{why}");
                        assert_eq!(fingerprint(&s), before);
                        *lazily_found.entry(kind.clone()).or_insert(0) += 1;
                    }
                }
                continue;
            }
            assert_eq!(fingerprint(&s), before);
        }
    }
    for (g, bytes) in files.iter().zip(&originals) {
        std::fs::write(g, bytes).unwrap();
    }
    // The index and the catalog are mapped: flips the open cannot see
    // are found by reads, in each.
    let lazy: Vec<&str> = lazily_found.keys().map(String::as_str).collect();
    assert_eq!(lazy, ["files", "messages"], "{lazily_found:?}");
    assert!(open(&dir).stat().checkpoint_sequence > 0);
}

fn open_read_only(dir: &Path) -> Store {
    Store::open_with(
        dir,
        OpenOptions {
            read_only: true,
            ..OpenOptions::default()
        },
    )
    .unwrap()
}

/// A generation an open cannot use is recorded in the history as "Failed to
/// read data from cache", a rebuild is due at once, and the rebuilt
/// generation is used by the next open.
#[test]
fn a_failed_checkpoint_is_recorded_and_rebuilt() {
    use vaultstore::jobs::ProcessType;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let s = store_of(&dir, 40, 900);
    let seq = checkpoint(&s);
    assert!(!s.due_processes(0).contains(&ProcessType::MessageSyncCache));
    drop(s);
    let catalog = dir
        .join("sync-cache")
        .join(format!("messages-{seq:020}.ckpt"));
    let mut bytes = std::fs::read(&catalog).unwrap();
    // The directory's checksum, in the trailer: the open checks the frame
    // of every file (the tables' blocks only as reads reach them).
    let dir_crc = bytes.len() - 20;
    bytes[dir_crc] ^= 0x40;
    std::fs::write(&catalog, &bytes).unwrap();

    let s = open(&dir);
    assert_eq!(s.stat().checkpoint_sequence, 0);
    let failed: Vec<_> = s
        .history_since(0)
        .into_iter()
        .filter(|e| e.status.to_string() == "Failed to read data from cache")
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].process, ProcessType::MessageSyncCache.code());
    assert!(
        failed[0]
            .detail
            .as_deref()
            .unwrap_or("")
            .contains("crc mismatch"),
        "{:?}",
        failed[0].detail
    );
    assert_eq!(
        s.due_processes(0).first(),
        Some(&ProcessType::MessageSyncCache)
    );
    let rebuilt = checkpoint(&s);
    assert!(!s.due_processes(0).contains(&ProcessType::MessageSyncCache));
    let before = fingerprint(&s);
    drop(s);
    let s = open(&dir);
    assert_eq!(s.stat().checkpoint_sequence, rebuilt);
    assert_eq!(fingerprint(&s), before);
    let names: Vec<String> = std::fs::read_dir(dir.join("sync-cache"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "older generations removed: {names:?}");
}

/// A power cut at each file operation of writing a generation in turn (each
/// create, write, fsync, rename, directory fsync and removal), then the
/// crash: the store reopens with everything it had acknowledged, equal to
/// a full replay, whether it used the new generation, the old one or none.
#[test]
fn a_power_cut_at_every_step_of_a_checkpoint_loses_nothing() {
    use std::sync::Arc;
    use vaultstore::io::{PowerLossFs, StdFs};
    let mut outcomes = std::collections::BTreeMap::<u64, u32>::new();
    let mut completed = false;
    let mut k = 1;
    while !completed {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("s");
        let fs = PowerLossFs::new(Arc::new(StdFs));
        let opts = || OpenOptions {
            vfs: Arc::new(fs.clone()),
            ..OpenOptions::default()
        };
        let s = Store::init_with(&dir, &small_segments(), opts()).unwrap();
        for n in 0..80u64 {
            s.archive(
                &format!("o{}", n % 3),
                &format!("<{n}@x>"),
                &common::message(n, 1500),
                false,
            )
            .unwrap();
        }
        let first = checkpoint(&s);
        for n in 80..120u64 {
            s.archive("o1", &format!("<{n}@x>"), &common::message(n, 1500), false)
                .unwrap();
        }
        s.delete("o0", None).unwrap();
        s.purge_trash(std::time::Duration::ZERO, None, None)
            .unwrap();
        s.defrag(0.05).unwrap();
        let before = fingerprint(&s);
        fs.cut_at(fs.ops() + k);
        let result = s.run_request(&ProcessRequest::Checkpoint);
        // A cut after the install (removing the old generation, the
        // history) may leave the request successful.
        completed = !fs.is_off();
        assert!(result.is_ok() || !completed, "step {k}: {result:?}");
        fs.cut();
        drop(s);
        fs.crash(k).unwrap();
        let s = Store::open_with(&dir, opts()).unwrap();
        let used = s.stat().checkpoint_sequence;
        // The old generation goes only once the new one is durable.
        assert!(used >= first, "step {k}: no usable generation left");
        *outcomes.entry(used).or_default() += 1;
        assert_eq!(
            fingerprint(&s),
            before,
            "cut at step {k}: the store changed"
        );
        assert!(
            s.full_resynchronization().unwrap().contains("agree"),
            "step {k}"
        );
        assert!(s.verify().is_clean(), "step {k}");
        k += 1;
    }
    eprintln!(
        "{} steps; generation used after the cut: {outcomes:?}",
        k - 1
    );
    assert!(k > 10, "a checkpoint takes only {k} file operations?");
    assert!(
        outcomes.len() >= 2,
        "the cut never fell between the two generations"
    );
}

/// The setting: a generation is due once that many log records follow the
/// newest one (and not before); zero is refused.
#[test]
fn a_checkpoint_is_due_after_the_set_number_of_records() {
    use vaultstore::jobs::ProcessType;
    use vaultstore::settings::SettingsChange;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let s = store_of(&dir, 5, 500);
    // As a service that has just started sees it: the hourly schedule is not due.
    let due = |s: &Store| {
        let started = vaultstore::units::now_ms();
        s.due_processes(started)
            .contains(&ProcessType::MessageSyncCache)
    };
    assert!(!due(&s));
    let set = |n: u64| SettingsChange {
        checkpoint_after_records: Some(n),
        ..SettingsChange::default()
    };
    assert!(set(0).apply(&s).is_err());
    set(20).apply(&s).unwrap();
    assert_eq!(
        vaultstore::settings::view(&s)["checkpoint_after_records"],
        20
    );
    let mut n = 5u64;
    while s.stat().overlay_records < 20 {
        assert!(!due(&s), "{} records", s.stat().overlay_records);
        s.archive(
            "owner",
            &format!("<{n}@x>"),
            &common::message(n, 500),
            false,
        )
        .unwrap();
        n += 1;
    }
    assert!(due(&s));
    checkpoint(&s);
    assert_eq!(s.stat().overlay_records, 0);
    assert!(!due(&s));
    drop(s);
    // The setting is kept in the manifest.
    let s = open(&dir);
    assert_eq!(s.manifest().checkpoint_after_records, 20);
    assert!(!due(&s));
}

/// Faults at map time, through the file layer's seam: a failed read of
/// each kind's file, and each file cut short. The open replays every
/// record instead and answers the same.
#[test]
fn a_checkpoint_that_cannot_be_read_falls_back() {
    use std::sync::Arc;
    use vaultstore::io::{Fault, FaultKind, FaultOp, FaultyFs};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let s = store_of(&dir, 30, 700);
    s.delete("owner", Some("<4@x>")).unwrap();
    checkpoint(&s);
    let before = fingerprint(&s);
    drop(s);
    let faulty = FaultyFs::new();
    let read_only = || OpenOptions {
        read_only: true,
        vfs: Arc::new(faulty.clone()),
        ..OpenOptions::default()
    };
    assert!(
        Store::open_with(&dir, read_only())
            .unwrap()
            .stat()
            .checkpoint_sequence
            > 0
    );
    for kind in ["files-", "messages-", "properties-"] {
        faulty.inject(Fault {
            op: FaultOp::Read,
            kind: FaultKind::Eio,
            path_contains: kind.into(),
            skip: 0,
            count: u64::MAX,
        });
        let s = Store::open_with(&dir, read_only()).unwrap();
        assert_eq!(
            s.stat().checkpoint_sequence,
            0,
            "{kind}: read failed, yet used"
        );
        assert_eq!(fingerprint(&s), before, "{kind}");
        faulty.clear();
    }
    let cache = dir.join("sync-cache");
    for e in std::fs::read_dir(&cache).unwrap() {
        let path = e.unwrap().path();
        let whole = std::fs::read(&path).unwrap();
        for len in [0, 63, whole.len() / 2, whole.len() - 1] {
            std::fs::write(&path, &whole[..len]).unwrap();
            let s = Store::open_with(&dir, read_only()).unwrap();
            assert_eq!(
                s.stat().checkpoint_sequence,
                0,
                "{} cut to {len}",
                path.display()
            );
            assert_eq!(fingerprint(&s), before);
        }
        std::fs::write(&path, &whole).unwrap();
    }
}

/// Checkpoints written while 4 clients archive, delete and mark, and a
/// defragmentation runs: nothing waits for ever, and after a reopen every
/// acknowledged item is there, as a full replay has it.
#[test]
fn checkpoints_while_clients_write_lose_nothing() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let s = Arc::new(store_of(&dir, 50, 3000));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..4u64 {
        let (s, stop) = (s.clone(), stop.clone());
        clients.push(std::thread::spawn(move || {
            let mut acked = Vec::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let item = format!("<{c}-{n}@x>");
                let body = common::message(1000 + c * 100_000 + n, 1500);
                s.archive(&format!("client{c}"), &item, &body, false)
                    .unwrap();
                acked.push((format!("client{c}"), item, body));
                if n % 7 == 3 {
                    let (o, i, _) = acked.remove(0);
                    s.delete(&o, Some(&i)).unwrap();
                }
                if n % 11 == 5 {
                    let ids = s.ids().unwrap();
                    s.mark_indexed(&ids[..ids.len().min(3)]).unwrap();
                }
                n += 1;
            }
            acked
        }));
    }
    let mut written = 0;
    for round in 0..8 {
        checkpoint(&s);
        written += 1;
        if round % 3 == 1 {
            s.seal().unwrap();
            s.defrag(0.05).unwrap();
        }
    }
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<_> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    let before = fingerprint(&s);
    drop(s);
    let s = open(&dir);
    assert!(s.stat().checkpoint_sequence > 0);
    assert_eq!(fingerprint(&s), before);
    for (owner, item, body) in &acked {
        let entry = s.items(owner, None, usize::MAX).unwrap();
        let e = entry
            .iter()
            .find(|e| &e.item == item)
            .expect("acknowledged item missing");
        assert_eq!(s.get(&e.id.parse().unwrap()).unwrap(), *body);
    }
    assert!(s.full_resynchronization().unwrap().contains("agree"));
    eprintln!(
        "{written} checkpoints beside {} acknowledged items",
        acked.len()
    );
}
