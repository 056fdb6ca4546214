//! The keys service: end-to-end encryption keys and the device-list stream, implemented by
//! [`Auth`] (the auth role serves it). The only writer of the key tables of V7__e2ee.sql.
//! Bodies are read with ruma's types; signatures by cross-signing keys are verified
//! (`signing`) before they are stored.

pub mod changes;
mod cross_signing;
mod query;
mod signatures;
mod signing;
mod store;
mod upload;

use serde_json::{Map, Value};
use trellis_core::{Error, Result};
use trellis_proto::keys::{KeyChangesRequest, KeyChangesResponse, KeysRequest, KeysResponse, KeysService};

use crate::service::Auth;

/// A request body that must be a JSON object.
fn object(json: &str) -> Result<Map<String, Value>> {
    match serde_json::from_str(json) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Error::bad_json("The request body must be a JSON object")),
        Err(_) => Err(Error::new(trellis_core::ErrorCode::NotJson, "Content not JSON.")),
    }
}

#[async_trait::async_trait]
impl KeysService for Auth {
    async fn upload_keys(&self, req: KeysRequest) -> Result<KeysResponse> {
        self.do_upload_keys(req).await
    }
    async fn query_keys(&self, req: KeysRequest) -> Result<KeysResponse> {
        self.do_query_keys(req).await
    }
    async fn claim_keys(&self, req: KeysRequest) -> Result<KeysResponse> {
        self.do_claim_keys(req).await
    }
    async fn upload_signing_keys(&self, req: KeysRequest) -> Result<KeysResponse> {
        self.do_upload_signing_keys(req).await
    }
    async fn upload_signatures(&self, req: KeysRequest) -> Result<KeysResponse> {
        self.do_upload_signatures(req).await
    }
    async fn key_changes(&self, req: KeyChangesRequest) -> Result<KeyChangesResponse> {
        self.do_key_changes(req).await
    }
}
