//! Offline verification of a session folder (an export, the local store, or a central
//! copy): every signature, every chain link, every media byte, and continuity of every
//! source. It names each fault precisely and keeps going, so one run lists all of them.

use super::layout;
use super::record::{
    CONTINUITY_TOLERANCE_NS, CaptionOrigin, Context, Entry, ManifestBody, ModelRef, RecordBody, SignedDoc, ZERO_HASH,
};
use super::trust::{Fingerprint, TrustAnchor, TrustList, fingerprint};
use super::{PublicKey, SignedDocError};
use crate::base::MediaTime;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    /// No usable key, or the folder's key is not the trusted one.
    Key,
    /// A file that should be a signed record or manifest cannot be parsed.
    Unreadable,
    BadSignature,
    /// A record taken from another session.
    ForeignRecord,
    /// A record file holds a record of another position in the chain.
    Reordered,
    MissingRecord,
    /// A record's `prev` is not the hash of the record before it.
    ChainBroken,
    MissingSegment,
    Truncated,
    AlteredBytes,
    UnexplainedGap,
    Manifest,
    Structure,
    /// A checkpoint (in the folder or in the central store) disagrees with the chain, or a
    /// timestamp token does not verify.
    Witness,
    /// The folder or URL the session sits under names another court, room or session.
    Misplaced,
    /// `--strict`: the folder holds files that are not part of the record.
    NotPartOfRecord,
}

impl FaultKind {
    pub fn label(self) -> &'static str {
        match self {
            FaultKind::Key => "key",
            FaultKind::Unreadable => "unreadable",
            FaultKind::BadSignature => "bad signature",
            FaultKind::ForeignRecord => "foreign record",
            FaultKind::Reordered => "reordered",
            FaultKind::MissingRecord => "missing record",
            FaultKind::ChainBroken => "chain broken",
            FaultKind::MissingSegment => "missing segment",
            FaultKind::Truncated => "truncated",
            FaultKind::AlteredBytes => "altered bytes",
            FaultKind::UnexplainedGap => "unexplained gap",
            FaultKind::Manifest => "manifest",
            FaultKind::Structure => "structure",
            FaultKind::Witness => "witness",
            FaultKind::Misplaced => "misplaced",
            FaultKind::NotPartOfRecord => "not part of the record",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    pub message: String,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FAIL [{}] {}", self.kind.label(), self.message)
    }
}

/// Why a chain is not known to be complete, each with its explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Open {
    /// No closing manifest and no session stop: still recording, or its end was cut off.
    /// The only reason `--allow-open` excuses.
    NotSealed(String),
    /// The chain announces records that are not there (captions transcribed later).
    Announced(String),
    /// Records that no checkpoint in the central store covers (not uploaded yet, or made
    /// after the store was cut off).
    Unwitnessed(String),
}

impl Open {
    pub fn describe(&self) -> &str {
        match self {
            Open::NotSealed(s) | Open::Announced(s) | Open::Unwitnessed(s) => s,
        }
    }
}

/// What `verify` concludes, in order of precedence, and its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every check passed, the key is vouched for, and the chain is sealed.
    Verified,
    /// As `Verified`, for a session still recording (`--allow-open`): the records so far.
    VerifiedOpen,
    /// At least one fault.
    NotVerified,
    /// No fault, but no trust anchor vouches for the key that signed it.
    UntrustedKey,
    /// No fault, but the chain is not sealed (no closing manifest) or announces something
    /// that is not there: its end could have been cut off.
    Incomplete,
}

impl Verdict {
    /// 0 verified, 1 not verified, 3 untrusted key, 4 incomplete (2 is a usage error).
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Verified | Verdict::VerifiedOpen => 0,
            Verdict::NotVerified => 1,
            Verdict::UntrustedKey => 3,
            Verdict::Incomplete => 4,
        }
    }
}

/// How to verify: the trust anchor, and what else to check against.
#[derive(Default)]
pub struct VerifyOptions<'a> {
    pub anchor: TrustAnchor,
    /// Accept a chain without its closing manifest (a session known to be recording).
    pub allow_open: bool,
    /// The central copy of the session (`--against`): its checkpoints are compared with
    /// this folder's chain.
    pub against: Option<&'a dyn SessionFolder>,
    /// The pinned TSA, to check timestamp tokens and state attested times.
    pub tsa: Option<&'a crate::witness::tsa::TsaPin>,
    /// A box clock further than this from the TSA's is flagged.
    pub clock_tolerance_s: u64,
    /// Where the folder sits: checked against the court, room and session of its chain.
    pub placement: Placement,
    /// Files that are not part of the record (derived, unreferenced) are a fault, not a list.
    pub strict: bool,
}

/// Where a session folder sits, as far as that names the session it should hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Placement {
    /// Not said (a caller verifying something it made itself).
    #[default]
    Unknown,
    /// A folder on this machine, by its name. An export named by a session id (as
    /// `scripts/demo` names them) must hold that session; another name says nothing.
    Folder(String),
    /// A store URL, `…/{court}/{room}/{session}` as central storage lays sessions out: the
    /// last three parts of its path (after the bucket, for s3://), where it has them.
    Store { url: String, court: Option<String>, room: Option<String>, session: Option<String> },
}

impl Placement {
    /// The placement of a local folder: its own name, `.` and `..` resolved.
    pub fn of_folder(path: &Path) -> Placement {
        let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        match real.file_name() {
            Some(name) => Placement::Folder(name.to_string_lossy().into_owned()),
            None => Placement::Unknown,
        }
    }

    /// The placement of a store URL (`s3://bucket/prefix/court/room/session`,
    /// `file:///folder/court/room/session`).
    pub fn of_url(url: &str) -> Placement {
        let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
        let mut parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
        if scheme == "s3" && !parts.is_empty() {
            parts.remove(0);
        }
        let mut last = parts.iter().rev().map(|p| Some(p.to_string()));
        let session = last.next().flatten();
        let room = last.next().flatten();
        let court = last.next().flatten();
        Placement::Store { url: url.to_string(), court, room, session }
    }
}

#[derive(Debug, Default)]
pub struct Report {
    pub folder: String,
    pub session: Option<Uuid>,
    pub key_id: Option<String>,
    /// Format version of the chain (1 or 2).
    pub format_version: Option<u32>,
    /// What vouches for the key; `None`: nothing does.
    pub trusted_by: Option<String>,
    /// Why the chain is not known to be complete.
    pub open: Vec<Open>,
    pub allow_open: bool,
    /// What the checkpoints and timestamps say (one line each).
    pub witness: Vec<String>,
    pub records: u64,
    pub segments: u64,
    pub gaps: u64,
    pub media_bytes: u64,
    pub closed: bool,
    pub faults: Vec<Fault>,
    pub notes: Vec<String>,
    /// What each source recorded: completeness, which is not integrity.
    pub coverage: Vec<SourceCoverage>,
    /// Files that are not part of the record, the first `MAX_LISTED` of them.
    pub unverified: Vec<(String, NotInRecord)>,
    /// How many files are not part of the record, listed or not.
    pub unverified_total: u64,
}

/// Why a file in a session folder is not part of the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotInRecord {
    /// Made from the record for people (`playable/`, caption files, `README.txt`).
    Derived,
    /// Anything else: media no record names, a stray file.
    Unreferenced,
}

impl NotInRecord {
    pub fn describe(self) -> &'static str {
        match self {
            NotInRecord::Derived => "derived",
            NotInRecord::Unreferenced => "no record names it",
        }
    }
}

/// Files not part of the record that a report names one by one; beyond, it counts them.
pub const MAX_LISTED: usize = 50;

/// How much of the session one source recorded, from its verified records.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceCoverage {
    pub source: String,
    /// Seconds of media in its segments.
    pub recorded_s: f64,
    /// Seconds from the session's first run to its stop (or the last record).
    pub session_s: f64,
    /// The reason of its longest gap, if it has any.
    pub longest_gap: Option<String>,
}

/// Per source named by a run, the seconds its segments hold and why it has gaps.
pub fn coverage(records: &[&RecordBody]) -> Vec<SourceCoverage> {
    let mut recorded: BTreeMap<&str, u64> = BTreeMap::new();
    let mut longest: BTreeMap<&str, (u64, &str)> = BTreeMap::new();
    let (mut start, mut end): (Option<MediaTime>, MediaTime) = (None, MediaTime::ZERO);
    for r in records {
        match &r.entry {
            Entry::RunStart { media, sources, .. } => {
                start = Some(start.map_or(*media, |s| s.min(*media)));
                for s in sources {
                    recorded.entry(s).or_default();
                }
            }
            Entry::Segment { source, media_start, media_end, .. } => {
                *recorded.entry(source).or_default() += media_end.0.saturating_sub(media_start.0);
                end = end.max(*media_end);
            }
            Entry::Gap { source, media_start, media_end, reason } if source != "*" => {
                let len = media_end.0.saturating_sub(media_start.0);
                let l = longest.entry(source).or_insert((0, reason));
                if len >= l.0 {
                    *l = (len, reason);
                }
                end = end.max(*media_end);
            }
            Entry::SessionStop { media } => end = end.max(*media),
            _ => {}
        }
    }
    let session_s = end.0.saturating_sub(start.unwrap_or(end).0) as f64 / 1e9;
    recorded
        .into_iter()
        .map(|(source, ns)| SourceCoverage {
            source: source.to_string(),
            recorded_s: ns as f64 / 1e9,
            session_s,
            longest_gap: longest.get(source).map(|(_, r)| r.to_string()),
        })
        .collect()
}

