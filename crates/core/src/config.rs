//! Configuration: defaults that make `make run` work, overridden by a TOML file and then by
//! `TRELLIS_...` environment variables (`__` separates nested keys:
//! `TRELLIS_DATABASE__URL`, `TRELLIS_REMOTE__SYNC='["http://a:9103","http://b:9103"]'`).

use std::{fmt, net::SocketAddr, path::PathBuf, str::FromStr};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};

/// A service role a process can run. Running all of them is monolith mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Gateway,
    Auth,
    Rooms,
    Sync,
    Media,
    /// The application-service transaction sender (one active, others standing by).
    Appservice,
}

impl Role {
    pub const ALL: [Role; 6] = [Role::Gateway, Role::Auth, Role::Rooms, Role::Sync, Role::Media, Role::Appservice];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Gateway => "gateway",
            Role::Auth => "auth",
            Role::Rooms => "rooms",
            Role::Sync => "sync",
            Role::Media => "media",
            Role::Appservice => "appservice",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?} (expected gateway, auth, rooms, sync, media or appservice)"))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The server part of every user ID, room ID and alias.
    pub server_name: String,
    /// The roles this process runs; all five is monolith mode.
    pub roles: Vec<Role>,
    /// Public client URL advertised in `/.well-known/matrix/client`.
    pub public_baseurl: Option<String>,
    pub http: HttpConfig,
    pub grpc: GrpcConfig,
    pub remote: RemoteConfig,
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub bus: BusConfig,
    pub registration: RegistrationConfig,
    pub auth: AuthSettings,
    pub oauth: OauthConfig,
    /// `[sso]`: upstream OpenID Connect providers (`docs/sso.md`).
    pub sso: crate::sso::SsoConfig,
    pub sync: SyncConfig,
    pub media: MediaConfig,
    pub telemetry: TelemetryConfig,
    pub rate_limits: crate::ratelimit::RateLimitConfig,
    pub turn: TurnConfig,
    pub support: SupportConfig,
    pub metrics: MetricsConfig,
    pub health: HealthConfig,
    pub server_notices: ServerNoticesConfig,
    pub appservices: AppservicesConfig,
    /// `[email]`: validation emails for third-party identifiers (`docs/email.md`).
    pub email: EmailConfig,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            server_name: "localhost".into(),
            roles: Role::ALL.to_vec(),
            public_baseurl: None,
            http: HttpConfig::default(),
            grpc: GrpcConfig::default(),
            remote: RemoteConfig::default(),
            database: DatabaseConfig::default(),
            redis: RedisConfig::default(),
            bus: BusConfig::default(),
            registration: RegistrationConfig::default(),
            auth: AuthSettings::default(),
            oauth: OauthConfig::default(),
            sso: crate::sso::SsoConfig::default(),
            sync: SyncConfig::default(),
            media: MediaConfig::default(),
            telemetry: TelemetryConfig::default(),
            rate_limits: crate::ratelimit::RateLimitConfig::default(),
            turn: TurnConfig::default(),
            support: SupportConfig::default(),
            metrics: MetricsConfig::default(),
            health: HealthConfig::default(),
            server_notices: ServerNoticesConfig::default(),
            appservices: AppservicesConfig::default(),
            email: EmailConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Where the gateway listens for client HTTP.
    pub listen: SocketAddr,
    /// Largest JSON request body, in bytes (media uploads have their own limit).
    pub max_json_body_bytes: usize,
    /// How long a gateway reuses an access token's validation, in milliseconds (0: never).
    /// A revocation (logout, device deletion, password change, deactivation) is final on
    /// every gateway as soon as it answered: in split mode the auth service answers it only
    /// once this time has passed since it committed, so keep it short and the same on every
    /// process.
    pub token_cache_ms: u64,
    /// Trust `X-Forwarded-For` for the client's address (set when a proxy or ingress that
    /// overwrites the header sits in front of every gateway).
    pub x_forwarded_for: bool,
    /// Most client connections open at once; past it a new one is answered 503 and closed.
    /// 0: three quarters of the process's open-file limit.
    pub max_connections: usize,
    /// Most connections open at once from one client address (0: no cap). Off with
    /// `x_forwarded_for`, where every connection comes from the proxy (which caps its clients).
    pub max_connections_per_address: usize,
    /// How long a connection may take to send a request's head once it started to, in
    /// milliseconds: a client sending half a request, or a byte at a time, is cut off.
    pub header_timeout_ms: u64,
    /// How long a request body may pause between two chunks, in milliseconds.
    pub body_timeout_ms: u64,
    /// How long a connection with no request under way may stay silent before it is closed,
    /// in milliseconds. A request in progress is never cut short by it: a `/sync` long-poll
    /// keeps its full `timeout`.
    pub idle_timeout_ms: u64,
    /// Requests served on one connection before it is closed (`Connection: close`), so
    /// clients spread over gateways behind a balancer (0: no limit).
    pub max_requests_per_connection: u64,
    /// Serve the client API over TLS (`https://`) on `listen`, with this certificate.
    pub tls: Option<TlsConfig>,
}

