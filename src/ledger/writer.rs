//! The ledger's write side, used only on the writer thread: it owns the read-write SQLite
//! connection, the signing key and the cached chain heads, so records are numbered and linked
//! in order without locks. Each method is one immediate transaction (record, rows and upload
//! jobs together); when one fails, the cached heads are dropped and re-read from the database.

use super::{LedgerError, RunEnd, SessionState, UploadKind};
use crate::base::{Clocks, MediaTime, WallTime};
use crate::config::SourceSpec;
use crate::integrity::{
    Context, DeviceKey, Entry, FORMAT_VERSION, Hearing, Language, ManifestBody, RecordBody, SignedDoc, ZERO_HASH,
    layout,
};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

/// A record that is part of the chain: its transaction has committed.
#[derive(Debug, Clone)]
pub struct Committed {
    pub session: Uuid,
    pub index: u64,
    pub hash: [u8; 32],
}

pub struct NewSession {
    pub court: String,
    pub room: String,
    pub case: String,
    pub title: String,
    pub language: Language,
    pub hearing: Hearing,
    pub profile: String,
    pub segment_ns: u64,
    pub sources: Vec<SourceSpec>,
}

/// A sealed segment file (already fsynced and hashed) to commit.
#[derive(Debug, Clone)]
pub struct SegmentCommit {
    pub source: String,
    pub seq: u64,
    pub media_start: MediaTime,
    pub media_end: MediaTime,
    pub wall_start: WallTime,
    pub bytes: u64,
    pub sha256: [u8; 32],
    pub recovered: bool,
    /// The file, relative to the data directory.
    pub local_path: String,
    /// How a network source's timestamps were placed; `None` for the box's own sources.
    pub timing: Option<crate::integrity::SenderTiming>,
}

#[derive(Clone, Copy)]
struct Head {
    next: u64,
    prev: [u8; 32],
    /// The format the session's chain is written in: the one of its first record, so that a
    /// session begun before an upgrade (format v1) is continued in v1 and never mixes.
    version: u32,
}

/// The format version of a session's chain (its first record's), or the current one for a
/// new session.
pub(super) fn chain_version(tx: &Transaction, session: Uuid) -> Result<u32, LedgerError> {
    let first: Option<Vec<u8>> = tx
        .query_row("SELECT body FROM records WHERE session_id = ?1 AND idx = 0", [session.to_string()], |r| r.get(0))
        .optional()?;
    Ok(first.and_then(|b| crate::integrity::body_version(&b)).unwrap_or(FORMAT_VERSION))
}

/// Owned by the writer thread: the read-write connection, the signing key and the chain
/// heads. Methods each run one transaction.
pub struct Writer {
    conn: Connection,
    pub(super) key: Arc<DeviceKey>,
    clocks: Arc<dyn Clocks>,
    heads: HashMap<Uuid, Head>,
    failure: Arc<super::LedgerFailure>,
}

/// Appends records within one transaction.
pub(super) struct Chain<'a> {
    pub(super) key: &'a DeviceKey,
    wall: WallTime,
    heads: &'a mut HashMap<Uuid, Head>,
    /// Sessions that get a checkpoint when the transaction ends (an event was appended).
    witness: Vec<Uuid>,
}

/// Upload order: the witness objects (checkpoints, their tokens, audit entries) go before
/// the media backlog, so that the store learns of every event within seconds even while
/// hours of video wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Priority {
    Witness = 0,
    Normal = 1,
}

/// Records that are session events: each gets a checkpoint in its own transaction. Media
/// and captions are covered by the periodic checkpoint.
fn is_event(entry: &Entry) -> bool {
    !matches!(entry, Entry::Segment { .. } | Entry::Captions { .. } | Entry::CaptionsBehind { .. })
}

