//! The ledger's side of the witness: checkpoints signed in the transaction of what they
//! cover (with their upload job, so a crash can neither lose one nor send one twice under
//! two names), the periodic checkpoint of the recording session, and TSA tokens.

use super::read::Reader;
use super::writer::{Priority, Writer, insert_upload_job};
use super::{LedgerError, UploadKind};
use crate::base::WallTime;
use crate::integrity::DeviceKey;
use crate::witness::{Cause, Checkpoint, Log, checkpoint};
use rusqlite::{OptionalExtension, Transaction, params};

/// One stored checkpoint.
#[derive(Debug, Clone)]
pub struct CheckpointRow {
    pub log: Log,
    pub seq: u64,
    pub size: u64,
    pub note: Vec<u8>,
    pub created_wall: String,
    pub token: Option<Vec<u8>>,
}

/// Signs the next checkpoint of `log`, stores it and queues its upload ahead of the media.
pub(super) fn write_checkpoint(
    tx: &Transaction,
    key: &DeviceKey,
    log: &Log,
    size: u64,
    head: [u8; 32],
    cause: Cause,
    wall: WallTime,
) -> Result<u64, LedgerError> {
    let name = log.ledger_name();
    let last: u64 = tx
        .query_row("SELECT COALESCE(MAX(seq), 0) FROM checkpoints WHERE log = ?1", [&name], |r| r.get::<_, i64>(0))?
        as u64;
    let seq = last + 1;
    let head = if size == 0 { [0; 32] } else { head };
    let note = Checkpoint { log: log.clone(), size, head, wall, seq, cause }.sign(key);
    tx.execute(
        "INSERT INTO checkpoints (log, seq, size, note, created_wall) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![name, seq as i64, size as i64, note, wall.to_rfc3339()],
    )?;
    let session = match log {
        Log::Session(id) => Some(*id),
        Log::Audit => None,
    };
    insert_upload_job(
        tx,
        session,
        &log.object(seq, checkpoint::NOTE, &key.public().key_id()),
        UploadKind::Checkpoint,
        None,
        Some(&note),
        wall,
        Priority::Witness,
    )?;
    Ok(seq)
}

fn row(r: &rusqlite::Row) -> rusqlite::Result<CheckpointRow> {
    let log: String = r.get(0)?;
    Ok(CheckpointRow {
        log: Log::from_ledger_name(&log).unwrap_or(Log::Audit),
        seq: r.get::<_, i64>(1)? as u64,
        size: r.get::<_, i64>(2)? as u64,
        note: r.get(3)?,
        created_wall: r.get(4)?,
        token: r.get(5)?,
    })
}

impl Reader {
    /// Every checkpoint of a log, in order.
    pub fn checkpoints(&self, log: &Log) -> Result<Vec<CheckpointRow>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare("SELECT log, seq, size, note, created_wall, token FROM checkpoints WHERE log = ?1 ORDER BY seq")?;
        Ok(stmt.query_map([log.ledger_name()], row)?.collect::<Result<_, _>>()?)
    }

    /// How many checkpoints wait for a timestamp, and when the newest was made.
    pub fn checkpoint_summary(&self) -> Result<(u64, Option<String>), LedgerError> {
        Ok(self.conn.query_row(
            "SELECT (SELECT COUNT(*) FROM checkpoints WHERE token IS NULL), (SELECT MAX(created_wall) FROM checkpoints)",
            [],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)),
        )?)
    }

    /// Checkpoints still waiting for a timestamp, oldest first.
    pub fn unstamped_checkpoints(&self, limit: usize) -> Result<Vec<CheckpointRow>, LedgerError> {
        let mut stmt = self.conn.prepare(
            "SELECT log, seq, size, note, created_wall, token FROM checkpoints WHERE token IS NULL
             ORDER BY created_wall, seq LIMIT ?1",
        )?;
        Ok(stmt.query_map([limit as i64], row)?.collect::<Result<_, _>>()?)
    }
}

