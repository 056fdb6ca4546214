-- Written by the auth service. A locked account (the admin API's `locked`) keeps its data
-- but its tokens stop working (401 `M_USER_LOCKED`) and it cannot log in, until unlocked.
-- The admin flag itself came with V18.
ALTER TABLE users ADD COLUMN locked BOOLEAN NOT NULL DEFAULT FALSE;
-- The admin API's user list orders by creation time as often as by name.
CREATE INDEX users_created ON users (created_ts);
