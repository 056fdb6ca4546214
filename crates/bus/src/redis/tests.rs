//! Tests of the Redis bus against a real Redis server.

use std::{net::TcpListener, process::Command};

use super::*;

fn test_url() -> String {
    std::env::var("TRELLIS_TEST_REDIS_URL").expect("TRELLIS_TEST_REDIS_URL is not set: run the tests with `make test`")
}

fn test_server() -> RedisServer {
    RedisServer::new(&test_url(), None)
}

fn prefix() -> String {
    format!("t{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test(flavor = "multi_thread")]
async fn wakes_subscribers_across_connections() {
    let p = prefix();
    let publisher = RedisBus::connect(&test_server(), &p, Duration::from_secs(30), Shutdown::never()).await.unwrap();
    let worker = RedisBus::connect(&test_server(), &p, Duration::from_secs(30), Shutdown::never()).await.unwrap();
    let other = RedisBus::connect(&test_server(), &prefix(), Duration::from_secs(30), Shutdown::never()).await.unwrap();
    let sub = worker.subscribe(&[Channel::Room("!r:x".into())]).await.unwrap();
    let foreign = other.subscribe(&[Channel::Room("!r:x".into())]).await.unwrap();
    publisher.publish(&[Channel::Room("!r:x".into())], 42).await;
    tokio::time::timeout(Duration::from_secs(5), sub.wait()).await.expect("woken");
    assert_eq!(sub.announced().events, 42);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), foreign.wait()).await.is_err(),
        "another prefix (deployment) must not hear it"
    );
}

async fn connect(p: &str) -> Arc<RedisBus> {
    RedisBus::connect(&test_server(), p, Duration::from_secs(30), Shutdown::never()).await.unwrap()
}

/// Waits until `sub` has heard of events up to `pos`.
async fn heard(sub: &Subscription, pos: StreamPos) {
    tokio::time::timeout(Duration::from_secs(5), async {
        while sub.announced().events < pos {
            sub.wait().await;
        }
    })
    .await
    .expect("woken");
}

/// A worker hears nothing of a batch that touches none of its channels: no message, no
/// marker.
#[tokio::test(flavor = "multi_thread")]
async fn a_worker_hears_only_the_batches_of_its_channels() {
    let p = prefix();
    let (publisher, one, two) = (connect(&p).await, connect(&p).await, connect(&p).await);
    let a = one.subscribe(&[Channel::Room("!a:x".into())]).await.unwrap();
    let b = two.subscribe(&[Channel::Room("!b:x".into()), Channel::User("@b:x".into())]).await.unwrap();
    for pos in 1..=5 {
        publisher.publish(&[Channel::Room("!a:x".into())], pos).await;
    }
    heard(&a, 5).await;
    // Both rooms in one batch: worker two hears only its own channel's message, and is
    // woken at the batch's end, with its other channel quiet.
    publisher.publish(&[Channel::Room("!a:x".into()), Channel::Room("!b:x".into())], 6).await;
    heard(&b, 6).await;
    heard(&a, 6).await;
    // Redis delivers in order: anything of the earlier batches would have come first.
    assert_eq!(two.messages_received(), 1, "worker two heard only the batch naming its room");
    assert_eq!(one.messages_received(), 6);
    let news = b.news_since(&trellis_core::StreamToken::default());
    assert_eq!(news.events_complete, 6);
}

/// Wake-ups of the other streams wake at once, without any batch.
#[tokio::test(flavor = "multi_thread")]
async fn other_streams_wake_at_once() {
    let p = prefix();
    let (publisher, worker) = (connect(&p).await, connect(&p).await);
    let sub = worker.subscribe(&[Channel::Room("!a:x".into())]).await.unwrap();
    publisher.publish_at(&[Channel::Room("!a:x".into())], Stream::Typing, 3).await;
    tokio::time::timeout(Duration::from_secs(5), sub.wait()).await.expect("woken");
    assert_eq!(sub.announced().get(Stream::Typing), 3);
    // A process hears what it publishes itself (a sync worker announces typing it holds).
    for pos in 4..=40 {
        worker.publish_at(&[Channel::Room("!a:x".into())], Stream::Typing, pos).await;
        worker.publish(&[Channel::Room("!a:x".into())], pos).await;
    }
    tokio::time::timeout(Duration::from_secs(5), async {
        while sub.announced().get(Stream::Typing) < 40 || sub.announced().events < 40 {
            sub.wait().await;
        }
    })
    .await
    .expect("every wake-up heard");
}

