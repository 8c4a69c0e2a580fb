-- 005: who may act on the box; a run may end with a recess.

CREATE TABLE credentials (
  id           TEXT PRIMARY KEY,
  role         TEXT NOT NULL CHECK (role IN ('secretary', 'technician')),
  name         TEXT NOT NULL UNIQUE,
  secret_hash  TEXT NOT NULL,
  created_wall TEXT NOT NULL
) STRICT;

-- SQLite cannot change a CHECK constraint: the runs table is rebuilt (nothing refers to it).
CREATE TABLE runs_v5 (
  session_id      TEXT NOT NULL REFERENCES sessions (id),
  run             INTEGER NOT NULL,
  boot_id         TEXT NOT NULL,
  pid             INTEGER NOT NULL,
  started_wall    TEXT NOT NULL,
  media_offset_ns INTEGER NOT NULL,
  ended_wall      TEXT,
  end_reason      TEXT CHECK (end_reason IN ('stopped', 'shutdown', 'recess')),
  PRIMARY KEY (session_id, run)
) STRICT;
INSERT INTO runs_v5 SELECT * FROM runs;
DROP TABLE runs;
ALTER TABLE runs_v5 RENAME TO runs;