/// A certificate for the client API, reloaded when its files change (a renewal needs no
/// restart).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, the server's certificate first.
    pub certificate: std::path::PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: std::path::PathBuf,
    /// How often the files are looked at for a change, in milliseconds.
    #[serde(default = "TlsConfig::default_reload_ms")]
    pub reload_ms: u64,
}

impl TlsConfig {
    fn default_reload_ms() -> u64 {
        10_000
    }
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            listen: ([127, 0, 0, 1], 8008).into(),
            max_json_body_bytes: 1024 * 1024,
            token_cache_ms: 2_000,
            x_forwarded_for: false,
            max_connections: 0,
            max_connections_per_address: 512,
            header_timeout_ms: 20_000,
            body_timeout_ms: 30_000,
            idle_timeout_ms: 60_000,
            max_requests_per_connection: 1_000,
            tls: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcConfig {
    /// Where this process serves the gRPC API of the service roles it runs (split mode).
    /// Unused when no role here is called by another process.
    pub listen: SocketAddr,
    /// Former name of `metrics.listen`, still read when that is unset.
    pub metrics_listen: Option<SocketAddr>,
    /// Bind `listen` with `SO_REUSEPORT`, so several processes of a stateless role (auth,
    /// media on S3) share one address and the kernel spreads connections across them, as a
    /// Kubernetes Service does across replicas: when one dies, its callers reconnect to the
    /// others. Every process sharing the address must set it.
    pub reuse_port: bool,
}

impl Default for GrpcConfig {
    fn default() -> GrpcConfig {
        GrpcConfig { listen: ([127, 0, 0, 1], 9100).into(), metrics_listen: None, reuse_port: false }
    }
}

/// `[metrics]`: the operations port, apart from the client API and gRPC ports.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where every role serves Prometheus `/metrics` and the `/health/live` and
    /// `/health/ready` probes over plain HTTP. Unset: nowhere (several processes on one host
    /// would otherwise collide on a default port). Never the client API port.
    pub listen: Option<SocketAddr>,
}

/// `[health]`: readiness checks and draining.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// How often the database, Redis and the services this process calls are checked.
    pub interval_ms: u64,
    /// How long one check may take before it counts as failed.
    pub timeout_ms: u64,
    /// After SIGTERM, how long the process reports itself not ready while it keeps serving,
    /// so load balancers and Kubernetes endpoints stop sending it new work before it stops.
    pub drain_ms: u64,
    /// An unreachable Redis makes the process not ready. When false it only shows in the
    /// readiness report: the bus falls back to polling PostgreSQL and shared rate limits
    /// let requests through, so the process still serves, more slowly.
    pub require_redis: bool,
}

