//! The operator's page in a real browser (Debian's chromium, driven through
//! chromedriver with fantoccini): the token is asked for once, the period
//! filter changes the history rows, an empty period shows the exact
//! message, and a running defragmentation shows its percentage.
//!
//! Skips with a message when chromium or chromedriver is missing
//! (`.ci/run` installs them: `apt-get install chromium chromium-driver`).

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::server::Server;
use fantoccini::{Client, ClientBuilder, Locator};
use vaultstore::OpenOptions;
use vaultstore::io::{FaultOp, FaultyFs};
use vaultstore::jobs::ProcessType;
use vaultstore::jobs::history::{HistoryEntry, HistoryLog, Status};
use vaultstore::metrics::{MetricsLog, Sample};
use vaultstore::service::ServeOptions;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const HOUR_MS: u64 = 3600 * 1000;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_driver() -> Option<(Driver, String)> {
    if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
        eprintln!(
            "SKIP: {CHROMIUM} or {CHROMEDRIVER} missing (apt-get install chromium chromium-driver)"
        );
        return None;
    }
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    Some((Driver(child), url))
}

async fn browser(driver: &str) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,1700", "--disable-background-networking", "--disable-component-update", "--no-first-run"],
        }),
    );
    ClientBuilder::rustls()
        .unwrap()
        .capabilities(caps)
        .connect(driver)
        .await
        .expect("a chromium session")
}

async fn rows(c: &Client, table: &str) -> usize {
    match c.find(Locator::Css(table)).await {
        Ok(t) => t.find_all(Locator::Css("tr")).await.unwrap().len() - 1,
        Err(_) => 0,
    }
}

async fn text_of(c: &Client, css: &str) -> Option<String> {
    c.find(Locator::Css(css)).await.ok()?.text().await.ok()
}

