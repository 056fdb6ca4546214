//! `POST /keys/upload`: a device's identity keys, one-time keys and fallback keys.
//!
//! Spec: client-server API, "End-to-end encryption", `/keys/upload`; fallback keys are
//! MSC2732 (also accepted under the unstable `org.matrix.msc2732.fallback_keys`).
//!
//! The keys are read with ruma's types (`DeviceKeys`, `OneTimeKeyId`). The device's signature
//! of its own keys is not verified here, as Synapse does not: it is the device's claim about
//! itself, which other clients check when they query the keys (SyTest uploads placeholder
//! self-signatures and expects them taken). Signatures by cross-signing keys are verified,
//! in `cross_signing`.

use std::collections::BTreeMap;

use ruma::{OwnedOneTimeKeyId, encryption::DeviceKeys};
use serde_json::Value;
use tracing::instrument;
use trellis_core::{Error, Result};
use trellis_proto::keys::{UploadKeysRequest, UploadKeysResponse};

use super::{changes, key_json, signing::Signed, store};
use crate::service::Auth;

/// One-time or fallback keys: key ID → the key (an object, or for old unsigned curve25519
/// keys a string), kept as sent for the clients that claim it.
type KeyMap = BTreeMap<OwnedOneTimeKeyId, Value>;

/// A key ID split into its algorithm and key name; a name must not be empty.
fn split_key_id(id: &OwnedOneTimeKeyId) -> Result<(String, &str)> {
    match id.key_name().as_str() {
        "" => Err(Error::bad_json(format!("Invalid key ID {id:?}: expected <algorithm>:<key_id>"))),
        name => Ok((id.algorithm().to_string(), name)),
    }
}

/// Reads uploaded one-time or fallback keys (`name` says which): each ID must be
/// `<algorithm>:<key name>` and each key an object or a string (`M_BAD_JSON`, as Synapse).
fn key_map(name: &str, keys: &BTreeMap<String, String>) -> Result<KeyMap> {
    let mut out = KeyMap::new();
    for (id, key) in keys {
        let parsed = OwnedOneTimeKeyId::try_from(id.as_str())
            .map_err(|e| Error::bad_json(format!("Invalid key ID {id:?} in {name}: {e}")))?;
        split_key_id(&parsed)?;
        let key = key_json(key, &format!("{name}.{id}"))?;
        if !key.is_object() && !key.is_string() {
            return Err(Error::bad_json(format!("{name}.{id} must be an object")));
        }
        out.insert(parsed, key);
    }
    Ok(out)
}

impl Auth {
    #[instrument(skip_all, fields(user_id = %req.user_id, device_id = %req.device_id))]
    pub(crate) async fn do_upload_keys(&self, req: UploadKeysRequest) -> Result<UploadKeysResponse> {
        let (user, device) = (req.user_id.as_str(), req.device_id.as_str());
        let device_keys = match req.device_keys.as_deref().map(|keys| key_json(keys, "device_keys")).transpose()? {
            None | Some(Value::Null) => None,
            Some(keys @ Value::Object(_)) => {
                // The spec's DeviceKeys: user_id, device_id, algorithms, keys and signatures
                // are all required. The object is stored as sent (signatures cover it).
                let parsed: DeviceKeys = serde_json::from_value(keys.clone())
                    .map_err(|e| Error::bad_json(format!("Invalid device_keys: {e}")))?;
                if parsed.user_id != user || parsed.device_id != device {
                    return Err(Error::invalid_param(
                        "device_keys.user_id and device_id must match the user and device of the access token",
                    ));
                }
                // Keys others will sign (their self-signing key, `/keys/signatures/upload`) must
                // be canonical JSON: no floats, no integers beyond 2^53.
                Signed::from_client(&keys)?;
                Some(keys.to_string())
            }
            Some(_) => return Err(Error::bad_json("device_keys must be an object")),
        };
        let one_time = key_map("one_time_keys", &req.one_time_keys)?;
        let fallback = key_map("fallback_keys", &req.fallback_keys)?;

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
            match store::one_time_key(&tx, user, device, &alg, key_id).await? {
                Some(old) if old == json => {}
                // Synapse refuses to change a key that may already have been handed out.
                Some(_) => return Err(Error::invalid_param(format!("One time key {id} already exists"))),
                None => store::insert_one_time_key(&tx, user, device, &alg, key_id, &json).await?,
            }
        }
        for (id, key) in &fallback {
            let (alg, key_id) = split_key_id(id)?;
            let json = key.to_string();
            let same =
                store::fallback_key(&tx, user, device, &alg).await?.is_some_and(|(k, j)| k == key_id && j == json);
            if !same {
                store::set_fallback_key(&tx, user, device, &alg, key_id, &json).await?;
            }
        }
        let counts = trellis_storage::key_counts::one_time_keys(&tx, user, device).await?;
        tx.commit().await?;
        if let Some(pos) = change {
            self.announce_device_list(user, pos).await;
        }
        Ok(UploadKeysResponse { one_time_key_counts: with_signed_curve25519(counts) })
    }
}

/// `one_time_key_counts` as clients expect it: `signed_curve25519` is always present (as
/// Synapse does: some clients read a missing count as "unsupported").
fn with_signed_curve25519(mut counts: BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    counts.entry("signed_curve25519".to_owned()).or_insert(0);
    counts
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn key_ids() {
        let id = |s: &str| serde_json::from_value::<OwnedOneTimeKeyId>(json!(s));
        assert_eq!(split_key_id(&id("signed_curve25519:AAAA").unwrap()).unwrap(), ("signed_curve25519".into(), "AAAA"));
        assert!(split_key_id(&id("x:").unwrap()).is_err());
        for bad in ["", "abc", ":x"] {
            assert!(id(bad).is_err(), "{bad}");
        }
        let keys = |pairs: &[(&str, &str)]| {
            let map: BTreeMap<String, String> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
            key_map("one_time_keys", &map)
        };
        for bad in [&[("nocolon", "{}")][..], &[("x:", "{}")], &[("a:b", "[1]")], &[("a:b", "not json")]] {
            let err = keys(bad).unwrap_err();
            assert_eq!(err.code(), trellis_core::ErrorCode::BadJson, "{bad:?}");
        }
        let good = keys(&[("a:b", "{}"), ("c:d", "\"key\"")]).unwrap();
        assert_eq!(good.values().collect::<Vec<_>>(), [&json!({}), &json!("key")]);
    }

    #[test]
    fn counts_always_name_signed_curve25519() {
        let zero: BTreeMap<String, u64> = [("signed_curve25519".to_owned(), 0)].into_iter().collect();
        assert_eq!(with_signed_curve25519(BTreeMap::new()), zero);
        let three: BTreeMap<String, u64> = [("signed_curve25519".to_owned(), 3)].into_iter().collect();
        assert_eq!(with_signed_curve25519(three.clone()), three);
    }
}
