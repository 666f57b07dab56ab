//! What several pages share: the second factor a form carries, a form with nothing but its
//! CSRF token, and durations in words.

use jitgate_api::{MfaProof, SecretText, WebauthnAssertion};
use serde::Deserialize;

/// The second factor a form carries with its action: a TOTP code, a recovery code, or (filled
/// in by the page's script) a passkey's assertion as JSON.
#[derive(Deserialize, Default)]
pub(crate) struct Factor {
    #[serde(default)]
    otp: String,
    #[serde(default)]
    recovery_code: String,
    #[serde(default)]
    webauthn: String,
}

impl Factor {
    /// The proof, if the form carries one.
    pub fn proof(&self) -> Option<MfaProof> {
        if !self.webauthn.trim().is_empty() {
            let assertion: WebauthnAssertion = serde_json::from_str(&self.webauthn).ok()?;
            return Some(MfaProof {
                webauthn: Some(assertion),
                ..MfaProof::default()
            });
        }
        let otp = self.otp.trim();
        if !otp.is_empty() {
            return Some(MfaProof {
                otp: Some(SecretText(otp.to_owned())),
                ..MfaProof::default()
            });
        }
        let code = self.recovery_code.trim();
        (!code.is_empty()).then(|| MfaProof::recovery_code(code))
    }
}

/// `3600` → `1h`, `5400` → `1h 30m`, `90` → `1m 30s`.
pub(crate) fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let parts: Vec<String> = [(d, "d"), (h, "h"), (m, "m"), (s, "s")]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    if parts.is_empty() {
        "0s".to_owned()
    } else {
        parts.join(" ")
    }
}

/// A form that carries nothing but its CSRF token (sign out, cancel, ...).
#[derive(Deserialize)]
pub(crate) struct Nothing {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(human_duration(3600), "1h");
        assert_eq!(human_duration(5400), "1h 30m");
        assert_eq!(human_duration(90), "1m 30s");
        assert_eq!(human_duration(86_400 + 60), "1d 1m");
        assert_eq!(human_duration(0), "0s");
    }

    #[test]
    fn a_form_carries_at_most_one_factor_and_a_passkey_wins() {
        let none = Factor::default();
        assert!(none.proof().is_none());
        let otp = Factor {
            otp: " 123456 ".into(),
            ..Factor::default()
        };
        assert_eq!(
            otp.proof().and_then(|p| p.otp).map(|c| c.expose().to_owned()).as_deref(),
            Some("123456")
        );
        let garbled = Factor {
            webauthn: "{not json".into(),
            otp: "123456".into(),
            ..Factor::default()
        };
        assert!(
            garbled.proof().is_none(),
            "a garbled assertion is no proof, and not silently a code either"
        );
    }
}
