//! Messages a client sends that the gateway reads: the password (the connect token), and the
//! statements it records (simple Query, extended-protocol Parse).

use super::cstr;

/// The text of a PasswordMessage (`p`), given the whole message.
pub fn password(msg: &[u8]) -> Option<&str> {
    if msg.first() != Some(&b'p') || msg.len() < 6 {
        return None;
    }
    cstr(&msg[5..]).map(|(s, _)| s)
}

/// The statement a Query (`Q`) or Parse (`P`) message carries, given the whole message.
pub fn statement(msg: &[u8]) -> Option<&str> {
    match msg.first()? {
        b'Q' if msg.len() > 5 => cstr(&msg[5..]).map(|(s, _)| s),
        b'P' if msg.len() > 5 => {
            let (_name, rest) = cstr(&msg[5..])?;
            cstr(rest).map(|(s, _)| s)
        }
        _ => None,
    }
}

/// The statement at the start of a Query (`Q`) or Parse (`P`) body, as far as `body` goes: a
/// body cut at a capture limit may end inside the text, even inside a character.
pub fn statement_in_body(kind: u8, body: &[u8]) -> Option<&str> {
    let text = match kind {
        b'Q' => body,
        b'P' => &body[body.iter().position(|&c| c == 0)? + 1..],
        _ => return None,
    };
    let text = text.split(|&c| c == 0).next().unwrap_or_default();
    match std::str::from_utf8(text) {
        Ok(s) => Some(s),
        Err(e) => std::str::from_utf8(&text[..e.valid_up_to()]).ok(),
    }
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
        assert_eq!(statement(&msg(b'Q', b"SELECT 1\0")), Some("SELECT 1"));
        assert_eq!(statement(&msg(b'P', b"s1\0SELECT $1\0\0\0")), Some("SELECT $1"));
        assert_eq!(statement(&msg(b'P', b"no terminator")), None);
        assert_eq!(statement(&msg(b'B', b"\0\0")), None);
        assert!(is_terminate(&msg(b'X', b"")));
        assert_eq!(statement_in_body(b'Q', b"SELECT 1\0"), Some("SELECT 1"));
        assert_eq!(statement_in_body(b'Q', b"SELECT 'cut"), Some("SELECT 'cut"));
        assert_eq!(statement_in_body(b'P', b"s1\0SELECT $1\0\0\0"), Some("SELECT $1"));
        assert_eq!(statement_in_body(b'P', b"no name end"), None);
        assert_eq!(
            statement_in_body(b'Q', "SELECT 'é'".as_bytes().split_last().unwrap().1.split_last().unwrap().1),
            Some("SELECT '")
        );
        assert_eq!(statement_in_body(b'B', b"x\0"), None);
    }
}
