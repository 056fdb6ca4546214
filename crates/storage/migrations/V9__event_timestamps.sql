-- Jumping to a date (`/timestamp_to_event`) looks events up by room and origin_server_ts.
-- Written by the rooms service, like the rest of `events`.
CREATE INDEX events_room_ts ON events (room_id, origin_server_ts, pos);
