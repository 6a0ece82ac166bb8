//! The HTTP service: every endpoint, tokens, limits, bad input, a client
//! that disconnects mid-upload, a clean shutdown, and a bounded load test
//! (64 clients archiving real mail while others read and a defragmentation
//! runs) that checks every acknowledged item reads back.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::server::Server;
use reqwest::StatusCode;
use serde_json::Value;
use vaultstore::service::auth::{Access, token};
use vaultstore::{SavesetId, Store};

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn json(r: reqwest::blocking::Response) -> Value {
    r.json().unwrap()
}

#[test]
fn every_endpoint_answers_as_documented() {
    let s = Server::start(1 << 20);
    let c = client();
    let (u, rw) = (&s.url, &s.rw);
    let auth = |b: reqwest::blocking::RequestBuilder| b.bearer_auth(rw);
    let message = common::message(1, 5000);
    let id = SavesetId::of(&message).to_string();

    // put a saveset: new, then duplicate
    let r = auth(c.put(format!("{u}/savesets")).body(message.clone()))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let v = json(r);
    assert_eq!(
        (v["id"].as_str().unwrap(), v["new"].as_bool()),
        (id.as_str(), Some(true))
    );
    let r = auth(c.put(format!("{u}/savesets")).body(message.clone()))
        .send()
        .unwrap();
    assert_eq!(
        (r.status(), json(r)["new"].as_bool()),
        (StatusCode::OK, Some(false))
    );

    // has (HEAD), get, Range
    let r = auth(c.head(format!("{u}/savesets/{id}"))).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let absent = SavesetId::of(b"absent").to_string();
    let r = auth(c.head(format!("{u}/savesets/{absent}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = auth(c.get(format!("{u}/savesets/{id}"))).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().unwrap().as_ref(), message.as_slice());
    let r = auth(
        c.get(format!("{u}/savesets/{id}"))
            .header("Range", "bytes=10-19"),
    )
    .send()
    .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        r.headers()["content-range"].to_str().unwrap(),
        format!("bytes 10-19/{}", message.len())
    );
    assert_eq!(r.bytes().unwrap().as_ref(), &message[10..20]);
    let r = auth(
        c.get(format!("{u}/savesets/{id}"))
            .header("Range", "bytes=99999-"),
    )
    .send()
    .unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    let r = auth(c.get(format!("{u}/savesets/{absent}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(json(r)["error"], "not_found");

    // a malformed id, and a path that tries to escape
    for bad in ["xyz", "..%2F..%2Fetc%2Fpasswd", &id[..63]] {
        let r = auth(c.get(format!("{u}/savesets/{bad}"))).send().unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(json(r)["error"], "invalid_id");
    }

    // archive, link (the handshake), refs
    let mail = common::message(2, 3000);
    let mail_id = SavesetId::of(&mail).to_string();
    let r = auth(
        c.put(format!("{u}/owners/alice/items/inbox-1"))
            .body(mail.clone()),
    )
    .send()
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v = json(r);
    assert_eq!(v["new_content"], true);
    assert_eq!(v["new_reference"], true);
    let r = auth(
        c.post(format!("{u}/owners/bob/items/inbox-7/link"))
            .header("content-type", "application/json")
            .body(format!("{{\"id\":\"{mail_id}\"}}")),
    )
    .send()
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text());
    let r = auth(
        c.post(format!("{u}/owners/bob/items/inbox-8/link"))
            .header("content-type", "application/json")
            .body(format!("{{\"id\":\"{absent}\"}}")),
    )
    .send()
    .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "link of content not stored"
    );
    let r = auth(c.get(format!("{u}/savesets/{mail_id}/refs")))
        .send()
        .unwrap();
    let refs = json(r);
    assert_eq!(refs.as_array().unwrap().len(), 2);
    assert!(refs[0].get("owner").is_some() && refs[0].get("item").is_some());
    // archiving other content under the same item is a conflict
    let r = auth(
        c.put(format!("{u}/owners/alice/items/inbox-1"))
            .body("other"),
    )
    .send()
    .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    // a bad owner name
    let r = auth(c.put(format!("{u}/owners/%00/items/x")).body("x"))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // delete an item and an owner (to trash)
    let r = auth(c.delete(format!("{u}/owners/bob/items/inbox-7")))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = auth(c.delete(format!("{u}/owners/alice"))).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = auth(c.delete(format!("{u}/owners/nobody"))).send().unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // pending, backup list and mark, feed and ack
    let v = json(auth(c.get(format!("{u}/pending"))).send().unwrap());
    assert!(v["awaiting_backup"].as_u64().unwrap() >= 2, "{v}");
    s.store.seal().unwrap();
    let list = json(auth(c.get(format!("{u}/backup"))).send().unwrap());
    let first = &list[0];
    let seg = first["segment"].as_u64().unwrap();
    let r = auth(
        c.post(format!("{u}/backup/{seg}/mark"))
            .header("content-type", "application/json")
            .body("{\"checksum\":\"00\"}"),
    )
    .send()
    .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(json(r)["error"], "checksum_mismatch");
    let r = auth(
        c.post(format!("{u}/backup/{seg}/mark"))
            .header("content-type", "application/json")
            .body(format!(
                "{{\"checksum\":\"{}\"}}",
                first["checksum"].as_str().unwrap()
            )),
    )
    .send()
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = auth(
        c.post(format!("{u}/backup/x/mark"))
            .header("content-type", "application/json")
            .body("{}"),
    )
    .send()
    .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let page = json(auth(c.get(format!("{u}/feed?limit=100"))).send().unwrap());
    assert!(!page["entries"].as_array().unwrap().is_empty(), "{page}");
    let cursor = page["cursor"].as_str().unwrap().to_string();
    let r = auth(
        c.post(format!("{u}/feed/ack"))
            .header("content-type", "application/json")
            .body(format!("{{\"cursor\":\"{cursor}\"}}")),
    )
    .send()
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let page = json(
        auth(c.get(format!("{u}/feed?after={cursor}")))
            .send()
            .unwrap(),
    );
    assert!(page["entries"].as_array().unwrap().is_empty());
    let r = auth(c.get(format!("{u}/feed?after=nonsense")))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // jobs, history, stat, segments, partitions
    s.store.defrag(0.5).unwrap();
    let jobs = json(auth(c.get(format!("{u}/jobs"))).send().unwrap());
    assert!(jobs.as_array().unwrap().is_empty());
    let history = json(
        auth(c.get(format!("{u}/jobs/history?period=24h")))
            .send()
            .unwrap(),
    );
    assert!(
        history
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["process"] == "DB defragmentation" && h["status"] == "Finished"),
        "{history}"
    );
    for p in ["3d", "1w"] {
        let r = auth(c.get(format!("{u}/jobs/history?period={p}")))
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let r = auth(c.get(format!("{u}/jobs/history?period=2y")))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let stat = json(auth(c.get(format!("{u}/stat"))).send().unwrap());
    assert_eq!(stat["savesets"], 2);
    for key in [
        "logical_bytes",
        "stored_bytes",
        "references",
        "parts",
        "dead_bytes",
    ] {
        assert!(stat.get(key).is_some(), "{key}");
    }
    let segs = json(auth(c.get(format!("{u}/segments"))).send().unwrap());
    assert!(segs[0].get("archive_bit").is_some());
    let parts = json(auth(c.get(format!("{u}/partitions"))).send().unwrap());
    assert_eq!(parts[0]["state"], "open");
}

#[test]
fn tokens_are_required_and_read_only_tokens_only_read() {
    let s = Server::start(1 << 20);
    let c = client();
    let u = &s.url;
    let before = s.store.stat().savesets;
    // No token, a wrong token: 401 and nothing written.
    let r = c.put(format!("{u}/savesets")).body("hello").send().unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json(r)["error"], "unauthorized");
    let r = c
        .put(format!("{u}/savesets"))
        .bearer_auth("0".repeat(64))
        .body("hello")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = c.get(format!("{u}/stat")).send().unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(s.store.stat().savesets, before);
    // The read-only token reads (monitoring, backup listing) and nothing else.
    let ro = &s.ro;
    for path in [
        "/stat",
        "/jobs",
        "/backup",
        "/pending",
        "/jobs/history?period=1w",
    ] {
        let r = c.get(format!("{u}{path}")).bearer_auth(ro).send().unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }
    let r = c
        .put(format!("{u}/savesets"))
        .bearer_auth(ro)
        .body("hello")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(s.store.stat().savesets, before);
    // The page: without a session it asks for the token (401), a bad token
    // is refused, a good one becomes an HttpOnly SameSite=Strict cookie.
    let r = c.get(format!("{u}/")).send().unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.text().unwrap().contains("name=\"token\""));
    let r = c
        .post(format!("{u}/session"))
        .form(&[("token", "bad")])
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = c
        .post(format!("{u}/session"))
        .form(&[("token", s.rw.as_str())])
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_string();
    let r = c
        .get(format!("{u}/"))
        .header("Cookie", &session)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().unwrap();
    assert!(html.contains("Background service processes"));
    assert!(html.contains("No background process history for the selected period"));
    let r = c
        .get(format!("{u}/store"))
        .header("Cookie", &session)
        .send()
        .unwrap();
    assert!(
        r.text()
            .unwrap()
            .contains("Segments by state and archive bit")
    );
    // Rotating the token locks the old one out at once.
    let new = token(s.store.dir(), Access::ReadWrite, true).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let r = c.get(format!("{u}/stat")).bearer_auth(&new).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[test]
fn oversized_bodies_and_broken_uploads_store_nothing() {
    let s = Server::start(64 << 10);
    let c = client();
    let u = &s.url;
    let r = c
        .put(format!("{u}/savesets"))
        .bearer_auth(&s.rw)
        .body(vec![b'x'; 100 << 10])
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(s.store.stat().savesets, 0);

    // A client that announces 50,000 bytes, sends 1,000 and disconnects.
    let addr = u.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "PUT /owners/x/items/y HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Length: 50000\r\n\r\n",
        s.rw
    )
    .unwrap();
    stream.write_all(&[b'a'; 1000]).unwrap();
    drop(stream);
    // A chunked upload that runs past the limit is cut off with 413.
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "PUT /savesets HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nTransfer-Encoding: chunked\r\n\r\n",
        s.rw
    )
    .unwrap();
    for _ in 0..40 {
        if write!(stream, "1000\r\n{}\r\n", "z".repeat(0x1000)).is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n");
    let mut answer = String::new();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    std::thread::sleep(Duration::from_millis(200));
    let stat = s.store.stat();
    assert_eq!((stat.savesets, stat.references), (0, 0));
    assert!(s.store.items("x", None, 10).is_err());
}

#[test]
fn shutdown_lets_requests_in_flight_finish_durably() {
    let mut s = Server::start(1 << 20);
    let c = client();
    let mut acked = Vec::new();
    for n in 0..20 {
        let m = common::message(n, 2000);
        let r = c
            .put(format!("{}/owners/o/items/{n}", s.url))
            .bearer_auth(&s.rw)
            .body(m.clone())
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        acked.push(m);
    }
    s.stop();
    // After shutdown nothing answers, and the store holds every acknowledged item.
    assert!(c.get(format!("{}/stat", s.url)).send().is_err());
    let path = s.store.dir().to_path_buf();
    let store = s.store.clone();
    drop(s.stop.take());
    drop(store);
    let copy = tempfile::tempdir().unwrap();
    common::copy_dir(&path, &copy.path().join("s"));
    let reopened = Store::open(copy.path().join("s")).unwrap();
    for m in &acked {
        assert_eq!(&reopened.get(&SavesetId::of(m)).unwrap(), m);
    }
}

/// What the load test's clients were told, checked against what reads return.
#[derive(Default, Clone)]
struct Acked {
    /// Each acknowledged item ("owner/item") → the pool index of the content sent.
    items: HashMap<String, usize>,
    /// Each acknowledged saveset id → the pool index of its content.
    ids: HashMap<String, usize>,
    /// Live references per saveset id, as the clients made them.
    live: HashMap<String, usize>,
    /// Ids whose live references all went (deleted): only these may be gone.
    orphaned: std::collections::HashSet<String>,
}

/// What each load-test client holds: its HTTP client, the service, the mail
/// pool, and what was acknowledged.
#[derive(Clone)]
struct LoadClient {
    client: reqwest::Client,
    url: String,
    rw: String,
    pool: Arc<Vec<Vec<u8>>>,
    acked: Arc<tokio::sync::Mutex<Acked>>,
}

impl LoadClient {
    /// A request to `path` under the service, with the read-write token.
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.rw)
    }
}

