//! What a server says about itself and its users: the spec versions it serves, who to
//! contact about it (`/.well-known/matrix/support`, from `[support]`), and the rooms two
//! users share (`/v1/mutual_rooms`).

use serde_json::json;
use trellis_testkit::{TestServer, enc};

both_modes!(versions_claim_what_is_served, support_is_absent_unless_configured, mutual_rooms_lists_shared_rooms);

async fn versions_claim_what_is_served(server: TestServer) {
    let versions = server.client().get("/_matrix/client/versions").await.ok();
    let listed: Vec<&str> = versions["versions"].as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
    for v in ["v1.12", "v1.13", "v1.14", "v1.15"] {
        assert!(listed.contains(&v), "{v}: {versions}");
    }
    assert!(!listed.contains(&"v1.16"), "sync's use_state_after is not served yet");
    for feature in ["im.nheko.summary", "uk.half-shot.msc2666.query_mutual_rooms.stable", "uk.tcpip.msc4133.stable"] {
        assert_eq!(versions["unstable_features"][feature], true, "{feature}");
    }
}

async fn support_is_absent_unless_configured(server: TestServer) {
    server.client().get("/.well-known/matrix/support").await.err(404, "M_NOT_FOUND");
}

fn with_support(c: &mut trellis_testkit::Config) {
    c.support.support_page = Some("https://example.org/help".into());
    c.support.contacts = vec![
        trellis_testkit::SupportContact {
            role: "m.role.admin".into(),
            matrix_id: Some("@admin:localhost".into()),
            email_address: Some("admin@example.org".into()),
        },
        trellis_testkit::SupportContact {
            role: "m.role.security".into(),
            matrix_id: None,
            email_address: Some("security@example.org".into()),
        },
        // Neither way to reach anyone: left out.
        trellis_testkit::SupportContact { role: "m.role.admin".into(), matrix_id: None, email_address: None },
    ];
}

async fn support_from_config(server: TestServer) {
    let support = server.client().get("/.well-known/matrix/support").await.ok();
    assert_eq!(
        support,
        json!({
            "contacts": [
                {"role": "m.role.admin", "matrix_id": "@admin:localhost", "email_address": "admin@example.org"},
                {"role": "m.role.security", "email_address": "security@example.org"},
            ],
            "support_page": "https://example.org/help",
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_from_config_monolith() {
    support_from_config(TestServer::monolith_configured(with_support).await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_from_config_split() {
    support_from_config(TestServer::split_configured(with_support).await).await
}

async fn mutual_rooms_lists_shared_rooms(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    let mut shared = Vec::new();
    for _ in 0..3 {
        let room = alice.create_room(json!({"preset": "public_chat"})).await;
        bob.post(&format!("/_matrix/client/v3/join/{}", enc(&room)), json!({})).await.ok();
        shared.push(room);
    }
    alice.create_room(json!({})).await; // Alice's alone
    let left = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.post(&format!("/_matrix/client/v3/join/{}", enc(&left)), json!({})).await.ok();
    bob.post(&format!("/_matrix/client/v3/rooms/{}/leave", enc(&left)), json!({})).await.ok();
    shared.sort();

    let path = |user: &str| format!("/_matrix/client/v1/mutual_rooms?user_id={}", enc(user));
    let found = alice.get(&path(&bob.user_id)).await.ok();
    assert_eq!(found["joined"], json!(shared), "{found}");
    assert_eq!(found["count"], 3);
    assert!(found.get("next_batch").is_none());
    let unstable =
        format!("/_matrix/client/unstable/uk.half-shot.msc2666/user/mutual_rooms?user_id={}", enc(&alice.user_id));
    assert_eq!(bob.get(&unstable).await.ok()["joined"], json!(shared));
    assert_eq!(alice.get(&path(&carol.user_id)).await.ok(), json!({"joined": [], "count": 0}));
    assert_eq!(alice.get(&path("@nobody:localhost")).await.ok()["joined"], json!([]), "an unknown user shares nothing");

    alice.get(&path(&alice.user_id)).await.err(400, "M_INVALID_PARAM");
    alice.get(&path("not-a-user")).await.err(400, "M_INVALID_PARAM");
    alice.get(&format!("{}&from=garbage", path(&bob.user_id))).await.err(400, "M_INVALID_PARAM");
    alice.get("/_matrix/client/v1/mutual_rooms").await.err(400, "M_INVALID_PARAM");
}