impl Chain<'_> {
    fn append(&mut self, tx: &Transaction, session: Uuid, entry: Entry) -> Result<Committed, LedgerError> {
        let head = match self.heads.get(&session) {
            Some(h) => *h,
            None => {
                let last: Option<(i64, Vec<u8>)> = tx
                    .query_row(
                        "SELECT idx, hash FROM records WHERE session_id = ?1 ORDER BY idx DESC LIMIT 1",
                        [session.to_string()],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()?;
                match last {
                    Some((idx, hash)) => Head {
                        next: idx as u64 + 1,
                        prev: hash
                            .try_into()
                            .map_err(|_| LedgerError::Invalid("stored hash is not 32 bytes".into()))?,
                        version: chain_version(tx, session)?,
                    },
                    None => Head { next: 0, prev: [0; 32], version: FORMAT_VERSION },
                }
            }
        };
        let body = RecordBody {
            v: head.version,
            session,
            index: head.next,
            prev: if head.next == 0 { ZERO_HASH.to_string() } else { hex::encode(head.prev) },
            device: self.key.public().key_id(),
            wall: self.wall,
            entry,
        };
        let doc = SignedDoc::sign_as(&body, self.key, Context::Record, head.version);
        if is_event(&body.entry) && !self.witness.contains(&session) {
            self.witness.push(session);
        }
        let hash = doc.hash();
        tx.execute(
            "INSERT INTO records (session_id, idx, kind, body, signature, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                session.to_string(),
                head.next as i64,
                body.entry.kind(),
                doc.body,
                doc.signature.to_vec(),
                hash.to_vec()
            ],
        )?;
        insert_upload_job(
            tx,
            Some(session),
            &format!("{session}/{}", layout::record_file(head.next)),
            UploadKind::Record,
            None,
            Some(&doc.to_bytes()),
            self.wall,
            // Small, and ahead of the media, in commit order with the checkpoints: the store
            // never holds a checkpoint long before the records it covers.
            Priority::Witness,
        )?;
        self.heads.insert(session, Head { next: head.next + 1, prev: hash, version: head.version });
        Ok(Committed { session, index: head.next, hash })
    }
}

impl Chain<'_> {
    /// Signs a checkpoint of every session an event was appended to in this transaction.
    fn witness_events(&mut self, tx: &Transaction) -> Result<(), LedgerError> {
        for session in std::mem::take(&mut self.witness) {
            let Some(head) = self.heads.get(&session).copied() else { continue };
            super::witness::write_checkpoint(
                tx,
                self.key,
                &crate::witness::Log::Session(session),
                head.next,
                head.prev,
                crate::witness::Cause::Event,
                self.wall,
            )?;
        }
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn insert_upload_job(
    tx: &Transaction,
    session: Option<Uuid>,
    key: &str,
    kind: UploadKind,
    local_path: Option<(&str, u64, [u8; 32])>,
    content: Option<&[u8]>,
    wall: WallTime,
    priority: Priority,
) -> Result<(), LedgerError> {
    let (path, bytes, sha) = match (local_path, content) {
        (Some((p, n, sha)), None) => (Some(p), n, sha),
        (None, Some(c)) => (None, c.len() as u64, crate::integrity::sha256(c)),
        _ => return Err(LedgerError::Invalid("an upload job needs either a file or content".into())),
    };
    tx.execute(
        "INSERT INTO upload_jobs (session_id, object_key, kind, local_path, content, sha256, bytes, created_wall, priority)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            session.map(|s| s.to_string()),
            key,
            kind.as_str(),
            path,
            content,
            sha.to_vec(),
            bytes as i64,
            wall.to_rfc3339(),
            priority as i64
        ],
    )?;
    Ok(())
}

impl Writer {
    pub(super) fn new(
        conn: Connection,
        key: Arc<DeviceKey>,
        clocks: Arc<dyn Clocks>,
        failure: Arc<super::LedgerFailure>,
    ) -> Writer {
        Writer { conn, key, clocks, heads: HashMap::new(), failure }
    }

