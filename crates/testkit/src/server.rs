//! [`TestServer`]: Trellis started in-process on free ports against a fresh database.

use std::path::PathBuf;

use tokio::net::TcpListener;
use trellis_core::config::{BusBackend, Config, Role, SyncBalance};
use trellis_homeserver::{Listeners, Node};
use trellis_storage::testing::TestDb;

use crate::{
    client::{Client, PASSWORD},
    proxy::TcpProxy,
};

mod elastic;
mod restart;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Monolith,
    Split,
}

pub struct TestServer {
    pub mode: Mode,
    /// Gateway base URLs. In split mode gateway `i` sends `/sync` to sync worker `i` only,
    /// so a client alternating between them alternates between workers.
    pub urls: Vec<String>,
    /// Split mode: a further gateway spreading `/sync` over both workers (with failover).
    pub pooled_url: Option<String>,
    nodes: Vec<(String, Node)>,
    db: TestDb,
    media_dir: PathBuf,
    redis: Option<PrivateRedis>,
    /// Set when every node reaches PostgreSQL through a proxy the test can cut.
    db_proxy: Option<TcpProxy>,
    /// `split_elastic` servers: the configuration a new sync worker starts with.
    sync_base: Option<Config>,
    /// Each node's configuration, by name, for [`TestServer::restart`].
    configs: Vec<(String, Config)>,
}

/// A redis-server of this test alone, which the test may restart.
struct PrivateRedis {
    port: u16,
    child: std::process::Child,
}

impl PrivateRedis {
    fn start(port: u16) -> PrivateRedis {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed (make test installs it)");
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        PrivateRedis { port, child }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn free() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bind loopback")
}

/// A free loopback port, bound, and its `http://` URL.
async fn bound() -> (TcpListener, String) {
    let listener = free().await;
    let url = format!("http://{}", listener.local_addr().expect("bound address"));
    (listener, url)
}

/// A fresh database, media directory and split-mode configuration on `redis`.
async fn split_base(redis: String) -> (TestDb, PathBuf, Config) {
    crate::init_logging();
    let db = TestDb::new().await.expect("test database");
    let media_dir = std::env::temp_dir().join(format!("trellis-media-{}", uuid::Uuid::new_v4().simple()));
    let mut base = TestServer::base_config(&db, &media_dir);
    base.redis.url = Some(redis);
    base.bus.backend = BusBackend::Redis;
    (db, media_dir, base)
}

/// One service role of `base` on a gRPC port of its own: its URL and node.
async fn start_service(base: &Config, name: &str, role: Role) -> (String, Node, Config) {
    start_service_on(base, name, role, free().await).await
}

/// [`start_service`] serving gRPC on `grpc`, bound beforehand so that a service started
/// earlier can be given its URL (auth calls rooms, rooms calls auth).
async fn start_service_on(base: &Config, name: &str, role: Role, grpc: TcpListener) -> (String, Node, Config) {
    let mut c = base.clone();
    c.roles = vec![role];
    let listeners = Listeners { grpc: Some(grpc), metrics: Some(free().await), ..Default::default() };
    let node = trellis_homeserver::start(c.clone(), listeners).await.unwrap_or_else(|e| panic!("{name} starts: {e:#}"));
    (format!("http://{}", node.grpc_addr.expect("grpc")), node, c)
}

/// A gateway calling the auth, rooms and media services at `services`, its configuration
/// adjusted by `tweak`: its client URL and node.
async fn start_gateway(base: &Config, services: &[String], tweak: impl FnOnce(&mut Config)) -> (String, Node, Config) {
    let mut c = base.clone();
    c.roles = vec![Role::Gateway];
    c.remote.auth = Some(services[0].clone());
    c.remote.rooms = Some(services[1].clone());
    c.remote.media = Some(services[2].clone());
    tweak(&mut c);
    let listeners = Listeners { http: Some(free().await), metrics: Some(free().await), ..Default::default() };
    let node = trellis_homeserver::start(c.clone(), listeners).await.expect("gateway starts");
    (format!("http://{}", node.http_addr.expect("http")), node, c)
}

impl TestServer {
    pub async fn start(mode: Mode) -> TestServer {
        match mode {
            Mode::Monolith => TestServer::monolith().await,
            Mode::Split => TestServer::split().await,
        }
    }

