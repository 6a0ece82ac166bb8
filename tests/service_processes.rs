//! Background processes inside the service: the CLI's process commands run
//! against a store `serve` holds (through its socket) while clients archive,
//! the scheduler runs periodic processes on its own, and operators start
//! and cancel processes through the API.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::server::Server;
use reqwest::StatusCode;
use serde_json::{Value, json};
use vaultstore::jobs::ProcessType;
use vaultstore::jobs::history::Status;
use vaultstore::service::ServeOptions;
use vaultstore::{SavesetId, Store};

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().build().unwrap()
}

/// Run the `vaultstore` binary; its exit code, stdout and stderr.
fn vaultstore(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vaultstore"))
        .args(args)
        .env("VAULTSTORE_LOG", "error")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Each process type's statuses in the store's history, oldest first.
fn statuses(store: &Store, process: ProcessType) -> Vec<Status> {
    let mut rows: Vec<_> = store
        .history_since(0)
        .into_iter()
        .filter(|e| e.process == process.code())
        .collect();
    rows.sort_by_key(|e| (e.time_ms, e.status != Status::Started));
    rows.into_iter().map(|e| e.status).collect()
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_cli_runs_purge_defrag_and_backup_through_the_service_while_clients_archive() {
    let mut server = Server::start(64 << 20);
    let dir = server.store.dir().to_path_buf();
    let store_arg = dir.to_str().unwrap().to_string();
    // Dead weight for the purge and the defragmentation: trashed items.
    for n in 0..200u64 {
        server
            .store
            .archive("leaver", &n.to_string(), &common::message(n, 4000), false)
            .unwrap();
    }
    server.store.delete("leaver", None).unwrap();
    server.store.seal().unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..16u64)
        .map(|w| {
            let (url, rw) = (server.url.clone(), server.rw.clone());
            let (stop, acked) = (stop.clone(), acked.clone());
            std::thread::spawn(move || {
                let c = client();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let m = common::message(1_000_000 + w * 100_000 + n, 3000);
                    let r = c
                        .put(format!("{url}/owners/w{w}/items/{n}"))
                        .bearer_auth(&rw)
                        .body(m.clone())
                        .send()
                        .unwrap();
                    assert_eq!(
                        r.status(),
                        StatusCode::OK,
                        "archiving failed while processes ran"
                    );
                    acked.lock().unwrap().push(m);
                    n += 1;
                }
            })
        })
        .collect();

    let (code, out, err) = vaultstore(&[
        "trash",
        "purge",
        "--store",
        &store_arg,
        "--older-than",
        "0s",
        "--json",
    ]);
    assert_eq!(code, 0, "trash purge: {err}");
    let purge: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(purge["purged_references"], 200, "{out}");

    let (code, out, err) = vaultstore(&[
        "defrag",
        "--store",
        &store_arg,
        "--threshold",
        "0.3",
        "--json",
    ]);
    assert_eq!(code, 0, "defrag: {err}");
    let defrag: Value = serde_json::from_str(&out).unwrap();
    assert!(
        defrag["bytes_reclaimed"].as_u64().unwrap() > 0,
        "the purged items' bytes are reclaimed: {out}"
    );

    let backup = tempfile::tempdir().unwrap();
    let to = backup.path().join("copy");
    let (code, out, err) = vaultstore(&[
        "backup",
        "run",
        "--store",
        &store_arg,
        "--to",
        to.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "backup run: {err}");
    assert!(out.starts_with("copied "), "{out}");

    // The same error, and exit code, as a local run.
    let (code, _, err) = vaultstore(&["defrag", "--store", &store_arg, "--threshold", "7"]);
    assert_eq!(code, 2);
    assert!(err.contains("threshold 7 is out of range"), "{err}");

    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 50, "only {} items archived", acked.len());
    for m in &acked {
        assert_eq!(&server.store.get(&SavesetId::of(m)).unwrap(), m);
    }
    for process in [
        ProcessType::DeletingMicroObjects,
        ProcessType::Defragmentation,
        ProcessType::BackingUpUnits,
        ProcessType::BackingUpResources,
    ] {
        let s = statuses(&server.store, process);
        assert!(
            s.starts_with(&[Status::Started, Status::Finished]),
            "{process}: {s:?}"
        );
    }
    server.stop();
    // The backup opens as a store of its own.
    assert!(Store::open(&to).unwrap().stat().savesets > 0);
    assert!(!dir.join(vaultstore::service::SOCKET_FILE).exists());
}

