//! The network service behind `vaultstore serve`: an HTTP/1.1 API that
//! mirrors the library, and the operator's page.
//!
//! Owns the HTTP side only: routing, bearer tokens ([`auth`]), turning
//! engine errors into JSON with stable codes, body limits, one log line per
//! request, and a clean shutdown (in-flight requests finish, their writes
//! durable; new writes are refused). Every store call runs on a blocking
//! thread against the one open [`Store`]; this module never touches files
//! itself except the token file. The protocol is in `protocol/http.md`.

mod admin;
mod api;
pub mod auth;
mod controls;
pub mod guard;
mod monitor;
mod page;
mod processes;
pub mod view;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::json;

use crate::error::{Error, Result};
use crate::store::Store;
use auth::{Access, Sessions, Tokens};

/// Default address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";
/// Default largest request body: 64 MiB.
pub const DEFAULT_MAX_BODY: u64 = 64 << 20;
/// Name of the session cookie the page uses.
pub const SESSION_COOKIE: &str = "vaultstore_session";

/// Default time a client has to send a request's headers.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a client has to send a request's whole body.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(120);
/// Default most connections open at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// Default time between two samples of the store's figures.
pub const DEFAULT_SAMPLE_INTERVAL: Duration = Duration::from_secs(60);
/// How long a shutdown waits for connections before closing them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Default time between two looks of the scheduler at what is due.
pub const DEFAULT_SCHEDULE_TICK: Duration = Duration::from_secs(5);
/// The Unix socket in the store directory (mode 0600) through which the CLI
/// reaches the service that holds the store.
pub const SOCKET_FILE: &str = "service.sock";

/// Marks a request that came through the store's Unix socket: only the
/// store's owner can reach it, so it needs no token.
#[derive(Debug, Clone, Copy)]
struct LocalSocket;

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Largest request body accepted; larger ones get 413 before being read.
    pub max_body: u64,
    /// Time a client has to send a request's headers; then the connection
    /// is closed. Idle keep-alive connections are closed after it too.
    pub header_timeout: Duration,
    /// Time a client has to send a request's whole body (408 after it).
    pub body_timeout: Duration,
    /// Most connections open at once; one more is answered 503 and closed.
    pub max_connections: usize,
    /// Lifetime of a page session.
    pub session_ttl: Duration,
    /// Time between two samples of the store's figures (metrics.log).
    pub sample_interval: Duration,
    /// Time between two looks of the scheduler at what is due.
    pub schedule_tick: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            max_body: DEFAULT_MAX_BODY,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            session_ttl: auth::DEFAULT_SESSION_TTL,
            sample_interval: DEFAULT_SAMPLE_INTERVAL,
            schedule_tick: DEFAULT_SCHEDULE_TICK,
        }
    }
}

/// State shared by all requests.
pub(crate) struct Service {
    pub(crate) store: Arc<Store>,
    tokens: Tokens,
    sessions: Sessions,
    draining: AtomicBool,
    pub(crate) metrics: crate::metrics::MetricsLog,
    /// Requests counted and timed, for `/metrics`.
    requests: monitor::RequestMetrics,
}

/// The store's figures now, as a sample of the series.
fn take_sample(store: &Store) -> Option<crate::metrics::Sample> {
    let stat = store.stat();
    // In backup mode metrics.log does not change either.
    if stat.backup_mode_since_ms.is_some() {
        return None;
    }
    let pending = store.pending();
    Some(crate::metrics::Sample {
        time_ms: crate::units::now_ms(),
        savesets: stat.savesets,
        references: stat.references,
        logical_bytes: stat.logical_bytes,
        stored_bytes: stat.stored_bytes,
        dead_bytes: stat.dead_bytes,
        awaiting_index: pending.awaiting_index,
        awaiting_backup: pending.awaiting_backup,
        ready: pending.ready_for_post_processing,
    })
}

