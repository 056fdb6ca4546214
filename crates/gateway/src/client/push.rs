//! Push: push rules (`/pushrules/...`), pushers (`/pushers`, `/pushers/set`) and
//! `/notifications`. The sync service owns all of it: it reads the bodies (its errcodes, in
//! the order Synapse gives them, are what clients and SyTest see) and renders the answers.

use axum::{
    Router,
    extract::{Path, RawQuery, State},
    http::Method,
    routing::{get, put},
};
use ruma::api::client::push::{
    delete_pushrule, get_notifications, get_pushers, get_pushrule, get_pushrule_actions, get_pushrule_enabled,
    get_pushrules_all, get_pushrules_global_scope, set_pusher, set_pushrule, set_pushrule_actions,
    set_pushrule_enabled,
};
use serde_json::Value;
use trellis_core::Error;
use trellis_proto::sync::{NotificationsRequest, PushRulesRequest, PushersRequest};

use crate::{
    AppState,
    error::ApiResult,
    extract::{Authed, JsonObject, Ruma},
    response::Rendered,
    router::RumaRoutes,
};

pub fn routes() -> Router<AppState> {
    let mut router = Router::new()
        .ruma(get_pushrules_all_route)
        .ruma(get_pushrules_global_scope_route)
        .ruma(get_pushrule_route)
        .json_endpoint::<set_pushrule::v3::Request, _, _>(set_pushrule_route)
        .ruma(delete_pushrule_route)
        .ruma(get_pushrule_enabled_route)
        .json_endpoint::<set_pushrule_enabled::v3::Request, _, _>(set_pushrule_enabled_route)
        .ruma(get_pushrule_actions_route)
        .json_endpoint::<set_pushrule_actions::v3::Request, _, _>(set_pushrule_actions_route)
        .ruma(get_pushers_route)
        .json_endpoint::<set_pusher::v3::Request, _, _>(set_pusher_route)
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
        OtherPath::Kind(kind) => rules(&s, auth, "get", &kind, "", Extra::default()).await,
        OtherPath::Refused(why) => Err(Error::unrecognized(why).with_status(400).into()),
    }
}

/// One push-rule call to the sync service.
async fn rules<R>(
    s: &AppState,
    auth: Authed,
    op: &str,
    kind: &str,
    rule_id: &str,
    extra: Extra,
) -> ApiResult<Rendered<R>> {
    let req = PushRulesRequest {
        requester: auth.user_id.clone(),
        user_id: auth.user_id,
        op: op.into(),
        scope: if op == "get" && kind.is_empty() && extra.scope_only.is_none() {
            String::new()
        } else {
            "global".into()
        },
        kind: kind.into(),
        rule_id: rule_id.into(),
        before: extra.before,
        after: extra.after,
        body_json: extra.body,
    };
    Ok(Rendered::new(s.services.sync.push_rules(req).await?.body_json))
}

#[derive(Default)]
struct Extra {
    scope_only: Option<()>,
    before: String,
    after: String,
    body: String,
}

fn body(JsonObject(obj): JsonObject) -> String {
    Value::Object(obj).to_string()
}

/// # `GET /_matrix/client/v3/pushrules/`
async fn get_pushrules_all_route(
    s: AppState,
    req: Ruma<get_pushrules_all::v3::Request>,
) -> ApiResult<Rendered<get_pushrules_all::v3::Response>> {
    rules(&s, req.user, "get", "", "", Extra::default()).await
}

/// # `GET /_matrix/client/v3/pushrules/global/`
async fn get_pushrules_global_scope_route(
    s: AppState,
    req: Ruma<get_pushrules_global_scope::v3::Request>,
) -> ApiResult<Rendered<get_pushrules_global_scope::v3::Response>> {
    rules(&s, req.user, "get", "", "", Extra { scope_only: Some(()), ..Default::default() }).await
}

