//! How each room the user has a membership in appears in an exact sync (joined, invited,
//! knocking, left), and over which window of its events.

use trellis_core::Result;

use crate::{
    SyncWorker,
    poll::steps::{Request, room_selected},
    queries::{self, Client, Membership},
};

/// How a room appears in the response.
pub(crate) enum Section {
    /// Joined: timeline in `(lower, upto]`; full state if `full`, else the gap's state.
    /// `newly`: joined since the client's `since`, so its timeline is always `limited`
    /// (the client has nothing of the room before it and may page back, as with Synapse).
    Join {
        lower: i64,
        full: bool,
        newly: bool,
    },
    Invite {
        at: i64,
    },
    Knock {
        at: i64,
    },
    /// Left (or banned) at `at`: timeline in `(lower, at]`.
    Leave {
        lower: i64,
        at: i64,
        full: bool,
    },
}

impl SyncWorker {
    /// Decides, for every room the user has a membership in, how it appears.
    pub(crate) async fn sections(
        &self,
        client: &Client,
        req: &Request<'_>,
        upto: i64,
        memberships: &[Membership],
    ) -> Result<Vec<(String, Section)>> {
        let mut out = Vec::new();
        let rf = &req.filter.room;
        for row in memberships.iter().cloned() {
            if row.forgotten || !room_selected(&row.room_id, rf.rooms.as_deref(), &rf.not_rooms) {
                continue;
            }
            // The table is current; a change after `upto` is not visible to this sync yet.
            let now = if row.pos > upto {
                match queries::membership_at(client, req.user_id, &row.room_id, upto).await? {
                    Some(m) => m,
                    None => continue,
                }
            } else {
                row
            };
            let section = match req.since.map(|s| s.events) {
                None => initial_section(&now, rf.include_leave),
                Some(since) => {
                    let before = if now.pos > since {
                        queries::membership_at(client, req.user_id, &now.room_id, since).await?
                    } else {
                        Some(now.clone())
                    };
                    incremental_section(&now, before.as_ref(), since, req.full_state)
                }
            };
            if let Some(s) = section {
                out.push((now.room_id, s));
            }
        }
        Ok(out)
    }
}

fn initial_section(now: &Membership, include_leave: bool) -> Option<Section> {
    match now.membership.as_str() {
        "join" => Some(Section::Join { lower: 0, full: true, newly: false }),
        "invite" => Some(Section::Invite { at: now.pos }),
        "knock" => Some(Section::Knock { at: now.pos }),
        "leave" | "ban" if include_leave => Some(Section::Leave { lower: 0, at: now.pos, full: true }),
        _ => None,
    }
}

fn incremental_section(now: &Membership, before: Option<&Membership>, since: i64, full_state: bool) -> Option<Section> {
    let was = before.map(|m| m.membership.as_str());
    let changed = now.pos > since;
    match now.membership.as_str() {
        // Newly joined (from an invite, a knock, a leave or nothing) or rejoined: the room is
        // sent as an initial sync would send it, so the client gets the latest events it may
        // see and a `prev_batch` to page back from, not just the join; `limited` tells it
        // that it may (Synapse marks every newly joined room so).
        "join" if was != Some("join") => Some(Section::Join { lower: 0, full: true, newly: true }),
        "join" => Some(Section::Join { lower: since, full: full_state, newly: false }),
        "invite" if changed => Some(Section::Invite { at: now.pos }),
        "knock" if changed => Some(Section::Knock { at: now.pos }),
        "leave" | "ban" if changed && matches!(was, Some("join" | "invite" | "knock")) => {
            Some(Section::Leave { lower: since, at: now.pos, full: full_state || was != Some("join") })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(membership: &str, pos: i64) -> Membership {
        Membership { room_id: "!r".into(), membership: membership.into(), pos, forgotten: false }
    }

    #[test]
    fn incremental_classification() {
        // Still joined: timeline since `since`, no full state.
        assert!(matches!(
            incremental_section(&m("join", 3), Some(&m("join", 3)), 5, false),
            Some(Section::Join { lower: 5, full: false, newly: false })
        ));
        // Joined or rejoined in the window: the whole room, as in an initial sync.
        for was in [Some(m("invite", 4)), Some(m("leave", 4)), Some(m("knock", 4)), None] {
            assert!(matches!(
                incremental_section(&m("join", 9), was.as_ref(), 5, false),
                Some(Section::Join { lower: 0, full: true, newly: true })
            ));
        }
        // Still joined with full_state: full state, timeline since `since`.
        assert!(matches!(
            incremental_section(&m("join", 3), Some(&m("join", 3)), 5, true),
            Some(Section::Join { lower: 5, full: true, newly: false })
        ));
        // Invited or knocking in the window; an old invite stays out.
        assert!(matches!(incremental_section(&m("invite", 9), None, 5, false), Some(Section::Invite { at: 9 })));
        assert!(matches!(incremental_section(&m("knock", 9), None, 5, false), Some(Section::Knock { at: 9 })));
        assert!(incremental_section(&m("invite", 2), Some(&m("invite", 2)), 5, false).is_none());
        // Left in the window after being joined; a long-gone room stays out.
        assert!(matches!(
            incremental_section(&m("leave", 9), Some(&m("join", 1)), 5, false),
            Some(Section::Leave { at: 9, .. })
        ));
        assert!(incremental_section(&m("leave", 2), Some(&m("leave", 2)), 5, false).is_none());
    }
}
