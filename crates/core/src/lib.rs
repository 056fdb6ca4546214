//! Shared vocabulary of every Trellis crate: the error type, configuration, identifiers,
//! stream tokens, telemetry set-up and the shutdown signal.

pub mod appservice;
pub mod config;
pub mod error;
pub mod ids;
pub mod ratelimit;
pub mod room_versions;
pub mod shutdown;
pub mod sso;
pub mod telemetry;
pub mod time;
pub mod token;

pub use error::{Error, ErrorCode, MatrixError, Result};
pub use ruma;
pub use token::{Stream, StreamPos, StreamToken};
