//! VoIP: `GET /voip/turnServer` (time-limited TURN credentials, the coturn `use-auth-secret`
//! scheme).

use axum::Router;
use base64::Engine;
use hmac::{KeyInit, Mac};
use ruma::api::client::voip::get_turn_server_info;
use serde_json::{Value, json};
use trellis_core::{config::TurnConfig, time::now_ms};

use crate::{AppState, error::ApiResult, extract::Ruma, response::Rendered, router::RumaRoutes};

pub fn routes() -> Router<AppState> {
    Router::new().ruma(get_turn_server_info_route)
}

/// # `GET /_matrix/client/v3/voip/turnServer`
///
/// Synapse's shape: `{}` when there is no TURN server for this user (ruma's type has no
/// empty form).
async fn get_turn_server_info_route(
    s: AppState,
    req: Ruma<get_turn_server_info::v3::Request>,
) -> ApiResult<Rendered<get_turn_server_info::v3::Response>> {
    Rendered::shaped(&turn_credentials(&s.settings.turn, &req.user.user_id, req.user.is_guest, now_ms()))
}

/// The credentials for `user_id` at `now` (ms), or `{}` when no TURN server is configured.
pub(crate) fn turn_credentials(turn: &TurnConfig, user_id: &str, is_guest: bool, now: i64) -> Value {
    if turn.uris.is_empty() || (is_guest && !turn.allow_guests) {
        return json!({});
    }
    let ttl_s = turn.user_lifetime_ms / 1000;
    let (username, password) = match (&turn.shared_secret, &turn.username, &turn.password) {
        (Some(secret), _, _) => {
            // The TURN server recomputes this HMAC from its own copy of the secret and
            // refuses the name once the expiry in it has passed.
            let expiry = now / 1000 + i64::try_from(ttl_s).unwrap_or(i64::MAX / 2);
            let username = format!("{expiry}:{user_id}");
            let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
            mac.update(username.as_bytes());
            let password = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
            (username, password)
        }
        (None, Some(user), Some(pass)) => (user.clone(), pass.clone()),
        _ => return json!({}),
    };
    json!({ "username": username, "password": password, "uris": turn.uris, "ttl": ttl_s })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configured() -> TurnConfig {
        TurnConfig {
            uris: vec!["turn:turn.example.org:3478?transport=udp".into()],
            shared_secret: Some("s3cret".into()),
            user_lifetime_ms: 3_600_000,
            ..TurnConfig::default()
        }
    }

    #[test]
    fn time_limited_hmac_credentials() {
        let got = turn_credentials(&configured(), "@a:example.org", false, 1_700_000_000_000);
        assert_eq!(got["username"], "1700003600:@a:example.org");
        assert_eq!(got["ttl"], 3600);
        assert_eq!(got["uris"][0], "turn:turn.example.org:3478?transport=udp");
        // HMAC-SHA1 of the username under the secret, as coturn's use-auth-secret checks it
        // (value computed independently with Python's hmac module).
        assert_eq!(got["password"], "1fTcT79ovPAmY/kBtwjWyyJOcx8=");
    }

    #[test]
    fn nothing_configured_or_guests_refused() {
        assert_eq!(turn_credentials(&TurnConfig::default(), "@a:x", false, 0), json!({}));
        let no_guests = TurnConfig { allow_guests: false, ..configured() };
        assert_eq!(turn_credentials(&no_guests, "@a:x", true, 0), json!({}));
        let fixed =
            TurnConfig { shared_secret: None, username: Some("u".into()), password: Some("p".into()), ..configured() };
        assert_eq!(turn_credentials(&fixed, "@a:x", false, 0)["username"], "u");
    }
}
