//! Simplified Sliding Sync (MSC4186): `POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync`,
//! ruma's v5 request in, one call to a sync worker, ruma's v5 response out.

use std::collections::BTreeMap;

use axum::Router;
use ruma::{
    OwnedRoomId,
    api::client::sync::sync_events::v5::{self, request, response},
    directory::RoomTypeFilter,
    presence::PresenceState,
};
use serde::Deserialize;
use serde_json::Value;
use trellis_core::Error;
use trellis_proto::sync::{
    SlidingExtensions, SlidingFilters, SlidingList, SlidingNames, SlidingRange, SlidingRoomConfig, SlidingScoped,
    SlidingStateKey, SlidingSyncRequest, SlidingToDevice,
};

use crate::{
    AppState,
    error::{ApiError, ApiResult},
    extract::{Authed, Ruma},
    router::RumaRoutes,
};

pub fn routes() -> Router<AppState> {
    Router::new().ruma(sliding_sync_route)
}

/// # `POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync`
async fn sliding_sync_route(s: AppState, req: Ruma<v5::Request>) -> ApiResult<v5::Response> {
    // ruma's list filters have no `spaces`: read them from the body as sent, and only them
    // (a shape ruma accepted but this does not read is no spaces).
    let sent: SentLists = serde_json::from_slice(&req.json).unwrap_or_default();
    let mut wire = wire_request(req.user, req.body);
    for (name, list) in wire.lists.iter_mut() {
        let spaces = sent.lists.get(name).and_then(|l| l.filters.as_ref()).and_then(|f| f.spaces.as_ref());
        if let (Some(filters), Some(spaces)) = (list.filters.as_mut(), spaces.and_then(Value::as_array)) {
            filters.spaces = spaces.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect();
        }
    }
    let body = s.services.sync.sliding_sync(wire).await?;
    let body: Body = serde_json::from_str(&body.body_json)
        .map_err(|e| ApiError(Error::internal(format!("sliding sync body from the worker: {e}"))))?;
    let mut out = v5::Response::new(body.pos);
    out.txn_id = body.txn_id;
    out.lists = body.lists;
    out.rooms = body.rooms;
    out.extensions = body.extensions;
    Ok(out)
}

/// The lists of the request body as sent, with nothing but each one's `filters.spaces`.
#[derive(Deserialize, Default)]
struct SentLists {
    #[serde(default)]
    lists: BTreeMap<String, SentList>,
}

#[derive(Deserialize)]
struct SentList {
    #[serde(default)]
    filters: Option<SentFilters>,
}

#[derive(Deserialize)]
struct SentFilters {
    #[serde(default)]
    spaces: Option<Value>,
}

/// The worker's rendering of the response body.
#[derive(Deserialize)]
struct Body {
    txn_id: Option<String>,
    pos: String,
    #[serde(default)]
    lists: BTreeMap<String, response::List>,
    #[serde(default)]
    rooms: BTreeMap<OwnedRoomId, response::Room>,
    #[serde(default)]
    extensions: response::Extensions,
}

fn wire_request(auth: Authed, req: v5::Request) -> SlidingSyncRequest {
    let presence = match req.set_presence {
        PresenceState::Offline => "offline",
        PresenceState::Unavailable => "unavailable",
        _ => "",
    };
    let ext = req.extensions;
    let scoped =
        |enabled: Option<bool>, lists: Option<Vec<String>>, rooms: Option<Vec<request::ExtensionRoomConfig>>| {
            SlidingScoped {
                enabled,
                lists: lists.map(|names| SlidingNames { names }),
                rooms: rooms.map(|rooms| SlidingNames {
                    names: rooms
                        .into_iter()
                        .map(|r| match r {
                            request::ExtensionRoomConfig::Room(id) => id.to_string(),
                            _ => "*".to_owned(),
                        })
                        .collect(),
                }),
            }
        };
    SlidingSyncRequest {
        user_id: auth.user_id,
        device_id: auth.device_id,
        pos: req.pos,
        conn_id: req.conn_id.unwrap_or_default(),
        txn_id: req.txn_id,
        // No timeout: answer at once (the worker caps long waits anyway).
        timeout_ms: req.timeout.map_or(0, |t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
        set_presence: presence.to_owned(),
        lists: req
            .lists
            .into_iter()
            .map(|(name, l)| {
                let list = SlidingList {
                    ranges: l
                        .ranges
                        .iter()
                        .map(|(a, b)| SlidingRange { start: (*a).into(), end: (*b).into() })
                        .collect(),
                    config: Some(room_config(&l.room_details.required_state, l.room_details.timeline_limit)),
                    filters: l.filters.map(|f| SlidingFilters {
                        is_dm: f.is_dm,
                        is_encrypted: f.is_encrypted,
                        is_invite: f.is_invite,
                        room_types: room_types(&f.room_types),
                        not_room_types: room_types(&f.not_room_types),
                        spaces: Vec::new(),
                    }),
                };
                (name, list)
            })
            .collect(),
        room_subscriptions: req
            .room_subscriptions
            .into_iter()
            .map(|(room, sub)| (room.to_string(), room_config(&sub.required_state, sub.timeline_limit)))
            .collect(),
        extensions: Some(SlidingExtensions {
            to_device: Some(SlidingToDevice {
                enabled: ext.to_device.enabled,
                since: ext.to_device.since,
                limit: ext.to_device.limit.map(crate::client::small),
            }),
            e2ee: ext.e2ee.enabled,
            account_data: Some(scoped(ext.account_data.enabled, ext.account_data.lists, ext.account_data.rooms)),
            receipts: Some(scoped(ext.receipts.enabled, ext.receipts.lists, ext.receipts.rooms)),
            typing: Some(scoped(ext.typing.enabled, ext.typing.lists, ext.typing.rooms)),
        }),
    }
}

fn room_config(required: &[(ruma::events::StateEventType, String)], timeline_limit: ruma::UInt) -> SlidingRoomConfig {
    SlidingRoomConfig {
        required_state: required
            .iter()
            .map(|(t, k)| SlidingStateKey { event_type: t.to_string(), state_key: k.clone() })
            .collect(),
        timeline_limit: timeline_limit.into(),
    }
}

fn room_types(types: &[RoomTypeFilter]) -> Vec<String> {
    types.iter().map(|t| t.as_str().unwrap_or_default().to_owned()).collect()
}
