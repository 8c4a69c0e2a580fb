-- courtbox ledger: the box's authoritative index of the court record.
--
-- Source of truth for new databases. `PRAGMA user_version` holds the schema version; an
-- existing database is brought up to date by the numbered files in migrations/, and a test
-- checks that both paths give the same schema.
--
-- Durability: WAL mode, synchronous=FULL. One writer thread owns the only read-write
-- connection. A segment becomes part of the record when the transaction inserting its
-- `records` row and its `upload_jobs` row commits (see docs/DESIGN.md, "The commit point").
--
-- Invariants:
--   * records of a session form a chain: idx = 0, 1, 2, ... without holes, each body naming
--     the SHA-256 of the previous body. Rows are never updated or deleted.
--   * a segments row exists only together with its records row (same transaction).
--   * at most one session is recording at any time (partial unique index below).
--   * a spool file is deleted only when its segment is uploaded (upload_jobs.state = 'done')
--     and retention allows; un-uploaded files are never deleted.
--   * after session_stop a chain grows only by captions transcribed later, each addition
--     sealed by a new manifest revision; earlier revisions stay as they were.

-- Key/value settings of this box (schema of values is up to the owner of each key).
CREATE TABLE settings (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) STRICT;

-- One row per hearing. Metadata here is a convenience copy: the signed session_start record
-- in the chain is what counts.
CREATE TABLE sessions (
  id            TEXT PRIMARY KEY,     -- UUID v4; also names the session folder everywhere
  case_number   TEXT NOT NULL,
  title         TEXT NOT NULL,
  language      TEXT NOT NULL,        -- kk | ru | en | auto
  hearing       TEXT NOT NULL CHECK (hearing IN ('open', 'closed')),
  profile       TEXT NOT NULL,        -- hardware profile name
  segment_ns    INTEGER NOT NULL,     -- segment length for the whole session
  state         TEXT NOT NULL CHECK (state IN ('recording', 'stopped')),
  started_wall  TEXT NOT NULL,        -- RFC 3339 UTC
  stopped_wall  TEXT,
  manifest      BLOB                  -- the latest signed manifest (see manifests)
) STRICT;

CREATE UNIQUE INDEX sessions_one_recording ON sessions (state) WHERE state = 'recording';

-- One row per uninterrupted stretch of capture within a session. A session that survives a
-- crash has several runs; media time continues across them (media_offset_ns).
CREATE TABLE runs (
  session_id      TEXT NOT NULL REFERENCES sessions (id),
  run             INTEGER NOT NULL,   -- 1, 2, ...
  boot_id         TEXT NOT NULL,      -- kernel boot id: tells a daemon crash from a power loss
  pid             INTEGER NOT NULL,
  started_wall    TEXT NOT NULL,
  media_offset_ns INTEGER NOT NULL,   -- media time at this run's pipeline running time 0
  ended_wall      TEXT,               -- NULL while running, and forever after a crash
  end_reason      TEXT CHECK (end_reason IN ('stopped', 'shutdown', 'recess')),
  PRIMARY KEY (session_id, run)
) STRICT;

-- The signed chain of every session: segments, gaps, session events.
CREATE TABLE records (
  session_id TEXT NOT NULL REFERENCES sessions (id),
  idx        INTEGER NOT NULL,        -- position in the chain
  kind       TEXT NOT NULL,           -- entry kind, copied from the body for queries
  body       BLOB NOT NULL,           -- canonical JSON bytes exactly as signed
  signature  BLOB NOT NULL,           -- Ed25519, 64 bytes
  hash       BLOB NOT NULL,           -- SHA-256 of body; the next record's prev
  PRIMARY KEY (session_id, idx)
) STRICT, WITHOUT ROWID;

