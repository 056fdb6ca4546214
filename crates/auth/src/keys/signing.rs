//! Ed25519 signatures on keys, checked with ruma's `signatures`: what a signer signed (the
//! key's canonical JSON without `signatures` and `unsigned`) and whether a signature of it by
//! a given public key verifies.
//!
//! Spec: appendices, "Signing JSON"; client-server API, "Cross-signing".

use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, SigningKeyAlgorithm,
    serde::{Base64, base64::Standard},
    signatures::{to_canonical_json_string_for_signing, verify_canonical_json_bytes},
};
use trellis_core::{Error, Result};

use super::store::CrossSigningRow;

/// A signed key object (device keys or a cross-signing key) and the text its signatures cover.
pub(crate) struct Signed {
    object: CanonicalJsonObject,
    canonical: String,
}

impl Signed {
    /// A key object a client sent: not canonical JSON (a float, a number out of range) is the
    /// client's mistake.
    pub fn from_client(json: &serde_json::Value) -> Result<Signed> {
        let object = match CanonicalJsonValue::try_from(json.clone()) {
            Ok(CanonicalJsonValue::Object(object)) => object,
            Ok(_) => return Err(Error::bad_json("A signed key must be a JSON object")),
            Err(e) => return Err(Error::bad_json(format!("A signed key must be canonical JSON: {e}"))),
        };
        Signed::new(object).map_err(|e| Error::bad_json(format!("A signed key must be canonical JSON: {e}")))
    }

    /// A key object as stored: one that does not parse is an internal error.
    pub fn from_stored(json: &str) -> Result<Signed> {
        let object: CanonicalJsonObject = serde_json::from_str(json)
            .map_err(|e| Error::internal(format!("stored key is not canonical JSON: {e}")))?;
        Signed::new(object).map_err(|e| Error::internal(format!("stored key is not canonical JSON: {e}")))
    }

    fn new(object: CanonicalJsonObject) -> std::result::Result<Signed, ruma::signatures::JsonError> {
        let canonical = to_canonical_json_string_for_signing(&object)?;
        Ok(Signed { object, canonical })
    }

    /// The text every signature of this object covers.
    pub fn signed_text(&self) -> &str {
        &self.canonical
    }

    /// The signatures of this object by `user`: (key ID, signature). A signature that is not a
    /// string is none.
    pub fn signatures_by(&self, user: &str) -> Vec<(String, String)> {
        let Some(CanonicalJsonValue::Object(all)) = self.object.get("signatures") else { return Vec::new() };
        let Some(CanonicalJsonValue::Object(mine)) = all.get(user) else { return Vec::new() };
        mine.iter()
            .filter_map(|(id, sig)| match sig {
                CanonicalJsonValue::String(sig) => Some((id.clone(), sig.clone())),
                _ => None,
            })
            .collect()
    }

    /// `user`'s signature under `key_id`, if there is one.
    pub fn signature(&self, user: &str, key_id: &str) -> Option<String> {
        self.signatures_by(user).into_iter().find(|(id, _)| id == key_id).map(|(_, sig)| sig)
    }

    /// Whether `signature` (unpadded base64) is `public_key`'s (unpadded base64 ed25519)
    /// signature of this object. A key or signature that is not base64 verifies nothing.
    pub fn verifies(&self, public_key: &str, signature: &str) -> bool {
        let (Ok(public), Ok(sig)) = (Base64::<Standard>::parse(public_key), Base64::<Standard>::parse(signature))
        else {
            return false;
        };
        verify_canonical_json_bytes(
            &SigningKeyAlgorithm::Ed25519,
            public.as_bytes(),
            sig.as_bytes(),
            self.canonical.as_bytes(),
        )
        .is_ok()
    }
}

/// Whether `public_key` is an ed25519 public key: 32 bytes of unpadded base64.
pub(crate) fn is_ed25519_public_key(public_key: &str) -> bool {
    Base64::<Standard, [u8; 32]>::parse(public_key).is_ok()
}

/// The public key of the stored cross-signing key of type `key_type` among `rows`, if there
/// is one. A stored public key that is not an ed25519 key is an internal error (uploads are
/// checked), not the client's.
pub(crate) fn stored_public(rows: &[CrossSigningRow], key_type: &str) -> Result<Option<String>> {
    match rows.iter().find(|k| k.key_type == key_type) {
        Some(row) if is_ed25519_public_key(&row.public_key) => Ok(Some(row.public_key.clone())),
        Some(row) => Err(Error::internal(format!("stored {key_type} key {:?} is not an ed25519 key", row.public_key))),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use ruma::signatures::{Ed25519KeyPair, sign_json};
    use serde_json::json;

    use super::*;

    /// A key pair from a fixed seed (PKCS#8 v1: the RFC 8410 prefix, then the seed).
    fn pair(seed: u8) -> (Ed25519KeyPair, String) {
        let mut der =
            vec![0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
        der.extend([seed; 32]);
        let pair = Ed25519KeyPair::from_der(&der, "K".into()).unwrap();
        let public = Base64::<Standard>::new(pair.public_key().to_vec()).encode();
        (pair, public)
    }

    #[test]
    fn a_signature_verifies_against_its_key_and_its_object_only() {
        let (key, public) = pair(1);
        let (_, other) = pair(2);
        let mut object: CanonicalJsonObject =
            serde_json::from_value(json!({"user_id": "@a:hs", "keys": {"ed25519:K": "x"}, "unsigned": {"n": 1}}))
                .unwrap();
        sign_json("@a:hs", &key, &mut object).unwrap();
        let signed = Signed::from_client(&serde_json::to_value(&object).unwrap()).unwrap();
        let sig = signed.signature("@a:hs", "ed25519:K").unwrap();
        assert!(signed.verifies(&public, &sig));
        assert!(!signed.verifies(&other, &sig), "another key");
        assert!(!signed.verifies(&public, "bm90IGEgc2lnbmF0dXJl"), "another signature");
        assert!(!signed.verifies("not base64!", &sig));
        // `unsigned` and `signatures` are not signed; everything else is.
        let mut moved = serde_json::to_value(&object).unwrap();
        moved["unsigned"] = json!({"n": 2});
        assert!(Signed::from_client(&moved).unwrap().verifies(&public, &sig));
        moved["user_id"] = json!("@b:hs");
        assert!(!Signed::from_client(&moved).unwrap().verifies(&public, &sig));
    }

    #[test]
    fn what_is_not_canonical_json_is_the_clients_or_the_stores_fault() {
        let err = Signed::from_client(&json!({"n": 1.5})).err().unwrap();
        assert_eq!(err.code(), trellis_core::ErrorCode::BadJson);
        assert!(Signed::from_client(&json!([1])).is_err());
        assert!(Signed::from_stored("{\"n\": 1.5}").err().unwrap().is_internal());
        assert!(is_ed25519_public_key(&pair(3).1));
        assert!(!is_ed25519_public_key("MASTER"));
    }

    #[test]
    fn a_stored_key_that_is_not_one_is_an_internal_error() {
        let row = |key_type: &str, public: &str| CrossSigningRow {
            key_type: key_type.into(),
            public_key: public.into(),
            key_json: "{}".into(),
        };
        let master = pair(4).1;
        let rows = [row("master", &master), row("self_signing", "SSK")];
        assert_eq!(stored_public(&rows, "master").unwrap(), Some(master));
        assert!(stored_public(&rows, "self_signing").unwrap_err().is_internal());
        assert_eq!(stored_public(&rows, "user_signing").unwrap(), None);
    }
}
