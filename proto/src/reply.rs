//! SMTP replies (RFC 5321 §4.2): a three-digit code and one or more text lines.

use crate::line::{Line, LineBuffer};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// Text of each line, without the code and separator.
    pub lines: Vec<String>,
}

impl Reply {
    pub fn new(code: u16, text: impl Into<String>) -> Self {
        Self { code, lines: vec![text.into()] }
    }

    pub fn multi(code: u16, lines: Vec<String>) -> Self {
        Self { code, lines }
    }

    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// The wire form: `250-first\r\n250 last\r\n`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let n = self.lines.len().max(1);
        for i in 0..n {
            let text = self.lines.get(i).map(String::as_str).unwrap_or("");
            let sep = if i + 1 == n { ' ' } else { '-' };
            out.extend_from_slice(format!("{}{}{}\r\n", self.code, sep, text).as_bytes());
        }
        out
    }

    /// The reply as one line, for logs and records (`250 2.0.0 Ok`).
    pub fn summary(&self) -> String {
        format!("{} {}", self.code, self.lines.last().map(String::as_str).unwrap_or(""))
    }
}

/// One line of a reply: `250-text` (more lines follow) or `250 text` (the last).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyLine<'a> {
    pub code: u16,
    /// No `-` after the code: the reply's last line.
    pub last: bool,
    /// What follows the code and its separator.
    pub text: &'a [u8],
}

impl<'a> ReplyLine<'a> {
    /// Reads a line (without its terminator) as a reply line: three ASCII digits, 100 to 599
    /// (as Zeek accepts them), then `-`, a space or anything (a bare `354` is a last line with
    /// no text). The one reading of reply lines for the relay's client and the tap.
    pub fn parse(line: &'a [u8]) -> Option<Self> {
        let digits = line.get(..3)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let code = digits.iter().fold(0u16, |acc, b| acc * 10 + u16::from(b - b'0'));
        if !(100..600).contains(&code) {
            return None;
        }
        Some(Self { code, last: line.get(3) != Some(&b'-'), text: line.get(4..).unwrap_or_default() })
    }
}

/// Turns a server's byte stream into replies, joining continuation lines.
#[derive(Debug)]
pub struct ReplyParser {
    lines: LineBuffer,
    partial: Option<Reply>,
}

/// What the parser found in a line that is not a reply line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// The line does not start with three digits; it is returned as text.
    #[error("not a reply line (no three-digit code): {0:?}")]
    Malformed(String),
    /// The line is longer than the parser's limit: its length in bytes (so far).
    #[error("reply line over the length limit ({0} bytes)")]
    TooLong(usize),
}

impl ReplyParser {
    pub fn new(limit: usize) -> Self {
        Self { lines: LineBuffer::new(limit), partial: None }
    }

    pub fn extend(&mut self, bytes: &[u8]) {
        self.lines.extend(bytes);
    }

    /// Bytes received that are not part of a finished reply. A client checks this after the
    /// `220` to STARTTLS: anything here was injected before the handshake.
    pub fn pending(&self) -> usize {
        self.lines.pending() + usize::from(self.partial.is_some())
    }

    /// Takes every byte received that is not part of a finished reply, for a relay that stops
    /// reading replies here (to copy a TLS session after STARTTLS). The lines of an unfinished
    /// multi-line reply come back as `code-text\r\n`.
    pub fn take_rest(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(p) = self.partial.take() {
            for l in &p.lines {
                out.extend_from_slice(format!("{}-{l}\r\n", p.code).as_bytes());
            }
        }
        out.extend(self.lines.take_rest());
        out
    }

    pub fn next_reply(&mut self) -> Option<Result<Reply, ReplyError>> {
        loop {
            let line = match self.lines.next_line()? {
                Line::Complete(l) => l,
                Line::TooLong { len } => return Some(Err(ReplyError::TooLong(len))),
            };
            let Some(r) = ReplyLine::parse(&line) else {
                return Some(Err(ReplyError::Malformed(String::from_utf8_lossy(&line).into_owned())));
            };
            let reply = self.partial.get_or_insert_with(|| Reply { code: r.code, lines: Vec::new() });
            reply.lines.push(String::from_utf8_lossy(r.text).into_owned());
            if r.last {
                return self.partial.take().map(Ok);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiline_round_trip() {
        let r = Reply::multi(250, vec!["mx.example".into(), "PIPELINING".into(), "STARTTLS".into()]);
        let mut p = ReplyParser::new(512);
        let bytes = r.to_bytes();
        p.extend(&bytes[..7]);
        assert!(p.next_reply().is_none());
        p.extend(&bytes[7..]);
        assert_eq!(p.next_reply(), Some(Ok(r)));
        assert_eq!(p.pending(), 0);
    }

    #[test]
    fn the_rest_after_a_reply_is_handed_back() {
        let mut p = ReplyParser::new(512);
        p.extend(b"220 2.0.0 Ready\r\n250-injected\r\n250 AU");
        assert_eq!(p.next_reply(), Some(Ok(Reply::new(220, "2.0.0 Ready"))));
        assert_eq!(p.next_reply(), None);
        assert!(p.pending() > 0);
        assert_eq!(p.take_rest(), b"250-injected\r\n250 AU");
        assert_eq!((p.pending(), p.next_reply()), (0, None));
        p.extend(b"\x16\x03\x01");
        assert_eq!(p.take_rest(), b"\x16\x03\x01");
    }

    #[test]
    fn reply_lines() {
        let line = |code, last, text: &'static [u8]| Some(ReplyLine { code, last, text });
        assert_eq!(ReplyLine::parse(b"250 ok"), line(250, true, b"ok"));
        assert_eq!(ReplyLine::parse(b"250-mx.example"), line(250, false, b"mx.example"));
        assert_eq!(ReplyLine::parse(b"354"), line(354, true, b""));
        for not in [&b"099 x"[..], b"600 x", b"+12 x", b" 25 x", b"25", b"2x0 x", b"\xff50 x"] {
            assert_eq!(ReplyLine::parse(not), None, "{:?}", String::from_utf8_lossy(not));
        }
    }

    #[test]
    fn malformed_and_bare_code() {
        let mut p = ReplyParser::new(512);
        p.extend(b"hello\r\n354\r\n");
        assert_eq!(p.next_reply(), Some(Err(ReplyError::Malformed("hello".into()))));
        assert_eq!(p.next_reply(), Some(Ok(Reply { code: 354, lines: vec!["".into()] })));
    }
}
