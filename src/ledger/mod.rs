//! The ledger: SQLite in WAL mode with one writer thread that owns the read-write
//! connection and the chain heads. Other threads send it closures and wait for the result;
//! readers open their own read-only connections. `schema.sql` documents every table.

mod audit;
mod credentials;
mod failure;
mod read;
mod uploads;
mod witness;
mod writer;

pub use credentials::{CredentialRow, SignInLock};
pub use failure::{LedgerFailure, is_disk_full, is_storage_failure};
pub use read::{CaptionRow, Reader, RecordRow, RunEnd, RunRow, SegmentRow, SessionRow, SessionState};
pub use uploads::{Alarm, AlarmKind, Evictable, Payload, UnknownKind, UploadBacklog, UploadJob, UploadKind};
pub use witness::CheckpointRow;
pub use writer::{Committed, NewSession, SegmentCommit, Writer};

use crate::base::Clocks;
use crate::integrity::DeviceKey;
use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use thiserror::Error;

pub const SCHEMA_VERSION: i32 = 7;
const SCHEMA: &str = include_str!("schema.sql");
/// `(version, sql)`: the script that upgrades `version - 1` to `version`.
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("migrations/001_initial.sql")),
    (2, include_str!("migrations/002_captions.sql")),
    (3, include_str!("migrations/003_alarms.sql")),
    (4, include_str!("migrations/004_audit.sql")),
    (5, include_str!("migrations/005_credentials.sql")),
    (6, include_str!("migrations/006_witness.sql")),
    (7, include_str!("migrations/007_sign_in_locks.sql")),
];

#[derive(Debug, Error)]
pub enum LedgerError {
    #[error("ledger: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(
        "ledger {path}: schema version {found} is newer than this courtbox understands ({supported}); install a newer courtbox"
    )]
    TooNew { path: PathBuf, found: i32, supported: i32 },
    #[error("ledger: the writer thread has stopped")]
    Stopped,
    /// No session id starts with this text (`find_session`).
    #[error("ledger: no session {0:?} in this ledger (see `courtbox sessions`)")]
    NoSuchSession(String),
    /// More than one session id starts with this text (`find_session`).
    #[error("ledger: {prefix:?} matches {count} sessions; give more of the id")]
    AmbiguousSession { prefix: String, count: usize },
    /// A write named a session the ledger does not hold.
    #[error("ledger: no session {0}")]
    UnknownSession(uuid::Uuid),
    #[error("ledger: {0}")]
    Invalid(String),
    /// The ledger's storage failed earlier in this process (`ledger::failure`): it takes no
    /// more writes until the daemon restarts.
    #[error("ledger: its storage failed ({0}); no more writes until the daemon restarts and recovers")]
    Failed(String),
}

impl LedgerError {
    /// True when the error says the named session does not exist (callers answer "not found").
    pub fn is_missing_session(&self) -> bool {
        matches!(self, LedgerError::NoSuchSession(_) | LedgerError::UnknownSession(_))
    }
}

type Job = Box<dyn FnOnce(&mut Writer) + Send>;

/// The writer thread's two queues. Whatever the record needs (segments, events, captions,
/// checkpoints) goes ahead of the audit chain's entries, so that nobody who can make the API
/// write audit entries can delay a seal (issue 20): the writer takes an audit job only when
/// no other job waits.
#[derive(Default)]
struct Lanes {
    record: std::collections::VecDeque<Job>,
    audit: std::collections::VecDeque<Job>,
    closed: bool,
}

#[derive(Default)]
struct Queue {
    lanes: Mutex<Lanes>,
    ready: parking_lot::Condvar,
}

impl Queue {
    fn push(&self, job: Job, audit: bool) -> Result<(), LedgerError> {
        let mut lanes = self.lanes.lock();
        if lanes.closed {
            return Err(LedgerError::Stopped);
        }
        if audit {
            lanes.audit.push_back(job)
        } else {
            lanes.record.push_back(job)
        }
        self.ready.notify_one();
        Ok(())
    }