#[test]
fn the_scheduler_alone_purges_expired_trash_and_seals_an_aged_segment() {
    let opts = ServeOptions {
        schedule_tick: Duration::from_millis(50),
        ..ServeOptions::default()
    };
    let prepare = |path: &Path| {
        // A segment is aged 300 ms after it was created.
        std::fs::remove_dir_all(path).unwrap();
        let init = vaultstore::InitOptions {
            seal_age_ms: 300,
            ..Default::default()
        };
        let s = Store::init(path, &init).unwrap();
        s.set_retention(Some(Duration::ZERO), None).unwrap();
        for p in [
            ProcessType::FileSyncCache,
            ProcessType::DeletingMicroObjects,
        ] {
            s.set_schedule(p, Some(Duration::from_millis(300))).unwrap();
        }
        s.archive("alice", "1", b"Subject: a\r\n\r\nbody\r\n", false)
            .unwrap();
        s.archive("alice", "2", b"Subject: b\r\n\r\nbody\r\n", false)
            .unwrap();
        s.delete("alice", Some("2")).unwrap();
    };
    let server = Server::start_full_with(opts, prepare);
    let store = &server.store;
    // A new active segment, which nothing but the scheduler will seal.
    store
        .archive("alice", "3", b"Subject: c\r\n\r\nbody\r\n", false)
        .unwrap();
    assert!(
        store
            .segments()
            .iter()
            .any(|s| s.state == vaultstore::SegmentState::Active)
    );
    wait_for("the scheduled purge", Duration::from_secs(20), || {
        store.trash().unwrap().is_empty()
    });
    wait_for("the scheduled seal", Duration::from_secs(20), || {
        store
            .segments()
            .iter()
            .all(|s| s.state == vaultstore::SegmentState::Sealed)
    });
    for process in [
        ProcessType::FileSyncCache,
        ProcessType::DeletingMicroObjects,
    ] {
        wait_for("the history", Duration::from_secs(5), || {
            statuses(store, process).contains(&Status::Finished)
        });
    }
    // Items 1 and 3 live; 2 was purged.
    assert_eq!(store.items("alice", None, 10).unwrap().len(), 2);
}

