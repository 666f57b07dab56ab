//! The home page, the not-found page, and what several pages share: the second factor a form
//! carries, and durations in words.

use crate::grants::GrantRow;
use crate::requests::RequestRow;
use crate::visitor::{render, Chrome, PageError, ScriptCall, Visitor};
use crate::Web;
use askama::Template;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use jitgate_api::{MfaProof, SecretText, WebauthnAssertion};
use jitgate_core::grant::GrantStatus;
use jitgate_core::request::RequestStatus;
use jitgate_server::error::ServiceError;
use jitgate_server::services::requests::Scope;
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

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    chrome: Chrome,
    grants: Vec<GrantRow>,
    pending: Vec<RequestRow>,
    waiting: usize,
}

pub(crate) async fn home(State(web): State<Web>, v: Visitor) -> Result<Response, PageError> {
    let app = &web.app;
    let grants = app.grants().list(&v.caller, Scope::Mine, None, None, 100).await?;
    let now = app.now();
    let grants = grants
        .iter()
        .filter(|g| matches!(g.status, GrantStatus::Active | GrantStatus::Scheduled))
        .map(|g| GrantRow::of(g, now))
        .collect();
    let pending = app
        .requests()
        .list(&v.caller, Scope::Mine, Some(RequestStatus::Pending), None, 100)
        .await?;
    let waiting = app
        .requests()
        .list(&v.caller, Scope::Review, Some(RequestStatus::Pending), None, 1000)
        .await?
        .len();
    render(&HomePage {
        chrome: v.chrome("jitgate", "home"),
        grants,
        pending: pending.iter().map(RequestRow::from).collect(),
        waiting,
    })
}

pub(crate) async fn not_found() -> PageError {
    PageError::Service(ServiceError::not_found("page"))
}

/// A WebAuthn challenge for the signed-in visitor, for the passkey that goes with an action
/// (approve, request, connect).
pub(crate) async fn passkey_challenge(State(web): State<Web>, call: ScriptCall) -> Response {
    match web.app.mfa().webauthn_challenge(&call.visitor.caller.user.name).await {
        Ok(challenge) => Json(challenge).into_response(),
        Err(e) => {
            let body = serde_json::json!({"error": {"code": e.code, "message": e.message}});
            (jitgate_server::routes::status_of(e.kind), Json(body)).into_response()
        }
    }
}

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
