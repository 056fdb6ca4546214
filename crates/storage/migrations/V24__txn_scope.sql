-- A client transaction ID is scoped to one device and one endpoint (spec: "Transaction
-- identifiers"): the same ID sent to another room, for another event type, or on /redact
-- rather than /send names another request. `scope` is the request path without its
-- version prefix and the transaction ID: `send/{roomId}/{eventType}` or
-- `redact/{roomId}/{eventId}`. Rows written before it get the path of the event they made.
ALTER TABLE event_txns ADD COLUMN scope TEXT NOT NULL DEFAULT '';
UPDATE event_txns t SET scope = CASE
        WHEN e.type = 'm.room.redaction' AND e.redacts IS NOT NULL THEN 'redact/' || e.room_id || '/' || e.redacts
        ELSE 'send/' || e.room_id || '/' || e.type
    END
    FROM events e WHERE e.event_id = t.event_id;
ALTER TABLE event_txns ALTER COLUMN scope DROP DEFAULT;
ALTER TABLE event_txns DROP CONSTRAINT event_txns_pkey;
ALTER TABLE event_txns ADD PRIMARY KEY (user_id, device_id, txn_id, scope);
