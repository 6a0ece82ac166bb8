//! The page's process controls: a start form for each process an operator
//! may start (with its options), a cancel button on each running one, and
//! a confirmation page before anything that deletes or moves data. Plain
//! HTML forms: the page runs no script. Starting and cancelling go through
//! the same store calls as `POST /jobs` and `DELETE /jobs/RUN`.
//! It must not import `cli`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Form;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use super::Service;
use super::view::escape;
use crate::jobs::ProcessType;
use crate::jobs::schedule::ProcessRequest;

/// What each start form asks for, in the console's order: the process, the
/// option fields, and whether it deletes or moves data (then it asks first).
const STARTABLE: &[(ProcessType, &str, bool)] = &[
    (ProcessType::FileSyncCache, "", false),
    (
        ProcessType::Defragmentation,
        "<label>dead share at least <input name=\"threshold\" type=\"number\" min=\"0\" max=\"1\" step=\"0.05\" value=\"0.5\"></label>",
        true,
    ),
    (
        ProcessType::Redistribution,
        "<label>drain partition <input name=\"drain\" type=\"number\" min=\"0\"></label> \
         <label><input name=\"balance\" type=\"checkbox\" value=\"true\"> or balance</label>",
        true,
    ),
    (
        ProcessType::BackingUpUnits,
        "<label>to <input name=\"to\" type=\"text\" placeholder=\"/backup/vault\"></label>",
        false,
    ),
    (ProcessType::DeletingMacroObjects, "", true),
    (ProcessType::DeletingMicroObjects, "", true),
    (ProcessType::FullResynchronization, "", false),
    (ProcessType::MessageCache, "", false),
];

/// The id the page gives a process's form and button: `start-6`.
fn form_id(process: ProcessType) -> String {
    format!("start-{}", process.code())
}

/// The start forms, for a session that may change the store.
pub(super) fn start_forms() -> String {
    let mut out = String::from("<h2>Start a process</h2><table id=\"start\">");
    for &(process, fields, _) in STARTABLE {
        out.push_str(&format!(
            "<tr><td>{name}</td><td><form method=\"post\" action=\"/start\" id=\"{id}\">\
             <input type=\"hidden\" name=\"process\" value=\"{name}\">{fields} \
             <button type=\"submit\" id=\"{id}-button\">Start</button></form></td></tr>",
            name = escape(process.name()),
            id = form_id(process),
        ));
    }
    out.push_str("</table>");
    out
}

/// A cancel button for the running run `run`.
pub(super) fn cancel_button(run: u64) -> String {
    format!(
        "<form method=\"post\" action=\"/cancel\"><input type=\"hidden\" name=\"run\" value=\"{run}\">\
         <button type=\"submit\" id=\"cancel-{run}\">Cancel</button></form>"
    )
}

/// The form's fields as a `POST /jobs` body: numbers as numbers, empty
/// fields left out.
fn request_json(form: &HashMap<String, String>) -> serde_json::Value {
    let mut v = serde_json::Map::new();
    for (k, value) in form {
        let value = value.trim();
        if value.is_empty() || k == "confirm" {
            continue;
        }
        let json = match k.as_str() {
            "threshold" => value.parse::<f64>().map(Into::into).unwrap_or(value.into()),
            "drain" => value.parse::<u64>().map(Into::into).unwrap_or(value.into()),
            "balance" => (value == "true").into(),
            _ => value.into(),
        };
        v.insert(k.clone(), json);
    }
    serde_json::Value::Object(v)
}

fn page(title: &str, body: &str, status: StatusCode) -> Response {
    (status, Html(super::page::layout(title, body, false))).into_response()
}

fn see_processes() -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response()
}

