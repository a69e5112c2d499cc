//! Splitting an SMTP byte stream into CRLF-terminated lines.

/// One line taken from a [`LineBuffer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A complete line without its terminator. A bare LF is accepted as a terminator too: real
    /// clients send it, and Postfix and Zeek both accept it.
    Complete(Vec<u8>),
    /// The line grew past the limit before a terminator came; `len` bytes were discarded and the
    /// buffer resynchronises on the next line end.
    TooLong { len: usize },
}

/// Accumulates bytes and hands out lines, holding at most `limit` bytes of an unfinished line.
///
/// Lines and content are taken from the front by moving a start offset, not by shifting the
/// rest down: a flight of thousands of pipelined commands costs its length once, not once per
/// command. The taken bytes are dropped when the next bytes come in.
#[derive(Debug)]
pub struct LineBuffer {
    buf: Vec<u8>,
    /// Where the bytes not yet taken begin in `buf`.
    start: usize,
    limit: usize,
    /// Bytes of an over-long line already thrown away while waiting for its end.
    discarding: Option<usize>,
}

impl LineBuffer {
    pub fn new(limit: usize) -> Self {
        Self { buf: Vec::new(), start: 0, limit, discarding: None }
    }

    /// Appends bytes read from the peer.
    pub fn extend(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start.min(self.buf.len()));
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held that do not yet form a line. After STARTTLS this must be zero, or the client
    /// pipelined plaintext past the upgrade (CVE-2011-0411 class).
    pub fn pending(&self) -> usize {
        self.buf.len().saturating_sub(self.start)
    }

    /// Takes everything buffered, line or not (used when switching to DATA or BDAT mode).
    pub fn take_rest(&mut self) -> Vec<u8> {
        let rest = self.rest().to_vec();
        self.buf.clear();
        self.start = 0;
        rest
    }

    /// Everything buffered, line or not, left in place (DATA or BDAT content, read where it
    /// lies and then [`consume`](Self::consume)d).
    pub fn rest(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or_default()
    }

    /// Drops the first `n` bytes buffered (all of them if fewer).
    pub fn consume(&mut self, n: usize) {
        self.start += n.min(self.pending());
    }

    /// The next line, if a complete one (or an over-long one) is buffered.
    pub fn next_line(&mut self) -> Option<Line> {
        let rest = self.rest();
        match rest.iter().position(|&b| b == b'\n') {
            Some(end) => {
                let mut line = rest.get(..end).unwrap_or_default().to_vec();
                self.start += end + 1;
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if let Some(skipped) = self.discarding.take() {
                    return Some(Line::TooLong { len: skipped + line.len() });
                }
                if line.len() > self.limit {
                    return Some(Line::TooLong { len: line.len() });
                }
                Some(Line::Complete(line))
            }
            None if rest.len() > self.limit => {
                let skipped = rest.len();
                self.buf.clear();
                self.start = 0;
                *self.discarding.get_or_insert(0) += skipped;
                None
            }
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_crlf_and_bare_lf() {
        let mut b = LineBuffer::new(100);
        b.extend(b"EHLO a\r\nNOOP\nQU");
        assert_eq!(b.next_line(), Some(Line::Complete(b"EHLO a".to_vec())));
        assert_eq!(b.next_line(), Some(Line::Complete(b"NOOP".to_vec())));
        assert_eq!(b.next_line(), None);
        assert_eq!(b.pending(), 2);
        b.extend(b"IT\r\n");
        assert_eq!(b.next_line(), Some(Line::Complete(b"QUIT".to_vec())));
    }

    #[test]
    fn over_long_line_is_reported_once_and_resyncs() {
        let mut b = LineBuffer::new(8);
        b.extend(&[b'x'; 20]);
        assert_eq!(b.next_line(), None);
        assert_eq!(b.pending(), 0, "memory stays bounded while discarding");
        b.extend(b"yy\r\nNOOP\r\n");
        assert_eq!(b.next_line(), Some(Line::TooLong { len: 22 }));
        assert_eq!(b.next_line(), Some(Line::Complete(b"NOOP".to_vec())));
    }
}
