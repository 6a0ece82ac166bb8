//! Monitoring as operators expect it: `GET /metrics` in the Prometheus /
//! OpenMetrics text format (through the `prometheus-client` crate) and
//! `GET /healthz`.
//!
//! Owns the request counters and latency histograms the service keeps, and
//! the mapping of the store's figures to metric families. `/metrics` needs a
//! token (the read-only one will do: it names the store's volumes' use);
//! `/healthz` needs none and says only whether the store takes writes. It
//! must not import `cli`.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde_json::json;

use super::{ApiError, Service};
use crate::jobs::ProcessType;
use crate::jobs::history::Status;
use crate::store::Store;

/// A request's route (the matched template, not the path) and method.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: String,
}

/// A request's route, method and status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: String,
}

type Latency = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// What the service counts about its requests, kept for its lifetime.
pub(crate) struct RequestMetrics {
    requests: Family<RequestLabels, Counter>,
    latency: Latency,
}

fn latency_histogram() -> Histogram {
    // 100 µs to about 26 s.
    Histogram::new(exponential_buckets(0.0001, 4.0, 10))
}

impl Default for RequestMetrics {
    fn default() -> Self {
        RequestMetrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
        }
    }
}

/// Count a matched request and time it, by route, method and status.
pub(super) async fn count(State(svc): State<Arc<Service>>, req: Request, next: Next) -> Response {
    // `/owners/:owner/items/:item`: no braces, which some parsers of the
    // text format do not take in a label value.
    let route = req.extensions().get::<MatchedPath>().map_or_else(
        || "unmatched".to_string(),
        |p| p.as_str().replace('{', ":").replace('}', ""),
    );
    let method = req.method().to_string();
    let start = Instant::now();
    let response = next.run(req).await;
    let labels = RouteLabels { route, method };
    svc.requests
        .latency
        .get_or_create(&labels)
        .observe(start.elapsed().as_secs_f64());
    svc.requests
        .requests
        .get_or_create(&RequestLabels {
            route: labels.route,
            method: labels.method,
            status: response.status().as_u16().to_string(),
        })
        .inc();
    response
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let g = Gauge::<i64>::default();
    g.set(value.min(i64::MAX as u64) as i64);
    registry.register(name, help, g);
}

/// The store's figures as metric families, registered in `registry`.
fn store_metrics(store: &Store, registry: &mut Registry) {
    let stat = store.stat();
    gauge(
        registry,
        "vaultstore_savesets",
        "Live savesets",
        stat.savesets,
    );
    gauge(
        registry,
        "vaultstore_references",
        "Live and trashed references",
        stat.references,
    );
    gauge(
        registry,
        "vaultstore_stored_bytes",
        "Bytes of segment files",
        stat.stored_bytes,
    );
    gauge(
        registry,
        "vaultstore_logical_bytes",
        "Bytes of live savesets as stored by clients",
        stat.logical_bytes,
    );
    gauge(
        registry,
        "vaultstore_dead_bytes",
        "Bytes of dead records awaiting defragmentation",
        stat.dead_bytes,
    );
    let pending = store.pending();
    let family = Family::<Vec<(String, String)>, Gauge>::default();
    for (state, n) in [
        ("awaiting_index", pending.awaiting_index),
        ("awaiting_backup", pending.awaiting_backup),
        (
            "ready_for_post_processing",
            pending.ready_for_post_processing,
        ),
    ] {
        family
            .get_or_create(&vec![("state".into(), state.into())])
            .set(n as i64);
    }
    registry.register(
        "vaultstore_pending_savesets",
        "Savesets by pending state",
        family,
    );
    let segments = Family::<Vec<(String, String)>, Gauge>::default();
    for s in store.segments() {
        let bit = if s.archive_bit { "set" } else { "clear" };
        segments
            .get_or_create(&vec![("archive_bit".into(), bit.into())])
            .inc();
    }
    registry.register("vaultstore_segments", "Segments by archive bit", segments);
    process_metrics(store, registry);
}

/// Running processes, and the last run and outcome of each type.
fn process_metrics(store: &Store, registry: &mut Registry) {
    gauge(
        registry,
        "vaultstore_processes_running",
        "Background processes running now",
        store.running_processes().len() as u64,
    );
    let last_start = Family::<Vec<(String, String)>, Gauge>::default();
    let last_ok = Family::<Vec<(String, String)>, Gauge>::default();
    let history = store.history_since(0);
    for p in ProcessType::ALL {
        // Newest first: the first of each kind is the latest.
        let of_type = || history.iter().filter(|e| e.process == p.code());
        let label = vec![("process".to_string(), p.name().to_string())];
        if let Some(started) = of_type().find(|e| e.status == Status::Started) {
            last_start
                .get_or_create(&label)
                .set((started.time_ms / 1000) as i64);
        }
        if let Some(ended) = of_type().find(|e| e.status != Status::Started) {
            let ok = matches!(ended.status, Status::Finished);
            last_ok.get_or_create(&label).set(ok as i64);
        }
    }
    registry.register(
        "vaultstore_process_last_started_seconds",
        "When the last run of each process type started (Unix seconds)",
        last_start,
    );
    registry.register(
        "vaultstore_process_last_succeeded",
        "1 when the last ended run of each process type finished, 0 when it failed",
        last_ok,
    );
}

/// `GET /metrics`.
pub(super) async fn metrics(State(svc): State<Arc<Service>>) -> Result<Response, ApiError> {
    let requests = (svc.requests.requests.clone(), svc.requests.latency.clone());
    let text = svc
        .call(move |store| {
            let mut registry = Registry::default();
            store_metrics(store, &mut registry);
            registry.register(
                "vaultstore_http_requests",
                "HTTP requests by matched route, method and status",
                requests.0,
            );
            registry.register(
                "vaultstore_http_request_duration_seconds",
                "Time to answer HTTP requests, by matched route and method",
                requests.1,
            );
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, &registry)
                .map_err(|e| crate::error::Error::InvalidSetting(format!("metrics: {e}")))?;
            Ok(text)
        })
        .await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// `GET /healthz`: 200 while the store is open and takes writes, 503 with
/// the reason otherwise.
pub(super) async fn healthz(State(svc): State<Arc<Service>>) -> Response {
    let draining = svc.draining.load(std::sync::atomic::Ordering::SeqCst);
    let store = svc.store.clone();
    let reason = tokio::task::spawn_blocking(move || store.unhealthy())
        .await
        .unwrap_or_else(|e| Some(format!("health check failed: {e}")));
    match (draining, reason) {
        (true, _) => unhealthy("the service is shutting down".into()),
        (false, Some(reason)) => unhealthy(reason),
        (false, None) => (StatusCode::OK, axum::Json(json!({"status": "ok"}))).into_response(),
    }
}

fn unhealthy(reason: String) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(json!({"status": "unavailable", "reason": reason})),
    )
        .into_response()
}
