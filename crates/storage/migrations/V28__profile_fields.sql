-- Custom profile fields (spec 1.16: `m.tz` and namespaced keys such as `com.example.pronouns`)
-- beside the display name and avatar: a JSON object of key → any JSON value. The auth
-- service writes it and keeps the whole profile under 64 KiB.
ALTER TABLE profiles ADD COLUMN fields JSONB NOT NULL DEFAULT '{}'::jsonb;
