//! End-to-end scenarios over HTTP. Every scenario runs twice: against a monolith and against
//! split mode (each role its own server, gRPC between them, Redis between rooms and two sync
//! workers).

/// Stamps out `monolith::<name>` and `split::<name>` tests for each scenario function, which
/// takes a started `TestServer`.
macro_rules! both_modes {
    // `both_modes!(configured tweak; scenarios...)`: servers whose `Config` `tweak` adjusts.
    (configured $tweak:ident; $($name:ident),* $(,)?) => {
        mod monolith {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(trellis_testkit::TestServer::monolith_configured(super::$tweak).await).await
            })*
        }
        mod split {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(trellis_testkit::TestServer::split_configured(super::$tweak).await).await
            })*
        }
    };
    ($($name:ident),* $(,)?) => {
        mod monolith {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(trellis_testkit::TestServer::monolith().await).await
            })*
        }
        mod split {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(trellis_testkit::TestServer::split().await).await
            })*
        }
    };
}

mod admin_background;
mod admin_media;
mod admin_moderation;
mod admin_notices;
mod admin_rooms;
mod admin_sessions;
mod admin_suspend;
mod admin_tokens;
mod admin_users;
mod appservice_api;
mod appservices;
mod auth_fallback;
mod backend_tls;
mod bad_ids;
mod bad_input;
mod bridge;
mod certs;
mod client_startup;
mod connections;
mod dashboards;
mod deploy_check;
mod devices_account;
mod e2ee_keys;
mod e2ee_local;
mod email;
mod errors;
mod guest_access;
mod health;
mod identity;
mod js_sdk;
mod key_signatures;
mod legacy_api;
mod login_tokens;
mod media;
mod nio;
mod oauth;
mod oauth_browser;
mod openid_whois;
mod poisoned_rows;
mod profile;
mod profile_fields;
mod push;
mod push_gateway;
mod push_rules;
mod refresh_tokens;
mod registration_tokens;
mod reporting;
mod room_versions;
mod rooms_conformance;
mod rooms_create;
mod rooms_directory;
mod rooms_history;
mod rooms_membership;
mod rooms_relations;
mod rooms_support;
mod rust_sdk;
mod search;
mod server_info;
mod sliding_sync;
mod sliding_sync_extensions;
mod sliding_sync_rooms;
mod spaces;
mod sso;
mod sso_provider;
mod sync_elastic;
mod sync_features;
mod sync_fidelity;
mod sync_new_rooms;
mod sync_resilience;
mod sync_workers;
mod telemetry;
mod tls;
mod tls_backends;
mod tutorial;
mod uia_register;
