//! `trellis`: serve any set of roles, run migrations, or print the effective configuration.

use std::path::PathBuf;

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
    let mut config = Config::load(cli.config.as_deref()).map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
    match cli.command {
        Command::Config => {
            print!("{}", config.to_redacted_toml());
            Ok(())
        }
        Command::Migrate => {
            let _telemetry = trellis_core::telemetry::init(&config.telemetry, "trellis-migrate")?;
            let pool = trellis_storage::connect(&config.database.url, 2)?;
            let applied = trellis_storage::migrate::run(&pool).await.context("running migrations")?;
            println!("{applied} migration(s) applied");
            Ok(())
        }
        Command::Serve { roles } => {
            if let Some(roles) = roles {
                config.roles = roles;
            }
            let name = match config.roles.as_slice() {
                [one] => format!("trellis-{one}"),
                _ => "trellis".to_owned(),
            };
            let _telemetry = trellis_core::telemetry::init(&config.telemetry, &name)?;
            trellis_core::telemetry::metrics_handle();
            let listeners = trellis_homeserver::Listeners::bind(&config).await?;
            let mut node = trellis_homeserver::start(config, listeners).await?;
            let stop = node.shutdown_handle();
            tokio::select! {
                _ = shutdown_signal() => tracing::info!("shutting down"),
                _ = node.wait() => tracing::warn!("a server stopped; shutting down"),
                _ = stop.wait() => {}
            }
            node.stop().await;
            Ok(())
        }
    }
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
