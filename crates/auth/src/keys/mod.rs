//! The keys service: end-to-end encryption keys and the device-list stream, implemented by
//! [`Auth`] (the auth role serves it). The only writer of the key tables of V7__e2ee.sql.
//! Each operation has its own typed request; the signed objects in it arrive as their JSON
//! and are read with ruma's types (`DeviceKeys`, `CrossSigningKey`, `OneTimeKeyId`);
//! signatures by cross-signing keys are verified (`signing`) before they are stored.

pub mod changes;
mod cross_signing;
mod query;
mod signatures;
mod signing;
mod store;
mod upload;

use serde_json::Value;
use trellis_core::{Error, Result};
use trellis_proto::keys::*;

use crate::service::Auth;

/// A key object as the client sent it (`what` names it in the error): not JSON is `M_BAD_JSON`.
fn key_json(json: &str, what: &str) -> Result<Value> {
    serde_json::from_str(json).map_err(|e| Error::bad_json(format!("Invalid {what}: {e}")))
}

/// A user ID named in a request: one that does not parse is `M_BAD_JSON`, as it would be in
/// the body ruma parsed.
fn user_id(id: &str) -> Result<ruma::OwnedUserId> {
    ruma::OwnedUserId::try_from(id).map_err(|e| Error::bad_json(format!("Invalid user ID {id:?}: {e}")))
}

#[async_trait::async_trait]
impl KeysService for Auth {
    async fn upload_keys(&self, req: UploadKeysRequest) -> Result<UploadKeysResponse> {
        self.do_upload_keys(req).await
    }
    async fn query_keys(&self, req: QueryKeysRequest) -> Result<QueryKeysResponse> {
        self.do_query_keys(req).await
    }
    async fn claim_keys(&self, req: ClaimKeysRequest) -> Result<ClaimKeysResponse> {
        self.do_claim_keys(req).await
    }
    async fn upload_signing_keys(&self, req: UploadSigningKeysRequest) -> Result<UploadSigningKeysResponse> {
        self.do_upload_signing_keys(req).await
    }
    async fn upload_signatures(&self, req: UploadSignaturesRequest) -> Result<UploadSignaturesResponse> {
        self.do_upload_signatures(req).await
    }
    async fn key_changes(&self, req: KeyChangesRequest) -> Result<KeyChangesResponse> {
        self.do_key_changes(req).await
    }
}
