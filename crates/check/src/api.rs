//! The client-API checks: client well-known, `/versions`, CORS, login flows, media config and,
//! with a test account, a sync round trip.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::{Method, StatusCode, Url, header};
use serde_json::{Value, json};

use crate::{Finding, Options};

/// The origin a web client would use when checking CORS.
const WEB_ORIGIN: &str = "https://app.element.io";

/// Where the checks go, and the HTTP client that gets there.
pub struct Target {
    /// `scheme://host[:port]` of what the operator gave.
    pub origin: Url,
    http: reqwest::Client,
}

impl Target {
    pub(crate) fn new(options: &Options) -> Result<Target, Finding> {
        let given = options.url.trim();
        let with_scheme = if given.contains("://") { given.to_owned() } else { format!("https://{given}") };
        let mut origin = Url::parse(&with_scheme).map_err(|e| {
            Finding::fail("url", format!("{given:?} is not a URL ({e})"), "give a server name or an https:// URL")
        })?;
        if !matches!(origin.scheme(), "http" | "https") || origin.host_str().is_none() {
            return Err(Finding::fail("url", format!("{given:?} is not an http(s) URL"), "give an https:// URL"));
        }
        origin.set_path("");
        origin.set_query(None);
        origin.set_fragment(None);
        let mut builder = reqwest::Client::builder()
            .timeout(options.timeout)
            .redirect(reqwest::redirect::Policy::limited(5))
            .user_agent(concat!("trellis-check/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &options.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| Finding::fail("url", format!("the CA file is not PEM ({e})"), "give PEM certificates"))?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| Finding::fail("url", format!("no HTTP client: {e}"), "report this as a bug"))?;
        Ok(Target { origin, http })
    }

    fn url(base: &Url, path: &str) -> Url {
        let mut url = base.clone();
        let joined = format!("{}{}", base.path().trim_end_matches('/'), path);
        url.set_path(&joined);
        url
    }

    async fn json(&self, request: reqwest::RequestBuilder) -> Result<(StatusCode, header::HeaderMap, Value), String> {
        let response = request.send().await.map_err(describe)?;
        let (status, headers) = (response.status(), response.headers().clone());
        let text = response.text().await.map_err(describe)?;
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok((status, headers, body))
    }
}

/// reqwest's error as its causes (the interesting part, such as a certificate problem, is
/// usually several levels down; the top level only repeats the URL).
fn describe(error: reqwest::Error) -> String {
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    match causes.is_empty() {
        true => error.to_string(),
        false => causes.join(": "),
    }
}

pub(crate) async fn run(target: &Target, options: &Options) -> Vec<Finding> {
    let (well_known, base) = well_known(target).await;
    let mut findings = vec![well_known];
    let versions = versions(target, &base).await;
    let reachable = versions.outcome != crate::Outcome::Fail;
    findings.push(versions);
    if !reachable {
        for check in ["cors", "login", "media", "sync"] {
            findings.push(Finding::skip(check, "the client API did not answer"));
        }
        return findings;
    }
    findings.push(cors(target, &base).await);
    findings.push(login_flows(target, &base).await);
    match (&options.user, &options.password) {
        (Some(user), Some(password)) => findings.extend(with_account(target, &base, user, password).await),
        _ => {
            findings.push(Finding::skip("media", "needs a test account (--user and --password)"));
            findings.push(Finding::skip("sync", "needs a test account (--user and --password)"));
        }
    }
    findings
}

/// `/.well-known/matrix/client` on the origin: where clients given only the server name find
/// the client API. Returns the base URL the other checks use.
async fn well_known(target: &Target) -> (Finding, Url) {
    const CHECK: &str = "well-known";
    let url = Target::url(&target.origin, "/.well-known/matrix/client");
    let fallback = target.origin.clone();
    let (status, headers, body) = match target.json(target.http.get(url.clone())).await {
        Ok(answer) => answer,
        Err(e) => {
            let fix = "make the server reachable at this address (DNS, firewall, TLS certificate)";
            return (Finding::fail(CHECK, format!("{url} could not be fetched: {e}"), fix), fallback);
        }
    };
    if status != StatusCode::OK {
        let fix = format!(
            "serve {{\"m.homeserver\": {{\"base_url\": \"{}\"}}}} there (with Access-Control-Allow-Origin: *) \
             so that clients given only the server name find the client API",
            target.origin.as_str().trim_end_matches('/')
        );
        return (Finding::warn(CHECK, format!("{url} answered {status}; using {fallback} itself"), fix), fallback);
    }
    let Some(base) = body["m.homeserver"]["base_url"].as_str() else {
        let fix = "answer a JSON object with m.homeserver.base_url, the client API's URL";
        return (Finding::fail(CHECK, format!("{url} has no m.homeserver.base_url: {body}"), fix), fallback);
    };
    let Ok(base_url) = Url::parse(base) else {
        let fix = "make m.homeserver.base_url an absolute https:// URL";
        return (Finding::fail(CHECK, format!("m.homeserver.base_url {base:?} is not a URL"), fix), fallback);
    };
    match headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).and_then(|v| v.to_str().ok()) {
        Some("*") => (Finding::ok(CHECK, format!("base_url {base}")), base_url),
        other => {
            let fix = "add the header Access-Control-Allow-Origin: * to the well-known answer (web clients read it \
                       from another origin)";
            let detail = format!("base_url {base}, but Access-Control-Allow-Origin is {other:?}");
            (Finding::fail(CHECK, detail, fix), base_url)
        }
    }
}

/// `GET /_matrix/client/versions`: the client API answers, and with which spec versions.
async fn versions(target: &Target, base: &Url) -> Finding {
    const CHECK: &str = "versions";
    let url = Target::url(base, "/_matrix/client/versions");
    let fix = "route /_matrix to the homeserver at this base URL (reverse proxy or ingress paths)";
    match target.json(target.http.get(url.clone())).await {
        Err(e) => Finding::fail(CHECK, format!("{url} could not be fetched: {e}"), fix),
        Ok((status, _, body)) if status != StatusCode::OK => {
            Finding::fail(CHECK, format!("{url} answered {status}: {body}"), fix)
        }
        Ok((_, _, body)) => {
            let versions: Vec<&str> =
                body["versions"].as_array().map(|v| v.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
            match (versions.first(), versions.last()) {
                (Some(first), Some(last)) => {
                    Finding::ok(CHECK, format!("{first} … {last} ({} versions) at {base}", versions.len()))
                }
                _ => Finding::fail(CHECK, format!("{url} lists no versions: {body}"), fix),
            }
        }
    }
}

/// CORS as the spec asks of every client-API path: a preflight for an authenticated POST from
/// a web client, and the header on an ordinary answer.
async fn cors(target: &Target, base: &Url) -> Finding {
    const CHECK: &str = "cors";
    let fix = "answer every /_matrix path, OPTIONS preflights included, with Access-Control-Allow-Origin: *, \
               Access-Control-Allow-Methods: GET, POST, PUT, DELETE, OPTIONS and Access-Control-Allow-Headers: \
               X-Requested-With, Content-Type, Authorization (a proxy that drops them breaks web clients)";
    let url = Target::url(base, "/_matrix/client/v3/login");
    let preflight = target
        .http
        .request(Method::OPTIONS, url.clone())
        .header(header::ORIGIN, WEB_ORIGIN)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization,content-type");
    let (status, headers) = match preflight.send().await {
        Ok(response) => (response.status(), response.headers().clone()),
        Err(e) => return Finding::fail(CHECK, format!("preflight of {url} failed: {}", describe(e)), fix),
    };
    let value = |name: header::HeaderName| {
        headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_ascii_lowercase).unwrap_or_default()
    };
    let origin = value(header::ACCESS_CONTROL_ALLOW_ORIGIN);
    let methods = value(header::ACCESS_CONTROL_ALLOW_METHODS);
    let allowed = value(header::ACCESS_CONTROL_ALLOW_HEADERS);
    let mut missing = Vec::new();
    if !status.is_success() {
        missing.push(format!("the preflight answered {status}"));
    }
    if origin != "*" && origin != WEB_ORIGIN {
        missing.push(format!("Access-Control-Allow-Origin is {origin:?}"));
    }
    if !(methods.contains("post") || methods.contains('*')) {
        missing.push(format!("Access-Control-Allow-Methods {methods:?} lacks POST"));
    }
    if !(allowed.contains("authorization") || allowed.contains('*')) {
        missing.push(format!("Access-Control-Allow-Headers {allowed:?} lacks Authorization"));
    }
    let plain = target.http.get(Target::url(base, "/_matrix/client/versions")).header(header::ORIGIN, WEB_ORIGIN);
    match plain.send().await {
        Ok(response) if response.headers().contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) => {}
        Ok(_) => missing.push("GET /versions has no Access-Control-Allow-Origin".to_owned()),
        Err(e) => missing.push(format!("GET /versions failed: {}", describe(e))),
    }
    match missing.is_empty() {
        true => Finding::ok(CHECK, format!("preflight allows {WEB_ORIGIN} to POST with Authorization")),
        false => Finding::fail(CHECK, missing.join("; "), fix),
    }
}

