//! What third-party invites ask of identity servers (identity service API v2): storing an
//! invite for an address (`/store-invite`), and whether a key the identity server signed a
//! binding with is still valid (the `key_validity_url` its invite named).

use std::time::Duration;

use ruma::{events::room::third_party_invite::PublicKey, third_party_invite::IdentityServerBase64PublicKey};
use serde::{Deserialize, Serialize};
use trellis_core::{Error, ErrorCode, Result, ids::identity_server_base};

/// How long an identity server may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A client for identity servers; with `insecure` (test suites only) it checks no certificate.
pub(crate) fn client(insecure: bool) -> reqwest::Client {
    reqwest::Client::builder().timeout(TIMEOUT).tls_danger_accept_invalid_certs(insecure).build().unwrap_or_default()
}

/// `/store-invite`'s body: the address, and what the identity server may tell its owner about
/// the room and the inviter (the spec's optional keys, as Synapse fills them).
#[derive(Serialize)]
pub(crate) struct StoreInvite<'a> {
    pub medium: &'a str,
    pub address: &'a str,
    pub room_id: &'a str,
    pub sender: &'a str,
    pub room_alias: Option<String>,
    pub room_avatar_url: Option<String>,
    pub room_join_rules: Option<String>,
    pub room_name: Option<String>,
    pub room_type: Option<String>,
    pub sender_display_name: Option<String>,
    pub sender_avatar_url: Option<String>,
}

/// `/store-invite`'s answer: the invite's token, the keys its binding will be signed with and
/// a name to show for the address.
#[derive(Deserialize)]
pub(crate) struct Stored {
    pub token: String,
    #[serde(default)]
    pub public_keys: Vec<PublicKey>,
    /// The older single key (identity servers still send it beside `public_keys`).
    pub public_key: Option<IdentityServerBase64PublicKey>,
    pub display_name: String,
}

/// Stores an invite for the address on the identity server the client named.
pub(crate) async fn store_invite(
    http: &reqwest::Client,
    id_server: &str,
    id_access_token: &str,
    invite: &StoreInvite<'_>,
) -> Result<Stored> {
    let url = format!("{}/_matrix/identity/v2/store-invite", identity_server_base(id_server)?);
    let failed = |why: String| {
        tracing::warn!(id_server, error = %why, "identity server refused or failed a store-invite");
        Error::new(ErrorCode::Unknown, "The identity server could not store the invite").with_status(400)
    };
    let answer = http
        .post(url)
        .bearer_auth(id_access_token)
        .json(invite)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| failed(e.to_string()))?;
    answer.json().await.map_err(|e| failed(e.to_string()))
}

/// `GET {key_validity_url}?public_key=...`: whether the identity server still stands by the key.
#[derive(Deserialize)]
struct Validity {
    valid: bool,
}

/// Whether the identity server says `key` is still valid; an identity server that cannot be
/// reached or answers anything else does not vouch for it.
pub(crate) async fn key_is_valid(http: &reqwest::Client, key_validity_url: &str, key: &str) -> bool {
    let Ok(mut url) = reqwest::Url::parse(key_validity_url) else {
        tracing::info!(key_validity_url, "third-party invite names no valid key validity URL");
        return false;
    };
    url.query_pairs_mut().append_pair("public_key", key);
    let answer = match http.get(url).send().await.and_then(reqwest::Response::error_for_status) {
        Ok(answer) => answer.json::<Validity>().await,
        Err(e) => Err(e),
    };
    match answer {
        Ok(validity) => validity.valid,
        Err(e) => {
            tracing::info!(key_validity_url, error = %e, "identity server key validity unknown");
            false
        }
    }
}
