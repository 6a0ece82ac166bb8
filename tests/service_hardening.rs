//! The service against clients that do not play fair: slow headers and
//! bodies, too many connections, oversized logins, cross-site posts with
//! the page's cookie, and requests that only the HTTP layer sees. Every
//! error is JSON and carries the security headers.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::server::Server;
use reqwest::StatusCode;
use serde_json::Value;
use vaultstore::service::ServeOptions;
use vaultstore::service::auth::{Access, token};

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn addr(s: &Server) -> String {
    s.url.trim_start_matches("http://").to_string()
}

/// Send `head` (and `body`) on a raw connection; read the answer until the
/// server closes or `wait` passes.
fn raw(s: &Server, head: &str, body: &[u8], wait: Duration) -> String {
    let mut stream = TcpStream::connect(addr(s)).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    let _ = stream.write_all(body);
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// True when the server closed the connection (read returned 0) within `within`.
fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn slow_headers_and_bodies_are_cut_off() {
    let s = Server::start_opts(ServeOptions {
        header_timeout: Duration::from_secs(1),
        body_timeout: Duration::from_secs(2),
        ..ServeOptions::default()
    });
    // Headers a byte at a time, with no token: closed after the header timeout.
    let mut stream = TcpStream::connect(addr(&s)).unwrap();
    let started = Instant::now();
    let head = b"GET /stat HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut cut_off = false;
    for b in head {
        if stream.write_all(&[*b]).is_err() {
            cut_off = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(150));
        if started.elapsed() > Duration::from_secs(4) {
            break;
        }
    }
    assert!(
        cut_off || closed_within(&mut stream, Duration::from_secs(2)),
        "a slow header client still connected after {:?}",
        started.elapsed()
    );
    // A body a byte at a time: 408 after the body timeout, nothing stored.
    let mut stream = TcpStream::connect(addr(&s)).unwrap();
    write!(
        stream,
        "PUT /savesets HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 1000\r\n\r\n",
        s.rw
    )
    .unwrap();
    let started = Instant::now();
    stream.set_nonblocking(true).unwrap();
    let mut answer = Vec::new();
    while started.elapsed() < Duration::from_secs(6) {
        let _ = stream.write_all(b"x");
        let mut buf = [0u8; 1024];
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"error\":\"timeout\""), "{answer}");
    assert_eq!(s.store.stat().savesets, 0);
}

#[test]
fn connections_are_capped_and_a_shutdown_closes_slow_ones_within_the_grace() {
    let mut s = Server::start_opts(ServeOptions {
        max_connections: 2,
        header_timeout: Duration::from_secs(60),
        ..ServeOptions::default()
    });
    // Two clients that send half a request and wait.
    let mut slow: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut c = TcpStream::connect(addr(&s)).unwrap();
            c.write_all(b"GET /stat HTTP/1.1\r\nHost: x\r\n").unwrap();
            c
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let third = raw(
        &s,
        "GET /stat HTTP/1.1\r\nHost: x\r\n\r\n",
        b"",
        Duration::from_secs(5),
    );
    assert!(third.starts_with("HTTP/1.1 503"), "{third}");
    assert!(third.contains("\"error\":\"busy\""), "{third}");
    // SIGTERM (the stop signal) with both still connected: done within the grace.
    let started = Instant::now();
    s.stop();
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(12),
        "shutdown took {took:?} with slow clients"
    );
    for c in &mut slow {
        assert!(closed_within(c, Duration::from_secs(2)));
    }
}

#[test]
fn the_login_form_takes_a_few_kib_and_refuses_an_announced_large_body_unread() {
    let s = Server::start(64 << 20);
    // Announced over the login limit: 413 at once, the body never sent.
    let started = Instant::now();
    let answer = raw(
        &s,
        "POST /session HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 60000000\r\n\r\n",
        b"",
        Duration::from_secs(5),
    );
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(4));
    // Chunked past the limit: cut off after a few KiB, not 64 MiB.
    let mut stream = TcpStream::connect(addr(&s)).unwrap();
    stream
        .write_all(b"POST /session HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    let mut sent = 0;
    for _ in 0..256 {
        if write!(stream, "1000\r\n{}\r\n", "t".repeat(0x1000)).is_err() {
            break;
        }
        sent += 0x1000;
    }
    let _ = stream.write_all(b"0\r\n\r\n");
    let mut answer = String::new();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = stream.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "{answer} after {sent} bytes"
    );
}

