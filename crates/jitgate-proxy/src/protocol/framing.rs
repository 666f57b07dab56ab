//! Following PostgreSQL's message framing in a byte stream without buffering messages: the
//! relay forwards every chunk as it arrives and the [`Framer`] only reads the 5-byte headers
//! (kind and length) and skips bodies by arithmetic. It knows whether the stream stands at a
//! message boundary (where the kill switch may insert its own message) and hands the bodies
//! of the messages it is asked about (Query, Parse, FunctionCall ...) to its caller piece by
//! piece, as they pass, so the caller keeps what it needs and nothing more.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramingError {
    /// A length below 4 (the length counts itself) or above the framer's limit.
    BadLength(u32),
}

impl std::fmt::Display for FramingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BadLength(n) => write!(f, "invalid message length {n}"),
        }
    }
}

#[derive(Debug)]
pub struct Framer {
    header: [u8; 5],
    /// Header bytes seen of the next message (0 at a boundary).
    header_len: usize,
    /// Body bytes of the current message still to come.
    remaining: u64,
    /// The kinds whose bodies are handed over.
    body_kinds: &'static [u8],
    /// Whether the current message's body is handed over.
    in_body: bool,
    max_len: u32,
}

impl Framer {
    /// A framer that hands over the bodies of messages whose kind is in `body_kinds`.
    pub fn new(body_kinds: &'static [u8]) -> Self {
        Self::with_max_len(body_kinds, u32::MAX)
    }

    /// Like [`Framer::new`], refusing message lengths above `max_len`.
    pub fn with_max_len(body_kinds: &'static [u8], max_len: u32) -> Self {
        Self {
            max_len,
            header: [0; 5],
            header_len: 0,
            remaining: 0,
            body_kinds,
            in_body: false,
        }
    }

    /// Whether the bytes fed so far end exactly after a whole message.
    pub fn at_boundary(&self) -> bool {
        self.header_len == 0 && self.remaining == 0
    }

    /// Reads `chunk`, the next bytes of the stream. `on_message` gets each message's kind and
    /// body length as its header completes, the body pieces of the kinds asked for, and their
    /// end; it returns false to stop right after that event (a header, or a message's end).
    /// With `stop_at_boundary` the framer stops at the first boundary it reaches. Returns the
    /// bytes consumed: all of `chunk` unless it stopped.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        stop_at_boundary: bool,
        mut on_message: impl FnMut(Event<'_>) -> bool,
    ) -> Result<usize, FramingError> {
        let mut at = 0;
        while at < chunk.len() {
            if self.remaining == 0 && self.header_len < 5 {
                let take = (5 - self.header_len).min(chunk.len() - at);
                self.header[self.header_len..self.header_len + take].copy_from_slice(&chunk[at..at + take]);
                self.header_len += take;
                at += take;
                if self.header_len < 5 {
                    break;
                }
                let kind = self.header[0];
                let len = u32::from_be_bytes([self.header[1], self.header[2], self.header[3], self.header[4]]);
                if len < 4 || len > self.max_len {
                    return Err(FramingError::BadLength(len));
                }
                self.remaining = u64::from(len - 4);
                self.in_body = self.body_kinds.contains(&kind);
                let go_on = on_message(Event::Start(kind, len - 4));
                if self.remaining == 0 {
                    let go_on = self.finish_message(&mut on_message) && go_on;
                    if !go_on || stop_at_boundary {
                        return Ok(at);
                    }
                    continue;
                }
                if !go_on {
                    return Ok(at);
                }
            }
            let take = (self.remaining.min((chunk.len() - at) as u64)) as usize;
            if self.in_body {
                on_message(Event::Body(&chunk[at..at + take]));
            }
            self.remaining -= take as u64;
            at += take;
            if self.remaining == 0 {
                let go_on = self.finish_message(&mut on_message);
                if !go_on || stop_at_boundary {
                    return Ok(at);
                }
            }
        }
        Ok(at)
    }

