//! Recently read values, reused for a few seconds on the device API's hot
//! path instead of being read from the database on every request.
//!
//! Only for data where a few seconds of staleness is safe: data that fails
//! closed while stale (a manufacturer CA trusted a moment ago is refused a
//! moment longer) or that stays valid across the change (the previous
//! generation of a tenant CA keeps issuing for a few seconds after a
//! rotation, while both are published). Revocations (devices, runtime
//! releases, signing keys) are never cached: they must take effect at once.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Entries kept before the map is emptied and refilled: bounds memory.
const MAX_ENTRIES: usize = 4096;

/// A map from key to a value read at most `ttl` ago.
pub(crate) struct Recent<V> {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, V)>>,
}

impl<V: Clone> Recent<V> {
    /// An empty cache whose entries live for `ttl`.
    pub(crate) fn new(ttl: Duration) -> Recent<V> {
        Recent {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The value for `key`, if it was stored less than `ttl` ago.
    pub(crate) fn get(&self, key: &str) -> Option<V> {
        let entries = self.lock();
        let (at, value) = entries.get(key)?;
        (at.elapsed() < self.ttl).then(|| value.clone())
    }

    /// Stores `value` for `key`, read now.
    pub(crate) fn put(&self, key: &str, value: V) {
        let mut entries = self.lock();
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(key.to_owned(), (Instant::now(), value));
    }

    /// Forgets `key` (this replica changed it).
    pub(crate) fn forget(&self, key: &str) {
        self.lock().remove(key);
    }

    /// The map; a poisoned lock is taken over (no code here panics while
    /// holding it, and the map is consistent after every statement).
    fn lock(&self) -> MutexGuard<'_, HashMap<String, (Instant, V)>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_can_be_forgotten() {
        let recent = Recent::new(Duration::from_millis(50));
        assert_eq!(recent.get("a"), None);
        recent.put("a", 1);
        recent.put("b", 2);
        assert_eq!(recent.get("a"), Some(1));
        recent.forget("a");
        assert_eq!(recent.get("a"), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(recent.get("b"), None, "expired");
    }

    #[test]
    fn size_is_bounded() {
        let recent = Recent::new(Duration::from_secs(60));
        for i in 0..=MAX_ENTRIES {
            recent.put(&i.to_string(), i);
        }
        assert!(recent.lock().len() <= MAX_ENTRIES);
        assert_eq!(recent.get(&MAX_ENTRIES.to_string()), Some(MAX_ENTRIES));
    }
}
