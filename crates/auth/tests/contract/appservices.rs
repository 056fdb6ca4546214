//! Application services in the auth service, called directly and through gRPC: the
//! `as_token` stands for the sender user or (with `user_id`) a registered user of its
//! namespace; `m.login.application_service` registration; exclusive namespaces refused to
//! others; signing in as its users (`m.login.application_service` login); `rate_limited:
//! false` carried as a no-limit override; deactivation of its users without user-interactive
//! auth. Errcodes and statuses must survive the gRPC hop.

use std::sync::Arc;

use ruma::api::appservice::{Namespace, Namespaces, Registration, RegistrationInit};
use trellis_core::{ErrorCode, appservice::Registry};
use trellis_proto::auth::{AuthService, AuthenticateRequest, DeactivateRequest, LoginRequest, RegisterRequest};

use crate::common::{Harness, SERVER, Via, assert_err, register, register_req};

fn registration(id: &str, rate_limited: Option<bool>) -> Registration {
    let mut namespaces = Namespaces::new();
    namespaces.users = vec![Namespace::new(true, format!("@{id}_.*:{SERVER}"))];
    RegistrationInit {
        id: id.into(),
        url: Some("http://127.0.0.1:9".into()),
        as_token: format!("as-{id}"),
        hs_token: format!("hs-{id}"),
        sender_localpart: format!("{id}bot"),
        namespaces,
        rate_limited,
        protocols: Some(vec![id.into()]),
    }
    .into()
}

/// `irc` (default rate limits, `as-irc`) and `slack` (`rate_limited: false`, `as-slack`).
fn registry() -> Registry {
    let registrations = vec![registration("irc", None), registration("slack", Some(false))];
    Registry::from_registrations(registrations, SERVER).unwrap()
}

fn as_request(user_id: Option<&str>) -> AuthenticateRequest {
    AuthenticateRequest { access_token: "as-irc".into(), ip: None, user_agent: None, user_id: user_id.map(Into::into) }
}

pub async fn appservice_tokens_and_namespaces(svc: Arc<dyn AuthService>) {
    let me = svc.authenticate(as_request(None)).await.expect("the sender user");
    assert_eq!((me.user_id.as_str(), me.appservice_id.as_deref()), (format!("@ircbot:{SERVER}").as_str(), Some("irc")));

    let puppet = format!("@irc_bob:{SERVER}");
    let err = svc.authenticate(as_request(Some(&puppet))).await.expect_err("not registered yet");
    assert_err(&err, ErrorCode::Forbidden, 403);
    let register_as = |username: &str, token: &str| RegisterRequest {
        username: Some(username.into()),
        appservice_token: Some(token.into()),
        ..Default::default()
    };
    let done = svc.register(register_as("irc_bob", "as-irc")).await.expect("its puppet");
    assert_eq!(done.user_id, puppet);
    assert!(done.access_token.is_some());
    let err = svc.register(register_as("bob", "as-irc")).await.expect_err("outside its namespace");
    assert_err(&err, ErrorCode::Exclusive, 400);
    let err = svc.register(register_as("irc_eve", "wrong")).await.expect_err("not an appservice token");
    assert_err(&err, ErrorCode::UnknownToken, 401);
    let err = svc.register(register_req("irc_eve", "correct horse")).await.expect_err("an exclusive namespace");
    assert_err(&err, ErrorCode::Exclusive, 400);

    let as_puppet = svc.authenticate(as_request(Some(&puppet))).await.expect("masquerading as its puppet");
    assert_eq!(as_puppet.user_id, puppet);
    let alice = register(&svc, "alice", "correct horse").await;
    let err = svc.authenticate(as_request(Some(&alice.user_id))).await.expect_err("outside its namespace");
    assert_err(&err, ErrorCode::Exclusive, 403);

    // Signing in as its registered users, for a device of theirs.
    let login_as = |user: &str, token: &str| LoginRequest {
        user: user.into(),
        appservice_token: Some(token.into()),
        ..Default::default()
    };
    let signed_in = svc.login(login_as("irc_bob", "as-irc")).await.expect("its puppet signs in");
    assert_eq!(signed_in.user_id, puppet);
    assert!(!signed_in.device_id.is_empty());
    let device = svc
        .authenticate(AuthenticateRequest { access_token: signed_in.access_token, ..as_request(None) })
        .await
        .expect("the puppet's own token");
    assert_eq!((device.user_id.as_str(), device.device_id.as_str()), (puppet.as_str(), signed_in.device_id.as_str()));
    let err = svc.login(login_as("alice", "as-irc")).await.expect_err("outside its namespace");
    assert_err(&err, ErrorCode::Exclusive, 403);
    let err = svc.login(login_as("irc_ghost", "as-irc")).await.expect_err("not registered");
    assert_err(&err, ErrorCode::Forbidden, 403);
    let err = svc.login(login_as("irc_bob", "as-slack")).await.expect_err("another appservice's user");
    assert_err(&err, ErrorCode::Exclusive, 403);
    let err = svc.login(login_as("irc_bob", "not-a-token")).await.expect_err("no appservice's token");
    assert_err(&err, ErrorCode::Forbidden, 403);

    // rate_limited: false is a no-limit override on the requester; the default, none for the
    // users it acts as, while its sender user is never limited.
    assert_eq!(as_puppet.ratelimit_override, None);
    let exempt = me.ratelimit_override.expect("the sender user is exempt");
    assert_eq!((exempt.messages_per_second, exempt.burst_count), (0, 0));
    let slack = svc
        .authenticate(AuthenticateRequest { access_token: "as-slack".into(), ..as_request(None) })
        .await
        .expect("the other appservice");
    let exempt = slack.ratelimit_override.expect("an override");
    assert_eq!((exempt.messages_per_second, exempt.burst_count), (0, 0));

    // Its own users go without user-interactive auth; nobody else's.
    let deactivate = |user_id: &str| DeactivateRequest {
        user_id: user_id.into(),
        auth_json: String::new(),
        erase: false,
        appservice_id: Some("irc".into()),
    };
    let err = svc.deactivate(deactivate(&alice.user_id)).await.expect_err("alice is not the appservice's");
    assert_eq!(err.status(), 401, "a user-interactive auth challenge: {err}");
    svc.deactivate(deactivate(&puppet)).await.expect("its puppet deactivated");
}

async fn setup(via: Via, _: Option<()>) -> Harness {
    Harness::with_appservices(via, registry()).await
}

async fn run(h: Harness, scenario: impl AsyncFnOnce(Arc<dyn AuthService>)) {
    scenario(h.svc.clone()).await
}

trellis_testkit::contract! {
    setup = crate::appservices::setup;
    run = crate::appservices::run;
    appservice_tokens_and_namespaces,
}
