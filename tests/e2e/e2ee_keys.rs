//! End-to-end encryption: key upload, query and claim (fallback keys included), cross-signing
//! keys and signatures, device-list changes in `/sync` and `/keys/changes`, send-to-device
//! messages, one-time-key counts in `/sync`.

use serde_json::{Value, json};
use trellis_testkit::{Client, SigningKey, TestServer, enc};

both_modes!(
    upload_query_and_claim_keys,
    claims_fall_back_to_the_fallback_key,
    cross_signing_and_signatures,
    device_list_changes_reach_room_members,
    to_device_messages,
    key_counts_in_woken_syncs,
);

const V3: &str = "/_matrix/client/v3";

fn otk(n: u32) -> Value {
    json!({"key": format!("key{n}"), "signatures": {}})
}

fn next(body: &Value) -> String {
    body["next_batch"].as_str().unwrap().to_owned()
}

async fn upload_query_and_claim_keys(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    // Keys for somebody else's device are refused.
    let mut wrong = alice.device_keys();
    wrong["device_id"] = json!("OTHER");
    alice.post(&format!("{V3}/keys/upload"), json!({"device_keys": wrong})).await.err(400, "M_INVALID_PARAM");
    // Bodies of the wrong shape, and key objects that are not the spec's, are bad JSON; a
    // `null` where a map or list goes is an absent one (as Synapse).
    let upload_path = format!("{V3}/keys/upload");
    let upload = |body: Value| alice.post(&upload_path, body);
    upload(json!({"one_time_keys": []})).await.err(400, "M_BAD_JSON");
    upload(json!({"one_time_keys": {"nocolon": {}}})).await.err(400, "M_BAD_JSON");
    upload(json!({"device_keys": "not keys"})).await.err(400, "M_BAD_JSON");
    upload(json!({"one_time_keys": null, "fallback_keys": null})).await.ok();
    alice.post(&format!("{V3}/keys/query"), json!({})).await.err(400, "M_BAD_JSON");
    alice.post(&format!("{V3}/keys/query"), json!({"device_keys": {"not a user": []}})).await.err(400, "M_BAD_JSON");
    let signing = json!({"master_key": {"user_id": alice.user_id, "keys": {}}});
    alice.post(&format!("{V3}/keys/device_signing/upload"), signing).await.err(400, "M_BAD_JSON");

    let up = alice
        .post(
            &format!("{V3}/keys/upload"),
            json!({
                "device_keys": alice.device_keys(),
                "one_time_keys": {"signed_curve25519:A1": otk(1), "signed_curve25519:A2": otk(2)},
            }),
        )
        .await
        .ok();
    assert_eq!(up["one_time_key_counts"]["signed_curve25519"], 2);
    // The same key again is fine; the same ID with other content is not.
    let again =
        alice.post(&format!("{V3}/keys/upload"), json!({"one_time_keys": {"signed_curve25519:A1": otk(1)}})).await;
    assert_eq!(again.ok()["one_time_key_counts"]["signed_curve25519"], 2);
    alice
        .post(&format!("{V3}/keys/upload"), json!({"one_time_keys": {"signed_curve25519:A1": otk(9)}}))
        .await
        .err(400, "M_INVALID_PARAM");

    // Query: every device when the list is empty, on the unstable and r0 prefixes too.
    for prefix in ["/_matrix/client/v3", "/_matrix/client/unstable", "/_matrix/client/r0"] {
        let q =
            bob.post(&format!("{prefix}/keys/query"), json!({"device_keys": {alice.user_id.clone(): []}})).await.ok();
        let keys = &q["device_keys"][&alice.user_id][&alice.device_id];
        let ed25519 = alice.device_signing_key();
        assert_eq!(keys["keys"][ed25519.key_id()], ed25519.public(), "{prefix}: {q}");
        assert_eq!(q["failures"], json!({}));
    }
    let all = bob.post(&format!("{V3}/keys/query"), json!({"device_keys": {alice.user_id.clone(): null}})).await;
    assert!(all.ok()["device_keys"][&alice.user_id][&alice.device_id].is_object(), "null asks for every device");
    let q = bob.post(&format!("{V3}/keys/query"), json!({"device_keys": {alice.user_id.clone(): ["NOPE"]}})).await;
    assert_eq!(q.ok()["device_keys"][&alice.user_id], json!({}));

    // Claim: each key once, then nothing.
    let claim = json!({"one_time_keys": {alice.user_id.clone(): {alice.device_id.clone(): "signed_curve25519"}}});
    let mut seen = Vec::new();
    for _ in 0..2 {
        let c = bob.post(&format!("{V3}/keys/claim"), claim.clone()).await.ok();
        let keys = c["one_time_keys"][&alice.user_id][&alice.device_id].as_object().unwrap().clone();
        assert_eq!(keys.len(), 1, "{c}");
        seen.push(keys.keys().next().unwrap().clone());
    }
    seen.sort();
    assert_eq!(seen, ["signed_curve25519:A1", "signed_curve25519:A2"]);
    let empty = bob.post(&format!("{V3}/keys/claim"), claim).await.ok();
    assert_eq!(empty["one_time_keys"], json!({}));

    // One-time-key counts in /sync; the fallback key types are always listed.
    let s = alice.sync(None, None, 0).await;
    assert_eq!(s["device_one_time_keys_count"]["signed_curve25519"], 0);
    assert_eq!(s["device_unused_fallback_key_types"], json!([]));
    alice.post(&format!("{V3}/keys/upload"), json!({"one_time_keys": {"signed_curve25519:A3": otk(3)}})).await.ok();
    let s = alice.sync(Some(&next(&s)), None, 0).await;
    assert_eq!(s["device_one_time_keys_count"]["signed_curve25519"], 1);
}

