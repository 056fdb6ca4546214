-- Application services: the window a transaction covers, kept from its first attempt until
-- the appservice acknowledges it. A retry under the same transaction ID then carries the
-- same events, never more: an appservice that processed the transaction but whose answer
-- was lost skips the retry by its ID, and must not lose what a larger retry would have added.
-- NULL: no transaction is waiting.
-- Written by: the appservice sender (one active process, crates/appservice).

ALTER TABLE appservice_positions
    ADD COLUMN pending_pos       BIGINT,
    ADD COLUMN pending_receipts  BIGINT,
    ADD COLUMN pending_typing    BIGINT,
    ADD COLUMN pending_presence  BIGINT,
    ADD COLUMN pending_to_device BIGINT;
