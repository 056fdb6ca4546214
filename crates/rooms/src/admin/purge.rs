//! Purging a room: every row that names it goes, from every table, in small batches (each
//! its own short transaction) so a room of any size is removed without one giant
//! transaction or a long lock on any table. The tables are read from the database's own
//! catalogue (every table with a `room_id` column, and for events of the room every table
//! with an `event_id` column but no `room_id`), so a table added later is purged too. Only
//! `blocked_rooms` and `room_deletions` keep the room: its block and the deletion's record.
//! A purge interrupted half way is simply run again.

use trellis_core::{Result, time::now_ms};
use trellis_storage::Pool;

/// Rows deleted per statement.
const BATCH: i64 = 1000;

/// Tables that keep the room's ID after a purge.
pub(crate) const KEPT: [&str; 2] = ["blocked_rooms", "room_deletions"];

const ROOM_TABLES: &str = "SELECT c.table_name::text FROM information_schema.columns c \
     JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
     WHERE c.table_schema = current_schema() AND c.column_name = 'room_id' AND t.table_type = 'BASE TABLE' \
     ORDER BY c.table_name";
const EVENT_TABLES: &str = "SELECT c.table_name::text FROM information_schema.columns c \
     JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
     WHERE c.table_schema = current_schema() AND c.column_name = 'event_id' AND t.table_type = 'BASE TABLE' \
     AND NOT EXISTS (SELECT 1 FROM information_schema.columns r WHERE r.table_schema = c.table_schema \
       AND r.table_name = c.table_name AND r.column_name = 'room_id') \
     ORDER BY c.table_name";

/// Records the running count of rows removed in the deletion's row, after each batch.
async fn progress(pool: &Pool, delete_id: &str, removed: i64) {
    let update = "UPDATE room_deletions SET purged_rows = $2, updated_ts = $3 WHERE delete_id = $1";
    match pool.get().await {
        Ok(client) => {
            if let Err(e) = client.execute(update, &[&delete_id, &removed, &now_ms()]).await {
                tracing::warn!(delete_id, error = %e, "cannot record a purge's progress");
            }
        }
        Err(e) => tracing::warn!(delete_id, error = %e, "cannot record a purge's progress"),
    }
}

/// Removes every row of `room` for the deletion `delete_id`. The number of rows removed.
/// Each batch waits while `enabled` says background work is paused.
pub(crate) async fn purge_room(
    pool: &Pool,
    room: &str,
    delete_id: &str,
    mut enabled: tokio::sync::watch::Receiver<bool>,
) -> Result<i64> {
    let mut go_on = async || {
        // The sender lives as long as the service: a closed channel means it is stopping.
        if enabled.wait_for(|on| *on).await.is_err() {
            return Err(trellis_core::Error::internal("the rooms service is stopping"));
        }
        Ok(())
    };
    let client = pool.get().await?;
    let room_tables: Vec<String> = client.query(ROOM_TABLES, &[]).await?.iter().map(|r| r.get(0)).collect();
    let event_tables: Vec<String> = client.query(EVENT_TABLES, &[]).await?.iter().map(|r| r.get(0)).collect();
    drop(client);
    let mut removed = 0i64;
    // Membership and state first, so readers stop seeing the room at once; the events
    // (which `rooms` is referenced by) and the room itself last.
    for table in room_tables.iter().filter(|t| !KEPT.contains(&t.as_str()) && *t != "events" && *t != "rooms") {
        let sql = format!(
            "DELETE FROM \"{table}\" WHERE ctid = ANY(ARRAY(SELECT ctid FROM \"{table}\" WHERE room_id = $1 LIMIT {BATCH}))"
        );
        loop {
            go_on().await?;
            let n = pool.get().await?.execute(&sql, &[&room]).await? as i64;
            if n == 0 {
                break;
            }
            removed += n;
            progress(pool, delete_id, removed).await;
            tokio::task::yield_now().await;
        }
    }
    loop {
        go_on().await?;
        let n = delete_event_batch(pool, room, &event_tables).await?;
        if n == 0 {
            break;
        }
        removed += n;
        progress(pool, delete_id, removed).await;
        tokio::task::yield_now().await;
    }
    removed += pool.get().await?.execute("DELETE FROM rooms WHERE room_id = $1", &[&room]).await? as i64;
    progress(pool, delete_id, removed).await;
    Ok(removed)
}

/// One batch of the room's events (newest first) with the rows of other tables that name
/// them, in one transaction; the number of rows removed.
async fn delete_event_batch(pool: &Pool, room: &str, event_tables: &[String]) -> Result<i64> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let ids: Vec<String> = tx
        .query(&format!("SELECT event_id FROM events WHERE room_id = $1 ORDER BY pos DESC LIMIT {BATCH}"), &[&room])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if ids.is_empty() {
        return Ok(0);
    }
    let mut removed = 0;
    for table in event_tables {
        removed += tx.execute(&format!("DELETE FROM \"{table}\" WHERE event_id = ANY($1)"), &[&ids]).await? as i64;
    }
    removed += tx.execute("DELETE FROM events WHERE event_id = ANY($1)", &[&ids]).await? as i64;
    tx.commit().await?;
    Ok(removed)
}
