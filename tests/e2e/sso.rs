//! Sign-in through an upstream OpenID Connect provider (`docs/sso.md`), against a real one
//! (`oidc-provider` from npm, `sso_provider.rs`): `m.login.sso` on `/login`, the redirect
//! with state, nonce and PKCE, the callback creating the account from the localpart template
//! (a numbered name when taken) and linking it by `sub`, the confirmation page before a
//! login token goes to a client, the single-use `m.login.token` exchange, failures as pages
//! (never a 500), the OAuth 2.0 login page's provider button, and the `m.login.sso` stage
//! of user-interactive auth.

use reqwest::StatusCode;
use serde_json::json;
use trellis_core::config::Config;
use trellis_testkit::{TestServer, enc};

use crate::{
    oauth_browser::{Browser, consent, exchange, metadata, pkce, register_client, whoami},
    sso_provider::{CALLBACK, IDP, Stop, param, walk},
};

/// Like `both_modes!`, for scenarios that need the provider running before the server starts
/// (its issuer URL is configuration) and the server's URL given to the provider after.
macro_rules! with_provider_modes {
    ($($name:ident: $tweak:ident),* $(,)?) => {
        mod monolith {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                if let Some((server, _idp)) = crate::sso_provider::with_provider(false, super::$tweak).await {
                    super::$name(server).await
                }
            })*
        }
        mod split {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                if let Some((server, _idp)) = crate::sso_provider::with_provider(true, super::$tweak).await {
                    super::$name(server).await
                }
            })*
        }
    };
}

with_provider_modes!(
    sso_sign_in_creates_links_and_reuses_the_account: plain,
    sso_failures_are_clean: plain,
    sso_expired_login_token_is_refused: short_tokens,
    sso_trusted_client_gets_the_token_at_once: trusted_client,
    oauth_login_page_signs_in_through_the_provider: oauth_on,
    sso_confirms_user_interactive_auth: plain,
);

/// The test servers' name.
const SERVER: &str = "localhost";
const APP: &str = "https://app.example/after?x=1";

fn plain(_: &mut Config) {}

fn short_tokens(c: &mut Config) {
    c.auth.login_token_lifetime_ms = 1;
}

fn trusted_client(c: &mut Config) {
    c.sso.client_whitelist = vec!["https://app.example/".into()];
}

fn oauth_on(c: &mut Config) {
    c.oauth.enabled = true;
}

fn redirect_path(idp: Option<&str>) -> String {
    let idp = idp.map(|i| format!("/{i}")).unwrap_or_default();
    format!("/_matrix/client/v3/login/sso/redirect{idp}?redirectUrl={}", enc(APP))
}

/// Signs `user` in through the provider from `/login/sso/redirect`, confirming on the page
/// Trellis shows; the login token the client's URL receives.
async fn sign_in(server: &TestServer, user: &str, path: &str) -> String {
    let mut browser = Browser::new(server);
    let url = browser.url(path);
    let link = match walk(&mut browser, &url, user, false).await {
        Stop::Confirm(link) => link,
        Stop::Client(url) => panic!("the token went to the client without asking: {url}"),
        Stop::Callback(_) => unreachable!(),
        Stop::Page(url, page) => panic!("{url}: {} {}", page.status, page.body),
    };
    assert!(link.starts_with(&format!("{APP}&loginToken=")), "{link}");
    param(&link, "loginToken").unwrap()
}

async fn token_login(server: &TestServer, token: &str) -> trellis_testkit::Reply {
    server.client().post("/_matrix/client/v3/login", json!({"type": "m.login.token", "token": token})).await
}

