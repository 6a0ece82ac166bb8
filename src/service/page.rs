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
use crate::present::NO_HISTORY;

use super::view::{self, escape};

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#1f2328;background:#fff;max-width:70em}\
table{border-collapse:collapse;margin:0.5em 0 1.5em}caption{text-align:left;font-weight:bold;padding:0.3em 0}\
th,td{border:1px solid #d0d7de;padding:0.3em 0.8em;text-align:left}th{background:#f6f8fa}\
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}\
nav a{margin-right:1em}.filter a{margin-right:0.8em}a{color:#0550ae}\
a:focus,button:focus{outline:3px solid #0969da;outline-offset:2px}\
.filter a.on{font-weight:bold;text-decoration:none;color:#1f2328}.empty{color:#57606a;font-style:italic}.warning{background:#fff8c5;border:1px solid #d4a72c;padding:.5em}\
.rel{color:#57606a}meter.fill{width:10em;height:1em}nav form.logout{display:inline;float:right}\
figure{margin:0.5em 0 1.5em}figcaption{color:#424a53;font-size:0.9em;max-width:60em}\
svg{display:block;background:#fbfcfd;border:1px solid #d0d7de}.axis{font-size:10px;fill:#424a53}.axis-line{stroke:#8c959f}\
.c1{stroke:#0550ae}.c2{stroke:#1a7f37}.c3{stroke:#bc4c00}.key{font-weight:bold}span.c1{color:#0550ae}span.c2{color:#1a7f37}span.c3{color:#bc4c00}\
rect.bar{fill:#0550ae}rect.run.finished{fill:#1a7f37}rect.run.failed{fill:#cf222e}rect.run.running{fill:#0969da}\
.pages a{margin-right:0.6em}";

pub(super) fn layout(title: &str, body: &str, refresh: bool) -> String {
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
    access: Option<axum::Extension<super::auth::Access>>,
    Query(q): Query<PeriodQuery>,
) -> Result<Response, ApiError> {
    // A read-only session sees the processes but no buttons.
    let may_change = access.is_none_or(|a| a.0 == super::auth::Access::ReadWrite);
    let period = q.period.unwrap_or_else(|| "24h".into());
    let since = crate::present::period_since(&period)?;
    let (running, history, backup_mode) = svc
        .call(move |s| {
            let mode = s.backup_mode(None)?;
            Ok((s.running_processes(), s.history_since(since), mode))
        })
        .await?;
    let now = crate::units::now_ms();
    let mut body = String::from("<h2>Running</h2>");
    if running.is_empty() {
        body.push_str("<p class=\"empty\" id=\"no-running\">No background process is running</p>");
    } else {
        body.push_str(
            "<table id=\"running\"><tr><th>Type</th><th>Completion</th><th>Started</th><th></th></tr>",
        );
        for r in &running {
            let cancel = if may_change {
                super::controls::cancel_button(r.run)
            } else {
                String::new()
            };
            body.push_str(&format!(
                "<tr><td>{}</td><td class=\"percent\">{:.0}%</td><td>{}</td><td>{cancel}</td></tr>",
                escape(&r.process),
                r.percent,
                view::time(r.started_ms, now)
            ));
        }
        body.push_str("</table>");
    }
    if may_change {
        body.push_str(&super::controls::start_forms());
        body.push_str(&super::controls::backup_mode_form(&backup_mode));
    }
    body.push_str("<h2>History</h2>");
    body.push_str(&view::period_links("/", &period));
    let mut in_order = history.clone();
    in_order.sort_by_key(|e| e.time_ms);
    body.push_str(&view::timeline(&view::runs(&in_order), since, now));
    if history.is_empty() {
        body.push_str(&format!(
            "<p class=\"empty\" id=\"no-history\">{NO_HISTORY}</p>"
        ));
    } else {
        body.push_str(
            "<table id=\"history\"><tr><th>Time</th><th>Process</th><th>Status</th></tr>",
        );
        let starts: std::collections::HashMap<u64, u64> = history
            .iter()
            .filter(|e| e.status == crate::jobs::history::Status::Started)
            .map(|e| (e.run, e.time_ms))
            .collect();
        for e in &history {
            let process = ProcessType::from_code(e.process).map_or("unknown process", |p| p.name());
            // An end says how long the run took.
            let took = match starts.get(&e.run) {
                Some(&start) if e.status != crate::jobs::history::Status::Started => format!(
                    " <span class=\"rel\">(took {})</span>",
                    crate::units::format_seconds(e.time_ms.saturating_sub(start) as f64 / 1000.0)
                ),
                _ => String::new(),
            };
            body.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}{took}</td></tr>",
                view::time(e.time_ms, now),
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

/// The store: totals, charts over the period, partitions with their fill,
/// and segments summarised (the list is paginated on its own page).
pub(super) async fn store_view(
    State(svc): State<Arc<Service>>,
    Query(q): Query<PeriodQuery>,
) -> Result<Response, ApiError> {
    let period = q.period.unwrap_or_else(|| "24h".into());
    let since = crate::present::period_since(&period)?;
    let samples = svc.metrics.since(since);
    let (stat, pending, segments, partitions, running) = svc
        .call(|s| {
            Ok((
                s.stat(),
                s.pending_explained(0)?,
                s.segments(),
                s.partitions(),
                !s.running_processes().is_empty(),
            ))
        })
        .await?;
    let now = crate::units::now_ms();
    Ok(Html(layout(
        "Store",
        &view::render_store(
            &stat,
            &pending,
            &segments,
            &partitions,
            &samples,
            &period,
            since,
            now,
        ),
        running,
    ))
    .into_response())
}

#[derive(Deserialize)]
pub(super) struct SegmentsQuery {
    page: Option<usize>,
    sort: Option<String>,
    order: Option<String>,
}

/// The segment list: a page of 100, sorted by a column.
pub(super) async fn segments_view(
    State(svc): State<Arc<Service>>,
    Query(q): Query<SegmentsQuery>,
) -> Result<Response, ApiError> {
    let sort = q.sort.unwrap_or_else(|| "id".into());
    if !view::SEGMENT_SORTS.contains(&sort.as_str()) {
        return Err(ApiError::bad_request(format!(
            "sort must be one of {}",
            view::SEGMENT_SORTS.join(", ")
        )));
    }
    let descending = q.order.as_deref() == Some("desc");
    let mut segments = svc.call(|s| Ok(s.segments())).await?;
    let body = view::segment_page(
        &mut segments,
        &sort,
        descending,
        q.page.unwrap_or(1),
        crate::units::now_ms(),
    );
    Ok(Html(layout("Segments", &body, false)).into_response())
}
