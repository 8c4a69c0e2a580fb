use crate::ledger::Ledger;
use crate::session::{Recorder, SessionError, StartRequest};
use crate::stt::Stt;
use crate::upload::Storage;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

#[derive(Clone)]
pub struct ApiState {
    recorder: Arc<Recorder>,
    ledger: Arc<Ledger>,
    stt: Option<Arc<Stt>>,
    storage: Option<Arc<Storage>>,
    token_sha256: [u8; 32],
    fault_injection: bool,
}

impl ApiState {
    pub fn new(
        recorder: Arc<Recorder>,
        ledger: Arc<Ledger>,
        stt: Option<Arc<Stt>>,
        token: &str,
        fault_injection: bool,
    ) -> ApiState {
        ApiState {
            recorder,
            ledger,
            stt,
            storage: None,
            token_sha256: crate::integrity::sha256(token.as_bytes()),
            fault_injection,
        }
    }

    /// Adds central storage and disk state to `/status`.
    pub fn with_storage(mut self, storage: Arc<Storage>) -> ApiState {
        self.storage = Some(storage);
        self
    }
}

pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> ApiError {
        let status = match &e {
            SessionError::AlreadyRecording(_) | SessionError::NotRecording => StatusCode::CONFLICT,
            SessionError::Invalid(_) => StatusCode::BAD_REQUEST,
            SessionError::Ledger(_) | SessionError::Capture(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

/// Runs recorder work (GStreamer, SQLite) off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SessionError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("internal error: {e}")))?
        .map_err(ApiError::from)
}

pub fn router(state: ApiState) -> Router {
    let authed = Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/sessions", post(start))
        .route("/api/v1/sessions/current/stop", post(stop))
        .route("/api/v1/sessions/current/marks", post(mark))
        .route("/api/v1/debug/fail-device", post(fail_device))
        .route("/api/v1/debug/stall-ledger", post(stall_ledger))
        .route("/api/v1/captions/live", get(captions_live))
        .route("/api/v1/captions/search", get(captions_search))
        .route("/api/v1/sessions/{id}/transcribe", post(transcribe))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    // Health and metrics reveal nothing secret and are read by machines: no token.
    Router::new()
        .route("/api/v1/health", get(|| async { Json(json!({ "ok": true })) }))
        .route("/metrics", get(metrics))
        .merge(authed)
        .layer(middleware::from_fn_with_state(state.clone(), audit))
        .with_state(state)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Writes every request that changes something, and every refused one, to the audit chain
/// before the answer goes out (reads that succeed are not actions).
async fn audit(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let action = format!("{} {}", request.method(), request.uri().path());
    let mutating = request.method() != axum::http::Method::GET;
    let response = next.run(request).await;
    let status = response.status();
    let refused = status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN;
    if mutating || refused {
        let (actor, role) = if status == StatusCode::UNAUTHORIZED {
            ("anonymous", "none")
        } else {
            ("technician (API token)", "technician")
        };
        let ledger = state.ledger.clone();
        let code = status.as_u16();
        let write = tokio::task::spawn_blocking(move || ledger.call(move |w| w.audit(actor, role, &action, code)));
        // The ledger answers in milliseconds; if it does not, the answer still goes out and
        // the entry is written when it can be.
        match tokio::time::timeout(std::time::Duration::from_secs(2), write).await {
            Ok(Ok(Ok(_))) => {}
            Ok(Ok(Err(e))) => tracing::error!(error = %e, "could not write the audit entry"),
            Ok(Err(e)) => tracing::error!(error = %e, "audit writer failed"),
            Err(_) => tracing::error!("audit entry not written within 2 s; it is written when the ledger answers"),
        }
    }
    response
}

async fn require_token(State(state): State<ApiState>, headers: HeaderMap, request: Request, next: Next) -> Response {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| crate::integrity::sha256(t.trim().as_bytes()));
    match presented {
        Some(h) if constant_time_eq(&h, &state.token_sha256) => next.run(request).await,
        Some(_) => ApiError(StatusCode::UNAUTHORIZED, "wrong API token".into()).into_response(),
        None => {
            ApiError(StatusCode::UNAUTHORIZED, "missing API token (Authorization: Bearer ...)".into()).into_response()
        }
    }
}

async fn status(State(s): State<ApiState>) -> Result<Response, ApiError> {
    let r = s.recorder.clone();
    let status = blocking(move || Ok(r.status())).await?;
    let captions = match &s.stt {
        Some(stt) => serde_json::to_value(stt.status()).unwrap_or_default(),
        None => json!({ "state": "disabled", "reason": "stt.enabled = false in the configuration" }),
    };
    let mut body = serde_json::to_value(status).unwrap_or_default();
    body["captions"] = captions;
    if let Some(storage) = s.storage.clone() {
        let st = tokio::task::spawn_blocking(move || storage.status())
            .await
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("internal error: {e}")))?
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        body["storage"] = serde_json::to_value(st).unwrap_or_default();
    }
    Ok(Json(body).into_response())
}

