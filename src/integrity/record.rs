//! What the chain is made of: the record kinds (`Entry`), the record and manifest bodies, and
//! `SignedDoc`, the stored form (canonical body bytes, then a signature line). A record's
//! `prev` is the hash of the record before it, which links the chain; a body is hashed and
//! checked exactly as it was signed, never re-serialized.

use crate::base::{MediaTime, WallTime};
use crate::config::{Role, SourceSpec};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

use super::{DeviceKey, PublicKey};

/// Version of the record body format, written into every record, manifest and audit entry.
/// Version 2 binds a context string into every signature (`Context`); version 1 signed the
/// bare body and still verifies.
pub const FORMAT_VERSION: u32 = 2;

/// What a signature is for. From format version 2 the signed message is the context label,
/// a NUL byte, then the body: a signature made for one kind of document can never be passed
/// off as another (an audit entry as a record, a record as device info).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Record,
    Manifest,
    AuditEntry,
    DeviceInfo,
    KeyRotation,
}

impl Context {
    pub fn label(self) -> &'static str {
        match self {
            Context::Record => "courtbox/v2/record",
            Context::Manifest => "courtbox/v2/manifest",
            Context::AuditEntry => "courtbox/v2/audit-entry",
            Context::DeviceInfo => "courtbox/v2/device-info",
            Context::KeyRotation => "courtbox/v2/key-rotation",
        }
    }

    /// The exact bytes a version-`v` signature covers.
    pub fn message(self, version: u32, body: &[u8]) -> std::borrow::Cow<'_, [u8]> {
        if version < 2 {
            return std::borrow::Cow::Borrowed(body);
        }
        let mut m = Vec::with_capacity(self.label().len() + 1 + body.len());
        m.extend_from_slice(self.label().as_bytes());
        m.push(0);
        m.extend_from_slice(body);
        std::borrow::Cow::Owned(m)
    }
}

/// The `v` of a signed body, read before its signature is checked (it decides which bytes
/// were signed; a wrong `v` only makes the signature fail).
pub fn body_version(body: &[u8]) -> Option<u32> {
    #[derive(Deserialize)]
    struct Versioned {
        v: u32,
    }
    serde_json::from_slice::<Versioned>(body).ok().map(|b| b.v)
}

/// The `prev` of the first record of a session.
pub const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Two consecutive segments of a source, or a segment and the start or end of recording,
/// may be this far apart without a gap record: it absorbs frame and audio-packet
/// granularity at boundaries. Anything longer must be explained by a gap record.
pub const CONTINUITY_TOLERANCE_NS: u64 = 200_000_000;

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    ring::digest::digest(&ring::digest::SHA256, bytes).as_ref().try_into().expect("32 bytes")
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha256(bytes))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Hearing {
    Open,
    Closed,
}

/// The language a hearing is held in, as sessions store it: `kk`, `ru`, `en`, or `auto`
/// (the speech model detects it). The signed `session_start` record keeps it as text, so
/// that records of any version verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Kk,
    Ru,
    En,
    Auto,
}

crate::base::text_names!(Language, UnknownLanguage, {
    Kk => "kk",
    Ru => "ru",
    En => "en",
    Auto => "auto",
});

/// A language code that is not one of [`Language::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not one of kk, ru, en, auto")]
pub struct UnknownLanguage(pub String);

/// A hearing state that is neither `open` nor `closed`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not open or closed")]
pub struct UnknownHearing(pub String);

impl std::str::FromStr for Hearing {
    type Err = UnknownHearing;
    fn from_str(s: &str) -> Result<Hearing, UnknownHearing> {
        match s {
            "open" => Ok(Hearing::Open),
            "closed" => Ok(Hearing::Closed),
            _ => Err(UnknownHearing(s.to_string())),
        }
    }
}

impl Hearing {
    pub fn as_str(self) -> &'static str {
        match self {
            Hearing::Open => "open",
            Hearing::Closed => "closed",
        }
    }
}

