-- Application services: how far each appservice's transactions have gone.
-- Written by: the appservice sender (one active process, crates/appservice).

CREATE TABLE appservice_positions (
    appservice_id TEXT PRIMARY KEY,
    -- Every event at or below this events-stream position has been delivered to the
    -- appservice, or does not concern it.
    pos           BIGINT NOT NULL,
    -- The ID of the next transaction; a transaction retried after a failure keeps its ID.
    next_txn      BIGINT NOT NULL DEFAULT 1
);
