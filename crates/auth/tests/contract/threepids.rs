//! Third-party identifiers: the rules of validation sessions, adding, removing and signing in
//! with an address, and the `m.login.email.identity` stage. No mail is read here (the
//! end-to-end suite reads real mails): the validated sessions a mail would prove are written
//! to `threepid_sessions` directly.

use std::sync::Arc;

use deadpool_postgres::Pool;
use serde_json::json;
use sha2::{Digest, Sha256};
use trellis_core::ErrorCode;
use trellis_proto::auth::*;

use crate::common::{assert_err, login, register};

/// A session for `address` whose mailed token is `token`, validated or not.
async fn session(pool: &Pool, sid: &str, secret: &str, address: &str, token: &str, validated: bool) {
    let now = trellis_core::time::now_ms();
    let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    let validated_ts = validated.then_some(now);
    pool.get()
        .await
        .unwrap()
        .execute(
            "INSERT INTO threepid_sessions (sid, client_secret, medium, address, token_hash, last_send_attempt, \
             created_ts, expires_ts, validated_ts) VALUES ($1, $2, 'email', $3, $4, 1, $5, $6, $7)",
            &[&sid, &secret, &address, &hash.as_slice(), &now, &(now + 60_000), &validated_ts],
        )
        .await
        .unwrap();
}

fn add(user: &str, sid: &str, secret: &str) -> AddThreepidRequest {
    AddThreepidRequest {
        user_id: user.into(),
        sid: sid.into(),
        client_secret: secret.into(),
        without_uia: true,
        ..Default::default()
    }
}

fn token_request(purpose: ThreepidPurpose, secret: &str, email: &str) -> RequestThreepidTokenRequest {
    RequestThreepidTokenRequest {
        purpose: purpose as i32,
        client_secret: secret.into(),
        email: email.into(),
        send_attempt: 1,
        next_link: None,
    }
}

pub async fn email_needs_configuring(svc: Arc<dyn AuthService>, _pool: Pool) {
    let refused = svc.request_threepid_token(token_request(ThreepidPurpose::Add, "s", "a@example.org")).await;
    assert_err(&refused.unwrap_err(), ErrorCode::ThreepidMediumNotSupported, 400);
}

pub async fn threepid_rules(svc: Arc<dyn AuthService>, pool: Pool) {
    let alice = register(&svc, "alice", "alice-password").await.user_id;
    let bob = register(&svc, "bob", "bob-password").await.user_id;

    // Bad input, before any mail would be sent.
    let bad_secret = svc.request_threepid_token(token_request(ThreepidPurpose::Add, "no spaces", "a@example.org"));
    assert_err(&bad_secret.await.unwrap_err(), ErrorCode::InvalidParam, 400);
    let bad_email = svc.request_threepid_token(token_request(ThreepidPurpose::Add, "s", "not-an-address"));
    assert_err(&bad_email.await.unwrap_err(), ErrorCode::InvalidParam, 400);
    let unknown = svc.request_threepid_token(token_request(ThreepidPurpose::PasswordReset, "s", "a@example.org"));
    assert_err(&unknown.await.unwrap_err(), ErrorCode::ThreepidNotFound, 400);

    // The link's token: a wrong one validates nothing; the right one validates once and for all.
    session(&pool, "sid-a", "secret-a", "alice@example.org", "the-token", false).await;
    let early = svc.add_threepid(add(&alice, "sid-a", "secret-a")).await.unwrap_err();
    assert_err(&early, ErrorCode::ThreepidAuthFailed, 400);
    let submit = |token: &str, secret: &str| SubmitThreepidTokenRequest {
        sid: "sid-a".into(),
        client_secret: secret.into(),
        token: token.into(),
    };
    assert_err(
        &svc.submit_threepid_token(submit("forged", "secret-a")).await.unwrap_err(),
        ErrorCode::ThreepidAuthFailed,
        400,
    );
    assert_err(
        &svc.submit_threepid_token(submit("the-token", "other")).await.unwrap_err(),
        ErrorCode::ThreepidAuthFailed,
        400,
    );
    svc.submit_threepid_token(submit("the-token", "secret-a")).await.unwrap();
    svc.add_threepid(add(&alice, "sid-a", "secret-a")).await.unwrap();
    svc.add_threepid(add(&alice, "sid-a", "secret-a")).await.expect("adding one's own address again changes nothing");
    let listed = svc.list_threepids(ListThreepidsRequest { user_id: alice.clone() }).await.unwrap().threepids;
    assert_eq!(
        listed.iter().map(|t| (t.medium.as_str(), t.address.as_str())).collect::<Vec<_>>(),
        [("email", "alice@example.org")]
    );
    assert!(listed[0].validated_at > 0 && listed[0].added_at >= listed[0].validated_at);

    // One account per address.
    assert_err(&svc.add_threepid(add(&bob, "sid-a", "secret-a")).await.unwrap_err(), ErrorCode::ThreepidInUse, 400);
    for purpose in [ThreepidPurpose::Add, ThreepidPurpose::Register] {
        let taken = svc.request_threepid_token(token_request(purpose, "s", "ALICE@example.org")).await.unwrap_err();
        assert_err(&taken, ErrorCode::ThreepidInUse, 400);
    }

    // The address signs alice in, in any case, with her password only.
    let by_email = |password: &str| LoginRequest {
        medium: Some("email".into()),
        address: Some("Alice@Example.ORG".into()),
        password: password.into(),
        ..Default::default()
    };
    assert_eq!(svc.login(by_email("alice-password")).await.unwrap().user_id, alice);
    assert_err(&svc.login(by_email("bob-password")).await.unwrap_err(), ErrorCode::Forbidden, 403);

    // Removed, it signs nobody in; no identity server was asked.
    let delete = DeleteThreepidRequest {
        user_id: alice.clone(),
        medium: "email".into(),
        address: "alice@example.org".into(),
        id_server: None,
    };
    assert_eq!(svc.delete_threepid(delete).await.unwrap().id_server_unbind_result, "no-support");
    assert!(svc.list_threepids(ListThreepidsRequest { user_id: alice }).await.unwrap().threepids.is_empty());
    assert_err(&svc.login(by_email("alice-password")).await.unwrap_err(), ErrorCode::Forbidden, 403);
}

