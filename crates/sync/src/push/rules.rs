//! Push rules (`/pushrules/...`): the spec's server-default rules merged with the user's own
//! rules and overrides, stored as the user's global `m.push_rules` account data (so /sync
//! carries every change on the account-data stream), and edited under the account-data
//! stream lock so concurrent edits never lose one another.

use std::sync::Arc;

use ruma::{
    OwnedUserId, UserId,
    push::{
        Action, ConditionalPushRule, InsertPushRuleError, NewConditionalPushRule, NewPatternedPushRule, NewPushRule,
        PatternedPushRule, PushCondition, RemovePushRuleError, RuleKind, Ruleset,
    },
};
use serde_json::{Value, json};
use trellis_bus::Channel;
use trellis_core::{Error, Result, Stream};

use crate::{
    SyncWorker,
    push::matching::CompiledRules,
    push::ruleset::{SimpleKind, SimpleRule, UserRules},
    streams::next_position,
};

pub(crate) const PUSH_RULES: &str = "m.push_rules";
/// The stored rules and the account-data position they were read at, in one snapshot.
const LOAD: &str = "SELECT (SELECT content FROM account_data WHERE user_id = $1 AND room_id = '' \
        AND type = 'm.push_rules'), (SELECT pos FROM sync_streams WHERE stream = 'account_data')";
const UPSERT: &str = "INSERT INTO account_data (user_id, room_id, type, content, pos) \
     VALUES ($1, '', 'm.push_rules', $2, $3) \
     ON CONFLICT (user_id, room_id, type) DO UPDATE SET content = EXCLUDED.content, pos = EXCLUDED.pos";

/// The server-default rules: the spec's current set plus the legacy mention rules Synapse
/// still ships (display name, `@room` and user-name mentions in the body), which clients not
/// yet sending `m.mentions` rely on. The evaluator ignores the legacy ones for events that
/// carry `m.mentions`.
pub(crate) fn defaults(user: &UserId) -> Ruleset {
    let mut rules = Ruleset::server_default(user);
    let highlight = json!(["notify", {"set_tweak": "sound", "value": "default"}, {"set_tweak": "highlight"}]);
    let legacy = [
        (
            ".m.rule.is_user_mention",
            json!({
                "rule_id": ".m.rule.contains_display_name", "default": true, "enabled": true,
                "conditions": [{"kind": "contains_display_name"}], "actions": highlight,
            }),
        ),
        (
            ".m.rule.is_room_mention",
            json!({
                "rule_id": ".m.rule.roomnotif", "default": true, "enabled": true,
                "conditions": [{"kind": "sender_notification_permission", "key": "room"},
                               {"kind": "event_match", "key": "content.body", "pattern": "@room"}],
                "actions": ["notify", {"set_tweak": "highlight"}],
            }),
        ),
    ];
    for (after, rule) in legacy {
        if let Ok(rule) = serde_json::from_value::<ConditionalPushRule>(rule) {
            let at = rules.override_.get_index_of(after).map_or(rules.override_.len(), |i| i + 1);
            rules.override_.shift_insert(at, rule);
        }
    }
    let localpart = user.localpart();
    let by_name = json!({
        "rule_id": ".m.rule.contains_user_name", "default": true, "enabled": true, "pattern": localpart,
        "actions": highlight,
    });
    if let Ok(rule) = serde_json::from_value::<PatternedPushRule>(by_name) {
        rules.content.shift_insert(0, rule);
    }
    rules
}

/// A user's effective rules: stored content merged over the current server defaults.
pub(crate) fn effective(user: &UserId, stored: Option<&str>) -> UserRules {
    let defaults = defaults(user);
    let Some(stored) = stored else { return UserRules::new(defaults) };
    match serde_json::from_str::<Value>(stored).ok().and_then(|v| UserRules::from_json(&v["global"])) {
        Some(mut rules) => {
            rules.base.update_with_server_default(defaults);
            rules
        }
        None => UserRules::new(defaults),
    }
}