    fn base_config(db: &TestDb, media_dir: &std::path::Path) -> Config {
        let mut c = Config { server_name: "localhost".into(), ..Config::default() };
        c.database.url = db.url().to_owned();
        c.database.pool_size = 8;
        c.media.path = media_dir.to_path_buf();
        c.media.max_upload_bytes = 10 * 1024 * 1024;
        c.bus.channel_prefix = format!("test{}", uuid::Uuid::new_v4().simple());
        c.bus.linger_ms = 2_000;
        // Health tests wait for checks to notice a change; a short interval keeps them quick.
        c.health.interval_ms = 200;
        // Tests register and log in many users from one address; the rate-limit tests turn
        // the limits on with a configured server.
        c.rate_limits.enabled = false;
        // `POST /login/get_token` is off by default (as in Synapse); the tests use it.
        c.auth.login_token_enabled = true;
        c
    }

    /// Every role in one process with the in-process bus.
    pub async fn monolith() -> TestServer {
        TestServer::monolith_configured(|_| {}).await
    }

    /// A monolith whose configuration `tweak` adjusts first.
    pub async fn monolith_configured(tweak: impl Fn(&mut Config)) -> TestServer {
        TestServer::monolith_with(&tweak, None).await
    }

    /// Either mode, every node reaching PostgreSQL through a proxy that
    /// [`TestServer::cut_database`] cuts.
    pub async fn with_database_proxy(mode: Mode) -> TestServer {
        let target = std::env::var("TRELLIS_TEST_DATABASE_URL")
            .expect("TRELLIS_TEST_DATABASE_URL is not set: run the tests with `make test`");
        let (_, host) = crate::proxy::url_via(&target, ([127, 0, 0, 1], 0).into());
        let proxy = TcpProxy::start(host).await;
        let addr = proxy.addr();
        let via = move |c: &mut Config| c.database.url = crate::proxy::url_via(&c.database.url, addr).0;
        match mode {
            Mode::Monolith => TestServer::monolith_with(&via, Some(proxy)).await,
            Mode::Split => {
                let redis = std::env::var("TRELLIS_TEST_REDIS_URL")
                    .expect("TRELLIS_TEST_REDIS_URL is not set: run the tests with `make test`");
                let mut server = TestServer::split_with(redis, None, &via).await;
                server.db_proxy = Some(proxy);
                server
            }
        }
    }

    async fn monolith_with(tweak: &dyn Fn(&mut Config), db_proxy: Option<TcpProxy>) -> TestServer {
        crate::init_logging();
        let db = TestDb::new().await.expect("test database");
        let media_dir = std::env::temp_dir().join(format!("trellis-media-{}", uuid::Uuid::new_v4().simple()));
        let mut config = TestServer::base_config(&db, &media_dir);
        config.roles = Role::ALL.to_vec();
        config.bus.backend = BusBackend::Memory;
        tweak(&mut config);
        let listeners = Listeners { http: Some(free().await), metrics: Some(free().await), ..Default::default() };
        let node = trellis_homeserver::start(config.clone(), listeners).await.expect("monolith starts");
        let url = format!("http://{}", node.http_addr.expect("http"));
        TestServer {
            mode: Mode::Monolith,
            urls: vec![url],
            pooled_url: None,
            nodes: vec![("monolith".into(), node)],
            db,
            media_dir,
            redis: None,
            db_proxy,
            sync_base: None,
            configs: vec![("monolith".into(), config)],
        }
    }

    /// Auth, rooms and media each on their own gRPC port, two sync workers, two gateways
    /// with one worker each and a third pooling both; wake-ups travel through Redis.
    pub async fn split() -> TestServer {
        let redis = std::env::var("TRELLIS_TEST_REDIS_URL")
            .expect("TRELLIS_TEST_REDIS_URL is not set: run the tests with `make test`");
        TestServer::split_with(redis, None, &|_| {}).await
    }

    /// Split mode with every process's configuration adjusted by `tweak` first.
    pub async fn split_configured(tweak: impl Fn(&mut Config)) -> TestServer {
        let redis = std::env::var("TRELLIS_TEST_REDIS_URL")
            .expect("TRELLIS_TEST_REDIS_URL is not set: run the tests with `make test`");
        TestServer::split_with(redis, None, &tweak).await
    }

