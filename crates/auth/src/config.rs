//! The settings the auth service runs with.

use std::time::Duration;

use trellis_core::config::{Config, EmailConfig, RecaptchaConfig, RegistrationTokenConfig};

/// What the auth service needs from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// The server part of every user ID this service creates.
    pub server_name: String,
    /// Whether `register` accepts new (non-guest) accounts.
    pub registration_enabled: bool,
    /// Whether `register` accepts guest accounts.
    pub allow_guests: bool,
    /// Smallest password accepted at registration, in characters.
    pub min_password_len: usize,
    /// How long a gateway in another process may go on honouring a token it validated (its
    /// `http.token_cache_ms`; zero in a monolith, whose one gateway is told at once). A
    /// revocation answers only once this has passed since it committed, so a revoked token
    /// fails on every gateway as soon as the revoking request has answered.
    pub remote_token_cache: Duration,
    /// How long this process trusts a token it looked up, without asking the database again.
    /// Only a monolith caches: in split mode several auth replicas serve the same gateways and
    /// one cannot forget a token another revoked (nor a shadow-ban, lock or rate-limit change
    /// made through another), so every lookup a gateway's own cache misses reads the row.
    pub token_cache: Duration,
    /// How long an access token issued with a refresh token lives; `None`: no refresh tokens,
    /// and no token expires.
    pub access_token_lifetime: Option<Duration>,
    /// Whether `create_login_token` hands out `m.login.token` tokens.
    pub login_token_enabled: bool,
    /// How long a login token may be used.
    pub login_token_lifetime: Duration,
    /// Registration needs a registration token.
    pub registration_requires_token: bool,
    /// Registration tokens from the configuration, written to the database at start.
    pub registration_tokens: Vec<RegistrationTokenConfig>,
    /// The OAuth 2.0 API's settings (`[oauth]`).
    pub oauth: trellis_core::config::OauthConfig,
    /// Upstream OpenID Connect providers (`[sso]`).
    pub sso: trellis_core::sso::SsoConfig,
    /// The `m.login.recaptcha` stage, when configured (with its keys set).
    pub recaptcha: Option<RecaptchaConfig>,
    /// Email validation (`[email]`), when an SMTP host is configured.
    pub email: Option<EmailConfig>,
    /// Where the links in mails point: `public_baseurl` without its trailing slash, else
    /// `https://{server_name}`.
    pub public_baseurl: String,
    /// Identity servers' certificates are not checked (`email.insecure_identity_server_tls_for_testing`).
    pub insecure_identity_server_tls: bool,
}

impl AuthConfig {
    /// Takes the server name and the `[registration]` and `[auth]` sections.
    pub fn from_config(config: &Config) -> AuthConfig {
        AuthConfig {
            server_name: config.server_name.clone(),
            registration_enabled: config.registration.enabled,
            allow_guests: config.registration.allow_guests,
            min_password_len: config.registration.min_password_len,
            remote_token_cache: match config.is_monolith() {
                true => Duration::ZERO,
                false => Duration::from_millis(config.http.token_cache_ms),
            },
            token_cache: match config.is_monolith() {
                true => crate::cache::TOKEN_CACHE_TTL,
                false => Duration::ZERO,
            },
            access_token_lifetime: config.auth.access_token_lifetime_ms.map(Duration::from_millis),
            login_token_enabled: config.auth.login_token_enabled,
            login_token_lifetime: Duration::from_millis(config.auth.login_token_lifetime_ms),
            registration_requires_token: config.registration.requires_token,
            registration_tokens: config.registration.tokens.clone(),
            oauth: config.oauth.clone(),
            sso: config.sso.clone(),
            recaptcha: config.registration.recaptcha.clone().filter(|r| !r.private_key.is_empty()),
            email: Some(config.email.clone()).filter(|e| e.smtp_host.as_deref().is_some_and(|h| !h.is_empty())),
            public_baseurl: match &config.public_baseurl {
                Some(base) => base.trim_end_matches('/').to_owned(),
                None => format!("https://{}", config.server_name),
            },
            insecure_identity_server_tls: config.email.insecure_identity_server_tls_for_testing,
        }
    }
}

#[cfg(test)]
mod tests {
    use trellis_core::config::RegistrationConfig;

    use super::*;

    #[test]
    fn takes_server_name_and_registration_settings() {
        let config = Config {
            server_name: "example.org".into(),
            registration: RegistrationConfig {
                enabled: false,
                min_password_len: 12,
                allow_guests: true,
                ..RegistrationConfig::default()
            },
            ..Config::default()
        };
        let auth = AuthConfig::from_config(&config);
        assert_eq!(auth.server_name, "example.org");
        assert!(!auth.registration_enabled);
        assert!(auth.allow_guests);
        assert_eq!(auth.min_password_len, 12);
        assert_eq!(auth.access_token_lifetime, None, "tokens never expire unless configured");
        assert!(!auth.login_token_enabled, "off by default, as in Synapse");
        assert!(!AuthConfig::from_config(&Config::default()).allow_guests, "guests are off by default");
        assert_eq!(auth.remote_token_cache, Duration::ZERO, "a monolith's one gateway is told at once");
        let split = Config { roles: vec![trellis_core::config::Role::Auth], ..config };
        let waits = Duration::from_millis(split.http.token_cache_ms);
        assert_eq!(AuthConfig::from_config(&split).remote_token_cache, waits, "gateways elsewhere cache tokens");
        assert_eq!(auth.token_cache, crate::cache::TOKEN_CACHE_TTL, "a monolith's one auth service caches");
        assert_eq!(AuthConfig::from_config(&split).token_cache, Duration::ZERO, "replicas cannot evict each other");
    }
}