impl Default for HealthConfig {
    fn default() -> HealthConfig {
        HealthConfig { interval_ms: 2_000, timeout_ms: 1_000, drain_ms: 0, require_redis: true }
    }
}

/// gRPC URLs of the services this process does not run itself.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemoteConfig {
    pub auth: Option<String>,
    pub rooms: Option<String>,
    /// One URL per sync worker; the gateway spreads `/sync` calls across them.
    pub sync: Vec<String>,
    pub media: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgres://user:password@host:port/db`. Empty: `make run` starts a local server and
    /// passes its URL in `TRELLIS_DATABASE__URL`. `?sslmode=require` (or libpq's `verify-ca`,
    /// `verify-full`) connects over TLS and verifies the server's certificate; any other
    /// mode connects in plain text.
    pub url: String,
    pub pool_size: usize,
    /// PEM file of the CA(s) the server's certificate must chain to under TLS; none: the
    /// system's trusted roots.
    pub tls_ca_file: Option<PathBuf>,
}

impl Default for DatabaseConfig {
    fn default() -> DatabaseConfig {
        DatabaseConfig { url: "postgres://postgres@127.0.0.1:5432/trellis".into(), pool_size: 16, tls_ca_file: None }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port/`, or `rediss://` for TLS (the server's certificate verified).
    /// Needed whenever rooms and sync run in different processes.
    pub url: Option<String>,
    /// PEM file of the CA(s) a `rediss://` server's certificate must chain to; none: the
    /// system's trusted roots.
    pub tls_ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BusBackend {
    /// In-process when rooms and sync share this process, Redis otherwise. Several monolith
    /// replicas behind one load balancer must say `redis` explicitly.
    #[default]
    Auto,
    Memory,
    Redis,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusConfig {
    pub backend: BusBackend,
    /// How long a sync worker keeps an idle channel subscribed, so a client's next long-poll
    /// finds it ready.
    pub linger_ms: u64,
    /// Prefix of every Redis channel name: deployments sharing one Redis must differ here.
    pub channel_prefix: String,
}

impl Default for BusConfig {
    fn default() -> BusConfig {
        BusConfig { backend: BusBackend::Auto, linger_ms: 30_000, channel_prefix: "trellis".into() }
    }
}

/// `[support]`: who to contact about this server, served at `/.well-known/matrix/support`
/// (spec 1.10); with neither contacts nor a page, that answers 404.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SupportConfig {
    /// `[[support.contacts]]` entries.
    pub contacts: Vec<SupportContact>,
    /// A web page with help for this server's users.
    pub support_page: Option<String>,
}

/// `[server_notices]`: admins' notices to users (`POST /_synapse/admin/v1/send_server_notice`),
/// sent by a system user in a room of its own with each user, as Synapse does. Off unless
/// `system_mxid_localpart` is set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerNoticesConfig {
    /// The localpart of the user who sends notices (its account is made on first use).
    pub system_mxid_localpart: Option<String>,
    pub system_mxid_display_name: Option<String>,
    pub system_mxid_avatar_url: Option<String>,
    /// The name of each user's notices room.
    pub room_name: String,
}

impl Default for ServerNoticesConfig {
    fn default() -> ServerNoticesConfig {
        ServerNoticesConfig {
            system_mxid_localpart: None,
            system_mxid_display_name: None,
            system_mxid_avatar_url: None,
            room_name: "Server Notices".into(),
        }
    }
}

/// A way to reach the server's administrators: a role (`m.role.admin`, `m.role.security` or
/// a namespaced one) and a Matrix ID or an e-mail address or both.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupportContact {
    pub role: String,
    pub matrix_id: Option<String>,
    pub email_address: Option<String>,
}

