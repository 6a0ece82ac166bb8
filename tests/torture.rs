//! Crash torture: run the `vaultstore` process on a workload, SIGKILL it at
//! random moments many times in a row, and after each kill check that every
//! saveset it acknowledged is present and byte-identical, that nothing is
//! half-visible, and that verify is clean. Kills land in puts, catalog
//! changes, backup runs, trash purges and defragmentation.
//!
//! The number of kills comes from VAULTSTORE_TORTURE_KILLS (default 12, the
//! CI run); the README documents a long run of at least 200.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use vaultstore::{InitOptions, SavesetId, Store};

/// The passphrase of the encrypted stores the torture runs on: every store
/// when VAULTSTORE_TORTURE_ENCRYPT=1 (the README's long run), and always in
/// `sigkill_at_random_moments_loses_nothing_acknowledged_when_encrypted`.
const PASSPHRASE: &str = "torture passphrase";

fn encrypt_all() -> bool {
    std::env::var("VAULTSTORE_TORTURE_ENCRYPT").is_ok_and(|v| v == "1")
}

/// Create the store, encrypted (with a cheap KDF) when asked.
fn init_store(dir: &Path, opts: InitOptions, encrypted: bool) -> Store {
    let encryption = encrypted.then(|| vaultstore::crypto::Encryption {
        passphrase: std::sync::Arc::new(passphrase()),
        kdf: vaultstore::format::key_file::KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        },
    });
    Store::init(dir, &InitOptions { encryption, ..opts }).unwrap()
}

fn passphrase() -> vaultstore::crypto::Passphrase {
    vaultstore::crypto::Passphrase::new(PASSPHRASE.as_bytes().to_vec()).unwrap()
}

/// Open a store of the torture, encrypted or not.
fn open_store(dir: &Path) -> vaultstore::Result<Store> {
    Store::open_with(
        dir,
        vaultstore::OpenOptions {
            unlock: vaultstore::crypto::Unlock::passphrase(passphrase()),
            ..vaultstore::OpenOptions::default()
        },
    )
}

fn kills() -> usize {
    std::env::var("VAULTSTORE_TORTURE_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12)
}

/// True when the process `pid` had opened the store for writing: its pid is
/// in the store's lock file (written once it holds the lock).
fn holds_lock(store: &Path, pid: u32) -> bool {
    std::fs::read_to_string(store.join("LOCK")).is_ok_and(|t| t.trim() == pid.to_string())
}

/// Start `vaultstore put` on `files`, kill it after `delay`, and return the
/// ids it acknowledged (the lines it printed in full) and whether the kill
/// landed while it worked (it held the store and had not finished).
fn run_and_kill(store: &Path, files: &[PathBuf], delay: Duration) -> (Vec<SavesetId>, bool) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vaultstore"))
        .env("VAULTSTORE_PASSPHRASE", PASSPHRASE)
        .arg("put")
        .arg("--store")
        .arg(store)
        .args(files)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut acked = Vec::new();
        for line in BufReader::new(stdout).split(b'\n') {
            let Ok(line) = line else { break };
            let text = String::from_utf8_lossy(&line);
            let id = text.split_whitespace().next().unwrap_or("");
            acked.push(id.parse::<SavesetId>().expect("a full ack line"));
        }
        acked
    });
    std::thread::sleep(delay);
    let in_flight = child.try_wait().unwrap().is_none() && holds_lock(store, child.id());
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    let acked = reader.join().unwrap();
    let unfinished = acked.len() < files.len();
    (acked, in_flight && unfinished)
}

#[test]
fn sigkill_at_random_moments_loses_nothing_acknowledged() {
    puts_killed_at_random(encrypt_all());
}

#[test]
fn sigkill_at_random_moments_loses_nothing_acknowledged_when_encrypted() {
    puts_killed_at_random(true);
}