pub async fn password_reset_by_email(svc: Arc<dyn AuthService>, pool: Pool) {
    let carol = register(&svc, "carol", "carol-password").await.user_id;
    session(&pool, "sid-c", "secret-c", "carol@example.org", "t", true).await;
    svc.add_threepid(add(&carol, "sid-c", "secret-c")).await.unwrap();
    let device_token = login(&svc, "carol", "carol-password").await.access_token;

    let reset = |auth: serde_json::Value| ResetPasswordRequest {
        new_password: "new-password".into(),
        logout_devices: true,
        auth_json: if auth.is_null() { String::new() } else { auth.to_string() },
    };
    let challenge = svc.reset_password(reset(serde_json::Value::Null)).await.unwrap_err();
    assert_eq!(challenge.status(), 401);
    assert_eq!(challenge.client_body()["flows"], json!([{"stages": ["m.login.email.identity"]}]));
    let uia = challenge.client_body()["session"].as_str().unwrap().to_owned();
    // A session not validated is refused in the challenge.
    session(&pool, "sid-u", "secret-u", "carol@example.org", "t", false).await;
    let creds = |sid: &str, secret: &str| json!({"type": "m.login.email.identity", "session": uia, "threepid_creds": {"sid": sid, "client_secret": secret}});
    let refused = svc.reset_password(reset(creds("sid-u", "secret-u"))).await.unwrap_err();
    assert_eq!((refused.status(), refused.client_body()["errcode"].as_str()), (401, Some("M_UNAUTHORIZED")));

    let done = svc.reset_password(reset(creds("sid-c", "secret-c"))).await.unwrap();
    assert_eq!(done.user_id, carol);
    login(&svc, "carol", "new-password").await;
    let old = LoginRequest { user: "carol".into(), password: "carol-password".into(), ..Default::default() };
    assert_err(&svc.login(old).await.unwrap_err(), ErrorCode::Forbidden, 403);
    let gone = AuthenticateRequest { access_token: device_token, ..Default::default() };
    assert_err(&svc.authenticate(gone).await.unwrap_err(), ErrorCode::UnknownToken, 401);
    // The UIA session is used up.
    assert_eq!(svc.reset_password(reset(creds("sid-c", "secret-c"))).await.unwrap_err().status(), 400);
}

pub async fn registration_with_an_email(svc: Arc<dyn AuthService>, pool: Pool) {
    let start =
        RegisterRequest { username: Some("dave".into()), password: Some("dave-password".into()), ..Default::default() };
    let challenge = svc.register(start.clone()).await.unwrap_err();
    let flows = &challenge.client_body()["flows"];
    assert_eq!(*flows, json!([{"stages": ["m.login.dummy"]}, {"stages": ["m.login.email.identity"]}]));
    session(&pool, "sid-d", "secret-d", "dave@example.org", "t", true).await;
    let auth = json!({"type": "m.login.email.identity", "session": challenge.client_body()["session"],
                      "threepid_creds": {"sid": "sid-d", "client_secret": "secret-d"}});
    let done = svc.register(RegisterRequest { auth_json: auth.to_string(), ..start }).await.unwrap();
    let listed = svc.list_threepids(ListThreepidsRequest { user_id: done.user_id.clone() }).await.unwrap().threepids;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].address, "dave@example.org");

    // Deactivated, the account gives the address up.
    let deactivate = DeactivateRequest {
        user_id: done.user_id.clone(),
        auth_json: json!({"type": "m.login.password", "user": "dave", "password": "dave-password"}).to_string(),
        ..Default::default()
    };
    assert_eq!(svc.deactivate(deactivate).await.unwrap().id_server_unbind_result, "success");
    assert!(svc.list_threepids(ListThreepidsRequest { user_id: done.user_id }).await.unwrap().threepids.is_empty());
}
