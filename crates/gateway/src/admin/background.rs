//! Synapse's background updates admin API (`/_synapse/admin/v1/background_updates/...`) over
//! the rooms service's background work, the room deletions: what is under way, in Synapse's
//! shape (one entry for the database, the oldest deletion), and pausing or resuming it.

use std::collections::BTreeMap;

use axum::Router;
use trellis_core::time::now_ms;
use trellis_proto::rooms::{BackgroundUpdates, Empty, SetBackgroundUpdatesRequest};

use super::ServerAdmin;
use crate::{AppState, error::ApiResult, extract::Ruma, router::RumaRoutes};

/// The name Synapse's answer keys the database's update by.
const DATABASE: &str = "main";

pub fn routes() -> Router<AppState> {
    Router::new().ruma(status_route).ruma(get_enabled_route).ruma(set_enabled_route)
}

/// # `GET /_synapse/admin/v1/background_updates/status`
async fn status_route(s: AppState, _: Ruma<status::Request, ServerAdmin>) -> ApiResult<status::Response> {
    let now = s.services.rooms.admin_background_updates(Empty {}).await?;
    Ok(shown(now))
}

fn shown(now: BackgroundUpdates) -> status::Response {
    let current_updates = now
        .updates
        .into_iter()
        .next()
        .map(|u| {
            let duration = (now_ms() - u.started_ts).max(1) as f64;
            let update = status::Update {
                name: u.name,
                total_item_count: u.total_item_count,
                total_duration_ms: duration,
                average_items_per_ms: u.total_item_count as f64 / duration,
            };
            (DATABASE.to_owned(), update)
        })
        .into_iter()
        .collect();
    status::Response { enabled: now.enabled, current_updates }
}

/// # `GET /_synapse/admin/v1/background_updates/enabled`
async fn get_enabled_route(
    s: AppState,
    _: Ruma<get_enabled::Request, ServerAdmin>,
) -> ApiResult<get_enabled::Response> {
    let now = s.services.rooms.admin_background_updates(Empty {}).await?;
    Ok(get_enabled::Response { enabled: now.enabled })
}

/// # `POST /_synapse/admin/v1/background_updates/enabled`: `false` pauses purges.
async fn set_enabled_route(
    s: AppState,
    req: Ruma<set_enabled::Request, ServerAdmin>,
) -> ApiResult<set_enabled::Response> {
    let ask = SetBackgroundUpdatesRequest { admin: req.user.user_id, enabled: req.body.enabled };
    let now = s.services.rooms.admin_set_background_updates(ask).await?;
    Ok(set_enabled::Response { enabled: now.enabled })
}

pub mod status {
    use super::*;
    use ruma::api::{auth_scheme::AccessToken, metadata, request, response};
    use serde::{Deserialize, Serialize};

    metadata! {
        method: GET, rate_limited: false, authentication: AccessToken,
        path: "/_synapse/admin/v1/background_updates/status"
    }

    /// One database's update under way.
    #[derive(Clone, Debug, Serialize, Deserialize)]
    pub struct Update {
        pub name: String,
        pub total_item_count: i64,
        pub total_duration_ms: f64,
        pub average_items_per_ms: f64,
    }

    #[request]
    pub struct Request {}

    #[response]
    pub struct Response {
        pub enabled: bool,
        pub current_updates: BTreeMap<String, Update>,
    }
}

pub mod get_enabled {
    use ruma::api::{auth_scheme::AccessToken, metadata, request, response};

    metadata! {
        method: GET, rate_limited: false, authentication: AccessToken,
        path: "/_synapse/admin/v1/background_updates/enabled"
    }

    #[request]
    pub struct Request {}

    #[response]
    pub struct Response {
        pub enabled: bool,
    }
}

pub mod set_enabled {
    use ruma::api::{auth_scheme::AccessToken, metadata, request, response};

    metadata! {
        method: POST, rate_limited: false, authentication: AccessToken,
        path: "/_synapse/admin/v1/background_updates/enabled"
    }

    fn on() -> bool {
        true
    }

    /// `enabled` defaults to true, as Synapse.
    #[request]
    pub struct Request {
        #[serde(default = "on")]
        pub enabled: bool,
    }

    #[response]
    pub struct Response {
        pub enabled: bool,
    }
}
