//! The operator's page: server-rendered HTML with a little script, no
//! build step. `/` shows the background service processes (running ones and
//! the history, filtered by period); `/store` shows the store. The page
//! asks for a token once and opens a session: an id of its own in an
//! HttpOnly, SameSite=Strict cookie that expires (the token itself is never
//! a cookie). The page runs no script (its policy forbids any): it reloads
//! itself with a meta refresh while processes run.

use std::sync::Arc;

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::auth::TOKEN_HEX_DIGITS;
use super::{ApiError, SESSION_COOKIE, Service};
use crate::jobs::ProcessType;
use crate::present::{NO_HISTORY, format_time};

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;margin:0.5em 0 1.5em}\
th,td{border:1px solid #ccc;padding:0.3em 0.8em;text-align:left}\
th{background:#f0f0f0}nav a{margin-right:1em}nav form.logout{display:inline;float:right}.filter a{margin-right:0.8em}\
.filter a.on{font-weight:bold;text-decoration:none;color:#000}.empty{color:#666;font-style:italic}";

fn layout(title: &str, body: &str, refresh: bool) -> String {
    // Reload while processes run, so the percentages move.
    let reload = if refresh {
        "<meta http-equiv=\"refresh\" content=\"2\">"
    } else {
        ""
    };
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\">{reload}<title>{t} - vaultstore</title>\
         <style>{STYLE}</style></head><body>\
         <nav><a href=\"/\">Background service processes</a><a href=\"/store\">Store</a>\
         <form class=\"logout\" method=\"post\" action=\"/logout\"><button id=\"logout\" type=\"submit\">Log out</button></form></nav>\
         <h1>{t}</h1>{body}</body></html>",
        t = escape(title)
    )
}

/// The token form, with status 401 (nothing else is shown without a token).
pub(super) fn login(error: Option<&str>) -> Response {
    let error = error
        .map(|e| format!("<p id=\"error\">{}</p>", escape(e)))
        .unwrap_or_default();
    let body = format!(
        "{error}<form method=\"post\" action=\"/session\">\
         <label>Token <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"off\"></label> \
         <button id=\"login\" type=\"submit\">Open</button></form>\
         <p>Print one with <code>vaultstore token --store DIR [--read-only]</code>.</p>"
    );
    (
        StatusCode::UNAUTHORIZED,
        Html(layout("vaultstore: token required", &body, false)),
    )
        .into_response()
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    token: String,
}

/// The form posts the token; a valid one opens a session whose id becomes
/// the cookie. The cookie is `Secure` when the request came over TLS (a
/// proxy in front says so with `X-Forwarded-Proto: https`).
pub(super) async fn session(
    State(svc): State<Arc<Service>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let token = form.token.trim().to_string();
    if token.len() != TOKEN_HEX_DIGITS
        || !token.bytes().all(|b| b.is_ascii_hexdigit())
        || svc.tokens.check(&token).is_none()
    {
        return login(Some("That token is not valid for this store."));
    }
    let id = match svc.sessions.open(&token) {
        Ok(id) => id,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let secure = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    let cookie = format!(
        "{SESSION_COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
        svc.sessions.ttl().as_secs(),
        if secure { "; Secure" } else { "" }
    );
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/".to_string()),
            (header::SET_COOKIE, cookie),
        ],
    )
        .into_response()
}

/// End the page's session and clear its cookie.
pub(super) async fn logout(State(svc): State<Arc<Service>>, headers: HeaderMap) -> Response {
    if let Some(id) = super::session_cookie(&headers) {
        svc.sessions.close(&id);
    }
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/".to_string()),
            (
                header::SET_COOKIE,
                format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
            ),
        ],
    )
        .into_response()
}

#[derive(Deserialize)]
pub(super) struct PeriodQuery {
    period: Option<String>,
}

