-- Rooms done properly: redaction, relations and threads, forgetting rooms.
-- Table ownership (one writing service per table; others may read):
--   rooms: events (new columns redacts, redacted_by), memberships (new column forgotten),
--          event_relations, threads
--   sync reads all of them (the events columns through trellis_storage::events::COLUMNS).

-- The event a redaction redacts, for every room version (v11 moved it into content; clients
-- of every version get it at the top level too).
ALTER TABLE events ADD COLUMN redacts TEXT;
-- The redaction that stripped this event. `content`, `pdu` and `unsigned_json` of a redacted
-- event hold the redacted form, so every reader serves it stripped.
ALTER TABLE events ADD COLUMN redacted_by TEXT;

-- Set by POST /rooms/{roomId}/forget after leaving; cleared by the next membership event.
ALTER TABLE memberships ADD COLUMN forgotten BOOLEAN NOT NULL DEFAULT FALSE;

-- Every event whose content carries `m.relates_to` with a `rel_type` (a child) and the
-- event it relates to (its parent). Rows of redacted children are deleted.
CREATE TABLE event_relations (
    event_id   TEXT PRIMARY KEY,
    room_id    TEXT NOT NULL,
    relates_to TEXT NOT NULL,
    rel_type   TEXT NOT NULL,
    -- The child's type and sender, for /relations filters and aggregation rules.
    type       TEXT NOT NULL,
    sender     TEXT NOT NULL,
    pos        BIGINT NOT NULL
);
CREATE INDEX event_relations_parent ON event_relations (relates_to, rel_type, pos);

-- Thread roots of each room with the position of their latest reply (`/threads` order).
CREATE TABLE threads (
    root_id    TEXT PRIMARY KEY,
    room_id    TEXT NOT NULL,
    latest_pos BIGINT NOT NULL
);
CREATE INDEX threads_room ON threads (room_id, latest_pos);
