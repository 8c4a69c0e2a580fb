-- 003: alarms, and when each upload job was last attempted.

CREATE TABLE alarms (
  id           INTEGER PRIMARY KEY,
  kind         TEXT NOT NULL,
  subject      TEXT NOT NULL,
  message      TEXT NOT NULL,
  raised_wall  TEXT NOT NULL,
  cleared_wall TEXT
) STRICT;

CREATE UNIQUE INDEX alarms_open ON alarms (kind, subject) WHERE cleared_wall IS NULL;

ALTER TABLE upload_jobs ADD COLUMN last_attempt_wall TEXT;

CREATE INDEX segments_evictable ON segments (session_id, source, seq) WHERE local_state = 'spooled';
