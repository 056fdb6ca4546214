-- Expiring access tokens with refresh tokens (spec 1.3, "Refreshing access tokens") and
-- single-use login tokens (`m.login.token` from `POST /login/get_token`, spec 1.7).
-- Written by the auth service: access_tokens, refresh_tokens, login_tokens.
-- Every token is stored as its SHA-256, never in the clear.

-- When the token stops working (NULL: never), and the refresh token issued with it.
ALTER TABLE access_tokens ADD COLUMN expires_ts BIGINT, ADD COLUMN refresh_hash BYTEA;

-- A refresh token belongs to a device and goes with it. Refreshing hands out a new pair
-- and links the new refresh token to the one it replaces (`prev_hash`); the old one keeps
-- working until the new pair is first used (`used`), and is deleted then.
CREATE TABLE refresh_tokens (
    token_hash BYTEA PRIMARY KEY,
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    prev_hash  BYTEA,
    used       BOOLEAN NOT NULL DEFAULT FALSE,
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);
CREATE INDEX refresh_tokens_device ON refresh_tokens (user_id, device_id);
CREATE INDEX refresh_tokens_prev ON refresh_tokens (prev_hash) WHERE prev_hash IS NOT NULL;

-- A login token signs in one new device once, before it expires.
CREATE TABLE login_tokens (
    token_hash BYTEA PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (user_id),
    expires_ts BIGINT NOT NULL
);
CREATE INDEX login_tokens_user ON login_tokens (user_id);
