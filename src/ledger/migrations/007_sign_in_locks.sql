-- 007: sign-in lock-outs that outlast a restart, and escalate.

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
