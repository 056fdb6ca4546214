-- The media service's tables beyond `media` (V1). Written only by the media service.

-- The page a cached URL-preview image came from; NULL for uploads. Preview images count
-- towards nobody's quota.
ALTER TABLE media ADD COLUMN url_cache TEXT;
-- Pixel size of images, read from their header at upload; NULL for anything else.
ALTER TABLE media ADD COLUMN width INTEGER;
ALTER TABLE media ADD COLUMN height INTEGER;

-- mxc:// URIs reserved by POST /_matrix/media/v1/create whose content has not arrived.
-- Uploading the content moves the ID into `media` in the same transaction.
CREATE TABLE media_pending (
    media_id   TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    expires_ts BIGINT NOT NULL
);
CREATE INDEX media_pending_user ON media_pending (user_id, expires_ts);
CREATE INDEX media_pending_expiry ON media_pending (expires_ts);

-- Bytes uploaded per user, kept in step with `media` so a quota check is one atomic update.
CREATE TABLE media_usage (
    user_id TEXT PRIMARY KEY,
    bytes   BIGINT NOT NULL
);
INSERT INTO media_usage (user_id, bytes)
    SELECT user_id, sum(size) FROM media GROUP BY user_id;

-- Thumbnails, stored as blobs like any content. `width`/`height` are the size that was
-- asked for (after rounding to the configured sizes), not the size of the result.
CREATE TABLE media_thumbnails (
    media_id     TEXT NOT NULL REFERENCES media (media_id) ON DELETE CASCADE,
    width        INTEGER NOT NULL,
    height       INTEGER NOT NULL,
    method       TEXT NOT NULL,
    animated     BOOLEAN NOT NULL,
    content_type TEXT NOT NULL,
    size         BIGINT NOT NULL,
    sha256       TEXT NOT NULL,
    created_ts   BIGINT NOT NULL,
    PRIMARY KEY (media_id, width, height, method, animated)
);

-- URL previews, served from here until `expires_ts`.
CREATE TABLE media_url_previews (
    url        TEXT PRIMARY KEY,
    og         JSONB NOT NULL,
    expires_ts BIGINT NOT NULL
);
