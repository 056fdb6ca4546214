//! Composition of a Trellis process: for each role, the local implementation when this
//! process runs it, otherwise a gRPC client to the process that does. Monolith mode is every
//! role in one process, called through the service traits with an in-process bus. Every
//! process also serves its operations port (metrics and health, `ops.rs`) and checks what
//! its roles depend on (`health.rs`).

pub mod admin;
pub mod admin_notices;
pub mod admin_rooms;
pub mod health;
mod http;
mod ops;
pub mod registration_tokens;
mod sync_directory;
mod tls;

pub use ops::probe;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::{Context, bail};
use tokio::{net::TcpListener, task::JoinSet};
use trellis_bus::{Bus, MemoryBus, RedisBus};
use trellis_core::{
    config::{BusBackend, Config, Role, SyncDiscovery},
    shutdown::{self, Shutdown, ShutdownTrigger},
};
use trellis_proto::{
    auth::{AuthGrpcClient, AuthGrpcServer, AuthService},
    health::HealthReporter,
    keys::{KeysGrpcClient, KeysGrpcServer, KeysService},
    media::{MediaGrpcClient, MediaGrpcServer, MediaService},
    rooms::{RoomsGrpcClient, RoomsGrpcServer, RoomsService},
    sync::{SyncGrpcServer, SyncService},
};

use crate::health::{Health, Probe};

/// Sockets a node serves on, bound by the caller (tests bind port 0).
#[derive(Default)]
pub struct Listeners {
    pub http: Option<TcpListener>,
    pub grpc: Option<TcpListener>,
    /// The operations port: `/metrics` and the health probes.
    pub metrics: Option<TcpListener>,
    /// A gRPC address bound only once the roles are up: a rooms process binds its gRPC port
    /// when it holds the event-writer lock, so a standby on the same machine can share the
    /// writer's address and takes it over when the writer dies.
    pub grpc_after_start: Option<SocketAddr>,
}

impl Listeners {
    /// Binds what `config` asks for: HTTP with the gateway role, gRPC when a service role runs
    /// in split mode (with the rooms role only once the roles are up, see
    /// [`Listeners::grpc_after_start`]), and the operations port when `metrics.listen` is set.
    pub async fn bind(config: &Config) -> anyhow::Result<Listeners> {
        let http = match config.runs(Role::Gateway) {
            true => Some(
                TcpListener::bind(config.http.listen)
                    .await
                    .with_context(|| format!("binding {}", config.http.listen))?,
            ),
            false => None,
        };
        let (mut grpc, mut grpc_after_start) = (None, None);
        if serves_grpc(config) && config.runs(Role::Rooms) {
            grpc_after_start = Some(config.grpc.listen);
        } else if serves_grpc(config) {
            let addr = config.grpc.listen;
            let bound = match config.grpc.reuse_port {
                true => bind_shared(addr),
                false => TcpListener::bind(addr).await,
            };
            grpc = Some(bound.with_context(|| format!("binding {addr}"))?);
        }
        let metrics = match config.metrics_listen() {
            Some(addr) => Some(TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?),
            None => None,
        };
        Ok(Listeners { http, grpc, metrics, grpc_after_start })
    }
}

/// A listener on `addr` that other processes may bind too (`grpc.reuse_port`).
fn bind_shared(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// A service role runs here and some other process may call it.
pub fn serves_grpc(config: &Config) -> bool {
    !config.is_monolith() && config.roles.iter().any(|r| *r != Role::Gateway)
}

/// A running process.
pub struct Node {
    pub http_addr: Option<SocketAddr>,
    pub grpc_addr: Option<SocketAddr>,
    /// The operations port (metrics and health), when one was bound.
    pub metrics_addr: Option<SocketAddr>,
    health: Arc<Health>,
    trigger: ShutdownTrigger,
    tasks: JoinSet<()>,
}

impl Node {
    pub fn shutdown_handle(&self) -> Shutdown {
        self.trigger.handle()
    }

    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Starts draining: the process reports not ready (HTTP and gRPC health) but goes on
    /// serving, so load balancers take it out before [`Node::stop`].
    pub fn drain(&self) {
        self.health.begin_drain();
    }

    /// Stops serving: long-polls end, servers drain, background tasks stop.
    pub async fn stop(mut self) {
        self.trigger.trigger();
        let drain = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(10), drain).await.is_err() {
            tracing::warn!("shutdown timed out; aborting remaining tasks");
            self.tasks.abort_all();
        }
    }

    /// Runs until one of the servers stops (or fails).
    pub async fn wait(&mut self) {
        self.tasks.join_next().await;
    }
}