/// One line that keeps the sources' coverage apart from integrity: `ALL SOURCES RECORDED: 6
/// of 6 sources recorded …`, or `SOURCES MISSING: hall recorded nothing (why)`. (Its words
/// differ from the INCOMPLETE verdict, which is about the chain's end.)
pub fn completeness_line(coverage: &[SourceCoverage]) -> String {
    let silent: Vec<&SourceCoverage> = coverage.iter().filter(|c| c.recorded_s < 0.5).collect();
    if coverage.is_empty() {
        return "SOURCES MISSING: no source recorded anything".into();
    }
    if !silent.is_empty() {
        let names = silent.iter().map(|c| c.source.as_str()).collect::<Vec<_>>().join(", ");
        let why = silent.iter().find_map(|c| c.longest_gap.as_deref()).unwrap_or("no gap record says why");
        return format!("SOURCES MISSING: {names} recorded nothing ({why})");
    }
    let lo = coverage.iter().map(|c| c.recorded_s).fold(f64::INFINITY, f64::min);
    let hi = coverage.iter().map(|c| c.recorded_s).fold(0.0, f64::max);
    let session = coverage[0].session_s;
    let each = if hi - lo < 0.5 { format!("{hi:.0} s") } else { format!("{lo:.0}–{hi:.0} s") };
    format!(
        "ALL SOURCES RECORDED: {n} of {n} sources recorded {each} of the session's {session:.0} s",
        n = coverage.len()
    )
}

impl Report {
    pub fn ok(&self) -> bool {
        self.faults.is_empty()
    }
    /// `--allow-open` accepts an unsealed chain, and with it the unwitnessed tail and pending
    /// captions that any recording session has; never a sealed chain's missing parts.
    fn excused(&self, o: &Open) -> bool {
        let unsealed = self.open.iter().any(|o| matches!(o, Open::NotSealed(_)));
        // A session still recording is unsealed, its newest records not yet witnessed, and its
        // live transcription may be behind: all three are what "open" means.
        self.allow_open && unsealed && matches!(o, Open::NotSealed(_) | Open::Unwitnessed(_) | Open::Announced(_))
    }

    fn open_reasons(&self) -> String {
        self.open.iter().map(Open::describe).collect::<Vec<_>>().join("; ")
    }

    pub fn verdict(&self) -> Verdict {
        if !self.ok() {
            Verdict::NotVerified
        } else if self.trusted_by.is_none() {
            Verdict::UntrustedKey
        } else if self.open.iter().any(|o| !self.excused(o)) {
            Verdict::Incomplete
        } else if !self.open.is_empty() {
            Verdict::VerifiedOpen
        } else {
            Verdict::Verified
        }
    }
    fn fault(&mut self, kind: FaultKind, message: String) {
        self.faults.push(Fault { kind, message });
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "folder:   {}", self.folder)?;
        if let Some(s) = self.session {
            writeln!(f, "session:  {s}")?;
        }
        if let Some(v) = self.format_version {
            let old = if v < 2 { " (no context strings in its signatures: made before format v2)" } else { "" };
            writeln!(f, "format:   v{v}{old}")?;
        }
        if let Some(k) = &self.key_id {
            match &self.trusted_by {
                Some(by) => writeln!(f, "key:      {k}, trusted by {by}")?,
                None => writeln!(f, "key:      {k}, NOT TRUSTED: nothing outside the record vouches for it")?,
            }
        }
        writeln!(
            f,
            "records:  {} ({} segments, {} gaps, {} media bytes), {}",
            self.records,
            self.segments,
            self.gaps,
            self.media_bytes,
            if self.closed { "closed with manifest" } else { "not closed" }
        )?;
        for n in &self.notes {
            writeln!(f, "note: {n}")?;
        }
        for w in &self.witness {
            writeln!(f, "witness:  {w}")?;
        }
        if self.unverified_total > 0 {
            writeln!(f, "not part of the record, not verified ({} file(s)):", self.unverified_total)?;
            for (file, why) in &self.unverified {
                writeln!(f, "  {} ({})", crate::base::printable(file), why.describe())?;
            }
            let more = self.unverified_total.saturating_sub(self.unverified.len() as u64);
            if more > 0 {
                writeln!(f, "  ... and {more} more")?;
            }
        }
        // Every fault is listed; a chain re-signed with a foreign key produces one per
        // record, which is summarized after the first few of each kind.
        let mut shown: HashMap<FaultKind, usize> = HashMap::new();
        for fault in &self.faults {
            let n = shown.entry(fault.kind).or_default();
            *n += 1;
            if *n <= 10 {
                writeln!(f, "{fault}")?;
            }
        }
        for (kind, n) in shown.iter().filter(|(_, n)| **n > 10) {
            writeln!(f, "FAIL [{}] ... and {} more of this kind", kind.label(), n - 10)?;
        }
        for c in &self.coverage {
            let gap = c.longest_gap.as_deref().map(|g| format!("; longest gap: {g}")).unwrap_or_default();
            writeln!(f, "source:   {:<12} {:.1} s recorded of {:.1} s{gap}", c.source, c.recorded_s, c.session_s)?;
        }
        let key = self.key_id.as_deref().unwrap_or("?");
        match self.verdict() {
            Verdict::Verified => {
                writeln!(f, "VERIFIED: every signature, chain link, media byte and gap checks out")?;
            }
            Verdict::VerifiedOpen => writeln!(
                f,
                "VERIFIED (OPEN SESSION): the {} records so far check out; {}",
                self.records,
                self.open_reasons()
            )?,
            Verdict::NotVerified => writeln!(f, "NOT VERIFIED: {} fault(s)", self.faults.len())?,
            Verdict::UntrustedKey => writeln!(
                f,
                "UNTRUSTED KEY: everything checks out against key {key}, but nothing outside the record vouches for \
                 that key; give --key, --fingerprint or --trusted-keys"
            )?,
            Verdict::Incomplete => writeln!(
                f,
                "INCOMPLETE: {}; what is there checks out (--allow-open accepts a session known to be still recording)",
                self.open_reasons()
            )?,
        }
        // VERIFIED says the record is intact, not that every source is in it: say both, on
        // a line of its own that no verdict line can be mistaken for. A check that stopped
        // before reading the records has nothing to say about completeness.
        if self.coverage.is_empty() && !self.ok() {
            return Ok(());
        }
        writeln!(f, "completeness: {}", completeness_line(&self.coverage))
    }
}

/// The most a record file may hold. The largest the box writes is a captions batch of a few
/// kilobytes; anything near this is crafted.
pub const MAX_RECORD_BYTES: u64 = 1 << 20;
/// The most any other document of the record may hold (a manifest lists every record's
/// hash: about 100 bytes each, so 64 MiB is over half a million records).
pub const MAX_DOC_BYTES: u64 = 64 << 20;
/// Missing record or manifest numbers `verify` accounts for one by one. A folder naming
/// `chain/99999999.rec` or `manifest-4294967295.rec` is crafted: what lies beyond is named
/// once and not walked.
pub const MAX_MISSING: u64 = 100_000;

/// Read access to a session folder, wherever it is stored.
pub trait SessionFolder {
    fn describe(&self) -> String;
    /// Every file, as a path relative to the folder with `/` separators.
    fn list(&self) -> std::io::Result<Vec<String>>;
    fn read(&self, path: &str) -> std::io::Result<Option<Vec<u8>>>;
    /// A file's size, when it can be known without reading it.
    fn size(&self, _path: &str) -> std::io::Result<Option<u64>> {
        Ok(None)
    }
    /// A document of the record (record, manifest, key, note, token, captions list), refused
    /// when larger than `limit`: a crafted folder cannot make `verify` allocate without bound.
    fn read_doc(&self, path: &str, limit: u64) -> std::io::Result<Option<Vec<u8>>> {
        let too_large = |size: u64| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{size} bytes, more than the {limit} such a file can hold"),
            )
        };
        if let Some(size) = self.size(path)?.filter(|s| *s > limit) {
            return Err(too_large(size));
        }
        match self.read(path)? {
            Some(b) if b.len() as u64 > limit => Err(too_large(b.len() as u64)),
            other => Ok(other),
        }
    }
    /// Size and SHA-256 of a file, streamed; `None` when absent.
    fn digest(&self, path: &str) -> std::io::Result<Option<(u64, [u8; 32])>>;
    /// The registration of a device key beside the folder (`devices/{id}.pub` in a store);
    /// `None` where there is none (an export).
    fn registered_key(&self, _key_id: &str) -> std::io::Result<Option<Vec<u8>>> {
        Ok(None)
    }
}

pub struct LocalFolder(pub PathBuf);

