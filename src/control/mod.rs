//! The control surface: an HTTP + WebSocket API (axum) for the front panel, technicians'
//! tools and the `courtbox` commands, described by an OpenAPI document. Who may call what is
//! decided in `access` (see `auth`); every change and every refusal is audited.

mod access;
mod api;
mod client;
pub mod metrics;
mod openapi;
mod panel;
mod records;
mod serve;

pub use api::{ApiState, router};
pub use client::{CaptionsOff, CaptionsReport, Client, ClientError, LiveCaption, StatusReport};
pub use serve::serve;
