//! `POST /keys/query` (device and cross-signing keys, with uploaded signatures merged in)
//! and `POST /keys/claim` (one one-time key per device, else its fallback key).

use std::collections::BTreeMap;

use ruma::{OneTimeKeyAlgorithm, OwnedDeviceId, OwnedUserId, UserId};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tracing::instrument;
use trellis_core::{Error, Result};
use trellis_proto::keys::{KeysRequest, KeysResponse};

use super::{object, store};
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

/// The body of `/keys/query`: user → the devices asked for (none or `null`: all of them).
#[derive(Deserialize)]
struct QueryBody {
    device_keys: BTreeMap<OwnedUserId, Option<Vec<OwnedDeviceId>>>,
}

/// The body of `/keys/claim`: user → device → the algorithm of the key to claim.
#[derive(Deserialize)]
struct ClaimBody {
    one_time_keys: BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, OneTimeKeyAlgorithm>>,
}

/// Reads a request body as `T`: what does not fit is `M_BAD_JSON`.
fn body<T: serde::de::DeserializeOwned>(json: &str, what: &str) -> Result<T> {
    serde_json::from_value(Value::Object(object(json)?)).map_err(|e| Error::bad_json(format!("Invalid {what}: {e}")))
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
    pub(crate) async fn do_query_keys(&self, req: KeysRequest) -> Result<KeysResponse> {
        let asked = body::<QueryBody>(&req.body_json, "keys query")?.device_keys;
        let client = self.pool.get().await?;
        let (mut devices, mut masters, mut selfs, mut users) = (Map::new(), Map::new(), Map::new(), Map::new());
        for (user, wanted) in &asked {
            let wanted = wanted.as_deref().unwrap_or_default();
            if !self.is_local(user) {
                // Federation is not supported: remote users are simply absent.
                continue;
            }
            let user = user.as_str();
            let mut found = Map::new();
            for row in store::user_device_keys(&client, user).await? {
                if !wanted.is_empty() && !wanted.iter().any(|d| d.as_str() == row.device_id) {
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
                found.insert(row.device_id, keys);
            }
            devices.insert(user.to_owned(), Value::Object(found));
            for row in store::cross_signing_keys(&client, user).await? {
                let mut key = parse(&row.key_json)?;
                // Another user's signature of this key (made with their user-signing key)
                // is shown to that user only.
                let sigs = store::signatures(&client, user, &row.public_key).await?;
                let visible = sigs.into_iter().filter(|s| s.0 == *user || s.0 == req.user_id).collect();
                merge_signatures(&mut key, visible);
                match row.key_type.as_str() {
                    "master" => masters.insert(user.to_owned(), key),
                    "self_signing" => selfs.insert(user.to_owned(), key),
                    "user_signing" if user == req.user_id => users.insert(user.to_owned(), key),
                    _ => None,
                };
            }
        }
        let out = json!({
            "device_keys": devices,
            "master_keys": masters,
            "self_signing_keys": selfs,
            "user_signing_keys": users,
            "failures": {},
        });
        Ok(KeysResponse { body_json: out.to_string() })
    }

    #[instrument(skip_all, fields(user_id = %req.user_id))]
    pub(crate) async fn do_claim_keys(&self, req: KeysRequest) -> Result<KeysResponse> {
        let asked = body::<ClaimBody>(&req.body_json, "keys claim")?.one_time_keys;
        let client = self.pool.get().await?;
        let mut out = Map::new();
        for (user, devices) in &asked {
            if !self.is_local(user) {
                continue;
            }
            let user = user.as_str();
            let mut claimed = Map::new();
            for (device, alg) in devices {
                let (device, alg) = (device.as_str(), alg.as_str());
                let key = match store::claim_one_time_key(&client, user, device, alg).await? {
                    Some(k) => Some(k),
                    None => store::claim_fallback_key(&client, user, device, alg).await?,
                };
                if let Some((key_id, json)) = key {
                    claimed.insert(device.to_owned(), json!({ format!("{alg}:{key_id}"): parse(&json)? }));
                }
            }
            if !claimed.is_empty() {
                out.insert(user.to_owned(), Value::Object(claimed));
            }
        }
        Ok(KeysResponse { body_json: json!({ "one_time_keys": out, "failures": {} }).to_string() })
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