/// The reason of the gap records that cover a recess.
pub const RECESS_REASON: &str = "recess: the hearing was paused and nothing was recorded until it resumed";

/// Why a run of capture began.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunCause {
    /// The session was started.
    SessionStart,
    /// The daemon died (killed or crashed) while recording; same boot.
    ResumeAfterCrash,
    /// The box lost power or rebooted while recording (boot id changed).
    ResumeAfterPowerLoss,
    /// The daemon was stopped cleanly (service stop) while recording.
    ResumeAfterShutdown,
    /// The hearing resumed after a recess, during which nothing was recorded.
    ResumeAfterRecess,
}

impl RunCause {
    pub fn describe(self) -> &'static str {
        match self {
            RunCause::SessionStart => "session started",
            RunCause::ResumeAfterCrash => "recording interrupted: the daemon crashed or was killed; resumed on restart",
            RunCause::ResumeAfterPowerLoss => "recording interrupted: power loss or reboot; resumed on restart",
            RunCause::ResumeAfterShutdown => "recording interrupted: the service was stopped; resumed on restart",
            RunCause::ResumeAfterRecess => RECESS_REASON,
        }
    }
}

/// Where a caption came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptionOrigin {
    /// Transcribed while the hearing was recorded.
    Live,
    /// Transcribed later from the committed audio (live transcription fell behind, or the
    /// model was missing).
    Backlog,
}

impl CaptionOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            CaptionOrigin::Live => "live",
            CaptionOrigin::Backlog => "backlog",
        }
    }
}

/// A speech model, by its name and the SHA-256 of its weights file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelRef {
    pub name: String,
    pub sha256: String,
}

impl std::fmt::Display for ModelRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let short = self.sha256.get(..12).unwrap_or(&self.sha256);
        write!(f, "{} (SHA-256 {short}…)", self.name)
    }
}

/// One final caption.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptionItem {
    pub media_start: MediaTime,
    pub media_end: MediaTime,
    /// When the caption was produced.
    pub wall: WallTime,
    pub text: String,
    /// Mean token probability, per mille.
    pub confidence: u16,
    /// Produced well after the speech (transcription was behind).
    pub delayed: bool,
}

/// How a network track's timestamps were placed on the box's clock when a segment closed
/// (record-format.md, the `segment` record's `timing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SenderTiming {
    pub basis: TimingBasis,
    /// The correction applied to the arrival times, in ms: negative when frames are placed
    /// earlier than they arrived (the sender's capture-to-arrival delay, plus any difference
    /// between its clock and the box's). 0 by arrival. The last one accepted: a later report
    /// asking for more than 1 s, or for a later placement, leaves it as it was.
    pub correction_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimingBasis {
    /// A correction from the sender's RTCP sender reports (its NTP clock) is applied.
    SenderClock,
    /// Each frame is placed where it arrived: no report accepted yet (none sent, SRT and
    /// RTMP, or only corrections the box refuses).
    Arrival,
}

