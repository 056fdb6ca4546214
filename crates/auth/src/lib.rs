//! The auth service: accounts, devices, access tokens, user-interactive auth and profiles.
//!
//! [`Auth`] implements [`trellis_proto::auth::AuthService`] on PostgreSQL. It is the only
//! writer of `users`, `devices`, `access_tokens`, `uia_sessions`, `profiles`,
//! `openid_tokens`, `room_keys_versions` and `room_keys`. Passwords
//! are hashed with Argon2id off the async threads; access tokens are stored as SHA-256 only
//! and successful lookups are cached for a short time.

mod account;
mod backup;
mod backup_store;
mod cache;
mod config;
mod devices;
mod guest;
pub mod keys;
mod login;
mod openid;
mod password;
mod profile;
mod register;
mod service;
mod store;
mod token;
mod uia;
mod uia_store;

pub use config::AuthConfig;
pub use service::Auth;
