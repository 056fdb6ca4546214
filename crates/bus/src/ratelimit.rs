//! The rate limiter shared by every gateway replica: the GCRA arrival time of each key lives
//! in Redis and is read and advanced by one Lua script, using Redis's clock, so replicas
//! neither race nor need synchronised clocks. If Redis cannot be reached the request is
//! allowed: a limiter outage must not become a service outage.

use std::time::Duration;

use redis::{Script, aio::ConnectionManager, aio::ConnectionManagerConfig};
use trellis_core::{
    Error, Result,
    ratelimit::{RateLimiter, Rule},
};

use crate::RedisServer;

/// KEYS[1] = the key; ARGV = interval ms, tolerance ms, 1 to take an action or 0 to only
/// look. Returns 0 (allowed) or the wait in ms. The arrival time is kept in microseconds of
/// Redis's clock and expires once passed.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allowed_at = tat - tolerance
if now < allowed_at then return math.ceil(allowed_at - now) end
if ARGV[3] == '0' then return 0 end
local new_tat = tat + interval
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil(new_tat - now) + 1)
return 0
";

pub struct RedisLimiter {
    conn: ConnectionManager,
    script: Script,
    prefix: String,
}

impl RedisLimiter {
    /// Connects to Redis; keys are named `{prefix}:rl:{key}`.
    pub async fn connect(server: &RedisServer, prefix: &str) -> Result<RedisLimiter> {
        let client = server.client()?;
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_millis(500)));
        let conn = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(|e| Error::internal(format!("cannot reach Redis: {e}")))?;
        Ok(RedisLimiter { conn, script: Script::new(GCRA), prefix: prefix.to_owned() })
    }
}

#[async_trait::async_trait]
impl RateLimiter for RedisLimiter {
    async fn take(&self, key: &str, rule: Rule) -> Option<Duration> {
        self.run(key, rule, true).await
    }

    async fn peek(&self, key: &str, rule: Rule) -> Option<Duration> {
        self.run(key, rule, false).await
    }
}

impl RedisLimiter {
    async fn run(&self, key: &str, rule: Rule, take: bool) -> Option<Duration> {
        let interval = rule.interval_ms();
        if !interval.is_finite() {
            return Some(Duration::from_secs(3600));
        }
        let mut conn = self.conn.clone();
        let wait: redis::RedisResult<u64> = self
            .script
            .key(format!("{}:rl:{key}", self.prefix))
            .arg(interval)
            .arg(rule.tolerance_ms())
            .arg(u8::from(take))
            .invoke_async(&mut conn)
            .await;
        match wait {
            Ok(0) => None,
            Ok(ms) => Some(Duration::from_millis(ms)),
            Err(e) => {
                tracing::warn!(error = %e, "rate limiter unavailable; allowing the request");
                metrics::counter!("trellis_rate_limiter_errors_total").increment(1);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn limiter() -> RedisLimiter {
        let url = std::env::var("TRELLIS_TEST_REDIS_URL")
            .expect("TRELLIS_TEST_REDIS_URL is not set: run the tests with `make test`");
        let prefix = format!("test{}", uuid::Uuid::new_v4().simple());
        RedisLimiter::connect(&crate::RedisServer::new(&url, None), &prefix).await.expect("Redis")
    }

    #[tokio::test]
    async fn peeking_takes_nothing() {
        let limiter = limiter().await;
        let rule = Rule::new(0.001, 2);
        for _ in 0..5 {
            assert_eq!(limiter.peek("k", rule).await, None, "looking is free");
        }
        assert_eq!(limiter.take("k", rule).await, None);
        assert_eq!(limiter.take("k", rule).await, None);
        let wait = limiter.peek("k", rule).await.expect("the burst is spent");
        assert!(wait > Duration::from_secs(900), "{wait:?}");
        assert!(limiter.take("k", rule).await.is_some());
        assert_eq!(limiter.peek("other", rule).await, None);
    }
}
