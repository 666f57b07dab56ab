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

/// Argon2id with its working memory allocated once and reused for every check. Verifying
/// through `PasswordVerifier` allocates 19 MiB per call; under a flood of logins the
/// allocator keeps those blocks in per-thread arenas and memory climbs far past what runs at
/// once. A worker per hashing thread holds one buffer for good, so memory is exactly the
/// workers' buffers. (The argon2 crate's own `hash_password_into_with_memory` does the work;
/// only the PHC string is read and written here.)
pub struct PasswordWorker {
    blocks: Vec<argon2::Block>,
}

/// The most working memory a stored hash may ask of a worker (its `m` in KiB): more than our
/// own parameters, far less than what would let a planted hash exhaust memory.
const MAX_STORED_M_KIB: u32 = 64 * 1024;

impl Default for PasswordWorker {
    fn default() -> Self {
        Self::new()
    }
}

impl PasswordWorker {
    pub fn new() -> Self {
        let blocks = argon2().params().block_count();
        Self {
            blocks: vec![argon2::Block::default(); blocks],
        }
    }

    /// What [`verify_password`] answers, on this worker's memory.
    pub fn verify(&mut self, stored: Option<&str>, password: &SecretString) -> bool {
        let (hash, real) = match stored {
            Some(h) => (h, true),
            None => (dummy_hash(), false),
        };
        self.matches(hash, password.expose_secret().as_bytes()) && real
    }

    fn matches(&mut self, hash: &str, password: &[u8]) -> bool {
        let Ok(parsed) = PasswordHash::new(hash) else { return false };
        let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
            return false;
        };
        let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else {
            return false;
        };
        let Ok(params) = Params::try_from(&parsed) else { return false };
        if params.m_cost() > MAX_STORED_M_KIB {
            return false;
        }
        let version = parsed.version.and_then(|v| Version::try_from(v).ok()).unwrap_or_default();
        let mut salt_buf = [0u8; 64];
        let Ok(salt) = salt.decode_b64(&mut salt_buf) else { return false };
        let needed = params.block_count();
        if self.blocks.len() < needed {
            self.blocks.resize(needed, argon2::Block::default());
        }
        let mut out = vec![0u8; expected.len()];
        let ok = Argon2::new(algorithm, version, params)
            .hash_password_into_with_memory(password, salt, &mut out, &mut self.blocks[..needed])
            .is_ok();
        let equal = secrets_equal(&out, expected.as_bytes());
        zeroize::Zeroize::zeroize(&mut out);
        ok && equal
    }

    /// What [`hash_password`] makes, on this worker's memory.
    pub fn hash(&mut self, password: &SecretString) -> Result<String, AuthError> {
        let mut salt = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        let salt = SaltString::encode_b64(&salt).map_err(|e| AuthError::Hash(e.to_string()))?;
        let mut salt_buf = [0u8; 64];
        let raw_salt = salt.decode_b64(&mut salt_buf).map_err(|e| AuthError::Hash(e.to_string()))?;
        let a = argon2();
        let len = a.params().output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
        let needed = a.params().block_count();
        if self.blocks.len() < needed {
            self.blocks.resize(needed, argon2::Block::default());
        }
        let output = argon2::password_hash::Output::init_with(len, |out| {
            a.hash_password_into_with_memory(password.expose_secret().as_bytes(), raw_salt, out, &mut self.blocks[..needed])
                .map_err(|_| argon2::password_hash::Error::Password)
        })
        .map_err(|e| AuthError::Hash(e.to_string()))?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: a
                .params()
                .try_into()
                .map_err(|e: argon2::password_hash::Error| AuthError::Hash(e.to_string()))?,
            salt: Some(salt.as_salt()),
            hash: Some(output),
        };
        Ok(phc.to_string())
    }
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
mod worker_tests {
    use super::*;

    #[test]
    fn the_worker_agrees_with_the_crate_both_ways() {
        let mut w = PasswordWorker::new();
        let pw = SecretString::from("a long test password".to_owned());
        let wrong = SecretString::from("another long password".to_owned());
        let by_crate = hash_password(&pw).unwrap();
        assert!(w.verify(Some(&by_crate), &pw));
        assert!(!w.verify(Some(&by_crate), &wrong));
        let by_worker = w.hash(&pw).unwrap();
        assert!(by_worker.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{by_worker}");
        assert!(verify_password(Some(&by_worker), &pw));
        assert!(!verify_password(Some(&by_worker), &wrong));
        assert!(w.verify(Some(&by_worker), &pw));
        // No stored hash: the dummy's cost, never a match.
        assert!(!w.verify(None, &pw));
        assert!(!w.verify(Some("not a hash"), &pw));
        // A planted hash asking for absurd memory is refused, not run.
        let greedy = by_worker.replace("m=19456", "m=4000000");
        assert!(!w.verify(Some(&greedy), &pw));
    }
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
