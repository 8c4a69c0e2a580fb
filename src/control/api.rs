//! The control API's state, errors, routes and the recording handlers. Who may call what
//! is in `access`; the panel's own routes in `panel`; the record's in `records`.

use super::openapi::{self, ApiDoc, ErrorBody, Refusal};
use super::{access, panel, records};
use crate::auth::{Auth, Principal};
use crate::config::LoadedConfig;
use crate::config::SourceSpec;
use crate::ledger::Ledger;
use crate::session::{MarkInfo, Recorder, SessionError, SessionInfo, SessionStatus, StartRequest, StopInfo};
use crate::stt::{Stt, SttStatus, TranscribeRequest, TranscriptionQueued};
use crate::upload::{Storage, StorageStatus};
use crate::witness::WitnessStatus;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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
    /// Refusals counted rather than audited one by one (see `access::audit`).
    pub(super) refusals: Arc<parking_lot::Mutex<access::RefusalCounter>>,
    /// Monotonic time origin of the API's own counters.
    pub(super) started: std::time::Instant,
    /// One export at a time (`records::export_zip`).
    pub(super) exports: Arc<tokio::sync::Semaphore>,
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
        ApiState {
            cfg,
            recorder,
            ledger,
            stt,
            storage: None,
            witness: None,
            auth,
            tls,
            refusals: Arc::default(),
            started: std::time::Instant::now(),
            exports: Arc::new(tokio::sync::Semaphore::new(1)),
        }
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
        (self.0, Json(ErrorBody { error: self.1 })).into_response()
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
            SessionError::Ledger(ledger) if ledger.is_missing_session() => StatusCode::NOT_FOUND,
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

/// Routes only technicians may call (configuration, people, diagnostics).
fn technician_routes() -> OpenApiRouter<ApiState> {
    let routes = OpenApiRouter::new()
        .routes(routes!(records::get_config, records::put_config))
        .routes(routes!(access::people))
        .routes(routes!(access::put_person, access::remove_person))
        .routes(routes!(records::audit_log));
    #[cfg(feature = "fault-injection")]
    let routes = routes.merge(super::debug::routes());
    routes
}

/// Routes anyone signed in may call (the panel's secretaries and technicians).
fn signed_in_routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(access::me))
        .routes(routes!(access::sign_out))
        .routes(routes!(status))
        .routes(routes!(panel::status_ws))
        .routes(routes!(panel::thumbnail))
        .routes(routes!(start, records::sessions))
        .routes(routes!(stop))
        .routes(routes!(mark))
        .routes(routes!(recess))
        .routes(routes!(resume))
        .routes(routes!(privacy_mute))
        .routes(routes!(hearing))
        .routes(routes!(broadcast_start))
        .routes(routes!(broadcast_stop))
        .routes(routes!(records::session))
        .routes(routes!(records::export_zip))
        .routes(routes!(transcribe))
        .routes(routes!(transcribe_all))
        .routes(routes!(captions_live))
        .routes(routes!(captions_search))
}

/// Routes that reveal nothing secret: health, metrics, and the sign-in screen's.
fn public_routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(access::secretary_names))
        .routes(routes!(access::sign_in))
        .routes(routes!(metrics))
}

/// Every documented route with the check of who may call it: the one list of the API's
/// routes, from which the OpenAPI document is derived.
fn routes(state: &ApiState) -> OpenApiRouter<ApiState> {
    let technician = technician_routes().route_layer(middleware::from_fn(access::technicians_only));
    let signed_in = signed_in_routes()
        .merge(technician)
        .route_layer(middleware::from_fn_with_state(state.clone(), access::authenticate));
    public_routes().merge(signed_in)
}

/// The API, the panel's files and the API's own document, with the audit and the JSON
/// error answers around all of it.
pub fn router(state: ApiState) -> Router {
    let (api, doc) = routes(&state).split_for_parts();
    api.route("/", get(panel::page))
        .route("/panel.js", get(panel::script))
        .route("/panel.css", get(panel::style))
        .route("/api/v1/openapi.json", get(openapi::document(&doc)))
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such endpoint (see /api/v1/openapi.json)".into()) })
        .layer(middleware::from_fn(json_rejections))
        .layer(middleware::from_fn_with_state(state.clone(), access::audit))
        .layer(axum::extract::DefaultBodyLimit::max(1024 * 1024))
        .with_state(state)
}

#[utoipa::path(get, path = "/api/v1/health", summary = "Liveness", security(()),
    responses((status = 200, description = "The daemon answers", body = Health), Refusal))]
async fn health() -> Json<Health> {
    Json(Health { ok: true })
}

/// `GET /api/v1/health`'s answer.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub ok: bool,
}

// The answers below are shared with the client (`control::client`), which reads them back.
// Answers that were once built with `json!` keep their fields in alphabetical order:
// `serde_json::Value` sorted them, and the bytes on the wire stay the same.