/// Local service implementations a test may want to reach directly.
struct Local {
    auth: Option<Arc<dyn AuthService>>,
    keys: Option<Arc<dyn KeysService>>,
    rooms: Option<Arc<dyn RoomsService>>,
    sync: Option<Arc<dyn SyncService>>,
    media: Option<Arc<dyn MediaService>>,
}

/// Starts every role of `config` on `listeners`. The operations port answers from the start
/// (not ready until the roles are up: a rooms standby waits here for the writer lock).
pub async fn start(config: Config, listeners: Listeners) -> anyhow::Result<Node> {
    // Installed before the first request so every count lands in `/metrics`.
    trellis_core::telemetry::metrics_handle();
    let (trigger, shutdown) = shutdown::channel();
    let health = Health::new(config.health.clone());
    let mut tasks = JoinSet::new();
    let mut node_metrics = None;
    if let Some(listener) = listeners.metrics {
        node_metrics = Some(listener.local_addr()?);
        let app = ops::router(health.clone());
        let stop = shutdown.clone();
        tasks.spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move { stop.wait().await });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "operations server failed");
            }
        });
    }

    let mut probes = Vec::new();
    let needs_db = config.roles.iter().any(|r| *r != Role::Gateway);
    let database = trellis_storage::Target::from_config(&config.database)?;
    if needs_db {
        let pool = database.pool(1)?;
        trellis_storage::pool::check(&pool).await?;
        trellis_storage::migrate::run(&pool).await.context("running migrations")?;
        probes.push(Probe::Database(pool));
    }
    if let Some(server) = redis_use(&config) {
        probes.push(Probe::redis(&server, config.health.require_redis)?);
    }
    // Each role gets a pool of its own, so in a monolith a thousand sync computations cannot
    // starve the event writer of connections.
    let mut pools = Vec::new();
    let mut db = |role: &'static str| -> anyhow::Result<trellis_storage::Pool> {
        let pool = database.pool(config.database.pool_size)?;
        pools.push((role, pool.clone()));
        Ok(pool)
    };

    // The auth role announces device-list changes.
    let bus: Option<Arc<dyn Bus>> = if config.runs(Role::Rooms) || config.runs(Role::Sync) || config.runs(Role::Auth) {
        Some(make_bus(&config, shutdown.clone()).await?)
    } else {
        None
    };

    let appservices =
        trellis_core::appservice::Registry::load(&config.appservices.registration_files, &config.server_name)
            .map_err(anyhow::Error::msg)?;
    let mut local = Local { auth: None, keys: None, rooms: None, sync: None, media: None };
    let mut rooms_here = None;
    if config.runs(Role::Rooms) {
        let mut settings = trellis_rooms::RoomsSettings::from_config(&config, database.clone())?;
        settings.appservices = appservices.clone();
        let rooms =
            trellis_rooms::Rooms::start(db("rooms")?, bus.clone().expect("bus"), settings, shutdown.clone()).await?;
        probes.push(Probe::Writer(rooms.clone()));
        rooms_here = Some(rooms.clone());
        local.rooms = Some(Arc::new(trellis_rooms::RoomsHandle(rooms)));
    }
    if config.runs(Role::Auth) {
        let auth = trellis_auth::Auth::new(db("auth")?, trellis_auth::AuthConfig::from_config(&config))
            .with_appservices(appservices.clone());
        auth.seed_registration_tokens().await.context("writing the configured registration tokens")?;
        auth.seed_appservice_senders().await.context("creating the appservices' sender users")?;
        let mut auth = auth.with_bus(bus.clone().expect("bus"));
        // Deactivations and profile changes reach the rooms service from here.
        let rooms: Option<Arc<dyn RoomsService>> = match (&local.rooms, config.remote.rooms.as_deref()) {
            (Some(rooms), _) => Some(rooms.clone()),
            (None, Some(url)) => Some(Arc::new(RoomsGrpcClient::connect(url)?)),
            (None, None) => {
                tracing::warn!(
                    "remote.rooms is not set: deactivated accounts will not leave their rooms, and profile \
                     changes will not reach member events"
                );
                None
            }
        };
        if let Some(rooms) = rooms {
            auth = auth.with_rooms(rooms);
        }
        let auth = Arc::new(auth);
        local.auth = Some(auth.clone());
        local.keys = Some(auth);
    }
    if config.runs(Role::Sync) {
        let settings = trellis_sync::SyncSettings::from_config(&config);
        local.sync =
            Some(trellis_sync::SyncWorker::new(db("sync")?, bus.clone().expect("bus"), settings, shutdown.clone()));
    }
    if config.runs(Role::Appservice) {
        let sender = trellis_appservice::run(
            db("appservice")?,
            database.clone(),
            match &bus {
                Some(bus) => bus.clone(),
                None => make_bus(&config, shutdown.clone()).await?,
            },
            appservices.clone(),
            trellis_appservice::SenderSettings::from_config(&config),
            shutdown.clone(),
        );
        tasks.spawn(sender);
    }
    if config.runs(Role::Media) {
        local.media = Some(Arc::new(trellis_media::Media::from_config(db("media")?, &config).await?));
    }
    if let Some(rooms) = &rooms_here {
        enable_server_notices(&config, rooms, &local, &shutdown, &mut tasks).await?;
    }

    let mut node_grpc = None;
    let mut grpc_health: Option<HealthReporter> = None;
    let grpc = match (listeners.grpc, listeners.grpc_after_start) {
        (Some(l), _) => Some(l),
        (None, Some(addr)) => Some(TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?),
        (None, None) => None,
    };
    if let Some(listener) = grpc {
        node_grpc = Some(listener.local_addr()?);
        let mut routes = tonic::service::RoutesBuilder::default();
        let mut names = Vec::new();
        if let Some(s) = &local.auth {
            routes.add_service(AuthGrpcServer::new(s.clone()).into_service());
            names.push(trellis_proto::pb::auth::auth_server::SERVICE_NAME);
        }
        if let Some(s) = &local.keys {
            routes.add_service(KeysGrpcServer::new(s.clone()).into_service());
            names.push(trellis_proto::pb::keys::keys_server::SERVICE_NAME);
        }
        if let Some(s) = &local.rooms {
            routes.add_service(RoomsGrpcServer::new(s.clone()).into_service());
            names.push(trellis_proto::pb::rooms::rooms_server::SERVICE_NAME);
        }
        if let Some(s) = &local.sync {
            routes.add_service(SyncGrpcServer::new(s.clone()).until(shutdown.clone()).into_service());
            names.push(trellis_proto::pb::sync::sync_server::SERVICE_NAME);
        }
        if let Some(s) = &local.media {
            routes.add_service(MediaGrpcServer::new(s.clone()).into_service());
            names.push(trellis_proto::pb::media::media_server::SERVICE_NAME);
        }
        grpc_health = Some(trellis_proto::health::add(&mut routes, names).await);
        if local.sync.is_some() && config.sync.discovery == SyncDiscovery::Redis {
            let url = sync_directory::advertise_url(config.sync.advertise_url.as_deref(), node_grpc)?;
            let registry = sync_directory::Registry::from_config(&config)?;
            tasks.spawn(sync_directory::advertise(url, registry, health.clone(), shutdown.clone()));
        }
        let stop = shutdown.clone();
        tasks.spawn(async move {
            if let Err(e) = trellis_proto::server::serve(listener, routes.routes(), stop).await {
                tracing::error!(error = %e, "grpc server failed");
            }
        });
    }

    let mut node_http = None;
    if let Some(listener) = listeners.http {
        node_http = Some(listener.local_addr()?);
        let services = trellis_gateway::Services {
            auth: pick(local.auth.clone(), config.remote.auth.as_deref(), "auth", |u| {
                Ok(Arc::new(AuthGrpcClient::connect(u)?))
            })?,
            keys: pick(local.keys.clone(), config.remote.auth.as_deref(), "auth", |u| {
                Ok(Arc::new(KeysGrpcClient::connect(u)?))
            })?,
            rooms: pick(local.rooms.clone(), config.remote.rooms.as_deref(), "rooms", |u| {
                Ok(Arc::new(RoomsGrpcClient::connect(u)?))
            })?,
            sync: match &local.sync {
                Some(s) => s.clone(),
                None => {
                    let directory = sync_directory(&config, &shutdown, &mut tasks).await?;
                    probes.push(Probe::SyncWorkers(directory.clone()));
                    directory.pool()
                }
            },
            media: pick(local.media.clone(), config.remote.media.as_deref(), "media", |u| {
                Ok(Arc::new(MediaGrpcClient::connect(u)?))
            })?,
            limiter: make_limiter(&config).await?,
        };
        probes.extend(remote_probes(&config, &local)?);
        let app = trellis_gateway::router(services, trellis_gateway::GatewaySettings::from_config(&config));
        let limits = http::HttpLimits::from_config(&config.http);
        let tls = config.http.tls.as_ref().map(|t| tls::acceptor(t, shutdown.clone())).transpose()?;
        tasks.spawn(http::serve(listener, app, limits, tls, shutdown.clone()));
    }

    tasks.spawn(health.clone().monitor(probes, grpc_health, pools, shutdown.clone()));

    let roles: Vec<&str> = config.roles.iter().map(|r| r.as_str()).collect();
    tracing::info!(roles = ?roles, http = ?node_http, grpc = ?node_grpc, ops = ?node_metrics, "trellis started");
    Ok(Node { http_addr: node_http, grpc_addr: node_grpc, metrics_addr: node_metrics, health, trigger, tasks })
}

