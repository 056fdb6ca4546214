//! Power levels across an upgrade: the old room's levels made integers (versions before 10
//! allow numeric strings, later ones refuse them), the upgrader raised while state is copied,
//! and the old room restricted once it is replaced.

use serde_json::{Map, Value, json};

/// Top-level fields that hold one level.
const LEVEL_FIELDS: &[&str] = &["ban", "events_default", "invite", "kick", "redact", "state_default", "users_default"];
/// Top-level fields that map names to levels.
const MAP_FIELDS: &[&str] = &["events", "notifications", "users"];

/// A level as an integer: an integer, or a string holding one (room versions 1–9).
fn as_level(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn level(pl: &Value, field: &str, default: i64) -> i64 {
    pl.get(field).and_then(as_level).unwrap_or(default)
}

fn levels_in<'a>(pl: &'a Value, field: &str) -> impl Iterator<Item = i64> + 'a {
    pl.get(field).and_then(Value::as_object).into_iter().flat_map(|m| m.values().filter_map(as_level))
}

/// `pl` with every level an integer; levels that are not numbers are dropped (the rules then
/// use their defaults), other fields are kept as they are.
pub(crate) fn fixed_up(pl: &Value) -> Value {
    let mut out = pl.as_object().cloned().unwrap_or_default();
    for field in LEVEL_FIELDS {
        match out.get(*field).map(as_level) {
            Some(Some(n)) => {
                out.insert((*field).into(), json!(n));
            }
            Some(None) => {
                out.remove(*field);
            }
            None => {}
        }
    }
    for field in MAP_FIELDS {
        if let Some(map) = out.get(*field) {
            let fixed: Map<String, Value> = map
                .as_object()
                .map(|m| m.iter().filter_map(|(k, v)| as_level(v).map(|n| (k.clone(), json!(n)))).collect())
                .unwrap_or_default();
            out.insert((*field).into(), Value::Object(fixed));
        }
    }
    Value::Object(out)
}

/// The level copying the old room's state needs: the highest of `state_default`, `ban` and
/// every event level.
fn needed_for_copy(pl: &Value) -> i64 {
    let events_max = levels_in(pl, "events").max().unwrap_or(0);
    level(pl, "state_default", 50).max(level(pl, "ban", 50)).max(events_max)
}

/// The highest level that means anything in `pl`, and at least 100: what a creator of a v12
/// room (unlisted there) is given in a successor that ranks creators by level.
pub(crate) fn top_level(pl: &Value) -> i64 {
    let users_max = levels_in(pl, "users").max().unwrap_or(0);
    100.max(needed_for_copy(pl)).max(users_max)
}

/// `pl` with `sender` raised to what copying state needs, or `None` when their level suffices.
pub(crate) fn raise_for_copy(pl: &Value, sender: &ruma::UserId) -> Option<Value> {
    let current = pl.get("users").and_then(|u| u.get(sender.as_str())).and_then(as_level);
    let current = current.unwrap_or_else(|| level(pl, "users_default", 0));
    let needed = needed_for_copy(pl);
    if current >= needed {
        return None;
    }
    let mut raised = pl.clone();
    raised["users"][sender.as_str()] = json!(needed);
    Some(raised)
}

/// The old room's levels once replaced: sending and inviting need the greater of 50 and
/// `users_default + 1` (the spec's suggestion, Synapse's behaviour); `None` if they already do.
pub(crate) fn restricted(pl: &Value) -> Option<Value> {
    let mut pl = fixed_up(pl);
    let restricted = 50.max(level(&pl, "users_default", 0) + 1);
    let mut changed = false;
    for field in ["events_default", "invite"] {
        if level(&pl, field, 0) < restricted {
            pl[field] = json!(restricted);
            changed = true;
        }
    }
    changed.then_some(pl)
}

#[cfg(test)]
mod tests {
    use ruma::user_id;

    use super::*;

    #[test]
    fn string_levels_become_integers() {
        let pl = json!({"ban": "60", "kick": " 40 ", "redact": "lots", "users": {"@a:x": "100", "@b:x": "?"},
                        "events": {"m.room.name": 50}, "historical": 100});
        assert_eq!(
            fixed_up(&pl),
            json!({"ban": 60, "kick": 40, "users": {"@a:x": 100}, "events": {"m.room.name": 50}, "historical": 100})
        );
    }

    #[test]
    fn the_upgrader_is_raised_only_when_needed() {
        let alice = user_id!("@alice:x");
        let pl = json!({"users": {"@alice:x": 50}, "events": {"m.room.server_acl": 100}});
        assert_eq!(raise_for_copy(&pl, alice).unwrap()["users"]["@alice:x"], 100);
        let pl = json!({"users": {"@alice:x": 100}, "events": {"m.room.server_acl": 100}});
        assert_eq!(raise_for_copy(&pl, alice), None);
        assert_eq!(top_level(&json!({"users": {"@b:x": 500}})), 500);
        assert_eq!(top_level(&json!({"events": {"m.room.tombstone": 150}})), 150);
    }

    #[test]
    fn the_old_room_is_restricted_above_users_default() {
        assert_eq!(restricted(&json!({})).unwrap(), json!({"events_default": 50, "invite": 50}));
        let unusual = restricted(&json!({"users_default": 80, "invite": 0})).unwrap();
        assert_eq!((unusual["events_default"].clone(), unusual["invite"].clone()), (json!(81), json!(81)));
        assert_eq!(restricted(&json!({"events_default": 60, "invite": 90})), None);
    }
}
