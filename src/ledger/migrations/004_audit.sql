-- 004: the audit chain of user actions.

CREATE TABLE audit (
  idx       INTEGER PRIMARY KEY,
  body      BLOB NOT NULL,
  signature BLOB NOT NULL
) STRICT;
