//! Trust anchors: what a verifier trusts to say which key is the device's. A record only
//! proves that it was signed by *some* key; `verify` says VERIFIED only when that key is
//! vouched for from outside the record: a key file, its fingerprint, or the court's trust
//! list of registered device keys with the interval each was valid in.

use super::PublicKey;
use crate::base::WallTime;
use serde::Deserialize;
use std::path::Path;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TrustError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("{path}: {source}")]
    List { path: String, source: TrustListError },
    #[error("{0:?} is not a key fingerprint: give SHA256: and 64 hex digits (as `courtbox provision` prints it)")]
    BadFingerprint(String),
}

/// What is wrong with the text of a trust list.
#[derive(Debug, Error)]
pub enum TrustListError {
    #[error("{0}")]
    Toml(#[from] toml::de::Error),
    #[error("device #{n}: {source}")]
    BadKey { n: usize, source: super::KeyError },
    #[error("device #{n}: {what} {text:?} is not an RFC 3339 time: {source}")]
    BadTime { n: usize, what: &'static str, text: String, source: time::error::Parse },
    #[error("the trust list names no device key ([[device]] entries)")]
    NoKeys,
}

/// `SHA256:` and the hex digest of the raw public key, in groups of four.
pub fn fingerprint(public: &PublicKey) -> String {
    let hex = super::sha256_hex(&public.0);
    let groups: Vec<&str> = hex.as_bytes().chunks(4).map(|c| std::str::from_utf8(c).expect("hex")).collect();
    format!("SHA256:{}", groups.join(":"))
}

/// A fingerprint as given on the command line: `SHA256:` then 64 hex digits, with or
/// without the `:` separators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint(pub String);

impl std::str::FromStr for Fingerprint {
    type Err = TrustError;
    fn from_str(s: &str) -> Result<Fingerprint, TrustError> {
        let hex: String = s
            .trim()
            .strip_prefix("SHA256:")
            .ok_or_else(|| TrustError::BadFingerprint(s.into()))?
            .chars()
            .filter(|c| *c != ':')
            .collect::<String>()
            .to_ascii_lowercase();
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TrustError::BadFingerprint(s.into()));
        }
        Ok(Fingerprint(hex))
    }
}

impl Fingerprint {
    pub fn matches(&self, key: &PublicKey) -> bool {
        super::sha256_hex(&key.0) == self.0
    }
    /// The key id (first 16 hex digits of the same digest) of the key it names.
    pub fn key_id(&self) -> &str {
        &self.0[..16]
    }
}

/// One registered device key and when it was the device's key.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    pub key: PublicKey,
    pub court: Option<String>,
    pub room: Option<String>,
    pub valid_from: Option<WallTime>,
    /// When it was replaced (`provision --force`) or revoked; open when absent.
    pub valid_until: Option<WallTime>,
}

impl TrustedKey {
    /// Whether `at` is inside the key's validity interval.
    pub fn valid_at(&self, at: WallTime) -> bool {
        self.valid_from.is_none_or(|f| at >= f) && self.valid_until.is_none_or(|u| at < u)
    }
    pub fn describe_interval(&self) -> String {
        let from = self.valid_from.map(|w| w.to_string()).unwrap_or_else(|| "the beginning".into());
        let until = self.valid_until.map(|w| w.to_string()).unwrap_or_else(|| "now".into());
        format!("valid from {from} until {until}")
    }
}

/// The court's list of registered device keys (`--trusted-keys FILE`, TOML):
///
/// ```toml
/// [[device]]
/// key = """-----BEGIN PUBLIC KEY-----
/// MCowBQYDK2VwAyEA...
/// -----END PUBLIC KEY-----"""
/// court = "almaty-district-2"
/// room = "room-1"
/// valid_from = "2026-01-10T08:00:00Z"
/// valid_until = "2026-11-30T17:00:00Z"   # absent while the key is in use
/// ```
#[derive(Debug, Clone, Default)]
pub struct TrustList {
    pub keys: Vec<TrustedKey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListFile {
    #[serde(default)]
    device: Vec<ListEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListEntry {
    key: String,
    court: Option<String>,
    room: Option<String>,
    valid_from: Option<String>,
    valid_until: Option<String>,
}

impl TrustList {
    pub fn read(path: &Path) -> Result<TrustList, TrustError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| TrustError::File { path: path.display().to_string(), message: e.to_string() })?;
        Self::parse(&text).map_err(|source| TrustError::List { path: path.display().to_string(), source })
    }

