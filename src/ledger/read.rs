//! Reading the ledger: `Reader`, its row types and its queries for sessions, records,
//! segments, runs and captions (the other ledger files add theirs). Each `Reader` has its
//! own read-only connection, so under WAL it sees committed state and never blocks the writer.

use super::{LedgerError, open_connection};
use crate::integrity::RecordKind;
use rusqlite::{Connection, OptionalExtension, Row, params};
use std::collections::HashMap;
use std::path::Path;
use uuid::Uuid;

/// A read-only view of the ledger; safe to use from any thread while the writer works.
pub struct Reader {
    pub(super) conn: Connection,
}

#[derive(Debug, Clone)]
pub struct SessionRow {
    pub id: Uuid,
    pub case_number: String,
    pub title: String,
    pub language: String,
    pub hearing: String,
    pub profile: String,
    pub segment_ns: u64,
    pub state: SessionState,
    pub started_wall: String,
    pub stopped_wall: Option<String>,
    pub manifest: Option<Vec<u8>>,
}

#[derive(Debug, Clone)]
pub struct RecordRow {
    pub idx: u64,
    pub kind: RecordKind,
    pub body: Vec<u8>,
    pub signature: [u8; 64],
    pub hash: [u8; 32],
}

#[derive(Debug, Clone)]
pub struct SegmentRow {
    pub source: String,
    pub seq: u64,
    pub record_idx: u64,
    pub file: String,
    pub media_start_ns: u64,
    pub media_end_ns: u64,
    pub bytes: u64,
    pub recovered: bool,
}

/// A final caption as stored for search and export (the signed record is the truth).
#[derive(Debug, Clone, serde::Serialize)]
pub struct CaptionRow {
    pub session: Uuid,
    pub record: u64,
    pub item: u32,
    pub source: String,
    pub role: Option<String>,
    pub language: String,
    pub media_start_ns: u64,
    pub media_end_ns: u64,
    pub wall: String,
    pub text: String,
    pub confidence: u16,
    pub delayed: bool,
    pub origin: String,
}

const CAPTION_COLUMNS: &str = "session_id, record_idx, item, source, role, language, media_start_ns, media_end_ns, wall, text, confidence, delayed, origin";

fn caption_row(r: &Row) -> rusqlite::Result<CaptionRow> {
    let id: String = r.get(0)?;
    Ok(CaptionRow {
        session: Uuid::parse_str(&id)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))?,
        record: r.get::<_, i64>(1)? as u64,
        item: r.get(2)?,
        source: r.get(3)?,
        role: r.get(4)?,
        language: r.get(5)?,
        media_start_ns: r.get::<_, i64>(6)? as u64,
        media_end_ns: r.get::<_, i64>(7)? as u64,
        wall: r.get(8)?,
        text: r.get(9)?,
        confidence: r.get(10)?,
        delayed: r.get(11)?,
        origin: r.get(12)?,
    })
}

/// Whether a session still records, as `sessions.state` stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    Recording,
    /// Stopped and sealed.
    Stopped,
}

crate::base::text_names!(SessionState, super::UnknownKind, {
    Recording => "recording",
    Stopped => "stopped",
});

/// A text column parsed into one of the ledger's kind enums; an unknown value is a
/// conversion failure, not a silent default.
pub(super) fn parsed_column<K: std::str::FromStr<Err = super::UnknownKind>>(
    row: &Row,
    index: usize,
) -> rusqlite::Result<K> {
    row.get::<_, String>(index)?
        .parse()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(e)))
}

/// Why a run of capture ended, as `runs.end_reason` stores it. A run without one was cut
/// off (a crash or a power loss).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// The session was stopped.
    Stopped,
    /// The daemon shut down while recording; the next start resumes the session.
    Shutdown,
    /// A recess began; nothing is recorded until the hearing resumes.
    Recess,
}

crate::base::text_names!(RunEnd, super::UnknownKind, {
    Stopped => "stopped",
    Shutdown => "shutdown",
    Recess => "recess",
});

#[derive(Debug, Clone)]
pub struct RunRow {
    pub run: u32,
    pub boot_id: String,
    pub started_wall: String,
    pub media_offset_ns: u64,
    pub ended_wall: Option<String>,
    pub end_reason: Option<RunEnd>,
}

