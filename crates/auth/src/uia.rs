//! User-interactive authentication: the challenge bodies, the client's `auth` object and the
//! session bookkeeping, for registration (`m.login.dummy`) and for operations of a signed-in
//! user that need their password again (`m.login.password`: device deletion, password
//! change, deactivation, cross-signing key replacement).
//!
//! A session belongs to one purpose (`kind`), one user (none for registration) and one
//! target (e.g. the devices a deletion removes): it is never accepted for another operation.
//! It remembers the first request's parameters for the later stages (registration). See the
//! spec's "User-Interactive Authentication API".

use std::sync::atomic::Ordering;

use deadpool_postgres::Pool;
use serde_json::{Map, Value, json};
use trellis_core::{Error, ErrorCode, Result, time::now_ms};

use crate::{
    login::login_localpart,
    password, registration_tokens,
    service::Auth,
    store,
    uia_store::{self, SessionRow},
    uia_types::Failure,
};
pub use crate::{
    threepid::stage::EMAIL_IDENTITY,
    uia_types::{
        AuthDict, CAPTCHA_REGISTER_FLOWS, DUMMY, Flows, Outcome, PASSWORD, PASSWORD_FLOWS, RECAPTCHA, REGISTER_FLOWS,
        REGISTRATION_TOKEN, Round, SSO, SSO_OTHER_USER, SSO_PASSWORD_FLOWS, Session, TOKEN_CAPTCHA_REGISTER_FLOWS,
        TOKEN_REGISTER_FLOWS, Uia,
    },
};

/// Sessions older than this are treated as unknown (Synapse: 2 days).
pub const SESSION_TTL_MS: i64 = 2 * 24 * 60 * 60 * 1000;

/// Length of the random session ID.
const SESSION_ID_LEN: usize = 24;

/// Expired sessions are purged on every this many new sessions.
const PURGE_EVERY: u64 = 64;

/// Parses `auth_json`; `None` when the client sent no `auth` object.
pub fn parse(auth_json: &str) -> Result<Option<AuthDict>> {
    if auth_json.trim().is_empty() {
        return Ok(None);
    }
    let value: Value = serde_json::from_str(auth_json).map_err(|_| Error::bad_json("auth must be a JSON object"))?;
    let Value::Object(map) = value else {
        return Err(Error::bad_json("auth must be a JSON object"));
    };
    let string = |map: &Map<String, Value>, key: &str| match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Error::bad_json(format!("auth.{key} must be a string"))),
    };
    let user = match map.get("identifier") {
        None | Some(Value::Null) => string(&map, "user")?,
        Some(Value::Object(id)) => match id.get("type").and_then(Value::as_str) {
            Some("m.id.user") => string(id, "user")?,
            _ => return Err(Error::new(ErrorCode::Unknown, "Unknown login identifier type").with_status(400)),
        },
        Some(_) => return Err(Error::bad_json("auth.identifier must be an object")),
    };
    Ok(Some(AuthDict {
        stage: string(&map, "type")?,
        session: string(&map, "session")?,
        user,
        password: string(&map, "password")?,
        // Checked by its stage, which answers a missing or malformed token in the challenge.
        token: map.get("token").and_then(Value::as_str).map(str::to_owned),
        response: string(&map, "response")?,
        threepid_creds: match map.get("threepid_creds").or_else(|| map.get("threepidCreds")) {
            Some(Value::Object(creds)) => string(creds, "sid")?.zip(string(creds, "client_secret")?),
            _ => None,
        },
    }))
}

/// The 401 body: flows, params, session and, once the client sent an `auth` object, the
/// stages completed so far (Synapse sends `completed` then even when it is empty).
pub fn challenge(flows: Flows, session: &str, completed: Option<&[String]>) -> Map<String, Value> {
    let flows: Vec<Value> = flows.iter().map(|stages| json!({ "stages": stages })).collect();
    let mut body = Map::new();
    body.insert("flows".into(), Value::Array(flows));
    body.insert("params".into(), json!({}));
    body.insert("session".into(), Value::String(session.to_owned()));
    if let Some(completed) = completed {
        body.insert("completed".into(), json!(completed));
    }
    body
}

/// Whether `completed` covers every stage of some flow.
pub fn flow_complete(flows: Flows, completed: &[String]) -> bool {
    flows.iter().any(|flow| flow.iter().all(|stage| completed.iter().any(|c| c == stage)))
}

