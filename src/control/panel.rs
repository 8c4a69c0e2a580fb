//! The front panel: a page embedded in the binary (no CDN, works offline), its live status
//! over a WebSocket, and camera thumbnails.

use super::access::{SignedOut, revoked};
use super::api::{ApiError, ApiState, status_json};
use super::openapi::{Binary, ErrorBody, Refusal};
use crate::auth::Credential;
use axum::Extension;
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
pub async fn status_ws(
    State(s): State<ApiState>,
    headers: HeaderMap,
    Extension(credential): Extension<Credential>,
    slot: Option<Extension<super::serve::ConnectionSlot>>,
    ws: WebSocketUpgrade,
) -> Response {
    if let Err(refusal) = same_origin(&headers, &credential) {
        return ApiError(StatusCode::FORBIDDEN, refusal.to_string()).into_response();
    }
    ws.on_upgrade(move |socket| async move {
        // The socket keeps its connection's place under the caps until it closes.
        let _slot = slot;
        push_status(s, credential, socket).await
    })
}

/// Why a WebSocket upgrade from a browser was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(super) enum OriginRefusal {
    #[error("this WebSocket comes from another site's page (Origin {origin:?} is not this box, {host:?})")]
    OtherSite { origin: String, host: String },
    #[error("a panel session's WebSocket must say where its page came from (no Origin header)")]
    Missing,
}

/// A browser sends its cookies with a WebSocket upgrade from any site's page, and CORS does not
/// apply to WebSockets: so the page's `Origin` must be this box itself. Tools that present
/// a technician token (not a cookie) send no `Origin`; a panel session must.
pub(super) fn same_origin(headers: &HeaderMap, credential: &Credential) -> Result<(), OriginRefusal> {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    match headers.get(header::ORIGIN).map(|o| o.to_str().unwrap_or("")) {
        None if matches!(credential, Credential::Panel(_)) => Err(OriginRefusal::Missing),
        None => Ok(()),
        Some(origin) => {
            let origin_host = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://"));
            if origin_host.is_some_and(|o| !host.is_empty() && o.eq_ignore_ascii_case(host)) {
                Ok(())
            } else {
                Err(OriginRefusal::OtherSite { origin: origin.to_string(), host: host.to_string() })
            }
        }
    }
}

async fn push_status(s: ApiState, credential: Credential, mut socket: WebSocket) {
    let mut tick = tokio::time::interval(STATUS_EVERY);
    let ended = revoked(s.auth.clone(), credential);
    tokio::pin!(ended);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = &mut ended => {
                // Signed out, removed, renewed or expired: the panel shows its sign-in screen.
                let signed_out = serde_json::to_string(&SignedOut { signed_out: true }).unwrap_or_default();
                let _ = socket.send(Message::Text(signed_out.into())).await;
                let _ = socket.send(Message::Close(None)).await;
                return;
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => continue,
            },
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

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(host: &str, origin: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, host.parse().unwrap());
        if let Some(o) = origin {
            h.insert(header::ORIGIN, o.parse().unwrap());
        }
        h
    }

    #[test]
    fn a_websocket_must_come_from_the_box_own_page() {
        let panel = Credential::Panel("id".into());
        let token = Credential::Token([0; 32]);
        assert_eq!(same_origin(&headers("10.0.0.5:8089", Some("http://10.0.0.5:8089")), &panel), Ok(()));
        assert_eq!(same_origin(&headers("box.court.kz", Some("https://BOX.court.kz")), &panel), Ok(()));
        assert!(matches!(
            same_origin(&headers("10.0.0.5:8089", Some("https://evil.example")), &panel),
            Err(OriginRefusal::OtherSite { .. })
        ));
        assert!(matches!(
            same_origin(&headers("10.0.0.5:8089", Some("http://10.0.0.5:8089.evil.example")), &token),
            Err(OriginRefusal::OtherSite { .. })
        ));
        assert!(same_origin(&headers("10.0.0.5:8089", Some("null")), &panel).is_err());
        assert_eq!(same_origin(&headers("10.0.0.5:8089", None), &panel), Err(OriginRefusal::Missing));
        assert_eq!(same_origin(&headers("10.0.0.5:8089", None), &token), Ok(()));
    }
}