/// A worker that heard nothing of the batches of other users' rooms learns, through a
/// barrier, that it has heard everything published so far.
#[tokio::test(flavor = "multi_thread")]
async fn a_quiet_worker_catches_up_through_a_barrier() {
    let p = prefix();
    let (publisher, worker) = (connect(&p).await, connect(&p).await);
    let sub = worker.subscribe(&[Channel::Room("!a:x".into())]).await.unwrap();
    for pos in 1..=9 {
        publisher.publish(&[Channel::Room("!z:x".into())], pos).await;
    }
    let zero = trellis_core::StreamToken::default();
    // Each call waits a bounded time for its barrier: a loaded machine may need several.
    for _ in 0..50 {
        worker.catch_up().await;
        if sub.news_since(&zero).events_complete >= 9 {
            break;
        }
    }
    assert_eq!(sub.news_since(&zero).events_complete, 9);
    assert_eq!(worker.messages_received(), 0, "caught up without hearing the batches");
    // A batch of its own afterwards still wakes it.
    publisher.publish(&[Channel::Room("!a:x".into())], 10).await;
    heard(&sub, 10).await;
}

/// A batch is complete only when each of its channels a worker listens to was heard; one
/// whose message never comes ends the batch after a moment; a large batch uses the marker.
#[tokio::test(flavor = "multi_thread")]
async fn a_batch_ends_when_all_its_channels_were_heard() {
    let p = prefix();
    let (publisher, worker) = (connect(&p).await, connect(&p).await);
    let rooms: Vec<Channel> = (0..40).map(|i| Channel::Room(format!("!r{i}:x"))).collect();
    let sub = worker.subscribe(&rooms).await.unwrap();
    let zero = trellis_core::StreamToken::default();
    publisher.publish(&rooms[..3], 3).await;
    heard(&sub, 3).await;
    let news = sub.news_since(&zero);
    assert_eq!(news.changes.len(), 3, "woken once the whole batch was heard: {news:?}");
    assert_eq!(news.events_complete, 3);

    // A batch naming a listened channel whose message is never sent.
    let mut conn = redis::Client::open(test_url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let keys = vec![rooms[0].key(&p), rooms[1].key(&p)];
    let payload = batches::encode_listed(4, &keys);
    let _: () = redis::cmd("PUBLISH").arg(&keys[0]).arg(&payload).query_async(&mut conn).await.unwrap();
    heard(&sub, 4).await;
    assert_eq!(sub.news_since(&zero).events_complete, 4);

    // More channels than a message names: the shared marker ends the batch.
    publisher.publish(&rooms, 5).await;
    heard(&sub, 5).await;
    let news = sub.news_since(&zero);
    assert_eq!((news.changes.len(), news.events_complete), (40, 5));
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_channels_are_unsubscribed_after_linger() {
    let p = prefix();
    let bus = RedisBus::connect(&test_server(), &p, Duration::from_millis(200), Shutdown::never()).await.unwrap();
    let sub = bus.subscribe(&[Channel::User("@u:x".into())]).await.unwrap();
    assert_eq!(bus.channel_count(), 1);
    drop(sub);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(bus.channel_count(), 0);
    let mut conn = redis::Client::open(test_url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let n: Vec<(String, i64)> =
        redis::cmd("PUBSUB").arg("NUMSUB").arg(format!("{p}.u.@u:x")).query_async(&mut conn).await.unwrap();
    assert_eq!(n[0].1, 0, "redis no longer has the subscription");
}

/// A private redis-server that the test may kill and restart on the same port.
struct PrivateRedis {
    port: u16,
    child: std::process::Child,
}

impl PrivateRedis {
    fn start(port: u16) -> PrivateRedis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed (make test installs it)");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        PrivateRedis { port, child }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn survives_a_redis_restart() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let redis = PrivateRedis::start(port);
    let url = RedisServer::new(&format!("redis://127.0.0.1:{}/", redis.port), None);
    let p = prefix();
    let publisher = RedisBus::connect(&url, &p, Duration::from_secs(30), Shutdown::never()).await.unwrap();
    let worker = RedisBus::connect(&url, &p, Duration::from_secs(30), Shutdown::never()).await.unwrap();
    let sub = worker.subscribe(&[Channel::Room("!a:x".into())]).await.unwrap();
    let zero = trellis_core::StreamToken::default();
    sub.baseline(&zero);
    assert!(sub.news_since(&zero).known);

    drop(redis);
    // The held long-poll is woken so it can fall back to PostgreSQL.
    tokio::time::timeout(Duration::from_secs(5), sub.wait()).await.expect("woken by the outage");
    assert!(!worker.is_healthy());
    assert!(!sub.news_since(&zero).known, "messages may be lost: knowledge is void");
    sub.baseline(&zero);
    assert!(!sub.news_since(&zero).known, "no baseline before the channel is subscribed again");

    let _redis = PrivateRedis::start(port);
    tokio::time::timeout(Duration::from_secs(10), async {
        while !(worker.is_healthy() && publisher.is_healthy()) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("bus recovers");
    sub.baseline(&zero);
    assert!(sub.news_since(&zero).known, "subscribed again: a new baseline holds");
    // A subscription made during the outage and the old one both work again.
    let late = worker.subscribe(&[Channel::Room("!b:x".into())]).await.unwrap();
    // Drain the recovery wake-up, then expect a real one.
    let _ = tokio::time::timeout(Duration::from_millis(100), sub.wait()).await;
    publisher.publish(&[Channel::Room("!a:x".into()), Channel::Room("!b:x".into())], 9).await;
    tokio::time::timeout(Duration::from_secs(5), async {
        while sub.announced().events < 9 {
            sub.wait().await;
        }
    })
    .await
    .expect("old subscription hears again");
    tokio::time::timeout(Duration::from_secs(5), late.wait()).await.expect("new subscription hears");
    assert_eq!(late.announced().events, 9);
}

/// A TCP relay to Redis that a test can cut (every connection dropped, new ones refused) and
/// restore: a network partition between one process and Redis.
struct Relay {
    port: u16,
    open: Arc<std::sync::atomic::AtomicBool>,
    cut: Arc<tokio::sync::Notify>,
}

impl Relay {
    async fn start(to: u16) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let cut = Arc::new(tokio::sync::Notify::new());
        let (is_open, on_cut) = (open.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !is_open.load(Ordering::Acquire) {
                    continue;
                }
                let on_cut = on_cut.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = on_cut.notified() => {}
                    }
                });
            }
        });
        Relay { port, open, cut }
    }

    fn cut(&self) {
        self.open.store(false, Ordering::Release);
        self.cut.notify_waiters();
    }

    fn restore(&self) {
        self.open.store(true, Ordering::Release);
    }
}

