//! The record witnessed beyond the box: signed checkpoints of the session and audit chains
//! (C2SP signed notes), RFC 3161 timestamps on them from an external TSA, and the trust
//! anchors a verifier needs.

pub mod tsa;
