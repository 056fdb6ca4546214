-- Push: pushers, the notifier's position, recorded notifications and the delivery outbox.
-- The sync service is the only writer of every table here. Push rules themselves live in
-- `account_data` (global type `m.push_rules`, also written by the sync service only).

-- A user's pushers (`POST /pushers/set`).
CREATE TABLE pushers (
    user_id             TEXT NOT NULL,
    app_id              TEXT NOT NULL,
    pushkey             TEXT NOT NULL,
    kind                TEXT NOT NULL,
    app_display_name    TEXT NOT NULL,
    device_display_name TEXT NOT NULL,
    profile_tag         TEXT,
    lang                TEXT NOT NULL,
    -- the pusher's `data` object, as JSON
    data                TEXT NOT NULL,
    pushkey_ts          BIGINT NOT NULL,
    PRIMARY KEY (user_id, app_id, pushkey)
);
CREATE INDEX pushers_app_key ON pushers (app_id, pushkey);

-- The notifier's position in the events stream: every event at or below it has been
-- evaluated. One row; its row lock also makes exactly one sync worker run a batch at a time.
CREATE TABLE push_notifier (
    id  INT PRIMARY KEY CHECK (id = 1),
    pos BIGINT NOT NULL
);
INSERT INTO push_notifier (id, pos) SELECT 1, COALESCE((SELECT pos FROM stream_positions WHERE stream = 'events'), 0);

-- Events that notified a user (`GET /notifications`).
CREATE TABLE notifications (
    id        BIGSERIAL PRIMARY KEY,
    user_id   TEXT NOT NULL,
    room_id   TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    event_pos BIGINT NOT NULL,
    -- the actions of the matching push rule, as JSON
    actions   TEXT NOT NULL,
    highlight BOOLEAN NOT NULL,
    ts        BIGINT NOT NULL,
    UNIQUE (user_id, event_id)
);
CREATE INDEX notifications_user ON notifications (user_id, id);
CREATE INDEX notifications_user_room ON notifications (user_id, room_id, event_pos);

-- Pushes still to deliver to an http pusher; a row is deleted once delivered (or given up).
CREATE TABLE push_outbox (
    id              BIGSERIAL PRIMARY KEY,
    notification_id BIGINT NOT NULL,
    user_id         TEXT NOT NULL,
    app_id          TEXT NOT NULL,
    pushkey         TEXT NOT NULL,
    attempts        INT NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL
);
CREATE INDEX push_outbox_due ON push_outbox (next_attempt_ms);