/// The `m.push_rules` account data content for `rules`.
pub(crate) fn content(rules: &UserRules) -> Value {
    json!({ "global": rules.to_json() })
}

pub(crate) fn user_id(user: &str) -> Result<OwnedUserId> {
    UserId::parse(user).map_err(|_| Error::invalid_param("invalid user ID"))
}

pub(crate) fn kind(kind: &str) -> Result<RuleKind> {
    match kind {
        "override" => Ok(RuleKind::Override),
        "underride" => Ok(RuleKind::Underride),
        "sender" => Ok(RuleKind::Sender),
        "room" => Ok(RuleKind::Room),
        "content" => Ok(RuleKind::Content),
        _ => Err(Error::invalid_param("Unknown push rule kind")),
    }
}

/// The JSON of rule `id` of `kind` in `rules`, if present.
fn find(rules: &UserRules, kind: &str, id: &str) -> Option<Value> {
    let all = rules.to_json();
    all[kind].as_array()?.iter().find(|r| r["rule_id"] == id).cloned()
}

/// A rule's actions as sent (a JSON list): `notify`, `dont_notify`, `coalesce` (the last two
/// legacy, meaning nothing) or `set_tweak` objects; anything else is refused, as Synapse does.
fn actions(raw: &Value) -> Result<Vec<Action>> {
    let known = |a: &Value| match a {
        Value::String(s) => matches!(s.as_str(), "notify" | "dont_notify" | "coalesce"),
        Value::Object(o) => o.get("set_tweak").is_some_and(Value::is_string),
        _ => false,
    };
    if !raw.as_array().is_some_and(|list| list.iter().all(known)) {
        return Err(Error::bad_json("actions must be a list of notify, dont_notify, coalesce or set_tweak"));
    }
    serde_json::from_value(raw.clone()).map_err(|_| Error::bad_json("invalid actions"))
}

/// Actions that crossed as one JSON list (`None`: not sent).
fn actions_sent(list: Option<&str>) -> Result<Vec<Action>> {
    let list = list.ok_or_else(|| Error::bad_json("actions is required"))?;
    actions(&serde_json::from_str(list).map_err(|_| Error::bad_json("invalid actions"))?)
}

/// Actions that crossed one JSON value each.
fn actions_each(each: &[String]) -> Result<Vec<Action>> {
    let list: Vec<Value> = each
        .iter()
        .map(|a| serde_json::from_str(a))
        .collect::<Result<_, _>>()
        .map_err(|_| Error::bad_json("invalid actions"))?;
    actions(&Value::Array(list))
}

/// The body of a rule being put: its fields as sent (`None`: not sent), each JSON.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct RuleBody<'a> {
    pub actions: Option<&'a str>,
    pub conditions: Option<&'a str>,
    pub pattern: Option<&'a str>,
}

/// The new rule a `PUT` body describes.
fn new_rule(kind: &str, id: &str, body: RuleBody<'_>) -> Result<NewPushRule> {
    let actions = actions_sent(body.actions)?;
    Ok(match kind {
        "override" | "underride" => {
            let conditions: Vec<PushCondition> = match body.conditions {
                None => Vec::new(),
                Some(c) => serde_json::from_str(c).map_err(|_| Error::bad_json("invalid conditions"))?,
            };
            let rule = NewConditionalPushRule::new(id.to_owned(), conditions, actions);
            if kind == "override" { NewPushRule::Override(rule) } else { NewPushRule::Underride(rule) }
        }
        "content" => {
            let pattern = body.pattern.ok_or_else(|| Error::bad_json("pattern is required"))?;
            NewPushRule::Content(NewPatternedPushRule::new(id.to_owned(), pattern.to_owned(), actions))
        }
        _ => return Err(Error::invalid_param("Unknown push rule kind")),
    })
}

fn not_found() -> Error {
    Error::not_found("Unknown push rule")
}

/// One edit of a user rule (the kind and ID are the caller's).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Edit<'a> {
    /// Adds or replaces it, placed before or after another user rule (empty: not placed).
    Put {
        before: &'a str,
        after: &'a str,
        body: RuleBody<'a>,
    },
    Delete,
    SetEnabled(bool),
    /// Each action as its own JSON.
    SetActions(&'a [String]),
}

