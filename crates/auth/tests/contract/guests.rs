//! Guest accounts upgraded to full accounts with their `guest_access_token`.

use std::sync::Arc;

use deadpool_postgres::Pool;
use trellis_core::ErrorCode;
use trellis_proto::auth::{AuthService, AuthenticateRequest, RegisterRequest, RegisterResponse};

use crate::common::{assert_err, dummy_auth, login, register, register_req};

async fn guest(svc: &Arc<dyn AuthService>) -> (RegisterResponse, String) {
    let done = svc.register(RegisterRequest { guest: true, ..Default::default() }).await.expect("a guest");
    let localpart = done.user_id.trim_start_matches('@').split(':').next().unwrap().to_owned();
    (done, localpart)
}

pub async fn guest_upgrades_to_a_full_account(svc: Arc<dyn AuthService>, _db: Pool) {
    let (guest, localpart) = guest(&svc).await;
    let guest_token = guest.access_token.clone().expect("a guest token");
    let mut req = register_req(&localpart, "correct horse");
    req.guest_access_token = Some(guest_token.clone());
    // User-interactive auth first, as for any registration.
    let challenge = svc.register(req.clone()).await.expect_err("a UIA challenge");
    assert_eq!(challenge.status(), 401, "{challenge}");
    req.auth_json = dummy_auth(challenge.client_body()["session"].as_str());
    let done = svc.register(req.clone()).await.expect("the upgrade");
    assert_eq!(done.user_id, guest.user_id, "the guest keeps its user ID");
    let me = svc
        .authenticate(AuthenticateRequest {
            access_token: done.access_token.unwrap(),
            ip: None,
            user_agent: None,
            user_id: None,
        })
        .await
        .unwrap();
    assert!(!me.is_guest);
    // The guest's own token now stands for the full account too, and the password works.
    let before = svc
        .authenticate(AuthenticateRequest { access_token: guest_token, ip: None, user_agent: None, user_id: None })
        .await
        .unwrap();
    assert!(!before.is_guest);
    login(&svc, &localpart, "correct horse").await;
    // Once upgraded, there is no guest left to upgrade.
    req.auth_json = dummy_auth(None);
    assert_err(&svc.register(req).await.unwrap_err(), ErrorCode::Forbidden, 403);
}

pub async fn guest_cannot_upgrade_others(svc: Arc<dyn AuthService>, _db: Pool) {
    let (_, first) = guest(&svc).await;
    let (second, second_localpart) = guest(&svc).await;
    let token = second.access_token.expect("a guest token");
    let mut req = register_req(&first, "correct horse");
    req.guest_access_token = Some(token.clone());
    assert_err(&svc.register(req).await.unwrap_err(), ErrorCode::Forbidden, 403);
    // Nor take a real user's name, nor upgrade with a full account's token.
    let alice = register(&svc, "alice", "correct horse").await;
    let mut req = register_req("alice", "correct horse");
    req.guest_access_token = Some(token.clone());
    assert_err(&svc.register(req).await.unwrap_err(), ErrorCode::Forbidden, 403);
    let mut req = register_req(&second_localpart, "correct horse");
    req.guest_access_token = alice.access_token;
    assert_err(&svc.register(req).await.unwrap_err(), ErrorCode::Forbidden, 403);
    // A guest token needs the guest's username.
    let req = RegisterRequest {
        password: Some("correct horse".into()),
        guest_access_token: Some(token),
        ..Default::default()
    };
    assert_err(&svc.register(req).await.unwrap_err(), ErrorCode::MissingParam, 400);
}
