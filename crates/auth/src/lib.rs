//! The auth service: accounts, devices, access tokens, user-interactive auth and profiles.
//!
//! [`Auth`] implements [`trellis_proto::auth::AuthService`] on PostgreSQL. It is the only
//! writer of `users`, `devices`, `access_tokens`, `refresh_tokens`, `login_tokens`,
//! `registration_tokens`, `uia_sessions`, `profiles`, `openid_tokens`, `room_keys_versions`,
//! `room_keys`, of the third-party identifier tables (`threepid/`), of the OAuth 2.0 API's
//! `oauth_clients`, `oauth_browser_sessions`, `oauth_grants` and `oauth_devices` (`oauth/`),
//! and of upstream sign-ins' `sso_links` and `sso_sessions` (`sso/`). Passwords are hashed with Argon2id off the
//! async threads; access, refresh and login tokens (and OAuth codes and browser sessions) are
//! stored as SHA-256 only and successful lookups are cached for a short time (never past a
//! token's expiry).

mod account;
mod admin;
mod admin_write;
mod appservice;
mod backup;
mod backup_store;
mod cache;
mod config;
mod devices;
mod guest;
pub mod keys;
mod login;
mod login_token;
mod moderation;
mod new_login;
mod oauth;
mod openid;
mod password;
mod profile;
mod recaptcha;
mod refresh;
mod register;
mod registration_tokens;
mod rooms;
mod service;
pub mod sso;
mod store;
mod threepid;
mod token;
mod uia;
mod uia_fallback;
mod uia_store;
mod uia_types;

pub use cache::TOKEN_CACHE_TTL;
pub use config::AuthConfig;
pub use service::Auth;
