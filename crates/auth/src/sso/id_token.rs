//! Checking an ID token (OpenID Connect Core §3.1.3.7): signed by a key of the provider's
//! JWKS with an asymmetric algorithm, `iss` the configured issuer, `aud` holding our client
//! ID, not expired (a minute's leeway), and `nonce` the one this sign-in sent.

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header, errors::ErrorKind, jwk::JwkSet};
use serde_json::{Map, Value};

/// The claims of a verified ID token.
pub type Claims = Map<String, Value>;

/// What the token must say.
pub struct Expected<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub nonce: &'a str,
}

/// Why a token was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Its `kid` is not in the key set: the provider may have rotated keys (fetch them again).
    UnknownKey,
    /// Anything else; the text says what, for the page and the log.
    Invalid(String),
}

/// Verifies `token` against `jwks` and `expected`; the claims when it passes.
pub fn verify(token: &str, jwks: &JwkSet, expected: &Expected<'_>) -> Result<Claims, Refusal> {
    let header = decode_header(token).map_err(|e| invalid(format!("malformed ID token: {e}")))?;
    // Symmetric algorithms would make the client secret a signing key; `none` is not an
    // algorithm jsonwebtoken knows at all.
    if matches!(header.alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
        return Err(invalid(format!("ID token signed with {:?}, not a public key", header.alg)));
    }
    let candidates: Vec<_> = match &header.kid {
        Some(kid) => jwks.find(kid).into_iter().collect(),
        None => jwks.keys.iter().collect(),
    };
    if candidates.is_empty() {
        return Err(Refusal::UnknownKey);
    }
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[expected.issuer]);
    validation.set_audience(&[expected.client_id]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.leeway = 60;
    let mut last = invalid("no key of the provider verifies the ID token".to_owned());
    for jwk in candidates {
        let Ok(key) = DecodingKey::from_jwk(jwk) else { continue };
        match decode::<Claims>(token, &key, &validation) {
            Ok(data) => return check_claims(data.claims, expected),
            Err(e) => last = refusal(e.kind()),
        }
    }
    Err(last)
}

fn check_claims(claims: Claims, expected: &Expected<'_>) -> Result<Claims, Refusal> {
    if claims.get("nonce").and_then(Value::as_str) != Some(expected.nonce) {
        return Err(invalid("the ID token's nonce is not this sign-in's".to_owned()));
    }
    match claims.get("sub").and_then(Value::as_str) {
        Some(sub) if !sub.is_empty() => Ok(claims),
        _ => Err(invalid("the ID token has no subject".to_owned())),
    }
}

fn refusal(kind: &ErrorKind) -> Refusal {
    invalid(
        match kind {
            ErrorKind::InvalidSignature => "bad ID token signature",
            ErrorKind::ExpiredSignature => "the ID token has expired",
            ErrorKind::InvalidAudience => "the ID token is for another client",
            ErrorKind::InvalidIssuer => "the ID token is from another issuer",
            ErrorKind::MissingRequiredClaim(_) => "the ID token lacks a required claim",
            ErrorKind::InvalidAlgorithm => "the ID token's algorithm does not match the provider's key",
            _ => "invalid ID token",
        }
        .to_owned(),
    )
}

fn invalid(text: String) -> Refusal {
    Refusal::Invalid(text)
}

#[cfg(test)]
#[path = "id_token_tests.rs"]
mod tests;