/// What a record states. Each variant is one kind of entry in the session chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Entry {
    SessionStart {
        court: String,
        room: String,
        case: String,
        title: String,
        language: String,
        hearing: Hearing,
        profile: String,
        segment_ns: u64,
        sources: Vec<SourceSpec>,
    },
    /// Capture (re)started; every listed source is expected to record from `media` on.
    RunStart {
        run: u32,
        cause: RunCause,
        media: MediaTime,
        boot_id: String,
        sources: Vec<String>,
    },
    /// A sealed media file. `file` is relative to the session folder.
    Segment {
        source: String,
        seq: u64,
        file: String,
        media_start: MediaTime,
        media_end: MediaTime,
        wall_start: WallTime,
        bytes: u64,
        sha256: String,
        /// Found in the spool after a crash rather than closed normally.
        recovered: bool,
        /// Network sources only: how the segment's timestamps were placed (absent for the
        /// box's own cameras and microphones, and for segments recovered after a crash).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timing: Option<SenderTiming>,
    },
    /// An interval a source did not record, and why.
    Gap {
        source: String,
        media_start: MediaTime,
        media_end: MediaTime,
        reason: String,
    },
    Mark {
        media: MediaTime,
        text: String,
        /// Who set the mark (absent in records written before marks named their author).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// The hearing was paused: every device finalized its segment and capture stopped.
    Recess {
        media: MediaTime,
        by: String,
    },
    /// The hearing resumed; a `run_start` with cause `resume_after_recess` follows.
    RecessEnd {
        media: MediaTime,
        by: String,
    },
    /// The broadcast's privacy mute was switched on or off (the record is never muted).
    PrivacyMute {
        media: MediaTime,
        muted: bool,
        by: String,
        /// A mute blanks the broadcast from here (`media` minus the configured rewind), so
        /// that what was said just before the button was pressed never goes out. Absent in
        /// records written before the broadcast existed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        blanked_from: Option<MediaTime>,
    },
    /// The hearing was declared open or closed to the public; closing it ends any broadcast.
    HearingAccess {
        media: MediaTime,
        hearing: Hearing,
        by: String,
    },
    /// The live broadcast started: what is published, and how far behind real time.
    BroadcastStart {
        media: MediaTime,
        by: String,
        outputs: Vec<String>,
        delay_ms: u64,
        rewind_ms: u64,
    },
    /// The live broadcast ended, and why (stopped, hearing closed, session stopped).
    BroadcastStop {
        media: MediaTime,
        by: String,
        reason: String,
    },
    /// Someone asked for a broadcast that policy does not allow.
    BroadcastRefused {
        media: MediaTime,
        by: String,
        reason: String,
    },
    /// A batch of final captions of one microphone. A later transcription names the
    /// `captions_behind` record it resolves (`backlog_of`), even when it found no speech.
    Captions {
        source: String,
        role: Option<Role>,
        language: String,
        origin: CaptionOrigin,
        backlog_of: Option<u64>,
        items: Vec<CaptionItem>,
        /// The speech model that wrote them (absent in records older than this field).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<ModelRef>,
    },
    /// An interval of a microphone without captions, and why: live transcription could
    /// not keep up, the model was missing or not good enough for the language, or what the
    /// model wrote was not speech ("not transcribed: …"). A later transcription resolves
    /// it with captions of origin `backlog`.
    CaptionsBehind {
        source: String,
        media_start: MediaTime,
        media_end: MediaTime,
        reason: String,
        /// The model that tried and whose output was rejected, if one did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<ModelRef>,
    },
    /// From `media` on, this run gives the microphone no live captions: the installed model
    /// is not good enough for its language. Its audio is recorded as always; the interval is
    /// stated by a `captions_behind` record when the run ends.
    CaptionsOff {
        source: String,
        language: String,
        media: MediaTime,
        reason: String,
        model: ModelRef,
    },
    /// The wall clock moved by `delta_ms` more than the monotonic clock (NTP step, RTC reset).
    ClockJump {
        media: MediaTime,
        delta_ms: i64,
    },
    SessionStop {
        media: MediaTime,
    },
}

impl Entry {
    /// The stored name of the record kind (`records.kind`), e.g. `gap`.
    pub fn kind(&self) -> &'static str {
        self.record_kind().as_str()
    }

    pub fn record_kind(&self) -> RecordKind {
        match self {
            Entry::SessionStart { .. } => RecordKind::SessionStart,
            Entry::RunStart { .. } => RecordKind::RunStart,
            Entry::Segment { .. } => RecordKind::Segment,
            Entry::Gap { .. } => RecordKind::Gap,
            Entry::Mark { .. } => RecordKind::Mark,
            Entry::Recess { .. } => RecordKind::Recess,
            Entry::RecessEnd { .. } => RecordKind::RecessEnd,
            Entry::PrivacyMute { .. } => RecordKind::PrivacyMute,
            Entry::HearingAccess { .. } => RecordKind::HearingAccess,
            Entry::BroadcastStart { .. } => RecordKind::BroadcastStart,
            Entry::BroadcastStop { .. } => RecordKind::BroadcastStop,
            Entry::BroadcastRefused { .. } => RecordKind::BroadcastRefused,
            Entry::Captions { .. } => RecordKind::Captions,
            Entry::CaptionsBehind { .. } => RecordKind::CaptionsBehind,
            Entry::CaptionsOff { .. } => RecordKind::CaptionsOff,
            Entry::ClockJump { .. } => RecordKind::ClockJump,
            Entry::SessionStop { .. } => RecordKind::SessionStop,
        }
    }
}

