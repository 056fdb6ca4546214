//! What an application service asks of Trellis besides transactions: pinging itself through
//! the homeserver (`POST /appservice/{id}/ping`) with each of the spec's failures, signing in
//! as one of its users (`m.login.application_service`), and `rate_limited: false` exempting it
//! and its users from the rate limits that still bind the users of an appservice with the
//! default (its sender user is never limited).

use std::{
    io::{Read, Write},
    sync::atomic::{AtomicUsize, Ordering},
};

use serde_json::json;
use trellis_core::config::Config;
use trellis_testkit::{Client, Rule, TestServer, enc};

both_modes!(configured three_appservices; appservices_ping_sign_in_and_skip_rate_limits);

/// An address where nothing listens (the listener is dropped at once).
fn closed_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

/// An appservice that answers every request 401, as one holding another hs_token would.
fn refusing_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut buf = [0u8; 8192];
            let _ = stream.read(&mut buf);
            let body = r#"{"errcode":"M_UNKNOWN_TOKEN","error":"wrong hs_token"}"#;
            let answer = format!(
                "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    url
}

fn three_appservices(config: &mut Config) {
    let write = |id: &str, url: &str, extra: &str| {
        let yaml = format!(
            "id: {id}\nurl: {url}\nas_token: as-{id}\nhs_token: hs-{id}\nsender_localpart: {id}bot\n{extra}\
             namespaces:\n  users:\n    - exclusive: true\n      regex: '@{id}_.*:localhost'\n  aliases: []\n  rooms: []\n"
        );
        static FILES: AtomicUsize = AtomicUsize::new(0);
        let n = FILES.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("trellis-e2e-as-{id}-{}-{n}.yaml", std::process::id()));
        std::fs::write(&path, yaml).unwrap();
        path
    };
    config.appservices.registration_files = vec![
        write("limited", &closed_url(), ""),
        write("free", "null", "rate_limited: false\n"),
        write("refusing", &refusing_url(), ""),
    ];
    config.rate_limits.enabled = true;
    config.rate_limits.message = Rule::new(0.01, 3);
    config.rate_limits.register = Rule::new(100.0, 100);
    config.rate_limits.join = Rule::new(100.0, 100);
    config.rate_limits.login = Rule::new(100.0, 100);
}

fn with_token(server: &TestServer, token: &str) -> Client {
    let mut c = server.client();
    c.token = Some(token.to_owned());
    c
}

/// Sends `n` messages as `user_id` through `appservice`; the statuses answered.
async fn send_as(appservice: &Client, user_id: &str, room: &str, n: usize) -> Vec<u16> {
    let mut statuses = Vec::new();
    for i in 0..n {
        let path = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/t{i}?user_id={}", enc(room), enc(user_id));
        statuses.push(appservice.put(&path, json!({"msgtype": "m.text", "body": format!("m{i}")})).await.status);
    }
    statuses
}

async fn appservices_ping_sign_in_and_skip_rate_limits(server: TestServer) {
    let (limited, free, refusing) =
        (with_token(&server, "as-limited"), with_token(&server, "as-free"), with_token(&server, "as-refusing"));
    let alice = server.user("alice").await;
    let ping = |id: &str| format!("/_matrix/client/v1/appservice/{id}/ping");

    // Ping: only for itself, only with a URL, and the appservice's failures told apart.
    free.post(&ping("free"), json!({})).await.err(400, "M_URL_NOT_SET");
    free.post(&ping("limited"), json!({})).await.err(403, "M_FORBIDDEN");
    free.post(&ping("nobody"), json!({})).await.err(403, "M_FORBIDDEN");
    alice.post(&ping("free"), json!({})).await.err(403, "M_FORBIDDEN");
    limited.post(&ping("limited"), json!({"transaction_id": "t1"})).await.err(502, "M_CONNECTION_FAILED");
    let bad = refusing.post(&ping("refusing"), json!({})).await;
    bad.err(502, "M_BAD_STATUS");
    assert_eq!(bad.body["status"], 401, "{}", bad.body);
    assert!(bad.body["body"].as_str().unwrap_or_default().contains("M_UNKNOWN_TOKEN"), "{}", bad.body);

    // Signing in as one of its users gives a device; others' users and strangers are refused.
    let register = |name: &str| json!({"type": "m.login.application_service", "username": name});
    free.post("/_matrix/client/v3/register", register("free_puppet")).await.ok();
    limited.post("/_matrix/client/v3/register", register("limited_puppet")).await.ok();
    let login =
        |user: &str| json!({"type": "m.login.application_service", "identifier": {"type": "m.id.user", "user": user}});
    let signed_in = free.post("/_matrix/client/v3/login", login("free_puppet")).await.ok();
    assert_eq!(signed_in["user_id"], "@free_puppet:localhost");
    let device = signed_in["device_id"].as_str().expect("a device").to_owned();
    let puppet = with_token(&server, signed_in["access_token"].as_str().unwrap());
    let me = puppet.get("/_matrix/client/v3/account/whoami").await.ok();
    assert_eq!((me["user_id"].as_str(), me["device_id"].as_str()), (Some("@free_puppet:localhost"), Some(&*device)));
    free.post("/_matrix/client/v3/login", login("@free_ghost:localhost")).await.err(403, "M_FORBIDDEN");
    free.post("/_matrix/client/v3/login", login("alice")).await.err(403, "M_EXCLUSIVE");
    alice.post("/_matrix/client/v3/login", login("free_puppet")).await.err(403, "M_FORBIDDEN");
    let flows = server.client().get("/_matrix/client/v3/login").await.ok();
    assert!(flows["flows"].as_array().unwrap().iter().any(|f| f["type"] == "m.login.application_service"), "{flows}");

    // Rate limits: 3 messages in a burst for everyone but the appservice with rate_limited: false.
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    for (appservice, user) in [(&free, "@free_puppet:localhost"), (&limited, "@limited_puppet:localhost")] {
        let join = format!("/_matrix/client/v3/join/{}?user_id={}", enc(&room), enc(user));
        appservice.post(&join, json!({})).await.ok();
    }
    let statuses = send_as(&free, "@free_puppet:localhost", &room, 6).await;
    assert!(statuses.iter().all(|s| *s == 200), "rate_limited: false: {statuses:?}");
    let join = format!("/_matrix/client/v3/join/{}", enc(&room));
    limited.post(&join, json!({})).await.ok();
    let statuses = send_as(&limited, "@limitedbot:localhost", &room, 6).await;
    assert!(statuses.iter().all(|s| *s == 200), "the sender user is excluded: {statuses:?}");
    let statuses = send_as(&limited, "@limited_puppet:localhost", &room, 6).await;
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 3, "the default limits apply: {statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
}
