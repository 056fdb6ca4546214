//! Blob locks: putting a blob and recording the row that names it must not interleave with
//! removing that blob once unused, or a new row could name bytes just deleted (identical
//! content is stored once, so a writer may find the blob present and skip writing it). A
//! writer holds a shared PostgreSQL advisory lock on the blob's hash, in the transaction that
//! records its row, from before it looks for the blob until that commit; the remover holds the
//! lock exclusively while it checks and deletes. The locks live in PostgreSQL, so they hold
//! across media service replicas, and end with their transaction (also when a request is
//! cancelled and the transaction rolled back).

use deadpool_postgres::Transaction;
use trellis_core::Result;

const SHARE: &str = "SELECT pg_advisory_xact_lock_shared(hashtextextended($1, 0))";
const EXCLUSIVE: &str = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))";

/// A writer's hold on the blob `sha256` until `tx` ends.
pub(crate) async fn share(tx: &Transaction<'_>, sha256: &str) -> Result<()> {
    tx.execute(&tx.prepare_cached(SHARE).await?, &[&sha256]).await?;
    Ok(())
}

/// The remover's hold on the blob `sha256` until `tx` ends: no writer is between looking for
/// it and committing a row that names it.
pub(crate) async fn exclusive(tx: &Transaction<'_>, sha256: &str) -> Result<()> {
    tx.execute(&tx.prepare_cached(EXCLUSIVE).await?, &[&sha256]).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use trellis_storage::testing::TestDb;

    use super::*;

    /// The remover waits for a writer that holds the blob, and only for it.
    #[tokio::test(flavor = "multi_thread")]
    async fn removal_waits_for_the_writer_to_commit() {
        let db = TestDb::new().await.unwrap();
        let pool = db.pool(4);
        let (mut writer, mut other) = (pool.get().await.unwrap(), pool.get().await.unwrap());
        let held = writer.transaction().await.unwrap();
        share(&held, "aa11").await.unwrap();
        // Another blob's writers and remover are not held up.
        let unrelated = other.transaction().await.unwrap();
        exclusive(&unrelated, "bb22").await.unwrap();
        unrelated.commit().await.unwrap();
        let remover = {
            let pool = pool.clone();
            tokio::spawn(async move {
                let mut client = pool.get().await.unwrap();
                let tx = client.transaction().await.unwrap();
                exclusive(&tx, "aa11").await.unwrap();
                tx.commit().await.unwrap();
            })
        };
        // Wait until PostgreSQL shows the remover queued behind the writer's lock.
        let watcher = pool.get().await.unwrap();
        let waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted";
        while watcher.query_one(waiting, &[]).await.unwrap().get::<_, i64>(0) == 0 {
            tokio::task::yield_now().await;
        }
        assert!(!remover.is_finished(), "the remover waits while the writer holds the blob");
        held.commit().await.unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(10), remover).await.unwrap().unwrap();
    }
}