/// Server notices, when `[server_notices]` names a system user: the rooms service sends them
/// with the auth service (the system user's account) and the sync service (the notices
/// room's tag), in this process or at `remote.auth` and `remote.sync`.
async fn enable_server_notices(
    config: &Config,
    rooms: &trellis_rooms::Rooms,
    local: &Local,
    shutdown: &Shutdown,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    if config.server_notices.system_mxid_localpart.as_deref().is_none_or(str::is_empty) {
        return Ok(());
    }
    let auth: Arc<dyn AuthService> =
        pick(local.auth.clone(), config.remote.auth.as_deref(), "auth", |u| Ok(Arc::new(AuthGrpcClient::connect(u)?)))
            .context("server notices (the rooms role calls the auth service)")?;
    let sync: Arc<dyn SyncService> = match &local.sync {
        Some(s) => s.clone(),
        None => sync_directory(config, shutdown, tasks)
            .await
            .context("server notices (the rooms role calls a sync worker)")?
            .pool(),
    };
    if let Some(notices) = trellis_rooms::ServerNotices::from_config(config, auth, sync) {
        rooms.enable_server_notices(notices);
    }
    Ok(())
}

fn pick<T: ?Sized>(
    local: Option<Arc<T>>,
    remote: Option<&str>,
    role: &str,
    connect: impl FnOnce(&str) -> trellis_core::Result<Arc<T>>,
) -> anyhow::Result<Arc<T>> {
    match (local, remote) {
        (Some(l), _) => Ok(l),
        (None, Some(url)) => Ok(connect(url)?),
        (None, None) => bail!("the {role} role is neither run here nor configured in remote.{role}"),
    }
}