fn session_row(r: &Row) -> rusqlite::Result<SessionRow> {
    let id: String = r.get(0)?;
    Ok(SessionRow {
        id: Uuid::parse_str(&id)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))?,
        case_number: r.get(1)?,
        title: r.get(2)?,
        language: r.get(3)?,
        hearing: r.get(4)?,
        profile: r.get(5)?,
        segment_ns: r.get::<_, i64>(6)? as u64,
        state: parsed_column(r, 7)?,
        started_wall: r.get(8)?,
        stopped_wall: r.get(9)?,
        manifest: r.get(10)?,
    })
}

const SESSION_COLUMNS: &str =
    "id, case_number, title, language, hearing, profile, segment_ns, state, started_wall, stopped_wall, manifest";

impl Reader {
    pub fn open(path: &Path) -> Result<Reader, LedgerError> {
        if !path.exists() {
            return Err(LedgerError::Invalid(format!(
                "{}: no ledger here (has the daemon run with this data_dir?)",
                path.display()
            )));
        }
        Ok(Reader { conn: open_connection(path, true)? })
    }

    pub fn recording_session(&self) -> Result<Option<SessionRow>, LedgerError> {
        Ok(self
            .conn
            .query_row(&format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE state = 'recording'"), [], session_row)
            .optional()?)
    }

    pub fn session(&self, id: Uuid) -> Result<Option<SessionRow>, LedgerError> {
        Ok(self
            .conn
            .query_row(&format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1"), [id.to_string()], session_row)
            .optional()?)
    }

    /// Finds a session by full id or unique id prefix.
    pub fn find_session(&self, id_or_prefix: &str) -> Result<SessionRow, LedgerError> {
        let mut stmt = self.conn.prepare(&format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id LIKE ?1 || '%'"))?;
        let rows: Vec<SessionRow> =
            stmt.query_map([id_or_prefix.to_lowercase()], session_row)?.collect::<Result<_, _>>()?;
        match rows.len() {
            1 => Ok(rows.into_iter().next().expect("one")),
            0 => Err(LedgerError::NoSuchSession(id_or_prefix.to_string())),
            count => Err(LedgerError::AmbiguousSession { prefix: id_or_prefix.to_string(), count }),
        }
    }

    pub fn sessions(&self) -> Result<Vec<SessionRow>, LedgerError> {
        let mut stmt = self.conn.prepare(&format!("SELECT {SESSION_COLUMNS} FROM sessions ORDER BY started_wall"))?;
        Ok(stmt.query_map([], session_row)?.collect::<Result<_, _>>()?)
    }

    pub fn records(&self, session: Uuid) -> Result<Vec<RecordRow>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare("SELECT idx, kind, body, signature, hash FROM records WHERE session_id = ?1 ORDER BY idx")?;
        let rows = stmt.query_map([session.to_string()], |r| {
            let sig: Vec<u8> = r.get(3)?;
            let hash: Vec<u8> = r.get(4)?;
            Ok(RecordRow {
                idx: r.get::<_, i64>(0)? as u64,
                kind: r.get::<_, String>(1)?.parse::<RecordKind>().map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e))
                })?,
                body: r.get(2)?,
                signature: sig.try_into().unwrap_or([0; 64]),
                hash: hash.try_into().unwrap_or([0; 32]),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The session's records, decoded; one that does not decode is an error naming it.
    pub fn record_bodies(&self, session: Uuid) -> Result<Vec<crate::integrity::RecordBody>, LedgerError> {
        self.records(session)?
            .into_iter()
            .map(|r| {
                serde_json::from_slice(&r.body)
                    .map_err(|e| LedgerError::Invalid(format!("record #{} does not decode: {e}", r.idx)))
            })
            .collect()
    }

    pub fn segments(&self, session: Uuid) -> Result<Vec<SegmentRow>, LedgerError> {
        let mut stmt = self.conn.prepare(
            "SELECT source, seq, record_idx, file, media_start_ns, media_end_ns, bytes, recovered
             FROM segments WHERE session_id = ?1 ORDER BY source, seq",
        )?;
        let rows = stmt.query_map([session.to_string()], |r| {
            Ok(SegmentRow {
                source: r.get(0)?,
                seq: r.get::<_, i64>(1)? as u64,
                record_idx: r.get::<_, i64>(2)? as u64,
                file: r.get(3)?,
                media_start_ns: r.get::<_, i64>(4)? as u64,
                media_end_ns: r.get::<_, i64>(5)? as u64,
                bytes: r.get::<_, i64>(6)? as u64,
                recovered: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// `(file, sealed bytes)` of the session's segments whose file should be on the box
    /// (not yet evicted after upload); `file` is relative to the session's spool folder.
    pub fn spooled_segments(&self, session: Uuid) -> Result<Vec<(String, u64)>, LedgerError> {
        let mut stmt = self.conn.prepare(
            "SELECT file, bytes FROM segments WHERE session_id = ?1 AND local_state = 'spooled' ORDER BY record_idx",
        )?;
        let rows = stmt.query_map([session.to_string()], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn runs(&self, session: Uuid) -> Result<Vec<RunRow>, LedgerError> {
        let mut stmt = self.conn.prepare(
            "SELECT run, boot_id, started_wall, media_offset_ns, ended_wall, end_reason FROM runs WHERE session_id = ?1 ORDER BY run",
        )?;
        let rows = stmt.query_map([session.to_string()], |r| {
            Ok(RunRow {
                run: r.get(0)?,
                boot_id: r.get(1)?,
                started_wall: r.get(2)?,
                media_offset_ns: r.get::<_, i64>(3)? as u64,
                ended_wall: r.get(4)?,
                end_reason: r.get::<_, Option<String>>(5)?.map(|s| s.parse::<RunEnd>()).transpose().map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(5, rusqlite::types::Type::Text, Box::new(e))
                })?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Highest committed segment number per source.
    pub fn last_seq(&self, session: Uuid) -> Result<HashMap<String, u64>, LedgerError> {
        let mut stmt =
            self.conn.prepare("SELECT source, MAX(seq) FROM segments WHERE session_id = ?1 GROUP BY source")?;
        let rows =
            stmt.query_map(params![session.to_string()], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Final captions of a session in media-time order.
    pub fn captions(&self, session: Uuid) -> Result<Vec<CaptionRow>, LedgerError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {CAPTION_COLUMNS} FROM captions WHERE session_id = ?1 ORDER BY media_start_ns, source"
        ))?;
        Ok(stmt.query_map([session.to_string()], caption_row)?.collect::<Result<_, _>>()?)
    }

    /// Captions containing all the words of `query` (any session), newest sessions first.
    pub fn search_captions(&self, query: &str, limit: usize) -> Result<Vec<CaptionRow>, LedgerError> {
        // Each word quoted: user text is never FTS5 syntax.
        let terms: Vec<String> = crate::stt::text::words(query).iter().map(|w| format!("\"{w}\"")).collect();
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let columns = CAPTION_COLUMNS.split(", ").map(|c| format!("c.{c}")).collect::<Vec<_>>().join(", ");
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {columns} FROM captions_fts f JOIN captions c ON c.id = f.rowid
             JOIN sessions s ON s.id = c.session_id
             WHERE captions_fts MATCH ?1 ORDER BY s.started_wall DESC, c.media_start_ns LIMIT ?2"
        ))?;
        Ok(stmt.query_map(params![terms.join(" "), limit as i64], caption_row)?.collect::<Result<_, _>>()?)
    }

    /// Every manifest revision of a session, oldest first.
    pub fn manifests(&self, session: Uuid) -> Result<Vec<(u32, Vec<u8>)>, LedgerError> {
        let mut stmt =
            self.conn.prepare("SELECT revision, body FROM manifests WHERE session_id = ?1 ORDER BY revision")?;
        Ok(stmt.query_map([session.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?)
    }

    /// Everything the ledger holds, for metrics: (segments, their bytes, gap records).
    pub fn totals(&self) -> Result<(u64, u64, u64), LedgerError> {
        let (segments, bytes) =
            self.conn.query_row("SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM segments", [], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
            })?;
        let gaps: i64 = self.conn.query_row("SELECT COUNT(*) FROM records WHERE kind = 'gap'", [], |r| r.get(0))?;
        Ok((segments, bytes, gaps as u64))
    }
}