#[test]
fn operators_start_and_cancel_processes_through_the_api() {
    let server = Server::start(64 << 20);
    for n in 0..300u64 {
        server
            .store
            .archive("bob", &n.to_string(), &common::message(n, 20_000), false)
            .unwrap();
    }
    server.store.delete("bob", None).unwrap();
    server
        .store
        .purge_trash(Duration::ZERO, None, None)
        .unwrap();
    let c = client();
    let jobs = format!("{}/jobs", server.url);
    let start_defrag = |token: &str| {
        c.post(&jobs)
            .bearer_auth(token)
            .json(&json!({"process": "DB defragmentation", "threshold": 0.1}))
            .send()
            .unwrap()
    };
    // A read-only token may not start one.
    let r = start_defrag(&server.ro);
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Bad requests name what is wrong.
    for (body, needle) in [
        (json!({"process": "Backing up units"}), "destination"),
        (json!({"process": "Deleting messages"}), "cannot be started"),
        (json!({"process": "no such thing"}), "unknown process"),
        (json!({"threshold": 0.5}), "names no process"),
    ] {
        let r = c
            .post(&jobs)
            .bearer_auth(&server.rw)
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
        let v: Value = r.json().unwrap();
        assert!(v["message"].as_str().unwrap().contains(needle), "{v}");
    }
    // Hold a run of one type open, so the next start of that type conflicts.
    let started = Arc::new(std::sync::Barrier::new(2));
    let release = Arc::new(std::sync::Barrier::new(2));
    let holder = {
        let (store, started, release) = (server.store.clone(), started.clone(), release.clone());
        std::thread::spawn(move || {
            store
                .run_process(ProcessType::Defragmentation, |_| {
                    started.wait();
                    release.wait();
                    Ok(())
                })
                .unwrap();
        })
    };
    started.wait();
    let r = start_defrag(&server.rw);
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let v: Value = r.json().unwrap();
    assert_eq!(v["error"], "already_running", "{v}");
    release.wait();
    holder.join().unwrap();

    // Started for real: 202 with the run's id, which the running list shows.
    let r = start_defrag(&server.rw);
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let v: Value = r.json().unwrap();
    let run = v["run"].as_u64().unwrap();
    assert_eq!(v["process"], "DB defragmentation");
    // Cancel it (it may have finished already: then it is not running).
    let r = c
        .delete(format!("{jobs}/{run}"))
        .bearer_auth(&server.rw)
        .send()
        .unwrap();
    assert!(
        [StatusCode::ACCEPTED, StatusCode::NOT_FOUND].contains(&r.status()),
        "{}",
        r.status()
    );
    wait_for("the run to end", Duration::from_secs(30), || {
        server.store.running_processes().is_empty()
    });
    let s = statuses(&server.store, ProcessType::Defragmentation);
    assert_eq!(s.len(), 4, "{s:?}");
    assert!(
        matches!(&s[3], Status::Finished)
            || matches!(&s[3], Status::Failed(t) if t == "Cancelled by the operator"),
        "{s:?}"
    );
    let r = c
        .delete(format!("{jobs}/999999"))
        .bearer_auth(&server.rw)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = c
        .delete(format!("{jobs}/{run}"))
        .bearer_auth(&server.ro)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

/// The value of `metric` with `labels` in a scrape.
fn sample(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        // The parser files a counter's `_total` sample under the family's name.
        .find(|s| {
            (s.metric == metric || format!("{}_total", s.metric) == metric)
                && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
        .and_then(|s| match s.value {
            prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Untyped(v) => Some(v),
            _ => None,
        })
}

#[test]
fn metrics_parse_as_prometheus_text_and_agree_with_stat_and_healthz_tells_writable() {
    let server = Server::start(64 << 20);
    let c = client();
    for n in 0..40u64 {
        let r = c
            .put(format!("{}/owners/carol/items/{n}", server.url))
            .bearer_auth(&server.rw)
            .body(common::message(n, 5000))
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    server.store.delete("carol", Some("3")).unwrap();
    server.store.seal().unwrap();
    server.store.maintain();
    // No token: 401 for metrics, but health needs none.
    let r = c.get(format!("{}/metrics", server.url)).send().unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = c.get(format!("{}/healthz", server.url)).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // The read-only token reads metrics.
    let r = c
        .get(format!("{}/metrics", server.url))
        .bearer_auth(&server.ro)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let stat = server.store.stat();
    for (metric, want) in [
        ("vaultstore_savesets", stat.savesets),
        ("vaultstore_references", stat.references),
        ("vaultstore_stored_bytes", stat.stored_bytes),
        ("vaultstore_logical_bytes", stat.logical_bytes),
        ("vaultstore_dead_bytes", stat.dead_bytes),
    ] {
        assert_eq!(
            sample(&scrape, metric, &[]),
            Some(want as f64),
            "{metric}\n{text}"
        );
    }
    let pending = server.store.pending();
    assert_eq!(
        sample(
            &scrape,
            "vaultstore_pending_savesets",
            &[("state", "awaiting_index")]
        ),
        Some(pending.awaiting_index as f64)
    );
    let set = server
        .store
        .segments()
        .iter()
        .filter(|s| s.archive_bit)
        .count();
    assert_eq!(
        sample(&scrape, "vaultstore_segments", &[("archive_bit", "set")]),
        Some(set as f64)
    );
    // 40 archives answered 200, counted under their route, and timed.
    assert_eq!(
        sample(
            &scrape,
            "vaultstore_http_requests_total",
            &[
                ("route", "/owners/:owner/items/:item"),
                ("method", "PUT"),
                ("status", "200")
            ]
        ),
        Some(40.0),
        "{text}"
    );
    assert!(
        text.contains("vaultstore_http_request_duration_seconds_bucket"),
        "{text}"
    );
    // maintain ran the purges: their last run finished.
    assert_eq!(
        sample(
            &scrape,
            "vaultstore_process_last_succeeded",
            &[("process", "Deleting micro-objects from trash")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&scrape, "vaultstore_processes_running", &[]),
        Some(0.0)
    );

    // A read-only store is not healthy: it takes no writes.
    let ro = Server::start_with(
        1 << 20,
        |_| {},
        vaultstore::OpenOptions {
            read_only: true,
            ..Default::default()
        },
    );
    let r = c.get(format!("{}/healthz", ro.url)).send().unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let v: Value = r.json().unwrap();
    assert!(v["reason"].as_str().unwrap().contains("read-only"), "{v}");
}

#[test]
fn shutdown_cancels_running_processes_and_records_them_as_cancelled() {
    let mut server = Server::start(1 << 20);
    // A process that runs until it is told to stop, checking at safe points.
    let runner =
        common::run_until_cancelled(server.store.clone(), ProcessType::FullResynchronization);
    wait_for("the process to start", Duration::from_secs(5), || {
        !server.store.running_processes().is_empty()
    });
    let began = Instant::now();
    server.stop();
    let stopped = began.elapsed();
    wait_for("the process to stop", Duration::from_secs(15), || {
        runner.is_finished()
    });
    let outcome = runner.join().unwrap();
    assert!(
        matches!(outcome, Err(vaultstore::Error::Cancelled { .. })),
        "{outcome:?}"
    );
    assert!(
        stopped < Duration::from_secs(10),
        "shutdown took {stopped:?}"
    );
    let s = statuses(&server.store, ProcessType::FullResynchronization);
    assert_eq!(
        s,
        [
            Status::Started,
            Status::Failed("Cancelled by the operator".into())
        ]
    );
}

/// The same commands, run once on a free store and once on an identical
/// store that `serve` holds: each prints the same lines and exits the same
/// way, and both stores end in the same state.
#[test]
fn every_changing_command_behaves_the_same_through_the_service() {
    // A small HTTP body limit: the socket takes records as large as the CLI does.
    let served = Server::start(1 << 20);
    let free = tempfile::tempdir().unwrap();
    let free_dir = free.path().join("s");
    let init = vaultstore::InitOptions {
        segment_bytes: 256 << 10,
        ..vaultstore::InitOptions::default()
    };
    drop(Store::init(&free_dir, &init).unwrap());
    let files = tempfile::tempdir().unwrap();
    let file = |name: &str, content: &[u8]| {
        let p = files.path().join(name);
        std::fs::write(&p, content).unwrap();
        p.to_str().unwrap().to_string()
    };
    let second = common::message(2, 5000);
    let (m1, m2) = (
        file("m1.eml", &common::message(1, 3000)),
        file("m2.eml", &second),
    );
    // m1 dies when alice's item is replaced; m2 stays referenced.
    let kept = SavesetId::of(&second).to_string();
    let big_content = common::message(3, 3 << 20);
    let big = file("big.eml", &big_content);
    let mail = files.path().join("mail");
    std::fs::create_dir(&mail).unwrap();
    for n in 0..40u64 {
        std::fs::write(
            mail.join(format!("{n}.eml")),
            common::message(100 + n, 2000),
        )
        .unwrap();
    }
    let mail = mail.to_str().unwrap().to_string();
    let unknown = SavesetId::of(b"never stored").to_string();
    let script: Vec<Vec<&str>> = vec![
        vec!["put", &m1, &m2],
        vec!["put", &m1],
        vec!["put", &big],
        vec!["archive", "--owner", "alice", "--item", "1", &m1],
        vec!["archive", "--owner", "bob smith/x", "--item", "a b?#%", &m2],
        vec!["archive", "--owner", "alice", "--item", "1", &m2],
        vec![
            "archive",
            "--owner",
            "alice",
            "--item",
            "1",
            "--replace",
            &m2,
        ],
        vec!["link", "--owner", "carol", "--item", "7", &kept],
        vec!["link", "--owner", "carol", "--item", "7", &kept],
        vec!["link", "--owner", "carol", "--item", "8", &unknown],
        vec!["delete", "--owner", "alice", "--item", "1"],
        vec!["trash", "restore", "--owner", "alice", "--item", "1"],
        vec!["delete", "--owner", "bob smith/x"],
        vec!["hold", "set", "--owner", "alice"],
        vec!["hold", "set", "--owner", "dave", "--custodian"],
        vec!["hold", "set", "--owner", "nobody"],
        vec!["hold", "clear", "--owner", "alice"],
        vec!["import", "--owner", "imported", &mail],
        vec!["maintain"],
        vec!["seal"],
        vec!["seal"],
        vec!["seal", "--aged"],
        vec!["mark-indexed", &kept],
        vec!["mark-indexed", &unknown],
        vec![
            "settings",
            "--trash-retention",
            "3d",
            "--max-processes",
            "3",
        ],
        vec!["settings", "--schedule", "DB defragmentation=12h", "--json"],
        vec!["settings", "--schedule", "Deleting messages=1h"],
        vec![
            "settings",
            "--max-processes",
            "0",
            "--trash-retention",
            "9d",
        ],
        vec!["settings", "--remove-safety-copies", "bogus"],
        vec!["partition", "add", "more", "--capacity", "1G"],
        vec!["partition", "close", "1"],
        vec!["partition", "close", "9"],
        vec!["backup", "mark", "1", "--checksum", "00"],
        vec!["backup", "mark", "1", "--checksum", "CHECKSUM"],
        vec!["feed", "ack", "not-a-cursor"],
        vec!["feed", "ack", "CURSOR"],
    ];
    let served_dir = served.store.dir().to_str().unwrap().to_string();
    let free_dir = free_dir.to_str().unwrap().to_string();
    for step in &script {
        let run = |store: &str| {
            // Segments hold times: each store's own checksum and cursor.
            let listed = |args: &[&str]| -> Value {
                let (_, out, _) = vaultstore(&[args, &["--store", store, "--json"]].concat());
                serde_json::from_str(&out).unwrap()
            };
            let mut args: Vec<String> = step.iter().map(|a| a.to_string()).collect();
            let mut placed = ("", String::new());
            for a in args.iter_mut() {
                if a == "CHECKSUM" {
                    *a = listed(&["backup", "list"])[0]["checksum"]
                        .as_str()
                        .unwrap()
                        .into();
                } else if a == "CURSOR" {
                    *a = listed(&["feed"])["cursor"].as_str().unwrap().into();
                    placed = ("CURSOR", a.clone());
                }
            }
            args.extend(["--store".to_string(), store.to_string()]);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let (code, out, err) = vaultstore(&args);
            // Only the import's timing and the store's path may differ.
            let out: Vec<&str> = out
                .lines()
                .filter(|l| !l.contains("last_started"))
                .collect();
            let out = out.join("\n");
            let mut out = out.split(" in ").next().unwrap_or_default().to_string();
            if !placed.0.is_empty() {
                out = out.replace(&placed.1, placed.0);
            }
            let err = err.split("blake3 is").next().unwrap_or_default();
            (code, out, err.replace(store, "STORE"))
        };
        let (local, through) = (run(&free_dir), run(&served_dir));
        assert_eq!(through, local, "{step:?} through the service and locally");
        assert!(!through.2.contains("locked"), "{step:?}: {}", through.2);
    }
    // Both stores end in the same state (but for paths and times).
    let looked = |dir: &str, what: &[&str]| -> Value {
        let (code, out, err) = vaultstore(&[what, &["--store", dir, "--json"]].concat());
        assert_eq!(code, 0, "{what:?}: {err}");
        let mut v: Value = serde_json::from_str(&out).unwrap();
        // Record sizes differ (an import sent item by item is not one batch).
        let differ = [
            "path",
            "trashed_at_ms",
            "last_started_ms",
            "bytes",
            "free_bytes",
            "index_bytes",
            "catalog_bytes",
            "stored_bytes",
            "segments",
            // Log records since a checkpoint: an import sent item by item
            // takes more sequences than one batch.
            "overlay_records",
        ];
        scrub(&mut v, &differ);
        v
    };
    for what in [
        &["owners"][..],
        &["trash", "list"],
        &["pending"],
        &["stat"],
        &["settings"],
        &["partition", "list"],
    ] {
        let (through, local) = (looked(&served_dir, what), looked(&free_dir, what));
        assert_eq!(through, local, "{what:?}");
    }
    assert_eq!(served.store.refs(&kept.parse().unwrap()).unwrap().len(), 3);
    // Over HTTP, the body limit holds; the read-only token reads the
    // settings and changes nothing.
    let c = client();
    let mut tcp = std::net::TcpStream::connect(served.url.trim_start_matches("http://")).unwrap();
    let head = format!(
        "PUT /savesets HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-length: {}\r\n\r\n",
        served.rw,
        big_content.len()
    );
    std::io::Write::write_all(&mut tcp, head.as_bytes()).unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut tcp, &mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let settings = format!("{}/settings", served.url);
    let read = c.get(&settings).bearer_auth(&served.ro).send().unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    let change = json!({"max_processes": 1});
    for token in [&served.ro, &served.rw] {
        let answer = c
            .put(&settings)
            .bearer_auth(token)
            .json(&change)
            .send()
            .unwrap();
        let expected = if token == &served.ro { 403 } else { 200 };
        assert_eq!(answer.status().as_u16(), expected);
    }
    assert_eq!(served.store.manifest().max_processes, 1);
    assert_eq!(served.store.owners().unwrap().len(), 5);
}

/// `v` without `keys`, at any depth.
fn scrub(v: &mut Value, keys: &[&str]) {
    match v {
        Value::Object(o) => {
            o.retain(|k, _| !keys.contains(&k.as_str()));
            o.values_mut().for_each(|v| scrub(v, keys));
        }
        Value::Array(a) => a.iter_mut().for_each(|v| scrub(v, keys)),
        _ => {}
    }
}
