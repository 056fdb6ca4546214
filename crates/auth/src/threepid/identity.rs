//! Identity servers, as the client names them (`id_server`, `id_access_token`): binding a
//! validated 3PID to the user and unbinding it (identity service API v2, `/3pid/bind` and
//! `/3pid/unbind`), as Synapse proxies them.

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use trellis_core::{Error, ErrorCode, Result, ids::identity_server_base as base};

/// How long an identity server may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A client for identity servers; with `insecure` (test suites only) it checks no certificate.
pub(crate) fn client(insecure: bool) -> reqwest::Client {
    if insecure {
        tracing::warn!("identity servers' TLS certificates are not checked (a testing setting)");
    }
    reqwest::Client::builder().timeout(TIMEOUT).tls_danger_accept_invalid_certs(insecure).build().unwrap_or_default()
}

/// What `/3pid/bind` answers: the 3PID it bound.
#[derive(Deserialize)]
pub struct Bound {
    pub medium: String,
    pub address: String,
}

/// Asks the identity server to bind its validated session to `mxid`.
pub async fn bind(
    http: &reqwest::Client,
    id_server: &str,
    id_access_token: &str,
    sid: &str,
    client_secret: &str,
    mxid: &str,
) -> Result<Bound> {
    let url = format!("{}/_matrix/identity/v2/3pid/bind", base(id_server)?);
    let body = json!({ "sid": sid, "client_secret": client_secret, "mxid": mxid });
    let answer = http
        .post(&url)
        .bearer_auth(id_access_token)
        .json(&body)
        .send()
        .await
        .map_err(|e| unreachable(id_server, e.to_string()))?;
    if !answer.status().is_success() {
        let status = answer.status();
        tracing::info!(id_server, %status, "identity server refused a bind");
        return Err(Error::new(ErrorCode::ThreepidAuthFailed, "The identity server refused to bind the 3PID"));
    }
    answer.json().await.map_err(|e| unreachable(id_server, e.to_string()))
}

/// Asks the identity server to unbind a 3PID from `mxid`: whether it did (an identity server
/// that does not know the binding, or cannot be reached, did not).
pub async fn unbind(http: &reqwest::Client, id_server: &str, mxid: &str, medium: &str, address: &str) -> bool {
    let Ok(base) = base(id_server) else { return false };
    let body = json!({ "mxid": mxid, "threepid": { "medium": medium, "address": address } });
    match http.post(format!("{base}/_matrix/identity/v2/3pid/unbind")).json(&body).send().await {
        Ok(answer) if answer.status().is_success() => true,
        Ok(answer) => {
            tracing::info!(id_server, status = %answer.status(), "identity server refused an unbind");
            false
        }
        Err(e) => {
            tracing::warn!(id_server, error = %e, "identity server unreachable for an unbind");
            false
        }
    }
}

/// What `/hash_details` answers.
#[derive(Deserialize)]
struct HashDetails {
    #[serde(default)]
    algorithms: Vec<String>,
    #[serde(default)]
    lookup_pepper: String,
}

/// `/lookup`'s answer (some identity servers answer an unknown address with `null`).
#[derive(Deserialize)]
struct Mappings {
    #[serde(default)]
    mappings: std::collections::HashMap<String, Option<String>>,
}

/// The user a 3PID is bound to on the identity server (identity service API v2 lookup:
/// hashed with SHA-256 and the server's pepper when it offers that, else in the clear).
pub async fn lookup(
    http: &reqwest::Client,
    id_server: &str,
    id_access_token: &str,
    medium: &str,
    address: &str,
) -> Result<Option<String>> {
    use base64::Engine;
    use sha2::Digest;
    let base = base(id_server)?;
    let details: HashDetails =
        answer(http.get(format!("{base}/_matrix/identity/v2/hash_details")).bearer_auth(id_access_token), id_server)
            .await?;
    let (algorithm, key) = if details.algorithms.iter().any(|a| a == "sha256") {
        let digest = sha2::Sha256::digest(format!("{address} {medium} {}", details.lookup_pepper));
        ("sha256", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest))
    } else if details.algorithms.iter().any(|a| a == "none") {
        ("none", format!("{address} {medium}"))
    } else {
        return Err(unreachable(id_server, "no lookup algorithm we know".into()));
    };
    let body = json!({ "addresses": [key], "algorithm": algorithm, "pepper": details.lookup_pepper });
    let lookup = http.post(format!("{base}/_matrix/identity/v2/lookup")).bearer_auth(id_access_token).json(&body);
    let found: Mappings = answer(lookup, id_server).await?;
    Ok(found.mappings.get(&key).cloned().flatten())
}

/// Sends `request` and reads its JSON answer as `T`; no answer, an error status or another
/// shape is the identity server's failure ([`unreachable`]).
async fn answer<T: serde::de::DeserializeOwned>(request: reqwest::RequestBuilder, id_server: &str) -> Result<T> {
    let failed = |e: reqwest::Error| unreachable(id_server, e.to_string());
    request.send().await.and_then(reqwest::Response::error_for_status).map_err(failed)?.json().await.map_err(failed)
}

/// The identity server the client named could not be reached or answered nonsense: a 400,
/// as the client chose it (and may name another).
fn unreachable(id_server: &str, why: String) -> Error {
    tracing::warn!(id_server, error = %why, "identity server call failed");
    Error::new(ErrorCode::Unknown, "The identity server could not be reached").with_status(400)
}
