//! OpenID tokens (`POST /user/{userId}/openid/request_token`, exchanged by a third party such
//! as a widget or Element Call at the federation `GET /openid/userinfo`) and
//! `GET /admin/whois/{userId}` (a user's devices and where they were last seen).

use deadpool_postgres::GenericClient;
use ruma::UserId;
use tracing::{info, instrument};
use trellis_core::{Error, ErrorCode, Result, ids::random_string, time::now_ms};
use trellis_proto::auth::{
    Connection, DeviceConnections, OpenidToken, OpenidTokenRequest, OpenidUserinfo, OpenidUserinfoRequest,
    WhoisRequest, WhoisResponse,
};

use crate::{service::Auth, token::hash_token};

/// How long an OpenID token is valid (as Synapse: an hour).
pub const OPENID_TTL_SECS: i64 = 3600;
/// Random characters of an OpenID token.
const OPENID_TOKEN_LEN: usize = 32;

const INSERT_TOKEN: &str = "INSERT INTO openid_tokens (token_hash, user_id, expires_ts) VALUES ($1, $2, $3)";
const SELECT_TOKEN: &str = "SELECT user_id FROM openid_tokens WHERE token_hash = $1 AND expires_ts > $2";
const PURGE_TOKENS: &str = "DELETE FROM openid_tokens WHERE expires_ts <= $1";
const DELETE_USER_TOKENS: &str = "DELETE FROM openid_tokens WHERE user_id = $1";
const CONNECTIONS: &str = "SELECT device_id, last_seen_ip, last_seen_ts, last_seen_user_agent FROM devices \
                           WHERE user_id = $1 ORDER BY device_id";

/// Deletes a user's OpenID tokens (their account is deactivated).
pub async fn delete_user_tokens(c: &impl GenericClient, user_id: &str) -> Result<()> {
    c.execute(&c.prepare_cached(DELETE_USER_TOKENS).await?, &[&user_id]).await?;
    Ok(())
}

impl Auth {
    #[instrument(skip_all, fields(user_id = %req.user_id))]
    pub(crate) async fn do_request_openid_token(&self, req: OpenidTokenRequest) -> Result<OpenidToken> {
        if req.requester != req.user_id {
            return Err(Error::forbidden("Cannot request tokens for other users."));
        }
        let token = random_string(OPENID_TOKEN_LEN);
        let now = now_ms();
        let client = self.pool.get().await?;
        // Expired tokens are useless; dropping them here keeps the table as small as the
        // tokens of the last hour.
        client.execute(&client.prepare_cached(PURGE_TOKENS).await?, &[&now]).await?;
        let expires = now + OPENID_TTL_SECS * 1000;
        let stmt = client.prepare_cached(INSERT_TOKEN).await?;
        client.execute(&stmt, &[&hash_token(&token).as_slice(), &req.user_id, &expires]).await?;
        info!(user_id = %req.user_id, "openid token issued");
        Ok(OpenidToken { access_token: token, expires_in_secs: OPENID_TTL_SECS })
    }

    #[instrument(skip_all)]
    pub(crate) async fn do_openid_userinfo(&self, req: OpenidUserinfoRequest) -> Result<OpenidUserinfo> {
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(SELECT_TOKEN).await?;
        let row = client.query_opt(&stmt, &[&hash_token(&req.access_token).as_slice(), &now_ms()]).await?;
        let row = row.ok_or_else(|| Error::new(ErrorCode::UnknownToken, "Access Token unknown or expired"))?;
        Ok(OpenidUserinfo { user_id: row.get(0) })
    }

    /// A user's devices with their last connection; for the user themself or an admin.
    #[instrument(skip_all, fields(user_id = %req.user_id))]
    pub(crate) async fn do_whois(&self, req: WhoisRequest) -> Result<WhoisResponse> {
        let client = self.pool.get().await?;
        if req.requester != req.user_id {
            crate::admin::require_admin(&client, &req.requester).await?;
        }
        let local = UserId::parse(&req.user_id).map_err(|_| Error::invalid_param("Invalid user ID"))?;
        if local.server_name().as_str() != self.config.server_name {
            return Err(Error::invalid_param("Can only whois a local user"));
        }
        let stmt = client.prepare_cached(CONNECTIONS).await?;
        let devices = client
            .query(&stmt, &[&req.user_id])
            .await?
            .iter()
            .map(|row| {
                let last_seen_ts: Option<i64> = row.get(2);
                DeviceConnections {
                    device_id: row.get(0),
                    last: last_seen_ts.map(|ts| Connection {
                        ip: row.get(1),
                        last_seen_ts: Some(ts),
                        user_agent: row.get(3),
                    }),
                }
            })
            .collect();
        Ok(WhoisResponse { user_id: req.user_id, devices })
    }
}