/// 64 clients archive mail (real mail when the corpus is present) while 8
/// others read back what was acknowledged and a defragmentation runs;
/// every acknowledged item must read back. Bounded in count and time.
#[test]
fn load_64_writers_readers_and_a_defragmentation() {
    let s = Server::start(64 << 20);
    let mut pool: Vec<Vec<u8>> = common::corpus_messages().unwrap_or_default();
    pool.extend(vaultstore::bench::generate_corpus(300, 5));
    let pool = Arc::new(pool);
    let url = s.url.clone();
    let rw = s.rw.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store = s.store.clone();
    let stop_defrag = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let defrag = {
        let (store, stop) = (store.clone(), stop_defrag.clone());
        std::thread::spawn(move || {
            let mut passes = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                // Deletions give defragmentation something to do.
                let _ = store.purge_trash(Duration::ZERO, None, None);
                if store.defrag(0.1).is_ok() {
                    passes += 1;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            passes
        })
    };
    let started = Instant::now();
    let pool_for_check = pool.clone();
    let (latencies, acked, reads) = rt.block_on(async move {
        let ctx = LoadClient {
            client: reqwest::Client::new(),
            url,
            rw,
            pool,
            acked: Default::default(),
        };
        let mut tasks = Vec::new();
        for w in 0..64usize {
            let c = ctx.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                for i in 0..25usize {
                    let which = (w * 31 + i * 7) % c.pool.len();
                    let path = format!("/owners/mbox{}/items/w{w}-{i}", w % 16);
                    let t = Instant::now();
                    let r = c
                        .request(reqwest::Method::PUT, &path)
                        .body(c.pool[which].clone())
                        .send()
                        .await
                        .unwrap();
                    lat.push(t.elapsed());
                    assert_eq!(r.status(), StatusCode::OK);
                    let v: Value = r.json().await.unwrap();
                    let id = v["id"].as_str().unwrap().to_string();
                    // The id acknowledged is the hash of what this client sent.
                    assert_eq!(id, SavesetId::of(&c.pool[which]).to_string());
                    let item = format!("mbox{}/w{w}-{i}", w % 16);
                    {
                        let mut a = c.acked.lock().await;
                        a.items.insert(item.clone(), which);
                        a.ids.insert(id.clone(), which);
                        *a.live.entry(id.clone()).or_default() += 1;
                    }
                    if i % 5 == 4 {
                        // Some items are deleted again (to trash, then purged).
                        // Counted before the request: from then on the
                        // content may go at any moment.
                        {
                            let mut a = c.acked.lock().await;
                            a.items.remove(&item);
                            let live = a.live.entry(id.clone()).or_default();
                            *live -= 1;
                            if *live == 0 {
                                a.orphaned.insert(id);
                            }
                        }
                        let r = c.request(reqwest::Method::DELETE, &path).send();
                        assert_eq!(r.await.unwrap().status(), StatusCode::OK);
                    }
                }
                lat
            }));
        }
        let mut readers = Vec::new();
        for r in 0..8usize {
            let c = ctx.clone();
            readers.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                for i in 0..150usize {
                    let pick = {
                        let a = c.acked.lock().await;
                        a.ids
                            .iter()
                            .nth((r * 13 + i * 17) % a.ids.len().max(1))
                            .map(|(k, v)| (k.clone(), *v))
                    };
                    let Some((id, which)) = pick else {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    };
                    let t = Instant::now();
                    let path = format!("/savesets/{id}");
                    let resp = c.request(reqwest::Method::GET, &path).send().await.unwrap();
                    if resp.status() == StatusCode::OK {
                        let body = resp.bytes().await.unwrap();
                        assert_eq!(body.as_ref(), c.pool[which].as_slice(), "{id}");
                    } else {
                        // Gone only if every item holding it was deleted (then purged).
                        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
                        assert!(
                            c.acked.lock().await.orphaned.contains(&id),
                            "{id} is gone but was never left without a live item"
                        );
                    }
                    lat.push(t.elapsed());
                }
                lat
            }));
        }
        let mut latencies = Vec::new();
        for t in tasks {
            latencies.extend(t.await.unwrap());
        }
        let mut reads = 0;
        for t in readers {
            let l = t.await.unwrap();
            reads += l.len();
            latencies.extend(l);
        }
        let acked = ctx.acked.lock().await.clone();
        (latencies, acked, reads)
    });
    let secs = started.elapsed().as_secs_f64();
    stop_defrag.store(true, std::sync::atomic::Ordering::SeqCst);
    let passes = defrag.join().unwrap();
    let mut sorted = latencies.clone();
    sorted.sort();
    let p99 = sorted[(sorted.len() - 1) * 99 / 100];
    let requests = 64 * 25 + 64 * 5 + reads;
    eprintln!(
        "load: {requests} requests (1600 archives, 320 deletes, {reads} reads) in {secs:.2} s: {:.0} requests/s, p99 of archives and reads {:.1} ms; {passes} defragmentation passes",
        requests as f64 / secs,
        p99.as_secs_f64() * 1e3
    );
    // Every acknowledged item that was not deleted reads back.
    let live = |o: usize| {
        store
            .items(&format!("mbox{o}"), None, usize::MAX)
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.trashed_at_ms.is_none())
            .collect::<Vec<_>>()
    };
    let items: usize = (0..16).map(|o| live(o).len()).sum();
    assert_eq!(items, 64 * 20);
    assert_eq!(acked.items.len(), 64 * 20);
    // Each live item holds exactly the content its client sent.
    for o in 0..16 {
        for e in live(o) {
            let which = acked.items[&format!("mbox{o}/{}", e.item)];
            let id: SavesetId = e.id.parse().unwrap();
            assert_eq!(
                store.get(&id).unwrap(),
                pool_for_check[which],
                "mbox{o}/{}",
                e.item
            );
        }
    }
    assert!(store.verify().is_clean());
}

