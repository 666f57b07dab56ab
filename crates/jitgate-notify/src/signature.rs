//! Webhook signatures: `Jitgate-Signature: t=UNIX_SECONDS,v1=HEX` where `HEX` is the
//! HMAC-SHA256, under the channel's secret, of `UNIX_SECONDS`, a `.`, and the body's bytes.
//!
//! The time is inside what is signed, so a receiver that refuses signatures older than its
//! window (five minutes, say) and remembers the `Jitgate-Delivery` ids it saw within that
//! window refuses every replay; an altered body or time fails the MAC.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub const SIGNATURE_HEADER: &str = "jitgate-signature";
pub const DELIVERY_HEADER: &str = "jitgate-delivery";
pub const EVENT_HEADER: &str = "jitgate-event";

fn mac(secret: &[u8], unix_seconds: i64, body: &[u8]) -> [u8; 32] {
    // HMAC takes a key of any length.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    m.update(unix_seconds.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m.finalize().into_bytes().into()
}

/// The header value for `body` sent at `unix_seconds`.
pub fn sign(secret: &[u8], unix_seconds: i64, body: &[u8]) -> String {
    format!("t={unix_seconds},v1={}", hex::encode(mac(secret, unix_seconds, body)))
}

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature header is not t=SECONDS,v1=HEX")]
    Malformed,
    #[error("the signature is {age} s away from now, outside the {window} s window")]
    OutsideWindow { age: i64, window: i64 },
    #[error("the signature does not match the body")]
    Mismatch,
}

/// Checks `header` for `body` at `now_unix_seconds`: well formed, signed within `window_seconds`
/// of now (either way), and the MAC right (compared in constant time). Any `v1` in the header
/// may match, so a sender can sign with an old and a new secret while they are rotated.
pub fn verify(secret: &[u8], header: &str, body: &[u8], now_unix_seconds: i64, window_seconds: i64) -> Result<(), SignatureError> {
    let mut t = None;
    let mut macs = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = Some(v.parse::<i64>().map_err(|_| SignatureError::Malformed)?),
            Some(("v1", v)) => macs.push(hex::decode(v).map_err(|_| SignatureError::Malformed)?),
            _ => {}
        }
    }
    let (Some(t), false) = (t, macs.is_empty()) else {
        return Err(SignatureError::Malformed);
    };
    let age = now_unix_seconds - t;
    if age.abs() > window_seconds {
        return Err(SignatureError::OutsideWindow {
            age,
            window: window_seconds,
        });
    }
    let expected = mac(secret, t, body);
    if macs.iter().any(|m| bool::from(m.as_slice().ct_eq(&expected))) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_an_independent_hmac_sha256() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?". The data is
        // split so that `t` is "what do ya want for nothing?" cut at the dot we add: use a body
        // that makes the signed text the RFC's data instead.
        let key = b"Jefe";
        let data = b"what do ya want for nothing?";
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
        m.update(data);
        assert_eq!(
            hex::encode(m.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // And ours is that HMAC over "T.BODY".
        let ours = mac(b"k", 1_700_000_000, b"{}");
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(b"k").unwrap_or_else(|_| unreachable!());
        m.update(b"1700000000.{}");
        assert_eq!(ours.as_slice(), m.finalize().into_bytes().as_slice());
    }

    #[test]
    fn a_signature_verifies_and_nothing_else_does() {
        let secret = b"whsec-test";
        let body = br#"{"event":"request.created"}"#;
        let header = sign(secret, 1_000, body);
        assert_eq!(verify(secret, &header, body, 1_010, 300), Ok(()));
        assert_eq!(verify(b"other", &header, body, 1_010, 300), Err(SignatureError::Mismatch));
        assert_eq!(
            verify(secret, &header, br#"{"event":"request.approved"}"#, 1_010, 300),
            Err(SignatureError::Mismatch)
        );
        // The time is signed: moving it forward to pass the window breaks the MAC.
        let moved = header.replace("t=1000", "t=2000");
        assert_eq!(verify(secret, &moved, body, 2_000, 300), Err(SignatureError::Mismatch));
        assert_eq!(
            verify(secret, &header, body, 1_400, 300),
            Err(SignatureError::OutsideWindow { age: 400, window: 300 })
        );
        assert_eq!(verify(secret, "v1=00", body, 1_000, 300), Err(SignatureError::Malformed));
        assert_eq!(verify(secret, "t=1000,v1=zz", body, 1_000, 300), Err(SignatureError::Malformed));
        // Rotation: either of two signatures may match.
        let both = format!("{},v1={}", sign(b"old", 1_000, body), hex::encode(mac(secret, 1_000, body)));
        assert_eq!(verify(secret, &both, body, 1_000, 300), Ok(()));
    }
}
