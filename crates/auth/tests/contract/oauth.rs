//! The OAuth 2.0 API through the service contract: RFC errors crossing the gRPC hop as
//! `oauth_error`, codes single-use, short-lived and stored hashed, the device grant's
//! expiry, registration from the pages under the registration rules, and the API off unless
//! enabled.

use std::sync::Arc;

use base64::Engine;
use deadpool_postgres::Pool;
use sha2::{Digest, Sha256};
use trellis_core::{Error, ErrorCode};
use trellis_proto::auth::{
    AuthService, AuthenticateRequest, CreateRegistrationTokenRequest, OauthAuthorizationRequest,
    OauthBrowserLoginRequest, OauthClientMetadata, OauthDeviceAuthorizationRequest, OauthGrantCodeRequest,
    OauthSessionRequest, OauthTokenRequest,
};

use crate::common::{assert_err, register};

const REDIRECT: &str = "com.example.app:/cb";
const VERIFIER: &str = "a-verifier-long-enough-for-rfc-7636-forty-three-chars";
const SCOPE: &str = "urn:matrix:client:api:* urn:matrix:client:device:CONTRACT1";

#[track_caller]
fn assert_oauth(err: &Error, kind: &str, status: u16) {
    assert_eq!((err.client_body()["oauth_error"].as_str(), err.status()), (Some(kind), status), "{err}");
}

async fn client(svc: &Arc<dyn AuthService>) -> String {
    let metadata = OauthClientMetadata {
        client_uri: Some("https://example.com/".into()),
        application_type: Some("native".into()),
        redirect_uris: vec![REDIRECT.into()],
        has_grant_types: true,
        grant_types: vec![
            "authorization_code".into(),
            "refresh_token".into(),
            "urn:ietf:params:oauth:grant-type:device_code".into(),
        ],
        ..Default::default()
    };
    svc.oauth_register_client(metadata).await.unwrap().client_id
}

fn authorization(client_id: &str) -> OauthAuthorizationRequest {
    OauthAuthorizationRequest {
        response_type: "code".into(),
        client_id: client_id.into(),
        redirect_uri: REDIRECT.into(),
        scope: SCOPE.into(),
        state: Some("s".into()),
        code_challenge: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(VERIFIER)),
        code_challenge_method: "S256".into(),
        ..Default::default()
    }
}

async fn browser(svc: &Arc<dyn AuthService>, user: &str, password: &str) -> String {
    let req = OauthBrowserLoginRequest { username: user.into(), password: password.into(), ..Default::default() };
    svc.oauth_browser_login(req).await.unwrap().session_token
}

/// The code in a redirect's query.
async fn code(svc: &Arc<dyn AuthService>, session: &str, client_id: &str) -> String {
    let grant = OauthGrantCodeRequest {
        session_token: session.into(),
        authorization: Some(authorization(client_id)),
        deny: false,
    };
    let redirect = svc.oauth_grant_code(grant).await.unwrap().redirect_to;
    let query = redirect.split_once('?').unwrap().1;
    query.split('&').find_map(|p| p.strip_prefix("code=")).unwrap().to_owned()
}

fn exchange(client_id: &str, code: &str) -> OauthTokenRequest {
    OauthTokenRequest {
        grant_type: "authorization_code".into(),
        client_id: Some(client_id.into()),
        code: Some(code.into()),
        redirect_uri: Some(REDIRECT.into()),
        code_verifier: Some(VERIFIER.into()),
        ..Default::default()
    }
}

