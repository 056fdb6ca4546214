//! Events: sending (idempotent `PUT`, and the legacy `POST`), redaction, state (read and
//! write, with or without a state key), history (`/messages`), one event, its context, and the event nearest a time.

use axum::{
    Json, Router,
    extract::{RawPathParams, State},
    http::Uri,
    routing::{get, post},
};
use ruma::api::{
    Direction,
    client::{
        context::get_context,
        message::{get_message_events, send_message_event},
        redact::redact_event,
        room::{get_event_by_timestamp, get_room_event},
        state::get_state_events,
    },
};
use serde::Deserialize;
use serde_json::{Value, json, value::RawValue};
use trellis_core::ratelimit::Action;
use trellis_proto::rooms::{
    GetContextRequest, GetEventRequest, GetMessagesRequest, GetStateEventRequest, GetStateRequest, RedactRequest,
    SendEventRequest, TimestampToEventRequest,
};

use super::{RawJson, param, query, raw_events};
use crate::{
    AppState,
    error::ApiResult,
    extract::{Authed, JsonObject, Ruma},
    router::RumaRoutes,
};

/// Prefixes under which the legacy and state paths live (ruma does not model these forms).
const PREFIXES: &[&str] = &["/_matrix/client/r0", "/_matrix/client/v3"];

pub fn routes() -> Router<AppState> {
    let mut router = Router::new()
        .ruma::<send_message_event::v3::Request, _, _>(send_route)
        .ruma::<get_state_events::v3::Request, _, _>(get_state_route)
        .ruma::<get_message_events::v3::Request, _, _>(messages_route)
        .ruma::<redact_event::v3::Request, _, _>(redact_route)
        .ruma::<get_room_event::v3::Request, _, _>(event_route)
        .ruma::<get_context::v3::Request, _, _>(context_route)
        .ruma::<get_event_by_timestamp::v1::Request, _, _>(timestamp_route);
    for prefix in PREFIXES {
        router = router.route(&format!("{prefix}/rooms/{{room_id}}/send/{{event_type}}"), post(legacy_send_route));
        // A state key may be empty: the path then ends after the type, with or without `/`.
        for key in ["/{state_key}", "", "/"] {
            router = router.route(
                &format!("{prefix}/rooms/{{room_id}}/state/{{event_type}}{key}"),
                get(get_state_event_route).put(put_state_route),
            );
        }
    }
    router
}

/// # `PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}`
async fn send_route(
    State(s): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<send_message_event::v3::Request>,
) -> ApiResult<Json<Value>> {
    let (room_id, event_type) = (req.room_id.to_string(), req.event_type.to_string());
    send(&s, auth, room_id, event_type, None, req.body.json().get().to_owned(), Some(req.txn_id.to_string())).await
}

/// Sends one event and answers with its ID.
async fn send(
    s: &AppState,
    auth: Authed,
    room_id: String,
    event_type: String,
    state_key: Option<String>,
    content_json: String,
    txn_id: Option<String>,
) -> ApiResult<Json<Value>> {
    s.limit(Action::Message, &auth.user_id).await?;
    let req = SendEventRequest {
        sender: auth.user_id,
        device_id: auth.device_id,
        room_id,
        event_type,
        state_key,
        content_json,
        txn_id,
    };
    let resp = s.services.rooms.send_event(req).await?;
    Ok(Json(json!({ "event_id": resp.event_id })))
}

/// # `POST /_matrix/client/v3/rooms/{roomId}/send/{eventType}`
///
/// The form of the oldest tutorials: no transaction ID, so no idempotency.
async fn legacy_send_route(
    State(s): State<AppState>,
    auth: Authed,
    params: RawPathParams,
    JsonObject(content): JsonObject,
) -> ApiResult<Json<Value>> {
    let (room_id, event_type) = (param(&params, "room_id")?, param(&params, "event_type")?);
    send(&s, auth, room_id, event_type, None, Value::Object(content).to_string(), None).await
}

/// # `PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}`
async fn put_state_route(
    State(s): State<AppState>,
    auth: Authed,
    params: RawPathParams,
    JsonObject(content): JsonObject,
) -> ApiResult<Json<Value>> {
    let state_key = Some(param(&params, "state_key").unwrap_or_default());
    let (room_id, event_type) = (param(&params, "room_id")?, param(&params, "event_type")?);
    send(&s, auth, room_id, event_type, state_key, Value::Object(content).to_string(), None).await
}

#[derive(Deserialize, Default)]
struct StateQuery {
    format: Option<String>,
}

