//! Which account an upstream identity signs in to: the one linked to its `(idp_id, sub)`,
//! else (first sign-in) a new account named by the provider's `localpart_template` — with
//! `2`, `3`, … appended while the name is taken, unless `allow_existing_users` links the
//! existing account instead — linked in the same transaction.

use serde_json::Value;
use tracing::info;
use trellis_core::{Error, ErrorCode, Result, sso::OidcProvider};

use super::{id_token::Claims, store};
use crate::{
    login::{deactivated, locked},
    register::check_localpart,
    service::Auth,
    store as users,
};

/// Numbered names tried after the template's own before giving up.
const SUFFIXES: u32 = 100;

/// Fills `{claim}` placeholders from the claims (strings and numbers), then makes a
/// localpart of it: lower case, any character a new localpart may not hold becomes `_`,
/// leading `_` dropped (reserved for bridges), an all-digit name prefixed with `u` (digits
/// are guests'). `None` when a claim is missing or nothing is left.
pub fn localpart_from_template(template: &str, claims: &Claims) -> Option<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}')? + open;
        let name = rest[open + 1..close].trim();
        match claims.get(name)? {
            Value::String(s) => out.push_str(s),
            Value::Number(n) => out.push_str(&n.to_string()),
            _ => return None,
        }
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    let mapped: String = out
        .to_lowercase()
        .chars()
        .map(|c| if matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '=' | '-' | '/' | '+') { c } else { '_' })
        .collect();
    let trimmed = mapped.trim_start_matches('_');
    match trimmed {
        "" => None,
        t if t.chars().all(|c| c.is_ascii_digit()) => Some(format!("u{t}")),
        t => Some(t.to_owned()),
    }
}

impl Auth {
    /// The account `sub` at `p` signs in to, created and linked on its first sign-in; and
    /// whether it was created.
    pub(crate) async fn sso_account(&self, p: &OidcProvider, claims: &Claims) -> Result<(String, bool)> {
        let sub = claims.get("sub").and_then(Value::as_str).unwrap_or_default();
        let linked = store::linked(&self.pool.get().await?, &p.idp_id, sub).await?;
        if let Some(user_id) = linked {
            self.may_sign_in(&user_id).await?;
            return Ok((user_id, false));
        }
        let base = localpart_from_template(&p.localpart_template, claims).ok_or_else(|| {
            Error::invalid_param("The identity provider gave no usable username (localpart_template)").with_status(400)
        })?;
        for n in 1..=SUFFIXES + 1 {
            let localpart = match n {
                1 => base.clone(),
                n => format!("{base}{n}"),
            };
            if check_localpart(&localpart, &self.config.server_name).is_err()
                || self.not_claimed(&localpart, None).is_err()
            {
                continue;
            }
            let user_id = self.user_id(&localpart);
            let display_name = p.display_name_claim.as_deref().and_then(|c| claims.get(c)).and_then(Value::as_str);
            match self.create_linked(p, sub, &user_id, display_name.unwrap_or(&localpart)).await {
                Ok(user_id) => return Ok((user_id, true)),
                Err(e) if e.code() == ErrorCode::UserInUse && p.allow_existing_users => {
                    self.may_sign_in(&user_id).await?;
                    let client = self.pool.get().await?;
                    if !store::link(&client, &p.idp_id, sub, &user_id).await? {
                        return self.linked_meanwhile(p, sub).await;
                    }
                    info!(user_id = %user_id, idp_id = %p.idp_id, "upstream identity linked to an existing account");
                    return Ok((user_id, false));
                }
                Err(e) if e.code() == ErrorCode::UserInUse => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::new(ErrorCode::UserInUse, "No free username was found for this sign-in").with_status(400))
    }

    /// One transaction: the account (no password), its profile and the link.
    async fn create_linked(&self, p: &OidcProvider, sub: &str, user_id: &str, display_name: &str) -> Result<String> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        users::create_user(&tx, user_id, None, false, display_name).await?;
        if !store::link(&tx, &p.idp_id, sub, user_id).await? {
            drop(tx);
            return self.linked_meanwhile(p, sub).await.map(|(u, _)| u);
        }
        tx.commit().await?;
        info!(user_id = %user_id, idp_id = %p.idp_id, "user registered through an identity provider");
        Ok(user_id.to_owned())
    }

    /// A concurrent first sign-in of the same identity linked it first: use its account.
    async fn linked_meanwhile(&self, p: &OidcProvider, sub: &str) -> Result<(String, bool)> {
        let linked = store::linked(&self.pool.get().await?, &p.idp_id, sub).await?;
        linked.map(|u| (u, false)).ok_or_else(|| Error::internal("sso link vanished"))
    }

    /// Deactivated and locked accounts do not sign in through a provider either.
    async fn may_sign_in(&self, user_id: &str) -> Result<()> {
        match users::credentials(&self.pool.get().await?, user_id).await? {
            Some(c) if c.deactivated => Err(deactivated()),
            Some(c) if c.locked => Err(locked()),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn claims(v: Value) -> Claims {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn templates_fill_claims_and_make_localparts() {
        let c = claims(json!({"preferred_username": "Alice Smith", "sub": "1234", "org": "eng", "n": 7}));
        assert_eq!(localpart_from_template("{preferred_username}", &c).as_deref(), Some("alice_smith"));
        assert_eq!(localpart_from_template("{ org }.{preferred_username}", &c).as_deref(), Some("eng.alice_smith"));
        assert_eq!(localpart_from_template("{sub}", &c).as_deref(), Some("u1234"), "digits are guests'");
        assert_eq!(localpart_from_template("x{n}", &c).as_deref(), Some("x7"));
        assert_eq!(localpart_from_template("{email}", &c), None, "a missing claim");
        assert_eq!(localpart_from_template("{preferred_username", &c), None, "unclosed");
        let odd = claims(json!({"u": "__Ünïcode"}));
        assert_eq!(localpart_from_template("{u}", &odd).as_deref(), Some("n_code"));
        assert_eq!(localpart_from_template("{u}", &claims(json!({"u": "___"}))), None);
    }
}
