//! The record as the API shows it: sessions and their events, an export as a zip, the
//! audit chain, and the box's configuration (technicians only).

use super::api::{ApiError, ApiState, blocking};
use super::openapi::{Binary, ErrorBody, Refusal};
use crate::base::WallTime;
use crate::integrity::Entry;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::io::Write;
use utoipa::ToSchema;

// The answers below are shared with the client (`control::client`). Answers that were once
// built with `json!` keep their fields in alphabetical order: `serde_json::Value` sorted
// them, and the bytes on the wire stay the same.

/// A session as the list of sessions shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SessionSummary {
    #[schema(value_type = String)]
    pub id: uuid::Uuid,
    pub case: String,
    pub title: String,
    pub language: String,
    pub hearing: String,
    pub state: String,
    pub started: String,
    pub stopped: Option<String>,
}

/// `GET /api/v1/sessions/{id}`'s answer: the session, how many records, segments and
/// caption lines its chain holds, and its other events.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SessionDetail {
    /// Caption lines on the record.
    pub captions: usize,
    /// Every record but segments, captions and the session's start, in chain order.
    pub events: Vec<SessionEvent>,
    pub records: usize,
    pub segments: usize,
    pub session: SessionSummary,
}

/// One event of a session's chain: its index, when it was written, and what it states.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SessionEvent {
    /// The chain entry, tagged by `kind` (mark, recess, resume, gap, …).
    #[schema(value_type = Object)]
    pub entry: Entry,
    pub index: u64,
    #[schema(value_type = String)]
    pub wall: WallTime,
}

/// `GET /api/v1/audit`'s answer: the audit chain's entries as signed, and what its check
/// found wrong (empty when the chain verifies).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditLog {
    /// Each entry's signed body, as written (who, role, action, status, time, links).
    #[schema(value_type = Vec<Object>)]
    pub entries: Vec<serde_json::Value>,
    pub faults: Vec<String>,
}

/// `PUT /api/v1/config`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConfigSaved {
    /// When the new configuration takes effect.
    pub applies: String,
    pub saved: bool,
}

fn summary(s: crate::ledger::SessionRow) -> SessionSummary {
    SessionSummary {
        id: s.id,
        case: s.case_number,
        title: s.title,
        language: s.language,
        hearing: s.hearing,
        state: s.state.as_str().into(),
        started: s.started_wall,
        stopped: s.stopped_wall,
    }
}

/// `GET /api/v1/sessions`: every session, newest first.
#[utoipa::path(get, path = "/api/v1/sessions", summary = "Every session, newest first", security(("panelCookie" = [], "csrf" = []), ("technicianToken" = [])),
    responses((status = 200, description = "Sessions", body = Vec<SessionSummary>), Refusal))]
pub async fn sessions(State(s): State<ApiState>) -> Result<Response, ApiError> {
    let ledger = s.ledger.clone();
    let mut all = blocking(move || ledger.reader()?.sessions()).await?;
    all.sort_by(|a, b| b.started_wall.cmp(&a.started_wall));
    Ok(Json(all.into_iter().map(summary).collect::<Vec<_>>()).into_response())
}

/// `GET /api/v1/sessions/{id}`: a session and its events (everything but segments and
/// captions, which are counted).
#[utoipa::path(get, path = "/api/v1/sessions/{id}", summary = "A session and its events (marks, recesses, mutes, gaps, runs)", security(("panelCookie" = [], "csrf" = []), ("technicianToken" = [])), params(("id" = String, Path, description = "Session id or a unique prefix", min_length = 1)),
    responses((status = 200, description = "Session", body = SessionDetail), Refusal))]
pub async fn session(State(s): State<ApiState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let ledger = s.ledger.clone();
    let (row, bodies) = blocking(move || {
        let reader = ledger.reader()?;
        let row = reader.find_session(&id)?;
        let bodies = reader.record_bodies(row.id)?;
        Ok::<_, crate::ledger::LedgerError>((row, bodies))
    })
    .await?;
    let segments = bodies.iter().filter(|b| matches!(b.entry, Entry::Segment { .. })).count();
    let captions: usize =
        bodies.iter().map(|b| if let Entry::Captions { items, .. } = &b.entry { items.len() } else { 0 }).sum();
    let records = bodies.len();
    let events = bodies
        .into_iter()
        .filter(|b| !matches!(b.entry, Entry::Segment { .. } | Entry::Captions { .. } | Entry::SessionStart { .. }))
        .map(|b| SessionEvent { entry: b.entry, index: b.index, wall: b.wall })
        .collect();
    let detail = SessionDetail { captions, events, records, segments, session: summary(row) };
    // Through `serde_json::Value`, as the answer always went: the nested objects' keys stay
    // sorted and the entries' numbers are written as they were.
    Ok(Json(serde_json::to_value(detail).map_err(ApiError::internal)?).into_response())
}

