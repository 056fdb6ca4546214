//! The OAuth 2.0 API (spec 1.15+) as a browser and a client drive it: server metadata,
//! dynamic client registration, the authorization code flow with PKCE through the login and
//! consent pages, the token endpoint's grants, refresh and revocation, the device
//! authorization grant through the device link page, registration with `prompt=create`, the
//! account page, and the refusals of bad input.

use reqwest::StatusCode;
use serde_json::{Value, json};
use trellis_core::config::Config;
use trellis_testkit::{PASSWORD, TestServer};

use crate::oauth_browser::*;

both_modes!(configured oauth_on;
    oauth_code_flow_signs_in_refreshes_and_revokes,
    oauth_device_grant_through_the_link_page,
    oauth_prompt_create_registers_and_the_account_page_manages,
    oauth_bad_input_gets_the_rfc_errors);

mod off {
    both_modes!(oauth_is_off_by_default);

    async fn oauth_is_off_by_default(server: trellis_testkit::TestServer) {
        let r = server.client().get("/_matrix/client/v1/auth_metadata").await;
        assert_eq!((r.status, r.body["errcode"].as_str()), (404, Some("M_UNRECOGNIZED")), "{}", r.body);
        let r = server.client().post("/_trellis/oauth2/token", serde_json::json!({})).await;
        assert_eq!(r.status, 404, "{}", r.body);
    }
}

mod limited {
    use super::*;

    both_modes!(configured oauth_with_limits; oauth_login_form_shares_the_login_rate_limit);

    fn oauth_with_limits(c: &mut Config) {
        c.oauth.enabled = true;
        c.rate_limits.enabled = true;
        c.rate_limits.login = trellis_testkit::Rule::new(0.01, 2);
    }

    /// Password guesses on the login page count against `/login`'s per-address limit.
    async fn oauth_login_form_shares_the_login_rate_limit(server: TestServer) {
        let mut browser = Browser::new(&server);
        let form = browser.get("/_trellis/oauth2/login?continue=/_trellis/account").await;
        let guess = [("username", "nobody"), ("password", "guess")];
        for _ in 0..2 {
            let refused = browser.submit(&form, "/_trellis/oauth2/login", &guess).await;
            assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
        }
        let limited = browser.submit(&form, "/_trellis/oauth2/login", &guess).await;
        assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS, "{}", limited.body);
    }
}

mod oauth_only {
    use super::*;

    both_modes!(configured oauth_without_passwords; oauth_can_replace_password_login_and_registration);

    fn oauth_without_passwords(c: &mut Config) {
        c.oauth.enabled = true;
        c.oauth.password_login = false;
    }

    /// `oauth.password_login = false`: `/login` offers no password and refuses one,
    /// `/register` refuses accounts; the registration page still makes them.
    async fn oauth_can_replace_password_login_and_registration(server: TestServer) {
        let flows = server.client().get("/_matrix/client/v3/login").await;
        let types: Vec<&str> =
            flows.body["flows"].as_array().unwrap().iter().filter_map(|f| f["type"].as_str()).collect();
        assert!(!types.contains(&"m.login.password"), "{}", flows.body);
        let mut browser = Browser::new(&server);
        let form = browser.get("/_trellis/oauth2/register?continue=/_trellis/account").await;
        let fields =
            [("username", "webonly"), ("password", "a long password"), ("password_confirm", "a long password")];
        let created = browser.submit(&form, "/_trellis/oauth2/register", &fields).await;
        assert_eq!((created.status, created.location.as_deref()), (StatusCode::SEE_OTHER, Some("/_trellis/account")));
        let login = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "webonly"}, "password": "a long password"});
        let refused = server.client().post("/_matrix/client/v3/login", login).await;
        assert_eq!((refused.status, refused.body["errcode"].as_str()), (400, Some("M_UNKNOWN")), "{}", refused.body);
        let register = json!({"username": "legacy", "password": "a long password", "auth": {"type": "m.login.dummy"}});
        let refused = server.client().post("/_matrix/client/v3/register", register).await;
        assert_eq!((refused.status, refused.body["errcode"].as_str()), (403, Some("M_FORBIDDEN")), "{}", refused.body);
    }
}

fn oauth_on(c: &mut Config) {
    c.oauth.enabled = true;
    // The device grant's polls in the tests come quicker than a real client's.
    c.oauth.device_poll_interval_s = 1;
}

