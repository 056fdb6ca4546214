-- Notifications without a row per member per event (issue 18). An event that notifies its
-- room's members the same way (the common case: a message in a group room) is recorded once,
-- in `event_notifications`; `notifications` keeps only the members whose outcome differs
-- from it: `notify = false` for a member the event does not notify (a muted room, an
-- ignored sender), `notify = true` with that member's own actions (a mention, a keyword, an
-- invitee who is not a member yet). The view `user_notifications` puts both back together:
-- what notified which user, as the one table did before. Rows written before this
-- migration are all per member (`notify = true`) and read as they were.
-- Written by: the push notifier (sync service); `memberships.joined_pos` by the rooms writer.

CREATE TABLE event_notifications (
    event_pos BIGINT PRIMARY KEY,
    room_id   TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    -- never notified by their own event
    sender    TEXT NOT NULL,
    actions   TEXT NOT NULL,
    highlight BOOLEAN NOT NULL,
    ts        BIGINT NOT NULL
);
CREATE INDEX event_notifications_room ON event_notifications (room_id, event_pos);

ALTER TABLE notifications ADD COLUMN notify BOOLEAN NOT NULL DEFAULT TRUE;

-- Where the user's current (or, once left, latest) stretch of being joined began: a room's
-- event notifies a member as the room's record says only after it.
ALTER TABLE memberships ADD COLUMN joined_pos BIGINT;
UPDATE memberships m SET joined_pos = COALESCE((
    SELECT min(e.pos) FROM events e
    WHERE e.type = 'm.room.member' AND e.state_key = m.user_id AND e.room_id = m.room_id
      AND e.pos > COALESCE((
        SELECT max(l.pos) FROM events l
        WHERE l.type = 'm.room.member' AND l.state_key = m.user_id AND l.room_id = m.room_id
          AND trellis_jsonb(l.content)->>'membership' IS DISTINCT FROM 'join'), 0)), m.pos)
WHERE m.membership = 'join';

-- Every notification of every user: the per-event records, for each member joined when the
-- event came (and, for a room since left, before leaving) other than its sender, unless
-- that member has a row of their own; and the per-member rows that notify.
CREATE VIEW user_notifications AS
    SELECT m.user_id, d.room_id, d.event_id, d.event_pos, d.actions, d.highlight, d.ts
    FROM event_notifications d
    JOIN memberships m ON m.room_id = d.room_id
    WHERE d.event_pos > m.joined_pos
      AND (m.membership = 'join' OR d.event_pos <= m.pos)
      AND d.sender <> m.user_id
      AND NOT EXISTS (SELECT 1 FROM notifications x WHERE x.user_id = m.user_id AND x.event_pos = d.event_pos)
    UNION ALL
    SELECT user_id, room_id, event_id, event_pos, actions, highlight, ts FROM notifications WHERE notify;
