//! What a store may remember between transactions.
//!
//! The audit head is remembered only by a store that is the sole writer of its database
//! (SQLite: one process, guarded by a lock file). It is kept in an async mutex that every write
//! transaction holds from before it begins until after its commit has updated the head, so no
//! writer can start from a head an earlier writer has moved but not yet recorded. A transaction
//! that ends any other way (rolled back, failed, or dropped halfway through its commit) empties
//! the slot, and the next writer reads the head from the database.
//!
//! The directory (resources and who is in which group) is read on every decision and changes
//! rarely, so it is remembered too: by a sole writer, forgotten when one of its own changes
//! commits; and by a store shared between instances (PostgreSQL), forgotten also when the
//! database announces a change (a trigger on those tables notifies at commit, whoever made the
//! change, even by hand) and not used at all while those announcements cannot be heard. A read
//! that began before a change was forgotten is not remembered (a generation counter), so a
//! slow read cannot put back what a change replaced. Nothing is remembered for longer than
//! [`REMEMBER_FOR`]: a listener whose connection died without a word (a NAT or load balancer
//! dropping an idle flow) hears nothing and cannot tell, and a change made with the triggers
//! off (or by hand to a SQLite file) is not announced; the age bounds how long either goes
//! unseen.

use jitgate_core::audit::ChainHead;
use jitgate_core::names::{GroupName, ResourceName, Username};
use jitgate_core::policy::Resource;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

pub(crate) type ResourceMap = Arc<BTreeMap<ResourceName, Resource>>;

/// People whose groups are remembered at most; beyond, the memory starts over.
const GROUPS_OF_AT_MOST: usize = 10_000;
/// The longest a remembered answer is used: the bound on how long a change nobody announced
/// goes unseen. Decisions come by the hundred a second under load, so one read per two seconds
/// keeps nearly all of the saving.
pub const REMEMBER_FOR: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Debug, Default)]
pub(crate) struct Cache {
    /// Sole writer: the head and the directory.
    enabled: bool,
    /// Shared database: the directory, while `heard`.
    shared: bool,
    /// Shared: changes are being announced to this instance.
    heard: AtomicBool,
    head: Arc<AsyncMutex<Option<ChainHead>>>,
    directory: Mutex<Directory>,
}

#[derive(Debug, Default)]
struct Directory {
    /// Moves on at every change forgotten.
    generation: u64,
    resources: Option<(Instant, ResourceMap)>,
    groups: HashMap<Username, (Instant, BTreeSet<GroupName>)>,
}

fn fresh(read_at: Instant) -> bool {
    read_at.elapsed() < REMEMBER_FOR
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
    pub(crate) fn committed(mut self, head: &ChainHead, directory_changed: bool) {
        self.done = true;
        if self.cache.enabled {
            *self.guard = Some(head.clone());
        }
        if directory_changed {
            self.cache.forget_directory();
        }
    }
}

impl Drop for HeadSlot {
    fn drop(&mut self) {
        if !self.done {
            if self.cache.enabled {
                *self.guard = None;
            }
            self.cache.forget_directory();
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

    /// A database other instances write too: only the directory, forgotten on announcements.
    pub(crate) fn shared() -> Arc<Self> {
        Arc::new(Self {
            shared: true,
            ..Default::default()
        })
    }

    /// Remembers nothing (a read-only view of a database another process writes).
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

    /// Whether the directory may be remembered now.
    fn directory_enabled(&self) -> bool {
        self.enabled || self.shared && self.heard.load(Ordering::Acquire)
    }

    /// Where remembering stands, taken before a read whose result is to be remembered: the
    /// generation, and when the read began (its answer's age counts from there).
    pub(crate) fn generation(&self) -> Option<(u64, Instant)> {
        if !self.directory_enabled() {
            return None;
        }
        let now = Instant::now();
        self.directory.lock().ok().map(|d| (d.generation, now))
    }

    pub(crate) fn resources(&self) -> Option<ResourceMap> {
        if !self.directory_enabled() {
            return None;
        }
        let d = self.directory.lock().ok()?;
        d.resources.as_ref().filter(|(at, _)| fresh(*at)).map(|(_, map)| map.clone())
    }

    pub(crate) fn keep_resources(&self, map: ResourceMap, (generation, read_at): (u64, Instant)) {
        if let Ok(mut d) = self.directory.lock() {
            if d.generation == generation && self.directory_enabled() {
                d.resources = Some((read_at, map));
            }
        }
    }

    pub(crate) fn groups_of(&self, user: &Username) -> Option<BTreeSet<GroupName>> {
        if !self.directory_enabled() {
            return None;
        }
        let d = self.directory.lock().ok()?;
        d.groups.get(user).filter(|(at, _)| fresh(*at)).map(|(_, groups)| groups.clone())
    }

    pub(crate) fn keep_groups_of(&self, user: &Username, groups: BTreeSet<GroupName>, (generation, read_at): (u64, Instant)) {
        if let Ok(mut d) = self.directory.lock() {
            if d.generation == generation && self.directory_enabled() {
                if d.groups.len() >= GROUPS_OF_AT_MOST {
                    d.groups.retain(|_, (at, _)| fresh(*at));
                    if d.groups.len() >= GROUPS_OF_AT_MOST {
                        d.groups.clear();
                    }
                }
                d.groups.insert(user.clone(), (read_at, groups));
            }
        }
    }

    /// After a change to the directory committed here or was announced by the database.
    pub(crate) fn forget_directory(&self) {
        if let Ok(mut d) = self.directory.lock() {
            d.generation += 1;
            d.resources = None;
            d.groups.clear();
        }
    }

    /// Shared: whether changes are announced to this instance. Both ways the directory is
    /// forgotten: announcements may have been missed while they were not heard.
    pub(crate) fn set_heard(&self, heard: bool) {
        self.heard.store(heard, Ordering::Release);
        self.forget_directory();
    }
}