/// `GET /login`: the ways clients can sign in.
async fn login_flows(target: &Target, base: &Url) -> Finding {
    const CHECK: &str = "login";
    let url = Target::url(base, "/_matrix/client/v3/login");
    let fix = "enable at least one login type (password or SSO) in the homeserver's configuration";
    match target.json(target.http.get(url.clone())).await {
        Err(e) => Finding::fail(CHECK, format!("{url} could not be fetched: {e}"), fix),
        Ok((status, _, body)) => {
            let flows: Vec<&str> = body["flows"]
                .as_array()
                .map(|f| f.iter().filter_map(|f| f["type"].as_str()).collect())
                .unwrap_or_default();
            match flows.is_empty() {
                true => Finding::fail(CHECK, format!("{url} answered {status} with no login flows: {body}"), fix),
                false => Finding::ok(CHECK, format!("flows {}", flows.join(", "))),
            }
        }
    }
}

/// With a test account: the media configuration and a sync round trip (account data written
/// comes back through `/sync`), signing in and out again.
async fn with_account(target: &Target, base: &Url, user: &str, password: &str) -> Vec<Finding> {
    let login = json!({
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user},
        "password": password,
        "initial_device_display_name": "trellis check",
    });
    let url = Target::url(base, "/_matrix/client/v3/login");
    let (token, user_id) = match target.json(target.http.post(url).json(&login)).await {
        Ok((StatusCode::OK, _, body)) => match (body["access_token"].as_str(), body["user_id"].as_str()) {
            (Some(token), Some(user_id)) => (token.to_owned(), user_id.to_owned()),
            _ => return signed_out(format!("login answered without a token: {body}")),
        },
        Ok((status, _, body)) => return signed_out(format!("login as {user} answered {status}: {body}")),
        Err(e) => return signed_out(format!("login failed: {e}")),
    };
    let findings = vec![media(target, base, &token).await, sync_round_trip(target, base, &token, &user_id).await];
    let logout = target.http.post(Target::url(base, "/_matrix/client/v3/logout")).bearer_auth(&token).json(&json!({}));
    let _ = logout.send().await;
    findings
}

