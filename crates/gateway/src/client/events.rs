//! Events: sending (idempotent `PUT`, and the legacy `POST`), redaction, state (read and
//! write, with or without a state key), history (`/messages`), one event, its context, and
//! the event nearest a time.

use axum::{
    Router,
    extract::{RawPathParams, State},
    response::Response,
    routing::post,
};
use ruma::{
    MilliSecondsSinceUnixEpoch, UInt,
    api::{
        Direction,
        client::{
            context::get_context,
            message::{get_message_events, send_message_event},
            redact::redact_event,
            room::{get_event_by_timestamp, get_room_event},
            state::{
                get_state_event_for_key::{self, v3::StateEventFormat},
                get_state_events, send_state_event,
            },
        },
    },
};
use serde::Serialize;
use serde_json::value::RawValue;
use trellis_core::ratelimit::Action;
use trellis_proto::rooms::{
    GetContextRequest, GetEventRequest, GetMessagesRequest, GetStateEventRequest, GetStateRequest, RedactRequest,
    SendEventRequest, TimestampToEventRequest,
};

use super::{param, raw, raw_list, small, stored_id};
use crate::{
    AppState,
    error::ApiResult,
    extract::{Authed, JsonObject, Ruma},
    response::{Rendered, Reply},
    router::{RumaRoutes, paths_of},
};

pub fn routes() -> Router<AppState> {
    // A state key may be empty: the path then ends after the type, with or without `/`
    // (clients and tutorials send `PUT /state/m.room.name` for the empty key, and Synapse
    // serves it); the missing parameter reads as empty.
    let with_empty_key = |paths: Vec<String>| -> Vec<String> {
        paths
            .iter()
            .flat_map(|p| {
                let short = p.trim_end_matches("/{state_key}");
                [p.clone(), short.to_owned(), format!("{short}/")]
            })
            .collect()
    };
    let mut router = Router::new()
        .ruma(send_message_event_route)
        .ruma(get_state_events_route)
        .ruma(get_message_events_route)
        .ruma(redact_event_route)
        .ruma(get_room_event_route)
        .ruma(get_context_route)
        .ruma(get_event_by_timestamp_route)
        .ruma_on(with_empty_key(paths_of::<get_state_event_for_key::v3::Request>()), get_state_event_for_key_route)
        .ruma_on(with_empty_key(paths_of::<send_state_event::v3::Request>()), send_state_event_route);
    // The oldest tutorials `POST` a message without a transaction ID (see the README); ruma
    // has no such endpoint.
    for prefix in ["/_matrix/client/r0", "/_matrix/client/v3"] {
        router = router.route(&format!("{prefix}/rooms/{{room_id}}/send/{{event_type}}"), post(legacy_send_route));
    }
    router
}

/// Sends one event; answers with its ID.
async fn send(
    s: &AppState,
    auth: Authed,
    (room_id, event_type, state_key): (String, String, Option<String>),
    content_json: String,
    txn_id: Option<String>,
    ts: Option<ruma::MilliSecondsSinceUnixEpoch>,
) -> ApiResult<ruma::OwnedEventId> {
    auth.not_suspended()?;
    // `?ts=` is an application service's to give (the time the event happened on its side).
    let origin_server_ts = ts.filter(|_| auth.appservice_id.is_some()).map(|t| i64::from(t.get()));
    s.limit_user(Action::Message, &auth).await?;
    if auth.shadow_banned {
        // Shadow-banned: the event seems sent and is not.
        return super::fake_event_id();
    }
    let req = SendEventRequest {
        sender: auth.user_id,
        device_id: auth.device_id,
        room_id,
        event_type,
        state_key,
        content_json,
        txn_id,
        origin_server_ts,
    };
    stored_id(s.services.rooms.send_event(req).await?.event_id)
}

/// # `PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}`
async fn send_message_event_route(
    s: AppState,
    req: Ruma<send_message_event::v3::Request>,
) -> ApiResult<send_message_event::v3::Response> {
    let (room_id, event_type) = (req.body.room_id.to_string(), req.body.event_type.to_string());
    let (content, txn_id) = (req.body.body.json().get().to_owned(), Some(req.body.txn_id.to_string()));
    let ts = req.body.timestamp;
    let event_id = send(&s, req.user, (room_id, event_type, None), content, txn_id, ts).await?;
    Ok(send_message_event::v3::Response::new(event_id))
}

/// # `POST /_matrix/client/v3/rooms/{roomId}/send/{eventType}`
///
/// The form of the oldest tutorials: no transaction ID, so no idempotency.
async fn legacy_send_route(
    State(s): State<AppState>,
    auth: Authed,
    params: RawPathParams,
    JsonObject(content): JsonObject,
) -> ApiResult<Response> {
    let target = (param(&params, "room_id")?, param(&params, "event_type")?, None);
    let event_id = send(&s, auth, target, serde_json::Value::Object(content).to_string(), None, None).await?;
    Ok(send_message_event::v3::Response::new(event_id).into_answer())
}