async fn claims_fall_back_to_the_fallback_key(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    alice
        .post(
            &format!("{V3}/keys/upload"),
            json!({
                "device_keys": alice.device_keys(),
                "one_time_keys": {"signed_curve25519:O1": otk(1)},
                "org.matrix.msc2732.fallback_keys": {"signed_curve25519:F1": {"key": "fb", "fallback": true}},
            }),
        )
        .await
        .ok();
    let s = alice.sync(None, None, 0).await;
    assert_eq!(s["device_unused_fallback_key_types"], json!(["signed_curve25519"]));
    let claim = json!({"one_time_keys": {alice.user_id.clone(): {alice.device_id.clone(): "signed_curve25519"}}});
    let first = bob.post(&format!("{V3}/keys/claim"), claim.clone()).await.ok();
    assert!(first["one_time_keys"][&alice.user_id][&alice.device_id]["signed_curve25519:O1"].is_object(), "{first}");
    for _ in 0..2 {
        let fb = bob.post(&format!("{V3}/keys/claim"), claim.clone()).await.ok();
        assert_eq!(fb["one_time_keys"][&alice.user_id][&alice.device_id]["signed_curve25519:F1"]["key"], "fb", "{fb}");
    }
    let s = alice.sync(None, None, 0).await;
    assert_eq!(s["device_unused_fallback_key_types"], json!([]), "a used fallback key is not unused");
    // A new fallback key (stable name) is unused again.
    alice
        .post(
            &format!("{V3}/keys/upload"),
            json!({"fallback_keys": {"signed_curve25519:F2": {"key": "fb2", "fallback": true}}}),
        )
        .await
        .ok();
    let s = alice.sync(None, None, 0).await;
    assert_eq!(s["device_unused_fallback_key_types"], json!(["signed_curve25519"]));
}

/// A user's cross-signing keys, real ones derived from `tag` (`MASTER`, `SSK`, `USK`).
fn cs_key(user: &str, tag: &str) -> SigningKey {
    SigningKey::from_seed(&format!("{user} {tag}"))
}