    pub fn parse(text: &str) -> Result<TrustList, TrustListError> {
        let file: ListFile = toml::from_str(text)?;
        let time = |n: usize, what: &'static str, t: &Option<String>| -> Result<Option<WallTime>, TrustListError> {
            t.as_deref()
                .map(|t| {
                    WallTime::parse(t).map_err(|source| TrustListError::BadTime {
                        n,
                        what,
                        text: t.to_string(),
                        source,
                    })
                })
                .transpose()
        };
        let mut keys = Vec::new();
        for (n, e) in file.device.iter().enumerate() {
            let key = PublicKey::from_pem(&e.key).map_err(|source| TrustListError::BadKey { n, source })?;
            keys.push(TrustedKey {
                key,
                court: e.court.clone(),
                room: e.room.clone(),
                valid_from: time(n, "valid_from", &e.valid_from)?,
                valid_until: time(n, "valid_until", &e.valid_until)?,
            });
        }
        if keys.is_empty() {
            return Err(TrustListError::NoKeys);
        }
        Ok(TrustList { keys })
    }

    pub fn by_key_id(&self, key_id: &str) -> Option<&TrustedKey> {
        self.keys.iter().find(|k| k.key.key_id() == key_id)
    }

    /// The list as TOML, in the form `parse` reads.
    pub fn to_toml(&self) -> String {
        let mut out = String::from("# Registered courtbox device keys and when each was valid.\n");
        for k in &self.keys {
            out.push_str(&format!("\n[[device]]\n# {}\nkey = \"\"\"\n{}\"\"\"\n", fingerprint(&k.key), k.key.to_pem()));
            let line =
                |name: &str, v: &Option<String>| v.as_ref().map(|v| format!("{name} = {v:?}\n")).unwrap_or_default();
            out.push_str(&line("court", &k.court));
            out.push_str(&line("room", &k.room));
            out.push_str(&line("valid_from", &k.valid_from.map(|w| w.to_rfc3339())));
            out.push_str(&line("valid_until", &k.valid_until.map(|w| w.to_rfc3339())));
        }
        out
    }
}

/// What `verify` trusts for the device key.
#[derive(Debug, Clone, Default)]
pub enum TrustAnchor {
    /// Nothing: every check still runs, but the verdict can only be UNTRUSTED KEY.
    #[default]
    None,
    /// `--key FILE`: the device's registered public key.
    Key(PublicKey),
    /// `--fingerprint SHA256:…`: the key comes from the folder or the store's registration,
    /// and must have this fingerprint.
    Fingerprint(Fingerprint),
    /// `--trusted-keys FILE`.
    List(TrustList),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_with_or_without_separators() {
        let dir = tempfile::tempdir().unwrap();
        let key = super::super::DeviceKey::create(&dir.path().join("k")).unwrap().public();
        let printed = fingerprint(&key);
        let fp: Fingerprint = printed.parse().unwrap();
        assert!(fp.matches(&key));
        assert_eq!(fp.key_id(), key.key_id());
        let bare: Fingerprint = printed.replace(':', "").replacen("SHA256", "SHA256:", 1).parse().unwrap();
        assert_eq!(bare, fp);
        assert!("SHA256:abcd".parse::<Fingerprint>().is_err());
        assert!(key.key_id().parse::<Fingerprint>().is_err());
    }

    #[test]
    fn a_trust_list_round_trips_and_intervals_are_half_open() {
        let dir = tempfile::tempdir().unwrap();
        let key = super::super::DeviceKey::create(&dir.path().join("k")).unwrap().public();
        let from = WallTime::parse("2026-01-01T00:00:00Z").unwrap();
        let until = WallTime::parse("2026-06-01T00:00:00Z").unwrap();
        let list = TrustList {
            keys: vec![TrustedKey {
                key,
                court: Some("c".into()),
                room: Some("r".into()),
                valid_from: Some(from),
                valid_until: Some(until),
            }],
        };
        let again = TrustList::parse(&list.to_toml()).unwrap();
        let k = again.by_key_id(&key.key_id()).unwrap();
        assert!(k.valid_at(from));
        assert!(!k.valid_at(until));
        assert!(!k.valid_at(WallTime::parse("2025-12-31T23:59:59Z").unwrap()));
        assert!(matches!(TrustList::parse(""), Err(TrustListError::NoKeys)));
        assert!(TrustList::parse("[[device]]\nkey = \"x\"\n").is_err());
    }
}
