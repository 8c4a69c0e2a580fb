//! The control surface: a local HTTP API (axum) that the CLI and, later, the front panel
//! talk to. Every request but `/health` carries the API token as a bearer token.

mod api;
mod client;
pub mod metrics;
mod token;

pub use api::{ApiState, router};
pub use client::{Client, ClientError};
pub use token::{ensure_token, read_token};