/// `[turn]`: the TURN servers handed to VoIP clients by `GET /voip/turnServer`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TurnConfig {
    /// e.g. `turn:turn.example.com:3478?transport=udp`; none configured → `{}`.
    pub uris: Vec<String>,
    /// The TURN server's `static-auth-secret`: credentials are time-limited HMACs of it.
    pub shared_secret: Option<String>,
    /// Fixed credentials, when the TURN server has no shared secret.
    pub username: Option<String>,
    pub password: Option<String>,
    /// How long handed-out credentials stay valid.
    pub user_lifetime_ms: u64,
    /// Whether guests get credentials too.
    pub allow_guests: bool,
}

impl Default for TurnConfig {
    fn default() -> TurnConfig {
        TurnConfig {
            uris: Vec::new(),
            shared_secret: None,
            username: None,
            password: None,
            user_lifetime_ms: 24 * 60 * 60 * 1000,
            allow_guests: true,
        }
    }
}

/// Application services (bridges and bots, `docs/appservices.md`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppservicesConfig {
    /// Registration files (YAML, the spec's format), read and checked when a process starts.
    pub registration_files: Vec<PathBuf>,
    /// Longest wait between two attempts to deliver a transaction to an appservice that is
    /// down, in milliseconds (the wait doubles from 250 ms up to this).
    pub retry_max_ms: u64,
    /// Most events in one transaction.
    pub max_batch: usize,
}

impl Default for AppservicesConfig {
    fn default() -> AppservicesConfig {
        AppservicesConfig { registration_files: Vec::new(), retry_max_ms: 60_000, max_batch: 100 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrationConfig {
    pub enabled: bool,
    /// Smallest password accepted at registration.
    pub min_password_len: usize,
    /// Whether `POST /register?kind=guest` hands out guest accounts (off by default, as in
    /// Synapse). Guests may call only the endpoints the spec's "Guest access" module allows.
    pub allow_guests: bool,
    /// New accounts need a registration token (the `m.login.registration_token` stage,
    /// spec 1.2): only those the operator gave a token may register.
    pub requires_token: bool,
    /// Registration tokens this configuration provides (`[[registration.tokens]]`), beside
    /// those made with `trellis registration-token create`; written to the database when the
    /// auth role starts, where the configured uses and expiry replace the stored ones.
    pub tokens: Vec<RegistrationTokenConfig>,
    /// `[registration.recaptcha]`: Google reCAPTCHA as the `m.login.recaptcha` stage.
    pub recaptcha: Option<RecaptchaConfig>,
}

impl Default for RegistrationConfig {
    fn default() -> RegistrationConfig {
        RegistrationConfig {
            enabled: true,
            min_password_len: 1,
            allow_guests: false,
            requires_token: false,
            tokens: Vec::new(),
            recaptcha: None,
        }
    }
}

/// The `m.login.recaptcha` registration stage: the site's keys and where answers are checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecaptchaConfig {
    /// The site key the fallback page shows the challenge with (sent in the UIA `params`).
    pub public_key: String,
    /// The secret the server verifies answers with.
    pub private_key: String,
    /// The verification endpoint (Google's `siteverify`, or a compatible one).
    pub siteverify_api: String,
    /// Every registration flow needs the stage (Synapse's `enable_registration_captcha`).
    /// When false a client may still complete it, and it is verified.
    pub required: bool,
}

impl Default for RecaptchaConfig {
    fn default() -> RecaptchaConfig {
        RecaptchaConfig {
            public_key: String::new(),
            private_key: String::new(),
            siteverify_api: "https://www.google.com/recaptcha/api/siteverify".into(),
            required: true,
        }
    }
}

/// One configured registration token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationTokenConfig {
    /// The token: 1 to 64 of `A-Z a-z 0-9 . _ ~ -`.
    pub token: String,
    /// How many accounts it may create; unset: any number.
    pub uses_allowed: Option<u32>,
    /// When it stops working, in milliseconds since the epoch; unset: never.
    pub expiry_time: Option<i64>,
}

/// How the connection to the SMTP server is secured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain SMTP, never encrypted (a relay on the same machine or a test sink).
    None,
    /// STARTTLS when the server offers it, plain otherwise (Synapse's default).
    #[default]
    Opportunistic,
    /// STARTTLS, required: no mail is sent over a plain connection.
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
}

