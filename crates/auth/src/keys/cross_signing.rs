//! Cross-signing: `POST /keys/device_signing/upload` (master, self-signing and user-signing
//! keys; replacing existing ones needs user-interactive auth) and `POST /keys/signatures/upload`
//! (a device signing its master key, the self-signing key signing the user's devices, the
//! user-signing key signing other users' master keys).
//!
//! Signatures are checked for who may sign what (the signing key must be the uploader's), not
//! cryptographically; clients verify signatures themselves.

use serde_json::{Map, Value, json};
use tracing::{info, instrument};
use trellis_core::{Error, ErrorCode, Result};
use trellis_proto::keys::{KeysRequest, KeysResponse};

use super::{changes, object, store};
use crate::service::Auth;

/// The body field, the `usage` it must carry and the stored key type.
const KINDS: [(&str, &str); 3] =
    [("master_key", "master"), ("self_signing_key", "self_signing"), ("user_signing_key", "user_signing")];

/// Checks a cross-signing key's shape; returns its public key.
fn check_key(key: &Value, user: &str, usage: &str) -> Result<String> {
    let bad = |what: &str| Error::invalid_param(format!("Invalid {usage} key: {what}"));
    if key.get("user_id").and_then(Value::as_str) != Some(user) {
        return Err(bad("user_id must be the uploader"));
    }
    let usages = key.get("usage").and_then(Value::as_array).ok_or_else(|| bad("usage is missing"))?;
    if !usages.iter().any(|u| u.as_str() == Some(usage)) {
        return Err(bad("usage does not name it"));
    }
    let keys = key.get("keys").and_then(Value::as_object).ok_or_else(|| bad("keys is missing"))?;
    let mut iter = keys.iter();
    match (iter.next(), iter.next()) {
        (Some((id, Value::String(public))), None) if id.strip_prefix("ed25519:") == Some(public.as_str()) => {
            Ok(public.clone())
        }
        _ => Err(bad("keys must hold exactly one ed25519 key named by its public key")),
    }
}

fn failure(message: &str) -> Value {
    json!({ "status": 400, "errcode": ErrorCode::InvalidSignature.as_str(), "message": message })
}

impl Auth {
    #[instrument(skip_all, fields(user_id = %req.user_id))]
    pub(crate) async fn do_upload_signing_keys(&self, req: KeysRequest) -> Result<KeysResponse> {
        let body = object(&req.body_json)?;
        let user = req.user_id.as_str();
        let mut uploads = Vec::new();
        for (field, usage) in KINDS {
            if let Some(key) = body.get(field).filter(|v| !v.is_null()) {
                uploads.push((usage, check_key(key, user, usage)?, key.to_string()));
            }
        }
        let existing = {
            let client = self.pool.get().await?;
            store::cross_signing_keys(&client, user).await?
        };
        let has_master = existing.iter().any(|k| k.key_type == "master");
        if !has_master && !uploads.iter().any(|(u, _, _)| *u == "master") && !uploads.is_empty() {
            return Err(Error::invalid_param("Must provide a master key first"));
        }
        // Replacing keys is what an attacker with a stolen token would do: it needs UIA, the
        // first upload does not (MSC3967, as Synapse).
        let replaces =
            uploads.iter().any(|(usage, _, json)| existing.iter().any(|k| k.key_type == *usage && k.key_json != *json));
        if replaces {
            let auth = body.get("auth").filter(|v| !v.is_null()).map(Value::to_string).unwrap_or_default();
            self.require_uia(user, "device_signing_upload", None, &auth).await?;
        }
        let fresh: Vec<_> = uploads
            .into_iter()
            .filter(|(usage, _, json)| !existing.iter().any(|k| k.key_type == *usage && k.key_json == *json))
            .collect();
        if fresh.is_empty() {
            return Ok(KeysResponse { body_json: "{}".into() });
        }
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        for (usage, public, json) in &fresh {
            store::set_cross_signing_key(&tx, user, usage, public, json).await?;
        }
        // A user-signing key is private to its owner: a new one alone is nobody else's news.
        let public = fresh.iter().any(|(usage, _, _)| *usage != "user_signing");
        let pos = match public {
            true => changes::record(&tx, user).await?,
            false => changes::record_private(&tx, user, user).await?,
        };
        tx.commit().await?;
        match public {
            true => self.announce_device_list(user, pos).await,
            false => self.announce_private_change(user, pos).await,
        }
        info!(user_id = %user, keys = fresh.len(), "cross-signing keys uploaded");
        Ok(KeysResponse { body_json: "{}".into() })
    }

