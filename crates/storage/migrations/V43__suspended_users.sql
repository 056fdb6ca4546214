-- Written by the auth service. A suspended account (spec 1.13, the admin API's suspend) can
-- still log in, read and sync, leave rooms and manage its devices, but may not join, invite,
-- knock, send, create rooms, change its profile or upload media (403 `M_USER_SUSPENDED`),
-- until an admin lifts the suspension. Gateways learn the flag with each token validation.
ALTER TABLE users ADD COLUMN suspended BOOLEAN NOT NULL DEFAULT FALSE;
