//! What follows its members into an upgraded room: each local member's push rules for the old
//! room, its tags (`m.tag`) and its direct-chat entries (`m.direct`) are copied to the
//! replacement room (the spec's room-upgrade module; Synapse does the same at upgrade time).

use std::sync::Arc;

use ruma::{
    OwnedRoomId, UserId,
    push::{NewConditionalPushRule, NewPushRule, PushCondition, RuleKind},
};
use serde_json::{Value, json};
use trellis_bus::Channel;
use trellis_core::{Error, Result, Stream};
use trellis_proto::sync::{Ack, TransferRoomSettingsRequest};

use crate::{
    SyncWorker, access, push,
    push::matching::CompiledRules,
    push::ruleset::{SimpleKind, UserRules},
    streams::next_position,
};

/// The replacement room's create event: its sender and the room it names as predecessor.
const SUCCESSOR: &str = "SELECT e.sender, e.content FROM current_state c JOIN events e ON e.event_id = c.event_id \
     WHERE c.room_id = $1 AND c.type = 'm.room.create' AND c.state_key = ''";
/// The old room's joined members that are accounts of this server.
const LOCAL_MEMBERS: &str = "SELECT m.user_id FROM memberships m JOIN users u ON u.user_id = m.user_id \
     WHERE m.room_id = $1 AND m.membership = 'join'";
const GET: &str = "SELECT content FROM account_data WHERE user_id = $1 AND room_id = $2 AND type = $3 FOR UPDATE";
const UPSERT: &str = "INSERT INTO account_data (user_id, room_id, type, content, pos) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (user_id, room_id, type) DO UPDATE SET content = EXCLUDED.content, pos = EXCLUDED.pos";

impl SyncWorker {
    /// Copies the old room's per-user settings of every local member to the new room. Only
    /// the upgrader may ask, and only for a room whose create event names `old_room_id` as its
    /// predecessor.
    pub(crate) async fn transfer_room_settings(&self, req: TransferRoomSettingsRequest) -> Result<Ack> {
        access::room_id(&req.old_room_id)?;
        access::room_id(&req.new_room_id)?;
        let mut client = self.pool.get().await?;
        let row = client.query_opt(SUCCESSOR, &[&req.new_room_id]).await?;
        let (sender, content): (String, String) = row.map(|r| (r.get(0), r.get(1))).ok_or_else(not_successor)?;
        let content: Value = serde_json::from_str(&content)?;
        if sender != req.user_id || content["predecessor"]["room_id"] != req.old_room_id.as_str() {
            return Err(not_successor());
        }
        let new_room = OwnedRoomId::try_from(req.new_room_id.as_str()).map_err(|_| Error::invalid_param("room ID"))?;
        let members: Vec<String> =
            client.query(LOCAL_MEMBERS, &[&req.old_room_id]).await?.iter().map(|r| r.get(0)).collect();
        for user in members {
            let Ok(user_id) = UserId::parse(&user) else { continue };
            let tx = client.transaction().await?;
            // The stream row lock serialises these read-modify-writes with every other
            // account-data write.
            let pos = next_position(&tx, Stream::AccountData).await?;
            let get = async |room: &str, kind: &str| -> Result<Option<String>> {
                Ok(tx.query_opt(GET, &[&user, &room, &kind]).await?.map(|r| r.get(0)))
            };
            let stored_rules = get("", push::rules::PUSH_RULES).await?;
            let old_tags = get(&req.old_room_id, "m.tag").await?;
            let new_tags = get(&req.new_room_id, "m.tag").await?;
            let direct = get("", "m.direct").await?;

            let mut rules = push::rules::effective(&user_id, stored_rules.as_deref());
            let rules_changed = copy_push_rules(&mut rules, &req.old_room_id, &new_room);
            let tags = merged_tags(old_tags.as_deref(), new_tags.as_deref());
            let direct = direct.as_deref().and_then(|d| with_direct_room(d, &req.old_room_id, &req.new_room_id));
            let mut writes: Vec<(&str, &str, String)> = Vec::new();
            if rules_changed {
                writes.push(("", push::rules::PUSH_RULES, push::rules::content(&rules).to_string()));
            }
            if let Some(tags) = tags {
                writes.push((&req.new_room_id, "m.tag", tags.to_string()));
            }
            if let Some(direct) = direct {
                writes.push(("", "m.direct", direct.to_string()));
            }
            if writes.is_empty() {
                tx.rollback().await?;
                continue;
            }
            for (room, kind, content) in &writes {
                tx.execute(UPSERT, &[&user, room, kind, content, &pos]).await?;
            }
            tx.commit().await?;
            if rules_changed {
                self.caches.push_rules.insert(
                    user.clone(),
                    (pos, Arc::new(CompiledRules::new(rules.matching(), &user, &self.push_gates))),
                );
            }
            self.announce(&[Channel::User(user)], Stream::AccountData, pos).await;
        }
        Ok(Ack {})
    }
}

fn not_successor() -> Error {
    Error::forbidden("That room is not a replacement of this one that you created")
}

