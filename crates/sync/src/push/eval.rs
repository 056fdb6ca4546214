//! Evaluating push rules on one event for one user: the room context the rules need (member
//! count, the user's display name in the room, power levels) read from the current state,
//! and what the matching rule's actions mean (notify, highlight).

use std::{collections::BTreeMap, sync::Arc};

use ruma::{
    Int, OwnedRoomId, OwnedUserId, RoomVersionId, UInt,
    power_levels::NotificationPowerLevels,
    push::{Action, FlattenedJson, PushConditionPowerLevelsCtx, PushConditionRoomCtx},
    room_version_rules::{AuthorizationRules, RoomPowerLevelsRules},
    serde::Raw,
};
use serde_json::{Value, value::RawValue};
use trellis_core::Result;

use crate::push::matching::{CompiledRules, EventFacts};

/// Member count, the user's member event content, the power levels content and the user's
/// global display name (the fallback), for one room; then the create event's sender and
/// content (who the creators are, and whether the version privileges them).
const CONTEXT: &str = "SELECT \
       (SELECT count(*) FROM memberships WHERE room_id = $1 AND membership = 'join'), \
       (SELECT e.content FROM current_state c JOIN events e ON e.event_id = c.event_id \
          WHERE c.room_id = $1 AND c.type = 'm.room.member' AND c.state_key = $2), \
       (SELECT e.content FROM current_state c JOIN events e ON e.event_id = c.event_id \
          WHERE c.room_id = $1 AND c.type = 'm.room.power_levels' AND c.state_key = ''), \
       (SELECT displayname FROM profiles WHERE user_id = $2), \
       (SELECT e.sender FROM current_state c JOIN events e ON e.event_id = c.event_id \
          WHERE c.room_id = $1 AND c.type = 'm.room.create' AND c.state_key = ''), \
       (SELECT e.content FROM current_state c JOIN events e ON e.event_id = c.event_id \
          WHERE c.room_id = $1 AND c.type = 'm.room.create' AND c.state_key = '')";

/// Member count, power levels, and every joined member's display name (member event, else
/// global profile), for a whole room at once.
const ROOM_CONTEXT: &str = "SELECT m.user_id, e.content, p.displayname, \
       (SELECT e2.content FROM current_state c2 JOIN events e2 ON e2.event_id = c2.event_id \
          WHERE c2.room_id = $1 AND c2.type = 'm.room.power_levels' AND c2.state_key = ''), \
       (SELECT e2.sender FROM current_state c2 JOIN events e2 ON e2.event_id = c2.event_id \
          WHERE c2.room_id = $1 AND c2.type = 'm.room.create' AND c2.state_key = ''), \
       (SELECT e2.content FROM current_state c2 JOIN events e2 ON e2.event_id = c2.event_id \
          WHERE c2.room_id = $1 AND c2.type = 'm.room.create' AND c2.state_key = '') \
     FROM memberships m \
     LEFT JOIN current_state c ON c.room_id = m.room_id AND c.type = 'm.room.member' AND c.state_key = m.user_id \
     LEFT JOIN events e ON e.event_id = c.event_id \
     LEFT JOIN profiles p ON p.user_id = m.user_id \
     WHERE m.room_id = $1 AND m.membership = 'join'";

/// The push-rule context of every joined member of a room, read in one query and built once
/// per member (the notifier evaluates each event for every member; a query per member, or a
/// context built per member and event, would not keep up).
pub struct RoomContexts {
    members: std::collections::HashMap<String, Arc<PushConditionRoomCtx>>,
    room_id: OwnedRoomId,
    count: UInt,
    power_levels: Option<PushConditionPowerLevelsCtx>,
}

impl RoomContexts {
    pub async fn load(client: &deadpool_postgres::Client, room: &str) -> Result<Option<RoomContexts>> {
        let Ok(room_id) = OwnedRoomId::try_from(room) else { return Ok(None) };
        let stmt = client.prepare_cached(ROOM_CONTEXT).await?;
        let rows = client.query(&stmt, &[&room]).await?;
        let power_levels = rows.first().and_then(|r| {
            let content = serde_json::from_str::<Value>(&r.get::<_, Option<String>>(3)?).ok()?;
            Some(with_creators(power_levels(&content), r.get(4), r.get(5)))
        });
        let count = UInt::try_from(rows.len() as u64).unwrap_or_default();
        let mut members = std::collections::HashMap::with_capacity(rows.len());
        for row in &rows {
            let user: String = row.get(0);
            let Ok(user_id) = OwnedUserId::try_from(user.as_str()) else { continue };
            let name = display_name(row.get(1), row.get(2)).filter(|n| !n.is_empty());
            let ctx = member_ctx(room_id.clone(), count, user_id, name, power_levels.clone());
            members.insert(user, Arc::new(ctx));
        }
        Ok(Some(RoomContexts { members, room_id, count, power_levels }))
    }

    /// The context of a user who is not joined (an invitee), known by their localpart.
    pub fn outsider(&self, user: &str) -> Option<PushConditionRoomCtx> {
        let user_id = OwnedUserId::try_from(user).ok()?;
        Some(member_ctx(self.room_id.clone(), self.count, user_id, None, self.power_levels.clone()))
    }

