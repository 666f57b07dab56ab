//! Secrets encrypted at rest (TOTP seeds now, resource credentials later) with
//! XChaCha20-Poly1305 under a server key. The key lives outside the database: a leaked
//! database alone gives no seed away. Every sealed value carries the version of the key that
//! sealed it, so keys can be rotated: the newest key seals, every listed key opens.
//!
//! Key file / `JITGATE_SECRETS_KEY` format: one key per line, `VERSION:BASE64(32 bytes)`;
//! blank lines and `#` comments are ignored.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use std::collections::BTreeMap;
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretBoxError {
    #[error("line {line}: {reason}")]
    BadKeyLine { line: usize, reason: String },
    #[error("no key in the key ring")]
    Empty,
    #[error("sealed with key version {0}, which the key ring does not have")]
    UnknownVersion(u32),
    #[error("the sealed value is damaged or belongs to someone else")]
    Damaged,
}

/// A sealed value: the key version and `base64(nonce ‖ ciphertext ‖ tag)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_version: u32,
    pub data: String,
}

pub struct KeyRing {
    keys: BTreeMap<u32, XChaCha20Poly1305>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("versions", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl KeyRing {
    pub fn parse(text: &str) -> Result<Self, SecretBoxError> {
        let mut keys = BTreeMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |reason: &str| SecretBoxError::BadKeyLine {
                line: i + 1,
                reason: reason.to_owned(),
            };
            let (version, key) = line.split_once(':').ok_or_else(|| bad("expected VERSION:BASE64KEY"))?;
            let version: u32 = version.trim().parse().map_err(|_| bad("the version is not a number"))?;
            let bytes = Zeroizing::new(STANDARD.decode(key.trim()).map_err(|_| bad("the key is not base64"))?);
            if bytes.len() != 32 {
                return Err(bad("the key must be 32 bytes"));
            }
            if keys.insert(version, XChaCha20Poly1305::new(bytes.as_slice().into())).is_some() {
                return Err(bad("this version is listed twice"));
            }
        }
        if keys.is_empty() {
            return Err(SecretBoxError::Empty);
        }
        Ok(Self { keys })
    }

    /// A new key file's text with one fresh key, version 1.
    pub fn generate_text() -> Zeroizing<String> {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(key.as_mut());
        Zeroizing::new(format!(
            "# jitgate secrets key ring: VERSION:BASE64; the highest version seals\n1:{}\n",
            STANDARD.encode(key.as_ref())
        ))
    }

    pub fn current_version(&self) -> u32 {
        self.keys.keys().next_back().copied().unwrap_or_default()
    }

    /// Encrypts `plaintext`; `owner` (a user name, a resource name) is bound in as associated
    /// data, so a sealed value copied to another owner's row does not open.
    pub fn seal(&self, plaintext: &[u8], owner: &str) -> Sealed {
        let version = self.current_version();
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let cipher = &self.keys[&version];
        let aad = associated_data(version, owner);
        // Encryption with a valid key and nonce only fails past 256 GiB of input.
        let ciphertext = cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plaintext, aad: &aad })
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ciphertext);
        Sealed {
            key_version: version,
            data: STANDARD.encode(out),
        }
    }

    pub fn open(&self, sealed: &Sealed, owner: &str) -> Result<Zeroizing<Vec<u8>>, SecretBoxError> {
        let cipher = self
            .keys
            .get(&sealed.key_version)
            .ok_or(SecretBoxError::UnknownVersion(sealed.key_version))?;
        let raw = STANDARD.decode(&sealed.data).map_err(|_| SecretBoxError::Damaged)?;
        if raw.len() < 24 + 16 {
            return Err(SecretBoxError::Damaged);
        }
        let (nonce, ciphertext) = raw.split_at(24);
        let aad = associated_data(sealed.key_version, owner);
        cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| SecretBoxError::Damaged)
    }
}

fn associated_data(version: u32, owner: &str) -> Vec<u8> {
    format!("jitgate/v{version}/{owner}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_for_their_owner() {
        let ring = KeyRing::parse(&KeyRing::generate_text()).unwrap();
        let sealed = ring.seal(b"seed", "alice");
        assert_eq!(sealed.key_version, 1);
        assert_eq!(ring.open(&sealed, "alice").unwrap().as_slice(), b"seed");
        assert_eq!(ring.open(&sealed, "bob"), Err(SecretBoxError::Damaged));
        let mut flipped = STANDARD.decode(&sealed.data).unwrap();
        *flipped.last_mut().unwrap() ^= 1;
        let tampered = Sealed {
            key_version: 1,
            data: STANDARD.encode(flipped),
        };
        assert_eq!(ring.open(&tampered, "alice"), Err(SecretBoxError::Damaged));
    }

    #[test]
    fn rotation_seals_with_the_newest_and_opens_the_old() {
        let old = KeyRing::parse(&KeyRing::generate_text()).unwrap();
        let sealed = old.seal(b"seed", "alice");
        let text = format!("{}\n2:{}", KeyRing::generate_text().as_str(), STANDARD.encode([7u8; 32]));
        // Version 1 here is a different key: the old value does not open with it.
        let other = KeyRing::parse(&text).unwrap();
        assert_eq!(other.current_version(), 2);
        assert_eq!(other.open(&sealed, "alice"), Err(SecretBoxError::Damaged));
        let resealed = other.seal(b"x", "alice");
        assert_eq!(resealed.key_version, 2);
        assert_eq!(old.open(&resealed, "alice"), Err(SecretBoxError::UnknownVersion(2)));
    }

    #[test]
    fn bad_key_files_name_the_line() {
        assert_eq!(KeyRing::parse("# nothing\n").unwrap_err(), SecretBoxError::Empty);
        let e = KeyRing::parse("\n1:abc\n").unwrap_err();
        assert!(matches!(e, SecretBoxError::BadKeyLine { line: 2, .. }), "{e}");
        let k = STANDARD.encode([1u8; 32]);
        let e = KeyRing::parse(&format!("1:{k}\n1:{k}\n")).unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
    }
}
