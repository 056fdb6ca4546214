//! End to end over HTTP with media settings the shared test server does not use: a whole
//! Trellis started here, as a monolith and split (the media service alone in its own
//! node, reached over gRPC), with a quota, a legacy cut-over date, URL previews on, or
//! short-lived reservations. (The S3 store is covered by the contract suite, local and over
//! gRPC, against a real S3-compatible server.)

use std::time::Duration;

use serde_json::{Value, json};
use tokio::net::TcpListener;
use trellis_core::{
    config::{BusBackend, Config, Role},
    time::now_ms,
};
use trellis_homeserver::{Listeners, Node};
use trellis_storage::testing::TestDb;

/// A started Trellis and what it runs on.
struct Server {
    url: String,
    _nodes: Vec<Node>,
    _db: TestDb,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn free() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bind loopback")
}

async fn node(config: Config, http: bool) -> Node {
    let listeners = if http {
        Listeners { http: Some(free().await), ..Default::default() }
    } else {
        Listeners { grpc: Some(free().await), ..Default::default() }
    };
    trellis_homeserver::start(config, listeners).await.expect("node starts")
}

impl Server {
    /// Monolith (`split` false) or split: auth, rooms and sync in one node, media alone in
    /// another, a gateway in a third.
    async fn start(split: bool, tweak: impl FnOnce(&mut Config)) -> Server {
        let db = TestDb::new().await.expect("test database");
        let dir = TempDir(std::env::temp_dir().join(format!("trellis-mediacfg-{}", uuid::Uuid::new_v4().simple())));
        let mut base = Config { server_name: "localhost".into(), ..Config::default() };
        base.database.url = db.url().to_owned();
        base.database.pool_size = 4;
        base.media.path = dir.0.clone();
        base.bus.backend = BusBackend::Memory;
        base.rate_limits.enabled = false;
        tweak(&mut base);
        let mut nodes = Vec::new();
        let url = if split {
            let with = |roles: Vec<Role>| Config { roles, ..base.clone() };
            let core = node(with(vec![Role::Auth, Role::Rooms, Role::Sync]), false).await;
            let media = node(with(vec![Role::Media]), false).await;
            let mut gw = with(vec![Role::Gateway]);
            let core_url = format!("http://{}", core.grpc_addr.unwrap());
            gw.remote.auth = Some(core_url.clone());
            gw.remote.rooms = Some(core_url.clone());
            gw.remote.sync = vec![core_url];
            gw.remote.media = Some(format!("http://{}", media.grpc_addr.unwrap()));
            let gateway = node(gw, true).await;
            let url = format!("http://{}", gateway.http_addr.unwrap());
            nodes.extend([core, media, gateway]);
            url
        } else {
            let mono = node(base, true).await;
            let url = format!("http://{}", mono.http_addr.unwrap());
            nodes.push(mono);
            url
        };
        Server { url, _nodes: nodes, _db: db, _dir: dir }
    }

    /// A JSON `POST` (with a token, if given); the reply's JSON.
    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Value {
        let mut req = reqwest::Client::new().post(format!("{}{path}", self.url)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap().json().await.unwrap()
    }

    /// Registers `name`; returns the access token.
    async fn user(&self, name: &str) -> String {
        let body = json!({"username": name, "password": "pw", "auth": {"type": "m.login.dummy"}});
        let resp = self.post("/_matrix/client/v3/register", None, body).await;
        resp["access_token"].as_str().unwrap_or_else(|| panic!("registered: {resp}")).to_owned()
    }

    async fn upload(&self, token: &str, bytes: Vec<u8>, content_type: &str) -> (u16, Value) {
        let resp = reqwest::Client::new()
            .post(format!("{}/_matrix/media/v3/upload", self.url))
            .bearer_auth(token)
            .header("Content-Type", content_type)
            .body(bytes)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }

    async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut req = reqwest::Client::new().get(format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap()
    }
}

fn media_id(upload: &Value) -> String {
    upload["content_uri"].as_str().unwrap().strip_prefix("mxc://localhost/").unwrap().to_owned()
}

async fn quota_and_cutover(split: bool) {
    let s = Server::start(split, |c| {
        c.media.max_user_bytes = Some(1000);
        c.media.legacy_media_before_ms = Some(now_ms() + 3_600_000);
    })
    .await;
    let alice = s.user("alice").await;
    let (status, first) = s.upload(&alice, vec![1; 800], "text/plain").await;
    assert_eq!(status, 200);
    let (status, body) = s.upload(&alice, vec![2; 201], "text/plain").await;
    assert_eq!((status, body["errcode"].as_str()), (403, Some("M_FORBIDDEN")), "over the quota");
    let bob = s.user("bob").await;
    assert_eq!(s.upload(&bob, vec![2; 201], "text/plain").await.0, 200, "a quota per user");
    // Uploaded before the cut-over date: still served unauthenticated.
    let resp = s.get(&format!("/_matrix/media/v3/download/localhost/{}", media_id(&first)), None).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &[1u8; 800][..]);
}

