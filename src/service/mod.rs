//! The network service behind `vaultstore serve`: an HTTP/1.1 API that
//! mirrors the library, and the operator's page.
//!
//! Owns the HTTP side only: routing, bearer tokens ([`auth`]), turning
//! engine errors into JSON with stable codes, body limits, one log line per
//! request, and a clean shutdown (in-flight requests finish, their writes
//! durable; new writes are refused). Every store call runs on a blocking
//! thread against the one open [`Store`]; this module never touches files
//! itself except the token file. The protocol is in `protocol/http.md`.

mod api;
pub mod auth;
mod page;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::json;

use crate::error::{Error, Result};
use crate::store::Store;
use auth::{Access, Tokens};

/// Default address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";
/// Default largest request body: 64 MiB.
pub const DEFAULT_MAX_BODY: u64 = 64 << 20;
/// Name of the session cookie the page uses.
pub const SESSION_COOKIE: &str = "vaultstore_session";

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Largest request body accepted; larger ones get 413 before being read.
    pub max_body: u64,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            max_body: DEFAULT_MAX_BODY,
        }
    }
}

/// State shared by all requests.
pub(crate) struct Service {
    pub(crate) store: Arc<Store>,
    tokens: Tokens,
    draining: AtomicBool,
}

impl Service {
    /// Run a store call on a blocking thread.
    pub(crate) async fn call<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Store) -> Result<T> + Send + 'static,
    ) -> std::result::Result<T, ApiError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| ApiError::internal(format!("worker failed: {e}")))?
            .map_err(ApiError::from)
    }
}

/// An error as the API answers it: a status, a stable code and a message.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let (status, code) = match &e {
            Error::NotFound(_)
            | Error::NotStored(_)
            | Error::OwnerNotFound { .. }
            | Error::ItemNotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            Error::InvalidId { .. } => (StatusCode::BAD_REQUEST, "invalid_id"),
            Error::InvalidName { .. } | Error::InvalidSetting(_) | Error::NothingToDo(_) => {
                (StatusCode::BAD_REQUEST, "bad_request")
            }
            Error::ItemExists { .. } | Error::InTrash { .. } | Error::Held { .. } => {
                (StatusCode::CONFLICT, "conflict")
            }
            Error::AlreadyRunning { .. } => (StatusCode::CONFLICT, "already_running"),
            Error::ChecksumMismatch { .. } => (StatusCode::CONFLICT, "checksum_mismatch"),
            Error::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            Error::ReadOnly { .. } => (StatusCode::FORBIDDEN, "read_only"),
            Error::Corrupt { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "corrupt"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(json!({"error": self.code, "message": self.message})),
        )
            .into_response()
    }
}

/// The token a request presents: a bearer token, or the page's session cookie.
fn presented_token(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        return v.strip_prefix("Bearer ").map(|t| t.trim().to_string());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.to_string())
}

/// Every request but the login form needs a token; a read-only token only
/// reads. Checked before any body is read or the store is touched.
async fn require_token(State(svc): State<Arc<Service>>, mut req: Request, next: Next) -> Response {
    let access = presented_token(req.headers()).and_then(|t| svc.tokens.check(&t));
    let Some(access) = access else {
        if req.method() == Method::GET && req.uri().path() == "/" {
            return page::login(None).into_response();
        }
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required (vaultstore token)",
        )
        .into_response();
    };
    let reads = matches!(*req.method(), Method::GET | Method::HEAD);
    if access == Access::ReadOnly && !reads {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "read_only_token",
            "this token only reads",
        )
        .into_response();
    }
    if !reads && svc.draining.load(Ordering::SeqCst) {
        let mut r = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the service is shutting down",
        )
        .into_response();
        // Let the client go, so the shutdown does not wait on its connection.
        r.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
        return r;
    }
    req.extensions_mut().insert(access);
    next.run(req).await
}

/// One log line per request.
async fn log_request(req: Request, next: Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let start = Instant::now();
    let response = next.run(req).await;
    tracing::info!(
        "{method} {path} {} {:.1} ms",
        response.status().as_u16(),
        start.elapsed().as_secs_f64() * 1e3
    );
    response
}

fn router(svc: Arc<Service>, max_body: u64) -> Router {
    let api = Router::new()
        .route("/", get(page::processes))
        .route("/store", get(page::store_view))
        .route("/savesets", put(api::put_saveset))
        .route(
            "/savesets/{id}",
            get(api::get_saveset).head(api::head_saveset),
        )
        .route("/savesets/{id}/refs", get(api::refs))
        .route(
            "/owners/{owner}/items/{item}",
            put(api::archive).delete(api::delete_item),
        )
        .route("/owners/{owner}/items/{item}/link", post(api::link))
        .route("/owners/{owner}", axum::routing::delete(api::delete_owner))
        .route("/pending", get(api::pending))
        .route("/feed", get(api::feed))
        .route("/feed/ack", post(api::feed_ack))
        .route("/backup", get(api::backup_list))
        .route("/backup/{segment}/mark", post(api::backup_mark))
        .route("/jobs", get(api::jobs))
        .route("/jobs/history", get(api::jobs_history))
        .route("/stat", get(api::stat))
        .route("/segments", get(api::segments))
        .route("/partitions", get(api::partitions))
        .route_layer(middleware::from_fn_with_state(svc.clone(), require_token));
    Router::new()
        .route("/session", post(page::session))
        .merge(api)
        .layer(DefaultBodyLimit::max(
            max_body.min(usize::MAX as u64) as usize
        ))
        .layer(middleware::from_fn(log_request))
        .with_state(svc)
}

/// Serve `store` on `listener` until `shutdown` resolves; then refuse new
/// writes, let in-flight requests finish, and return.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    store: Arc<Store>,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let svc = Arc::new(Service {
        tokens: Tokens::new(store.dir())?,
        store,
        draining: AtomicBool::new(false),
    });
    let app = router(svc.clone(), opts.max_body);
    let addr = listener
        .local_addr()
        .map_err(|e| Error::InvalidSetting(format!("listener: {e}")))?;
    tracing::info!("serving on http://{addr}");
    let drain = svc.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            drain.draining.store(true, Ordering::SeqCst);
            tracing::info!("shutting down: finishing requests in flight");
        })
        .await
        .map_err(|e| Error::InvalidSetting(format!("service stopped: {e}")))
}

/// `vaultstore serve`: open the store, bind `listen`, serve until SIGTERM
/// or Ctrl-C.
pub fn run(store: Store, listen: SocketAddr, opts: ServeOptions) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::InvalidSetting(format!("cannot start the runtime: {e}")))?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| Error::InvalidSetting(format!("cannot listen on {listen}: {e}")))?;
        serve_on(listener, Arc::new(store), opts, stop_signal()).await
    })
}

async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