/// # `GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}`
async fn get_pushrule_route(
    s: AppState,
    req: Ruma<get_pushrule::v3::Request>,
) -> ApiResult<Rendered<get_pushrule::v3::Response>> {
    rules(&s, req.user, "get", req.body.kind.as_str(), &req.body.rule_id, Extra::default()).await
}

/// # `PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}`
async fn set_pushrule_route(
    State(s): State<AppState>,
    auth: Authed,
    Path((kind, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    obj: JsonObject,
) -> ApiResult<Rendered<set_pushrule::v3::Response>> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.as_deref().unwrap_or("")).unwrap_or_default();
    let param = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
    let extra = Extra { before: param("before"), after: param("after"), body: body(obj), ..Default::default() };
    rules(&s, auth, "put", &kind, &id, extra).await
}

/// # `DELETE /_matrix/client/v3/pushrules/global/{kind}/{ruleId}`
async fn delete_pushrule_route(
    s: AppState,
    req: Ruma<delete_pushrule::v3::Request>,
) -> ApiResult<Rendered<delete_pushrule::v3::Response>> {
    rules(&s, req.user, "delete", req.body.kind.as_str(), &req.body.rule_id, Extra::default()).await
}

/// # `GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled`
async fn get_pushrule_enabled_route(
    s: AppState,
    req: Ruma<get_pushrule_enabled::v3::Request>,
) -> ApiResult<Rendered<get_pushrule_enabled::v3::Response>> {
    rules(&s, req.user, "get_enabled", req.body.kind.as_str(), &req.body.rule_id, Extra::default()).await
}

/// # `PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled`
async fn set_pushrule_enabled_route(
    State(s): State<AppState>,
    auth: Authed,
    Path((kind, id)): Path<(String, String)>,
    obj: JsonObject,
) -> ApiResult<Rendered<set_pushrule_enabled::v3::Response>> {
    rules(&s, auth, "set_enabled", &kind, &id, Extra { body: body(obj), ..Default::default() }).await
}

/// # `GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions`
async fn get_pushrule_actions_route(
    s: AppState,
    req: Ruma<get_pushrule_actions::v3::Request>,
) -> ApiResult<Rendered<get_pushrule_actions::v3::Response>> {
    rules(&s, req.user, "get_actions", req.body.kind.as_str(), &req.body.rule_id, Extra::default()).await
}

/// # `PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions`
async fn set_pushrule_actions_route(
    State(s): State<AppState>,
    auth: Authed,
    Path((kind, id)): Path<(String, String)>,
    obj: JsonObject,
) -> ApiResult<Rendered<set_pushrule_actions::v3::Response>> {
    rules(&s, auth, "set_actions", &kind, &id, Extra { body: body(obj), ..Default::default() }).await
}

/// # `GET /_matrix/client/v3/pushers`
async fn get_pushers_route(
    s: AppState,
    req: Ruma<get_pushers::v3::Request>,
) -> ApiResult<Rendered<get_pushers::v3::Response>> {
    let user_id = req.user.user_id;
    let ask = PushersRequest { requester: user_id.clone(), user_id, body_json: None, device_id: None };
    Ok(Rendered::new(s.services.sync.pushers(ask).await?.body_json))
}

/// # `POST /_matrix/client/v3/pushers/set`
async fn set_pusher_route(
    State(s): State<AppState>,
    auth: Authed,
    obj: JsonObject,
) -> ApiResult<Rendered<set_pusher::v3::Response>> {
    let req = PushersRequest {
        requester: auth.user_id.clone(),
        user_id: auth.user_id,
        body_json: Some(body(obj)),
        device_id: Some(auth.device_id),
    };
    Ok(Rendered::new(s.services.sync.pushers(req).await?.body_json))
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
        limit: req.limit.map_or(0, |l| u32::try_from(u64::from(l)).unwrap_or(u32::MAX)),
        only_highlight: req.only.as_deref() == Some("highlight"),
    };
    Ok(Rendered::new(s.services.sync.notifications(ask).await?.body_json))
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
