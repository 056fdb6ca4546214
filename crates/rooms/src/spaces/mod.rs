//! Spaces: `GET /v1/rooms/{roomId}/hierarchy` walks the tree of `m.space.child` events below
//! a space depth first — children in the spec's order (`order`, then when the child was
//! added, then room ID), only those the user may see, only suggested ones when asked, down to
//! `max_depth` — and pages through it; `room_summary` serves one room's summary.
//!
//! Rooms of other servers are left out: Trellis does not federate.

mod summary;

use std::collections::HashSet;

use ruma::{RoomId, UserId};
use serde_json::{Value, json};
use trellis_core::{Error, Result};
use trellis_proto::rooms::{HierarchyRequest, HierarchyResponse, HierarchyRoom};

use crate::Rooms;

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 50;
const DEFAULT_DEPTH: u32 = 10;
const MAX_DEPTH: u32 = 50;
/// The most rooms one request visits, whatever the page (no walk of an unbounded tree).
const MAX_VISITED: usize = 2000;

const CHILDREN: &str = "SELECT e.state_key, e.content, e.sender, e.origin_server_ts \
     FROM current_state c JOIN events e ON e.event_id = c.event_id \
     WHERE c.room_id = $1 AND c.type = 'm.space.child'";

/// One `m.space.child` event that names a child (its `via` is a non-empty list).
struct Child {
    room_id: String,
    content: Value,
    sender: String,
    ts: i64,
}

impl Child {
    /// The `order` key, when it is a valid one (at most 50 printable ASCII characters).
    fn order(&self) -> Option<&str> {
        self.content["order"].as_str().filter(|o| o.len() <= 50 && o.bytes().all(|b| (0x20..=0x7e).contains(&b)))
    }

    fn suggested(&self) -> bool {
        self.content["suggested"] == true
    }

    /// As stripped state with `origin_server_ts` (spec: `children_state`).
    fn stripped(&self) -> String {
        json!({
            "type": "m.space.child", "state_key": self.room_id, "content": self.content,
            "sender": self.sender, "origin_server_ts": self.ts,
        })
        .to_string()
    }
}

