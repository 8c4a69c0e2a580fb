-- 002: captions (with a full-text index) and manifest revisions.

CREATE TABLE captions (
  id             INTEGER PRIMARY KEY,
  session_id     TEXT NOT NULL,
  record_idx     INTEGER NOT NULL,
  item           INTEGER NOT NULL,
  source         TEXT NOT NULL,
  role           TEXT,
  language       TEXT NOT NULL,
  media_start_ns INTEGER NOT NULL,
  media_end_ns   INTEGER NOT NULL,
  wall           TEXT NOT NULL,
  text           TEXT NOT NULL,
  confidence     INTEGER NOT NULL,
  delayed        INTEGER NOT NULL,
  origin         TEXT NOT NULL CHECK (origin IN ('live', 'backlog')),
  UNIQUE (session_id, record_idx, item),
  FOREIGN KEY (session_id, record_idx) REFERENCES records (session_id, idx)
) STRICT;

CREATE INDEX captions_by_time ON captions (session_id, media_start_ns);

CREATE VIRTUAL TABLE captions_fts USING fts5 (
  text,
  content = 'captions',
  content_rowid = 'id',
  tokenize = 'unicode61 remove_diacritics 2'
);

CREATE TRIGGER captions_fts_insert AFTER INSERT ON captions BEGIN
  INSERT INTO captions_fts (rowid, text) VALUES (new.id, new.text);
END;

CREATE TABLE manifests (
  session_id TEXT NOT NULL REFERENCES sessions (id),
  revision   INTEGER NOT NULL,
  body       BLOB NOT NULL,
  PRIMARY KEY (session_id, revision)
) STRICT;

INSERT INTO manifests (session_id, revision, body)
  SELECT id, 1, manifest FROM sessions WHERE manifest IS NOT NULL;
