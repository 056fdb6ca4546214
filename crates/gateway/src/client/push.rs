//! Push: push rules (`/pushrules/...`), pushers (`/pushers`, `/pushers/set`) and
//! `/notifications`. The sync service owns all of it, one typed operation each: it checks
//! kinds, rule IDs and bodies (its errcodes, in the order Synapse gives them, are what
//! clients and SyTest see) and answers typed rules and pushers, which are shaped here.

use axum::{
    Router,
    extract::{Path, State},
    http::Method,
    routing::{get, put},
};
use ruma::{
    api::client::push::{
        delete_pushrule, get_notifications, get_pushers, get_pushrule, get_pushrule_actions, get_pushrule_enabled,
        get_pushrules_all, get_pushrules_global_scope, set_pushrule_actions, set_pushrule_enabled,
    },
    push::Action,
};
use serde::Serialize;
use serde_json::{Map, Value, value::RawValue};
use trellis_core::Error;
use trellis_proto::sync::{
    GetPushRulesRequest, GetPushersRequest, NotificationsRequest, PushRule, PushRuleRequest, PushRules,
    SetPushRuleActionsRequest, SetPushRuleEnabledRequest, SetPushRuleRequest, SetPusherRequest,
};

use super::small;
use crate::{
    AppState,
    error::ApiResult,
    extract::{Authed, Ruma},
    response::Rendered,
    router::RumaRoutes,
};

/// `PUT /pushrules/global/{kind}/{ruleId}` as clients and SyTest send it. ruma's type wants a
/// room ID or a user ID as the ID of a room or sender rule, where clients name them by alias
/// or glob too (the service keeps such rules), and it would refuse a bad body before the kind
/// and the rule ID are checked, which is not Synapse's order. So the body's fields are taken
/// as sent and the service reads them with ruma's types.
pub mod put_pushrule {
    use ruma::api::{auth_scheme::AccessToken, metadata, request, response};
    use serde_json::{Value, value::RawValue};

    metadata! {
        method: PUT,
        rate_limited: true,
        authentication: AccessToken,
        history: {
            1.0 => "/_matrix/client/r0/pushrules/global/{kind}/{rule_id}",
            1.1 => "/_matrix/client/v3/pushrules/global/{kind}/{rule_id}",
        }
    }

    #[request]
    pub struct Request {
        #[ruma_api(path)]
        pub kind: String,
        #[ruma_api(path)]
        pub rule_id: String,
        #[ruma_api(query)]
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub before: Option<String>,
        #[ruma_api(query)]
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub after: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub actions: Option<Box<RawValue>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub conditions: Option<Box<RawValue>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub pattern: Option<Value>,
    }

    #[response]
    #[derive(Default)]
    pub struct Response {}
}

/// `POST /pushers/set` as Synapse reads it: every field may be missing (the service answers
/// `M_MISSING_PARAM` for a required one, in Synapse's order), `kind` absent or `null` deletes,
/// and `data` is kept as the client sent it. ruma's type refuses a missing field as
/// `M_BAD_JSON` and reshapes `data` by kind.
pub mod set_pusher {
    use ruma::api::{auth_scheme::AccessToken, metadata, request, response};
    use serde_json::value::RawValue;

    metadata! {
        method: POST,
        rate_limited: true,
        authentication: AccessToken,
        history: {
            1.0 => "/_matrix/client/r0/pushers/set",
            1.1 => "/_matrix/client/v3/pushers/set",
        }
    }

    #[request]
    pub struct Request {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub app_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub pushkey: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub kind: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub app_display_name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub device_display_name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub profile_tag: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub lang: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub data: Option<Box<RawValue>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub append: Option<bool>,
    }

    #[response]
    #[derive(Default)]
    pub struct Response {}
}

