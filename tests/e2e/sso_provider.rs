//! A real OpenID Connect provider for the upstream sign-in scenarios (`sso.rs`): the
//! `oidc-provider` package from npm run by node (`tests/clients/js/oidc_provider.mjs`), and a
//! browser walk through it — redirects followed across both servers, one cookie jar (as a
//! browser keeps per host), the provider's development login and consent forms posted.

use std::{path::Path, process::Stdio, time::Duration};

use reqwest::StatusCode;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout},
};
use trellis_core::{config::Config, sso::OidcProvider};
use trellis_testkit::TestServer;

use crate::oauth_browser::{Browser, Page};

pub(crate) const IDP: &str = "test-idp";
pub(crate) const CALLBACK: &str = "/_synapse/client/oidc/callback";

/// The provider's process, killed when dropped.
pub(crate) struct Idp {
    _child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    pub(crate) issuer: String,
}

/// Starts the provider; `None` (the scenario is skipped with a notice) when node or the
/// package is missing, unless `TRELLIS_REQUIRE_JS=1` (CI) makes that a failure.
pub(crate) async fn start() -> Option<Idp> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/js");
    let node = tokio::process::Command::new("node").arg("--version").output().await.is_ok_and(|o| o.status.success());
    if !node || !dir.join("node_modules/oidc-provider").is_dir() {
        let missing = if node { "tests/clients/js/node_modules/oidc-provider (npm ci there)" } else { "node" };
        assert!(std::env::var("TRELLIS_REQUIRE_JS").is_err(), "oidc-provider is required but {missing} is missing");
        eprintln!("skipping: {missing} is missing (scripts/test-clients.sh installs it)");
        return None;
    }
    let mut child = tokio::process::Command::new("node")
        .arg("oidc_provider.mjs")
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("node starts");
    let stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), stdout.next_line()).await.expect("provider listens");
    let issuer = line.unwrap().and_then(|l| l.strip_prefix("issuer ").map(str::to_owned)).expect("the issuer line");
    Some(Idp { _child: child, stdin, stdout, issuer })
}

impl Idp {
    /// Registers Trellis' callback on `server` as the client's redirect URI; waits until ready.
    pub(crate) async fn serve(&mut self, server: &TestServer) {
        let redirect = format!("{}{CALLBACK}\n", server.url().trim_end_matches('/'));
        self.stdin.write_all(redirect.as_bytes()).await.unwrap();
        let line = tokio::time::timeout(Duration::from_secs(60), self.stdout.next_line()).await.expect("ready");
        assert_eq!(line.unwrap().as_deref(), Some("ready"));
    }

    /// The `[[sso.oidc_providers]]` entry for it.
    pub(crate) fn config(&self) -> OidcProvider {
        OidcProvider {
            idp_id: IDP.into(),
            idp_name: "Test IdP".into(),
            idp_icon: Some("mxc://example.org/idp-icon".into()),
            issuer: self.issuer.clone(),
            client_id: "trellis".into(),
            client_secret: Some("trellis-secret".into()),
            client_auth_method: "client_secret_basic".into(),
            scopes: vec!["openid".into(), "profile".into()],
            localpart_template: "{preferred_username}".into(),
            display_name_claim: Some("name".into()),
            allow_existing_users: false,
        }
    }
}

/// Starts the provider and a server (split or monolith) signing in through it, with
/// `tweak` applied to its configuration too; `None` when the provider cannot run here.
pub(crate) async fn with_provider(split: bool, tweak: fn(&mut Config)) -> Option<(TestServer, Idp)> {
    let mut idp = start().await?;
    let provider = idp.config();
    let configure = move |c: &mut Config| {
        c.sso.oidc_providers = vec![provider.clone()];
        tweak(c);
    };
    let server = match split {
        true => TestServer::split_configured(configure).await,
        false => TestServer::monolith_configured(configure).await,
    };
    idp.serve(&server).await;
    Some((server, idp))
}

/// `location` made absolute against the URL that answered with it.
fn absolute(from: &str, location: &str) -> String {
    if location.contains("://") {
        return location.to_owned();
    }
    let scheme_end = from.find("://").unwrap() + 3;
    let origin_end = from[scheme_end..].find('/').map_or(from.len(), |i| scheme_end + i);
    format!("{}{location}", &from[..origin_end])
}

/// Where a walk stopped.
pub(crate) enum Stop {
    /// A redirect leaving both servers (the client's URL), with the login token in it.
    Client(String),
    /// The page asking before a login token goes to the client: its Continue link.
    Confirm(String),
    /// A redirect to Trellis' callback, not followed (`stop_at_callback`).
    Callback(String),
    /// Any other page of Trellis (an OAuth page after signing in, or an error).
    Page(String, Page),
}

/// Follows redirects from `url`, signing in at the provider as `user` when it asks.
pub(crate) async fn walk(browser: &mut Browser, url: &str, user: &str, stop_at_callback: bool) -> Stop {
    let mut url = url.to_owned();
    let trellis = browser.url("/");
    for _ in 0..30 {
        if stop_at_callback && url.starts_with(&browser.url(CALLBACK)) {
            return Stop::Callback(url);
        }
        let page = browser.get(&url).await;
        if let Some(location) = &page.location {
            let next = absolute(&url, location);
            if !next.starts_with("http://127.0.0.1") {
                return Stop::Client(next);
            }
            url = next;
            continue;
        }
        let prompt = page_field(&page.body, "prompt");
        let action = attr(&page.body, "action=\"").map(|a| absolute(&url, &unescape(&a)));
        match (prompt.as_deref(), action) {
            (Some("login"), Some(action)) => {
                let done = browser.post(&action, &[("prompt", "login"), ("login", user), ("password", "any")]).await;
                url = absolute(&action, done.location.as_deref().expect("the provider redirects after login"));
            }
            (Some("consent"), Some(action)) => {
                let done = browser.post(&action, &[("prompt", "consent")]).await;
                url = absolute(&action, done.location.as_deref().expect("the provider redirects after consent"));
            }
            _ if page.body.contains("Continue to your app?") => {
                assert_eq!(page.status, StatusCode::OK);
                let link = attr(&page.body, "<a href=\"").expect("a Continue link");
                return Stop::Confirm(unescape(&link));
            }
            _ if url.starts_with(&trellis) => return Stop::Page(url, page),
            _ => panic!("unexpected page at {url}: {} {}", page.status, page.body),
        }
    }
    panic!("too many redirects")
}

fn attr(html: &str, prefix: &str) -> Option<String> {
    let start = html.find(prefix)? + prefix.len();
    Some(html[start..start + html[start..].find('"')?].to_owned())
}

fn page_field(html: &str, name: &str) -> Option<String> {
    attr(html, &format!("name=\"{name}\" value=\""))
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x2F;", "/")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// A query parameter of a URL.
pub(crate) fn param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1.split('#').next().unwrap_or_default();
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).ok()?;
    pairs.into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}
