-- Written by the media service. Media an admin quarantined (Synapse's `quarantined_by`: who
-- did it) is answered as not found to downloads and thumbnails until it is released.
ALTER TABLE media ADD COLUMN quarantined_by TEXT;
-- The admin API lists, quarantines and deletes a user's media.
CREATE INDEX media_user ON media (user_id, created_ts);
