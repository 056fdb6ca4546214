//! Per-key async locks: one thumbnail generation per media file at a time, so a request
//! arriving while the upload's thumbnails are being made waits for them instead of
//! decoding the same image again.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use tokio::sync::OwnedMutexGuard;

type LockMap = Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>;

#[derive(Default)]
pub(crate) struct KeyedLocks {
    locks: Arc<LockMap>,
}

/// Held while working on a key (it may move into a spawned task); the entry is dropped
/// with the last holder.
pub(crate) struct KeyGuard {
    owner: Arc<LockMap>,
    key: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl KeyedLocks {
    pub async fn lock(&self, key: &str) -> KeyGuard {
        let lock = {
            let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(key.to_owned()).or_default().clone()
        };
        let guard = lock.lock_owned().await;
        KeyGuard { owner: self.locks.clone(), key: key.to_owned(), guard: Some(guard) }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.locks.lock().unwrap().len()
    }
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.owner.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(&self.key).is_some_and(|l| Arc::strong_count(l) == 1) {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn serialises_one_key_and_cleans_up() {
        let locks = Arc::new(KeyedLocks::default());
        let g = locks.lock("a").await;
        let other = locks.lock("b").await;
        drop(other);
        let l2 = locks.clone();
        let waiter = tokio::spawn(async move {
            let _g = l2.lock("a").await;
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "the second holder waits");
        drop(g);
        waiter.await.unwrap();
        assert_eq!(locks.len(), 0);
    }
}
