//! The control API's state, errors, routes and the recording handlers. Who may call what
//! is in `access`; the panel's own routes in `panel`; the record's in `records`.

use super::{access, panel, records};
use crate::auth::{Auth, Principal};
use crate::config::LoadedConfig;
use crate::ledger::Ledger;
use crate::session::{Recorder, SessionError, StartRequest};
use crate::stt::Stt;
use crate::upload::Storage;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

#[derive(Clone)]
pub struct ApiState {
    pub(super) cfg: Arc<LoadedConfig>,
    pub(super) recorder: Arc<Recorder>,
    pub(super) ledger: Arc<Ledger>,
    pub(super) stt: Option<Arc<Stt>>,
    pub(super) storage: Option<Arc<Storage>>,
    pub(super) witness: Option<Arc<crate::witness::Witness>>,
    pub(super) auth: Arc<Auth>,
    /// Cookies are marked `Secure` when the API speaks HTTPS.
    pub(super) tls: bool,
}

impl ApiState {
    pub fn new(
        cfg: Arc<LoadedConfig>,
        recorder: Arc<Recorder>,
        ledger: Arc<Ledger>,
        stt: Option<Arc<Stt>>,
        auth: Arc<Auth>,
    ) -> ApiState {
        let tls = cfg.tls_paths().is_some();
        ApiState { cfg, recorder, ledger, stt, storage: None, witness: None, auth, tls }
    }

    /// Adds the witness (checkpoints, TSA) to `/status`.
    pub fn with_witness(mut self, witness: Arc<crate::witness::Witness>) -> ApiState {
        self.witness = Some(witness);
        self
    }

    /// Adds central storage and disk state to `/status`.
    pub fn with_storage(mut self, storage: Arc<Storage>) -> ApiState {
        self.storage = Some(storage);
        self
    }
}

/// An answer other than success: its status and a message a person can act on.
pub struct ApiError(pub StatusCode, pub String);

