//! The front panel: a page embedded in the binary (no CDN, works offline), its live status
//! over a WebSocket, and camera thumbnails.

use super::access::{SignedOut, session_cookie};
use super::api::{ApiError, ApiState, status_json};
use super::openapi::{Binary, ErrorBody, Refusal};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::time::Duration;

const PAGE: &str = include_str!("panel/index.html");
const SCRIPT: &str = include_str!("panel/panel.js");
const STYLE: &str = include_str!("panel/panel.css");

/// The page may load only itself: no inline script, no other origin.
const CSP: &str = "default-src 'self'; img-src 'self' blob:; connect-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

pub async fn page() -> Response {
    asset("text/html; charset=utf-8", PAGE)
}

pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

pub async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// How often the panel's WebSocket gets the status.
const STATUS_EVERY: Duration = Duration::from_millis(1000);

/// `GET /api/v1/status/ws`: the status document once a second until the client goes away
/// or its panel session ends.
#[utoipa::path(get, path = "/api/v1/status/ws", summary = "WebSocket: the status document once a second", security(("panelCookie" = [], "csrf" = []), ("technicianToken" = [])),
    responses((status = 101, description = "Switching protocols"), Refusal))]
pub async fn status_ws(State(s): State<ApiState>, headers: HeaderMap, ws: WebSocketUpgrade) -> Response {
    let cookie = session_cookie(&headers);
    ws.on_upgrade(move |socket| push_status(s, cookie, socket))
}

async fn push_status(s: ApiState, cookie: Option<String>, mut socket: WebSocket) {
    let mut tick = tokio::time::interval(STATUS_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => continue,
            },
        }
        if let Some(id) = &cookie
            && s.auth.panel_session(id, false).is_none()
        {
            let signed_out = serde_json::to_string(&SignedOut { signed_out: true }).unwrap_or_default();
            let _ = socket.send(Message::Text(signed_out.into())).await;
            let _ = socket.send(Message::Close(None)).await;
            return;
        }
        let text = match status_json(&s).await {
            Ok(v) => v.to_string(),
            Err(ApiError(_, error)) => serde_json::to_string(&ErrorBody { error }).unwrap_or_default(),
        };
        if socket.send(Message::Text(text.into())).await.is_err() {
            return;
        }
    }
}

/// `GET /api/v1/thumbnails/{source}`: the latest JPEG of a camera while a session records.
#[utoipa::path(get, path = "/api/v1/thumbnails/{source}", summary = "Latest JPEG thumbnail of a camera while recording", security(("panelCookie" = [], "csrf" = []), ("technicianToken" = [])), params(("source" = String, Path, min_length = 1)),
    responses((status = 200, description = "JPEG", body = Binary, content_type = "image/jpeg"), Refusal))]
pub async fn thumbnail(State(s): State<ApiState>, Path(source): Path<String>) -> Result<Response, ApiError> {
    let recorder = s.recorder.clone();
    let name = source.clone();
    let jpeg = tokio::task::spawn_blocking(move || recorder.thumbnail(&name)).await.map_err(ApiError::internal)?;
    match jpeg {
        Some(j) => Ok(([(header::CONTENT_TYPE, "image/jpeg"), (header::CACHE_CONTROL, "no-store")], j).into_response()),
        None => {
            Err(ApiError(StatusCode::NOT_FOUND, format!("no picture from {source:?} (not a camera, or not recording)")))
        }
    }
}
