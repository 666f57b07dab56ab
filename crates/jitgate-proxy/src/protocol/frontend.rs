//! Messages a client sends that the gateway reads whole: the password (the connect token) and
//! Terminate. (Statements are read piece by piece as they pass: see [`super::statement`].)

use super::cstr;

/// The text of a PasswordMessage (`p`), given the whole message.
pub fn password(msg: &[u8]) -> Option<&str> {
    if msg.first() != Some(&b'p') || msg.len() < 6 {
        return None;
    }
    cstr(&msg[5..]).map(|(s, _)| s)
}

/// Terminate (`X`): the client is leaving.
pub fn is_terminate(msg: &[u8]) -> bool {
    msg.first() == Some(&b'X')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn passwords_and_statements_are_read() {
        assert_eq!(password(&msg(b'p', b"jgc_token\0")), Some("jgc_token"));
        assert_eq!(password(&msg(b'Q', b"x\0")), None);
        assert!(is_terminate(&msg(b'X', b"")));
    }
}
