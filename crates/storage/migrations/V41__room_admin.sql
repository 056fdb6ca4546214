-- The admin API's rooms (issue 20). Both tables are written by the rooms service, and both
-- outlive a purge of the room they name (a purge removes every other row with its room_id).

-- Rooms blocked by a server admin: nobody may join, be invited to or knock on them.
CREATE TABLE blocked_rooms (
    room_id    TEXT PRIMARY KEY,
    -- The admin who blocked it.
    user_id    TEXT NOT NULL,
    blocked_ts BIGINT NOT NULL
);

-- Room deletions asked for through the admin API or the CLI, with their progress. A
-- deletion still `shutting_down` or `purging` when the rooms service stops is resumed when
-- it starts again (each step can be done again safely).
CREATE TABLE room_deletions (
    delete_id     TEXT PRIMARY KEY,
    room_id       TEXT NOT NULL,
    requester     TEXT NOT NULL,
    -- scheduled, shutting_down, purging, complete or failed (Synapse's names).
    status        TEXT NOT NULL,
    -- What was asked: block, purge, force_purge, new_room_user_id, room_name, message.
    params        TEXT NOT NULL,
    -- The shutdown's outcome: kicked_users, failed_to_kick_users, local_aliases, new_room_id.
    result        TEXT,
    error         TEXT,
    -- Rows removed so far, for progress.
    purged_rows   BIGINT NOT NULL DEFAULT 0,
    created_ts    BIGINT NOT NULL,
    updated_ts    BIGINT NOT NULL
);
CREATE INDEX room_deletions_room ON room_deletions (room_id, created_ts);
CREATE INDEX room_deletions_unfinished ON room_deletions (created_ts) WHERE status IN ('scheduled', 'shutting_down', 'purging');