/// The status document: the recorder's state, with what the services that may be absent
/// (captions, storage, the witness) report added. The daemon serializes it, the
/// `courtbox status` command reads it back.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(as = Status)]
pub struct StatusReport {
    pub recording: bool,
    pub session: Option<SessionStatus>,
    /// The live broadcast: whether outputs are configured, live, the delay and rewind, the
    /// privacy mute, the camera on air and each output's state with its last error.
    pub broadcast: crate::broadcast::BroadcastStatus,
    pub captions: CaptionsReport,
    /// Every source of the hardware profile: name, kind (video or audio), device, role.
    pub sources: Vec<SourceSpec>,
    pub court: CourtRoom,
    /// Present only when central storage is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageStatus>,
    /// Present only when the witness runs: checkpoints and their timestamps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub witness: Option<WitnessStatus>,
}

/// Captions in the status: the speech service's status, or why there is no service.
/// Untagged: the service's `state` is never `disabled`, so the two cannot be confused.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CaptionsReport {
    Running(SttStatus),
    Disabled(CaptionsOff),
}

// Written by hand: the derive would say `oneOf`, but serde reads an untagged enum as
// "the first that fits", which is `anyOf`. Both parts are named components, so a client
// sees the speech service's fields, not a bare object.
impl utoipa::PartialSchema for CaptionsReport {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::Ref;
        use utoipa::openapi::schema::AnyOfBuilder;
        AnyOfBuilder::new()
            .item(Ref::from_schema_name(SttStatus::name()))
            .item(Ref::from_schema_name(CaptionsOff::name()))
            .description(Some("The speech service's status, or why there is no service"))
            .into()
    }
}

impl ToSchema for CaptionsReport {
    fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>) {
        schemas.push((SttStatus::name().into(), <SttStatus as utoipa::PartialSchema>::schema()));
        <SttStatus as ToSchema>::schemas(schemas);
        schemas.push((CaptionsOff::name().into(), <CaptionsOff as utoipa::PartialSchema>::schema()));
        <CaptionsOff as ToSchema>::schemas(schemas);
    }
}

/// `stt.enabled = false`: no speech service, only a state and the reason. Nothing else
/// may be in it, so that a service status that fails to read is an error, not "disabled".
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CaptionsOff {
    pub reason: String,
    pub state: CaptionsOffState,
}

impl CaptionsOff {
    /// What status says when the configuration turns captions off.
    pub fn by_configuration() -> CaptionsOff {
        CaptionsOff { reason: "stt.enabled = false in the configuration".into(), state: CaptionsOffState::Disabled }
    }
}

/// The one state of captions without a speech service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CaptionsOffState {
    Disabled,
}

impl CaptionsOffState {
    pub fn as_str(self) -> &'static str {
        match self {
            CaptionsOffState::Disabled => "disabled",
        }
    }
}

/// Where the box stands, from its configuration.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CourtRoom {
    pub court: String,
    pub room: String,
}

/// The status of the box, as typed parts.
pub(super) async fn status_report(s: &ApiState) -> Result<StatusReport, ApiError> {
    let r = s.recorder.clone();
    let status = blocking(move || Ok::<_, SessionError>(r.status())).await?;
    let captions = match &s.stt {
        Some(stt) => CaptionsReport::Running(stt.status()),
        None => CaptionsReport::Disabled(CaptionsOff::by_configuration()),
    };
    let mut report = StatusReport {
        recording: status.recording,
        session: status.session,
        broadcast: status.broadcast,
        captions,
        sources: s.cfg.profile.sources(),
        court: CourtRoom { court: s.cfg.config.court.clone(), room: s.cfg.config.room.clone() },
        storage: None,
        witness: None,
    };
    if let Some(storage) = s.storage.clone() {
        let st = tokio::task::spawn_blocking(move || storage.status())
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?;
        report.storage = Some(st);
    }
    if let Some(witness) = s.witness.clone() {
        let ledger = s.ledger.clone();
        let st = tokio::task::spawn_blocking(move || witness.status_with(&ledger))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?;
        report.witness = Some(st);
    }
    Ok(report)
}

/// Status of the box as one JSON document (also what the panel's WebSocket sends). It goes
/// through `serde_json::Value` so that every object's keys stay in the alphabetical order
/// the document has always had.
pub(super) async fn status_json(s: &ApiState) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(status_report(s).await?).map_err(ApiError::internal)
}

#[utoipa::path(get, path = "/api/v1/status", summary = "Recording state, timer, per-source health and levels, devices, captions, storage, alarms", security(("panelCookie" = [], "csrf" = []), ("technicianToken" = [])),
    responses((status = 200, description = "Status", body = StatusReport), Refusal))]
async fn status(State(s): State<ApiState>) -> Result<Response, ApiError> {
    Ok(Json(status_json(&s).await?).into_response())
}

#[utoipa::path(get, path = "/metrics", summary = "Prometheus / OpenMetrics", security(()),
    responses((status = 200, description = "OpenMetrics text", body = String, content_type = "application/openmetrics-text"), Refusal))]
