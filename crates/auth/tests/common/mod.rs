//! Shared by the integration tests: a service on a fresh database, locally or behind gRPC,
//! and helpers for the common steps.

#![allow(dead_code)]

use std::sync::Arc;

use deadpool_postgres::Pool;
use serde_json::json;
use trellis_auth::{Auth, AuthConfig};
use trellis_proto::{
    auth::{AuthService, LoginRequest, LoginResponse, RegisterRequest, RegisterResponse},
    keys::KeysService,
};
use trellis_storage::testing::TestDb;
use trellis_testkit::contract::reach;
#[allow(unused_imports)] // each test binary uses its own part of this module
pub use trellis_testkit::{
    contract::{Via, assert_err},
    signing,
};

pub const SERVER: &str = "test.local";

pub fn config() -> AuthConfig {
    AuthConfig {
        server_name: SERVER.into(),
        registration_enabled: true,
        allow_guests: false,
        min_password_len: 8,
        remote_token_cache: std::time::Duration::ZERO,
        token_cache: trellis_auth::TOKEN_CACHE_TTL,
        access_token_lifetime: None,
        login_token_enabled: false,
        login_token_lifetime: std::time::Duration::from_secs(120),
        registration_requires_token: false,
        registration_tokens: Vec::new(),
        oauth: trellis_core::config::OauthConfig { enabled: true, ..Default::default() },
        sso: Default::default(),
        recaptcha: None,
        email: None,
        public_baseurl: format!("https://{SERVER}"),
        insecure_identity_server_tls: false,
    }
}

/// Expiring access tokens with refresh tokens, login tokens on, registration by token.
pub fn tokens_config() -> AuthConfig {
    AuthConfig {
        access_token_lifetime: Some(std::time::Duration::from_secs(300)),
        login_token_enabled: true,
        registration_requires_token: true,
        ..config()
    }
}

pub fn closed_config() -> AuthConfig {
    AuthConfig { registration_enabled: false, ..config() }
}

/// The OAuth 2.0 API off (the default of a server's configuration).
pub fn oauth_off_config() -> AuthConfig {
    AuthConfig { oauth: trellis_core::config::OauthConfig::default(), ..config() }
}

/// Email validation on, its SMTP server nowhere: the rules apply before any mail would go.
pub fn email_config() -> AuthConfig {
    let email = trellis_core::config::EmailConfig {
        smtp_host: Some("127.0.0.1".into()),
        smtp_port: 9,
        smtp_tls: trellis_core::config::SmtpTls::None,
        ..Default::default()
    };
    AuthConfig { email: Some(email), ..config() }
}

pub fn guest_config() -> AuthConfig {
    AuthConfig { allow_guests: true, ..config() }
}

/// A service under test, its database (dropped with it) and a pool for direct checks.
pub struct Harness {
    pub svc: Arc<dyn AuthService>,
    pub pool: Pool,
    _db: TestDb,
}

impl Harness {
    /// The implementation, called directly.
    pub async fn local(config: AuthConfig) -> Harness {
        let db = TestDb::new().await.expect("test database (is TRELLIS_TEST_DATABASE_URL set?)");
        let svc = Arc::new(Auth::new(db.pool(4), config));
        Harness { svc, pool: db.pool(2), _db: db }
    }

    /// The contract suite's setup: the implementation for `config` (default [`config`]),
    /// reached `via` its trait or gRPC.
    pub async fn new(via: Via, config: Option<AuthConfig>) -> Harness {
        let Harness { svc, pool, _db } = Harness::local(config.unwrap_or_else(self::config)).await;
        Harness { svc: reach(via, svc).await, pool, _db }
    }

    /// The implementation serving the appservices of `registry` (their sender users
    /// created), reached `via` its trait or gRPC.
    pub async fn with_appservices(via: Via, registry: trellis_core::appservice::Registry) -> Harness {
        let db = TestDb::new().await.expect("test database (is TRELLIS_TEST_DATABASE_URL set?)");
        let auth = Auth::new(db.pool(4), config()).with_appservices(registry);
        auth.seed_appservice_senders().await.expect("appservice senders");
        let svc: Arc<dyn AuthService> = Arc::new(auth);
        Harness { svc: reach(via, svc).await, pool: db.pool(2), _db: db }
    }
}

/// How the contract suite runs a scenario: with the service and a pool of its database, the
/// harness (and so the database) kept until it ends.
pub async fn run<F, Fut>(h: Harness, scenario: F)
where
    F: FnOnce(Arc<dyn AuthService>, Pool) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    scenario(h.svc.clone(), h.pool.clone()).await
}

/// The keys service (served by the auth role) with the auth service beside it, for the key
/// scenarios: keys through gRPC or called directly.
pub struct KeysHarness {
    pub auth: Arc<dyn AuthService>,
    pub keys: Arc<dyn KeysService>,
    pub pool: Pool,
    _db: TestDb,
}

impl KeysHarness {
    pub async fn new(config: AuthConfig, grpc: bool) -> KeysHarness {
        let db = TestDb::new().await.expect("test database (is TRELLIS_TEST_DATABASE_URL set?)");
        let svc = Arc::new(Auth::new(db.pool(16), config));
        let via = if grpc { Via::Grpc } else { Via::Local };
        let keys = reach(via, svc.clone() as Arc<dyn KeysService>).await;
        KeysHarness { auth: svc, keys, pool: db.pool(2), _db: db }
    }
}

/// Keys requests built from the JSON bodies clients send, as the gateway builds them from
/// ruma's request types, and answers as the JSON clients see.
pub mod keys_json;

/// The setup of the key scenarios, which make their own [`KeysHarness`]: whether to reach
/// the keys service through gRPC.
pub async fn through_grpc(via: Via, _: Option<()>) -> bool {
    via == Via::Grpc
}

/// Device keys as the spec's DeviceKeys object (every required field), signed by the device.
pub fn device_keys(user: &str, device: &str) -> serde_json::Value {
    signing::device_keys(user, device)
}

/// A registration request for `username` without `auth`.
pub fn register_req(username: &str, password: &str) -> RegisterRequest {
    RegisterRequest { username: Some(username.into()), password: Some(password.into()), ..Default::default() }
}

/// The `auth` object completing the dummy stage.
pub fn dummy_auth(session: Option<&str>) -> String {
    match session {
        Some(session) => json!({"type": "m.login.dummy", "session": session}).to_string(),
        None => json!({"type": "m.login.dummy"}).to_string(),
    }
}

/// Registers through the full UIA exchange: challenge, then the dummy stage.
pub async fn register(svc: &Arc<dyn AuthService>, username: &str, password: &str) -> RegisterResponse {
    let mut req = register_req(username, password);
    let challenge = svc.register(req.clone()).await.expect_err("a UIA challenge");
    assert_eq!(challenge.status(), 401, "{challenge}");
    let session = challenge.client_body()["session"].as_str().expect("session").to_owned();
    req.auth_json = dummy_auth(Some(&session));
    svc.register(req).await.expect("registration")
}

pub async fn login(svc: &Arc<dyn AuthService>, user: &str, password: &str) -> LoginResponse {
    let req = LoginRequest { user: user.into(), password: password.into(), ..Default::default() };
    svc.login(req).await.expect("login")
}