impl SessionFolder for LocalFolder {
    fn describe(&self) -> String {
        self.0.display().to_string()
    }
    fn list(&self) -> std::io::Result<Vec<String>> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
            for entry in std::fs::read_dir(dir)? {
                let entry = entry?;
                let path = entry.path();
                if entry.file_type()?.is_dir() {
                    walk(root, &path, out)?;
                } else if let Ok(rel) = path.strip_prefix(root) {
                    out.push(rel.to_string_lossy().replace('\\', "/"));
                }
            }
            Ok(())
        }
        let mut out = Vec::new();
        walk(&self.0, &self.0, &mut out)?;
        out.sort();
        Ok(out)
    }
    fn read(&self, path: &str) -> std::io::Result<Option<Vec<u8>>> {
        match std::fs::read(self.0.join(path)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
    fn size(&self, path: &str) -> std::io::Result<Option<u64>> {
        match std::fs::metadata(self.0.join(path)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
    fn digest(&self, path: &str) -> std::io::Result<Option<(u64, [u8; 32])>> {
        let mut file = match std::fs::File::open(self.0.join(path)) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(digest_reader(&mut file)?))
    }
}

/// Streams a reader through SHA-256, returning its length and digest.
pub fn digest_reader(reader: &mut impl Read) -> std::io::Result<(u64, [u8; 32])> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
        total += n as u64;
    }
    Ok((total, ctx.finish().as_ref().try_into().expect("32 bytes")))
}

/// Verifies a session folder on the local file system.
pub fn verify_folder(dir: &Path, options: &VerifyOptions) -> Report {
    verify(&LocalFolder(dir.to_path_buf()), options)
}

struct SegmentInfo {
    index: u64,
    seq: u64,
    file: String,
    start: MediaTime,
    end: MediaTime,
}

/// Verifies any session folder. Without a trust anchor every check still runs (with the key
/// the folder ships, or the store's registration of the key that signed record #0), but the
/// verdict can only be UNTRUSTED KEY.
pub fn verify(folder: &dyn SessionFolder, options: &VerifyOptions) -> Report {
    let mut report = Report { folder: folder.describe(), allow_open: options.allow_open, ..Default::default() };
    let files = match folder.list() {
        Ok(f) => f,
        Err(e) => {
            report.fault(FaultKind::Structure, format!("cannot list the folder: {e}"));
            return report;
        }
    };
    let Some(key) = choose_key(folder, &options.anchor, &mut report) else { return report };
    report.key_id = Some(key.key_id());

    let chain_files = list_chain_files(&files, &mut report);
    if chain_files.is_empty() {
        report.fault(FaultKind::MissingRecord, "the folder has no chain records (chain/*.rec)".into());
        return report;
    }
    let chain = read_chain(folder, &chain_files, &key, &mut report);
    report.session = chain.session;
    report.records = chain.bodies.len() as u64;
    check_links(&chain, &mut report);
    let start = chain.bodies.first().and_then(Option::as_ref).and_then(|r| match &r.entry {
        Entry::SessionStart { court, room, .. } => Some((court.as_str(), room.as_str())),
        _ => None,
    });
    check_placement(&options.placement, chain.session, start, &mut report);

    let session = chain.session;
    let hashes = &chain.hashes;
    let valid: Vec<&RecordBody> = chain.bodies.iter().flatten().collect();
    if let Some(first) = chain.bodies.first().and_then(Option::as_ref)
        && !matches!(first.entry, Entry::SessionStart { .. })
    {
        report.fault(FaultKind::Structure, "record #0 is not a session start".into());
    }
    check_media(folder, &files, &valid, &mut report);
    report.coverage = coverage(&valid);
    check_manifest(folder, &files, &key, session, hashes, &valid, &mut report);
    check_announced(&valid, &mut report);
    check_caption_statements(&valid, &mut report);
    check_captions_file(folder, &valid, &mut report);
    if let (TrustAnchor::List(list), Some(first)) = (&options.anchor, valid.first()) {
        check_trust_list_entry(list, &key, first, &mut report);
    }
    if let Some(session) = session {
        crate::witness::verify::check_checkpoints(folder, &files, options, &key, session, hashes, &mut report);
    }
    if options.strict && report.unverified_total > 0 {
        report.fault(
            FaultKind::NotPartOfRecord,
            format!(
                "--strict: {} file(s) in the folder are not part of the record and were not verified (listed above)",
                report.unverified_total
            ),
        );
    }
    report
}

/// The folder or URL the session sits under against the court, room and session its chain
/// states (`start`: record #0's court and room, when it verifies).
fn check_placement(placement: &Placement, session: Option<Uuid>, start: Option<(&str, &str)>, report: &mut Report) {
    let Some(session) = session else { return };
    match placement {
        Placement::Unknown => {}
        Placement::Folder(name) => match Uuid::parse_str(name) {
            Ok(named) if named != session => report.fault(
                FaultKind::Misplaced,
                format!("the folder is named {named}, another session's id, but its chain is session {session}"),
            ),
            Ok(_) => {}
            Err(_) => report.notes.push(format!(
                "the folder's name {:?} is not a session id: which session it should hold is not checked",
                crate::base::printable(name)
            )),
        },
        Placement::Store { url, court, room, session: named } => {
            let (Some(court), Some(room), Some(named)) = (court, room, named) else {
                return report.fault(
                    FaultKind::Misplaced,
                    format!(
                        "{url} does not end in court/room/session as central storage lays sessions out; the chain is \
                         {}/{session}",
                        start.map_or("?/?".to_string(), |(c, r)| format!(
                            "{}/{}",
                            crate::base::printable(c),
                            crate::base::printable(r)
                        ))
                    ),
                );
            };
            // Record #0 states court and room; without it only the session can be compared.
            let (chain_court, chain_room) = start.unwrap_or((court, room));
            let same_session = Uuid::parse_str(named).is_ok_and(|n| n == session);
            if court != chain_court || room != chain_room || !same_session {
                // A chain verified without an anchor could state anything: shown escaped.
                let (chain_court, chain_room) =
                    (crate::base::printable(chain_court), crate::base::printable(chain_room));
                report.fault(
                    FaultKind::Misplaced,
                    format!(
                        "{url} sits under {}/{}/{}, but its chain is court {chain_court}, room {chain_room}, session {session}",
                        crate::base::printable(court),
                        crate::base::printable(room),
                        crate::base::printable(named)
                    ),
                );
            }
        }
    }
}

/// The chain's record files, by the index in their name; any other file in the chain folder
/// is a fault.
fn list_chain_files(files: &[String], report: &mut Report) -> BTreeMap<u64, String> {
    let mut chain_files: BTreeMap<u64, String> = BTreeMap::new();
    for f in files.iter().filter(|f| f.starts_with(&format!("{}/", layout::CHAIN_DIR))) {
        let name = &f[layout::CHAIN_DIR.len() + 1..];
        let digits = name.strip_suffix(".rec").filter(|n| n.len() == 8 && n.bytes().all(|b| b.is_ascii_digit()));
        match digits.and_then(|n| n.parse::<u64>().ok()) {
            Some(i) => {
                chain_files.insert(i, f.clone());
            }
            _ => report.fault(FaultKind::Structure, format!("{f}: unexpected file in the chain folder")),
        }
    }
    chain_files
}

/// The chain as read: one slot per index from 0 to the highest file, `None` where a record is
/// missing, unreadable or (for `bodies`) fails its signature.
struct Chain {
    bodies: Vec<Option<RecordBody>>,
    hashes: Vec<Option<[u8; 32]>>,
    /// The session of the first record that verifies.
    session: Option<Uuid>,
}

/// Reads and opens every record from #0 to the highest index, faulting each one that is
/// missing, unreadable, unsigned by `key` or out of place.
fn read_chain(
    folder: &dyn SessionFolder,
    chain_files: &BTreeMap<u64, String>,
    key: &PublicKey,
    report: &mut Report,
) -> Chain {
    let last_index = *chain_files.keys().next_back().expect("not empty");
    let mut chain = Chain { bodies: Vec::new(), hashes: Vec::new(), session: None };
    // A run of missing records is one fault; a crafted far index is named once, not walked.
    let (mut missing, mut missing_from) = (0u64, None);
    for i in 0..=last_index {
        let Some(path) = chain_files.get(&i) else {
            missing += 1;
            if missing > MAX_MISSING {
                let beyond = chain_files.range(i..).count();
                let from = chain_files.range(i..).next().map_or("?", |(_, f)| f.as_str());
                report.fault(
                    FaultKind::MissingRecord,
                    format!("over {MAX_MISSING} records are missing before #{i}: the {beyond} file(s) from {from} on are not read"),
                );
                break;
            }
            missing_from.get_or_insert(i);
            chain.bodies.push(None);
            chain.hashes.push(None);
            continue;
        };
        if let Some(first) = missing_from.take() {
            let what = match i - first {
                1 => format!("record #{first} is missing ({})", layout::record_file(first)),
                n => format!("records #{first} to #{} are missing ({n} records)", i - 1),
            };
            report.fault(FaultKind::MissingRecord, what);
        }
        let (hash, body) = open_record(folder, path, i, key, report);
        chain.hashes.push(hash);
        if let Some(body) = &body {
            check_record_place(path, i, body, key, &mut chain.session, report);
        }
        chain.bodies.push(body);
    }
    chain
}

