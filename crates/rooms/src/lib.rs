//! The rooms service: the only writer of rooms and their events. Every event goes through
//! [`writer`] (authorization rules, signing, one transaction, announcement); reads serve
//! state, history, relations and the directory as history visibility allows.

/// SQL: `CROSS JOIN LATERAL` a room's summary fields from its current state, as `s` with the
/// columns `name`, `topic`, `alias`, `avatar`, `join_rule`, `join_rules` (the content as
/// stored), `hv`, `guests`, `room_type` and `encryption`, for the `rooms` row `r`. The public
/// room directory and the room summary (`/hierarchy`, `/room_summary`) read rooms the same way.
macro_rules! room_state_summary {
    () => {
        "CROSS JOIN LATERAL ( \
           SELECT \
             max(trellis_jsonb(e.content)->>'name') FILTER (WHERE c.type = 'm.room.name') AS name, \
             max(trellis_jsonb(e.content)->>'topic') FILTER (WHERE c.type = 'm.room.topic') AS topic, \
             max(trellis_jsonb(e.content)->>'alias') FILTER (WHERE c.type = 'm.room.canonical_alias') AS alias, \
             max(trellis_jsonb(e.content)->>'url') FILTER (WHERE c.type = 'm.room.avatar') AS avatar, \
             max(trellis_jsonb(e.content)->>'join_rule') FILTER (WHERE c.type = 'm.room.join_rules') AS join_rule, \
             max(e.content) FILTER (WHERE c.type = 'm.room.join_rules') AS join_rules, \
             max(trellis_jsonb(e.content)->>'history_visibility') \
               FILTER (WHERE c.type = 'm.room.history_visibility') AS hv, \
             max(trellis_jsonb(e.content)->>'guest_access') FILTER (WHERE c.type = 'm.room.guest_access') AS guests, \
             max(trellis_jsonb(e.content)->>'type') FILTER (WHERE c.type = 'm.room.create') AS room_type, \
             max(trellis_jsonb(e.content)->>'algorithm') FILTER (WHERE c.type = 'm.room.encryption') AS encryption \
           FROM current_state c JOIN events e ON e.event_id = c.event_id \
           WHERE c.room_id = r.room_id AND c.state_key = '') s "
    };
}

mod access;
mod admin;
mod aliases;
mod appservice_ping;
mod appservice_query;
mod authorise;
mod context;
mod create;
mod directory;
mod guests;
mod identity_server;
mod keys;
mod leave_all;
mod media_refs;
mod members;
mod membership;
mod new_event;
pub mod pdu;
mod persist;
mod power_copy;
mod profile;
mod read;
mod redact;
mod relations;
mod reports;
mod search;
mod send;
mod server_notices;
mod service;
mod thirdparty;
mod threepid_invite;
pub use admin::list_rooms;
pub use server_notices::ServerNotices;
pub use service::RoomsHandle;
mod spaces;
pub mod state;
mod timestamp;
mod tracker;
mod upgrade;
mod user_directory;
mod writer;

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use dashmap::DashMap;
use ruma::{OwnedRoomId, OwnedServerName, RoomId, signatures::Ed25519KeyPair};
use trellis_bus::Bus;
use trellis_core::{Error, Result, shutdown::Shutdown, time::now_ms};
use trellis_storage::Pool;

use crate::{state::RoomState, tracker::Tracker};

/// Settings of the rooms service.
#[derive(Clone)]
pub struct RoomsSettings {
    pub server_name: OwnedServerName,
    /// The database, for the connection that holds the event-writer lock.
    pub database: trellis_storage::Target,
    /// Test-only: a random delay before each commit, so later positions commit first.
    pub test_commit_jitter: Option<Duration>,
    /// The configured application services (their exclusive alias namespaces).
    pub appservices: trellis_core::appservice::Registry,
    /// Identity servers' certificates are not checked (`email.insecure_identity_server_tls_for_testing`).
    pub insecure_identity_server_tls: bool,
}

impl RoomsSettings {
    /// The settings `config` names, holding the writer lock's session on `database` (the
    /// process's one [`trellis_storage::Target`]).
    pub fn from_config(
        config: &trellis_core::config::Config,
        database: trellis_storage::Target,
    ) -> Result<RoomsSettings> {
        Ok(RoomsSettings {
            server_name: ruma::ServerName::parse(&config.server_name)
                .map_err(|e| Error::internal(format!("invalid server_name: {e}")))?,
            database,
            test_commit_jitter: None,
            appservices: Default::default(),
            insecure_identity_server_tls: config.email.insecure_identity_server_tls_for_testing,
        })
    }
}

type RoomLock = Arc<tokio::sync::Mutex<Option<RoomState>>>;

/// A room's write lock and cached state, with when it was last used.
struct RoomSlot {
    lock: RoomLock,
    last_used_ms: AtomicI64,
}

/// Rooms not written to for this long drop their cached state (reloaded on next write).
const IDLE_ROOM_EVICTION: Duration = Duration::from_secs(600);

