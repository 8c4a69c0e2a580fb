//! The signed record: SHA-256 and Ed25519 (ring), the record encoding, the per-session
//! hash chain, the session manifest, and offline verification of a session folder.
//!
//! A record's canonical bytes are its JSON body exactly as signed; the `.rec` file is those
//! bytes, a newline, and a JSON signature line. Nothing is ever re-serialized before a
//! signature check, so the format stays checkable by hand (`openssl pkeyutl -verify`).

mod audit;
mod keys;
mod record;
mod trust;
mod verify;

pub use audit::{AuditBody, SignedEntry, next_entry as next_audit_entry, verify_audit};
pub use keys::{DeviceKey, KeyError, PublicKey};
pub use record::{
    CONTINUITY_TOLERANCE_NS, CaptionItem, CaptionOrigin, Context, Entry, FORMAT_VERSION, Hearing, Language,
    ManifestBody, ModelRef, RECESS_REASON, RecordBody, RecordKind, RunCause, SenderTiming, SignedDoc, SignedDocError,
    TimingBasis, UnknownLanguage, ZERO_HASH, body_version, check_signature, sha256, sha256_hex,
    unresolved_captions_behind,
};
pub use trust::{Fingerprint, TrustAnchor, TrustError, TrustList, TrustedKey, fingerprint};
pub use verify::{
    Fault, FaultKind, LocalFolder, MAX_DOC_BYTES, MAX_LISTED, MAX_MISSING, MAX_RECORD_BYTES, NotInRecord, Open,
    Placement, Report, SessionFolder, SourceCoverage, Verdict, VerifyOptions, completeness_line, coverage,
    digest_reader, verify, verify_folder,
};

/// File layout of a session folder, shared by the spool, exports and central storage.
pub mod layout {
    pub const CHAIN_DIR: &str = "chain";
    pub const MANIFEST: &str = "manifest.rec";
    pub const PUBLIC_KEY: &str = "device.pub";
    /// Derived caption files of an export; `captions.json` is checked against the chain.
    pub const CAPTIONS_DIR: &str = "captions";
    pub const CAPTIONS_JSON: &str = "captions/captions.json";
    /// Derived files of an export: one playable file per source, not part of the record.
    pub const PLAYABLE_DIR: &str = "playable";
    /// An export's explanation for people, not part of the record.
    pub const README: &str = "README.txt";

    /// Revision 1 is `manifest.rec`; later revisions are `manifest-N.rec` (write-once
    /// storage never overwrites the first).
    pub fn manifest_file(revision: u32) -> String {
        if revision <= 1 { MANIFEST.to_string() } else { format!("manifest-{revision}.rec") }
    }
    pub fn manifest_revision(file: &str) -> Option<u32> {
        if file == MANIFEST {
            return Some(1);
        }
        file.strip_prefix("manifest-")?.strip_suffix(".rec")?.parse().ok().filter(|r| *r > 1)
    }

    pub fn record_file(index: u64) -> String {
        format!("{CHAIN_DIR}/{index:08}.rec")
    }
    pub fn segment_file(source: &str, seq: u64) -> String {
        format!("{source}/{seq:06}.mkv")
    }
}
