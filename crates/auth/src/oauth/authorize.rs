//! Authorization requests (RFC 6749 §4.1 with PKCE S256, RFC 7636): checked when the browser
//! arrives and again when the signed-in user consents; consent issues a short-lived,
//! single-use code bound to the client, the redirect URI, the PKCE challenge, the scope and
//! the user, and sends the browser back with `code` and `state` in the query or the fragment.

use deadpool_postgres::GenericClient;
use tracing::{info, instrument};
use trellis_core::{Result, ids::random_string, time::now_ms};
use trellis_proto::auth::{OauthAuthorizationCheck, OauthAuthorizationRequest, OauthGrantCodeRequest, OauthRedirect};
use url::Url;

use super::{
    clients::{self, AUTHORIZATION_CODE},
    ms, oauth_error,
    scope::{self, Scope},
};
use crate::{service::Auth, token::hash_token};

const INSERT_CODE: &str = "INSERT INTO oauth_grants (code_hash, kind, client_id, redirect_uri, code_challenge, scope, \
                           device_id, user_id, status, expires_ts) VALUES ($1, 'code', $2, $3, $4, $5, $6, $7, 'approved', $8)";

/// An RFC 7636 S256 challenge: the unpadded base64url of a SHA-256.
const CHALLENGE_LEN: usize = 43;

/// The browser's way back to the client: `params` in the redirect URI's query or fragment.
pub fn redirect_to(redirect_uri: &str, response_mode: Option<&str>, params: &[(&str, &str)]) -> String {
    let Ok(mut url) = Url::parse(redirect_uri) else { return redirect_uri.to_owned() };
    if response_mode == Some("fragment") {
        let mut fragment = url::form_urlencoded::Serializer::new(String::new());
        fragment.extend_pairs(params);
        url.set_fragment(Some(&fragment.finish()));
    } else {
        url.query_pairs_mut().extend_pairs(params);
    }
    url.to_string()
}

/// A request that passed: what it asks for.
pub struct Checked {
    pub client: trellis_proto::auth::OauthClient,
    pub scope: Scope,
}

/// A request refused before the redirect URI is trusted (`Err`), or after (`Ok(Err(url))`:
/// the browser goes back to the client with the error).
pub async fn check(c: &impl GenericClient, req: &OauthAuthorizationRequest) -> Result<Result<Checked, String>> {
    let client = clients::load(c, &req.client_id).await?;
    let metadata = client.metadata.clone().unwrap_or_default();
    if !clients::redirect_uri_matches(&metadata.redirect_uris, &req.redirect_uri) {
        return Err(oauth_error("invalid_redirect_uri", 400, "The redirect URI is not registered for this client"));
    }
    let mode = req.response_mode.as_deref();
    let refuse = |error: &str, description: &str| {
        let mut params = vec![("error", error), ("error_description", description)];
        if let Some(state) = req.state.as_deref() {
            params.push(("state", state));
        }
        Ok(Err(redirect_to(&req.redirect_uri, mode.filter(|m| *m == "fragment"), &params)))
    };
    if !matches!(mode, None | Some("query") | Some("fragment")) {
        return refuse("invalid_request", "response_mode must be query or fragment");
    }
    if req.response_type != "code" {
        return refuse("unsupported_response_type", "Only the code response type is supported");
    }
    if !metadata.grant_types.iter().any(|g| g == AUTHORIZATION_CODE) {
        return refuse("unauthorized_client", "The client did not register the authorization_code grant");
    }
    if req.code_challenge_method != "S256" {
        return refuse("invalid_request", "PKCE with code_challenge_method S256 is required");
    }
    let challenge_ok = req.code_challenge.len() == CHALLENGE_LEN
        && req.code_challenge.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !challenge_ok {
        return refuse("invalid_request", "code_challenge is not an S256 challenge");
    }
    match scope::parse(&req.scope) {
        Ok(scope) => Ok(Ok(Checked { client, scope })),
        Err(e) => refuse("invalid_scope", &e.matrix().map(|m| m.message.clone()).unwrap_or_default()),
    }
}

impl Auth {
    #[instrument(skip_all, fields(client_id = %req.client_id))]
    pub(crate) async fn do_oauth_check_authorization(
        &self,
        req: OauthAuthorizationRequest,
    ) -> Result<OauthAuthorizationCheck> {
        self.require_oauth()?;
        let client = self.pool.get().await?;
        Ok(match check(&client, &req).await? {
            Err(redirect) => OauthAuthorizationCheck { error_redirect: Some(redirect), ..Default::default() },
            Ok(checked) => {
                let metadata = checked.client.metadata.unwrap_or_default();
                OauthAuthorizationCheck {
                    error_redirect: None,
                    client_name: metadata.client_name.unwrap_or_else(|| checked.client.client_id.clone()),
                    client_uri: metadata.client_uri.unwrap_or_default(),
                    device_id: checked.scope.device_id,
                    scopes: checked.scope.tokens,
                }
            }
        })
    }

    #[instrument(skip_all, fields(user_id = tracing::field::Empty))]
    pub(crate) async fn do_oauth_grant_code(&self, req: OauthGrantCodeRequest) -> Result<OauthRedirect> {
        self.require_oauth()?;
        let auth = req.authorization.unwrap_or_default();
        let user_id = self.browser_user(&req.session_token).await?;
        tracing::Span::current().record("user_id", user_id.as_str());
        let client = self.pool.get().await?;
        let checked = match check(&client, &auth).await? {
            Err(redirect_to) => return Ok(OauthRedirect { redirect_to }),
            Ok(checked) => checked,
        };
        if req.deny {
            let mut params = vec![("error", "access_denied"), ("error_description", "The user denied the request")];
            if let Some(state) = auth.state.as_deref() {
                params.push(("state", state));
            }
            return Ok(OauthRedirect {
                redirect_to: redirect_to(&auth.redirect_uri, auth.response_mode.as_deref(), &params),
            });
        }
        let code = random_string(40);
        let expires = now_ms().saturating_add(ms(self.config.oauth.code_lifetime_ms));
        let stmt = client.prepare_cached(INSERT_CODE).await?;
        let hash = hash_token(&code);
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 8] = [
            &hash.as_slice(),
            &auth.client_id,
            &auth.redirect_uri,
            &auth.code_challenge,
            &checked.scope.as_string(),
            &checked.scope.device_id,
            &user_id,
            &expires,
        ];
        client.execute(&stmt, &params).await?;
        info!(user_id = %user_id, client_id = %auth.client_id, device_id = %checked.scope.device_id, "oauth code issued");
        let mut params = vec![("code", code.as_str())];
        if let Some(state) = auth.state.as_deref() {
            params.push(("state", state));
        }
        Ok(OauthRedirect { redirect_to: redirect_to(&auth.redirect_uri, auth.response_mode.as_deref(), &params) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_in_query_or_fragment() {
        let q = redirect_to("https://app.example.com/cb?x=1", None, &[("code", "c d"), ("state", "s")]);
        assert_eq!(q, "https://app.example.com/cb?x=1&code=c+d&state=s");
        let f = redirect_to("com.example:/cb", Some("fragment"), &[("code", "c"), ("state", "s")]);
        assert_eq!(f, "com.example:/cb#code=c&state=s");
    }
}
