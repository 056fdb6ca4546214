//! Discovery: `/versions`, `/.well-known/matrix/client`, `/.well-known/matrix/support`,
//! `/capabilities`.

use axum::Router;
use ruma::{
    UserId,
    api::{
        auth_scheme::NoAuthentication,
        client::discovery::{
            discover_homeserver::{self, HomeserverInfo},
            discover_support::{self, Contact, ContactRole},
            get_capabilities, get_supported_versions,
        },
    },
};
use serde_json::{Value, json};
use trellis_core::{Error, ErrorCode, config::SupportConfig};
use trellis_proto::auth::RequireAdminRequest;

use crate::{AppState, error::ApiResult, extract::Ruma, response::Rendered, router::RumaRoutes};

/// Spec versions whose endpoints Trellis serves: through v1.15 — authenticated media with
/// its `Content-Disposition` (v1.12), room and user reports (v1.13, v1.14), room summaries
/// (v1.15); account locking and suspension (v1.12, v1.13; their admin endpoints of v1.18 are
/// served too); the OAuth 2.0 API (v1.15) is optional and answered as absent. Not v1.16 yet: `/sync`'s `use_state_after` and room
/// version 12's creator power levels at room creation are still to come.
const VERSIONS: &[&str] = &[
    "r0.0.1", "r0.1.0", "r0.2.0", "r0.3.0", "r0.4.0", "r0.5.0", "r0.6.0", "r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4",
    "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10", "v1.11", "v1.12", "v1.13", "v1.14", "v1.15",
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
    // Room summaries (MSC3266), also under `/unstable/im.nheko.summary`.
    "im.nheko.summary",
    // Mutual rooms (MSC2666): the unstable path and `/v1/mutual_rooms`.
    "uk.half-shot.msc2666.query_mutual_rooms",
    "uk.half-shot.msc2666.query_mutual_rooms.stable",
    // Custom profile fields (MSC4133): the unstable path and the stable one.
    "uk.tcpip.msc4133",
    "uk.tcpip.msc4133.stable",
    // Simplified Sliding Sync (MSC4186), what matrix-rust-sdk and Element X sync with.
    "org.matrix.simplified_msc3575",
    // Account suspension and locking by admins (MSC4323, spec 1.18), also under its unstable path.
    "uk.timedout.msc4323",
];

pub fn routes() -> Router<AppState> {
    Router::new()
        .ruma(get_supported_versions_route)
        .ruma(discover_homeserver_route)
        .ruma(discover_support_route)
        .ruma(get_capabilities_route)
}

/// # `GET /_matrix/client/versions`
///
/// A token sent along is not looked at (ruma's metadata would check it): clients ask before
/// they know whether the token they hold is still good.
async fn get_supported_versions_route(
    _: AppState,
    _: Ruma<get_supported_versions::Request, NoAuthentication>,
) -> ApiResult<get_supported_versions::Response> {
    let mut out = get_supported_versions::Response::new(VERSIONS.iter().map(|v| v.to_string()).collect());
    out.unstable_features = UNSTABLE_FEATURES.iter().map(|f| (f.to_string(), true)).collect();
    Ok(out)
}

/// # `GET /.well-known/matrix/client`
async fn discover_homeserver_route(
    s: AppState,
    req: Ruma<discover_homeserver::Request>,
) -> ApiResult<discover_homeserver::Response> {
    let base = s.settings.base_url(req.origin.host.as_deref());
    Ok(discover_homeserver::Response::new(HomeserverInfo::new(base)))
}

/// # `GET /.well-known/matrix/support`
async fn discover_support_route(
    s: AppState,
    _: Ruma<discover_support::Request>,
) -> ApiResult<discover_support::Response> {
    Ok(s.settings.support.clone().ok_or_else(|| Error::not_found("No support information"))?)
}

/// The support answer of `[support]`, `None` when it names nothing. A contact with neither
/// a valid Matrix ID nor an e-mail address is left out (and said so once, at start).
pub(crate) fn support(config: &SupportConfig) -> Option<discover_support::Response> {
    let mut contacts = Vec::new();
    for c in &config.contacts {
        let role = ContactRole::from(c.role.as_str());
        let matrix_id = c.matrix_id.as_deref().and_then(|id| match UserId::parse(id) {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::warn!(matrix_id = id, error = %e, "support contact: not a user ID");
                None
            }
        });
        let mut contact = match (matrix_id, c.email_address.clone()) {
            (Some(id), email) => {
                let mut contact = Contact::with_matrix_id(role, id);
                contact.email_address = email;
                contact
            }
            (None, Some(email)) => Contact::with_email_address(role, email),
            (None, None) => {
                tracing::warn!(role = %c.role, "support contact without a Matrix ID or e-mail address: left out");
                continue;
            }
        };
        contact.email_address = contact.email_address.filter(|e| !e.is_empty());
        contacts.push(contact);
    }
    let page = config.support_page.clone().filter(|p| !p.is_empty());
    if contacts.is_empty() && page.is_none() {
        return None;
    }
    let mut out = discover_support::Response::with_contacts(contacts);
    out.support_page = page;
    Some(out)
}

/// # `GET /_matrix/client/v3/capabilities`
///
/// Synapse's shape: every capability is sent, enabled or not (SyTest asserts the keys;
/// ruma's type leaves out those at their default, `m.change_password` among them).
async fn get_capabilities_route(
    s: AppState,
    req: Ruma<get_capabilities::v3::Request>,
) -> ApiResult<Rendered<get_capabilities::v3::Response>> {
    // Spec 1.18: only a server admin may suspend or lock accounts; for anyone else the
    // capability is left out.
    let ask = RequireAdminRequest { user_id: req.user.user_id };
    let admin = match s.services.auth.require_admin(ask).await {
        Ok(_) => true,
        Err(e) if e.code() == ErrorCode::Forbidden => false,
        Err(e) => return Err(e.into()),
    };
    let available: serde_json::Map<String, Value> =
        trellis_core::room_versions::SUPPORTED.iter().map(|v| (v.to_string(), json!("stable"))).collect();
    let mut capabilities = json!({
        "m.room_versions": { "default": trellis_core::room_versions::DEFAULT, "available": available },
        "m.change_password": { "enabled": true },
        "m.set_displayname": { "enabled": true },
        "m.set_avatar_url": { "enabled": true },
        // Email addresses can be added and removed when the server validates them.
        "m.3pid_changes": { "enabled": s.settings.email_enabled },
        // Custom profile fields (spec 1.16): every key the grammar allows may be set.
        "m.profile_fields": { "enabled": true },
        // `POST /login/get_token` (spec 1.7), when the server offers it.
        "m.get_login_token": { "enabled": s.settings.login_token_enabled },
    });
    if admin {
        capabilities["m.account_moderation"] = json!({ "suspend": true, "lock": true });
    }
    Rendered::shaped(&json!({ "capabilities": capabilities }))
}
