//! Push: push rules (`/pushrules/...`), pushers (`/pushers`, `/pushers/set`) and
//! `/notifications`. The sync service owns all of it; bodies are checked there.

use axum::{
    Router,
    extract::{Path, RawQuery, State},
    routing::get,
};
use ruma::api::client::push::{
    delete_pushrule, get_notifications, get_pushers, get_pushrule, get_pushrule_actions, get_pushrule_enabled,
    get_pushrules_all, get_pushrules_global_scope, set_pusher, set_pushrule, set_pushrule_actions,
    set_pushrule_enabled,
};
use serde_json::Value;
use trellis_proto::sync::{NotificationsRequest, PushRulesRequest, PushersRequest};

use super::RawJson;
use crate::{
    AppState,
    error::ApiResult,
    extract::{Authed, JsonObject, Ruma},
    router::RumaRoutes,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .ruma::<get_pushrules_all::v3::Request, _, _>(all_route)
        // Some clients leave the trailing slash off.
        .route("/_matrix/client/v3/pushrules", get(all_route))
        .route("/_matrix/client/r0/pushrules", get(all_route))
        .ruma::<get_pushrules_global_scope::v3::Request, _, _>(global_route)
        .route("/_matrix/client/v3/pushrules/global", get(global_route))
        .route("/_matrix/client/r0/pushrules/global", get(global_route))
        .ruma::<get_pushrule::v3::Request, _, _>(get_rule_route)
        .ruma::<set_pushrule::v3::Request, _, _>(set_rule_route)
        .ruma::<delete_pushrule::v3::Request, _, _>(delete_rule_route)
        .ruma::<get_pushrule_enabled::v3::Request, _, _>(get_enabled_route)
        .ruma::<set_pushrule_enabled::v3::Request, _, _>(set_enabled_route)
        .ruma::<get_pushrule_actions::v3::Request, _, _>(get_actions_route)
        .ruma::<set_pushrule_actions::v3::Request, _, _>(set_actions_route)
        .ruma::<get_pushers::v3::Request, _, _>(get_pushers_route)
        .ruma::<set_pusher::v3::Request, _, _>(set_pusher_route)
        .ruma::<get_notifications::v3::Request, _, _>(notifications_route)
}

/// One push-rule call to the sync service.
async fn rules(s: &AppState, auth: Authed, op: &str, kind: &str, rule_id: &str, extra: Extra) -> ApiResult<RawJson> {
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
    Ok(RawJson(s.services.sync.push_rules(req).await?.body_json))
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
async fn all_route(State(s): State<AppState>, auth: Authed) -> ApiResult<RawJson> {
    rules(&s, auth, "get", "", "", Extra::default()).await
}

/// # `GET /_matrix/client/v3/pushrules/global/`
async fn global_route(State(s): State<AppState>, auth: Authed) -> ApiResult<RawJson> {
    rules(&s, auth, "get", "", "", Extra { scope_only: Some(()), ..Default::default() }).await
}

/// # `GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}`
async fn get_rule_route(
    State(s): State<AppState>,
    auth: Authed,
    Path((kind, id)): Path<(String, String)>,
) -> ApiResult<RawJson> {
    rules(&s, auth, "get", &kind, &id, Extra::default()).await
}

/// # `PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}`
async fn set_rule_route(
    State(s): State<AppState>,
    auth: Authed,
    Path((kind, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    obj: JsonObject,
) -> ApiResult<RawJson> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.as_deref().unwrap_or("")).unwrap_or_default();
    let param = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
    let extra = Extra { before: param("before"), after: param("after"), body: body(obj), ..Default::default() };
    rules(&s, auth, "put", &kind, &id, extra).await
}

/// # `DELETE /_matrix/client/v3/pushrules/global/{kind}/{ruleId}`
async fn delete_rule_route(
    State(s): State<AppState>,
    auth: Authed,
    Path((kind, id)): Path<(String, String)>,
) -> ApiResult<RawJson> {
    rules(&s, auth, "delete", &kind, &id, Extra::default()).await
}

/// # `GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled`
async fn get_enabled_route(
    State(s): State<AppState>,
    auth: Authed,
    Path((kind, id)): Path<(String, String)>,
) -> ApiResult<RawJson> {
    rules(&s, auth, "get_enabled", &kind, &id, Extra::default()).await
}

/// # `PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled`
async fn set_enabled_route(
    State(s): State<AppState>,
    auth: Authed,
    Path((kind, id)): Path<(String, String)>,
    obj: JsonObject,
) -> ApiResult<RawJson> {
    rules(&s, auth, "set_enabled", &kind, &id, Extra { body: body(obj), ..Default::default() }).await
}

/// # `GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions`
async fn get_actions_route(
    State(s): State<AppState>,
    auth: Authed,
    Path((kind, id)): Path<(String, String)>,
) -> ApiResult<RawJson> {
    rules(&s, auth, "get_actions", &kind, &id, Extra::default()).await
}

/// # `PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions`
async fn set_actions_route(
    State(s): State<AppState>,
    auth: Authed,
    Path((kind, id)): Path<(String, String)>,
    obj: JsonObject,
) -> ApiResult<RawJson> {
    rules(&s, auth, "set_actions", &kind, &id, Extra { body: body(obj), ..Default::default() }).await
}

/// # `GET /_matrix/client/v3/pushers`
async fn get_pushers_route(State(s): State<AppState>, auth: Authed) -> ApiResult<RawJson> {
    let req =
        PushersRequest { requester: auth.user_id.clone(), user_id: auth.user_id, body_json: None, device_id: None };
    Ok(RawJson(s.services.sync.pushers(req).await?.body_json))
}

/// # `POST /_matrix/client/v3/pushers/set`
async fn set_pusher_route(State(s): State<AppState>, auth: Authed, obj: JsonObject) -> ApiResult<RawJson> {
    let req = PushersRequest {
        requester: auth.user_id.clone(),
        user_id: auth.user_id,
        body_json: Some(body(obj)),
        device_id: Some(auth.device_id),
    };
    Ok(RawJson(s.services.sync.pushers(req).await?.body_json))
}

/// # `GET /_matrix/client/v3/notifications`
async fn notifications_route(
    State(s): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<get_notifications::v3::Request>,
) -> ApiResult<RawJson> {
    let req = NotificationsRequest {
        requester: auth.user_id.clone(),
        user_id: auth.user_id,
        from: req.from.unwrap_or_default(),
        limit: req.limit.map_or(0, |l| u32::try_from(u64::from(l)).unwrap_or(u32::MAX)),
        only_highlight: req.only.as_deref() == Some("highlight"),
    };
    Ok(RawJson(s.services.sync.notifications(req).await?.body_json))
}
