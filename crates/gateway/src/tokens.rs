//! This gateway's short memory of validated access tokens: a hit skips the auth service.
//! Entries expire `http.token_cache_ms` after their validation *began* (or when the token
//! itself expires, if sooner: an expired token must answer its soft logout), and are dropped at
//! once when a logout or a device deletion through this gateway ends them. A validation that
//! was under way when tokens were forgotten is not remembered (it may have read a token the
//! revocation was deleting). Together with the auth service, which in split mode answers a
//! revocation only once `token_cache_ms` has passed since it committed, a revoked token fails
//! on every gateway as soon as the revoking request has answered.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use dashmap::DashMap;

use crate::extract::Authed;

pub(crate) struct TokenCache {
    map: DashMap<String, (Authed, Instant), foldhash::fast::RandomState>,
    ttl: Duration,
    capacity: usize,
    /// How many times tokens were forgotten: a validation that saw another count began
    /// before a revocation and is not kept.
    forgotten: AtomicU64,
}

/// A validation under way: when it began, and the forget count then.
#[derive(Clone, Copy)]
pub(crate) struct Validation {
    began: Instant,
    forgotten: u64,
}

impl TokenCache {
    pub(crate) fn new(ttl: Duration, capacity: usize) -> TokenCache {
        let map = DashMap::with_hasher(foldhash::fast::RandomState::default());
        TokenCache { map, ttl, capacity, forgotten: AtomicU64::new(0) }
    }

    /// Marks the start of a validation (before the auth service is asked).
    pub(crate) fn begin(&self) -> Validation {
        Validation { began: Instant::now(), forgotten: self.forgotten.load(Ordering::SeqCst) }
    }

    /// The requester behind `token`, if validated within the time to live.
    pub(crate) fn get(&self, token: &str) -> Option<Authed> {
        let now = trellis_core::time::now_ms();
        let stale = |(authed, at): &(Authed, Instant)| {
            at.elapsed() >= self.ttl || authed.expires_ts.is_some_and(|expires| expires <= now)
        };
        {
            let entry = self.map.get(token)?;
            if !stale(&entry) {
                return Some(entry.0.clone());
            }
        }
        self.map.remove_if(token, |_, entry| stale(entry));
        None
    }

    /// Remembers a validation that began at `since`, unless tokens were forgotten meanwhile.
    pub(crate) fn insert(&self, token: String, authed: Authed, since: Validation) {
        let current = || self.forgotten.load(Ordering::SeqCst) == since.forgotten;
        if !current() {
            return;
        }
        if self.map.len() >= self.capacity {
            self.map.retain(|_, (_, at)| at.elapsed() < self.ttl);
            if self.map.len() >= self.capacity {
                self.map.clear();
            }
        }
        self.map.insert(token.clone(), (authed, since.began));
        // A forget that counted after the check above may have swept before this insert.
        if !current() {
            self.map.remove_if(&token, |_, (_, at)| *at == since.began);
        }
    }

    /// Forgets every token whose requester `ended` selects (after the revocation committed).
    pub(crate) fn forget(&self, ended: impl Fn(&Authed) -> bool) {
        self.forgotten.fetch_add(1, Ordering::SeqCst);
        self.map.retain(|_, (authed, _)| !ended(authed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(user: &str, device: &str) -> Authed {
        Authed {
            user_id: user.into(),
            device_id: device.into(),
            is_guest: false,
            access_token: String::new(),
            expires_ts: None,
            suspended: false,
            shadow_banned: false,
            ratelimit_override: None,
            appservice_id: None,
        }
    }

    #[test]
    fn a_token_is_not_served_past_its_own_expiry() {
        let cache = TokenCache::new(Duration::from_secs(60), 10);
        let expiring = Authed { expires_ts: Some(trellis_core::time::now_ms() + 30), ..who("@u:x", "D1") };
        cache.insert("a".into(), expiring, cache.begin());
        assert!(cache.get("a").is_some());
        std::thread::sleep(Duration::from_millis(50));
        assert!(cache.get("a").is_none(), "expired although validated a moment ago");
        assert!(cache.map.is_empty(), "and dropped");
    }

    #[test]
    fn expires_forgets_and_stays_bounded() {
        let cache = TokenCache::new(Duration::from_millis(50), 3);
        cache.insert("a".into(), who("@u:x", "D1"), cache.begin());
        cache.insert("b".into(), who("@u:x", "D2"), cache.begin());
        cache.insert("c".into(), who("@v:x", "D3"), cache.begin());
        assert_eq!(cache.get("a").map(|a| a.device_id), Some("D1".into()));
        cache.forget(|a| a.user_id == "@u:x" && a.device_id == "D1");
        assert!(cache.get("a").is_none(), "a logged-out token is forgotten at once");
        assert!(cache.get("b").is_some(), "the user's other devices stay");
        cache.insert("d".into(), who("@w:x", "D4"), cache.begin());
        cache.insert("e".into(), who("@w:x", "D5"), cache.begin());
        assert!(cache.map.len() <= 3, "never past its capacity");
        std::thread::sleep(Duration::from_millis(60));
        assert!(cache.get("e").is_none(), "expired");
    }

    #[test]
    fn a_validation_under_way_at_a_logout_is_not_kept() {
        let cache = TokenCache::new(Duration::from_secs(60), 10);
        let during = cache.begin();
        cache.forget(|a| a.user_id == "@u:x");
        cache.insert("a".into(), who("@u:x", "D1"), during);
        assert!(cache.get("a").is_none(), "it may have read the token the logout was deleting");
        cache.insert("a".into(), who("@u:x", "D1"), cache.begin());
        assert!(cache.get("a").is_some(), "a validation begun after it is kept");
    }

    #[test]
    fn entries_expire_from_when_their_validation_began() {
        let cache = TokenCache::new(Duration::from_millis(40), 10);
        let slow = cache.begin();
        std::thread::sleep(Duration::from_millis(50));
        cache.insert("a".into(), who("@u:x", "D1"), slow);
        assert!(cache.get("a").is_none(), "a slow validation counts from its start");
    }
}
