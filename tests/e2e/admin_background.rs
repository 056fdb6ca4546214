//! Synapse's background updates admin API over the rooms service's background work (room
//! deletions): idle, nothing under way; paused, a deletion's purge waits and shows as the
//! update under way with its progress; resumed, it finishes. Only admins; bad input refused.

use serde_json::{Value, json};
use trellis_testkit::{Client, TestServer, enc};

use super::admin_users::admin;

both_modes!(purges_pause_and_resume);

const BG: &str = "/_synapse/admin/v1/background_updates";

/// Waits until the deletion `delete_id` reaches `status`; its last status.
async fn reaches(admin: &Client, delete_id: &str, status: &str) -> Value {
    let path = format!("/_synapse/admin/v2/rooms/delete_status/{delete_id}");
    for _ in 0..600 {
        let now = admin.get(&path).await.ok();
        if now["status"] == status {
            return now;
        }
        assert_ne!(now["status"], "failed", "{now}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the deletion {delete_id} never reached {status}");
}

async fn purges_pause_and_resume(server: TestServer) {
    let alice = admin(&server, "alice").await;
    let bob = server.user("bob").await;

    // Only admins; bad input.
    bob.get(&format!("{BG}/status")).await.err(403, "M_FORBIDDEN");
    bob.get(&format!("{BG}/enabled")).await.err(403, "M_FORBIDDEN");
    bob.post(&format!("{BG}/enabled"), json!({"enabled": false})).await.err(403, "M_FORBIDDEN");
    server.client().get(&format!("{BG}/status")).await.err(401, "M_MISSING_TOKEN");
    alice.post(&format!("{BG}/enabled"), json!({"enabled": "no"})).await.err(400, "M_BAD_JSON");

    // Idle.
    assert_eq!(alice.get(&format!("{BG}/status")).await.ok(), json!({"enabled": true, "current_updates": {}}));
    assert_eq!(alice.get(&format!("{BG}/enabled")).await.ok(), json!({"enabled": true}));

    // Paused: a deletion shuts the room, then its purge waits.
    assert_eq!(alice.post(&format!("{BG}/enabled"), json!({"enabled": false})).await.ok(), json!({"enabled": false}));
    let room = bob.create_room(json!({"preset": "public_chat"})).await;
    bob.send_text(&room, "t1", "soon gone").await;
    let path = format!("/_synapse/admin/v2/rooms/{}", enc(&room));
    let started = alice.request("DELETE", &path, Some(json!({"force_purge": true}))).await.ok();
    let delete_id = started["delete_id"].as_str().unwrap().to_owned();
    reaches(&alice, &delete_id, "purging").await;
    let status = alice.get(&format!("{BG}/status")).await.ok();
    assert_eq!(status["enabled"], false, "{status}");
    let update = &status["current_updates"]["main"];
    assert_eq!(update["name"], format!("delete_room {room}"), "{status}");
    assert_eq!(update["total_item_count"], 0, "{status}");
    assert!(update["total_duration_ms"].as_f64().unwrap() > 0.0, "{status}");

    // Resumed (`enabled` defaults to true): the purge finishes and nothing is under way.
    assert_eq!(alice.post(&format!("{BG}/enabled"), json!({})).await.ok(), json!({"enabled": true}));
    reaches(&alice, &delete_id, "complete").await;
    alice.get(&format!("/_synapse/admin/v1/rooms/{}", enc(&room))).await.err(404, "M_NOT_FOUND");
    assert_eq!(alice.get(&format!("{BG}/status")).await.ok(), json!({"enabled": true, "current_updates": {}}));
}
