-- Application services: how far each appservice's transactions have gone in the streams of
-- ephemeral data (receipts, typing, presence) and of to-device messages, for the appservices
-- that ask for them. NULL until the sender first looks: then the stream's current position
-- (no history, as for events).
-- Written by: the appservice sender (one active process, crates/appservice).

ALTER TABLE appservice_positions
    ADD COLUMN receipts_pos  BIGINT,
    ADD COLUMN typing_pos    BIGINT,
    ADD COLUMN presence_pos  BIGINT,
    ADD COLUMN to_device_pos BIGINT;

-- The sender reads the to-device messages of a window of positions.
CREATE INDEX to_device_messages_pos ON to_device_messages (pos);