/// The kind of a record, one per [`Entry`] variant; `as_str` is what the ledger's
/// `records.kind` column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    SessionStart,
    RunStart,
    Segment,
    Gap,
    Mark,
    Recess,
    RecessEnd,
    PrivacyMute,
    HearingAccess,
    BroadcastStart,
    BroadcastStop,
    BroadcastRefused,
    Captions,
    CaptionsBehind,
    CaptionsOff,
    ClockJump,
    SessionStop,
}

crate::base::text_names!(RecordKind, UnknownRecordKind, {
    SessionStart => "session_start",
    RunStart => "run_start",
    Segment => "segment",
    Gap => "gap",
    Mark => "mark",
    Recess => "recess",
    RecessEnd => "recess_end",
    PrivacyMute => "privacy_mute",
    HearingAccess => "hearing_access",
    BroadcastStart => "broadcast_start",
    BroadcastStop => "broadcast_stop",
    BroadcastRefused => "broadcast_refused",
    Captions => "captions",
    CaptionsBehind => "captions_behind",
    CaptionsOff => "captions_off",
    ClockJump => "clock_jump",
    SessionStop => "session_stop",
});

/// A `records.kind` value this courtbox does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a record kind")]
pub struct UnknownRecordKind(pub String);

/// A record of the session chain. `prev` is the SHA-256 of the previous record's body
/// (across all sources, in commit order), so no record can be removed, inserted or
/// reordered without breaking every later link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordBody {
    pub v: u32,
    pub session: Uuid,
    pub index: u64,
    pub prev: String,
    /// Key id of the device key that signs the chain.
    pub device: String,
    pub wall: WallTime,
    pub entry: Entry,
}

/// The `captions_behind` records of a chain that no `captions` record resolves (through its
/// `backlog_of`) yet: speech announced to be transcribed later and still waiting. The
/// speech service queues them; `verify` calls a sealed chain with any left `INCOMPLETE`.
pub fn unresolved_captions_behind<'a, I>(records: I) -> Vec<&'a RecordBody>
where
    I: IntoIterator<Item = &'a RecordBody>,
    I::IntoIter: Clone,
{
    let records = records.into_iter();
    let resolved: std::collections::HashSet<u64> = records
        .clone()
        .filter_map(|r| match &r.entry {
            Entry::Captions { backlog_of: Some(k), .. } => Some(*k),
            _ => None,
        })
        .collect();
    records.filter(|r| matches!(r.entry, Entry::CaptionsBehind { .. }) && !resolved.contains(&r.index)).collect()
}

/// Signed summary of a closed session: the hash of every record in order. Revision 1 is
/// written at stop; captions transcribed afterwards are sealed by revisions 2, 3, ... (each
/// covering the whole chain), and earlier revisions are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestBody {
    pub v: u32,
    pub session: Uuid,
    pub revision: u32,
    pub device: String,
    pub closed: WallTime,
    pub records: u64,
    pub head: String,
    pub record_hashes: Vec<String>,
}

