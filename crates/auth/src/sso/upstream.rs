//! Talking to a provider: discovery (`{issuer}/.well-known/openid-configuration`) and its
//! JWKS, cached for an hour and fetched again when an ID token names a key not in them; the
//! code exchange at the token endpoint; the userinfo endpoint for claims the ID token lacks.
//! A provider that cannot be reached or answers nonsense is 502, never 500.

use std::{sync::Arc, time::Duration};

use jsonwebtoken::jwk::JwkSet;
use serde::Deserialize;
use serde_json::Value;
use trellis_core::{Error, ErrorCode, Result, sso::OidcProvider};

/// How long discovery and keys are trusted before they are fetched again.
const CACHE_TTL: Duration = Duration::from_secs(3600);
/// How long a request to a provider may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The part of the provider's metadata a sign-in uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
}

/// A provider's metadata and keys as last fetched.
pub struct Discovered {
    pub metadata: Metadata,
    pub jwks: JwkSet,
}

/// The token endpoint's answer.
#[derive(Debug, Deserialize)]
pub struct Tokens {
    pub id_token: Option<String>,
    pub access_token: Option<String>,
}

/// The HTTP client and the per-provider cache (keyed by `idp_id`).
pub struct Upstream {
    http: std::sync::OnceLock<reqwest::Client>,
    cache: moka::future::Cache<String, Arc<Discovered>>,
}

impl Default for Upstream {
    fn default() -> Upstream {
        Upstream {
            http: std::sync::OnceLock::new(),
            cache: moka::future::Cache::builder().time_to_live(CACHE_TTL).max_capacity(64).build(),
        }
    }
}

/// The provider failed us (unreachable, an error status, a body we cannot read).
pub fn provider_failed(what: impl std::fmt::Display) -> Error {
    Error::new(ErrorCode::Unknown, format!("The identity provider could not be used: {what}")).with_status(502)
}

impl Upstream {
    /// Made on first use: most servers never sign anyone in through a provider.
    fn http(&self) -> &reqwest::Client {
        self.http.get_or_init(|| reqwest::Client::builder().timeout(TIMEOUT).build().unwrap_or_default())
    }

    /// The provider's metadata and keys, from the cache or fetched.
    pub async fn discover(&self, p: &OidcProvider) -> Result<Arc<Discovered>> {
        if let Some(found) = self.cache.get(&p.idp_id).await {
            return Ok(found);
        }
        let found = Arc::new(self.fetch(p).await?);
        self.cache.insert(p.idp_id.clone(), found.clone()).await;
        Ok(found)
    }

    /// Forgets the cached keys and fetches them again (a `kid` we do not know yet).
    pub async fn rediscover(&self, p: &OidcProvider) -> Result<Arc<Discovered>> {
        self.cache.invalidate(&p.idp_id).await;
        self.discover(p).await
    }

    async fn fetch(&self, p: &OidcProvider) -> Result<Discovered> {
        let url = format!("{}/.well-known/openid-configuration", p.issuer.trim_end_matches('/'));
        let metadata: Metadata = self.get_json(&url, None).await?;
        if metadata.issuer.trim_end_matches('/') != p.issuer.trim_end_matches('/') {
            return Err(provider_failed(format!("its discovery names issuer {:?}", metadata.issuer)));
        }
        let jwks: JwkSet = self.get_json(&metadata.jwks_uri, None).await?;
        Ok(Discovered { metadata, jwks })
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str, bearer: Option<&str>) -> Result<T> {
        let mut req = self.http().get(url).header("accept", "application/json");
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.map_err(|e| provider_failed(format!("{url}: {e}")))?;
        if !resp.status().is_success() {
            return Err(provider_failed(format!("{url} answered {}", resp.status())));
        }
        resp.json().await.map_err(|e| provider_failed(format!("{url}: {e}")))
    }

    /// Exchanges an authorization code (with its PKCE verifier). A refusal by the provider
    /// (a used or forged code) is 403; failing to reach it, 502.
    pub async fn exchange(
        &self,
        p: &OidcProvider,
        d: &Discovered,
        code: &str,
        verifier: &str,
        callback: &str,
    ) -> Result<Tokens> {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", callback),
            ("code_verifier", verifier),
        ];
        let post_secret = p.client_auth_method == "client_secret_post";
        let secret = p.client_secret.as_deref();
        if post_secret || secret.is_none() {
            form.push(("client_id", &p.client_id));
        }
        if let (true, Some(secret)) = (post_secret, secret) {
            form.push(("client_secret", secret));
        }
        let body = serde_urlencoded::to_string(&form).map_err(Error::internal)?;
        let mut req = self
            .http()
            .post(&d.metadata.token_endpoint)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body);
        if let (false, Some(secret)) = (post_secret, secret) {
            // RFC 6749 §2.3.1: both parts form-encoded before Basic.
            req = req.basic_auth(form_encode(&p.client_id), Some(form_encode(secret)));
        }
        let resp = req.send().await.map_err(|e| provider_failed(format!("token endpoint: {e}")))?;
        let status = resp.status();
        if status.is_client_error() {
            let body: Value = resp.json().await.unwrap_or_default();
            let error = body.get("error").and_then(Value::as_str).unwrap_or("refused");
            return Err(Error::forbidden(format!("The identity provider did not accept the sign-in ({error})")));
        }
        if !status.is_success() {
            return Err(provider_failed(format!("token endpoint answered {status}")));
        }
        resp.json().await.map_err(|e| provider_failed(format!("token endpoint: {e}")))
    }

    /// A text answer (a CAS server's validation).
    pub async fn get_text(&self, url: &str) -> Result<String> {
        let resp = self.http().get(url).send().await.map_err(|e| provider_failed(format!("{url}: {e}")))?;
        if !resp.status().is_success() {
            return Err(provider_failed(format!("{url} answered {}", resp.status())));
        }
        resp.text().await.map_err(|e| provider_failed(format!("{url}: {e}")))
    }

    /// The userinfo endpoint's claims (for claims the ID token does not carry).
    pub async fn userinfo(&self, d: &Discovered, access_token: &str) -> Result<serde_json::Map<String, Value>> {
        let Some(url) = &d.metadata.userinfo_endpoint else { return Ok(Default::default()) };
        self.get_json(url, Some(access_token)).await
    }
}

fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