    /// Runs `f` in an immediate transaction. The chain-head cache is dropped if anything
    /// fails, so it is re-read from the database rather than trusted. A failure of the
    /// ledger's storage ends all writing in this process (`ledger::failure`).
    pub(super) fn transact<T>(
        &mut self,
        f: impl FnOnce(&Transaction, &mut Chain, WallTime) -> Result<T, LedgerError>,
    ) -> Result<T, LedgerError> {
        if let Some(refused) = self.failure.refusal() {
            return Err(refused);
        }
        let wall = self.clocks.wall();
        let Writer { conn, key, heads, failure, .. } = self;
        let mut chain = Chain { key, wall, heads, witness: Vec::new() };
        let result = (|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = f(&tx, &mut chain, wall)?;
            chain.witness_events(&tx)?;
            tx.commit()?;
            Ok(value)
        })();
        if let Err(e) = &result {
            heads.clear();
            if super::is_storage_failure(e) {
                failure.fail(e);
            }
        }
        result
    }

    pub(super) fn checkpoint(&mut self) {
        if self.failure.reason().is_some() {
            // Nothing more touches a ledger whose storage failed; the next start recovers.
            return;
        }
        if let Err(e) = self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "final ledger checkpoint failed; the WAL will be folded in on the next start");
        }
    }

    /// Queues the device public key for central storage once per key.
    pub(super) fn register_device_key(&mut self) -> Result<(), LedgerError> {
        let public = self.key.public();
        let object = format!("devices/{}.pub", public.key_id());
        self.transact(|tx, _, wall| {
            let exists: bool =
                tx.query_row("SELECT EXISTS (SELECT 1 FROM upload_jobs WHERE object_key = ?1)", [&object], |r| {
                    r.get(0)
                })?;
            if !exists {
                insert_upload_job(
                    tx,
                    None,
                    &object,
                    UploadKind::DeviceKey,
                    None,
                    Some(public.to_pem().as_bytes()),
                    wall,
                    Priority::Witness,
                )?;
            }
            Ok(())
        })
    }

    /// Creates a recording session and its `session_start` record.
    pub fn create_session(&mut self, s: NewSession) -> Result<(Uuid, Committed), LedgerError> {
        let id = Uuid::new_v4();
        self.transact(|tx, chain, wall| {
            let busy: Option<String> =
                tx.query_row("SELECT id FROM sessions WHERE state = 'recording'", [], |r| r.get(0)).optional()?;
            if let Some(busy) = busy {
                return Err(LedgerError::Invalid(format!("session {busy} is still recording; stop it first")));
            }
            tx.execute(
                "INSERT INTO sessions (id, case_number, title, language, hearing, profile, segment_ns, state, started_wall)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'recording', ?8)",
                params![id.to_string(), s.case, s.title, s.language.as_str(), s.hearing.as_str(), s.profile, s.segment_ns as i64, wall.to_rfc3339()],
            )?;
            let committed = chain.append(
                tx,
                id,
                Entry::SessionStart {
                    court: s.court,
                    room: s.room,
                    case: s.case,
                    title: s.title,
                    language: s.language.as_str().to_string(),
                    hearing: s.hearing,
                    profile: s.profile,
                    segment_ns: s.segment_ns,
                    sources: s.sources,
                },
            )?;
            Ok((id, committed))
        })
    }

    /// Appends one record (an event or a gap) to a session's chain.
    pub fn append(&mut self, session: Uuid, entry: Entry) -> Result<Committed, LedgerError> {
        self.transact(|tx, chain, _| chain.append(tx, session, entry))
    }

    /// The commit point of a segment: its record, its row and its upload job, atomically.
    pub fn commit_segment(&mut self, session: Uuid, seg: SegmentCommit) -> Result<Committed, LedgerError> {
        self.transact(|tx, chain, _| {
            let file = layout::segment_file(&seg.source, seg.seq);
            let committed = chain.append(
                tx,
                session,
                Entry::Segment {
                    source: seg.source.clone(),
                    seq: seg.seq,
                    file: file.clone(),
                    media_start: seg.media_start,
                    media_end: seg.media_end,
                    wall_start: seg.wall_start,
                    bytes: seg.bytes,
                    sha256: hex::encode(seg.sha256),
                    recovered: seg.recovered,
                    timing: seg.timing,
                },
            )?;
            tx.execute(
                "INSERT INTO segments (session_id, source, seq, record_idx, file, media_start_ns, media_end_ns, bytes, sha256, recovered)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    session.to_string(),
                    seg.source,
                    seg.seq as i64,
                    committed.index as i64,
                    file,
                    seg.media_start.0 as i64,
                    seg.media_end.0 as i64,
                    seg.bytes as i64,
                    seg.sha256.to_vec(),
                    seg.recovered
                ],
            )?;
            insert_upload_job(
                tx,
                Some(session),
                &format!("{session}/{file}"),
                UploadKind::Segment,
                Some((&seg.local_path, seg.bytes, seg.sha256)),
                None,
                chain.wall,
                Priority::Normal,
            )?;
            Ok(committed)
        })
    }

    pub fn begin_run(
        &mut self,
        session: Uuid,
        run: u32,
        boot_id: &str,
        media_offset: MediaTime,
    ) -> Result<(), LedgerError> {
        self.transact(|tx, _, wall| {
            tx.execute(
                "INSERT INTO runs (session_id, run, boot_id, pid, started_wall, media_offset_ns) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![session.to_string(), run, boot_id, std::process::id(), wall.to_rfc3339(), media_offset.0 as i64],
            )?;
            Ok(())
        })
    }

    pub fn end_run(&mut self, session: Uuid, run: u32, reason: RunEnd) -> Result<(), LedgerError> {
        self.transact(|tx, _, wall| end_run_row(tx, session, run, reason, wall))
    }

    /// Ends a run and appends the record that says why, in one transaction (a recess).
    pub fn end_run_stating(
        &mut self,
        session: Uuid,
        run: u32,
        reason: RunEnd,
        entry: Entry,
    ) -> Result<Committed, LedgerError> {
        self.transact(|tx, chain, wall| {
            end_run_row(tx, session, run, reason, wall)?;
            chain.append(tx, session, entry)
        })
    }

    /// Stops a session in one transaction: the last records (the gaps at the tail of each
    /// source), the end of its last run, `session_stop`, and the signed manifest sealing the
    /// chain. A crash leaves either all of it or none (and the session then resumes).
    pub fn stop_session(
        &mut self,
        session: Uuid,
        run: Option<u32>,
        media: MediaTime,
        last_records: Vec<Entry>,
    ) -> Result<Vec<u8>, LedgerError> {
        self.transact(|tx, chain, wall| {
            for entry in last_records {
                chain.append(tx, session, entry)?;
            }
            if let Some(run) = run {
                end_run_row(tx, session, run, RunEnd::Stopped, wall)?;
            }
            chain.append(tx, session, Entry::SessionStop { media })?;
            let changed = tx.execute(
                "UPDATE sessions SET state = 'stopped', stopped_wall = ?2 WHERE id = ?1 AND state = 'recording'",
                params![session.to_string(), wall.to_rfc3339()],
            )?;
            if changed != 1 {
                return Err(LedgerError::Invalid(format!("session {session} is not recording")));
            }
            seal(tx, chain.key, session, 1, wall)
        })
    }

    /// Commits a batch of final captions: the record and one searchable row per caption.
    /// For a stopped session (captions transcribed later) the chain is re-sealed with the
    /// next manifest revision in the same transaction.
    pub fn commit_captions(&mut self, session: Uuid, entry: Entry, also: Vec<Entry>) -> Result<Committed, LedgerError> {
        let Entry::Captions { source, role, language, origin, items, .. } = &entry else {
            return Err(LedgerError::Invalid("commit_captions takes a captions entry".into()));
        };
        let (source, role, language, origin, items) =
            (source.clone(), role.map(|r| r.as_str()), language.clone(), origin.as_str(), items.clone());
        self.transact(|tx, chain, wall| {
            let state: Option<SessionState> = tx
                .query_row("SELECT state FROM sessions WHERE id = ?1", [session.to_string()], |r| {
                    super::read::parsed_column(r, 0)
                })
                .optional()?;
            let committed = chain.append(tx, session, entry)?;
            for (i, c) in items.iter().enumerate() {
                tx.execute(
                    "INSERT INTO captions (session_id, record_idx, item, source, role, language, media_start_ns, media_end_ns,
                                           wall, text, confidence, delayed, origin)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                    params![
                        session.to_string(),
                        committed.index as i64,
                        i as i64,
                        source,
                        role,
                        language,
                        c.media_start.0 as i64,
                        c.media_end.0 as i64,
                        c.wall.to_rfc3339(),
                        c.text,
                        c.confidence,
                        c.delayed,
                        origin
                    ],
                )?;
            }
            // What the same transcription states besides (stretches it refused as not
            // speech): in this transaction, so that one manifest revision seals it all.
            for e in also {
                chain.append(tx, session, e)?;
            }
            match state {
                Some(SessionState::Recording) => {}
                Some(_) => {
                    let last: u32 = tx.query_row(
                        "SELECT COALESCE(MAX(revision), 0) FROM manifests WHERE session_id = ?1",
                        [session.to_string()],
                        |r| r.get(0),
                    )?;
                    seal(tx, chain.key, session, last + 1, wall)?;
                    // A new seal is an event of the session: the store learns of it at once.
                    if !chain.witness.contains(&session) {
                        chain.witness.push(session);
                    }
                }
                None => return Err(LedgerError::UnknownSession(session)),
            }
            Ok(committed)
        })
    }
}

