//! Checkpoints: a signed statement "this log had N entries, the last one hashing to H, at
//! wall time T", in the C2SP signed-note format (the layout of a C2SP tlog checkpoint). The
//! box signs one at every session event and periodically while recording, and uploads it
//! ahead of everything else, so that a copy of the record can be compared with what the
//! store was told while the hearing went on (`verify --against`).
//!
//! Text (every line ends with `\n`), then a blank line and one signature line:
//!
//! ```text
//! courtbox/v2/checkpoint/session/6f1c…-…      origin: which log (a session or the audit chain)
//! 412                                           entries covered
//! 3q2+7w…=                                      base64 SHA-256 of entry #411's body (zeros if none)
//! wall 2026-12-01T14:05:10.123Z                 the box's clock when it signed
//! seq 17                                        checkpoint number in this log, from 1
//! cause event                                   event | periodic | audit
//!
//! — courtbox-<key id> <base64(4-byte key hash ‖ 64-byte Ed25519 signature)>
//! ```
//!
//! The hash is the head of the linear hash chain, not a Merkle root: consistency between two
//! checkpoints is shown by the records themselves (every record names its predecessor), so
//! a generic tlog witness cannot check it; `courtbox verify` does.

use crate::base::WallTime;
use crate::integrity::{DeviceKey, PublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use thiserror::Error;
use uuid::Uuid;

/// Which chain a checkpoint is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Log {
    Session(Uuid),
    /// The box's audit chain of user actions.
    Audit,
}

impl Log {
    pub fn origin(&self) -> String {
        match self {
            Log::Session(id) => format!("courtbox/v2/checkpoint/session/{id}"),
            Log::Audit => "courtbox/v2/checkpoint/audit".into(),
        }
    }
    fn from_origin(origin: &str) -> Option<Log> {
        if origin == "courtbox/v2/checkpoint/audit" {
            return Some(Log::Audit);
        }
        origin.strip_prefix("courtbox/v2/checkpoint/session/").and_then(|id| Uuid::parse_str(id).ok()).map(Log::Session)
    }
    /// The ledger's name for the log: the session id, or `audit`.
    pub fn ledger_name(&self) -> String {
        match self {
            Log::Session(id) => id.to_string(),
            Log::Audit => "audit".into(),
        }
    }
    pub fn from_ledger_name(name: &str) -> Option<Log> {
        if name == "audit" { Some(Log::Audit) } else { Uuid::parse_str(name).ok().map(Log::Session) }
    }
    /// Where the checkpoint is stored, relative to `{court}/{room}/` (and, for a session,
    /// inside an export under `checkpoints/`). The audit chain is the box's own, kept per
    /// device key: a replaced box or key starts its own folder and never collides.
    pub fn object(&self, seq: u64, extension: &str, key_id: &str) -> String {
        match self {
            Log::Session(id) => format!("{id}/{}", checkpoint_file(seq, extension)),
            Log::Audit => format!("{}/{}", audit_folder(key_id), checkpoint_file(seq, extension)),
        }
    }
}

/// `audit/{key id}`: the audit chain's entries and checkpoints, relative to `{court}/{room}/`.
pub fn audit_folder(key_id: &str) -> String {
    format!("audit/{key_id}")
}

/// `checkpoints/00000017.note` (the note) or `.tsr` (its RFC 3161 timestamp token).
pub fn checkpoint_file(seq: u64, extension: &str) -> String {
    format!("{CHECKPOINTS_DIR}/{seq:08}.{extension}")
}
pub const CHECKPOINTS_DIR: &str = "checkpoints";
pub const NOTE: &str = "note";
pub const TOKEN: &str = "tsr";

