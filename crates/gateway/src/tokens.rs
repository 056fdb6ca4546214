//! This gateway's short memory of validated access tokens: a hit skips the auth service.
//! Entries expire after `http.token_cache_ms` and are dropped at once when a logout or a
//! device deletion ends them here.

use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::extract::Authed;

pub(crate) struct TokenCache {
    map: DashMap<String, (Authed, Instant), foldhash::fast::RandomState>,
    ttl: Duration,
    capacity: usize,
}

impl TokenCache {
    pub(crate) fn new(ttl: Duration, capacity: usize) -> TokenCache {
        TokenCache { map: DashMap::with_hasher(foldhash::fast::RandomState::default()), ttl, capacity }
    }

    /// The requester behind `token`, if validated within the time to live.
    pub(crate) fn get(&self, token: &str) -> Option<Authed> {
        {
            let entry = self.map.get(token)?;
            if entry.1.elapsed() < self.ttl {
                return Some(entry.0.clone());
            }
        }
        self.map.remove_if(token, |_, (_, at)| at.elapsed() >= self.ttl);
        None
    }

    pub(crate) fn insert(&self, token: String, authed: Authed) {
        if self.map.len() >= self.capacity {
            self.map.retain(|_, (_, at)| at.elapsed() < self.ttl);
            if self.map.len() >= self.capacity {
                self.map.clear();
            }
        }
        self.map.insert(token, (authed, Instant::now()));
    }

    /// Forgets every token whose requester `ended` selects.
    pub(crate) fn forget(&self, ended: impl Fn(&Authed) -> bool) {
        self.map.retain(|_, (authed, _)| !ended(authed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(user: &str, device: &str) -> Authed {
        Authed { user_id: user.into(), device_id: device.into(), is_guest: false, access_token: String::new() }
    }

    #[test]
    fn expires_forgets_and_stays_bounded() {
        let cache = TokenCache::new(Duration::from_millis(50), 3);
        cache.insert("a".into(), who("@u:x", "D1"));
        cache.insert("b".into(), who("@u:x", "D2"));
        cache.insert("c".into(), who("@v:x", "D3"));
        assert_eq!(cache.get("a").map(|a| a.device_id), Some("D1".into()));
        cache.forget(|a| a.user_id == "@u:x" && a.device_id == "D1");
        assert!(cache.get("a").is_none(), "a logged-out token is forgotten at once");
        assert!(cache.get("b").is_some(), "the user's other devices stay");
        cache.insert("d".into(), who("@w:x", "D4"));
        cache.insert("e".into(), who("@w:x", "D5"));
        assert!(cache.map.len() <= 3, "never past its capacity");
        std::thread::sleep(Duration::from_millis(60));
        assert!(cache.get("e").is_none(), "expired");
    }
}
