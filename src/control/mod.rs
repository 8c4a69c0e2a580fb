//! The control surface: an HTTP + WebSocket API (axum) for the front panel, technicians'
//! tools and the `courtbox` commands, described by an OpenAPI document. Who may call what is
//! decided in `access` (see `auth`); every change and every refusal is audited.

mod access;
mod api;
mod client;
#[cfg(feature = "fault-injection")]
mod debug;
pub mod metrics;
mod openapi;
mod panel;
mod records;
mod serve;

pub use api::{ApiState, router};
pub use client::{Client, ClientError};
#[cfg(feature = "fault-injection")]
pub use debug::{FaultInjected, LedgerStalled};
pub use serve::serve;

// The API's request and answer bodies: the handlers serialize them, the client reads them
// back, so the two cannot drift apart.
pub use crate::stt::TranscriptionQueued;
pub use access::{PersonRemoved, PersonStored, PutPerson, SignIn, SignedIn, SignedOut, WhoAmI};
pub use api::{
    CaptionsOff, CaptionsOffState, CaptionsReport, CourtRoom, Health, HearingAccess, MarkRequest, PrivacyMute,
    StatusReport,
};
pub use openapi::ErrorBody;
pub use records::{AuditLog, ConfigSaved, SessionDetail, SessionEvent, SessionSummary};
