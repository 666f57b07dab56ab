//! What a store may remember between transactions. Only a store that is the sole writer of its
//! database may (SQLite: one process, guarded by a lock file); PostgreSQL is shared between
//! instances, so its cache is disabled and every read goes to the database.
//!
//! The audit head is kept in an async mutex that every write transaction holds from before it
//! begins until after its commit has updated the head, so no writer can start from a head an
//! earlier writer has moved but not yet recorded. A transaction that ends any other way (rolled
//! back, failed, or dropped halfway through its commit) empties the slot, and the next writer
//! reads the head from the database.

use jitgate_core::audit::ChainHead;
use jitgate_core::names::ResourceName;
use jitgate_core::policy::Resource;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

pub(crate) type ResourceMap = Arc<BTreeMap<ResourceName, Resource>>;

#[derive(Debug, Default)]
pub(crate) struct Cache {
    enabled: bool,
    head: Arc<AsyncMutex<Option<ChainHead>>>,
    resources: Mutex<Option<ResourceMap>>,
}

/// A write transaction's hold on the head slot.
pub(crate) struct HeadSlot {
    guard: OwnedMutexGuard<Option<ChainHead>>,
    cache: Arc<Cache>,
    done: bool,
}

impl HeadSlot {
    /// The head to start from, when the cache knows it.
    pub(crate) fn known(&self) -> Option<ChainHead> {
        if self.cache.enabled {
            self.guard.clone()
        } else {
            None
        }
    }

    /// After a successful commit.
    pub(crate) fn committed(mut self, head: &ChainHead, resources_changed: bool) {
        self.done = true;
        if self.cache.enabled {
            *self.guard = Some(head.clone());
            if resources_changed {
                self.cache.forget_resources();
            }
        }
    }
}

impl Drop for HeadSlot {
    fn drop(&mut self) {
        if !self.done && self.cache.enabled {
            *self.guard = None;
            self.cache.forget_resources();
        }
    }
}

impl Cache {
    pub(crate) fn sole_writer() -> Arc<Self> {
        Arc::new(Self {
            enabled: true,
            ..Default::default()
        })
    }

    pub(crate) fn disabled() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub(crate) async fn hold_head(self: &Arc<Self>) -> HeadSlot {
        HeadSlot {
            guard: self.head.clone().lock_owned().await,
            cache: self.clone(),
            done: false,
        }
    }

    pub(crate) fn resources(&self) -> Option<ResourceMap> {
        self.resources.lock().ok().and_then(|r| r.clone())
    }

    pub(crate) fn keep_resources(&self, map: ResourceMap) {
        if self.enabled {
            if let Ok(mut r) = self.resources.lock() {
                *r = Some(map);
            }
        }
    }

    fn forget_resources(&self) {
        if let Ok(mut r) = self.resources.lock() {
            *r = None;
        }
    }

    pub(crate) fn is_enabled(&self) -> bool {
        self.enabled
    }
}
