//! History visibility: which events of a room a user may see, shared by the rooms service
//! (`/messages`, `/context`, `/event`, `/relations`) and the sync workers. The rules are pure
//! functions over two short histories per room — its `m.room.history_visibility` changes and
//! the user's own membership changes — loaded for many rooms in one query.
//!
//! Spec: client-server API, "Room History Visibility", server behaviour.

use std::collections::HashMap;

use trellis_core::Result;

use crate::events::EventRow;

/// A value of `m.room.history_visibility`. Unknown or missing values count as `shared`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryVisibility {
    WorldReadable,
    Shared,
    Invited,
    Joined,
}

impl HistoryVisibility {
    /// From the content of an `m.room.history_visibility` event.
    pub fn from_content(content: &str) -> HistoryVisibility {
        let v: serde_json::Value = serde_json::from_str(content).unwrap_or_default();
        match v.get("history_visibility").and_then(|h| h.as_str()) {
            Some("world_readable") => HistoryVisibility::WorldReadable,
            Some("invited") => HistoryVisibility::Invited,
            Some("joined") => HistoryVisibility::Joined,
            _ => HistoryVisibility::Shared,
        }
    }
}

/// The `membership` of a member event's content.
pub fn membership_of(content: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(content).ok()?;
    v.get("membership")?.as_str().map(str::to_owned)
}

/// What decides one user's view of one room: the room's visibility changes and the user's
/// membership changes, each as `(position, value)` in position order.
#[derive(Debug, Clone, Default)]
pub struct RoomHistory {
    visibility: Vec<(i64, HistoryVisibility)>,
    membership: Vec<(i64, String)>,
}

impl RoomHistory {
    pub fn new(visibility: Vec<(i64, HistoryVisibility)>, membership: Vec<(i64, String)>) -> RoomHistory {
        RoomHistory { visibility, membership }
    }

    /// The visibility in force just before position `pos`.
    pub fn visibility_before(&self, pos: i64) -> HistoryVisibility {
        last_before(&self.visibility, pos).copied().unwrap_or(HistoryVisibility::Shared)
    }

    /// The user's membership just before position `pos`.
    pub fn membership_before(&self, pos: i64) -> Option<&str> {
        last_before(&self.membership, pos).map(String::as_str)
    }

    /// The room's visibility now (after every loaded change).
    pub fn current_visibility(&self) -> HistoryVisibility {
        self.visibility.last().map_or(HistoryVisibility::Shared, |v| v.1)
    }

    /// Whether the user joined at or after position `pos`.
    fn joined_since(&self, pos: i64) -> bool {
        self.membership.iter().any(|(p, m)| *p >= pos && m == "join")
    }

    /// Whether `user` may see `event` (one of this room's events).
    pub fn allows(&self, user: &str, event: &EventRow) -> bool {
        let pos = event.pos;
        let visibility = self.visibility_before(pos);
        let membership = self.membership_before(pos);
        if self.rule_allows(pos, visibility, membership) {
            return true;
        }
        // A visibility change is visible if the value before *or* after it allows it.
        if event.kind == "m.room.history_visibility" && event.state_key.as_deref() == Some("") {
            return self.rule_allows(pos, HistoryVisibility::from_content(&event.content), membership);
        }
        // Likewise the user's own membership changes, with their membership before or after.
        if event.kind == "m.room.member" && event.state_key.as_deref() == Some(user) {
            let after = membership_of(&event.content);
            return self.rule_allows(pos, visibility, after.as_deref());
        }
        false
    }

    /// The five rules of the spec, for an event at `pos`.
    fn rule_allows(&self, pos: i64, visibility: HistoryVisibility, membership: Option<&str>) -> bool {
        match (visibility, membership) {
            (HistoryVisibility::WorldReadable, _) => true,
            (_, Some("join")) => true,
            (HistoryVisibility::Shared, _) => self.joined_since(pos),
            (HistoryVisibility::Invited, Some("invite")) => true,
            _ => false,
        }
    }

    /// The events of `rows` the user may see, in their order.
    pub fn filter(&self, user: &str, rows: Vec<EventRow>) -> Vec<EventRow> {
        rows.into_iter().filter(|r| self.allows(user, r)).collect()
    }
}

fn last_before<T>(changes: &[(i64, T)], pos: i64) -> Option<&T> {
    let i = changes.partition_point(|(p, _)| *p < pos);
    i.checked_sub(1).map(|i| &changes[i].1)
}

const SELECT_HISTORY: &str = "SELECT room_id, pos, type, content FROM events WHERE room_id = ANY($1) \
     AND ((type = 'm.room.history_visibility' AND state_key = '') \
       OR (type = 'm.room.member' AND state_key = $2)) ORDER BY pos";

