//! ID-token checks against keys made here (P-256, as a provider's JWKS would publish them).

use aws_lc_rs::{
    rand::SystemRandom,
    signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::{Value, json};
use trellis_core::time::now_ms;

use super::*;

const ISSUER: &str = "https://id.example.org";
const CLIENT: &str = "trellis";
const NONCE: &str = "n-0S6_WzA2Mj";

/// A signing key and its public half as a JWK with `kid`.
struct Key {
    encoding: EncodingKey,
    jwk: Value,
}

fn key(kid: &str) -> Key {
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let point = pair.public_key().as_ref();
    let (x, y) = (&point[1..33], &point[33..65]);
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
        "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
    });
    Key { encoding: EncodingKey::from_ec_der(pkcs8.as_ref()), jwk }
}

fn jwks(keys: &[&Key]) -> JwkSet {
    serde_json::from_value(json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() })).unwrap()
}

fn claims() -> Value {
    let now = now_ms() / 1000;
    json!({"iss": ISSUER, "aud": CLIENT, "sub": "248289761001", "nonce": NONCE, "iat": now, "exp": now + 300,
           "preferred_username": "janedoe"})
}

fn sign(key: &Key, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, &key.encoding).unwrap()
}

fn expected() -> Expected<'static> {
    Expected { issuer: ISSUER, client_id: CLIENT, nonce: NONCE }
}

fn refused(result: Result<Claims, Refusal>) -> String {
    match result {
        Err(Refusal::Invalid(why)) => why,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_good_token_gives_its_claims() {
    let k = key("k1");
    let claims = verify(&sign(&k, Some("k1"), &claims()), &jwks(&[&k]), &expected()).unwrap();
    assert_eq!(claims["sub"], "248289761001");
    assert_eq!(claims["preferred_username"], "janedoe");
    // Without a kid, any key of the set that verifies it will do.
    let other = key("k0");
    assert!(verify(&sign(&k, None, &self::claims()), &jwks(&[&other, &k]), &expected()).is_ok());
    // `aud` may be a list holding our client.
    let mut listed = self::claims();
    listed["aud"] = json!(["someone-else", CLIENT]);
    assert!(verify(&sign(&k, Some("k1"), &listed), &jwks(&[&k]), &expected()).is_ok());
}

#[test]
fn a_token_for_another_client_is_refused() {
    let k = key("k1");
    let mut c = claims();
    c["aud"] = json!("another-client");
    assert!(refused(verify(&sign(&k, Some("k1"), &c), &jwks(&[&k]), &expected())).contains("another client"));
}

#[test]
fn an_expired_token_is_refused() {
    let k = key("k1");
    let mut c = claims();
    c["exp"] = json!(now_ms() / 1000 - 3600);
    assert!(refused(verify(&sign(&k, Some("k1"), &c), &jwks(&[&k]), &expected())).contains("expired"));
}

#[test]
fn a_token_with_another_nonce_or_none_is_refused() {
    let k = key("k1");
    let mut c = claims();
    c["nonce"] = json!("replayed-from-another-sign-in");
    assert!(refused(verify(&sign(&k, Some("k1"), &c), &jwks(&[&k]), &expected())).contains("nonce"));
    c.as_object_mut().unwrap().remove("nonce");
    assert!(refused(verify(&sign(&k, Some("k1"), &c), &jwks(&[&k]), &expected())).contains("nonce"));
}

#[test]
fn a_token_from_another_issuer_is_refused() {
    let k = key("k1");
    let mut c = claims();
    c["iss"] = json!("https://evil.example.org");
    assert!(refused(verify(&sign(&k, Some("k1"), &c), &jwks(&[&k]), &expected())).contains("issuer"));
}

#[test]
fn a_bad_signature_is_refused() {
    let (published, forger) = (key("k1"), key("k1"));
    // Signed by a key the provider never published, under the published key's kid.
    let forged = sign(&forger, Some("k1"), &claims());
    assert!(refused(verify(&forged, &jwks(&[&published]), &expected())).contains("signature"));
    // A good token whose payload was changed after signing.
    let good = sign(&published, Some("k1"), &claims());
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    let mut c = claims();
    c["sub"] = json!("someone-else");
    parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap());
    assert!(refused(verify(&parts.join("."), &jwks(&[&published]), &expected())).contains("signature"));
}

#[test]
fn an_unknown_kid_asks_for_the_keys_again() {
    let k = key("rotated");
    let old = key("k1");
    assert_eq!(verify(&sign(&k, Some("rotated"), &claims()), &jwks(&[&old]), &expected()), Err(Refusal::UnknownKey));
}

#[test]
fn symmetric_and_malformed_tokens_are_refused() {
    let secret = EncodingKey::from_secret(b"the client secret").unwrap();
    let hs = encode(&Header::new(Algorithm::HS256), &claims(), &secret).unwrap();
    assert!(refused(verify(&hs, &jwks(&[&key("k1")]), &expected())).contains("HS256"));
    assert!(refused(verify("not.a.jwt", &jwks(&[&key("k1")]), &expected())).contains("malformed"));
    let k = key("k1");
    let mut c = claims();
    c.as_object_mut().unwrap().remove("sub");
    assert!(refused(verify(&sign(&k, Some("k1"), &c), &jwks(&[&k]), &expected())).contains("claim"));
}
