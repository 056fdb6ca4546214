//! The search index (`event_search`): the searchable text of each new event, written in the
//! transaction that stores it, and dropped when the event is redacted.

use ruma::events::TimelineEventType;
use trellis_core::Result;

use crate::new_event::Row;

const INSERT: &str = "INSERT INTO event_search (event_id, room_id, pos, key, value, vector) \
     SELECT i, $1, p, k, v, to_tsvector('english', v) \
     FROM unnest($2::text[], $3::bigint[], $4::text[], $5::text[]) AS t (i, p, k, v) ON CONFLICT DO NOTHING";
const DELETE: &str = "DELETE FROM event_search WHERE event_id = $1";

/// The search key and text of an event, for the three kinds the spec searches.
fn searchable(row: &Row) -> Option<(&'static str, String)> {
    let (key, field) = match row.pdu.kind {
        TimelineEventType::RoomMessage => ("content.body", "body"),
        TimelineEventType::RoomName => ("content.name", "name"),
        TimelineEventType::RoomTopic => ("content.topic", "topic"),
        _ => return None,
    };
    let content: serde_json::Value = serde_json::from_str(row.pdu.content_str()).ok()?;
    Some((key, content.get(field)?.as_str()?.to_owned()))
}

/// Indexes the searchable events of a batch stored at `positions`.
pub(crate) async fn write(
    tx: &deadpool_postgres::Transaction<'_>,
    room_id: &str,
    rows: &[Row],
    positions: &[i64],
) -> Result<()> {
    let (mut ids, mut poss, mut keys, mut values) = (vec![], vec![], vec![], vec![]);
    for (row, pos) in rows.iter().zip(positions) {
        if let Some((key, value)) = searchable(row) {
            ids.push(row.pdu.event_id.to_string());
            poss.push(*pos);
            keys.push(key);
            values.push(value);
        }
    }
    if !ids.is_empty() {
        let stmt = tx.prepare_cached(INSERT).await?;
        tx.execute(&stmt, &[&room_id, &ids, &poss, &keys, &values]).await?;
    }
    Ok(())
}

/// Drops a redacted event from the index.
pub(crate) async fn forget(tx: &deadpool_postgres::Transaction<'_>, event_id: &str) -> Result<()> {
    tx.execute(&tx.prepare_cached(DELETE).await?, &[&event_id]).await?;
    Ok(())
}
