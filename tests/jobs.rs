//! Background processes: success, failure, cancellation, a kill mid-job,
//! one of a type at a time, and the history period filter at its edges.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use vaultstore::io::{Fault, FaultKind, FaultOp, FaultyFs, StdFs, Vfs};
use vaultstore::jobs::ProcessType;
use vaultstore::jobs::history::{HistoryEntry, HistoryLog, Status};
use vaultstore::{Error, InitOptions, OpenOptions, Store};

const DAY_MS: u64 = 24 * 3600 * 1000;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn history_of(store: &Store, process: ProcessType) -> Vec<String> {
    let mut rows: Vec<String> = store
        .history_since(0)
        .into_iter()
        .filter(|e| e.process == process.code())
        .map(|e| e.status.to_string())
        .collect();
    rows.reverse();
    rows
}

/// A store with `n` sealed segments holding generated mail.
fn store_with_segments(path: &Path, n: usize, vfs: Arc<dyn Vfs>) -> Store {
    let store = Store::init_with(
        path,
        &InitOptions {
            segment_bytes: 4096,
            ..InitOptions::default()
        },
        OpenOptions {
            vfs,
            ..OpenOptions::default()
        },
    )
    .unwrap();
    let mut made = 0;
    let mut k = 0u64;
    while made < n {
        store.put(&common::message(k, 3000)).unwrap();
        k += 1;
        if store.seal().unwrap().is_some() {
            made += 1;
        }
    }
    store
}

#[test]
fn a_process_to_success_and_to_an_injected_failure_reads_back_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let fs = FaultyFs::new();
    let store = store_with_segments(&path, 3, Arc::new(fs.clone()));
    store.backup_run(&dir.path().join("dest1")).unwrap();
    // The next backup fails: the destination disk is full.
    store.put(b"one more").unwrap();
    fs.inject(Fault {
        op: FaultOp::Create,
        kind: FaultKind::NoSpace,
        path_contains: "dest2".into(),
        skip: 0,
        count: u64::MAX,
    });
    let err = store.backup_run(&dir.path().join("dest2")).unwrap_err();
    assert!(err.to_string().contains("dest2"), "{err}");
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(
        history_of(&store, ProcessType::BackingUpUnits),
        [
            "Started",
            "Finished",
            "Started",
            "Failed to process archived messages"
        ]
    );
    let failed = store
        .history_since(0)
        .into_iter()
        .find(|e| matches!(e.status, Status::Failed(_)))
        .unwrap();
    let detail = failed.detail.unwrap();
    assert!(detail.contains("No space left on device"), "{detail}");
    assert_eq!(
        history_of(&store, ProcessType::BackingUpResources),
        ["Started", "Finished"]
    );
}

#[test]
fn a_cancelled_process_stops_at_a_safe_point_and_keeps_what_it_did() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let fs = FaultyFs::new();
    let store = Arc::new(store_with_segments(&path, 6, Arc::new(fs.clone())));
    // While the third segment is being copied, the operator cancels.
    let weak = Arc::downgrade(&store);
    let copies = Arc::new(Mutex::new(0));
    let seen = copies.clone();
    fs.set_hook(Some(Arc::new(move |op, p: &Path| {
        let name = p.to_string_lossy();
        if op == FaultOp::Create && name.contains("dest") && name.ends_with(".sealed.tmp") {
            let mut n = seen.lock();
            *n += 1;
            if let Some(s) = weak.upgrade().filter(|_| *n == 3) {
                assert_eq!(s.running_processes()[0].process, "Backing up units");
                s.cancel_process(ProcessType::BackingUpUnits).unwrap();
            }
        }
    })));
    let err = store.backup_run(&dir.path().join("dest")).unwrap_err();
    assert!(matches!(err, Error::Cancelled { .. }), "{err}");
    fs.set_hook(None);
    // Three segments were copied and marked; three still await backup.
    assert_eq!(store.backup_list().unwrap().len(), 3);
    assert!(store.running_processes().is_empty());
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(
        history_of(&store, ProcessType::BackingUpUnits),
        ["Started", "Cancelled by the operator"]
    );
    assert_eq!(store.backup_list().unwrap().len(), 3);
}

#[test]
fn one_process_of_a_type_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path().join("s"), &InitOptions::default()).unwrap();
    let inner = store.run_process(ProcessType::FileSyncCache, |_| {
        Ok(store.run_process(ProcessType::FileSyncCache, |_| Ok(())))
    });
    match inner.unwrap() {
        Err(Error::AlreadyRunning { process, .. }) => {
            assert_eq!(process, "Processing file sync cache")
        }
        other => panic!("{other:?}"),
    }
    // Another type may run beside it.
    let other = store.run_process(ProcessType::FileSyncCache, |_| {
        store.run_process(ProcessType::DeletingMicroObjects, |_| Ok(1))
    });
    assert_eq!(other.unwrap(), 1);
}

