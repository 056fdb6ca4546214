//! Two auth replicas on one database, as a split deployment runs them behind one Service: a
//! token revoked, or an account changed, through one replica is seen at once by the other.

mod common;

use std::sync::Arc;

use trellis_auth::{Auth, AuthConfig};
use trellis_core::{
    ErrorCode,
    config::{Config, Role},
};
use trellis_proto::auth::{AdminModerateRequest, AuthService, AuthenticateRequest, LogoutRequest};
use trellis_storage::testing::TestDb;

use crate::common::{SERVER, assert_err, login, register};

/// The auth settings of a split deployment's auth process (gateways cache for 30 ms).
fn split_config() -> AuthConfig {
    let mut config = Config { server_name: SERVER.into(), roles: vec![Role::Auth], ..Config::default() };
    config.http.token_cache_ms = 30;
    AuthConfig::from_config(&config)
}

fn auth(token: &str) -> AuthenticateRequest {
    AuthenticateRequest { access_token: token.into(), ip: None, user_agent: None, user_id: None }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_revoked_through_one_replica_fails_on_the_other() {
    let db = TestDb::new().await.expect("test database (is TRELLIS_TEST_DATABASE_URL set?)");
    let a: Arc<dyn AuthService> = Arc::new(Auth::new(db.pool(2), split_config()));
    let b: Arc<dyn AuthService> = Arc::new(Auth::new(db.pool(2), split_config()));
    register(&a, "rhea", "correct horse").await;
    let session = login(&a, "rhea", "correct horse").await;
    // Twice on b: a replica that remembered the first answer would give it again below.
    for _ in 0..2 {
        assert_eq!(b.authenticate(auth(&session.access_token)).await.unwrap().user_id, session.user_id);
    }
    a.logout(LogoutRequest { access_token: session.access_token.clone(), all_devices: false }).await.unwrap();
    let err = b.authenticate(auth(&session.access_token)).await.unwrap_err();
    assert_err(&err, ErrorCode::UnknownToken, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_moderation_through_one_replica_travels_with_the_others_validations() {
    let db = TestDb::new().await.expect("test database (is TRELLIS_TEST_DATABASE_URL set?)");
    let a: Arc<dyn AuthService> = Arc::new(Auth::new(db.pool(2), split_config()));
    let b: Arc<dyn AuthService> = Arc::new(Auth::new(db.pool(2), split_config()));
    let admin = register(&a, "root", "correct horse").await.user_id;
    let client = db.pool(1).get().await.unwrap();
    client.execute("UPDATE users SET admin = TRUE WHERE user_id = $1", &[&admin]).await.unwrap();
    register(&a, "sven", "correct horse").await;
    let session = login(&a, "sven", "correct horse").await;
    assert!(!b.authenticate(auth(&session.access_token)).await.unwrap().shadow_banned);
    let ban = AdminModerateRequest {
        admin: admin.clone(),
        user_id: session.user_id.clone(),
        shadow_banned: Some(true),
        ..Default::default()
    };
    a.admin_moderate(ban).await.unwrap();
    assert!(b.authenticate(auth(&session.access_token)).await.unwrap().shadow_banned, "b still has the old answer");
    let lock =
        AdminModerateRequest { admin, user_id: session.user_id.clone(), locked: Some(true), ..Default::default() };
    a.admin_moderate(lock).await.unwrap();
    let err = b.authenticate(auth(&session.access_token)).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::UserLocked, "{err:?}");
}