/// `[email]`: the homeserver validates email addresses itself by sending a link (spec
/// "Adding Account Administrative Contact Information"; Synapse's `email` section). Off until
/// `smtp_host` is set: then `/requestToken` mails, and `m.login.email.identity` is offered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmailConfig {
    pub smtp_host: Option<String>,
    pub smtp_port: u16,
    pub smtp_tls: SmtpTls,
    /// Credentials for SMTP AUTH; none: no authentication.
    pub smtp_user: Option<String>,
    pub smtp_pass: Option<String>,
    /// The `From:` of every mail, e.g. `"Example Chat <noreply@example.org>"`.
    pub notif_from: String,
    /// How long a mailed token may be used, in milliseconds (Synapse: one hour).
    pub validation_token_lifetime_ms: u64,
    /// For test suites only: identity servers' TLS certificates are not checked (SyTest's
    /// mock identity server presents its CA's own certificate; Synapse's
    /// `use_insecure_ssl_client_just_for_testing_do_not_use`). Never in production.
    pub insecure_identity_server_tls_for_testing: bool,
}

impl Default for EmailConfig {
    fn default() -> EmailConfig {
        EmailConfig {
            smtp_host: None,
            smtp_port: 25,
            smtp_tls: SmtpTls::default(),
            smtp_user: None,
            smtp_pass: None,
            notif_from: "Trellis <noreply@localhost>".into(),
            validation_token_lifetime_ms: 60 * 60 * 1000,
            insecure_identity_server_tls_for_testing: false,
        }
    }
}

/// `[auth]`: how sessions are handed out.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Lifetime of an access token, in milliseconds, for clients that ask for a refresh token
    /// (`refresh_token: true` on `/login` or `/register`, spec 1.3): they get `expires_in_ms`
    /// and a refresh token, and `POST /refresh` renews both. Unset: no refresh tokens, and
    /// access tokens never expire. Clients that do not ask always get a token that never
    /// expires (as Synapse).
    pub access_token_lifetime_ms: Option<u64>,
    /// `POST /login/get_token` (spec 1.7): a signed-in user, after confirming their
    /// password, gets a single-use token that signs another device in with `m.login.token`
    /// (QR sign-in). Off by default, as in Synapse.
    pub login_token_enabled: bool,
    /// How long such a token may be used, in milliseconds (the spec recommends 2 minutes).
    pub login_token_lifetime_ms: u64,
}

impl Default for AuthSettings {
    fn default() -> AuthSettings {
        AuthSettings { access_token_lifetime_ms: None, login_token_enabled: false, login_token_lifetime_ms: 120_000 }
    }
}

/// `[oauth]`: the OAuth 2.0 API (spec 1.15+, `docs/oauth.md`), served by the auth service with
/// its own login, registration, consent and account pages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OauthConfig {
    /// Serve the OAuth 2.0 API (`/auth_metadata` and its endpoints). Off: `/auth_metadata`
    /// answers 404 `M_UNRECOGNIZED`, as the spec says for a server without it.
    pub enabled: bool,
    /// Lifetime of an access token the token endpoint hands out, in milliseconds (always with
    /// a refresh token).
    pub access_token_lifetime_ms: u64,
    /// How long an authorization code may be exchanged, in milliseconds.
    pub code_lifetime_ms: u64,
    /// How long a device code and its user code live, in milliseconds.
    pub device_code_lifetime_ms: u64,
    /// The smallest gap between two polls of a device code, in seconds (`interval`).
    pub device_poll_interval_s: u64,
    /// How long a browser session of the login and account pages lasts, in milliseconds.
    pub session_lifetime_ms: u64,
    /// Keep `m.login.password` on `/login` for clients that do not speak OAuth 2.0.
    pub password_login: bool,
}