-- Media files of the record, one row per sealed segment.
CREATE TABLE segments (
  session_id     TEXT NOT NULL,
  source         TEXT NOT NULL,       -- camera or microphone name
  seq            INTEGER NOT NULL,    -- 0, 1, 2, ... per source, without holes
  record_idx     INTEGER NOT NULL,
  file           TEXT NOT NULL,       -- relative to the session folder: {source}/{seq}.mkv
  media_start_ns INTEGER NOT NULL,
  media_end_ns   INTEGER NOT NULL,
  bytes          INTEGER NOT NULL,
  sha256         BLOB NOT NULL,
  recovered      INTEGER NOT NULL,    -- 1 if sealed by startup recovery after a crash
  local_state    TEXT NOT NULL DEFAULT 'spooled' CHECK (local_state IN ('spooled', 'evicted')),
  PRIMARY KEY (session_id, source, seq),
  FOREIGN KEY (session_id, record_idx) REFERENCES records (session_id, idx)
) STRICT;

-- Store-and-forward queue to central storage. Written in the same transaction as what it
-- uploads, so nothing committed can miss its upload.
CREATE TABLE upload_jobs (
  id           INTEGER PRIMARY KEY,
  session_id   TEXT,
  object_key   TEXT NOT NULL UNIQUE,  -- relative to {court}/{room}/
  kind         TEXT NOT NULL CHECK (kind IN ('segment', 'record', 'manifest', 'device_key', 'checkpoint',
                                             'timestamp', 'audit_entry', 'key_rotation')),
  local_path   TEXT,                  -- file to send (segments), relative to the data dir
  content      BLOB,                  -- bytes to send when there is no file
  sha256       BLOB NOT NULL,
  bytes        INTEGER NOT NULL,
  state        TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'conflict')),
  attempts     INTEGER NOT NULL DEFAULT 0,
  last_error   TEXT,                  -- why the last attempt failed (never credentials)
  created_wall TEXT NOT NULL,
  done_wall    TEXT,                  -- when the store acknowledged these exact bytes
  last_attempt_wall TEXT,
  priority     INTEGER NOT NULL DEFAULT 1, -- 0 goes first: checkpoints and their tokens jump the media backlog
  CHECK ((local_path IS NULL) <> (content IS NULL))
) STRICT;

CREATE INDEX upload_jobs_pending ON upload_jobs (priority, id) WHERE state = 'pending';

-- Signed checkpoints (C2SP signed notes, see witness::checkpoint) of each session chain and of
-- the audit chain, and the RFC 3161 token of each once the TSA answered. Written in the
-- transaction of what they cover, with their upload job (priority 0); never updated except to
-- add the token.
CREATE TABLE checkpoints (
  log          TEXT NOT NULL,         -- session UUID, or 'audit'
  seq          INTEGER NOT NULL,      -- 1, 2, ... per log
  size         INTEGER NOT NULL,      -- entries covered
  note         BLOB NOT NULL,         -- the signed note, exactly as uploaded
  created_wall TEXT NOT NULL,
  token        BLOB,                  -- RFC 3161 TimeStampResp over the note
  stamped_wall TEXT,                  -- box time when the token arrived
  PRIMARY KEY (log, seq)
) STRICT;

CREATE INDEX checkpoints_unstamped ON checkpoints (created_wall) WHERE token IS NULL;

-- Spooled segments, for the eviction scan (only uploaded ones may go).
CREATE INDEX segments_evictable ON segments (session_id, source, seq) WHERE local_state = 'spooled';

-- Conditions a technician must see: a store object that differs from the record
-- (`store_conflict`), a local file that no longer matches its hash (`local_damage`), low
-- disk (`disk_low`, `disk_critical`). At most one open alarm per kind and subject; an alarm
-- is cleared, never deleted.
CREATE TABLE alarms (
  id           INTEGER PRIMARY KEY,
  kind         TEXT NOT NULL,
  subject      TEXT NOT NULL,         -- object key, path or '' for box-wide conditions
  message      TEXT NOT NULL,
  raised_wall  TEXT NOT NULL,
  cleared_wall TEXT
) STRICT;

CREATE UNIQUE INDEX alarms_open ON alarms (kind, subject) WHERE cleared_wall IS NULL;