/// # `PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}`
async fn send_state_event_route(
    s: AppState,
    req: Ruma<send_state_event::v3::Request>,
) -> ApiResult<send_state_event::v3::Response> {
    let body = req.body;
    let target = (body.room_id.to_string(), body.event_type.to_string(), Some(body.state_key));
    let event_id = send(&s, req.user, target, body.body.json().get().to_owned(), None, body.timestamp).await?;
    Ok(send_state_event::v3::Response::new(event_id))
}

/// # `GET /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}`
async fn get_state_event_for_key_route(
    s: AppState,
    req: Ruma<get_state_event_for_key::v3::Request>,
) -> ApiResult<get_state_event_for_key::v3::Response> {
    let body = req.body;
    let resp = s
        .services
        .rooms
        .get_state_event(GetStateEventRequest {
            user_id: req.user.user_id,
            room_id: body.room_id.to_string(),
            event_type: body.event_type.to_string(),
            state_key: body.state_key,
        })
        .await?;
    let json = if body.format == StateEventFormat::Event { resp.event_json } else { resp.content_json };
    Ok(get_state_event_for_key::v3::Response::new(RawValue::from_string(json)?))
}

/// # `GET /_matrix/client/v3/rooms/{roomId}/state`
async fn get_state_events_route(
    s: AppState,
    req: Ruma<get_state_events::v3::Request>,
) -> ApiResult<get_state_events::v3::Response> {
    let ask = GetStateRequest { user_id: req.user.user_id, room_id: req.body.room_id.to_string() };
    let resp = s.services.rooms.get_state(ask).await?;
    Ok(get_state_events::v3::Response::new(raw_list(resp.events_json)?))
}

/// # `GET /_matrix/client/v3/rooms/{roomId}/messages`
async fn get_message_events_route(
    s: AppState,
    req: Ruma<get_message_events::v3::Request>,
) -> ApiResult<get_message_events::v3::Response> {
    let (auth, req) = (req.user, req.body);
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
            limit: small(req.limit),
            filter_json: Some(serde_json::to_string(&req.filter)?),
        })
        .await?;
    let mut out = get_message_events::v3::Response::new();
    out.start = resp.start;
    out.end = resp.end;
    out.chunk = raw_list(resp.chunk_json)?;
    out.state = raw_list(resp.state_json)?;
    Ok(out)
}

/// # `PUT /_matrix/client/v3/rooms/{roomId}/redact/{eventId}/{txnId}`
async fn redact_event_route(
    s: AppState,
    req: Ruma<redact_event::v3::Request>,
) -> ApiResult<redact_event::v3::Response> {
    let (auth, req) = (req.user, req.body);
    if auth.shadow_banned {
        return Ok(redact_event::v3::Response::new(super::fake_event_id()?));
    }
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
            // Suspended, one may still take back one's own events (the spec).
            only_own: auth.suspended,
        })
        .await?;
    Ok(redact_event::v3::Response::new(stored_id(resp.event_id)?))
}

/// # `GET /_matrix/client/v3/rooms/{roomId}/event/{eventId}`
async fn get_room_event_route(
    s: AppState,
    req: Ruma<get_room_event::v3::Request>,
) -> ApiResult<get_room_event::v3::Response> {
    let (auth, req) = (req.user, req.body);
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
    Ok(get_room_event::v3::Response::new(raw(resp.event_json)?))
}

/// # `GET /_matrix/client/v3/rooms/{roomId}/context/{eventId}`
///
/// Synapse's shape: every key, empty lists included (SyTest asserts them; ruma's type leaves
/// empty lists out).
async fn get_context_route(
    s: AppState,
    req: Ruma<get_context::v3::Request>,
) -> ApiResult<Rendered<get_context::v3::Response>> {
    #[derive(Serialize)]
    struct Context {
        event: Box<RawValue>,
        events_before: Vec<Box<RawValue>>,
        events_after: Vec<Box<RawValue>>,
        state: Vec<Box<RawValue>>,
        start: String,
        end: String,
    }
    let (auth, req) = (req.user, req.body);
    let resp = s
        .services
        .rooms
        .get_context(GetContextRequest {
            user_id: auth.user_id,
            device_id: auth.device_id,
            room_id: req.room_id.to_string(),
            event_id: req.event_id.to_string(),
            limit: small(req.limit),
            filter_json: Some(serde_json::to_string(&req.filter)?),
        })
        .await?;
    let list = |events: Vec<String>| events.into_iter().map(RawValue::from_string).collect::<Result<Vec<_>, _>>();
    Rendered::shaped(&Context {
        event: RawValue::from_string(resp.event_json)?,
        events_before: list(resp.events_before_json)?,
        events_after: list(resp.events_after_json)?,
        state: list(resp.state_json)?,
        start: resp.start,
        end: resp.end,
    })
}

/// # `GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event`
async fn get_event_by_timestamp_route(
    s: AppState,
    req: Ruma<get_event_by_timestamp::v1::Request>,
) -> ApiResult<get_event_by_timestamp::v1::Response> {
    let (auth, req) = (req.user, req.body);
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
    let ts = MilliSecondsSinceUnixEpoch(UInt::try_from(resp.origin_server_ts).unwrap_or_default());
    Ok(get_event_by_timestamp::v1::Response::new(stored_id(resp.event_id)?, ts))
}
