//! Cancel keys: each client gets a key of the gateway's own; a CancelRequest with it is passed
//! on to its session's upstream with the upstream's key, which the client never sees.

use crate::ending;

/// Where a client's cancel key leads: the upstream of its session and the upstream's own key.
#[derive(Debug, Clone)]
pub(crate) struct CancelTarget {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) key: (i32, i32),
}

/// The cancel keys handed to clients, while their sessions last.
#[derive(Default)]
pub(crate) struct Cancels(std::sync::Mutex<std::collections::HashMap<(i32, i32), CancelTarget>>);

impl Cancels {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<(i32, i32), CancelTarget>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A fresh random key for `target`, registered until [`Cancels::remove`].
    pub(crate) fn register(&self, target: CancelTarget) -> (i32, i32) {
        use rand::Rng;
        let mut map = self.lock();
        loop {
            let key: (i32, i32) = rand::rngs::OsRng.gen();
            if let std::collections::hash_map::Entry::Vacant(e) = map.entry(key) {
                e.insert(target);
                return key;
            }
        }
    }

    pub(crate) fn remove(&self, key: (i32, i32)) {
        self.lock().remove(&key);
    }
}

/// Passes a CancelRequest for one of our keys on to the session's upstream, with its key.
pub(crate) async fn forward_cancel(cancels: &Cancels, key: (i32, i32)) {
    let Some(t) = cancels.lock().get(&key).cloned() else { return };
    ending::send_cancel(&t.host, t.port, t.key).await;
}