/// Sample the store's figures every `interval` into the series.
async fn sample_forever(svc: Arc<Service>, interval: Duration) {
    let mut tick = tokio::time::interval(interval.max(Duration::from_millis(10)));
    loop {
        tick.tick().await;
        let store = svc.store.clone();
        let sample = tokio::task::spawn_blocking(move || take_sample(&store)).await;
        if let Ok(Some(sample)) = sample
            && let Err(e) = svc.metrics.append(sample)
        {
            tracing::warn!("{e}");
        }
    }
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
            | Error::ItemNotFound { .. }
            | Error::HoldOnUnknownOwner { .. } => (StatusCode::NOT_FOUND, "not_found"),
            Error::InvalidId { .. } => (StatusCode::BAD_REQUEST, "invalid_id"),
            Error::InvalidName { .. } | Error::InvalidSetting(_) | Error::NothingToDo(_) => {
                (StatusCode::BAD_REQUEST, "bad_request")
            }
            Error::ItemExists { .. } | Error::InTrash { .. } | Error::Held { .. } => {
                (StatusCode::CONFLICT, "conflict")
            }
            Error::AlreadyRunning { .. } => (StatusCode::CONFLICT, "already_running"),
            Error::TooManyProcesses { .. } => (StatusCode::CONFLICT, "too_many_processes"),
            Error::ChecksumMismatch { .. } => (StatusCode::CONFLICT, "checksum_mismatch"),
            Error::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            Error::ReadOnly { .. } => (StatusCode::FORBIDDEN, "read_only"),
            Error::ReadOnlyState { .. } => (StatusCode::SERVICE_UNAVAILABLE, "read_only_state"),
            Error::BackupMode { .. } => (StatusCode::SERVICE_UNAVAILABLE, "backup_mode"),
            Error::MessageCacheProcessing { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "message_cache_processing")
            }
            Error::MessageCache { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "corrupt"),
            Error::Corrupt { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "corrupt"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            axum::Json(json!({"error": self.code, "message": self.message})),
        )
            .into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            // The state is the operator's to end; ask clients to come back.
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("60"));
        }
        response
    }
}

/// What a request presents: a bearer token, or the page's session id.
enum Credential {
    Bearer(String),
    Session(String),
}

fn presented(headers: &HeaderMap) -> Option<Credential> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        return v
            .strip_prefix("Bearer ")
            .map(|t| Credential::Bearer(t.trim().to_string()));
    }
    session_cookie(headers).map(Credential::Session)
}

/// The session id in the request's cookie, if any.
pub(crate) fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, v)| *k == SESSION_COOKIE && !v.is_empty())
        .map(|(_, v)| v.to_string())
}

