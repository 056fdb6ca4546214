-- User-interactive auth sessions that remember their operation, OpenID tokens, admins, the
-- user agent of a device's last request, and which device made a pusher.
-- Written by the auth service: uia_sessions, openid_tokens, users, devices,
-- device_list_changes.
-- Written by the sync service: pushers.

-- What a session authorises beyond its purpose (`kind`): e.g. the devices a deletion
-- removes. A later stage asking for another target is refused (the spec: the operation must
-- not change during a session).
ALTER TABLE uia_sessions ADD COLUMN target TEXT;
-- The first request's parameters (registration: username, device, inhibit_login), as JSON;
-- a later request with none uses them.
ALTER TABLE uia_sessions ADD COLUMN params TEXT;
-- Registration: the hash of the password given in an earlier request of the session.
ALTER TABLE uia_sessions ADD COLUMN password_hash TEXT;
-- Registration: the account the session created; replaying the completed session logs in
-- to it again instead of registering another.
ALTER TABLE uia_sessions ADD COLUMN registered_user_id TEXT;

-- OpenID tokens (`/user/{userId}/openid/request_token`), stored as their SHA-256.
CREATE TABLE openid_tokens (
    token_hash BYTEA PRIMARY KEY,
    user_id    TEXT NOT NULL,
    expires_ts BIGINT NOT NULL
);
CREATE INDEX openid_tokens_expiry ON openid_tokens (expires_ts);

-- Server administrators (may use `/admin/whois` on anyone).
ALTER TABLE users ADD COLUMN admin BOOLEAN NOT NULL DEFAULT FALSE;

-- The `User-Agent` of the device's last recorded request (beside last_seen_ip).
ALTER TABLE devices ADD COLUMN last_seen_user_agent TEXT;

-- The device whose access token created the pusher (NULL for pushers made before this
-- column): its pushers go when the device is removed, e.g. by a password change.
ALTER TABLE pushers ADD COLUMN device_id TEXT;

-- A device-list change only one user is told about (NULL: everyone sharing a room with the
-- user, as before): a user's new user-signing key, and their signature on another user's
-- master key, concern only themself (written by the auth service).
ALTER TABLE device_list_changes ADD COLUMN only_for TEXT;
