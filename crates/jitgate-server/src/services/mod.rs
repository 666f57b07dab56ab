//! The server's services, one per area. A route calls `core.requests().create(..)`: the call
//! names the service its logic lives in, and the service's file is where to look. Each service
//! is a view of the shared [`Core`] (store, clock, settings, keys, the unit of work in
//! `core.rs`) and reaches the others through it (`self.mfa().step_up(..)`). Services return a
//! [`crate::error::ServiceError`], which becomes an HTTP status only in `routes`.

pub mod attempts;
pub mod audit;
pub mod enrolment;
pub mod gateway;
pub mod grants;
pub mod identity;
pub mod metrics;
pub mod mfa;
pub mod notifications;
pub mod policies;
pub mod requests;
pub mod resources;
pub mod reviews;
pub mod sso;
pub mod sso_admin;
pub mod sso_device;
pub mod tokens;
pub mod users;

use crate::core::Core;

/// Declares a service: a copyable view of [`Core`] that derefs to it, and the accessor on
/// `Core` that hands it out.
macro_rules! service {
    ($(#[$doc:meta])* $name:ident, $accessor:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy)]
        pub struct $name<'a> {
            core: &'a Core,
        }

        impl std::ops::Deref for $name<'_> {
            type Target = Core;

            fn deref(&self) -> &Core {
                self.core
            }
        }

        impl Core {
            pub fn $accessor(&self) -> $name<'_> {
                $name { core: self }
            }
        }
    };
}

service!(
    /// Failed attempts, locks and their audit: [`attempts`].
    Attempts, attempts
);
service!(
    /// Channels, the outbox, e-mail addresses: [`notifications`].
    Notifications, notifications
);
service!(
    /// The audit log as people read it: [`audit`].
    Audit, audit
);
service!(
    /// Enrolling and removing second factors: [`enrolment`].
    Enrolment, enrolment
);
service!(
    /// Connect tokens and live gateway sessions: [`gateway`].
    Gateway, gateway
);
service!(
    /// Grants: [`grants`].
    Grants, grants
);
service!(
    /// Login, sessions, first start: [`identity`].
    Identity, identity
);
service!(
    /// Second factors and step-up: [`mfa`].
    Mfa, mfa
);
service!(
    /// Policy decisions, explanation, reload: [`policies`].
    Policies, policies
);
service!(
    /// Access requests and reviews: [`requests`].
    Requests, requests
);
service!(
    /// Approving, denying, acknowledging: [`reviews`].
    Reviews, reviews
);
service!(
    /// Resources and their upstream credentials: [`resources`].
    Resources, resources
);
service!(
    /// Single sign-on through OpenID Connect providers: [`sso`].
    Sso, sso
);
service!(
    /// API tokens for automation: [`tokens`].
    Tokens, tokens
);
service!(
    /// Users and groups, administered: [`users`].
    Users, users
);
