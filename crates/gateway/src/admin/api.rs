//! Request and response types of the Synapse admin API endpoints served under
//! `/_synapse/admin` (users, devices, sessions). ruma has no types for Synapse's admin API,
//! so these are the smallest ones that carry Synapse's documented paths and shapes, made
//! with ruma's own `request`/`response` macros so they parse and answer like every other
//! endpoint.

use ruma::{
    OwnedDeviceId, OwnedRoomId, OwnedUserId,
    api::{
        auth_scheme::{AccessToken, NoAuthentication},
        metadata, request, response,
    },
};
use serde::{Deserialize, Serialize};

/// An account in a list (Synapse's `List Accounts` entry; `creation_ts` in milliseconds).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ListedUser {
    pub name: String,
    pub user_type: Option<String>,
    pub is_guest: bool,
    pub admin: bool,
    pub deactivated: bool,
    pub erased: bool,
    pub shadow_banned: bool,
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
    pub creation_ts: i64,
    pub approved: bool,
    pub locked: bool,
    pub last_seen_ts: Option<i64>,
}

/// Defines a list-users endpoint on `$path`; v2 and v3 differ only in what `deactivated` means.
macro_rules! list_users {
    ($module:ident, $path:literal) => {
        pub mod $module {
            use super::*;

            metadata! { method: GET, rate_limited: false, authentication: AccessToken, path: $path }

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
                pub user_id: Option<String>,
                #[ruma_api(query)]
                #[serde(default)]
                pub name: Option<String>,
                #[ruma_api(query)]
                #[serde(default)]
                pub guests: Option<bool>,
                #[ruma_api(query)]
                #[serde(default)]
                pub deactivated: Option<bool>,
                #[ruma_api(query)]
                #[serde(default)]
                pub admins: Option<bool>,
                #[ruma_api(query)]
                #[serde(default)]
                pub order_by: Option<String>,
                #[ruma_api(query)]
                #[serde(default)]
                pub dir: Option<String>,
            }

            #[response]
            pub struct Response {
                pub users: Vec<ListedUser>,
                /// The `from` of the next page; absent on the last one.
                #[serde(skip_serializing_if = "Option::is_none")]
                pub next_token: Option<String>,
                pub total: i64,
            }
        }
    };
}

list_users!(list_users_v2, "/_synapse/admin/v2/users");
list_users!(list_users_v3, "/_synapse/admin/v3/users");

/// One account in detail (Synapse's `Query User Account`; `creation_ts` in seconds).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UserDetails {
    pub name: String,
    pub displayname: Option<String>,
    pub threepids: Vec<serde_json::Value>,
    pub avatar_url: Option<String>,
    pub is_guest: bool,
    pub admin: bool,
    pub deactivated: bool,
    pub erased: bool,
    pub shadow_banned: bool,
    pub creation_ts: i64,
    pub appservice_id: Option<String>,
    pub consent_server_notice_sent: Option<String>,
    pub consent_version: Option<String>,
    pub consent_ts: Option<i64>,
    pub external_ids: Vec<serde_json::Value>,
    pub user_type: Option<String>,
    pub locked: bool,
    pub suspended: bool,
    pub last_seen_ts: Option<i64>,
}

pub mod get_user {
    use super::*;

    metadata! { method: GET, rate_limited: false, authentication: AccessToken, path: "/_synapse/admin/v2/users/{user_id}" }

    #[request]
    pub struct Request {
        #[ruma_api(path)]
        pub user_id: OwnedUserId,
    }

    #[response]
    pub struct Response {
        #[ruma_api(body)]
        pub user: UserDetails,
    }
}

pub mod put_user {
    use super::*;

    metadata! { method: PUT, rate_limited: false, authentication: AccessToken, path: "/_synapse/admin/v2/users/{user_id}" }

    /// Synapse's `threepids`, `external_ids`, `user_type` and `approved` are accepted and not
    /// kept: this server has none of them.
    #[request]
    pub struct Request {
        #[ruma_api(path)]
        pub user_id: OwnedUserId,
        #[serde(default)]
        pub password: Option<String>,
        #[serde(default)]
        pub logout_devices: Option<bool>,
        #[serde(default)]
        pub displayname: Option<String>,
        #[serde(default)]
        pub avatar_url: Option<String>,
        #[serde(default)]
        pub admin: Option<bool>,
        #[serde(default)]
        pub deactivated: Option<bool>,
        #[serde(default)]
        pub locked: Option<bool>,
    }

    /// 201 when the account was created (see the handler), 200 when modified.
    #[response]
    pub struct Response {
        #[ruma_api(body)]
        pub user: UserDetails,
    }
}

