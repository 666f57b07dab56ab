//! Messages the gateway writes to its clients itself.

use bytes::{BufMut, BytesMut};

fn message(kind: u8, body: impl FnOnce(&mut BytesMut)) -> BytesMut {
    let mut b = BytesMut::with_capacity(64);
    b.put_u8(kind);
    b.put_u32(0);
    body(&mut b);
    let len = (b.len() - 1) as u32;
    b[1..5].copy_from_slice(&len.to_be_bytes());
    b
}

/// AuthenticationCleartextPassword: the connect token is asked for as the password.
pub fn auth_cleartext() -> BytesMut {
    message(b'R', |b| b.put_i32(3))
}

pub fn auth_ok() -> BytesMut {
    message(b'R', |b| b.put_i32(0))
}

/// An ErrorResponse. `fatal`: the connection ends after it.
pub fn error(fatal: bool, sqlstate: &str, text: &str) -> BytesMut {
    message(b'E', |b| {
        let severity = if fatal { "FATAL" } else { "ERROR" };
        for (field, value) in [(b'S', severity), (b'V', severity), (b'C', sqlstate), (b'M', text)] {
            b.put_u8(field);
            b.put_slice(value.as_bytes());
            b.put_u8(0);
        }
        b.put_u8(0);
    })
}

pub fn backend_key_data(process_id: i32, secret_key: i32) -> BytesMut {
    message(b'K', |b| {
        b.put_i32(process_id);
        b.put_i32(secret_key);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_carry_their_lengths() {
        assert_eq!(&auth_ok()[..], b"R\0\0\0\x08\0\0\0\0");
        assert_eq!(&auth_cleartext()[..], b"R\0\0\0\x08\0\0\0\x03");
        let e = error(true, "28000", "no");
        assert_eq!(e[0], b'E');
        assert_eq!(u32::from_be_bytes([e[1], e[2], e[3], e[4]]) as usize, e.len() - 1);
        assert!(e.windows(5).any(|w| w == b"FATAL"));
        assert_eq!(backend_key_data(1, 2).len(), 13);
    }
}
