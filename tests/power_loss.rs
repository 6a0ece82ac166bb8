//! Deterministic simulation under power loss (TigerBeetle's VOPR is the
//! anchor): a seed drives a sequence of operations over a store on
//! [`PowerLossFs`], with injected faults (ENOSPC, EIO, short writes) and
//! power cuts between and in the middle of operations. After each cut the
//! live files become one possible post-crash image (unsynced bytes kept,
//! dropped or torn at 4 KiB pages; unsynced creates, renames and removes
//! undone), the store is reopened and checked against a model: every
//! acknowledged reference is there with byte-identical content, nothing
//! unacknowledged is half there, `verify` is clean, and the interrupted
//! process runs again to its end. A failure prints its seed; the same seed
//! replays the same run exactly.
//!
//! `VAULTSTORE_POWER_SEEDS` (default 300) seeds are run from
//! `VAULTSTORE_SEED` (default 1).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use common::Rng;
use vaultstore::io::{Fault, FaultKind, FaultOp, FaultyFs, PowerLossFs};
use vaultstore::{InitOptions, OpenOptions, Redistribution, SavesetId, Store};

type Key = (String, String);

/// What an item may be after what was acknowledged and what was not:
/// absent, or referencing this content, in trash or not.
#[derive(Clone, Debug, PartialEq)]
struct Entry {
    content: Vec<u8>,
    trashed: bool,
}

/// Every item's allowed states: one when all that touched it was
/// acknowledged, more while an operation on it failed or was cut.
#[derive(Default)]
struct Model {
    allowed: BTreeMap<Key, Vec<Option<Entry>>>,
    /// Savesets stored by `put` (content no item shares): acknowledged or not.
    puts: Vec<(Vec<u8>, bool)>,
}

impl Model {
    fn now(&self, key: &Key) -> Vec<Option<Entry>> {
        self.allowed.get(key).cloned().unwrap_or_else(|| vec![None])
    }
    fn set(&mut self, key: Key, state: Option<Entry>) {
        self.allowed.insert(key, vec![state]);
    }
    /// An operation that may or may not have happened.
    fn maybe(&mut self, key: Key, state: Option<Entry>) {
        let mut states = self.now(&key);
        if !states.contains(&state) {
            states.push(state);
        }
        self.allowed.insert(key, states);
    }
    /// Items certainly present (for links and deletes to pick from).
    fn certain(&self) -> Vec<(Key, Entry)> {
        self.allowed
            .iter()
            .filter_map(|(k, s)| match s.as_slice() {
                [Some(e)] => Some((k.clone(), e.clone())),
                _ => None,
            })
            .collect()
    }
}

fn open(dir: &Path, fs: &PowerLossFs) -> vaultstore::Result<Store> {
    Store::open_with(
        dir,
        OpenOptions {
            vfs: Arc::new(fs.clone()),
            unlock: vaultstore::crypto::Unlock::passphrase(passphrase()),
            ..OpenOptions::default()
        },
    )
}

/// VAULTSTORE_POWER_ENCRYPT=1 runs every seed on an encrypted store
/// (format-spec/encryption.md), with a cheap KDF.
fn encryption() -> Option<vaultstore::crypto::Encryption> {
    let on = std::env::var("VAULTSTORE_POWER_ENCRYPT").is_ok_and(|v| v == "1");
    on.then(|| vaultstore::crypto::Encryption {
        passphrase: Arc::new(passphrase()),
        kdf: vaultstore::format::key_file::KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        },
    })
}

fn passphrase() -> vaultstore::crypto::Passphrase {
    vaultstore::crypto::Passphrase::new(b"power cut passphrase".to_vec()).unwrap()
}

/// A message of 200 B to 20 KB; one in five repeats earlier content.
fn content(rng: &mut Rng, seen: &mut Vec<Vec<u8>>) -> Vec<u8> {
    if !seen.is_empty() && rng.below(5) == 0 {
        return seen[rng.below(seen.len() as u64) as usize].clone();
    }
    let m = common::message(rng.next(), 200 + rng.below(20_000) as usize);
    seen.push(m.clone());
    m
}

