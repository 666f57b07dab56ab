//! TOTP (RFC 6238) on top of the totp-rs crate. What jitgate adds: seeds from the OS RNG,
//! the enrolment material (otpauth URI, QR code as SVG), and single use: a code is accepted
//! only for a time step later than the last one this user had accepted.

use rand::RngCore;
use serde::{Deserialize, Serialize};
use totp_rs::{Algorithm, Builder, Secret, Totp};
use zeroize::Zeroizing;

/// 160 bits, RFC 4226's recommendation.
pub const SEED_BYTES: usize = 20;
/// Steps either side of now that are accepted: one, RFC 6238's recommendation.
pub const SKEW_STEPS: u16 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TotpAlgorithm {
    Sha1,
    Sha256,
    Sha512,
}

impl TotpAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
            Self::Sha512 => "SHA512",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "SHA1" => Some(Self::Sha1),
            "SHA256" => Some(Self::Sha256),
            "SHA512" => Some(Self::Sha512),
            _ => None,
        }
    }

    fn crate_algorithm(self) -> Algorithm {
        match self {
            Self::Sha1 => Algorithm::SHA1,
            Self::Sha256 => Algorithm::SHA256,
            Self::Sha512 => Algorithm::SHA512,
        }
    }
}

/// How codes are made. The defaults are what Google Authenticator and 1Password expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TotpParams {
    pub algorithm: TotpAlgorithm,
    pub digits: u8,
    pub period_secs: u64,
}

impl Default for TotpParams {
    fn default() -> Self {
        Self {
            algorithm: TotpAlgorithm::Sha1,
            digits: 6,
            period_secs: 30,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("TOTP: {0}")]
pub struct TotpError(String);

/// The outcome of checking a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotpCheck {
    /// Valid for `step`, which is later than any step accepted before: record it.
    Accepted {
        step: u64,
    },
    /// Valid, but for a step already used: the same code (or an older one) again.
    Replayed {
        step: u64,
    },
    Wrong,
}

pub fn new_seed() -> Zeroizing<Vec<u8>> {
    let mut seed = Zeroizing::new(vec![0u8; SEED_BYTES]);
    rand::rngs::OsRng.fill_bytes(&mut seed);
    seed
}

fn build(seed: &[u8], params: TotpParams, issuer: Option<&str>, account: &str) -> Result<Totp, TotpError> {
    Builder::new()
        .with_algorithm(params.algorithm.crate_algorithm())
        .with_digits(params.digits)
        .with_skew(SKEW_STEPS)
        .with_step_duration(params.period_secs)
        .with_secret(Secret::new(seed.to_vec().into_boxed_slice()))
        .with_issuer(issuer)
        .with_account_name(account)
        .build()
        .map_err(|e| TotpError(e.to_string()))
}

/// The code for the step that holds `unix_secs`.
pub fn code_at(seed: &[u8], params: TotpParams, unix_secs: u64) -> Result<String, TotpError> {
    Ok(build(seed, params, None, "")?.generate(unix_secs).to_string())
}

/// The code an authenticator app shows at `unix_secs` for an enrolment's base32 secret, with
/// the default parameters (what tests and benchmarks play the app with).
pub fn code_for_secret(secret_base32: &str, unix_secs: u64) -> Result<String, TotpError> {
    let seed = Secret::try_from_base32(secret_base32).map_err(|e| TotpError(e.to_string()))?;
    code_at(seed.as_ref(), TotpParams::default(), unix_secs)
}

/// Checks `code` at `unix_secs` against the last accepted step. Spaces in the code are ignored
/// (apps show `123 456`). The comparison itself is constant-time (totp-rs's `Token`).
pub fn check(seed: &[u8], params: TotpParams, code: &str, unix_secs: u64, last_step: Option<u64>) -> Result<TotpCheck, TotpError> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    let totp = build(seed, params, None, "")?;
    Ok(match totp.check(&code, unix_secs) {
        Some(step) if last_step.is_some_and(|last| step <= last) => TotpCheck::Replayed { step },
        Some(step) => TotpCheck::Accepted { step },
        None => TotpCheck::Wrong,
    })
}

/// What an authenticator app needs to add the account.
#[derive(Debug, Clone)]
pub struct Enrolment {
    pub secret_base32: String,
    pub otpauth_uri: String,
    pub qr_svg: String,
}