#[test]
fn the_page_session_is_its_own_id_expires_ends_and_resists_cross_site_posts() {
    let s = Server::start(1 << 20);
    let c = client();
    let u = &s.url;
    let r = c
        .post(format!("{u}/session"))
        .form(&[("token", s.rw.as_str())])
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(set.contains("Max-Age=43200"), "{set}");
    assert!(!set.contains("Secure"), "no TLS here: {set}");
    let session = set.split(';').next().unwrap().to_string();
    assert!(!session.contains(&s.rw), "the cookie must not be the token");
    let value = session.split_once('=').unwrap().1;
    assert_eq!(value.len(), 64);
    // The token itself is no session; nor is an empty cookie.
    for bad in [
        format!("vaultstore_session={}", s.rw),
        "vaultstore_session=".into(),
    ] {
        let r = c
            .get(format!("{u}/stat"))
            .header("Cookie", bad)
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = c
        .get(format!("{u}/stat"))
        .header("Cookie", &session)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // A text/plain post from another port on the same host, with the cookie: refused.
    let page = c
        .get(format!("{u}/feed?limit=10"))
        .header("Cookie", &session)
        .send()
        .unwrap();
    let cursor = page.json::<Value>().unwrap()["cursor"]
        .as_str()
        .unwrap()
        .to_string();
    let ack = |origin: Option<&str>, ct: &str| {
        let mut rb = c
            .post(format!("{u}/feed/ack"))
            .header("Cookie", &session)
            .header("Content-Type", ct)
            .body(format!("{{\"cursor\":\"{cursor}\"}}"));
        if let Some(o) = origin {
            rb = rb.header("Origin", o);
        }
        rb.send().unwrap()
    };
    let other = "http://127.0.0.1:1";
    let r = ack(Some(other), "text/plain");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(r.json::<Value>().unwrap()["error"], "cross_origin");
    assert_eq!(
        ack(None, "application/json").status(),
        StatusCode::FORBIDDEN
    );
    let r = c
        .put(format!("{u}/owners/a/items/b"))
        .header("Cookie", &session)
        .header("Origin", other)
        .body("Subject: x\r\n\r\ny")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(s.store.owners().unwrap().is_empty());
    // From the page's own origin: JSON only with a JSON content type.
    let r = ack(Some(u), "text/plain");
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(ack(Some(u), "application/json").status(), StatusCode::OK);
    // Bearer clients need no Origin, but still a JSON content type.
    let r = c
        .post(format!("{u}/feed/ack"))
        .bearer_auth(&s.rw)
        .header("Content-Type", "text/plain")
        .body(format!("{{\"cursor\":\"{cursor}\"}}"))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Logout ends the session.
    let r = c
        .post(format!("{u}/logout"))
        .header("Cookie", &session)
        .header("Origin", u.as_str())
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let r = c
        .get(format!("{u}/stat"))
        .header("Cookie", &session)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Rotating the token ends the sessions opened with it.
    let r = c
        .post(format!("{u}/session"))
        .form(&[("token", s.rw.as_str())])
        .send()
        .unwrap();
    let second = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    token(s.store.dir(), Access::ReadWrite, true).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let r = c
        .get(format!("{u}/stat"))
        .header("Cookie", &second)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Behind a TLS proxy the cookie is Secure.
    let ro = token(s.store.dir(), Access::ReadOnly, false).unwrap();
    let r = c
        .post(format!("{u}/session"))
        .header("X-Forwarded-Proto", "https")
        .form(&[("token", ro.as_str())])
        .send()
        .unwrap();
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("; Secure")
    );
}

#[test]
fn every_error_is_json_with_security_headers_and_echoes_nothing() {
    let s = Server::start(1 << 20);
    let c = client();
    let u = &s.url;
    let check = |r: reqwest::blocking::Response, status: StatusCode, code: &str| {
        assert_eq!(r.status(), status);
        let h = r.headers().clone();
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert!(
            h["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("frame-ancestors 'none'")
        );
        let text = r.text().unwrap();
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
        assert_eq!(v["error"], code, "{text}");
        text
    };
    let rw = s.rw.clone();
    check(
        c.get(format!("{u}/nope")).bearer_auth(&rw).send().unwrap(),
        StatusCode::NOT_FOUND,
        "not_found",
    );
    check(
        c.delete(format!("{u}/stat"))
            .bearer_auth(&rw)
            .send()
            .unwrap(),
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    let long = "a".repeat(10_000);
    check(
        c.get(format!("{u}/savesets/{long}"))
            .bearer_auth(&rw)
            .send()
            .unwrap(),
        StatusCode::URI_TOO_LONG,
        "uri_too_long",
    );
    let big = "b".repeat(70_000);
    let text = check(
        c.get(format!("{u}/stat"))
            .bearer_auth(&rw)
            .header("X-Big", &big)
            .send()
            .unwrap(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "headers_too_large",
    );
    assert!(!text.contains("bbbbbbbb"));
    // A range header is not echoed either.
    let id = s.store.put(b"Subject: r\r\n\r\nbody").unwrap().id;
    let text = check(
        c.get(format!("{u}/savesets/{id}"))
            .bearer_auth(&rw)
            .header("Range", "bytes=900-999")
            .send()
            .unwrap(),
        StatusCode::RANGE_NOT_SATISFIABLE,
        "bad_range",
    );
    assert!(!text.contains("900-999"), "{text}");
    // Invalid UTF-8 in a path segment.
    let answer = raw(
        &s,
        &format!(
            "DELETE /owners/%FF%FE HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {rw}\r\nConnection: close\r\n\r\n"
        ),
        b"",
        Duration::from_secs(5),
    );
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("\"error\":\"bad_request\""), "{answer}");
    // The pages carry the headers too.
    let r = c.get(format!("{u}/")).send().unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
}
