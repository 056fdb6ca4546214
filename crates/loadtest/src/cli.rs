//! Command-line options of `trellis-loadtest`.

use std::time::Duration;

use clap::{Parser, ValueEnum};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    Fanout,
    FirstSync,
    IdleSync,
    Held,
    SlidingFirst,
    SlidingLive,
    Chaos,
    SlowClients,
}

/// A bounded load test for any Matrix homeserver: N receivers long-poll `/sync` while S
/// senders send messages at a fixed total rate; reports send and delivery latency, lost and
/// duplicated deliveries. Every request has a hard timeout and the run ends by itself.
#[derive(Parser, Debug, Clone)]
#[command(name = "trellis-loadtest", version)]
pub struct Args {
    /// Client-server base URL(s) of the homeserver (repeat or comma-separate); users are
    /// spread across them round-robin.
    #[arg(long, required = true, value_delimiter = ',', num_args = 1..)]
    pub url: Vec<String>,

    /// What to measure: `fanout` (delivery to long-polling receivers), `first-sync` (a user in
    /// many rooms syncs from scratch), `idle-sync` (incremental syncs with nothing new),
    /// `held` (server memory per held long-poll), `sliding-first` (a user in many rooms opens a
    /// sliding sync connection with a 20-room window), `sliding-live` (a message in the window
    /// reaching a waiting sliding sync long-poll), `chaos` (a mixed load through several gateways
    /// while `--fault` commands run; recovery per fault, nothing lost or duplicated),
    /// `slow-clients` (`--receivers` real clients' latency while idle and half-sent connections
    /// hold the server).
    #[arg(long, value_enum, default_value_t = Scenario::Fanout)]
    pub scenario: Scenario,

    /// first-sync / idle-sync: rooms the user is in.
    #[arg(long, default_value_t = 50)]
    pub sync_rooms: usize,

    /// first-sync / idle-sync: messages sent into each of those rooms.
    #[arg(long, default_value_t = 40)]
    pub events_per_room: usize,

    /// first-sync / idle-sync: how many syncs to time.
    #[arg(long, default_value_t = 20)]
    pub repeat: usize,

    /// Long-polling receivers.
    #[arg(long, default_value_t = 100)]
    pub receivers: usize,

    /// Sending users.
    #[arg(long, default_value_t = 2)]
    pub senders: usize,

    /// Total messages per second over all senders.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,

    /// Length of the measuring window, in seconds.
    #[arg(long, default_value_t = 30.0)]
    pub duration: f64,

    /// Seconds of sending before the measuring window; those messages are not counted.
    #[arg(long, default_value_t = 3.0)]
    pub warmup: f64,

    /// A shell command run once setup is done and before anything is sent (bench.sh vacuums
    /// the database, so that autovacuum of the setup's writes stays out of the window).
    #[arg(long)]
    pub after_setup: Option<String>,

    /// After the window, wait at most this many seconds for in-flight deliveries.
    #[arg(long, default_value_t = 10.0)]
    pub drain: f64,

    /// Rooms to send into (round-robin); every receiver joins all of them.
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,

    /// `timeout` of each `/sync` long-poll, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    pub poll_timeout_ms: u64,

    /// Timeline limit in the `/sync` filter: a receiver that falls further behind than this
    /// sees a limited (gappy) timeline.
    #[arg(long, default_value_t = 100)]
    pub timeline_limit: u32,

    /// Concurrent requests during setup (register, join, initial sync).
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,

    /// Most sends in flight per sender; a slower server then lowers the achieved rate.
    #[arg(long, default_value_t = 32)]
    pub max_in_flight: usize,

    /// Hard timeout of every request other than long-polls (those get poll timeout + this).
    #[arg(long, default_value_t = 30.0)]
    pub request_timeout: f64,

    /// Prefix of the user names (default: random, so repeated runs do not collide).
    #[arg(long)]
    pub user_prefix: Option<String>,

    /// Password of every test user.
    #[arg(long, default_value = "loadtest-password")]
    pub password: String,

    /// Also print the summary as one JSON line.
    #[arg(long)]
    pub json: bool,

    /// chaos: a fault to inject, `NAME=COMMAND` (repeatable; run in order by `sh -c`, each
    /// command injecting the fault and restoring the process before it returns).
    #[arg(long)]
    pub fault: Vec<String>,

    /// chaos: seconds of load after each fault's command returned, before the next fault.
    #[arg(long, default_value_t = 30.0)]
    pub fault_gap: f64,

    /// slow-clients: attacking connections held open (silent, trickled heads, half bodies).
    #[arg(long, default_value_t = 3000)]
    pub attack_connections: usize,

    /// slow-clients: source addresses 127.0.0.2 and up the attack comes from (at most 253).
    #[arg(long, default_value_t = 253)]
    pub attack_addresses: usize,

    /// fanout: receivers long-poll Simplified Sliding Sync (the room as a 1-room window,
    /// `timeline_limit` = `--timeline-limit`, one connection each) instead of `/sync`.
    #[arg(long)]
    pub sliding: bool,

    /// Server process(es) to sample memory (VmRSS/VmHWM) and CPU time of (repeatable).
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
}

impl Args {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.senders >= 1, "--senders must be at least 1");
        anyhow::ensure!(self.rooms >= 1, "--rooms must be at least 1");
        anyhow::ensure!(self.rate > 0.0 && self.rate.is_finite(), "--rate must be positive");
        anyhow::ensure!(self.duration > 0.0 && self.duration <= 3600.0, "--duration must be in (0, 3600]");
        anyhow::ensure!((0.0..=600.0).contains(&self.warmup), "--warmup must be in [0, 600]");
        anyhow::ensure!((0.0..=120.0).contains(&self.drain), "--drain must be in [0, 120]");
        anyhow::ensure!(self.concurrency >= 1 && self.max_in_flight >= 1, "concurrency limits must be at least 1");
        anyhow::ensure!(self.request_timeout > 0.0, "--request-timeout must be positive");
        Ok(())
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.request_timeout)
    }

    /// The base URL the `i`-th user talks to.
    pub fn url_for(&self, i: usize) -> &str {
        self.url[i % self.url.len()].trim_end_matches('/')
    }
}