/// Adds to `rules` a copy, for `new`, of each user rule that names room `old`: its room rule,
/// and conditional rules matching `room_id` whose ID names the room. Whether anything changed.
fn copy_push_rules(rules: &mut UserRules, old: &str, new: &OwnedRoomId) -> bool {
    let mut changed = false;
    let room_rule = rules.room.iter().find(|r| r.rule_id == old).cloned();
    if let Some(rule) = room_rule
        && !rules.room.iter().any(|r| r.rule_id == new.as_str())
        && rules.put(SimpleKind::Room, new.as_str(), rule.actions, None, None).is_ok()
    {
        if let Some(copy) = rules.room.iter_mut().find(|r| r.rule_id == new.as_str()) {
            copy.enabled = rule.enabled;
        }
        changed = true;
    }
    let base = &mut rules.base;
    let mut copies: Vec<(NewPushRule, RuleKind, String, bool)> = Vec::new();
    for (kind, list) in [(RuleKind::Override, &base.override_), (RuleKind::Underride, &base.underride)] {
        for rule in list.iter().filter(|r| !r.default && r.rule_id.contains(old)) {
            let names_room =
                |c: &PushCondition| matches!(c, PushCondition::EventMatch(m) if m.key == "room_id" && m.pattern == old);
            if !rule.conditions.iter().any(names_room) {
                continue;
            }
            let id = rule.rule_id.replace(old, new.as_str());
            if base.get(kind.clone(), &id).is_some() {
                continue;
            }
            let conditions = rule
                .conditions
                .iter()
                .map(|c| match c {
                    PushCondition::EventMatch(m) if names_room(c) => {
                        let mut m = m.clone();
                        m.pattern = new.to_string();
                        PushCondition::EventMatch(m)
                    }
                    other => other.clone(),
                })
                .collect();
            let copy = NewConditionalPushRule::new(id.clone(), conditions, rule.actions.clone());
            let copy =
                if kind == RuleKind::Override { NewPushRule::Override(copy) } else { NewPushRule::Underride(copy) };
            copies.push((copy, kind.clone(), id, rule.enabled));
        }
    }
    changed |= !copies.is_empty();
    for (rule, kind, id, enabled) in copies {
        if base.insert(rule, None, None).is_ok() && !enabled {
            let _ = base.set_enabled(kind, id, false);
        }
    }
    changed
}

/// The new room's `m.tag` content with the old room's tags added (existing tags win), or
/// `None` when the old room had none.
fn merged_tags(old: Option<&str>, new: Option<&str>) -> Option<Value> {
    let old: Value = serde_json::from_str(old?).ok()?;
    let old_tags = old["tags"].as_object().filter(|t| !t.is_empty())?;
    let mut merged: Value = new.and_then(|n| serde_json::from_str(n).ok()).unwrap_or_else(|| json!({}));
    if !merged["tags"].is_object() {
        merged["tags"] = json!({});
    }
    let tags = merged["tags"].as_object_mut().expect("checked");
    for (tag, content) in old_tags {
        tags.entry(tag.clone()).or_insert_with(|| content.clone());
    }
    Some(merged)
}

/// `m.direct` with `new` added beside every `old` entry, or `None` if `old` is not a direct chat.
fn with_direct_room(direct: &str, old: &str, new: &str) -> Option<Value> {
    let mut direct: Value = serde_json::from_str(direct).ok()?;
    let mut changed = false;
    for rooms in direct.as_object_mut()?.values_mut().filter_map(Value::as_array_mut) {
        if rooms.iter().any(|r| r == old) && !rooms.iter().any(|r| r == new) {
            rooms.push(json!(new));
            changed = true;
        }
    }
    changed.then_some(direct)
}

#[cfg(test)]
mod tests {
    use ruma::{
        owned_room_id,
        push::{Action, AnyPushRuleRef},
        user_id,
    };

    use super::*;

    #[test]
    fn room_rules_and_rules_naming_the_room_are_copied() {
        let old = "!old:x";
        let new = owned_room_id!("!new:x");
        let mut rules = push::rules::effective(user_id!("@a:x"), None);
        rules.put(SimpleKind::Room, old, vec![Action::Notify], None, None).unwrap();
        let cond: PushCondition =
            serde_json::from_value(json!({"kind": "event_match", "key": "room_id", "pattern": old})).unwrap();
        let over = NewConditionalPushRule::new(format!("mute-{old}"), vec![cond], vec![]);
        rules.base.insert(NewPushRule::Override(over), None, None).unwrap();
        rules.base.set_enabled(RuleKind::Override, format!("mute-{old}"), false).unwrap();

        assert!(copy_push_rules(&mut rules, old, &new));
        let copy = rules.room.iter().find(|r| r.rule_id == "!new:x").expect("room rule copied");
        assert_eq!(serde_json::to_value(&copy.actions).unwrap(), json!(["notify"]));
        let Some(AnyPushRuleRef::Override(copy)) = rules.base.get(RuleKind::Override, "mute-!new:x") else {
            panic!("override copied")
        };
        assert!(!copy.enabled);
        assert_eq!(serde_json::to_value(&copy.conditions).unwrap()[0]["pattern"], "!new:x");
        assert!(rules.room.iter().any(|r| r.rule_id == old), "the old room keeps its rules");
        assert!(!copy_push_rules(&mut rules, old, &new), "a second copy changes nothing");
    }

    #[test]
    fn tags_and_direct_chats_follow() {
        let merged = merged_tags(Some(r#"{"tags":{"work":{"order":0.5}}}"#), Some(r#"{"tags":{"fun":{}}}"#)).unwrap();
        assert_eq!(merged, json!({"tags": {"work": {"order": 0.5}, "fun": {}}}));
        assert_eq!(merged_tags(Some(r#"{"tags":{}}"#), None), None);
        assert_eq!(merged_tags(None, None), None);
        let direct = with_direct_room(r#"{"@b:x":["!old:x"],"@c:x":["!other:x"]}"#, "!old:x", "!new:x").unwrap();
        assert_eq!(direct, json!({"@b:x": ["!old:x", "!new:x"], "@c:x": ["!other:x"]}));
        assert_eq!(with_direct_room(r#"{"@c:x":["!other:x"]}"#, "!old:x", "!new:x"), None);
    }
}
