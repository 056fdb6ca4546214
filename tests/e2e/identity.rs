//! Identity servers: binding a 3PID through the homeserver (`/3pid/bind`), unbinding it
//! (`/3pid/unbind`, and on deactivation), inviting by 3PID (`/invite` with `id_server`,
//! `invite_3pid` on `createRoom`), and third-party invites of addresses nobody has bound yet,
//! which `/3pid/onbind` turns into invites; against a small identity server of the test's own
//! over HTTPS (identity service API v2: `3pid/bind`, `3pid/unbind`, `hash_details`, `lookup`,
//! `store-invite`, `pubkey/isvalid`).
//!
//! Why not Sydent (PyPI): its v2 API, which Trellis speaks with the client's
//! `id_access_token`, only hands out tokens after checking an OpenID token with the
//! homeserver over federation, which Trellis does not serve yet.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    Json, Router,
    extract::{Query, State},
    http::HeaderMap,
    routing::{get, post},
};
use base64::Engine;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use serde_json::{Value, json};
use sha2::Digest;
use trellis_core::config::Config;
use trellis_testkit::{SigningKey, TestServer, enc};

both_modes!(configured trusting_the_test_identity_server;
    threepids_are_bound_looked_up_for_invites_and_unbound,
    unbound_addresses_are_invited_once_bound);

const V3: &str = "/_matrix/client/v3";
const ACCESS_TOKEN: &str = "is-token";
const PEPPER: &str = "pepper";

/// The test identity server's certificate is its own CA's: the homeserver is told not to
/// check it (the setting SyTest's mock identity server needs too).
fn trusting_the_test_identity_server(config: &mut Config) {
    config.email.insecure_identity_server_tls_for_testing = true;
}

/// What the identity server knows: sessions it validated (sid → address), bindings
/// (address → user), the invites it stored (as asked) and the public keys it vouches for.
#[derive(Default)]
struct Known {
    validated: HashMap<String, String>,
    bindings: HashMap<String, String>,
    invites: Vec<Value>,
    valid_keys: Vec<String>,
}

type Shared = Arc<Mutex<Known>>;

fn authorized(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {ACCESS_TOKEN}"))
}

