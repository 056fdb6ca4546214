-- Where each room stands in a sliding sync list: the position of its latest "bump" event
-- (`trellis_storage::events::BUMP_TYPES`, the index `events_room_bump`'s list), kept by the
-- rooms writer in the same statement that moves the room's latest event. A first sliding
-- sync response then reads one row per room instead of probing the events of each.
-- Written by: the rooms writer.

ALTER TABLE rooms ADD COLUMN bump_pos BIGINT;
UPDATE rooms r SET bump_pos = (SELECT max(e.pos) FROM events e WHERE e.room_id = r.room_id
    AND e.type IN ('m.room.create', 'm.room.message', 'm.room.encrypted', 'm.sticker',
                   'm.call.invite', 'm.poll.start', 'm.beacon_info'));
