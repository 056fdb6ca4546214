//! `media_url_previews`: the OpenGraph object of each previewed URL, until it expires.

use deadpool_postgres::Pool;
use serde_json::Value;
use trellis_core::Result;

const SELECT_PREVIEW: &str = "SELECT og FROM media_url_previews WHERE url = $1 AND expires_ts > $2";

const UPSERT_PREVIEW: &str = "INSERT INTO media_url_previews (url, og, expires_ts) VALUES ($1, $2, $3) \
     ON CONFLICT (url) DO UPDATE SET og = EXCLUDED.og, expires_ts = EXCLUDED.expires_ts";

pub(crate) async fn get(pool: &Pool, url: &str, now: i64) -> Result<Option<Value>> {
    let client = pool.get().await?;
    let stmt = client.prepare_cached(SELECT_PREVIEW).await?;
    Ok(client.query_opt(&stmt, &[&url, &now]).await?.map(|r| r.get(0)))
}

pub(crate) async fn put(pool: &Pool, url: &str, og: &Value, expires_ts: i64) -> Result<()> {
    let client = pool.get().await?;
    let stmt = client.prepare_cached(UPSERT_PREVIEW).await?;
    client.execute(&stmt, &[&url, og, &expires_ts]).await?;
    Ok(())
}
