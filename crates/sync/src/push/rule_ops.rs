//! The push-rule operations of the sync service (`/pushrules/...`), one per RPC: reads answer
//! typed rules from the user's effective rules, edits go through `rules::edit` under the
//! account-data lock.

use serde_json::Value;
use trellis_core::Result;
use trellis_proto::sync::{
    Ack, GetPushRulesRequest, PushRule, PushRuleRequest, PushRules, SetPushRuleActionsRequest,
    SetPushRuleEnabledRequest, SetPushRuleRequest,
};

use crate::{
    SyncWorker, access,
    push::{
        rules::{self, Edit, RuleBody},
        ruleset::UserRules,
    },
};

/// A rule as the contract carries it, from its JSON as clients see it (the same rendering
/// as the `m.push_rules` account data): actions and conditions each as their own JSON.
fn typed(rule: &Value) -> PushRule {
    let each = |key: &str| rule[key].as_array().into_iter().flatten().map(Value::to_string).collect();
    PushRule {
        rule_id: rule["rule_id"].as_str().unwrap_or_default().to_owned(),
        default: rule["default"].as_bool().unwrap_or_default(),
        enabled: rule["enabled"].as_bool().unwrap_or_default(),
        actions: each("actions"),
        conditions: each("conditions"),
        pattern: rule["pattern"].as_str().map(str::to_owned),
    }
}

/// The rules of `kind` (every kind when empty).
fn listed(rules: &UserRules, kind: &str) -> Result<PushRules> {
    let of = |k: &str| -> Result<Vec<PushRule>> {
        match kind.is_empty() || kind == k {
            true => Ok(rules::of_kind(rules, k)?.iter().map(typed).collect()),
            false => Ok(Vec::new()),
        }
    };
    if !kind.is_empty() {
        rules::kind(kind)?;
    }
    Ok(PushRules {
        override_rules: of("override")?,
        content: of("content")?,
        room: of("room")?,
        sender: of("sender")?,
        underride: of("underride")?,
    })
}

impl SyncWorker {
    /// The user's effective rules now.
    async fn effective_push_rules(&self, user: &str) -> Result<UserRules> {
        let uid = rules::user_id(user)?;
        let client = self.pool.get().await?;
        let stored = rules::stored(&client, user).await?;
        Ok(rules::effective(&uid, stored.as_deref()))
    }

    /// Applies one edit of rule `id` of `kind` to `user`'s rules.
    async fn edit_push_rule(&self, user: &str, kind: &str, id: &str, edit: Edit<'_>) -> Result<Ack> {
        self.update_push_rules(user, |rules| rules::edit(rules, kind, id, edit).map(|()| true)).await?;
        Ok(Ack {})
    }

    pub(crate) async fn get_push_rules_op(&self, req: GetPushRulesRequest) -> Result<PushRules> {
        access::own(&req.requester, &req.user_id)?;
        listed(&self.effective_push_rules(&req.user_id).await?, &req.kind)
    }

    pub(crate) async fn get_push_rule_op(&self, req: PushRuleRequest) -> Result<PushRule> {
        access::own(&req.requester, &req.user_id)?;
        let rules = self.effective_push_rules(&req.user_id).await?;
        Ok(typed(&rules::rule(&rules, &req.kind, &req.rule_id)?))
    }

    pub(crate) async fn set_push_rule_op(&self, req: SetPushRuleRequest) -> Result<Ack> {
        access::own(&req.requester, &req.user_id)?;
        let body = RuleBody {
            actions: req.actions.as_deref(),
            conditions: req.conditions.as_deref(),
            pattern: req.pattern.as_deref(),
        };
        let put = Edit::Put { before: &req.before, after: &req.after, body };
        self.edit_push_rule(&req.user_id, &req.kind, &req.rule_id, put).await
    }

    pub(crate) async fn delete_push_rule_op(&self, req: PushRuleRequest) -> Result<Ack> {
        access::own(&req.requester, &req.user_id)?;
        self.edit_push_rule(&req.user_id, &req.kind, &req.rule_id, Edit::Delete).await
    }

    pub(crate) async fn set_push_rule_enabled_op(&self, req: SetPushRuleEnabledRequest) -> Result<Ack> {
        access::own(&req.requester, &req.user_id)?;
        self.edit_push_rule(&req.user_id, &req.kind, &req.rule_id, Edit::SetEnabled(req.enabled)).await
    }

    pub(crate) async fn set_push_rule_actions_op(&self, req: SetPushRuleActionsRequest) -> Result<Ack> {
        access::own(&req.requester, &req.user_id)?;
        self.edit_push_rule(&req.user_id, &req.kind, &req.rule_id, Edit::SetActions(&req.actions)).await
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn rules_cross_typed_and_come_back_as_they_were() {
        let rules = rules::effective(&rules::user_id("@alice:example.org").unwrap(), None);
        let all = listed(&rules, "").unwrap();
        assert!(all.override_rules.iter().any(|r| r.rule_id == ".m.rule.master" && r.default));
        let message = all.underride.iter().find(|r| r.rule_id == ".m.rule.message").unwrap();
        assert_eq!(message.actions, ["\"notify\""]);
        assert!(!message.conditions.is_empty());
        assert_eq!(all.content[0].pattern.as_deref(), Some("alice"));
        let one = listed(&rules, "room").unwrap();
        assert!(one.override_rules.is_empty() && one.room.is_empty());
        let err = listed(&rules, "bogus").unwrap_err();
        assert_eq!(err.code().as_str(), "M_INVALID_PARAM");
        assert_eq!(typed(&json!({"rule_id": "r", "actions": [], "enabled": true})).pattern, None);
    }
}
