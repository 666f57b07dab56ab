//! Recovery codes: ten one-time codes shown once. Each carries 80 random bits, so a fast
//! hash (SHA-256) is enough to store them: unlike a password there is nothing to guess, and a
//! fast hash lets a code be looked up by its hash instead of trying ten Argon2 verifications.

use rand::Rng;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

pub const RECOVERY_CODE_COUNT: usize = 10;
/// Lower-case letters and digits without the ones people mix up (0/o, 1/l/i): 32 symbols, 5 bits each.
const ALPHABET: &[u8] = b"23456789abcdefghjkmnpqrstuvwxyz";
const SYMBOLS: usize = 16;

/// A fresh set, formatted `abcd-efgh-jkmn-pqrs` for reading aloud or typing.
pub fn new_recovery_codes() -> Vec<Zeroizing<String>> {
    let mut rng = rand::rngs::OsRng;
    (0..RECOVERY_CODE_COUNT)
        .map(|_| {
            let mut code = Zeroizing::new(String::with_capacity(SYMBOLS + 3));
            for i in 0..SYMBOLS {
                if i > 0 && i % 4 == 0 {
                    code.push('-');
                }
                code.push(ALPHABET[rng.gen_range(0..ALPHABET.len())] as char);
            }
            code
        })
        .collect()
}

/// The stored form of a code, as typed: case, dashes and spaces do not matter.
pub fn recovery_code_hash(code: &str) -> String {
    let normalized: String = code
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_lowercase)
        .collect();
    let mut h = Sha256::new();
    h.update(b"jitgate-recovery-code:");
    h.update(normalized.as_bytes());
    hex::encode(h.finalize())
}

/// Whether `text` is shaped like a recovery code (so it is not mistaken for a TOTP code).
pub fn looks_like_recovery_code(text: &str) -> bool {
    let n = text.chars().filter(|c| c.is_ascii_alphanumeric()).count();
    n == SYMBOLS && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ' ')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn codes_are_distinct_well_formed_and_hash_as_typed() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), 10);
        let distinct: BTreeSet<_> = codes.iter().map(|c| c.as_str().to_owned()).collect();
        assert_eq!(distinct.len(), 10);
        for c in &codes {
            assert_eq!(c.len(), 19, "{}", c.as_str());
            assert!(looks_like_recovery_code(c));
            let typed = c.replace('-', " ").to_uppercase();
            assert_eq!(recovery_code_hash(&typed), recovery_code_hash(c));
        }
        assert_ne!(recovery_code_hash(&codes[0]), recovery_code_hash(&codes[1]));
        assert!(!looks_like_recovery_code("123456"));
    }
}
