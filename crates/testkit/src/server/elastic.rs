//! Split mode whose sync workers come and go: the gateway finds them through the Redis
//! registry (`sync.discovery = "redis"`), and a test adds workers and stops them the way a
//! rolling update or a scale-down does.

use trellis_core::config::{Role, SyncDiscovery};
use trellis_homeserver::Node;

use super::{Mode, TestServer, bound, split_base, start_gateway, start_service, start_service_on};

/// Fast renewals so that registry changes show within a test's patience.
const HEARTBEAT_MS: u64 = 100;

impl TestServer {
    /// Auth, rooms and media on their own gRPC ports, `workers` sync workers registered in
    /// Redis, and one gateway following the registry.
    pub async fn split_elastic(workers: usize) -> TestServer {
        let redis = std::env::var("TRELLIS_TEST_REDIS_URL")
            .expect("TRELLIS_TEST_REDIS_URL is not set: run the tests with `make test`");
        let (db, media_dir, mut base) = split_base(redis).await;
        base.sync.discovery = SyncDiscovery::Redis;
        base.sync.heartbeat_ms = HEARTBEAT_MS;

        let mut nodes: Vec<(String, Node)> = Vec::new();
        let mut services = Vec::new();
        // Rooms' port is bound first: auth calls rooms (deactivations, profile changes).
        let (rooms_grpc, rooms_url) = bound().await;
        let mut auth_config = base.clone();
        auth_config.remote.rooms = Some(rooms_url);
        let (url, node, _) = start_service(&auth_config, "auth", Role::Auth).await;
        services.push(url);
        nodes.push(("auth".to_owned(), node));
        let (url, node, _) = start_service_on(&base, "rooms", Role::Rooms, rooms_grpc).await;
        services.push(url);
        nodes.push(("rooms".to_owned(), node));
        let (url, node, _) = start_service(&base, "media", Role::Media).await;
        services.push(url);
        nodes.push(("media".to_owned(), node));
        let mut server = TestServer {
            mode: Mode::Split,
            urls: Vec::new(),
            pooled_url: None,
            nodes,
            db,
            media_dir,
            redis: None,
            db_proxy: None,
            sync_base: Some(base.clone()),
            configs: Vec::new(),
        };
        for _ in 0..workers {
            server.add_sync_worker().await;
        }

        let (url, node, _) = start_gateway(&base, &services, |_| {}).await;
        server.urls.push(url);
        server.nodes.push(("gateway".to_owned(), node));
        server.until_metric("trellis_gateway_sync_workers", workers as f64).await;
        server
    }

    /// Starts one more sync worker (`sync-N`, one past the highest running) and
    /// returns its name. It registers itself; a gateway picks it up within a heartbeat.
    pub async fn add_sync_worker(&mut self) -> String {
        let base = self.sync_base.as_ref().expect("a split_elastic server");
        // One past the highest running worker's number: names stay unique among live nodes.
        let next = self.nodes.iter().filter_map(|(name, _)| name.strip_prefix("sync-")?.parse::<usize>().ok()).max();
        let name = format!("sync-{}", next.map_or(0, |n| n + 1));
        let (_, node, _) = start_service(base, &name, Role::Sync).await;
        self.nodes.push((name.clone(), node));
        name
    }

    /// Stops the named node as Kubernetes does in a rolling update or scale-down: it drains
    /// (not ready; a sync worker leaves the registry, so gateways stop sending it new polls)
    /// until the gateway's pool no longer holds it, then stops, answering what it still holds.
    pub async fn stop_gracefully(&mut self, name: &str, workers_left: usize) {
        self.drain(name);
        self.until_metric("trellis_gateway_sync_workers", workers_left as f64).await;
        self.kill(name).await;
    }
}
