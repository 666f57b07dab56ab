//! Statements on the record: the gateway's batches of recorded statements become audit events,
//! one per batch (a busy session costs one event per batch, not one per statement), written by
//! one task. The text is decoded from the session's client encoding here, off the relay's
//! path; bytes that do not decode are kept as `\xNN` escapes, so nothing is cut short. A batch
//! that cannot be written is retried until it is; meanwhile the bounded queue fills and the
//! sessions wait, so a statement is never dropped.

use crate::core::AppState;
use jitgate_core::actions;
use jitgate_core::audit::{NewEvent, Outcome};
use jitgate_proxy::protocol::statement::RecordedStatement;
use jitgate_proxy::relay::StatementBatch;
use std::borrow::Cow;
use std::time::Duration;
use tokio::sync::mpsc;

/// Batches waiting for the writer; beyond this, sessions wait for room.
pub const QUEUE: usize = 1024;
/// Batches written in one transaction at most.
const PER_TRANSACTION: usize = 256;
/// The writer gathers what arrives for this long before a transaction, so a busy gateway
/// costs a few transactions a second, not one per batch.
const GATHER: Duration = Duration::from_millis(50);

/// The text as the session's client encoding says, with undecodable bytes as `\xNN`.
pub fn decode<'a>(bytes: &'a [u8], encoding: &str) -> Cow<'a, str> {
    if encoding == "UTF8" {
        // The common case, borrowed: no copy of the text.
        if let Ok(text) = std::str::from_utf8(bytes) {
            return Cow::Borrowed(text);
        }
        return escaped(bytes, true).into();
    }
    let name = encoding.to_ascii_uppercase().replace(['-', '_'], "");
    // LATIN1 is ISO 8859-1 exactly (byte = code point); the WHATWG tables encoding_rs has map
    // that label to windows-1252, which differs in 0x80-0x9F.
    if name == "LATIN1" {
        return bytes.iter().map(|&b| char::from(b)).collect::<String>().into();
    }
    let label = match name.as_str() {
        "UTF8" | "UNICODE" | "SQLASCII" => None,
        "LATIN2" => Some("iso-8859-2"),
        "LATIN3" => Some("iso-8859-3"),
        "LATIN4" => Some("iso-8859-4"),
        "LATIN5" => Some("iso-8859-9"),
        "LATIN6" => Some("iso-8859-10"),
        "LATIN7" => Some("iso-8859-13"),
        "LATIN8" => Some("iso-8859-14"),
        "LATIN9" => Some("iso-8859-15"),
        "LATIN10" => Some("iso-8859-16"),
        "ISO88595" => Some("iso-8859-5"),
        "ISO88596" => Some("iso-8859-6"),
        "ISO88597" => Some("iso-8859-7"),
        "ISO88598" => Some("iso-8859-8"),
        "KOI8R" => Some("koi8-r"),
        "KOI8U" => Some("koi8-u"),
        "EUCJP" | "EUCJIS2004" => Some("euc-jp"),
        "SJIS" | "SHIFTJIS2004" => Some("shift_jis"),
        "EUCKR" | "UHC" => Some("euc-kr"),
        "GBK" | "GB18030" | "EUCCN" => Some("gb18030"),
        "BIG5" => Some("big5"),
        win if win.starts_with("WIN") => match &win[3..] {
            "866" => Some("ibm866"),
            "874" => Some("windows-874"),
            n @ ("1250" | "1251" | "1252" | "1253" | "1254" | "1255" | "1256" | "1257" | "1258") => {
                return decode_with(bytes, &format!("windows-{n}")).into();
            }
            _ => None,
        },
        _ => return escaped(bytes, false).into(),
    };
    match label {
        Some(l) => decode_with(bytes, l).into(),
        None => escaped(bytes, true).into(),
    }
}

fn decode_with(bytes: &[u8], label: &str) -> String {
    match encoding_rs::Encoding::for_label(label.as_bytes()) {
        Some(enc) => match enc.decode_without_bom_handling_and_without_replacement(bytes) {
            Some(text) => text.into_owned(),
            None => escaped(bytes, false),
        },
        None => escaped(bytes, false),
    }
}

/// UTF-8 where it is valid (when `utf8`), printable ASCII otherwise, the rest as `\xNN`.
fn escaped(bytes: &[u8], utf8: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    let mut rest = bytes;
    while !rest.is_empty() {
        if utf8 {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    break;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    out.push_str(std::str::from_utf8(good).unwrap_or_default());
                    let n = e.error_len().unwrap_or(bad.len()).max(1);
                    for b in &bad[..n] {
                        out.push_str(&format!("\\x{b:02X}"));
                    }
                    rest = &bad[n..];
                }
            }
        } else {
            for &b in rest {
                if b.is_ascii() && !b.is_ascii_control() || matches!(b, b'\n' | b'\t' | b'\r') {
                    out.push(char::from(b));
                } else {
                    out.push_str(&format!("\\x{b:02X}"));
                }
            }
            break;
        }
    }
    out
}

