//! Rate limiting: the rules (a sustained rate and a burst), the limiter contract, and the
//! in-process limiter. Limits are kept as a GCRA "theoretical arrival time" per key, so one
//! number per key is the whole state and a shared store (Redis, in the bus crate) can apply
//! the same algorithm atomically for every gateway replica.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use crate::{Error, ErrorCode, Result};

/// A sustained rate with a burst allowance: `burst` actions at once, then one every
/// `1 / per_second` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub per_second: f64,
    pub burst: u32,
}

impl Rule {
    pub const fn new(per_second: f64, burst: u32) -> Rule {
        Rule { per_second, burst }
    }

    /// Milliseconds between two actions at the sustained rate.
    pub fn interval_ms(&self) -> f64 {
        if self.per_second <= 0.0 { f64::INFINITY } else { 1000.0 / self.per_second }
    }

    /// How far ahead of now the arrival time may run before an action is refused.
    pub fn tolerance_ms(&self) -> f64 {
        self.interval_ms() * f64::from(self.burst.max(1) - 1)
    }
}

/// The actions Trellis limits, each with its own rule and key (an IP address or a user).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// `POST /login`, per client IP address.
    Login,
    /// `POST /register`, per client IP address.
    Register,
    /// Sending a room event, per user.
    Message,
    /// Joining a room, per user.
    Join,
    /// Inviting someone, per user.
    Invite,
    /// Asking for a validation mail (`/requestToken`), per client IP address and per address
    /// mailed, so the server cannot be used to flood a mailbox.
    ThreepidValidation,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Login => "login",
            Action::Register => "register",
            Action::Message => "message",
            Action::Join => "join",
            Action::Invite => "invite",
            Action::ThreepidValidation => "threepid_validation",
        }
    }
}

/// `[rate_limits]`: on by default, with Synapse-like rules.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    pub enabled: bool,
    pub login: Rule,
    pub register: Rule,
    pub message: Rule,
    pub join: Rule,
    pub invite: Rule,
    pub threepid_validation: Rule,
}

impl Default for RateLimitConfig {
    fn default() -> RateLimitConfig {
        RateLimitConfig {
            enabled: true,
            login: Rule::new(0.17, 10),
            register: Rule::new(0.17, 5),
            message: Rule::new(0.2, 10),
            join: Rule::new(0.1, 10),
            invite: Rule::new(0.3, 10),
            // Synapse's `rc_3pid_validation`: a burst of five, then one every five minutes.
            threepid_validation: Rule::new(0.003, 5),
        }
    }
}

impl RateLimitConfig {
    pub fn rule(&self, action: Action) -> Rule {
        match action {
            Action::Login => self.login,
            Action::Register => self.register,
            Action::Message => self.message,
            Action::Join => self.join,
            Action::Invite => self.invite,
            Action::ThreepidValidation => self.threepid_validation,
        }
    }
}

/// Where the per-key state lives: this process, or a store every gateway shares.
#[async_trait::async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    /// Takes one action for `key` under `rule`: `None` if allowed, else how long to wait.
    async fn take(&self, key: &str, rule: Rule) -> Option<Duration>;

    /// Whether an action for `key` would be allowed now, without taking one: `None` if so,
    /// else how long to wait.
    async fn peek(&self, key: &str, rule: Rule) -> Option<Duration>;
}

/// The error for an exceeded limit: 429 `M_LIMIT_EXCEEDED` with `retry_after_ms`.
pub fn exceeded(wait: Duration) -> Error {
    let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
    Error::new(ErrorCode::LimitExceeded, "Too many requests").with_field("retry_after_ms", ms)
}

/// Applies `config` to `action` by `who` through `limiter`.
pub async fn check(limiter: &dyn RateLimiter, config: &RateLimitConfig, action: Action, who: &str) -> Result<()> {
    apply(limiter, config, action, who, true).await
}

/// Refuses `action` by `who` if its limit is exhausted now, without counting this request:
/// for requests that count only once they turn out to do the action (a registration counts
/// when it creates an account, not for each stage of user-interactive auth).
pub async fn check_only(limiter: &dyn RateLimiter, config: &RateLimitConfig, action: Action, who: &str) -> Result<()> {
    apply(limiter, config, action, who, false).await
}

async fn apply(
    limiter: &dyn RateLimiter,
    config: &RateLimitConfig,
    action: Action,
    who: &str,
    take: bool,
) -> Result<()> {
    if !config.enabled {
        return Ok(());
    }
    let key = format!("{}:{who}", action.as_str());
    let rule = config.rule(action);
    let refused = match take {
        true => limiter.take(&key, rule).await,
        false => limiter.peek(&key, rule).await,
    };
    match refused {
        None => Ok(()),
        Some(wait) => {
            metrics::counter!("trellis_rate_limited_total", "action" => action.as_str()).increment(1);
            Err(exceeded(wait))
        }
    }
}

