//! The HTTP edge of Trellis: every `/_matrix/...` path. Handlers are thin — a typed request
//! in, one or two service calls through the service traits, a typed response out. The
//! gateway depends only on `trellis-core` and `trellis-proto`: it cannot reach a database,
//! Redis or a service's internals, only the service contracts.

mod adjust;
mod admin;
mod authed;
mod client;
mod edge;
mod error;
mod extract;
mod guest;
mod html;
mod input;
mod oauth;
mod response;
mod router;
mod sso;
mod sso_cas;
mod tokens;

use std::sync::Arc;

use trellis_core::{
    config::{Config, TurnConfig},
    ratelimit::{Action, RateLimitConfig, RateLimiter, Rule},
};
use trellis_proto::{
    auth::AuthService, keys::KeysService, media::MediaService, rooms::RoomsService, sync::SyncService,
};

pub use crate::router::router;

/// The services a gateway talks to, local or remote.
pub struct Services {
    pub auth: Arc<dyn AuthService>,
    pub keys: Arc<dyn KeysService>,
    pub rooms: Arc<dyn RoomsService>,
    pub sync: Arc<dyn SyncService>,
    pub media: Arc<dyn MediaService>,
    /// Where rate-limit state lives: this process, or Redis shared by every gateway.
    pub limiter: Arc<dyn RateLimiter>,
}

#[derive(Clone, Debug)]
pub struct GatewaySettings {
    pub server_name: String,
    pub public_baseurl: Option<String>,
    pub max_json_body_bytes: usize,
    pub max_upload_bytes: u64,
    pub token_cache: std::time::Duration,
    pub rate_limits: RateLimitConfig,
    pub turn: TurnConfig,
    /// Take the client's address from `X-Forwarded-For` (behind a trusted proxy).
    pub x_forwarded_for: bool,
    /// `/.well-known/matrix/support`, when configured.
    pub support: Option<ruma::api::client::discovery::discover_support::Response>,
    /// `POST /login/get_token` is offered (`auth.login_token_enabled`): `GET /login` and
    /// `/capabilities` say so.
    pub login_token_enabled: bool,
    /// The OAuth 2.0 API is served (`oauth.enabled`): `/auth_metadata` and its endpoints.
    pub oauth_enabled: bool,
    /// `oauth.password_login`: `m.login.password` stays on `/login` beside OAuth 2.0.
    pub oauth_password_login: bool,
    /// The captcha's site key, shown by the `m.login.recaptcha` fallback page.
    pub recaptcha_public_key: Option<String>,
    /// Email addresses are validated (`[email]` with an SMTP host): `/capabilities` says 3PIDs
    /// may be changed.
    pub email_enabled: bool,
    /// Upstream identity providers (`[sso]`), as `/login` and the pages list them.
    pub sso_providers: Vec<SsoProvider>,
    /// `[sso.cas]` is set: `m.login.cas` and its endpoints.
    pub cas_enabled: bool,
}

/// An upstream identity provider as clients and pages show it.
#[derive(Clone, Debug)]
pub struct SsoProvider {
    pub id: String,
    pub name: String,
    pub icon: Option<String>,
}

impl GatewaySettings {
    /// The client API's public URL: `public_baseurl`, or without one the host the client
    /// reached (`host`, else the server name) over plain HTTP.
    pub(crate) fn base_url(&self, host: Option<&str>) -> String {
        self.public_baseurl.clone().unwrap_or_else(|| format!("http://{}", host.unwrap_or(&self.server_name)))
    }

    pub fn from_config(config: &Config) -> GatewaySettings {
        GatewaySettings {
            server_name: config.server_name.clone(),
            public_baseurl: config.public_baseurl.clone(),
            max_json_body_bytes: config.http.max_json_body_bytes,
            max_upload_bytes: config.media.max_upload_bytes,
            token_cache: std::time::Duration::from_millis(config.http.token_cache_ms),
            rate_limits: config.rate_limits.clone(),
            turn: config.turn.clone(),
            x_forwarded_for: config.http.x_forwarded_for,
            support: client::support(&config.support),
            login_token_enabled: config.auth.login_token_enabled,
            oauth_enabled: config.oauth.enabled,
            oauth_password_login: config.oauth.password_login,
            recaptcha_public_key: config.registration.recaptcha.as_ref().map(|r| r.public_key.clone()),
            email_enabled: config.email.smtp_host.as_deref().is_some_and(|h| !h.is_empty()),
            sso_providers: config
                .sso
                .oidc_providers
                .iter()
                .map(|p| SsoProvider { id: p.idp_id.clone(), name: p.idp_name.clone(), icon: p.idp_icon.clone() })
                .chain(config.sso.cas.as_ref().map(|c| SsoProvider {
                    id: trellis_core::sso::CAS_IDP.into(),
                    name: c.idp_name.clone(),
                    icon: None,
                }))
                .collect(),
            cas_enabled: config.sso.cas.is_some(),
        }
    }
}

/// What every handler receives.
#[derive(Clone)]
pub struct AppState {
    pub(crate) services: Arc<Services>,
    pub(crate) settings: Arc<GatewaySettings>,
    /// Validated access tokens, briefly (see `http.token_cache_ms`).
    pub(crate) tokens: Option<Arc<tokens::TokenCache>>,
}

impl AppState {
    /// Counts one `action` by `who` (a user ID or an IP address) against its rate limit.
    pub(crate) async fn limit(&self, action: Action, who: &str) -> Result<(), error::ApiError> {
        let limiter = self.services.limiter.as_ref();
        trellis_core::ratelimit::check(limiter, &self.settings.rate_limits, action, who).await.map_err(error::ApiError)
    }

    /// Counts one `action` by an authenticated user against its rate limit, or the admin's
    /// override for the user (Synapse's: a rate of 0 exempts the user from every per-user
    /// limit, any other replaces the message limit). An overridden message limit counts
    /// apart from the configured one, so a new override applies at once (a budget spent
    /// under a stricter rule does not carry over).
    pub(crate) async fn limit_user(&self, action: Action, user: &extract::Authed) -> Result<(), error::ApiError> {
        let Some(o) = &user.ratelimit_override else { return self.limit(action, &user.user_id).await };
        if o.messages_per_second == 0 {
            return Ok(());
        }
        if action != Action::Message {
            return self.limit(action, &user.user_id).await;
        }
        let burst = u32::try_from(o.burst_count).unwrap_or(u32::MAX);
        let rules = RateLimitConfig {
            message: Rule::new(o.messages_per_second as f64, burst),
            ..self.settings.rate_limits.clone()
        };
        let key = format!("{}/{}/{}", user.user_id, o.messages_per_second, o.burst_count);
        let limiter = self.services.limiter.as_ref();
        trellis_core::ratelimit::check(limiter, &rules, action, &key).await.map_err(error::ApiError)
    }

    /// Refuses `action` by `who` if its rate limit is exhausted, without counting it (see
    /// `ratelimit::check_only`).
    pub(crate) async fn limit_check_only(&self, action: Action, who: &str) -> Result<(), error::ApiError> {
        let limiter = self.services.limiter.as_ref();
        let settings = &self.settings.rate_limits;
        trellis_core::ratelimit::check_only(limiter, settings, action, who).await.map_err(error::ApiError)
    }
}