/// A batch's details, `{"statements":[...]}`, written straight as their canonical text
/// (compact, keys in sorted order), each statement as the audit event shows it: no
/// `serde_json::Value` per statement to build, walk and free (one event carries up to 256
/// statements, and the writer makes thousands a second).
pub fn statements_details(statements: &[RecordedStatement]) -> String {
    let mut out = Vec::with_capacity(16 + statements.iter().map(|s| 48 + s.head.len() + s.tail.len()).sum::<usize>());
    out.extend_from_slice(b"{\"statements\":[");
    for (i, s) in statements.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_statement(s, &mut out);
    }
    out.extend_from_slice(b"]}");
    // Only UTF-8 went in: ASCII here, and strings as serde_json writes them. Were that ever
    // wrong, the record would keep a replacement character, never lose the batch.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// One statement's object in canonical form; the keys are written in sorted order. Values go
/// through serde_json (its escaping and number formatting are the canonical form's); writing to
/// a Vec cannot fail, so its results are not looked at.
fn write_statement(s: &RecordedStatement, out: &mut Vec<u8>) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let (raw, truncated) = statement_shape(s);
    let key = |out: &mut Vec<u8>, k: &str| {
        if out.last() != Some(&b'{') {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b"\":");
    };
    let string = |out: &mut Vec<u8>, text: &str| {
        let _ = serde_json::to_writer(&mut *out, text);
    };
    let number = |out: &mut Vec<u8>, n: u64| {
        let _ = serde_json::to_writer(&mut *out, &n);
    };
    out.push(b'{');
    if let Some((_, sizes)) = &s.function {
        key(out, "argument_sizes");
        let _ = serde_json::to_writer(&mut *out, sizes);
    }
    if !s.encoding.eq_ignore_ascii_case("UTF8") {
        key(out, "encoding");
        string(out, &s.encoding);
    }
    if let Some((oid, _)) = &s.function {
        key(out, "function_oid");
        number(out, u64::from(*oid));
    }
    key(out, "kind");
    string(out, s.kind.as_str());
    if truncated {
        key(out, "length");
        number(out, s.len);
    }
    key(out, "n");
    number(out, s.seq);
    if raw {
        key(out, "raw");
        string(out, &b64.encode(&s.head));
        if !s.tail.is_empty() {
            key(out, "raw_tail");
            string(out, &b64.encode(&s.tail));
        }
    }
    if let Some(hash) = s.sha256 {
        key(out, "sha256");
        string(out, &hex::encode(hash));
        key(out, "tail");
        string(out, &decode(&s.tail, &s.encoding));
    }
    if s.function.is_none() {
        key(out, "text");
        string(out, &decode(&s.head, &s.encoding));
    }
    if truncated {
        key(out, "truncated");
        out.extend_from_slice(b"true");
    }
    out.push(b'}');
}

/// Whether the statement's bytes are kept as sent too (`raw`), and whether only its head and
/// tail are (`truncated`).
fn statement_shape(s: &RecordedStatement) -> (bool, bool) {
    // Bytes beyond ASCII are kept as sent too: what the server made of them depends on an
    // encoding the record may have learnt too late (a SET client_encoding in the same packet)
    // or read differently (a multibyte character hiding a quote or a backslash).
    (!s.head.is_ascii() || !s.tail.is_ascii(), s.sha256.is_some())
}

/// One statement as the audit event shows it, as a `Value`: what [`statements_details`] writes
/// as text, kept as the reference its output is checked against.
#[cfg(test)]
pub fn statement_json(s: &RecordedStatement) -> serde_json::Value {
    use base64::Engine;
    use serde_json::{json, Value};
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut v = serde_json::Map::with_capacity(4);
    let (raw, truncated) = statement_shape(s);
    if let Some((_, sizes)) = &s.function {
        v.insert("argument_sizes".into(), json!(sizes));
    }
    if !s.encoding.eq_ignore_ascii_case("UTF8") {
        v.insert("encoding".into(), Value::String(s.encoding.to_string()));
    }
    if let Some((oid, _)) = &s.function {
        v.insert("function_oid".into(), json!(oid));
    }
    v.insert("kind".into(), Value::String(s.kind.as_str().into()));
    if truncated {
        v.insert("length".into(), json!(s.len));
    }
    v.insert("n".into(), json!(s.seq));
    if raw {
        v.insert("raw".into(), Value::String(b64.encode(&s.head)));
        if !s.tail.is_empty() {
            v.insert("raw_tail".into(), Value::String(b64.encode(&s.tail)));
        }
    }
    if let Some(hash) = s.sha256 {
        v.insert("sha256".into(), Value::String(hex::encode(hash)));
        v.insert("tail".into(), Value::String(decode(&s.tail, &s.encoding).into_owned()));
    }
    if s.function.is_none() {
        v.insert("text".into(), Value::String(decode(&s.head, &s.encoding).into_owned()));
    }
    if truncated {
        v.insert("truncated".into(), Value::Bool(true));
    }
    Value::Object(v)
}

