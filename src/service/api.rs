//! The JSON API: one handler per endpoint, each a thin call into the store
//! with the same keys as the CLI's `--json`.
//! It must not import `cli`: what both show comes from `present`.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, Service};
use crate::backup::Cursor;
use crate::id::SavesetId;

pub(super) type ApiResult = std::result::Result<Response, ApiError>;
type Svc = State<Arc<Service>>;

fn parse_id(text: &str) -> std::result::Result<SavesetId, ApiError> {
    text.parse::<SavesetId>().map_err(ApiError::from)
}

pub(super) fn ok_json(v: impl serde::Serialize) -> ApiResult {
    Ok(Json(serde_json::to_value(v).unwrap_or(Value::Null)).into_response())
}

pub(super) async fn head_saveset(State(svc): Svc, Path(id): Path<String>) -> ApiResult {
    let id = parse_id(&id)?;
    let present = svc.store.has(&id);
    Ok(if present {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    }
    .into_response())
}

/// A `Range: bytes=A-B` (or `A-`, or `-N`) header against `len` bytes.
fn parse_range(value: &str, len: u64) -> Option<(u64, u64)> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') || len == 0 {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (len.saturating_sub(n), len - 1)
        }
        (a, "") => (a.parse().ok()?, len - 1),
        (a, b) => (a.parse().ok()?, b.parse::<u64>().ok()?.min(len - 1)),
    };
    (start <= end && start < len).then_some((start, end))
}

pub(super) async fn get_saveset(
    State(svc): Svc,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let id = parse_id(&id)?;
    let content = svc.call(move |s| s.get(&id)).await?;
    let len = content.len() as u64;
    let Some(range) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok((
            [
                (header::CONTENT_TYPE, "message/rfc822".to_string()),
                (header::ACCEPT_RANGES, "bytes".to_string()),
            ],
            content,
        )
            .into_response());
    };
    match parse_range(range, len) {
        Some((start, end)) => Ok((
            StatusCode::PARTIAL_CONTENT,
            [
                (header::CONTENT_TYPE, "message/rfc822".to_string()),
                (header::CONTENT_RANGE, format!("bytes {start}-{end}/{len}")),
            ],
            content[start as usize..=end as usize].to_vec(),
        )
            .into_response()),
        None => Ok((
            StatusCode::RANGE_NOT_SATISFIABLE,
            [(header::CONTENT_RANGE, format!("bytes */{len}"))],
            Json(json!({"error": "bad_range", "message": format!("the range does not fit {len} bytes")})),
        )
            .into_response()),
    }
}

pub(super) async fn put_saveset(State(svc): Svc, body: Bytes) -> ApiResult {
    let put = svc.call(move |s| s.put(&body)).await?;
    let status = if put.new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({"id": put.id.to_string(), "new": put.new})),
    )
        .into_response())
}

#[derive(Deserialize)]
pub(super) struct ArchiveQuery {
    #[serde(default)]
    replace: bool,
}

pub(super) async fn archive(
    State(svc): Svc,
    Path((owner, item)): Path<(String, String)>,
    Query(q): Query<ArchiveQuery>,
    body: Bytes,
) -> ApiResult {
    let a = svc
        .call(move |s| s.archive(&owner, &item, &body, q.replace))
        .await?;
    ok_json(json!({
        "id": a.id.to_string(),
        "new_content": a.new_content,
        "new_reference": a.new_reference,
    }))
}

#[derive(Deserialize)]
pub(super) struct LinkBody {
    id: String,
}

pub(super) async fn link(
    State(svc): Svc,
    Path((owner, item)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    super::guard::json_content_type(&headers)?;
    let req: LinkBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("expected {{\"id\": \"<64 hex>\"}}: {e}")))?;
    let id = parse_id(&req.id)?;
    let a = svc.call(move |s| s.link(&owner, &item, &id)).await?;
    ok_json(json!({
        "id": a.id.to_string(),
        "new_reference": a.new_reference,
    }))
}

pub(super) async fn delete_item(
    State(svc): Svc,
    Path((owner, item)): Path<(String, String)>,
) -> ApiResult {
    svc.call(move |s| s.delete(&owner, Some(&item))).await?;
    ok_json(json!({"trashed": true}))
}

