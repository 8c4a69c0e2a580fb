use crate::config::LoadedConfig;
use crate::session::{MarkInfo, SessionInfo, StartRequest, StopInfo};
use serde::de::DeserializeOwned;
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("cannot read the API token {path}: {source} (run as the courtbox user or root)")]
    Token { path: String, source: std::io::Error },
    #[error(
        "the courtbox daemon is not answering at {addr}: is it running? (`courtbox run`, or `systemctl status courtbox`)"
    )]
    NotRunning { addr: String },
    #[error("{0}")]
    Refused(String),
    #[error("talking to the daemon: {0}")]
    Http(String),
}

/// The CLI's client of the local control API.
pub struct Client {
    base: String,
    token: String,
    http: reqwest::blocking::Client,
}

impl Client {
    pub fn from_config(cfg: &LoadedConfig) -> Result<Client, ClientError> {
        let path = cfg.token_path();
        let token = super::read_token(&path)
            .map_err(|source| ClientError::Token { path: path.display().to_string(), source })?;
        crate::base::install_tls_provider();
        let http = reqwest::blocking::Client::builder()
            // Stopping a session waits for every device to finalize its segment.
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| ClientError::Http(e.to_string()))?;
        Ok(Client { base: format!("http://{}", cfg.config.api.listen), token, http })
    }

    fn send<T: DeserializeOwned>(&self, req: reqwest::blocking::RequestBuilder) -> Result<T, ClientError> {
        let resp = req.bearer_auth(&self.token).send().map_err(|e| {
            if e.is_connect() {
                ClientError::NotRunning { addr: self.base.clone() }
            } else {
                ClientError::Http(e.to_string())
            }
        })?;
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
        let http = reqwest::blocking::Client::builder().build().map_err(|e| ClientError::Http(e.to_string()))?;
        let resp =
            http.get(format!("{}/api/v1/captions/live", self.base)).bearer_auth(&self.token).send().map_err(|e| {
                if e.is_connect() {
                    ClientError::NotRunning { addr: self.base.clone() }
                } else {
                    ClientError::Http(e.to_string())
                }
            })?;
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