async fn metrics(State(s): State<ApiState>) -> Result<Response, ApiError> {
    let snapshot = tokio::task::spawn_blocking(move || {
        let totals = s.ledger.reader()?.totals()?;
        let status = s.recorder.status();
        let (devices, health) = status.session.map(|x| (x.devices, x.health)).unwrap_or_default();
        Ok::<_, crate::ledger::LedgerError>(super::metrics::Snapshot {
            totals,
            recording: status.recording,
            devices,
            health,
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
#[utoipa::path(get, path = "/api/v1/captions/live", summary = "Server-sent events: partial and final captions", security(("panelCookie" = [], "csrf" = []), ("technicianToken" = [])),
    responses((status = 200, description = "Event stream", body = String, content_type = "text/event-stream"), Refusal))]
async fn captions_live(
    State(s): State<ApiState>,
    Extension(credential): Extension<crate::auth::Credential>,
) -> Result<Response, ApiError> {
    use futures::StreamExt;
    let stt = s.stt.ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "captions are disabled".into()))?;
    let stream = tokio_stream::wrappers::BroadcastStream::new(stt.subscribe())
        .filter_map(|e| {
            let event = e.ok().and_then(|e| Event::default().event(e.kind.as_str()).json_data(&e).ok());
            futures::future::ready(event.map(Ok::<_, std::convert::Infallible>))
        })
        // A listener who is removed, or whose panel session ends, stops receiving at once.
        .take_until(access::revoked(s.auth.clone(), credential));
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct SearchQuery {
    q: String,
    /// At most 500 hits are returned, whatever the limit.
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    50
}

#[utoipa::path(get, path = "/api/v1/captions/search", summary = "Full-text search of final captions", security(("panelCookie" = [], "csrf" = []), ("technicianToken" = [])), params(SearchQuery),
    responses((status = 200, description = "Hits", body = Vec<Object>), Refusal))]
async fn captions_search(State(s): State<ApiState>, Query(q): Query<SearchQuery>) -> Result<Response, ApiError> {
    let ledger = s.ledger.clone();
    let hits = blocking(move || ledger.reader()?.search_captions(&q.q, q.limit.min(500))).await?;
    Ok(Json(hits).into_response())
}

/// Which microphones to transcribe: only those in one language, or all.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TranscribeQuery {
    /// A whisper language code (kk, ru, en).
    pub language: Option<crate::integrity::Language>,
}

#[utoipa::path(post, path = "/api/v1/sessions/{id}/transcribe", summary = "Transcribe what a session has no captions for, with the installed model", security(("panelCookie" = [], "csrf" = []), ("technicianToken" = [])), params(("id" = String, Path, description = "Session id or a unique prefix", min_length = 1), TranscribeQuery),
    responses((status = 200, description = "Queued", body = TranscriptionQueued), Refusal))]
async fn transcribe(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Query<TranscribeQuery>,
) -> Result<Response, ApiError> {
    transcribe_missing(s, Some(id), q).await
}

#[utoipa::path(post, path = "/api/v1/captions/transcribe-missing", summary = "Transcribe what every session has no captions for, with the installed model", security(("panelCookie" = [], "csrf" = []), ("technicianToken" = [])), params(TranscribeQuery),
    responses((status = 200, description = "Queued", body = TranscriptionQueued), Refusal))]
async fn transcribe_all(State(s): State<ApiState>, Query(q): Query<TranscribeQuery>) -> Result<Response, ApiError> {
    transcribe_missing(s, None, q).await
}

async fn transcribe_missing(s: ApiState, id: Option<String>, q: TranscribeQuery) -> Result<Response, ApiError> {
    let stt = s
        .stt
        .clone()
        .ok_or_else(|| ApiError(StatusCode::CONFLICT, "captions are disabled (stt.enabled = false)".into()))?;
    let ledger = s.ledger.clone();
    let report = blocking(move || {
        let session = match id {
            Some(id) => Some(ledger.reader()?.find_session(&id)?.id),
            None => None,
        };
        let language = q.language.filter(|l| *l != crate::integrity::Language::Auto).map(|l| l.as_str().to_string());
        stt.transcribe(TranscribeRequest { session, language }).map_err(|e| SessionError::Invalid(e.to_string()))
    })
    .await?;
    Ok(Json(report).into_response())
}

#[utoipa::path(post, path = "/api/v1/sessions", summary = "Start recording a hearing", security(("panelCookie" = [], "csrf" = []), ("technicianToken" = [])), request_body = StartRequest,
    responses((status = 201, description = "Recording", body = SessionInfo), Refusal))]
async fn start(State(s): State<ApiState>, Json(req): Json<StartRequest>) -> Result<Response, ApiError> {
    let r = s.recorder.clone();
    let info = blocking(move || r.start(&req)).await?;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

#[utoipa::path(post, path = "/api/v1/sessions/current/stop", summary = "Stop and seal the recording session", security(("panelCookie" = [], "csrf" = []), ("technicianToken" = [])),
    responses((status = 200, description = "Stopped", body = StopInfo), Refusal))]
async fn stop(State(s): State<ApiState>) -> Result<Response, ApiError> {
    let r = s.recorder.clone();
    Ok(Json(blocking(move || r.stop()).await?).into_response())
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkRequest {
    #[schema(max_length = 2000)]
    pub text: String,
}

#[utoipa::path(post, path = "/api/v1/sessions/current/marks", summary = "A timestamped note on the record", security(("panelCookie" = [], "csrf" = []), ("technicianToken" = [])), request_body = MarkRequest,
    responses((status = 201, description = "Marked", body = MarkInfo), Refusal))]