async fn metrics(State(s): State<ApiState>) -> Result<Response, ApiError> {
    let snapshot = tokio::task::spawn_blocking(move || {
        let totals = s.ledger.reader()?.totals()?;
        let status = s.recorder.status();
        Ok::<_, crate::ledger::LedgerError>(super::metrics::Snapshot {
            totals,
            recording: status.recording,
            devices: status.session.map(|x| x.devices).unwrap_or_default(),
            captions: s.stt.as_ref().map(|stt| stt.status()),
            storage: s.storage.as_ref().map(|st| st.status()).transpose()?,
        })
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("internal error: {e}")))?
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let body = super::metrics::encode(&snapshot);
    Ok(([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body).into_response())
}

/// Live captions as server-sent events: `partial` and `final`, each a JSON caption.
async fn captions_live(State(s): State<ApiState>) -> Result<Response, ApiError> {
    use tokio_stream::StreamExt;
    let stt = s.stt.ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "captions are disabled".into()))?;
    let stream = tokio_stream::wrappers::BroadcastStream::new(stt.subscribe()).filter_map(|e| {
        let e = e.ok()?;
        Some(Ok::<_, std::convert::Infallible>(Event::default().event(e.kind).json_data(&e).ok()?))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

#[derive(Deserialize)]
struct SearchQuery {
    q: String,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    50
}

async fn captions_search(State(s): State<ApiState>, Query(q): Query<SearchQuery>) -> Result<Response, ApiError> {
    let ledger = s.ledger.clone();
    let hits = blocking(move || Ok(ledger.reader()?.search_captions(&q.q, q.limit.min(500))?)).await?;
    Ok(Json(hits).into_response())
}

async fn transcribe(State(s): State<ApiState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let stt = s
        .stt
        .clone()
        .ok_or_else(|| ApiError(StatusCode::CONFLICT, "captions are disabled (stt.enabled = false)".into()))?;
    let ledger = s.ledger.clone();
    let queued = blocking(move || {
        let session = ledger.reader()?.find_session(&id)?;
        stt.transcribe(session.id).map_err(SessionError::Invalid)
    })
    .await?;
    Ok(Json(json!({ "queued": queued })).into_response())
}

async fn start(State(s): State<ApiState>, Json(req): Json<StartRequest>) -> Result<Response, ApiError> {
    let r = s.recorder.clone();
    let info = blocking(move || r.start(&req)).await?;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

async fn stop(State(s): State<ApiState>) -> Result<Response, ApiError> {
    let r = s.recorder.clone();
    Ok(Json(blocking(move || r.stop()).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MarkRequest {
    text: String,
}

async fn mark(State(s): State<ApiState>, Json(req): Json<MarkRequest>) -> Result<Response, ApiError> {
    let r = s.recorder.clone();
    Ok((StatusCode::CREATED, Json(blocking(move || r.mark(&req.text)).await?)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FailDevice {
    device: String,
}

fn require_fault_injection(s: &ApiState) -> Result<(), ApiError> {
    if s.fault_injection {
        Ok(())
    } else {
        Err(ApiError(StatusCode::NOT_FOUND, "fault injection is disabled (debug.fault_injection = false)".into()))
    }
}

/// Hangs the ledger writer for good, as a deadlock would (tests of the watchdog only).
async fn stall_ledger(State(s): State<ApiState>) -> Result<Response, ApiError> {
    require_fault_injection(&s)?;
    let ledger = s.ledger.clone();
    std::thread::spawn(move || {
        let _ = ledger.call(|_| -> Result<(), crate::ledger::LedgerError> {
            loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
        });
    });
    tracing::error!("ledger writer stalled on purpose (fault injection)");
    Ok(Json(json!({ "stalled": true })).into_response())
}

async fn fail_device(State(s): State<ApiState>, Json(req): Json<FailDevice>) -> Result<Response, ApiError> {
    require_fault_injection(&s)?;
    let r = s.recorder.clone();
    blocking(move || r.inject_failure(&req.device)).await?;
    Ok(Json(json!({ "injected": true })).into_response())
}
