//! The client the `courtbox` commands use to call the daemon's control API: blocking HTTP
//! over the Unix socket, where the kernel's peer credentials tell the daemon who is asking,
//! so the command line keeps no secret. Refusals come back with the daemon's own message.

use crate::auth::{Person, Role};
use crate::base::MediaTime;
use crate::broadcast::BroadcastStatus;
use crate::config::LoadedConfig;
use crate::session::{MarkInfo, SessionInfo, SessionStatus, StartRequest, StopInfo};
use crate::stt::{CaptionKind, SttStatus};
use crate::upload::StorageStatus;
use crate::witness::WitnessStatus;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ClientError {
    #[error(
        "the courtbox daemon is not answering on {addr}: is it running? (`courtbox run`, or `systemctl status courtbox`); commands must run as root or the courtbox user"
    )]
    NotRunning { addr: String },
    #[error("{0}")]
    Refused(String),
    #[error("talking to the daemon: {0}")]
    Http(String),
}

/// The CLI's client of the control API, over the daemon's Unix socket: the kernel tells the
/// daemon who runs the command, so no secret is kept for it.
pub struct Client {
    base: String,
    socket: std::path::PathBuf,
    http: reqwest::blocking::Client,
}

impl Client {
    pub fn from_config(cfg: &LoadedConfig) -> Result<Client, ClientError> {
        let socket = cfg.socket_path();
        crate::base::install_tls_provider();
        let http = reqwest::blocking::Client::builder()
            .unix_socket(socket.clone())
            // Stopping a session waits for every device to finalize its segment.
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| ClientError::Http(e.to_string()))?;
        Ok(Client { base: "http://courtbox".into(), socket, http })
    }

    fn not_running(&self) -> ClientError {
        ClientError::NotRunning { addr: self.socket.display().to_string() }
    }

    fn send<T: DeserializeOwned>(&self, req: reqwest::blocking::RequestBuilder) -> Result<T, ClientError> {
        let resp = req
            .send()
            .map_err(|e| if e.is_connect() { self.not_running() } else { ClientError::Http(e.to_string()) })?;
        let status = resp.status();
        let body = resp.text().map_err(|e| ClientError::Http(e.to_string()))?;
        if !status.is_success() {
            let msg = serde_json::from_str::<ErrorAnswer>(&body).map(|e| e.error).unwrap_or(body);
            return Err(ClientError::Refused(format!("{msg} (HTTP {})", status.as_u16())));
        }
        serde_json::from_str(&body).map_err(|e| ClientError::Http(format!("unexpected answer: {e}")))
    }

    pub fn start(&self, req: &StartRequest) -> Result<SessionInfo, ClientError> {
        self.send(self.http.post(format!("{}/api/v1/sessions", self.base)).json(req))
    }
    pub fn stop(&self) -> Result<StopInfo, ClientError> {
        self.send(self.http.post(format!("{}/api/v1/sessions/current/stop", self.base)))
    }
    pub fn recess(&self) -> Result<MarkInfo, ClientError> {
        self.send(self.http.post(format!("{}/api/v1/sessions/current/recess", self.base)))
    }
    pub fn resume(&self) -> Result<SessionInfo, ClientError> {
        self.send(self.http.post(format!("{}/api/v1/sessions/current/resume", self.base)))
    }
    pub fn privacy_mute(&self, muted: bool) -> Result<MarkInfo, ClientError> {
        self.send(
            self.http
                .put(format!("{}/api/v1/sessions/current/privacy-mute", self.base))
                .json(&serde_json::json!({ "muted": muted })),
        )
    }
    pub fn hearing(&self, hearing: crate::integrity::Hearing) -> Result<MarkInfo, ClientError> {
        self.send(
            self.http
                .put(format!("{}/api/v1/sessions/current/hearing", self.base))
                .json(&serde_json::json!({ "hearing": hearing })),
        )
    }
    pub fn start_broadcast(&self) -> Result<MarkInfo, ClientError> {
        self.send(self.http.post(format!("{}/api/v1/sessions/current/broadcast/start", self.base)))
    }
    pub fn stop_broadcast(&self) -> Result<MarkInfo, ClientError> {
        self.send(self.http.post(format!("{}/api/v1/sessions/current/broadcast/stop", self.base)))
    }
    /// Adds a person or renews their secret: a secretary with `pin`, a technician without
    /// (the answer carries the new token).
    pub fn put_person(&self, name: &str, role: Role, pin: Option<&str>) -> Result<PersonAnswer, ClientError> {
        self.send(self.http.put(self.person_url(name)?).json(&PersonRequest { role, pin }))
    }
    pub fn remove_person(&self, name: &str) -> Result<Removed, ClientError> {
        self.send(self.http.delete(self.person_url(name)?))
    }
    /// `/api/v1/people/{name}` with the name percent-encoded as one path segment.
    fn person_url(&self, name: &str) -> Result<reqwest::Url, ClientError> {
        let mut url = reqwest::Url::parse(&format!("{}/api/v1/people", self.base))
            .map_err(|e| ClientError::Http(e.to_string()))?;
        url.path_segments_mut().map_err(|_| ClientError::Http("not a base URL".into()))?.push(name);
        Ok(url)
    }
    pub fn people(&self) -> Result<Vec<Person>, ClientError> {
        self.send(self.http.get(format!("{}/api/v1/people", self.base)))
    }

    pub fn mark(&self, text: &str) -> Result<MarkInfo, ClientError> {
        self.send(
            self.http
                .post(format!("{}/api/v1/sessions/current/marks", self.base))
                .json(&serde_json::json!({ "text": text })),
        )
    }
    /// The daemon's status, typed: a field the daemon renames fails here, loudly.
    pub fn status(&self) -> Result<StatusReport, ClientError> {
        self.send(self.http.get(format!("{}/api/v1/status", self.base)))
    }
    /// The daemon's status document exactly as it sent it (for `status --json`, which
    /// passes the API's document through, fields the CLI does not read included).
    pub fn status_document(&self) -> Result<serde_json::Value, ClientError> {
        self.send(self.http.get(format!("{}/api/v1/status", self.base)))
    }

    pub fn transcribe(&self, session: &str) -> Result<Queued, ClientError> {
        self.send(self.http.post(format!("{}/api/v1/sessions/{session}/transcribe", self.base)))
    }

    /// Follows the live caption stream, calling `on_caption` for each caption, until the
    /// daemon closes it.
    pub fn follow_captions(&self, mut on_caption: impl FnMut(LiveCaption)) -> Result<(), ClientError> {
        use std::io::BufRead;
        let http = reqwest::blocking::Client::builder()
            .unix_socket(self.socket.clone())
            .build()
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let resp = http
            .get(format!("{}/api/v1/captions/live", self.base))
            .send()
            .map_err(|e| if e.is_connect() { self.not_running() } else { ClientError::Http(e.to_string()) })?;
        if !resp.status().is_success() {
            return Err(ClientError::Refused(format!("HTTP {}", resp.status().as_u16())));
        }
        // Each event's data carries its kind too, so the `event:` lines need no reading.
        for line in std::io::BufReader::new(resp).lines() {
            let line = line.map_err(|e| ClientError::Http(e.to_string()))?;
            if let Some(data) = line.strip_prefix("data:")
                && let Ok(caption) = serde_json::from_str(data.trim())
            {
                on_caption(caption);
            }
        }
        Ok(())
    }
}

