//! A user's push rules as stored and served. The override, content and underride kinds are
//! ruma's [`Ruleset`] (the server defaults merged in); the room and sender kinds are kept as
//! plain ordered lists, because their rule IDs may be any string (clients and SyTest name room
//! rules by alias, for instance) where ruma's types insist on room and user IDs. Only the
//! rules whose IDs are real room or user IDs can ever match an event; they join the ruma
//! ruleset the evaluator uses.

use ruma::{
    OwnedRoomId, OwnedUserId,
    push::{Action, Ruleset, SimplePushRuleInit},
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use trellis_core::{Error, Result};

/// A room or sender rule.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SimpleRule {
    pub rule_id: String,
    pub actions: Vec<Action>,
    pub enabled: bool,
    #[serde(default)]
    pub default: bool,
}

/// The two kinds kept here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SimpleKind {
    Room,
    Sender,
}

impl SimpleKind {
    pub fn parse(kind: &str) -> Option<SimpleKind> {
        match kind {
            "room" => Some(SimpleKind::Room),
            "sender" => Some(SimpleKind::Sender),
            _ => None,
        }
    }
}

/// Every rule of a user.
#[derive(Debug, Clone, Default)]
pub(crate) struct UserRules {
    /// Override, content and underride rules (its room and sender sets stay empty).
    pub base: Ruleset,
    pub room: Vec<SimpleRule>,
    pub sender: Vec<SimpleRule>,
}

impl UserRules {
    /// Rules with `base` and no room or sender rules.
    pub fn new(mut base: Ruleset) -> UserRules {
        let room = base.room.drain(..).map(|r| simple(r.rule_id.to_string(), r.actions, r.enabled)).collect();
        let sender = base.sender.drain(..).map(|r| simple(r.rule_id.to_string(), r.actions, r.enabled)).collect();
        UserRules { base, room, sender }
    }

    /// From a stored ruleset object (`global` of `m.push_rules`); `None` if it is not one.
    pub fn from_json(global: &Value) -> Option<UserRules> {
        let mut rest = global.as_object()?.clone();
        let list = |v: Option<Value>| -> Vec<SimpleRule> {
            v.and_then(|v| v.as_array().cloned())
                .into_iter()
                .flatten()
                .filter_map(|r| serde_json::from_value(r).ok())
                .collect()
        };
        let room = list(rest.remove("room"));
        let sender = list(rest.remove("sender"));
        let base = serde_json::from_value::<Ruleset>(Value::Object(rest)).ok()?;
        Some(UserRules { base, room, sender })
    }

    /// The ruleset object clients see: every kind, each a list (empty ones too).
    pub fn to_json(&self) -> Value {
        let mut all = serde_json::to_value(&self.base).unwrap_or_else(|_| json!({}));
        for kind in ["override", "content", "underride"] {
            if all.get(kind).is_none() {
                all[kind] = json!([]);
            }
        }
        all["room"] = serde_json::to_value(&self.room).unwrap_or_else(|_| json!([]));
        all["sender"] = serde_json::to_value(&self.sender).unwrap_or_else(|_| json!([]));
        all
    }

    pub fn list_mut(&mut self, kind: SimpleKind) -> &mut Vec<SimpleRule> {
        match kind {
            SimpleKind::Room => &mut self.room,
            SimpleKind::Sender => &mut self.sender,
        }
    }

    /// Adds or replaces rule `id` of `kind`: a new rule goes first unless placed relative to
    /// another with `after` or `before`; a replaced one keeps its place (and whether it is
    /// enabled) unless placed.
    pub fn put(
        &mut self,
        kind: SimpleKind,
        id: &str,
        actions: Vec<Action>,
        after: Option<&str>,
        before: Option<&str>,
    ) -> Result<()> {
        let list = self.list_mut(kind);
        let at = |list: &[SimpleRule], id: &str| {
            list.iter().position(|r| r.rule_id == id).ok_or_else(|| Error::invalid_param(format!("no rule {id:?}")))
        };
        // Relative places are checked before anything moves.
        let placed = after.is_some() || before.is_some();
        let mut to = 0;
        if let Some(after) = after {
            to = at(list, after)? + 1;
        }
        if let Some(before) = before {
            let b = at(list, before)?;
            if b < to {
                return Err(Error::invalid_param("before is higher than after"));
            }
            to = b;
        }
        let existing = list.iter().position(|r| r.rule_id == id);
        let mut rule = simple(id.to_owned(), actions, true);
        match existing {
            Some(i) if !placed => {
                rule.enabled = list[i].enabled;
                list[i] = rule;
            }
            Some(i) => {
                rule.enabled = list[i].enabled;
                list.remove(i);
                let to = if i < to { to - 1 } else { to };
                list.insert(to.min(list.len()), rule);
            }
            None => list.insert(to.min(list.len()), rule),
        }
        Ok(())
    }

