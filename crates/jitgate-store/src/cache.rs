//! What a store may remember between transactions. Only a store that is the sole writer of its
//! database may (SQLite: one process, one write connection, guarded by the server's lock file);
//! PostgreSQL is shared between instances, so its cache is disabled and every read goes to the
//! database.

use jitgate_core::audit::ChainHead;
use jitgate_core::names::ResourceName;
use jitgate_core::policy::Resource;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

pub(crate) type ResourceMap = Arc<BTreeMap<ResourceName, Resource>>;

#[derive(Debug, Default)]
pub(crate) struct Cache {
    enabled: bool,
    head: Mutex<Option<ChainHead>>,
    resources: Mutex<Option<ResourceMap>>,
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

    pub(crate) fn head(&self) -> Option<ChainHead> {
        self.head.lock().ok().and_then(|h| h.clone())
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

    pub(crate) fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// After a commit: the chain's new head, and whether resources changed.
    pub(crate) fn committed(&self, head: &ChainHead, resources_changed: bool) {
        if !self.enabled {
            return;
        }
        if let Ok(mut h) = self.head.lock() {
            *h = Some(head.clone());
        }
        if resources_changed {
            if let Ok(mut r) = self.resources.lock() {
                *r = None;
            }
        }
    }
}
