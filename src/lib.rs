//! courtbox: the daemon and tools of a courtroom recording box. See docs/DESIGN.md for the
//! architecture; each module's `mod.rs` describes what it owns.

pub mod auth;
pub mod base;
pub mod bench;
pub mod broadcast;
pub mod capture;
pub mod config;
pub mod control;
pub mod export;
pub mod integrity;
pub mod ledger;
pub mod provision;
pub mod segment;
pub mod session;
pub mod stt;
pub mod sysd;
pub mod upload;
pub mod witness;
