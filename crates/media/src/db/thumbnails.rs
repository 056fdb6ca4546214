//! `media_thumbnails`: generated thumbnails, one row per media ID, size, method and
//! animation, pointing at a blob.

use deadpool_postgres::Pool;
use trellis_core::{Error, Result};

const SELECT_THUMB: &str = "SELECT content_type, size, sha256 FROM media_thumbnails \
     WHERE media_id = $1 AND width = $2 AND height = $3 AND method = $4 AND animated = $5";

const INSERT_THUMB: &str = "INSERT INTO media_thumbnails \
     (media_id, width, height, method, animated, content_type, size, sha256, created_ts) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING";

const COUNT_THUMBS: &str = "SELECT count(*) FROM media_thumbnails WHERE media_id = $1";

/// Which thumbnail: the size asked for (after rounding), the method and animation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ThumbKey {
    pub width: u32,
    pub height: u32,
    pub crop: bool,
    pub animated: bool,
}

impl ThumbKey {
    fn method(&self) -> &'static str {
        if self.crop { "crop" } else { "scale" }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct StoredThumb {
    pub content_type: String,
    pub size: u64,
    pub sha256: String,
}

fn dim(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

pub(crate) async fn get(pool: &Pool, media_id: &str, key: ThumbKey) -> Result<Option<StoredThumb>> {
    let client = pool.get().await?;
    let stmt = client.prepare_cached(SELECT_THUMB).await?;
    let row =
        client.query_opt(&stmt, &[&media_id, &dim(key.width), &dim(key.height), &key.method(), &key.animated]).await?;
    let Some(row) = row else { return Ok(None) };
    let size: i64 = row.get(1);
    Ok(Some(StoredThumb {
        content_type: row.get(0),
        size: u64::try_from(size).map_err(Error::internal)?,
        sha256: row.get(2),
    }))
}

pub(crate) async fn insert(
    client: &impl deadpool_postgres::GenericClient,
    media_id: &str,
    key: ThumbKey,
    thumb: &StoredThumb,
    now: i64,
) -> Result<()> {
    let stmt = client.prepare_cached(INSERT_THUMB).await?;
    let size = i64::try_from(thumb.size).map_err(Error::internal)?;
    client
        .execute(
            &stmt,
            &[
                &media_id,
                &dim(key.width),
                &dim(key.height),
                &key.method(),
                &key.animated,
                &thumb.content_type,
                &size,
                &thumb.sha256,
                &now,
            ],
        )
        .await?;
    Ok(())
}

/// How many thumbnails of `media_id` are stored (for tests and metrics).
pub(crate) async fn count(pool: &Pool, media_id: &str) -> Result<i64> {
    let client = pool.get().await?;
    let stmt = client.prepare_cached(COUNT_THUMBS).await?;
    Ok(client.query_one(&stmt, &[&media_id]).await?.get(0))
}
