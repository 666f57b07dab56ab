//! The second factors a person can prove, and the ceremonies that wait for one. Both are stored
//! (on sessions, requests, reviews and pending challenges) by their names below.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A second factor, as proved at login, at a step-up or with a request or review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Factor {
    Totp,
    Webauthn,
    RecoveryCode,
    /// A sign-in at an identity provider whose `amr`/`acr` show a second factor.
    Sso,
}

impl Factor {
    pub const ALL: [Self; 4] = [Self::Totp, Self::Webauthn, Self::RecoveryCode, Self::Sso];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Totp => "totp",
            Self::Webauthn => "webauthn",
            Self::RecoveryCode => "recovery_code",
            Self::Sso => "sso",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == s)
    }
}

impl fmt::Display for Factor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a pending challenge waits for; a challenge is only ever answered for its own purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ceremony {
    /// A login that passed its password and waits for a second factor.
    Login,
    /// A WebAuthn assertion (login's second step or a step-up).
    Webauthn,
    /// A passkey being registered.
    WebauthnRegister,
}

impl Ceremony {
    pub const ALL: [Self; 3] = [Self::Login, Self::Webauthn, Self::WebauthnRegister];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Webauthn => "webauthn",
            Self::WebauthnRegister => "webauthn_register",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::{Ceremony, Factor};

    #[test]
    fn names_read_back_as_what_they_name() {
        for f in Factor::ALL {
            assert_eq!(Factor::parse(f.as_str()), Some(f));
            assert_eq!(serde_json::to_value(f).unwrap(), f.as_str(), "the wire name is the stored name");
        }
        for c in Ceremony::ALL {
            assert_eq!(Ceremony::parse(c.as_str()), Some(c));
        }
        assert_eq!(Factor::parse("TOTP"), None);
        assert_eq!(Factor::parse(""), None);
        assert_eq!(Ceremony::parse("webauthn "), None);
    }
}