/// `GET /api/v1/sessions/{id}/export`: the session as `courtbox export` writes it, without
/// the playable files, zipped (stored, not compressed: the media is compressed already) and
/// streamed as it is made: the media straight from the spool, nothing copied to disk, so an
/// export cannot fill the disk the recording needs. One export runs at a time (429 for the
/// rest): each reads a whole session from the disk the recording writes to.
#[utoipa::path(get, path = "/api/v1/sessions/{id}/export", summary = "The session as a zip that `courtbox verify` accepts (one export at a time)", security(("panelCookie" = [], "csrf" = []), ("technicianToken" = [])), params(("id" = String, Path, description = "Session id or a unique prefix", min_length = 1)),
    responses((status = 200, description = "Zip", body = Binary, content_type = "application/zip"),
        (status = 429, description = "Another export is running; see Retry-After", body = ErrorBody), Refusal))]
pub async fn export_zip(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    axum::Extension(credential): axum::Extension<crate::auth::Credential>,
) -> Result<Response, ApiError> {
    let Ok(permit) = s.exports.clone().try_acquire_owned() else {
        let mut r = ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            "another export is being downloaded; exports run one at a time, try again when it has finished".into(),
        )
        .into_response();
        r.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(30));
        return Ok(r);
    };
    let (ledger, data_dir, key_path) = (s.ledger.clone(), s.cfg.data_dir.clone(), s.cfg.public_key_path());
    // Everything that can be refused is refused before the answer begins: afterwards an error
    // can only cut the download short (and a zip cut short does not open).
    let (reader, row, public) = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let reader = ledger.reader().map_err(ApiError::internal)?;
        let row = reader.find_session(&id).map_err(|e| ApiError(StatusCode::NOT_FOUND, e.to_string()))?;
        let public = crate::integrity::PublicKey::read(&key_path).map_err(ApiError::internal)?;
        let spool = data_dir.join("spool").join(row.id.to_string());
        for segment in reader.segments(row.id).map_err(ApiError::internal)? {
            if !spool.join(&segment.file).exists() {
                let e = crate::export::ExportError::MissingLocal { file: segment.file, path: spool.clone() };
                return Err(ApiError(StatusCode::CONFLICT, e.to_string()));
            }
        }
        Ok((reader, row, public))
    })
    .await
    .map_err(ApiError::internal)??;
    let case: String = row.case_number.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let name = format!("courtbox-{case}-{}.zip", &row.id.to_string()[..8]);
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    let (data_dir, auth) = (s.cfg.data_dir.clone(), s.auth.clone());
    tokio::task::spawn_blocking(move || {
        let _one_at_a_time = permit;
        let runtime = tokio::runtime::Handle::current();
        let writer = ChannelWriter { tx: tx.clone(), buffer: Vec::new(), runtime, auth, credential };
        let mut zip = zip::ZipWriter::new_stream(writer);
        let made =
            crate::export::export_record(&reader, &data_dir, &public, &row.id.to_string(), &mut ZipSink(&mut zip))
                .map_err(std::io::Error::other)
                .and_then(|_| zip.finish().map_err(std::io::Error::other))
                .and_then(|mut w| w.flush());
        if let Err(e) = made {
            // The client sees the download break off; a client that went away ends it too.
            if !matches!(e.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::TimedOut) {
                tracing::error!(session = %row.id, error = %e, "export cut short");
                let _ = tx.blocking_send(Err(e));
            }
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
        ],
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
        .into_response())
}

/// An export into a zip, entry by entry.
struct ZipSink<'a, W: Write>(&'a mut zip::ZipWriter<zip::write::StreamWriter<W>>);

fn stored() -> zip::write::SimpleFileOptions {
    zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored).large_file(true)
}

impl<W: Write> crate::export::ExportSink for ZipSink<'_, W> {
    fn put(&mut self, path: &str, bytes: &[u8]) -> std::io::Result<()> {
        self.0.start_file(path, stored()).map_err(std::io::Error::other)?;
        self.0.write_all(bytes)
    }
    fn copy(&mut self, path: &str, from: &std::path::Path) -> std::io::Result<u64> {
        self.0.start_file(path, stored()).map_err(std::io::Error::other)?;
        std::io::copy(&mut std::fs::File::open(from)?, self.0)
    }
}

/// The zip's bytes, in 256 KiB pieces, to the answer's body; a client that went away is a
/// broken pipe, and one that stops reading for `STALLED_CLIENT` a timeout: either ends the
/// export, and frees it for the next. So does its downloader being removed or signed out.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
    buffer: Vec<u8>,
    runtime: tokio::runtime::Handle,
    auth: std::sync::Arc<crate::auth::Auth>,
    credential: crate::auth::Credential,
}

