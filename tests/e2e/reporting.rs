//! Reporting content: an event of a room the reporter is in, a room, a user — and 404 for
//! what the reporter cannot name.

use serde_json::json;
use trellis_testkit::{TestServer, enc};

use crate::rooms_support::{room_path, say};

both_modes!(reports_of_events_rooms_and_users);

async fn reports_of_events_rooms_and_users(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    let event = say(&alice, &room, "rude").await;
    let report_event = room_path(&room, &format!("/report/{}", enc(&event)));

    // Only a member may report an event of the room.
    bob.post(&report_event, json!({"reason": "rude"})).await.err(404, "M_NOT_FOUND");
    bob.post(&format!("/_matrix/client/v3/join/{}", enc(&room)), json!({})).await.ok();
    assert_eq!(bob.post(&report_event, json!({"reason": "rude"})).await.ok(), json!({}));
    bob.post(&report_event, json!({})).await.ok();
    bob.post(&room_path(&room, &format!("/report/{}", enc("$missing"))), json!({})).await.err(404, "M_NOT_FOUND");
    bob.post(&room_path(&room, "/report/not-an-event"), json!({})).await.err(400, "M_INVALID_PARAM");
    // A redacted event has nothing left to report.
    alice.put(&room_path(&room, &format!("/redact/{}/r", enc(&event))), json!({})).await.ok();
    bob.post(&report_event, json!({"reason": "again"})).await.err(404, "M_NOT_FOUND");

    // Rooms: any user may report one the server knows.
    let private = alice.create_room(json!({})).await;
    assert_eq!(bob.post(&room_path(&private, "/report"), json!({"reason": "spam"})).await.ok(), json!({}));
    bob.post(&room_path("!nowhere:localhost", "/report"), json!({"reason": "x"})).await.err(404, "M_NOT_FOUND");
    let unstable = format!("/_matrix/client/unstable/org.matrix.msc4151/rooms/{}/report", enc(&private));
    bob.post(&unstable, json!({"reason": "spam"})).await.ok();

    // Users: local ones must exist; another server's are taken on trust.
    let users = |u: &str| format!("/_matrix/client/v3/users/{}/report", enc(u));
    assert_eq!(bob.post(&users(&alice.user_id), json!({"reason": "abuse"})).await.ok(), json!({}));
    bob.post(&users("@ghost:localhost"), json!({"reason": "abuse"})).await.err(404, "M_NOT_FOUND");
    bob.post(&users("@someone:example.org"), json!({"reason": "abuse"})).await.ok();
    bob.post(&users(&alice.user_id), json!({})).await.err(400, "M_BAD_JSON");
    bob.post(&users("not-a-user"), json!({"reason": "x"})).await.err(400, "M_INVALID_PARAM");
    server.client().post(&users(&alice.user_id), json!({"reason": "x"})).await.err(401, "M_MISSING_TOKEN");
}