    /// Split mode on a Redis of this test's own, so the test can restart it.
    pub async fn split_private_redis() -> TestServer {
        let port = free().await.local_addr().expect("addr").port();
        let redis = PrivateRedis::start(port);
        TestServer::split_with(redis.url(), Some(redis), &|_| {}).await
    }

    /// Restarts the private Redis (a `split_private_redis` server only), after `down` of
    /// downtime.
    pub async fn restart_redis(&mut self, down: std::time::Duration) {
        let port = self.redis.as_ref().expect("a private Redis").port;
        self.redis = None;
        tokio::time::sleep(down).await;
        self.redis = Some(PrivateRedis::start(port));
    }

    async fn split_with(redis: String, private: Option<PrivateRedis>, tweak: &dyn Fn(&mut Config)) -> TestServer {
        let (db, media_dir, mut base) = split_base(redis).await;
        tweak(&mut base);

        let mut nodes = Vec::new();
        let mut configs = Vec::new();
        let mut services = Vec::new();
        // The auth service tells rooms of deactivations and profile changes: rooms' port is
        // bound first so auth can be given its URL.
        let (rooms_grpc, rooms_url) = bound().await;
        let mut auth_config = base.clone();
        auth_config.remote.rooms = Some(rooms_url);
        let (auth, node, config) = start_service(&auth_config, "auth", Role::Auth).await;
        nodes.push(("auth".to_owned(), node));
        configs.push(("auth".to_owned(), config));
        // The appservice sender and its standby (idle unless appservices are configured).
        for name in ["appservice-0", "appservice-1"] {
            let (_, node, config) = start_service(&base, name, Role::Appservice).await;
            nodes.push((name.to_owned(), node));
            configs.push((name.to_owned(), config));
        }
        let mut syncs = Vec::new();
        for name in ["sync-0", "sync-1"] {
            let (url, node, config) = start_service(&base, name, Role::Sync).await;
            syncs.push(url);
            nodes.push((name.to_owned(), node));
            configs.push((name.to_owned(), config));
        }
        // The rooms service calls auth and a sync worker for server notices.
        let mut peers = base.clone();
        peers.remote.auth = Some(auth.clone());
        peers.remote.sync = syncs.clone();
        services.push(auth);
        let (rooms, node, config) = start_service_on(&peers, "rooms", Role::Rooms, rooms_grpc).await;
        services.push(rooms);
        nodes.push(("rooms".to_owned(), node));
        configs.push(("rooms".to_owned(), config));
        let (media, node, config) = start_service(&peers, "media", Role::Media).await;
        services.push(media);
        nodes.push(("media".to_owned(), node));
        configs.push(("media".to_owned(), config));

        let mut urls = Vec::new();
        let workers = [vec![syncs[0].clone()], vec![syncs[1].clone()], syncs];
        for (i, sync) in workers.into_iter().enumerate() {
            let (url, node, config) = start_gateway(&base, &services, |c| {
                c.remote.sync = sync;
                c.sync.balance = SyncBalance::RoundRobin;
            })
            .await;
            urls.push(url);
            nodes.push((format!("gateway-{i}"), node));
            configs.push((format!("gateway-{i}"), config));
        }
        let pooled_url = urls.pop();
        TestServer {
            mode: Mode::Split,
            urls,
            pooled_url,
            nodes,
            db,
            media_dir,
            redis: private,
            db_proxy: None,
            sync_base: None,
            configs,
        }
    }

    /// The first gateway.
    pub fn url(&self) -> &str {
        &self.urls[0]
    }

    /// Every gateway that serves clients (split mode: one per sync worker and a pooled one).
    pub fn gateway_urls(&self) -> Vec<String> {
        self.urls.iter().chain(self.pooled_url.iter()).cloned().collect()
    }

    /// A client of the first gateway.
    pub fn client(&self) -> Client {
        Client::new(self.url())
    }

    /// A client of the first gateway signed in as a new user `name` (password [`PASSWORD`]).
    pub async fn user(&self, name: &str) -> Client {
        let mut c = self.client();
        c.register(name, PASSWORD).await;
        c
    }

