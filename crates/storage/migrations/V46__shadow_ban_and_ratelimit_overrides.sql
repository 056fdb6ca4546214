-- Written by the auth service. A shadow-banned account (Synapse's admin API) gets successful
-- answers to what it sends, but nothing it sends reaches anyone else. Gateways learn the flag
-- with each token validation.
ALTER TABLE users ADD COLUMN shadow_banned BOOLEAN NOT NULL DEFAULT FALSE;

-- Written by the auth service. An admin's override of a user's message rate limit (Synapse's
-- `override_ratelimit`): `messages_per_second` with a burst of `burst_count`; 0 and 0 exempt
-- the user from every per-user limit. Gateways learn it with each token validation.
CREATE TABLE ratelimit_overrides (
    user_id TEXT PRIMARY KEY REFERENCES users (user_id) ON DELETE CASCADE,
    messages_per_second BIGINT NOT NULL CHECK (messages_per_second >= 0),
    burst_count BIGINT NOT NULL CHECK (burst_count >= 0)
);
