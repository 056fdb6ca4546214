//! Bundled aggregations: `unsigned.m.relations` of events served to clients, shared by the
//! rooms service (`/messages`, `/context`, `/event`, `/relations`, `/threads`) and the sync
//! workers. Reads `event_relations` and `threads`, which the rooms service writes.
//!
//! Spec: client-server API, "Aggregations of child events"; `m.replace` (event
//! replacements), `m.thread` (threading) and `m.reference` (reference relations).

use std::collections::HashMap;

use serde_json::{Value, json};
use trellis_core::Result;

use crate::events::{COLUMNS, EventRow, Format, Viewer};

// The latest valid edit of each parent: same sender, same type, with `m.new_content`;
// latest by origin_server_ts, then event ID.
const LATEST_EDITS: &str = "SELECT DISTINCT ON (r.relates_to) r.relates_to, r.event_id \
     FROM unnest($1::text[], $2::text[], $3::text[]) AS p(id, sender, type) \
     JOIN event_relations r ON r.relates_to = p.id AND r.rel_type = 'm.replace' \
       AND r.sender = p.sender AND r.type = p.type \
     JOIN events e ON e.event_id = r.event_id \
     WHERE jsonb_exists(trellis_jsonb(e.content), 'm.new_content') \
     ORDER BY r.relates_to, e.origin_server_ts DESC, e.event_id DESC";
const THREAD_SUMMARIES: &str = "SELECT relates_to, count(*), max(pos), bool_or(sender = $2) \
     FROM event_relations WHERE relates_to = ANY($1) AND rel_type = 'm.thread' GROUP BY relates_to";
const REFERENCES: &str = "SELECT relates_to, event_id FROM event_relations \
     WHERE relates_to = ANY($1) AND rel_type = 'm.reference' ORDER BY pos";

/// Fills [`EventRow::relations`] of every message event in `rows` that has children to
/// aggregate. `viewer` decides `current_user_participated` and the transaction IDs of
/// embedded events.
pub async fn bundle(client: &deadpool_postgres::Client, viewer: Viewer<'_>, rows: &mut [EventRow]) -> Result<()> {
    // State events get no bundled aggregations (spec), nor do redacted ones (no relations).
    let parents: Vec<&EventRow> = rows.iter().filter(|r| !r.is_state()).collect();
    if parents.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = parents.iter().map(|r| r.event_id.as_str()).collect();
    let senders: Vec<&str> = parents.iter().map(|r| r.sender.as_str()).collect();
    let kinds: Vec<&str> = parents.iter().map(|r| r.kind.as_str()).collect();

    let mut edits: HashMap<String, String> = HashMap::new();
    for row in client.query(&client.prepare_cached(LATEST_EDITS).await?, &[&ids, &senders, &kinds]).await? {
        edits.insert(row.get(0), row.get(1));
    }
    let mut threads: HashMap<String, (i64, i64, bool)> = HashMap::new();
    let stmt = client.prepare_cached(THREAD_SUMMARIES).await?;
    for row in client.query(&stmt, &[&ids, &viewer.user_id]).await? {
        threads.insert(row.get(0), (row.get(1), row.get(2), row.get(3)));
    }
    let mut references: HashMap<String, Vec<Value>> = HashMap::new();
    for row in client.query(&client.prepare_cached(REFERENCES).await?, &[&ids]).await? {
        references.entry(row.get(0)).or_default().push(json!({ "event_id": row.get::<_, String>(1) }));
    }
    if edits.is_empty() && threads.is_empty() && references.is_empty() {
        return Ok(());
    }

    // The embedded events: edits by ID, latest thread replies by position.
    let edit_ids: Vec<&str> = edits.values().map(String::as_str).collect();
    let latest_pos: Vec<i64> = threads.values().map(|t| t.1).collect();
    let sql = format!("SELECT {COLUMNS} FROM events WHERE event_id = ANY($1) OR pos = ANY($2)");
    let embedded: Vec<EventRow> = client
        .query(&client.prepare_cached(&sql).await?, &[&edit_ids, &latest_pos])
        .await?
        .iter()
        .map(EventRow::from_row)
        .collect();
    let now = trellis_core::time::now_ms();
    let render = |e: &EventRow| -> Value {
        serde_json::from_str(&e.render(Some(viewer), Format::Client, now)).unwrap_or_default()
    };
    let by_id: HashMap<&str, &EventRow> = embedded.iter().map(|e| (e.event_id.as_str(), e)).collect();
    let by_pos: HashMap<i64, &EventRow> = embedded.iter().map(|e| (e.pos, e)).collect();

    for row in rows.iter_mut().filter(|r| !r.is_state()) {
        let mut relations = serde_json::Map::new();
        // An edit of an edit is not a valid replacement.
        if let Some(edit) = edits.get(&row.event_id).and_then(|id| by_id.get(id.as_str()))
            && !is_replacement(&row.content)
        {
            relations.insert("m.replace".into(), render(edit));
        }
        if let Some((count, pos, replied)) = threads.get(&row.event_id)
            && let Some(latest) = by_pos.get(pos)
        {
            relations.insert(
                "m.thread".into(),
                json!({
                    "latest_event": render(latest),
                    "count": count,
                    "current_user_participated": *replied || row.sender == viewer.user_id,
                }),
            );
        }
        if let Some(chunk) = references.remove(&row.event_id) {
            relations.insert("m.reference".into(), json!({ "chunk": chunk }));
        }
        if !relations.is_empty() {
            row.relations = Some(Value::Object(relations));
        }
    }
    Ok(())
}

/// Whether an event's content makes it an `m.replace` edit.
fn is_replacement(content: &str) -> bool {
    serde_json::from_str::<Value>(content)
        .ok()
        .and_then(|c| c.get("m.relates_to")?.get("rel_type")?.as_str().map(|r| r == "m.replace"))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_of_edits_are_recognised() {
        assert!(is_replacement(r#"{"m.relates_to":{"rel_type":"m.replace","event_id":"$a"}}"#));
        assert!(!is_replacement(r#"{"m.relates_to":{"rel_type":"m.thread","event_id":"$a"}}"#));
        assert!(!is_replacement(r#"{"body":"x"}"#));
    }
}
