//! The `m.login.email.identity` stage of user-interactive auth: `threepid_creds` name a
//! validated session (`sid`, `client_secret`), whose address the UIA session remembers — for
//! registration (the new account gets the address) and password reset (the address names
//! the account).

use deadpool_postgres::GenericClient;
use serde_json::json;
use trellis_core::{Error, ErrorCode, Result, time::now_ms};

use super::store;
use crate::{
    uia_store::{self, SessionRow},
    uia_types::{self, AuthDict, DUMMY, Failure, Flows, RECAPTCHA, REGISTRATION_TOKEN, Session},
};

pub const EMAIL_IDENTITY: &str = "m.login.email.identity";

/// Password reset: the email stage alone.
pub const RESET_FLOWS: Flows = &[&[EMAIL_IDENTITY]];

/// Registration's flows when email validation is configured: each flow of `uia.rs` again,
/// with the email stage in place of the dummy one (as Synapse offers it: optional).
pub fn register_flows(without_email: Flows) -> Flows {
    const PLAIN: Flows = &[&[DUMMY], &[EMAIL_IDENTITY]];
    const TOKEN: Flows = &[&[REGISTRATION_TOKEN, DUMMY], &[REGISTRATION_TOKEN, EMAIL_IDENTITY]];
    const CAPTCHA: Flows = &[&[RECAPTCHA, DUMMY], &[RECAPTCHA, EMAIL_IDENTITY]];
    const BOTH: Flows = &[&[REGISTRATION_TOKEN, RECAPTCHA, DUMMY], &[REGISTRATION_TOKEN, RECAPTCHA, EMAIL_IDENTITY]];
    match without_email {
        f if f == uia_types::TOKEN_CAPTCHA_REGISTER_FLOWS => BOTH,
        f if f == uia_types::TOKEN_REGISTER_FLOWS => TOKEN,
        f if f == uia_types::CAPTCHA_REGISTER_FLOWS => CAPTCHA,
        _ => PLAIN,
    }
}

/// Checks the stage: the session must be validated and live (`M_UNAUTHORIZED` in the
/// challenge otherwise, so the client may follow the link and try again).
pub(crate) async fn check(c: &impl GenericClient, session: &mut Session, dict: &AuthDict) -> Result<Option<Failure>> {
    let Some((sid, secret)) = &dict.threepid_creds else {
        return Ok(Some(Failure(ErrorCode::MissingParam, "Missing threepid_creds".into())));
    };
    let Some((medium, address, validated)) = store::validated(c, sid, secret, now_ms()).await? else {
        return Ok(Some(Failure(ErrorCode::Unauthorized, "Unable to get validated threepid".into())));
    };
    let proved = json!({ "medium": medium, "address": address, "validated_ts": validated }).to_string();
    uia_store::set_threepid(c, &session.id, &proved).await?;
    session.row.threepid = Some(proved);
    Ok(None)
}

/// The 3PID the session's email stage proved: medium, address, when validated.
pub fn proved(row: &SessionRow) -> Result<(String, String, i64)> {
    let value: serde_json::Value = serde_json::from_str(row.threepid.as_deref().unwrap_or("null"))?;
    let field = |k: &str| value.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    match (field("medium"), field("address"), value.get("validated_ts").and_then(|v| v.as_i64())) {
        (Some(m), Some(a), Some(v)) => Ok((m, a, v)),
        _ => Err(Error::new(ErrorCode::ThreepidAuthFailed, "No validated 3pid in this session")),
    }
}

const ADD_FROM_SESSION: &str = "INSERT INTO user_threepids (medium, address, user_id, validated_ts, added_ts) \
     SELECT (threepid::jsonb)->>'medium', (threepid::jsonb)->>'address', $2, \
            ((threepid::jsonb)->>'validated_ts')::bigint, $3 \
     FROM uia_sessions WHERE session_id = $1 AND threepid IS NOT NULL \
     ON CONFLICT (medium, address) DO NOTHING";

/// Registration: the account the session creates gets the address its email stage proved
/// (unless another account took it meanwhile).
pub(crate) async fn add_registered(c: &impl GenericClient, session_id: &str, user_id: &str) -> Result<()> {
    c.execute(&c.prepare_cached(ADD_FROM_SESSION).await?, &[&session_id, &user_id, &now_ms()]).await?;
    Ok(())
}