async fn sso_sign_in_creates_links_and_reuses_the_account(server: TestServer) {
    let types = server.client().get("/_matrix/client/v3/login").await.ok();
    let flows = types["flows"].as_array().unwrap();
    let sso = flows.iter().find(|f| f["type"] == "m.login.sso").expect("m.login.sso offered");
    assert_eq!(
        sso["identity_providers"],
        json!([{"id": IDP, "name": "Test IdP", "icon": "mxc://example.org/idp-icon"}])
    );
    assert!(flows.iter().any(|f| f["type"] == "m.login.token"), "{types}");

    // First sign-in: the account is made from the template and the provider's name claim.
    let token = sign_in(&server, "jane", &redirect_path(None)).await;
    let login = token_login(&server, &token).await.ok();
    let jane = format!("@jane:{SERVER}");
    assert_eq!(login["user_id"], jane.as_str());
    let me = whoami(&server, login["access_token"].as_str().unwrap()).await.ok();
    assert_eq!(me["user_id"], jane.as_str());
    let profile = server.client().get(&format!("/_matrix/client/v3/profile/{}", enc(&jane))).await.ok();
    assert_eq!(profile["displayname"], "User jane");

    // The token works once.
    token_login(&server, &token).await.err(403, "M_FORBIDDEN");

    // The same `sub` again (by the provider's own path, and r0's): the same account.
    let again = sign_in(&server, "jane", &redirect_path(Some(IDP))).await;
    assert_eq!(token_login(&server, &again).await.ok()["user_id"], jane.as_str());
    let r0 = redirect_path(Some(IDP)).replace("/v3/", "/r0/");
    let third = sign_in(&server, "jane", &r0).await;
    assert_eq!(token_login(&server, &third).await.ok()["user_id"], jane.as_str());

    // A name already taken by a password account is not handed over: a numbered one is made.
    let mut bob = server.client();
    bob.register("bob", "bob-password").await;
    let token = sign_in(&server, "bob", &redirect_path(None)).await;
    assert_eq!(token_login(&server, &token).await.ok()["user_id"], format!("@bob2:{}", SERVER));
}

async fn sso_failures_are_clean(server: TestServer) {
    // A state the server never issued, none at all, a used one: 400 pages.
    let mut browser = Browser::new(&server);
    for query in ["?state=forged&code=abc", "", "?code=abc"] {
        let page = browser.get(&format!("{CALLBACK}{query}")).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{query}: {}", page.body);
        assert!(page.body.contains("start again"), "{}", page.body);
    }

    // A callback carried to another browser (no state cookie) is refused, and its state is
    // used up, so the first browser cannot finish it either.
    let url = browser.url(&redirect_path(None));
    let Stop::Callback(callback) = walk(&mut browser, &url, "mallory", true).await else { panic!("no callback") };
    let page = Browser::new(&server).get(&callback).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
    assert!(page.body.contains("not started in this browser"), "{}", page.body);
    let page = browser.get(&callback).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);

    // The provider refusing (the user cancelled): a 403 page.
    let mut browser = Browser::new(&server);
    let started = browser.get(&redirect_path(None)).await;
    let state = param(started.location.as_deref().unwrap(), "state").unwrap();
    let denied = browser.get(&format!("{CALLBACK}?state={}&error=access_denied", enc(&state))).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN, "{}", denied.body);
    assert!(denied.body.contains("access_denied"), "{}", denied.body);

    // A forged code: the provider does not accept it.
    let started = browser.get(&redirect_path(None)).await;
    let state = param(started.location.as_deref().unwrap(), "state").unwrap();
    let forged = browser.get(&format!("{CALLBACK}?state={}&code=forged", enc(&state))).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.body);

    // Bad client requests: JSON errors.
    let c = server.client();
    let unknown = c.get(&format!("/_matrix/client/v3/login/sso/redirect/nope?redirectUrl={}", enc(APP))).await;
    unknown.err(404, "M_NOT_FOUND");
    let missing = c.get("/_matrix/client/v3/login/sso/redirect").await;
    assert_eq!(missing.status, 400, "{}", missing.body);
    let relative = c.get(&format!("/_matrix/client/v3/login/sso/redirect?redirectUrl={}", enc("/relative"))).await;
    relative.err(400, "M_INVALID_PARAM");
    token_login(&server, "trt_never-issued").await.err(403, "M_FORBIDDEN");
}

async fn sso_expired_login_token_is_refused(server: TestServer) {
    // Tokens live 1 ms here: by the time the client has it, it has expired.
    let token = sign_in(&server, "late", &redirect_path(None)).await;
    token_login(&server, &token).await.err(403, "M_FORBIDDEN");
}

async fn sso_trusted_client_gets_the_token_at_once(server: TestServer) {
    let mut browser = Browser::new(&server);
    let url = browser.url(&redirect_path(None));
    let Stop::Client(location) = walk(&mut browser, &url, "trusty", false).await else { panic!("asked to confirm") };
    assert!(location.starts_with(&format!("{APP}&loginToken=")), "{location}");
    let token = param(&location, "loginToken").unwrap();
    let login = token_login(&server, &token).await.ok();
    assert_eq!(login["user_id"], format!("@trusty:{}", SERVER));
}

