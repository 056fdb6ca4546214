//! Registration tokens (spec 1.2, "Token-authenticated registration"): the operations on
//! them (the `trellis registration-token` CLI, and the admin API, use these), whether one is
//! usable now, and how registration reserves and consumes one.
//!
//! As Synapse: passing the `m.login.registration_token` stage reserves a use (`pending`) so
//! a token with one use left cannot be spent twice by registrations under way; the account's
//! creation turns it into a `completed` use, and an abandoned session gives it back when the
//! session expires (`uia_store::purge`).

use deadpool_postgres::GenericClient;
use tracing::{info, instrument};
use trellis_core::{Error, ErrorCode, Result, config::RegistrationTokenConfig, ids::random_string, time::now_ms};
use trellis_proto::auth::{
    AuthAck, CreateRegistrationTokenRequest, ListRegistrationTokensRequest, RegistrationToken, RegistrationTokenList,
    RegistrationTokenRequest, RegistrationTokenValidity, UpdateRegistrationTokenRequest,
};

use crate::service::Auth;

/// The spec's limit on a token's length.
pub const MAX_TOKEN_LEN: usize = 64;
/// A generated token's length when the request names none (as Synapse).
const DEFAULT_LENGTH: i32 = 16;

const COLUMNS: &str = "token, uses_allowed, pending, completed, expiry_time";
const INSERT: &str = "INSERT INTO registration_tokens (token, uses_allowed, expiry_time) VALUES ($1, $2, $3) \
                      ON CONFLICT (token) DO NOTHING \
                      RETURNING token, uses_allowed, pending, completed, expiry_time";
const UPSERT: &str = "INSERT INTO registration_tokens (token, uses_allowed, expiry_time) VALUES ($1, $2, $3) \
                      ON CONFLICT (token) DO UPDATE SET uses_allowed = EXCLUDED.uses_allowed, \
                      expiry_time = EXCLUDED.expiry_time";
const DELETE: &str = "DELETE FROM registration_tokens WHERE token = $1";
const COMPLETE: &str = "UPDATE registration_tokens SET pending = GREATEST(pending - 1, 0), \
                        completed = completed + 1 WHERE token = $1";

/// Usable: uses left (reserved ones count), and not expired at the time parameter `now`.
fn usable(now: &str) -> String {
    format!(
        "(uses_allowed IS NULL OR pending + completed < uses_allowed) AND (expiry_time IS NULL OR expiry_time > {now})"
    )
}

fn select(filter: &str) -> String {
    format!("SELECT {COLUMNS} FROM registration_tokens {filter} ORDER BY token")
}

fn row(row: &tokio_postgres::Row) -> RegistrationToken {
    RegistrationToken {
        token: row.get(0),
        uses_allowed: row.get(1),
        pending: row.get(2),
        completed: row.get(3),
        expiry_time: row.get(4),
    }
}

/// The spec's grammar: 1 to 64 of the opaque identifier characters `[A-Za-z0-9._~-]`.
pub fn check_token(token: &str) -> Result<()> {
    let grammar = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '-');
    if token.is_empty() || token.len() > MAX_TOKEN_LEN || !token.chars().all(grammar) {
        return Err(Error::invalid_param(format!(
            "token must be 1 to {MAX_TOKEN_LEN} characters of A-Z, a-z, 0-9, '.', '_', '~' and '-'"
        )));
    }
    Ok(())
}

fn check_uses(uses_allowed: Option<i32>) -> Result<()> {
    match uses_allowed {
        Some(n) if n < 0 => Err(Error::invalid_param("uses_allowed must be a non-negative integer or null")),
        _ => Ok(()),
    }
}

fn check_expiry(expiry_time: Option<i64>) -> Result<()> {
    match expiry_time {
        Some(at) if at < now_ms() => Err(Error::invalid_param("expiry_time must not be in the past")),
        _ => Ok(()),
    }
}

fn unknown_token() -> Error {
    Error::not_found("No such registration token")
}

/// Reserves a use of `token` for a registration under way; false if it is not usable now.
pub async fn reserve(c: &impl GenericClient, token: &str) -> Result<bool> {
    let sql = format!("UPDATE registration_tokens SET pending = pending + 1 WHERE token = $1 AND {}", usable("$2"));
    let stmt = c.prepare_cached(&sql).await?;
    Ok(c.execute(&stmt, &[&token, &now_ms()]).await? == 1)
}

/// The registration that reserved a use of `token` created its account (in its transaction).
pub async fn complete(c: &impl GenericClient, token: &str) -> Result<()> {
    let stmt = c.prepare_cached(COMPLETE).await?;
    c.execute(&stmt, &[&token]).await?;
    Ok(())
}

impl Auth {
    /// Writes the configured tokens (their uses and expiry replace stored ones; counts stay).
    pub async fn seed_registration_tokens(&self) -> Result<()> {
        let tokens: &[RegistrationTokenConfig] = &self.config.registration_tokens;
        if tokens.is_empty() {
            return Ok(());
        }
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(UPSERT).await?;
        for t in tokens {
            check_token(&t.token)?;
            let uses = t.uses_allowed.map(|n| i32::try_from(n).unwrap_or(i32::MAX));
            client.execute(&stmt, &[&t.token, &uses, &t.expiry_time]).await?;
        }
        info!(tokens = tokens.len(), "configured registration tokens written");
        Ok(())
    }