/// The [`RoomHistory`] of `user` in each of `rooms` (rooms without events get a default).
pub async fn load(
    client: &deadpool_postgres::Client,
    user: &str,
    rooms: &[&str],
) -> Result<HashMap<String, RoomHistory>> {
    let mut out: HashMap<String, RoomHistory> = rooms.iter().map(|r| (r.to_string(), RoomHistory::default())).collect();
    if rooms.is_empty() {
        return Ok(out);
    }
    let stmt = client.prepare_cached(SELECT_HISTORY).await?;
    for row in client.query(&stmt, &[&rooms, &user]).await? {
        let history = out.entry(row.get(0)).or_default();
        let (pos, kind, content): (i64, &str, &str) = (row.get(1), row.get(2), row.get(3));
        if kind == "m.room.member" {
            history.membership.push((pos, membership_of(content).unwrap_or_default()));
        } else {
            history.visibility.push((pos, HistoryVisibility::from_content(content)));
        }
    }
    Ok(out)
}

/// The [`RoomHistory`] of `user` in one room.
pub async fn load_one(client: &deadpool_postgres::Client, user: &str, room: &str) -> Result<RoomHistory> {
    Ok(load(client, user, &[room]).await?.remove(room).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use HistoryVisibility::*;

    use super::*;

    const ME: &str = "@me:x";

    fn ev(pos: i64, kind: &str, state_key: Option<&str>, content: &str) -> EventRow {
        EventRow {
            pos,
            event_id: format!("$e{pos}"),
            room_id: "!r:x".into(),
            sender: "@other:x".into(),
            kind: kind.into(),
            state_key: state_key.map(Into::into),
            origin_server_ts: 0,
            content: content.into(),
            unsigned_json: None,
            txn_device: None,
            txn_id: None,
            redacts: None,
            relations: None,
        }
    }

    fn msg(pos: i64) -> EventRow {
        ev(pos, "m.room.message", None, r#"{"body":"x"}"#)
    }

    fn history(vis: &[(i64, HistoryVisibility)], mem: &[(i64, &str)]) -> RoomHistory {
        RoomHistory::new(vis.to_vec(), mem.iter().map(|(p, m)| (*p, m.to_string())).collect())
    }

    #[test]
    fn world_readable_events_are_visible_to_anyone() {
        let h = history(&[(1, WorldReadable)], &[]);
        assert!(h.allows(ME, &msg(5)));
        let h = history(&[(1, Joined)], &[]);
        assert!(!h.allows(ME, &msg(5)), "joined-only events are hidden from non-members");
    }

    #[test]
    fn members_see_events_while_joined() {
        let h = history(&[(1, Joined)], &[(3, "join"), (7, "leave")]);
        assert!(!h.allows(ME, &msg(2)), "before joining");
        assert!(h.allows(ME, &msg(5)), "while joined");
        assert!(!h.allows(ME, &msg(8)), "after leaving");
    }

    #[test]
    fn shared_history_is_visible_once_joined() {
        let h = history(&[(1, Shared)], &[(10, "join")]);
        assert!(h.allows(ME, &msg(2)), "joined later: earlier shared history is visible");
        let never = history(&[(1, Shared)], &[]);
        assert!(!never.allows(ME, &msg(2)), "never joined");
        let invited_only = history(&[(1, Shared)], &[(10, "invite")]);
        assert!(!invited_only.allows(ME, &msg(2)), "an invite is not a join");
        let left = history(&[(1, Shared)], &[(3, "join"), (5, "leave")]);
        assert!(!left.allows(ME, &msg(6)), "nothing after leaving");
        assert!(history(&[], &[(3, "join")]).allows(ME, &msg(2)), "no setting means shared");
    }

    #[test]
    fn invited_history_starts_at_the_invite() {
        let h = history(&[(1, Invited)], &[(4, "invite"), (9, "join")]);
        assert!(!h.allows(ME, &msg(3)));
        assert!(h.allows(ME, &msg(5)), "invited at the time");
        assert!(h.allows(ME, &msg(10)));
        let joined = history(&[(1, Joined)], &[(4, "invite"), (9, "join")]);
        assert!(!joined.allows(ME, &msg(5)), "joined visibility: the invite is not enough");
    }

    #[test]
    fn visibility_changes_apply_from_the_next_event() {
        let h = history(&[(1, WorldReadable), (5, Joined)], &[]);
        assert!(h.allows(ME, &msg(4)));
        assert!(!h.allows(ME, &msg(6)));
        // The change itself is visible when the value before or after allows it.
        let change = ev(5, "m.room.history_visibility", Some(""), r#"{"history_visibility":"joined"}"#);
        assert!(h.allows(ME, &change));
        let h = history(&[(1, Joined), (5, WorldReadable)], &[]);
        let change = ev(5, "m.room.history_visibility", Some(""), r#"{"history_visibility":"world_readable"}"#);
        assert!(h.allows(ME, &change));
        assert_eq!(h.current_visibility(), WorldReadable);
    }

    #[test]
    fn own_membership_events_are_visible_before_or_after() {
        let h = history(&[(1, Joined)], &[(3, "join"), (7, "leave")]);
        let join = ev(3, "m.room.member", Some(ME), r#"{"membership":"join"}"#);
        let leave = ev(7, "m.room.member", Some(ME), r#"{"membership":"leave"}"#);
        assert!(h.allows(ME, &join), "the join itself");
        assert!(h.allows(ME, &leave), "the leave itself");
        let other = ev(7, "m.room.member", Some("@other:x"), r#"{"membership":"join"}"#);
        assert!(!history(&[(1, Joined)], &[(3, "join"), (6, "leave")]).allows(ME, &other));
    }
}
