//! User-interactive auth in a browser (the spec's "Fallback"): each stage Trellis offers has a
//! page at `/auth/{type}/fallback/web?session=…` whose form completes the stage in the
//! session, and the client then finishes with the session alone. Also the captcha stage,
//! verified with a siteverify endpoint run by the test (Google's, in a deployment).

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpListener,
};

use serde_json::{Value, json};
use trellis_core::config::{Config, RecaptchaConfig, RegistrationTokenConfig};
use trellis_testkit::TestServer;

both_modes!(configured guarded;
    registration_completes_through_the_fallback_pages,
    a_password_confirmation_completes_through_its_page,
    fallback_pages_refuse_what_they_do_not_know);

const V3: &str = "/_matrix/client/v3";
const SITE_KEY: &str = "site-key-for-tests";
/// The captcha answer the test's verification endpoint accepts.
const HUMAN: &str = "answered-by-a-human";

/// Registration needs a token and the captcha, verified by a local siteverify endpoint.
fn guarded(c: &mut Config) {
    c.registration.requires_token = true;
    c.registration.tokens =
        vec![RegistrationTokenConfig { token: "open-door".into(), uses_allowed: None, expiry_time: None }];
    c.registration.recaptcha = Some(RecaptchaConfig {
        public_key: SITE_KEY.into(),
        private_key: "secret-for-tests".into(),
        siteverify_api: siteverify(),
        required: true,
    });
}

/// A siteverify endpoint: `{"success": true}` for the secret and the answer [`HUMAN`],
/// `{"success": false}` for anything else. Its URL.
fn siteverify() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/recaptcha/api/siteverify", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let body = String::from_utf8_lossy(&body);
            let human = body.contains("secret=secret-for-tests") && body.contains(&format!("response={HUMAN}"));
            let answer = format!("{{\"success\": {human}}}");
            let _ = write!(
                reader.get_mut(),
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    url
}

fn page_url(server: &TestServer, stage: &str, session: &str) -> String {
    format!("{}{V3}/auth/{stage}/fallback/web?session={session}", server.url())
}

/// The page a browser gets: status and HTML.
async fn open(url: &str) -> (u16, String) {
    let reply = reqwest::get(url).await.unwrap();
    (reply.status().as_u16(), reply.text().await.unwrap())
}

