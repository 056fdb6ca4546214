//! What the notifier stores for a batch of events: for each event, the outcome most of its
//! room's members share, once (`event_notifications`), and a row only for each member whose
//! outcome differs (`notifications`: a mention, a keyword, a muted room, an ignored sender,
//! an invitee who is not a member yet); then a push for each notified user with an http
//! pusher. A message in a room of thousands is one row, not thousands.

use std::collections::{HashMap, HashSet};

use std::sync::Arc;

/// One user's outcome for an event: `None` when it does not notify them, else the JSON of the
/// matching rule's actions and whether it highlights.
pub(crate) type Notified = Option<(Arc<str>, bool)>;

/// The event an outcome is for.
pub(crate) struct EventInfo<'a> {
    pub pos: i64,
    pub room: &'a str,
    pub event_id: &'a str,
    pub sender: &'a str,
    pub ts: i64,
}

/// The rows of one batch, column by column.
#[derive(Default)]
pub(crate) struct Record {
    pub events: EventRows,
    pub members: MemberRows,
    /// (user, event position) of each notification of a user with an http pusher.
    pub push_users: Vec<String>,
    pub push_positions: Vec<i64>,
}

#[derive(Default)]
pub(crate) struct EventRows {
    pub positions: Vec<i64>,
    pub rooms: Vec<String>,
    pub event_ids: Vec<String>,
    pub senders: Vec<String>,
    pub actions: Vec<String>,
    pub highlights: Vec<bool>,
    pub ts: Vec<i64>,
}

#[derive(Default)]
pub(crate) struct MemberRows {
    pub users: Vec<String>,
    pub rooms: Vec<String>,
    pub event_ids: Vec<String>,
    pub positions: Vec<i64>,
    pub actions: Vec<String>,
    pub highlights: Vec<bool>,
    pub ts: Vec<i64>,
    pub notify: Vec<bool>,
}

impl MemberRows {
    pub fn len(&self) -> usize {
        self.users.len()
    }

    fn push(&mut self, user: &str, ev: &EventInfo<'_>, notified: &Notified) {
        self.users.push(user.to_owned());
        self.rooms.push(ev.room.to_owned());
        self.event_ids.push(ev.event_id.to_owned());
        self.positions.push(ev.pos);
        let (actions, highlight) = notified.as_ref().map_or(("[]", false), |(a, h)| (&**a, *h));
        self.actions.push(actions.to_owned());
        self.highlights.push(highlight);
        self.ts.push(ev.ts);
        self.notify.push(notified.is_some());
    }
}

impl Record {
    /// Records `ev`'s outcome for each of `members` (the room's joined members but its
    /// sender) and for `outsiders` (local users it concerns who are not members: invitees),
    /// and queues pushes for those of them in `pushed` it notifies.
    pub fn add(
        &mut self,
        ev: &EventInfo<'_>,
        members: &[(&str, Notified)],
        outsiders: &[(&str, Notified)],
        pushed: &HashSet<String>,
    ) {
        let common = most_common(members.iter().map(|(_, n)| n));
        if let Some((actions, highlight)) = &common {
            let e = &mut self.events;
            e.positions.push(ev.pos);
            e.rooms.push(ev.room.to_owned());
            e.event_ids.push(ev.event_id.to_owned());
            e.senders.push(ev.sender.to_owned());
            e.actions.push(actions.to_string());
            e.highlights.push(*highlight);
            e.ts.push(ev.ts);
        }
        for (user, notified) in members {
            if *notified != common {
                self.members.push(user, ev, notified);
            }
        }
        for (user, notified) in outsiders.iter().filter(|(_, n)| n.is_some()) {
            self.members.push(user, ev, notified);
        }
        for (user, _) in members.iter().chain(outsiders).filter(|(u, n)| n.is_some() && pushed.contains(*u)) {
            self.push_users.push((*user).to_owned());
            self.push_positions.push(ev.pos);
        }
    }
}

/// The outcome most members share (ties go to the lesser outcome, so every worker picks
/// alike); `None` for an event nobody is there to be notified by.
fn most_common<'a>(outcomes: impl Iterator<Item = &'a Notified>) -> Notified {
    let mut tally: HashMap<&Notified, usize> = HashMap::new();
    for n in outcomes {
        *tally.entry(n).or_default() += 1;
    }
    tally.into_iter().max_by(|(a, x), (b, y)| x.cmp(y).then_with(|| b.cmp(a))).and_then(|(n, _)| n.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> EventInfo<'static> {
        EventInfo { pos: 7, room: "!r:x", event_id: "$e", sender: "@s:x", ts: 1 }
    }

    fn notify(actions: &str, highlight: bool) -> Notified {
        Some((Arc::from(actions), highlight))
    }

    #[test]
    fn a_message_everyone_is_notified_of_alike_is_one_row() {
        let mut record = Record::default();
        let n = notify(r#"["notify"]"#, false);
        let members: Vec<(&str, Notified)> = vec![("@a:x", n.clone()), ("@b:x", n.clone()), ("@c:x", n.clone())];
        record.add(&info(), &members, &[], &HashSet::from(["@b:x".to_owned()]));
        assert_eq!(record.events.positions, vec![7]);
        assert_eq!(record.events.actions, vec![r#"["notify"]"#.to_owned()]);
        assert_eq!(record.members.len(), 0);
        assert_eq!(record.push_users, vec!["@b:x".to_owned()]);
    }

    #[test]
    fn members_notified_otherwise_get_rows_of_their_own() {
        let mut record = Record::default();
        let plain = notify(r#"["notify"]"#, false);
        let mention = notify(r#"["notify",{"set_tweak":"highlight"}]"#, true);
        let members: Vec<(&str, Notified)> =
            vec![("@a:x", plain.clone()), ("@b:x", plain.clone()), ("@c:x", mention.clone()), ("@d:x", None)];
        let outsiders: Vec<(&str, Notified)> = vec![("@i:x", plain.clone()), ("@j:x", None)];
        record.add(&info(), &members, &outsiders, &HashSet::from(["@c:x".to_owned(), "@d:x".to_owned()]));
        assert_eq!(record.events.positions, vec![7]);
        assert_eq!(record.members.users, vec!["@c:x", "@d:x", "@i:x"]);
        assert_eq!(record.members.notify, vec![true, false, true]);
        assert_eq!(record.members.highlights, vec![true, false, false]);
        assert_eq!(record.members.actions[1], "[]");
        // @d is not notified: no push for it.
        assert_eq!(record.push_users, vec!["@c:x".to_owned()]);
    }

    #[test]
    fn an_event_that_notifies_few_is_rows_for_those_few() {
        let mut record = Record::default();
        let mention = notify(r#"["notify"]"#, true);
        let members: Vec<(&str, Notified)> = vec![("@a:x", None), ("@b:x", None), ("@c:x", mention)];
        record.add(&info(), &members, &[], &HashSet::new());
        assert!(record.events.positions.is_empty());
        assert_eq!(record.members.users, vec!["@c:x"]);
        assert_eq!(record.members.notify, vec![true]);
    }

    #[test]
    fn ties_are_broken_the_same_way_whatever_the_order() {
        let a = notify(r#"["notify"]"#, false);
        let b = notify(r#"["notify"]"#, true);
        let one = most_common([a.clone(), b.clone()].iter());
        let other = most_common([b.clone(), a.clone()].iter());
        assert_eq!(one, other);
    }
}