-- Final captions, one row per caption; each belongs to a signed `captions` record of the
-- chain (record_idx, item), which is what counts. Searchable through captions_fts.
CREATE TABLE captions (
  id             INTEGER PRIMARY KEY,
  session_id     TEXT NOT NULL,
  record_idx     INTEGER NOT NULL,
  item           INTEGER NOT NULL,     -- position in the record's list
  source         TEXT NOT NULL,        -- microphone
  role           TEXT,                 -- judge, prosecutor, ...
  language       TEXT NOT NULL,
  media_start_ns INTEGER NOT NULL,
  media_end_ns   INTEGER NOT NULL,
  wall           TEXT NOT NULL,        -- when the caption was produced
  text           TEXT NOT NULL,
  confidence     INTEGER NOT NULL,     -- per mille
  delayed        INTEGER NOT NULL,     -- 1 if produced well after the speech
  origin         TEXT NOT NULL CHECK (origin IN ('live', 'backlog')),
  UNIQUE (session_id, record_idx, item),
  FOREIGN KEY (session_id, record_idx) REFERENCES records (session_id, idx)
) STRICT;

CREATE INDEX captions_by_time ON captions (session_id, media_start_ns);

-- Full-text index of caption text (Unicode-aware: Kazakh, Russian, English).
CREATE VIRTUAL TABLE captions_fts USING fts5 (
  text,
  content = 'captions',
  content_rowid = 'id',
  tokenize = 'unicode61 remove_diacritics 2'
);

CREATE TRIGGER captions_fts_insert AFTER INSERT ON captions BEGIN
  INSERT INTO captions_fts (rowid, text) VALUES (new.id, new.text);
END;

-- Every signed manifest of a session: revision 1 seals the chain at stop; later revisions
-- seal captions added afterwards. Write-once, like the chain.
CREATE TABLE manifests (
  session_id TEXT NOT NULL REFERENCES sessions (id),
  revision   INTEGER NOT NULL,
  body       BLOB NOT NULL,
  PRIMARY KEY (session_id, revision)
) STRICT;

-- Every user action on the box and every refused attempt, hash-chained and signed like the
-- record (see integrity::audit): idx 0, 1, 2, ... without holes; rows are never updated or
-- deleted. `courtbox audit --verify` checks it.
CREATE TABLE audit (
  idx       INTEGER PRIMARY KEY,
  body      BLOB NOT NULL,          -- canonical JSON exactly as signed
  signature BLOB NOT NULL           -- Ed25519, 64 bytes
) STRICT;

-- Who may act on the box: secretaries sign in with a PIN, technicians present a token. Only
-- the Argon2id hash (PHC string, salted) of a PIN or token is kept; the token itself is shown
-- once when it is made. Removing a person deletes the row (the audit chain keeps their acts).
CREATE TABLE credentials (
  id           TEXT PRIMARY KEY,     -- short random id; a technician token names it
  role         TEXT NOT NULL CHECK (role IN ('secretary', 'technician')),
  name         TEXT NOT NULL UNIQUE, -- as shown on the panel and in the audit chain
  secret_hash  TEXT NOT NULL,        -- $argon2id$v=19$m=...,t=...,p=...$salt$hash
  created_wall TEXT NOT NULL
) STRICT;
-- An account locked after a run of wrong PINs or tokens. Kept apart for clients on the box
-- itself (its touchscreen, scope 'local') and clients over the network ('remote'), so that a
-- guesser on the network cannot keep a secretary from signing in at the box. A row stays
-- until the account signs in again or a day passes without a lock-out; `locks` is how many
-- lock-outs ran in a row, and each one lasts twice as long as the one before.
CREATE TABLE sign_in_locks (
  account           TEXT NOT NULL,     -- a secretary's name, or "token <id>"
  scope             TEXT NOT NULL CHECK (scope IN ('local', 'remote')),
  locks             INTEGER NOT NULL,  -- lock-outs in a row
  locked_until_unix INTEGER NOT NULL,  -- wall time, seconds since 1970
  last_lock_unix    INTEGER NOT NULL,
  PRIMARY KEY (account, scope)
) STRICT;
