-- A notification is identified by its user and its event's position: the notifier writes a
-- thousand rows per message in a busy room, so each row keeps only the two indexes its
-- readers use (by user and position for `/notifications` and pushes, by user, room and
-- position for unread counts). Pushes in the outbox point at a notification the same way.
ALTER TABLE push_outbox ADD COLUMN event_pos BIGINT;
UPDATE push_outbox o SET event_pos = n.event_pos FROM notifications n WHERE n.id = o.notification_id;
DELETE FROM push_outbox WHERE event_pos IS NULL;
ALTER TABLE push_outbox ALTER COLUMN event_pos SET NOT NULL;
ALTER TABLE push_outbox DROP COLUMN notification_id;

ALTER TABLE notifications DROP CONSTRAINT IF EXISTS notifications_user_id_event_id_key;
DROP INDEX IF EXISTS notifications_user;
ALTER TABLE notifications DROP COLUMN id;
ALTER TABLE notifications ADD PRIMARY KEY (user_id, event_pos);
