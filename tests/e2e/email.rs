//! Email 3PIDs end to end against a real SMTP server: aiosmtpd (PyPI), run with its Maildir
//! handler, receives the validation mails Trellis sends; the test reads them, follows the link,
//! adds the address, signs in with it, resets the password by email, registers an account
//! with an address, and removes addresses (also by deactivation).
//!
//! Needs `python3` with `aiosmtpd` (`make test` installs it). Without it the tests are skipped
//! with a notice, unless `TRELLIS_REQUIRE_SMTP=1` (set by CI) makes that a failure.

use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    sync::Mutex,
    thread::ThreadId,
    time::Duration,
};

use serde_json::{Value, json};
use trellis_core::config::{Config, SmtpTls};
use trellis_testkit::{Client, TestServer};

both_modes!(configured with_smtp_sink;
    an_address_is_validated_added_used_to_sign_in_and_to_reset_the_password,
    an_account_registers_with_an_address_and_loses_it_when_deactivated);

const V3: &str = "/_matrix/client/v3";

/// An aiosmtpd process storing what it receives in a Maildir; stopped when dropped.
struct Sink {
    child: std::process::Child,
    port: u16,
    maildir: PathBuf,
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.maildir);
    }
}

/// Each test thread's sink (none: aiosmtpd is not installed). Split mode configures every
/// process with the same tweak, so the first call starts the sink and the others reuse it.
static SINKS: Mutex<Option<HashMap<ThreadId, Option<Sink>>>> = Mutex::new(None);

fn aiosmtpd_available() -> bool {
    std::process::Command::new("python3").args(["-c", "import aiosmtpd"]).output().is_ok_and(|o| o.status.success())
}

