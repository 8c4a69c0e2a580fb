//! The published OpenAPI document of the control API (`GET /api/v1/openapi.json`). Written
//! by hand beside the routes; the schemathesis test holds the server to it.

use axum::http::header;
use axum::response::{IntoResponse, Response};

const DOCUMENT: &str = include_str!("openapi.json");

pub async fn document() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT).into_response()
}
