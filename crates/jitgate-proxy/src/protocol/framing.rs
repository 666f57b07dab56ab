//! Following PostgreSQL's message framing in a byte stream without buffering messages: the
//! relay forwards every chunk as it arrives and the [`Framer`] only reads the 5-byte headers
//! (kind and length) and skips bodies by arithmetic. It knows whether the stream stands at a
//! message boundary (where the kill switch may insert its own message) and hands the first
//! bytes of the messages it is asked about (the statements of Query and Parse) to its caller.

/// A message the framer was asked to capture, complete or cut at the capture limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    pub kind: u8,
    /// The first bytes of the body (at most the framer's capture limit).
    pub body: Vec<u8>,
    /// Whether the body was longer than what was captured.
    pub cut: bool,
}

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
    capture_kinds: &'static [u8],
    capture_limit: usize,
    capturing: Option<Captured>,
    max_len: u32,
}

impl Framer {
    /// A framer that captures the bodies of messages whose kind is in `capture_kinds`, up to
    /// `capture_limit` bytes each.
    pub fn new(capture_kinds: &'static [u8], capture_limit: usize) -> Self {
        Self::with_max_len(capture_kinds, capture_limit, u32::MAX)
    }

    /// Like [`Framer::new`], refusing message lengths above `max_len`.
    pub fn with_max_len(capture_kinds: &'static [u8], capture_limit: usize, max_len: u32) -> Self {
        Self {
            max_len,
            header: [0; 5],
            header_len: 0,
            remaining: 0,
            capture_kinds,
            capture_limit,
            capturing: None,
        }
    }

    /// Whether the bytes fed so far end exactly after a whole message.
    pub fn at_boundary(&self) -> bool {
        self.header_len == 0 && self.remaining == 0
    }

    /// Reads `chunk`, the next bytes of the stream. `on_message` gets each message kind as its
    /// header completes and each capture as its message ends (or its capture fills); it
    /// returns false to stop right after that message's header or end. With `stop_at_boundary`
    /// the framer stops at the first boundary it reaches. Returns the bytes consumed: all of
    /// `chunk` unless it stopped.
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
                if self.capture_kinds.contains(&kind) {
                    self.capturing = Some(Captured {
                        kind,
                        body: Vec::with_capacity(self.capture_limit.min(self.remaining as usize)),
                        cut: false,
                    });
                }
                let go_on = on_message(Event::Start(kind));
                if self.remaining == 0 {
                    self.finish_message(&mut on_message);
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
            if let Some(c) = self.capturing.as_mut() {
                let room = self.capture_limit - c.body.len();
                c.body.extend_from_slice(&chunk[at..at + take.min(room)]);
                if take > room {
                    c.cut = true;
                }
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
        match self.capturing.take() {
            Some(c) => on_message(Event::Captured(&c)),
            None => true,
        }
    }
}

/// What the framer reports while it reads.
#[derive(Debug)]
pub enum Event<'a> {
    /// A message of this kind begins (its header is complete).
    Start(u8),
    /// A message the framer captures ended (or its capture is as long as it gets).
    Captured(&'a Captured),
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

    /// Feeds `stream` in pieces of `step` bytes; returns kinds started, captures, and whether
    /// the end is a boundary.
    fn run(stream: &[u8], step: usize, limit: usize) -> (Vec<u8>, Vec<Captured>, bool) {
        let mut f = Framer::new(b"QP", limit);
        let (mut kinds, mut caps) = (Vec::new(), Vec::new());
        for piece in stream.chunks(step) {
            let n = f
                .feed(piece, false, |e| {
                    match e {
                        Event::Start(k) => kinds.push(k),
                        Event::Captured(c) => caps.push(c.clone()),
                    }
                    true
                })
                .unwrap();
            assert_eq!(n, piece.len());
        }
        (kinds, caps, f.at_boundary())
    }

    #[test]
    fn any_split_of_the_stream_frames_alike() {
        let mut stream = msg(b'Q', b"SELECT 1\0");
        stream.extend(msg(b'B', &[0; 20]));
        stream.extend(msg(b'S', b""));
        stream.extend(msg(b'P', b"s1\0SELECT $1\0\0\0"));
        stream.extend(msg(b'd', &vec![7; 100_000]));
        let whole = run(&stream, stream.len(), 64);
        assert_eq!(whole.0, b"QBSPd".to_vec());
        assert_eq!(whole.1.len(), 2);
        assert_eq!(whole.1[0].body, b"SELECT 1\0");
        assert!(whole.2);
        for step in [1, 2, 3, 4, 5, 6, 7, 13, 4096] {
            assert_eq!(run(&stream, step, 64), whole, "split every {step} bytes");
        }
        // Cut off inside a header or a body: not at a boundary.
        assert!(!run(&stream[..3], 1, 64).2);
        assert!(!run(&stream[..8], 1, 64).2);
    }

    #[test]
    fn captures_stop_at_their_limit_and_bad_lengths_are_refused() {
        let (_, caps, _) = run(&msg(b'Q', b"SELECT 'a long statement'\0"), 3, 6);
        assert_eq!(caps[0].body, b"SELECT");
        assert!(caps[0].cut);
        let mut f = Framer::new(b"", 0);
        assert_eq!(f.feed(b"Q\0\0\0\x03", false, |_| true), Err(FramingError::BadLength(3)));
        let mut f = Framer::with_max_len(b"", 0, 100);
        assert_eq!(f.feed(b"Q\0\0\0\x65", false, |_| true), Err(FramingError::BadLength(101)));
        assert_eq!(Framer::with_max_len(b"", 0, 100).feed(b"Q\0\0\0\x64", false, |_| true), Ok(5));
    }

    #[test]
    fn feeding_can_stop_at_the_first_boundary_or_when_asked() {
        let mut stream = msg(b'D', b"row");
        stream.extend(msg(b'Z', b"I"));
        let mut f = Framer::new(b"", 0);
        assert_eq!(f.feed(&stream, true, |_| true), Ok(8));
        assert!(f.at_boundary());
        assert_eq!(f.feed(&stream[8..], true, |_| true), Ok(6));
        // A message kind that ends the stream: stop right after its header.
        let mut f = Framer::new(b"", 0);
        let x = [msg(b'X', b""), msg(b'Q', b"x\0")].concat();
        assert_eq!(f.feed(&x, false, |e| !matches!(e, Event::Start(b'X'))), Ok(5));
    }
}
