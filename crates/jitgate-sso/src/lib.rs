//! Single sign-on with OpenID Connect, as jitgate's relying party: the authorization code flow
//! with PKCE and a nonce against each configured provider ([`provider`]), and the rules that
//! turn a checked ID token into a jitgate user, groups and second factor ([`mapping`]). No
//! store and no sessions: the server keeps a sign-in between its two halves and opens the
//! session.

pub mod mapping;
pub mod provider;

pub use mapping::{AuthContext, GroupRule, MappedGroups, DEFAULT_FACTOR_AMR};
pub use openidconnect::core::CoreDeviceAuthorizationResponse as PendingDevice;
pub use provider::{Check, DeviceStart, Inspection, PendingSignIn, RelyingParty, SignIn, SignInStart, SsoError};

/// Who may sign in through a provider for the first time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provisioning {
    /// A person the provider vouches for is created at their first sign-in.
    Create,
    /// Only people an administrator created first may sign in (linked at their first sign-in).
    Existing,
}

/// One provider, as the config describes it.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// How jitgate names it (`[a-z0-9-]`): in URLs, the CLI and the audit log.
    pub name: String,
    /// What the sign-in page's button says ("Sign in with ...").
    pub display_name: String,
    /// As written: it must equal the `iss` the provider puts in its tokens, character for character.
    pub issuer: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    /// People whose verified e-mail is in one of these domains may sign in; none: anyone the
    /// provider signs in.
    pub allowed_domains: Vec<String>,
    /// The claim that names the jitgate user (`preferred_username`, `email` ...).
    pub username_claim: String,
    /// The claim with the person's groups (`groups`, `realm_access.roles` ...).
    pub groups_claim: String,
    pub group_rules: Vec<GroupRule>,
    pub provisioning: Provisioning,
    /// `amr` values that count as a second factor.
    pub factor_amr: Vec<String>,
    /// `acr` values that count as a second factor.
    pub factor_acr: Vec<String>,
}