pub(super) async fn delete_owner(State(svc): Svc, Path(owner): Path<String>) -> ApiResult {
    svc.call(move |s| s.delete(&owner, None)).await?;
    ok_json(json!({"trashed": true}))
}

pub(super) async fn refs(State(svc): Svc, Path(id): Path<String>) -> ApiResult {
    let id = parse_id(&id)?;
    let refs = svc.call(move |s| s.refs(&id)).await?;
    ok_json(refs)
}

#[derive(Deserialize)]
pub(super) struct PendingQuery {
    explain: Option<String>,
    limit: Option<usize>,
}

/// `GET /pending`: the counters; with `explain=1`, why savesets wait.
pub(super) async fn pending(State(svc): Svc, Query(q): Query<PendingQuery>) -> ApiResult {
    match q.explain.as_deref() {
        None | Some("0") | Some("false") => ok_json(svc.call(|s| Ok(s.pending())).await?),
        Some("1") | Some("true") => {
            let limit = q.limit.unwrap_or(0).min(100_000);
            ok_json(svc.call(move |s| s.pending_explained(limit)).await?)
        }
        Some(other) => Err(ApiError::bad_request(format!(
            "explain must be 1 or 0, not {other:?}"
        ))),
    }
}

#[derive(Deserialize)]
pub(super) struct FeedQuery {
    after: Option<String>,
    limit: Option<usize>,
}

pub(super) async fn feed(State(svc): Svc, Query(q): Query<FeedQuery>) -> ApiResult {
    let after = q
        .after
        .map(|a| a.parse::<Cursor>())
        .transpose()
        .map_err(ApiError::from)?;
    let limit = q.limit.unwrap_or(1000).min(100_000);
    ok_json(svc.call(move |s| s.feed(after, limit)).await?)
}

#[derive(Deserialize)]
pub(super) struct AckBody {
    cursor: String,
}

pub(super) async fn feed_ack(State(svc): Svc, headers: HeaderMap, body: Bytes) -> ApiResult {
    super::guard::json_content_type(&headers)?;
    let req: AckBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!("expected {{\"cursor\": \"SEQUENCE.INDEX\"}}: {e}"))
    })?;
    let cursor: Cursor = req.cursor.parse().map_err(ApiError::from)?;
    svc.call(move |s| s.feed_ack(cursor)).await?;
    ok_json(json!({"acknowledged": cursor.to_string()}))
}

pub(super) async fn backup_list(State(svc): Svc) -> ApiResult {
    ok_json(svc.call(|s| s.backup_list()).await?)
}

#[derive(Deserialize)]
pub(super) struct MarkBody {
    checksum: String,
}

pub(super) async fn backup_mark(
    State(svc): Svc,
    Path(segment): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    super::guard::json_content_type(&headers)?;
    let segment: u32 = segment
        .parse()
        .map_err(|_| ApiError::bad_request(format!("segment {segment:?} is not a number")))?;
    let req: MarkBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("expected {{\"checksum\": \"<hex>\"}}: {e}")))?;
    svc.call(move |s| s.backup_mark(segment, &req.checksum))
        .await?;
    ok_json(json!({"segment": segment, "marked": true}))
}

pub(super) async fn jobs(State(svc): Svc) -> ApiResult {
    let running = svc.call(|s| Ok(s.running_processes())).await?;
    ok_json(crate::present::running_rows(&running))
}

#[derive(Deserialize)]
pub(super) struct HistoryQuery {
    period: Option<String>,
}

pub(super) async fn jobs_history(State(svc): Svc, Query(q): Query<HistoryQuery>) -> ApiResult {
    let since = crate::present::period_since(q.period.as_deref().unwrap_or("24h"))?;
    let rows = svc.call(move |s| Ok(s.history_since(since))).await?;
    ok_json(crate::present::history_rows(&rows))
}

pub(super) async fn stat(State(svc): Svc) -> ApiResult {
    ok_json(svc.call(|s| Ok(s.stat())).await?)
}

pub(super) async fn segments(State(svc): Svc) -> ApiResult {
    ok_json(svc.call(|s| Ok(s.segments())).await?)
}

pub(super) async fn partitions(State(svc): Svc) -> ApiResult {
    ok_json(svc.call(|s| Ok(s.partitions())).await?)
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=50-500", 100), Some((50, 99)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=9-1", 100), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
    }
}
