//! What the record keeps of a statement a client sends, read from the message body piece by
//! piece as the relay forwards it: Query (`Q`) and Parse (`P`) text, and FunctionCall (`F`)
//! function and argument sizes. A text longer than the cap is kept as its head and tail, with
//! its full length and the SHA-256 of all of it, so padding cannot push the part that matters
//! out of the record. The bytes are kept as sent, in the session's client encoding; decoding
//! is the record writer's business, off the relay's path.

use sha2::{Digest, Sha256};

/// Text kept whole up to this many bytes; beyond it, head and tail.
pub const TEXT_CAP: usize = 4096;
/// Of a longer text: the first bytes kept...
pub const HEAD: usize = 3072;
/// ...and the last.
pub const TAIL: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementKind {
    Query,
    Parse,
    FunctionCall,
}

impl StatementKind {
    pub fn of(message_kind: u8) -> Option<Self> {
        match message_kind {
            b'Q' => Some(Self::Query),
            b'P' => Some(Self::Parse),
            b'F' => Some(Self::FunctionCall),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Query => "query",
            Self::Parse => "parse",
            Self::FunctionCall => "function_call",
        }
    }
}

/// One statement as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedStatement {
    /// Its place in the session (1, 2, ...): a gap in the record would show.
    pub seq: u64,
    pub kind: StatementKind,
    /// The text (Query, Parse), whole or its first [`HEAD`] bytes, in the client encoding.
    pub head: Vec<u8>,
    /// The last [`TAIL`] bytes of a text longer than [`TEXT_CAP`]; empty otherwise.
    pub tail: Vec<u8>,
    /// The text's full length in bytes.
    pub len: u64,
    /// SHA-256 of the whole text, when only head and tail are kept.
    pub sha256: Option<[u8; 32]>,
    /// FunctionCall: the function's OID and each argument's size (-1 for NULL).
    pub function: Option<(u32, Vec<i32>)>,
    /// The session's `client_encoding` when it was sent.
    pub encoding: std::sync::Arc<str>,
}

impl RecordedStatement {
    pub fn truncated(&self) -> bool {
        self.sha256.is_some()
    }
}

/// Where a Parse body's reader stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextState {
    /// Parse: the statement name before the text.
    Name,
    Text,
    Done,
}

/// Reads one Query, Parse or FunctionCall body.
#[derive(Debug)]
pub struct StatementCapture {
    kind: StatementKind,
    text: TextState,
    head: Vec<u8>,
    /// The newest bytes past the head; trimmed to [`TAIL`] now and then.
    tail: Vec<u8>,
    len: u64,
    hasher: Option<Sha256>,
    call: CallReader,
}

impl StatementCapture {
    /// `body_len`: the message body's length (from its header), to know at once whether the
    /// text may outgrow the cap and so needs hashing.
    pub fn new(kind: StatementKind, body_len: u32) -> Self {
        Self {
            kind,
            text: match kind {
                StatementKind::Query => TextState::Text,
                StatementKind::Parse => TextState::Name,
                StatementKind::FunctionCall => TextState::Done,
            },
            head: Vec::with_capacity((body_len as usize).min(TEXT_CAP)),
            tail: Vec::new(),
            len: 0,
            hasher: (body_len as usize > TEXT_CAP && kind != StatementKind::FunctionCall).then(Sha256::new),
            call: CallReader::default(),
        }
    }

    pub fn feed(&mut self, mut piece: &[u8]) {
        if self.kind == StatementKind::FunctionCall {
            self.call.feed(piece);
            return;
        }
        while !piece.is_empty() && self.text != TextState::Done {
            let nul = piece.iter().position(|&c| c == 0);
            match self.text {
                TextState::Name => match nul {
                    Some(i) => {
                        self.text = TextState::Text;
                        piece = &piece[i + 1..];
                    }
                    None => return,
                },
                TextState::Text => {
                    let text = &piece[..nul.unwrap_or(piece.len())];
                    self.take_text(text);
                    if nul.is_some() {
                        self.text = TextState::Done;
                    }
                    return;
                }
                TextState::Done => return,
            }
        }
    }