impl Uia {
    /// Runs one round: checks the stage the client's `auth` object completes, in its session
    /// (which must be for the same operation), and says whether a flow is now complete.
    pub async fn check(&self, pool: &Pool, round: Round<'_>) -> Result<Outcome> {
        let dict = parse(round.auth_json)?;
        let mut client = pool.get().await?;
        let Some(dict) = dict else {
            let session = self.new_session(&client, &round, &[]).await?;
            let body = with_params(challenge(round.flows, &session.id, None), &round);
            return Ok(Outcome::Incomplete { session, body });
        };
        let mut session = match &dict.session {
            Some(id) => Some(continued(&client, id, &round).await?),
            // A registration token's use is reserved for a session: it needs one from the start.
            // So does an email stage: the session remembers the address it proved.
            None if matches!(dict.stage.as_deref(), Some(REGISTRATION_TOKEN | EMAIL_IDENTITY)) => {
                Some(self.new_session(&client, &round, &[]).await?)
            }
            None => None,
        };
        let mut completed = session.as_ref().map(|s| s.row.completed.clone()).unwrap_or_default();
        let offered = |stage: &str| {
            round.flows.iter().any(|flow| flow.contains(&stage))
                || (stage == RECAPTCHA && round.recaptcha.is_some() && round.user_id.is_none())
        };
        let failure = match dict.stage.as_deref() {
            Some(stage) if !offered(stage) => {
                Some(Failure(ErrorCode::Unrecognized, format!("Unsupported authentication type {stage:?}")))
            }
            Some(DUMMY) => None,
            // Out of band: done in the browser, then the client sends only the session.
            Some(SSO) => Some(Failure(ErrorCode::Forbidden, "Complete m.login.sso on its fallback page".into())),
            Some(PASSWORD) => check_password(&client, &round, &dict).await?,
            Some(RECAPTCHA) => self.check_recaptcha(&round, &dict).await?,
            Some(EMAIL_IDENTITY) => match &mut session {
                Some(session) => crate::threepid::stage::check(&client, session, &dict).await?,
                None => Some(Failure(ErrorCode::MissingParam, "Missing UIA session".into())),
            },
            Some(REGISTRATION_TOKEN) => match &mut session {
                Some(session) => check_registration_token(&mut client, session, &dict).await?,
                None => Some(Failure(ErrorCode::MissingParam, "Missing UIA session".into())),
            },
            Some(other) => Some(Failure(ErrorCode::Unrecognized, format!("Unsupported authentication type {other:?}"))),
            // Only a session: the client asks whether out-of-band stages are done.
            None => None,
        };
        let done = match (dict.stage.as_deref(), &failure) {
            (Some(stage), None) => Some(stage),
            _ => None,
        };
        if let Some(stage) = done {
            if let Some(s) = &session {
                uia_store::mark_stage(&client, &s.id, stage).await?;
            }
            if !completed.iter().any(|c| c == stage) {
                completed.push(stage.to_owned());
            }
        }
        if failure.is_none() && flow_complete(round.flows, &completed) {
            if let Some(s) = &mut session {
                s.row.completed = completed;
            }
            return Ok(Outcome::Complete(session));
        }
        let session = match session {
            Some(s) => s,
            None => self.new_session(&client, &round, &completed).await?,
        };
        let mut body = with_params(challenge(round.flows, &session.id, Some(&completed)), &round);
        if let Some(Failure(code, message)) = failure {
            body.insert("errcode".into(), code.as_str().into());
            body.insert("error".into(), message.into());
        }
        Ok(Outcome::Incomplete { session, body })
    }

    async fn new_session(
        &self,
        client: &deadpool_postgres::Client,
        round: &Round<'_>,
        completed: &[String],
    ) -> Result<Session> {
        if self.created.fetch_add(1, Ordering::Relaxed).is_multiple_of(PURGE_EVERY) {
            let purged = uia_store::purge(client, now_ms() - SESSION_TTL_MS).await?;
            if purged > 0 {
                tracing::debug!(purged, "expired uia sessions purged");
            }
        }
        let id = trellis_core::ids::random_string(SESSION_ID_LEN);
        let row = SessionRow {
            kind: round.kind.to_owned(),
            user_id: round.user_id.map(str::to_owned),
            target: round.target.map(str::to_owned),
            params: round.params.clone(),
            ..SessionRow::default()
        };
        uia_store::create(client, &id, &row).await?;
        for stage in completed {
            uia_store::mark_stage(client, &id, stage).await?;
        }
        Ok(Session { id, row: SessionRow { completed: completed.to_vec(), ..row } })
    }
}