fn start_sink() -> Option<Sink> {
    if !aiosmtpd_available() {
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let maildir = std::env::temp_dir().join(format!("trellis-maildir-{port}-{}", std::process::id()));
    let child = std::process::Command::new("python3")
        .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
        .arg(&maildir)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("aiosmtpd starts");
    let sink = Sink { child, port, maildir };
    // Listening once a connection is accepted (it takes a moment to import and bind).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "aiosmtpd listens within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(sink)
}

fn with_smtp_sink(config: &mut Config) {
    let mut sinks = SINKS.lock().unwrap();
    let sink = sinks.get_or_insert_with(HashMap::new).entry(std::thread::current().id()).or_insert_with(start_sink);
    if let Some(sink) = sink {
        config.email.smtp_host = Some("127.0.0.1".into());
        config.email.smtp_port = sink.port;
        config.email.smtp_tls = SmtpTls::None;
        config.email.notif_from = "Trellis <noreply@localhost>".into();
    }
}

fn take_sink() -> Option<Sink> {
    let sink = SINKS.lock().unwrap().as_mut().and_then(|all| all.remove(&std::thread::current().id())).flatten();
    if sink.is_none() {
        assert!(std::env::var("TRELLIS_REQUIRE_SMTP").is_err(), "aiosmtpd is required but cannot be imported");
        eprintln!("skipping: python3 with aiosmtpd is not installed (pip install aiosmtpd)");
    }
    sink
}

impl Sink {
    /// The link of the next mail to `to` not read before (waits for it to arrive).
    async fn link_to(&self, to: &str, read: &mut HashSet<PathBuf>) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let new = self.maildir.join("new");
            for entry in std::fs::read_dir(&new).into_iter().flatten().flatten() {
                let path = entry.path();
                if read.contains(&path) {
                    continue;
                }
                let mail = std::fs::read_to_string(&path).unwrap_or_default();
                if mail.lines().any(|l| l.eq_ignore_ascii_case(&format!("To: {to}"))) {
                    read.insert(path);
                    let link = mail.split_whitespace().find(|w| w.starts_with("http")).expect("a link in the mail");
                    return link.to_owned();
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "a mail to {to} arrives within 30 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Opens a mailed link on this server (its path and query: the link names the configured
/// public base URL, which a test server does not have).
async fn follow(server: &TestServer, link: &str) -> trellis_testkit::Reply {
    let url = url::Url::parse(link).expect("a URL");
    assert_eq!(url.path(), "/_synapse/client/email/submit_token");
    server.client().get(&format!("{}?{}", url.path(), url.query().unwrap_or_default())).await
}

async fn request_token(client: &Client, path: &str, secret: &str, email: &str) -> trellis_testkit::Reply {
    client.post(&format!("{V3}{path}"), json!({"client_secret": secret, "email": email, "send_attempt": 1})).await
}

fn email_login(address: &str, password: &str) -> Value {
    json!({
        "type": "m.login.password",
        "identifier": {"type": "m.id.thirdparty", "medium": "email", "address": address},
        "password": password,
    })
}

async fn an_address_is_validated_added_used_to_sign_in_and_to_reset_the_password(server: TestServer) {
    let Some(sink) = take_sink() else { return };
    let mut read = HashSet::new();
    let mut alice = server.client();
    alice.register("alice", "old-password").await;
    let capabilities = alice.get(&format!("{V3}/capabilities")).await.ok();
    assert_eq!(capabilities["capabilities"]["m.3pid_changes"]["enabled"], true, "{capabilities}");

    // The mailed link validates the session: before it, the session proves nothing.
    let sid = request_token(&alice, "/account/3pid/email/requestToken", "secret-1", "Alice@Example.org").await.ok();
    let sid = sid["sid"].as_str().expect("sid").to_owned();
    let add = json!({"client_secret": "secret-1", "sid": sid});
    let password_auth = |session: &str| {
        json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
               "password": "old-password", "session": session})
    };
    let challenge = alice.post(&format!("{V3}/account/3pid/add"), add.clone()).await;
    assert_eq!(challenge.status, 401, "{}", challenge.body);
    let mut early = add.clone();
    early["auth"] = password_auth(challenge.body["session"].as_str().unwrap());
    alice.post(&format!("{V3}/account/3pid/add"), early).await.err(400, "M_THREEPID_AUTH_FAILED");

    let link = sink.link_to("alice@example.org", &mut read).await;
    let mut forged = url::Url::parse(&link).unwrap();
    let query: Vec<(String, String)> = forged
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "token" { "forged".to_owned() } else { v.into_owned() };
            (k.into_owned(), v)
        })
        .collect();
    forged.query_pairs_mut().clear().extend_pairs(query);
    assert_eq!(follow(&server, forged.as_str()).await.status, 400, "a wrong token validates nothing");
    assert_eq!(follow(&server, &link).await.status, 200);

    let challenge = alice.post(&format!("{V3}/account/3pid/add"), add.clone()).await;
    let mut with_auth = add.clone();
    with_auth["auth"] = password_auth(challenge.body["session"].as_str().unwrap());
    alice.post(&format!("{V3}/account/3pid/add"), with_auth).await.ok();
    let listed = alice.get(&format!("{V3}/account/3pid")).await.ok();
    assert_eq!(listed["threepids"].as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(
        (listed["threepids"][0]["medium"].as_str(), listed["threepids"][0]["address"].as_str()),
        (Some("email"), Some("alice@example.org"))
    );
    assert!(listed["threepids"][0]["validated_at"].as_u64().is_some_and(|t| t > 0), "{listed}");

    // The address is alice's: nobody else may claim it, and it signs her in.
    let mut bob = server.client();
    bob.register("bob", "bob-password").await;
    request_token(&bob, "/account/3pid/email/requestToken", "secret-2", "alice@example.org")
        .await
        .err(400, "M_THREEPID_IN_USE");
    let by_email = server.client().post(&format!("{V3}/login"), email_login("ALICE@example.org", "old-password")).await;
    assert_eq!(by_email.ok()["user_id"], "@alice:localhost");
    let legacy = json!({"type": "m.login.password", "medium": "email", "address": "alice@example.org",
                        "password": "old-password"});
    assert_eq!(server.client().post(&format!("{V3}/login"), legacy).await.ok()["user_id"], "@alice:localhost");
    server
        .client()
        .post(&format!("{V3}/login"), email_login("alice@example.org", "wrong"))
        .await
        .err(403, "M_FORBIDDEN");
    server
        .client()
        .post(&format!("{V3}/login"), email_login("nobody@example.org", "old-password"))
        .await
        .err(403, "M_FORBIDDEN");

    // A forgotten password: reset through a mailed link, no access token.
    let anonymous = server.client();
    request_token(&anonymous, "/account/password/email/requestToken", "secret-3", "nobody@example.org")
        .await
        .err(400, "M_THREEPID_NOT_FOUND");
    let reset_sid = request_token(&anonymous, "/account/password/email/requestToken", "secret-3", "alice@example.org")
        .await
        .ok()["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let reset = json!({"new_password": "new-password"});
    let challenge = anonymous.post(&format!("{V3}/account/password"), reset.clone()).await;
    assert_eq!(challenge.status, 401, "{}", challenge.body);
    assert_eq!(challenge.body["flows"], json!([{"stages": ["m.login.email.identity"]}]));
    let session = challenge.body["session"].as_str().unwrap().to_owned();
    let mut with_creds = reset.clone();
    with_creds["auth"] = json!({"type": "m.login.email.identity", "session": session,
                                "threepid_creds": {"sid": reset_sid, "client_secret": "secret-3"}});
    let unvalidated = anonymous.post(&format!("{V3}/account/password"), with_creds.clone()).await;
    assert_eq!((unvalidated.status, unvalidated.body["errcode"].as_str()), (401, Some("M_UNAUTHORIZED")));
    follow(&server, &sink.link_to("alice@example.org", &mut read).await).await.ok_html();
    anonymous.post(&format!("{V3}/account/password"), with_creds).await.ok();
    server
        .client()
        .post(&format!("{V3}/login"), email_login("alice@example.org", "old-password"))
        .await
        .err(403, "M_FORBIDDEN");
    server.client().post(&format!("{V3}/login"), email_login("alice@example.org", "new-password")).await.ok();
    // Her devices were signed out with the reset.
    alice.get(&format!("{V3}/account/whoami")).await.err(401, "M_UNKNOWN_TOKEN");

    // Removed, the address signs nobody in.
    let mut alice = server.client();
    alice.login("alice", "new-password").await;
    let removed = alice
        .post(&format!("{V3}/account/3pid/delete"), json!({"medium": "email", "address": "alice@example.org"}))
        .await;
    assert_eq!(removed.ok()["id_server_unbind_result"], "no-support");
    assert_eq!(alice.get(&format!("{V3}/account/3pid")).await.ok()["threepids"], json!([]));
    server
        .client()
        .post(&format!("{V3}/login"), email_login("alice@example.org", "new-password"))
        .await
        .err(403, "M_FORBIDDEN");
}

async fn an_account_registers_with_an_address_and_loses_it_when_deactivated(server: TestServer) {
    let Some(sink) = take_sink() else { return };
    let mut read = HashSet::new();
    let anonymous = server.client();
    let start = json!({"username": "carol", "password": "carol-password"});
    let challenge = anonymous.post(&format!("{V3}/register"), start.clone()).await;
    assert_eq!(challenge.status, 401, "{}", challenge.body);
    let flows = challenge.body["flows"].as_array().unwrap();
    assert!(flows.contains(&json!({"stages": ["m.login.email.identity"]})), "{}", challenge.body);
    let session = challenge.body["session"].as_str().unwrap().to_owned();

    let sid = request_token(&anonymous, "/register/email/requestToken", "secret-c", "carol@example.org").await.ok();
    // The same attempt again is the same session (no second mail is needed to go on).
    let again = request_token(&anonymous, "/register/email/requestToken", "secret-c", "carol@example.org").await.ok();
    assert_eq!(sid["sid"], again["sid"]);
    follow(&server, &sink.link_to("carol@example.org", &mut read).await).await.ok_html();
    let registered = anonymous
        .post(
            &format!("{V3}/register"),
            json!({"auth": {"type": "m.login.email.identity", "session": session,
            "threepid_creds": {"sid": sid["sid"], "client_secret": "secret-c"}}}),
        )
        .await
        .ok();
    assert_eq!(registered["user_id"], "@carol:localhost");
    let mut carol = anonymous.clone();
    carol.token = registered["access_token"].as_str().map(str::to_owned);
    let listed = carol.get(&format!("{V3}/account/3pid")).await.ok();
    assert_eq!(listed["threepids"][0]["address"], "carol@example.org", "{listed}");
    server.client().post(&format!("{V3}/login"), email_login("carol@example.org", "carol-password")).await.ok();

    // Deactivated, the account gives the address up.
    let challenge = carol.post(&format!("{V3}/account/deactivate"), json!({})).await;
    let auth = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "carol"},
                      "password": "carol-password", "session": challenge.body["session"]});
    carol.post(&format!("{V3}/account/deactivate"), json!({"auth": auth})).await.ok();
    request_token(&anonymous, "/register/email/requestToken", "secret-d", "carol@example.org").await.ok();
}

trait OkHtml {
    fn ok_html(self);
}

impl OkHtml for trellis_testkit::Reply {
    /// The validation page answered 200.
    #[track_caller]
    fn ok_html(self) {
        assert_eq!(self.status, 200, "{}", self.body);
    }
}
