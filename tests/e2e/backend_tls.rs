//! TLS to PostgreSQL (`sslmode=verify-full` with `database.tls_ca_file`) and to Redis
//! (`rediss://` with `redis.tls_ca_file`): Trellis runs on backends that accept nothing else,
//! in both modes, and will not talk to a backend whose certificate its CA did not sign.

use std::path::PathBuf;

use trellis_bus::RedisServer;
use trellis_core::config::{BusBackend, Config};
use trellis_storage::Target;
use trellis_testkit::TestServer;

use crate::{certs::issue, tls_backends::TlsBackends};

fn on_tls_backends(backends: &TlsBackends) -> impl Fn(&mut Config) + use<> {
    let (database, redis, ca) = (backends.database_url("verify-full"), backends.redis_url(), backends.ca_file.clone());
    move |c: &mut Config| {
        c.database.url = database.clone();
        c.database.tls_ca_file = Some(ca.clone());
        c.redis.url = Some(redis.clone());
        c.redis.tls_ca_file = Some(ca.clone());
        c.bus.backend = BusBackend::Redis;
    }
}

/// Bob's long-poll is woken (through Redis) by the message Alice sends (into PostgreSQL).
async fn a_message_reaches_a_long_poll(server: TestServer) {
    let (alice, bob, room) = server.pair().await;
    let since = bob.sync(None, None, 0).await["next_batch"].as_str().unwrap().to_owned();
    let poll = server.open_long_poll(&bob, &since).await;
    alice.send_text(&room, "t1", "over TLS both ways").await;
    let body = poll.await.unwrap();
    let events = body["rooms"]["join"][&room]["timeline"]["events"].as_array().cloned().unwrap_or_default();
    assert!(events.iter().any(|e| e["content"]["body"] == "over TLS both ways"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monolith_runs_on_tls_only_backends() {
    let backends = TlsBackends::start(&issue(90));
    a_message_reaches_a_long_poll(TestServer::monolith_configured(on_tls_backends(&backends)).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_mode_runs_on_tls_only_backends() {
    let backends = TlsBackends::start(&issue(90));
    a_message_reaches_a_long_poll(TestServer::split_configured(on_tls_backends(&backends)).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_certificate_from_another_ca_is_refused() {
    let backends = TlsBackends::start(&issue(90));
    let stranger = std::env::temp_dir().join(format!("trellis-stranger-ca-{}.pem", rand::random::<u64>()));
    std::fs::write(&stranger, issue(90).ca_pem).unwrap();
    let reach_database = |url: String, ca: Option<PathBuf>| async move {
        let pool = Target::new(&url, ca.as_deref()).unwrap().pool(1).unwrap();
        trellis_storage::pool::check(&pool).await.map_err(|e| format!("{e:#}"))
    };
    let reach_redis = |ca: PathBuf| {
        let server = RedisServer::new(&backends.redis_url(), Some(&ca));
        async move {
            let mut conn =
                server.client().unwrap().get_multiplexed_async_connection().await.map_err(|e| e.to_string())?;
            redis::cmd("PING").query_async::<String>(&mut conn).await.map_err(|e| e.to_string())
        }
    };

    // The right CA: both answer.
    reach_database(backends.database_url("verify-full"), Some(backends.ca_file.clone())).await.unwrap();
    assert_eq!(reach_redis(backends.ca_file.clone()).await.unwrap(), "PONG");
    // Another CA: neither is trusted.
    let err = reach_database(backends.database_url("require"), Some(stranger.clone())).await.unwrap_err();
    assert!(err.contains("TLS handshake"), "{err}");
    reach_redis(stranger.clone()).await.unwrap_err();
    // And plain text is not what the good connection used: the server refuses it.
    reach_database(backends.database_url("disable"), None).await.unwrap_err();
    std::fs::remove_file(&stranger).ok();
}