/// The gRPC services a gateway calls in other processes, checked through their health
/// service.
fn remote_probes(config: &Config, local: &Local) -> anyhow::Result<Vec<Probe>> {
    let mut probes = Vec::new();
    let remotes = [
        ("auth", local.auth.is_none(), &config.remote.auth),
        ("rooms", local.rooms.is_none(), &config.remote.rooms),
        ("media", local.media.is_none(), &config.remote.media),
    ];
    for (name, remote, url) in remotes {
        if let (true, Some(url)) = (remote, url) {
            probes.push(Probe::Service { name, channel: trellis_proto::channel(url)? });
        }
    }
    Ok(probes)
}

/// The Redis this process talks to, if any: the bus's, or the one where gateways share
/// rate-limit counts.
fn redis_use(config: &Config) -> Option<trellis_bus::RedisServer> {
    let server = trellis_bus::RedisServer::from_config(&config.redis)?;
    let bus =
        config.runs(Role::Rooms) || config.runs(Role::Sync) || config.runs(Role::Auth) || config.runs(Role::Appservice);
    let bus_on_redis = bus && bus_backend(config) == BusBackend::Redis;
    let shared_limits = config.runs(Role::Gateway) && !config.is_monolith() && config.rate_limits.enabled;
    (bus_on_redis || shared_limits).then_some(server)
}

