//! The parts of the PostgreSQL wire protocol (version 3) the gateway speaks as a *server* to
//! its clients: the startup packet, framing of regular messages, and the few messages it
//! writes itself. One file per message family.
//!
//! Written by hand because no maintained crate covers the server side: `postgres-protocol`
//! (used for the upstream, client side) parses backend messages and writes frontend ones, the
//! opposite of what a server needs. Every read here is bounded and every length checked before
//! it is trusted.

pub mod backend;
pub mod framing;
pub mod frontend;
pub mod sqlstate;
pub mod startup;
pub mod statement;

/// The longest regular message accepted from a client (a large COPY chunk or statement).
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;
/// The longest startup packet accepted (PostgreSQL itself allows 10,000 bytes).
pub const MAX_STARTUP: usize = 10_000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("message length {0} is out of bounds")]
    BadLength(usize),
    #[error("malformed {0}")]
    Malformed(&'static str),
    #[error("unsupported protocol version {0}.{1}")]
    Version(u16, u16),
}

/// Where the next complete regular message (type byte, length, body) ends in `buf`, if it is
/// all there; an error for a length no valid message has.
pub fn message_end(buf: &[u8], max: usize) -> Result<Option<usize>, ProtocolError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len < 4 || len > max {
        return Err(ProtocolError::BadLength(len));
    }
    let end = 1 + len;
    Ok((buf.len() >= end).then_some(end))
}

/// A NUL-terminated string at the start of `b`, and what follows it.
pub(crate) fn cstr(b: &[u8]) -> Option<(&str, &[u8])> {
    let nul = b.iter().position(|&c| c == 0)?;
    let s = std::str::from_utf8(&b[..nul]).ok()?;
    Some((s, &b[nul + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_waits_for_whole_messages_and_refuses_bad_lengths() {
        assert_eq!(message_end(b"Q\0\0", 100), Ok(None));
        assert_eq!(message_end(b"Q\0\0\0\x09SELE", 100), Ok(None));
        assert_eq!(message_end(b"Q\0\0\0\x09SELECT", 100), Ok(Some(10)));
        assert_eq!(message_end(b"Q\0\0\0\x03", 100), Err(ProtocolError::BadLength(3)));
        assert_eq!(message_end(b"Q\x7f\xff\xff\xff", 100), Err(ProtocolError::BadLength(0x7fff_ffff)));
    }
}

/// Runs every parser the gateway applies to client bytes on `data`: what the fuzz target and
/// the seeded run below call. Panics only if a parser breaks its own contract.
pub fn exercise(data: &[u8]) {
    let _ = startup::parse(data);
    if let Ok(Some(end)) = message_end(data, MAX_MESSAGE) {
        assert!(end <= data.len(), "framing claimed more than it was given");
        let _ = frontend::password(&data[..end]);
        let _ = frontend::is_terminate(&data[..end]);
    }
    // The relay's framer, fed the same bytes in two pieces: it consumes all it is given (or
    // refuses a length), and the statement reader takes any body without complaint.
    let mut framer = framing::Framer::with_max_len(b"QPF", 1 << 20);
    let mid = data.len() / 2;
    let mut capture: Option<statement::StatementCapture> = None;
    let mut each = |e: framing::Event<'_>| {
        match e {
            framing::Event::Start(kind, len) => {
                capture = statement::StatementKind::of(kind).map(|k| statement::StatementCapture::new(k, len))
            }
            framing::Event::Body(b) => {
                if let Some(c) = capture.as_mut() {
                    c.feed(b);
                }
            }
            framing::Event::End(_) => {
                if let Some(c) = capture.take() {
                    let s = c.finish(1, "UTF8".into());
                    assert!(s.head.len() <= statement::TEXT_CAP, "a head outgrew the cap");
                }
            }
        }
        true
    };
    if let Ok(n) = framer.feed(&data[..mid], false, &mut each) {
        assert_eq!(n, mid, "the framer stopped without being asked");
        if let Ok(n) = framer.feed(&data[mid..], false, &mut each) {
            assert_eq!(n, data.len() - mid, "the framer stopped without being asked");
        }
    }
}

/// Random and mutated input against every parser the gateway runs on client bytes: none may
/// panic, and framing must never claim more bytes than it was given. (The cargo-fuzz target
/// in `fuzz/` runs the same checks guided by coverage, for minutes; this is its short seeded
/// run inside the test suite.)
#[cfg(test)]
mod seeded_fuzz {
    use super::*;

    /// A small deterministic generator (xorshift): the same run every time.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    fn check(data: &[u8]) {
        exercise(data);
    }

    #[test]
    fn parsers_survive_random_and_mutated_input() {
        let seeds: [&[u8]; 4] = [
            b"\0\0\0\x17\0\x03\0\0user\0alice\0\0\0",
            b"Q\0\0\0\x0dSELECT 1\0",
            b"P\0\0\0\x10s\0SELECT $1\0\0\0",
            b"\0\0\0\x08\x04\xd2\x16\x2f",
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for i in 0..200_000 {
            let mut data = seeds[i % seeds.len()].to_vec();
            for _ in 0..(rng.next() % 6) {
                let at = (rng.next() as usize) % (data.len() + 1);
                match rng.next() % 3 {
                    0 if at < data.len() => data[at] = rng.next() as u8,
                    1 => data.insert(at, rng.next() as u8),
                    _ if at < data.len() => {
                        data.remove(at);
                    }
                    _ => {}
                }
            }
            check(&data);
            let random: Vec<u8> = (0..(rng.next() % 64)).map(|_| rng.next() as u8).collect();
            check(&random);
        }
    }
}
