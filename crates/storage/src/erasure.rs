//! Erased users (`POST /account/deactivate` with `erase: true`): their events keep their place
//! in every room, but a viewer who was not joined when one was sent sees it with its content
//! stripped as a redaction strips it — those who were there keep what they saw, later
//! joiners never get it. This is Synapse's behaviour; the spec leaves it to the server.
//! Shared by the rooms service and the sync workers, applied after history visibility.

use std::collections::{HashMap, HashSet};

use ruma::{RoomVersionId, canonical_json::redact_content_in_place};
use trellis_core::Result;

use crate::{events::EventRow, visibility::RoomHistory};

const SELECT_ERASED: &str = "SELECT user_id FROM users WHERE erased AND user_id = ANY($1)";
const SELECT_VERSIONS: &str = "SELECT room_id, room_version FROM rooms WHERE room_id = ANY($1)";

/// Strips, in `rows`, the content of erased senders' events the viewer was not joined for.
/// `history` gives the viewer's history of each row's room (none: not joined at any event).
pub async fn hide_erased<'a, 'r>(
    client: &deadpool_postgres::Client,
    history: impl Fn(&str) -> Option<&'a RoomHistory>,
    rows: impl IntoIterator<Item = &'r mut EventRow>,
) -> Result<()> {
    let mut rows: Vec<&mut EventRow> = rows.into_iter().collect();
    // Only events the viewer was not joined for can be hidden: when there are none (every
    // event of a live sync, most pages of history), the database is not asked at all.
    let unseen: Vec<usize> = (0..rows.len())
        .filter(|&i| history(&rows[i].room_id).and_then(|h| h.membership_before(rows[i].pos)) != Some("join"))
        .collect();
    if unseen.is_empty() {
        return Ok(());
    }
    let senders: HashSet<&str> = unseen.iter().map(|&i| rows[i].sender.as_str()).collect();
    let senders: Vec<&str> = senders.into_iter().collect();
    let stmt = client.prepare_cached(SELECT_ERASED).await?;
    let erased: HashSet<String> = client.query(&stmt, &[&senders]).await?.iter().map(|r| r.get(0)).collect();
    let hidden: Vec<usize> = unseen.into_iter().filter(|&i| erased.contains(&rows[i].sender)).collect();
    if hidden.is_empty() {
        return Ok(());
    }
    let rooms: HashSet<&str> = hidden.iter().map(|&i| rows[i].room_id.as_str()).collect();
    let rooms: Vec<&str> = rooms.into_iter().collect();
    let stmt = client.prepare_cached(SELECT_VERSIONS).await?;
    let versions: HashMap<String, String> =
        client.query(&stmt, &[&rooms]).await?.iter().map(|r| (r.get(0), r.get(1))).collect();
    for i in hidden {
        let row = &mut *rows[i];
        let version = versions.get(&row.room_id).map_or("11", String::as_str);
        row.content = stripped_content(&row.content, &row.kind, version);
    }
    Ok(())
}

/// `content` of an event of type `kind` as the room version's redaction algorithm leaves it
/// (`{}` when it cannot be read).
fn stripped_content(content: &str, kind: &str, version: &str) -> String {
    let rules = RoomVersionId::try_from(version).ok().and_then(|v| v.rules());
    let parsed = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(content)
        .ok()
        .and_then(|m| ruma::canonical_json::try_from_json_map(m).ok());
    match (rules, parsed) {
        (Some(rules), Some(mut object)) => {
            redact_content_in_place(&mut object, &rules.redaction, kind);
            serde_json::to_string(&object).unwrap_or_else(|_| "{}".to_owned())
        }
        _ => "{}".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::stripped_content;

    #[test]
    fn messages_lose_their_content_and_state_keeps_what_redaction_keeps() {
        assert_eq!(stripped_content(r#"{"body":"hi","msgtype":"m.text"}"#, "m.room.message", "11"), "{}");
        let member = stripped_content(r#"{"membership":"join","displayname":"A"}"#, "m.room.member", "11");
        assert_eq!(member, r#"{"membership":"join"}"#);
        assert_eq!(stripped_content("not json", "m.room.message", "11"), "{}");
    }
}