async fn oauth_login_page_signs_in_through_the_provider(server: TestServer) {
    let meta = metadata(&server).await;
    let client_id = register_client(&meta).await;
    let (verifier, challenge) = pkce();
    let authorize = crate::oauth_browser::authorize_url(&meta, &client_id, "SSODEVICE", &challenge, "");
    let mut browser = Browser::new(&server);
    let login = browser.get(&authorize).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    let button =
        login.body.split("href=\"").find(|s| s.starts_with("/_trellis/sso/start/")).expect("a provider button");
    let button = button[..button.find('"').unwrap()].replace("&amp;", "&");
    assert!(login.body.contains("Test IdP"), "{}", login.body);

    // Through the provider and back to the authorization request, now signed in: consent.
    let url = browser.url(&button);
    let Stop::Page(at, page) = walk(&mut browser, &url, "olivia", false).await else { panic!("no consent page") };
    assert!(at.contains("/_trellis/oauth2/authorize?"), "{at}");
    let code = consent(&mut browser, &page).await;
    let (status, tokens) = exchange(&meta, &client_id, &code, &verifier).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let me = whoami(&server, tokens["access_token"].as_str().unwrap()).await.ok();
    assert_eq!(me["user_id"], format!("@olivia:{}", SERVER));
    assert_eq!(me["device_id"], "SSODEVICE");

    // A provider button may only lead back to this server's pages.
    let away = browser.get(&format!("/_trellis/sso/start/{IDP}?continue={}", enc("https://evil.example/"))).await;
    let state_url = away.location.unwrap();
    assert!(!state_url.contains("evil.example"), "{state_url}");
}

/// The `m.login.sso` stage from its fallback page; the session's UIA link for `browser`.
async fn confirm_at_provider(browser: &mut Browser, session: &str, user: &str) -> Stop {
    let fallback = browser.get(&format!("/_matrix/client/v3/auth/m.login.sso/fallback/web?session={session}")).await;
    assert_eq!(fallback.status, StatusCode::OK, "{}", fallback.body);
    let link = fallback.body.split("href=\"").nth(1).expect("a provider link");
    let link = link[..link.find('"').unwrap()].replace("&amp;", "&");
    assert!(link.starts_with(&format!("/_trellis/sso/uia/{IDP}?session=")), "{link}");
    let url = browser.url(&link);
    walk(browser, &url, user, false).await
}

async fn sso_confirms_user_interactive_auth(server: TestServer) {
    // An account made through the provider has no password: it confirms at the provider.
    let mut browser = Browser::new(&server);
    let url = browser.url(&redirect_path(None));
    let Stop::Confirm(link) = walk(&mut browser, &url, "paula", false).await else { panic!("no confirmation page") };
    let login = token_login(&server, &param(&link, "loginToken").unwrap()).await.ok();
    let mut paula = server.client();
    paula.token = Some(login["access_token"].as_str().unwrap().to_owned());
    let device = login["device_id"].as_str().unwrap().to_owned();
    let delete = format!("/_matrix/client/v3/devices/{device}");

    let challenge = paula.request("DELETE", &delete, Some(json!({}))).await;
    assert_eq!(challenge.status, 401, "{}", challenge.body);
    assert_eq!(challenge.body["flows"], json!([{"stages": ["m.login.password"]}, {"stages": ["m.login.sso"]}]));
    let session = challenge.body["session"].as_str().unwrap().to_owned();
    // The stage cannot be claimed by the client itself.
    let claimed = json!({"auth": {"type": "m.login.sso", "session": session}});
    assert_eq!(paula.request("DELETE", &delete, Some(claimed)).await.status, 401);

    // Someone else at the provider cannot confirm for paula: the session is refused after.
    let mut other = Browser::new(&server);
    let Stop::Page(_, refused) = confirm_at_provider(&mut other, &session, "eve").await else { panic!() };
    assert_eq!(refused.status, StatusCode::OK, "{}", refused.body);
    assert!(refused.body.contains("will be refused"), "{}", refused.body);
    let after = paula.request("DELETE", &delete, Some(json!({"auth": {"session": session}}))).await;
    after.err(403, "M_FORBIDDEN");

    // Paula herself (still signed in at the provider: no form this time) completes it.
    let challenge = paula.request("DELETE", &delete, Some(json!({}))).await;
    let session = challenge.body["session"].as_str().unwrap().to_owned();
    let Stop::Page(_, done) = confirm_at_provider(&mut browser, &session, "paula").await else { panic!() };
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(done.body.contains("close this window"), "{}", done.body);
    paula.request("DELETE", &delete, Some(json!({"auth": {"session": session}}))).await.ok();
    paula.get("/_matrix/client/v3/account/whoami").await.err(401, "M_UNKNOWN_TOKEN");
}