/// `POST /start`: start a process from its form; a destructive one shows a
/// confirmation page first.
pub(super) async fn start(
    State(svc): State<Arc<Service>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let request = match ProcessRequest::from_json(&request_json(&form)) {
        Ok(r) => r,
        Err(e) => {
            return page(
                "Could not start",
                &error(&e.to_string()),
                StatusCode::BAD_REQUEST,
            );
        }
    };
    let process = request.process();
    let destructive = STARTABLE.iter().any(|(p, _, d)| *p == process && *d);
    if destructive && form.get("confirm").map(String::as_str) != Some("yes") {
        return page("Confirm", &confirmation(process, &form), StatusCode::OK);
    }
    let store = svc.store.clone();
    match tokio::task::spawn_blocking(move || store.start(request)).await {
        Ok(Ok(_)) => see_processes(),
        Ok(Err(e)) => page(
            "Could not start",
            &error(&e.to_string()),
            StatusCode::CONFLICT,
        ),
        Err(e) => page(
            "Could not start",
            &error(&e.to_string()),
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
    }
}

fn error(text: &str) -> String {
    format!(
        "<p id=\"error\">{}</p><p><a href=\"/\">Back to the processes</a></p>",
        escape(text)
    )
}

/// The question before a process that deletes or moves data, with the
/// form's fields carried over.
fn confirmation(process: ProcessType, form: &HashMap<String, String>) -> String {
    let what = match process {
        ProcessType::Defragmentation => "rewrite sparse segments and delete the old ones",
        ProcessType::Redistribution => "move segments between partitions",
        _ => "delete trashed references past the trash retention for good",
    };
    let mut hidden = String::new();
    for (k, v) in form {
        hidden.push_str(&format!(
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            escape(k),
            escape(v)
        ));
    }
    format!(
        "<p id=\"question\">{name} will {what}. Start it?</p>\
         <form method=\"post\" action=\"/start\">{hidden}\
         <input type=\"hidden\" name=\"confirm\" value=\"yes\">\
         <button type=\"submit\" id=\"confirm\">Yes, start {name}</button></form>\
         <p><a href=\"/\" id=\"back\">No, back to the processes</a></p>",
        name = escape(process.name()),
    )
}

/// `POST /cancel`: ask a running process to stop at its next safe point.
pub(super) async fn cancel(
    State(svc): State<Arc<Service>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let Some(run) = form.get("run").and_then(|r| r.parse::<u64>().ok()) else {
        return page(
            "Could not cancel",
            &error("no run to cancel"),
            StatusCode::BAD_REQUEST,
        );
    };
    let store = svc.store.clone();
    match tokio::task::spawn_blocking(move || store.cancel_run(run)).await {
        Ok(Ok(())) => see_processes(),
        Ok(Err(e)) => page(
            "Could not cancel",
            &error(&e.to_string()),
            StatusCode::NOT_FOUND,
        ),
        Err(e) => page(
            "Could not cancel",
            &error(&e.to_string()),
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
    }
}

/// The backup mode form: what it is now and the button that changes it.
pub(super) fn backup_mode_form(status: &crate::backup_mode::BackupModeStatus) -> String {
    let (now, next, label) = match status.since_ms {
        Some(since) => (
            format!(
                "on since {} ({} items in the message cache)",
                crate::units::format_time(since),
                status.cached_items
            ),
            "false",
            "Turn backup mode off",
        ),
        None => ("off".to_string(), "true", "Turn backup mode on"),
    };
    format!(
        "<h2>Backup mode</h2><form method=\"post\" action=\"/backup-mode\" id=\"backup-mode-form\">\
         <p id=\"backup-mode-now\">Backup mode is {now}.</p>\
         <input type=\"hidden\" name=\"on\" value=\"{next}\">\
         <button type=\"submit\" id=\"backup-mode-button\">{label}</button></form>"
    )
}

/// `POST /backup-mode`: the form's change; turning it off starts
/// "Processing message cache" when the cache holds items.
pub(super) async fn backup_mode(
    State(svc): State<Arc<Service>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let on = form.get("on").map(String::as_str) == Some("true");
    let store = svc.store.clone();
    let changed = tokio::task::spawn_blocking(move || {
        let status = store.backup_mode(Some(on))?;
        if !on && status.cached_items > 0 {
            match store.start(ProcessRequest::ProcessMessageCache) {
                Ok(_) | Err(crate::Error::AlreadyRunning { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    })
    .await;
    match changed {
        Ok(Ok(())) => see_processes(),
        Ok(Err(e)) => page(
            "Could not change backup mode",
            &error(&e.to_string()),
            StatusCode::CONFLICT,
        ),
        Err(e) => page(
            "Could not change backup mode",
            &error(&e.to_string()),
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
    }
}
