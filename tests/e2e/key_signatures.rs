//! Signatures on end-to-end encryption keys are verified: a cross-signing key not signed by
//! the master key is refused (400 `M_INVALID_SIGNATURE`), a signature upload reports each bad
//! signature in `failures` (`M_INVALID_SIGNATURE`, `M_NOT_FOUND` for an unknown key) and keeps
//! nothing of it, and good signatures of every kind are stored and served by `/keys/query`.

use serde_json::{Value, json};
use trellis_testkit::{Client, SigningKey, TestServer, signing::with_signature};

both_modes!(cross_signing_keys_must_be_signed_by_the_master_key, uploaded_signatures_are_verified);

const V3: &str = "/_matrix/client/v3";

/// A cross-signing key of `c`'s, derived from `tag`.
fn key(c: &Client, tag: &str) -> SigningKey {
    SigningKey::from_seed(&format!("{} {tag}", c.user_id))
}

async fn query(c: &Client, of: &Client) -> Value {
    c.post(&format!("{V3}/keys/query"), json!({"device_keys": {of.user_id.clone(): []}})).await.ok()
}

async fn cross_signing_keys_must_be_signed_by_the_master_key(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let me = alice.user_id.clone();
    let path = format!("{V3}/keys/device_signing/upload");
    let upload = |body: Value| alice.post(&path, body);
    let (master, ssk, usk) = (key(&alice, "master"), key(&alice, "ssk"), key(&alice, "usk"));
    let master_json = master.cross_signing_key(&me, "master");
    let ssk_json = ssk.cross_signing_key(&me, "self_signing");
    let usk_json = usk.cross_signing_key(&me, "user_signing");

    // No master key anywhere: nothing can sign the others.
    upload(json!({"self_signing_key": master.signed(&me, &ssk_json)})).await.err(400, "M_MISSING_PARAM");
    // Unsigned, signed by another key, a forged signature under the master key's name.
    let impostor = key(&bob, "master");
    let forged = with_signature(&ssk_json, &me, &master.key_id(), impostor.signature(&me, &ssk_json));
    for bad in [ssk_json.clone(), impostor.signed(&me, &ssk_json), forged] {
        upload(json!({"master_key": master_json, "self_signing_key": bad})).await.err(400, "M_INVALID_SIGNATURE");
    }
    // Nothing of a refused upload was kept.
    let q = query(&bob, &alice).await;
    assert!(q["master_keys"].get(&me).is_none(), "{q}");

    // Signed by the master key uploaded with them: taken, and served with the signature.
    upload(json!({"master_key": master_json, "self_signing_key": master.signed(&me, &ssk_json)})).await.ok();
    // A later user-signing key is checked against the stored master key.
    upload(json!({"user_signing_key": usk.signed(&me, &usk_json)})).await.err(400, "M_INVALID_SIGNATURE");
    upload(json!({"user_signing_key": master.signed(&me, &usk_json)})).await.ok();
    let q = query(&bob, &alice).await;
    assert_eq!(q["master_keys"][&me], master_json, "{q}");
    assert_eq!(q["self_signing_keys"][&me], master.signed(&me, &ssk_json), "{q}");
    let own = query(&alice, &alice).await;
    assert_eq!(own["user_signing_keys"][&me], master.signed(&me, &usk_json), "{own}");
}

async fn uploaded_signatures_are_verified(server: TestServer) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let (me, dev) = (alice.user_id.clone(), alice.device_id.clone());
    alice.post(&format!("{V3}/keys/upload"), json!({"device_keys": alice.device_keys()})).await.ok();
    let (master, ssk, usk) = (key(&alice, "master"), key(&alice, "ssk"), key(&alice, "usk"));
    let master_json = master.cross_signing_key(&me, "master");
    let keys = json!({
        "master_key": master_json,
        "self_signing_key": master.signed(&me, &ssk.cross_signing_key(&me, "self_signing")),
        "user_signing_key": master.signed(&me, &usk.cross_signing_key(&me, "user_signing")),
    });
    alice.post(&format!("{V3}/keys/device_signing/upload"), keys).await.ok();
    let bob_master = key(&bob, "master");
    let bob_master_json = bob_master.cross_signing_key(&bob.user_id, "master");
    bob.post(&format!("{V3}/keys/device_signing/upload"), json!({"master_key": bob_master_json})).await.ok();
    let path = format!("{V3}/keys/signatures/upload");
    let upload = |body: Value| alice.post(&path, body);

    // Bad signatures of each kind: her device under her self-signing key's name, Bob's master
    // key under her user-signing key's name, her master key by her device; and a device that
    // does not exist. Each is a failure of its own; the answer is a 200.
    let device = alice.device_keys();
    let impostor = key(&bob, "impostor");
    let bad_device = with_signature(&device, &me, &ssk.key_id(), impostor.signature(&me, &device));
    let bad_bob = with_signature(&bob_master_json, &me, &usk.key_id(), impostor.signature(&me, &bob_master_json));
    let device_key = alice.device_signing_key();
    let bad_master = with_signature(&master_json, &me, &device_key.key_id(), impostor.signature(&me, &master_json));
    let body = json!({
        me.clone(): {dev.clone(): bad_device, master.public(): bad_master, "NOSUCHDEVICE": ssk.signed(&me, &device)},
        bob.user_id.clone(): {bob_master.public(): bad_bob},
    });
    let out = upload(body).await.ok();
    let failure = |user: &str, key: &str| out["failures"][user][key]["errcode"].clone();
    assert_eq!(failure(&me, &dev), "M_INVALID_SIGNATURE", "{out}");
    assert_eq!(failure(&me, master.public()), "M_INVALID_SIGNATURE", "{out}");
    assert_eq!(failure(&me, "NOSUCHDEVICE"), "M_NOT_FOUND", "{out}");
    assert_eq!(failure(&bob.user_id, bob_master.public()), "M_INVALID_SIGNATURE", "{out}");
    // None of them is served.
    let q = query(&alice, &alice).await;
    assert!(q["device_keys"][&me][&dev]["signatures"][&me].get(ssk.key_id()).is_none(), "{q}");
    assert!(q["master_keys"][&me]["signatures"].get(&me).is_none(), "{q}");
    let q = query(&alice, &bob).await;
    assert!(q["master_keys"][&bob.user_id]["signatures"].get(&me).is_none(), "{q}");

    // The good ones, all at once: stored, and served.
    let body = json!({
        me.clone(): {dev.clone(): ssk.signed(&me, &device), master.public(): device_key.signed(&me, &master_json)},
        bob.user_id.clone(): {bob_master.public(): usk.signed(&me, &bob_master_json)},
    });
    let out = upload(body).await.ok();
    assert_eq!(out["failures"], json!({}), "{out}");
    let q = query(&bob, &alice).await;
    let device_sigs = &q["device_keys"][&me][&dev]["signatures"][&me];
    assert_eq!(device_sigs[ssk.key_id()], ssk.signature(&me, &device), "{q}");
    assert_eq!(device_sigs[device_key.key_id()], device_key.signature(&me, &device), "{q}");
    assert_eq!(q["master_keys"][&me]["signatures"][&me][device_key.key_id()], device_key.signature(&me, &master_json));
    let q = query(&alice, &bob).await;
    let usk_sig = usk.signature(&me, &bob_master_json);
    assert_eq!(q["master_keys"][&bob.user_id]["signatures"][&me][usk.key_id()], usk_sig, "{q}");
}
