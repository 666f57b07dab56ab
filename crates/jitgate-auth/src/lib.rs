//! Credentials: Argon2id password hashes, opaque 256-bit tokens stored only as hashes, TOTP,
//! WebAuthn passkeys, recovery codes, the key ring that encrypts secrets at rest, and the
//! attempt-limit rules. Nothing here does I/O or reads the clock: time is a parameter.

pub mod attempts;
pub mod passkeys;
pub mod recovery;
pub mod secret_box;
pub mod totp;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;
use subtle::ConstantTimeEq;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("a password needs at least {0} characters")]
    PasswordTooShort(usize),
    #[error("a password may have at most {0} characters")]
    PasswordTooLong(usize),
}

pub const MIN_PASSWORD_LEN: usize = 12;
pub const MAX_PASSWORD_LEN: usize = 1024;

/// OWASP's minimum for Argon2id: 19 MiB of memory, 2 passes, 1 lane.
pub fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

pub fn check_password_rules(password: &SecretString) -> Result<(), AuthError> {
    let n = password.expose_secret().chars().count();
    if n < MIN_PASSWORD_LEN {
        return Err(AuthError::PasswordTooShort(MIN_PASSWORD_LEN));
    }
    if n > MAX_PASSWORD_LEN {
        return Err(AuthError::PasswordTooLong(MAX_PASSWORD_LEN));
    }
    Ok(())
}

pub fn hash_password(password: &SecretString) -> Result<String, AuthError> {
    let mut salt = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| AuthError::Hash(e.to_string()))?;
    argon2()
        .hash_password(password.expose_secret().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// A hash of a password nobody knows, verified against when the user does not exist or has no
/// password, so that the answer takes as long for a missing user as for a wrong password.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let mut random = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut random);
        hash_password(&SecretString::from(hex::encode(random))).unwrap_or_default()
    })
}

/// Checks `password` against `stored`, or against a dummy hash when there is none; same cost
/// either way. Returns true only for a real hash that matches.
pub fn verify_password(stored: Option<&str>, password: &SecretString) -> bool {
    let (hash, real) = match stored {
        Some(h) => (h, true),
        None => (dummy_hash(), false),
    };
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let ok = argon2().verify_password(password.expose_secret().as_bytes(), &parsed).is_ok();
    ok && real
}

/// Prepares the dummy hash ahead of the first login, so the first failed login for a
/// missing user is not faster than the rest.
pub fn warm_up() {
    let _ = dummy_hash();
}

/// A fresh opaque token: 256 random bits, URL-safe, with a prefix that says what it is.
pub fn new_token(prefix: &str) -> SecretString {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    SecretString::from(format!("{prefix}_{body}"))
}

/// What is stored for a token: its SHA-256. A token has 256 bits of entropy, so a fast hash is
/// enough (no password-style stretching) and lookups stay cheap.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Constant-time equality for secrets compared outside a hash lookup.
pub fn secrets_equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_and_a_wrong_one_does_not() {
        let pw = SecretString::from("correct horse battery");
        let h = hash_password(&pw).unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify_password(Some(&h), &pw));
        assert!(!verify_password(Some(&h), &SecretString::from("correct horse battery!")));
    }

    #[test]
    fn a_missing_user_never_verifies_even_with_the_dummy_password() {
        assert!(!verify_password(None, &SecretString::from("anything at all")));
        assert!(!verify_password(Some("not a hash"), &SecretString::from("anything at all")));
    }

    #[test]
    fn tokens_are_long_random_and_stored_hashed() {
        let a = new_token("jgs");
        let b = new_token("jgs");
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert!(a.expose_secret().starts_with("jgs_"));
        assert_eq!(a.expose_secret().len(), 4 + 43);
        assert_eq!(token_hash(a.expose_secret()).len(), 64);
        assert_ne!(token_hash(a.expose_secret()), a.expose_secret());
    }

    #[test]
    fn password_rules() {
        assert!(check_password_rules(&SecretString::from("short")).is_err());
        assert!(check_password_rules(&SecretString::from("long enough pw")).is_ok());
    }

    #[test]
    fn secrets_compare_by_content() {
        assert!(secrets_equal(b"abc", b"abc"));
        assert!(!secrets_equal(b"abc", b"abd"));
        assert!(!secrets_equal(b"abc", b"ab"));
    }
}
