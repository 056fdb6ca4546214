//! The keys service contract (end-to-end encryption keys), served by the auth role.

pub use crate::pb::keys::*;

service! {
    /// Device, one-time, fallback and cross-signing keys and the device-list stream. The only
    /// writer of the key tables (V7__e2ee.sql).
    pub trait KeysService as "keys" {
        fn upload_keys(KeysRequest) -> KeysResponse;
        fn query_keys(KeysRequest) -> KeysResponse;
        /// Hands out each one-time key at most once; falls back to the fallback key.
        fn claim_keys(KeysRequest) -> KeysResponse;
        /// Replacing existing cross-signing keys needs user-interactive auth.
        fn upload_signing_keys(KeysRequest) -> KeysResponse;
        fn upload_signatures(KeysRequest) -> KeysResponse;
        fn key_changes(KeyChangesRequest) -> KeyChangesResponse;
    }
    client KeysGrpcClient = keys_client::KeysClient<tonic::transport::Channel>;
    server KeysGrpcServer = keys_server::{KeysServer, Keys};
}