pub fn enrolment(seed: &[u8], params: TotpParams, issuer: &str, account: &str) -> Result<Enrolment, TotpError> {
    let totp = build(seed, params, Some(issuer), account)?;
    let otpauth_uri = totp.to_url().map_err(|e| TotpError(e.to_string()))?;
    let qr = qrcode::QrCode::new(otpauth_uri.as_bytes()).map_err(|e| TotpError(e.to_string()))?;
    let qr_svg = qr
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build();
    Ok(Enrolment {
        secret_base32: Secret::new(seed.to_vec().into_boxed_slice()).to_base32(),
        otpauth_uri,
        qr_svg,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(algorithm: TotpAlgorithm, digits: u8, period_secs: u64) -> TotpParams {
        TotpParams {
            algorithm,
            digits,
            period_secs,
        }
    }

    /// RFC 6238 Appendix B: the test seeds are ASCII digits repeated to the hash's size.
    #[test]
    fn rfc6238_appendix_b_vectors() {
        let sha1 = b"12345678901234567890".as_slice();
        let sha256 = b"12345678901234567890123456789012".as_slice();
        let sha512 = b"1234567890123456789012345678901234567890123456789012345678901234".as_slice();
        let table: [(u64, &str, &str, &str); 6] = [
            (59, "94287082", "46119246", "90693936"),
            (1111111109, "07081804", "68084774", "25091201"),
            (1111111111, "14050471", "67062674", "99943326"),
            (1234567890, "89005924", "91819424", "93441116"),
            (2000000000, "69279037", "90698825", "38618901"),
            (20000000000, "65353130", "77737706", "47863826"),
        ];
        for (t, c1, c256, c512) in table {
            assert_eq!(code_at(sha1, params(TotpAlgorithm::Sha1, 8, 30), t).unwrap(), c1, "SHA1 at {t}");
            assert_eq!(
                code_at(sha256, params(TotpAlgorithm::Sha256, 8, 30), t).unwrap(),
                c256,
                "SHA256 at {t}"
            );
            assert_eq!(
                code_at(sha512, params(TotpAlgorithm::Sha512, 8, 30), t).unwrap(),
                c512,
                "SHA512 at {t}"
            );
        }
    }

    /// RFC 4226 Appendix D: HOTP is TOTP with a one-second step, the counter standing for the time.
    #[test]
    fn rfc4226_hotp_vectors() {
        let seed = b"12345678901234567890";
        let expected = [
            "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489",
        ];
        for (counter, code) in expected.iter().enumerate() {
            let got = code_at(seed, params(TotpAlgorithm::Sha1, 6, 1), counter as u64).unwrap();
            assert_eq!(&got, code, "counter {counter}");
        }
    }

    #[test]
    fn each_step_is_accepted_once_and_only_within_one_step_of_now() {
        let seed = new_seed();
        let p = TotpParams::default();
        let now = 1_800_000_015; // step 60_000_000
        let step = now / 30;
        let current = code_at(&seed, p, now).unwrap();
        assert_eq!(check(&seed, p, &current, now, None).unwrap(), TotpCheck::Accepted { step });
        assert_eq!(check(&seed, p, &current, now, Some(step)).unwrap(), TotpCheck::Replayed { step });
        let previous = code_at(&seed, p, now - 30).unwrap();
        assert_eq!(
            check(&seed, p, &previous, now, None).unwrap(),
            TotpCheck::Accepted { step: step - 1 }
        );
        // After the current step was used, the previous one is an old code: refused as a replay.
        assert_eq!(
            check(&seed, p, &previous, now, Some(step)).unwrap(),
            TotpCheck::Replayed { step: step - 1 }
        );
        let two_back = code_at(&seed, p, now - 60).unwrap();
        if two_back != current && two_back != previous {
            assert_eq!(check(&seed, p, &two_back, now, None).unwrap(), TotpCheck::Wrong);
        }
        let spaced = format!("{} {}", &current[..3], &current[3..]);
        assert_eq!(check(&seed, p, &spaced, now, None).unwrap(), TotpCheck::Accepted { step });
        assert_eq!(check(&seed, p, "12345", now, None).unwrap(), TotpCheck::Wrong);
        assert_eq!(check(&seed, p, "+12345", now, None).unwrap(), TotpCheck::Wrong);
    }

    #[test]
    fn enrolment_gives_an_otpauth_uri_and_a_qr_code() {
        let seed = new_seed();
        let e = enrolment(&seed, TotpParams::default(), "jitgate", "alice").unwrap();
        assert!(e.otpauth_uri.starts_with("otpauth://totp/jitgate:alice?"), "{}", e.otpauth_uri);
        assert!(e.otpauth_uri.contains(&format!("secret={}", e.secret_base32)));
        assert!(e.qr_svg.contains("<svg"));
        assert_eq!(e.secret_base32.len(), 32);
        assert_eq!(
            code_for_secret(&e.secret_base32, 1_800_000_000).unwrap(),
            code_at(&seed, TotpParams::default(), 1_800_000_000).unwrap()
        );
    }
}
