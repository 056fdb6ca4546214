//! What the auth service leaves in PostgreSQL (local implementation only): hashed secrets,
//! what UIA sessions remember, deleted devices, generated localparts.

mod common;

use common::{Harness, SERVER, config, dummy_auth, login, register, register_req};
use deadpool_postgres::Pool;
use trellis_proto::auth::LogoutRequest;

async fn count(pool: &Pool, sql: &str, params: &[&(dyn tokio_postgres::types::ToSql + Sync)]) -> i64 {
    pool.get().await.unwrap().query_one(sql, params).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_are_stored_hashed() {
    let h = Harness::local(config()).await;
    let done = register(&h.svc, "alice", "correct horse").await;
    let token = done.access_token.unwrap();

    let hashed = "SELECT count(*) FROM access_tokens WHERE token_hash = sha256($1::text::bytea) AND user_id = $2";
    assert_eq!(count(&h.pool, hashed, &[&token, &done.user_id]).await, 1);
    let clear = "SELECT count(*) FROM access_tokens WHERE position(convert_to($1, 'UTF8') IN token_hash) > 0";
    assert_eq!(count(&h.pool, clear, &[&token]).await, 0);

    let row = h
        .pool
        .get()
        .await
        .unwrap()
        .query_one("SELECT password_hash FROM users WHERE user_id = $1", &[&done.user_id])
        .await
        .unwrap();
    let stored: String = row.get(0);
    assert!(stored.starts_with("$argon2id$"), "{stored}");
    assert!(!stored.contains("correct horse"));
}

#[tokio::test(flavor = "multi_thread")]
async fn uia_sessions_keep_a_password_hash_and_their_account() {
    let h = Harness::local(config()).await;
    let sessions = "SELECT count(*) FROM uia_sessions WHERE kind = 'register'";
    assert_eq!(count(&h.pool, sessions, &[]).await, 0);
    let mut req = register_req("bob", "correct horse");
    let challenge = h.svc.register(req.clone()).await.unwrap_err();
    let session = challenge.client_body()["session"].as_str().unwrap().to_owned();
    let one = "SELECT count(*) FROM uia_sessions WHERE session_id = $1 AND kind = 'register' \
               AND password_hash LIKE '$argon2id$%' AND position('correct horse' IN params) = 0";
    assert_eq!(count(&h.pool, one, &[&session]).await, 1, "the password is remembered hashed, never in clear");
    req.auth_json = dummy_auth(Some(&session));
    let done = h.svc.register(req).await.unwrap();
    // Kept, with the account it created, so that a replay answers with that account.
    let registered = "SELECT count(*) FROM uia_sessions WHERE session_id = $1 AND registered_user_id = $2";
    assert_eq!(count(&h.pool, registered, &[&session, &done.user_id]).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn devices_follow_logins_and_logouts() {
    let h = Harness::local(config()).await;
    let mut req = register_req("carol", "correct horse");
    req.inhibit_login = true;
    req.auth_json = dummy_auth(None);
    let user_id = h.svc.register(req).await.unwrap().user_id;
    let devices = "SELECT count(*) FROM devices WHERE user_id = $1";
    assert_eq!(count(&h.pool, devices, &[&user_id]).await, 0, "inhibit_login creates no device");

    let a = login(&h.svc, "carol", "correct horse").await;
    let b = login(&h.svc, "carol", "correct horse").await;
    let c = login(&h.svc, "carol", "correct horse").await;
    assert_eq!(count(&h.pool, devices, &[&user_id]).await, 3);

    h.svc.logout(LogoutRequest { access_token: a.access_token, all_devices: false }).await.unwrap();
    assert_eq!(count(&h.pool, devices, &[&user_id]).await, 2);
    let gone = "SELECT count(*) FROM devices WHERE user_id = $1 AND device_id = $2";
    assert_eq!(count(&h.pool, gone, &[&user_id, &a.device_id]).await, 0);
    assert_eq!(count(&h.pool, gone, &[&user_id, &b.device_id]).await, 1);

    h.svc.logout(LogoutRequest { access_token: c.access_token, all_devices: true }).await.unwrap();
    assert_eq!(count(&h.pool, devices, &[&user_id]).await, 0);
    let tokens = "SELECT count(*) FROM access_tokens WHERE user_id = $1";
    assert_eq!(count(&h.pool, tokens, &[&user_id]).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn generated_localparts_continue_after_existing_ones() {
    let h = Harness::local(config()).await;
    let client = h.pool.get().await.unwrap();
    for id in ["@41", "@7", "@abc"] {
        let user_id = format!("{id}:{SERVER}");
        client.execute("INSERT INTO users (user_id, created_ts) VALUES ($1, 0)", &[&user_id]).await.unwrap();
    }
    let mut req = register_req("ignored", "correct horse");
    req.username = None;
    req.auth_json = dummy_auth(None);
    let first = h.svc.register(req.clone()).await.unwrap();
    assert_eq!(first.user_id, format!("@42:{SERVER}"));

    // Another process takes the next one behind this service's back: it must skip it.
    let taken = format!("@43:{SERVER}");
    client.execute("INSERT INTO users (user_id, created_ts) VALUES ($1, 0)", &[&taken]).await.unwrap();
    let second = h.svc.register(req).await.unwrap();
    assert_eq!(second.user_id, format!("@44:{SERVER}"));
}