async fn mark(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    Json(req): Json<MarkRequest>,
) -> Result<Response, ApiError> {
    let r = s.recorder.clone();
    Ok((StatusCode::CREATED, Json(blocking(move || r.mark(&req.text, &who.describe())).await?)).into_response())
}

#[utoipa::path(post, path = "/api/v1/sessions/current/recess", summary = "Pause the hearing (capture stops; a chain event)", security(("panelCookie" = [], "csrf" = []), ("technicianToken" = [])),
    responses((status = 200, description = "In recess", body = MarkInfo), Refusal))]
async fn recess(State(s): State<ApiState>, Extension(who): Extension<Principal>) -> Result<Response, ApiError> {
    let r = s.recorder.clone();
    Ok(Json(blocking(move || r.recess(&who.describe())).await?).into_response())
}

#[utoipa::path(post, path = "/api/v1/sessions/current/resume", summary = "Resume after a recess (a chain event and a new run)", security(("panelCookie" = [], "csrf" = []), ("technicianToken" = [])),
    responses((status = 200, description = "Recording again", body = SessionInfo), Refusal))]
async fn resume(State(s): State<ApiState>, Extension(who): Extension<Principal>) -> Result<Response, ApiError> {
    let r = s.recorder.clone();
    Ok(Json(blocking(move || r.resume(&who.describe())).await?).into_response())
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PrivacyMute {
    pub muted: bool,
}

#[utoipa::path(put, path = "/api/v1/sessions/current/privacy-mute", summary = "Switch the broadcast's privacy mute (a chain event; the record is never muted)", security(("panelCookie" = [], "csrf" = []), ("technicianToken" = [])), request_body = PrivacyMute,
    responses((status = 200, description = "Switched", body = MarkInfo), Refusal))]
async fn privacy_mute(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    Json(req): Json<PrivacyMute>,
) -> Result<Response, ApiError> {
    let r = s.recorder.clone();
    Ok(Json(blocking(move || r.set_privacy_mute(req.muted, &who.describe())).await?).into_response())
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HearingAccess {
    pub hearing: crate::integrity::Hearing,
}

/// Declares the hearing open or closed to the public; closing it ends any broadcast at once.
#[utoipa::path(put, path = "/api/v1/sessions/current/hearing", summary = "Declare the hearing open or closed to the public (a chain event); closing it ends any broadcast at once", security(("panelCookie" = [], "csrf" = []), ("technicianToken" = [])), request_body = HearingAccess,
    responses((status = 200, description = "Declared", body = MarkInfo), Refusal))]
async fn hearing(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    Json(req): Json<HearingAccess>,
) -> Result<Response, ApiError> {
    let r = s.recorder.clone();
    Ok(Json(blocking(move || r.set_hearing(req.hearing, &who.describe())).await?).into_response())
}

#[utoipa::path(post, path = "/api/v1/sessions/current/broadcast/start", summary = "Start the delayed live broadcast of an open hearing (a chain event); refused for a closed hearing, with the refusal in the chain too", security(("panelCookie" = [], "csrf" = []), ("technicianToken" = [])),
    responses((status = 201, description = "Broadcasting", body = MarkInfo), Refusal))]
async fn broadcast_start(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
) -> Result<Response, ApiError> {
    let r = s.recorder.clone();
    Ok((StatusCode::CREATED, Json(blocking(move || r.start_broadcast(&who.describe())).await?)).into_response())
}

#[utoipa::path(post, path = "/api/v1/sessions/current/broadcast/stop", summary = "Stop the live broadcast (a chain event); the recording goes on", security(("panelCookie" = [], "csrf" = []), ("technicianToken" = [])),
    responses((status = 200, description = "Stopped", body = MarkInfo), Refusal))]
