//! Real ed25519 keys for tests that upload end-to-end encryption keys: a key derived from a
//! seed (so a test can name the same key twice) signs JSON as Matrix clients do, with ruma's
//! `sign_json` (canonical JSON without `signatures` and `unsigned`).
//!
//! It depends only on ruma, serde_json and sha2, so the keys service's contract tests include
//! this file too (`#[path]`) rather than depending on the whole test harness.

use ruma::{
    CanonicalJsonObject,
    serde::{Base64, base64::Standard},
    signatures::{Ed25519KeyPair, sign_json},
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// An ed25519 key pair and the name its signatures carry (`ed25519:<name>`).
pub struct SigningKey {
    pair: Ed25519KeyPair,
    public: String,
}

impl SigningKey {
    /// The key derived from `seed`, named by its public key (as cross-signing keys are).
    pub fn from_seed(seed: &str) -> SigningKey {
        let public = Self::pair(seed, String::new()).1;
        let (pair, public) = Self::pair(seed, public.clone());
        SigningKey { pair, public }
    }

    /// The key derived from `seed`, named `name` (a device's key is named by the device ID).
    pub fn named(seed: &str, name: &str) -> SigningKey {
        let (pair, public) = Self::pair(seed, name.to_owned());
        SigningKey { pair, public }
    }

    fn pair(seed: &str, name: String) -> (Ed25519KeyPair, String) {
        // PKCS#8 v1 of an ed25519 private key: the RFC 8410 prefix, then the 32-byte seed.
        let mut der =
            vec![0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
        der.extend_from_slice(&Sha256::digest(seed.as_bytes()));
        let pair = Ed25519KeyPair::from_der(&der, name).expect("an ed25519 key");
        let public = Base64::<Standard>::new(pair.public_key().to_vec()).encode();
        (pair, public)
    }

    /// The public key, unpadded base64.
    pub fn public(&self) -> &str {
        &self.public
    }

    /// The ID of its signatures: `ed25519:<name>`.
    pub fn key_id(&self) -> String {
        format!("ed25519:{}", self.pair.version())
    }

    /// Adds `user`'s signature by this key to `object`.
    pub fn sign(&self, user: &str, object: &mut Value) {
        let mut canonical: CanonicalJsonObject = serde_json::from_value(object.clone()).expect("canonical JSON");
        sign_json(user, &self.pair, &mut canonical).expect("signed");
        *object = serde_json::to_value(canonical).expect("JSON");
    }

    /// `user`'s cross-signing key with this public key, for `usage` (`master`,
    /// `self_signing`, `user_signing`), unsigned.
    pub fn cross_signing_key(&self, user: &str, usage: &str) -> Value {
        json!({"user_id": user, "usage": [usage], "keys": {format!("ed25519:{}", self.public): self.public}})
    }

    /// `user`'s `key` signed by this key: a copy with the signature added.
    pub fn signed(&self, user: &str, key: &Value) -> Value {
        let mut key = key.clone();
        self.sign(user, &mut key);
        key
    }

    /// `user`'s signature of `object` by this key: the one [`SigningKey::signed`] adds.
    pub fn signature(&self, user: &str, object: &Value) -> Value {
        self.signed(user, object)["signatures"][user][self.key_id()].clone()
    }
}

/// `object` with `user`'s signature `sig` under `key_id` added (for a forged or misplaced
/// signature: one made by another key, or of another object).
pub fn with_signature(object: &Value, user: &str, key_id: &str, sig: Value) -> Value {
    let mut object = object.clone();
    object["signatures"][user][key_id] = sig;
    object
}

/// A device's keys as `/keys/upload` takes them, signed by the device's own ed25519 key
/// (derived from the user and device IDs, so every call gives the same keys).
pub fn device_keys(user: &str, device: &str) -> Value {
    let key = device_key(user, device);
    let curve = Base64::<Standard>::new(Sha256::digest(format!("curve25519 {user} {device}")).to_vec()).encode();
    key.signed(
        user,
        &json!({
            "user_id": user,
            "device_id": device,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {format!("curve25519:{device}"): curve, format!("ed25519:{device}"): key.public()},
        }),
    )
}

/// The ed25519 key of a device whose keys are [`device_keys`].
pub fn device_key(user: &str, device: &str) -> SigningKey {
    SigningKey::named(&format!("device {user} {device}"), device)
}
