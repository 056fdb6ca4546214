//! `POST /keys/upload`: a device's identity keys, one-time keys and fallback keys.
//!
//! Spec: client-server API, "End-to-end encryption", `/keys/upload`; fallback keys are
//! MSC2732 (also accepted under the unstable `org.matrix.msc2732.fallback_keys`).

use ruma::encryption::DeviceKeys;
use serde_json::{Map, Value, json};
use tracing::instrument;
use trellis_core::{Error, Result};
use trellis_proto::keys::{KeysRequest, KeysResponse};

use super::{changes, object, store};
use crate::service::Auth;

/// Splits `algorithm:key_id`.
pub(crate) fn split_key_id(id: &str) -> Result<(&str, &str)> {
    match id.split_once(':') {
        Some((alg, key)) if !alg.is_empty() && !key.is_empty() => Ok((alg, key)),
        _ => Err(Error::invalid_param(format!("Invalid key ID {id:?}: expected <algorithm>:<key_id>"))),
    }
}

impl Auth {
    #[instrument(skip_all, fields(user_id = %req.user_id, device_id = %req.device_id))]
    pub(crate) async fn do_upload_keys(&self, req: KeysRequest) -> Result<KeysResponse> {
        let body = object(&req.body_json)?;
        let (user, device) = (req.user_id.as_str(), req.device_id.as_str());
        let device_keys = match body.get("device_keys") {
            None | Some(Value::Null) => None,
            Some(Value::Object(keys)) => {
                // The spec's DeviceKeys: user_id, device_id, algorithms, keys and signatures
                // are all required. The object is stored as sent (signatures cover it).
                let parsed: DeviceKeys = serde_json::from_value(Value::Object(keys.clone()))
                    .map_err(|e| Error::bad_json(format!("Invalid device_keys: {e}")))?;
                if parsed.user_id != user || parsed.device_id != device {
                    return Err(Error::invalid_param(
                        "device_keys.user_id and device_id must match the user and device of the access token",
                    ));
                }
                Some(Value::Object(keys.clone()).to_string())
            }
            Some(_) => return Err(Error::bad_json("device_keys must be an object")),
        };
        let one_time = key_map(&body, &["one_time_keys"])?;
        let fallback = key_map(&body, &["fallback_keys", "org.matrix.msc2732.fallback_keys"])?;

        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let mut change = None;
        if let Some(json) = &device_keys
            && store::device_keys(&tx, user, device).await?.as_deref() != Some(json.as_str())
        {
            store::set_device_keys(&tx, user, device, json).await?;
            change = Some(changes::record(&tx, user).await?);
        }
        for (id, key) in &one_time {
            let (alg, key_id) = split_key_id(id)?;
            let json = key.to_string();
            match store::one_time_key(&tx, user, device, alg, key_id).await? {
                Some(old) if old == json => {}
                // Synapse refuses to change a key that may already have been handed out.
                Some(_) => return Err(Error::invalid_param(format!("One time key {id} already exists"))),
                None => store::insert_one_time_key(&tx, user, device, alg, key_id, &json).await?,
            }
        }
        for (id, key) in &fallback {
            let (alg, key_id) = split_key_id(id)?;
            let json = key.to_string();
            let same =
                store::fallback_key(&tx, user, device, alg).await?.is_some_and(|(k, j)| k == key_id && j == json);
            if !same {
                store::set_fallback_key(&tx, user, device, alg, key_id, &json).await?;
            }
        }
        let counts = trellis_storage::key_counts::one_time_keys(&tx, user, device).await?;
        tx.commit().await?;
        if let Some(pos) = change {
            self.announce_device_list(user, pos).await;
        }
        Ok(KeysResponse { body_json: json!({ "one_time_key_counts": counts_json(counts) }).to_string() })
    }
}

/// `one_time_key_counts` as clients expect it: `signed_curve25519` is always present (as
/// Synapse does: some clients read a missing count as "unsupported").
pub fn counts_json(counts: std::collections::BTreeMap<String, u64>) -> Value {
    let mut out: Map<String, Value> = counts.into_iter().map(|(k, v)| (k, json!(v))).collect();
    out.entry("signed_curve25519").or_insert(json!(0));
    Value::Object(out)
}

/// The first of `names` present in `body`, as `key ID → key` (a key is an object or, for old
/// unsigned curve25519 keys, a string).
fn key_map(body: &Map<String, Value>, names: &[&str]) -> Result<Vec<(String, Value)>> {
    for name in names {
        match body.get(*name) {
            None | Some(Value::Null) => continue,
            Some(Value::Object(map)) => {
                return map
                    .iter()
                    .map(|(id, key)| match key {
                        Value::Object(_) | Value::String(_) => Ok((id.clone(), key.clone())),
                        _ => Err(Error::bad_json(format!("{name}.{id} must be an object"))),
                    })
                    .collect();
            }
            Some(_) => return Err(Error::bad_json(format!("{name} must be an object"))),
        }
    }
    Ok(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids() {
        assert_eq!(split_key_id("signed_curve25519:AAAA").unwrap(), ("signed_curve25519", "AAAA"));
        for bad in ["", "abc", ":x", "x:"] {
            assert!(split_key_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn counts_always_name_signed_curve25519() {
        assert_eq!(counts_json(Default::default()), json!({"signed_curve25519": 0}));
        let counts = [("signed_curve25519".to_owned(), 3)].into_iter().collect();
        assert_eq!(counts_json(counts), json!({"signed_curve25519": 3}));
    }
}
