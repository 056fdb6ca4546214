//! `trellis`: serve any set of roles, run migrations, print the effective configuration, ask
//! a running process whether it is healthy, manage accounts and registration tokens, or check a
//! deployment from a client's side.

use std::{io::Write, path::PathBuf, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand};
use trellis_core::config::{Config, Role};

#[derive(Parser)]
#[command(name = "trellis", version, about = "A Matrix homeserver")]
struct Cli {
    /// TOML configuration file; `TRELLIS_*` environment variables override it.
    #[arg(long, short, global = true, env = "TRELLIS_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the given roles (default: every role, i.e. monolith mode).
    Serve {
        /// Comma-separated roles: gateway, auth, rooms, sync, media.
        #[arg(long, value_delimiter = ',')]
        roles: Option<Vec<Role>>,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the effective configuration (secrets redacted) and exit.
    Config,
    /// Manage registration tokens (`registration.requires_token`) in the configured database.
    RegistrationToken {
        #[command(subcommand)]
        command: trellis_homeserver::registration_tokens::TokenCommand,
    },
    /// Operate on accounts in the configured database (`trellis admin user --help`); the same
    /// operations as the admin API (`docs/admin.md`).
    Admin(trellis_homeserver::admin::AdminCommand),
    /// Ask the process configured here, on its operations port (`metrics.listen`), whether
    /// it is ready (or, with `--live`, alive); exit status 0 if so. For container health
    /// checks in an image without curl.
    Health {
        /// Liveness instead of readiness.
        #[arg(long)]
        live: bool,
    },
    /// Check a deployment as clients see it — client well-known and its CORS header,
    /// `/versions`, CORS preflight, login flows, TLS certificate and expiry, and with a test
    /// account the media configuration and a sync round trip. One line per check with what
    /// to fix; exit status 1 if any check failed. Works against any Matrix homeserver.
    Check {
        /// The server name (`example.org`) or the client API's URL (`https://matrix.example.org`).
        url: String,
        /// A test account's user ID or localpart, for the media and sync checks.
        #[arg(long, requires = "password")]
        user: Option<String>,
        /// The test account's password (or set TRELLIS_CHECK_PASSWORD).
        #[arg(long, env = "TRELLIS_CHECK_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// Extra CA certificates (PEM) to trust, for a private CA.
        #[arg(long)]
        ca_file: Option<PathBuf>,
        /// Warn when the certificate expires within this many days.
        #[arg(long, default_value_t = 14)]
        expiry_warn_days: u64,
    },
}

/// mimalloc returns freed memory to the OS: with the system allocator, the 19 MiB work area
/// of every Argon2 hash stays resident (1.6–3.6 GiB after a thousand registrations).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Tasks a runtime worker runs between two looks for new socket events while work is queued
/// (tokio's default is 61). When a message wakes a thousand long-polls, looking less often
/// lets the woken polls answer before the requests that arrive meanwhile are read: those are
/// the same clients polling again and have nothing to wait for yet. Measured on the fan-out
/// benchmark: delivery p99 lower in each of five paired runs (docs/benchmarks.md). An idle
/// worker still looks at once.
const EVENT_INTERVAL: u32 = 400;

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread().enable_all().event_interval(EVENT_INTERVAL).build()?.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let command = match cli.command {
        // Needs no configuration: it checks any homeserver from the outside.
        Command::Check { url, user, password, ca_file, expiry_warn_days } => {
            return check(url, user, password, ca_file, expiry_warn_days).await;
        }
        command => command,
    };
    let mut config = Config::load(cli.config.as_deref()).map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
    match command {
        Command::Config => {
            print!("{}", config.to_redacted_toml());
            Ok(())
        }
        Command::Migrate => {
            let _telemetry = trellis_core::telemetry::init(&config.telemetry, "trellis-migrate")?;
            let pool = trellis_storage::Target::from_config(&config.database)?.pool(2)?;
            let applied = trellis_storage::migrate::run(&pool).await.context("running migrations")?;
            println!("{applied} migration(s) applied");
            Ok(())
        }
        Command::Check { .. } => unreachable!("handled before loading the configuration"),
        // No log output: stdout carries the tokens.
        Command::RegistrationToken { command } => trellis_homeserver::registration_tokens::run(&config, command).await,
        Command::Admin(command) => {
            // Only the audit lines (`trellis::audit`), on stderr: stdout carries the answer.
            tracing_subscriber::fmt()
                .with_writer(std::io::stderr)
                .with_env_filter(tracing_subscriber::EnvFilter::new("trellis::audit=info"))
                .init();
            trellis_homeserver::admin::run(&config, command).await
        }
        Command::Health { live } => {
            let addr = config.metrics_listen().context("metrics.listen is not set: no operations port to ask")?;
            let path = if live { "/health/live" } else { "/health/ready" };
            let (status, body) = trellis_homeserver::probe(addr, path, Duration::from_secs(5)).await?;
            println!("{status} {body}");
            anyhow::ensure!(status == 200, "{path} answered {status}");
            Ok(())
        }
        Command::Serve { roles } => {
            if let Some(roles) = roles {
                config.roles = roles;
            }
            let sso = config.sso.problems();
            anyhow::ensure!(sso.is_empty(), "configuration: {}", sso.join("; "));
            let name = match config.roles.as_slice() {
                [one] => format!("trellis-{one}"),
                _ => "trellis".to_owned(),
            };
            let _telemetry = trellis_core::telemetry::init(&config.telemetry, &name)?;
            trellis_core::telemetry::metrics_handle();
            let listeners = trellis_homeserver::Listeners::bind(&config).await?;
            let drain = Duration::from_millis(config.health.drain_ms);
            // A rooms standby waits inside `start` for the writer lock: a signal ends the wait.
            let mut node = tokio::select! {
                node = trellis_homeserver::start(config, listeners) => node?,
                _ = shutdown_signal() => {
                    tracing::info!("stopped while starting");
                    return Ok(());
                }
            };
            let stop = node.shutdown_handle();
            tokio::select! {
                _ = shutdown_signal() => {
                    tracing::info!(drain_ms = drain.as_millis() as u64, "shutting down");
                    if !drain.is_zero() {
                        // Not ready, still serving, until load balancers have taken this
                        // process out; a second signal cuts the wait short.
                        node.drain();
                        tokio::select! {
                            _ = tokio::time::sleep(drain) => {}
                            _ = shutdown_signal() => {}
                            _ = node.wait() => {}
                        }
                    }
                }
                _ = node.wait() => tracing::warn!("a server stopped; shutting down"),
                _ = stop.wait() => {}
            }
            node.stop().await;
            Ok(())
        }
    }
}

async fn check(
    url: String,
    user: Option<String>,
    password: Option<String>,
    ca_file: Option<PathBuf>,
    expiry_warn_days: u64,
) -> anyhow::Result<()> {
    let mut options = trellis_check::Options::new(url);
    options.user = user;
    options.password = password;
    options.expiry_warn_days = expiry_warn_days;
    if let Some(path) = ca_file {
        options.ca_pem = Some(std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?);
    }
    let findings = trellis_check::run(&options).await;
    // Piped into `head` or `grep -q`, a closed stdout ends the listing, not the process.
    let mut out = std::io::stdout().lock();
    for finding in &findings {
        if writeln!(out, "{}", finding.line()).is_err() {
            break;
        }
    }
    if !trellis_check::passed(&findings) {
        std::process::exit(1);
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
