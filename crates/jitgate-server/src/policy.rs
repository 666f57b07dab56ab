//! Cedar policies in the server: reading the `*.cedar` files, the facts each decision sees
//! (groups, live grants, on-call, the time), reload that keeps the last good set, and explain.

use crate::config::Settings;
use crate::core::Caller;
use jitgate_core::names::{GroupName, RoleName, Username};
use jitgate_core::policy::Resource;
use jitgate_core::Timestamp;
use jitgate_policy::{LoadError, Person, PolicyEngine, PolicyFile, PolicyProblem};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

/// Every `*.cedar` file in `dir`, in name order.
pub fn read_policy_files(dir: &Path) -> Result<Vec<PolicyFile>, LoadError> {
    let unreadable = |e: std::io::Error| {
        LoadError(vec![PolicyProblem {
            file: dir.display().to_string(),
            line: 0,
            column: 0,
            message: format!("cannot read the policy directory: {e}"),
        }])
    };
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(unreadable)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cedar") && p.is_file())
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).map_err(|e| {
                LoadError(vec![PolicyProblem {
                    file: p.display().to_string(),
                    line: 0,
                    column: 0,
                    message: format!("cannot read: {e}"),
                }])
            })?;
            Ok(PolicyFile {
                name: p.display().to_string(),
                text,
            })
        })
        .collect()
}

/// The policies the settings point at, validated.
pub fn load_engine(settings: &Settings) -> Result<PolicyEngine, LoadError> {
    let files = match &settings.policy_dir {
        Some(dir) => read_policy_files(dir)?,
        None => Vec::new(),
    };
    PolicyEngine::load(&files, &settings.policy_time_zone)
}

/// A person as decisions see them.
pub struct Subject {
    pub name: Username,
    pub groups: BTreeSet<GroupName>,
    pub is_admin: bool,
    /// The roles they hold now, read once for all the decisions of one operation (a request
    /// is decided as a request and for automatic approval, an approval for every stage). A
    /// subject serves one operation, at one time.
    pub(crate) live_roles: tokio::sync::OnceCell<BTreeSet<String>>,
}

impl Subject {
    pub fn of(caller: &Caller) -> Self {
        Self::new(caller.user.name.clone(), caller.groups.clone(), caller.user.is_admin)
    }

    pub fn new(name: Username, groups: BTreeSet<GroupName>, is_admin: bool) -> Self {
        Self {
            name,
            groups,
            is_admin,
            live_roles: tokio::sync::OnceCell::new(),
        }
    }

    /// The subject with the roles they hold now read already (with something else, a round
    /// trip less), as `RESOURCE/ROLE`.
    pub(crate) fn holding(self, live_roles: Vec<String>) -> Self {
        Self {
            live_roles: tokio::sync::OnceCell::new_with(Some(live_roles.into_iter().collect())),
            ..self
        }
    }

    pub(crate) fn person(&self) -> Person<'_> {
        Person {
            name: &self.name,
            groups: &self.groups,
            is_admin: self.is_admin,
        }
    }
}

/// What a request asks, as decisions see it.
pub struct Asked<'a> {
    pub resource: &'a Resource,
    pub role: &'a RoleName,
    pub duration: Duration,
    pub reason: &'a str,
    pub ticket: Option<&'a str>,
    /// When the access is to begin; `None` (or a time passed): at once.
    pub start_at: Option<Timestamp>,
}