#[test]
fn a_process_killed_mid_job_shows_as_failed_after_reopen_never_running() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    drop(store_with_segments(&path, 150, Arc::new(StdFs)));
    let mut caught = false;
    for attempt in 0..5 {
        let dest = dir.path().join(format!("dest{attempt}"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_vaultstore"))
            .args(["backup", "run", "--store"])
            .arg(&path)
            .arg("--to")
            .arg(&dest)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill it as soon as its first segment reached the destination.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            let copied = std::fs::read_dir(dest.join("p0"))
                .map(|d| d.count())
                .unwrap_or(0);
            if copied > 0 || child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let _ = child.kill();
        let status = child.wait().unwrap();
        if status.success() {
            continue; // It finished first; try again with the remaining work.
        }
        let store = Store::open(&path).unwrap();
        let rows = history_of(&store, ProcessType::BackingUpUnits);
        assert_eq!(
            rows.last().map(String::as_str),
            Some("Failed to process archived messages"),
            "{rows:?}"
        );
        let last = store
            .history_since(0)
            .into_iter()
            .find(|e| e.process == ProcessType::BackingUpUnits.code())
            .unwrap();
        assert!(last.detail.unwrap().contains("interrupted"));
        assert!(store.running_processes().is_empty());
        caught = true;
        break;
    }
    assert!(
        caught,
        "the backup always finished before it could be killed"
    );
}

#[test]
fn the_period_filter_at_its_edges() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    drop(Store::init(&path, &InitOptions::default()).unwrap());
    let now = now_ms();
    {
        let (log, _) = HistoryLog::open(Arc::new(StdFs), &path, false, Default::default()).unwrap();
        for (run, age) in [
            (1, DAY_MS - 60_000),
            (2, DAY_MS + 60_000),
            (3, 3 * DAY_MS + 60_000),
        ] {
            log.append(HistoryEntry {
                time_ms: now - age,
                run,
                process: ProcessType::Defragmentation.code(),
                status: Status::Failed("Database defragmentation failed".into()),
                detail: None,
            })
            .unwrap();
        }
    }
    let store = Store::open(&path).unwrap();
    let runs = |since: u64| {
        store
            .history_since(since)
            .iter()
            .map(|e| e.run)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        runs(now - DAY_MS),
        [1],
        "just inside 24h in, just outside out"
    );
    assert_eq!(runs(now - 3 * DAY_MS), [1, 2]);
    assert_eq!(runs(now - 7 * DAY_MS), [1, 2, 3]);
    drop(store);

    let vs = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_vaultstore"))
            .args(args)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let st = path.to_str().unwrap();
    assert_eq!(
        vs(&["jobs", "history", "--store", st, "--period", "24h"])
            .lines()
            .count(),
        2
    );
    assert_eq!(
        vs(&["jobs", "history", "--store", st, "--period", "3d"])
            .lines()
            .count(),
        3
    );
    let json: serde_json::Value = serde_json::from_str(&vs(&[
        "jobs", "history", "--store", st, "--period", "1w", "--json",
    ]))
    .unwrap();
    assert_eq!(json.as_array().unwrap().len(), 3);
    assert_eq!(json[0]["process"], "DB defragmentation");
    assert_eq!(json[0]["status"], "Database defragmentation failed");

    let empty = dir.path().join("empty");
    drop(Store::init(&empty, &InitOptions::default()).unwrap());
    assert_eq!(
        vs(&["jobs", "history", "--store", empty.to_str().unwrap()]),
        "No background process history for the selected period\n"
    );
}

#[test]
fn maintain_purges_trash_past_its_retention_and_records_each_step() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let store = Store::init(&path, &InitOptions::default()).unwrap();
    store.archive("alice", "1", b"mail one", false).unwrap();
    store.archive("bob", "2", b"mail two", false).unwrap();
    store.delete("alice", None).unwrap();
    store.delete("bob", Some("2")).unwrap();
    // Default retention (30 days): nothing is old enough.
    for (_, outcome) in store.maintain() {
        outcome.unwrap();
    }
    assert_eq!(store.trash().unwrap().len(), 2);
    store.set_retention(Some(Duration::ZERO), None).unwrap();
    let ran: Vec<ProcessType> = store
        .maintain()
        .into_iter()
        .map(|(p, r)| {
            r.unwrap();
            p
        })
        .collect();
    assert_eq!(
        ran,
        [
            ProcessType::FileSyncCache,
            ProcessType::DeletingMacroObjects,
            ProcessType::DeletingMicroObjects
        ]
    );
    assert!(store.trash().unwrap().is_empty());
    assert_eq!(store.stat().dead_savesets, 2);
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(
        history_of(&store, ProcessType::DeletingMicroObjects),
        ["Started", "Finished", "Started", "Finished"]
    );
    assert!(store.full_resynchronization().unwrap().contains("agree"));
}
