//! What an incremental `/sync` owes a client beyond new events, as Synapse sends it: the
//! presence of the people a join brings, a joined room's timeline marked limited, the room's
//! current state even where private history hides the events around it, every membership
//! change of a gap under lazy-loading (and redundant members when asked, from memory too),
//! summaries without heroes for named rooms, ignored users kept out, and `event_id` in the
//! federation format.

use serde_json::{Value, json};
use trellis_testkit::{Client, TestServer, enc, timeline_bodies};

both_modes!(
    a_join_brings_presence_and_a_limited_timeline,
    current_state_shows_through_private_history,
    gappy_lazy_syncs_carry_the_gaps_member_changes,
    a_new_speaker_reaches_lazy_long_polls_from_memory_as_the_exact_path_sends_it,
    ignored_users_are_left_out,
    named_rooms_have_counts_but_no_heroes,
    heroes_are_the_first_to_join_then_the_first_to_leave,
    federation_format_carries_event_ids,
);

fn next(body: &Value) -> String {
    body["next_batch"].as_str().unwrap().to_owned()
}

/// A sync that leaves the user's presence alone.
async fn quiet_sync(client: &Client, since: Option<&str>, filter: Option<&Value>, timeout_ms: u64) -> Value {
    let mut path = format!("/_matrix/client/v3/sync?set_presence=offline&timeout={timeout_ms}");
    if let Some(s) = since {
        path.push_str(&format!("&since={}", enc(s)));
    }
    if let Some(f) = filter {
        path.push_str(&format!("&filter={}", enc(&f.to_string())));
    }
    client.get(&path).await.ok()
}

fn presence_of<'a>(body: &'a Value, user: &str) -> Option<&'a Value> {
    body["presence"]["events"].as_array()?.iter().find(|e| e["sender"] == user)
}

async fn join(client: &Client, room: &str) {
    client.post(&format!("/_matrix/client/v3/join/{}", enc(room)), json!({})).await.ok();
}

/// Opens a long-poll from `since`, waits until a worker holds it, runs `wake` and returns
/// the poll's answer.
async fn woken_poll(
    server: &TestServer,
    client: &Client,
    since: &str,
    filter: Option<&Value>,
    wake: impl std::future::Future<Output = ()>,
) -> Value {
    let poll = {
        let (client, since, filter) = (client.clone(), since.to_owned(), filter.cloned());
        tokio::spawn(async move { quiet_sync(&client, Some(&since), filter.as_ref(), 10_000).await })
    };
    server.until_metric("trellis_sync_open_longpolls", 1.0).await;
    wake.await;
    poll.await.unwrap()
}

/// Long-polls from `since` until `done` accepts a response; returns it.
async fn sync_until(client: &Client, since: &str, filter: Option<&Value>, done: impl Fn(&Value) -> bool) -> Value {
    let mut since = since.to_owned();
    for _ in 0..20 {
        let body = quiet_sync(client, Some(&since), filter, 5_000).await;
        if done(&body) {
            return body;
        }
        since = next(&body);
    }
    panic!("the awaited sync never came");
}

async fn a_join_brings_presence_and_a_limited_timeline(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    let status = format!("/_matrix/client/v3/presence/{}/status", enc(&alice.user_id));
    alice.put(&status, json!({"presence": "unavailable", "status_msg": "at lunch"})).await.ok();
    let alice_since = next(&quiet_sync(&alice, None, None, 0).await);
    let bob_since = next(&quiet_sync(&bob, None, None, 0).await);
    join(&bob, &room).await;

    // Bob's first sync of the room: alice's presence (unchanged for a while) comes with it,
    // and the timeline is limited although it holds the whole room: the client keeps nothing
    // of the room from before and may page back.
    let body = sync_until(&bob, &bob_since, None, |b| b["rooms"]["join"].get(&room).is_some()).await;
    let p = presence_of(&body, &alice.user_id).unwrap_or_else(|| panic!("alice's presence: {body}"));
    assert_eq!((&p["content"]["presence"], &p["content"]["status_msg"]), (&json!("unavailable"), &json!("at lunch")));
    let timeline = &body["rooms"]["join"][&room]["timeline"];
    assert_eq!(timeline["limited"], true, "{timeline}");
    assert_eq!(timeline["events"][0]["type"], "m.room.create", "the whole room fits: {timeline}");
    // Only once.
    let again = quiet_sync(&bob, Some(&next(&body)), None, 0).await;
    assert!(presence_of(&again, &alice.user_id).is_none(), "{again}");

    // Alice hears of bob, who never set any presence: offline.
    let body = sync_until(&alice, &alice_since, None, |b| b["rooms"]["join"].get(&room).is_some()).await;
    let p = presence_of(&body, &bob.user_id).unwrap_or_else(|| panic!("bob's presence: {body}"));
    assert_eq!(p["content"]["presence"], "offline");
    assert_eq!(body["rooms"]["join"][&room]["timeline"]["limited"], false, "still joined: not limited");
}

