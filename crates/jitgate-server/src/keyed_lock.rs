//! One async lock per key, for work that must not run twice at once for the same thing (and
//! may run at once for different things). Entries live while someone holds or waits for them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

#[derive(Default)]
pub struct KeyedLocks(Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>);

impl KeyedLocks {
    /// The lock for `key`: the same one for everyone who asks while any of them keeps it.
    pub fn lock_for(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        locks.retain(|_, lock| lock.strong_count() > 0);
        if let Some(lock) = locks.get(key).and_then(Weak::upgrade) {
            return lock;
        }
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        locks.insert(key.to_owned(), Arc::downgrade(&lock));
        lock
    }
}

#[cfg(test)]
mod tests {
    use super::KeyedLocks;
    use std::sync::Arc;

    #[test]
    fn one_key_one_lock_while_it_is_kept() {
        let locks = KeyedLocks::default();
        let a = locks.lock_for("a");
        assert!(Arc::ptr_eq(&a, &locks.lock_for("a")));
        assert!(!Arc::ptr_eq(&a, &locks.lock_for("b")));
        let held = a.try_lock().unwrap();
        assert!(locks.lock_for("a").try_lock().is_err(), "a second caller waits");
        drop(held);
        drop(a);
        locks.lock_for("c");
        assert_eq!(locks.0.lock().unwrap().len(), 1, "unkept locks are forgotten");
    }
}
