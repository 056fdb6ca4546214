//! Identity servers, as the client names them (`id_server`, `id_access_token`): binding a
//! validated 3PID to the user and unbinding it (identity service API v2, `/3pid/bind` and
//! `/3pid/unbind`), as Synapse proxies them.

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use trellis_core::{Error, ErrorCode, Result};

/// How long an identity server may take.
const TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(TIMEOUT).build().unwrap_or_default()
}

/// The identity server's base URL: `https://` before its host (and port), as the spec's
/// `id_server` is a server name without a scheme.
fn base(id_server: &str) -> Result<String> {
    let ok = !id_server.is_empty()
        && id_server.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    match ok {
        true => Ok(format!("https://{id_server}")),
        false => Err(Error::invalid_param("id_server must be a server name")),
    }
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

fn unreachable(id_server: &str, why: String) -> Error {
    tracing::warn!(id_server, error = %why, "identity server call failed");
    Error::new(ErrorCode::Unknown, "The identity server could not be reached").with_status(502)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_servers_are_server_names() {
        assert_eq!(base("id.example.org:8090").unwrap(), "https://id.example.org:8090");
        for bad in ["", "https://id.example.org", "id.example.org/path", "a b"] {
            assert_eq!(base(bad).unwrap_err().code(), ErrorCode::InvalidParam, "{bad:?}");
        }
    }
}
