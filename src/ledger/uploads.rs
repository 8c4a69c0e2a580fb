//! The upload queue, local eviction and alarms: the ledger's side of store-and-forward.
//! The queue is `upload_jobs`; a job leaves `pending` only when the store acknowledged its
//! exact bytes (`done`) or holds different bytes under its name (`conflict`).

use super::LedgerError;
use super::read::Reader;
use super::writer::Writer;
use crate::base::WallTime;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use uuid::Uuid;

/// What an upload job carries; `as_str` is the `upload_jobs.kind` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadKind {
    /// A signed chain record.
    Record,
    /// A sealed media segment (a spool file).
    Segment,
    /// A signed manifest of a session.
    Manifest,
    /// A signed checkpoint of a log.
    Checkpoint,
    /// An RFC 3161 token over a checkpoint.
    Timestamp,
    /// An entry of the audit chain.
    AuditEntry,
    /// The device's public key or signed device info.
    DeviceKey,
    /// The old key's signed hand-over to a new one.
    KeyRotation,
}

crate::base::text_names!(UploadKind, UnknownKind, {
    Record => "record",
    Segment => "segment",
    Manifest => "manifest",
    Checkpoint => "checkpoint",
    Timestamp => "timestamp",
    AuditEntry => "audit_entry",
    DeviceKey => "device_key",
    KeyRotation => "key_rotation",
});

/// A stored kind (upload job or alarm) this courtbox does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a known kind")]
pub struct UnknownKind(pub String);

/// One object waiting for central storage.
#[derive(Debug, Clone)]
pub struct UploadJob {
    pub id: i64,
    pub session: Option<Uuid>,
    /// Relative to `{court}/{room}/` in the store.
    pub object_key: String,
    /// [`UploadKind::as_str`] of what it carries, as stored (text here because callers
    /// outside the crate build jobs by hand).
    pub kind: String,
    /// What to send: a spool file (relative to the data dir) or bytes held in the ledger.
    pub payload: Payload,
    pub sha256: [u8; 32],
    pub bytes: u64,
    pub attempts: u32,
}

#[derive(Debug, Clone)]
pub enum Payload {
    File(String),
    Content(Vec<u8>),
}

#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct UploadBacklog {
    pub objects: u64,
    pub bytes: u64,
    /// When the oldest pending object was committed.
    pub oldest_wall: Option<String>,
    pub uploaded_objects: u64,
    pub conflicts: u64,
}

/// What an alarm is about; `as_str` is the `alarms.kind` column and the status JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlarmKind {
    /// The store holds different bytes under a name this box wrote (subject: the object).
    StoreConflict,
    /// A spooled file no longer has the bytes that were sealed (subject: the object).
    LocalDamage,
    /// Free space is below `disk.warn_free_mib`.
    DiskLow,
    /// Free space is below `disk.critical_free_mib`: cameras pause.
    DiskCritical,
    /// An account was locked out several times in a row (subject: the account): someone may
    /// be guessing its PIN or token, or keeping its owner out.
    SignInLockouts,
    /// The data disk failed a write or a sync of the ledger: the daemon stopped recording
    /// and restarted through recovery (`ledger::failure`). Cleared after an hour without
    /// another.
    DiskFailure,
}

crate::base::text_names!(AlarmKind, UnknownKind, {
    StoreConflict => "store_conflict",
    LocalDamage => "local_damage",
    DiskLow => "disk_low",
    DiskCritical => "disk_critical",
    SignInLockouts => "sign_in_lockouts",
    DiskFailure => "disk_failure",
});

#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Alarm {
    pub kind: AlarmKind,
    pub subject: String,
    pub message: String,
    pub raised_wall: String,
}

/// A spooled segment file that the store has acknowledged.
#[derive(Debug, Clone)]
pub struct Evictable {
    pub session: Uuid,
    pub source: String,
    pub seq: u64,
    /// Relative to the data dir.
    pub local_path: String,
    pub bytes: u64,
    pub done_wall: String,
}

fn to_sha(v: Vec<u8>) -> [u8; 32] {
    v.try_into().unwrap_or([0; 32])
}

