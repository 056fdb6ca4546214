-- Written by the auth service: third-party identifiers (crates/auth/src/threepid/).

-- Validation sessions of `/requestToken`: the homeserver mails a token and the link that
-- submits it. The token is stored as its SHA-256; a session validated once stays validated
-- until it expires. One session per (client secret, medium, address), as Synapse.
CREATE TABLE threepid_sessions (
    sid               TEXT PRIMARY KEY,
    client_secret     TEXT NOT NULL,
    medium            TEXT NOT NULL,
    address           TEXT NOT NULL,
    token_hash        BYTEA NOT NULL,
    last_send_attempt BIGINT NOT NULL,
    next_link         TEXT,
    created_ts        BIGINT NOT NULL,
    expires_ts        BIGINT NOT NULL,
    validated_ts      BIGINT
);
CREATE UNIQUE INDEX threepid_sessions_secret ON threepid_sessions (client_secret, medium, address);
CREATE INDEX threepid_sessions_expiry ON threepid_sessions (expires_ts);

-- The 3PIDs of accounts: an address belongs to one account at most.
CREATE TABLE user_threepids (
    medium       TEXT NOT NULL,
    address      TEXT NOT NULL,
    user_id      TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    validated_ts BIGINT NOT NULL,
    added_ts     BIGINT NOT NULL,
    PRIMARY KEY (medium, address)
);
CREATE INDEX user_threepids_user ON user_threepids (user_id);

-- Which identity servers a user bound a 3PID on through this homeserver (`/3pid/bind`), so
-- that removing the 3PID or deactivating the account unbinds it there.
CREATE TABLE user_threepid_id_servers (
    user_id   TEXT NOT NULL,
    medium    TEXT NOT NULL,
    address   TEXT NOT NULL,
    id_server TEXT NOT NULL,
    PRIMARY KEY (user_id, medium, address, id_server)
);

-- User-interactive auth: the 3PID an `m.login.email.identity` stage proved (`medium`,
-- `address` as JSON), for registration (the account gets it) and password reset.
ALTER TABLE uia_sessions ADD COLUMN threepid TEXT;
