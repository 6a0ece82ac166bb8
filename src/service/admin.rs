//! The API's store-changing calls beyond archiving: restore from trash,
//! legal holds, sealing, settings, partitions and IndexCommitted. Each is a
//! thin call into the store with the keys of the CLI's `--json`, so that a
//! CLI command run while the service holds the store can be sent here and
//! print what it prints locally. It must not import `cli`.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::api::{ApiResult, ok_json};
use super::{ApiError, Service};
use crate::id::SavesetId;
use crate::settings::SettingsChange;

type Svc = State<Arc<Service>>;

/// The request's JSON body as `T`; `expected` says what was wanted.
fn json_body<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
    expected: &str,
) -> Result<T, ApiError> {
    super::guard::json_content_type(headers)?;
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("expected {expected}: {e}")))
}

pub(super) async fn restore_owner(State(svc): Svc, Path(owner): Path<String>) -> ApiResult {
    svc.call(move |s| s.restore(&owner, None)).await?;
    ok_json(json!({"restored": true}))
}

pub(super) async fn restore_item(
    State(svc): Svc,
    Path((owner, item)): Path<(String, String)>,
) -> ApiResult {
    svc.call(move |s| s.restore(&owner, Some(&item))).await?;
    ok_json(json!({"restored": true}))
}

#[derive(Deserialize)]
pub(super) struct HoldQuery {
    #[serde(default)]
    custodian: bool,
}

pub(super) async fn hold_owner(
    State(svc): Svc,
    Path(owner): Path<String>,
    Query(q): Query<HoldQuery>,
) -> ApiResult {
    svc.call(move |s| match q.custodian {
        true => s.hold_custodian(&owner),
        false => s.hold(&owner, None, true),
    })
    .await?;
    ok_json(json!({"hold": true}))
}

pub(super) async fn release_owner(State(svc): Svc, Path(owner): Path<String>) -> ApiResult {
    svc.call(move |s| s.hold(&owner, None, false)).await?;
    ok_json(json!({"hold": false}))
}

pub(super) async fn hold_item(
    State(svc): Svc,
    Path((owner, item)): Path<(String, String)>,
) -> ApiResult {
    svc.call(move |s| s.hold(&owner, Some(&item), true)).await?;
    ok_json(json!({"hold": true}))
}

pub(super) async fn release_item(
    State(svc): Svc,
    Path((owner, item)): Path<(String, String)>,
) -> ApiResult {
    svc.call(move |s| s.hold(&owner, Some(&item), false))
        .await?;
    ok_json(json!({"hold": false}))
}

#[derive(Deserialize)]
pub(super) struct SealQuery {
    #[serde(default)]
    aged: bool,
}

pub(super) async fn seal(State(svc): Svc, Query(q): Query<SealQuery>) -> ApiResult {
    let sealed = svc
        .call(move |s| if q.aged { s.seal_if_aged() } else { s.seal() })
        .await?;
    ok_json(json!({"sealed": sealed}))
}

pub(super) async fn maintain(State(svc): Svc) -> ApiResult {
    let steps = svc
        .call(|s| Ok(crate::present::maintenance_steps(s.maintain())))
        .await?;
    ok_json(steps)
}

pub(super) async fn settings(State(svc): Svc) -> ApiResult {
    ok_json(svc.call(|s| Ok(crate::settings::view(s))).await?)
}

pub(super) async fn change_settings(State(svc): Svc, headers: HeaderMap, body: Bytes) -> ApiResult {
    let change: SettingsChange = json_body(&headers, &body, "the settings to change")?;
    let view = svc
        .call(move |s| {
            change.apply(s)?;
            Ok(crate::settings::view(s))
        })
        .await?;
    ok_json(view)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PartitionBody {
    path: PathBuf,
    #[serde(default)]
    capacity: Option<u64>,
}

pub(super) async fn add_partition(State(svc): Svc, headers: HeaderMap, body: Bytes) -> ApiResult {
    let req: PartitionBody = json_body(&headers, &body, "{\"path\": DIR, \"capacity\"?: BYTES}")?;
    let id = svc
        .call(move |s| s.partition_add(&req.path, req.capacity))
        .await?;
    ok_json(json!({"id": id}))
}

pub(super) async fn close_partition(State(svc): Svc, Path(id): Path<String>) -> ApiResult {
    let id: u32 = id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("partition {id:?} is not a number")))?;
    svc.call(move |s| s.partition_close(id)).await?;
    ok_json(json!({"id": id, "closed": true}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IndexedBody {
    ids: Vec<String>,
}

pub(super) async fn mark_indexed(State(svc): Svc, headers: HeaderMap, body: Bytes) -> ApiResult {
    let req: IndexedBody = json_body(&headers, &body, "{\"ids\": [ID, ...]}")?;
    let ids: Vec<SavesetId> = req
        .ids
        .iter()
        .map(|t| t.parse::<SavesetId>())
        .collect::<crate::error::Result<_>>()
        .map_err(ApiError::from)?;
    let marked = svc.call(move |s| s.mark_indexed(&ids)).await?;
    ok_json(json!({"marked": marked}))
}

#[derive(Deserialize)]
pub(super) struct ModeBody {
    on: bool,
}

/// `GET /backup/mode`: backup mode and the message cache now.
pub(super) async fn backup_mode_status(State(svc): Svc) -> ApiResult {
    let status = svc.call(|s| s.backup_mode(None)).await?;
    ok_json(serde_json::to_value(status).unwrap_or_default())
}

/// `POST /backup/mode`: turn backup mode on (answered once no process
/// runs) or off (the cached items go into the segments in the background:
/// the answer names that run).
pub(super) async fn backup_mode(State(svc): Svc, headers: HeaderMap, body: Bytes) -> ApiResult {
    let req: ModeBody = json_body(&headers, &body, "{\"on\": true}")?;
    let status = svc.call(move |s| s.backup_mode(Some(req.on))).await?;
    let mut v = serde_json::to_value(&status).unwrap_or_default();
    if !req.on && status.cached_items > 0 {
        let store = svc.store.clone();
        let request = crate::jobs::schedule::ProcessRequest::ProcessMessageCache;
        let started = tokio::task::spawn_blocking(move || store.start(request)).await;
        match started {
            Ok(Ok(run)) => v["run"] = run.into(),
            // Already running (the scheduler was first): it empties the cache.
            Ok(Err(crate::Error::AlreadyRunning { .. })) => {}
            Ok(Err(e)) => return Err(e.into()),
            Err(e) => return Err(ApiError::internal(format!("worker failed: {e}"))),
        }
    }
    ok_json(v)
}