/// Submits the page's form as a browser would.
async fn submit(url: &str, fields: &[(&str, &str)]) -> String {
    let body: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let reply = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.join("&"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    reply.text().await.unwrap()
}

fn is_done(page: &str) -> bool {
    page.contains("window.onAuthDone()") && page.contains("\"authDone\"")
}

async fn registration_completes_through_the_fallback_pages(server: TestServer) {
    let start = server.client().post(&format!("{V3}/register"), json!({"username": "fay", "password": "pw-123"})).await;
    assert_eq!(start.status, 401, "{}", start.body);
    let stages = json!(["m.login.registration_token", "m.login.recaptcha", "m.login.dummy"]);
    assert_eq!(start.body["flows"], json!([{ "stages": stages }]));
    assert_eq!(start.body["params"]["m.login.recaptcha"]["public_key"], SITE_KEY);
    let session = start.body["session"].as_str().unwrap().to_owned();

    // The token page: a wrong token is shown on the form again, the right one is done.
    let url = page_url(&server, "m.login.registration_token", &session);
    let (status, page) = open(&url).await;
    assert_eq!(status, 200);
    assert!(page.contains(r#"name="token""#) && page.contains(&session), "{page}");
    let wrong = submit(&url, &[("session", &session), ("token", "no-such-token")]).await;
    assert!(!is_done(&wrong) && wrong.contains("Invalid registration token"), "{wrong}");
    assert!(is_done(&submit(&url, &[("session", &session), ("token", "open-door")]).await));

    // The captcha page shows the site key; the endpoint decides.
    let url = page_url(&server, "m.login.recaptcha", &session);
    let (_, page) = open(&url).await;
    assert!(page.contains(SITE_KEY), "{page}");
    let robot = submit(&url, &[("session", &session), ("g-recaptcha-response", "beep")]).await;
    assert!(!is_done(&robot) && robot.contains("Captcha was not solved"), "{robot}");
    assert!(is_done(&submit(&url, &[("session", &session), ("g-recaptcha-response", HUMAN)]).await));

    // Back in the client: the session shows both stages done; the last one registers.
    let asked = server.client().post(&format!("{V3}/register"), json!({"auth": {"session": session}})).await;
    assert_eq!(asked.status, 401, "{}", asked.body);
    assert_eq!(asked.body["completed"], json!(["m.login.registration_token", "m.login.recaptcha"]));
    let done = server
        .client()
        .post(&format!("{V3}/register"), json!({"auth": {"type": "m.login.dummy", "session": session}}))
        .await
        .ok();
    assert_eq!(done["user_id"], "@fay:localhost");
}

/// Registers `name` through the API, every stage done by the client itself; signed in.
async fn member(server: &TestServer, name: &str, password: &str) -> trellis_testkit::Client {
    let mut client = server.client();
    let start = client.post(&format!("{V3}/register"), json!({"username": name, "password": password})).await;
    let session = start.body["session"].as_str().unwrap().to_owned();
    for auth in [
        json!({"type": "m.login.registration_token", "token": "open-door"}),
        json!({"type": "m.login.recaptcha", "response": HUMAN}),
    ] {
        let mut auth = auth;
        auth["session"] = json!(session);
        let reply = client.post(&format!("{V3}/register"), json!({ "auth": auth })).await;
        assert_eq!(reply.status, 401, "{}", reply.body);
        assert!(reply.body.get("errcode").is_none(), "{}", reply.body);
    }
    let auth = json!({"type": "m.login.dummy", "session": session});
    let done = server.client().post(&format!("{V3}/register"), json!({ "auth": auth })).await.ok();
    assert_eq!(done["user_id"], format!("@{name}:localhost"));
    client.login(name, password).await;
    client
}

async fn a_password_confirmation_completes_through_its_page(server: TestServer) {
    let gus = member(&server, "gus", "pw-gus-1").await;
    let mut other = server.client();
    let device = other.login("gus", "pw-gus-1").await["device_id"].as_str().unwrap().to_owned();
    let path = format!("{V3}/devices/{device}");
    let start = gus.request("DELETE", &path, Some(json!({}))).await;
    assert_eq!(start.status, 401, "{}", start.body);
    assert_eq!(start.body["flows"], json!([{"stages": ["m.login.password"]}]));
    let session = start.body["session"].as_str().unwrap().to_owned();

    let url = page_url(&server, "m.login.password", &session);
    let wrong = submit(&url, &[("session", &session), ("password", "not-it")]).await;
    assert!(!is_done(&wrong) && wrong.contains("Invalid password"), "{wrong}");
    assert!(is_done(&submit(&url, &[("session", &session), ("password", "pw-gus-1")]).await));

    gus.request("DELETE", &path, Some(json!({"auth": {"session": session}}))).await.ok();
    gus.get(&path).await.err(404, "M_NOT_FOUND");
}

async fn fallback_pages_refuse_what_they_do_not_know(server: TestServer) {
    let (status, body) = open(&page_url(&server, "m.login.sso", "whatever")).await;
    assert_eq!(status, 404, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["errcode"], "M_NOT_FOUND");
    let missing = server.client().get(&format!("{V3}/auth/m.login.dummy/fallback/web")).await;
    missing.err(400, "M_MISSING_PARAM");
    let url = page_url(&server, "m.login.dummy", "no-such-session");
    let unknown = submit(&url, &[("session", "no-such-session")]).await;
    assert!(!is_done(&unknown) && unknown.contains("Unknown session ID"), "{unknown}");
}
