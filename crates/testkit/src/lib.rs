//! Test harness: a whole Trellis on free loopback ports, in monolith mode (one process,
//! in-process bus) or split mode (every role its own server talking gRPC, a Redis bus, two
//! sync workers behind two gateways), plus a small Matrix client for tests (the `server`
//! feature); and the contract-test harness every service crate's tests share
//! ([`contract`], which needs no other service crate).

#[cfg(feature = "server")]
mod client;
pub mod contract;
pub mod proxy;
#[cfg(feature = "server")]
mod server;
pub mod signing;

#[cfg(feature = "server")]
pub use client::{Client, PASSWORD, Reply, enc, timeline_bodies};
#[cfg(feature = "server")]
pub use server::{Mode, TestServer};
pub use signing::SigningKey;
pub use trellis_core::{
    config::{Config, SupportContact},
    ratelimit::Rule,
};
pub use trellis_proto::health::ServingStatus;

/// Installs logging once per test process (`RUST_LOG` picks the level; default `warn`).
pub fn init_logging() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let cfg = trellis_core::config::TelemetryConfig { log_filter: "warn".into(), ..Default::default() };
        let guard = trellis_core::telemetry::init(&cfg, "trellis-test").expect("telemetry");
        std::mem::forget(guard);
    });
}
