//! Request and response types of the Synapse admin API's rooms and event reports
//! (`/_synapse/admin/v1/rooms...`, `/v2/rooms...`, `/v1/event_reports...`), in Synapse's
//! documented paths and shapes, made with ruma's `request`/`response` macros.

use ruma::{
    OwnedRoomId, OwnedRoomOrAliasId,
    api::{auth_scheme::AccessToken, metadata, request, response},
    events::AnyStateEvent,
    serde::Raw,
};
use serde::{Deserialize, Serialize};

/// A room in the list (Synapse's `List Room` entry).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ListedRoom {
    pub room_id: String,
    pub name: Option<String>,
    pub canonical_alias: Option<String>,
    pub joined_members: i64,
    pub joined_local_members: i64,
    pub version: String,
    pub creator: Option<String>,
    pub encryption: Option<String>,
    pub federatable: bool,
    pub public: bool,
    pub join_rules: Option<String>,
    pub guest_access: Option<String>,
    pub history_visibility: Option<String>,
    pub state_events: i64,
    pub room_type: Option<String>,
}

/// One room in detail: the list's fields and a few more.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RoomDetails {
    #[serde(flatten)]
    pub room: ListedRoom,
    pub avatar: Option<String>,
    pub topic: Option<String>,
    pub joined_local_devices: i64,
    pub forgotten: bool,
}

pub mod list_rooms {
    use super::*;

    metadata! { method: GET, rate_limited: false, authentication: AccessToken, path: "/_synapse/admin/v1/rooms" }

    #[request]
    #[derive(Default)]
    pub struct Request {
        #[ruma_api(query)]
        #[serde(default)]
        pub from: Option<i64>,
        #[ruma_api(query)]
        #[serde(default)]
        pub limit: Option<i64>,
        #[ruma_api(query)]
        #[serde(default)]
        pub order_by: Option<String>,
        #[ruma_api(query)]
        #[serde(default)]
        pub dir: Option<String>,
        #[ruma_api(query)]
        #[serde(default)]
        pub search_term: Option<String>,
    }

    #[response]
    pub struct Response {
        pub rooms: Vec<ListedRoom>,
        pub offset: i64,
        pub total_rooms: i64,
        /// The `from` of the next page; absent on the last one.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub next_batch: Option<i64>,
        /// The `from` of the previous page; absent on the first one.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub prev_batch: Option<i64>,
    }
}

pub mod room_details {
    use super::*;

    metadata! { method: GET, rate_limited: false, authentication: AccessToken, path: "/_synapse/admin/v1/rooms/{room_id}" }

    #[request]
    pub struct Request {
        #[ruma_api(path)]
        pub room_id: OwnedRoomId,
    }

    #[response]
    pub struct Response {
        #[ruma_api(body)]
        pub room: RoomDetails,
    }
}

