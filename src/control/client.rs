//! The client the `courtbox` commands use to call the daemon's control API: blocking HTTP
//! over the Unix socket, where the kernel's peer credentials tell the daemon who is asking,
//! so the command line keeps no secret. Refusals come back with the daemon's own message.

use crate::config::LoadedConfig;
use crate::session::{MarkInfo, SessionInfo, StartRequest, StopInfo};
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
            let msg = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                .unwrap_or(body);
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
    /// `action`: start or stop.
    pub fn broadcast(&self, action: &str) -> Result<MarkInfo, ClientError> {
        self.send(self.http.post(format!("{}/api/v1/sessions/current/broadcast/{action}", self.base)))
    }
    /// Adds a person or renews their secret: a secretary with `pin`, a technician without
    /// (the answer carries the new token).
    pub fn put_person(&self, name: &str, role: &str, pin: Option<&str>) -> Result<serde_json::Value, ClientError> {
        let mut body = serde_json::json!({ "role": role });
        if let Some(pin) = pin {
            body["pin"] = pin.into();
        }
        self.send(self.http.put(self.person_url(name)?).json(&body))
    }
    pub fn remove_person(&self, name: &str) -> Result<serde_json::Value, ClientError> {
        self.send(self.http.delete(self.person_url(name)?))
    }
    /// `/api/v1/people/{name}` with the name percent-encoded as one path segment.
    fn person_url(&self, name: &str) -> Result<reqwest::Url, ClientError> {
        let mut url = reqwest::Url::parse(&format!("{}/api/v1/people", self.base))
            .map_err(|e| ClientError::Http(e.to_string()))?;
        url.path_segments_mut().map_err(|_| ClientError::Http("not a base URL".into()))?.push(name);
        Ok(url)
    }
    pub fn people(&self) -> Result<serde_json::Value, ClientError> {
        self.send(self.http.get(format!("{}/api/v1/people", self.base)))
    }

    pub fn mark(&self, text: &str) -> Result<MarkInfo, ClientError> {
        self.send(
            self.http
                .post(format!("{}/api/v1/sessions/current/marks", self.base))
                .json(&serde_json::json!({ "text": text })),
        )
    }
    pub fn status(&self) -> Result<serde_json::Value, ClientError> {
        self.send(self.http.get(format!("{}/api/v1/status", self.base)))
    }

    pub fn transcribe(&self, session: &str) -> Result<serde_json::Value, ClientError> {
        self.send(self.http.post(format!("{}/api/v1/sessions/{session}/transcribe", self.base)))
    }

    /// Follows the live caption stream, calling `on_caption(kind, caption)` for each event,
    /// until the daemon closes it.
    pub fn follow_captions(&self, mut on_caption: impl FnMut(&str, serde_json::Value)) -> Result<(), ClientError> {
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
        let mut kind = String::new();
        for line in std::io::BufReader::new(resp).lines() {
            let line = line.map_err(|e| ClientError::Http(e.to_string()))?;
            if let Some(k) = line.strip_prefix("event:") {
                kind = k.trim().to_string();
            } else if let Some(data) = line.strip_prefix("data:")
                && let Ok(v) = serde_json::from_str(data.trim())
            {
                on_caption(&kind, v);
            }
        }
        Ok(())
    }
}