/// One record file: its hash (when it parses) and its body (when its signature verifies).
fn open_record(
    folder: &dyn SessionFolder,
    path: &str,
    i: u64,
    key: &PublicKey,
    report: &mut Report,
) -> (Option<[u8; 32]>, Option<RecordBody>) {
    let doc = match folder
        .read_doc(path, MAX_RECORD_BYTES)
        .map_err(|e| e.to_string())
        .and_then(|b| SignedDoc::parse(&b.unwrap_or_default()).map_err(|e| e.to_string()))
    {
        Ok(doc) => doc,
        Err(e) => {
            report.fault(FaultKind::Unreadable, format!("{path}: {e}"));
            return (None, None);
        }
    };
    let hash = Some(doc.hash());
    match doc.open(key, Context::Record) {
        Ok(b) => (hash, Some(b)),
        Err(SignedDocError::BadSignature) => {
            // Say what the record claims to be (unverified) so the fault can be found.
            let claims = describe_unverified(&doc.body).map(|d| format!(" (claims to be {d})")).unwrap_or_default();
            report.fault(FaultKind::BadSignature, format!("{path}: record #{i}{claims}: signature does not verify with device key {}: its content was altered or signed by another key", key.key_id()));
            (hash, None)
        }
        Err(e @ SignedDocError::WrongKey { .. }) => {
            report.fault(FaultKind::BadSignature, format!("{path}: record #{i}: {e}"));
            (hash, None)
        }
        Err(e) => {
            report.fault(FaultKind::Unreadable, format!("{path}: record #{i}: {e}"));
            (hash, None)
        }
    }
}

/// A verified record must sit at its own index, in the chain's session and format, and name
/// the key that signed it.
fn check_record_place(
    path: &str,
    i: u64,
    body: &RecordBody,
    key: &PublicKey,
    session: &mut Option<Uuid>,
    report: &mut Report,
) {
    if body.index != i {
        report.fault(
            FaultKind::Reordered,
            format!(
                "{path} holds record #{} ({}) instead of record #{i}: records were moved or reordered",
                body.index,
                describe_entry(&body.entry)
            ),
        );
    }
    match *session {
        None => *session = Some(body.session),
        Some(s) if s != body.session => report.fault(
            FaultKind::ForeignRecord,
            format!(
                "{path}: record #{i} ({}) belongs to session {}, not {s}: a record from another session",
                describe_entry(&body.entry),
                body.session
            ),
        ),
        Some(_) => {}
    }
    match report.format_version {
        None => report.format_version = Some(body.v),
        Some(v) if v != body.v => report.fault(
            FaultKind::Structure,
            format!("{path}: record #{i} is format v{} in a v{v} chain: records of two formats were mixed", body.v),
        ),
        Some(_) => {}
    }
    if body.device != key.key_id() {
        report.fault(
            FaultKind::BadSignature,
            format!("{path}: record #{i} names device key {}, expected {}", body.device, key.key_id()),
        );
    }
}

/// Links: every record's prev must be the hash of the record before it.
fn check_links(chain: &Chain, report: &mut Report) {
    let (bodies, hashes) = (&chain.bodies, &chain.hashes);
    for i in 0..bodies.len() {
        let Some(body) = &bodies[i] else { continue };
        let expected = if i == 0 { Some(ZERO_HASH.to_string()) } else { hashes[i - 1].map(hex::encode) };
        if let Some(expected) = expected
            && body.prev != expected
        {
            let culprit = hashes.iter().position(|h| h.map(hex::encode).as_deref() == Some(body.prev.as_str()));
            let why = match culprit {
                Some(j) => format!("it follows record #{j}: records were reordered"),
                None if i == 0 => "the first record must have an all-zero prev".to_string(),
                None => "its predecessor was removed, replaced or altered".to_string(),
            };
            report.fault(
                FaultKind::ChainBroken,
                format!(
                    "record #{i} ({}) does not follow record #{}: {why}",
                    describe_entry(&body.entry),
                    i.saturating_sub(1)
                ),
            );
        }
    }
}

/// With a trust list, the key must have been valid when the session started, and registered
/// for the court and room the session names.
fn check_trust_list_entry(list: &TrustList, key: &PublicKey, first: &RecordBody, report: &mut Report) {
    let Some(entry) = list.by_key_id(&key.key_id()) else { return };
    if !entry.valid_at(first.wall) {
        report.fault(
            FaultKind::Key,
            format!(
                "the session started at {} (box clock), signed by key {}, which the trust list gives as {}: \
                 signed outside the key's validity",
                first.wall,
                key.key_id(),
                entry.describe_interval()
            ),
        );
    }
    if let Entry::SessionStart { court, room, .. } = &first.entry
        && (entry.court.as_ref().is_some_and(|c| c != court) || entry.room.as_ref().is_some_and(|r| r != room))
    {
        report.fault(
            FaultKind::Key,
            format!(
                "the session says it was recorded in {court}/{room}, but the trust list registers key {} for {}/{}",
                key.key_id(),
                entry.court.as_deref().unwrap_or("?"),
                entry.room.as_deref().unwrap_or("?")
            ),
        );
    }
}

/// Records that announce others: a `captions_behind` is resolved by a later `captions` record
/// naming it (`backlog_of`); until then the chain is not known to be complete (transcription
/// pending, or the records and manifest revision that resolved it were cut off). One that
/// names a `model` announces nothing: it states that this model could not caption the
/// stretch (a language below its quality, or output refused as not speech), and stays
/// true whether or not another model later does.
fn check_announced(records: &[&RecordBody], report: &mut Report) {
    let pending: Vec<String> = crate::integrity::unresolved_captions_behind(records.iter().copied())
        .iter()
        .filter(|r| matches!(r.entry, Entry::CaptionsBehind { model: None, .. }))
        .map(|r| format!("#{}", r.index))
        .collect();
    if !pending.is_empty() {
        report.open.push(Open::Announced(format!(
            "record(s) {} announce captions transcribed later, and no record brings them (transcription pending, or \
             they were cut off with their manifest revision)",
            pending.join(", ")
        )));
    }
}

/// The key to check the chain with, and what vouches for it (`report.trusted_by`); `None`
/// (with a fault) when there is no usable one.
fn choose_key(folder: &dyn SessionFolder, anchor: &TrustAnchor, report: &mut Report) -> Option<PublicKey> {
    let shipped = read_shipped_key(folder, report);
    match anchor {
        TrustAnchor::Key(k) => {
            fault_if_rekeyed(shipped, k, report);
            report.trusted_by = Some("the key given with --key".into());
            Some(*k)
        }
        TrustAnchor::Fingerprint(fp) => key_with_fingerprint(folder, fp, shipped, report),
        TrustAnchor::List(list) => key_from_trust_list(folder, list, shipped, report),
        TrustAnchor::None => {
            let found = shipped.or_else(|| record_zero_signer(folder).and_then(|id| registered_key(folder, &id)));
            if found.is_none() {
                report.fault(
                    FaultKind::Key,
                    format!("no public key: the folder has no {} and no trust anchor was given", layout::PUBLIC_KEY),
                );
            }
            found
        }
    }
}

/// The public key the folder ships, if any; one that cannot be read is a fault.
fn read_shipped_key(folder: &dyn SessionFolder, report: &mut Report) -> Option<PublicKey> {
    let parsed = folder.read_doc(layout::PUBLIC_KEY, MAX_RECORD_BYTES).map_err(|e| e.to_string()).and_then(|bytes| {
        bytes.map(|b| PublicKey::from_pem(&String::from_utf8_lossy(&b)).map_err(|e| e.to_string())).transpose()
    });
    match parsed {
        Ok(key) => key,
        Err(e) => {
            report.fault(FaultKind::Key, format!("{}: {e}", layout::PUBLIC_KEY));
            None
        }
    }
}