/// Defines an endpoint on one room (`{room_id}` in the path): its body's fields, its answer's.
macro_rules! room_endpoint {
    ($module:ident, $method:ident, $path:literal, { $($(#[$attr:meta])* $field:ident: $ty:ty),* }, { $($(#[$rattr:meta])* $rfield:ident: $rty:ty),* }) => {
        pub mod $module {
            use super::*;

            metadata! { method: $method, rate_limited: false, authentication: AccessToken, path: $path }

            #[request]
            pub struct Request {
                #[ruma_api(path)]
                pub room_id: OwnedRoomId,
                $( $(#[$attr])* pub $field: $ty, )*
            }

            #[response]
            pub struct Response {
                $( $(#[$rattr])* pub $rfield: $rty, )*
            }
        }
    };
}

room_endpoint!(members, GET, "/_synapse/admin/v1/rooms/{room_id}/members", {}, { members: Vec<String>, total: usize });
room_endpoint!(state, GET, "/_synapse/admin/v1/rooms/{room_id}/state", {}, { state: Vec<Raw<AnyStateEvent>> });
room_endpoint!(get_block, GET, "/_synapse/admin/v1/rooms/{room_id}/block", {},
    { block: bool, #[serde(skip_serializing_if = "Option::is_none")] user_id: Option<String> });
room_endpoint!(set_block, PUT, "/_synapse/admin/v1/rooms/{room_id}/block", { block: bool }, { block: bool });
room_endpoint!(delete_room_v2, DELETE, "/_synapse/admin/v2/rooms/{room_id}",
    {
        #[serde(default)] new_room_user_id: Option<String>,
        #[serde(default)] room_name: Option<String>,
        #[serde(default)] message: Option<String>,
        #[serde(default)] block: bool,
        #[serde(default)] purge: Option<bool>,
        #[serde(default)] force_purge: bool
    },
    { delete_id: String });
room_endpoint!(delete_room_v1, DELETE, "/_synapse/admin/v1/rooms/{room_id}",
{
    #[serde(default)] new_room_user_id: Option<String>,
    #[serde(default)] room_name: Option<String>,
    #[serde(default)] message: Option<String>,
    #[serde(default)] block: bool,
    #[serde(default)] purge: Option<bool>,
    #[serde(default)] force_purge: bool
},
{
    kicked_users: Vec<String>,
    failed_to_kick_users: Vec<String>,
    local_aliases: Vec<String>,
    new_room_id: Option<String>
});
room_endpoint!(room_delete_status, GET, "/_synapse/admin/v2/rooms/{room_id}/delete_status", {},
    { results: Vec<DeleteStatus> });

/// What a deletion did to the room's members and aliases.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ShutdownRoom {
    pub kicked_users: Vec<String>,
    pub failed_to_kick_users: Vec<String>,
    pub local_aliases: Vec<String>,
    pub new_room_id: Option<String>,
}

/// A deletion's status (`delete_id` only in a room's list).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeleteStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delete_id: Option<String>,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub shutdown_room: ShutdownRoom,
}

pub mod delete_status {
    use super::*;

    metadata! {
        method: GET, rate_limited: false, authentication: AccessToken,
        path: "/_synapse/admin/v2/rooms/delete_status/{delete_id}"
    }

    #[request]
    pub struct Request {
        #[ruma_api(path)]
        pub delete_id: String,
    }

    #[response]
    pub struct Response {
        #[ruma_api(body)]
        pub status: DeleteStatus,
    }
}

pub mod make_room_admin {
    use super::*;

    metadata! {
        method: POST, rate_limited: false, authentication: AccessToken,
        path: "/_synapse/admin/v1/rooms/{room_id_or_alias}/make_room_admin"
    }

    #[request]
    pub struct Request {
        #[ruma_api(path)]
        pub room_id_or_alias: OwnedRoomOrAliasId,
        /// The local user to raise; the requester when left out.
        #[serde(default)]
        pub user_id: Option<String>,
    }

    #[response]
    pub struct Response {}
}

/// An event report (Synapse's `Show reported events` entry).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EventReport {
    pub id: i64,
    pub received_ts: i64,
    pub room_id: String,
    pub name: Option<String>,
    pub event_id: String,
    pub user_id: String,
    pub reason: Option<String>,
    pub score: Option<i64>,
    pub sender: Option<String>,
    pub canonical_alias: Option<String>,
}

pub mod list_event_reports {
    use super::*;

    metadata! { method: GET, rate_limited: false, authentication: AccessToken, path: "/_synapse/admin/v1/event_reports" }

    #[request]
    #[derive(Default)]
    pub struct Request {
        #[ruma_api(query)]
        #[serde(default)]
        pub from: Option<i64>,
        #[ruma_api(query)]
        #[serde(default)]
        pub limit: Option<i64>,
        #[ruma_api(query)]
        #[serde(default)]
        pub dir: Option<String>,
        #[ruma_api(query)]
        #[serde(default)]
        pub room_id: Option<String>,
        #[ruma_api(query)]
        #[serde(default)]
        pub user_id: Option<String>,
    }

    #[response]
    pub struct Response {
        pub event_reports: Vec<EventReport>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub next_token: Option<i64>,
        pub total: i64,
    }
}

/// Defines an endpoint on one report (`{report_id}` in the path, checked by the handler).
macro_rules! report_endpoint {
    ($module:ident, $method:ident, { $($(#[$rattr:meta])* $rfield:ident: $rty:ty),* }) => {
        pub mod $module {
            use super::*;

            metadata! {
                method: $method, rate_limited: false, authentication: AccessToken,
                path: "/_synapse/admin/v1/event_reports/{report_id}"
            }

            #[request]
            pub struct Request {
                #[ruma_api(path)]
                pub report_id: String,
            }

            #[response]
            pub struct Response {
                $( $(#[$rattr])* pub $rfield: $rty, )*
            }
        }
    };
}

report_endpoint!(event_report, GET, {
    #[serde(flatten)] report: EventReport,
    event_json: Option<Raw<ruma::events::AnyTimelineEvent>>
});
report_endpoint!(delete_event_report, DELETE, {});
