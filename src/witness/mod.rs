//! The record witnessed beyond the box: signed checkpoints of the session and audit chains
//! (C2SP signed notes), RFC 3161 timestamps on them from an external TSA, and the trust
//! anchors a verifier needs.

pub mod checkpoint;
mod ring_provider;
pub mod tsa;

pub use checkpoint::{Cause, Checkpoint, CheckpointError, Log};
pub mod service;
pub mod verify;

pub use service::{TsaSettings, Witness, WitnessSettings, WitnessStatus};
