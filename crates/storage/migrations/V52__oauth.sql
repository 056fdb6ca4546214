-- Written by the auth service: the OAuth 2.0 API (crates/auth/src/oauth/).

-- Clients registered through RFC 7591 dynamic registration (public clients: no secret).
-- `metadata` is the registered metadata as answered (JSON of the proto message).
CREATE TABLE oauth_clients (
    client_id     TEXT PRIMARY KEY,
    metadata      JSONB NOT NULL,
    redirect_uris TEXT[] NOT NULL,
    created_ts    BIGINT NOT NULL
);

-- Browser sessions of the login, consent, device-link and account pages; the cookie's value
-- is stored as its SHA-256.
CREATE TABLE oauth_browser_sessions (
    session_hash BYTEA PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    created_ts   BIGINT NOT NULL,
    expires_ts   BIGINT NOT NULL
);
CREATE INDEX oauth_browser_sessions_user ON oauth_browser_sessions (user_id);

-- Authorization codes (kind 'code') and device authorization grants (kind 'device'), keyed
-- by the SHA-256 of the code / device code. A code is deleted when used; a device grant is
-- pending until a signed-in user approves or denies it (`user_code`).
CREATE TABLE oauth_grants (
    code_hash      BYTEA PRIMARY KEY,
    kind           TEXT NOT NULL CHECK (kind IN ('code', 'device')),
    client_id      TEXT NOT NULL REFERENCES oauth_clients (client_id) ON DELETE CASCADE,
    redirect_uri   TEXT,
    code_challenge TEXT,
    scope          TEXT NOT NULL,
    device_id      TEXT NOT NULL,
    user_id        TEXT,
    user_code      TEXT UNIQUE,
    status         TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'denied')),
    last_poll_ts   BIGINT,
    expires_ts     BIGINT NOT NULL
);

-- Which client each OAuth session (device) belongs to, and the scope it was granted; the
-- device's refresh tokens are refreshed only by that client.
CREATE TABLE oauth_devices (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    client_id TEXT NOT NULL REFERENCES oauth_clients (client_id) ON DELETE CASCADE,
    scope     TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id),
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);
