//! Cross-signing keys: `POST /keys/device_signing/upload` (master, self-signing and
//! user-signing keys; replacing existing ones needs user-interactive auth).
//!
//! Each key is read as ruma's `CrossSigningKey` and must be the uploader's, name its usage and
//! hold exactly one ed25519 public key. The self-signing and user-signing keys must carry a
//! valid signature by the master key (the one uploaded with them, else the stored one),
//! refused with `M_INVALID_SIGNATURE` otherwise; without any master key, `M_MISSING_PARAM`
//! (spec: client-server API, `/keys/device_signing/upload`). The master key's own signatures
//! (by the uploading device) are kept as sent and not checked, as Synapse does.

use ruma::encryption::{CrossSigningKey, KeyUsage};
use serde_json::Value;
use tracing::{info, instrument};
use trellis_core::{Error, ErrorCode, Result};
use trellis_proto::keys::{UploadSigningKeysRequest, UploadSigningKeysResponse};

use super::{
    changes, key_json,
    signing::{Signed, is_ed25519_public_key, stored_public},
    store,
};
use crate::service::Auth;

/// An uploaded cross-signing key, checked.
struct Upload {
    /// The stored key type: `master`, `self_signing` or `user_signing`.
    usage: &'static str,
    public: String,
    json: String,
    signed: Signed,
}

/// Checks a cross-signing key's shape; returns it ready to store.
fn check_key(key: &Value, user: &str, usage: &'static str) -> Result<Upload> {
    let bad = |what: &str| Error::invalid_param(format!("Invalid {usage} key: {what}"));
    let parsed: CrossSigningKey =
        serde_json::from_value(key.clone()).map_err(|e| Error::bad_json(format!("Invalid {usage} key: {e}")))?;
    if parsed.user_id != user {
        return Err(bad("user_id must be the uploader"));
    }
    if !parsed.usage.contains(&KeyUsage::from(usage)) {
        return Err(bad("usage does not name it"));
    }
    let mut keys = parsed.keys.iter();
    let public = match (keys.next(), keys.next()) {
        (Some((id, public)), None)
            if id.algorithm() == ruma::SigningKeyAlgorithm::Ed25519
                && id.key_name().as_str() == public
                && is_ed25519_public_key(public) =>
        {
            public.clone()
        }
        _ => return Err(bad("keys must hold exactly one ed25519 public key, named by itself")),
    };
    Ok(Upload { usage, public, json: key.to_string(), signed: Signed::from_client(key)? })
}

/// Checks that `key` is signed by the master key `master` (public, unpadded base64).
fn check_signed_by_master(key: &Upload, user: &str, master: &str) -> Result<()> {
    let verified =
        key.signed.signature(user, &format!("ed25519:{master}")).is_some_and(|sig| key.signed.verifies(master, &sig));
    match verified {
        true => Ok(()),
        false => Err(Error::new(ErrorCode::InvalidSignature, format!("Invalid signature on {} key", key.usage))),
    }
}

