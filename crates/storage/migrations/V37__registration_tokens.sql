-- Registration tokens (spec 1.2, the `m.login.registration_token` stage): an operator hands
-- out tokens, each good for `uses_allowed` accounts (NULL: any number) until `expiry_time`
-- (ms since the epoch; NULL: never). `pending` counts registrations under way that passed
-- the stage, `completed` the accounts made, so a token is never used more often than
-- allowed. Written by the auth service: registration_tokens, uia_sessions.
--
-- The token is kept as given, not hashed: it is a shared invitation code the operator lists
-- and hands out again (the CLI and the admin API show it), not a credential of one user.
CREATE TABLE registration_tokens (
    token        TEXT PRIMARY KEY,
    uses_allowed INTEGER,
    pending      INTEGER NOT NULL DEFAULT 0,
    completed    INTEGER NOT NULL DEFAULT 0,
    expiry_time  BIGINT
);

-- The token a registration session passed the stage with, released if the session expires.
ALTER TABLE uia_sessions ADD COLUMN registration_token TEXT;
