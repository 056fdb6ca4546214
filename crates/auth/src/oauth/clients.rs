//! Dynamic client registration (RFC 7591 with the spec's rules): public clients only
//! (`token_endpoint_auth_method: none`), `client_uri` required and `https`, every other URI
//! on its host or a subdomain, redirect URIs checked by `application_type` (web: `https`;
//! native: a private-use scheme in the reverse-DNS of the client's host, `http` on the
//! loopback interface without a port, or a claimed `https` URI).

use deadpool_postgres::GenericClient;
use tracing::{info, instrument};
use trellis_core::{Result, ids::random_string, time::now_ms};
use trellis_proto::auth::{OauthClient, OauthClientMetadata};
use url::{Host, Url};

use super::{invalid_client, oauth_error};
use crate::service::Auth;

const INSERT: &str =
    "INSERT INTO oauth_clients (client_id, metadata, redirect_uris, created_ts) VALUES ($1, $2, $3, $4)";
const SELECT: &str = "SELECT metadata, created_ts FROM oauth_clients WHERE client_id = $1";

pub const AUTHORIZATION_CODE: &str = "authorization_code";
pub const REFRESH_TOKEN: &str = "refresh_token";
pub const DEVICE_CODE: &str = "urn:ietf:params:oauth:grant-type:device_code";
const GRANT_TYPES: [&str; 3] = [AUTHORIZATION_CODE, REFRESH_TOKEN, DEVICE_CODE];

fn invalid_metadata(description: &str) -> trellis_core::Error {
    oauth_error("invalid_client_metadata", 400, description)
}

fn invalid_redirect_uri(description: &str) -> trellis_core::Error {
    oauth_error("invalid_redirect_uri", 400, description)
}

/// A URI of the client's metadata: `https`, no user or password.
fn https_uri(uri: &str, field: &str) -> Result<Url> {
    let url = Url::parse(uri).map_err(|_| invalid_metadata(&format!("{field} is not a valid URI")))?;
    if url.scheme() != "https" || !url.username().is_empty() || url.password().is_some() || url.host().is_none() {
        return Err(invalid_metadata(&format!("{field} must be an https URI without credentials")));
    }
    Ok(url)
}