/// Applies `edit` to rule `id` of `kind` in `rules`: the kind first, then the ID, then the
/// body (Synapse's order of errcodes).
pub(crate) fn edit(rules: &mut UserRules, kind_name: &str, id: &str, edit: Edit<'_>) -> Result<()> {
    let rk = kind(kind_name)?;
    let simple = SimpleKind::parse(kind_name);
    match edit {
        Edit::Put { before, after, body } => {
            if id.starts_with('.') {
                return Err(Error::invalid_param("Cannot create server-default rules"));
            }
            if id.contains(['/', '\\']) {
                return Err(Error::invalid_param("Rule IDs may not contain slashes"));
            }
            let (before, after) = (Some(before).filter(|s| !s.is_empty()), Some(after).filter(|s| !s.is_empty()));
            if let Some(simple) = simple {
                return rules.put(simple, id, actions_sent(body.actions)?, after, before);
            }
            let rule = new_rule(kind_name, id, body)?;
            rules.base.insert(rule, after, before).map_err(|e| match e {
                InsertPushRuleError::UnknownRuleId => Error::invalid_param("before/after rule not found"),
                InsertPushRuleError::ServerDefaultRuleId => Error::invalid_param("Cannot create server-default rules"),
                InsertPushRuleError::InvalidRuleId => Error::invalid_param("Invalid rule ID"),
                InsertPushRuleError::RelativeToServerDefaultRule => {
                    Error::invalid_param("Cannot place a rule relative to a server-default rule")
                }
                InsertPushRuleError::BeforeHigherThanAfter => Error::invalid_param("before is higher than after"),
                _ => Error::invalid_param("Invalid push rule"),
            })
        }
        Edit::Delete => {
            if let Some(simple) = simple {
                let list = rules.list_mut(simple);
                let at = list.iter().position(|r| r.rule_id == id).ok_or_else(not_found)?;
                list.remove(at);
                return Ok(());
            }
            rules.base.remove(rk, id).map_err(|e| match e {
                RemovePushRuleError::ServerDefault => Error::forbidden("Cannot delete server-default rules"),
                _ => not_found(),
            })
        }
        Edit::SetEnabled(enabled) => {
            match simple {
                Some(simple) => simple_rule(rules, simple, id)?.enabled = enabled,
                None => rules.base.set_enabled(rk, id, enabled).map_err(|_| not_found())?,
            }
            Ok(())
        }
        Edit::SetActions(each) => {
            let actions = actions_each(each)?;
            match simple {
                Some(simple) => simple_rule(rules, simple, id)?.actions = actions,
                None => rules.base.set_actions(rk, id, actions).map_err(|_| not_found())?,
            }
            Ok(())
        }
    }
}

fn simple_rule<'a>(rules: &'a mut UserRules, kind: SimpleKind, id: &str) -> Result<&'a mut SimpleRule> {
    rules.list_mut(kind).iter_mut().find(|r| r.rule_id == id).ok_or_else(not_found)
}

/// The JSON of every rule of `kind` in `rules` (after checking the kind), in priority order.
pub(crate) fn of_kind(rules: &UserRules, kind_name: &str) -> Result<Vec<Value>> {
    kind(kind_name)?;
    Ok(rules.to_json()[kind_name].as_array().cloned().unwrap_or_default())
}

/// The JSON of rule `id` of `kind` (`M_NOT_FOUND` if there is none).
pub(crate) fn rule(rules: &UserRules, kind_name: &str, id: &str) -> Result<Value> {
    kind(kind_name)?;
    find(rules, kind_name, id).ok_or_else(not_found)
}

/// The user's stored rules (the `m.push_rules` content), if any.
pub(crate) async fn stored(client: &deadpool_postgres::Client, user: &str) -> Result<Option<String>> {
    let row = client.query_one(&client.prepare_cached(LOAD).await?, &[&user]).await?;
    Ok(row.get(0))
}