/// The valid children of a room, in the spec's order.
async fn children(client: &deadpool_postgres::Client, room: &str) -> Result<Vec<Child>> {
    let stmt = client.prepare_cached(CHILDREN).await?;
    let mut children: Vec<Child> = client
        .query(&stmt, &[&room])
        .await?
        .iter()
        .filter_map(|r| {
            let content: Value = serde_json::from_str(r.get::<_, &str>(1)).ok()?;
            let room_id: String = r.get(0);
            let via_ok = content["via"].as_array().is_some_and(|v| !v.is_empty());
            (via_ok && RoomId::parse(&room_id).is_ok()).then(|| Child {
                room_id,
                content,
                sender: r.get(2),
                ts: r.get(3),
            })
        })
        .collect();
    children.sort_by(|a, b| {
        let by_order = match (a.order(), b.order()) {
            (Some(x), Some(y)) => x.cmp(y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        };
        by_order.then(a.ts.cmp(&b.ts)).then_with(|| a.room_id.cmp(&b.room_id))
    });
    Ok(children)
}

/// Where a page of a walk starts, and the walk it belongs to: `from` tokens only continue
/// the same walk (spec: `max_depth` and `suggested_only` cannot change).
struct Token {
    skip: usize,
    max_depth: u32,
    suggested_only: bool,
}

impl Token {
    fn render(&self) -> String {
        format!("h{}_{}_{}", self.skip, self.max_depth, u8::from(self.suggested_only))
    }

    fn parse(s: &str) -> Result<Token> {
        let bad = || Error::invalid_param("unknown from token");
        let mut parts = s.strip_prefix('h').ok_or_else(bad)?.split('_');
        let mut next = || parts.next().ok_or_else(bad);
        let skip = next()?.parse().map_err(|_| bad())?;
        let max_depth = next()?.parse().map_err(|_| bad())?;
        let suggested_only = match next()? {
            "0" => false,
            "1" => true,
            _ => return Err(bad()),
        };
        Ok(Token { skip, max_depth, suggested_only })
    }
}

impl Rooms {
    #[tracing::instrument(skip_all, fields(user = %req.user_id, room_id = %req.room_id))]
    pub(crate) async fn get_hierarchy(&self, req: HierarchyRequest) -> Result<HierarchyResponse> {
        UserId::parse(&req.user_id)?;
        let limit = match req.limit {
            Some(0) => return Err(Error::invalid_param("limit must be greater than zero")),
            l => l.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT) as usize,
        };
        let max_depth = req.max_depth.unwrap_or(DEFAULT_DEPTH).min(MAX_DEPTH);
        let skip = match req.from.as_deref().filter(|f| !f.is_empty()) {
            None => 0,
            Some(from) => {
                let token = Token::parse(from)?;
                if token.max_depth != max_depth || token.suggested_only != req.suggested_only {
                    return Err(Error::invalid_param(
                        "suggested_only and max_depth cannot change on paginated requests",
                    ));
                }
                token.skip
            }
        };
        let client = self.pool.get().await?;
        let forbidden = || Error::forbidden("You are not allowed to view this room.");
        let root = summary::load(&client, &req.room_id).await?.ok_or_else(forbidden)?;
        if !summary::accessible(&client, Some(&req.user_id), &root).await? {
            return Err(forbidden());
        }

        // Depth first: a stack of (room, depth), children pushed last-first.
        let mut stack = vec![(req.room_id.clone(), 0u32)];
        let mut seen = HashSet::new();
        let mut walked = 0usize;
        let mut rooms = Vec::new();
        let mut more = false;
        while let Some((room, depth)) = stack.pop() {
            if !seen.insert(room.clone()) || seen.len() > MAX_VISITED {
                continue;
            }
            let summary = match summary::load(&client, &room).await? {
                Some(s) if room == req.room_id || summary::accessible(&client, Some(&req.user_id), &s).await? => s,
                _ => continue,
            };
            let kids =
                if summary.room_type.as_deref() == Some("m.space") { children(&client, &room).await? } else { vec![] };
            if depth < max_depth {
                for child in kids.iter().rev().filter(|c| !req.suggested_only || c.suggested()) {
                    stack.push((child.room_id.clone(), depth + 1));
                }
            }
            walked += 1;
            if walked <= skip {
                continue;
            }
            if rooms.len() == limit {
                more = true;
                break;
            }
            let children_state_json = kids.iter().map(Child::stripped).collect();
            rooms.push(HierarchyRoom { summary: Some(summary), children_state_json });
        }
        let next_batch =
            more.then(|| Token { skip: skip + rooms.len(), max_depth, suggested_only: req.suggested_only }.render());
        Ok(HierarchyResponse { rooms, next_batch })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child(room: &str, order: Option<&str>, ts: i64) -> Child {
        let mut content = json!({"via": ["x"]});
        if let Some(o) = order {
            content["order"] = json!(o);
        }
        Child { room_id: room.into(), content, sender: "@a:x".into(), ts }
    }

    #[test]
    fn order_keys_must_be_short_printable_ascii() {
        assert_eq!(child("!a:x", Some("abc"), 0).order(), Some("abc"));
        assert_eq!(child("!a:x", Some("\u{7f}"), 0).order(), None);
        assert_eq!(child("!a:x", Some(&"a".repeat(51)), 0).order(), None);
    }

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        let t = Token::parse(&Token { skip: 3, max_depth: 2, suggested_only: true }.render()).unwrap();
        assert_eq!((t.skip, t.max_depth, t.suggested_only), (3, 2, true));
        for bad in ["", "h", "h1_2", "h1_2_3", "x1_2_0", "h-1_2_0"] {
            assert!(Token::parse(bad).is_err(), "{bad}");
        }
    }
}
