-- Deactivation with `erase: true` (auth writes it): the user's events are served stripped to
-- anyone who was not joined when they were sent (trellis_storage::erasure). The partial
-- index keeps the per-page lookup of erased senders on a tiny index.
ALTER TABLE users ADD COLUMN erased BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX users_erased ON users (user_id) WHERE erased;