/// Writes batches to the audit log until every sender is gone.
pub async fn write_statements(core: AppState, mut rx: mpsc::Receiver<StatementBatch>) {
    let mut batches = Vec::new();
    let mut delay = Duration::from_millis(100);
    while rx.recv_many(&mut batches, PER_TRANSACTION).await > 0 {
        // Gathered by sleeping once and taking what came meanwhile, not by waiting on the
        // queue: a writer waiting on it is woken by every batch (a thread woken from the relay's
        // own thread), sleeping it is woken once per transaction. A backlog is written at once.
        if batches.len() < PER_TRANSACTION {
            tokio::time::sleep(GATHER).await;
            while batches.len() < PER_TRANSACTION {
                match rx.try_recv() {
                    Ok(b) => batches.push(b),
                    Err(_) => break,
                }
            }
        }
        loop {
            match write(&core, &batches).await {
                Ok(()) => {
                    batches.clear();
                    delay = Duration::from_millis(100);
                    break;
                }
                Err(e) => {
                    // Kept, and tried again: the queue fills meanwhile and sessions wait.
                    tracing::error!(error = %e.message, "could not record session statements; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
}

async fn write(core: &AppState, batches: &[StatementBatch]) -> Result<(), crate::error::ServiceError> {
    let mut tx = core.begin().await?;
    for b in batches {
        tx.append_audit(
            NewEvent::with_canonical_details(
                "gateway",
                actions::SESSION_STATEMENTS,
                &*b.session,
                Outcome::Success,
                statements_details(&b.statements),
            ),
            core.now(),
        )
        .await?;
    }
    core.commit(tx).await?;
    let statements: usize = batches.iter().map(|b| b.statements.len()).sum();
    core.metrics.statements_recorded(statements as u64);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_decoded_in_the_client_encoding_and_never_cut() {
        assert_eq!(decode("SELECT 'é'".as_bytes(), "UTF8"), "SELECT 'é'");
        assert_eq!(decode(b"SELECT '\xe9t\xe9'; UPDATE t", "LATIN1"), "SELECT 'été'; UPDATE t");
        assert_eq!(decode(b"SELECT '\xe9'", "WIN1252"), "SELECT 'é'");
        assert_eq!(decode(b"SELECT '\xf0\xc9'", "KOI8R"), "SELECT 'Пи'");
        // Invalid UTF-8 in a UTF8 session: escaped, and what follows is still there.
        assert_eq!(decode(b"SELECT 1 \xff; DROP TABLE t", "UTF8"), "SELECT 1 \\xFF; DROP TABLE t");
        // An encoding without a table here: ASCII kept, the rest escaped.
        assert_eq!(
            decode(b"SELECT '\x8e\xa1'; DROP TABLE t", "MULE_INTERNAL"),
            "SELECT '\\x8E\\xA1'; DROP TABLE t"
        );
    }

    fn statement(seq: u64, head: &[u8]) -> RecordedStatement {
        RecordedStatement {
            seq,
            kind: jitgate_proxy::protocol::statement::StatementKind::Query,
            head: head.to_vec(),
            tail: Vec::new(),
            len: head.len() as u64,
            sha256: None,
            function: None,
            encoding: "UTF8".into(),
        }
    }

    /// Statements of every shape the record knows, and text that needs escaping.
    fn every_shape() -> Vec<RecordedStatement> {
        use jitgate_proxy::protocol::statement::StatementKind;
        let plain = statement(7, b"SELECT 1");
        vec![
            plain.clone(),
            statement(
                8,
                b"SELECT '\"quoted\"', E'\\x', '\t\n\r\x01\x1f\x7f' -- </script> \xe2\x80\xa8 \xf0\x9f\x94\x91",
            ),
            statement(9, b"SELECT 1 \xff; DROP TABLE t"),
            statement(u64::MAX, b""),
            RecordedStatement {
                head: b"SELECT '\xe9'".to_vec(),
                tail: b"UPDATE t \xff".to_vec(),
                len: 9000,
                sha256: Some([1; 32]),
                encoding: "LATIN1".into(),
                ..plain.clone()
            },
            RecordedStatement {
                tail: b"; UPDATE t SET x = 1".to_vec(),
                len: 9000,
                sha256: Some([2; 32]),
                kind: StatementKind::Parse,
                ..plain.clone()
            },
            RecordedStatement {
                head: b"SELECT '\x8e\xa1'".to_vec(),
                encoding: "MULE_INTERNAL".into(),
                ..plain.clone()
            },
            RecordedStatement {
                kind: StatementKind::FunctionCall,
                head: Vec::new(),
                function: Some((2048, vec![4, -1])),
                ..plain.clone()
            },
            RecordedStatement {
                kind: StatementKind::FunctionCall,
                head: Vec::new(),
                function: Some((u32::MAX, Vec::new())),
                encoding: "SQL_ASCII".into(),
                ..plain
            },
        ]
    }

    #[test]
    fn a_batchs_details_are_written_as_the_canonical_form_of_its_statements() {
        let all = every_shape();
        let reference = serde_json::json!({ "statements": all.iter().map(statement_json).collect::<Vec<_>>() });
        assert_eq!(statements_details(&all), jitgate_core::audit::canonical_json(&reference));
        for s in &all {
            let one = serde_json::json!({ "statements": [statement_json(s)] });
            assert_eq!(
                statements_details(std::slice::from_ref(s)),
                jitgate_core::audit::canonical_json(&one),
                "{s:?}"
            );
        }
        assert_eq!(statements_details(&[]), r#"{"statements":[]}"#);
        let written: serde_json::Value = serde_json::from_str(&statements_details(&all)).unwrap();
        let long = &written["statements"][4];
        assert_eq!(long["truncated"], true);
        assert_eq!(long["length"], 9000);
        assert_eq!(long["text"], "SELECT '\u{e9}'");
        assert_eq!(written["statements"][7]["function_oid"], 2048);
        use base64::Engine;
        let raw = base64::engine::general_purpose::STANDARD.decode(written["statements"][1]["raw"].as_str().unwrap());
        assert_eq!(raw.unwrap(), all[1].head, "the bytes as sent");
    }

    #[test]
    fn any_bytes_in_any_encoding_are_written_as_their_canonical_form() {
        use jitgate_proxy::protocol::statement::StatementKind;
        // A fixed xorshift: the same thousands of statements every run, any byte anywhere.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let encodings = [
            "UTF8",
            "utf8",
            "LATIN1",
            "WIN1251",
            "KOI8R",
            "EUC_JP",
            "SJIS",
            "SQL_ASCII",
            "MULE_INTERNAL",
            "BIG5",
        ];
        const SPECIAL: &[u8] = b"'\"\\\x00\n\t{}[],:";
        let bytes = |n: u64, next: &mut dyn FnMut() -> u64| -> Vec<u8> {
            (0..next() % n)
                .map(|_| match next() % 4 {
                    0 => (next() % 128) as u8,
                    1 => SPECIAL[(next() % SPECIAL.len() as u64) as usize],
                    _ => next() as u8,
                })
                .collect()
        };
        let all: Vec<RecordedStatement> = (0..3000)
            .map(|i| {
                let kind = [StatementKind::Query, StatementKind::Parse, StatementKind::FunctionCall][(next() % 3) as usize];
                let truncated = kind != StatementKind::FunctionCall && next() % 4 == 0;
                RecordedStatement {
                    seq: if i % 7 == 0 { next() } else { i },
                    kind,
                    head: if kind == StatementKind::FunctionCall {
                        Vec::new()
                    } else {
                        bytes(200, &mut next)
                    },
                    tail: if truncated { bytes(100, &mut next) } else { Vec::new() },
                    len: next() % 100_000,
                    sha256: truncated.then(|| [(next() % 256) as u8; 32]),
                    function: (kind == StatementKind::FunctionCall).then(|| {
                        let args = next() % 5;
                        ((next() % u64::from(u32::MAX)) as u32, (0..args).map(|_| next() as i32).collect())
                    }),
                    encoding: encodings[(next() % encodings.len() as u64) as usize].into(),
                }
            })
            .collect();
        for batch in all.chunks(256) {
            let reference = serde_json::json!({ "statements": batch.iter().map(statement_json).collect::<Vec<_>>() });
            assert_eq!(statements_details(batch), jitgate_core::audit::canonical_json(&reference));
        }
    }
}
