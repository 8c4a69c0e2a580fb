//! The audit chain's storage: one signed, hash-chained row per user action.

use super::read::Reader;
use super::witness::write_checkpoint;
use super::writer::{Priority, Writer, insert_upload_job};
use super::{LedgerError, UploadKind};
use rusqlite::{OptionalExtension, params};

impl Reader {
    /// The audit chain in stored order: (body, signature).
    pub fn audit_entries(&self) -> Result<Vec<crate::integrity::SignedEntry>, LedgerError> {
        let mut stmt = self.conn.prepare("SELECT body, signature FROM audit ORDER BY idx")?;
        let rows = stmt.query_map([], |r| {
            let sig: Vec<u8> = r.get(1)?;
            Ok((r.get::<_, Vec<u8>>(0)?, sig.try_into().unwrap_or([0u8; 64])))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

impl Writer {
    /// Appends one signed entry to the audit chain.
    pub fn audit(&mut self, actor: &str, role: &str, action: &str, status: u16) -> Result<u64, LedgerError> {
        let key = self.key.clone();
        self.transact(|tx, _, wall| {
            let prev: Option<(i64, Vec<u8>)> = tx
                .query_row("SELECT idx, body FROM audit ORDER BY idx DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let doc = crate::integrity::next_audit_entry(
                &key,
                prev.as_ref().map(|(i, b)| (*i as u64, b.as_slice())),
                wall,
                actor,
                role,
                action,
                status,
            );
            let idx = prev.map_or(0, |(i, _)| i + 1);
            tx.execute(
                "INSERT INTO audit (idx, body, signature) VALUES (?1, ?2, ?3)",
                params![idx, doc.body, doc.signature.to_vec()],
            )?;
            // Each entry leaves the box, with a checkpoint of the whole chain: whoever can write
            // ledger.db can no longer drop its newest entries unnoticed. An action that was
            // done is checkpointed at once; refused and failed requests (which an attacker can
            // send by the thousand) wait for the periodic checkpoint and go with the media, so
            // that they never push the record's own witness back.
            let done = (200..300).contains(&status);
            let folder = crate::witness::checkpoint::audit_folder(&key.public().key_id());
            insert_upload_job(
                tx,
                None,
                &format!("{folder}/entries/{idx:08}.rec"),
                UploadKind::AuditEntry,
                None,
                Some(&doc.to_bytes()),
                wall,
                if done { Priority::Witness } else { Priority::Normal },
            )?;
            if done {
                write_checkpoint(
                    tx,
                    &key,
                    &crate::witness::Log::Audit,
                    idx as u64 + 1,
                    doc.hash(),
                    crate::witness::Cause::Audit,
                    wall,
                )?;
            }
            Ok(idx as u64)
        })
    }
}