    /// The ruleset the evaluator matches events with: `base` and the room and sender rules
    /// that name a room or a user.
    pub fn matching(&self) -> Ruleset {
        let mut rules = self.base.clone();
        for r in &self.room {
            if let Ok(id) = OwnedRoomId::try_from(r.rule_id.as_str()) {
                let init =
                    SimplePushRuleInit { actions: r.actions.clone(), default: false, enabled: r.enabled, rule_id: id };
                rules.room.insert(init.into());
            }
        }
        for r in &self.sender {
            if let Ok(id) = OwnedUserId::try_from(r.rule_id.as_str()) {
                let init =
                    SimplePushRuleInit { actions: r.actions.clone(), default: false, enabled: r.enabled, rule_id: id };
                rules.sender.insert(init.into());
            }
        }
        rules
    }
}

fn simple(rule_id: String, actions: Vec<Action>, enabled: bool) -> SimpleRule {
    SimpleRule { rule_id, actions, enabled, default: false }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(rules: &UserRules) -> Vec<&str> {
        rules.room.iter().map(|r| r.rule_id.as_str()).collect()
    }

    #[test]
    fn any_rule_id_placed_like_ruma_places_rules() {
        let mut rules = UserRules::default();
        let notify = || vec![Action::Notify];
        rules.put(SimpleKind::Room, "#a:x", notify(), None, None).unwrap();
        rules.put(SimpleKind::Room, "#b:x", notify(), None, None).unwrap();
        assert_eq!(ids(&rules), ["#b:x", "#a:x"], "new rules go first");
        rules.put(SimpleKind::Room, "#c:x", notify(), Some("#b:x"), None).unwrap();
        assert_eq!(ids(&rules), ["#b:x", "#c:x", "#a:x"]);
        rules.put(SimpleKind::Room, "#d:x", notify(), None, Some("#a:x")).unwrap();
        assert_eq!(ids(&rules), ["#b:x", "#c:x", "#d:x", "#a:x"]);
        // Replacing keeps the place unless placed; moving a rule down.
        rules.list_mut(SimpleKind::Room)[0].enabled = false;
        rules.put(SimpleKind::Room, "#b:x", vec![], None, None).unwrap();
        assert_eq!(ids(&rules), ["#b:x", "#c:x", "#d:x", "#a:x"]);
        assert!(!rules.room[0].enabled, "a replaced rule stays disabled");
        rules.put(SimpleKind::Room, "#b:x", vec![], Some("#d:x"), None).unwrap();
        assert_eq!(ids(&rules), ["#c:x", "#d:x", "#b:x", "#a:x"]);
        let e = rules.put(SimpleKind::Room, "#e:x", notify(), None, Some("#zz:x")).unwrap_err();
        assert_eq!(e.code().as_str(), "M_INVALID_PARAM");
        let e = rules.put(SimpleKind::Room, "#e:x", notify(), Some("#a:x"), Some("#c:x")).unwrap_err();
        assert_eq!(e.code().as_str(), "M_INVALID_PARAM");
        assert_eq!(rules.room.len(), 4, "a refused rule is not added");
    }

    #[test]
    fn only_real_ids_match_and_json_round_trips() {
        let mut rules = UserRules::default();
        rules.put(SimpleKind::Room, "#alias:x", vec![Action::Notify], None, None).unwrap();
        rules.put(SimpleKind::Room, "!room:x", vec![], None, None).unwrap();
        rules.put(SimpleKind::Sender, "@bob:x", vec![], None, None).unwrap();
        rules.put(SimpleKind::Sender, "bob", vec![], None, None).unwrap();
        let matching = rules.matching();
        assert_eq!(matching.room.len(), 1);
        assert_eq!(matching.sender.len(), 1);
        let json = rules.to_json();
        assert_eq!(json["room"][1]["rule_id"], "#alias:x");
        assert_eq!(json["underride"], json!([]));
        let back = UserRules::from_json(&json).unwrap();
        assert_eq!(back.to_json(), json);
    }
}