    fn finish_message(&mut self, on_message: &mut impl FnMut(Event<'_>) -> bool) -> bool {
        self.header_len = 0;
        if std::mem::take(&mut self.in_body) {
            on_message(Event::End(self.header[0]))
        } else {
            true
        }
    }
}

/// What the framer reports while it reads.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A message of this kind begins (its header is complete), with its body's length.
    Start(u8, u32),
    /// The next piece of the body of a message whose kind was asked for.
    Body(&'a [u8]),
    /// The message whose body was handed over ended (its kind).
    End(u8),
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

    /// Feeds `stream` in pieces of `step` bytes; returns kinds started, the bodies handed over
    /// (joined), and whether the end is a boundary.
    /// Kinds started, (kind, body) handed over, and whether the stream ends at a boundary.
    type Framed = (Vec<u8>, Vec<(u8, Vec<u8>)>, bool);

    fn run(stream: &[u8], step: usize) -> Framed {
        let mut f = Framer::new(b"QP");
        let (mut kinds, mut bodies) = (Vec::new(), Vec::new());
        let mut current = Vec::new();
        for piece in stream.chunks(step) {
            let n = f
                .feed(piece, false, |e| {
                    match e {
                        Event::Start(k, _) => kinds.push(k),
                        Event::Body(b) => current.extend_from_slice(b),
                        Event::End(k) => bodies.push((k, std::mem::take(&mut current))),
                    }
                    true
                })
                .unwrap();
            assert_eq!(n, piece.len());
        }
        (kinds, bodies, f.at_boundary())
    }

    #[test]
    fn any_split_of_the_stream_frames_alike() {
        let mut stream = msg(b'Q', b"SELECT 1\0");
        stream.extend(msg(b'B', &[0; 20]));
        stream.extend(msg(b'S', b""));
        stream.extend(msg(b'P', b"s1\0SELECT $1\0\0\0"));
        stream.extend(msg(b'd', &vec![7; 100_000]));
        stream.extend(msg(b'Q', b""));
        let whole = run(&stream, stream.len());
        assert_eq!(whole.0, b"QBSPdQ".to_vec());
        assert_eq!(whole.1.len(), 3);
        assert_eq!(whole.1[0], (b'Q', b"SELECT 1\0".to_vec()));
        assert_eq!(whole.1[1], (b'P', b"s1\0SELECT $1\0\0\0".to_vec()));
        assert_eq!(whole.1[2], (b'Q', Vec::new()), "an empty body still ends");
        assert!(whole.2);
        for step in [1, 2, 3, 4, 5, 6, 7, 13, 4096] {
            assert_eq!(run(&stream, step), whole, "split every {step} bytes");
        }
        // Cut off inside a header or a body: not at a boundary.
        assert!(!run(&stream[..3], 1).2);
        assert!(!run(&stream[..8], 1).2);
    }

    #[test]
    fn starts_carry_the_body_length_and_bad_lengths_are_refused() {
        let mut f = Framer::new(b"");
        let mut seen = Vec::new();
        f.feed(&msg(b'd', &[1; 10]), false, |e| {
            if let Event::Start(k, n) = e {
                seen.push((k, n));
            }
            true
        })
        .unwrap();
        assert_eq!(seen, vec![(b'd', 10)]);
        let mut f = Framer::new(b"");
        assert_eq!(f.feed(b"Q\0\0\0\x03", false, |_| true), Err(FramingError::BadLength(3)));
        let mut f = Framer::with_max_len(b"", 100);
        assert_eq!(f.feed(b"Q\0\0\0\x65", false, |_| true), Err(FramingError::BadLength(101)));
        assert_eq!(Framer::with_max_len(b"", 100).feed(b"Q\0\0\0\x64", false, |_| true), Ok(5));
    }

    #[test]
    fn feeding_can_stop_at_the_first_boundary_or_when_asked() {
        let mut stream = msg(b'D', b"row");
        stream.extend(msg(b'Z', b"I"));
        let mut f = Framer::new(b"");
        assert_eq!(f.feed(&stream, true, |_| true), Ok(8));
        assert!(f.at_boundary());
        assert_eq!(f.feed(&stream[8..], true, |_| true), Ok(6));
        // A message kind that ends the stream: stop right after its header.
        let mut f = Framer::new(b"");
        let x = [msg(b'X', b""), msg(b'Q', b"x\0")].concat();
        assert_eq!(f.feed(&x, false, |e| !matches!(e, Event::Start(b'X', _))), Ok(5));
    }
}
