//! The audit chain: every user action on the box (and every refused attempt), hash-chained
//! and signed like the record, so that an auditor can tell that none was altered, removed
//! or inserted afterwards.

use super::record::check_signature;
use super::{Context, DeviceKey, FORMAT_VERSION, PublicKey, SignedDoc, ZERO_HASH, sha256_hex};
use crate::base::WallTime;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditBody {
    pub v: u32,
    pub index: u64,
    /// SHA-256 of the previous entry's body (zeros for the first).
    pub prev: String,
    pub device: String,
    pub wall: WallTime,
    /// Who acted, as far as the box could tell (`technician (API token)`, `anonymous`).
    pub actor: String,
    pub role: String,
    /// What was asked, e.g. `POST /api/v1/sessions`.
    pub action: String,
    /// How the box answered, with the HTTP status.
    pub outcome: AuditOutcome,
    pub status: u16,
}

/// How the box answered an action; signed as `ok`, `refused` or `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditOutcome {
    /// A 2xx answer.
    Ok,
    /// Not signed in, not allowed, or too many attempts (401, 403, 429).
    Refused,
    /// Any other answer.
    Failed,
}

impl AuditOutcome {
    pub fn of_status(status: u16) -> AuditOutcome {
        match status {
            200..=299 => AuditOutcome::Ok,
            401 | 403 | 429 => AuditOutcome::Refused,
            _ => AuditOutcome::Failed,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Ok => "ok",
            AuditOutcome::Refused => "refused",
            AuditOutcome::Failed => "failed",
        }
    }
}

impl std::fmt::Display for AuditOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// The body of the next entry after `prev` (None for the first).
pub fn next_entry(
    key: &DeviceKey,
    prev: Option<(u64, &[u8])>,
    wall: WallTime,
    actor: &str,
    role: &str,
    action: &str,
    status: u16,
) -> SignedDoc {
    let body = AuditBody {
        v: FORMAT_VERSION,
        index: prev.map_or(0, |(i, _)| i + 1),
        prev: prev.map_or_else(|| ZERO_HASH.to_string(), |(_, b)| sha256_hex(b)),
        device: key.public().key_id(),
        wall,
        actor: actor.into(),
        role: role.into(),
        action: action.into(),
        outcome: AuditOutcome::of_status(status),
        status,
    };
    SignedDoc::sign(&body, key, Context::AuditEntry)
}

/// A stored audit entry: its body exactly as signed, and the signature.
pub type SignedEntry = (Vec<u8>, [u8; 64]);

/// Checks an audit chain (bodies and signatures in stored order); one message per fault,
/// each naming the entry.
pub fn verify_audit(entries: &[SignedEntry], key: &PublicKey) -> Vec<String> {
    let mut faults = Vec::new();
    let mut prev_hash = ZERO_HASH.to_string();
    for (position, (body, signature)) in entries.iter().enumerate() {
        let name = format!("audit entry #{position}");
        if let Err(e) = check_signature(key, Context::AuditEntry, body, signature) {
            faults.push(format!("{name}: bad signature (altered or not made by this device): {e}"));
        }
        match serde_json::from_slice::<AuditBody>(body) {
            Ok(b) => {
                if b.index != position as u64 {
                    faults.push(format!(
                        "{name}: says it is entry #{} (entries removed, inserted or reordered)",
                        b.index
                    ));
                }
                if b.prev != prev_hash {
                    faults.push(format!("{name}: does not follow the entry before it (chain broken)"));
                }
            }
            Err(e) => faults.push(format!("{name}: does not decode: {e}")),
        }
        prev_hash = sha256_hex(body);
    }
    faults
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_verifies_and_each_fault_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let key = DeviceKey::create(&dir.path().join("k")).unwrap();
        let wall = WallTime::parse("2026-11-23T09:00:00Z").unwrap();
        let mut entries: Vec<SignedEntry> = Vec::new();
        for (i, action) in
            ["POST /api/v1/sessions", "POST /api/v1/sessions/current/marks", "POST /x"].iter().enumerate()
        {
            let prev = entries.last().map(|(b, _)| (i as u64 - 1, b.as_slice()));
            let doc = next_entry(&key, prev, wall, "technician (API token)", "technician", action, 200);
            entries.push((doc.body, doc.signature));
        }
        assert!(verify_audit(&entries, &key.public()).is_empty());

        let mut altered = entries.clone();
        let text = String::from_utf8(altered[1].0.clone()).unwrap().replace("marks", "marx");
        altered[1].0 = text.into_bytes();
        let faults = verify_audit(&altered, &key.public());
        assert!(faults.iter().any(|f| f.starts_with("audit entry #1: bad signature")), "{faults:?}");
        assert!(faults.iter().any(|f| f.starts_with("audit entry #2: does not follow")), "{faults:?}");

        let mut removed = entries.clone();
        removed.remove(1);
        let faults = verify_audit(&removed, &key.public());
        assert!(faults.iter().any(|f| f.starts_with("audit entry #1: says it is entry #2")), "{faults:?}");
    }
}
