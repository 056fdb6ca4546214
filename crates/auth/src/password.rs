//! Password rules and Argon2id hashing, always on the blocking thread pool.

use std::sync::OnceLock;

use argon2::{
    Argon2,
    password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash},
};
use trellis_core::{Error, ErrorCode, Result};

/// Longest password accepted, in characters (as Synapse): hashing is deliberately costly.
pub const MAX_PASSWORD_LEN: usize = 512;

/// Checks a password offered at registration and returns it.
pub fn check_new(password: Option<&str>, min_len: usize) -> Result<&str> {
    let Some(password) = password else {
        return Err(Error::missing_param("Missing params: password"));
    };
    let len = password.chars().count();
    if len > MAX_PASSWORD_LEN {
        return Err(Error::invalid_param(format!("Password is too long (max {MAX_PASSWORD_LEN})")));
    }
    if len < min_len.max(1) {
        return Err(Error::new(ErrorCode::WeakPassword, format!("Password is too short (min {})", min_len.max(1))));
    }
    Ok(password)
}

/// An Argon2id PHC string for `password`, with a random salt.
pub async fn hash(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || hash_blocking(&password)).await?
}

/// Whether `password` matches `stored`. Without a stored hash (unknown user, no password)
/// the same work is done against a dummy hash, so timing does not reveal which users exist.
pub async fn verify(password: String, stored: Option<String>) -> Result<bool> {
    if password.chars().count() > MAX_PASSWORD_LEN {
        return Ok(false);
    }
    tokio::task::spawn_blocking(move || {
        let matches = match &stored {
            Some(hash) => verify_blocking(&password, hash),
            None => {
                // The outcome is ignored: this only spends the time a real check would.
                let _ = verify_blocking(&password, dummy_hash()?);
                false
            }
        };
        Ok(matches)
    })
    .await?
}

fn hash_blocking(password: &str) -> Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| Error::internal(format!("password hashing failed: {e}")))
}

fn verify_blocking(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(e) => {
            tracing::error!(error = %e, "stored password hash is unreadable");
            false
        }
    }
}

fn dummy_hash() -> Result<&'static str> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(hash) = DUMMY.get() {
        return Ok(hash);
    }
    let hash = hash_blocking(&trellis_core::ids::random_string(16))?;
    Ok(DUMMY.get_or_init(|| hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_rules() {
        assert_eq!(check_new(None, 8).unwrap_err().code(), ErrorCode::MissingParam);
        assert_eq!(check_new(Some("short"), 8).unwrap_err().code(), ErrorCode::WeakPassword);
        assert_eq!(check_new(Some(""), 0).unwrap_err().code(), ErrorCode::WeakPassword);
        assert_eq!(check_new(Some("long enough"), 8).unwrap(), "long enough");
        // Characters, not bytes: four two-byte characters are four characters.
        assert_eq!(check_new(Some("éééé"), 5).unwrap_err().code(), ErrorCode::WeakPassword);
        assert!(check_new(Some("éééé"), 4).is_ok());
        let huge = "x".repeat(MAX_PASSWORD_LEN + 1);
        assert_eq!(check_new(Some(&huge), 1).unwrap_err().code(), ErrorCode::InvalidParam);
    }

    #[tokio::test]
    async fn hashes_verify_only_their_password() {
        let stored = hash("correct horse".into()).await.unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(verify("correct horse".into(), Some(stored.clone())).await.unwrap());
        assert!(!verify("correct horsf".into(), Some(stored.clone())).await.unwrap());
        assert!(!verify("correct horse".into(), None).await.unwrap());
        assert!(!verify("x".into(), Some("not a phc string".into())).await.unwrap());
        let other = hash("correct horse".into()).await.unwrap();
        assert_ne!(stored, other, "salts must differ");
    }
}
