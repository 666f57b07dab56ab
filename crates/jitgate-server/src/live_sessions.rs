//! The gateway sessions running in this process: what the kill switch ends, and what
//! `gateway.max_sessions_per_user` counts. Kept apart from the broker so that the shared state
//! can hold it without knowing the gateway.

use jitgate_store::{GatewaySession, KillTarget, SessionKill};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Why sessions end, as their clients are told (`jitgate: …`).
pub(crate) const GRANT_REVOKED: &str = "access grant revoked";
pub(crate) const GRANT_EXPIRED: &str = "access grant expired";
pub(crate) const KILLED_BY_ADMIN: &str = "session ended by an administrator";

/// The kill of every session of a grant, with the reason their clients are told.
pub(crate) fn grant_ended(grant_id: &str, why: &str) -> SessionKill {
    SessionKill {
        target: KillTarget::Grant(grant_id.to_owned()),
        reason: why.to_owned(),
    }
}

pub(crate) struct LiveSession {
    pub(crate) record: GatewaySession,
    pub(crate) kill: watch::Sender<Option<String>>,
    /// When the grant it runs on ends.
    pub(crate) ends_at: jitgate_core::Timestamp,
    /// Whether it may carry on into an extension at its grant's end: not when it logs in
    /// upstream as the grant's own ephemeral role, which ends with the grant.
    pub(crate) continuable: bool,
}

/// Sessions in this process, by id.
#[derive(Default)]
pub struct Sessions {
    live: Mutex<HashMap<String, LiveSession>>,
    /// Admissions under way, per person, for `gateway.max_sessions_per_user`.
    opening: Mutex<HashMap<String, u32>>,
}

/// A place held for an admission under way; counted with the person's live sessions until
/// it is dropped (by then the session is live, or refused).
pub(crate) struct OpeningSlot {
    sessions: Arc<Sessions>,
    user: String,
}

impl Drop for OpeningSlot {
    fn drop(&mut self) {
        let mut opening = self.sessions.opening.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = opening.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                opening.remove(&self.user);
            }
        }
    }
}

impl Sessions {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, LiveSession>> {
        self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Ends the sessions `kill` names that run here. Returns how many. The one way sessions
    /// are ended early, whether the kill was made here or heard from another instance.
    pub fn end(&self, kill: &SessionKill) -> usize {
        let live = self.lock();
        let mut n = 0;
        let matches = |s: &&LiveSession| match &kill.target {
            KillTarget::Grant(id) => &s.record.grant_id == id,
            KillTarget::Session(id) => &s.record.id == id,
        };
        for s in live.values().filter(matches) {
            s.kill.send_replace(Some(kill.reason.clone()));
            n += 1;
        }
        n
    }

    /// A place for one more session of `user` when they have fewer than `cap` live or opening
    /// here; `None` at the cap. The two maps are read under the `opening` lock, so parallel
    /// admissions cannot all slip under the cap.
    pub(crate) fn reserve(self: &Arc<Self>, user: &str, cap: u32) -> Option<OpeningSlot> {
        let sessions = self;
        let mut opening = sessions.opening.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let live = sessions.lock().values().filter(|s| s.record.user.as_str() == user).count();
        let pending = opening.get(user).copied().unwrap_or(0);
        if u64::try_from(live).unwrap_or(u64::MAX) + u64::from(pending) >= u64::from(cap) {
            return None;
        }
        *opening.entry(user.to_owned()).or_default() += 1;
        Some(OpeningSlot {
            sessions: self.clone(),
            user: user.to_owned(),
        })
    }

    /// Whether any session here on grant `id` could carry on into an extension.
    pub(crate) fn has_continuable(&self, id: &str) -> bool {
        self.lock().values().any(|s| s.record.grant_id == id && s.continuable)
    }

    /// Moves the sessions of grant `from` that can carry on onto grant `to` (an extension that
    /// takes over at `from`'s end). Returns the ids moved.
    pub(crate) fn continue_into(&self, from: &str, to: &jitgate_core::grant::Grant) -> Vec<String> {
        let mut live = self.lock();
        let mut moved = Vec::new();
        for s in live.values_mut().filter(|s| s.record.grant_id == from && s.continuable) {
            s.record.grant_id.clone_from(&to.id);
            s.ends_at = to.ends_at;
            moved.push(s.record.id.clone());
        }
        moved
    }

    pub(crate) fn kill(&self, id: &str, why: &str) -> bool {
        self.lock().get(id).map(|s| s.kill.send_replace(Some(why.to_owned()))).is_some()
    }
}
