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
use trellis_proto::sync::{JsonResponse, PushRulesRequest};

use crate::{
    SyncWorker, access,
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

fn user_id(user: &str) -> Result<OwnedUserId> {
    UserId::parse(user).map_err(|_| Error::invalid_param("invalid user ID"))
}

fn kind(kind: &str) -> Result<RuleKind> {
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

/// The `actions` of a rule body: `notify`, `dont_notify`, `coalesce` (the last two legacy,
/// meaning nothing) or `set_tweak` objects; anything else is refused, as Synapse does.
fn actions(body: &Value) -> Result<Vec<Action>> {
    let raw = body.get("actions").ok_or_else(|| Error::bad_json("actions is required"))?;
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

/// The new rule a `PUT` body describes.
fn new_rule(kind: &str, id: &str, body: &Value) -> Result<NewPushRule> {
    let actions = actions(body)?;
    Ok(match kind {
        "override" | "underride" => {
            let conditions: Vec<PushCondition> = match body.get("conditions") {
                None => Vec::new(),
                Some(c) => serde_json::from_value(c.clone()).map_err(|_| Error::bad_json("invalid conditions"))?,
            };
            let rule = NewConditionalPushRule::new(id.to_owned(), conditions, actions);
            if kind == "override" { NewPushRule::Override(rule) } else { NewPushRule::Underride(rule) }
        }
        "content" => {
            let pattern = body["pattern"].as_str().ok_or_else(|| Error::bad_json("pattern is required"))?;
            NewPushRule::Content(NewPatternedPushRule::new(id.to_owned(), pattern.to_owned(), actions))
        }
        _ => return Err(Error::invalid_param("Unknown push rule kind")),
    })
}

fn not_found() -> Error {
    Error::not_found("Unknown push rule")
}

/// Applies one edit (`put`, `delete`, `set_enabled`, `set_actions`) to `rules`.
pub(crate) fn edit(rules: &mut UserRules, req: &PushRulesRequest) -> Result<()> {
    let rk = kind(&req.kind)?;
    let id = req.rule_id.as_str();
    let body =
        || -> Result<Value> { serde_json::from_str(&req.body_json).map_err(|_| Error::bad_json("invalid JSON")) };
    match req.op.as_str() {
        "put" => {
            if id.starts_with('.') {
                return Err(Error::invalid_param("Cannot create server-default rules"));
            }
            if id.contains(['/', '\\']) {
                return Err(Error::invalid_param("Rule IDs may not contain slashes"));
            }
            let body = body()?;
            let (before, after) = (
                Some(req.before.as_str()).filter(|s| !s.is_empty()),
                Some(req.after.as_str()).filter(|s| !s.is_empty()),
            );
            if let Some(simple) = SimpleKind::parse(&req.kind) {
                return rules.put(simple, id, actions(&body)?, after, before);
            }
            let rule = new_rule(&req.kind, id, &body)?;
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
        "delete" => {
            if let Some(simple) = SimpleKind::parse(&req.kind) {
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
        "set_enabled" => {
            let enabled = body()?["enabled"].as_bool().ok_or_else(|| Error::bad_json("enabled must be a boolean"))?;
            match SimpleKind::parse(&req.kind) {
                Some(simple) => simple_rule(rules, simple, id)?.enabled = enabled,
                None => rules.base.set_enabled(rk, id, enabled).map_err(|_| not_found())?,
            }
            Ok(())
        }
        "set_actions" => {
            let actions = actions(&body()?)?;
            match SimpleKind::parse(&req.kind) {
                Some(simple) => simple_rule(rules, simple, id)?.actions = actions,
                None => rules.base.set_actions(rk, id, actions).map_err(|_| not_found())?,
            }
            Ok(())
        }
        _ => Err(Error::invalid_param("unknown operation")),
    }
}

fn simple_rule<'a>(rules: &'a mut UserRules, kind: SimpleKind, id: &str) -> Result<&'a mut SimpleRule> {
    rules.list_mut(kind).iter_mut().find(|r| r.rule_id == id).ok_or_else(not_found)
}

/// Answers a read (`get`, `get_enabled`, `get_actions`) from `rules`.
pub(crate) fn read(rules: &UserRules, req: &PushRulesRequest) -> Result<Value> {
    if req.scope.is_empty() {
        return Ok(content(rules));
    }
    let all = rules.to_json();
    if req.kind.is_empty() {
        return Ok(all);
    }
    kind(&req.kind)?;
    if req.rule_id.is_empty() {
        return Ok(all[req.kind.as_str()].clone());
    }
    let rule = find(rules, &req.kind, &req.rule_id).ok_or_else(not_found)?;
    Ok(match req.op.as_str() {
        "get_enabled" => json!({ "enabled": rule["enabled"] }),
        "get_actions" => json!({ "actions": rule["actions"] }),
        _ => rule,
    })
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

    pub(crate) async fn push_rules_op(&self, req: PushRulesRequest) -> Result<JsonResponse> {
        access::own(&req.requester, &req.user_id)?;
        if !req.scope.is_empty() && req.scope != "global" {
            return Err(Error::invalid_param("Unknown push rule scope"));
        }
        if req.op.starts_with("get") {
            let uid = user_id(&req.user_id)?;
            let client = self.pool.get().await?;
            let row = client.query_one(&client.prepare_cached(LOAD).await?, &[&req.user_id]).await?;
            let rules = effective(&uid, row.get::<_, Option<String>>(0).as_deref());
            return Ok(JsonResponse { body_json: read(&rules, &req)?.to_string() });
        }
        if req.scope.is_empty() || req.rule_id.is_empty() {
            return Err(Error::invalid_param("A rule scope, kind and ID are required"));
        }
        self.update_push_rules(&req.user_id, |rules| edit(rules, &req).map(|()| true)).await?;
        Ok(JsonResponse { body_json: "{}".into() })
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

    fn req(op: &str, kind: &str, id: &str, body: Value) -> PushRulesRequest {
        PushRulesRequest {
            op: op.into(),
            scope: "global".into(),
            kind: kind.into(),
            rule_id: id.into(),
            body_json: body.to_string(),
            ..Default::default()
        }
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
        let e = edit(&mut r, &req("delete", "override", ".m.rule.master", json!({}))).unwrap_err();
        assert_eq!(e.code().as_str(), "M_FORBIDDEN");
        let e = edit(&mut r, &req("put", "override", ".m.rule.mine", json!({"actions": []}))).unwrap_err();
        assert_eq!(e.code().as_str(), "M_INVALID_PARAM");
        let e = edit(&mut r, &req("delete", "override", "nope", json!({}))).unwrap_err();
        assert_eq!(e.code().as_str(), "M_NOT_FOUND");
    }

    #[test]
    fn before_and_after_place_user_rules() {
        let mut r = rules();
        let body = json!({"pattern": "cake", "actions": ["notify"]});
        edit(&mut r, &req("put", "content", "a", body.clone())).unwrap();
        edit(&mut r, &req("put", "content", "b", body.clone())).unwrap();
        // Newly inserted rules go first among user rules.
        assert_eq!(&ids(&r, "content")[..2], ["b", "a"]);
        let mut after = req("put", "content", "c", body.clone());
        after.after = "a".into();
        edit(&mut r, &after).unwrap();
        assert_eq!(&ids(&r, "content")[..3], ["b", "a", "c"]);
        let mut before = req("put", "content", "d", body.clone());
        before.before = "b".into();
        edit(&mut r, &before).unwrap();
        assert_eq!(&ids(&r, "content")[..4], ["d", "b", "a", "c"]);
        let mut unknown = req("put", "content", "e", body);
        unknown.before = "zzz".into();
        let e = edit(&mut r, &unknown).unwrap_err();
        assert_eq!((e.code().as_str(), e.status()), ("M_INVALID_PARAM", 400), "spec: 400 for an unknown before/after");
        edit(&mut r, &req("delete", "content", "a", json!({}))).unwrap();
        assert!(!ids(&r, "content").contains(&"a".to_owned()));
    }

    #[test]
    fn enabled_and_actions_of_defaults_survive_a_merge() {
        let mut r = rules();
        edit(&mut r, &req("set_enabled", "underride", ".m.rule.message", json!({"enabled": false}))).unwrap();
        edit(&mut r, &req("set_actions", "override", ".m.rule.tombstone", json!({"actions": []}))).unwrap();
        let stored = content(&r).to_string();
        let merged = effective(&user_id("@alice:example.org").unwrap(), Some(&stored));
        let get = |op: &str, kind: &str, id: &str| read(&merged, &req(op, kind, id, json!({}))).unwrap();
        assert_eq!(get("get_enabled", "underride", ".m.rule.message"), json!({"enabled": false}));
        assert_eq!(get("get_actions", "override", ".m.rule.tombstone"), json!({"actions": []}));
        let e = edit(&mut r, &req("set_enabled", "underride", "nope", json!({"enabled": true}))).unwrap_err();
        assert_eq!(e.code().as_str(), "M_NOT_FOUND");
        let e = edit(&mut r, &req("set_enabled", "underride", ".m.rule.message", json!({"enabled": 1}))).unwrap_err();
        assert_eq!(e.code().as_str(), "M_BAD_JSON");
        let e = read(&merged, &req("get", "bogus", "x", json!({}))).unwrap_err();
        assert_eq!(e.code().as_str(), "M_INVALID_PARAM");
    }
}