#[derive(Debug, Error)]
pub enum SignedDocError {
    #[error("not a signed document: {0}")]
    Format(String),
    #[error("signature does not verify with the device key")]
    BadSignature,
    #[error("signed by key {found}, expected device key {expected}")]
    WrongKey { found: String, expected: String },
    #[error("body is not a valid record: {0}")]
    Body(String),
    #[error("format version {} is not one this courtbox knows (1 or 2)", .0.map_or("(none)".to_string(), |v| v.to_string()))]
    UnknownVersion(Option<u32>),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureLine {
    alg: String,
    key: String,
    sig: String,
}

/// A signed JSON document as stored on disk: canonical body bytes, newline, signature line.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedDoc {
    pub body: Vec<u8>,
    pub signature: [u8; 64],
    pub key_id: String,
}

impl SignedDoc {
    /// Signs a body under the current format (its `v` must be `FORMAT_VERSION`).
    pub fn sign<T: Serialize>(body: &T, key: &DeviceKey, context: Context) -> SignedDoc {
        Self::sign_as(body, key, context, FORMAT_VERSION)
    }

    /// Signs as format `version` would. Version 1 exists only to make v1 documents for the
    /// tests and tools that check that v1 keeps verifying.
    pub fn sign_as<T: Serialize>(body: &T, key: &DeviceKey, context: Context, version: u32) -> SignedDoc {
        let body = serde_json::to_vec(body).expect("record bodies serialize");
        let signature = key.sign(&context.message(version, &body));
        SignedDoc { body, signature, key_id: key.public().key_id() }
    }

    pub fn hash(&self) -> [u8; 32] {
        sha256(&self.body)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let line = SignatureLine { alg: "ed25519".into(), key: self.key_id.clone(), sig: B64.encode(self.signature) };
        let mut out = self.body.clone();
        out.push(b'\n');
        out.extend_from_slice(&serde_json::to_vec(&line).expect("serializes"));
        out.push(b'\n');
        out
    }

    pub fn parse(bytes: &[u8]) -> Result<SignedDoc, SignedDocError> {
        let nl =
            bytes.iter().position(|&b| b == b'\n').ok_or_else(|| SignedDocError::Format("no signature line".into()))?;
        let (body, rest) = (&bytes[..nl], &bytes[nl + 1..]);
        let rest = rest.strip_suffix(b"\n").unwrap_or(rest);
        let line: SignatureLine =
            serde_json::from_slice(rest).map_err(|e| SignedDocError::Format(format!("signature line: {e}")))?;
        if line.alg != "ed25519" {
            return Err(SignedDocError::Format(format!("unknown signature algorithm {:?}", line.alg)));
        }
        let sig = B64.decode(line.sig.as_bytes()).map_err(|e| SignedDocError::Format(format!("signature: {e}")))?;
        let signature: [u8; 64] =
            sig.try_into().map_err(|_| SignedDocError::Format("signature is not 64 bytes".into()))?;
        Ok(SignedDoc { body: body.to_vec(), signature, key_id: line.key })
    }

    /// Checks the signature with the trusted key, then decodes the body.
    pub fn open<T: for<'de> Deserialize<'de>>(&self, key: &PublicKey, context: Context) -> Result<T, SignedDocError> {
        if self.key_id != key.key_id() {
            return Err(SignedDocError::WrongKey { found: self.key_id.clone(), expected: key.key_id() });
        }
        check_signature(key, context, &self.body, &self.signature)?;
        serde_json::from_slice(&self.body).map_err(|e| SignedDocError::Body(e.to_string()))
    }

    /// The format version the body declares (unverified until `open` succeeds).
    pub fn version(&self) -> Option<u32> {
        body_version(&self.body)
    }
}

