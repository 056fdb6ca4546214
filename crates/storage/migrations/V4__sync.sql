-- The sync service's streams: read receipts, typing, account data (tags included) and
-- presence, plus lazy-loading bookkeeping. The sync service is the only writer of every table
-- here. Its streams take positions from `sync_streams`, bumped inside the writing
-- transaction: concurrent writers of one stream then commit in position order, so the row
-- is always a safe "everything up to here has committed" mark.

CREATE TABLE sync_streams (
    stream TEXT PRIMARY KEY,
    pos    BIGINT NOT NULL
);
INSERT INTO sync_streams (stream, pos) VALUES
    ('receipts', 0), ('typing', 0), ('account_data', 0), ('presence', 0), ('to_device', 0);

CREATE TABLE receipts (
    room_id      TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    -- m.read or m.read.private
    receipt_type TEXT NOT NULL,
    -- '' for an unthreaded receipt, 'main' or a thread root otherwise
    thread_id    TEXT NOT NULL DEFAULT '',
    event_id     TEXT NOT NULL,
    -- The receipted event's position in the events stream (unread counts start after it).
    event_pos    BIGINT NOT NULL,
    ts           BIGINT NOT NULL,
    pos          BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id, receipt_type, thread_id)
);
CREATE INDEX receipts_room_pos ON receipts (room_id, pos);
CREATE INDEX receipts_user ON receipts (user_id, room_id);

-- Typing is ephemeral: lost on a crash, it simply times out earlier.
CREATE UNLOGGED TABLE typing (
    room_id    TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    expires_ts BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
CREATE UNLOGGED TABLE typing_changes (
    room_id TEXT PRIMARY KEY,
    pos     BIGINT NOT NULL
);

CREATE TABLE account_data (
    user_id TEXT NOT NULL,
    -- '' for global account data
    room_id TEXT NOT NULL DEFAULT '',
    type    TEXT NOT NULL,
    content TEXT NOT NULL,
    pos     BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, type)
);
CREATE INDEX account_data_user_pos ON account_data (user_id, pos);

CREATE TABLE presence (
    user_id          TEXT PRIMARY KEY,
    state            TEXT NOT NULL,
    status_msg       TEXT,
    last_active_ts   BIGINT NOT NULL,
    currently_active BOOLEAN NOT NULL,
    pos              BIGINT NOT NULL
);
CREATE INDEX presence_pos ON presence (pos);

-- Member events already sent to a device under lazy-loading, with the events position of
-- the sync that sent them: a client that retries an older token gets them again.
CREATE TABLE lazy_members_sent (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    room_id   TEXT NOT NULL,
    member_id TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    pos       BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, room_id, member_id)
);