pub struct Rooms {
    pool: Pool,
    settings: RoomsSettings,
    key: Ed25519KeyPair,
    tracker: Arc<Tracker>,
    /// Per-room write lock, holding the room's state once loaded.
    locks: DashMap<OwnedRoomId, Arc<RoomSlot>>,
    /// Queries to application services (aliases, third-party lookups).
    appservice_http: appservice_query::Http,
    /// Calls to identity servers (third-party invites).
    id_servers: reqwest::Client,
    /// Keeps the session that holds the event-writer advisory lock open.
    _writer_lock: Arc<tokio_postgres::Client>,
    /// Whether background work (purges) may run: admins pause and resume it.
    background: tokio::sync::watch::Sender<bool>,
    /// `[server_notices]` and its peers, once the process has given them.
    notices: std::sync::OnceLock<server_notices::ServerNotices>,
}

/// Arbitrary constant naming the advisory lock held by the one event writer.
const EVENT_WRITER_LOCK: i64 = 0x0074_726c_7377_7274;

impl Rooms {
    /// Starts the rooms service: takes the event-writer lock (waiting while another rooms
    /// service holds it, so a second instance is a hot standby), loads the signing key and
    /// starts the stream tracker.
    pub async fn start(
        pool: Pool,
        bus: Arc<dyn Bus>,
        settings: RoomsSettings,
        shutdown: Shutdown,
    ) -> Result<Arc<Rooms>> {
        let writer_lock = Arc::new(
            trellis_storage::lock::acquire(&settings.database, EVENT_WRITER_LOCK, "event-writer", &shutdown).await?,
        );
        let key = keys::load_or_create(&pool).await?;
        let max_pos: i64 = pool.get().await?.query_one("SELECT COALESCE(max(pos), 0) FROM events", &[]).await?.get(0);
        // The appservice sender hears of every batch, when there is anything to send.
        let feed = settings
            .appservices
            .all()
            .iter()
            .any(|a| a.registration.url.is_some())
            .then_some(trellis_bus::Channel::Appservices);
        let tracker = Tracker::start(pool.clone(), writer_lock.clone(), bus, max_pos, feed, shutdown.clone()).await?;
        tracing::info!(max_pos, "rooms service started");
        let id_servers = identity_server::client(settings.insecure_identity_server_tls);
        let rooms = Arc::new(Rooms {
            pool,
            settings,
            key,
            tracker,
            locks: DashMap::new(),
            appservice_http: appservice_query::Http::default(),
            id_servers,
            _writer_lock: writer_lock,
            background: tokio::sync::watch::Sender::new(true),
            notices: std::sync::OnceLock::new(),
        });
        tokio::spawn(evict_idle_rooms(Arc::downgrade(&rooms), shutdown));
        tokio::spawn(admin::delete::resume(rooms.clone()));
        Ok(rooms)
    }

    fn room_lock(&self, room_id: &RoomId) -> RoomLock {
        let slot = self
            .locks
            .entry(room_id.to_owned())
            .or_insert_with(|| Arc::new(RoomSlot { lock: RoomLock::default(), last_used_ms: AtomicI64::new(now_ms()) }))
            .clone();
        slot.last_used_ms.store(now_ms(), Ordering::Relaxed);
        slot.lock.clone()
    }

    /// Forgets the cached state of rooms idle for `idle`; returns how many were dropped.
    fn evict_idle(&self, idle: Duration) -> usize {
        let before = self.locks.len();
        let cutoff = now_ms() - idle.as_millis() as i64;
        // A lock someone still holds a handle to is in use, whatever its age.
        self.locks
            .retain(|_, slot| Arc::strong_count(&slot.lock) > 1 || slot.last_used_ms.load(Ordering::Relaxed) > cutoff);
        before - self.locks.len()
    }

    pub(crate) fn server_name(&self) -> &str {
        self.settings.server_name.as_str()
    }

    /// The highest stream position readers may see.
    pub fn announced_position(&self) -> i64 {
        self.tracker.announced()
    }

    /// False once the session holding the event-writer lock has closed: this process can no
    /// longer know that it is the only writer (its health then asks for a restart).
    pub fn holds_writer_lock(&self) -> bool {
        !self._writer_lock.is_closed()
    }
}

/// Drops every cached room state at once (tests exercise the reload path with it).
#[doc(hidden)]
pub fn testing_evict_all(rooms: &Rooms) -> usize {
    rooms.evict_idle(Duration::ZERO)
}

async fn evict_idle_rooms(rooms: std::sync::Weak<Rooms>, shutdown: Shutdown) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            _ = shutdown.wait() => return,
        }
        let Some(rooms) = rooms.upgrade() else { return };
        let evicted = rooms.evict_idle(IDLE_ROOM_EVICTION);
        if evicted > 0 {
            tracing::debug!(evicted, cached = rooms.locks.len(), "evicted idle room state");
        }
    }
}