async fn oauth_code_flow_signs_in_refreshes_and_revokes(server: TestServer) {
    let meta = metadata(&server).await;
    assert_eq!(meta["issuer"], format!("{}/", server.url().trim_end_matches('/')));
    assert_eq!(meta["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(meta["response_modes_supported"], json!(["query", "fragment"]));
    assert!(meta["prompt_values_supported"].as_array().unwrap().contains(&json!("create")));
    let unstable = server.client().get("/_matrix/client/unstable/org.matrix.msc2965/auth_metadata").await;
    assert_eq!(unstable.body, meta);
    let issuer = server.client().get("/_matrix/client/unstable/org.matrix.msc2965/auth_issuer").await;
    assert_eq!(issuer.body["issuer"], meta["issuer"]);

    let alice = server.user("alice").await;
    let client_id = register_client(&meta).await;
    let (verifier, challenge) = pkce();
    let mut browser = Browser::new(&server);
    let login = browser.get(&authorize_url(&meta, &client_id, "OAUTHDEV01", &challenge, "")).await;
    let wrong = browser.submit(&login, "/_trellis/oauth2/login", &[("username", "alice"), ("password", "nope")]).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{}", wrong.body);
    let consent_page = sign_in(&mut browser, &login, "alice", PASSWORD).await;
    let code = consent(&mut browser, &consent_page).await;

    let (status, tokens) = exchange(&meta, &client_id, &code, &verifier).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    assert!(tokens["expires_in"].as_i64().unwrap() > 0, "{tokens}");
    assert_eq!(tokens["scope"], format!("{API_SCOPE} {DEVICE_SCOPE}OAUTHDEV01"));
    let access = tokens["access_token"].as_str().unwrap();
    let me = whoami(&server, access).await;
    assert_eq!(
        (me.body["user_id"].as_str(), me.body["device_id"].as_str()),
        (Some(alice.user_id.as_str()), Some("OAUTHDEV01"))
    );
    // A code works once.
    let (status, again) = exchange(&meta, &client_id, &code, &verifier).await;
    assert_eq!((status, again["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{again}");

    // Refresh: a new pair; the new access token works.
    let token_endpoint = meta["token_endpoint"].as_str().unwrap();
    let refresh = [
        ("grant_type", "refresh_token"),
        ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
        ("client_id", &client_id),
    ];
    let (status, refreshed) = post_form(token_endpoint, &refresh).await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    let new_access = refreshed["access_token"].as_str().unwrap();
    assert_ne!(new_access, access);
    assert_eq!(whoami(&server, new_access).await.body["device_id"], "OAUTHDEV01");
    // Another client cannot refresh it.
    let stolen = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refreshed["refresh_token"].as_str().unwrap()),
        ("client_id", "someone-else"),
    ];
    let (status, refused) = post_form(token_endpoint, &stolen).await;
    assert_eq!((status, refused["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{refused}");

    // Revocation ends the session: both tokens stop working.
    let (status, _) = post_form(
        meta["revocation_endpoint"].as_str().unwrap(),
        &[("token", new_access), ("token_type_hint", "access_token")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let gone = whoami(&server, new_access).await;
    assert_eq!((gone.status, gone.body["errcode"].as_str()), (401, Some("M_UNKNOWN_TOKEN")), "{}", gone.body);
    let rotated = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refreshed["refresh_token"].as_str().unwrap()),
        ("client_id", &client_id),
    ];
    let (status, refused) = post_form(token_endpoint, &rotated).await;
    assert_eq!((status, refused["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{refused}");
    // Revoking what is already gone is fine (RFC 7009).
    let (status, _) = post_form(meta["revocation_endpoint"].as_str().unwrap(), &[("token", new_access)]).await;
    assert_eq!(status, StatusCode::OK);

    // Signed in already: the next authorization goes straight to consent; deny answers
    // `access_denied` with the state.
    let page = browser.get(&authorize_url(&meta, &client_id, "OAUTHDEV02", &challenge, "")).await;
    assert!(page.body.contains("Allow access?"), "{}", page.body);
    let denied = browser.submit(&page, "/_trellis/oauth2/consent", &[("action", "deny")]).await;
    let params = callback(&denied.location.unwrap());
    assert_eq!((params["error"].as_str(), params["state"].as_str()), ("access_denied", "st4te"));
}

async fn oauth_device_grant_through_the_link_page(server: TestServer) {
    let meta = metadata(&server).await;
    let bob = server.user("bob").await;
    let client_id = register_client(&meta).await;
    let device_endpoint = meta["device_authorization_endpoint"].as_str().unwrap();
    let token_endpoint = meta["token_endpoint"].as_str().unwrap();
    let scope = format!("{API_SCOPE} {DEVICE_SCOPE}TVDEVICE01");
    let (status, grant) = post_form(device_endpoint, &[("client_id", &client_id), ("scope", &scope)]).await;
    assert_eq!(status, StatusCode::OK, "{grant}");
    let device_code = grant["device_code"].as_str().unwrap();
    let poll = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
        ("device_code", device_code),
        ("client_id", &client_id),
    ];
    let (status, pending) = post_form(token_endpoint, &poll).await;
    assert_eq!(
        (status, pending["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("authorization_pending")),
        "{pending}"
    );
    let (_, fast) = post_form(token_endpoint, &poll).await;
    assert_eq!(fast["error"], "slow_down", "{fast}");

    // The user follows the link on another device, signs in and allows.
    let mut browser = Browser::new(&server);
    let login = browser.get(grant["verification_uri_complete"].as_str().unwrap()).await;
    let link = sign_in(&mut browser, &login, "bob", PASSWORD).await;
    assert_eq!(field(&link.body, "user_code").as_deref(), grant["user_code"].as_str(), "{}", link.body);
    let unknown =
        browser.submit(&link, "/_trellis/oauth2/link", &[("user_code", "BBBB-CCCC"), ("action", "allow")]).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.body);
    let user_code = grant["user_code"].as_str().unwrap().to_lowercase();
    let done = browser.submit(&link, "/_trellis/oauth2/link", &[("user_code", &user_code), ("action", "allow")]).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(done.body.contains("TVDEVICE01"), "{}", done.body);

    let (status, tokens) = post_form(token_endpoint, &poll).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let me = whoami(&server, tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(
        (me.body["user_id"].as_str(), me.body["device_id"].as_str()),
        (Some(bob.user_id.as_str()), Some("TVDEVICE01"))
    );
    // The device code is used up.
    let (_, used) = post_form(token_endpoint, &poll).await;
    assert_eq!(used["error"], "invalid_grant", "{used}");

    // A denied grant answers access_denied.
    let (_, grant) = post_form(device_endpoint, &[("client_id", &client_id), ("scope", &scope)]).await;
    let link = browser.get(grant["verification_uri_complete"].as_str().unwrap()).await;
    let denied = browser
        .submit(
            &link,
            "/_trellis/oauth2/link",
            &[("user_code", grant["user_code"].as_str().unwrap()), ("action", "deny")],
        )
        .await;
    assert_eq!(denied.status, StatusCode::OK, "{}", denied.body);
    let poll = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
        ("device_code", grant["device_code"].as_str().unwrap()),
        ("client_id", &client_id),
    ];
    let (_, refused) = post_form(token_endpoint, &poll).await;
    assert_eq!(refused["error"], "access_denied", "{refused}");
}

async fn oauth_prompt_create_registers_and_the_account_page_manages(server: TestServer) {
    let meta = metadata(&server).await;
    let client_id = register_client(&meta).await;
    let (verifier, challenge) = pkce();
    let mut browser = Browser::new(&server);
    let form = browser.get(&authorize_url(&meta, &client_id, "NEWDEVICE1", &challenge, "&prompt=create")).await;
    assert!(form.body.contains("Create an account"), "{}", form.body);
    let fields = [("username", "newbie"), ("password", "a long password"), ("password_confirm", "another one")];
    let mismatch = browser.submit(&form, "/_trellis/oauth2/register", &fields).await;
    assert_eq!(mismatch.status, StatusCode::BAD_REQUEST, "{}", mismatch.body);
    let fields = [("username", "newbie"), ("password", "a long password"), ("password_confirm", "a long password")];
    let created = browser.submit(&form, "/_trellis/oauth2/register", &fields).await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    let taken = browser.submit(&form, "/_trellis/oauth2/register", &fields).await;
    assert_eq!(taken.status, StatusCode::BAD_REQUEST, "a second account of that name: {}", taken.body);
    let consent_page = browser.get(&created.location.unwrap()).await;
    let code = consent(&mut browser, &consent_page).await;
    let (_, tokens) = exchange(&meta, &client_id, &code, &verifier).await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    assert_eq!(whoami(&server, &access).await.body["user_id"], "@newbie:localhost");

    // The account page lists the device and signs it out.
    let account = browser.get(meta["account_management_uri"].as_str().unwrap()).await;
    assert_eq!(account.status, StatusCode::OK, "{}", account.body);
    assert!(account.body.contains("NEWDEVICE1"), "{}", account.body);
    let deleted = browser.submit(&account, "/_trellis/account/delete_device", &[("device_id", "NEWDEVICE1")]).await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER, "{}", deleted.body);
    assert_eq!(whoami(&server, &access).await.status, 401);
    // The password changes only with the current one.
    let change = [("current_password", "wrong"), ("new_password", "a newer password")];
    let refused = browser.submit(&account, "/_trellis/account/password", &change).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    let change = [("current_password", "a long password"), ("new_password", "a newer password")];
    let changed = browser.submit(&account, "/_trellis/account/password", &change).await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    let login = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "newbie"}, "password": "a newer password"});
    assert_eq!(server.client().post("/_matrix/client/v3/login", login).await.status, 200);
    // A form without the CSRF token is refused.
    let forged = browser.post("/_trellis/account/delete_device", &[("device_id", "X")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
}

async fn oauth_bad_input_gets_the_rfc_errors(server: TestServer) {
    let meta = metadata(&server).await;
    let registration = meta["registration_endpoint"].as_str().unwrap();
    let http = reqwest::Client::new();
    for (body, error) in [
        (json!({"redirect_uris": [REDIRECT]}), "invalid_client_metadata"),
        (
            json!({"client_uri": "https://client.example/", "redirect_uris": ["http://client.example/cb"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"client_uri": "https://client.example/", "redirect_uris": ["https://evil.example/cb"]}),
            "invalid_redirect_uri",
        ),
        (json!({"client_uri": "https://client.example/", "redirect_uris": "nope"}), "invalid_client_metadata"),
    ] {
        let r = http.post(registration).json(&body).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(r.json::<Value>().await.unwrap()["error"], error, "{body}");
    }
    let client_id = register_client(&meta).await;
    let (_, challenge) = pkce();
    let mut browser = Browser::new(&server);
    // Not redirected: an unknown client, a redirect URI not registered.
    let unknown = browser.get(&authorize_url(&meta, "no-such-client", "D1", &challenge, "")).await;
    assert_eq!((unknown.status, unknown.location), (StatusCode::UNAUTHORIZED, None));
    let elsewhere =
        authorize_url(&meta, &client_id, "D1", &challenge, "").replace("client.example%2Fcb", "client.example%2Fother");
    let page = browser.get(&elsewhere).await;
    assert_eq!((page.status, page.location), (StatusCode::BAD_REQUEST, None));
    // Redirected with the error: no PKCE, a bad scope.
    let plain = browser.get(&authorize_url(&meta, &client_id, "D1", &challenge, "").replace("S256", "plain")).await;
    assert_eq!(callback(&plain.location.unwrap())["error"], "invalid_request");
    let scope =
        authorize_url(&meta, &client_id, "D1", &challenge, "").replace("urn%3Amatrix%3Aclient%3Aapi%3A*", "email");
    let bad_scope = browser.get(&scope).await;
    let params = callback(&bad_scope.location.unwrap());
    assert_eq!((params["error"].as_str(), params["state"].as_str()), ("invalid_scope", "st4te"));
    // The token endpoint.
    let token = meta["token_endpoint"].as_str().unwrap();
    for (form, status, error) in [
        (vec![("grant_type", "password")], StatusCode::BAD_REQUEST, "unsupported_grant_type"),
        (vec![("code", "x")], StatusCode::BAD_REQUEST, "invalid_request"),
        (
            vec![("grant_type", "authorization_code"), ("client_id", &client_id)],
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            vec![
                ("grant_type", "authorization_code"),
                ("code", "forged"),
                ("redirect_uri", REDIRECT),
                ("client_id", &client_id),
                ("code_verifier", &"a".repeat(43)),
            ],
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
        (vec![("grant_type", "refresh_token"), ("refresh_token", "nope")], StatusCode::BAD_REQUEST, "invalid_grant"),
    ] {
        let (got, body) = post_form(token, &form).await;
        assert_eq!((got, body["error"].as_str()), (status, Some(error)), "{form:?}: {body}");
    }
    // A code with the wrong verifier is refused, and used up.
    let _carol = server.user("carol").await;
    let (verifier, challenge) = pkce();
    let login = browser.get(&authorize_url(&meta, &client_id, "D2", &challenge, "")).await;
    let consent_page = sign_in(&mut browser, &login, "carol", PASSWORD).await;
    let code = consent(&mut browser, &consent_page).await;
    let (status, wrong) = exchange(&meta, &client_id, &code, &"b".repeat(43)).await;
    assert_eq!((status, wrong["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    let (_, after) = exchange(&meta, &client_id, &code, &verifier).await;
    assert_eq!(after["error"], "invalid_grant", "{after}");
    // A device grant for a scope without a device.
    let (status, body) = post_form(
        meta["device_authorization_endpoint"].as_str().unwrap(),
        &[("client_id", &client_id), ("scope", API_SCOPE)],
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_scope")));
    // Consent without the CSRF token is refused.
    let forged = browser.post("/_trellis/oauth2/consent", &[("request", "client_id=x"), ("action", "allow")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
}