fn puts_killed_at_random(encrypted: bool) {
    let mut rng = common::Rng(common::seed());
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    drop(init_store(
        &store_dir,
        InitOptions {
            segment_bytes: 128 << 10,
            ..InitOptions::default()
        },
        encrypted,
    ));
    // A pool of messages: real mail when present, generated otherwise.
    let mut pool: Vec<Vec<u8>> = common::corpus_messages().unwrap_or_default();
    pool.extend(
        vaultstore::bench::generate_corpus(400, rng.next())
            .into_iter()
            .filter(|m| m.len() < 200_000),
    );
    let files_dir = dir.path().join("files");
    std::fs::create_dir_all(&files_dir).unwrap();
    let files: Vec<PathBuf> = pool
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let p = files_dir.join(format!("{i}.eml"));
            std::fs::write(&p, m).unwrap();
            p
        })
        .collect();
    let content: HashMap<SavesetId, &[u8]> = pool
        .iter()
        .map(|m| (SavesetId::of(m), m.as_slice()))
        .collect();

    let mut acknowledged: Vec<SavesetId> = Vec::new();
    let mut landed = 0;
    let trials = kills();
    for trial in 0..trials {
        // A window of the pool, overlapping earlier ones so duplicates occur.
        let start = rng.below(files.len() as u64) as usize;
        let len = 20 + rng.below(200) as usize;
        let batch: Vec<PathBuf> = (0..len)
            .map(|k| files[(start + k) % files.len()].clone())
            .collect();
        let delay = Duration::from_millis(rng.below(80));
        let (acked, in_flight) = run_and_kill(&store_dir, &batch, delay);
        landed += usize::from(in_flight);
        acknowledged.extend(acked);

        let store = open_store(&store_dir).unwrap_or_else(|e| panic!("trial {trial}: open: {e}"));
        for id in &acknowledged {
            let got = store
                .get(id)
                .unwrap_or_else(|e| panic!("trial {trial}: acknowledged saveset {id} lost: {e}"));
            assert_eq!(got, content[id], "trial {trial}: saveset {id} differs");
        }
        // Nothing half-visible: every indexed saveset reads back whole.
        for id in store.ids().unwrap() {
            assert_eq!(store.get(&id).unwrap(), content[&id], "trial {trial}");
        }
        let report = store.verify();
        assert!(report.is_clean(), "trial {trial}: {:?}", report.problems);
    }
    let store = open_store(&store_dir).unwrap();
    // Kills that found the process finished or not yet started test nothing.
    assert!(landed > 0, "no kill landed while a put was in flight");
    eprintln!(
        "{landed} kills landed in flight ({} missed: finished or not started) survived: {} acknowledged puts, {} savesets, {} segments, 0 lost",
        trials - landed,
        acknowledged.len(),
        store.stat().savesets,
        store.stat().segments
    );
}

/// How a CLI command run by the torture ended.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// On its own: acknowledged when it succeeded.
    Finished { success: bool },
    /// Killed; `in_flight` when it held the store and had not finished.
    Killed { in_flight: bool },
}

impl Ended {
    fn acknowledged(self) -> bool {
        self == Ended::Finished { success: true }
    }
}

/// Run one CLI command, killing it after `kill_after` if it is still running.
fn run_cli(args: &[&str], input: Option<&Path>, kill_after: Option<Duration>) -> Ended {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vaultstore"));
    cmd.env("VAULTSTORE_PASSPHRASE", PASSPHRASE);
    cmd.args(args).stdout(Stdio::null()).stderr(Stdio::null());
    if let Some(f) = input {
        cmd.arg(f);
    }
    let store = args
        .iter()
        .position(|a| *a == "--store")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);
    let mut child = cmd.spawn().unwrap();
    if let Some(d) = kill_after {
        let deadline = std::time::Instant::now() + d;
        while std::time::Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                return Ended::Finished {
                    success: status.success(),
                };
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let in_flight = store.is_some_and(|s| holds_lock(&s, child.id()))
            && child.try_wait().unwrap().is_none();
        let _ = child.kill();
        let _ = child.wait();
        return Ended::Killed { in_flight };
    }
    Ended::Finished {
        success: child.wait().unwrap().success(),
    }
}