    /// `client`'s long-poll from `since` (10 s), once the sync workers hold it (and no other):
    /// whatever the test sends next wakes it.
    pub async fn open_long_poll(&self, client: &Client, since: &str) -> tokio::task::JoinHandle<serde_json::Value> {
        let (client, since) = (client.clone(), since.to_owned());
        let poll = tokio::spawn(async move { client.sync(Some(&since), None, 10_000).await });
        self.until_metric("trellis_sync_open_longpolls", 1.0).await;
        poll
    }

    /// Two new users, `alice` and `bob`, both joined to a public room alice made.
    pub async fn pair(&self) -> (Client, Client, String) {
        let alice = self.user("alice").await;
        let bob = self.user("bob").await;
        let room = alice.create_room(serde_json::json!({"preset": "public_chat"})).await;
        bob.join(&room).await;
        (alice, bob, room)
    }

    pub fn database_url(&self) -> &str {
        self.db.url()
    }

    /// Runs one SQL statement on the server's database behind its back (to plant the rows a
    /// test needs, such as ones no request could write); the number of rows it touched.
    pub async fn sql(&self, statement: &str) -> u64 {
        let client = self.db.pool(1).get().await.expect("a database connection");
        client.execute(statement, &[]).await.unwrap_or_else(|e| panic!("{statement}: {e}"))
    }

    /// The names of the running nodes: `monolith`, or `auth`, `rooms`, `media`,
    /// `appservice-0`, `appservice-1` (the appservice sender and its standby), `sync-0`, `sync-1`, `gateway-0`, `gateway-1`, `gateway-2` (the pooled one).
    pub fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|(n, _)| n.clone()).collect()
    }

    fn node(&self, name: &str) -> &Node {
        &self.nodes.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no node {name}")).1
    }

    /// The operations port of the named node (`http://127.0.0.1:port`): `/metrics`,
    /// `/health/live`, `/health/ready`.
    pub fn ops_url(&self, name: &str) -> String {
        format!("http://{}", self.node(name).metrics_addr.expect("an operations port"))
    }

    /// Prometheus metrics of this test's process (every node records into the same registry),
    /// from the first node's operations port.
    pub fn metrics_url(&self) -> String {
        format!("{}/metrics", self.ops_url(&self.nodes[0].0))
    }

    /// The current value of an unlabelled gauge or counter `name` (0 when not yet recorded).
    pub async fn metric(&self, name: &str) -> f64 {
        let text = reqwest::get(self.metrics_url()).await.expect("metrics answer").text().await.expect("metrics text");
        let prefix = format!("{name} ");
        text.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.trim().parse::<f64>().ok()).unwrap_or(0.0)
    }

    /// Waits (up to 10 s) until the metric `name` reads `want`; panics with its last value.
    pub async fn until_metric(&self, name: &str, want: f64) {
        for _ in 0..400 {
            if self.metric(name).await == want {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("{name} never became {want} (is {})", self.metric(name).await);
    }

    /// The named node's gRPC URL (split mode's service nodes).
    pub fn grpc_url(&self, name: &str) -> String {
        format!("http://{}", self.node(name).grpc_addr.expect("a gRPC port"))
    }

    /// What the named node's gRPC health service says of `service` ("" for the whole server).
    pub async fn grpc_health(&self, name: &str, service: &str) -> Result<trellis_proto::health::ServingStatus, String> {
        let channel = trellis_proto::channel(&self.grpc_url(name)).map_err(|e| e.to_string())?;
        trellis_proto::health::check(channel, service, std::time::Duration::from_secs(5)).await
    }

    /// The named node starts draining, as on SIGTERM: not ready, still serving.
    pub fn drain(&self, name: &str) {
        self.node(name).drain();
    }

    /// Drops every connection to PostgreSQL and refuses new ones (a `with_database_proxy`
    /// server only).
    pub fn cut_database(&self) {
        self.db_proxy.as_ref().expect("a server started with_database_proxy").cut();
    }

    pub fn restore_database(&self) {
        self.db_proxy.as_ref().expect("a server started with_database_proxy").restore();
    }

    /// Stops the named node (e.g. `"sync-1"`), as if its process died.
    pub async fn kill(&mut self, name: &str) {
        if let Some(i) = self.nodes.iter().position(|(n, _)| n == name) {
            let (_, node) = self.nodes.remove(i);
            node.stop().await;
        }
    }

    pub async fn stop(mut self) {
        for (_, node) in self.nodes.drain(..) {
            node.stop().await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.media_dir);
    }
}
