//! Strict line endings, as Postfix's `smtpd_forbid_bare_newline = reject` with
//! `smtpd_forbid_bare_newline_reject_code = 521`: a command line that ends in a bare LF, or holds
//! a CR not followed by LF, is answered at once with `521 5.5.2 <host> Error: bare <LF> received`
//! (or `<CR>`) and the session ends. A message with one is read on to the standard
//! `<CRLF>.<CRLF>` (nothing else ends DATA), then refused whole with the same 521 and the session
//! ends, as Postfix 3.7.11 does (`bare_lf_is_refused_as_postfix_refuses_it` checks it against
//! Postfix). So a message smuggled behind `<LF>.<LF>` or `<CR>.<CR>` (SMTP smuggling) is only
//! content of a refused message, and never reaches the queue.
//!
//! Postfix checks bare LF only; this relay refuses bare CR as well, which Postfix passes on and
//! some next hops read as a line end. BDAT content is not checked: its length, not a line end,
//! delimits it, so nothing can be smuggled there.
//!
//! `proto`'s line buffer and DATA receiver stay lenient (the tap must read what broken clients
//! send); [`crate::server::ServerSession`] checks the same bytes with this before it acts on them.

use crate::Line;
use crate::Reply;

/// The offending character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bare {
    Lf,
    Cr,
}

impl Bare {
    /// The reply that ends the session, in Postfix's words.
    pub fn reply(self, hostname: &str) -> Reply {
        let what = match self {
            Bare::Lf => "<LF>",
            Bare::Cr => "<CR>",
        };
        Reply::new(521, format!("5.5.2 {hostname} Error: bare {what} received"))
    }

    /// For the session record.
    pub fn describe(self) -> &'static str {
        match self {
            Bare::Lf => "bare <LF> received",
            Bare::Cr => "bare <CR> received",
        }
    }
}

/// Scans a byte stream (DATA content) read in pieces of any size.
#[derive(Debug, Default)]
pub struct Scanner {
    /// The last byte seen was a CR, whose LF has not come yet.
    after_cr: bool,
}

impl Scanner {
    /// The index in `input` of the first byte that makes a bare LF or CR, and which one. For a
    /// bare CR it is the byte after the CR (the CR itself may be the last byte of an earlier
    /// piece). Everything before the index is well formed.
    pub fn first_bare(&mut self, input: &[u8]) -> Option<(usize, Bare)> {
        for (i, &b) in input.iter().enumerate() {
            if self.after_cr {
                if b != b'\n' {
                    return Some((i, Bare::Cr));
                }
                self.after_cr = false;
                continue;
            }
            match b {
                b'\r' => self.after_cr = true,
                b'\n' => return Some((i, Bare::Lf)),
                _ => {}
            }
        }
        None
    }
}

/// Looks for the standard end of DATA, `<CRLF>.<CRLF>`, in content read in pieces of any size,
/// holding only the last four bytes (content refused for a bare line end is not kept).
#[derive(Debug)]
pub struct EndOfData {
    tail: Vec<u8>,
}

impl Default for EndOfData {
    /// The DATA command's own CRLF comes first: `.<CRLF>` right after it ends an empty body.
    fn default() -> Self {
        Self { tail: b"\r\n".to_vec() }
    }
}

impl EndOfData {
    /// Whether `<CRLF>.<CRLF>` has been seen, up to and including `input`.
    pub fn found(&mut self, input: &[u8]) -> bool {
        const END: &[u8] = b"\r\n.\r\n";
        let mut window = std::mem::take(&mut self.tail);
        window.extend_from_slice(input);
        if window.windows(END.len()).any(|w| w == END) {
            return true;
        }
        let keep = window.len().saturating_sub(END.len() - 1);
        self.tail = window.split_off(keep);
        false
    }
}

/// Checks one command line from [`crate::LineBuffer`], given how many buffered bytes it used
/// (the line buffer drops one CR before the LF, and accepts a bare LF as the end).
pub fn check_command_line(line: &Line, bytes_used: usize) -> Option<Bare> {
    let Line::Complete(text) = line else { return None };
    if text.contains(&b'\r') {
        return Some(Bare::Cr);
    }
    // `text` CR LF used len + 2 bytes; `text` LF, len + 1.
    (bytes_used < text.len() + 2).then_some(Bare::Lf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LineBuffer;

    fn lines(wire: &[u8]) -> Vec<Option<Bare>> {
        let mut b = LineBuffer::new(100);
        b.extend(wire);
        let mut out = Vec::new();
        loop {
            let before = b.pending();
            let Some(line) = b.next_line() else { break };
            out.push(check_command_line(&line, before - b.pending()));
        }
        out
    }

    #[test]
    fn command_lines() {
        assert_eq!(
            lines(b"EHLO a\r\nNOOP\nRSET\r\r\nNO\rOP\r\n\r\n"),
            vec![None, Some(Bare::Lf), Some(Bare::Cr), Some(Bare::Cr), None]
        );
    }

    #[test]
    fn end_of_data_in_any_pieces() {
        let wire = b"a\nb\r\n.\nc\r.\r\r\n..\r\nd\r\n.\r\nNEXT";
        let end = wire.windows(5).position(|w| w == b"\r\n.\r\n").expect("an end") + 5;
        for piece in 1..=wire.len() {
            let mut e = EndOfData::default();
            let mut seen = 0;
            for chunk in wire.chunks(piece) {
                seen += chunk.len();
                if e.found(chunk) {
                    break;
                }
            }
            assert!(seen >= end && seen < end + piece, "pieces of {piece}: found after {seen} bytes");
        }
        assert!(EndOfData::default().found(b".\r\n"), "an empty body ends at once");
        assert!(!EndOfData::default().found(b"x.\r\n"));
    }

    #[test]
    fn data_in_any_pieces() {
        type Case = (&'static [u8], Option<(usize, Bare)>);
        let cases: &[Case] = &[
            (b"a\r\nb\r\n.\r\n", None),
            (b"a\r\n.\n", Some((4, Bare::Lf))),
            (b"a\n.\n", Some((1, Bare::Lf))),
            (b"a\r.\r", Some((2, Bare::Cr))),
            (b"a\r\n.\r", None),
        ];
        for (wire, want) in cases {
            for piece in 1..=wire.len() {
                let mut s = Scanner::default();
                let mut found = None;
                for (n, chunk) in wire.chunks(piece).enumerate() {
                    if let Some((i, bare)) = s.first_bare(chunk) {
                        found = Some((n * piece + i, bare));
                        break;
                    }
                }
                assert_eq!(found, *want, "{:?} in pieces of {piece}", String::from_utf8_lossy(wire));
            }
        }
    }
}