/// "Background service processes": running processes and the history.
pub(super) async fn processes(
    State(svc): State<Arc<Service>>,
    Query(q): Query<PeriodQuery>,
) -> Result<Response, ApiError> {
    let period = q.period.unwrap_or_else(|| "24h".into());
    let since = crate::present::period_since(&period)?;
    let (running, history) = svc
        .call(move |s| Ok((s.running_processes(), s.history_since(since))))
        .await?;
    let mut body = String::from("<h2>Running</h2>");
    if running.is_empty() {
        body.push_str("<p class=\"empty\" id=\"no-running\">No background process is running</p>");
    } else {
        body.push_str(
            "<table id=\"running\"><tr><th>Type</th><th>Completion</th><th>Started</th></tr>",
        );
        for r in &running {
            body.push_str(&format!(
                "<tr><td>{}</td><td class=\"percent\">{:.0}%</td><td>{}</td></tr>",
                escape(&r.process),
                r.percent,
                format_time(r.started_ms)
            ));
        }
        body.push_str("</table>");
    }
    body.push_str("<h2>History</h2><p class=\"filter\">");
    for (value, label) in [("24h", "24 hours"), ("3d", "3 days"), ("1w", "1 week")] {
        let on = if value == period { " class=\"on\"" } else { "" };
        body.push_str(&format!(
            "<a id=\"period-{value}\"{on} href=\"/?period={value}\">{label}</a>"
        ));
    }
    body.push_str("</p>");
    if history.is_empty() {
        body.push_str(&format!(
            "<p class=\"empty\" id=\"no-history\">{NO_HISTORY}</p>"
        ));
    } else {
        body.push_str(
            "<table id=\"history\"><tr><th>Time</th><th>Process</th><th>Status</th></tr>",
        );
        for e in &history {
            let process = ProcessType::from_code(e.process).map_or("unknown process", |p| p.name());
            body.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                format_time(e.time_ms),
                escape(process),
                escape(&e.status.to_string())
            ));
        }
        body.push_str("</table>");
    }
    Ok(Html(layout(
        "Background service processes",
        &body,
        !running.is_empty(),
    ))
    .into_response())
}

fn ratio(a: u64, b: u64) -> String {
    if b == 0 {
        "-".into()
    } else {
        format!("{:.2}", a as f64 / b as f64)
    }
}

/// The store: totals, pending counts, segments and partitions.
pub(super) async fn store_view(State(svc): State<Arc<Service>>) -> Result<Response, ApiError> {
    let (stat, pending, segments, partitions, running) = svc
        .call(|s| {
            Ok((
                s.stat(),
                s.pending(),
                s.segments(),
                s.partitions(),
                !s.running_processes().is_empty(),
            ))
        })
        .await?;
    let mut body = String::from("<table id=\"totals\">");
    for (k, v) in [
        ("Savesets", stat.savesets.to_string()),
        ("References", stat.references.to_string()),
        ("Logical bytes", stat.logical_bytes.to_string()),
        ("Stored bytes", stat.stored_bytes.to_string()),
        (
            "Dedup ratio (references per saveset)",
            ratio(stat.references, stat.savesets),
        ),
        (
            "Compression ratio (logical / stored)",
            ratio(stat.logical_bytes, stat.stored_bytes),
        ),
        ("Parts stored once", stat.parts.to_string()),
        ("Dead bytes (reclaimable)", stat.dead_bytes.to_string()),
        ("Awaiting indexing", pending.awaiting_index.to_string()),
        ("Awaiting backup", pending.awaiting_backup.to_string()),
        (
            "Ready for post-processing",
            pending.ready_for_post_processing.to_string(),
        ),
    ] {
        body.push_str(&format!("<tr><th>{k}</th><td>{v}</td></tr>"));
    }
    body.push_str("</table><h2>Partitions</h2><table id=\"partitions\"><tr><th>Id</th><th>Path</th><th>State</th><th>Bytes</th><th>Capacity</th><th>Fill</th></tr>");
    for p in &partitions {
        let fill = if p.capacity > 0 {
            format!("{:.0}%", p.bytes as f64 * 100.0 / p.capacity as f64)
        } else {
            "-".into()
        };
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{fill}</td></tr>",
            p.id,
            escape(&p.path),
            p.state,
            p.bytes,
            p.capacity
        ));
    }
    body.push_str("</table><h2>Segments</h2><table id=\"segments\"><tr><th>Id</th><th>Partition</th><th>State</th><th>Bytes</th><th>Savesets</th><th>Dead bytes</th><th>Archive bit</th></tr>");
    for g in &segments {
        let state = match g.state {
            crate::store::SegmentState::Active => "active",
            crate::store::SegmentState::Sealed => "sealed",
        };
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{state}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            g.id,
            g.partition,
            g.bytes,
            g.savesets,
            g.dead_bytes,
            if g.archive_bit { "set" } else { "clear" }
        ));
    }
    body.push_str("</table>");
    Ok(Html(layout("Store", &body, running)).into_response())
}