/// The interrupted process, to run again after the reopen.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Process {
    Defrag,
    Purge,
    Backup,
    Redistribute(Redistribution),
}

/// What a run did, summed over seeds for the report.
#[derive(Default, Debug)]
struct Tally {
    /// Operation name → (acknowledged, failed).
    ops: BTreeMap<&'static str, (u64, u64)>,
    crashes: u64,
    undone: u64,
    kept: u64,
    torn: u64,
    rolled_back: u64,
    survived: u64,
    reruns: u64,
    /// Reopens that used a checkpoint generation.
    from_checkpoint: u64,
}

impl Tally {
    fn count<T, E>(&mut self, op: &'static str, r: &Result<T, E>) -> bool {
        let e = self.ops.entry(op).or_default();
        match r {
            Ok(_) => e.0 += 1,
            Err(_) => e.1 += 1,
        }
        r.is_ok()
    }
}

/// Where a seed's stores live: `VAULTSTORE_POWER_DIR`, else a memory file
/// system when there is one (the model decides what survives, not the
/// disk, so real fsyncs only cost time), else the temporary directory.
fn scratch() -> std::io::Result<tempfile::TempDir> {
    let dir = std::env::var_os("VAULTSTORE_POWER_DIR")
        .map(std::path::PathBuf::from)
        .or_else(|| Some(std::path::PathBuf::from("/dev/shm")).filter(|d| d.is_dir()));
    match dir {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
}

fn run_seed(seed: u64, steps: u32, tally: &mut Tally) -> Result<(), String> {
    let tmp = scratch().map_err(|e| e.to_string())?;
    let dir = tmp.path().join("s");
    let backup = tmp.path().join("backup");
    let faulty = FaultyFs::new();
    let fs = PowerLossFs::new(Arc::new(faulty.clone()));
    let init = InitOptions {
        segment_bytes: 64 << 10,
        encryption: encryption(),
        ..InitOptions::default()
    };
    let opts = OpenOptions {
        vfs: Arc::new(fs.clone()),
        ..OpenOptions::default()
    };
    let first = Store::init_with(&dir, &init, opts).map_err(|e| e.to_string())?;
    // A second partition, to drain the first into (and balance).
    first
        .partition_add(&tmp.path().join("p1"), None)
        .map_err(|e| e.to_string())?;
    let mut store = Some(first);
    let mut drained = false;
    let mut rng = Rng(seed);
    let mut model = Model::default();
    let mut seen = Vec::new();
    let mut interrupted: Option<Process> = None;
    // Checkpoints of the sync caches from a stream of their own, so the
    // operations a seed rolls stay what they were before checkpoints.
    let mut sync_rng = Rng(seed ^ 0x5eed_cace);
    for step in 0..steps {
        let s = store.as_ref().ok_or("no store")?;
        let at = |what: &str| format!("step {step} ({what})");
        // In backup mode, and until its cache is processed, only puts,
        // archives and links are taken: the other writes wait.
        let frozen = s
            .backup_mode(None)
            .is_ok_and(|b| b.on || b.cached_items > 0);
        match rng.below(100) {
            0..=29 => {
                let key = (format!("o{}", rng.below(4)), format!("i{step}"));
                let c = content(&mut rng, &mut seen);
                let entry = Some(Entry {
                    content: c.clone(),
                    trashed: false,
                });
                match tally.count("archive", &s.archive(&key.0, &key.1, &c, false)) {
                    true => model.set(key, entry),
                    false => model.maybe(key, entry),
                }
            }
            30..=37 => {
                let batch: Vec<(Key, Vec<u8>)> = (0..1 + rng.below(8))
                    .map(|n| {
                        let key = (format!("o{}", rng.below(4)), format!("b{step}.{n}"));
                        (key, content(&mut rng, &mut seen))
                    })
                    .collect();
                let items: Vec<(&str, &str, &[u8])> = batch
                    .iter()
                    .map(|((o, i), c)| (o.as_str(), i.as_str(), c.as_slice()))
                    .collect();
                let done = s.archive_many(&items);
                tally.count("archive_many", &done);
                for (n, (key, c)) in batch.into_iter().enumerate() {
                    let entry = Some(Entry {
                        content: c,
                        trashed: false,
                    });
                    match &done {
                        Ok(r) if r[n].is_ok() => model.set(key, entry),
                        _ => model.maybe(key, entry),
                    }
                }
            }
            38..=42 => {
                let n = 1 + rng.below(3);
                let fresh: Vec<Vec<u8>> = (0..n)
                    .map(|_| common::message(rng.next(), 100 + rng.below(9000) as usize))
                    .collect();
                let slices: Vec<&[u8]> = fresh.iter().map(Vec::as_slice).collect();
                let acked = if n == 1 {
                    tally.count("put", &s.put(slices[0]))
                } else {
                    tally.count("put_many", &s.put_many(&slices))
                };
                model.puts.extend(fresh.into_iter().map(|c| (c, acked)));
            }
            43..=48 => {
                let certain = model.certain();
                if let Some((from, e)) =
                    certain.get(rng.below(certain.len().max(1) as u64) as usize)
                    && !e.trashed
                {
                    let key = (from.0.clone(), format!("l{step}"));
                    let entry = Some(Entry {
                        content: e.content.clone(),
                        trashed: false,
                    });
                    match tally.count("link", &s.link(&key.0, &key.1, &SavesetId::of(&e.content))) {
                        true => model.set(key, entry),
                        false => model.maybe(key, entry),
                    }
                }
            }
            49..=73 if frozen => {}
            49..=54 => {
                let certain = model.certain();
                if let Some((key, e)) = certain.get(rng.below(certain.len().max(1) as u64) as usize)
                    && !e.trashed
                {
                    let entry = Some(Entry {
                        content: e.content.clone(),
                        trashed: true,
                    });
                    match tally.count("delete", &s.delete(&key.0, Some(&key.1))) {
                        true => model.set(key.clone(), entry),
                        false => model.maybe(key.clone(), entry),
                    }
                }
            }
            55..=58 => {
                let trashed: Vec<Key> = model
                    .allowed
                    .iter()
                    .filter(|(_, s)| s.iter().any(|e| e.as_ref().is_some_and(|e| e.trashed)))
                    .map(|(k, _)| k.clone())
                    .collect();
                let purged = s.purge_trash(std::time::Duration::ZERO, None, None);
                tally.count("purge", &purged);
                for key in trashed {
                    match &purged {
                        Ok(_) => {
                            // Only the trashed states go.
                            let states = model.now(&key);
                            let kept: Vec<_> = states
                                .into_iter()
                                .map(|e| e.filter(|e| !e.trashed))
                                .collect();
                            model.allowed.insert(key, dedup(kept));
                        }
                        Err(_) => model.maybe(key, None),
                    }
                }
                if purged.is_err() {
                    interrupted = Some(Process::Purge);
                }
            }
            59..=62 => {
                tally.count("seal", &s.seal());
            }
            63..=67 => {
                if !tally.count("defrag", &s.defrag(0.3)) {
                    interrupted = Some(Process::Defrag);
                }
            }
            68..=70 => {
                let how = if drained {
                    Redistribution::Balance
                } else {
                    Redistribution::Drain(0)
                };
                drained = true;
                if !tally.count("redistribute", &s.redistribute(how)) {
                    interrupted = Some(Process::Redistribute(how));
                }
            }
            71..=73 => {
                if !tally.count("backup run", &s.backup_run(&backup)) {
                    interrupted = Some(Process::Backup);
                }
            }
            74..=79 => fs.cut_at(fs.ops() + 1 + rng.below(60)),
            86..=90 => match s.backup_mode(None).map(|b| b.on) {
                Ok(false) => {
                    tally.count("backup mode on", &s.backup_mode(Some(true)));
                }
                _ => {
                    if tally.count("backup mode off", &s.backup_mode(Some(false))) {
                        tally.count("message cache", &s.run_request(&process_cache()));
                    }
                }
            },
            80..=85 => {
                let op = [
                    FaultOp::Write,
                    FaultOp::Sync,
                    FaultOp::Rename,
                    FaultOp::Create,
                ][rng.below(4) as usize];
                let kind = [FaultKind::NoSpace, FaultKind::Eio, FaultKind::ShortWrite]
                    [rng.below(3) as usize];
                faulty.inject(Fault {
                    op,
                    kind,
                    path_contains: String::new(),
                    skip: rng.below(6),
                    count: 1,
                });
            }
            _ => fs.cut(),
        }
        if !frozen && !fs.is_off() && sync_rng.below(8) == 0 {
            if sync_rng.below(2) == 0 {
                // A power cut somewhere in the checkpoint's writes.
                fs.cut_at(fs.ops() + 1 + sync_rng.below(12));
            }
            tally.count("checkpoint", &s.run_request(&checkpoint()));
        }
        if fs.is_off() || step + 1 == steps {
            fs.cut();
            drop(store.take());
            faulty.clear();
            let crash = fs
                .crash(rng.next())
                .map_err(|e| format!("{}: {e}", at("crash")))?;
            tally.crashes += 1;
            tally.undone += crash.undone as u64;
            tally.kept += crash.kept as u64;
            tally.torn += crash.torn as u64;
            tally.rolled_back += crash.rolled_back as u64;
            tally.survived += crash.survived as u64;
            let s = open(&dir, &fs)
                .map_err(|e| format!("{}: reopen after {crash:?}: {e}", at("reopen")))?;
            // What the message cache took is in the catalog once processed.
            let mode = s.backup_mode(None).map_err(|e| e.to_string())?;
            if mode.on || mode.cached_items > 0 {
                s.backup_mode(Some(false))
                    .and_then(|_| s.run_request(&process_cache()))
                    .map_err(|e| format!("{}: {e}", at("process the message cache")))?;
                tally.reruns += 1;
            }
            check(&s, &mut model).map_err(|e| format!("{}: after {crash:?}: {e}", at("check")))?;
            if s.stat().checkpoint_sequence > 0 {
                // Opened from a generation: the state equals a full replay.
                tally.from_checkpoint += 1;
                s.full_resynchronization()
                    .map_err(|e| format!("{}: {e}", at("resynchronization after a checkpoint")))?;
            }
            if let Some(p) = interrupted.take() {
                let again = match p {
                    Process::Defrag => s.defrag(0.3).map(drop),
                    Process::Purge => s
                        .purge_trash(std::time::Duration::ZERO, None, None)
                        .map(|_| ()),
                    Process::Backup => s.backup_run(&backup).map(drop),
                    Process::Redistribute(how) => s.redistribute(how).map(drop),
                };
                again.map_err(|e| format!("{}: {p:?} run again: {e}", at("rerun")))?;
                tally.reruns += 1;
                if p == Process::Purge {
                    for states in model.allowed.values_mut() {
                        let kept = states
                            .iter()
                            .cloned()
                            .map(|e| e.filter(|e| !e.trashed))
                            .collect();
                        *states = dedup(kept);
                    }
                }
                check(&s, &mut model).map_err(|e| format!("{}: {e}", at("after rerun")))?;
            }
            store = Some(s);
        }
    }
    Ok(())
}

fn checkpoint() -> vaultstore::jobs::schedule::ProcessRequest {
    vaultstore::jobs::schedule::ProcessRequest::Checkpoint
}

fn process_cache() -> vaultstore::jobs::schedule::ProcessRequest {
    vaultstore::jobs::schedule::ProcessRequest::ProcessMessageCache
}

fn dedup(states: Vec<Option<Entry>>) -> Vec<Option<Entry>> {
    let mut out = Vec::new();
    for s in states {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// The reopened store against the model; the model then takes what was
/// found (each item's state is now known).
fn check(s: &Store, model: &mut Model) -> Result<(), String> {
    let mut found: BTreeMap<Key, Entry> = BTreeMap::new();
    for owner in s.owners().unwrap() {
        let items = s
            .items(&owner.owner, None, usize::MAX)
            .map_err(|e| e.to_string())?;
        for i in items {
            let id: SavesetId = i.id.parse().map_err(|e: vaultstore::Error| e.to_string())?;
            let content = s.get(&id).map_err(|e| {
                format!(
                    "{}/{} is listed but its content is not there: {e}",
                    owner.owner, i.item
                )
            })?;
            let key = (owner.owner.clone(), i.item.clone());
            found.insert(
                key,
                Entry {
                    content,
                    trashed: i.trashed_at_ms.is_some(),
                },
            );
        }
    }
    let keys: Vec<Key> = model.allowed.keys().chain(found.keys()).cloned().collect();
    for key in keys {
        let state = found.get(&key).cloned();
        let allowed = model.now(&key);
        if !allowed.contains(&state) {
            let show = |e: &Option<Entry>| {
                e.as_ref().map(|e| {
                    (
                        SavesetId::of(&e.content).to_string()[..12].to_string(),
                        e.trashed,
                    )
                })
            };
            return Err(format!(
                "{}/{}: found {:?}, allowed {:?}",
                key.0,
                key.1,
                show(&state),
                allowed.iter().map(show).collect::<Vec<_>>()
            ));
        }
        model.set(key, state);
    }
    for (content, acked) in &mut model.puts {
        let id = SavesetId::of(content);
        match s.get(&id) {
            Ok(back) if back == *content => *acked = true,
            Ok(_) => return Err(format!("put {id} reads back other bytes")),
            Err(e) if *acked => return Err(format!("acknowledged put {id} is lost: {e}")),
            Err(_) => {}
        }
    }
    model.puts.retain(|(_, acked)| *acked);
    let report = s.verify();
    if !report.is_clean() {
        return Err(format!("verify: {:?}", report.problems));
    }
    Ok(())
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        for (op, (acked, failed)) in other.ops {
            let e = self.ops.entry(op).or_default();
            e.0 += acked;
            e.1 += failed;
        }
        self.crashes += other.crashes;
        self.undone += other.undone;
        self.kept += other.kept;
        self.torn += other.torn;
        self.rolled_back += other.rolled_back;
        self.from_checkpoint += other.from_checkpoint;
        self.survived += other.survived;
        self.reruns += other.reruns;
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|s| s.parse().ok())
}

#[test]
fn power_cuts_lose_nothing_acknowledged() {
    let first = env_u64("VAULTSTORE_SEED").unwrap_or(1);
    let seeds = env_u64("VAULTSTORE_POWER_SEEDS").unwrap_or(300);
    // Seeds are independent: one worker per core (or VAULTSTORE_POWER_THREADS).
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get() as u64);
    let workers = env_u64("VAULTSTORE_POWER_THREADS")
        .unwrap_or(cores)
        .clamp(1, seeds.max(1));
    let results: Vec<(Tally, Option<(u64, String)>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                scope.spawn(move || {
                    let mut tally = Tally::default();
                    for seed in (first + w..first + seeds).step_by(workers as usize) {
                        if let Err(e) = run_seed(seed, 60, &mut tally) {
                            return (tally, Some((seed, e)));
                        }
                    }
                    (tally, None)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut tally = Tally::default();
    let mut failures = Vec::new();
    for (t, failed) in results {
        tally.merge(t);
        failures.extend(failed);
    }
    failures.sort();
    if let Some((seed, e)) = failures.first() {
        panic!("seed {seed} (replay with VAULTSTORE_SEED={seed} VAULTSTORE_POWER_SEEDS=1): {e}");
    }
    eprintln!("{seeds} seeds from {first}, every acknowledged item intact: {tally:?}");
    // The run must have exercised what it claims to.
    assert!(tally.crashes >= seeds && tally.reruns > 0, "{tally:?}");
    for (op, (acked, _)) in &tally.ops {
        let expected = seeds >= 20;
        assert!(*acked > 0 || !expected, "{op} never succeeded: {tally:?}");
    }
}

#[test]
fn a_seed_replays_the_same_run() {
    for seed in [7, 8] {
        let (mut one, mut two) = (Tally::default(), Tally::default());
        run_seed(seed, 60, &mut one).unwrap();
        run_seed(seed, 60, &mut two).unwrap();
        assert_eq!(format!("{one:?}"), format!("{two:?}"), "seed {seed}");
    }
}