async fn current_state_shows_through_private_history(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    let room = alice
        .create_room(json!({
            "preset": "public_chat",
            "initial_state": [{"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "joined"}}],
        }))
        .await;
    join(&bob, &room).await;
    alice.send_text(&room, "seen", "seen by bob").await;
    let since = next(&quiet_sync(&bob, None, None, 0).await);
    bob.post(&format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)), json!({})).await.ok();
    join(&carol, &room).await;
    // More hidden messages than the timeline holds.
    for i in 0..12 {
        alice.send_text(&room, &format!("away{i}"), &format!("while away {i}")).await;
    }
    join(&bob, &room).await;
    let body = sync_until(&bob, &since, None, |b| {
        b["rooms"]["join"][&room]["timeline"]["events"]
            .as_array()
            .is_some_and(|evs| evs.iter().any(|e| e["state_key"] == bob.user_id.as_str()))
    })
    .await;
    let events = body["rooms"]["join"][&room]["timeline"]["events"].as_array().unwrap();
    // Carol's join happened while bob was away, but it is the room's current state.
    assert!(
        events.iter().any(|e| e["state_key"] == carol.user_id.as_str() && e["content"]["membership"] == "join"),
        "{events:?}"
    );
    // Nothing else from his absence, however far back the timeline had to look.
    let bodies = timeline_bodies(&body, &room);
    assert!(!bodies.iter().any(|b| b.starts_with("while away")), "{bodies:?}");
}