async fn bind(
    State(known): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (axum::http::StatusCode, Json<Value>) {
    if !authorized(&headers) {
        return (axum::http::StatusCode::UNAUTHORIZED, Json(json!({"errcode": "M_UNAUTHORIZED"})));
    }
    let mut known = known.lock().unwrap();
    let (Some(sid), Some(mxid)) = (body["sid"].as_str(), body["mxid"].as_str()) else {
        return (axum::http::StatusCode::BAD_REQUEST, Json(json!({"errcode": "M_MISSING_PARAMS"})));
    };
    let Some(address) = known.validated.get(sid).cloned() else {
        return (axum::http::StatusCode::BAD_REQUEST, Json(json!({"errcode": "M_SESSION_NOT_VALIDATED"})));
    };
    known.bindings.insert(address.clone(), mxid.to_owned());
    (axum::http::StatusCode::OK, Json(json!({"medium": "email", "address": address, "mxid": mxid})))
}

async fn unbind(State(known): State<Shared>, Json(body): Json<Value>) -> axum::http::StatusCode {
    let mut known = known.lock().unwrap();
    let address = body["threepid"]["address"].as_str().unwrap_or_default();
    match known.bindings.get(address).map(String::as_str) == body["mxid"].as_str() {
        true => {
            known.bindings.remove(address);
            axum::http::StatusCode::OK
        }
        false => axum::http::StatusCode::NOT_FOUND,
    }
}

async fn hash_details(headers: HeaderMap) -> Json<Value> {
    assert!(authorized(&headers), "lookups carry the client's identity-server token");
    Json(json!({"algorithms": ["sha256"], "lookup_pepper": PEPPER}))
}

fn hashed(address: &str) -> String {
    let digest = sha2::Sha256::digest(format!("{address} email {PEPPER}"));
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
}

async fn lookup(State(known): State<Shared>, Json(body): Json<Value>) -> Json<Value> {
    assert_eq!((body["algorithm"].as_str(), body["pepper"].as_str()), (Some("sha256"), Some(PEPPER)));
    let known = known.lock().unwrap();
    let mappings: serde_json::Map<String, Value> = known
        .bindings
        .iter()
        .map(|(address, mxid)| (hashed(address), json!(mxid)))
        .filter(|(hash, _)| body["addresses"].as_array().is_some_and(|a| a.contains(&json!(hash))))
        .collect();
    Json(json!({"mappings": mappings}))
}

/// Stores an invite: its token is `tok-<n>`; its keys are the ones the server vouches for,
/// checked at its own `isvalid`.
async fn store_invite(State(known): State<Shared>, headers: HeaderMap, Json(body): Json<Value>) -> Json<Value> {
    assert!(authorized(&headers), "store-invite carries the client's identity-server token");
    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or_default();
    let validity = format!("https://{host}/_matrix/identity/v2/pubkey/isvalid");
    let mut known = known.lock().unwrap();
    let token = format!("tok-{}", known.invites.len());
    known.invites.push(body);
    let key = known.valid_keys[0].clone();
    let keys = json!([{"public_key": key, "key_validity_url": validity}]);
    Json(json!({"token": token, "display_name": "b...@e...", "public_keys": keys}))
}

async fn key_is_valid(State(known): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Json<Value> {
    let valid = q.get("public_key").is_some_and(|k| known.lock().unwrap().valid_keys.contains(k));
    Json(json!({"valid": valid}))
}

/// Accepts TLS connections for axum.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, SocketAddr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else { continue };
            if let Ok(stream) = self.acceptor.accept(tcp).await {
                return (stream, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// Starts the identity server; its `id_server` name and its state.
async fn identity_server() -> (String, Shared) {
    let issued = crate::certs::issue(30);
    let chain = vec![CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let known = Shared::default();
    let app = Router::new()
        .route("/_matrix/identity/v2/3pid/bind", post(bind))
        .route("/_matrix/identity/v2/3pid/unbind", post(unbind))
        .route("/_matrix/identity/v2/hash_details", get(hash_details))
        .route("/_matrix/identity/v2/lookup", post(lookup))
        .route("/_matrix/identity/v2/store-invite", post(store_invite))
        .route("/_matrix/identity/v2/pubkey/isvalid", get(key_is_valid))
        .with_state(known.clone());
    let listener = TlsListener { tcp, acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)) };
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("localhost:{port}"), known)
}

async fn threepids_are_bound_looked_up_for_invites_and_unbound(server: TestServer) {
    let (id_server, known) = identity_server().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    known.lock().unwrap().validated.insert("sid-1".into(), "bob@example.org".into());
    let bind = |token: &str| json!({"client_secret": "secret", "sid": "sid-1", "id_server": id_server, "id_access_token": token});

    // The identity server refuses a wrong token; with the right one it binds.
    bob.post(&format!("{V3}/account/3pid/bind"), bind("wrong")).await.err(400, "M_THREEPID_AUTH_FAILED");
    bob.post(&format!("{V3}/account/3pid/bind"), bind(ACCESS_TOKEN)).await.ok();
    assert_eq!(known.lock().unwrap().bindings.get("bob@example.org"), Some(&bob.user_id));

    // Invites by address reach bob, in a room and at its creation.
    let threepid = json!({"id_server": id_server, "id_access_token": ACCESS_TOKEN, "medium": "email",
                          "address": "bob@example.org"});
    let room = alice.create_room(json!({})).await;
    alice.post(&format!("{V3}/rooms/{}/invite", trellis_testkit::enc(&room)), threepid.clone()).await.ok();
    let member = |room: &str| {
        format!("{V3}/rooms/{}/state/m.room.member/{}", trellis_testkit::enc(room), trellis_testkit::enc(&bob.user_id))
    };
    assert_eq!(alice.get(&member(&room)).await.ok()["membership"], "invite");
    let created = alice.create_room(json!({"invite_3pid": [threepid]})).await;
    assert_eq!(alice.get(&member(&created)).await.ok()["membership"], "invite");

    // Unbound through the homeserver, which remembers where it bound it.
    let unbound =
        bob.post(&format!("{V3}/account/3pid/unbind"), json!({"medium": "email", "address": "bob@example.org"})).await;
    assert_eq!(unbound.ok()["id_server_unbind_result"], "success");
    assert!(known.lock().unwrap().bindings.is_empty());

    // Deactivation unbinds too.
    bob.post(&format!("{V3}/account/3pid/bind"), bind(ACCESS_TOKEN)).await.ok();
    let challenge = bob.post(&format!("{V3}/account/deactivate"), json!({})).await;
    let auth = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": bob.user_id},
                      "password": trellis_testkit::PASSWORD, "session": challenge.body["session"]});
    let deactivated = bob.post(&format!("{V3}/account/deactivate"), json!({"auth": auth})).await.ok();
    assert_eq!(deactivated["id_server_unbind_result"], "success");
    assert!(known.lock().unwrap().bindings.is_empty());
}

