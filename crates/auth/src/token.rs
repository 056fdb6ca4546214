//! Access, refresh and login tokens: how they look and how they are stored (SHA-256, never
//! in the clear; a lookup is by the hash, so no comparison of secrets runs in our code).

use std::time::Duration;

use sha2::{Digest, Sha256};
use trellis_core::ids::random_string;

/// Every access token this server issues starts with this, so leaked tokens are recognisable.
pub const TOKEN_PREFIX: &str = "trl_";
/// The prefix of refresh tokens.
pub const REFRESH_PREFIX: &str = "trr_";
/// The prefix of `m.login.token` login tokens.
pub const LOGIN_PREFIX: &str = "trt_";

/// Random characters after the prefix (about 238 bits of entropy).
const TOKEN_RANDOM_LEN: usize = 40;

/// What the database and the cache key tokens by.
pub type TokenHash = [u8; 32];

/// A fresh access token.
pub fn new_access_token() -> String {
    new_token(TOKEN_PREFIX)
}

/// A fresh token of the kind `prefix` names.
pub fn new_token(prefix: &str) -> String {
    format!("{prefix}{}", random_string(TOKEN_RANDOM_LEN))
}

/// A token's lifetime in milliseconds, as answers and expiry times carry it.
pub fn lifetime_ms(lifetime: Duration) -> i64 {
    i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX)
}

/// The stored form of a token.
pub fn hash_token(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

/// Reads a hash back from a `BYTEA` column.
pub fn hash_from_bytes(bytes: &[u8]) -> Option<TokenHash> {
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_random_and_long() {
        let a = new_access_token();
        let b = new_access_token();
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + TOKEN_RANDOM_LEN);
        assert!(a[TOKEN_PREFIX.len()..].chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

    #[test]
    fn hash_is_sha256() {
        // SHA-256("abc"), from FIPS 180-2.
        let expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let got: String = hash_token("abc").iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(got, expected);
        assert_ne!(hash_token("abc"), hash_token("abd"));
        assert_eq!(hash_from_bytes(&hash_token("abc")), Some(hash_token("abc")));
        assert_eq!(hash_from_bytes(b"short"), None);
    }
}