/// The key id on record #0's signature line: unverified, used only to pick among keys that
/// something else vouches for (or, with no anchor, to find one to check with).
fn record_zero_signer(folder: &dyn SessionFolder) -> Option<String> {
    folder
        .read_doc(&layout::record_file(0), MAX_RECORD_BYTES)
        .ok()
        .flatten()
        .and_then(|b| SignedDoc::parse(&b).ok())
        .map(|d| d.key_id)
        .filter(|id| id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The store's registration of a device key, where the folder has one beside it.
fn registered_key(folder: &dyn SessionFolder, key_id: &str) -> Option<PublicKey> {
    folder.registered_key(key_id).ok().flatten().and_then(|b| PublicKey::from_pem(&String::from_utf8_lossy(&b)).ok())
}

/// A folder that ships a key other than the trusted one was re-keyed.
fn fault_if_rekeyed(shipped: Option<PublicKey>, trusted: &PublicKey, report: &mut Report) {
    if let Some(s) = shipped
        && s != *trusted
    {
        report.fault(
            FaultKind::Key,
            format!(
                "{} in the folder is key {}, not the trusted device key {}: the folder was re-keyed",
                layout::PUBLIC_KEY,
                s.key_id(),
                trusted.key_id()
            ),
        );
    }
}

/// `--fingerprint`: the shipped key, or else the registered one, that has this fingerprint.
fn key_with_fingerprint(
    folder: &dyn SessionFolder,
    fp: &Fingerprint,
    shipped: Option<PublicKey>,
    report: &mut Report,
) -> Option<PublicKey> {
    let found =
        shipped.filter(|k| fp.matches(k)).or_else(|| registered_key(folder, fp.key_id()).filter(|k| fp.matches(k)));
    let Some(k) = found else {
        let what = shipped.map(|s| format!("{} is key {}", layout::PUBLIC_KEY, fingerprint(&s)));
        report.fault(
            FaultKind::Key,
            format!(
                "no key with fingerprint SHA256:{} here ({}): this is not that device's record, or it was re-keyed",
                fp.0,
                what.unwrap_or_else(|| "no key is shipped or registered".into())
            ),
        );
        return None;
    };
    fault_if_rekeyed(shipped, &k, report);
    report.trusted_by = Some(format!("its fingerprint {}", fingerprint(&k)));
    Some(k)
}

/// `--trusted-keys`: the listed key that signed record #0.
fn key_from_trust_list(
    folder: &dyn SessionFolder,
    list: &TrustList,
    shipped: Option<PublicKey>,
    report: &mut Report,
) -> Option<PublicKey> {
    let signer = record_zero_signer(folder);
    let Some(entry) = signer.as_deref().and_then(|id| list.by_key_id(id)) else {
        report.fault(
            FaultKind::Key,
            format!(
                "record #0 is signed by key {}, which is not in the trust list ({} keys)",
                signer.as_deref().unwrap_or("(unreadable)"),
                list.keys.len()
            ),
        );
        return None;
    };
    fault_if_rekeyed(shipped, &entry.key, report);
    let place = match (&entry.court, &entry.room) {
        (Some(c), Some(r)) => format!(" ({c}/{r})"),
        _ => String::new(),
    };
    report.trusted_by = Some(format!("the trust list{place}, {}", entry.describe_interval()));
    Some(entry.key)
}

/// What a record that failed its signature says it is, read loosely (it may be mangled).
fn describe_unverified(body: &[u8]) -> Option<String> {
    if let Ok(b) = serde_json::from_slice::<RecordBody>(body) {
        return Some(describe_entry(&b.entry));
    }
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let e = v.get("entry")?;
    let kind = e.get("kind")?.as_str()?.replace('_', " ");
    let source = e.get("source").and_then(|s| s.as_str()).map(|s| format!(" of {s}")).unwrap_or_default();
    let first = e
        .pointer("/items/0")
        .map(|i| {
            format!(
                " at {}, first {:?}",
                MediaTime(i["media_start"].as_u64().unwrap_or(0)),
                i["text"].as_str().unwrap_or("")
            )
        })
        .or_else(|| e.get("file").and_then(|f| f.as_str()).map(|f| format!(" {f}")))
        .unwrap_or_default();
    Some(format!("{kind}{source}{first}"))
}

fn describe_entry(entry: &Entry) -> String {
    match entry {
        Entry::Segment { file, .. } => format!("segment {file}"),
        Entry::Captions { source, items, .. } => match (items.first(), items.last()) {
            (Some(a), Some(b)) => format!("captions of {source} {}–{}, first {:?}", a.media_start, b.media_end, a.text),
            _ => format!("captions of {source}"),
        },
        Entry::Gap { source, .. } => format!("gap in {source}"),
        other => other.kind().replace('_', " "),
    }
}

/// What the records say about the media: each source's segments, the gap records, where each
/// source's first run started, the session stop, and every file a record names.
#[derive(Default)]
struct MediaIndex<'a> {
    by_source: BTreeMap<&'a str, Vec<SegmentInfo>>,
    gaps: Vec<(&'a str, MediaTime, MediaTime)>,
    starts: BTreeMap<&'a str, MediaTime>,
    stop: Option<MediaTime>,
    referenced: BTreeSet<&'a str>,
}

/// Every segment's bytes, each source's numbering and continuity, and media files no record
/// names.
fn check_media(folder: &dyn SessionFolder, files: &[String], records: &[&RecordBody], report: &mut Report) {
    let mut media = index_media(folder, records, report);
    check_sequences(&mut media.by_source, report);
    check_continuity(&media, report);
    list_not_in_record(files, &media.referenced, report);
}

/// Indexes the media records, checking each segment file against its record on the way.
fn index_media<'a>(folder: &dyn SessionFolder, records: &[&'a RecordBody], report: &mut Report) -> MediaIndex<'a> {
    let mut media = MediaIndex::default();
    for r in records.iter().copied() {
        match &r.entry {
            Entry::Segment { source, seq, file, media_start, media_end, bytes, sha256, .. } => {
                report.segments += 1;
                media.referenced.insert(file);
                if !file_belongs_to(file, source) {
                    report.fault(
                        FaultKind::Structure,
                        format!("record #{} points outside its source folder: {file}", r.index),
                    );
                    continue;
                }
                let what =
                    format!("{file} (source {source}, seq {seq}, {media_start}–{media_end}, record #{})", r.index);
                check_segment_file(folder, file, &what, *bytes, sha256, report);
                media.by_source.entry(source).or_default().push(SegmentInfo {
                    index: r.index,
                    seq: *seq,
                    file: file.clone(),
                    start: *media_start,
                    end: *media_end,
                });
            }
            Entry::Gap { source, media_start, media_end, .. } => {
                report.gaps += 1;
                media.gaps.push((source, *media_start, *media_end));
            }
            Entry::RunStart { media: at, sources, .. } => {
                for s in sources {
                    let e = media.starts.entry(s).or_insert(*at);
                    *e = (*e).min(*at);
                }
            }
            Entry::SessionStop { media: at } => media.stop = Some(*at),
            _ => {}
        }
    }
    media
}

/// One segment file: present, readable, and exactly the bytes its record sealed.
fn check_segment_file(
    folder: &dyn SessionFolder,
    file: &str,
    what: &str,
    bytes: u64,
    sha256: &str,
    report: &mut Report,
) {
    match folder.digest(file) {
        Ok(None) => report.fault(FaultKind::MissingSegment, format!("missing segment file {what}")),
        Err(e) => report.fault(FaultKind::Unreadable, format!("{what}: {e}")),
        Ok(Some((size, digest))) => {
            report.media_bytes += size;
            if size < bytes {
                report.fault(FaultKind::Truncated, format!("{what}: truncated to {size} of {bytes} bytes"));
            } else if size > bytes {
                report.fault(
                    FaultKind::AlteredBytes,
                    format!("{what}: {} bytes were appended ({size} bytes, recorded {bytes})", size - bytes),
                );
            } else if hex::encode(digest) != sha256 {
                report.fault(
                    FaultKind::AlteredBytes,
                    format!("{what}: altered bytes: SHA-256 is {} but the record says {sha256}", hex::encode(digest)),
                );
            }
        }
    }
}

/// Per source: no segment number twice, none skipped, and no segment starting before the
/// previous one ends.
fn check_sequences(by_source: &mut BTreeMap<&str, Vec<SegmentInfo>>, report: &mut Report) {
    for (source, segments) in by_source {
        segments.sort_by_key(|s| s.seq);
        let mut seen = BTreeSet::new();
        for s in segments.iter() {
            if !seen.insert(s.seq) {
                report.fault(
                    FaultKind::Structure,
                    format!(
                        "source {source}: segment seq {} is recorded twice ({}, record #{})",
                        s.seq, s.file, s.index
                    ),
                );
            }
        }
        for w in segments.windows(2) {
            if w[1].seq > w[0].seq + 1 {
                report.fault(
                    FaultKind::MissingSegment,
                    format!(
                        "source {source}: no record of segment seq {}..{} (between {} and {})",
                        w[0].seq + 1,
                        w[1].seq - 1,
                        w[0].file,
                        w[1].file
                    ),
                );
            }
            if w[1].start.0 + CONTINUITY_TOLERANCE_NS < w[0].end.0 {
                report.fault(
                    FaultKind::Structure,
                    format!("source {source}: {} starts before {} ends", w[1].file, w[0].file),
                );
            }
        }
    }
}

/// Continuity: from the first run that lists a source to the session stop, every moment is
/// covered by a segment or explained by a gap record.
fn check_continuity(media: &MediaIndex, report: &mut Report) {
    for (source, start) in &media.starts {
        let segments = media.by_source.get(source).map(Vec::as_slice).unwrap_or(&[]);
        let end = media.stop.unwrap_or_else(|| segments.iter().map(|s| s.end).max().unwrap_or(*start));
        let mut cover: Vec<(MediaTime, MediaTime, Option<&SegmentInfo>)> =
            segments.iter().map(|s| (s.start, s.end, Some(s))).collect();
        cover.extend(media.gaps.iter().filter(|g| g.0 == *source || g.0 == "*").map(|g| (g.1, g.2, None)));
        cover.sort_by_key(|c| (c.0, c.1));
        let mut cursor = *start;
        let mut before: Option<&SegmentInfo> = None;
        for (s, e, seg) in cover {
            if s.0 > cursor.0 + CONTINUITY_TOLERANCE_NS {
                report.fault(FaultKind::UnexplainedGap, gap_message(source, cursor, s, before, seg));
            }
            if e > cursor {
                cursor = e;
            }
            if seg.is_some() {
                before = seg;
            }
        }
        if end.0 > cursor.0 + CONTINUITY_TOLERANCE_NS {
            report.fault(FaultKind::UnexplainedGap, gap_message(source, cursor, end, before, None));
        }
    }
}

/// Lists every file that is not part of the record: derived files, media no record names,
/// anything else `verify` does not check. Not a fault unless `--strict`.
fn list_not_in_record(files: &[String], referenced: &BTreeSet<&str>, report: &mut Report) {
    for f in files {
        if let Some(why) = not_in_record(f, referenced) {
            report.unverified_total += 1;
            if report.unverified.len() < MAX_LISTED {
                report.unverified.push((f.clone(), why));
            }
        }
    }
}

