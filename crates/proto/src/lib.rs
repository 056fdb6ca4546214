//! The contracts between Trellis services. For each service: the generated gRPC messages, a
//! Rust trait (the service's API), a gRPC client that implements the trait, and a gRPC server
//! adapter that serves any implementation of it. Monolith mode calls an implementation
//! directly through the trait; split mode puts the gRPC pair in between.

#[macro_use]
mod macros;
pub mod auth;
pub mod health;
pub mod keys;
pub mod media;
pub mod rooms;
pub mod server;
pub mod status;
pub mod sync;
pub mod sync_calls;
pub mod sync_pool;
pub mod trace;

/// Generated protobuf messages and tonic stubs, one module per package.
pub mod pb {
    pub mod auth {
        tonic::include_proto!("trellis.auth.v1");
    }
    pub mod rooms {
        tonic::include_proto!("trellis.rooms.v1");
    }
    pub mod sync {
        tonic::include_proto!("trellis.sync.v1");
    }
    pub mod media {
        tonic::include_proto!("trellis.media.v1");
    }
    pub mod keys {
        tonic::include_proto!("trellis.keys.v1");
    }
}

/// Largest gRPC message either side accepts (a full-state sync of a big room is large).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// A lazily connecting channel to a service URL such as `http://127.0.0.1:9101`.
pub fn channel(url: &str) -> Result<tonic::transport::Channel, trellis_core::Error> {
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())
        .map_err(|e| trellis_core::Error::internal(format!("bad service URL {url:?}: {e}")))?
        .tcp_nodelay(true)
        .connect_timeout(std::time::Duration::from_secs(5))
        .http2_keep_alive_interval(std::time::Duration::from_secs(20))
        .keep_alive_while_idle(true);
    Ok(endpoint.connect_lazy())
}
