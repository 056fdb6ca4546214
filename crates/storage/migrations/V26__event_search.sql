-- Full-text search of room events (`POST /search`), written by the rooms service in the
-- transaction that stores an event: one row per searchable event — `content.body` of
-- m.room.message, `content.name` of m.room.name, `content.topic` of m.room.topic — removed
-- when the event is redacted. The English configuration stems words, as Synapse's does.
CREATE TABLE event_search (
    event_id TEXT PRIMARY KEY,
    room_id  TEXT NOT NULL,
    pos      BIGINT NOT NULL,
    key      TEXT NOT NULL,
    value    TEXT NOT NULL,
    vector   TSVECTOR NOT NULL
);
CREATE INDEX event_search_vector ON event_search USING GIN (vector);
CREATE INDEX event_search_room_pos ON event_search (room_id, pos);

INSERT INTO event_search (event_id, room_id, pos, key, value, vector)
SELECT e.event_id, e.room_id, e.pos, k.key, e.content::jsonb ->> k.field,
       to_tsvector('english', e.content::jsonb ->> k.field)
FROM events e
JOIN (VALUES ('m.room.message', 'body', 'content.body'),
             ('m.room.name', 'name', 'content.name'),
             ('m.room.topic', 'topic', 'content.topic')) AS k (type, field, key) ON k.type = e.type
WHERE e.redacted_by IS NULL AND jsonb_typeof(e.content::jsonb -> k.field) = 'string';