/// Why `file` is not part of the record, or `None` when `verify` checks it: a chain file
/// (a record, or already a fault), a manifest revision, a checkpoint or its token, the
/// shipped key, the captions list, or media a record names.
fn not_in_record(file: &str, referenced: &BTreeSet<&str>) -> Option<NotInRecord> {
    use crate::witness::checkpoint::{CHECKPOINTS_DIR, NOTE, TOKEN};
    let checkpoint = file
        .strip_prefix(CHECKPOINTS_DIR)
        .and_then(|f| f.strip_prefix('/'))
        .and_then(|name| name.split_once('.'))
        .is_some_and(|(seq, ext)| {
            seq.len() == 8 && seq.bytes().all(|b| b.is_ascii_digit()) && [NOTE, TOKEN].contains(&ext)
        });
    let checked = file.starts_with(&format!("{}/", layout::CHAIN_DIR))
        || layout::manifest_revision(file).is_some()
        || checkpoint
        || file == layout::PUBLIC_KEY
        || file == layout::CAPTIONS_JSON
        || referenced.contains(file);
    let top = file.split('/').next().unwrap_or("");
    let derived =
        (file.contains('/') && [layout::PLAYABLE_DIR, layout::CAPTIONS_DIR].contains(&top)) || file == layout::README;
    match (checked, derived) {
        (true, _) => None,
        (false, true) => Some(NotInRecord::Derived),
        (false, false) => Some(NotInRecord::Unreferenced),
    }
}

fn file_belongs_to(file: &str, source: &str) -> bool {
    let mut parts = file.split('/');
    parts.next() == Some(source)
        && parts.next().is_some_and(|n| !n.is_empty() && n != ".." && !n.starts_with('.'))
        && parts.next().is_none()
}

fn gap_message(
    source: &str,
    from: MediaTime,
    to: MediaTime,
    before: Option<&SegmentInfo>,
    after: Option<&SegmentInfo>,
) -> String {
    let secs = to.saturating_sub(from).as_secs_f64();
    let context = match (before, after) {
        (Some(b), Some(a)) => format!(" between {} and {}", b.file, a.file),
        (Some(b), None) => format!(" after {}", b.file),
        (None, Some(a)) => format!(" before {}", a.file),
        (None, None) => " (no segment at all)".to_string(),
    };
    format!("source {source}: {from} to {to} ({secs:.1} s) is not recorded and no gap record explains it{context}")
}

fn check_manifest(
    folder: &dyn SessionFolder,
    files: &[String],
    key: &PublicKey,
    session: Option<Uuid>,
    hashes: &[Option<[u8; 32]>],
    records: &[&RecordBody],
    report: &mut Report,
) {
    let chain: Vec<String> = hashes.iter().map(|h| h.map(hex::encode).unwrap_or_default()).collect();
    let stop_index = records.iter().find(|r| matches!(r.entry, Entry::SessionStop { .. })).map(|r| r.index as usize);
    if let Some(stop) = stop_index {
        check_nothing_after_stop(records, stop, report);
    }
    let manifests: BTreeMap<u32, &String> =
        files.iter().filter_map(|f| layout::manifest_revision(f).map(|rev| (rev, f))).collect();
    if manifests.is_empty() {
        if stop_index.is_some() {
            report.fault(FaultKind::Manifest, format!("the session was stopped but {} is missing", layout::MANIFEST));
        } else {
            report.open.push(Open::NotSealed(format!(
                "no closing manifest: the session is still recording or its end was cut off after record #{}",
                hashes.len().saturating_sub(1)
            )));
        }
        return;
    }
    let newest = *manifests.keys().next_back().expect("not empty");
    // Revisions missing below the newest: named as runs, and never walked further than a
    // real chain could have revisions (a file named manifest-4294967295.rec is crafted).
    let mut expected = 1u32;
    for &rev in manifests.keys() {
        if rev > expected {
            let what = match rev - expected {
                1 => format!("manifest revision {expected} ({}) is missing", layout::manifest_file(expected)),
                n => format!("manifest revisions {expected} to {} are missing ({n} revisions)", rev - 1),
            };
            report.fault(FaultKind::Manifest, what);
        }
        expected = rev.saturating_add(1);
    }
    for (rev, file) in &manifests {
        let body: ManifestBody = match folder
            .read_doc(file, MAX_DOC_BYTES)
            .map_err(|e| e.to_string())
            .and_then(|b| SignedDoc::parse(&b.unwrap_or_default()).map_err(|e| e.to_string()))
            .and_then(|d| d.open(key, Context::Manifest).map_err(|e| e.to_string()))
        {
            Ok(b) => b,
            Err(e) => {
                report.fault(FaultKind::Manifest, format!("{file}: {e}"));
                continue;
            }
        };
        check_manifest_identity(file, *rev, &body, key, session, report);
        check_manifest_seal(file, (*rev, newest), &body, &chain, stop_index, report);
    }
    if stop_index.is_none() {
        report.fault(FaultKind::Manifest, "a manifest exists but the chain has no session stop".into());
    }
}

/// After the session stop, only the work of a later transcription may be added: its
/// captions, each followed by the stretches of the same interval whose output the same
/// model refused (`captions_behind` naming it, nothing else).
fn check_nothing_after_stop(records: &[&RecordBody], stop: usize, report: &mut Report) {
    // The backlog captions a refused stretch after the stop belongs to: (source, model, interval).
    let mut transcription: Option<(&str, &ModelRef, MediaTime, MediaTime)> = None;
    for r in records.iter().filter(|r| r.index as usize > stop) {
        let later_transcription = match &r.entry {
            Entry::Captions { origin: CaptionOrigin::Backlog, source, model, backlog_of, .. } => {
                let resolved = backlog_of.and_then(|k| records.iter().find(|b| b.index == k));
                transcription = match (model, resolved.map(|b| &b.entry)) {
                    (Some(m), Some(Entry::CaptionsBehind { media_start, media_end, .. })) => {
                        Some((source.as_str(), m, *media_start, *media_end))
                    }
                    _ => None,
                };
                true
            }
            Entry::CaptionsBehind { source, media_start, media_end, model: Some(m), .. } => transcription
                .is_some_and(|(s, tm, from, to)| s == source && tm == m && from <= *media_start && *media_end <= to),
            _ => {
                transcription = None;
                false
            }
        };
        if !later_transcription {
            report.fault(
                FaultKind::Structure,
                format!(
                    "record #{} ({}) was added after the session stopped; only captions transcribed later may be",
                    r.index,
                    describe_entry(&r.entry)
                ),
            );
        }
    }
}

/// What the caption records state must fit together: a later transcription resolves an
/// earlier `captions_behind` of its own microphone, and a microphone stated to have no live
/// captions in a run (`captions_off`) has none. The report says, per microphone, what no
/// model transcribed: a verified chain may hold stretches without captions, and says so.
fn check_caption_statements(records: &[&RecordBody], report: &mut Report) {
    let mut not_transcribed: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    let unresolved: BTreeSet<u64> =
        crate::integrity::unresolved_captions_behind(records.iter().copied()).iter().map(|r| r.index).collect();
    // Microphones without live captions in the current run, from the media time stated.
    let mut off: BTreeMap<&str, MediaTime> = BTreeMap::new();
    for r in records {
        match &r.entry {
            Entry::RunStart { .. } => off.clear(),
            Entry::CaptionsOff { source, media, .. } => {
                off.insert(source.as_str(), *media);
            }
            Entry::Captions { source, origin: CaptionOrigin::Live, .. } if off.contains_key(source.as_str()) => {
                report.fault(
                    FaultKind::Structure,
                    format!("record #{} holds live captions of {source}, which its run states has none", r.index),
                );
            }
            Entry::Captions { source, backlog_of: Some(k), .. } => {
                let target = records.iter().find(|b| b.index == *k);
                let fits = target.is_some_and(|b| {
                    b.index < r.index && matches!(&b.entry, Entry::CaptionsBehind { source: s, .. } if s == source)
                });
                if !fits {
                    report.fault(
                        FaultKind::Structure,
                        format!(
                            "record #{} says it transcribes record #{k}, which is no earlier captions_behind of {source}",
                            r.index
                        ),
                    );
                }
            }
            Entry::CaptionsBehind { source, media_start, media_end, model: Some(_), .. }
                if unresolved.contains(&r.index) =>
            {
                let e = not_transcribed.entry(source.as_str()).or_default();
                e.0 += 1;
                e.1 += media_end.0.saturating_sub(media_start.0);
            }
            _ => {}
        }
    }
    for (source, (stretches, ns)) in not_transcribed {
        report.notes.push(format!(
            "captions: {source} has {stretches} stretch(es), {:.1} s, that no model transcribed (stated in captions_behind records)",
            ns as f64 / 1e9
        ));
    }
}

/// A manifest revision names itself, the chain's key, format and session, and is consistent
/// in itself.
fn check_manifest_identity(
    file: &str,
    rev: u32,
    body: &ManifestBody,
    key: &PublicKey,
    session: Option<Uuid>,
    report: &mut Report,
) {
    if body.revision != rev {
        report.fault(FaultKind::Manifest, format!("{file} holds manifest revision {}", body.revision));
    }
    if body.device != key.key_id() {
        report.fault(FaultKind::Manifest, format!("{file} names device key {}, not {}", body.device, key.key_id()));
    }
    if report.format_version.is_some_and(|v| v != body.v) {
        report.fault(FaultKind::Manifest, format!("{file} is format v{} in a chain of another format", body.v));
    }
    if Some(body.session) != session {
        report.fault(FaultKind::ForeignRecord, format!("{file} belongs to session {}", body.session));
    }
    if body.records as usize != body.record_hashes.len() || body.record_hashes.last() != Some(&body.head) {
        report.fault(FaultKind::Manifest, format!("{file} is inconsistent: count, hashes and head disagree"));
    }
}