// The answers below are what the command line reads. Where the daemon serializes a type
// that can be read back, it is used as is; the small structs here stand in for answers
// the daemon builds ad hoc, or for types that cannot be read back yet (a `&'static str`
// field): each says which.

/// A refusal's body: `{"error": …}` (control/api.rs `ApiError`).
#[derive(Debug, Clone, Deserialize)]
struct ErrorAnswer {
    error: String,
}

/// The body of `PUT /api/v1/people/{name}` (read by control/access.rs `PutPerson`).
#[derive(Debug, Clone, serde::Serialize)]
struct PersonRequest<'a> {
    role: Role,
    #[serde(skip_serializing_if = "Option::is_none")]
    pin: Option<&'a str>,
}

/// `PUT /api/v1/people/{name}` (built ad hoc in control/access.rs).
#[derive(Debug, Clone, Deserialize)]
pub struct PersonAnswer {
    pub name: String,
    pub role: Role,
    /// Technicians only: the new token, shown this once.
    pub token: Option<String>,
}

/// `DELETE /api/v1/people/{name}` (built ad hoc in control/access.rs).
#[derive(Debug, Clone, Deserialize)]
pub struct Removed {
    pub removed: String,
}

/// `POST /api/v1/sessions/{id}/transcribe` (built ad hoc in control/api.rs).
#[derive(Debug, Clone, Deserialize)]
pub struct Queued {
    pub queued: usize,
}

