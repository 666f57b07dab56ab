//! Playing an authenticator app in tests.

use crate::support::*;
use jitgate_client::Client;
use jitgate_core::Timestamp;
use jitgate_server::clock::Clock;
use std::time::Duration;

pub fn code(secret: &str, at: Timestamp) -> String {
    let secs = u64::try_from(at.as_millis() / 1000).unwrap();
    jitgate_auth::totp::code_for_secret(secret, secs).unwrap()
}

/// Enrols TOTP for `user` (logged in as `client`) at the clock's now; returns the secret and
/// the recovery codes. The clock moves on one step, so the next code is a new one.
pub async fn enrol_totp(s: &TestServer, client: &Client) -> (String, Vec<String>) {
    let e = client.totp_enrol().await.unwrap();
    assert!(e.otpauth_uri.expose().starts_with("otpauth://totp/jitgate:"));
    assert!(e.qr_svg.contains("<svg"));
    assert_eq!((e.algorithm.as_str(), e.digits, e.period_secs), ("SHA1", 6, 30));
    let secret = e.secret.expose().to_owned();
    let added = client.totp_confirm(&code(&secret, s.clock().now())).await.unwrap();
    let codes: Vec<String> = added.recovery_codes.unwrap().iter().map(|c| c.expose().to_owned()).collect();
    assert_eq!(codes.len(), 10);
    s.clock().advance(Duration::from_secs(30));
    (secret, codes)
}