    fn take_text(&mut self, text: &[u8]) {
        self.len += text.len() as u64;
        if let Some(h) = self.hasher.as_mut() {
            h.update(text);
        }
        let room = TEXT_CAP.saturating_sub(self.head.len());
        let (to_head, rest) = text.split_at(room.min(text.len()));
        self.head.extend_from_slice(to_head);
        if !rest.is_empty() {
            self.tail.extend_from_slice(rest);
            if self.tail.len() > 4 * TAIL {
                self.tail.drain(..self.tail.len() - TAIL);
            }
        }
    }

    /// The statement, once its message ended.
    pub fn finish(mut self, seq: u64, encoding: std::sync::Arc<str>) -> RecordedStatement {
        let function = (self.kind == StatementKind::FunctionCall).then(|| self.call.finish());
        let sha256 = if self.len as usize > TEXT_CAP {
            // Whole text = head (TEXT_CAP bytes) + everything in tail order; keep HEAD + TAIL.
            let mut head = std::mem::take(&mut self.head);
            let mut tail = std::mem::take(&mut self.tail);
            if tail.len() < TAIL {
                // The tail's start lies inside the head.
                let from_head = TAIL - tail.len();
                let mut t = head[head.len() - from_head..].to_vec();
                t.extend_from_slice(&tail);
                tail = t;
            } else {
                tail.drain(..tail.len() - TAIL);
            }
            head.truncate(HEAD);
            self.head = head;
            self.tail = tail;
            self.hasher.take().map(|h| h.finalize().into())
        } else {
            None
        };
        RecordedStatement {
            seq,
            kind: self.kind,
            head: self.head,
            tail: self.tail,
            len: self.len,
            sha256,
            function,
            encoding,
        }
    }
}

/// Reads a FunctionCall body without keeping its arguments: the OID, the argument format
/// codes (skipped), then each argument's length (its bytes skipped).
#[derive(Debug, Default)]
struct CallReader {
    /// Bytes of the current fixed-size field.
    field: Vec<u8>,
    stage: CallStage,
    oid: u32,
    formats_left: u16,
    args_left: u16,
    skip: u64,
    sizes: Vec<i32>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum CallStage {
    #[default]
    Oid,
    FormatCount,
    Formats,
    ArgCount,
    ArgLen,
    ArgBytes,
    Done,
}

impl CallReader {
    fn feed(&mut self, mut piece: &[u8]) {
        while !piece.is_empty() {
            if self.stage == CallStage::Done {
                return;
            }
            if self.stage == CallStage::ArgBytes {
                let n = self.skip.min(piece.len() as u64) as usize;
                self.skip -= n as u64;
                piece = &piece[n..];
                if self.skip == 0 {
                    self.next_arg();
                }
                continue;
            }
            let want = match self.stage {
                CallStage::Oid | CallStage::ArgLen => 4,
                _ => 2,
            };
            let n = (want - self.field.len()).min(piece.len());
            self.field.extend_from_slice(&piece[..n]);
            piece = &piece[n..];
            if self.field.len() < want {
                return;
            }
            let field = std::mem::take(&mut self.field);
            match self.stage {
                CallStage::Oid => {
                    self.oid = u32::from_be_bytes([field[0], field[1], field[2], field[3]]);
                    self.stage = CallStage::FormatCount;
                }
                CallStage::FormatCount => {
                    self.formats_left = u16::from_be_bytes([field[0], field[1]]);
                    self.stage = if self.formats_left == 0 {
                        CallStage::ArgCount
                    } else {
                        CallStage::Formats
                    };
                }
                CallStage::Formats => {
                    self.formats_left -= 1;
                    if self.formats_left == 0 {
                        self.stage = CallStage::ArgCount;
                    }
                }
                CallStage::ArgCount => {
                    self.args_left = u16::from_be_bytes([field[0], field[1]]);
                    self.stage = if self.args_left == 0 { CallStage::Done } else { CallStage::ArgLen };
                }
                CallStage::ArgLen => {
                    let len = i32::from_be_bytes([field[0], field[1], field[2], field[3]]);
                    self.sizes.push(len);
                    if len > 0 {
                        self.skip = len as u64;
                        self.stage = CallStage::ArgBytes;
                    } else {
                        self.next_arg();
                    }
                }
                CallStage::ArgBytes | CallStage::Done => {}
            }
        }
    }

