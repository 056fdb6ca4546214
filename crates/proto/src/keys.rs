//! The keys service contract (end-to-end encryption keys), served by the auth role.

pub use crate::pb::keys::*;

service! {
    /// Device, one-time, fallback and cross-signing keys and the device-list stream. The only
    /// writer of the key tables (V7__e2ee.sql).
    pub trait KeysService as "keys" {
        /// `M_BAD_JSON` for a key that is not the spec's object or not canonical JSON,
        /// `M_INVALID_PARAM` for device keys of another device or a one-time key changed.
        fn upload_keys(UploadKeysRequest) -> UploadKeysResponse;
        fn query_keys(QueryKeysRequest) -> QueryKeysResponse;
        /// Hands out each one-time key at most once; falls back to the fallback key.
        fn claim_keys(ClaimKeysRequest) -> ClaimKeysResponse;
        /// Replacing existing cross-signing keys needs user-interactive auth; a key not signed
        /// by the master key is `M_INVALID_SIGNATURE`.
        fn upload_signing_keys(UploadSigningKeysRequest) -> UploadSigningKeysResponse;
        /// Every new signature is verified; those refused are listed in `failures`.
        fn upload_signatures(UploadSignaturesRequest) -> UploadSignaturesResponse;
        fn key_changes(KeyChangesRequest) -> KeyChangesResponse;
    }
    client KeysGrpcClient = keys_client::KeysClient<tonic::transport::Channel>;
    server KeysGrpcServer = keys_server::{KeysServer, Keys};
}