#[test]
fn sigterm_stops_the_binary_cleanly_with_every_acknowledged_write_durable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    drop(Store::init(&path, &vaultstore::InitOptions::default()).unwrap());
    let rw = token(&path, Access::ReadWrite, false).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vaultstore"))
        .args(["serve", "--store", path.to_str().unwrap(), "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .stderr(std::fs::File::create(dir.path().join("serve.log")).unwrap())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "serve did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Writers keep going while the signal arrives.
    let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (url, rw, acked) = (url.clone(), rw.clone(), acked.clone());
            std::thread::spawn(move || {
                let c = client();
                for n in 0..10_000u64 {
                    let m = common::message(w * 100_000 + n, 3000);
                    match c
                        .put(format!("{url}/owners/w{w}/items/{n}"))
                        .bearer_auth(&rw)
                        .body(m.clone())
                        .send()
                    {
                        Ok(r) if r.status() == StatusCode::OK => acked.lock().unwrap().push(m),
                        Ok(r) => {
                            // Refused while shutting down: no more writes.
                            assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
                            break;
                        }
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "serve exited with {exit}");
    for w in writers {
        w.join().unwrap();
    }
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    assert!(log.contains("PUT /owners/"), "one line per request: {log}");
    assert!(log.contains("shutting down"), "{log}");
    let acked = acked.lock().unwrap();
    assert!(
        acked.len() > 10,
        "only {} writes before the signal",
        acked.len()
    );
    let store = Store::open(&path).unwrap();
    for m in acked.iter() {
        assert_eq!(&store.get(&SavesetId::of(m)).unwrap(), m);
    }
    eprintln!("{} acknowledged writes durable after SIGTERM", acked.len());
}