/// What a manifest revision seals must be the chain's records: revision 1 up to the session
/// stop, and the newest up to the chain's end.
fn check_manifest_seal(
    file: &str,
    (rev, newest): (u32, u32),
    body: &ManifestBody,
    chain: &[String],
    stop_index: Option<usize>,
    report: &mut Report,
) {
    let sealed = body.record_hashes.len();
    if sealed > chain.len() {
        report.fault(
            FaultKind::MissingRecord,
            format!(
                "{file} seals {sealed} records but the chain has {}: record #{} onwards was removed",
                chain.len(),
                chain.len()
            ),
        );
    }
    for (i, (listed, actual)) in body.record_hashes.iter().zip(chain).enumerate() {
        if !actual.is_empty() && listed != actual {
            report.fault(FaultKind::Manifest, format!("record #{i} differs from the one {file} sealed"));
        }
    }
    if rev == 1
        && let Some(stop) = stop_index
        && sealed != stop + 1
    {
        report.fault(FaultKind::Manifest, format!("{file} does not end at the session stop (record #{stop})"));
    }
    if rev == newest {
        report.closed = true;
        if chain.len() > sealed {
            report.fault(
                    FaultKind::Manifest,
                    format!("the chain has {} records but the last manifest ({file}) seals {sealed}: record #{sealed} onwards was added without a seal", chain.len()),
                );
        }
    }
}