    /// The next job, the record's first; `None` once closed and drained.
    fn pop(&self) -> Option<Job> {
        let mut lanes = self.lanes.lock();
        loop {
            if let Some(job) = lanes.record.pop_front().or_else(|| lanes.audit.pop_front()) {
                return Some(job);
            }
            if lanes.closed {
                return None;
            }
            self.ready.wait(&mut lanes);
        }
    }

    /// No more jobs are taken; `last` runs after those already queued.
    fn close(&self, last: Job) {
        let mut lanes = self.lanes.lock();
        if !lanes.closed {
            lanes.audit.push_back(last);
            lanes.closed = true;
        }
        self.ready.notify_one();
    }
}

/// Handle to the ledger's writer thread. Cheap to share behind an `Arc`.
pub struct Ledger {
    path: PathBuf,
    failure: Arc<LedgerFailure>,
    jobs: Arc<Queue>,
    thread: Mutex<Option<JoinHandle<()>>>,
    checkpointer: Mutex<Option<(mpsc::Sender<()>, JoinHandle<()>)>>,
}

/// How often the WAL is copied back into the database. Done by a connection of its own, so
/// that no commit ever pays for a checkpoint (WAL checkpoints run beside writers).
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

fn start_checkpointer(
    path: &Path,
    failure: Arc<LedgerFailure>,
) -> Result<(mpsc::Sender<()>, JoinHandle<()>), LedgerError> {
    let conn = open_connection(path, false)?;
    let (tx, rx) = mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("ledger-checkpoint".into())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(CHECKPOINT_EVERY) {
                if failure.reason().is_some() {
                    break;
                }
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    let e = LedgerError::from(e);
                    if is_storage_failure(&e) {
                        failure.fail(&e);
                        break;
                    }
                    tracing::warn!(error = %e, "ledger checkpoint failed; will retry");
                }
            }
        })
        .map_err(|e| LedgerError::Invalid(format!("cannot start checkpoint thread: {e}")))?;
    Ok((tx, thread))
}

impl Ledger {
    /// Opens (creating or migrating) the ledger and starts its writer thread.
    pub fn open(path: &Path, key: Arc<DeviceKey>, clocks: Arc<dyn Clocks>) -> Result<Ledger, LedgerError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| LedgerError::Invalid(format!("{}: {e}", dir.display())))?;
        }
        let mut conn = open_connection(path, false)?;
        let noted_failure = failure::noted(path);
        if noted_failure.is_some() {
            // The last daemon stopped on a failed sync. Its failed transaction may still be
            // in the WAL as the page cache holds it, though not on the disk: WAL recovery
            // would take it as committed, and commits appended after it would be lost with
            // it at the next power cut. Folding the WAL into the database (and syncing it)
            // first makes what SQLite sees now the durable state.
            let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
            if busy != 0 {
                return Err(LedgerError::Invalid(format!(
                    "{}: the WAL could not be folded in after the last daemon's failure (another process has the ledger open)",
                    path.display()
                )));
            }
        }
        migrate(&mut conn, path)?;
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        if let Some(dir) = path.parent() {
            // The database's name is durable before anything is committed in it.
            crate::base::sync_dir(dir).map_err(|e| LedgerError::Invalid(format!("{}: {e}", dir.display())))?;
        }
        let failure = Arc::new(LedgerFailure::new(path));
        let checkpointer = start_checkpointer(path, failure.clone())?;
        let mut writer = Writer::new(conn, key, clocks, failure.clone());
        writer.register_device_key()?;
        if let Some(noted) = noted_failure {
            tracing::error!(failure = %noted, "ALARM: the previous daemon stopped because the ledger's storage failed");
            writer.raise_alarm(AlarmKind::DiskFailure, "", &noted)?;
            failure::forget_noted(path);
        }
        let jobs = Arc::new(Queue::default());
        let queue = jobs.clone();
        let thread = std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || {
                while let Some(job) = queue.pop() {
                    job(&mut writer);
                }
            })
            .map_err(|e| LedgerError::Invalid(format!("cannot start writer thread: {e}")))?;
        Ok(Ledger {
            path: path.to_path_buf(),
            failure,
            jobs,
            thread: Mutex::new(Some(thread)),
            checkpointer: Mutex::new(Some(checkpointer)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The ledger's storage failure, if one happened in this process.
    pub fn failure(&self) -> &LedgerFailure {
        &self.failure
    }

    /// Runs `f` on the writer thread and waits for its result. Blocking: from async code,
    /// call it inside `spawn_blocking`.
    pub fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Writer) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, LedgerError> {
        self.queue(f, false)
    }

    /// As `call`, for the audit chain: runs only when nothing of the record waits.
    pub fn call_audit<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Writer) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, LedgerError> {
        self.queue(f, true)
    }

    fn queue<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Writer) -> Result<T, LedgerError> + Send + 'static,
        audit: bool,
    ) -> Result<T, LedgerError> {
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |w| {
            let _ = reply_tx.send(f(w));
        });
        self.jobs.push(job, audit)?;
        reply_rx.recv().map_err(|_| LedgerError::Stopped)?
    }

    pub fn reader(&self) -> Result<Reader, LedgerError> {
        Reader::open(&self.path)
    }

    /// Finishes queued work, stops the writer thread and folds the WAL into the database.
    pub fn close(&self) {
        if let Some((stop, t)) = self.checkpointer.lock().take() {
            drop(stop);
            let _ = t.join();
        }
        self.jobs.close(Box::new(|w: &mut Writer| w.checkpoint()));
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        self.close();
    }
}