    pub fn is_member(&self, user: &str) -> bool {
        self.members.contains_key(user)
    }

    /// How many joined members the room has.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Every joined member with their context.
    pub fn members(&self) -> impl Iterator<Item = (&String, &Arc<PushConditionRoomCtx>)> {
        self.members.iter()
    }
}

/// The name the rules match a user by: the member event's `displayname`, else the global
/// profile's.
fn display_name(member_content: Option<String>, profile: Option<String>) -> Option<String> {
    member_content
        .and_then(|c| serde_json::from_str::<Value>(&c).ok())
        .and_then(|c| c["displayname"].as_str().map(str::to_owned))
        .or(profile)
}

/// What the rules decided for one event.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outcome<'a> {
    pub notify: bool,
    pub highlight: bool,
    /// The matching rule's actions (for `/notifications` and pushes).
    pub actions: &'a [Action],
}

/// The context of `room` for `user`, from the room's current state.
pub async fn room_ctx(
    client: &deadpool_postgres::Client,
    user: &str,
    room: &str,
) -> Result<Option<PushConditionRoomCtx>> {
    let (Ok(room_id), Ok(user_id)) = (OwnedRoomId::try_from(room), OwnedUserId::try_from(user)) else {
        return Ok(None);
    };
    let stmt = client.prepare_cached(CONTEXT).await?;
    let row = client.query_one(&stmt, &[&room, &user]).await?;
    let members: i64 = row.get(0);
    let member: Option<String> = row.get(1);
    let levels: Option<String> = row.get(2);
    let profile: Option<String> = row.get(3);
    let count = UInt::try_from(members.max(0) as u64).unwrap_or_default();
    let levels = levels
        .and_then(|c| serde_json::from_str::<Value>(&c).ok())
        .map(|c| with_creators(power_levels(&c), row.get(4), row.get(5)));
    Ok(Some(member_ctx(room_id, count, user_id, display_name(member, profile), levels)))
}

/// A member's context: the room's member count and power levels, and the name the rules
/// match the member by (the localpart when they have none).
fn member_ctx(
    room_id: OwnedRoomId,
    count: UInt,
    user_id: OwnedUserId,
    name: Option<String>,
    levels: Option<PushConditionPowerLevelsCtx>,
) -> PushConditionRoomCtx {
    let name = name.unwrap_or_else(|| user_id.localpart().to_owned());
    let ctx = PushConditionRoomCtx::new(room_id, count, user_id, name);
    match levels {
        Some(levels) => ctx.with_power_levels(levels),
        None => ctx,
    }
}

fn level(v: &Value, default: i64) -> Int {
    let n = v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok())).unwrap_or(default);
    Int::new(n).unwrap_or_default()
}

/// The power-level facts the rules use, from an `m.room.power_levels` content.
pub(crate) fn power_levels(content: &Value) -> PushConditionPowerLevelsCtx {
    let users: BTreeMap<OwnedUserId, Int> = content["users"]
        .as_object()
        .map(|o| o.iter().filter_map(|(k, v)| Some((OwnedUserId::try_from(k.as_str()).ok()?, level(v, 0)))).collect())
        .unwrap_or_default();
    let mut notifications = NotificationPowerLevels::new();
    notifications.room = level(&content["notifications"]["room"], 50);
    PushConditionPowerLevelsCtx::new(
        users,
        level(&content["users_default"], 0),
        notifications,
        RoomPowerLevelsRules::new(&AuthorizationRules::V1, []),
    )
}

/// `levels` with the room's creators outranking every level when its version says so (v12:
/// the create event's sender and `additional_creators`, never listed in the power levels).
fn with_creators(
    mut levels: PushConditionPowerLevelsCtx,
    create_sender: Option<&str>,
    create_content: Option<&str>,
) -> PushConditionPowerLevelsCtx {
    let (Some(sender), Some(content)) = (create_sender, create_content) else { return levels };
    let Ok(content) = serde_json::from_str::<Value>(content) else { return levels };
    let version = content["room_version"].as_str().unwrap_or("1");
    let Some(rules) = RoomVersionId::try_from(version).ok().and_then(|v| v.rules()) else { return levels };
    if rules.authorization.explicitly_privilege_room_creators {
        let additional = content["additional_creators"].as_array().into_iter().flatten();
        let creators = std::iter::once(sender)
            .chain(additional.filter_map(Value::as_str))
            .filter_map(|u| OwnedUserId::try_from(u).ok());
        levels.rules = RoomPowerLevelsRules::new(&rules.authorization, creators);
    }
    levels
}

/// The event as the rules see it (their keys are `type`, `sender`, `content.*`, ...).
pub fn event_json(
    event_id: &str,
    room: &str,
    sender: &str,
    kind: &str,
    state_key: Option<&str>,
    content: &str,
) -> String {
    let s = |v: &str| Value::String(v.to_owned()).to_string();
    let content = if serde_json::from_str::<&RawValue>(content).is_ok() { content } else { "{}" };
    let state_key = state_key.map(|k| format!(",\"state_key\":{}", s(k))).unwrap_or_default();
    format!(
        "{{\"event_id\":{},\"room_id\":{},\"sender\":{},\"type\":{}{state_key},\"content\":{content}}}",
        s(event_id),
        s(room),
        s(sender),
        s(kind)
    )
}