async fn reservations_expire(split: bool) {
    let s = Server::start(split, |c| c.media.unused_expiry_ms = 200).await;
    let alice = s.user("alice").await;
    let created = s.post("/_matrix/media/v1/create", Some(&alice), json!({})).await;
    let id = media_id(&created);
    // Past the reservation's expiry: the time passing is the test.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let resp = reqwest::Client::new()
        .put(format!("{}/_matrix/media/v3/upload/localhost/{id}", s.url))
        .bearer_auth(&alice)
        .body("too late")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    assert_eq!(resp.json::<Value>().await.unwrap()["errcode"], "M_NOT_FOUND");
}

/// A page with OpenGraph tags and an image, on a free loopback port.
async fn site() -> std::net::SocketAddr {
    use axum::{http::header, routing::get};
    let png: &'static [u8] = include_bytes!("contract/tiny.png");
    let app = axum::Router::new()
        .route(
            "/",
            get(|| async {
                let html = r#"<html><head><meta property="og:title" content="Hello">
                    <meta property="og:image" content="/i.png"></head></html>"#;
                ([(header::CONTENT_TYPE, "text/html")], html)
            }),
        )
        .route("/i.png", get(move || async move { ([(header::CONTENT_TYPE, "image/png")], png) }));
    let listener = free().await;
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

async fn previews(split: bool) {
    let addr = site().await;
    let s = Server::start(split, |c| {
        c.media.url_preview_enabled = true;
        c.media.url_preview_ip_whitelist = vec!["127.0.0.1/32".into()];
    })
    .await;
    let alice = s.user("alice").await;
    let url = format!("http://127.0.0.1:{}/", addr.port());
    let path = format!("/_matrix/client/v1/media/preview_url?url={}", url.replace(':', "%3A").replace('/', "%2F"));
    let resp = s.get(&path, Some(&alice)).await;
    assert_eq!(resp.status().as_u16(), 200);
    let og: Value = resp.json().await.unwrap();
    assert_eq!(og["og:title"], "Hello");
    let image = og["og:image"].as_str().unwrap().strip_prefix("mxc://localhost/").unwrap().to_owned();
    let resp = s.get(&format!("/_matrix/client/v1/media/download/localhost/{image}"), Some(&alice)).await;
    assert_eq!(resp.headers()["content-type"], "image/png");
    // Only 127.0.0.1 is let through; the rest of 127/8 stays blocked.
    let blocked = format!("/_matrix/client/v1/media/preview_url?url=http%3A%2F%2F127.0.0.2%3A{}%2F", addr.port());
    let resp = s.get(&blocked, Some(&alice)).await;
    assert_eq!(resp.status().as_u16(), 403);
}

macro_rules! both_modes {
    ($($scenario:ident),* $(,)?) => {
        mod monolith {
            $(#[tokio::test(flavor = "multi_thread")]
            async fn $scenario() {
                super::$scenario(false).await;
            })*
        }
        mod split {
            $(#[tokio::test(flavor = "multi_thread")]
            async fn $scenario() {
                super::$scenario(true).await;
            })*
        }
    };
}

both_modes!(quota_and_cutover, reservations_expire, previews);