    fn next_arg(&mut self) {
        self.args_left = self.args_left.saturating_sub(1);
        self.stage = if self.args_left == 0 { CallStage::Done } else { CallStage::ArgLen };
    }

    fn finish(self) -> (u32, Vec<i32>) {
        (self.oid, self.sizes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture(kind: StatementKind, body: &[u8], step: usize) -> RecordedStatement {
        let mut c = StatementCapture::new(kind, body.len() as u32);
        for piece in body.chunks(step.max(1)) {
            c.feed(piece);
        }
        c.finish(1, "UTF8".into())
    }

    #[test]
    fn short_texts_are_kept_whole_in_any_split() {
        for step in [1, 2, 5, 100] {
            let q = capture(StatementKind::Query, b"SELECT 1\0", step);
            assert_eq!((q.head.as_slice(), q.len, q.truncated()), (&b"SELECT 1"[..], 8, false));
            let p = capture(StatementKind::Parse, b"s1\0SELECT $1\0\0\x01\0\0\0\x17", step);
            assert_eq!(p.head, b"SELECT $1");
            assert!(p.tail.is_empty());
        }
    }

    #[test]
    fn long_texts_keep_head_tail_length_and_hash() {
        let mut text = b"SELECT 1 /*".to_vec();
        text.extend(std::iter::repeat_n(b'x', 10_000));
        text.extend_from_slice(b"*/; UPDATE secrets SET v = 1");
        let mut body = text.clone();
        body.push(0);
        let want: [u8; 32] = Sha256::digest(&text).into();
        for step in [1, 7, 1000, 100_000] {
            let q = capture(StatementKind::Query, &body, step);
            assert!(q.truncated());
            assert_eq!(q.len, text.len() as u64);
            assert_eq!(q.sha256, Some(want));
            assert_eq!(q.head, text[..HEAD]);
            assert_eq!(q.tail, text[text.len() - TAIL..]);
            assert!(String::from_utf8_lossy(&q.tail).ends_with("UPDATE secrets SET v = 1"));
        }
        // Just over the cap: the tail overlaps what the head had taken.
        let text = vec![b'a'; TEXT_CAP + 10];
        let mut body = text.clone();
        body.push(0);
        let q = capture(StatementKind::Query, &body, 3);
        assert_eq!((q.head.len(), q.tail.len(), q.len), (HEAD, TAIL, (TEXT_CAP + 10) as u64));
    }

    #[test]
    fn function_calls_give_their_oid_and_argument_sizes() {
        let mut body = 2078u32.to_be_bytes().to_vec();
        body.extend_from_slice(&1u16.to_be_bytes());
        body.extend_from_slice(&0u16.to_be_bytes());
        body.extend_from_slice(&3u16.to_be_bytes());
        for arg in [&b"role"[..], b"none", b""] {
            body.extend_from_slice(&(arg.len() as i32).to_be_bytes());
            body.extend_from_slice(arg);
        }
        body.extend_from_slice(&0u16.to_be_bytes());
        for step in [1, 3, 64] {
            let f = capture(StatementKind::FunctionCall, &body, step);
            assert_eq!(f.function, Some((2078, vec![4, 4, 0])));
            assert!(f.head.is_empty());
        }
    }
}