    #[instrument(skip_all, fields(user_id = %req.user_id))]
    pub(crate) async fn do_upload_signatures(&self, req: KeysRequest) -> Result<KeysResponse> {
        let body = object(&req.body_json)?;
        let me = req.user_id.as_str();
        let mut client = self.pool.get().await?;
        let mine = store::cross_signing_keys(&client, me).await?;
        let my_key = |t: &str| mine.iter().find(|k| k.key_type == t).map(|k| k.public_key.clone());
        let mut failures: Map<String, Value> = Map::new();
        let mut accepted: Vec<(String, String, String, String)> = Vec::new();
        for (target_user, keys) in &body {
            let Value::Object(keys) = keys else { return Err(Error::bad_json("signed keys must be objects")) };
            let theirs = store::cross_signing_keys(&client, target_user).await?;
            let their_master = theirs.iter().find(|k| k.key_type == "master");
            for (key_id, signed) in keys {
                // What is being signed, and the one key of the uploader allowed to sign it.
                let (stored, signer) = if target_user == me && their_master.is_some_and(|m| m.public_key == *key_id) {
                    // The master key, signed by one of the user's devices.
                    (their_master.map(|m| m.key_json.clone()), None)
                } else if target_user == me {
                    (store::device_keys(&client, me, key_id).await?, my_key("self_signing"))
                } else {
                    let master = their_master.filter(|m| m.public_key == *key_id).map(|m| m.key_json.clone());
                    (master, my_key("user_signing"))
                };
                let fail = |msg: &str| (key_id.clone(), failure(msg));
                let Some(stored) = stored else {
                    let (k, v) = fail("Unknown key");
                    failures.entry(target_user.clone()).or_insert_with(|| json!({}))[k] = v;
                    continue;
                };
                let stored: Value = serde_json::from_str(&stored).unwrap_or_default();
                let uploaded = signed["signatures"][me].as_object().cloned().unwrap_or_default();
                let new: Vec<(String, String)> = uploaded
                    .into_iter()
                    .filter(|(id, _)| stored["signatures"][me].get(id).is_none())
                    .filter_map(|(id, sig)| Some((id, sig.as_str()?.to_owned())))
                    .collect();
                let allowed = |id: &str| match &signer {
                    Some(public) => id.strip_prefix("ed25519:") == Some(public.as_str()),
                    // A master key is signed by a device of the user that has keys.
                    None => id.starts_with("ed25519:"),
                };
                // Only the signature by the key allowed to sign this one is taken (as Synapse
                // picks it); others in the object are ignored.
                let mut valid = Vec::new();
                for (id, sig) in new.iter() {
                    let device_ok = signer.is_some()
                        || store::device_keys(&client, me, id.trim_start_matches("ed25519:")).await?.is_some();
                    if allowed(id) && device_ok {
                        valid.push((id.clone(), sig.clone()));
                    }
                }
                if valid.is_empty() && !new.is_empty() {
                    let (k, v) = fail("No signature by a key of the uploader that may sign this key");
                    failures.entry(target_user.clone()).or_insert_with(|| json!({}))[k] = v;
                    continue;
                }
                for (id, sig) in valid {
                    accepted.push((target_user.clone(), key_id.clone(), id, sig));
                }
            }
        }
        if !accepted.is_empty() {
            let tx = client.transaction().await?;
            for (target_user, key_id, signer_key, sig) in &accepted {
                store::add_signature(&tx, (target_user, key_id), (me, signer_key), sig).await?;
            }
            // The user's own keys signed: everyone sharing a room hears of it. Other users'
            // master keys signed by the user-signing key: only the signer sees them change.
            let mut others: Vec<&str> = accepted.iter().map(|a| a.0.as_str()).filter(|t| *t != me).collect();
            others.sort_unstable();
            others.dedup();
            let own = match accepted.iter().any(|a| a.0 == me) {
                true => Some(changes::record(&tx, me).await?),
                false => None,
            };
            let mut private = None;
            for other in others {
                private = Some(changes::record_private(&tx, other, me).await?);
            }
            tx.commit().await?;
            if let Some(pos) = own {
                self.announce_device_list(me, pos).await;
            }
            if let Some(pos) = private {
                self.announce_private_change(me, pos).await;
            }
        }
        Ok(KeysResponse { body_json: json!({ "failures": failures }).to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_signing_key_shape() {
        let key = json!({"user_id": "@a:hs", "usage": ["master"], "keys": {"ed25519:PUB": "PUB"}});
        assert_eq!(check_key(&key, "@a:hs", "master").unwrap(), "PUB");
        assert!(check_key(&key, "@b:hs", "master").is_err());
        assert!(check_key(&key, "@a:hs", "self_signing").is_err());
        let two = json!({"user_id": "@a:hs", "usage": ["master"], "keys": {"ed25519:A": "A", "ed25519:B": "B"}});
        assert!(check_key(&two, "@a:hs", "master").is_err());
        let misnamed = json!({"user_id": "@a:hs", "usage": ["master"], "keys": {"ed25519:A": "B"}});
        assert!(check_key(&misnamed, "@a:hs", "master").is_err());
    }
}