/// Defines an endpoint on one user (`{user_id}` in the path): its body's fields, its answer's.
macro_rules! user_endpoint {
    ($module:ident, $method:ident, $path:literal, { $($(#[$attr:meta])* $field:ident: $ty:ty),* }, { $($(#[$rattr:meta])* $rfield:ident: $rty:ty),* }) => {
        pub mod $module {
            use super::*;

            metadata! { method: $method, rate_limited: false, authentication: AccessToken, path: $path }

            #[request]
            pub struct Request {
                #[ruma_api(path)]
                pub user_id: OwnedUserId,
                $( $(#[$attr])* pub $field: $ty, )*
            }

            #[response]
            pub struct Response {
                $( $(#[$rattr])* pub $rfield: $rty, )*
            }
        }
    };
}

user_endpoint!(deactivate, POST, "/_synapse/admin/v1/deactivate/{user_id}",
    { #[serde(default)] erase: bool }, { id_server_unbind_result: String });
user_endpoint!(reset_password, POST, "/_synapse/admin/v1/reset_password/{user_id}",
    { new_password: String, #[serde(default)] logout_devices: Option<bool> }, {});
user_endpoint!(joined_rooms, GET, "/_synapse/admin/v1/users/{user_id}/joined_rooms",
    {}, { joined_rooms: Vec<OwnedRoomId>, total: usize });
user_endpoint!(login_as, POST, "/_synapse/admin/v1/users/{user_id}/login",
    { #[serde(default)] valid_until_ms: Option<i64> }, { access_token: String });
user_endpoint!(get_admin, GET, "/_synapse/admin/v1/users/{user_id}/admin", {}, { admin: bool });
user_endpoint!(set_admin, PUT, "/_synapse/admin/v1/users/{user_id}/admin", { admin: bool }, {});
user_endpoint!(list_devices, GET, "/_synapse/admin/v2/users/{user_id}/devices",
    {}, { devices: Vec<AdminDevice>, total: usize });
user_endpoint!(delete_devices, POST, "/_synapse/admin/v2/users/{user_id}/delete_devices",
    { devices: Vec<OwnedDeviceId> }, {});
user_endpoint!(shadow_ban, POST, "/_synapse/admin/v1/users/{user_id}/shadow_ban", {}, {});
user_endpoint!(unshadow_ban, DELETE, "/_synapse/admin/v1/users/{user_id}/shadow_ban", {}, {});
// `override_ratelimit`: `GET` shows both counts, or `{}` when the user has none. `POST` takes
// each count as any JSON value, checked by hand (Synapse answers `M_INVALID_PARAM` for a value
// that is not a whole number of at least 0, whatever its JSON type).
user_endpoint!(get_ratelimit, GET, "/_synapse/admin/v1/users/{user_id}/override_ratelimit", {}, {
    #[serde(skip_serializing_if = "Option::is_none")] messages_per_second: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")] burst_count: Option<i64> });
user_endpoint!(set_ratelimit, POST, "/_synapse/admin/v1/users/{user_id}/override_ratelimit", {
    #[serde(default)] messages_per_second: Option<serde_json::Value>,
    #[serde(default)] burst_count: Option<serde_json::Value> }, { messages_per_second: i64, burst_count: i64 });
user_endpoint!(delete_ratelimit, DELETE, "/_synapse/admin/v1/users/{user_id}/override_ratelimit", {}, {});

/// A device as the admin API lists it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AdminDevice {
    pub device_id: String,
    pub display_name: Option<String>,
    pub last_seen_ip: Option<String>,
    pub last_seen_ts: Option<i64>,
    pub last_seen_user_agent: Option<String>,
    pub user_id: String,
}

pub mod delete_device {
    use super::*;

    metadata! {
        method: DELETE, rate_limited: false, authentication: AccessToken,
        path: "/_synapse/admin/v2/users/{user_id}/devices/{device_id}"
    }

    #[request]
    pub struct Request {
        #[ruma_api(path)]
        pub user_id: OwnedUserId,
        #[ruma_api(path)]
        pub device_id: OwnedDeviceId,
    }

    #[response]
    pub struct Response {}
}

pub mod server_version {
    use super::*;

    // As Synapse: open to anyone, like `/_matrix/client/versions`.
    metadata! { method: GET, rate_limited: false, authentication: NoAuthentication, path: "/_synapse/admin/v1/server_version" }

    #[request]
    pub struct Request {}

    #[response]
    pub struct Response {
        pub server_version: String,
    }
}
