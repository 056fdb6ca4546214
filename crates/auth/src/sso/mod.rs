//! Sign-in through upstream OpenID Connect providers (`docs/sso.md`): `sso_start` sends the
//! browser to the provider's authorization endpoint (code flow with `state`, `nonce` and
//! PKCE `S256`, remembered in `sso_sessions`); `sso_callback` takes the provider's answer,
//! exchanges the code, verifies the ID token (`id_token.rs`), finds or creates the account
//! (`accounts.rs`) and hands out a single-use login token for the client's `redirectUrl`
//! (classic `m.login.sso`), a browser session of the OAuth pages, or the `m.login.sso` stage
//! of a user-interactive auth session (`uia.rs`).

mod accounts;
mod cas;
pub mod id_token;
mod store;
mod uia;
mod upstream;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};
use tracing::{info, instrument, warn};
use trellis_core::{Error, Result, ids::random_string, sso::OidcProvider, time::now_ms};
use trellis_proto::auth::{SsoCallbackRequest, SsoCallbackResponse, SsoStartRequest, SsoStartResponse};

pub use accounts::localpart_from_template;
pub use upstream::Upstream;

use crate::{service::Auth, token::hash_token};

/// The two ends a sign-in may lead to.
const LOGIN: &str = "login";
const OAUTH: &str = "oauth";
const UIA: &str = "uia";
/// Whether an OAuth-page sign-in may go back to `url`: only one of our own pages, never
/// another site.
fn own_page(url: &str) -> bool {
    url.starts_with("/_trellis/") && !url.contains("//") && !url.contains('\\')
}

/// Random characters of the state, nonce and PKCE verifier (the verifier's alphabet is
/// within RFC 7636's unreserved characters, and 64 is within its 43–128).
const STATE_LEN: usize = 40;
const VERIFIER_LEN: usize = 64;

fn unknown_provider() -> Error {
    Error::not_found("Unknown identity provider")
}

fn bad_state() -> Error {
    Error::invalid_param("This sign-in is unknown, used or expired: start again").with_status(400)
}

impl Auth {
    fn sso_provider(&self, idp_id: &str) -> Result<&OidcProvider> {
        self.config.sso.provider(idp_id).ok_or_else(unknown_provider)
    }

