//! Request and response types of Synapse's media admin API (quarantine, deletion, a room's
//! and a user's media, the remote cache), in Synapse's paths and shapes, made with ruma's
//! `request`/`response` macros as the other admin types are (`api.rs`).

use ruma::{
    OwnedRoomId, OwnedServerName, OwnedUserId,
    api::{auth_scheme::AccessToken, metadata, request, response},
};
use serde::{Deserialize, Serialize};

/// Defines an endpoint on one media (`{server_name}/{media_id}` in the path).
macro_rules! media_endpoint {
    ($module:ident, $method:ident, $path:literal, { $($rfield:ident: $rty:ty),* }) => {
        pub mod $module {
            use super::*;

            metadata! { method: $method, rate_limited: false, authentication: AccessToken, path: $path }

            #[request]
            pub struct Request {
                #[ruma_api(path)]
                pub server_name: OwnedServerName,
                #[ruma_api(path)]
                pub media_id: String,
            }

            #[response]
            pub struct Response {
                $( pub $rfield: $rty, )*
            }
        }
    };
}

media_endpoint!(quarantine_media, POST, "/_synapse/admin/v1/media/quarantine/{server_name}/{media_id}", {});
media_endpoint!(unquarantine_media, POST, "/_synapse/admin/v1/media/unquarantine/{server_name}/{media_id}", {});
/// Synapse's protection takes the media ID alone (local media only).
macro_rules! local_media_endpoint {
    ($module:ident, $path:literal) => {
        pub mod $module {
            use super::*;

            metadata! { method: POST, rate_limited: false, authentication: AccessToken, path: $path }

            #[request]
            pub struct Request {
                #[ruma_api(path)]
                pub media_id: String,
            }

            #[response]
            pub struct Response {}
        }
    };
}

local_media_endpoint!(protect_media, "/_synapse/admin/v1/media/protect/{media_id}");
local_media_endpoint!(unprotect_media, "/_synapse/admin/v1/media/unprotect/{media_id}");
media_endpoint!(delete_media, DELETE, "/_synapse/admin/v1/media/{server_name}/{media_id}",
    { deleted_media: Vec<String>, total: usize });

pub mod quarantine_room_media {
    use super::*;

    metadata! {
        method: POST, rate_limited: false, authentication: AccessToken,
        path: "/_synapse/admin/v1/room/{room_id}/media/quarantine"
    }

    #[request]
    pub struct Request {
        #[ruma_api(path)]
        pub room_id: OwnedRoomId,
    }

    #[response]
    pub struct Response {
        pub num_quarantined: u64,
    }
}

pub mod room_media {
    use super::*;

    metadata! { method: GET, rate_limited: false, authentication: AccessToken, path: "/_synapse/admin/v1/room/{room_id}/media" }

    #[request]
    pub struct Request {
        #[ruma_api(path)]
        pub room_id: OwnedRoomId,
    }

    #[response]
    pub struct Response {
        pub local: Vec<String>,
        pub remote: Vec<String>,
    }
}

pub mod quarantine_user_media {
    use super::*;

    metadata! {
        method: POST, rate_limited: false, authentication: AccessToken,
        path: "/_synapse/admin/v1/user/{user_id}/media/quarantine"
    }

    #[request]
    pub struct Request {
        #[ruma_api(path)]
        pub user_id: OwnedUserId,
    }

    #[response]
    pub struct Response {
        pub num_quarantined: u64,
    }
}

/// A media in a user's list (Synapse's `List media uploaded by a user` entry).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ListedMedia {
    pub media_id: String,
    pub media_type: String,
    pub media_length: u64,
    pub upload_name: Option<String>,
    pub created_ts: i64,
    /// Downloads are not recorded here: the upload time.
    pub last_access_ts: i64,
    pub quarantined_by: Option<String>,
    pub safe_from_quarantine: bool,
}

/// Defines an endpoint on a page of a user's media; listing and deleting share the query.
macro_rules! user_media {
    ($module:ident, $method:ident, { $($body:tt)* }) => {
        pub mod $module {
            use super::*;

            metadata! {
                method: $method, rate_limited: false, authentication: AccessToken,
                path: "/_synapse/admin/v1/users/{user_id}/media"
            }

            #[request]
            pub struct Request {
                #[ruma_api(path)]
                pub user_id: OwnedUserId,
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
            }

            #[response]
            pub struct Response {
                $($body)*
            }
        }
    };
}

user_media!(list_user_media, GET, {
    pub media: Vec<ListedMedia>,
    /// The `from` of the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<i64>,
    pub total: i64
});
user_media!(delete_user_media, DELETE, { pub deleted_media: Vec<String>, pub total: usize });

pub mod purge_media_cache {
    use super::*;

    metadata! { method: POST, rate_limited: false, authentication: AccessToken, path: "/_synapse/admin/v1/purge_media_cache" }

    #[request]
    pub struct Request {
        #[ruma_api(query)]
        pub before_ts: i64,
    }

    #[response]
    pub struct Response {
        pub deleted: u64,
    }
}
