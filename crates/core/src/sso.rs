//! `[sso]`: sign-in through upstream OpenID Connect providers (`docs/sso.md`).

use serde::{Deserialize, Serialize};

/// `[sso]`: the providers, and which client URLs get a login token without a confirmation page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SsoConfig {
    /// The providers, each a `[[sso.oidc_providers]]` table. None: no `m.login.sso`.
    pub oidc_providers: Vec<OidcProvider>,
    /// Prefixes of client `redirectUrl`s trusted to receive a login token at once; any other
    /// URL gets a page that names it and asks the user to continue (no open redirect of a
    /// login token to a site the user did not mean to sign in to).
    pub client_whitelist: Vec<String>,
    /// How long a sign-in may stay at the provider, in milliseconds.
    pub session_lifetime_ms: u64,
    /// A CAS server (`m.login.cas`, and the provider `cas` of `m.login.sso`).
    pub cas: Option<CasConfig>,
}

/// `[sso.cas]`: sign-in through a CAS server (protocol 2.0/3.0 `proxyValidate`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CasConfig {
    /// The server's base URL: `{server_url}/login` and `{server_url}/proxyValidate`.
    pub server_url: String,
    /// The name shown for it.
    #[serde(default = "default_cas_name")]
    pub idp_name: String,
}

fn default_cas_name() -> String {
    "CAS".into()
}

/// The `idp_id` CAS answers to.
pub const CAS_IDP: &str = "cas";

impl Default for SsoConfig {
    fn default() -> SsoConfig {
        SsoConfig {
            oidc_providers: Vec::new(),
            client_whitelist: Vec::new(),
            session_lifetime_ms: DEFAULT_SESSION_LIFETIME_MS,
            cas: None,
        }
    }
}

impl SsoConfig {
    pub fn provider(&self, idp_id: &str) -> Option<&OidcProvider> {
        self.oidc_providers.iter().find(|p| p.idp_id == idp_id)
    }

    /// Problems that make the configuration unusable: an `idp_id` outside the spec's grammar
    /// (1–255 of `[A-Za-z0-9._~-]`) or used twice, a template without a claim.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, p) in self.oidc_providers.iter().enumerate() {
            let ok = (1..=255).contains(&p.idp_id.len())
                && p.idp_id.chars().all(|c| c.is_ascii_alphanumeric() || "._~-".contains(c));
            if !ok {
                out.push(format!("sso.oidc_providers: idp_id {:?} is not 1-255 of [A-Za-z0-9._~-]", p.idp_id));
            }
            if self.oidc_providers[..i].iter().any(|q| q.idp_id == p.idp_id)
                || (p.idp_id == CAS_IDP && self.cas.is_some())
            {
                out.push(format!("sso.oidc_providers: idp_id {:?} is used twice", p.idp_id));
            }
            if !p.localpart_template.contains('{') {
                out.push(format!("sso.oidc_providers.{}: localpart_template names no claim", p.idp_id));
            }
        }
        out
    }

    /// Any provider, OpenID Connect or CAS.
    pub fn enabled(&self) -> bool {
        !self.oidc_providers.is_empty() || self.cas.is_some()
    }
}

/// One upstream OpenID Connect provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcProvider {
    /// Its ID in `/login`'s `identity_providers` and `/login/sso/redirect/{idpId}`, and in
    /// the stored links; do not change it once users have signed in.
    pub idp_id: String,
    /// The name shown to users.
    pub idp_name: String,
    /// An `mxc://` icon shown by clients.
    #[serde(default)]
    pub idp_icon: Option<String>,
    /// The issuer URL: discovery reads `{issuer}/.well-known/openid-configuration`, and the
    /// ID token's `iss` must equal it.
    pub issuer: String,
    pub client_id: String,
    /// Sent with HTTP Basic authentication to the token endpoint (`client_secret_basic`), or
    /// in the form body when `client_auth_method = "client_secret_post"`.
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default = "default_client_auth")]
    pub client_auth_method: String,
    /// Scopes asked for; `openid` is added when missing.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// The new account's localpart: `{claim}` is replaced by that ID-token claim (lower
    /// case; characters a localpart may not hold become `_`).
    #[serde(default = "default_localpart_template")]
    pub localpart_template: String,
    /// The claim whose value becomes a new account's display name.
    #[serde(default = "default_display_name_claim")]
    pub display_name_claim: Option<String>,
    /// A first sign-in whose localpart belongs to an existing account links to it (only for
    /// providers you trust to vouch for those names). Off: a number is appended instead.
    #[serde(default)]
    pub allow_existing_users: bool,
}

fn default_client_auth() -> String {
    "client_secret_basic".into()
}

fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "profile".into()]
}

fn default_localpart_template() -> String {
    "{preferred_username}".into()
}

fn default_display_name_claim() -> Option<String> {
    Some("name".into())
}

/// How long a sign-in may stay at the provider by default (10 minutes).
pub const DEFAULT_SESSION_LIFETIME_MS: u64 = 600_000;

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(id: &str) -> OidcProvider {
        OidcProvider {
            idp_id: id.into(),
            idp_name: "Example".into(),
            idp_icon: None,
            issuer: "https://id.example.org".into(),
            client_id: "trellis".into(),
            client_secret: None,
            client_auth_method: default_client_auth(),
            scopes: default_scopes(),
            localpart_template: default_localpart_template(),
            display_name_claim: default_display_name_claim(),
            allow_existing_users: false,
        }
    }

    #[test]
    fn idp_ids_follow_the_spec_grammar_once_each() {
        let good = SsoConfig { oidc_providers: vec![provider("corp"), provider("git.hub~1")], ..Default::default() };
        assert!(good.problems().is_empty(), "{:?}", good.problems());
        assert_eq!(good.provider("corp").map(|p| p.idp_id.as_str()), Some("corp"));
        let bad = SsoConfig {
            oidc_providers: vec![provider("a b"), provider(""), provider("x"), provider("x")],
            ..Default::default()
        };
        assert_eq!(bad.problems().len(), 3, "{:?}", bad.problems());
    }
}