const PIECE: usize = 256 * 1024;
const STALLED_CLIENT: std::time::Duration = std::time::Duration::from_secs(30);

impl Write for ChannelWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= PIECE {
            self.flush()?;
        }
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        if !self.auth.is_current(&self.credential) {
            return Err(std::io::Error::new(std::io::ErrorKind::PermissionDenied, "the downloader was signed out"));
        }
        let piece = Bytes::from(std::mem::take(&mut self.buffer));
        match self.runtime.block_on(tokio::time::timeout(STALLED_CLIENT, self.tx.send(Ok(piece)))) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe)),
            Err(_) => Err(std::io::Error::from(std::io::ErrorKind::TimedOut)),
        }
    }
}

/// `GET /api/v1/audit`: the audit chain, newest last, with the verdict of its check.
#[utoipa::path(get, path = "/api/v1/audit", summary = "The audit chain and the verdict of its check (technicians)", security(("technicianToken" = [])),
    responses((status = 200, description = "Audit chain", body = AuditLog), Refusal))]
pub async fn audit_log(State(s): State<ApiState>) -> Result<Response, ApiError> {
    let (ledger, key_path) = (s.ledger.clone(), s.cfg.public_key_path());
    let (entries, faults) = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let entries = ledger.reader().map_err(ApiError::internal)?.audit_entries().map_err(ApiError::internal)?;
        let public = crate::integrity::PublicKey::read(&key_path).map_err(ApiError::internal)?;
        let faults = crate::integrity::verify_audit(&entries, &public);
        let bodies: Vec<serde_json::Value> =
            entries.iter().filter_map(|(body, _)| serde_json::from_slice(body).ok()).collect();
        Ok((bodies, faults))
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(Json(AuditLog { entries, faults }).into_response())
}

/// `GET /api/v1/config`: the configuration file as written.
#[utoipa::path(get, path = "/api/v1/config", summary = "The configuration file (technicians)", security(("technicianToken" = [])),
    responses((status = 200, description = "TOML", body = String, content_type = "application/toml"), Refusal))]
pub async fn get_config(State(s): State<ApiState>) -> Result<Response, ApiError> {
    let text = tokio::fs::read_to_string(&s.cfg.path).await.map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, "application/toml; charset=utf-8")], text).into_response())
}

/// `PUT /api/v1/config`: a new configuration file, checked exactly as at start-up and
/// written atomically; it applies at the next restart of the service. Its `hw_profile` must
/// lie in the running configuration's profile folders (else 400, the file not opened), and
/// errors in the profile name file, line and column, never its content (422).
#[utoipa::path(put, path = "/api/v1/config", summary = "Replace the configuration file; checked as at start-up, applies at the next restart (technicians)", security(("technicianToken" = [])), request_body(content = String, content_type = "text/plain"),
    responses((status = 200, description = "Saved", body = ConfigSaved), Refusal))]
pub async fn put_config(State(s): State<ApiState>, body: String) -> Result<Response, ApiError> {
    let path = s.cfg.path.clone();
    // The profile folders stay those of the running configuration: the new one may name a
    // profile in them, never add a folder (or it could have the box read any file).
    let running_dirs = s.cfg.profile_dirs.clone();
    let outcome = tokio::task::spawn_blocking(move || -> Result<(), ApiError> {
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
        let candidate = dir.join(format!(".courtbox-candidate-{}.toml", uuid::Uuid::new_v4()));
        std::fs::write(&candidate, &body).map_err(ApiError::internal)?;
        let checked = crate::config::load_with(&candidate, crate::config::ProfileFolders::Running(&running_dirs));
        if let Err(e) = checked {
            let _ = std::fs::remove_file(&candidate);
            let message = e.to_string().replace(&candidate.display().to_string(), "the new configuration");
            // Asking for a file outside the profile folders is a refused request; anything
            // else is a configuration that does not hold.
            let status = if e.is_refusal() { StatusCode::BAD_REQUEST } else { StatusCode::UNPROCESSABLE_ENTITY };
            return Err(ApiError(status, message));
        }
        std::fs::File::open(&candidate).and_then(|f| f.sync_all()).map_err(ApiError::internal)?;
        std::fs::rename(&candidate, &path).map_err(ApiError::internal)?;
        crate::base::sync_dir(dir).map_err(ApiError::internal)?;
        Ok(())
    })
    .await
    .map_err(ApiError::internal)?;
    outcome?;
    Ok(Json(ConfigSaved { applies: "at the next restart of the service".into(), saved: true }).into_response())
}