impl Auth {
    #[instrument(skip_all, fields(user_id = %req.user_id))]
    pub(crate) async fn do_upload_signing_keys(
        &self,
        req: UploadSigningKeysRequest,
    ) -> Result<UploadSigningKeysResponse> {
        let user = req.user_id.as_str();
        let mut uploads = Vec::new();
        for (key, usage) in [
            (&req.master_key, "master"),
            (&req.self_signing_key, "self_signing"),
            (&req.user_signing_key, "user_signing"),
        ] {
            // A `null` key is an absent one.
            let key = key.as_deref().map(|json| key_json(json, &format!("{usage} key"))).transpose()?;
            if let Some(key) = key.filter(|v| !v.is_null()) {
                uploads.push(check_key(&key, user, usage)?);
            }
        }
        let existing = {
            let client = self.pool.get().await?;
            store::cross_signing_keys(&client, user).await?
        };
        if uploads.is_empty() {
            return Ok(UploadSigningKeysResponse {});
        }
        // The master key that signs the others: the one uploaded now, else the stored one.
        let master = match uploads.iter().find(|k| k.usage == "master") {
            Some(new) => new.public.clone(),
            None => match stored_public(&existing, "master")? {
                Some(stored) => stored,
                None => return Err(Error::missing_param("No master key available: upload one first")),
            },
        };
        for key in uploads.iter().filter(|k| k.usage != "master") {
            check_signed_by_master(key, user, &master)?;
        }
        // Replacing keys is what an attacker with a stolen token would do: it needs UIA, the
        // first upload does not (MSC3967, as Synapse).
        let replaces = uploads.iter().any(|u| existing.iter().any(|k| k.key_type == u.usage && k.key_json != u.json));
        if replaces {
            self.require_uia(user, "device_signing_upload", None, &req.auth_json).await?;
        }
        let fresh: Vec<_> = uploads
            .into_iter()
            .filter(|u| !existing.iter().any(|k| k.key_type == u.usage && k.key_json == u.json))
            .collect();
        if fresh.is_empty() {
            return Ok(UploadSigningKeysResponse {});
        }
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        for key in &fresh {
            store::set_cross_signing_key(&tx, user, key.usage, &key.public, &key.json).await?;
        }
        // A user-signing key is private to its owner: a new one alone is nobody else's news.
        let public = fresh.iter().any(|k| k.usage != "user_signing");
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
        Ok(UploadSigningKeysResponse {})
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// 32 bytes of unpadded base64, as an ed25519 public key is.
    const PUB: &str = "nqOvzeuGWT/sRx3h7+MHoInYj3Uk2LD/unI9kDYcHwk";
    const OTHER: &str = "EmkqvokUn8p+vQAGZitOk4PWjp7Ukp3txV2TbMPEiBQ";

    #[test]
    fn cross_signing_key_shape() {
        let key = json!({"user_id": "@a:hs", "usage": ["master"], "keys": {format!("ed25519:{PUB}"): PUB}});
        assert_eq!(check_key(&key, "@a:hs", "master").unwrap().public, PUB);
        let code = |key: &Value, user: &str, usage: &'static str| check_key(key, user, usage).err().unwrap().code();
        assert_eq!(code(&key, "@b:hs", "master"), ErrorCode::InvalidParam);
        assert_eq!(code(&key, "@a:hs", "self_signing"), ErrorCode::InvalidParam);
        let two = json!({"user_id": "@a:hs", "usage": ["master"],
                         "keys": {format!("ed25519:{PUB}"): PUB, format!("ed25519:{OTHER}"): OTHER}});
        assert_eq!(code(&two, "@a:hs", "master"), ErrorCode::InvalidParam);
        let misnamed = json!({"user_id": "@a:hs", "usage": ["master"], "keys": {format!("ed25519:{PUB}"): OTHER}});
        assert_eq!(code(&misnamed, "@a:hs", "master"), ErrorCode::InvalidParam);
        let not_a_key = json!({"user_id": "@a:hs", "usage": ["master"], "keys": {"ed25519:MASTER": "MASTER"}});
        assert_eq!(code(&not_a_key, "@a:hs", "master"), ErrorCode::InvalidParam);
        let no_usage = json!({"user_id": "@a:hs", "keys": {format!("ed25519:{PUB}"): PUB}});
        assert_eq!(code(&no_usage, "@a:hs", "master"), ErrorCode::BadJson);
    }

    #[test]
    fn an_unsigned_or_badly_signed_key_is_refused() {
        let key = json!({"user_id": "@a:hs", "usage": ["self_signing"], "keys": {format!("ed25519:{OTHER}"): OTHER},
                         "signatures": {"@a:hs": {format!("ed25519:{PUB}"): "bm90IGEgc2lnbmF0dXJl"}}});
        let upload = check_key(&key, "@a:hs", "self_signing").unwrap();
        let err = check_signed_by_master(&upload, "@a:hs", PUB).unwrap_err();
        assert_eq!((err.code(), err.status()), (ErrorCode::InvalidSignature, 400));
        // Signed by somebody, but not by this master key.
        assert!(check_signed_by_master(&upload, "@a:hs", OTHER).is_err());
    }
}