    #[instrument(skip_all)]
    pub(crate) async fn do_registration_token_validity(
        &self,
        req: RegistrationTokenRequest,
    ) -> Result<RegistrationTokenValidity> {
        if !self.config.registration_enabled {
            return Err(Error::forbidden("Registration is not enabled on this homeserver."));
        }
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(&select(&format!("WHERE token = $1 AND {}", usable("$2")))).await?;
        let valid = client.query_opt(&stmt, &[&req.token, &now_ms()]).await?.is_some();
        Ok(RegistrationTokenValidity { valid })
    }

    #[instrument(skip_all)]
    pub(crate) async fn do_create_registration_token(
        &self,
        req: CreateRegistrationTokenRequest,
    ) -> Result<RegistrationToken> {
        check_uses(req.uses_allowed)?;
        check_expiry(req.expiry_time)?;
        let token = match (req.token, req.length) {
            (Some(_), Some(_)) => return Err(Error::invalid_param("give a token or a length, not both")),
            (Some(token), None) => token,
            (None, length) => {
                let length = length.unwrap_or(DEFAULT_LENGTH);
                if !(1..=MAX_TOKEN_LEN as i32).contains(&length) {
                    return Err(Error::invalid_param(format!("length must be between 1 and {MAX_TOKEN_LEN}")));
                }
                random_string(length as usize)
            }
        };
        check_token(&token)?;
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(INSERT).await?;
        let created = client.query_opt(&stmt, &[&token, &req.uses_allowed, &req.expiry_time]).await?;
        let created = created.ok_or_else(|| Error::new(ErrorCode::InvalidParam, "Token already in use"))?;
        info!(uses_allowed = req.uses_allowed, expiry_time = req.expiry_time, "registration token created");
        Ok(row(&created))
    }

    #[instrument(skip_all)]
    pub(crate) async fn do_list_registration_tokens(
        &self,
        req: ListRegistrationTokensRequest,
    ) -> Result<RegistrationTokenList> {
        let client = self.pool.get().await?;
        let rows = match req.valid {
            None => client.query(&client.prepare_cached(&select("")).await?, &[]).await?,
            Some(valid) => {
                let not = if valid { "" } else { "NOT" };
                let filter = format!("WHERE {not} ({})", usable("$1"));
                client.query(&client.prepare_cached(&select(&filter)).await?, &[&now_ms()]).await?
            }
        };
        Ok(RegistrationTokenList { tokens: rows.iter().map(row).collect() })
    }

    #[instrument(skip_all)]
    pub(crate) async fn do_get_registration_token(&self, req: RegistrationTokenRequest) -> Result<RegistrationToken> {
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(&select("WHERE token = $1")).await?;
        client.query_opt(&stmt, &[&req.token]).await?.as_ref().map(row).ok_or_else(unknown_token)
    }

    #[instrument(skip_all)]
    pub(crate) async fn do_update_registration_token(
        &self,
        req: UpdateRegistrationTokenRequest,
    ) -> Result<RegistrationToken> {
        if req.set_uses_allowed {
            check_uses(req.uses_allowed)?;
        }
        if req.set_expiry_time {
            check_expiry(req.expiry_time)?;
        }
        let sql = format!(
            "UPDATE registration_tokens SET \
             uses_allowed = CASE WHEN $2 THEN $3 ELSE uses_allowed END, \
             expiry_time = CASE WHEN $4 THEN $5 ELSE expiry_time END \
             WHERE token = $1 RETURNING {COLUMNS}"
        );
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(&sql).await?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
            [&req.token, &req.set_uses_allowed, &req.uses_allowed, &req.set_expiry_time, &req.expiry_time];
        let updated = client.query_opt(&stmt, &params).await?.ok_or_else(unknown_token)?;
        info!("registration token updated");
        Ok(row(&updated))
    }

    #[instrument(skip_all)]
    pub(crate) async fn do_delete_registration_token(&self, req: RegistrationTokenRequest) -> Result<AuthAck> {
        let client = self.pool.get().await?;
        if client.execute(&client.prepare_cached(DELETE).await?, &[&req.token]).await? == 0 {
            return Err(unknown_token());
        }
        info!("registration token deleted");
        Ok(AuthAck {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_grammar() {
        for good in ["a", "fBVFdqVE", "a.b_c~d-e", &"x".repeat(MAX_TOKEN_LEN)] {
            assert!(check_token(good).is_ok(), "{good}");
        }
        for bad in ["", "with space", "slash/", "é", &"x".repeat(MAX_TOKEN_LEN + 1)] {
            assert_eq!(check_token(bad).unwrap_err().code(), ErrorCode::InvalidParam, "{bad}");
        }
    }

    #[test]
    fn uses_and_expiry() {
        assert!(check_uses(None).is_ok() && check_uses(Some(0)).is_ok());
        assert_eq!(check_uses(Some(-1)).unwrap_err().code(), ErrorCode::InvalidParam);
        assert!(check_expiry(None).is_ok() && check_expiry(Some(now_ms() + 60_000)).is_ok());
        assert_eq!(check_expiry(Some(1)).unwrap_err().code(), ErrorCode::InvalidParam);
    }
}