/// Every request but the login form needs a token; a read-only token only
/// reads; a change made with the session cookie must come from the page's
/// own origin. Checked before any body is read or the store is touched.
async fn require_token(State(svc): State<Arc<Service>>, mut req: Request, next: Next) -> Response {
    let local = req.extensions().get::<LocalSocket>().is_some();
    let access = match presented(req.headers()) {
        _ if local => Some(Access::ReadWrite),
        Some(Credential::Bearer(t)) => svc.tokens.check(&t),
        Some(Credential::Session(id)) => {
            if let Err(e) = guard::same_origin(req.method(), req.headers()) {
                return e.into_response();
            }
            svc.sessions
                .token_of(&id)
                .and_then(|t| svc.tokens.check(&t))
        }
        None => None,
    };
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

fn router(svc: Arc<Service>, opts: &ServeOptions) -> Router {
    let max_body = opts.max_body;
    let body_timeout = opts.body_timeout;
    let api = Router::new()
        .route("/", get(page::processes))
        .route("/store", get(page::store_view))
        .route("/store/segments", get(page::segments_view))
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
        .route("/owners/{owner}/restore", post(admin::restore_owner))
        .route(
            "/owners/{owner}/items/{item}/restore",
            post(admin::restore_item),
        )
        .route(
            "/owners/{owner}/hold",
            put(admin::hold_owner).delete(admin::release_owner),
        )
        .route(
            "/owners/{owner}/items/{item}/hold",
            put(admin::hold_item).delete(admin::release_item),
        )
        .route("/seal", post(admin::seal))
        .route("/maintain", post(admin::maintain))
        .route(
            "/settings",
            get(admin::settings).put(admin::change_settings),
        )
        .route("/indexed", post(admin::mark_indexed))
        .route("/partitions/{id}/close", post(admin::close_partition))
        .route("/pending", get(api::pending))
        .route("/feed", get(api::feed))
        .route("/feed/ack", post(api::feed_ack))
        .route("/backup", get(api::backup_list))
        .route("/backup/{segment}/mark", post(api::backup_mark))
        .route(
            "/backup/mode",
            get(admin::backup_mode_status).post(admin::backup_mode),
        )
        .route("/jobs", get(api::jobs).post(processes::start))
        .route("/jobs/history", get(api::jobs_history))
        .route("/jobs/{run}", axum::routing::delete(processes::cancel))
        .route("/stat", get(api::stat))
        .route("/segments", get(api::segments))
        .route(
            "/partitions",
            get(api::partitions).post(admin::add_partition),
        )
        .route("/logout", post(page::logout))
        .route("/start", post(controls::start))
        .route("/backup-mode", post(controls::backup_mode))
        .route("/cancel", post(controls::cancel))
        .route("/metrics", get(monitor::metrics))
        .route_layer(middleware::from_fn_with_state(svc.clone(), require_token))
        .layer(DefaultBodyLimit::max(
            max_body.min(usize::MAX as u64) as usize
        ));
    let login = Router::new()
        .route("/session", post(page::session))
        .route("/healthz", get(monitor::healthz))
        .layer(DefaultBodyLimit::max(guard::MAX_LOGIN_BODY as usize));
    Router::new()
        .merge(login)
        .merge(api)
        // Every matched request is counted, refused ones included.
        .route_layer(middleware::from_fn_with_state(svc.clone(), monitor::count))
        .fallback(guard::no_route)
        .layer(middleware::from_fn(move |req, next| {
            guard::body_deadline(body_timeout, req, next)
        }))
        .layer(middleware::from_fn(move |req, next| {
            guard::limits(max_body, req, next)
        }))
        .layer(middleware::from_fn(guard::respond))
        .layer(middleware::from_fn(log_request))
        .with_state(svc)
}

/// Serve `store` on `listener` until `shutdown` resolves; then refuse new
/// writes, let in-flight requests finish, close idle connections at once
/// and any still open after [`SHUTDOWN_GRACE`], and return.
///
/// Each connection is HTTP/1.1 with a header read timeout; at most
/// `max_connections` are open at once.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    store: Arc<Store>,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let svc = Arc::new(Service {
        tokens: Tokens::new(store.dir())?,
        sessions: Sessions::new(opts.session_ttl),
        metrics: crate::metrics::MetricsLog::open(store.engine().log.vfs(), store.dir())?,
        store,
        draining: AtomicBool::new(false),
        requests: monitor::RequestMetrics::default(),
    });
    let sampler = tokio::spawn(sample_forever(svc.clone(), opts.sample_interval));
    let scheduler = tokio::spawn(processes::schedule_forever(
        svc.store.clone(),
        opts.schedule_tick,
    ));
    let app = router(svc.clone(), &opts);
    // The socket is the store owner's own: bodies as large as a record,
    // as the CLI accepts locally.
    let owner_opts = ServeOptions {
        max_body: crate::format::segment::MAX_RECORD_BYTES,
        ..opts.clone()
    };
    let local = local_socket(&svc.store, router(svc.clone(), &owner_opts))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::InvalidSetting(format!("listener: {e}")))?;
    tracing::info!("serving on http://{addr}");
    let slots = Arc::new(tokio::sync::Semaphore::new(opts.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut connections = tokio::task::JoinSet::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(opts.header_timeout)
        .max_buf_size(4 * guard::MAX_HEADER_BYTES);
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            // Reap finished connections so the set stays small.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            connections.spawn(refuse_busy(stream));
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let conn = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        connections.spawn(async move {
            let _ = conn.await;
            drop(slot);
        });
    }
    svc.draining.store(true, Ordering::SeqCst);
    drop(listener);
    scheduler.abort();
    local.abort();
    let _ = std::fs::remove_file(svc.store.dir().join(SOCKET_FILE));
    tracing::info!("shutting down: finishing requests in flight, cancelling processes");
    // Processes stop at their next safe point while connections drain.
    let cancelling = tokio::spawn(processes::cancel_running(svc.store.clone(), SHUTDOWN_GRACE));
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(SHUTDOWN_GRACE) => {
            tracing::info!("closing {} connections still open after {} s", connections.len(), SHUTDOWN_GRACE.as_secs());
        }
    }
    connections.shutdown().await;
    let _ = cancelling.await;
    sampler.abort();
    Ok(())
}

/// Serve `app` on the store's Unix socket (mode 0600), where requests need
/// no token: the CLI sends a store-changing command there when the service
/// holds the store's lock.
fn local_socket(store: &Store, app: Router) -> Result<tokio::task::JoinHandle<()>> {
    use std::os::unix::fs::PermissionsExt;
    let path = store.dir().join(SOCKET_FILE);
    // A socket left by a service that died: the store lock says none runs.
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)
        .map_err(|e| Error::io(&path, "listen on the service socket", e))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io(&path, "make the service socket private", e))?;
    let app = app.layer(axum::Extension(LocalSocket));
    Ok(tokio::spawn(async move {
        let http = hyper::server::conn::http1::Builder::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let service = hyper_util::service::TowerToHyperService::new(app.clone());
            let conn = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
    }))
}

/// One connection too many: a short 503 and the connection closed.
async fn refuse_busy(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    let body = r#"{"error":"busy","message":"too many connections; try again shortly"}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(answer.as_bytes())).await;
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