/// Checks a signature over a body as its declared format version signed it; returns the
/// version.
pub fn check_signature(
    key: &PublicKey,
    context: Context,
    body: &[u8],
    signature: &[u8],
) -> Result<u32, SignedDocError> {
    let version = match body_version(body) {
        Some(v @ 1..=FORMAT_VERSION) => v,
        other => return Err(SignedDocError::UnknownVersion(other)),
    };
    if key.verify(&context.message(version, body), signature) { Ok(version) } else { Err(SignedDocError::BadSignature) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_kinds_read_back_from_their_stored_names() {
        for kind in RecordKind::ALL {
            assert_eq!(kind.as_str().parse::<RecordKind>(), Ok(kind));
        }
        for language in Language::ALL {
            assert_eq!(language.as_str().parse::<Language>(), Ok(language));
            assert_eq!(serde_json::to_value(language).unwrap(), language.as_str());
        }
        assert_eq!("xx".parse::<Language>().unwrap_err().to_string(), "\"xx\" is not one of kk, ru, en, auto");
    }
    use proptest::prelude::*;

    fn body(entry: Entry) -> RecordBody {
        RecordBody {
            v: FORMAT_VERSION,
            session: Uuid::nil(),
            index: 0,
            prev: ZERO_HASH.into(),
            device: "abcd".into(),
            wall: WallTime::from_unix_nanos(1_700_000_000_000_000_000),
            entry,
        }
    }

    #[test]
    fn record_encoding_is_stable() {
        let b = body(Entry::Mark { media: MediaTime(5), text: "Witness sworn in".into(), by: None });
        let json = String::from_utf8(serde_json::to_vec(&b).unwrap()).unwrap();
        assert_eq!(
            json,
            r#"{"v":2,"session":"00000000-0000-0000-0000-000000000000","index":0,"prev":"0000000000000000000000000000000000000000000000000000000000000000","device":"abcd","wall":"2023-11-14T22:13:20.000Z","entry":{"kind":"mark","media":5,"text":"Witness sworn in"}}"#
        );
    }

    #[test]
    fn a_v1_document_verifies_as_v1_and_cannot_be_relabelled_v2() {
        let dir = tempfile::tempdir().unwrap();
        let key = DeviceKey::create(&dir.path().join("k")).unwrap();
        let mut b = body(Entry::Mark { media: MediaTime(5), text: "sworn".into(), by: None });
        b.v = 1;
        let v1 = SignedDoc::sign_as(&b, &key, Context::Record, 1);
        assert_eq!(check_signature(&key.public(), Context::Record, &v1.body, &v1.signature).unwrap(), 1);
        // v1 signed the bare body, so the context does not matter there; a body edited to
        // claim v2 no longer matches its signature.
        let relabelled = String::from_utf8(v1.body.clone()).unwrap().replacen("\"v\":1", "\"v\":2", 1);
        assert!(check_signature(&key.public(), Context::Record, relabelled.as_bytes(), &v1.signature).is_err());
        let mut b3 = b.clone();
        b3.v = 3;
        let v3 = SignedDoc::sign_as(&b3, &key, Context::Record, 2);
        assert!(matches!(
            check_signature(&key.public(), Context::Record, &v3.body, &v3.signature),
            Err(SignedDocError::UnknownVersion(Some(3)))
        ));
    }

    proptest! {
        #[test]
        fn signed_records_round_trip_and_any_flipped_bit_is_caught(
            text in ".{0,200}", media in any::<u64>(), flip in any::<prop::sample::Index>(), bit in 0u8..8
        ) {
            let dir = tempfile::tempdir().unwrap();
            let key = DeviceKey::create(&dir.path().join("k")).unwrap();
            let b = body(Entry::Mark { media: MediaTime(media), text, by: None });
            let doc = SignedDoc::sign(&b, &key, Context::Record);
            let parsed = SignedDoc::parse(&doc.to_bytes()).unwrap();
            prop_assert_eq!(&parsed, &doc);
            prop_assert_eq!(parsed.open::<RecordBody>(&key.public(), Context::Record).unwrap(), b);
            // The same signature does not make it another kind of document.
            prop_assert!(parsed.open::<RecordBody>(&key.public(), Context::AuditEntry).is_err());

            let mut tampered = doc.clone();
            let i = flip.index(tampered.body.len());
            tampered.body[i] ^= 1 << bit;
            prop_assert!(tampered.open::<RecordBody>(&key.public(), Context::Record).is_err());
        }
    }
}