fn open_connection(path: &Path, read_only: bool) -> Result<Connection, LedgerError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    // The pragma, not `Connection::busy_timeout`: that one needs SQLite 3.44, Debian 12 has 3.40.
    conn.pragma_update(None, "busy_timeout", 10_000)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    if !read_only {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // Every write transaction is a commit point: it must be on disk when commit returns.
        conn.pragma_update(None, "synchronous", "FULL")?;
    }
    Ok(conn)
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), LedgerError> {
    let version: i32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(LedgerError::TooNew { path: path.to_path_buf(), found: version, supported: SCHEMA_VERSION });
    }
    let tx = conn.transaction()?;
    if version == 0 {
        tx.execute_batch(SCHEMA)?;
    } else {
        for (v, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > version) {
            tracing::info!(path = %path.display(), to = v, "migrating ledger schema");
            tx.execute_batch(sql)?;
        }
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every object's SQL, comments and layout removed (SQLite keeps both verbatim).
    fn schema_of(conn: &Connection) -> Vec<String> {
        let mut stmt = conn.prepare("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name").unwrap();
        stmt.query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(|sql| {
                let sql = sql.unwrap();
                let code: Vec<&str> = sql.lines().map(|l| l.split("--").next().unwrap_or("")).collect();
                // A table renamed by a migration is stored as `CREATE TABLE "name"`.
                code.join(" ")
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .replace("CREATE TABLE \"runs\"", "CREATE TABLE runs")
                    .replace("CREATE TABLE \"upload_jobs\"", "CREATE TABLE upload_jobs")
            })
            .collect()
    }

    #[test]
    fn fresh_and_migrated_schemas_match() {
        let dir = tempfile::tempdir().unwrap();
        let fresh_path = dir.path().join("fresh.db");
        let mut fresh = open_connection(&fresh_path, false).unwrap();
        migrate(&mut fresh, &fresh_path).unwrap();

        // A database of the first release (version 1) goes through every migration.
        let old_path = dir.path().join("old.db");
        let mut old = open_connection(&old_path, false).unwrap();
        old.execute_batch(MIGRATIONS[0].1).unwrap();
        old.pragma_update(None, "user_version", 1).unwrap();
        migrate(&mut old, &old_path).unwrap();

        assert_eq!(schema_of(&fresh), schema_of(&old));
        let v: i32 = old.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(v, SCHEMA_VERSION);
    }

    fn open_test_ledger(dir: &Path) -> (Ledger, Arc<DeviceKey>) {
        let key = Arc::new(DeviceKey::create(&dir.join("device.key")).unwrap());
        let clocks = Arc::new(crate::base::RealClocks::new());
        (Ledger::open(&dir.join("ledger.db"), key.clone(), clocks).unwrap(), key)
    }

    fn new_session() -> NewSession {
        NewSession {
            court: "c".into(),
            room: "r".into(),
            case: "1".into(),
            title: "t".into(),
            language: crate::integrity::Language::En,
            hearing: crate::integrity::Hearing::Open,
            profile: "p".into(),
            segment_ns: 10_000_000_000,
            sources: vec![],
        }
    }

    #[test]
    fn an_action_done_is_checkpointed_at_once_and_refused_ones_wait_for_the_periodic_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, _key) = open_test_ledger(dir.path());
        let audit_checkpoints =
            |l: &Ledger| l.reader().unwrap().checkpoints(&crate::witness::Log::Audit).unwrap().len();
        ledger.call(|w| w.audit("technician", "technician", "POST /api/v1/sessions", 200)).unwrap();
        assert_eq!(audit_checkpoints(&ledger), 1);
        for _ in 0..5 {
            ledger.call(|w| w.audit("anonymous", "none", "POST /api/v1/sessions", 401)).unwrap();
        }
        assert_eq!(audit_checkpoints(&ledger), 1, "refused requests are not checkpointed one by one");
        assert_eq!(ledger.call(|w| w.checkpoint_audit()).unwrap(), Some(2));
        let rows = ledger.reader().unwrap().checkpoints(&crate::witness::Log::Audit).unwrap();
        assert_eq!(rows.last().unwrap().size, 6, "the periodic checkpoint covers all six entries");
        assert_eq!(ledger.call(|w| w.checkpoint_audit()).unwrap(), None, "nothing new, no checkpoint");
    }

    /// Audit entries wait while anything of the record is queued: with the writer busy, an
    /// audit job queued first still runs after a record job queued later.
    #[test]
    fn the_record_goes_ahead_of_the_audit_chain() {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, _key) = open_test_ledger(dir.path());
        let ledger = Arc::new(ledger);
        let order = Arc::new(Mutex::new(Vec::new()));
        let (release, hold) = mpsc::channel::<()>();
        let busy = {
            let l = ledger.clone();
            std::thread::spawn(move || {
                l.call(move |_| {
                    hold.recv().ok();
                    Ok(())
                })
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(100));
        let queue = |audit: bool, name: &'static str| {
            let (l, order) = (ledger.clone(), order.clone());
            let t = std::thread::spawn(move || {
                let job = move |_: &mut Writer| {
                    order.lock().push(name);
                    Ok(())
                };
                if audit { l.call_audit(job) } else { l.call(job) }
            });
            std::thread::sleep(std::time::Duration::from_millis(100));
            t
        };
        let audit = queue(true, "audit");
        let record = queue(false, "segment");
        release.send(()).unwrap();
        for t in [busy, audit, record] {
            t.join().unwrap().unwrap();
        }
        assert_eq!(*order.lock(), ["segment", "audit"]);
    }

    #[test]
    fn an_alarm_of_a_kind_this_release_does_not_know_is_left_out_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, _key) = open_test_ledger(dir.path());
        ledger.call(|w| w.raise_alarm(AlarmKind::DiskLow, "", "free space is low")).unwrap();
        // As a newer release might have left it before a downgrade.
        let conn = open_connection(&dir.path().join("ledger.db"), false).unwrap();
        conn.execute(
            "INSERT INTO alarms (kind, subject, message, raised_wall) VALUES ('disk_on_fire', '', 'x', '2026-01-01T00:00:00Z')",
            [],
        )
        .unwrap();
        let alarms = ledger.reader().unwrap().open_alarms().unwrap();
        assert_eq!(alarms.iter().map(|a| a.kind).collect::<Vec<_>>(), vec![AlarmKind::DiskLow]);
    }

    #[test]
    fn a_session_begun_in_format_v1_is_continued_and_sealed_in_v1() {
        use crate::base::MediaTime;
        use crate::integrity::{Context, Entry, RecordBody, SignedDoc, check_signature};
        let dir = tempfile::tempdir().unwrap();
        let (ledger, key) = open_test_ledger(dir.path());
        let (id, _) = ledger.call(|w| w.create_session(new_session())).unwrap();
        // As a release before format v2 wrote it: the first record re-signed in v1, in place.
        let row = ledger.reader().unwrap().records(id).unwrap().remove(0);
        let mut body: RecordBody = serde_json::from_slice(&row.body).unwrap();
        body.v = 1;
        let v1 = SignedDoc::sign_as(&body, &key, Context::Record, 1);
        let conn = open_connection(&dir.path().join("ledger.db"), false).unwrap();
        conn.execute(
            "UPDATE records SET body = ?2, signature = ?3, hash = ?4 WHERE session_id = ?1 AND idx = 0",
            rusqlite::params![id.to_string(), v1.body, v1.signature.to_vec(), v1.hash().to_vec()],
        )
        .unwrap();
        // The writer caches heads: a fresh ledger reads the chain as it now is.
        ledger.close();
        let ledger =
            Ledger::open(&dir.path().join("ledger.db"), key.clone(), Arc::new(crate::base::RealClocks::new())).unwrap();
        ledger.call(move |w| w.append(id, Entry::Mark { media: MediaTime(5), text: "m".into(), by: None })).unwrap();
        let manifest = ledger.call(move |w| w.stop_session(id, None, MediaTime(9), vec![])).unwrap();
        for r in ledger.reader().unwrap().records(id).unwrap() {
            assert_eq!(check_signature(&key.public(), Context::Record, &r.body, &r.signature).unwrap(), 1);
        }
        let manifest = SignedDoc::parse(&manifest).unwrap();
        assert_eq!(check_signature(&key.public(), Context::Manifest, &manifest.body, &manifest.signature).unwrap(), 1);
    }

    #[test]
    fn records_form_a_signed_chain_and_a_failed_stop_commits_nothing() {
        use crate::base::MediaTime;
        use crate::integrity::{Entry, RecordBody, SignedDoc, ZERO_HASH};
        let dir = tempfile::tempdir().unwrap();
        let (ledger, key) = open_test_ledger(dir.path());
        let (id, first) = ledger.call(|w| w.create_session(new_session())).unwrap();
        assert_eq!(first.index, 0);
        // Only one session can record at a time.
        assert!(ledger.call(|w| w.create_session(new_session())).is_err());
        ledger.call(move |w| w.append(id, Entry::Mark { media: MediaTime(5), text: "m".into(), by: None })).unwrap();
        let gap =
            Entry::Gap { source: "cam".into(), media_start: MediaTime(1), media_end: MediaTime(2), reason: "r".into() };
        ledger.call(move |w| w.stop_session(id, Some(1), MediaTime(9), vec![gap])).unwrap();
        let count = |l: &Ledger| l.reader().unwrap().records(id).unwrap().len();
        assert_eq!(count(&ledger), 4);

        // Stopping again fails, and the gap it carried is not left behind.
        let gap =
            Entry::Gap { source: "cam".into(), media_start: MediaTime(3), media_end: MediaTime(4), reason: "r".into() };
        assert!(ledger.call(move |w| w.stop_session(id, None, MediaTime(9), vec![gap])).is_err());
        assert_eq!(count(&ledger), 4);
        // ...and the chain head was re-read, not left pointing at the rolled-back record.
        let (other, _) = ledger.call(|w| w.create_session(new_session())).unwrap();
        ledger.call(move |w| w.append(other, Entry::Mark { media: MediaTime(1), text: "x".into(), by: None })).unwrap();

        let rows = ledger.reader().unwrap().records(id).unwrap();
        let mut prev = ZERO_HASH.to_string();
        for (i, r) in rows.iter().enumerate() {
            let doc = SignedDoc { body: r.body.clone(), signature: r.signature, key_id: key.public().key_id() };
            let body: RecordBody = doc.open(&key.public(), crate::integrity::Context::Record).unwrap();
            assert_eq!((body.index, body.prev.as_str()), (i as u64, prev.as_str()));
            assert_eq!(doc.hash(), r.hash);
            prev = hex::encode(r.hash);
        }
        let manifest = ledger.reader().unwrap().session(id).unwrap().unwrap().manifest.unwrap();
        let manifest: crate::integrity::ManifestBody =
            SignedDoc::parse(&manifest).unwrap().open(&key.public(), crate::integrity::Context::Manifest).unwrap();
        assert_eq!((manifest.records, manifest.head), (4, prev));
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.db");
        let mut conn = open_connection(&path, false).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
        assert!(matches!(migrate(&mut conn, &path), Err(LedgerError::TooNew { .. })));
    }
}
