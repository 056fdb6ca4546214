//! Lists: which of the user's rooms a list holds (its filters), in which order (most recent
//! bump first), how many, and which fall in its ranges. Rooms the user left themselves drop out
//! of the lists once the client has been told of the leave; rooms the user was kicked or
//! banned from stay, as Synapse keeps them.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{
    queries::{Facts, Member},
    request::{Filters, List, Request, RoomConfig},
};

/// A room the user may see in a list.
#[derive(Clone, Debug)]
pub(crate) struct Candidate {
    pub member: Member,
    /// The list order: the latest bump event's position, or the membership's for a room the
    /// user is not joined to (or one without bump events).
    pub bump: i64,
    pub encrypted: bool,
    pub room_type: Option<String>,
    pub dm: bool,
}

impl Candidate {
    pub(crate) fn new(member: Member, facts: Option<&Facts>, dm: bool) -> Candidate {
        let joined = member.membership == "join";
        let bump = match facts.and_then(|f| f.bump) {
            Some(b) if joined => b,
            _ => member.pos,
        };
        Candidate {
            bump,
            encrypted: facts.is_some_and(|f| f.encrypted),
            room_type: facts.and_then(|f| f.room_type.clone()),
            dm,
            member,
        }
    }
}

/// Whether a membership puts the room in the lists: joined, invited, knocking or banned; left
/// only when someone else made the user leave, or when the leave is news to the client
/// (after `from`, the events position of its `pos`).
pub(crate) fn listed(member: &Member, user: &str, from: Option<i64>) -> bool {
    match member.membership.as_str() {
        "join" | "invite" | "knock" | "ban" => true,
        "leave" => member.sender != user || from.is_some_and(|f| member.pos > f),
        _ => false,
    }
}

/// Children of the spaces the lists filter on, by space.
pub(crate) type Children = HashMap<String, HashSet<String>>;

fn passes(c: &Candidate, f: &Filters, children: &Children) -> bool {
    let invited = c.member.membership == "invite";
    let in_spaces = f.spaces.is_empty()
        || f.spaces.iter().any(|s| children.get(s).is_some_and(|c2| c2.contains(&c.member.room_id)));
    f.is_dm.is_none_or(|want| want == c.dm)
        && f.is_encrypted.is_none_or(|want| want == c.encrypted)
        && f.is_invite.is_none_or(|want| want == invited)
        && (f.room_types.is_empty() || f.room_types.contains(&c.room_type))
        && !f.not_room_types.contains(&c.room_type)
        && in_spaces
}

/// One list's outcome: its count and the rooms in its ranges, in list order.
pub(crate) struct Window {
    pub count: u64,
    pub rooms: Vec<String>,
}

/// Applies each list to the candidates (already ordered by [`order`]).
pub(crate) fn windows(
    candidates: &[Candidate],
    lists: &BTreeMap<String, List>,
    children: &Children,
) -> BTreeMap<String, Window> {
    let mut out = BTreeMap::new();
    for (name, list) in lists {
        let matching: Vec<&Candidate> = candidates.iter().filter(|c| passes(c, &list.filters, children)).collect();
        let mut seen = HashSet::new();
        let mut rooms = Vec::new();
        for &(start, end) in &list.ranges {
            let (start, end) = (start.min(matching.len() as u64) as usize, end.saturating_add(1));
            let end = end.min(matching.len() as u64) as usize;
            for c in &matching[start..end.max(start)] {
                if seen.insert(c.member.room_id.as_str()) {
                    rooms.push(c.member.room_id.clone());
                }
            }
        }
        out.insert(name.clone(), Window { count: matching.len() as u64, rooms });
    }
    out
}