/// A publisher that lost its connection while the workers kept theirs publishes what failed
/// once it is back: a worker never waits out its long-polls for a batch it was not told of.
#[tokio::test(flavor = "multi_thread")]
async fn what_failed_to_publish_goes_out_when_the_publisher_is_back() {
    let redis_port = test_url().trim_end_matches('/').rsplit(':').next().unwrap().parse::<u16>().unwrap();
    let relay = Relay::start(redis_port).await;
    let p = prefix();
    let via_relay = RedisServer::new(&format!("redis://127.0.0.1:{}/", relay.port), None);
    let publisher = RedisBus::connect(&via_relay, &p, Duration::from_secs(30), Shutdown::never()).await.unwrap();
    let worker = connect(&p).await;
    let sub = worker.subscribe(&[Channel::Room("!a:x".into())]).await.unwrap();
    publisher.publish(&[Channel::Room("!a:x".into())], 1).await;
    heard(&sub, 1).await;

    // Only the publisher is cut off from Redis.
    relay.cut();
    publisher.publish(&[Channel::Room("!a:x".into())], 2).await;
    assert!(!publisher.inner.unsent.lock().is_empty(), "the failed batch is kept");
    assert!(worker.is_healthy());

    relay.restore();
    heard(&sub, 2).await;
    assert!(publisher.inner.unsent.lock().is_empty());
}