impl ApiError {
    pub fn internal(e: impl std::fmt::Display) -> ApiError {
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("internal error: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> ApiError {
        let status = match &e {
            SessionError::AlreadyRecording(_)
            | SessionError::NotRecording
            | SessionError::InRecess
            | SessionError::NotInRecess
            | SessionError::Conflict(_)
            | SessionError::BroadcastRefused(_) => StatusCode::CONFLICT,
            SessionError::BroadcastFailed(_) => StatusCode::SERVICE_UNAVAILABLE,
            SessionError::Invalid(_) => StatusCode::BAD_REQUEST,
            SessionError::Ledger(crate::ledger::LedgerError::Invalid(m)) if m.contains("no session") => {
                StatusCode::NOT_FOUND
            }
            SessionError::Ledger(_) | SessionError::Capture(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

impl From<crate::ledger::LedgerError> for ApiError {
    fn from(e: crate::ledger::LedgerError) -> ApiError {
        SessionError::from(e).into()
    }
}

/// Runs blocking work (GStreamer, SQLite, Argon2) off the async runtime.
pub(super) async fn blocking<T, E>(f: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, ApiError>
where
    T: Send + 'static,
    E: Send + 'static,
    ApiError: From<E>,
{
    tokio::task::spawn_blocking(f).await.map_err(ApiError::internal)?.map_err(ApiError::from)
}

/// Rejections of the extractors (malformed JSON, wrong content type, bad path or query)
/// as the API's own `{"error": ...}` answers.
pub(super) async fn json_rejections(request: axum::extract::Request, next: middleware::Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 16 * 1024).await.unwrap_or_default();
    let mut message = String::from_utf8_lossy(&text).trim().to_string();
    if message.is_empty() {
        message = status.canonical_reason().unwrap_or("error").to_string();
    }
    let mut out = ApiError(parts.status, message).into_response();
    for (k, v) in parts.headers.iter().filter(|(k, _)| *k == header::ALLOW || *k == header::RETRY_AFTER) {
        out.headers_mut().insert(k.clone(), v.clone());
    }
    *out.extensions_mut() = parts.extensions;
    out
}

pub fn router(state: ApiState) -> Router {
    let technician = Router::new()
        .route("/api/v1/config", get(records::get_config).put(records::put_config))
        .route("/api/v1/people", get(access::people))
        .route("/api/v1/people/{name}", put(access::put_person).delete(access::remove_person))
        .route("/api/v1/audit", get(records::audit_log))
        .route("/api/v1/debug/fail-device", post(fail_device))
        .route("/api/v1/debug/stall-ledger", post(stall_ledger))
        .route_layer(middleware::from_fn(access::technicians_only));
    let signed_in = Router::new()
        .route("/api/v1/auth/me", get(access::me))
        .route("/api/v1/auth/sign-out", post(access::sign_out))
        .route("/api/v1/status", get(status))
        .route("/api/v1/status/ws", get(panel::status_ws))
        .route("/api/v1/thumbnails/{source}", get(panel::thumbnail))
        .route("/api/v1/sessions", post(start).get(records::sessions))
        .route("/api/v1/sessions/current/stop", post(stop))
        .route("/api/v1/sessions/current/marks", post(mark))
        .route("/api/v1/sessions/current/recess", post(recess))
        .route("/api/v1/sessions/current/resume", post(resume))
        .route("/api/v1/sessions/current/privacy-mute", put(privacy_mute))
        .route("/api/v1/sessions/current/hearing", put(hearing))
        .route("/api/v1/sessions/current/broadcast/start", post(broadcast_start))
        .route("/api/v1/sessions/current/broadcast/stop", post(broadcast_stop))
        .route("/api/v1/sessions/{id}", get(records::session))
        .route("/api/v1/sessions/{id}/export", get(records::export_zip))
        .route("/api/v1/sessions/{id}/transcribe", post(transcribe))
        .route("/api/v1/captions/live", get(captions_live))
        .route("/api/v1/captions/search", get(captions_search))
        .merge(technician)
        .route_layer(middleware::from_fn_with_state(state.clone(), access::authenticate));
    // The panel's files, health, metrics and the API document reveal nothing secret.
    Router::new()
        .route("/", get(panel::page))
        .route("/panel.js", get(panel::script))
        .route("/panel.css", get(panel::style))
        .route("/api/v1/openapi.json", get(super::openapi::document))
        .route("/api/v1/health", get(|| async { Json(json!({ "ok": true })) }))
        .route("/api/v1/auth/people", get(access::secretary_names))
        .route("/api/v1/auth/sign-in", post(access::sign_in))
        .route("/metrics", get(metrics))
        .merge(signed_in)
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such endpoint (see /api/v1/openapi.json)".into()) })
        .layer(middleware::from_fn(json_rejections))
        .layer(middleware::from_fn_with_state(state.clone(), access::audit))
        .layer(axum::extract::DefaultBodyLimit::max(1024 * 1024))
        .with_state(state)
}

/// Status of the box as one JSON document (also what the panel's WebSocket sends).
pub(super) async fn status_json(s: &ApiState) -> Result<serde_json::Value, ApiError> {
    let r = s.recorder.clone();
    let status = blocking(move || Ok::<_, SessionError>(r.status())).await?;
    let captions = match &s.stt {
        Some(stt) => serde_json::to_value(stt.status()).unwrap_or_default(),
        None => json!({ "state": "disabled", "reason": "stt.enabled = false in the configuration" }),
    };
    let mut body = serde_json::to_value(status).unwrap_or_default();
    body["captions"] = captions;
    body["sources"] = serde_json::to_value(s.cfg.profile.sources()).unwrap_or_default();
    body["court"] = json!({ "court": s.cfg.config.court, "room": s.cfg.config.room });
    if let Some(storage) = s.storage.clone() {
        let st = tokio::task::spawn_blocking(move || storage.status())
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?;
        body["storage"] = serde_json::to_value(st).unwrap_or_default();
    }
    if let Some(witness) = s.witness.clone() {
        let ledger = s.ledger.clone();
        let st = tokio::task::spawn_blocking(move || witness.status_with(&ledger))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?;
        body["witness"] = serde_json::to_value(st).unwrap_or_default();
    }
    Ok(body)
}

async fn status(State(s): State<ApiState>) -> Result<Response, ApiError> {
    Ok(Json(status_json(&s).await?).into_response())
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
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
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
#[serde(deny_unknown_fields)]
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
    let hits = blocking(move || ledger.reader()?.search_captions(&q.q, q.limit.min(500))).await?;
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

async fn mark(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    Json(req): Json<MarkRequest>,
) -> Result<Response, ApiError> {
    let r = s.recorder.clone();
    Ok((StatusCode::CREATED, Json(blocking(move || r.mark(&req.text, &who.describe())).await?)).into_response())
}

async fn recess(State(s): State<ApiState>, Extension(who): Extension<Principal>) -> Result<Response, ApiError> {
    let r = s.recorder.clone();
    Ok(Json(blocking(move || r.recess(&who.describe())).await?).into_response())
}

async fn resume(State(s): State<ApiState>, Extension(who): Extension<Principal>) -> Result<Response, ApiError> {
    let r = s.recorder.clone();
    Ok(Json(blocking(move || r.resume(&who.describe())).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrivacyMute {
    muted: bool,
}

async fn privacy_mute(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    Json(req): Json<PrivacyMute>,
) -> Result<Response, ApiError> {
    let r = s.recorder.clone();
    Ok(Json(blocking(move || r.set_privacy_mute(req.muted, &who.describe())).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HearingAccess {
    hearing: crate::integrity::Hearing,
}

/// Declares the hearing open or closed to the public; closing it ends any broadcast at once.
async fn hearing(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    Json(req): Json<HearingAccess>,
) -> Result<Response, ApiError> {
    let r = s.recorder.clone();
    Ok(Json(blocking(move || r.set_hearing(req.hearing, &who.describe())).await?).into_response())
}

async fn broadcast_start(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
) -> Result<Response, ApiError> {
    let r = s.recorder.clone();
    Ok((StatusCode::CREATED, Json(blocking(move || r.start_broadcast(&who.describe())).await?)).into_response())
}

async fn broadcast_stop(State(s): State<ApiState>, Extension(who): Extension<Principal>) -> Result<Response, ApiError> {
    let r = s.recorder.clone();
    Ok(Json(blocking(move || r.stop_broadcast(&who.describe())).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FailDevice {
    device: String,
}

fn require_fault_injection(s: &ApiState) -> Result<(), ApiError> {
    if s.cfg.config.debug.fault_injection {
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