/// The rooms to answer for, each with the union of the configurations asking for it (the
/// lists whose windows hold it, its subscription), and the subscribed rooms among those
/// `known` (a room the user has no membership of is left out silently).
pub(crate) fn room_configs(
    windows: &BTreeMap<String, Window>,
    asked: &Request,
    known: impl Fn(&str) -> bool,
) -> (BTreeMap<String, RoomConfig>, Vec<String>) {
    let mut configs: BTreeMap<String, RoomConfig> = BTreeMap::new();
    for (name, window) in windows {
        for room in &window.rooms {
            configs.entry(room.clone()).or_default().merge(&asked.lists[name].config);
        }
    }
    let mut subscribed = Vec::new();
    for (room, config) in &asked.subscriptions {
        if known(room) {
            configs.entry(room.clone()).or_default().merge(config);
            subscribed.push(room.clone());
        }
    }
    (configs, subscribed)
}

/// Most recently bumped first; ties in room ID order, so every worker orders alike.
pub(crate) fn order(candidates: &mut [Candidate]) {
    candidates.sort_by(|a, b| b.bump.cmp(&a.bump).then_with(|| a.member.room_id.cmp(&b.member.room_id)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sliding::request::RoomConfig;

    fn candidate(room: &str, membership: &str, bump: i64) -> Candidate {
        let member = Member {
            room_id: room.into(),
            membership: membership.into(),
            pos: 1,
            sender: "@me:x".into(),
            direct_invite: false,
        };
        Candidate { member, bump, encrypted: room.contains('e'), room_type: None, dm: room.contains('d') }
    }

    fn list(ranges: Vec<(u64, u64)>, filters: Filters) -> List {
        List { ranges, config: RoomConfig::default(), filters }
    }

    #[test]
    fn ranges_filters_and_order() {
        let mut all = vec![candidate("!a", "join", 5), candidate("!bd", "join", 9), candidate("!ce", "invite", 7)];
        order(&mut all);
        let ids: Vec<&str> = all.iter().map(|c| c.member.room_id.as_str()).collect();
        assert_eq!(ids, ["!bd", "!ce", "!a"]);
        let lists = BTreeMap::from([
            ("top".to_owned(), list(vec![(0, 0)], Filters::default())),
            ("huge".to_owned(), list(vec![(1, u64::MAX / 2), (0, 1)], Filters::default())),
            ("invites".to_owned(), list(vec![(0, 10)], Filters { is_invite: Some(true), ..Default::default() })),
            ("dms".to_owned(), list(vec![(0, 10)], Filters { is_dm: Some(true), ..Default::default() })),
            ("past".to_owned(), list(vec![(5, 9)], Filters::default())),
            ("space".to_owned(), list(vec![(0, 9)], Filters { spaces: vec!["!s".into()], ..Default::default() })),
        ]);
        let children = Children::from([("!s".to_owned(), HashSet::from(["!a".to_owned()]))]);
        let w = windows(&all, &lists, &children);
        assert_eq!((w["top"].count, w["top"].rooms.clone()), (3, vec!["!bd".to_owned()]));
        assert_eq!(w["huge"].rooms, ["!ce", "!a", "!bd"]);
        assert_eq!(w["invites"].rooms, ["!ce"]);
        assert_eq!(w["dms"].rooms, ["!bd"]);
        assert_eq!((w["past"].count, w["past"].rooms.len()), (3, 0));
        assert_eq!(w["space"].rooms, ["!a"]);
    }

    #[test]
    fn left_rooms_stay_only_when_kicked_or_news() {
        let m = |membership: &str, sender: &str| Member {
            room_id: "!r".into(),
            membership: membership.into(),
            pos: 10,
            sender: sender.into(),
            direct_invite: false,
        };
        assert!(listed(&m("ban", "@mod:x"), "@me:x", None));
        assert!(listed(&m("leave", "@mod:x"), "@me:x", None));
        assert!(!listed(&m("leave", "@me:x"), "@me:x", None));
        assert!(listed(&m("leave", "@me:x"), "@me:x", Some(9)));
        assert!(!listed(&m("leave", "@me:x"), "@me:x", Some(10)));
    }
}