pub async fn oauth_codes_are_single_use_short_lived_and_hashed(svc: Arc<dyn AuthService>, db: Pool) {
    register(&svc, "olive", "correct horse").await;
    let client_id = client(&svc).await;
    let session = browser(&svc, "olive", "correct horse").await;
    let wrong = OauthBrowserLoginRequest { username: "olive".into(), password: "wrong".into(), ..Default::default() };
    assert_err(&svc.oauth_browser_login(wrong).await.unwrap_err(), ErrorCode::Forbidden, 403);

    let first = code(&svc, &session, &client_id).await;
    let stored: Vec<Vec<u8>> = {
        let c = db.get().await.unwrap();
        c.query("SELECT code_hash FROM oauth_grants", &[]).await.unwrap().iter().map(|r| r.get(0)).collect()
    };
    assert_eq!(stored, vec![Sha256::digest(first.as_bytes()).to_vec()], "only the code's hash is stored");
    let tokens = svc.oauth_token(exchange(&client_id, &first)).await.unwrap();
    assert_eq!((tokens.device_id.as_str(), tokens.scope.as_str()), ("CONTRACT1", SCOPE));
    let me = svc
        .authenticate(AuthenticateRequest { access_token: tokens.access_token.clone(), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(me.device_id, "CONTRACT1");
    assert_oauth(&svc.oauth_token(exchange(&client_id, &first)).await.unwrap_err(), "invalid_grant", 400);

    // Expired before use.
    let late = code(&svc, &session, &client_id).await;
    db.get().await.unwrap().execute("UPDATE oauth_grants SET expires_ts = 0", &[]).await.unwrap();
    assert_oauth(&svc.oauth_token(exchange(&client_id, &late)).await.unwrap_err(), "invalid_grant", 400);
    // Bound to its client.
    let other = client(&svc).await;
    let bound = code(&svc, &session, &client_id).await;
    assert_oauth(&svc.oauth_token(exchange(&other, &bound)).await.unwrap_err(), "invalid_grant", 400);

    // A refresh that lost its answer can be retried until the new pair is used.
    let refresh = |token: &str| OauthTokenRequest {
        grant_type: "refresh_token".into(),
        refresh_token: Some(token.into()),
        client_id: Some(client_id.clone()),
        ..Default::default()
    };
    let lost = svc.oauth_token(refresh(&tokens.refresh_token)).await.unwrap();
    let retried = svc.oauth_token(refresh(&tokens.refresh_token)).await.unwrap();
    assert_ne!(lost.access_token, retried.access_token);
    svc.authenticate(AuthenticateRequest { access_token: retried.access_token, ..Default::default() }).await.unwrap();
    assert_oauth(&svc.oauth_token(refresh(&tokens.refresh_token)).await.unwrap_err(), "invalid_grant", 400);

    // A signed-out browser session grants nothing.
    svc.oauth_browser_logout(OauthSessionRequest { session_token: session.clone() }).await.unwrap();
    let grant =
        OauthGrantCodeRequest { session_token: session, authorization: Some(authorization(&client_id)), deny: false };
    assert_err(&svc.oauth_grant_code(grant).await.unwrap_err(), ErrorCode::UnknownToken, 401);
}

pub async fn oauth_device_codes_expire(svc: Arc<dyn AuthService>, db: Pool) {
    let client_id = client(&svc).await;
    let req = OauthDeviceAuthorizationRequest { client_id: client_id.clone(), scope: SCOPE.into() };
    let grant = svc.oauth_device_authorize(req).await.unwrap();
    assert_eq!(grant.user_code.len(), 8);
    db.get().await.unwrap().execute("UPDATE oauth_grants SET expires_ts = 0", &[]).await.unwrap();
    let poll = OauthTokenRequest {
        grant_type: "urn:ietf:params:oauth:grant-type:device_code".into(),
        device_code: Some(grant.device_code),
        client_id: Some(client_id),
        ..Default::default()
    };
    assert_oauth(&svc.oauth_token(poll).await.unwrap_err(), "expired_token", 400);
    let unknown = OauthDeviceAuthorizationRequest { client_id: "nobody".into(), scope: SCOPE.into() };
    assert_oauth(&svc.oauth_device_authorize(unknown).await.unwrap_err(), "invalid_client", 401);
}

pub async fn oauth_registration_follows_the_registration_rules(svc: Arc<dyn AuthService>, _db: Pool) {
    let new = |token: Option<&str>| OauthBrowserLoginRequest {
        username: "newcomer".into(),
        password: "a long password".into(),
        register: true,
        registration_token: token.map(str::to_owned),
        ..Default::default()
    };
    assert_err(&svc.oauth_browser_login(new(None)).await.unwrap_err(), ErrorCode::Unauthorized, 401);
    assert_err(&svc.oauth_browser_login(new(Some("nope"))).await.unwrap_err(), ErrorCode::Unauthorized, 401);
    let create =
        CreateRegistrationTokenRequest { token: Some("letmein".into()), uses_allowed: Some(1), ..Default::default() };
    svc.create_registration_token(create).await.unwrap();
    let session = svc.oauth_browser_login(new(Some("letmein"))).await.unwrap();
    assert_eq!(session.user_id, "@newcomer:test.local");
    let again = OauthBrowserLoginRequest { username: "other".into(), ..new(Some("letmein")) };
    assert_err(&svc.oauth_browser_login(again).await.unwrap_err(), ErrorCode::Unauthorized, 401);
    let short = OauthBrowserLoginRequest { password: "x".into(), ..new(None) };
    assert_err(&svc.oauth_browser_login(short).await.unwrap_err(), ErrorCode::WeakPassword, 400);
}

pub async fn oauth_is_off_unless_enabled(svc: Arc<dyn AuthService>, _db: Pool) {
    let err = svc.oauth_register_client(OauthClientMetadata::default()).await.unwrap_err();
    assert_err(&err, ErrorCode::Unrecognized, 404);
    let err = svc.oauth_token(OauthTokenRequest::default()).await.unwrap_err();
    assert_err(&err, ErrorCode::Unrecognized, 404);
}
