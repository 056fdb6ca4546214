//! Discovery: `/versions`, `/.well-known/matrix/client`, `/capabilities`.

use axum::{Json, Router, extract::State, http::HeaderMap, routing::get};
use ruma::api::client::discovery::{get_capabilities, get_supported_versions};
use serde_json::{Value, json};

use crate::{AppState, extract::Authed, router::RumaRoutes};

/// Spec versions whose endpoints Trellis serves: through v1.11 (authenticated media, async
/// uploads, jump-to-date, threads, private receipts, end-to-end encryption). Later versions
/// are added as the endpoints they make mandatory land.
const VERSIONS: &[&str] = &[
    "r0.0.1", "r0.1.0", "r0.2.0", "r0.3.0", "r0.4.0", "r0.5.0", "r0.6.0", "r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4",
    "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10", "v1.11",
];

/// Unstable features that are really served (clients switch behaviour on these).
const UNSTABLE_FEATURES: &[&str] = &[
    // Cross-signing keys and signatures (`/keys/device_signing/upload`, `/keys/signatures/upload`).
    "org.matrix.e2e_cross_signing",
    // Private read receipts (`m.read.private`).
    "org.matrix.msc2285.stable",
    // `/timestamp_to_event`, also under its unstable path.
    "org.matrix.msc3030",
    // Room-type filtering in `/publicRooms`.
    "org.matrix.msc3827.stable",
    // Authenticated media under `/_matrix/client/v1/media`.
    "org.matrix.msc3916.stable",
];

pub fn routes() -> Router<AppState> {
    Router::new()
        .ruma::<get_supported_versions::Request, _, _>(versions)
        .route("/.well-known/matrix/client", get(well_known))
        .ruma::<get_capabilities::v3::Request, _, _>(capabilities)
}

/// # `GET /_matrix/client/versions`
async fn versions() -> Json<Value> {
    let features: serde_json::Map<String, Value> =
        UNSTABLE_FEATURES.iter().map(|f| (f.to_string(), json!(true))).collect();
    Json(json!({ "versions": VERSIONS, "unstable_features": features }))
}

/// # `GET /.well-known/matrix/client`
async fn well_known(State(state): State<AppState>, headers: HeaderMap) -> Json<Value> {
    let base = state.settings.public_baseurl.clone().unwrap_or_else(|| {
        // Without a configured URL, point clients back at the host they reached.
        let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or(&state.settings.server_name);
        format!("http://{host}")
    });
    Json(json!({ "m.homeserver": { "base_url": base } }))
}

/// # `GET /_matrix/client/v3/capabilities`
async fn capabilities(_: Authed) -> Json<Value> {
    let available: serde_json::Map<String, Value> =
        trellis_core::room_versions::SUPPORTED.iter().map(|v| (v.to_string(), json!("stable"))).collect();
    Json(json!({
        "capabilities": {
            "m.room_versions": { "default": trellis_core::room_versions::DEFAULT, "available": available },
            "m.change_password": { "enabled": true },
            "m.set_displayname": { "enabled": true },
            "m.set_avatar_url": { "enabled": true },
            "m.3pid_changes": { "enabled": false },
            // Custom profile fields (spec 1.16): every key the grammar allows may be set.
            "m.profile_fields": { "enabled": true },
        }
    }))
}