impl Uia {
    /// The `m.login.recaptcha` stage: the answer must satisfy the verification endpoint (a
    /// refusal is `M_UNAUTHORIZED` in the challenge, so the client may try again).
    pub(crate) async fn check_recaptcha(&self, round: &Round<'_>, dict: &AuthDict) -> Result<Option<Failure>> {
        let Some(config) = round.recaptcha else {
            return Ok(Some(Failure(ErrorCode::Unrecognized, "Unsupported authentication type".into())));
        };
        let Some(answer) = dict.response.as_deref() else {
            return Ok(Some(Failure(ErrorCode::MissingParam, "Missing captcha response".into())));
        };
        Ok(
            match crate::recaptcha::verify(self.http.get_or_init(crate::recaptcha::client), config, answer, round.ip)
                .await?
            {
                true => None,
                false => Some(Failure(ErrorCode::Unauthorized, "Captcha was not solved".into())),
            },
        )
    }
}

/// Adds the stages' public parameters to a challenge: the captcha's site key.
fn with_params(mut body: Map<String, Value>, round: &Round<'_>) -> Map<String, Value> {
    if let Some(config) = round.recaptcha.filter(|_| round.user_id.is_none()) {
        body.insert("params".into(), json!({ RECAPTCHA: { "public_key": config.public_key } }));
    }
    body
}

/// The session a client continues: it must be live and for the same operation; parameters
/// the request carries replace the remembered ones.
async fn continued(client: &deadpool_postgres::Client, id: &str, round: &Round<'_>) -> Result<Session> {
    let mut row = uia_store::get(client, id, now_ms() - SESSION_TTL_MS).await?.ok_or_else(unknown_session)?;
    if row.completed.iter().any(|c| c == SSO_OTHER_USER) {
        return Err(Error::forbidden("The identity provider signed in another user"));
    }
    if row.kind != round.kind || row.user_id.as_deref() != round.user_id || row.target.as_deref() != round.target {
        return Err(Error::forbidden("Requested operation has changed during the UI authentication session."));
    }
    if let Some(params) = &round.params
        && row.params.as_ref() != Some(params)
    {
        uia_store::set_params(client, id, params).await?;
        row.params = Some(params.clone());
    }
    Ok(Session { id: id.to_owned(), row })
}

/// The `m.login.registration_token` stage, as Synapse: a usable token reserves a use for the
/// session (once: the stage done again must name the same token); one that is not usable is
/// `M_UNAUTHORIZED` in the challenge, so the client may try another.
async fn check_registration_token(
    client: &mut deadpool_postgres::Client,
    session: &mut Session,
    dict: &AuthDict,
) -> Result<Option<Failure>> {
    let Some(token) = dict.token.as_deref() else {
        return Ok(Some(Failure(ErrorCode::MissingParam, "Missing registration token".into())));
    };
    if let Some(reserved) = &session.row.registration_token {
        return Ok(
            (reserved != token).then(|| Failure(ErrorCode::InvalidParam, "Registration token has changed".into()))
        );
    }
    let tx = client.transaction().await?;
    if !registration_tokens::reserve(&tx, token).await? {
        return Ok(Some(Failure(ErrorCode::Unauthorized, "Invalid registration token".into())));
    }
    if !uia_store::set_registration_token(&tx, &session.id, token).await? {
        // A concurrent request of this session reserved one first: this one does not count.
        return Ok(Some(Failure(ErrorCode::InvalidParam, "Registration token has changed".into())));
    }
    tx.commit().await?;
    session.row.registration_token = Some(token.to_owned());
    Ok(None)
}

/// The `m.login.password` stage: the password must be that of the user the identifier names
/// (a mismatch is `M_FORBIDDEN` inside the 401 challenge, so the client may retry), and that
/// user must be the requesting one (if not, a plain 403: the credentials were right but are
/// someone else's, as Synapse answers).
async fn check_password(
    client: &deadpool_postgres::Client,
    round: &Round<'_>,
    dict: &AuthDict,
) -> Result<Option<Failure>> {
    let Some(requester) = round.user_id else {
        return Ok(Some(Failure(ErrorCode::Unrecognized, "Unsupported authentication type".into())));
    };
    let forbidden = |m: &str| Ok(Some(Failure(ErrorCode::Forbidden, m.into())));
    let named = match &dict.user {
        Some(user) => match login_localpart(user, round.server_name) {
            Ok(local) => Some(format!("@{local}:{}", round.server_name)),
            Err(_) => return forbidden("Invalid username or password"),
        },
        None => None,
    };
    let user_id = named.as_deref().unwrap_or(requester);
    let Some(given) = dict.password.clone() else {
        return forbidden("Invalid password");
    };
    let stored = store::credentials(client, user_id).await?.and_then(|c| c.password_hash);
    if !password::verify(given, stored).await? {
        return forbidden("Invalid password");
    }
    if user_id != requester {
        return Err(Error::forbidden("Requested user ID does not match the authenticated user"));
    }
    Ok(None)
}