/// Signs a manifest (revision `revision`) over every record of the session, stores it, and
/// queues it for upload under its own write-once name.
fn seal(
    tx: &Transaction,
    key: &DeviceKey,
    session: Uuid,
    revision: u32,
    wall: WallTime,
) -> Result<Vec<u8>, LedgerError> {
    let hashes: Vec<String> = {
        let mut stmt = tx.prepare("SELECT hash FROM records WHERE session_id = ?1 ORDER BY idx")?;
        stmt.query_map([session.to_string()], |r| r.get::<_, Vec<u8>>(0))?
            .map(|h| h.map(hex::encode))
            .collect::<Result<_, _>>()?
    };
    let version = chain_version(tx, session)?;
    let manifest = ManifestBody {
        v: version,
        session,
        revision,
        device: key.public().key_id(),
        closed: wall,
        records: hashes.len() as u64,
        head: hashes.last().cloned().unwrap_or_default(),
        record_hashes: hashes,
    };
    let bytes = SignedDoc::sign_as(&manifest, key, Context::Manifest, version).to_bytes();
    tx.execute(
        "INSERT INTO manifests (session_id, revision, body) VALUES (?1, ?2, ?3)",
        params![session.to_string(), revision, bytes],
    )?;
    tx.execute("UPDATE sessions SET manifest = ?2 WHERE id = ?1", params![session.to_string(), bytes])?;
    let object = format!("{session}/{}", layout::manifest_file(revision));
    // In commit order with the records it seals and their checkpoints, ahead of the media.
    insert_upload_job(tx, Some(session), &object, UploadKind::Manifest, None, Some(&bytes), wall, Priority::Witness)?;
    Ok(bytes)
}

fn end_run_row(tx: &Transaction, session: Uuid, run: u32, reason: RunEnd, wall: WallTime) -> Result<(), LedgerError> {
    tx.execute(
        "UPDATE runs SET ended_wall = ?3, end_reason = ?4 WHERE session_id = ?1 AND run = ?2",
        params![session.to_string(), run, wall.to_rfc3339(), reason.as_str()],
    )?;
    Ok(())
}
