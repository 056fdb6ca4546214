//! The access-token cache: successful lookups for a short while (never past the token's own
//! expiry), dropped on local logout.
//!
//! A lookup racing a logout must not re-insert a revoked token. Every revocation bumps an
//! epoch *after* its delete committed and *before* it evicts; a lookup notes the epoch before
//! reading the database and evicts its own insert if the epoch moved meanwhile.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use moka::future::Cache;
use trellis_proto::auth::Requester;

use crate::token::TokenHash;

/// How long a monolith's auth service trusts a successful lookup (its revocations evict here
/// at once). In split mode nothing is cached here: see `AuthConfig::token_cache`.
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(60);
/// Most tokens cached at once.
pub const TOKEN_CACHE_CAPACITY: u64 = 100_000;

pub struct TokenCache {
    /// None: nothing is cached (a zero time to live, as in split mode).
    cache: Option<Cache<TokenHash, Requester>>,
    epoch: AtomicU64,
}

/// Taken before a database lookup; hands the result to [`TokenCache::insert`].
#[derive(Debug, Clone, Copy)]
pub struct Epoch(u64);

impl TokenCache {
    pub fn new(ttl: Duration, capacity: u64) -> TokenCache {
        TokenCache {
            cache: (!ttl.is_zero()).then(|| Cache::builder().time_to_live(ttl).max_capacity(capacity).build()),
            epoch: AtomicU64::new(0),
        }
    }

    pub async fn get(&self, hash: &TokenHash) -> Option<Requester> {
        let cache = self.cache.as_ref()?;
        let requester = cache.get(hash).await?;
        if requester.expires_ts.is_some_and(|at| at <= trellis_core::time::now_ms()) {
            cache.invalidate(hash).await;
            return None;
        }
        Some(requester)
    }

    pub fn epoch(&self) -> Epoch {
        Epoch(self.epoch.load(Ordering::SeqCst))
    }

    /// Caches a lookup that started at `seen`, unless a revocation happened since.
    pub async fn insert(&self, hash: TokenHash, requester: Requester, seen: Epoch) {
        let Some(cache) = &self.cache else { return };
        cache.insert(hash, requester).await;
        if self.epoch.load(Ordering::SeqCst) != seen.0 {
            cache.invalidate(&hash).await;
        }
    }

    /// Forgets tokens whose rows were just deleted (call after the delete committed).
    pub async fn revoke(&self, hashes: &[TokenHash]) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let Some(cache) = &self.cache else { return };
        for hash in hashes {
            cache.invalidate(hash).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requester(user: &str) -> Requester {
        Requester { user_id: user.into(), device_id: "D".into(), ..Requester::default() }
    }

    #[tokio::test]
    async fn caches_until_revoked() {
        let cache = TokenCache::new(Duration::from_secs(60), 10);
        let (a, b) = ([1u8; 32], [2u8; 32]);
        cache.insert(a, requester("@a:x"), cache.epoch()).await;
        cache.insert(b, requester("@b:x"), cache.epoch()).await;
        assert_eq!(cache.get(&a).await.unwrap().user_id, "@a:x");
        cache.revoke(&[a]).await;
        assert!(cache.get(&a).await.is_none());
        assert_eq!(cache.get(&b).await.unwrap().user_id, "@b:x");
    }

    #[tokio::test]
    async fn a_lookup_overtaken_by_a_revocation_is_not_cached() {
        let cache = TokenCache::new(Duration::from_secs(60), 10);
        let seen = cache.epoch();
        // The logout commits and evicts while the lookup is still reading the database.
        cache.revoke(&[[1u8; 32]]).await;
        cache.insert([1u8; 32], requester("@a:x"), seen).await;
        assert!(cache.get(&[1u8; 32]).await.is_none());
    }

    #[tokio::test]
    async fn an_expiring_token_is_not_served_past_its_expiry() {
        let cache = TokenCache::new(Duration::from_secs(60), 10);
        let soon = Requester { expires_ts: Some(trellis_core::time::now_ms() + 40), ..requester("@e:x") };
        cache.insert([4u8; 32], soon, cache.epoch()).await;
        assert!(cache.get(&[4u8; 32]).await.is_some());
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(cache.get(&[4u8; 32]).await.is_none(), "expired although the cache entry is fresh");
    }

    #[tokio::test]
    async fn entries_expire() {
        let cache = TokenCache::new(Duration::from_millis(50), 10);
        cache.insert([3u8; 32], requester("@c:x"), cache.epoch()).await;
        assert!(cache.get(&[3u8; 32]).await.is_some());
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(cache.get(&[3u8; 32]).await.is_none());
    }
}
