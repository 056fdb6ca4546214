-- The initial schema. Each table has exactly one writing service (others may read):
--   auth:  users, devices, access_tokens, uia_sessions, profiles
--   rooms: server_keys, rooms, events, current_state, memberships, event_txns,
--          room_aliases, stream_positions
--   sync:  filters
--   media: media
-- Timestamps are BIGINT milliseconds since the Unix epoch, as Matrix uses them.

-- auth ---------------------------------------------------------------------------------

CREATE TABLE users (
    user_id       TEXT PRIMARY KEY,
    password_hash TEXT,
    is_guest      BOOLEAN NOT NULL DEFAULT FALSE,
    deactivated   BOOLEAN NOT NULL DEFAULT FALSE,
    created_ts    BIGINT NOT NULL
);

CREATE TABLE devices (
    user_id      TEXT NOT NULL REFERENCES users (user_id),
    device_id    TEXT NOT NULL,
    display_name TEXT,
    created_ts   BIGINT NOT NULL,
    last_seen_ts BIGINT,
    PRIMARY KEY (user_id, device_id)
);

-- Tokens are stored as their SHA-256, never in the clear.
CREATE TABLE access_tokens (
    token_hash BYTEA PRIMARY KEY,
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);
CREATE INDEX access_tokens_device ON access_tokens (user_id, device_id);

CREATE TABLE uia_sessions (
    session_id TEXT PRIMARY KEY,
    -- What the session authorises, e.g. 'register'.
    kind       TEXT NOT NULL,
    completed  TEXT[] NOT NULL DEFAULT '{}',
    created_ts BIGINT NOT NULL
);

CREATE TABLE profiles (
    user_id     TEXT PRIMARY KEY REFERENCES users (user_id),
    displayname TEXT,
    avatar_url  TEXT
);

-- rooms --------------------------------------------------------------------------------

CREATE TABLE server_keys (
    key_id     TEXT PRIMARY KEY,
    pkcs8      BYTEA NOT NULL,
    created_ts BIGINT NOT NULL
);

CREATE TABLE rooms (
    room_id         TEXT PRIMARY KEY,
    room_version    TEXT NOT NULL,
    creator         TEXT NOT NULL,
    is_public       BOOLEAN NOT NULL DEFAULT FALSE,
    created_ts      BIGINT NOT NULL,
    -- Local rooms are linear: one forward extremity and its depth.
    latest_event_id TEXT,
    depth           BIGINT NOT NULL DEFAULT 0
);

-- Stream positions are taken from this sequence; a position becomes visible to readers
-- only once every lower position has committed (stream_positions below).
CREATE SEQUENCE events_pos_seq;

CREATE TABLE events (
    pos              BIGINT PRIMARY KEY,
    event_id         TEXT NOT NULL UNIQUE,
    room_id          TEXT NOT NULL REFERENCES rooms (room_id),
    sender           TEXT NOT NULL,
    type             TEXT NOT NULL,
    state_key        TEXT,
    depth            BIGINT NOT NULL,
    origin_server_ts BIGINT NOT NULL,
    -- Client-visible content, JSON.
    content          TEXT NOT NULL,
    -- The part of `unsigned` fixed at write time (prev_content, replaces_state), JSON.
    unsigned_json    TEXT,
    -- The complete signed PDU, as federation will need it.
    pdu              TEXT NOT NULL,
    -- Who sent it with which transaction ID (shown back to that device only).
    txn_device       TEXT,
    txn_id           TEXT
);
CREATE INDEX events_room_pos ON events (room_id, pos);
CREATE INDEX events_room_state ON events (room_id, type, state_key, pos) WHERE state_key IS NOT NULL;
CREATE INDEX events_membership ON events (state_key, pos) WHERE type = 'm.room.member';

CREATE TABLE current_state (
    room_id   TEXT NOT NULL,
    type      TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    pos       BIGINT NOT NULL,
    PRIMARY KEY (room_id, type, state_key)
);

-- Each user's current membership of each room they ever touched.
CREATE TABLE memberships (
    user_id    TEXT NOT NULL,
    room_id    TEXT NOT NULL,
    membership TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    pos        BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id)
);
CREATE INDEX memberships_room ON memberships (room_id, membership);

CREATE TABLE event_txns (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    txn_id     TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);

CREATE TABLE room_aliases (
    alias      TEXT PRIMARY KEY,
    room_id    TEXT NOT NULL REFERENCES rooms (room_id),
    creator    TEXT NOT NULL,
    created_ts BIGINT NOT NULL
);
CREATE INDEX room_aliases_room ON room_aliases (room_id);

-- The highest position below which every event has committed, per stream.
CREATE TABLE stream_positions (
    stream TEXT PRIMARY KEY,
    pos    BIGINT NOT NULL
);
INSERT INTO stream_positions (stream, pos) VALUES ('events', 0);

-- sync ---------------------------------------------------------------------------------

CREATE SEQUENCE filters_id_seq;

CREATE TABLE filters (
    user_id     TEXT NOT NULL,
    filter_id   BIGINT NOT NULL,
    filter_json TEXT NOT NULL,
    PRIMARY KEY (user_id, filter_id)
);

-- media --------------------------------------------------------------------------------

CREATE TABLE media (
    media_id     TEXT PRIMARY KEY,
    content_type TEXT NOT NULL,
    upload_name  TEXT,
    size         BIGINT NOT NULL,
    -- The stored file is addressed by this hash: identical uploads share one file.
    sha256       TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    created_ts   BIGINT NOT NULL
);
