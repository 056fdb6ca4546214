//! Element X's sign-in with the OAuth 2.0 API (`Client::oauth()`): the SDK discovers the
//! server metadata, registers the client, builds the authorization URL; the scenario plays
//! the browser (the login and consent forms, cookies kept, redirects not followed) until the
//! server sends it back to the redirect URI with a code; `finish_login` exchanges it; then
//! the client syncs, refreshes its token, and its session is revoked.
//!
//! Usage: `trellis-rust-sdk-scenario oauth <homeserver URL> <user> <password>` (the user
//! registered beforehand, OAuth 2.0 enabled on the server).

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail, ensure};
use matrix_sdk::{
    Client,
    authentication::oauth::registration::ClientMetadata,
    config::SyncSettings,
    reqwest::{self, header},
    ruma::serde::Raw,
};
use url::Url;

const REDIRECT: &str = "https://client.example/cb";

/// A browser: cookies kept, redirects handed back.
struct Browser {
    http: reqwest::Client,
    cookies: BTreeMap<String, String>,
}

struct Page {
    status: u16,
    location: Option<String>,
    body: String,
}

impl Browser {
    async fn send(&mut self, request: reqwest::RequestBuilder) -> Result<Page> {
        let cookies: Vec<String> = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let response = request.header(header::COOKIE, cookies.join("; ")).send().await?;
        for set in response.headers().get_all(header::SET_COOKIE) {
            if let Some((k, v)) = set.to_str()?.split(';').next().and_then(|p| p.split_once('=')) {
                self.cookies.insert(k.to_owned(), v.to_owned());
            }
        }
        let location = response.headers().get(header::LOCATION).map(|l| l.to_str().map(str::to_owned)).transpose()?;
        Ok(Page { status: response.status().as_u16(), location, body: response.text().await? })
    }

    /// Posts the page's form (its hidden fields and `fields`) to `action` on `base`.
    async fn submit(&mut self, base: &Url, page: &Page, action: &str, fields: &[(&str, &str)]) -> Result<Page> {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        for name in ["csrf", "continue", "request"] {
            if let Some(value) = field(&page.body, name) {
                form.append_pair(name, &value);
            }
        }
        form.extend_pairs(fields);
        let request = self
            .http
            .post(base.join(action)?)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form.finish());
        self.send(request).await
    }
}

fn field(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let value = &html[start..start + html[start..].find('"')?];
    Some(value.replace("&quot;", "\"").replace("&lt;", "<").replace("&gt;", ">").replace("&#39;", "'").replace("&amp;", "&"))
}

pub async fn run(url: &str, user: &str, password: &str) -> Result<()> {
    let client = Client::builder().homeserver_url(url).handle_refresh_tokens().build().await?;
    let oauth = client.oauth();
    let metadata: Raw<ClientMetadata> = Raw::from_json_string(format!(
        r#"{{"client_name": "matrix-rust-sdk scenario", "client_uri": "https://client.example/",
            "redirect_uris": ["{REDIRECT}"], "application_type": "web",
            "grant_types": ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"],
            "response_types": ["code"], "token_endpoint_auth_method": "none"}}"#
    ))?;
    let auth = oauth
        .login(Url::parse(REDIRECT)?, None, Some(metadata.into()), None)
        .build()
        .await
        .context("the SDK registers the client and builds the authorization URL")?;

    let mut browser = Browser {
        http: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?,
        cookies: BTreeMap::new(),
    };
    let base = Url::parse(url)?;
    let login = browser.send(browser.http.get(auth.url.clone())).await?;
    ensure!(login.status == 200 && login.body.contains("Sign in"), "the login page: {} {}", login.status, login.body);
    let signed_in = browser.submit(&base, &login, "/_trellis/oauth2/login", &[("username", user), ("password", password)]).await?;
    let next = signed_in.location.context("signing in redirects back to the authorization")?;
    let consent = browser.send(browser.http.get(base.join(&next)?)).await?;
    ensure!(consent.status == 200 && consent.body.contains("matrix-rust-sdk scenario"), "the consent page: {}", consent.body);
    let allowed = browser.submit(&base, &consent, "/_trellis/oauth2/consent", &[("action", "allow")]).await?;
    let Some(callback) = allowed.location.filter(|l| l.starts_with(REDIRECT)) else {
        bail!("consent did not redirect to the client: {} {}", allowed.status, allowed.body);
    };

    oauth.finish_login(Url::parse(&callback)?.into()).await.context("finish_login exchanges the code")?;
    let me = client.whoami().await?;
    ensure!(me.user_id.localpart() == user, "signed in as {}", me.user_id);
    ensure!(client.device_id().is_some_and(|d| me.device_id.as_deref() == Some(d)), "the SDK's device is the token's");
    client.sync_once(SyncSettings::default()).await.context("a sync with the OAuth token")?;
    client.refresh_access_token().await.context("the refresh grant")?;
    client.whoami().await.context("whoami with the refreshed token")?;
    // The SDK's `logout()` refuses a revocation endpoint that is not https (the test server
    // is plain http), so the scenario revokes the SDK's token itself; the SDK is then out.
    let token = client.access_token().context("the SDK holds an access token")?;
    let metadata = oauth.server_metadata().await?;
    let body = url::form_urlencoded::Serializer::new(String::new()).append_pair("token", &token).finish();
    let revoke = browser.http.post(metadata.revocation_endpoint.clone()).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    let revoked = browser.send(revoke.body(body)).await?;
    ensure!(revoked.status == 200, "revocation: {} {}", revoked.status, revoked.body);
    ensure!(client.whoami().await.is_err(), "the revoked session still works");
    println!("rust-sdk oauth scenario passed");
    Ok(())
}
