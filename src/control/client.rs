//! The client the `courtbox` commands use to call the daemon's control API: blocking HTTP
//! over the Unix socket, where the kernel's peer credentials tell the daemon who is asking,
//! so the command line keeps no secret. Refusals come back with the daemon's own message.

use super::{
    ErrorBody, HearingAccess, MarkRequest, PersonRemoved, PersonStored, PrivacyMute, PutPerson, StatusReport,
    TranscriptionQueued,
};
use crate::auth::{Person, Role};
use crate::config::LoadedConfig;
use crate::session::{MarkInfo, SessionInfo, StartRequest, StopInfo};
use crate::stt::CaptionEvent;
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
            let msg = serde_json::from_str::<ErrorBody>(&body).map(|e| e.error).unwrap_or(body);
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
            self.http.put(format!("{}/api/v1/sessions/current/privacy-mute", self.base)).json(&PrivacyMute { muted }),
        )
    }
    pub fn hearing(&self, hearing: crate::integrity::Hearing) -> Result<MarkInfo, ClientError> {
        self.send(
            self.http.put(format!("{}/api/v1/sessions/current/hearing", self.base)).json(&HearingAccess { hearing }),
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
    pub fn put_person(&self, name: &str, role: Role, pin: Option<&str>) -> Result<PersonStored, ClientError> {
        let request = PutPerson { role, pin: pin.map(str::to_string) };
        self.send(self.http.put(self.person_url(name)?).json(&request))
    }
    pub fn remove_person(&self, name: &str) -> Result<PersonRemoved, ClientError> {
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
                .json(&MarkRequest { text: text.to_string() }),
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

    /// Asks the daemon to transcribe what one session (or, without one, every session)
    /// has no captions for, optionally only microphones in `language`.
    pub fn transcribe(
        &self,
        session: Option<&str>,
        language: Option<&str>,
    ) -> Result<TranscriptionQueued, ClientError> {
        let mut url = match session {
            Some(session) => format!("{}/api/v1/sessions/{session}/transcribe", self.base),
            None => format!("{}/api/v1/captions/transcribe-missing", self.base),
        };
        // A language code is letters only (the CLI takes kk, ru or en): nothing to escape.
        if let Some(language) = language.filter(|l| l.chars().all(|c| c.is_ascii_lowercase())) {
            url.push_str(&format!("?language={language}"));
        }
        self.send(self.http.post(url))
    }

    /// Follows the live caption stream, calling `on_caption` for each caption, until the
    /// daemon closes it.
    pub fn follow_captions(&self, mut on_caption: impl FnMut(CaptionEvent)) -> Result<(), ClientError> {
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

// Every body this client sends or reads is the daemon's own type (re-exported from
// `control`, defined beside its handler), so a field the daemon renames fails to build or
// to read here, loudly, instead of drifting.

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::SourceHealth;
    use crate::control::{CaptionsOff, CaptionsOffState, CaptionsReport};
    use crate::ledger::UploadBacklog;
    use crate::session::StatsInner;
    use crate::witness::WitnessStatus;
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
                           "pictures": [{ "camera": "bench", "frames_decoded": 250, "frames_skipped": 0 }],
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
        assert!(matches!(report.captions, CaptionsReport::Running(ref c) if c.finals == 7));
        assert!(report.storage.is_some() && report.witness.is_some());
        assert_eq!((report.court.court.as_str(), report.court.room.as_str()), ("c", "r"));
    }

    #[test]
    fn the_typed_report_writes_the_document_it_reads() {
        let document = status_document(serde_json::to_value(CaptionsOff::by_configuration()).unwrap());
        let report: StatusReport = serde_json::from_value(document.clone()).unwrap();
        assert_eq!(serde_json::to_value(&report).unwrap(), document);
    }

    #[test]
    fn disabled_captions_read_as_disabled() {
        let disabled = json!({ "state": "disabled", "reason": "stt.enabled = false in the configuration" });
        assert_eq!(serde_json::to_value(CaptionsOff::by_configuration()).unwrap(), disabled);
        let report: StatusReport = serde_json::from_value(status_document(disabled)).unwrap();
        assert!(
            matches!(report.captions, CaptionsReport::Disabled(ref off) if off.state == CaptionsOffState::Disabled)
        );
    }

    #[test]
    fn a_service_status_that_does_not_read_is_an_error_not_disabled() {
        let broken = json!({ "state": "ready", "reason": null, "finals": "seven" });
        assert!(serde_json::from_value::<StatusReport>(status_document(broken)).is_err());
    }

    #[test]
    fn without_storage_or_witness_the_document_leaves_them_out() {
        let mut document = status_document(serde_json::to_value(CaptionsOff::by_configuration()).unwrap());
        let object = document.as_object_mut().unwrap();
        object.remove("storage");
        object.remove("witness");
        let report: StatusReport = serde_json::from_value(document.clone()).unwrap();
        assert!(report.storage.is_none() && report.witness.is_none());
        assert_eq!(serde_json::to_value(&report).unwrap(), document);
    }

    #[test]
    fn a_live_caption_reads_back_as_the_daemons_event() {
        let sent = json!({ "kind": "final", "session": "0b7c4a4e-6a55-4b8e-9a53-0f3f3c1d2e10", "source": "judge",
                           "role": "judge", "language": "en", "media_start": 1_000_000_000u64,
                           "media_end": 2_000_000_000u64, "text": "t", "confidence": 0.5, "delayed": true,
                           "origin": "backlog", "decode_ms": 3, "audio_ms": 4 });
        let caption: CaptionEvent = serde_json::from_value(sent.clone()).unwrap();
        assert_eq!(caption.origin, crate::integrity::CaptionOrigin::Backlog);
        assert_eq!(serde_json::to_value(&caption).unwrap(), sent);
    }

    #[test]
    fn person_request_leaves_out_a_missing_pin() {
        let technician = serde_json::to_value(PutPerson { role: Role::Technician, pin: None }).unwrap();
        assert_eq!(technician, json!({ "role": "technician" }));
        let secretary = serde_json::to_value(PutPerson { role: Role::Secretary, pin: Some("246810".into()) }).unwrap();
        assert_eq!(secretary, json!({ "role": "secretary", "pin": "246810" }));
    }
}