fn members(body: &Value, room: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = body["rooms"]["join"][room]["state"]["events"]
        .as_array()
        .map(|evs| {
            evs.iter()
                .filter(|e| e["type"] == "m.room.member")
                .map(|e| {
                    let membership = e["content"]["membership"].as_str().unwrap().to_owned();
                    (e["state_key"].as_str().unwrap().to_owned(), membership)
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

async fn gappy_lazy_syncs_carry_the_gaps_member_changes(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    let dave = server.user("dave").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    join(&bob, &room).await;
    join(&carol, &room).await;
    bob.send_text(&room, "b0", "bob speaks").await;
    let lazy = json!({"room": {"state": {"lazy_load_members": true}, "timeline": {"limit": 2}}});
    let body = quiet_sync(&alice, None, Some(&lazy), 0).await;
    let m = |id: &str, ms: &str| (id.to_owned(), ms.to_owned());
    assert_eq!(members(&body, &room), [m(&alice.user_id, "join"), m(&bob.user_id, "join")]);
    let since = next(&body);

    // In the gap: carol leaves, dave joins without a word; then bob talks past the limit.
    carol.post(&format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)), json!({})).await.ok();
    join(&dave, &room).await;
    for i in 1..=3 {
        bob.send_text(&room, &format!("b{i}"), &format!("bob again {i}")).await;
    }
    let body = quiet_sync(&alice, Some(&since), Some(&lazy), 0).await;
    assert_eq!(body["rooms"]["join"][&room]["timeline"]["limited"], true);
    // Bob's membership is already on the device; the gap's changes are not.
    assert_eq!(members(&body, &room), [m(&carol.user_id, "leave"), m(&dave.user_id, "join")], "{body}");
    let since = next(&body);

    // Redundant members on request, for a long-poll woken by a message too.
    let redundant = json!({"room": {"state": {"lazy_load_members": true, "include_redundant_members": true}, "timeline": {"limit": 2}}});
    let body = woken_poll(&server, &alice, &since, Some(&redundant), async {
        bob.send_text(&room, "b4", "bob once more").await;
    })
    .await;
    assert_eq!(timeline_bodies(&body, &room), ["bob once more"]);
    assert_eq!(members(&body, &room), [m(&bob.user_id, "join")], "{body}");
}

async fn ignored_users_are_left_out(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    join(&bob, &room).await;
    join(&carol, &room).await;
    bob.send_text(&room, "b1", "from bob").await;
    carol.send_text(&room, "c1", "from carol").await;
    let me = enc(&alice.user_id);
    alice
        .put(
            &format!("/_matrix/client/v3/user/{me}/account_data/m.ignored_user_list"),
            json!({"ignored_users": {bob.user_id.clone(): {}}}),
        )
        .await
        .ok();
    // Bob's messages are gone; his membership (state) stays.
    let body = quiet_sync(&alice, None, None, 0).await;
    assert_eq!(timeline_bodies(&body, &room), ["from carol"]);
    let joined = &body["rooms"]["join"][&room];
    let all =
        joined["timeline"]["events"].as_array().unwrap().iter().chain(joined["state"]["events"].as_array().unwrap());
    assert!(all.clone().any(|e| e["state_key"] == bob.user_id.as_str()), "{joined}");
    let count = |b: &Value| b["rooms"]["join"][&room]["unread_notifications"]["notification_count"].as_u64();
    let unread = count(&body).unwrap();
    let since = next(&body);

    // A long-poll woken by bob keeps waiting; carol's message answers it.
    let mut body = woken_poll(&server, &alice, &since, None, async {
        bob.send_text(&room, "b2", "bob again").await;
        carol.send_text(&room, "c2", "carol again").await;
    })
    .await;
    let mut got = timeline_bodies(&body, &room);
    if got.is_empty() {
        // Woken by bob's message alone, answered before carol's arrived.
        body = quiet_sync(&alice, Some(&next(&body)), None, 5_000).await;
        got = timeline_bodies(&body, &room);
    }
    assert_eq!(got, ["carol again"], "{body}");
    assert_eq!(count(&body), Some(unread + 1), "bob's message does not count: {body}");
    let since = next(&body);

    // Invites from bob do not show, in incremental and initial syncs; carol's do.
    let bobs = bob.create_room(json!({"preset": "private_chat"})).await;
    let carols = carol.create_room(json!({"preset": "private_chat"})).await;
    bob.post(&format!("/_matrix/client/v3/rooms/{}/invite", enc(&bobs)), json!({"user_id": alice.user_id})).await.ok();
    carol
        .post(&format!("/_matrix/client/v3/rooms/{}/invite", enc(&carols)), json!({"user_id": alice.user_id}))
        .await
        .ok();
    let body = sync_until(&alice, &since, None, |b| b["rooms"]["invite"].get(&carols).is_some()).await;
    assert!(body["rooms"]["invite"].get(&bobs).is_none(), "{body}");
    let full = quiet_sync(&alice, None, None, 0).await;
    assert!(full["rooms"]["invite"].get(&carols).is_some());
    assert!(full["rooms"]["invite"].get(&bobs).is_none(), "{full}");
}

/// When someone speaks for the first time, every lazy-loading device of the room lacks their
/// member event: a woken long-poll gets it (with the room's summary and the speaker's presence)
/// from the worker's memory, exactly as a sync computed from PostgreSQL sends it.
async fn a_new_speaker_reaches_lazy_long_polls_from_memory_as_the_exact_path_sends_it(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    join(&bob, &room).await;
    join(&carol, &room).await;
    alice.send_text(&room, "a0", "alice speaks").await;
    let lazy = json!({"room": {"state": {"lazy_load_members": true}, "timeline": {"limit": 1}}});
    let body = quiet_sync(&alice, None, Some(&lazy), 0).await;
    let m = |id: &str, ms: &str| (id.to_owned(), ms.to_owned());
    assert_eq!(members(&body, &room), [m(&alice.user_id, "join")], "{body}");
    let since = next(&body);

    let fast_before = server.metric("trellis_sync_fast_responses_total").await;
    let fast = woken_poll(&server, &alice, &since, Some(&lazy), async {
        bob.send_text(&room, "b0", "bob speaks first").await;
    })
    .await;
    assert_eq!(
        server.metric("trellis_sync_fast_responses_total").await - fast_before,
        1.0,
        "answered from memory: {fast}"
    );
    assert_eq!(timeline_bodies(&fast, &room), ["bob speaks first"]);
    assert_eq!(members(&fast, &room), [m(&bob.user_id, "join")], "{fast}");
    let summary = &fast["rooms"]["join"][&room]["summary"];
    assert_eq!(
        *summary,
        json!({"m.heroes": [bob.user_id, carol.user_id], "m.joined_member_count": 3, "m.invited_member_count": 0})
    );
    assert!(presence_of(&fast, &bob.user_id).is_some(), "the speaker's presence comes along: {fast}");

    // The same token asked again is answered by the exact path (nothing to wait for): the
    // device is sent what it lacked as of that token, the same as the fast path sent.
    let exact = quiet_sync(&alice, Some(&since), Some(&lazy), 0).await;
    assert_eq!(timeline_bodies(&exact, &room), timeline_bodies(&fast, &room));
    assert_eq!(members(&exact, &room), members(&fast, &room));
    assert_eq!(exact["rooms"]["join"][&room]["summary"], *summary);
    assert!(presence_of(&exact, &bob.user_id).is_some(), "{exact}");

    // Bob's event is on the device now: his next message comes alone, from memory too.
    let since = next(&fast);
    let again = woken_poll(&server, &alice, &since, Some(&lazy), async {
        bob.send_text(&room, "b1", "bob again").await;
    })
    .await;
    assert_eq!(timeline_bodies(&again, &room), ["bob again"]);
    assert_eq!(members(&again, &room), [], "{again}");
    assert!(again["rooms"]["join"][&room].get("summary").is_none(), "{again}");
    assert_eq!(server.metric("trellis_sync_fast_responses_total").await - fast_before, 2.0);
    // What the fast path sent is recorded (in a batch), so the exact path does not send it again.
    server.until_metric("trellis_sync_lazy_records_written_total", 1.0).await;
    let exact = quiet_sync(&alice, Some(&since), Some(&lazy), 0).await;
    assert_eq!(timeline_bodies(&exact, &room), ["bob again"]);
    assert_eq!(members(&exact, &room), [], "{exact}");
}

async fn named_rooms_have_counts_but_no_heroes(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let named = alice.create_room(json!({"preset": "public_chat", "name": "Lunch"})).await;
    let unnamed = alice.create_room(json!({"preset": "public_chat"})).await;
    join(&bob, &named).await;
    join(&bob, &unnamed).await;
    let body = quiet_sync(&alice, None, None, 0).await;
    let summary = |room: &str| body["rooms"]["join"][room]["summary"].clone();
    assert_eq!(summary(&named), json!({"m.joined_member_count": 2, "m.invited_member_count": 0}));
    assert_eq!(
        summary(&unnamed),
        json!({"m.heroes": [bob.user_id], "m.joined_member_count": 2, "m.invited_member_count": 0})
    );
    // A name removed (emptied) brings the heroes back.
    let since = next(&body);
    alice.put(&format!("/_matrix/client/v3/rooms/{}/state/m.room.name", enc(&named)), json!({"name": ""})).await.ok();
    let carol = server.user("carol").await;
    join(&carol, &named).await;
    let body = sync_until(&alice, &since, None, |b| {
        b["rooms"]["join"][&named]["summary"]["m.joined_member_count"] == json!(3)
    })
    .await;
    assert_eq!(body["rooms"]["join"][&named]["summary"]["m.heroes"], json!([bob.user_id, carol.user_id]));
}

/// The spec's rule for `m.heroes`: the first members to join (or be invited), in that order;
/// when nobody else is left in the room, the first who left or were banned.
async fn heroes_are_the_first_to_join_then_the_first_to_leave(server: TestServer) {
    let alice = server.user("alice").await;
    let zoe = server.user("zoe").await;
    let adam = server.user("adam").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    join(&zoe, &room).await;
    join(&adam, &room).await;
    let heroes = |body: &Value| body["rooms"]["join"][&room]["summary"]["m.heroes"].clone();
    let body = quiet_sync(&alice, None, None, 0).await;
    // Zoe joined first: she comes first although Adam sorts before her.
    assert_eq!(heroes(&body), json!([zoe.user_id, adam.user_id]), "{body}");

    for member in [&zoe, &adam] {
        member.post(&format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)), json!({})).await.ok();
    }
    let body = quiet_sync(&alice, None, None, 0).await;
    assert_eq!(body["rooms"]["join"][&room]["summary"]["m.joined_member_count"], json!(1), "{body}");
    assert_eq!(heroes(&body), json!([zoe.user_id, adam.user_id]), "the leavers name the room: {body}");
}

async fn federation_format_carries_event_ids(server: TestServer) {
    let alice = server.user("alice").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    let sent = alice.send_text(&room, "f1", "hello").await;
    let body = quiet_sync(&alice, None, Some(&json!({"event_format": "federation"})), 0).await;
    let joined = &body["rooms"]["join"][&room];
    let events =
        joined["timeline"]["events"].as_array().unwrap().iter().chain(joined["state"]["events"].as_array().unwrap());
    for e in events.clone() {
        assert!(e["event_id"].as_str().is_some_and(|id| id.starts_with('$')), "{e}");
        assert!(e["hashes"].is_object() && e["room_id"] == room.as_str(), "a PDU: {e}");
    }
    assert!(events.clone().any(|e| e["event_id"] == sent.as_str()));
}
