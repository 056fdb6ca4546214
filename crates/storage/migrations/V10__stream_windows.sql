-- Woken long-polls read what changed in the receipts and typing streams between two
-- positions across all rooms at once (crates/sync/src/windows.rs). Both tables stay written
-- by the sync service only.
CREATE INDEX receipts_pos ON receipts (pos);
CREATE INDEX typing_changes_pos ON typing_changes (pos);