fn signed_out(detail: String) -> Vec<Finding> {
    let fix = "give the user ID and password of an existing test account";
    vec![Finding::fail("media", detail.clone(), fix), Finding::skip("sync", "not signed in")]
}

/// The media repository's limits, from the authenticated endpoint (spec v1.11) or the old one.
async fn media(target: &Target, base: &Url, token: &str) -> Finding {
    const CHECK: &str = "media";
    let mut last = String::new();
    for path in ["/_matrix/client/v1/media/config", "/_matrix/media/v3/config"] {
        let url = Target::url(base, path);
        match target.json(target.http.get(url.clone()).bearer_auth(token)).await {
            Ok((StatusCode::OK, _, body)) => {
                return match body["m.upload.size"].as_u64() {
                    Some(size) => Finding::ok(CHECK, format!("uploads up to {} (from {path})", human_size(size))),
                    None => Finding::ok(CHECK, format!("no upload size limit announced (from {path})")),
                };
            }
            Ok((status, _, body)) => last = format!("{url} answered {status}: {body}"),
            Err(e) => last = format!("{url} could not be fetched: {e}"),
        }
    }
    Finding::fail(CHECK, last, "route /_matrix/client/v1/media and /_matrix/media to the homeserver")
}

fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} bytes"),
    }
}