/// # `GET /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}`
async fn get_state_event_route(
    State(s): State<AppState>,
    auth: Authed,
    params: RawPathParams,
    uri: Uri,
) -> ApiResult<RawJson> {
    let q: StateQuery = query(&uri)?;
    let resp = s
        .services
        .rooms
        .get_state_event(GetStateEventRequest {
            user_id: auth.user_id,
            room_id: param(&params, "room_id")?,
            event_type: param(&params, "event_type")?,
            state_key: param(&params, "state_key").unwrap_or_default(),
        })
        .await?;
    Ok(RawJson(if q.format.as_deref() == Some("event") { resp.event_json } else { resp.content_json }))
}

/// # `GET /_matrix/client/v3/rooms/{roomId}/state`
async fn get_state_route(
    State(s): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<get_state_events::v3::Request>,
) -> ApiResult<Json<Value>> {
    let resp =
        s.services.rooms.get_state(GetStateRequest { user_id: auth.user_id, room_id: req.room_id.to_string() }).await?;
    Ok(Json(serde_json::to_value(raw_events(resp.events_json)?)?))
}

/// # `GET /_matrix/client/v3/rooms/{roomId}/messages`
async fn messages_route(
    State(s): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<get_message_events::v3::Request>,
) -> ApiResult<Json<Value>> {
    let filter = serde_json::to_string(&req.filter)?;
    let resp = s
        .services
        .rooms
        .get_messages(GetMessagesRequest {
            user_id: auth.user_id,
            device_id: auth.device_id,
            room_id: req.room_id.to_string(),
            from: req.from,
            to: req.to,
            backwards: req.dir == Direction::Backward,
            limit: u64::from(req.limit).min(u64::from(u32::MAX)) as u32,
            filter_json: Some(filter),
        })
        .await?;
    let mut out = json!({
        "chunk": raw_events(resp.chunk_json)?,
        "start": resp.start,
    });
    if let Some(end) = resp.end {
        out["end"] = json!(end);
    }
    if !resp.state_json.is_empty() {
        out["state"] = serde_json::to_value(raw_events(resp.state_json)?)?;
    }
    Ok(Json(out))
}

/// # `PUT /_matrix/client/v3/rooms/{roomId}/redact/{eventId}/{txnId}`
async fn redact_route(
    State(s): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<redact_event::v3::Request>,
) -> ApiResult<Json<Value>> {
    let resp = s
        .services
        .rooms
        .redact(RedactRequest {
            sender: auth.user_id,
            device_id: auth.device_id,
            room_id: req.room_id.to_string(),
            event_id: req.event_id.to_string(),
            txn_id: Some(req.txn_id.to_string()),
            reason: req.reason,
        })
        .await?;
    Ok(Json(json!({ "event_id": resp.event_id })))
}

/// # `GET /_matrix/client/v3/rooms/{roomId}/event/{eventId}`
async fn event_route(
    State(s): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<get_room_event::v3::Request>,
) -> ApiResult<RawJson> {
    let resp = s
        .services
        .rooms
        .get_event(GetEventRequest {
            user_id: auth.user_id,
            device_id: auth.device_id,
            room_id: req.room_id.to_string(),
            event_id: req.event_id.to_string(),
        })
        .await?;
    Ok(RawJson(resp.event_json))
}

/// # `GET /_matrix/client/v3/rooms/{roomId}/context/{eventId}`
async fn context_route(
    State(s): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<get_context::v3::Request>,
) -> ApiResult<Json<Value>> {
    let filter = serde_json::to_string(&req.filter)?;
    let resp = s
        .services
        .rooms
        .get_context(GetContextRequest {
            user_id: auth.user_id,
            device_id: auth.device_id,
            room_id: req.room_id.to_string(),
            event_id: req.event_id.to_string(),
            limit: u64::from(req.limit).min(u64::from(u32::MAX)) as u32,
            filter_json: Some(filter),
        })
        .await?;
    Ok(Json(json!({
        "event": RawValue::from_string(resp.event_json)?,
        "events_before": raw_events(resp.events_before_json)?,
        "events_after": raw_events(resp.events_after_json)?,
        "state": raw_events(resp.state_json)?,
        "start": resp.start,
        "end": resp.end,
    })))
}

/// # `GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event`
async fn timestamp_route(
    State(s): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<get_event_by_timestamp::v1::Request>,
) -> ApiResult<Json<Value>> {
    let resp = s
        .services
        .rooms
        .timestamp_to_event(TimestampToEventRequest {
            user_id: auth.user_id,
            room_id: req.room_id.to_string(),
            ts: i64::from(req.ts.get()),
            forward: req.dir == Direction::Forward,
        })
        .await?;
    Ok(Json(json!({ "event_id": resp.event_id, "origin_server_ts": resp.origin_server_ts })))
}