async fn broadcast_stop(State(s): State<ApiState>, Extension(who): Extension<Principal>) -> Result<Response, ApiError> {
    let r = s.recorder.clone();
    Ok(Json(blocking(move || r.stop_broadcast(&who.describe())).await?).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use utoipa::openapi::path::Operation;
    use utoipa::openapi::{OpenApi as Document, RefOr};

    /// (method, path) of every operation a document describes.
    fn operations(doc: &Document) -> Vec<(String, String, Operation)> {
        let mut out = Vec::new();
        for (path, item) in &doc.paths.paths {
            let methods = [
                ("get", &item.get),
                ("put", &item.put),
                ("post", &item.post),
                ("delete", &item.delete),
                ("patch", &item.patch),
                ("head", &item.head),
            ];
            for (method, op) in methods {
                if let Some(op) = op {
                    out.push((method.to_string(), path.clone(), op.clone()));
                }
            }
        }
        out.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
        out
    }

    fn security_names(op: &Operation) -> Vec<Vec<String>> {
        let value = serde_json::to_value(&op.security).unwrap();
        let Some(list) = value.as_array() else { return Vec::new() };
        list.iter().map(|req| req.as_object().unwrap().keys().cloned().collect()).collect()
    }

    /// The routes the API had when its document was written by hand (issue 18): the
    /// derived document must describe exactly these, and nothing the router lacks.
    const ROUTES: [(&str, &str); 31] = [
        ("get", "/api/v1/audit"),
        ("get", "/api/v1/auth/me"),
        ("get", "/api/v1/auth/people"),
        ("post", "/api/v1/auth/sign-in"),
        ("post", "/api/v1/auth/sign-out"),
        ("get", "/api/v1/captions/live"),
        ("get", "/api/v1/captions/search"),
        ("get", "/api/v1/config"),
        ("put", "/api/v1/config"),
        ("get", "/api/v1/health"),
        ("get", "/api/v1/people"),
        ("delete", "/api/v1/people/{name}"),
        ("put", "/api/v1/people/{name}"),
        ("get", "/api/v1/sessions"),
        ("post", "/api/v1/sessions"),
        ("post", "/api/v1/sessions/current/broadcast/start"),
        ("post", "/api/v1/sessions/current/broadcast/stop"),
        ("put", "/api/v1/sessions/current/hearing"),
        ("post", "/api/v1/sessions/current/marks"),
        ("put", "/api/v1/sessions/current/privacy-mute"),
        ("post", "/api/v1/sessions/current/recess"),
        ("post", "/api/v1/sessions/current/resume"),
        ("post", "/api/v1/sessions/current/stop"),
        ("get", "/api/v1/sessions/{id}"),
        ("get", "/api/v1/sessions/{id}/export"),
        ("post", "/api/v1/sessions/{id}/transcribe"),
        ("post", "/api/v1/captions/transcribe-missing"),
        ("get", "/api/v1/status"),
        ("get", "/api/v1/status/ws"),
        ("get", "/api/v1/thumbnails/{source}"),
        ("get", "/metrics"),
    ];

    /// Every `$ref` of the served document names a schema it holds (schemathesis skipped
    /// the parameters of a reference that did not resolve).
    #[test]
    fn every_reference_of_the_document_resolves() {
        let doc = document_json();
        fn refs(v: &serde_json::Value, out: &mut Vec<String>) {
            match v {
                serde_json::Value::Object(m) => {
                    for (k, v) in m {
                        match (k.as_str(), v.as_str()) {
                            ("$ref", Some(r)) => out.push(r.to_string()),
                            _ => refs(v, out),
                        }
                    }
                }
                serde_json::Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(all.len() > 20, "{all:?}");
        for r in all {
            let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("{r}"));
            assert!(doc["components"]["schemas"][name].is_object(), "{r} does not resolve");
        }
    }

    #[test]
    fn the_document_lists_exactly_the_routes() {
        let doc = public_routes().merge(signed_in_routes()).merge(technician_routes()).into_openapi();
        let mut listed: Vec<(String, String)> = operations(&doc).into_iter().map(|(m, p, _)| (m, p)).collect();
        listed.sort();
        let mut expected: Vec<(String, String)> = ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
        if cfg!(feature = "fault-injection") {
            for path in ["/api/v1/debug/fail-device", "/api/v1/debug/stall-ledger"] {
                expected.push(("post".into(), path.into()));
            }
        }
        expected.sort();
        assert_eq!(listed, expected);
    }

    #[test]
    fn every_operation_documents_its_error_answer_and_who_may_call_it() {
        let groups = [
            (public_routes().into_openapi(), vec![vec![]]),
            (
                signed_in_routes().into_openapi(),
                vec![vec!["csrf".to_string(), "panelCookie".to_string()], vec!["technicianToken".to_string()]],
            ),
            (technician_routes().into_openapi(), vec![vec!["technicianToken".to_string()]]),
        ];
        for (doc, security) in groups {
            for (method, path, op) in operations(&doc) {
                let refusal = op.responses.responses.get("default");
                let Some(RefOr::T(refusal)) = refusal else { panic!("{method} {path}: no default (error) answer") };
                let json = serde_json::to_value(refusal).unwrap();
                let schema = &json["content"]["application/json"]["schema"];
                let is_error = schema["$ref"] == "#/components/schemas/Error" || schema["required"] == json!(["error"]);
                assert!(is_error, "{method} {path}: the default answer is not an Error: {schema}");
                assert!(op.summary.is_some(), "{method} {path}: no summary");
                let mut names = security_names(&op);
                for n in &mut names {
                    n.sort();
                }
                assert_eq!(names, security, "{method} {path}: security");
            }
        }
    }

    /// Writes the document where `COURTBOX_OPENAPI_OUT` says, to compare it by hand.
    #[test]
    fn the_document_can_be_written_out() {
        let doc = public_routes().merge(signed_in_routes()).merge(technician_routes()).into_openapi();
        if let Ok(out) = std::env::var("COURTBOX_OPENAPI_OUT") {
            std::fs::write(out, doc.to_pretty_json().unwrap()).unwrap();
        }
    }

    #[test]
    fn the_document_declares_the_security_schemes_and_the_error_schema() {
        let doc =
            serde_json::to_value(public_routes().merge(signed_in_routes()).merge(technician_routes()).into_openapi())
                .unwrap();
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(schemes["panelCookie"]["in"], "cookie");
        assert_eq!(schemes["panelCookie"]["name"], access::SESSION_COOKIE);
        assert_eq!(schemes["csrf"]["name"], "X-CSRF-Token");
        assert_eq!(schemes["technicianToken"]["scheme"], "bearer");
        for schema in ["Error", "StartRequest", "SessionInfo", "MarkInfo", "SessionSummary", "Status"] {
            assert!(doc["components"]["schemas"][schema].is_object(), "{schema} missing");
        }
    }

    /// Every answer that once was a `json!` object is a named schema the operation refers to.
    #[test]
    fn the_typed_answers_are_named_schemas() {
        let doc =
            serde_json::to_value(public_routes().merge(signed_in_routes()).merge(technician_routes()).into_openapi())
                .unwrap();
        let answers = [
            ("/api/v1/auth/me", "get", "200", "WhoAmI"),
            ("/api/v1/auth/sign-out", "post", "200", "SignedOut"),
            ("/api/v1/people/{name}", "put", "201", "PersonStored"),
            ("/api/v1/people/{name}", "delete", "200", "PersonRemoved"),
            ("/api/v1/sessions/{id}/transcribe", "post", "200", "TranscriptionQueued"),
            ("/api/v1/captions/transcribe-missing", "post", "200", "TranscriptionQueued"),
            ("/api/v1/sessions/{id}", "get", "200", "SessionDetail"),
            ("/api/v1/audit", "get", "200", "AuditLog"),
            ("/api/v1/config", "put", "200", "ConfigSaved"),
            ("/api/v1/status", "get", "200", "Status"),
        ];
        for (path, method, status, schema) in answers {
            let body = &doc["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"];
            assert_eq!(body["$ref"], format!("#/components/schemas/{schema}"), "{method} {path}");
            assert!(doc["components"]["schemas"][schema].is_object(), "{schema} missing");
        }
    }

    /// The whole document as JSON, every route included.
    fn document_json() -> serde_json::Value {
        serde_json::to_value(public_routes().merge(signed_in_routes()).merge(technician_routes()).into_openapi())
            .unwrap()
    }

    /// The named component a property refers to: directly, or beside `null` for an `Option`.
    fn referenced_component(property: &serde_json::Value) -> Option<String> {
        let direct = property["$ref"].as_str().map(str::to_string);
        let in_option = || {
            property["oneOf"]
                .as_array()?
                .iter()
                .find_map(|alternative| alternative["$ref"].as_str().map(str::to_string))
        };
        direct.or_else(in_option).and_then(|r| r.strip_prefix("#/components/schemas/").map(str::to_string))
    }

    /// The services' parts of the status are named components, so a client sees their fields.
    #[test]
    fn the_status_parts_are_named_components() {
        let doc = document_json();
        let schemas = &doc["components"]["schemas"];
        let properties = &schemas["Status"]["properties"];
        let expected = [
            ("captions", "CaptionsReport"),
            ("session", "SessionStatus"),
            ("storage", "StorageStatus"),
            ("witness", "WitnessStatus"),
        ];
        for (property, component) in expected {
            let named = referenced_component(&properties[property]);
            assert_eq!(named.as_deref(), Some(component), "Status.{property}: {}", properties[property]);
            assert!(
                schemas[component]["type"].is_string() || schemas[component]["anyOf"].is_array(),
                "{component} missing"
            );
        }
        let captions: Vec<&serde_json::Value> =
            schemas["CaptionsReport"]["anyOf"].as_array().unwrap().iter().map(|a| &a["$ref"]).collect();
        assert_eq!(captions, [&json!("#/components/schemas/SttStatus"), &json!("#/components/schemas/CaptionsOff")]);
        let named = [
            "SttStatus",
            "TrackStatus",
            "SttState",
            "StatsInner",
            "DeviceStatus",
            "DeviceState",
            "SourceHealth",
            "UploaderState",
            "UploaderPhase",
            "UploadBacklog",
            "DiskState",
            "DiskLevel",
            "Alarm",
            "AlarmKind",
            "TsaState",
            "Via",
            "SourceSpec",
            "SourceKind",
            "SpeakerRole",
        ];
        for component in named {
            assert!(schemas[component].is_object(), "{component} missing");
        }
    }

    /// A status with every optional part present, as a running daemon with storage, the
    /// witness, a broadcast and a session in progress would answer.
    fn full_status() -> StatusReport {
        use crate::config::{Role as Speaker, SourceKind};
        use crate::stt::{SttState, TrackStatus};
        use crate::witness::service::TsaState;
        let (broadcast, session, storage) = (full_broadcast(), full_session(), full_storage());
        let captions = SttStatus {
            state: SttState::Ready,
            reason: Some("r".into()),
            model: "small".into(),
            tracks: [("mic1".to_string(), TrackStatus { last_caption: Some("c".into()), ..TrackStatus::default() })]
                .into(),
            backlog: 1,
            finals: 2,
            last_error: Some("e".into()),
        };
        let tsa = TsaState::Unreachable { since: "w".into(), error: "e".into() };
        let witness = WitnessStatus {
            tsa,
            last_stamp_delay_s: Some(1.5),
            last_checkpoint_wall: Some("w".into()),
            ..WitnessStatus::default()
        };
        let sources = vec![
            SourceSpec { name: "cam1".into(), kind: SourceKind::Video, device: "cam1".into(), role: None },
            SourceSpec {
                name: "mic1".into(),
                kind: SourceKind::Audio,
                device: "usb".into(),
                role: Some(Speaker::Judge),
            },
        ];
        StatusReport {
            recording: true,
            session: Some(session),
            broadcast,
            captions: CaptionsReport::Running(captions),
            sources,
            court: CourtRoom { court: "c".into(), room: "r".into() },
            storage: Some(storage),
            witness: Some(witness),
        }
    }

    /// The broadcast of `full_status`: live, with one output.
    fn full_broadcast() -> crate::broadcast::BroadcastStatus {
        use crate::base::MediaTime;
        use crate::broadcast::{BroadcastStatus, OutputState, OutputStatus, PictureDecoding};
        use crate::config::OutputKind;
        let output = OutputStatus {
            name: "youtube".into(),
            kind: OutputKind::Rtmp,
            state: OutputState::Live,
            attempts: 1,
            last_error: Some("e".into()),
            since: "2025-11-23T12:13:20.123Z".into(),
            sent_bytes: 10,
        };
        BroadcastStatus {
            configured: true,
            live: true,
            since_media: Some(MediaTime(1)),
            delay_seconds: 30,
            rewind_seconds: 60,
            muted: false,
            camera: Some("cam1".into()),
            pictures: vec![PictureDecoding { camera: "cam1".into(), frames_decoded: 300, frames_skipped: 0 }],
            outputs: vec![output],
            last_error: Some("e".into()),
        }
    }

    /// The session of `full_status`: in recess, with a device that cannot start.
    fn full_session() -> SessionStatus {
        use crate::base::MediaTime;
        use crate::capture::{DeviceState, DeviceStatus, SourceHealth};
        use crate::session::{SessionPhase, StatsInner};
        let device = DeviceStatus {
            name: "cam1".into(),
            sources: vec!["cam1".into()],
            state: DeviceState::CannotStart,
            restarts: 2,
            last_error: Some("e".into()),
        };
        let health = SourceHealth {
            source: "mic1".into(),
            level_dbfs: Some(-20.0),
            mean_luma: Some(100.0),
            problem_seconds: Some(3),
            problem_since: Some("2025-11-23T12:13:20.123Z".into()),
            alarm: Some("silent".into()),
            ..SourceHealth::default()
        };
        let stats = StatsInner {
            segments: 1,
            bytes: 2,
            gaps: 0,
            last_media: [("cam1".to_string(), MediaTime(5))].into(),
            last_error: Some("e".into()),
        };
        SessionStatus {
            id: uuid::Uuid::nil(),
            state: SessionPhase::Recess,
            recess_since: Some(MediaTime(4)),
            privacy_muted: true,
            case: "A-1".into(),
            title: "t".into(),
            language: "kk".into(),
            hearing: "open".into(),
            started_wall: "2025-11-23T12:13:20.123Z".into(),
            run: 1,
            run_started_media: MediaTime(0),
            media_now: MediaTime(9),
            devices: vec![device],
            health: vec![health],
            stats,
        }
    }

    /// The storage of `full_status`: a failing store, a low disk and its alarm.
    fn full_storage() -> StorageStatus {
        use crate::ledger::{Alarm, AlarmKind, UploadBacklog};
        use crate::upload::{DiskLevel, DiskState, UploaderState};
        let alarm =
            Alarm { kind: AlarmKind::DiskLow, subject: "disk".into(), message: "m".into(), raised_wall: "w".into() };
        StorageStatus {
            store: "s3://bucket".into(),
            uploader: UploaderState { error: Some("e".into()), ..UploaderState::default() },
            backlog: UploadBacklog { oldest_wall: Some("w".into()), ..UploadBacklog::default() },
            oldest_age_s: Some(3),
            disk: Some(DiskState {
                level: DiskLevel::Low,
                free_bytes: 1,
                total_bytes: 2,
                evicted_files: 0,
                evicted_bytes: 0,
                video_paused: false,
            }),
            alarms: vec![alarm],
        }
    }

    /// Every top-level key of a real status answer is a property of the Status schema.
    #[test]
    fn the_status_schema_names_every_key_the_server_sends() {
        let doc = document_json();
        let properties = doc["components"]["schemas"]["Status"]["properties"].as_object().unwrap();
        let sent = serde_json::to_value(full_status()).unwrap();
        for key in sent.as_object().unwrap().keys() {
            assert!(properties.contains_key(key), "Status lacks {key}");
        }
    }

    /// The schema a `$ref` names, or the schema itself.
    fn resolved<'a>(doc: &'a serde_json::Value, schema: &'a serde_json::Value) -> &'a serde_json::Value {
        match schema["$ref"].as_str().and_then(|r| r.strip_prefix("#/components/schemas/")) {
            Some(name) => resolved(doc, &doc["components"]["schemas"][name]),
            None => schema,
        }
    }

    /// Where `value` has a key its schema does not name, or a string its enum lacks.
    fn undocumented(
        doc: &serde_json::Value,
        schema: &serde_json::Value,
        value: &serde_json::Value,
        at: &str,
    ) -> Vec<String> {
        let schema = resolved(doc, schema);
        if let Some(alternatives) = schema["oneOf"].as_array().or(schema["anyOf"].as_array()) {
            // The value must fit one alternative; report the one it fits best.
            let misses = alternatives.iter().map(|a| undocumented(doc, a, value, at));
            return misses.min_by_key(Vec::len).unwrap_or_default();
        }
        if let (Some(allowed), Some(text)) = (schema["enum"].as_array(), value.as_str())
            && !allowed.contains(&json!(text))
        {
            return vec![format!("{at}: {text:?} is not in {allowed:?}")];
        }
        if schema["type"] == "null" && !value.is_null() {
            return vec![format!("{at}: not null")];
        }
        let mut out = Vec::new();
        match value {
            serde_json::Value::Object(fields) => {
                for (key, field) in fields {
                    let here = format!("{at}.{key}");
                    match schema["properties"]
                        .get(key)
                        .or(schema["additionalProperties"].as_object().map(|_| &schema["additionalProperties"]))
                    {
                        Some(property) => out.extend(undocumented(doc, property, field, &here)),
                        None => out.push(format!("{here}: not in the schema")),
                    }
                }
            }
            serde_json::Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    out.extend(undocumented(doc, &schema["items"], item, &format!("{at}[{i}]")));
                }
            }
            _ => {}
        }
        out
    }

    /// Every key and enum value of a real status answer, at every depth, is in its schema:
    /// the derived schemas describe what serde writes (renames, tags, skipped fields).
    #[test]
    fn the_status_schema_describes_the_whole_answer() {
        let doc = document_json();
        let status = &doc["components"]["schemas"]["Status"];
        let mut answers = vec![serde_json::to_value(full_status()).unwrap()];
        let mut quiet = full_status();
        quiet.captions = CaptionsReport::Disabled(CaptionsOff::by_configuration());
        quiet.session = None;
        quiet.storage = None;
        quiet.witness = Some(WitnessStatus::default());
        answers.push(serde_json::to_value(quiet).unwrap());
        for answer in answers {
            let misses = undocumented(&doc, status, &answer, "Status");
            assert!(misses.is_empty(), "{misses:#?}");
        }
        // The check itself finds an unknown key and a value outside an enum.
        let mut wrong = serde_json::to_value(full_status()).unwrap();
        wrong["session"]["devices"][0]["state"] = json!("cannot-start");
        wrong["storage"]["extra"] = json!(1);
        assert_eq!(undocumented(&doc, status, &wrong, "Status").len(), 2);
        let via = serde_json::to_value(crate::auth::Via::LocalSocket { uid: 0 }).unwrap();
        assert_eq!(
            undocumented(&doc, &json!({ "$ref": "#/components/schemas/Via" }), &via, "Via"),
            Vec::<String>::new()
        );
    }

    /// The typed answers are the bytes the `json!` objects they replaced were.
    #[test]
    fn the_typed_answers_send_the_bytes_they_always_did() {
        use crate::auth::{Role, Via};
        fn same(typed: impl Serialize, old: serde_json::Value) {
            assert_eq!(serde_json::to_string(&typed).unwrap(), old.to_string());
        }
        let who = access::WhoAmI {
            csrf: None,
            name: "root".into(),
            role: Role::Technician,
            via: Via::LocalSocket { uid: 0 },
        };
        same(
            who,
            json!({ "name": "root", "role": Role::Technician, "via": Via::LocalSocket { uid: 0 }, "csrf": null }),
        );
        same(access::SignedOut { signed_out: true }, json!({ "signed_out": true }));
        let secretary = access::PersonStored { name: "Dana".into(), note: None, role: Role::Secretary, token: None };
        same(secretary, json!({ "name": "Dana", "role": "secretary" }));
        let technician = access::PersonStored {
            name: "Ty".into(),
            note: Some("shown once; only its hash is kept".into()),
            role: Role::Technician,
            token: Some("t0k".into()),
        };
        same(
            technician,
            json!({ "name": "Ty", "role": "technician", "token": "t0k", "note": "shown once; only its hash is kept" }),
        );
        same(access::PersonRemoved { removed: "Dana".into() }, json!({ "removed": "Dana" }));
        same(
            TranscriptionQueued { queued: 3, sessions: 1, left: vec!["why".into()] },
            json!({ "queued": 3, "sessions": 1, "left": ["why"] }),
        );
        same(
            records::AuditLog { entries: vec![json!({ "b": 1, "a": 2 })], faults: vec!["f".into()] },
            json!({ "entries": [{ "a": 2, "b": 1 }], "faults": ["f"] }),
        );
        let saved = records::ConfigSaved { applies: "at the next restart of the service".into(), saved: true };
        same(saved, json!({ "saved": true, "applies": "at the next restart of the service" }));
        same(CourtRoom { court: "c".into(), room: "r".into() }, json!({ "court": "c", "room": "r" }));
        same(
            CaptionsOff::by_configuration(),
            json!({ "state": "disabled", "reason": "stt.enabled = false in the configuration" }),
        );
    }
}
