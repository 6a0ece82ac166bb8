//! Background processes inside the service: the scheduler that starts each
//! periodic process when it is due, `POST /jobs` and `DELETE /jobs/{run}`
//! for operators, and cancelling what runs at shutdown.
//!
//! Owns when the service starts a process and how a request asks for one;
//! what a process does, and the limit on how many run at once, belong to
//! the jobs runner below. It must not import `cli`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{ApiError, Service};
use crate::error::Error;
use crate::jobs::schedule::ProcessRequest;
use crate::store::Store;

type ApiResult = std::result::Result<Response, ApiError>;

/// `POST /jobs`: start a process with its options. Answers 202 with the
/// run's id, or, with `"wait": true`, 200 with its report once it ends
/// (what the CLI sends when the service holds the store).
pub(super) async fn start(
    State(svc): State<Arc<Service>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    super::guard::json_content_type(&headers)?;
    let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "expected {{\"process\": \"DB defragmentation\", ...options}}: {e}"
        ))
    })?;
    let request = ProcessRequest::from_json(&v)?;
    let process = request.process();
    if v.get("wait").and_then(|w| w.as_bool()) == Some(true) {
        let report = svc.call(move |s| s.run_request(&request)).await?;
        return Ok(axum::Json(report).into_response());
    }
    let store = svc.store.clone();
    let run = tokio::task::spawn_blocking(move || store.start(request))
        .await
        .map_err(|e| ApiError::internal(format!("worker failed: {e}")))?
        .map_err(ApiError::from)?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({"run": run, "process": process.name()})),
    )
        .into_response())
}

/// `DELETE /jobs/{run}`: cancel a running process at its next safe point.
pub(super) async fn cancel(State(svc): State<Arc<Service>>, Path(run): Path<String>) -> ApiResult {
    let run: u64 = run
        .parse()
        .map_err(|_| ApiError::bad_request(format!("{run:?} is not a run id")))?;
    svc.call(move |s| s.cancel_run(run)).await.map_err(|e| {
        if e.code == "bad_request" {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", e.message)
        } else {
            e
        }
    })?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({"run": run, "cancelling": true})),
    )
        .into_response())
}

/// Start every process that is due, every `tick`, until the service stops.
/// A type due while one of its kind runs, or while the store runs as many
/// processes as it allows, waits for a later tick.
pub(super) async fn schedule_forever(store: Arc<Store>, tick: Duration) {
    let since_ms = crate::units::now_ms();
    let mut ticks = tokio::time::interval(tick.max(Duration::from_millis(10)));
    loop {
        ticks.tick().await;
        let store = store.clone();
        let _ = tokio::task::spawn_blocking(move || start_due(&store, since_ms)).await;
    }
}

fn start_due(store: &Arc<Store>, since_ms: u64) {
    for process in store.due_processes(since_ms) {
        let Some(request) = ProcessRequest::scheduled(process) else {
            continue;
        };
        match store.start(request) {
            Ok(run) => tracing::info!("scheduler: {process} started (run {run})"),
            Err(Error::AlreadyRunning { .. } | Error::TooManyProcesses { .. }) => {}
            Err(e) => tracing::warn!("scheduler: {process}: {e}"),
        }
    }
}

/// At shutdown: ask every running process to stop at its next safe point
/// and wait, at most `grace`, for them to be recorded as cancelled.
pub(super) async fn cancel_running(store: Arc<Store>, grace: Duration) {
    let _ = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + grace;
        store.cancel_all_processes();
        while !store.running_processes().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await;
}
