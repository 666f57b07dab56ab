//! The first packet of a connection: SSLRequest, GSSENCRequest, CancelRequest or a
//! StartupMessage (protocol 3.0) with its parameters.

use super::{cstr, ProtocolError, MAX_STARTUP};
use std::collections::BTreeMap;
use tokio::io::{AsyncRead, AsyncReadExt};

const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;
const PROTOCOL_3_0: u32 = 196_608;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Startup {
    SslRequest,
    GssEncRequest,
    Cancel { process_id: i32, secret_key: i32 },
    Startup { params: BTreeMap<String, String> },
}

/// Parses one startup packet (length included).
pub fn parse(packet: &[u8]) -> Result<Startup, ProtocolError> {
    if packet.len() < 8 {
        return Err(ProtocolError::Malformed("startup packet"));
    }
    let code = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
    let body = &packet[8..];
    match code {
        SSL_REQUEST if body.is_empty() => Ok(Startup::SslRequest),
        GSSENC_REQUEST if body.is_empty() => Ok(Startup::GssEncRequest),
        CANCEL_REQUEST if body.len() == 8 => Ok(Startup::Cancel {
            process_id: i32::from_be_bytes([body[0], body[1], body[2], body[3]]),
            secret_key: i32::from_be_bytes([body[4], body[5], body[6], body[7]]),
        }),
        PROTOCOL_3_0 => {
            let mut params = BTreeMap::new();
            let mut rest = body;
            loop {
                let (key, after) = cstr(rest).ok_or(ProtocolError::Malformed("startup parameters"))?;
                if key.is_empty() {
                    if !after.is_empty() {
                        return Err(ProtocolError::Malformed("startup parameters"));
                    }
                    break;
                }
                let (value, after) = cstr(after).ok_or(ProtocolError::Malformed("startup parameters"))?;
                params.insert(key.to_owned(), value.to_owned());
                rest = after;
            }
            Ok(Startup::Startup { params })
        }
        other if other >> 16 != 3 => Err(ProtocolError::Version((other >> 16) as u16, (other & 0xffff) as u16)),
        _ => Err(ProtocolError::Malformed("startup packet")),
    }
}

/// Reads one startup packet from `r`, bounded by [`MAX_STARTUP`].
pub async fn read<R: AsyncRead + Unpin>(r: &mut R) -> Result<Vec<u8>, std::io::Error> {
    let len = r.read_u32().await? as usize;
    if !(8..=MAX_STARTUP).contains(&len) {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, ProtocolError::BadLength(len)));
    }
    let mut packet = vec![0u8; len];
    packet[..4].copy_from_slice(&(len as u32).to_be_bytes());
    r.read_exact(&mut packet[4..]).await?;
    Ok(packet)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(code: u32, body: &[u8]) -> Vec<u8> {
        let mut p = ((8 + body.len()) as u32).to_be_bytes().to_vec();
        p.extend_from_slice(&code.to_be_bytes());
        p.extend_from_slice(body);
        p
    }

    #[test]
    fn each_kind_of_startup_packet_parses() {
        assert_eq!(parse(&packet(SSL_REQUEST, b"")), Ok(Startup::SslRequest));
        assert_eq!(parse(&packet(GSSENC_REQUEST, b"")), Ok(Startup::GssEncRequest));
        let mut cancel = 7i32.to_be_bytes().to_vec();
        cancel.extend_from_slice(&(-9i32).to_be_bytes());
        assert_eq!(
            parse(&packet(CANCEL_REQUEST, &cancel)),
            Ok(Startup::Cancel {
                process_id: 7,
                secret_key: -9
            })
        );
        let Startup::Startup { params } = parse(&packet(PROTOCOL_3_0, b"user\0alice\0database\0prod-db\0\0")).unwrap() else {
            panic!()
        };
        assert_eq!(params["user"], "alice");
        assert_eq!(params["database"], "prod-db");
    }

    #[test]
    fn garbage_is_refused() {
        assert!(parse(b"\0\0\0\x04").is_err());
        assert!(parse(&packet(PROTOCOL_3_0, b"user\0alice")).is_err(), "no terminator");
        assert!(parse(&packet(PROTOCOL_3_0, b"user\0alice\0\0extra")).is_err());
        assert!(parse(&packet(PROTOCOL_3_0, b"us\xffer\0a\0\0")).is_err(), "not UTF-8");
        assert_eq!(parse(&packet(2 << 16, b"")), Err(ProtocolError::Version(2, 0)));
        assert!(parse(&packet(SSL_REQUEST, b"x")).is_err());
    }
}