    #[instrument(skip_all, fields(idp_id = %req.idp_id, purpose = %req.purpose))]
    pub(crate) async fn do_sso_start(&self, req: SsoStartRequest) -> Result<SsoStartResponse> {
        if req.idp_id == trellis_core::sso::CAS_IDP
            && let Some(cas) = &self.config.sso.cas
        {
            return Ok(SsoStartResponse {
                provider_url: cas::login_url(cas, &req.callback_url)?,
                state: String::new(),
            });
        }
        let p = self.sso_provider(&req.idp_id)?;
        match req.purpose.as_str() {
            LOGIN if url::Url::parse(&req.redirect_url).is_err() => {
                return Err(Error::invalid_param("redirectUrl is not an absolute URL"));
            }
            LOGIN => {}
            OAUTH if own_page(&req.redirect_url) => self.require_oauth()?,
            // `redirect_url` is the user-interactive auth session.
            UIA => self.sso_uia_session(&req.redirect_url).await?,
            _ => return Err(Error::invalid_param("Unknown sign-in purpose")),
        }
        let discovered = self.sso.discover(p).await?;
        let (state, nonce, verifier) =
            (random_string(STATE_LEN), random_string(STATE_LEN), random_string(VERIFIER_LEN));
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let mut url = url::Url::parse(&discovered.metadata.authorization_endpoint)
            .map_err(|e| upstream::provider_failed(format!("authorization endpoint: {e}")))?;
        let mut scopes: Vec<&str> = p.scopes.iter().map(String::as_str).collect();
        if !scopes.contains(&"openid") {
            scopes.insert(0, "openid");
        }
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &p.client_id)
            .append_pair("redirect_uri", &req.callback_url)
            .append_pair("scope", &scopes.join(" "))
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        let session = store::Session {
            idp_id: p.idp_id.clone(),
            nonce,
            code_verifier: verifier,
            callback_url: req.callback_url,
            purpose: req.purpose,
            redirect_url: req.redirect_url,
            expires_ts: now_ms().saturating_add(i64::try_from(self.config.sso.session_lifetime_ms).unwrap_or(i64::MAX)),
        };
        store::insert_session(&self.pool.get().await?, &hash_token(&state), &session).await?;
        Ok(SsoStartResponse { provider_url: url.into(), state })
    }

    #[instrument(skip_all)]
    pub(crate) async fn do_sso_callback(&self, req: SsoCallbackRequest) -> Result<SsoCallbackResponse> {
        if req.state.is_empty() {
            return Err(bad_state());
        }
        let state = hash_token(&req.state);
        let session = store::take_session(&self.pool.get().await?, &state).await?.ok_or_else(bad_state)?;
        // The state is bound to the browser that started (a cookie): a sign-in started
        // elsewhere and finished here would sign this browser in to someone else's account.
        if req.cookie_state.as_deref().map(hash_token) != Some(state) {
            return Err(Error::forbidden("This sign-in was not started in this browser: start again"));
        }
        if let Some(error) = &req.error {
            let why = req.error_description.as_deref().unwrap_or(error);
            return Err(Error::forbidden(format!("The identity provider did not sign you in: {why}")));
        }
        let code = req.code.as_deref().filter(|c| !c.is_empty());
        let code = code.ok_or_else(|| Error::missing_param("The provider's answer has no code"))?;
        let p = self.sso_provider(&session.idp_id)?;
        let discovered = self.sso.discover(p).await?;
        let tokens = self.sso.exchange(p, &discovered, code, &session.code_verifier, &session.callback_url).await?;
        let id_token = tokens.id_token.ok_or_else(|| upstream::provider_failed("no ID token in its answer"))?;
        let expected =
            id_token::Expected { issuer: &discovered.metadata.issuer, client_id: &p.client_id, nonce: &session.nonce };
        let verified = match id_token::verify(&id_token, &discovered.jwks, &expected) {
            Err(id_token::Refusal::UnknownKey) => {
                let fresh = self.sso.rediscover(p).await?;
                id_token::verify(&id_token, &fresh.jwks, &expected)
            }
            other => other,
        };
        let mut claims = verified.map_err(|refusal| {
            let why = match refusal {
                id_token::Refusal::UnknownKey => "the ID token is signed by an unknown key".to_owned(),
                id_token::Refusal::Invalid(why) => why,
            };
            warn!(idp_id = %p.idp_id, why = %why, "ID token refused");
            Error::forbidden(format!("The identity provider's answer was refused: {why}"))
        })?;
        if let Some(access_token) = &tokens.access_token {
            self.merge_userinfo(p, &discovered, access_token, &mut claims).await;
        }
        if session.purpose == UIA {
            return self.sso_uia_complete(p, &claims, &session.redirect_url).await;
        }
        let (user_id, created) = self.sso_account(p, &claims).await?;
        info!(user_id = %user_id, idp_id = %p.idp_id, created, "signed in through an identity provider");
        self.sso_finish(session, user_id, created).await
    }

    /// Claims the template or the display name need and the ID token lacks (providers such
    /// as `oidc-provider` keep profile claims for the userinfo endpoint), when it answers for
    /// the same subject.
    async fn merge_userinfo(
        &self,
        p: &OidcProvider,
        d: &upstream::Discovered,
        token: &str,
        claims: &mut id_token::Claims,
    ) {
        let template_claims =
            p.localpart_template.split('{').skip(1).filter_map(|s| s.split('}').next()).map(str::trim);
        let wanted: Vec<&str> = template_claims.chain(p.display_name_claim.as_deref()).collect();
        if wanted.iter().all(|c| claims.contains_key(*c)) {
            return;
        }
        match self.sso.userinfo(d, token).await {
            Ok(info) if info.get("sub") == claims.get("sub") => {
                for (k, v) in info {
                    claims.entry(k).or_insert(v);
                }
            }
            Ok(_) => warn!(idp_id = %p.idp_id, "userinfo is for another subject: ignored"),
            Err(e) => warn!(idp_id = %p.idp_id, error = %e, "userinfo failed"),
        }
    }

    async fn sso_finish(&self, session: store::Session, user_id: String, created: bool) -> Result<SsoCallbackResponse> {
        let mut out = SsoCallbackResponse { user_id, purpose: session.purpose, created, ..Default::default() };
        if out.purpose == OAUTH {
            out.session_token = Some(self.open_browser_session(&out.user_id).await?);
            out.redirect_url = session.redirect_url;
            return Ok(out);
        }
        self.login_redirect(out, &session.redirect_url).await
    }

    /// A single-use login token for `out.user_id` on the client's `redirect_url`, and
    /// whether the user must confirm going there.
    async fn login_redirect(&self, mut out: SsoCallbackResponse, redirect_url: &str) -> Result<SsoCallbackResponse> {
        let lifetime = self.config.login_token_lifetime;
        let token = crate::login_token::insert(&self.pool.get().await?, &out.user_id, lifetime).await?;
        let mut url =
            url::Url::parse(redirect_url).map_err(|_| Error::invalid_param("redirectUrl is not an absolute URL"))?;
        url.query_pairs_mut().append_pair("loginToken", &token);
        out.confirm = !self.config.sso.client_whitelist.iter().any(|w| redirect_url.starts_with(w.as_str()));
        out.redirect_url = url.into();
        Ok(out)
    }
}
