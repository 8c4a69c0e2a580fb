//! The signed record: SHA-256 and Ed25519 (ring), the record encoding, the per-session
//! hash chain, the session manifest, and offline verification of a session folder.
//!
//! A record's canonical bytes are its JSON body exactly as signed; the `.rec` file is those
//! bytes, a newline, and a JSON signature line. Nothing is ever re-serialized before a
//! signature check, so the format stays checkable by hand (`openssl pkeyutl -verify`).

mod keys;
mod record;
mod verify;

pub use keys::{DeviceKey, KeyError, PublicKey};
pub use record::{
    CONTINUITY_TOLERANCE_NS, Entry, FORMAT_VERSION, Hearing, ManifestBody, RecordBody, RunCause, SignedDoc,
    SignedDocError, ZERO_HASH, sha256, sha256_hex,
};
pub use verify::{Fault, FaultKind, LocalFolder, Report, SessionFolder, digest_reader, verify, verify_folder};

/// File layout of a session folder, shared by the spool, exports and central storage.
pub mod layout {
    pub const CHAIN_DIR: &str = "chain";
    pub const MANIFEST: &str = "manifest.rec";
    pub const PUBLIC_KEY: &str = "device.pub";

    pub fn record_file(index: u64) -> String {
        format!("{CHAIN_DIR}/{index:08}.rec")
    }
    pub fn segment_file(source: &str, seq: u64) -> String {
        format!("{source}/{seq:06}.mkv")
    }
}