async fn cross_signing_and_signatures(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    alice.post(&format!("{V3}/keys/upload"), json!({"device_keys": alice.device_keys()})).await.ok();
    bob.post(&format!("{V3}/keys/upload"), json!({"device_keys": bob.device_keys()})).await.ok();
    // Master, self-signing and user-signing keys, the last two signed by the master key.
    let keys = |c: &Client, tag: &str| {
        let master = cs_key(&c.user_id, &format!("{tag}MASTER"));
        let ssk = cs_key(&c.user_id, &format!("{tag}SSK")).cross_signing_key(&c.user_id, "self_signing");
        let usk = cs_key(&c.user_id, &format!("{tag}USK")).cross_signing_key(&c.user_id, "user_signing");
        json!({
            "master_key": master.cross_signing_key(&c.user_id, "master"),
            "self_signing_key": master.signed(&c.user_id, &ssk),
            "user_signing_key": master.signed(&c.user_id, &usk),
        })
    };
    let public = |c: &Client, tag: &str| cs_key(&c.user_id, tag).public().to_owned();
    // The first upload needs no user-interactive auth.
    alice.post(&format!("{V3}/keys/device_signing/upload"), keys(&alice, "A")).await.ok();
    bob.post("/_matrix/client/unstable/keys/device_signing/upload", keys(&bob, "B")).await.ok();
    // Uploading the same keys again needs none either; replacing them does.
    alice.post(&format!("{V3}/keys/device_signing/upload"), keys(&alice, "A")).await.ok();
    let replace = alice.post(&format!("{V3}/keys/device_signing/upload"), keys(&alice, "X")).await;
    assert_eq!(replace.status, 401, "{}", replace.body);
    let session = replace.body["session"].as_str().unwrap().to_owned();
    let q = bob.post(&format!("{V3}/keys/query"), json!({"device_keys": {alice.user_id.clone(): []}})).await.ok();
    let (a_master, a_ssk, a_usk) = (public(&alice, "AMASTER"), public(&alice, "ASSK"), public(&alice, "AUSK"));
    assert_eq!(q["master_keys"][&alice.user_id]["keys"][format!("ed25519:{a_master}")], a_master, "not replaced: {q}");
    assert_eq!(q["self_signing_keys"][&alice.user_id]["keys"][format!("ed25519:{a_ssk}")], a_ssk);
    assert!(q["user_signing_keys"].get(&alice.user_id).is_none(), "user-signing keys are private: {q}");
    let own = alice.post(&format!("{V3}/keys/query"), json!({"device_keys": {alice.user_id.clone(): []}})).await.ok();
    assert_eq!(own["user_signing_keys"][&alice.user_id]["keys"][format!("ed25519:{a_usk}")], a_usk);

    // Signatures: alice's self-signing key signs her device; her user-signing key signs bob's
    // master key; a signature by a key that is not hers is refused.
    let (ssk, usk) = (cs_key(&alice.user_id, "ASSK"), cs_key(&alice.user_id, "AUSK"));
    let dev = ssk.signed(&alice.user_id, &alice.device_keys());
    let b_master = public(&bob, "BMASTER");
    let bob_master = cs_key(&bob.user_id, "BMASTER").cross_signing_key(&bob.user_id, "master");
    let bob_master_signed = usk.signed(&alice.user_id, &bob_master);
    let bob_usk = cs_key(&bob.user_id, "BUSK");
    let mut forged = bob_master.clone();
    forged["signatures"] =
        json!({alice.user_id.clone(): {bob_usk.key_id(): bob_usk.signature(&alice.user_id, &bob_master)}});
    let r = alice
        .post(
            &format!("{V3}/keys/signatures/upload"),
            json!({alice.user_id.clone(): {alice.device_id.clone(): dev}, bob.user_id.clone(): {b_master.clone(): bob_master_signed}}),
        )
        .await
        .ok();
    assert_eq!(r["failures"], json!({}), "{r}");
    let r = alice
        .post(&format!("{V3}/keys/signatures/upload"), json!({bob.user_id.clone(): {b_master.clone(): forged}}))
        .await;
    assert_eq!(r.ok()["failures"][&bob.user_id][&b_master]["errcode"], "M_INVALID_SIGNATURE");

    let q = bob
        .post(&format!("{V3}/keys/query"), json!({"device_keys": {alice.user_id.clone(): [], bob.user_id.clone(): []}}))
        .await
        .ok();
    let sigs = &q["device_keys"][&alice.user_id][&alice.device_id]["signatures"][&alice.user_id];
    assert_eq!(sigs[ssk.key_id()], ssk.signature(&alice.user_id, &alice.device_keys()), "{q}");
    let self_sig = alice.device_signing_key();
    assert_eq!(sigs[self_sig.key_id()], self_sig.signature(&alice.user_id, &alice.device_keys()));
    // Alice's signature of Bob's master key (by her user-signing key) is hers to see, not
    // Bob's (as Synapse).
    assert!(q["master_keys"][&bob.user_id]["signatures"].get(&alice.user_id).is_none(), "{q}");
    let q = alice.post(&format!("{V3}/keys/query"), json!({"device_keys": {bob.user_id.clone(): []}})).await.ok();
    let usk_sig = usk.signature(&alice.user_id, &bob_master);
    assert_eq!(q["master_keys"][&bob.user_id]["signatures"][&alice.user_id][usk.key_id()], usk_sig, "{q}");

    // The dummy stage is not enough; the password is.
    let mut body = keys(&alice, "X");
    body["auth"] = json!({"type": "m.login.dummy", "session": session});
    let refused = alice.post(&format!("{V3}/keys/device_signing/upload"), body.clone()).await;
    assert_eq!(refused.status, 401, "{}", refused.body);
    body["auth"] = json!({
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": alice.user_id},
        "password": "pw",
        "session": session,
    });
    alice.post(&format!("{V3}/keys/device_signing/upload"), body).await.ok();
    let q = bob.post(&format!("{V3}/keys/query"), json!({"device_keys": {alice.user_id.clone(): []}})).await.ok();
    let x_master = public(&alice, "XMASTER");
    assert_eq!(q["master_keys"][&alice.user_id]["keys"][format!("ed25519:{x_master}")], x_master, "{q}");
}