/// One GCRA step: given the stored arrival time (ms, `None` for a new key) and now, the new
/// arrival time to store, or how long to wait.
pub fn gcra(stored: Option<f64>, now: f64, rule: Rule) -> std::result::Result<f64, f64> {
    let tat = stored.unwrap_or(now).max(now);
    let allowed_at = tat - rule.tolerance_ms();
    if now < allowed_at {
        return Err(allowed_at - now);
    }
    Ok(tat + rule.interval_ms())
}

/// Keys are dropped once their arrival time has passed: they would start afresh anyway.
const SWEEP_EVERY: u32 = 4096;

/// The limiter of a single process (monolith mode, or a gateway without Redis).
pub struct MemoryLimiter {
    start: Instant,
    state: Mutex<(HashMap<String, f64>, u32)>,
}

impl Default for MemoryLimiter {
    fn default() -> MemoryLimiter {
        MemoryLimiter { start: Instant::now(), state: Mutex::new((HashMap::new(), 0)) }
    }
}

#[async_trait::async_trait]
impl RateLimiter for MemoryLimiter {
    async fn take(&self, key: &str, rule: Rule) -> Option<Duration> {
        let now = self.start.elapsed().as_secs_f64() * 1000.0;
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (map, ops) = &mut *guard;
        *ops += 1;
        if *ops % SWEEP_EVERY == 0 {
            map.retain(|_, tat| *tat > now);
        }
        match gcra(map.get(key).copied(), now, rule) {
            Ok(tat) => {
                map.insert(key.to_owned(), tat);
                None
            }
            Err(wait_ms) => Some(Duration::from_secs_f64(wait_ms / 1000.0)),
        }
    }

    async fn peek(&self, key: &str, rule: Rule) -> Option<Duration> {
        let now = self.start.elapsed().as_secs_f64() * 1000.0;
        let guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        gcra(guard.0.get(key).copied(), now, rule).err().map(|wait_ms| Duration::from_secs_f64(wait_ms / 1000.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_sustained_rate() {
        let rule = Rule::new(2.0, 3); // one per 500 ms, three at once
        let mut tat = None;
        for _ in 0..3 {
            tat = Some(gcra(tat, 0.0, rule).expect("within the burst"));
        }
        let wait = gcra(tat, 0.0, rule).expect_err("the burst is spent");
        assert!((wait - 500.0).abs() < 1e-6, "{wait}");
        // After the wait exactly one more fits.
        tat = Some(gcra(tat, 500.0, rule).expect("one token came back"));
        assert!(gcra(tat, 500.0, rule).is_err());
        // A long pause refills the burst, no more.
        let mut t = tat;
        for _ in 0..3 {
            t = Some(gcra(t, 10_000.0, rule).expect("refilled"));
        }
        assert!(gcra(t, 10_000.0, rule).is_err());
    }

    #[tokio::test]
    async fn memory_limiter_and_the_error() {
        let limiter = MemoryLimiter::default();
        let config = RateLimitConfig { message: Rule::new(0.001, 2), ..RateLimitConfig::default() };
        check(&limiter, &config, Action::Message, "@a:x").await.unwrap();
        check(&limiter, &config, Action::Message, "@a:x").await.unwrap();
        let err = check(&limiter, &config, Action::Message, "@a:x").await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::LimitExceeded);
        assert_eq!(err.status(), 429);
        let ms = err.client_body()["retry_after_ms"].as_u64().unwrap();
        assert!(ms > 900_000 && ms <= 1_000_000, "{ms}");
        // Other users and other actions have their own budgets; disabled means unlimited.
        check(&limiter, &config, Action::Message, "@b:x").await.unwrap();
        check(&limiter, &config, Action::Join, "@a:x").await.unwrap();
        // Looking does not count: the budget is what it was.
        for _ in 0..5 {
            check_only(&limiter, &config, Action::Join, "@c:x").await.unwrap();
        }
        check(&limiter, &config, Action::Join, "@c:x").await.unwrap();
        let full = RateLimitConfig { join: Rule::new(0.001, 1), ..config.clone() };
        check(&limiter, &full, Action::Join, "@d:x").await.unwrap();
        let err = check_only(&limiter, &full, Action::Join, "@d:x").await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::LimitExceeded);
        let off = RateLimitConfig { enabled: false, ..config };
        for _ in 0..10 {
            check(&limiter, &off, Action::Message, "@a:x").await.unwrap();
        }
    }
}