impl SyncWorker {
    /// The user's effective rules and the account-data position they are exact for (cached).
    pub(crate) async fn load_push_rules(
        &self,
        client: &deadpool_postgres::Client,
        user: &str,
    ) -> Result<(i64, Arc<CompiledRules>)> {
        let uid = user_id(user)?;
        let stmt = client.prepare_cached(LOAD).await?;
        let row = client.query_one(&stmt, &[&user]).await?;
        let (stored, pos): (Option<String>, i64) = (row.get(0), row.get(1));
        let rules = Arc::new(CompiledRules::new(effective(&uid, stored.as_deref()).matching(), user, &self.push_gates));
        self.caches.push_rules.insert(user.to_owned(), (pos, rules.clone()));
        Ok((pos, rules))
    }

    /// Applies `change` to the user's rules and stores them when it says it changed them:
    /// under the account-data stream's row lock, which serialises this read-modify-write with
    /// every other account-data write.
    pub(crate) async fn update_push_rules(
        &self,
        user: &str,
        change: impl FnOnce(&mut UserRules) -> Result<bool>,
    ) -> Result<()> {
        let uid = user_id(user)?;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let pos = next_position(&tx, Stream::AccountData).await?;
        let row = tx.query_one(LOAD, &[&user]).await?;
        let mut rules = effective(&uid, row.get::<_, Option<String>>(0).as_deref());
        if !change(&mut rules)? {
            // Rolled back: the position is not used.
            return Ok(());
        }
        tx.execute(UPSERT, &[&user, &content(&rules).to_string(), &pos]).await?;
        tx.commit().await?;
        self.caches
            .push_rules
            .insert(user.to_owned(), (pos, Arc::new(CompiledRules::new(rules.matching(), user, &self.push_gates))));
        self.announce(&[Channel::User(user.to_owned())], Stream::AccountData, pos).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Applies an edit described as a client's request: `op` on rule `id` of `kind`, with
    /// `body`, placed `before`/`after`.
    fn apply_at(r: &mut UserRules, op: &str, (kind, id): (&str, &str), body: Value, place: (&str, &str)) -> Result<()> {
        let actions = body.get("actions").map(Value::to_string);
        let each: Vec<String> = body["actions"].as_array().into_iter().flatten().map(Value::to_string).collect();
        let conditions = body.get("conditions").map(Value::to_string);
        let body_ = RuleBody {
            actions: actions.as_deref(),
            conditions: conditions.as_deref(),
            pattern: body["pattern"].as_str(),
        };
        let change = match op {
            "put" => Edit::Put { before: place.0, after: place.1, body: body_ },
            "delete" => Edit::Delete,
            "set_enabled" => Edit::SetEnabled(body["enabled"].as_bool().expect("a boolean")),
            _ => Edit::SetActions(&each),
        };
        edit(r, kind, id, change)
    }

    fn apply(r: &mut UserRules, op: &str, kind: &str, id: &str, body: Value) -> Result<()> {
        apply_at(r, op, (kind, id), body, ("", ""))
    }

    fn ids(rules: &UserRules, kind: &str) -> Vec<String> {
        let all = rules.to_json();
        all[kind].as_array().unwrap().iter().map(|r| r["rule_id"].as_str().unwrap().to_owned()).collect()
    }

    fn rules() -> UserRules {
        effective(&user_id("@alice:example.org").unwrap(), None)
    }

    #[test]
    fn defaults_present_and_not_deletable() {
        let mut r = rules();
        assert!(ids(&r, "override").contains(&".m.rule.master".to_owned()));
        assert!(ids(&r, "underride").contains(&".m.rule.message".to_owned()));
        let over = ids(&r, "override");
        let at = |id: &str| over.iter().position(|r| r == id).unwrap();
        assert_eq!(at(".m.rule.contains_display_name"), at(".m.rule.is_user_mention") + 1);
        assert_eq!(at(".m.rule.roomnotif"), at(".m.rule.is_room_mention") + 1);
        assert_eq!(ids(&r, "content"), [".m.rule.contains_user_name"]);
        let e = apply(&mut r, "delete", "override", ".m.rule.master", json!({})).unwrap_err();
        assert_eq!(e.code().as_str(), "M_FORBIDDEN");
        let e = apply(&mut r, "put", "override", ".m.rule.mine", json!({"actions": []})).unwrap_err();
        assert_eq!(e.code().as_str(), "M_INVALID_PARAM");
        let e = apply(&mut r, "delete", "override", "nope", json!({})).unwrap_err();
        assert_eq!(e.code().as_str(), "M_NOT_FOUND");
    }

    #[test]
    fn before_and_after_place_user_rules() {
        let mut r = rules();
        let body = json!({"pattern": "cake", "actions": ["notify"]});
        apply(&mut r, "put", "content", "a", body.clone()).unwrap();
        apply(&mut r, "put", "content", "b", body.clone()).unwrap();
        // Newly inserted rules go first among user rules.
        assert_eq!(&ids(&r, "content")[..2], ["b", "a"]);
        apply_at(&mut r, "put", ("content", "c"), body.clone(), ("", "a")).unwrap();
        assert_eq!(&ids(&r, "content")[..3], ["b", "a", "c"]);
        apply_at(&mut r, "put", ("content", "d"), body.clone(), ("b", "")).unwrap();
        assert_eq!(&ids(&r, "content")[..4], ["d", "b", "a", "c"]);
        let e = apply_at(&mut r, "put", ("content", "e"), body, ("zzz", "")).unwrap_err();
        assert_eq!((e.code().as_str(), e.status()), ("M_INVALID_PARAM", 400), "spec: 400 for an unknown before/after");
        apply(&mut r, "delete", "content", "a", json!({})).unwrap();
        assert!(!ids(&r, "content").contains(&"a".to_owned()));
    }

    #[test]
    fn enabled_and_actions_of_defaults_survive_a_merge() {
        let mut r = rules();
        apply(&mut r, "set_enabled", "underride", ".m.rule.message", json!({"enabled": false})).unwrap();
        apply(&mut r, "set_actions", "override", ".m.rule.tombstone", json!({"actions": []})).unwrap();
        let stored = content(&r).to_string();
        let merged = effective(&user_id("@alice:example.org").unwrap(), Some(&stored));
        assert_eq!(rule(&merged, "underride", ".m.rule.message").unwrap()["enabled"], json!(false));
        assert_eq!(rule(&merged, "override", ".m.rule.tombstone").unwrap()["actions"], json!([]));
        let e = apply(&mut r, "set_enabled", "underride", "nope", json!({"enabled": true})).unwrap_err();
        assert_eq!(e.code().as_str(), "M_NOT_FOUND");
        // (`enabled` that is not a boolean is refused by the endpoint's parse: M_BAD_JSON in
        // tests/e2e/push.rs.) Actions that are not a list of known ones are bad JSON here.
        let e = apply(&mut r, "set_actions", "underride", ".m.rule.message", json!({"actions": ["x"]})).unwrap_err();
        assert_eq!(e.code().as_str(), "M_BAD_JSON");
        let e = rule(&merged, "bogus", "x").unwrap_err();
        assert_eq!(e.code().as_str(), "M_INVALID_PARAM");
        let e = of_kind(&merged, "bogus").unwrap_err();
        assert_eq!(e.code().as_str(), "M_INVALID_PARAM");
        // A bad rule kind is refused before the body is read; a bad body after the rule ID.
        let e = apply(&mut r, "put", "bogus", "x", json!({})).unwrap_err();
        assert_eq!(e.code().as_str(), "M_INVALID_PARAM");
        let e = apply(&mut r, "put", "room", ".m.x", json!({})).unwrap_err();
        assert_eq!(e.code().as_str(), "M_INVALID_PARAM");
        let e = apply(&mut r, "put", "underride", "x", json!({"actions": [], "conditions": [{}]})).unwrap_err();
        assert_eq!(e.code().as_str(), "M_BAD_JSON");
    }
}
