//! Account suspension and locking by server admins (spec 1.18
//! `/_matrix/client/v1/admin/suspend|lock/{userId}`, Synapse's `PUT
//! /_synapse/admin/v1/suspend/{userId}`): a suspended account still reads, syncs, leaves
//! rooms and takes back its own events, but may not join, knock, invite, send, create rooms,
//! change its profile or upload media (403 `M_USER_SUSPENDED`); a locked one is refused
//! everything (401 `M_USER_LOCKED`). Only admins may do either, never to themselves or to
//! another admin, and only they are offered the capability.

use serde_json::json;
use trellis_testkit::{PASSWORD, TestServer, enc};

use super::admin_users::admin;

both_modes!(only_admins_moderate_accounts, a_suspended_account_reads_but_does_not_act, locking_through_the_client_api);

const V1: &str = "/_matrix/client/v1/admin";
const V3: &str = "/_matrix/client/v3";

fn suspend_path(user: &str) -> String {
    format!("{V1}/suspend/{}", enc(user))
}

async fn only_admins_moderate_accounts(server: TestServer) {
    let alice = admin(&server, "alice").await;
    let bob = server.user("bob").await;
    let _carol = server.user("carol").await;

    // Only an admin is offered the capability, and the feature is advertised.
    let caps = alice.get(&format!("{V3}/capabilities")).await.ok();
    assert_eq!(caps["capabilities"]["m.account_moderation"], json!({"suspend": true, "lock": true}), "{caps}");
    let caps = bob.get(&format!("{V3}/capabilities")).await.ok();
    assert!(caps["capabilities"].get("m.account_moderation").is_none(), "{caps}");
    let versions = bob.get("/_matrix/client/versions").await.ok();
    assert_eq!(versions["unstable_features"]["uk.timedout.msc4323"], true, "{versions}");

    // Anyone else is refused, before any lookup.
    bob.get(&suspend_path("@carol:localhost")).await.err(403, "M_FORBIDDEN");
    bob.put(&suspend_path("@carol:localhost"), json!({"suspended": true})).await.err(403, "M_FORBIDDEN");
    bob.put(&format!("{V1}/lock/{}", enc("@nobody:localhost")), json!({"locked": true})).await.err(403, "M_FORBIDDEN");
    server.client().get(&suspend_path("@carol:localhost")).await.err(401, "M_MISSING_TOKEN");

    // Bad input: another server's user, an unknown one, oneself, another admin, a bad body.
    alice.get(&suspend_path("@carol:elsewhere")).await.err(400, "M_INVALID_PARAM");
    alice.get(&suspend_path("@nobody:localhost")).await.err(404, "M_NOT_FOUND");
    alice.put(&suspend_path("@nobody:localhost"), json!({"suspended": true})).await.err(404, "M_NOT_FOUND");
    alice.put(&suspend_path("@alice:localhost"), json!({"suspended": true})).await.err(403, "M_FORBIDDEN");
    alice.put(&format!("{V1}/lock/{}", enc("@alice:localhost")), json!({"locked": true})).await.err(403, "M_FORBIDDEN");
    alice.put(&suspend_path("@carol:localhost"), json!({"suspended": "yes"})).await.err(400, "M_BAD_JSON");
    alice.put(&suspend_path("@carol:localhost"), json!({})).await.err(400, "M_BAD_JSON");
    let path = format!("/_synapse/admin/v1/users/{}/admin", enc("@bob:localhost"));
    alice.put(&path, json!({"admin": true})).await.ok();
    alice.put(&suspend_path("@bob:localhost"), json!({"suspended": true})).await.err(403, "M_FORBIDDEN");

    // A deactivated account is not found either.
    alice.post(&format!("/_synapse/admin/v1/deactivate/{}", enc("@carol:localhost")), json!({})).await.ok();
    alice.get(&suspend_path("@carol:localhost")).await.err(404, "M_NOT_FOUND");
}

