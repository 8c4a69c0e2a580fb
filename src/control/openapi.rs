//! The control API's OpenAPI document (`GET /api/v1/openapi.json`), derived from the
//! router: every route is added with `utoipa_axum::routes!` from its handler's
//! `#[utoipa::path]`, so a route and its description cannot drift apart. This module holds
//! what no single handler owns: the title, the security schemes, the error answer, and the
//! schemas of bodies that are not JSON. The schemathesis test holds the server to it.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoResponses, Modify, OpenApi, ToSchema};

/// The security requirement names the handlers' `security(...)` use: a panel session
/// (cookie, with its CSRF token on every change) or a technician's bearer token.
pub const PANEL_COOKIE: &str = "panelCookie";
pub const CSRF: &str = "csrf";
pub const TECHNICIAN_TOKEN: &str = "technicianToken";

/// What the API answers when it refuses or fails: a message a person can act on (the
/// client reads it back to show the daemon's own words).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    pub error: String,
}

/// The error answer every operation documents, beside the statuses it names.
#[derive(IntoResponses)]
#[expect(dead_code, reason = "only its description is used: the answer is ApiError's")]
#[response(status = "default", description = "A refusal or error, with a message a person can act on")]
pub struct Refusal(#[to_schema] ErrorBody);

/// A body of raw bytes (a JPEG, a zip).
#[derive(ToSchema)]
#[expect(dead_code, reason = "only its schema is used: the bytes are streamed")]
#[schema(value_type = String, format = Binary)]
pub struct Binary(Vec<u8>);

#[derive(OpenApi)]
#[openapi(
    info(
        title = "courtbox control API",
        version = "1",
        description = "The box's HTTP + WebSocket API for the front panel, technicians' tools and the `courtbox` commands. Secretaries sign in with a PIN (cookie session; send X-CSRF-Token on every change); technicians send `Authorization: Bearer <token>`; commands on the box use the Unix socket. Every change and every refusal is written to the signed audit chain."
    ),
    servers((url = "/")),
    // Types that only query parameters name: utoipa refers to them but does not collect them.
    components(schemas(crate::integrity::Language)),
    security(("panelCookie" = [], "csrf" = []), ("technicianToken" = [])),
    modifiers(&SecuritySchemes)
)]
pub struct ApiDoc;

/// Declares the schemes `security(...)` names.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        // The document is the box's own, not the crate's: no licence or contact from Cargo.toml.
        doc.info.license = None;
        doc.info.contact = None;
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            PANEL_COOKIE,
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(super::access::SESSION_COOKIE))),
        );
        components.add_security_scheme(CSRF, SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-CSRF-Token"))));
        components.add_security_scheme(
            TECHNICIAN_TOKEN,
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The handler of `GET /api/v1/openapi.json`: the document, rendered once when the router
/// is built.
pub fn document(
    doc: &utoipa::openapi::OpenApi,
) -> impl Fn() -> std::future::Ready<Response> + Clone + Send + Sync + 'static {
    let text: Arc<str> = doc.to_pretty_json().expect("the OpenAPI document serializes").into();
    move || std::future::ready(([(header::CONTENT_TYPE, "application/json")], text.to_string()).into_response())
}