impl Reader {
    /// Pending jobs, oldest first, skipping `busy` ones (already being sent).
    pub fn pending_uploads(&self, limit: usize, busy: &[i64]) -> Result<Vec<UploadJob>, LedgerError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, session_id, object_key, kind, local_path, content, sha256, bytes, attempts
             FROM upload_jobs WHERE state = 'pending' ORDER BY priority, id LIMIT ?1",
        )?;
        let rows = stmt.query_map([(limit + busy.len()) as i64], |r| {
            let session: Option<String> = r.get(1)?;
            let payload = match (r.get::<_, Option<String>>(4)?, r.get::<_, Option<Vec<u8>>>(5)?) {
                (Some(path), _) => Payload::File(path),
                (None, content) => Payload::Content(content.unwrap_or_default()),
            };
            Ok(UploadJob {
                id: r.get(0)?,
                session: session.and_then(|s| Uuid::parse_str(&s).ok()),
                object_key: r.get(2)?,
                kind: r.get(3)?,
                payload,
                sha256: to_sha(r.get(6)?),
                bytes: r.get::<_, i64>(7)? as u64,
                attempts: r.get::<_, i64>(8)? as u32,
            })
        })?;
        let mut out = Vec::new();
        for job in rows {
            let job = job?;
            if !busy.contains(&job.id) {
                out.push(job);
            }
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    pub fn upload_backlog(&self) -> Result<UploadBacklog, LedgerError> {
        let (objects, bytes, oldest_wall) = self.conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(bytes), 0), MIN(created_wall) FROM upload_jobs WHERE state = 'pending'",
            [],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64, r.get(2)?)),
        )?;
        let (uploaded_objects, conflicts) = self.conn.query_row(
            "SELECT COALESCE(SUM(state = 'done'), 0), COALESCE(SUM(state = 'conflict'), 0) FROM upload_jobs",
            [],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
        )?;
        Ok(UploadBacklog { objects, bytes, oldest_wall, uploaded_objects, conflicts })
    }

    pub fn open_alarms(&self) -> Result<Vec<Alarm>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare("SELECT kind, subject, message, raised_wall FROM alarms WHERE cleared_wall IS NULL ORDER BY id")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
            .collect::<Result<Vec<(String, String, String, String)>, _>>()?;
        // A kind this release does not know (written by a newer one before a downgrade) is
        // left out with a warning rather than failing every status read.
        Ok(rows
            .into_iter()
            .filter_map(|(kind, subject, message, raised_wall)| match kind.parse::<AlarmKind>() {
                Ok(kind) => Some(Alarm { kind, subject, message, raised_wall }),
                Err(e) => {
                    tracing::warn!(error = %e, "an open alarm of an unknown kind is not shown");
                    None
                }
            })
            .collect())
    }

    /// Spooled segments whose exact bytes the store acknowledged, acknowledged first first.
    pub fn evictable_segments(&self, limit: usize) -> Result<Vec<Evictable>, LedgerError> {
        let mut stmt = self.conn.prepare(
            "SELECT s.session_id, s.source, s.seq, j.local_path, s.bytes, j.done_wall
             FROM segments s JOIN upload_jobs j
               ON j.kind = 'segment' AND j.object_key = s.session_id || '/' || s.file
             WHERE s.local_state = 'spooled' AND j.state = 'done'
             ORDER BY j.done_wall, j.id LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit as i64], |r| {
            Ok(Evictable {
                session: Uuid::parse_str(&r.get::<_, String>(0)?).unwrap_or_default(),
                source: r.get(1)?,
                seq: r.get::<_, i64>(2)? as u64,
                local_path: r.get(3)?,
                bytes: r.get::<_, i64>(4)? as u64,
                done_wall: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Local paths of segments already evicted (to finish a deletion a crash interrupted).
    pub fn evicted_paths(&self) -> Result<Vec<String>, LedgerError> {
        let mut stmt = self.conn.prepare(
            "SELECT j.local_path FROM segments s JOIN upload_jobs j
               ON j.kind = 'segment' AND j.object_key = s.session_id || '/' || s.file
             WHERE s.local_state = 'evicted'",
        )?;
        Ok(stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?)
    }
}

impl Writer {
    /// The store holds exactly the job's bytes.
    pub fn upload_done(&mut self, job: i64) -> Result<(), LedgerError> {
        self.transact(|tx, _, wall| {
            tx.execute(
                "UPDATE upload_jobs SET state = 'done', done_wall = ?2, last_attempt_wall = ?2, attempts = attempts + 1,
                 last_error = NULL WHERE id = ?1 AND state = 'pending'",
                params![job, wall.to_rfc3339()],
            )?;
            Ok(())
        })
    }

    /// An attempt failed; the job stays pending and will be tried again.
    pub fn upload_failed(&mut self, job: i64, error: &str) -> Result<(), LedgerError> {
        self.transact(|tx, _, wall| {
            tx.execute(
                "UPDATE upload_jobs SET attempts = attempts + 1, last_error = ?2, last_attempt_wall = ?3
                 WHERE id = ?1 AND state = 'pending'",
                params![job, error, wall.to_rfc3339()],
            )?;
            Ok(())
        })
    }

    /// The store holds other bytes under the job's name: never overwritten, never retried.
    pub fn upload_conflict(&mut self, job: i64, subject: &str, message: &str) -> Result<(), LedgerError> {
        self.transact(|tx, _, wall| {
            tx.execute(
                "UPDATE upload_jobs SET state = 'conflict', attempts = attempts + 1, last_error = ?2,
                 last_attempt_wall = ?3 WHERE id = ?1",
                params![job, message, wall.to_rfc3339()],
            )?;
            raise(tx, AlarmKind::StoreConflict, subject, message, wall)?;
            Ok(())
        })
    }

    /// Raises an alarm unless the same one is already open. Returns whether it is new.
    pub fn raise_alarm(&mut self, kind: AlarmKind, subject: &str, message: &str) -> Result<bool, LedgerError> {
        self.transact(|tx, _, wall| raise(tx, kind, subject, message, wall))
    }

    /// Clears the open alarm of this kind and subject, if any. Returns whether one was open.
    pub fn clear_alarm(&mut self, kind: AlarmKind, subject: &str) -> Result<bool, LedgerError> {
        self.transact(|tx, _, wall| {
            let n = tx.execute(
                "UPDATE alarms SET cleared_wall = ?3 WHERE kind = ?1 AND subject = ?2 AND cleared_wall IS NULL",
                params![kind.as_str(), subject, wall.to_rfc3339()],
            )?;
            Ok(n > 0)
        })
    }

    /// Marks an uploaded segment as no longer on the box; the caller then deletes the file.
    /// Refuses (returns false) unless the store has acknowledged it.
    pub fn mark_evicted(&mut self, session: Uuid, source: &str, seq: u64) -> Result<bool, LedgerError> {
        self.transact(|tx, _, _| {
            let uploaded: Option<String> = tx
                .query_row(
                    "SELECT j.state FROM segments s JOIN upload_jobs j
                       ON j.kind = 'segment' AND j.object_key = s.session_id || '/' || s.file
                     WHERE s.session_id = ?1 AND s.source = ?2 AND s.seq = ?3",
                    params![session.to_string(), source, seq as i64],
                    |r| r.get(0),
                )
                .optional()?;
            if uploaded.as_deref() != Some("done") {
                return Ok(false);
            }
            let n = tx.execute(
                "UPDATE segments SET local_state = 'evicted'
                 WHERE session_id = ?1 AND source = ?2 AND seq = ?3 AND local_state = 'spooled'",
                params![session.to_string(), source, seq as i64],
            )?;
            Ok(n == 1)
        })
    }
}

pub(super) fn raise(
    tx: &rusqlite::Transaction,
    kind: AlarmKind,
    subject: &str,
    message: &str,
    wall: WallTime,
) -> Result<bool, LedgerError> {
    let n = tx.execute(
        "INSERT INTO alarms (kind, subject, message, raised_wall) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (kind, subject) WHERE cleared_wall IS NULL DO NOTHING",
        params![kind.as_str(), subject, message, wall.to_rfc3339()],
    )?;
    Ok(n == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_kinds_read_back() {
        for kind in UploadKind::ALL {
            assert_eq!(kind.as_str().parse::<UploadKind>(), Ok(kind));
        }
        for kind in AlarmKind::ALL {
            assert_eq!(kind.as_str().parse::<AlarmKind>(), Ok(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        assert!("disk_full".parse::<AlarmKind>().is_err());
        for state in super::super::read::SessionState::ALL {
            assert_eq!(state.as_str().parse(), Ok(state));
        }
        for end in super::super::read::RunEnd::ALL {
            assert_eq!(end.as_str().parse(), Ok(end));
        }
    }
}