impl Default for OauthConfig {
    fn default() -> OauthConfig {
        OauthConfig {
            enabled: false,
            access_token_lifetime_ms: 300_000,
            code_lifetime_ms: 600_000,
            device_code_lifetime_ms: 900_000,
            device_poll_interval_s: 5,
            session_lifetime_ms: 86_400_000,
            password_login: true,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncBalance {
    /// Same user → same worker (warm subscriptions), next worker if it fails.
    #[default]
    User,
    /// Every call to the next worker in turn.
    RoundRobin,
}

/// Where a gateway finds the sync workers it spreads long-polls over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncDiscovery {
    /// The fixed `remote.sync` list.
    #[default]
    Static,
    /// The workers alive now: each registers its `sync.advertise_url` in Redis and renews it
    /// every `sync.heartbeat_ms`; gateways follow the registry, so workers can be added and
    /// removed without touching the gateways.
    Redis,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyncConfig {
    /// Upper bound on a client's `timeout`.
    pub max_timeout_ms: u64,
    /// Timeline events per room when the filter gives no limit.
    pub default_timeline_limit: u32,
    pub balance: SyncBalance,
    /// A long-poll woken only by receipts, typing or presence waits this long for more of
    /// them (new events still answer at once): in a busy room one response then carries
    /// many such changes instead of one each.
    pub ephemeral_batch_ms: u64,
    pub discovery: SyncDiscovery,
    /// A sync worker's gRPC URL as gateways reach it, registered with `discovery = "redis"`
    /// (in Kubernetes, the pod IP: `http://$(POD_IP):50051`). Default: `http://` and
    /// `grpc.listen`, when that names a specific address.
    pub advertise_url: Option<String>,
    /// How often a registered worker renews its entry; it lapses after three missed renewals.
    pub heartbeat_ms: u64,
}

impl Default for SyncConfig {
    fn default() -> SyncConfig {
        SyncConfig {
            max_timeout_ms: 60_000,
            default_timeline_limit: 10,
            balance: SyncBalance::User,
            ephemeral_batch_ms: 200,
            discovery: SyncDiscovery::Static,
            advertise_url: None,
            heartbeat_ms: 1_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// Directory of the local filesystem store; with `store = "s3"` only the upload spool.
    pub path: PathBuf,
    pub max_upload_bytes: u64,
    /// Where blobs live: `local` (under `path`) or `s3` (an S3-compatible bucket; the
    /// credentials come from the standard `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`
    /// environment, or the instance's role).
    pub store: String,
    pub s3_bucket: Option<String>,
    pub s3_region: Option<String>,
    /// Endpoint of an S3-compatible server (MinIO, Garage, ...); unset: AWS.
    pub s3_endpoint: Option<String>,
    /// Key prefix of every blob in the bucket.
    pub s3_prefix: Option<String>,
    /// Allow a plain-HTTP endpoint (local test servers).
    pub s3_allow_http: bool,
    /// Total bytes one user may have uploaded; unset: no quota.
    pub max_user_bytes: Option<u64>,
    /// Reserved-but-unused `mxc://` URIs (`/create`) one user may hold at a time.
    pub max_pending_uploads: u32,
    /// How long a reserved URI waits for its content before it expires.
    pub unused_expiry_ms: u64,
    /// Like Synapse's switch of the same name: when true, the unauthenticated legacy
    /// endpoints (`/_matrix/media/v3/download|thumbnail`) serve only media uploaded before
    /// `legacy_media_before_ms` (none when unset); when false they serve everything.
    pub enable_authenticated_media: bool,
    /// The freeze date of the legacy endpoints, in milliseconds since the epoch.
    pub legacy_media_before_ms: Option<i64>,
    /// Images with more pixels than this are neither decoded nor thumbnailed.
    pub max_image_pixels: u64,
    /// `GET /media/preview_url`: off unless enabled.
    pub url_preview_enabled: bool,
    /// Addresses (CIDR) a preview never connects to, checked on every resolved address.
    pub url_preview_ip_blacklist: Vec<String>,
    /// Exceptions to the blacklist (CIDR).
    pub url_preview_ip_whitelist: Vec<String>,
    /// Largest page or image a preview downloads.
    pub url_preview_max_bytes: u64,
    /// Time allowed for fetching one URL.
    pub url_preview_timeout_ms: u64,
    /// How long a preview is served from the cache.
    pub url_preview_cache_ms: u64,
}

impl Default for MediaConfig {
    fn default() -> MediaConfig {
        MediaConfig {
            path: "./data/media".into(),
            max_upload_bytes: 50 * 1024 * 1024,
            store: "local".into(),
            s3_bucket: None,
            s3_region: None,
            s3_endpoint: None,
            s3_prefix: None,
            s3_allow_http: false,
            max_user_bytes: None,
            max_pending_uploads: 5,
            unused_expiry_ms: 24 * 60 * 60 * 1000,
            enable_authenticated_media: true,
            legacy_media_before_ms: None,
            max_image_pixels: 32_000_000,
            url_preview_enabled: false,
            // Synapse's recommended list: private, loopback, link-local, CGNAT, multicast and
            // reserved ranges of both families.
            url_preview_ip_blacklist: [
                "0.0.0.0/8",
                "10.0.0.0/8",
                "100.64.0.0/10",
                "127.0.0.0/8",
                "169.254.0.0/16",
                "172.16.0.0/12",
                "192.0.0.0/24",
                "192.0.2.0/24",
                "192.88.99.0/24",
                "192.168.0.0/16",
                "198.18.0.0/15",
                "198.51.100.0/24",
                "203.0.113.0/24",
                "224.0.0.0/4",
                "240.0.0.0/4",
                "::1/128",
                "::/128",
                "::ffff:0:0/96",
                "64:ff9b::/96",
                "100::/64",
                "2001:db8::/32",
                "fc00::/7",
                "fe80::/10",
                "fec0::/10",
                "ff00::/8",
            ]
            .map(String::from)
            .to_vec(),
            url_preview_ip_whitelist: Vec::new(),
            url_preview_max_bytes: 10 * 1024 * 1024,
            url_preview_timeout_ms: 10_000,
            url_preview_cache_ms: 60 * 60 * 1000,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    pub log_format: LogFormat,
    /// `tracing` filter directives; `RUST_LOG` wins when set.
    pub log_filter: String,
    /// OTLP/gRPC collector, e.g. `http://127.0.0.1:4317`. Unset: no export.
    pub otlp_endpoint: Option<String>,
}

impl Default for TelemetryConfig {
    fn default() -> TelemetryConfig {
        TelemetryConfig {
            log_format: LogFormat::Text,
            // The PostgreSQL driver logs every server NOTICE at info; those are not ours.
            log_filter: "info,tokio_postgres=warn,refinery_core=warn,ruma_common=warn,ruma_state_res=warn".into(),
            otlp_endpoint: None,
        }
    }
}

/// The top-level keys of [`Config`] (the environment layer only reads these).
const TOP_LEVEL_KEYS: &[&str] = &[
    "server_name",
    "roles",
    "appservices",
    "public_baseurl",
    "http",
    "grpc",
    "remote",
    "database",
    "redis",
    "bus",
    "registration",
    "auth",
    "oauth",
    "sso",
    "sync",
    "media",
    "telemetry",
    "rate_limits",
    "turn",
    "support",
    "metrics",
    "health",
    "server_notices",
    "email",
];

impl Config {
    /// Defaults, then the TOML file (if any), then `TRELLIS_*` environment variables.
    pub fn load(file: Option<&std::path::Path>) -> Result<Config, Box<figment::Error>> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        // Only variables naming a configuration key are configuration: others sharing the
        // prefix (`TRELLIS_CONFIG`, the test suite's `TRELLIS_TEST_*`) are not.
        let env = Env::prefixed("TRELLIS_").filter(|k| {
            let key = k.as_str().to_ascii_lowercase();
            let top = key.split("__").next().unwrap_or_default().to_owned();
            TOP_LEVEL_KEYS.contains(&top.as_str())
        });
        figment.merge(env.split("__")).extract().map_err(Box::new)
    }

    /// The operations listener: `metrics.listen`, or the former `grpc.metrics_listen`.
    pub fn metrics_listen(&self) -> Option<SocketAddr> {
        self.metrics.listen.or(self.grpc.metrics_listen)
    }

    pub fn runs(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Every role that serves requests in this process (the appservice sender, which serves
    /// none, may run here or apart).
    pub fn is_monolith(&self) -> bool {
        Role::ALL.iter().filter(|r| **r != Role::Appservice).all(|r| self.runs(*r))
    }

    /// The configuration with passwords in URLs replaced by `***`, for printing.
    pub fn redacted(&self) -> Config {
        let mut c = self.clone();
        c.database.url = redact_url(&c.database.url);
        c.redis.url = c.redis.url.as_deref().map(redact_url);
        let hide = |s: &mut Option<String>| {
            if s.is_some() {
                *s = Some("***".into());
            }
        };
        hide(&mut c.turn.shared_secret);
        hide(&mut c.turn.password);
        hide(&mut c.email.smtp_pass);
        for p in &mut c.sso.oidc_providers {
            hide(&mut p.client_secret);
        }
        c
    }

    /// The effective configuration as TOML, secrets redacted.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(&self.redacted()).unwrap_or_else(|e| format!("# unprintable: {e}"))
    }
}

/// Replaces the password of `scheme://user:password@host...` with `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let Some((userinfo, host)) = rest.rsplit_once('@') else { return url.to_owned() };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact_url("postgres://u:hunter2@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("redis://:pw@h:6379/"), "redis://:***@h:6379/");
        let mut c = Config::default();
        c.database.url = "postgres://u:hunter2@h/db".into();
        c.turn.shared_secret = Some("turnsecret".into());
        c.turn.password = Some("turnpass".into());
        let printed = c.to_redacted_toml();
        assert!(!printed.contains("hunter2") && !printed.contains("turnsecret") && !printed.contains("turnpass"));
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API fixes the closure's error type
    fn file_and_env_layers() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "t.toml",
                "server_name = \"example.org\"\nroles = [\"sync\"]\n[sync]\nmax_timeout_ms = 5\n",
            )?;
            jail.set_env("TRELLIS_SYNC__MAX_TIMEOUT_MS", "7");
            jail.set_env("TRELLIS_REMOTE__SYNC", "[\"http://a:1\",\"http://b:2\"]");
            jail.set_env("TRELLIS_CONFIG", "t.toml");
            jail.set_env("TRELLIS_SOMETHING_ELSE", "1");
            let c = Config::load(Some(std::path::Path::new("t.toml"))).unwrap();
            assert_eq!(c.server_name, "example.org");
            assert_eq!(c.roles, vec![Role::Sync]);
            assert_eq!(c.sync.max_timeout_ms, 7);
            assert_eq!(c.remote.sync, vec!["http://a:1".to_string(), "http://b:2".to_string()]);
            Ok(())
        });
    }
}

#[cfg(test)]
mod key_list {
    use super::*;

    #[test]
    fn top_level_keys_match_the_struct() {
        let value = toml::Value::try_from(Config::default()).unwrap();
        let mut keys: Vec<&str> = value.as_table().unwrap().keys().map(String::as_str).collect();
        // Optional fields left unset are not serialised.
        keys.push("public_baseurl");
        keys.sort();
        let mut expected = TOP_LEVEL_KEYS.to_vec();
        expected.sort();
        assert_eq!(keys, expected);
    }
}