/// Whether `host` is `base` or one of its subdomains.
fn on_host(host: &str, base: &str) -> bool {
    host == base || host.strip_suffix(base).is_some_and(|rest| rest.ends_with('.'))
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d == "localhost",
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Checks one redirect URI against the client's host and type.
pub fn check_redirect_uri(uri: &str, client_host: &str, native: bool) -> Result<()> {
    let url = Url::parse(uri).map_err(|_| invalid_redirect_uri("A redirect URI is not a valid URI"))?;
    if url.fragment().is_some() {
        return Err(invalid_redirect_uri("A redirect URI must not have a fragment"));
    }
    let web_rules = || {
        let ok = url.scheme() == "https"
            && url.username().is_empty()
            && url.password().is_none()
            && url.host_str().is_some_and(|h| on_host(h, client_host));
        ok.then_some(()).ok_or_else(|| invalid_redirect_uri("A redirect URI must be https on the client's host"))
    };
    if !native {
        return web_rules();
    }
    match url.scheme() {
        "https" => web_rules(),
        "http" if is_loopback(&url) && url.port().is_none() => Ok(()),
        "http" => Err(invalid_redirect_uri("An http redirect URI must be on the loopback interface, without a port")),
        scheme => {
            let reversed: Vec<&str> = client_host.split('.').rev().collect();
            let reversed = reversed.join(".");
            let prefixed =
                scheme == reversed || scheme.strip_prefix(reversed.as_str()).is_some_and(|r| r.starts_with('.'));
            // The serialised URI starts with the scheme and its colon.
            let authority = url.as_str().get(scheme.len() + 1..).is_some_and(|rest| rest.starts_with("//"));
            if !prefixed || url.has_host() || authority {
                return Err(invalid_redirect_uri(
                    "A private-use redirect URI must use the client's reverse-DNS name as its scheme, without an authority",
                ));
            }
            Ok(())
        }
    }
}

/// The metadata to register: checked, with the defaults filled in and what Trellis does not
/// understand dropped.
pub fn check_metadata(mut m: OauthClientMetadata) -> Result<OauthClientMetadata> {
    let client_uri = m.client_uri.as_deref().ok_or_else(|| invalid_metadata("client_uri is required"))?;
    let client_host = https_uri(client_uri, "client_uri")?.host_str().unwrap_or_default().to_owned();
    for (field, uri) in [("logo_uri", &m.logo_uri), ("tos_uri", &m.tos_uri), ("policy_uri", &m.policy_uri)] {
        if let Some(uri) = uri
            && !https_uri(uri, field)?.host_str().is_some_and(|h| on_host(h, &client_host))
        {
            return Err(invalid_metadata(&format!("{field} must be on the client_uri's host")));
        }
    }
    let native = match m.application_type.as_deref() {
        None | Some("web") => false,
        Some("native") => true,
        Some(_) => return Err(invalid_metadata("application_type must be web or native")),
    };
    m.application_type = Some(if native { "native" } else { "web" }.to_owned());
    match m.token_endpoint_auth_method.as_deref() {
        None | Some("none") => m.token_endpoint_auth_method = Some("none".to_owned()),
        Some(_) => return Err(invalid_metadata("Only public clients (token_endpoint_auth_method none) are supported")),
    }
    if !m.has_grant_types {
        m.grant_types = vec![AUTHORIZATION_CODE.to_owned()];
    }
    m.grant_types.retain(|g| GRANT_TYPES.contains(&g.as_str()));
    m.grant_types.dedup();
    if !m.has_response_types {
        m.response_types = vec!["code".to_owned()];
    }
    m.response_types.retain(|r| r == "code");
    m.response_types.dedup();
    let uses_code = m.grant_types.iter().any(|g| g == AUTHORIZATION_CODE);
    if uses_code && m.response_types.is_empty() {
        return Err(invalid_metadata("The authorization_code grant needs the code response type"));
    }
    if uses_code && m.redirect_uris.is_empty() {
        return Err(invalid_redirect_uri("The authorization_code grant needs a redirect URI"));
    }
    for uri in &m.redirect_uris {
        check_redirect_uri(uri, &client_host, native)?;
    }
    m.has_grant_types = true;
    m.has_response_types = true;
    Ok(m)
}

/// Whether `given` is one of the registered redirect URIs; a loopback `http` URI matches
/// with any port (RFC 8252 §7.3).
pub fn redirect_uri_matches(registered: &[String], given: &str) -> bool {
    if registered.iter().any(|r| r == given) {
        return true;
    }
    let Ok(mut url) = Url::parse(given) else { return false };
    if url.scheme() != "http" || !is_loopback(&url) || url.port().is_none() {
        return false;
    }
    if url.set_port(None).is_err() {
        return false;
    }
    registered.iter().any(|r| Url::parse(r).is_ok_and(|r| r == url))
}

/// A registered client, or `invalid_client`.
pub async fn load(c: &impl GenericClient, client_id: &str) -> Result<OauthClient> {
    let stmt = c.prepare_cached(SELECT).await?;
    let row = c.query_opt(&stmt, &[&client_id]).await?.ok_or_else(|| invalid_client("Unknown client"))?;
    let metadata: serde_json::Value = row.get(0);
    Ok(OauthClient {
        client_id: client_id.to_owned(),
        metadata: Some(from_json(&metadata)?),
        client_id_issued_at: row.get::<_, i64>(1) / 1000,
    })
}

fn to_json(m: &OauthClientMetadata) -> serde_json::Value {
    serde_json::json!({
        "redirect_uris": m.redirect_uris, "client_uri": m.client_uri, "client_name": m.client_name,
        "logo_uri": m.logo_uri, "tos_uri": m.tos_uri, "policy_uri": m.policy_uri,
        "grant_types": m.grant_types, "response_types": m.response_types,
        "token_endpoint_auth_method": m.token_endpoint_auth_method, "application_type": m.application_type,
    })
}

fn from_json(v: &serde_json::Value) -> Result<OauthClientMetadata> {
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    let list = |k: &str| -> Vec<String> {
        v.get(k)
            .and_then(|x| x.as_array())
            .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    };
    Ok(OauthClientMetadata {
        redirect_uris: list("redirect_uris"),
        client_uri: s("client_uri"),
        client_name: s("client_name"),
        logo_uri: s("logo_uri"),
        tos_uri: s("tos_uri"),
        policy_uri: s("policy_uri"),
        grant_types: list("grant_types"),
        response_types: list("response_types"),
        token_endpoint_auth_method: s("token_endpoint_auth_method"),
        application_type: s("application_type"),
        has_grant_types: true,
        has_response_types: true,
    })
}

impl Auth {
    #[instrument(skip_all)]
    pub(crate) async fn do_oauth_register_client(&self, req: OauthClientMetadata) -> Result<OauthClient> {
        self.require_oauth()?;
        let metadata = check_metadata(req)?;
        let client_id = random_string(16);
        let now = now_ms();
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(INSERT).await?;
        client.execute(&stmt, &[&client_id, &to_json(&metadata), &metadata.redirect_uris, &now]).await?;
        info!(client_id = %client_id, client_uri = metadata.client_uri.as_deref(), "oauth client registered");
        Ok(OauthClient { client_id, metadata: Some(metadata), client_id_issued_at: now / 1000 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(client_uri: &str, native: bool, redirect: &[&str]) -> OauthClientMetadata {
        OauthClientMetadata {
            client_uri: Some(client_uri.into()),
            application_type: native.then(|| "native".into()),
            redirect_uris: redirect.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn error_of(m: OauthClientMetadata) -> String {
        check_metadata(m).unwrap_err().client_body()["oauth_error"].as_str().unwrap().to_owned()
    }

    #[test]
    fn the_spec_examples_of_redirect_uris() {
        for ok in [
            "https://example.com/callback",
            "https://app.example.com/callback",
            "https://example.com:5173/?query=value",
        ] {
            check_metadata(meta("https://example.com/", false, &[ok])).unwrap();
        }
        for bad in [
            "https://example.com/callback#fragment",
            "http://example.com/callback",
            "http://localhost/",
            "https://app.com/cb",
        ] {
            assert_eq!(error_of(meta("https://example.com/", false, &[bad])), "invalid_redirect_uri", "{bad}");
        }
        for ok in [
            "com.example.app:/callback",
            "com.example:/",
            "com.example:callback",
            "http://localhost/callback",
            "http://127.0.0.1/callback",
            "http://[::1]/callback",
            "https://example.com/cb",
        ] {
            check_metadata(meta("https://example.com/", true, &[ok])).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "example:/callback",
            "com.example.app://callback",
            "https://localhost/callback",
            "http://localhost:1234/callback",
        ] {
            assert_eq!(error_of(meta("https://example.com/", true, &[bad])), "invalid_redirect_uri", "{bad}");
        }
    }

    #[test]
    fn client_metadata_rules() {
        assert_eq!(error_of(OauthClientMetadata::default()), "invalid_client_metadata");
        assert_eq!(
            error_of(meta("http://example.com/", false, &["https://example.com/cb"])),
            "invalid_client_metadata"
        );
        assert_eq!(error_of(meta("https://example.com/", false, &[])), "invalid_redirect_uri");
        let mut secret = meta("https://example.com/", false, &["https://example.com/cb"]);
        secret.token_endpoint_auth_method = Some("client_secret_basic".into());
        assert_eq!(error_of(secret), "invalid_client_metadata");
        let mut logo = meta("https://example.com/", false, &["https://example.com/cb"]);
        logo.logo_uri = Some("https://elsewhere.org/logo.png".into());
        assert_eq!(error_of(logo), "invalid_client_metadata");
        let mut grants = meta("https://example.com/", false, &["https://example.com/cb"]);
        grants.has_grant_types = true;
        grants.grant_types = vec![
            AUTHORIZATION_CODE.into(),
            REFRESH_TOKEN.into(),
            "urn:ietf:params:oauth:grant-type:token-exchange".into(),
        ];
        let checked = check_metadata(grants).unwrap();
        assert_eq!(checked.grant_types, [AUTHORIZATION_CODE, REFRESH_TOKEN]);
        assert_eq!(checked.token_endpoint_auth_method.as_deref(), Some("none"));
        assert_eq!(checked.application_type.as_deref(), Some("web"));
    }

    #[test]
    fn loopback_redirects_match_any_port() {
        let registered = vec!["http://127.0.0.1/callback".to_owned(), "com.example:/cb".to_owned()];
        assert!(redirect_uri_matches(&registered, "http://127.0.0.1:4567/callback"));
        assert!(redirect_uri_matches(&registered, "com.example:/cb"));
        assert!(!redirect_uri_matches(&registered, "http://127.0.0.1:4567/other"));
        assert!(!redirect_uri_matches(&registered, "com.example:/cb2"));
    }
}