/// The bus backend `config` resolves to.
fn bus_backend(config: &Config) -> BusBackend {
    // Publishers (rooms, auth) and the subscriber (sync) must share the process for an
    // in-process bus.
    let both_here = config.runs(Role::Rooms) && config.runs(Role::Sync) && config.runs(Role::Auth);
    match config.bus.backend {
        BusBackend::Auto if both_here => BusBackend::Memory,
        BusBackend::Auto => BusBackend::Redis,
        b => b,
    }
}

/// A gateway's sync workers: the `remote.sync` list, or the registry of live workers
/// (`sync.discovery = "redis"`), read once now and followed from then on.
async fn sync_directory(
    config: &Config,
    shutdown: &Shutdown,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<Arc<sync_directory::SyncDirectory>> {
    let directory = sync_directory::SyncDirectory::new(config.sync.balance);
    match config.sync.discovery {
        SyncDiscovery::Static => {
            if config.remote.sync.is_empty() {
                bail!("the sync role is neither run here nor configured in remote.sync (or sync.discovery)");
            }
            directory.apply(&config.remote.sync)?;
        }
        SyncDiscovery::Redis => {
            let registry = sync_directory::Registry::from_config(config)?;
            sync_directory::discover(&directory, &registry).await.context("reading the sync worker registry")?;
            tasks.spawn(sync_directory::follow(directory.clone(), registry, shutdown.clone()));
        }
    }
    Ok(directory)
}

/// Rate-limit state: in this process for a monolith (it is the only gateway), in Redis when
/// gateways run apart so every replica counts against the same limits.
async fn make_limiter(config: &Config) -> anyhow::Result<Arc<dyn trellis_core::ratelimit::RateLimiter>> {
    // A monolith is the only gateway; with limits off nothing is counted anyway.
    let shared = !config.is_monolith() && config.rate_limits.enabled;
    match (shared, trellis_bus::RedisServer::from_config(&config.redis)) {
        (true, Some(server)) => {
            Ok(Arc::new(trellis_bus::RedisLimiter::connect(&server, &config.bus.channel_prefix).await?))
        }
        (true, None) => {
            tracing::warn!("no redis.url: rate limits are counted per gateway, not across replicas");
            Ok(Arc::new(trellis_core::ratelimit::MemoryLimiter::default()))
        }
        (false, _) => Ok(Arc::new(trellis_core::ratelimit::MemoryLimiter::default())),
    }
}

async fn make_bus(config: &Config, shutdown: Shutdown) -> anyhow::Result<Arc<dyn Bus>> {
    let both_here = config.runs(Role::Rooms) && config.runs(Role::Sync) && config.runs(Role::Auth);
    match bus_backend(config) {
        BusBackend::Memory if !both_here => {
            bail!("an in-process bus needs the auth, rooms and sync roles in the same process; configure redis.url")
        }
        BusBackend::Memory => Ok(MemoryBus::with_linger(Duration::from_millis(config.bus.linger_ms))),
        _ => {
            let server = trellis_bus::RedisServer::from_config(&config.redis)
                .context("the bus needs redis.url when auth, rooms and sync run apart")?;
            let linger = Duration::from_millis(config.bus.linger_ms);
            Ok(RedisBus::connect(&server, &config.bus.channel_prefix, linger, shutdown).await?)
        }
    }
}
