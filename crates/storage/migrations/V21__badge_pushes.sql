-- A push without an event: a badge update after a read receipt changed the user's unread
-- count (the push gateway API's `counts` alone), queued and retried like any other push.
ALTER TABLE push_outbox ALTER COLUMN event_pos DROP NOT NULL;
-- A receipt queues a badge update unless one is already waiting for the pusher.
CREATE INDEX push_outbox_badges ON push_outbox (user_id, app_id, pushkey) WHERE event_pos IS NULL;
