//! The service's defences at the HTTP edge, as middleware: what a request
//! may be before any handler sees it, and what every response carries.
//!
//! Owns request limits (URI length, header bytes, announced body length,
//! the body's arrival deadline), the cross-site check for requests that
//! come with the page's cookie, the security headers of every response,
//! and the rule that every error is JSON. It never touches the store.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// Longest request target accepted (path and query), bytes.
pub const MAX_URI_BYTES: usize = 8 << 10;
/// Most header bytes (names and values) accepted in one request.
pub const MAX_HEADER_BYTES: usize = 64 << 10;
/// Largest body of the login form, bytes.
pub const MAX_LOGIN_BODY: u64 = 4 << 10;

/// The body limit for a request to `path`.
pub(super) fn body_limit(path: &str, max_body: u64) -> u64 {
    if path == "/session" {
        MAX_LOGIN_BODY
    } else {
        max_body
    }
}

/// Refuse what is too large before reading it: a target over
/// [`MAX_URI_BYTES`] (414), headers over [`MAX_HEADER_BYTES`] (431), and a
/// body announced over the route's limit (413, and the connection closed
/// so the body is never read).
pub(super) async fn limits(max_body: u64, req: Request, next: Next) -> Response {
    let target = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if target > MAX_URI_BYTES {
        return closing(ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("the request target is {target} bytes; at most {MAX_URI_BYTES} are accepted"),
        ));
    }
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return closing(ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!(
                "the headers are {header_bytes} bytes; at most {MAX_HEADER_BYTES} are accepted"
            ),
        ));
    }
    let limit = body_limit(req.uri().path(), max_body);
    if let Some(announced) = content_length(req.headers())
        && announced > limit
    {
        return closing(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body is {announced} bytes; at most {limit} are accepted here"),
        ));
    }
    next.run(req).await
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// An error response after which the connection is closed (its body, if
/// any, is never read).
fn closing(e: ApiError) -> Response {
    let mut r = e.into_response();
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// A request body must arrive whole within `timeout` of the request's
/// start: a client that trickles a body a byte a second is cut off (408)
/// instead of holding its connection for ever.
pub(super) async fn body_deadline(timeout: Duration, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let timed_out = Arc::new(AtomicBool::new(false));
    let body = Body::new(DeadlineBody {
        inner: body,
        deadline: Box::pin(tokio::time::sleep(timeout)),
        timeout,
        timed_out: timed_out.clone(),
    });
    let r = next.run(Request::from_parts(parts, body)).await;
    if timed_out.load(Ordering::Relaxed) {
        return closing(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            BodyTimedOut(timeout).to_string(),
        ));
    }
    r
}

struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
    timed_out: Arc<AtomicBool>,
}

/// Why a body read ended early: it did not arrive in time.
#[derive(Debug)]
pub(super) struct BodyTimedOut(Duration);

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body did not arrive within {} s",
            self.0.as_secs()
        )
    }
}

impl std::error::Error for BodyTimedOut {}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.timed_out.store(true, Ordering::Relaxed);
            let timeout = self.timeout;
            return Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut(timeout)))));
        }
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A state-changing request that comes with the page's session cookie
/// must come from the page itself: its `Origin` (or, failing that, its
/// `Referer`) names this service's own host. A bearer token is not sent
/// by browsers on their own, so bearer requests need no such check.
pub(super) fn same_origin(method: &Method, headers: &HeaderMap) -> Result<(), ApiError> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    let origin_host = origin.and_then(|o| {
        let rest = o
            .strip_prefix("http://")
            .or_else(|| o.strip_prefix("https://"))?;
        Some(rest.split('/').next().unwrap_or(rest))
    });
    match (host, origin_host) {
        (Some(h), Some(o)) if h.eq_ignore_ascii_case(o) => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "a change made with the session cookie must come from this service's own page",
        )),
    }
}

/// A JSON body is accepted only under a JSON content type, so that a form
/// or `text/plain` post from another site cannot pass for one.
pub(super) fn json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" || essence.ends_with("+json") {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "this endpoint takes a JSON body: send Content-Type: application/json",
        ))
    }
}

/// The policy of every page: nothing loads from elsewhere, no script runs,
/// no other site may frame it or post its forms elsewhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; \
     img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Security headers on every response, and every error as JSON: an error
/// produced below the handlers (no route, wrong method, a rejected path or
/// query, a body that timed out) gets the API's JSON shape with a message
/// of its own; it never echoes the request back.
pub(super) async fn respond(req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    if r.status().as_u16() >= 400 && !is_json_or_html(r.headers()) {
        let connection = r.headers().get(header::CONNECTION).cloned();
        r = status_error(r.status()).into_response();
        if let Some(c) = connection {
            r.headers_mut().insert(header::CONNECTION, c);
        }
    }
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        // `same-origin`, not `no-referrer`: with no-referrer a browser sends
        // `Origin: null` on the page's own form posts, which the same-origin
        // check must then refuse.
        HeaderValue::from_static("same-origin"),
    );
    r
}

fn is_json_or_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json") || ct.starts_with("text/html"))
}

/// The JSON error for a status that came without one.
pub(super) fn status_error(status: StatusCode) -> ApiError {
    let (code, message) = match status {
        StatusCode::NOT_FOUND => ("not_found", "no such endpoint"),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "this endpoint does not take that method",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => ("too_large", "the request body is over the limit"),
        StatusCode::REQUEST_TIMEOUT => ("timeout", "the request did not arrive in time"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "the body's content type is not accepted here",
        ),
        StatusCode::URI_TOO_LONG => ("uri_too_long", "the request target is too long"),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => {
            ("headers_too_large", "the request headers are too large")
        }
        s if s.is_client_error() => (
            "bad_request",
            "the request is malformed (a path, query or body that does not parse, or text that is not UTF-8)",
        ),
        _ => ("internal", "the service failed to answer"),
    };
    ApiError::new(status, code, message)
}

/// The answer for a route that does not exist.
pub(super) async fn no_route() -> Response {
    status_error(StatusCode::NOT_FOUND).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn cookie_changes_must_come_from_the_services_own_origin() {
        let post = Method::POST;
        let own = headers(&[
            ("host", "127.0.0.1:7878"),
            ("origin", "http://127.0.0.1:7878"),
        ]);
        assert!(same_origin(&post, &own).is_ok());
        let other_port = headers(&[
            ("host", "127.0.0.1:7878"),
            ("origin", "http://127.0.0.1:9999"),
        ]);
        assert!(same_origin(&post, &other_port).is_err());
        let none = headers(&[("host", "127.0.0.1:7878")]);
        assert!(same_origin(&post, &none).is_err());
        let referer = headers(&[
            ("host", "127.0.0.1:7878"),
            ("referer", "http://127.0.0.1:7878/store"),
        ]);
        assert!(same_origin(&post, &referer).is_ok());
        assert!(same_origin(&Method::GET, &none).is_ok());
    }

    #[test]
    fn json_bodies_need_a_json_content_type() {
        assert!(json_content_type(&headers(&[("content-type", "application/json")])).is_ok());
        assert!(
            json_content_type(&headers(&[(
                "content-type",
                "application/json; charset=utf-8"
            )]))
            .is_ok()
        );
        assert!(json_content_type(&headers(&[("content-type", "text/plain")])).is_err());
        assert!(json_content_type(&HeaderMap::new()).is_err());
    }
}