#[test]
fn sigkill_during_catalog_changes_loses_no_acknowledged_reference() {
    let mut rng = common::Rng(common::seed());
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    drop(init_store(
        &store_dir,
        InitOptions {
            segment_bytes: 64 << 10,
            ..InitOptions::default()
        },
        encrypt_all(),
    ));
    let st = store_dir.to_str().unwrap().to_string();
    let pool: Vec<Vec<u8>> = vaultstore::bench::generate_corpus(300, rng.next())
        .into_iter()
        .filter(|m| m.len() < 100_000)
        .collect();
    let files: Vec<PathBuf> = pool
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let p = dir.path().join(format!("{i}.eml"));
            std::fs::write(&p, m).unwrap();
            p
        })
        .collect();
    // (owner, item) -> (content index, deletion acknowledged)
    let mut acked: HashMap<(String, String), (usize, bool)> = HashMap::new();
    let mut next_item = 0u64;
    // Once a purge ran, acknowledged deletions may be gone for good.
    let mut purged = false;
    let mut maybe_deleted: std::collections::HashSet<(String, String)> = Default::default();
    let mut landed = 0;
    let mut typical = Duration::from_millis(15);
    let in_flight = |e: Ended| usize::from(e == Ended::Killed { in_flight: true });
    let trials = kills();
    for trial in 0..trials {
        let victim = rng.below(8) as usize;
        for step in 0..8 {
            // The kill lands somewhere within a typical command's run time,
            // as measured on the commands that ran to the end.
            let span = (typical.as_micros() as u64).clamp(2_000, 200_000);
            let kill_after = (step == victim).then(|| Duration::from_micros(rng.below(span)));
            let started = std::time::Instant::now();
            let owner = format!("mbox{}", rng.below(3));
            let undeleted: Vec<(String, String)> = acked
                .iter()
                .filter(|(_, v)| !v.1)
                .map(|(k, _)| k.clone())
                .collect();
            if rng.below(8) == 0 {
                // Backup marks: the built-in backup, maybe killed half way.
                let dest = dir.path().join("backup");
                let args = [
                    "backup",
                    "run",
                    "--store",
                    &st,
                    "--to",
                    dest.to_str().unwrap(),
                ];
                landed += in_flight(run_cli(&args, None, kill_after));
            } else if rng.below(6) == 0 {
                // Reclaim: acknowledge the feed (backed-up segments are then
                // free to move), purge the trash, defragment; the last two
                // may be killed.
                {
                    let store = open_store(&store_dir).unwrap();
                    let page = store.feed(None, usize::MAX).unwrap();
                    store.feed_ack(page.cursor).unwrap();
                }
                purged = true;
                let purge = ["trash", "purge", "--store", &st, "--older-than", "0s"];
                landed += in_flight(run_cli(&purge, None, kill_after));
                let defrag = ["defrag", "--store", &st, "--threshold", "0"];
                landed += in_flight(run_cli(&defrag, None, kill_after));
            } else if rng.below(4) == 0 && !undeleted.is_empty() {
                let (o, i) = undeleted[rng.below(undeleted.len() as u64) as usize].clone();
                let args = ["delete", "--store", &st, "--owner", &o, "--item", &i];
                let ended = run_cli(&args, None, kill_after);
                landed += in_flight(ended);
                if ended.acknowledged() {
                    acked.get_mut(&(o, i)).unwrap().1 = true;
                } else {
                    // Killed: the deletion may or may not have become durable.
                    maybe_deleted.insert((o, i));
                }
            } else {
                let c = rng.below(files.len() as u64) as usize;
                let item = format!("item{next_item}");
                next_item += 1;
                let args = [
                    "archive", "--store", &st, "--owner", &owner, "--item", &item,
                ];
                let ended = run_cli(&args, Some(&files[c]), kill_after);
                landed += in_flight(ended);
                if ended.acknowledged() {
                    acked.insert((owner, item), (c, false));
                }
            }
            if kill_after.is_none() {
                // A moving average of the commands' run time.
                typical = (typical * 3 + started.elapsed()) / 4;
            }
        }
        let store = open_store(&store_dir).unwrap_or_else(|e| panic!("trial {trial}: open: {e}"));
        for ((o, i), (c, deleted)) in &acked {
            let found = store
                .items(o, None, usize::MAX)
                .unwrap_or_default()
                .into_iter()
                .find(|e| &e.item == i);
            let may_be_gone = *deleted || maybe_deleted.contains(&(o.clone(), i.clone()));
            if found.is_none() && may_be_gone && purged {
                continue;
            }
            let entry = found
                .unwrap_or_else(|| panic!("trial {trial}: acknowledged reference {o}/{i} lost"));
            let id = SavesetId::of(&pool[*c]);
            assert_eq!(entry.id, id.to_string(), "trial {trial}: {o}/{i}");
            if *deleted {
                assert!(
                    entry.trashed_at_ms.is_some(),
                    "trial {trial}: acknowledged delete of {o}/{i} lost"
                );
            }
            assert_eq!(store.get(&id).unwrap(), pool[*c]);
        }
        assert!(store.verify().is_clean(), "trial {trial}");
        let p = store.pending();
        let live = store.stat().savesets;
        assert!(
            p.awaiting_backup <= live && p.awaiting_index <= live,
            "trial {trial}: {p:?}"
        );
        drop(store);
        // Whatever a killed backup left, the backup itself is a clean store.
        let dest = dir.path().join("backup");
        if dest.join("MANIFEST").exists() {
            let opts = vaultstore::OpenOptions {
                read_only: true,
                unlock: vaultstore::crypto::Unlock::passphrase(passphrase()),
                ..Default::default()
            };
            let b = Store::open_with(&dest, opts)
                .unwrap_or_else(|e| panic!("trial {trial}: backup: {e}"));
            assert!(b.verify().is_clean(), "trial {trial}: backup not clean");
        }
    }
    let removed = open_store(&store_dir).unwrap().removed_segments().len();
    assert!(landed > 0, "no kill landed while a command was in flight");
    eprintln!(
        "{landed} of {trials} kills landed in flight during catalog changes, backups, purges and defragmentation ({removed} segments compacted away): {} acknowledged references intact",
        acked.len()
    );
}
