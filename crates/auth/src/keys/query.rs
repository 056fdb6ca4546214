//! `POST /keys/query` (device and cross-signing keys, with uploaded signatures merged in)
//! and `POST /keys/claim` (one one-time key per device, else its fallback key).

use ruma::{OneTimeKeyAlgorithm, UserId};
use serde_json::{Map, Value, json};
use tracing::instrument;
use trellis_core::{Error, Result};
use trellis_proto::keys::{
    ClaimKeysRequest, ClaimKeysResponse, ClaimedByDevice, ClaimedKey, DeviceKeysByDevice, QueryKeysRequest,
    QueryKeysResponse,
};

use super::{store, user_id};
use crate::service::Auth;

/// Adds uploaded signatures of a key to its `signatures` object.
pub(crate) fn merge_signatures(key: &mut Value, sigs: Vec<(String, String, String)>) {
    let Value::Object(obj) = key else { return };
    for (user, key_id, sig) in sigs {
        let all = obj.entry("signatures").or_insert_with(|| json!({}));
        if !all.is_object() {
            *all = json!({});
        }
        let by_user = all.as_object_mut().expect("object").entry(user).or_insert_with(|| json!({}));
        if let Value::Object(m) = by_user {
            m.insert(key_id, Value::String(sig));
        }
    }
}

fn parse(json: &str) -> Result<Value> {
    serde_json::from_str(json).map_err(|e| Error::internal(format!("stored key is not JSON: {e}")))
}

impl Auth {
    /// Whether `user` is a user ID of this server. The server name may carry a port
    /// (`hs.example:8448`), so it is ruma's parse of the ID that says where the server name
    /// starts, not the last `:`.
    fn is_local(&self, user: &UserId) -> bool {
        user.server_name().as_str() == self.config.server_name
    }

    #[instrument(skip_all, fields(user_id = %req.user_id))]
    pub(crate) async fn do_query_keys(&self, req: QueryKeysRequest) -> Result<QueryKeysResponse> {
        let client = self.pool.get().await?;
        let mut out = QueryKeysResponse::default();
        for (user, wanted) in &req.device_keys {
            let wanted = &wanted.device_ids;
            if !self.is_local(&user_id(user)?) {
                // Federation is not supported: remote users are simply absent.
                continue;
            }
            let user = user.as_str();
            let mut found = DeviceKeysByDevice::default();
            for row in store::user_device_keys(&client, user).await? {
                if !wanted.is_empty() && !wanted.contains(&row.device_id) {
                    continue;
                }
                let mut keys = parse(&row.key_json)?;
                // A device is signed by its owner's self-signing key; others' signatures of
                // it are nobody's business (as Synapse).
                let sigs = store::signatures(&client, user, &row.device_id).await?;
                merge_signatures(&mut keys, sigs.into_iter().filter(|s| s.0 == *user).collect());
                if let Value::Object(obj) = &mut keys {
                    let mut unsigned = Map::new();
                    if let Some(name) = row.display_name {
                        unsigned.insert("device_display_name".into(), Value::String(name));
                    }
                    obj.insert("unsigned".into(), Value::Object(unsigned));
                }
                found.devices.insert(row.device_id, keys.to_string());
            }
            out.device_keys.insert(user.to_owned(), found);
            for row in store::cross_signing_keys(&client, user).await? {
                let mut key = parse(&row.key_json)?;
                // Another user's signature of this key (made with their user-signing key)
                // is shown to that user only.
                let sigs = store::signatures(&client, user, &row.public_key).await?;
                let visible = sigs.into_iter().filter(|s| s.0 == *user || s.0 == req.user_id).collect();
                merge_signatures(&mut key, visible);
                let kind = match row.key_type.as_str() {
                    "master" => &mut out.master_keys,
                    "self_signing" => &mut out.self_signing_keys,
                    "user_signing" if user == req.user_id => &mut out.user_signing_keys,
                    _ => continue,
                };
                kind.insert(user.to_owned(), key.to_string());
            }
        }
        Ok(out)
    }

    #[instrument(skip_all, fields(user_id = %req.user_id))]
    pub(crate) async fn do_claim_keys(&self, req: ClaimKeysRequest) -> Result<ClaimKeysResponse> {
        let client = self.pool.get().await?;
        let mut out = ClaimKeysResponse::default();
        for (user, devices) in &req.one_time_keys {
            if !self.is_local(&user_id(user)?) {
                continue;
            }
            let user = user.as_str();
            let mut claimed = ClaimedByDevice::default();
            for (device, alg) in &devices.devices {
                let alg = OneTimeKeyAlgorithm::from(alg.as_str());
                let (device, alg) = (device.as_str(), alg.as_str());
                let key = match store::claim_one_time_key(&client, user, device, alg).await? {
                    Some(k) => Some(k),
                    None => store::claim_fallback_key(&client, user, device, alg).await?,
                };
                if let Some((key_id, json)) = key {
                    let key = ClaimedKey { key_id: format!("{alg}:{key_id}"), key: parse(&json)?.to_string() };
                    claimed.devices.insert(device.to_owned(), key);
                }
            }
            if !claimed.devices.is_empty() {
                out.one_time_keys.insert(user.to_owned(), claimed);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_merge_into_existing_ones() {
        let mut key = json!({"keys": {}, "signatures": {"@a:hs": {"ed25519:DEV": "s1"}}});
        merge_signatures(&mut key, vec![("@a:hs".into(), "ed25519:SSK".into(), "s2".into())]);
        merge_signatures(&mut key, vec![("@b:hs".into(), "ed25519:USK".into(), "s3".into())]);
        assert_eq!(
            key["signatures"],
            json!({"@a:hs": {"ed25519:DEV": "s1", "ed25519:SSK": "s2"}, "@b:hs": {"ed25519:USK": "s3"}})
        );
        let mut bare = json!({"keys": {}});
        merge_signatures(&mut bare, vec![("@a:hs".into(), "ed25519:X".into(), "s".into())]);
        assert_eq!(bare["signatures"]["@a:hs"]["ed25519:X"], "s");
    }
}