async fn unbound_addresses_are_invited_once_bound(server: TestServer) {
    let (id_server, known) = identity_server().await;
    let is_key = SigningKey::named("the identity server", "0");
    known.lock().unwrap().valid_keys.push(is_key.public().to_owned());
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let room = alice.create_room(json!({"name": "Den"})).await;
    let threepid = json!({"id_server": id_server, "id_access_token": ACCESS_TOKEN, "medium": "email",
                          "address": "bob@example.org"});
    alice.post(&format!("{V3}/rooms/{}/invite", enc(&room)), threepid).await.ok();

    // The identity server stored who invites whom to what; the room shows the invite under
    // the identity server's token, with its keys.
    let stored = known.lock().unwrap().invites[0].clone();
    assert_eq!(stored["sender"], alice.user_id.as_str());
    assert_eq!((stored["room_id"].as_str(), stored["room_name"].as_str()), (Some(room.as_str()), Some("Den")));
    assert_eq!((stored["medium"].as_str(), stored["address"].as_str()), (Some("email"), Some("bob@example.org")));
    let state = |kind: &str, key: &str| format!("{V3}/rooms/{}/state/{kind}/{}", enc(&room), enc(key));
    let invite = alice.get(&state("m.room.third_party_invite", "tok-0")).await.ok();
    assert_eq!(invite["display_name"], "b...@e...");
    assert_eq!(invite["public_keys"][0]["public_key"], is_key.public());

    // The identity server reports the address bound, with the invite signed (`/3pid/onbind`).
    let onbind = |signer: &SigningKey, mxid: &str| {
        let mut signed = json!({"mxid": mxid, "token": "tok-0"});
        signer.sign(&id_server, &mut signed);
        let invite = json!({"medium": "email", "address": "bob@example.org", "mxid": bob.user_id, "room_id": room,
                            "sender": alice.user_id, "signed": signed});
        json!({"medium": "email", "address": "bob@example.org", "mxid": bob.user_id, "invites": [invite]})
    };
    const ONBIND: &str = "/_matrix/federation/v1/3pid/onbind";
    let identity_server = server.client();
    let bob_member = state("m.room.member", &bob.user_id);
    // Refused: a key the invite does not name, a signature for someone else, a key the
    // identity server no longer vouches for.
    let impostor = SigningKey::named("an impostor", "0");
    identity_server.post(ONBIND, onbind(&impostor, &bob.user_id)).await.err(403, "M_FORBIDDEN");
    identity_server.post(ONBIND, onbind(&is_key, "@carol:localhost")).await.err(403, "M_FORBIDDEN");
    let vouched = std::mem::take(&mut known.lock().unwrap().valid_keys);
    identity_server.post(ONBIND, onbind(&is_key, &bob.user_id)).await.err(403, "M_FORBIDDEN");
    known.lock().unwrap().valid_keys = vouched;
    alice.get(&bob_member).await.err(404, "M_NOT_FOUND");

    // Signed by the identity server's key (PUT, as the spec has it): Alice invites Bob, whose
    // invite shows her member event, and he joins.
    identity_server.put(ONBIND, onbind(&is_key, &bob.user_id)).await.ok();
    let member = alice.get(&bob_member).await.ok();
    assert_eq!(member["membership"], "invite");
    assert_eq!(member["third_party_invite"]["display_name"], "b...@e...");
    let synced = bob.sync(None, None, 0).await;
    let stripped = synced["rooms"]["invite"][&room]["invite_state"]["events"].as_array().cloned().unwrap_or_default();
    assert!(
        stripped.iter().any(|e| e["type"] == "m.room.member" && e["state_key"] == alice.user_id.as_str()),
        "the inviter's member event: {stripped:?}"
    );
    bob.join(&room).await;
    assert_eq!(alice.get(&bob_member).await.ok()["membership"], "join");
}