async fn device_list_changes_reach_room_members(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    let first = bob.sync(None, None, 0).await;
    // Bob joins: alice newly shares a room with him.
    bob.post(&format!("{V3}/join/{}", enc(&room)), json!({})).await.ok();
    let s = bob.sync(Some(&next(&first)), None, 0).await;
    assert!(s["device_lists"]["changed"].as_array().unwrap().contains(&json!(alice.user_id)), "{s}");
    let since = next(&s);

    // Alice uploads device keys while bob long-polls: his sync wakes with her in `changed`.
    // The long-poll is open (waiting on the worker) before anything is sent.
    let poll = server.open_long_poll(&bob, &since).await;
    let started = std::time::Instant::now();
    alice.post(&format!("{V3}/keys/upload"), json!({"device_keys": alice.device_keys()})).await.ok();
    let woke = poll.await.unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "the long-poll was woken");
    assert_eq!(woke["device_lists"]["changed"], json!([alice.user_id]), "{woke}");
    // Carol shares no room with alice: her keys change nothing for bob... and alice's new
    // keys are none of carol's business.
    carol.post(&format!("{V3}/keys/upload"), json!({"device_keys": carol.device_keys()})).await.ok();
    let s = bob.sync(Some(&next(&woke)), None, 0).await;
    assert_eq!(s["device_lists"]["changed"], json!([]), "{s}");

    let changes = bob.get(&format!("{V3}/keys/changes?from={}&to={}", enc(&since), enc(&next(&woke)))).await.ok();
    assert_eq!(changes["changed"], json!([alice.user_id]), "{changes}");
    let none = bob.get(&format!("{V3}/keys/changes?from={}&to={}", enc(&next(&woke)), enc(&next(&s)))).await.ok();
    assert_eq!(none["changed"], json!([]), "{none}");
    bob.get(&format!("{V3}/keys/changes?from=bad&to={}", enc(&since))).await.err(400, "M_INVALID_PARAM");

    // A new login of alice's is a device-list change too; leaving puts her in `left`.
    let mut alice2 = server.client();
    alice2.login("alice", "pw").await;
    let s2 = bob.sync(Some(&next(&s)), None, 0).await;
    assert_eq!(s2["device_lists"]["changed"], json!([alice.user_id]), "{s2}");
    // So is a logout (the device and its keys are gone), and it wakes a long-poll.
    // The long-poll is open (waiting on the worker) before anything is sent.
    let poll = server.open_long_poll(&bob, &next(&s2)).await;
    let started = std::time::Instant::now();
    alice2.post(&format!("{V3}/logout"), json!({})).await.ok();
    let s2 = poll.await.unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "the long-poll was woken");
    assert_eq!(s2["device_lists"]["changed"], json!([alice.user_id]), "{s2}");
    alice.post(&format!("{V3}/rooms/{}/leave", enc(&room)), json!({})).await.ok();
    let s3 = bob.sync(Some(&next(&s2)), None, 5_000).await;
    assert_eq!(s3["device_lists"]["left"], json!([alice.user_id]), "{s3}");
}