/// Writes account data and waits for it on an incremental `/sync`, as a client would see a
/// change: proves the long-poll path (through any load balancer and sync worker) end to end.
async fn sync_round_trip(target: &Target, base: &Url, token: &str, user_id: &str) -> Finding {
    const CHECK: &str = "sync";
    let fix = "check that long-polls reach the sync workers and that the proxy allows requests of 30 s or more";
    let filter = json!({"room": {"rooms": []}, "presence": {"types": []}}).to_string();
    let sync = |since: Option<String>, timeout_ms: u64| {
        let mut url = Target::url(base, "/_matrix/client/v3/sync");
        url.query_pairs_mut().append_pair("filter", &filter).append_pair("timeout", &timeout_ms.to_string());
        if let Some(since) = since {
            url.query_pairs_mut().append_pair("since", &since);
        }
        let request = target
            .http
            .get(url)
            .bearer_auth(token)
            .timeout(Duration::from_millis(timeout_ms) + Duration::from_secs(10));
        target.json(request)
    };
    let mut since = match sync(None, 0).await {
        Ok((StatusCode::OK, _, body)) => body["next_batch"].as_str().map(str::to_owned),
        Ok((status, _, body)) => return Finding::fail(CHECK, format!("initial /sync answered {status}: {body}"), fix),
        Err(e) => return Finding::fail(CHECK, format!("initial /sync failed: {e}"), fix),
    };
    if since.is_none() {
        return Finding::fail(CHECK, "initial /sync has no next_batch", fix);
    }
    let nonce = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default().to_string();
    let path = format!("/_matrix/client/v3/user/{user_id}/account_data/org.trellis.check");
    let started = Instant::now();
    let put = target.http.put(Target::url(base, &path)).bearer_auth(token).json(&json!({"nonce": nonce}));
    match target.json(put).await {
        Ok((StatusCode::OK, _, _)) => {}
        Ok((status, _, body)) => {
            return Finding::fail(CHECK, format!("writing account data answered {status}: {body}"), fix);
        }
        Err(e) => return Finding::fail(CHECK, format!("writing account data failed: {e}"), fix),
    }
    // A few long-polls: other changes of the account may come first.
    for _ in 0..5 {
        let body = match sync(since.clone(), 10_000).await {
            Ok((StatusCode::OK, _, body)) => body,
            Ok((status, _, body)) => return Finding::fail(CHECK, format!("/sync answered {status}: {body}"), fix),
            Err(e) => return Finding::fail(CHECK, format!("/sync failed: {e}"), fix),
        };
        let seen = body["account_data"]["events"].as_array().is_some_and(|events| {
            events.iter().any(|e| e["type"] == "org.trellis.check" && e["content"]["nonce"] == nonce)
        });
        if seen {
            return Finding::ok(
                CHECK,
                format!("a change came back through /sync in {} ms", started.elapsed().as_millis()),
            );
        }
        since = body["next_batch"].as_str().map(str::to_owned).or(since);
    }
    Finding::fail(CHECK, "account data written was not in /sync after five long-polls", fix)
}
