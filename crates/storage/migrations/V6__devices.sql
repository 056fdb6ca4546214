-- Devices, reusable user-interactive auth and server-side key backup.
-- Written only by the auth service: devices, uia_sessions, room_keys_versions, room_keys.

-- The IP a device was last seen from (last_seen_ts is in V1); written throttled.
ALTER TABLE devices ADD COLUMN last_seen_ip TEXT;

-- Whose session it is: a session started for one user (or registration, NULL) is never
-- accepted for another user or another purpose (kind).
ALTER TABLE uia_sessions ADD COLUMN user_id TEXT;

-- Key backup versions (the spec's /room_keys/version). Versions count up per user and are
-- never reused: a deleted version is kept as a tombstone without keys.
CREATE TABLE room_keys_versions (
    user_id   TEXT NOT NULL REFERENCES users (user_id),
    version   BIGINT NOT NULL,
    algorithm TEXT NOT NULL,
    auth_data TEXT NOT NULL,
    -- Bumped whenever the version's keys change.
    etag      BIGINT NOT NULL DEFAULT 0,
    deleted   BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (user_id, version)
);

-- One backed-up megolm session per (version, room, session).
CREATE TABLE room_keys (
    user_id             TEXT NOT NULL,
    version             BIGINT NOT NULL,
    room_id             TEXT NOT NULL,
    session_id          TEXT NOT NULL,
    first_message_index BIGINT NOT NULL,
    forwarded_count     BIGINT NOT NULL,
    is_verified         BOOLEAN NOT NULL,
    -- The opaque session_data object, JSON.
    session_data        TEXT NOT NULL,
    PRIMARY KEY (user_id, version, room_id, session_id),
    FOREIGN KEY (user_id, version) REFERENCES room_keys_versions (user_id, version) ON DELETE CASCADE
);
