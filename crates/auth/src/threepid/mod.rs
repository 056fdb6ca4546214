//! Third-party identifiers: email validation sessions this server mails itself
//! (`sessions.rs`, through `mail.rs`), the 3PIDs of accounts (`account.rs`), the
//! `m.login.email.identity` stage (`stage.rs`) and identity servers (`identity.rs`). The auth
//! service is the only writer of `threepid_sessions`, `user_threepids` and
//! `user_threepid_id_servers` (`store.rs`).

mod account;
mod helo;
mod identity;
mod mail;
mod sessions;
pub(crate) mod stage;
pub(crate) mod store;

pub use mail::Mailer;
use trellis_core::config::EmailConfig;
use trellis_proto::auth::ThreepidUnbindResult;

/// The mailer `[email]` configures; none without an SMTP host, or (logged) with settings
/// that cannot work.
pub(crate) fn mailer(config: Option<&EmailConfig>) -> Option<Mailer> {
    match Mailer::new(config?) {
        Ok(mailer) => Some(mailer),
        Err(why) => {
            tracing::error!(error = %why, "email is not sent: the [email] settings are unusable");
            None
        }
    }
}

/// The spec's `id_server_unbind_result`: `success` once identity servers unbound everything
/// asked of them, else `no-support`.
pub(crate) fn unbind_result(unbound: bool) -> ThreepidUnbindResult {
    let result = if unbound { "success" } else { "no-support" };
    ThreepidUnbindResult { id_server_unbind_result: result.to_owned() }
}
