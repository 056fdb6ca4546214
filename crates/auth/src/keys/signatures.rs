//! `POST /keys/signatures/upload`: a device signing its user's master key, the self-signing
//! key signing the user's devices, the user-signing key signing other users' master keys.
//!
//! Every new signature is verified (ed25519, ruma's `signatures`) against the key allowed to
//! make it, over the key as stored; the key sent must be the stored one (signatures and
//! `unsigned` aside). A key whose signature fails is reported in `failures` with
//! `M_INVALID_SIGNATURE`, an unknown key (or a missing signing key) with `M_NOT_FOUND`, and
//! the others are stored (spec: client-server API, `/keys/signatures/upload`; as Synapse).

use std::collections::HashMap;

use serde_json::Value;
use tracing::instrument;
use trellis_core::{Error, ErrorCode, Result};
use trellis_proto::keys::{KeyFailure, UploadSignaturesRequest, UploadSignaturesResponse};

use super::{
    changes, key_json,
    signing::{Signed, stored_public},
    store, user_id,
};
use crate::service::Auth;

/// Which key of the uploader may sign a target key.
enum Signer {
    /// A cross-signing key of the uploader: its public key.
    Key(String),
    /// One of the uploader's devices (signing the uploader's master key).
    Device,
}

/// One signature to store: target user, target key ID, signing key ID, signature.
type Accepted = (String, String, String, String);

/// The ed25519 public key of the uploader's device named by a signing key ID
/// (`ed25519:<device ID>`), among the uploader's device keys, if that device has one.
fn device_signing_key(my_devices: &HashMap<String, String>, key_id: &str) -> Result<Option<String>> {
    let Some(keys) = key_id.strip_prefix("ed25519:").and_then(|device| my_devices.get(device)) else {
        return Ok(None);
    };
    let keys: Value =
        serde_json::from_str(keys).map_err(|e| Error::internal(format!("stored device keys are not JSON: {e}")))?;
    Ok(keys["keys"][key_id].as_str().map(str::to_owned))
}

/// A failure entry of the response: the spec's error shape, plus the status (as Synapse).
fn failure(code: ErrorCode, message: &str) -> KeyFailure {
    KeyFailure { errcode: code.as_str().to_owned(), error: message.to_owned(), status: code.default_status().into() }
}

impl Auth {
    #[instrument(skip_all, fields(user_id = %req.user_id))]
    pub(crate) async fn do_upload_signatures(&self, req: UploadSignaturesRequest) -> Result<UploadSignaturesResponse> {
        // Target user → key ID (a device ID or a master public key) → the signed key.
        let body = &req.signed_keys;
        for target in body.keys() {
            user_id(target)?;
        }
        let me = req.user_id.as_str();
        let mut client = self.pool.get().await?;
        let mine = store::cross_signing_keys(&client, me).await?;
        let my_master = stored_public(&mine, "master")?;
        // The uploader's device keys, read once: a device may be both a key signed here (by
        // the self-signing key) and the signer of the master key.
        let my_devices: HashMap<String, String> = match body.contains_key(me) {
            true => {
                store::user_device_keys(&client, me).await?.into_iter().map(|d| (d.device_id, d.key_json)).collect()
            }
            false => HashMap::new(),
        };
        let mut out = UploadSignaturesResponse::default();
        let mut accepted: Vec<Accepted> = Vec::new();
        for (target_user, keys) in body {
            let target_user = target_user.as_str();
            let theirs = match target_user == me {
                true => None,
                false => Some(store::cross_signing_keys(&client, target_user).await?),
            };
            for (key_id, sent) in &keys.keys {
                let sent = Signed::from_client(&key_json(sent, "signed key")?)?;
                // What is being signed, and the one key of the uploader allowed to sign it.
                let (stored, signer, missing) = if target_user == me && my_master.as_deref() == Some(key_id) {
                    let stored = mine.iter().find(|k| k.key_type == "master").map(|k| k.key_json.clone());
                    (stored, Some(Signer::Device), "")
                } else if target_user == me {
                    let signer = stored_public(&mine, "self_signing")?.map(Signer::Key);
                    (my_devices.get(key_id).cloned(), signer, "No self-signing key")
                } else {
                    let their_master = theirs.iter().flatten().find(|k| k.key_type == "master");
                    let stored = their_master.filter(|m| m.public_key == *key_id).map(|m| m.key_json.clone());
                    (stored, stored_public(&mine, "user_signing")?.map(Signer::Key), "No user-signing key")
                };
                let mut fail = |code, message: &str| {
                    let of_user = out.failures.entry(target_user.to_owned()).or_default();
                    of_user.keys.insert(key_id.clone(), failure(code, message));
                };
                let Some(stored) = stored else {
                    fail(ErrorCode::NotFound, "Unknown key");
                    continue;
                };
                let Some(signer) = signer else {
                    fail(ErrorCode::NotFound, missing);
                    continue;
                };
                let stored = Signed::from_stored(&stored)?;
                let known = store::signatures(&client, target_user, key_id).await?;
                // The uploader's signatures not stored yet: those already there (in the key
                // as uploaded, or uploaded before) are taken as they are.
                let new: Vec<(String, String)> = sent
                    .signatures_by(me)
                    .into_iter()
                    .filter(|(id, sig)| stored.signature(me, id).as_ref() != Some(sig))
                    .filter(|(id, sig)| !known.iter().any(|(u, k, s)| u == me && k == id && s == sig))
                    .collect();
                if new.is_empty() {
                    continue;
                }
                // Each new signature by a key allowed to sign this one, with that key; others
                // in the object are ignored (as Synapse takes only the signer's).
                let mut candidates = Vec::new();
                for (id, sig) in new {
                    let public = match &signer {
                        Signer::Key(public) => {
                            (id.strip_prefix("ed25519:") == Some(public.as_str())).then(|| public.clone())
                        }
                        Signer::Device => device_signing_key(&my_devices, &id)?,
                    };
                    if let Some(public) = public {
                        candidates.push((id, sig, public));
                    }
                }
                if candidates.is_empty() {
                    fail(ErrorCode::InvalidSignature, "No signature by a key of the uploader that may sign this key");
                    continue;
                }
                if sent.signed_text() != stored.signed_text() {
                    fail(ErrorCode::InvalidParam, "The signed key does not match the stored key");
                    continue;
                }
                if !candidates.iter().all(|(_, sig, public)| stored.verifies(public, sig)) {
                    fail(ErrorCode::InvalidSignature, "Invalid signature");
                    continue;
                }
                for (id, sig, _) in candidates {
                    accepted.push((target_user.to_owned(), key_id.clone(), id, sig));
                }
            }
        }
        if !accepted.is_empty() {
            self.store_signatures(&mut client, me, &accepted).await?;
        }
        Ok(out)
    }

    /// Stores verified signatures and records who hears of them: the uploader's own keys
    /// signed are news to everyone sharing a room; other users' master keys signed by the
    /// user-signing key only to the signer.
    async fn store_signatures(
        &self,
        client: &mut deadpool_postgres::Client,
        me: &str,
        accepted: &[Accepted],
    ) -> Result<()> {
        let tx = client.transaction().await?;
        for (target_user, key_id, signer_key, sig) in accepted {
            store::add_signature(&tx, (target_user, key_id), (me, signer_key), sig).await?;
        }
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
        Ok(())
    }
}