/// Why a checkpoint was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// A session event was committed (start, run, mark, recess, gap, stop, a new seal...).
    Event,
    /// Recording went on; made every `checkpoint_seconds` when the chain grew.
    Periodic,
    /// An audit entry was appended.
    Audit,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Event => "event",
            Cause::Periodic => "periodic",
            Cause::Audit => "audit",
        }
    }
    fn parse(s: &str) -> Option<Cause> {
        [Cause::Event, Cause::Periodic, Cause::Audit].into_iter().find(|c| c.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub log: Log,
    /// Entries covered: records #0 to #size-1.
    pub size: u64,
    /// SHA-256 of the body of entry #size-1 (zeros when size is 0).
    pub head: [u8; 32],
    pub wall: WallTime,
    pub seq: u64,
    pub cause: Cause,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CheckpointError {
    #[error("not a checkpoint note: {0}")]
    Format(String),
    #[error("signed by key {found}, not device key {expected}")]
    WrongKey { found: String, expected: String },
    #[error("its signature does not verify with device key {0}")]
    BadSignature(String),
}

/// The signed-note key name of a device key.
pub fn key_name(key: &PublicKey) -> String {
    format!("courtbox-{}", key.key_id())
}

/// C2SP signed-note key hash: SHA-256(name ‖ "\n" ‖ 0x01 ‖ key)[:4] (0x01: Ed25519).
fn key_hash(name: &str, key: &PublicKey) -> [u8; 4] {
    let mut m = name.as_bytes().to_vec();
    m.push(b'\n');
    m.push(0x01);
    m.extend_from_slice(&key.0);
    crate::integrity::sha256(&m)[..4].try_into().expect("4 bytes")
}

impl Checkpoint {
    /// The note text that is signed.
    pub fn text(&self) -> String {
        format!(
            "{}\n{}\n{}\nwall {}\nseq {}\ncause {}\n",
            self.log.origin(),
            self.size,
            B64.encode(self.head),
            self.wall.to_rfc3339(),
            self.seq,
            self.cause.as_str()
        )
    }

    /// The signed note, as stored and uploaded.
    pub fn sign(&self, key: &DeviceKey) -> Vec<u8> {
        let text = self.text();
        let public = key.public();
        let name = key_name(&public);
        let mut sig = key_hash(&name, &public).to_vec();
        sig.extend_from_slice(&key.sign(text.as_bytes()));
        format!("{text}\n\u{2014} {name} {}\n", B64.encode(sig)).into_bytes()
    }

    /// Parses a signed note and checks its signature with the trusted device key.
    pub fn open(note: &[u8], key: &PublicKey) -> Result<Checkpoint, CheckpointError> {
        let fmt = |m: &str| CheckpointError::Format(m.to_string());
        let note = std::str::from_utf8(note).map_err(|_| fmt("not UTF-8"))?;
        let (text, signatures) = note.split_once("\n\n").ok_or_else(|| fmt("no blank line before the signatures"))?;
        let text = format!("{text}\n");
        let name = key_name(key);
        let mut signers = Vec::new();
        for line in signatures.lines() {
            let rest =
                line.strip_prefix("\u{2014} ").ok_or_else(|| fmt("a signature line must start with an em dash"))?;
            let (signer, sig) =
                rest.split_once(' ').ok_or_else(|| fmt("a signature line has a name and a signature"))?;
            signers.push((signer, sig));
        }
        let found = match signers.iter().find(|(signer, _)| *signer == name) {
            Some((_, sig)) => Some(B64.decode(sig).map_err(|_| fmt("signature is not base64"))?),
            None => match signers.first() {
                Some((other, _)) => {
                    return Err(CheckpointError::WrongKey {
                        found: other.trim_start_matches("courtbox-").into(),
                        expected: key.key_id(),
                    });
                }
                None => None,
            },
        };
        let sig = found.ok_or_else(|| CheckpointError::BadSignature(key.key_id()))?;
        if sig.len() != 68 || sig[..4] != key_hash(&name, key) || !key.verify(text.as_bytes(), &sig[4..]) {
            return Err(CheckpointError::BadSignature(key.key_id()));
        }
        Self::parse_text(&text)
    }

    fn parse_text(text: &str) -> Result<Checkpoint, CheckpointError> {
        let fmt = |m: String| CheckpointError::Format(m);
        let lines: Vec<&str> = text.lines().collect();
        if lines.len() != 6 {
            return Err(fmt(format!("{} lines of text, expected 6", lines.len())));
        }
        let log = Log::from_origin(lines[0]).ok_or_else(|| fmt(format!("unknown origin {:?}", lines[0])))?;
        let size = lines[1]
            .parse::<u64>()
            .ok()
            .filter(|_| !lines[1].starts_with('+'))
            .ok_or_else(|| fmt("bad size".into()))?;
        let head: [u8; 32] = B64
            .decode(lines[2])
            .ok()
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| fmt("the hash line is not 32 base64 bytes".into()))?;
        let field = |i: usize, name: &str| {
            lines[i]
                .strip_prefix(name)
                .and_then(|v| v.strip_prefix(' '))
                .ok_or_else(|| fmt(format!("line {} is not `{name} …`", i + 1)))
        };
        let wall = WallTime::parse(field(3, "wall")?).map_err(|e| fmt(format!("wall: {e}")))?;
        let seq = field(4, "seq")?;
        let seq = seq
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| seq.parse::<u64>().ok())
            .flatten()
            .ok_or_else(|| fmt("seq is not a number".into()))?;
        let cause = Cause::parse(field(5, "cause")?).ok_or_else(|| fmt("unknown cause".into()))?;
        Ok(Checkpoint { log, size, head, wall, seq, cause })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            log: Log::Session(Uuid::nil()),
            size: 412,
            head: [7; 32],
            wall: WallTime::parse("2026-12-01T14:05:10.123Z").unwrap(),
            seq: 17,
            cause: Cause::Periodic,
        }
    }

    #[test]
    fn a_note_round_trips_and_its_text_is_exact() {
        let dir = tempfile::tempdir().unwrap();
        let key = DeviceKey::create(&dir.path().join("k")).unwrap();
        let note = checkpoint().sign(&key);
        let text = String::from_utf8(note.clone()).unwrap();
        assert!(text.starts_with(
            "courtbox/v2/checkpoint/session/00000000-0000-0000-0000-000000000000\n412\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\nwall 2026-12-01T14:05:10.123Z\nseq 17\ncause periodic\n\n\u{2014} courtbox-"
        ), "{text}");
        assert_eq!(Checkpoint::open(&note, &key.public()).unwrap(), checkpoint());
    }

    #[test]
    fn an_altered_or_foreign_note_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = DeviceKey::create(&dir.path().join("k")).unwrap();
        let other = DeviceKey::create(&dir.path().join("o")).unwrap();
        let note = String::from_utf8(checkpoint().sign(&key)).unwrap();
        let altered = note.replacen("\n412\n", "\n380\n", 1);
        assert!(matches!(Checkpoint::open(altered.as_bytes(), &key.public()), Err(CheckpointError::BadSignature(_))));
        assert!(matches!(Checkpoint::open(note.as_bytes(), &other.public()), Err(CheckpointError::WrongKey { .. })));
        assert!(matches!(Checkpoint::open(b"garbage", &key.public()), Err(CheckpointError::Format(_))));
    }
}
