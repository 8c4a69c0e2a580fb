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

/// A stored sign-in lock-out (table `sign_in_locks`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInLock {
    pub account: String,
    /// `true` for clients on the box itself.
    pub local: bool,
    pub locks: u32,
    pub locked_until_unix: i64,
    pub last_lock_unix: i64,
}

impl Reader {
    pub fn sign_in_locks(&self) -> Result<Vec<SignInLock>, LedgerError> {
        let mut stmt =
            self.conn.prepare("SELECT account, scope, locks, locked_until_unix, last_lock_unix FROM sign_in_locks")?;
        let rows = stmt.query_map([], |r| {
            Ok(SignInLock {
                account: r.get(0)?,
                local: r.get::<_, String>(1)? == "local",
                locks: r.get(2)?,
                locked_until_unix: r.get(3)?,
                last_lock_unix: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

fn scope(local: bool) -> &'static str {
    if local { "local" } else { "remote" }
}

impl Writer {
    /// Stores a lock-out; `alarm` raises the technicians' alarm for the account with it.
    pub fn save_sign_in_lock(&mut self, lock: &SignInLock, alarm: Option<&str>) -> Result<(), LedgerError> {
        self.transact(|tx, _, wall| {
            tx.execute(
                "INSERT INTO sign_in_locks (account, scope, locks, locked_until_unix, last_lock_unix)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (account, scope) DO UPDATE SET locks = ?3, locked_until_unix = ?4, last_lock_unix = ?5",
                params![lock.account, scope(lock.local), lock.locks, lock.locked_until_unix, lock.last_lock_unix],
            )?;
            if let Some(message) = alarm {
                super::uploads::raise(tx, super::AlarmKind::SignInLockouts, &lock.account, message, wall)?;
            }
            Ok(())
        })
    }

    /// Forgets lock-outs that ended before `unix` (a day without a lock-out forgets them).
    pub fn forget_sign_in_locks(&mut self, unix: i64) -> Result<(), LedgerError> {
        self.transact(|tx, _, _| {
            tx.execute("DELETE FROM sign_in_locks WHERE locked_until_unix < ?1", [unix])?;
            Ok(())
        })
    }

    /// Forgets an account's lock-outs after it signed in (and clears its alarm).
    pub fn clear_sign_in_lock(&mut self, account: &str, local: bool) -> Result<(), LedgerError> {
        self.transact(|tx, _, wall| {
            tx.execute("DELETE FROM sign_in_locks WHERE account = ?1 AND scope = ?2", params![account, scope(local)])?;
            tx.execute(
                "UPDATE alarms SET cleared_wall = ?3 WHERE kind = ?1 AND subject = ?2 AND cleared_wall IS NULL",
                params![super::AlarmKind::SignInLockouts.as_str(), account, wall.to_rfc3339()],
            )?;
            Ok(())
        })
    }

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
