//! When the ledger's own storage fails. SQLite reports an I/O error (a failed `fsync` of the
//! WAL or the database, a failed write or read) or corruption: the ledger is no longer
//! trusted in this process. After a failed fsync the kernel may have dropped what was
//! written, and a retry would report success anyway. So nothing more is written through
//! this process. The daemon stops recording, says why, and exits, so that systemd restarts
//! it. Recovery at the next start then reads what is really on the disk. It recovers the
//! spool files that were left uncommitted, and a gap states the interruption.
//!
//! The reason is written next to the ledger (`ledger.failed`, best effort: the disk is
//! failing). The next start raises the `disk_failure` alarm with it, so the technician
//! learns of it after the restart too.

use super::LedgerError;
use rusqlite::ErrorCode;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tokio_util::sync::CancellationToken;

/// Whether the failure is of the ledger's storage, not of the request: the ledger can no
/// longer be trusted. Decided by SQLite's error code, never by its text.
pub fn is_storage_failure(e: &LedgerError) -> bool {
    match e {
        // An I/O error other than SQLite running out of memory (SQLITE_IOERR_NOMEM).
        LedgerError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => match e.code {
            ErrorCode::SystemIoFailure => e.extended_code != rusqlite::ffi::SQLITE_IOERR_NOMEM,
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => true,
            _ => false,
        },
        _ => false,
    }
}

/// Whether SQLite refused the write for lack of space ("database or disk is full"): the
/// transaction rolled back cleanly, and the same write may succeed once there is room.
pub fn is_disk_full(e: &LedgerError) -> bool {
    matches!(e, LedgerError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) if e.code == ErrorCode::DiskFull)
}

/// The ledger's failure, once it happened: its reason, and a token cancelled at that
/// moment (the daemon's shutdown waits on it).
#[derive(Debug)]
pub struct LedgerFailure {
    reason: OnceLock<String>,
    failed: CancellationToken,
    marker: PathBuf,
}

impl LedgerFailure {
    pub(super) fn new(ledger: &Path) -> LedgerFailure {
        LedgerFailure { reason: OnceLock::new(), failed: CancellationToken::new(), marker: marker_path(ledger) }
    }

    /// Notes a storage failure (the first one counts) and tells whoever waits for it.
    pub(super) fn fail(&self, error: &LedgerError) {
        let reason = error.to_string();
        if self.reason.set(reason.clone()).is_ok() {
            tracing::error!(error = %reason, "the ledger's storage failed: no more writes in this process; the daemon stops and restarts through recovery");
            let text = format!("{}\n{reason}\n", crate::base::WallTime::now().to_rfc3339());
            if let Err(e) = crate::base::write_durably(&self.marker, text.as_bytes()) {
                tracing::error!(path = %self.marker.display(), error = %e, "cannot note the ledger's failure for the next start");
            }
            self.failed.cancel();
        }
    }

    /// The error a write gets once the ledger has failed.
    pub(super) fn refusal(&self) -> Option<LedgerError> {
        self.reason.get().map(|r| LedgerError::Failed(r.clone()))
    }

    pub fn reason(&self) -> Option<&str> {
        self.reason.get().map(String::as_str)
    }

    /// Completes when the ledger fails.
    pub fn token(&self) -> CancellationToken {
        self.failed.clone()
    }
}

fn marker_path(ledger: &Path) -> PathBuf {
    let mut name = ledger.file_name().unwrap_or_default().to_os_string();
    name.push(".failed");
    ledger.with_file_name(name)
}

/// The failure a previous daemon noted (its time and reason, as the alarm's text), if any.
pub(super) fn noted(ledger: &Path) -> Option<String> {
    let text = std::fs::read_to_string(marker_path(ledger)).ok()?;
    let mut lines = text.lines();
    let (at, reason) = (lines.next().unwrap_or("?"), lines.next().unwrap_or("unknown"));
    Some(format!(
        "the ledger's storage failed at {at} ({reason}); the daemon stopped recording and restarted through recovery. \
         Check the data disk"
    ))
}

/// Removes the note, once its alarm is committed.
pub(super) fn forget_noted(ledger: &Path) {
    let marker = marker_path(ledger);
    let _ = std::fs::remove_file(&marker);
    if let Some(dir) = marker.parent() {
        let _ = crate::base::sync_dir(dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_and_corruption_are_storage_failures_and_others_are_not() {
        let sqlite = |code: i32| {
            LedgerError::Sqlite(rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), Some("text".into())))
        };
        // SQLITE_IOERR_FSYNC (1034) is an extended code of SQLITE_IOERR.
        assert!(is_storage_failure(&sqlite(1034)));
        assert!(!is_storage_failure(&sqlite(rusqlite::ffi::SQLITE_IOERR_NOMEM)), "memory, not the disk");
        assert!(is_disk_full(&sqlite(rusqlite::ffi::SQLITE_FULL)) && !is_disk_full(&sqlite(1034)));
        assert!(is_storage_failure(&sqlite(rusqlite::ffi::SQLITE_CORRUPT)));
        assert!(!is_storage_failure(&sqlite(rusqlite::ffi::SQLITE_CONSTRAINT)));
        assert!(!is_storage_failure(&sqlite(rusqlite::ffi::SQLITE_FULL)), "a full disk rolls back cleanly");
        assert!(!is_storage_failure(&LedgerError::Invalid("x".into())));
    }

    #[test]
    fn the_first_failure_is_noted_for_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = dir.path().join("ledger.db");
        let failure = LedgerFailure::new(&ledger);
        let token = failure.token();
        assert!(failure.refusal().is_none() && !token.is_cancelled());
        failure.fail(&LedgerError::Invalid("disk I/O error".into()));
        failure.fail(&LedgerError::Invalid("a later one".into()));
        assert!(token.is_cancelled());
        assert!(matches!(failure.refusal(), Some(LedgerError::Failed(r)) if r.contains("disk I/O error")));
        let text = noted(&ledger).unwrap();
        assert!(text.contains("disk I/O error") && !text.contains("later"), "{text}");
        forget_noted(&ledger);
        assert_eq!(noted(&ledger), None);
    }
}