impl Writer {
    /// The periodic checkpoint: signs one for the recording session if its chain grew since
    /// the last one. Returns its number.
    pub fn checkpoint_recording(&mut self) -> Result<Option<u64>, LedgerError> {
        self.transact(|tx, chain, wall| {
            let session: Option<String> =
                tx.query_row("SELECT id FROM sessions WHERE state = 'recording'", [], |r| r.get(0)).optional()?;
            let Some(session) = session else { return Ok(None) };
            let head: Option<(i64, Vec<u8>)> = tx
                .query_row(
                    "SELECT idx, hash FROM records WHERE session_id = ?1 ORDER BY idx DESC LIMIT 1",
                    [&session],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((idx, hash)) = head else { return Ok(None) };
            let size = idx as u64 + 1;
            let covered: i64 =
                tx.query_row("SELECT COALESCE(MAX(size), 0) FROM checkpoints WHERE log = ?1", [&session], |r| {
                    r.get(0)
                })?;
            if covered as u64 >= size {
                return Ok(None);
            }
            let log = Log::from_ledger_name(&session).ok_or_else(|| LedgerError::Invalid("bad session id".into()))?;
            let head: [u8; 32] =
                hash.try_into().map_err(|_| LedgerError::Invalid("stored hash is not 32 bytes".into()))?;
            write_checkpoint(tx, chain.key, &log, size, head, Cause::Periodic, wall).map(Some)
        })
    }

    /// The periodic checkpoint of the audit chain: one if entries were added since the last
    /// (refused requests are not checkpointed one by one, so a flood of them costs little).
    pub fn checkpoint_audit(&mut self) -> Result<Option<u64>, LedgerError> {
        self.transact(|tx, chain, wall| {
            let last: Option<(i64, Vec<u8>)> = tx
                .query_row("SELECT idx, body FROM audit ORDER BY idx DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let Some((idx, body)) = last else { return Ok(None) };
            let covered: i64 =
                tx.query_row("SELECT COALESCE(MAX(size), 0) FROM checkpoints WHERE log = 'audit'", [], |r| r.get(0))?;
            if covered > idx {
                return Ok(None);
            }
            let head = crate::integrity::sha256(&body);
            write_checkpoint(tx, chain.key, &Log::Audit, idx as u64 + 1, head, Cause::Periodic, wall).map(Some)
        })
    }

    /// Stores the TSA's token for a checkpoint and queues it beside the note.
    pub fn add_timestamp(&mut self, log: &Log, seq: u64, token: &[u8]) -> Result<(), LedgerError> {
        self.transact(|tx, chain, wall| {
            let n = tx.execute(
                "UPDATE checkpoints SET token = ?3, stamped_wall = ?4 WHERE log = ?1 AND seq = ?2 AND token IS NULL",
                params![log.ledger_name(), seq as i64, token, wall.to_rfc3339()],
            )?;
            if n == 1 {
                let session = match log {
                    Log::Session(id) => Some(*id),
                    Log::Audit => None,
                };
                // Beside its note, wherever that went (an audit note signed by a key since
                // replaced is in that key's folder).
                let note: Vec<u8> = tx.query_row(
                    "SELECT note FROM checkpoints WHERE log = ?1 AND seq = ?2",
                    params![log.ledger_name(), seq as i64],
                    |r| r.get(0),
                )?;
                let note_object: Option<String> = tx
                    .query_row(
                        "SELECT object_key FROM upload_jobs WHERE kind = 'checkpoint' AND sha256 = ?1",
                        [crate::integrity::sha256(&note).to_vec()],
                        |r| r.get(0),
                    )
                    .optional()?;
                let object = match note_object.as_deref().and_then(|o| o.strip_suffix(checkpoint::NOTE)) {
                    Some(stem) => format!("{stem}{}", checkpoint::TOKEN),
                    None => log.object(seq, checkpoint::TOKEN, &chain.key.public().key_id()),
                };
                insert_upload_job(
                    tx,
                    session,
                    &object,
                    UploadKind::Timestamp,
                    None,
                    Some(token),
                    wall,
                    Priority::Witness,
                )?;
            }
            Ok(())
        })
    }
}