impl Auth {
    /// Ok once the client's `auth` completed the password flow in a session of this user
    /// for this purpose and target (the session is then used up); otherwise the error the
    /// gateway answers as the 401 UIA body.
    pub(crate) async fn require_uia(
        &self,
        user_id: &str,
        purpose: &str,
        target: Option<&str>,
        auth_json: &str,
    ) -> Result<()> {
        let round = Round {
            kind: purpose,
            user_id: Some(user_id),
            target,
            params: None,
            flows: self.user_flows(),
            auth_json,
            server_name: &self.config.server_name,
            recaptcha: None,
            ip: None,
        };
        match self.uia.check(&self.pool, round).await? {
            Outcome::Incomplete { body, .. } => Err(Error::uia(body)),
            Outcome::Complete(None) => Ok(()),
            Outcome::Complete(Some(session)) => {
                let client = self.pool.get().await?;
                // Used up by a concurrent request with the same session.
                if !uia_store::delete(&client, &session.id).await? {
                    return Err(unknown_session());
                }
                Ok(())
            }
        }
    }
}

/// Synapse's answer to a session it does not know (or that expired or was used up).
pub fn unknown_session() -> Error {
    Error::new(ErrorCode::Unknown, "Unknown session ID").with_status(400)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_auth_object() {
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("  ").unwrap(), None);
        let dict = parse(r#"{"type":"m.login.dummy","session":"abc","extra":1}"#).unwrap().unwrap();
        assert_eq!(dict.stage.as_deref(), Some(DUMMY));
        assert_eq!(dict.session.as_deref(), Some("abc"));
        assert_eq!(parse(r#"{"session":"abc"}"#).unwrap().unwrap().stage, None);
        for bad in ["{", "[]", "\"x\"", r#"{"type":1}"#, r#"{"session":{}}"#, r#"{"identifier":1}"#] {
            assert_eq!(parse(bad).unwrap_err().code(), ErrorCode::BadJson, "{bad}");
        }
    }

    #[test]
    fn parses_password_identifiers() {
        let dict = parse(r#"{"type":"m.login.password","identifier":{"type":"m.id.user","user":"al"},"password":"p"}"#)
            .unwrap()
            .unwrap();
        assert_eq!((dict.user.as_deref(), dict.password.as_deref()), (Some("al"), Some("p")));
        let legacy = parse(r#"{"type":"m.login.password","user":"@al:hs","password":"p"}"#).unwrap().unwrap();
        assert_eq!(legacy.user.as_deref(), Some("@al:hs"));
        let phone = parse(r#"{"type":"m.login.password","identifier":{"type":"m.id.phone"}}"#).unwrap_err();
        assert_eq!((phone.code(), phone.status()), (ErrorCode::Unknown, 400));
    }

    #[test]
    fn challenge_shape() {
        let body = Value::Object(challenge(REGISTER_FLOWS, "s1", None));
        assert_eq!(body, json!({"flows":[{"stages":["m.login.dummy"]}],"params":{},"session":"s1"}));
        let body = challenge(PASSWORD_FLOWS, "s1", Some(&[PASSWORD.to_owned()]));
        assert_eq!(body["completed"], json!(["m.login.password"]));
        assert_eq!(body["flows"], json!([{"stages":["m.login.password"]}]));
        assert_eq!(challenge(PASSWORD_FLOWS, "s1", Some(&[]))["completed"], json!([]));
        let err = Error::uia(challenge(REGISTER_FLOWS, "s1", None));
        assert_eq!(err.status(), 401);
        assert_eq!(err.code(), ErrorCode::UiaRequired);
        assert!(err.client_body().get("errcode").is_none());
    }

    #[test]
    fn completion() {
        assert!(!flow_complete(REGISTER_FLOWS, &[]));
        assert!(!flow_complete(REGISTER_FLOWS, &[PASSWORD.to_owned()]));
        assert!(flow_complete(REGISTER_FLOWS, &[DUMMY.to_owned()]));
        assert!(!flow_complete(PASSWORD_FLOWS, &[DUMMY.to_owned()]));
        assert!(flow_complete(PASSWORD_FLOWS, &[PASSWORD.to_owned()]));
    }

    #[test]
    fn unknown_session_is_a_plain_400() {
        let err = unknown_session();
        assert_eq!(err.status(), 400);
        assert_eq!(err.client_body()["errcode"], "M_UNKNOWN");
    }
}
