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
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
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
    let (log, _) = HistoryLog::open(Arc::new(vaultstore::io::StdFs), store, false).unwrap();
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
