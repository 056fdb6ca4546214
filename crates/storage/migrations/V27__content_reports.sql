-- Reports of events, rooms and users by users (POST /rooms/{roomId}/report/{eventId},
-- /rooms/{roomId}/report, /users/{userId}/report), kept for the server's admins (the admin
-- API will list and resolve them). Written by the rooms service. Exactly one target kind
-- per row: an event (room_id and event_id), a room (room_id), or a user (target_user_id).
CREATE TABLE content_reports (
    id             BIGSERIAL PRIMARY KEY,
    reporter       TEXT NOT NULL,
    room_id        TEXT,
    event_id       TEXT,
    target_user_id TEXT,
    reason         TEXT,
    received_ts    BIGINT NOT NULL,
    CHECK ((event_id IS NOT NULL AND room_id IS NOT NULL AND target_user_id IS NULL)
        OR (event_id IS NULL AND room_id IS NOT NULL AND target_user_id IS NULL)
        OR (event_id IS NULL AND room_id IS NULL AND target_user_id IS NOT NULL))
);
CREATE INDEX content_reports_received ON content_reports (received_ts);
