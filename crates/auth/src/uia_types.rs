//! The names and types of user-interactive auth: stage names and the flows offered, the
//! client's `auth` object as read, one round's inputs and outcome, a session, a failed stage,
//! and the bookkeeping the service holds. `uia.rs` runs the rounds; the stages that live
//! elsewhere (`threepid/stage.rs`) name these without depending on it.

use std::sync::atomic::AtomicU64;

use serde_json::{Map, Value};
use trellis_core::{ErrorCode, config::RecaptchaConfig};

use crate::uia_store::SessionRow;

pub const DUMMY: &str = "m.login.dummy";
pub const PASSWORD: &str = "m.login.password";
pub const REGISTRATION_TOKEN: &str = "m.login.registration_token";
pub const RECAPTCHA: &str = "m.login.recaptcha";

/// Flows offered for registration.
pub const REGISTER_FLOWS: Flows = &[&[DUMMY]];
/// Flows offered for registration when it needs a registration token (as Synapse: the token
/// stage before the others).
pub const TOKEN_REGISTER_FLOWS: Flows = &[&[REGISTRATION_TOKEN, DUMMY]];
/// Flows offered for registration when every flow needs the captcha.
pub const CAPTCHA_REGISTER_FLOWS: Flows = &[&[RECAPTCHA, DUMMY]];
/// Flows offered for registration with both a registration token and the captcha.
pub const TOKEN_CAPTCHA_REGISTER_FLOWS: Flows = &[&[REGISTRATION_TOKEN, RECAPTCHA, DUMMY]];
/// Flows offered when a signed-in user confirms an operation.
pub const PASSWORD_FLOWS: Flows = &[&[PASSWORD]];
/// The same with an upstream identity provider configured: the password, or signing in at
/// the provider again on the `m.login.sso` fallback page (`sso/uia.rs`).
pub const SSO_PASSWORD_FLOWS: Flows = &[&[PASSWORD], &[SSO]];
pub const SSO: &str = "m.login.sso";
/// Recorded in a session in place of `m.login.sso` when the provider signed in someone
/// other than the session's user: the session is refused from then on.
pub const SSO_OTHER_USER: &str = "m.login.sso/other-user";

/// Alternative flows; completing every stage of one of them completes the session.
pub type Flows = &'static [&'static [&'static str]];

/// The parts of the client's `auth` object the server reads.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct AuthDict {
    pub stage: Option<String>,
    pub session: Option<String>,
    /// `m.login.password`: `identifier.user` (type `m.id.user`) or the legacy `user`.
    pub user: Option<String>,
    pub password: Option<String>,
    /// `m.login.registration_token`: the token.
    pub token: Option<String>,
    /// `m.login.recaptcha`: the captcha answer.
    pub response: Option<String>,
    /// `m.login.email.identity`: the validated session's `sid` and `client_secret`.
    pub threepid_creds: Option<(String, String)>,
}

/// One round of user-interactive auth: what is being authorised, and for whom.
pub struct Round<'a> {
    /// The purpose (`uia_sessions.kind`), e.g. `register` or `delete_devices`.
    pub kind: &'a str,
    /// The signed-in user whose password the `m.login.password` stage checks; `None` for
    /// registration.
    pub user_id: Option<&'a str>,
    /// What exactly is authorised (e.g. the devices a deletion removes): a session started
    /// for one target is refused for another.
    pub target: Option<&'a str>,
    /// The request's parameters as JSON, remembered in the session; `None` when the request
    /// carried none, and then the remembered ones apply.
    pub params: Option<String>,
    pub flows: Flows,
    pub auth_json: &'a str,
    pub server_name: &'a str,
    /// The captcha stage, when configured: offered in registration's flows only when
    /// required, but verified whenever a registration round sends it (as Synapse).
    pub recaptcha: Option<&'a RecaptchaConfig>,
    /// The client's address, passed on to the captcha's verification.
    pub ip: Option<&'a str>,
}

/// A session and its record.
#[derive(Debug)]
pub struct Session {
    pub id: String,
    pub row: SessionRow,
}

/// The result of a round.
#[derive(Debug)]
pub enum Outcome {
    /// A flow is complete: the session (with the parameters that apply), unless the client
    /// completed a one-stage flow without one.
    Complete(Option<Session>),
    /// Stages remain: the 401 body to answer, and the session it names.
    Incomplete { session: Session, body: Map<String, Value> },
}

/// A stage that failed: the error to put in the challenge body.
pub(crate) struct Failure(pub ErrorCode, pub String);

/// UIA session bookkeeping (counts new sessions to purge expired ones now and then).
#[derive(Default)]
pub struct Uia {
    pub(crate) created: AtomicU64,
    /// Verifies captcha answers; made on the first one (most servers have no captcha).
    pub(crate) http: std::sync::OnceLock<reqwest::Client>,
}