async fn a_suspended_account_reads_but_does_not_act(server: TestServer) {
    let alice = admin(&server, "alice").await;
    let bob = server.user("bob").await;
    server.user("carol").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;
    let own = bob.send_text(&room, "t1", "before").await;
    let hers = alice.send_text(&room, "t2", "hers").await;
    let other_room = alice.create_room(json!({"preset": "public_chat"})).await;
    let invited_to = alice.create_room(json!({"preset": "private_chat", "invite": ["@bob:localhost"]})).await;
    let rejected = alice.create_room(json!({"preset": "private_chat", "invite": ["@bob:localhost"]})).await;

    assert_eq!(alice.get(&suspend_path("@bob:localhost")).await.ok(), json!({"suspended": false}));
    let done = alice.put(&suspend_path("@bob:localhost"), json!({"suspended": true})).await.ok();
    assert_eq!(done, json!({"suspended": true}));
    assert_eq!(alice.get(&suspend_path("@bob:localhost")).await.ok(), json!({"suspended": true}));
    let details = alice.get(&format!("/_synapse/admin/v2/users/{}", enc("@bob:localhost"))).await.ok();
    assert_eq!(details["suspended"], true, "{details}");

    // Still reads and syncs.
    bob.get(&format!("{V3}/account/whoami")).await.ok();
    bob.sync(None, None, 0).await;
    bob.get(&format!("{V3}/rooms/{}/messages?dir=b", enc(&room))).await.ok();

    // Refused: sending, state, joining, accepting an invite, inviting, creating a room,
    // the profile, uploads, redacting another's event.
    let refused = [
        bob.put(
            &format!("{V3}/rooms/{}/send/m.room.message/t3", enc(&room)),
            json!({"msgtype": "m.text", "body": "x"}),
        )
        .await,
        bob.put(&format!("{V3}/rooms/{}/state/m.room.topic/", enc(&room)), json!({"topic": "mine now"})).await,
        bob.post(&format!("{V3}/join/{}", enc(&other_room)), json!({})).await,
        bob.post(&format!("{V3}/rooms/{}/join", enc(&invited_to)), json!({})).await,
        bob.post(&format!("{V3}/knock/{}", enc(&other_room)), json!({})).await,
        bob.post(&format!("{V3}/rooms/{}/invite", enc(&room)), json!({"user_id": "@carol:localhost"})).await,
        bob.post(&format!("{V3}/createRoom"), json!({})).await,
        bob.put(&format!("{V3}/profile/{}/displayname", enc("@bob:localhost")), json!({"displayname": "B"})).await,
        bob.put(&format!("{V3}/profile/{}/avatar_url", enc("@bob:localhost")), json!({"avatar_url": "mxc://a/b"}))
            .await,
        bob.raw("POST", "/_matrix/media/v3/upload", b"data".to_vec()).await,
        bob.post("/_matrix/media/v1/create", json!({})).await,
        bob.put(&format!("{V3}/rooms/{}/redact/{}/t4", enc(&room), enc(&hers)), json!({})).await,
    ];
    for (i, reply) in refused.iter().enumerate() {
        assert_eq!(
            (reply.status, reply.body["errcode"].as_str()),
            (403, Some("M_USER_SUSPENDED")),
            "#{i}: {}",
            reply.body
        );
    }
    // Allowed: taking back one's own event, rejecting an invite, leaving.
    bob.put(&format!("{V3}/rooms/{}/redact/{}/t5", enc(&room), enc(&own)), json!({})).await.ok();
    bob.post(&format!("{V3}/rooms/{}/leave", enc(&rejected)), json!({})).await.ok();

    // Synapse's form lifts it; the account acts again at once.
    let lifted = alice
        .put(&format!("/_synapse/admin/v1/suspend/{}", enc("@bob:localhost")), json!({"suspend": false}))
        .await
        .ok();
    assert_eq!(lifted, json!({"user_@bob:localhost_suspended": false}));
    bob.send_text(&room, "t6", "after").await;
    bob.post(&format!("{V3}/join/{}", enc(&other_room)), json!({})).await.ok();
    bob.post(&format!("{V3}/rooms/{}/leave", enc(&room)), json!({})).await.ok();
}

async fn locking_through_the_client_api(server: TestServer) {
    let alice = admin(&server, "alice").await;
    let bob = server.user("bob").await;
    let lock = format!("{V1}/lock/{}", enc("@bob:localhost"));
    assert_eq!(alice.get(&lock).await.ok(), json!({"locked": false}));
    assert_eq!(alice.put(&lock, json!({"locked": true})).await.ok(), json!({"locked": true}));
    let refused = bob.get(&format!("{V3}/account/whoami")).await;
    refused.err(401, "M_USER_LOCKED");
    assert_eq!(refused.body["soft_logout"], true);
    let login =
        json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "bob"}, "password": PASSWORD});
    server.client().post(&format!("{V3}/login"), login).await.err(401, "M_USER_LOCKED");
    assert_eq!(alice.get(&lock).await.ok(), json!({"locked": true}));
    assert_eq!(alice.put(&lock, json!({"locked": false})).await.ok(), json!({"locked": false}));
    bob.get(&format!("{V3}/account/whoami")).await.ok();
}