/// `GET /api/v1/status`: the recorder's status (`session::Status`) with captions, storage
/// and witness beside it (assembled in control/api.rs `status_json`).
#[derive(Debug, Clone, Deserialize)]
pub struct StatusReport {
    pub recording: bool,
    pub session: Option<SessionStatus>,
    pub broadcast: BroadcastStatus,
    pub captions: Option<CaptionsReport>,
    pub storage: Option<StorageStatus>,
    pub witness: Option<WitnessStatus>,
}

/// Captions in status: the service's status, or why there is no service.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum CaptionsReport {
    Running(SttStatus),
    Disabled(CaptionsOff),
}

/// `stt.enabled = false`: no service, only a state and the reason (built ad hoc in
/// control/api.rs `status_json`). Nothing else may be in it, so that a service status that
/// fails to read is an error, not "disabled".
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptionsOff {
    pub state: String,
    pub reason: Option<String>,
}

/// One event of the live caption stream: `stt::CaptionEvent` read back, as far as the
/// terminal shows it (that type cannot be, while its `origin` is a `&'static str`).
#[derive(Debug, Clone, Deserialize)]
pub struct LiveCaption {
    pub kind: CaptionKind,
    pub source: String,
    pub role: Option<crate::config::Role>,
    pub media_start: MediaTime,
    pub text: String,
    pub delayed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::SourceHealth;
    use crate::ledger::UploadBacklog;
    use crate::session::StatsInner;
    use serde_json::json;

    /// A status document as `status_json` assembles it, with the parts that have defaults
    /// serialized from the daemon's own types.
    fn status_document(captions: serde_json::Value) -> serde_json::Value {
        json!({
            "recording": true,
            "session": {
                "id": "0b7c4a4e-6a55-4b8e-9a53-0f3f3c1d2e10", "state": "recording", "recess_since": null,
                "privacy_muted": false, "case": "2-1/2026", "title": "t", "language": "en", "hearing": "open",
                "started_wall": "2026-01-01T00:00:00Z", "run": 1, "run_started_media": 0, "media_now": 5,
                "devices": [{ "name": "desk", "sources": ["bench"], "state": "cannot_start", "restarts": 0,
                              "last_error": "no element" }],
                "health": [serde_json::to_value(SourceHealth::default()).unwrap()],
                "stats": serde_json::to_value(StatsInner::default()).unwrap(),
            },
            "broadcast": { "configured": true, "live": true, "since_media": 1, "delay_seconds": 10,
                           "rewind_seconds": 0, "muted": false, "camera": null, "last_error": null,
                           "outputs": [{ "name": "yt", "kind": "rtmp", "state": "live", "attempts": 1,
                                         "last_error": null, "since": "now", "sent_bytes": 3 }] },
            "captions": captions,
            "sources": [],
            "court": { "court": "c", "room": "r" },
            "storage": { "store": "s3://b/p", "oldest_age_s": null, "disk": null, "alarms": [],
                         "uploader": serde_json::to_value(crate::upload::UploaderState::default()).unwrap(),
                         "backlog": serde_json::to_value(UploadBacklog::default()).unwrap() },
            "witness": serde_json::to_value(WitnessStatus::default()).unwrap(),
        })
    }

    #[test]
    fn status_document_reads_as_typed_report() {
        let running = json!({ "state": "ready", "reason": null, "model": "base", "tracks": {}, "backlog": 2,
                              "finals": 7, "last_error": null });
        let report: StatusReport = serde_json::from_value(status_document(running)).unwrap();
        let session = report.session.unwrap();
        assert_eq!(session.devices[0].state, crate::capture::DeviceState::CannotStart);
        assert_eq!(report.broadcast.outputs[0].state, crate::broadcast::OutputState::Live);
        assert!(matches!(report.captions, Some(CaptionsReport::Running(ref c)) if c.finals == 7));
        assert!(report.storage.is_some() && report.witness.is_some());
    }

    #[test]
    fn disabled_captions_read_as_disabled() {
        let disabled = json!({ "state": "disabled", "reason": "stt.enabled = false in the configuration" });
        let report: StatusReport = serde_json::from_value(status_document(disabled)).unwrap();
        assert!(matches!(report.captions, Some(CaptionsReport::Disabled(ref off)) if off.state == "disabled"));
    }

    #[test]
    fn person_request_leaves_out_a_missing_pin() {
        let technician = serde_json::to_value(PersonRequest { role: Role::Technician, pin: None }).unwrap();
        assert_eq!(technician, json!({ "role": "technician" }));
        let secretary = serde_json::to_value(PersonRequest { role: Role::Secretary, pin: Some("2468") }).unwrap();
        assert_eq!(secretary, json!({ "role": "secretary", "pin": "2468" }));
    }
}
