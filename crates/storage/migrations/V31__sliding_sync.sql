-- Simplified Sliding Sync (MSC4186) connections, written by the sync service. A connection is
-- one (user, device, conn_id); each response that changes what the server remembers of it
-- takes a new position (the number at the front of the client's `pos`). What each room was
-- last sent is kept as deltas: a row per room and position that changed it, so the state at a
-- position is, per room, its latest row at or below that position. Using a position drops the
-- positions after it (answers the client never received) and the ones before it.

CREATE TABLE sliding_connections (
    id           BIGSERIAL PRIMARY KEY,
    user_id      TEXT NOT NULL,
    device_id    TEXT NOT NULL,
    conn_id      TEXT NOT NULL,
    created_ts   BIGINT NOT NULL,
    last_used_ts BIGINT NOT NULL,
    UNIQUE (user_id, device_id, conn_id)
);
CREATE INDEX sliding_connections_used ON sliding_connections (last_used_ts);

CREATE TABLE sliding_positions (
    pos           BIGSERIAL PRIMARY KEY,
    connection_id BIGINT NOT NULL REFERENCES sliding_connections (id) ON DELETE CASCADE,
    -- Per list name, the room count last sent (JSON object).
    lists         TEXT NOT NULL DEFAULT '{}',
    created_ts    BIGINT NOT NULL
);
CREATE INDEX sliding_positions_connection ON sliding_positions (connection_id, pos);

CREATE TABLE sliding_rooms (
    connection_id BIGINT NOT NULL REFERENCES sliding_connections (id) ON DELETE CASCADE,
    room_id       TEXT NOT NULL,
    pos           BIGINT NOT NULL,
    -- What the client holds of the room (JSON): live or behind an events position, the
    -- required_state and timeline_limit it was last sent with.
    state         TEXT NOT NULL,
    PRIMARY KEY (connection_id, room_id, pos)
);

-- The latest "bump" event of a room (what orders a sliding sync list by recency) without
-- reading past state and membership churn.
CREATE INDEX events_room_bump ON events (room_id, pos)
    WHERE type IN ('m.room.create', 'm.room.message', 'm.room.encrypted', 'm.sticker',
                   'm.call.invite', 'm.poll.start', 'm.beacon_info');
