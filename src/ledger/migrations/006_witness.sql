-- 006: checkpoints and their timestamps; upload priority; new upload kinds.

CREATE TABLE checkpoints (
  log          TEXT NOT NULL,
  seq          INTEGER NOT NULL,
  size         INTEGER NOT NULL,
  note         BLOB NOT NULL,
  created_wall TEXT NOT NULL,
  token        BLOB,
  stamped_wall TEXT,
  PRIMARY KEY (log, seq)
) STRICT;

CREATE INDEX checkpoints_unstamped ON checkpoints (created_wall) WHERE token IS NULL;

-- SQLite cannot change a CHECK constraint: the queue is rebuilt with its rows.
CREATE TABLE upload_jobs_v6 (
  id           INTEGER PRIMARY KEY,
  session_id   TEXT,
  object_key   TEXT NOT NULL UNIQUE,
  kind         TEXT NOT NULL CHECK (kind IN ('segment', 'record', 'manifest', 'device_key', 'checkpoint',
                                             'timestamp', 'audit_entry', 'key_rotation')),
  local_path   TEXT,
  content      BLOB,
  sha256       BLOB NOT NULL,
  bytes        INTEGER NOT NULL,
  state        TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'conflict')),
  attempts     INTEGER NOT NULL DEFAULT 0,
  last_error   TEXT,
  created_wall TEXT NOT NULL,
  done_wall    TEXT,
  last_attempt_wall TEXT,
  priority     INTEGER NOT NULL DEFAULT 1,
  CHECK ((local_path IS NULL) <> (content IS NULL))
) STRICT;
INSERT INTO upload_jobs_v6 (id, session_id, object_key, kind, local_path, content, sha256, bytes, state, attempts,
                            last_error, created_wall, done_wall, last_attempt_wall)
  SELECT id, session_id, object_key, kind, local_path, content, sha256, bytes, state, attempts,
         last_error, created_wall, done_wall, last_attempt_wall FROM upload_jobs;
DROP TABLE upload_jobs;
ALTER TABLE upload_jobs_v6 RENAME TO upload_jobs;
CREATE INDEX upload_jobs_pending ON upload_jobs (priority, id) WHERE state = 'pending';