async fn to_device_messages(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let mut bob2 = server.client();
    bob2.login("bob", "pw").await;
    let b1 = bob.sync(None, None, 0).await;
    let b2 = bob2.sync(None, None, 0).await;

    // A long-poll is woken by a message to its device.
    // The long-poll is open (waiting on the worker) before anything is sent.
    let poll = server.open_long_poll(&bob, &next(&b1)).await;
    let send = |txn: &str, to: Value| {
        let path = format!("{V3}/sendToDevice/m.test/{txn}");
        let body = json!({"messages": {bob.user_id.clone(): to}});
        let alice = alice.clone();
        async move { alice.put(&path, body).await }
    };
    send("t1", json!({bob.device_id.clone(): {"n": 1}})).await.ok();
    // The same transaction again is not a second message.
    send("t1", json!({bob.device_id.clone(): {"n": 1}})).await.ok();
    // Unknown devices and users are skipped silently.
    alice
        .put(&format!("{V3}/sendToDevice/m.test/t0"), json!({"messages": {"@nobody:localhost": {"X": {}}}}))
        .await
        .ok();
    let woke = poll.await.unwrap();
    let events = woke["to_device"]["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{woke}");
    assert_eq!(events[0], json!({"sender": alice.user_id, "type": "m.test", "content": {"n": 1}}));

    // `*` reaches every device of the user.
    send("t2", json!({"*": {"n": 2}})).await.ok();
    let s = bob.sync(Some(&next(&woke)), None, 5_000).await;
    assert_eq!(s["to_device"]["events"].as_array().unwrap().len(), 1, "{s}");
    assert_eq!(s["to_device"]["events"][0]["content"]["n"], 2);
    let s2 = bob2.sync(Some(&next(&b2)), None, 5_000).await;
    let ns: Vec<&Value> = s2["to_device"]["events"].as_array().unwrap().iter().map(|e| &e["content"]["n"]).collect();
    assert_eq!(ns, [&json!(2)], "bob2 got only the broadcast: {s2}");

    // Kept until acknowledged: syncing again from the same token repeats it; syncing from
    // the next token deletes it.
    let again = bob.sync(Some(&next(&woke)), None, 0).await;
    assert_eq!(again["to_device"]["events"].as_array().unwrap().len(), 1, "{again}");
    let after = bob.sync(Some(&next(&again)), None, 0).await;
    assert_eq!(after["to_device"]["events"], json!([]), "{after}");
    let initial = bob.sync(None, None, 0).await;
    assert_eq!(initial["to_device"]["events"], json!([]), "acknowledged messages are deleted: {initial}");

    // At most 100 a response, oldest first; the rest come with the next sync.
    for i in 0..105 {
        send(&format!("many{i}"), json!({bob.device_id.clone(): {"n": i}})).await.ok();
    }
    let first = bob.sync(Some(&next(&initial)), None, 0).await;
    let events = first["to_device"]["events"].as_array().unwrap();
    assert_eq!((events.len(), &events[0]["content"]["n"], &events[99]["content"]["n"]), (100, &json!(0), &json!(99)));
    let rest = bob.sync(Some(&next(&first)), None, 0).await;
    let ns: Vec<i64> =
        rest["to_device"]["events"].as_array().unwrap().iter().map(|e| e["content"]["n"].as_i64().unwrap()).collect();
    assert_eq!(ns, [100, 101, 102, 103, 104], "{rest}");
    let done = bob.sync(Some(&next(&rest)), None, 0).await;
    assert_eq!(done["to_device"]["events"], json!([]));
}

/// The key counts ride on every sync of a device that has keys, including the long-polls
/// woken by new messages (answered from the worker's cache).
async fn key_counts_in_woken_syncs(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.post(&format!("{V3}/join/{}", enc(&room)), json!({})).await.ok();
    bob.post(
        &format!("{V3}/keys/upload"),
        json!({
            "device_keys": bob.device_keys(),
            "one_time_keys": {"signed_curve25519:B1": otk(1), "signed_curve25519:B2": otk(2)},
            "fallback_keys": {"signed_curve25519:BF": otk(9)},
        }),
    )
    .await
    .ok();
    let mut since = next(&bob.sync(None, None, 0).await);
    for i in 0..3 {
        let poll = server.open_long_poll(&bob, &since).await;
        alice.send_text(&room, &format!("k{i}"), "hello").await;
        let woke = poll.await.unwrap();
        assert!(woke["rooms"]["join"][&room]["timeline"]["events"].as_array().is_some_and(|e| !e.is_empty()), "{woke}");
        assert_eq!(woke["device_one_time_keys_count"]["signed_curve25519"], 2, "{woke}");
        assert_eq!(woke["device_unused_fallback_key_types"], json!(["signed_curve25519"]), "{woke}");
        since = next(&woke);
    }
}
