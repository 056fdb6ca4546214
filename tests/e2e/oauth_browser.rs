//! The browser and client sides of the OAuth 2.0 scenarios (`oauth.rs`): a browser that keeps
//! cookies and posts the pages' forms, PKCE, client registration and the token endpoint.

use std::collections::BTreeMap;

use base64::Engine;
use reqwest::{StatusCode, header};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use trellis_testkit::TestServer;

pub(crate) const DEVICE_SCOPE: &str = "urn:matrix:client:device:";
pub(crate) const API_SCOPE: &str = "urn:matrix:client:api:*";
pub(crate) const REDIRECT: &str = "https://client.example/cb";

/// A browser: cookies kept, redirects not followed.
pub(crate) struct Browser {
    http: reqwest::Client,
    base: String,
    cookies: BTreeMap<String, String>,
}

pub(crate) struct Page {
    pub(crate) status: StatusCode,
    pub(crate) location: Option<String>,
    pub(crate) body: String,
}

impl Browser {
    pub(crate) fn new(server: &TestServer) -> Browser {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Browser { http, base: server.url().trim_end_matches('/').to_owned(), cookies: BTreeMap::new() }
    }

    pub(crate) fn url(&self, target: &str) -> String {
        if target.starts_with("http") { target.to_owned() } else { format!("{}{target}", self.base) }
    }

    pub(crate) fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    pub(crate) async fn page(&mut self, response: reqwest::Response) -> Page {
        for set in response.headers().get_all(header::SET_COOKIE) {
            let pair = set.to_str().unwrap().split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            if v.is_empty() {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), v.to_owned());
            }
        }
        let location = response.headers().get(header::LOCATION).map(|l| l.to_str().unwrap().to_owned());
        Page { status: response.status(), location, body: response.text().await.unwrap() }
    }

    pub(crate) async fn get(&mut self, target: &str) -> Page {
        let r = self.http.get(self.url(target)).header(header::COOKIE, self.cookie_header()).send().await.unwrap();
        self.page(r).await
    }

    pub(crate) async fn post(&mut self, target: &str, form: &[(&str, &str)]) -> Page {
        let r = self
            .http
            .post(self.url(target))
            .header(header::COOKIE, self.cookie_header())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(form).unwrap())
            .send()
            .await
            .unwrap();
        self.page(r).await
    }

    /// Fills in the page's form: its hidden fields plus `fields`, posted to `action`.
    pub(crate) async fn submit(&mut self, page: &Page, action: &str, fields: &[(&str, &str)]) -> Page {
        let mut form: Vec<(String, String)> = ["csrf", "continue", "request"]
            .iter()
            .filter_map(|name| field(&page.body, name).map(|v| (name.to_string(), v)))
            .collect();
        form.extend(fields.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.post(action, &form).await
    }
}

/// A form field's value in a page (the pages escape it).
pub(crate) fn field(html: &str, name: &str) -> Option<String> {
    let start = html.find(&format!("name=\"{name}\" value=\""))? + name.len() + 15;
    let value = &html[start..start + html[start..].find('"')?];
    Some(
        value
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&#39;", "'")
            .replace("&amp;", "&"),
    )
}

/// The parameters the browser brings back to the client in a redirect's fragment or query.
pub(crate) fn callback(location: &str) -> BTreeMap<String, String> {
    let params = location.split_once('#').or_else(|| location.split_once('?')).unwrap().1;
    serde_urlencoded::from_str(params).unwrap()
}

pub(crate) fn pkce() -> (String, String) {
    let verifier = format!("v{}", "0123456789abcdefghijklmnopqrstuvwxyz-._~ABCDEFGHIJ");
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

pub(crate) async fn metadata(server: &TestServer) -> Value {
    let r = server.client().get("/_matrix/client/v1/auth_metadata").await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

/// Registers a web client with every grant; its ID.
pub(crate) async fn register_client(meta: &Value) -> String {
    let body = json!({
        "client_name": "Test client", "client_name#fr": "Client de test",
        "client_uri": "https://client.example/", "redirect_uris": [REDIRECT],
        "grant_types": ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"],
        "response_types": ["code"], "token_endpoint_auth_method": "none", "application_type": "web",
    });
    let r =
        reqwest::Client::new().post(meta["registration_endpoint"].as_str().unwrap()).json(&body).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let client: Value = r.json().await.unwrap();
    assert_eq!(client["token_endpoint_auth_method"], "none");
    assert!(client.get("client_name#fr").is_none(), "localized fields are not registered: {client}");
    client["client_id"].as_str().unwrap().to_owned()
}

pub(crate) fn authorize_url(meta: &Value, client_id: &str, device: &str, challenge: &str, extra: &str) -> String {
    let query = serde_urlencoded::to_string([
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", REDIRECT),
        ("scope", &format!("{API_SCOPE} {DEVICE_SCOPE}{device}")),
        ("state", "st4te"),
        ("response_mode", "fragment"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ])
    .unwrap();
    format!("{}?{query}{extra}", meta["authorization_endpoint"].as_str().unwrap())
}

/// A form POST to the token (or another machine) endpoint: status and JSON.
pub(crate) async fn post_form(url: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let r = reqwest::Client::new()
        .post(url)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(form).unwrap())
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) })
}

pub(crate) async fn whoami(server: &TestServer, token: &str) -> trellis_testkit::Reply {
    let mut c = server.client();
    c.token = Some(token.to_owned());
    c.get("/_matrix/client/v3/account/whoami").await
}

/// Signs `user` in on the login page the browser is on; the page after the redirect.
pub(crate) async fn sign_in(browser: &mut Browser, login: &Page, user: &str, password: &str) -> Page {
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    assert!(login.body.contains("Sign in"), "{}", login.body);
    let done = browser.submit(login, "/_trellis/oauth2/login", &[("username", user), ("password", password)]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let next = done.location.unwrap();
    browser.get(&next).await
}

/// Allows on the consent page; the code the client gets back.
pub(crate) async fn consent(browser: &mut Browser, page: &Page) -> String {
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("Test client"), "{}", page.body);
    let done = browser.submit(page, "/_trellis/oauth2/consent", &[("action", "allow")]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let location = done.location.unwrap();
    assert!(location.starts_with(&format!("{REDIRECT}#")), "{location}");
    let params = callback(&location);
    assert_eq!(params["state"], "st4te");
    params["code"].clone()
}

pub(crate) async fn exchange(meta: &Value, client_id: &str, code: &str, verifier: &str) -> (StatusCode, Value) {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("client_id", client_id),
        ("code_verifier", verifier),
    ];
    post_form(meta["token_endpoint"].as_str().unwrap(), &form).await
}