pub fn routes() -> Router<AppState> {
    let mut router = Router::new()
        .ruma(get_pushrules_all_route)
        .ruma(get_pushrules_global_scope_route)
        .ruma(get_pushrule_route)
        .ruma(set_pushrule_route)
        .ruma(delete_pushrule_route)
        .ruma(get_pushrule_enabled_route)
        .ruma(set_pushrule_enabled_route)
        .ruma(get_pushrule_actions_route)
        .ruma(set_pushrule_actions_route)
        .ruma(get_pushers_route)
        .ruma(set_pusher_route)
        .ruma(get_notifications_route);
    // Every other path under `/pushrules/`: a kind's rules (`global/{kind}/`), else refused as
    // Synapse refuses it (SyTest checks), with 400 rather than a 404 or 405.
    for version in ["v3", "r0"] {
        let base = format!("/_matrix/client/{version}/pushrules");
        router = router
            .route(&format!("{base}/"), put(other_path_route).delete(other_path_route))
            .route(&format!("{base}/{{*rest}}"), get(other_path_route).put(other_path_route).delete(other_path_route));
    }
    router
}

/// What a path under `/pushrules/` not routed above asks for.
#[derive(Debug, PartialEq)]
enum OtherPath {
    /// `GET global/{kind}/`: every rule of a kind.
    Kind(String),
    Refused(&'static str),
}

/// Reads `rest` (the path after `/pushrules/`) of a request with `method`, as Synapse reads it.
fn other_path(method: &Method, rest: &str) -> OtherPath {
    let parts: Vec<&str> = rest.split('/').collect();
    match (parts.first().copied(), parts.len()) {
        (Some("global"), _) => {}
        (Some(""), _) | (None, _) => return OtherPath::Refused("A push rule scope is required"),
        _ => return OtherPath::Refused("Unknown push rule scope"),
    }
    if *method == Method::GET {
        return match parts[1..] {
            [kind, ""] if !kind.is_empty() => OtherPath::Kind(kind.to_owned()),
            [] | [_] => OtherPath::Refused("Push rule paths end with a slash"),
            [_, _, attr] if !matches!(attr, "enabled" | "actions") => OtherPath::Refused("Unknown push rule attribute"),
            _ => OtherPath::Refused("Unrecognized push rule path"),
        };
    }
    match parts[1..] {
        [] | [""] => OtherPath::Refused("A push rule kind is required"),
        [_] | [_, ""] => OtherPath::Refused("A push rule ID is required"),
        [_, _, attr, ..] if !matches!(attr, "enabled" | "actions") => OtherPath::Refused("Unknown push rule attribute"),
        _ => OtherPath::Refused("Unrecognized push rule path"),
    }
}

/// # `GET|PUT|DELETE /_matrix/client/v3/pushrules/{path}`
///
/// The paths the spec's routes do not cover.
async fn other_path_route(
    State(s): State<AppState>,
    auth: Authed,
    method: Method,
    rest: Option<Path<String>>,
) -> ApiResult<Rendered<get_pushrules_global_scope::v3::Response>> {
    let rest = rest.map(|Path(rest)| rest).unwrap_or_default();
    match other_path(&method, &rest) {
        OtherPath::Kind(kind) => {
            let rules = rules(&s, auth, &kind).await?;
            let list = match kind.as_str() {
                "override" => rules.override_rules,
                "content" => rules.content,
                "room" => rules.room,
                "sender" => rules.sender,
                _ => rules.underride,
            };
            Rendered::shaped(&list.into_iter().map(|r| rule_json(&kind, r)).collect::<ApiResult<Vec<_>>>()?)
        }
        OtherPath::Refused(why) => Err(Error::unrecognized(why).with_status(400).into()),
    }
}

/// The user's rules of `kind` (every kind when empty).
async fn rules(s: &AppState, auth: Authed, kind: &str) -> ApiResult<PushRules> {
    let ask = GetPushRulesRequest { requester: auth.user_id.clone(), user_id: auth.user_id, kind: kind.into() };
    Ok(s.services.sync.get_push_rules(ask).await?)
}

/// One rule of the user's.
fn rule_request(auth: Authed, kind: &str, rule_id: &str) -> PushRuleRequest {
    PushRuleRequest {
        requester: auth.user_id.clone(),
        user_id: auth.user_id,
        kind: kind.into(),
        rule_id: rule_id.into(),
    }
}

/// A rule as clients see it (and as the `m.push_rules` account data has it): conditions for
/// the override and underride kinds, a pattern for content rules. ruma's rule types would
/// refuse room and sender rules named by alias or glob, so the rule is shaped here.
fn rule_json(kind: &str, rule: PushRule) -> ApiResult<Value> {
    let raw = |each: Vec<String>| each.into_iter().map(RawValue::from_string).collect::<Result<Vec<_>, _>>();
    let mut out = Map::new();
    out.insert("rule_id".into(), Value::String(rule.rule_id));
    out.insert("default".into(), Value::Bool(rule.default));
    out.insert("enabled".into(), Value::Bool(rule.enabled));
    out.insert("actions".into(), serde_json::to_value(raw(rule.actions)?)?);
    if matches!(kind, "override" | "underride") {
        out.insert("conditions".into(), serde_json::to_value(raw(rule.conditions)?)?);
    }
    if let Some(pattern) = rule.pattern.filter(|_| kind == "content") {
        out.insert("pattern".into(), Value::String(pattern));
    }
    Ok(Value::Object(out))
}

/// A ruleset as clients see it: every kind, each a list (empty ones too).
fn ruleset_json(rules: PushRules) -> ApiResult<Value> {
    let mut out = Map::new();
    for (kind, list) in [
        ("override", rules.override_rules),
        ("content", rules.content),
        ("room", rules.room),
        ("sender", rules.sender),
        ("underride", rules.underride),
    ] {
        let list = list.into_iter().map(|r| rule_json(kind, r)).collect::<ApiResult<Vec<_>>>()?;
        out.insert(kind.into(), Value::Array(list));
    }
    Ok(Value::Object(out))
}

/// Actions a service answered, one JSON value each, as ruma's.
fn actions(each: Vec<String>) -> ApiResult<Vec<Action>> {
    Ok(each.iter().map(|a| serde_json::from_str(a)).collect::<Result<_, _>>()?)
}

/// # `GET /_matrix/client/v3/pushrules/`
///
/// The ruleset is shaped here (see [`rule_json`]).
async fn get_pushrules_all_route(
    s: AppState,
    req: Ruma<get_pushrules_all::v3::Request>,
) -> ApiResult<Rendered<get_pushrules_all::v3::Response>> {
    let global = ruleset_json(rules(&s, req.user, "").await?)?;
    Rendered::shaped(&serde_json::json!({ "global": global }))
}

/// # `GET /_matrix/client/v3/pushrules/global/`
async fn get_pushrules_global_scope_route(
    s: AppState,
    req: Ruma<get_pushrules_global_scope::v3::Request>,
) -> ApiResult<Rendered<get_pushrules_global_scope::v3::Response>> {
    Rendered::shaped(&ruleset_json(rules(&s, req.user, "").await?)?)
}

/// # `GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}`
async fn get_pushrule_route(
    s: AppState,
    req: Ruma<get_pushrule::v3::Request>,
) -> ApiResult<Rendered<get_pushrule::v3::Response>> {
    let kind = req.body.kind.as_str();
    let rule = s.services.sync.get_push_rule(rule_request(req.user, kind, &req.body.rule_id)).await?;
    Rendered::shaped(&rule_json(kind, rule)?)
}

/// # `PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}`
async fn set_pushrule_route(s: AppState, req: Ruma<put_pushrule::Request>) -> ApiResult<put_pushrule::Response> {
    let (auth, body) = (req.user, req.body);
    let put = SetPushRuleRequest {
        requester: auth.user_id.clone(),
        user_id: auth.user_id,
        kind: body.kind,
        rule_id: body.rule_id,
        before: body.before.unwrap_or_default(),
        after: body.after.unwrap_or_default(),
        actions: body.actions.map(|a| a.get().to_owned()),
        conditions: body.conditions.map(|c| c.get().to_owned()),
        // A pattern that is not a string is none (`M_BAD_JSON` for a content rule).
        pattern: body.pattern.as_ref().and_then(Value::as_str).map(str::to_owned),
    };
    s.services.sync.set_push_rule(put).await?;
    Ok(put_pushrule::Response {})
}

/// # `DELETE /_matrix/client/v3/pushrules/global/{kind}/{ruleId}`
async fn delete_pushrule_route(
    s: AppState,
    req: Ruma<delete_pushrule::v3::Request>,
) -> ApiResult<delete_pushrule::v3::Response> {
    s.services.sync.delete_push_rule(rule_request(req.user, req.body.kind.as_str(), &req.body.rule_id)).await?;
    Ok(delete_pushrule::v3::Response::new())
}

/// # `GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled`
async fn get_pushrule_enabled_route(
    s: AppState,
    req: Ruma<get_pushrule_enabled::v3::Request>,
) -> ApiResult<get_pushrule_enabled::v3::Response> {
    let rule = s.services.sync.get_push_rule(rule_request(req.user, req.body.kind.as_str(), &req.body.rule_id)).await?;
    Ok(get_pushrule_enabled::v3::Response::new(rule.enabled))
}

/// # `PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled`
async fn set_pushrule_enabled_route(
    s: AppState,
    req: Ruma<set_pushrule_enabled::v3::Request>,
) -> ApiResult<set_pushrule_enabled::v3::Response> {
    let (auth, body) = (req.user, req.body);
    let set = SetPushRuleEnabledRequest {
        requester: auth.user_id.clone(),
        user_id: auth.user_id,
        kind: body.kind.as_str().to_owned(),
        rule_id: body.rule_id,
        enabled: body.enabled,
    };
    s.services.sync.set_push_rule_enabled(set).await?;
    Ok(set_pushrule_enabled::v3::Response::new())
}

/// # `GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions`
async fn get_pushrule_actions_route(
    s: AppState,
    req: Ruma<get_pushrule_actions::v3::Request>,
) -> ApiResult<get_pushrule_actions::v3::Response> {
    let rule = s.services.sync.get_push_rule(rule_request(req.user, req.body.kind.as_str(), &req.body.rule_id)).await?;
    Ok(get_pushrule_actions::v3::Response::new(actions(rule.actions)?))
}

/// # `PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions`
async fn set_pushrule_actions_route(
    s: AppState,
    req: Ruma<set_pushrule_actions::v3::Request>,
) -> ApiResult<set_pushrule_actions::v3::Response> {
    let (auth, body) = (req.user, req.body);
    let set = SetPushRuleActionsRequest {
        requester: auth.user_id.clone(),
        user_id: auth.user_id,
        kind: body.kind.as_str().to_owned(),
        rule_id: body.rule_id,
        actions: body.actions.iter().map(serde_json::to_string).collect::<Result<_, _>>()?,
    };
    s.services.sync.set_push_rule_actions(set).await?;
    Ok(set_pushrule_actions::v3::Response::new())
}

/// # `GET /_matrix/client/v3/pushers`
///
/// Shaped here: each pusher's `data` is handed back as the client set it, which ruma's
/// `PusherKind` would reshape by kind.
async fn get_pushers_route(
    s: AppState,
    req: Ruma<get_pushers::v3::Request>,
) -> ApiResult<Rendered<get_pushers::v3::Response>> {
    #[derive(Serialize)]
    struct Pusher {
        app_id: String,
        pushkey: String,
        kind: String,
        app_display_name: String,
        device_display_name: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        profile_tag: Option<String>,
        lang: String,
        data: Box<RawValue>,
    }
    #[derive(Serialize)]
    struct Pushers {
        pushers: Vec<Pusher>,
    }
    let user_id = req.user.user_id;
    let list = s.services.sync.get_pushers(GetPushersRequest { requester: user_id.clone(), user_id }).await?;
    let pushers = list.pushers.into_iter().map(|p| {
        Ok(Pusher {
            app_id: p.app_id,
            pushkey: p.pushkey,
            kind: p.kind,
            app_display_name: p.app_display_name,
            device_display_name: p.device_display_name,
            profile_tag: p.profile_tag,
            lang: p.lang,
            data: RawValue::from_string(p.data)?,
        })
    });
    Rendered::shaped(&Pushers { pushers: pushers.collect::<ApiResult<_>>()? })
}

/// # `POST /_matrix/client/v3/pushers/set`
async fn set_pusher_route(s: AppState, req: Ruma<set_pusher::Request>) -> ApiResult<set_pusher::Response> {
    let (auth, body) = (req.user, req.body);
    let set = SetPusherRequest {
        requester: auth.user_id.clone(),
        user_id: auth.user_id,
        device_id: auth.device_id,
        app_id: body.app_id,
        pushkey: body.pushkey,
        kind: body.kind,
        app_display_name: body.app_display_name,
        device_display_name: body.device_display_name,
        profile_tag: body.profile_tag,
        lang: body.lang,
        data: body.data.map(|d| d.get().to_owned()),
        append: body.append.unwrap_or(false),
    };
    s.services.sync.set_pusher(set).await?;
    Ok(set_pusher::Response {})
}

/// # `GET /_matrix/client/v3/notifications`
async fn get_notifications_route(
    s: AppState,
    req: Ruma<get_notifications::v3::Request>,
) -> ApiResult<Rendered<get_notifications::v3::Response>> {
    let (user_id, req) = (req.user.user_id, req.body);
    let ask = NotificationsRequest {
        requester: user_id.clone(),
        user_id,
        from: req.from.unwrap_or_default(),
        limit: req.limit.map_or(0, small),
        only_highlight: req.only.as_deref() == Some("highlight"),
    };
    let page = s.services.sync.notifications(ask).await?;
    let raw = RawValue::from_string;
    let notifications = page.notifications.into_iter().map(|n| {
        Ok(Notification {
            actions: n.actions.into_iter().map(raw).collect::<Result<_, _>>()?,
            event: raw(n.event)?,
            profile_tag: None,
            read: n.read,
            room_id: n.room_id,
            ts: n.ts,
        })
    });
    let notifications = notifications.collect::<ApiResult<_>>()?;
    Rendered::shaped(&Notifications { notifications, next_token: page.next_token })
}

/// `/notifications` in Synapse's shape: `profile_tag` (which pusher profile matched) is
/// always present, `null` here as notifications are recorded per user, not per profile;
/// ruma's type leaves a `None` out.
#[derive(Serialize)]
struct Notifications {
    notifications: Vec<Notification>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

#[derive(Serialize)]
struct Notification {
    actions: Vec<Box<RawValue>>,
    event: Box<RawValue>,
    profile_tag: Option<String>,
    read: bool,
    room_id: String,
    ts: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_outside_the_spec_routes() {
        let (get, put) = (Method::GET, Method::PUT);
        assert_eq!(other_path(&get, "global/room/"), OtherPath::Kind("room".into()));
        assert_eq!(other_path(&get, "global/bogus/"), OtherPath::Kind("bogus".into()), "the service refuses the kind");
        for path in ["global", "global/room", "not_a_scope/", "global/override/.m.rule.master/not_an_attr"] {
            assert!(matches!(other_path(&get, path), OtherPath::Refused(_)), "GET {path}");
        }
        for path in
            ["", "not_a_scope/room/#spam:example.com", "global", "global/room", "global/room/", "global/override/x/y"]
        {
            assert!(matches!(other_path(&put, path), OtherPath::Refused(_)), "PUT {path}");
        }
    }
}