/// Wait (up to 20 s) until the page shows `css` with text containing `want`:
/// a click returns before the next page has loaded.
async fn wait_for_text(c: &Client, css: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if text_of(c, css).await.is_some_and(|t| t.contains(want)) {
            return;
        }
        assert!(Instant::now() < deadline, "{css} never showed {want:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Click a period filter link and wait for its page.
async fn filter(c: &Client, period: &str) {
    let link = c
        .find(Locator::Id(&format!("period-{period}")))
        .await
        .unwrap();
    link.click().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let url_ok = c
            .current_url()
            .await
            .is_ok_and(|u| u.as_str().ends_with(&format!("period={period}")));
        let on = c
            .find(Locator::Css(&format!("#period-{period}.on")))
            .await
            .is_ok();
        if url_ok && on {
            return;
        }
        assert!(Instant::now() < deadline, "the {period} page never loaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn log_in(c: &Client, url: &str, token: &str) {
    c.goto(url).await.unwrap();
    let input = c.find(Locator::Id("token")).await.expect("the token form");
    input.send_keys(token).await.unwrap();
    c.find(Locator::Id("login"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_text(c, "h1", "Background service processes").await;
}

fn seed_history(store: &Path) {
    let (log, _) = HistoryLog::open(
        Arc::new(vaultstore::io::StdFs),
        store,
        false,
        Default::default(),
    )
    .unwrap();
    let now = now_ms();
    for (run, age) in [(1, HOUR_MS), (2, 48 * HOUR_MS), (3, 5 * 24 * HOUR_MS)] {
        log.append(HistoryEntry {
            time_ms: now - age,
            run,
            process: ProcessType::BackingUpUnits.code(),
            status: Status::Finished,
            detail: None,
        })
        .unwrap();
    }
}

#[test]
fn the_operators_page_in_a_real_browser() {
    let Some((_driver, driver_url)) = start_driver() else {
        return;
    };
    // Every segment write sleeps while `slow` is set, so a defragmentation
    // runs long enough to be watched.
    let fs = FaultyFs::new();
    let slow = Arc::new(AtomicBool::new(false));
    let hook_slow = slow.clone();
    fs.set_hook(Some(Arc::new(move |op, path| {
        if op == FaultOp::Write
            && hook_slow.load(Ordering::SeqCst)
            && path.to_string_lossy().contains("segment-")
        {
            std::thread::sleep(Duration::from_millis(150));
        }
    })));
    let open = OpenOptions {
        vfs: Arc::new(fs.clone()),
        ..OpenOptions::default()
    };
    let server = Server::start_with(1 << 20, seed_history, open);
    let empty = Server::start(1 << 20);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = browser(&driver_url).await;
        // The token is asked for once; the session cookie carries it after.
        log_in(&c, &server.url, &server.rw).await;
        assert_eq!(rows(&c, "#history").await, 1, "24 hours");
        filter(&c, "3d").await;
        assert_eq!(rows(&c, "#history").await, 2, "3 days");
        filter(&c, "1w").await;
        assert_eq!(rows(&c, "#history").await, 3, "1 week");
        filter(&c, "24h").await;
        assert_eq!(rows(&c, "#history").await, 1, "24 hours again");
        c.goto(&format!("{}/store", server.url)).await.unwrap();
        assert!(text_of(&c, "#totals").await.unwrap().contains("Savesets"));

        // An empty period on a store without history shows the exact text.
        log_in(&c, &empty.url, &empty.rw).await;
        assert_eq!(
            text_of(&c, "#no-history").await.unwrap(),
            "No background process history for the selected period"
        );

        // A running defragmentation shows its percentage.
        let store = server.store.clone();
        for n in 0..500u64 {
            let mut m = common::message(n, 2000);
            let mut rng = common::Rng(n);
            m.extend((0..3000).map(|_| b'a' + rng.below(26) as u8));
            let owner = if n % 2 == 0 { "keep" } else { "drop" };
            store.archive(owner, &n.to_string(), &m, false).unwrap();
        }
        store.delete("drop", None).unwrap();
        store.purge_trash(Duration::ZERO, None, None).unwrap();
        store.seal().unwrap();
        slow.store(true, Ordering::SeqCst);
        let defrag = std::thread::spawn(move || store.defrag(0.1).unwrap());
        log_in(&c, &server.url, &server.rw).await;
        // Watch it until it is part way through.
        let deadline = Instant::now() + Duration::from_secs(60);
        let seen = loop {
            c.goto(&server.url).await.unwrap();
            if let Some(text) = text_of(&c, "#running").await {
                let percent = text_of(&c, "#running .percent").await.unwrap_or_default();
                let value: f64 = percent.trim_end_matches('%').parse().unwrap_or(-1.0);
                assert!((0.0..=100.0).contains(&value), "{text}");
                if text.contains("DB defragmentation") && value > 0.0 {
                    break text;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no running defragmentation with progress showed"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        slow.store(false, Ordering::SeqCst);
        let report = defrag.join().unwrap();
        assert!(!report.segments_read.is_empty());
        // Once it finished, the history says so.
        c.goto(&server.url).await.unwrap();
        let history = text_of(&c, "#history").await.unwrap();
        assert!(history.contains("DB defragmentation"), "{history}");
        eprintln!("seen while running: {seen}");
        c.close().await.unwrap();
    });
}

/// Samples of the store's figures over the last 30 hours, one every ten
/// minutes (the last 24 hours hold 144 of them), and process runs: two
/// finished, one failed, in the last day; one finished two days ago.
fn seed_series_and_runs(store: &Path) {
    let vfs: Arc<dyn vaultstore::io::Vfs> = Arc::new(vaultstore::io::StdFs);
    let log = MetricsLog::open(vfs.clone(), store).unwrap();
    let now = now_ms();
    for k in (1..=180u64).rev() {
        let t = now - k * 10 * 60 * 1000;
        let n = 180 - k;
        log.append(Sample {
            time_ms: t,
            savesets: n * 10,
            references: n * 30,
            logical_bytes: n * 1_000_000,
            stored_bytes: n * 400_000,
            dead_bytes: (n % 40) * 10_000,
            awaiting_index: n % 7,
            awaiting_backup: n % 11,
            ready: n % 5,
        })
        .unwrap();
    }
    let (history, _) = HistoryLog::open(vfs, store, false, Default::default()).unwrap();
    let runs = [
        (
            11,
            ProcessType::BackingUpUnits,
            3 * HOUR_MS,
            Status::Finished,
        ),
        (
            12,
            ProcessType::Defragmentation,
            2 * HOUR_MS,
            Status::Failed("Database defragmentation failed".into()),
        ),
        (
            13,
            ProcessType::FullResynchronization,
            HOUR_MS,
            Status::Finished,
        ),
        (
            14,
            ProcessType::BackingUpUnits,
            50 * HOUR_MS,
            Status::Finished,
        ),
    ];
    for (run, process, age, end) in runs {
        for (offset, status) in [(0, Status::Started), (20 * 60 * 1000, end)] {
            history
                .append(HistoryEntry {
                    time_ms: now - age + offset,
                    run,
                    process: process.code(),
                    status,
                    detail: None,
                })
                .unwrap();
        }
    }
}

async fn attr(c: &Client, css: &str, name: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|_| panic!("{css} missing"))
        .attr(name)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{css} has no {name}"))
}

/// Write a screenshot of the current page into VAULTSTORE_SCREENSHOTS, if set.
async fn screenshot(c: &Client, name: &str) {
    if let Ok(dir) = std::env::var("VAULTSTORE_SCREENSHOTS") {
        std::fs::create_dir_all(&dir).unwrap();
        let png = c.screenshot().await.unwrap();
        std::fs::write(Path::new(&dir).join(format!("{name}.png")), png).unwrap();
    }
}

#[test]
fn the_page_shows_charts_fill_bars_a_timeline_and_a_paginated_segment_list() {
    let Some((_driver, driver_url)) = start_driver() else {
        return;
    };
    // One sample at start, then none for an hour: the charts hold exactly
    // the seeded samples of the period and that one.
    let server = Server::start_full_with(
        ServeOptions {
            sample_interval: Duration::from_secs(3600),
            ..ServeOptions::default()
        },
        seed_series_and_runs,
    );
    let store = server.store.clone();
    let mut mail = common::corpus_messages().unwrap_or_default();
    mail.truncate(40);
    mail.extend((0..300u64).map(|n| common::message(n, 1500)));
    for (n, m) in mail.iter().enumerate() {
        let owner = ["alice", "bob", "carol"][n % 3];
        store.archive(owner, &n.to_string(), m, false).unwrap();
    }
    store.delete("bob", None).unwrap();
    store.purge_trash(Duration::ZERO, None, None).unwrap();
    store.seal().unwrap();
    // A second partition with a capacity: its bar is filled against it.
    store
        .partition_add(Path::new("p-capped"), Some(64 << 20))
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = browser(&driver_url).await;
        log_in(&c, &server.url, &server.rw).await;
        // The timeline: one bar per run of the period, the failed one red.
        assert_eq!(attr(&c, "#timeline", "data-runs").await, "3");
        let bars = c
            .find_all(Locator::Css("#timeline rect.run"))
            .await
            .unwrap();
        assert_eq!(bars.len(), 3);
        assert_eq!(
            c.find_all(Locator::Css("#timeline rect.run.failed"))
                .await
                .unwrap()
                .len(),
            1
        );
        assert_eq!(rows(&c, "#history").await, 6, "each run's start and end");
        // Times read as local times with a relative form; exact on hover.
        let first_time = c.find(Locator::Css("#history time")).await.unwrap();
        assert!(first_time.text().await.unwrap().contains("ago"));
        assert!(
            first_time
                .attr("title")
                .await
                .unwrap()
                .unwrap()
                .contains("Z")
        );
        screenshot(&c, "processes").await;
        filter(&c, "3d").await;
        assert_eq!(attr(&c, "#timeline", "data-runs").await, "4");

        // The store view: charts with the period's points, fill bars that
        // match `partition list`, segments summarised.
        c.goto(&format!("{}/store", server.url)).await.unwrap();
        wait_for_text(&c, "h1", "Store").await;
        // 143 seeded samples in the last 24 hours (the 144th, 24 hours old
        // when seeded, is just outside now), and the one taken at start.
        for chart in ["#chart-bytes", "#chart-dead", "#chart-pending"] {
            assert_eq!(attr(&c, chart, "data-points").await, "144", "{chart}");
        }
        assert_eq!(attr(&c, "#chart-ingest", "data-points").await, "143");
        let caption = text_of(&c, "#chart-bytes + figcaption").await.unwrap();
        assert!(
            caption.contains("logical bytes") && caption.contains("now"),
            "{caption}"
        );
        // The bars match `partition list`: used bytes exactly; the limit is
        // the capacity, or the volume (whose free space moves a little).
        let partitions = store.partitions();
        let (p0, p1) = (&partitions[0], &partitions[1]);
        assert_eq!(attr(&c, "#fill-0", "value").await, p0.bytes.to_string());
        let max0: f64 = attr(&c, "#fill-0", "max").await.parse().unwrap();
        assert!(
            (max0 - p0.fill_limit() as f64).abs() < 0.01 * max0,
            "{max0} vs {p0:?}"
        );
        assert_eq!(attr(&c, "#fill-1", "value").await, p1.bytes.to_string());
        assert_eq!(attr(&c, "#fill-1", "max").await, (64u64 << 20).to_string());
        let totals = text_of(&c, "#totals").await.unwrap();
        assert!(totals.contains("KiB") || totals.contains("MiB"), "{totals}");
        let summary = text_of(&c, "#segment-summary").await.unwrap();
        assert!(summary.contains("Sealed, archive bit set"), "{summary}");
        assert_eq!(attr(&c, "#dead-histogram", "data-buckets").await, "6");
        assert!(
            c.find(Locator::Css("#segments")).await.is_err(),
            "no row per segment on the main view"
        );
        screenshot(&c, "store").await;

        // The segment list: sorted, a page at a time.
        c.find(Locator::Id("all-segments"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_for_text(&c, "h1", "Segments").await;
        let segments = store.segments();
        assert_eq!(rows(&c, "#segment-list").await, segments.len().min(100));
        c.goto(&format!(
            "{}/store/segments?sort=bytes&order=desc",
            server.url
        ))
        .await
        .unwrap();
        wait_for_text(&c, "h1", "Segments").await;
        let largest = segments
            .iter()
            .map(|g| g.id)
            .max_by_key(|id| segments.iter().find(|g| g.id == *id).map_or(0, |g| g.bytes));
        let first = text_of(&c, "#segment-list tr:nth-child(2) td")
            .await
            .unwrap();
        let biggest = segments.iter().max_by_key(|g| g.bytes).unwrap();
        assert_eq!(
            segments
                .iter()
                .find(|g| g.id.to_string() == first)
                .unwrap()
                .bytes,
            biggest.bytes,
            "{first} vs {largest:?}"
        );
        screenshot(&c, "segments").await;
        c.close().await.unwrap();
    });
}

async fn click(c: &Client, id: &str) {
    c.find(Locator::Id(id))
        .await
        .unwrap_or_else(|_| panic!("no #{id}"))
        .click()
        .await
        .unwrap();
}

#[test]
fn operators_start_confirm_and_cancel_processes_from_the_page() {
    let Some((_driver, driver_url)) = start_driver() else {
        return;
    };
    let server = Server::start(1 << 20);
    let store = server.store.clone();
    for n in 0..50u64 {
        store
            .archive("gone", &n.to_string(), &common::message(n, 3000), false)
            .unwrap();
    }
    store.delete("gone", None).unwrap();
    // The page's purge takes what is past the trash retention: all of it.
    store.set_retention(Some(Duration::ZERO), None).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = browser(&driver_url).await;
        log_in(&c, &server.url, &server.rw).await;
        // A purge deletes for good: the page asks first, and "No" changes nothing.
        let micro = ProcessType::DeletingMicroObjects.code();
        click(&c, &format!("start-{micro}-button")).await;
        wait_for_text(&c, "#question", "Deleting micro-objects from trash will").await;
        click(&c, "back").await;
        wait_for_text(&c, "h1", "Background service processes").await;
        assert_eq!(
            store.trash().unwrap().len(),
            50,
            "nothing purged without a yes"
        );
        click(&c, &format!("start-{micro}-button")).await;
        wait_for_text(&c, "#question", "Start it?").await;
        click(&c, "confirm").await;
        wait_for_text(&c, "h1", "Background service processes").await;
        let deadline = Instant::now() + Duration::from_secs(20);
        while !store.trash().unwrap().is_empty() {
            assert!(
                Instant::now() < deadline,
                "the purge started from the page did not run"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // A running process gets a cancel button; pressing it stops the run.
        let runner = common::run_until_cancelled(store.clone(), ProcessType::FullResynchronization);
        let run = loop {
            if let Some(r) = store.running_processes().first() {
                break r.run;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        c.goto(&server.url).await.unwrap();
        click(&c, &format!("cancel-{run}")).await;
        wait_for_text(&c, "h1", "Background service processes").await;
        let outcome = runner.join().unwrap();
        assert!(
            matches!(outcome, Err(vaultstore::Error::Cancelled { .. })),
            "{outcome:?}"
        );
        c.goto(&server.url).await.unwrap();
        let history = text_of(&c, "#history").await.unwrap();
        assert!(history.contains("Cancelled by the operator"), "{history}");
        assert!(
            history.contains("Deleting micro-objects from trash"),
            "{history}"
        );

        // A second start of a type that runs is refused in words.
        let holder = common::run_until_cancelled(store.clone(), ProcessType::FileSyncCache);
        while store.running_processes().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let seal = ProcessType::FileSyncCache.code();
        click(&c, &format!("start-{seal}-button")).await;
        wait_for_text(&c, "#error", "is already running").await;
        store.cancel_process(ProcessType::FileSyncCache).unwrap();
        let held = holder.join().unwrap();
        assert!(held.is_err(), "the held run ends cancelled");

        // Backup mode from its button: on, an archive goes to the message
        // cache (the store page says so), off moves it into the segments.
        c.goto(&server.url).await.unwrap();
        click(&c, "backup-mode-button").await;
        wait_for_text(&c, "#backup-mode-now", "Backup mode is on since").await;
        assert!(store.backup_mode(None).unwrap().on);
        let cached = store
            .archive("late", "1", &common::message(99, 3000), false)
            .unwrap();
        c.goto(&format!("{}/store", server.url)).await.unwrap();
        wait_for_text(&c, "#backup-mode", "1 items").await;
        c.goto(&server.url).await.unwrap();
        click(&c, "backup-mode-button").await;
        wait_for_text(&c, "#backup-mode-now", "Backup mode is off").await;
        let deadline = Instant::now() + Duration::from_secs(20);
        while store.backup_mode(None).unwrap().cached_items > 0 {
            assert!(Instant::now() < deadline, "the cache was not processed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(store.refs(&cached.id).unwrap()[0].owner, "late");

        // A read-only session sees no buttons.
        c.delete_all_cookies().await.unwrap();
        log_in(&c, &server.url, &server.ro).await;
        assert!(
            c.find(Locator::Id("start")).await.is_err(),
            "start forms for a read-only token"
        );
        assert!(
            c.find(Locator::Id("backup-mode-button")).await.is_err(),
            "the backup mode button for a read-only token"
        );
        c.close().await.unwrap();
    });
}