/// An export's `captions/captions.json` is a convenience copy of the signed captions; every
/// entry must say exactly what its record says.
fn check_captions_file(folder: &dyn SessionFolder, records: &[&RecordBody], report: &mut Report) {
    #[derive(serde::Deserialize)]
    struct Listed {
        record: u64,
        item: usize,
        source: String,
        media_start_ns: u64,
        media_end_ns: u64,
        text: String,
    }
    let bytes = match folder.read_doc(layout::CAPTIONS_JSON, MAX_DOC_BYTES) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return,
        Err(e) => return report.fault(FaultKind::Unreadable, format!("{}: {e}", layout::CAPTIONS_JSON)),
    };
    let listed: Vec<Listed> = match serde_json::from_slice(&bytes) {
        Ok(l) => l,
        Err(e) => {
            report.fault(FaultKind::Unreadable, format!("{}: {e}", layout::CAPTIONS_JSON));
            return;
        }
    };
    let mut signed: BTreeMap<(u64, usize), (&str, &super::CaptionItem)> = BTreeMap::new();
    for r in records {
        if let Entry::Captions { source, items, .. } = &r.entry {
            for (i, item) in items.iter().enumerate() {
                signed.insert((r.index, i), (source.as_str(), item));
            }
        }
    }
    for (n, c) in listed.iter().enumerate() {
        let at = format!("{} #{n} ({} at {})", layout::CAPTIONS_JSON, c.source, MediaTime(c.media_start_ns));
        match signed.remove(&(c.record, c.item)) {
            None => report.fault(FaultKind::AlteredBytes, format!("{at}: caption {:?} is in no signed record", c.text)),
            Some((source, item)) => {
                if item.text != c.text
                    || source != c.source
                    || item.media_start.0 != c.media_start_ns
                    || item.media_end.0 != c.media_end_ns
                {
                    report.fault(
                        FaultKind::AlteredBytes,
                        format!(
                            "{at}: altered caption: the file says {:?}, record #{} (item {}) says {:?}",
                            c.text, c.record, c.item, item.text
                        ),
                    );
                }
            }
        }
    }
    for ((record, item), (source, c)) in signed {
        report.fault(
            FaultKind::MissingSegment,
            format!(
                "{}: caption {:?} of {source} at {} (record #{record}, item {item}) is missing",
                layout::CAPTIONS_JSON,
                c.text,
                c.media_start
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_take_faults_then_trust_then_completeness_and_allow_open_excuses_only_an_unsealed_chain() {
        let report = |faults: usize, trusted: bool, open: Vec<Open>, allow_open: bool| Report {
            faults: (0..faults).map(|_| Fault { kind: FaultKind::Structure, message: String::new() }).collect(),
            trusted_by: trusted.then(|| "--key".into()),
            open,
            allow_open,
            ..Default::default()
        };
        let unsealed = || Open::NotSealed(String::new());
        let announced = || Open::Announced(String::new());
        let unwitnessed = || Open::Unwitnessed(String::new());
        assert_eq!(report(0, true, vec![], false).verdict(), Verdict::Verified);
        assert_eq!(report(1, false, vec![unsealed()], false).verdict(), Verdict::NotVerified);
        assert_eq!(report(0, false, vec![unsealed()], true).verdict(), Verdict::UntrustedKey);
        assert_eq!(report(0, true, vec![unsealed()], false).verdict(), Verdict::Incomplete);
        assert_eq!(
            report(0, true, vec![unsealed(), unwitnessed(), announced()], true).verdict(),
            Verdict::VerifiedOpen
        );
        // A sealed chain with missing parts is never accepted as "open".
        assert_eq!(report(0, true, vec![announced()], true).verdict(), Verdict::Incomplete);
        assert_eq!(report(0, true, vec![unwitnessed()], true).verdict(), Verdict::Incomplete);
        assert_eq!(
            [Verdict::Verified, Verdict::NotVerified, Verdict::UntrustedKey, Verdict::Incomplete]
                .map(Verdict::exit_code),
            [0, 1, 3, 4]
        );
    }

    #[test]
    fn only_what_verify_checks_is_part_of_the_record() {
        let referenced: BTreeSet<&str> = ["bench/000000.mkv"].into_iter().collect();
        for checked in [
            "chain/00000000.rec",
            "chain/stray",
            "manifest.rec",
            "manifest-2.rec",
            "checkpoints/00000001.note",
            "checkpoints/00000001.tsr",
            "device.pub",
            "captions/captions.json",
            "bench/000000.mkv",
        ] {
            assert_eq!(not_in_record(checked, &referenced), None, "{checked}");
        }
        for derived in ["playable/bench.mkv", "captions/all.vtt", "captions/judge.srt", "README.txt"] {
            assert_eq!(not_in_record(derived, &referenced), Some(NotInRecord::Derived), "{derived}");
        }
        for stray in [
            "bench/000001.mkv",
            "notes.txt",
            "playable",
            "checkpoints/1.note",
            "checkpoints/00000001.txt",
            "manifest-x.rec",
            "captions",
        ] {
            assert_eq!(not_in_record(stray, &referenced), Some(NotInRecord::Unreferenced), "{stray}");
        }
    }

    #[test]
    fn the_listing_is_capped_and_strict_makes_it_a_fault_of_its_own() {
        let files: Vec<String> = (0..MAX_LISTED + 7).map(|i| format!("playable/{i:04}.mkv")).collect();
        let mut report = Report { trusted_by: Some("--key".into()), ..Default::default() };
        list_not_in_record(&files, &BTreeSet::new(), &mut report);
        assert_eq!((report.unverified.len(), report.unverified_total), (MAX_LISTED, MAX_LISTED as u64 + 7));
        let text = report.to_string();
        assert!(
            text.contains(&format!("not part of the record, not verified ({} file(s)):", MAX_LISTED + 7)),
            "{text}"
        );
        assert!(text.contains("  playable/0000.mkv (derived)") && text.contains("  ... and 7 more"), "{text}");
        assert!(!text.contains(&format!("playable/{:04}.mkv", MAX_LISTED)), "{text}");
        assert_eq!(report.verdict(), Verdict::Verified, "listed, not a fault");
    }

    #[test]
    fn store_urls_name_court_room_and_session_from_their_end() {
        let url = "s3://records/kz/almaty/room-1/0b6f1c9e-4d3b-4f7e-9a51-3c2d1e0f9a8b";
        let Placement::Store { court, room, session, .. } = Placement::of_url(url) else { panic!() };
        assert_eq!(
            (court.as_deref(), room.as_deref(), session.as_deref()),
            (Some("almaty"), Some("room-1"), Some("0b6f1c9e-4d3b-4f7e-9a51-3c2d1e0f9a8b"))
        );
        let Placement::Store { court, room, .. } = Placement::of_url("s3://bucket/room/s/") else { panic!() };
        assert_eq!((court, room.as_deref()), (None, Some("room")), "the bucket is not a court");
        let Placement::Store { court, .. } = Placement::of_url("file:///srv/c/r/s") else { panic!() };
        assert_eq!(court.as_deref(), Some("c"));
    }

    #[test]
    fn a_session_under_another_name_is_misplaced() {
        let session = Uuid::parse_str("0b6f1c9e-4d3b-4f7e-9a51-3c2d1e0f9a8b").unwrap();
        let other = "7d1e2f3a-0000-4000-8000-000000000001";
        let faults = |placement: Placement| {
            let mut report = Report::default();
            check_placement(&placement, Some(session), Some(("almaty", "room-1")), &mut report);
            (report.faults.iter().map(|f| (f.kind, f.message.clone())).collect::<Vec<_>>(), report.notes)
        };
        assert_eq!(faults(Placement::Folder(session.to_string())), (vec![], vec![]));
        let (f, _) = faults(Placement::Folder(other.into()));
        assert!(f.len() == 1 && f[0].0 == FaultKind::Misplaced, "{f:?}");
        assert!(f[0].1.contains(other) && f[0].1.contains(&session.to_string()), "both named: {f:?}");
        let (f, notes) = faults(Placement::Folder("export".into()));
        assert!(f.is_empty() && notes[0].contains("\"export\" is not a session id"), "{notes:?}");

        assert_eq!(faults(Placement::of_url(&format!("s3://b/p/almaty/room-1/{session}"))).0, vec![]);
        for wrong in [
            format!("s3://b/p/almaty/room-2/{session}"),
            format!("s3://b/p/astana/room-1/{session}"),
            format!("file:///srv/almaty/room-1/{other}"),
        ] {
            let (f, _) = faults(Placement::of_url(&wrong));
            assert!(f.len() == 1 && f[0].0 == FaultKind::Misplaced, "{wrong}: {f:?}");
            assert!(f[0].1.contains("court almaty, room room-1") && f[0].1.contains(&wrong), "{f:?}");
        }
        let (f, _) = faults(Placement::of_url(&format!("s3://b/{session}")));
        assert!(f[0].1.contains("does not end in court/room/session"), "{f:?}");
    }

    #[test]
    fn a_mangled_record_still_says_what_it_claims_to_be() {
        let body = br#"{"v":1,"entry":{"kind":"captions","guiltyrce":1,"source":"judge","items":[{"media_start":5000000000,"text":"Order."}]}}"#;
        assert_eq!(describe_unverified(body).unwrap(), "captions of judge at 0:00:05.000, first \"Order.\"");
        let body = br#"{"entry":{"kind":"segment","file":"bench/000003.mkv","extra":true}}"#;
        assert_eq!(describe_unverified(body).unwrap(), "segment bench/000003.mkv");
        assert_eq!(describe_unverified(b"not json"), None);
    }

    fn body(entry: Entry) -> RecordBody {
        RecordBody {
            v: super::super::FORMAT_VERSION,
            session: Uuid::nil(),
            index: 0,
            prev: ZERO_HASH.into(),
            device: String::new(),
            wall: crate::base::WallTime::from_unix_nanos(0),
            entry,
        }
    }

    fn segment(source: &str, from_s: u64, to_s: u64) -> Entry {
        Entry::Segment {
            source: source.into(),
            seq: 0,
            file: format!("{source}/000000.mkv"),
            media_start: MediaTime::from_millis(from_s * 1000),
            media_end: MediaTime::from_millis(to_s * 1000),
            wall_start: crate::base::WallTime::from_unix_nanos(0),
            bytes: 1,
            sha256: String::new(),
            recovered: false,
            timing: None,
        }
    }

    #[test]
    fn a_source_that_recorded_nothing_makes_the_session_incomplete() {
        let run = Entry::RunStart {
            run: 1,
            cause: super::super::RunCause::SessionStart,
            media: MediaTime::ZERO,
            boot_id: String::new(),
            sources: vec!["judge".into(), "hall".into()],
        };
        let gap = Entry::Gap {
            source: "hall".into(),
            media_start: MediaTime::ZERO,
            media_end: MediaTime::from_millis(60_000),
            reason: "device hall cannot start: no element textoverlay (install gstreamer1.0-x)".into(),
        };
        let stop = Entry::SessionStop { media: MediaTime::from_millis(60_000) };
        let records = [body(run.clone()), body(segment("judge", 0, 60)), body(gap), body(stop.clone())];
        let c = coverage(&records.iter().collect::<Vec<_>>());
        assert_eq!(c.len(), 2);
        assert_eq!(
            completeness_line(&c),
            "SOURCES MISSING: hall recorded nothing (device hall cannot start: no element textoverlay (install gstreamer1.0-x))"
        );
        let records = [body(run), body(segment("judge", 0, 60)), body(segment("hall", 0, 60)), body(stop)];
        let c = coverage(&records.iter().collect::<Vec<_>>());
        assert_eq!(completeness_line(&c), "ALL SOURCES RECORDED: 2 of 2 sources recorded 60 s of the session's 60 s");
    }

    #[test]
    fn a_stretch_a_model_could_not_caption_announces_nothing_one_left_behind_does() {
        let behind = |model: Option<crate::integrity::ModelRef>| Entry::CaptionsBehind {
            source: "defence".into(),
            media_start: MediaTime::ZERO,
            media_end: MediaTime::from_millis(60_000),
            reason: "why".into(),
            model,
        };
        let not_transcribed =
            body(behind(Some(crate::integrity::ModelRef { name: "base-q8".into(), sha256: "ab".into() })));
        let mut report = Report::default();
        check_announced(&[&not_transcribed], &mut report);
        assert!(report.open.is_empty(), "a statement that no captions exist is complete as it is");
        let left_behind = body(behind(None));
        check_announced(&[&left_behind], &mut report);
        assert_eq!(report.open.len(), 1, "captions promised for later and never brought leave the chain incomplete");
    }

    fn indexed(index: u64, entry: Entry) -> RecordBody {
        RecordBody { index, ..body(entry) }
    }

    fn behind(index: u64, source: &str, from_s: u64, to_s: u64, model: Option<&ModelRef>) -> RecordBody {
        indexed(
            index,
            Entry::CaptionsBehind {
                source: source.into(),
                media_start: MediaTime::from_millis(from_s * 1000),
                media_end: MediaTime::from_millis(to_s * 1000),
                reason: "r".into(),
                model: model.cloned(),
            },
        )
    }

    fn later_captions(index: u64, source: &str, of: u64, model: &ModelRef) -> RecordBody {
        indexed(
            index,
            Entry::Captions {
                source: source.into(),
                role: None,
                language: "kk".into(),
                origin: CaptionOrigin::Backlog,
                backlog_of: Some(of),
                items: vec![],
                model: Some(model.clone()),
            },
        )
    }

    #[test]
    fn after_the_stop_only_a_later_transcription_and_what_it_refused_may_follow() {
        let (a, b) = (
            ModelRef { name: "base-q8".into(), sha256: "aa".into() },
            ModelRef { name: "large".into(), sha256: "bb".into() },
        );
        let stop = indexed(2, Entry::SessionStop { media: MediaTime::from_millis(60_000) });
        let faults = |after: Vec<RecordBody>| {
            let mut all = vec![behind(0, "defence", 0, 60, Some(&a)), behind(1, "judge", 0, 60, None), stop.clone()];
            all.extend(after);
            let refs: Vec<&RecordBody> = all.iter().collect();
            let mut report = Report::default();
            check_nothing_after_stop(&refs, 2, &mut report);
            check_caption_statements(&refs, &mut report);
            report.faults.len()
        };
        // Model b transcribes the defence's stretch and refuses a part of it: fine.
        assert_eq!(faults(vec![later_captions(3, "defence", 0, &b), behind(4, "defence", 10, 20, Some(&b))]), 0);
        // A refusal on its own, by another model, of another source, or outside the stretch.
        assert_eq!(faults(vec![behind(3, "defence", 10, 20, Some(&b))]), 1);
        assert_eq!(faults(vec![later_captions(3, "defence", 0, &b), behind(4, "defence", 10, 20, Some(&a))]), 1);
        assert_eq!(faults(vec![later_captions(3, "defence", 0, &b), behind(4, "judge", 10, 20, Some(&b))]), 1);
        assert_eq!(faults(vec![later_captions(3, "defence", 0, &b), behind(4, "defence", 50, 70, Some(&b))]), 1);
        // Captions that claim to resolve another microphone's promise.
        assert_eq!(faults(vec![later_captions(3, "defence", 1, &b)]), 1);
    }

    #[test]
    fn live_captions_of_a_microphone_stated_to_have_none_are_a_fault() {
        let model = ModelRef { name: "base-q8".into(), sha256: "aa".into() };
        let run = |index| {
            indexed(
                index,
                Entry::RunStart {
                    run: 1,
                    cause: super::super::RunCause::SessionStart,
                    media: MediaTime::ZERO,
                    boot_id: String::new(),
                    sources: vec!["defence".into()],
                },
            )
        };
        let off = indexed(
            1,
            Entry::CaptionsOff {
                source: "defence".into(),
                language: "kk".into(),
                media: MediaTime::ZERO,
                reason: "r".into(),
                model: model.clone(),
            },
        );
        let live = |index| {
            indexed(
                index,
                Entry::Captions {
                    source: "defence".into(),
                    role: None,
                    language: "kk".into(),
                    origin: CaptionOrigin::Live,
                    backlog_of: None,
                    items: vec![],
                    model: Some(model.clone()),
                },
            )
        };
        let check = |records: Vec<RecordBody>| {
            let mut report = Report::default();
            check_caption_statements(&records.iter().collect::<Vec<_>>(), &mut report);
            report
        };
        assert_eq!(check(vec![run(0), off.clone(), live(2)]).faults.len(), 1);
        assert!(check(vec![run(0), off.clone(), run(2), live(3)]).faults.is_empty(), "a later run may caption it");
        let stated = check(vec![run(0), off, behind(2, "defence", 0, 60, Some(&model))]);
        assert_eq!(
            stated.notes,
            [
                "captions: defence has 1 stretch(es), 60.0 s, that no model transcribed (stated in captions_behind records)"
            ]
        );
    }
}
