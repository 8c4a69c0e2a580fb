//! Storage of the people who may act on the box (see `auth`): role, name, Argon2id hash.

use super::LedgerError;
use super::read::Reader;
use super::writer::Writer;
use rusqlite::{OptionalExtension, params};

#[derive(Debug, Clone)]
pub struct CredentialRow {
    pub id: String,
    pub role: String,
    pub name: String,
    pub secret_hash: String,
    pub created_wall: String,
}

fn row(r: &rusqlite::Row) -> rusqlite::Result<CredentialRow> {
    Ok(CredentialRow {
        id: r.get(0)?,
        role: r.get(1)?,
        name: r.get(2)?,
        secret_hash: r.get(3)?,
        created_wall: r.get(4)?,
    })
}

const COLUMNS: &str = "id, role, name, secret_hash, created_wall";

impl Reader {
    pub fn credentials(&self) -> Result<Vec<CredentialRow>, LedgerError> {
        let mut stmt = self.conn.prepare(&format!("SELECT {COLUMNS} FROM credentials ORDER BY role, name"))?;
        Ok(stmt.query_map([], row)?.collect::<Result<_, _>>()?)
    }

    pub fn credential_by_name(&self, name: &str) -> Result<Option<CredentialRow>, LedgerError> {
        Ok(self
            .conn
            .query_row(&format!("SELECT {COLUMNS} FROM credentials WHERE name = ?1"), [name], row)
            .optional()?)
    }

    pub fn credential_by_id(&self, id: &str) -> Result<Option<CredentialRow>, LedgerError> {
        Ok(self.conn.query_row(&format!("SELECT {COLUMNS} FROM credentials WHERE id = ?1"), [id], row).optional()?)
    }
}

impl Writer {
    /// Adds a person, or replaces the secret of the one with this name and role.
    pub fn put_credential(&mut self, id: &str, role: &str, name: &str, secret_hash: &str) -> Result<(), LedgerError> {
        self.transact(|tx, _, wall| {
            let taken: Option<String> =
                tx.query_row("SELECT role FROM credentials WHERE name = ?1", [name], |r| r.get(0)).optional()?;
            if let Some(other) = taken.filter(|r| r != role) {
                return Err(LedgerError::Invalid(format!("{name:?} is already a {other}")));
            }
            tx.execute("DELETE FROM credentials WHERE name = ?1", [name])?;
            tx.execute(
                "INSERT INTO credentials (id, role, name, secret_hash, created_wall) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, role, name, secret_hash, wall.to_rfc3339()],
            )?;
            Ok(())
        })
    }

    /// Returns whether someone of that name existed.
    pub fn remove_credential(&mut self, name: &str) -> Result<bool, LedgerError> {
        self.transact(|tx, _, _| Ok(tx.execute("DELETE FROM credentials WHERE name = ?1", [name])? == 1))
    }
}