/// An event (see [`event_json`]) flattened once, to be matched against many users' rules.
pub fn facts(event: &str) -> Option<EventFacts> {
    let raw = RawValue::from_string(event.to_owned()).ok()?;
    Some(EventFacts::new(FlattenedJson::from_raw(&Raw::<Value>::from_json(raw))))
}

/// What `rules` decide for `event` (see [`event_json`]) in `ctx`.
pub async fn evaluate<'a>(rules: &'a CompiledRules, ctx: &PushConditionRoomCtx, event: &str) -> Outcome<'a> {
    match facts(event) {
        Some(facts) => evaluate_facts(rules, ctx, &facts).await,
        None => Outcome::default(),
    }
}

/// What `rules` decide for a flattened event in `ctx`: the actions of the first rule that
/// applies (none for the user's own events).
pub async fn evaluate_facts<'a>(
    rules: &'a CompiledRules,
    ctx: &PushConditionRoomCtx,
    event: &EventFacts,
) -> Outcome<'a> {
    match rules.first_match(event, ctx).await {
        Some(rule) => {
            let actions = rule.actions();
            Outcome {
                notify: actions.iter().any(Action::should_notify),
                highlight: actions.iter().any(Action::is_highlight),
                actions,
            }
        }
        None => Outcome::default(),
    }
}

#[cfg(test)]
mod tests {
    use ruma::{owned_room_id, owned_user_id, uint};

    use super::*;

    #[test]
    fn v12_creators_may_notify_the_room_unlisted() {
        let pl = || power_levels(&serde_json::json!({"users": {}, "notifications": {"room": 50}}));
        let creator = owned_user_id!("@creator:x");
        let other = owned_user_id!("@other:x");
        let create = |v: &str| serde_json::json!({"room_version": v, "additional_creators": ["@other:x"]}).to_string();
        let v12 = with_creators(pl(), Some("@creator:x"), Some(&create("12")));
        assert!(v12.has_sender_notification_permission(&creator, &"room".into()));
        assert!(v12.has_sender_notification_permission(&other, &"room".into()), "additional creators too");
        let v11 = with_creators(pl(), Some("@creator:x"), Some(&create("11")));
        assert!(!v11.has_sender_notification_permission(&creator, &"room".into()), "v11 ranks creators by level");
    }

    #[tokio::test]
    async fn default_rules_decide() {
        let me = owned_user_id!("@alice:example.org");
        let rules = CompiledRules::new(crate::push::rules::defaults(&me), me.as_str(), &Default::default());
        let ctx = PushConditionRoomCtx::new(owned_room_id!("!r:example.org"), uint!(3), me.clone(), "Alice".into())
            .with_power_levels(power_levels(&serde_json::json!({"users": {"@bob:example.org": 100}})));
        let msg = |body: &str| {
            let content = serde_json::json!({"msgtype": "m.text", "body": body}).to_string();
            event_json("$e", "!r:example.org", "@bob:example.org", "m.room.message", None, &content)
        };
        let plain = evaluate(&rules, &ctx, &msg("hello")).await;
        assert!(plain.notify && !plain.highlight);
        let mention = evaluate(&rules, &ctx, &msg("hey Alice, lunch?")).await;
        assert!(mention.notify && mention.highlight);
        let by_name = evaluate(&rules, &ctx, &msg("alice: lunch?")).await;
        assert!(by_name.highlight, "the localpart");
        let explicit = serde_json::json!({"body": "Alice", "m.mentions": {"user_ids": []}}).to_string();
        let explicit = event_json("$e", "!r:example.org", "@bob:example.org", "m.room.message", None, &explicit);
        assert!(!evaluate(&rules, &ctx, &explicit).await.highlight, "m.mentions decides on its own");
        let tagged = serde_json::json!({"body": "x", "m.mentions": {"user_ids": ["@alice:example.org"]}}).to_string();
        let tagged = event_json("$e", "!r:example.org", "@bob:example.org", "m.room.message", None, &tagged);
        assert!(evaluate(&rules, &ctx, &tagged).await.highlight);
        let room = evaluate(&rules, &ctx, &msg("@room fire drill")).await;
        assert!(room.highlight, "bob may notify the room");
        let enc = event_json("$e", "!r:example.org", "@bob:example.org", "m.room.encrypted", None, "{}");
        assert!(evaluate(&rules, &ctx, &enc).await.notify);
        let own = event_json("$e", "!r:example.org", "@alice:example.org", "m.room.message", None, "{}");
        assert!(evaluate(&rules, &ctx, &own).await.actions.is_empty());
        let member = event_json(
            "$e",
            "!r:example.org",
            "@bob:example.org",
            "m.room.member",
            Some("@bob:example.org"),
            r#"{"membership":"join"}"#,
        );
        assert!(!evaluate(&rules, &ctx, &member).await.notify);
    }
}
