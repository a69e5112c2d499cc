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
#[derive(Debug)]
pub struct LineBuffer {
    buf: Vec<u8>,
    limit: usize,
    /// Bytes of an over-long line already thrown away while waiting for its end.
    discarding: Option<usize>,
}

impl LineBuffer {
    pub fn new(limit: usize) -> Self {
        Self { buf: Vec::new(), limit, discarding: None }
    }

    /// Appends bytes read from the peer.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held that do not yet form a line. After STARTTLS this must be zero, or the client
    /// pipelined plaintext past the upgrade (CVE-2011-0411 class).
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Takes everything buffered, line or not (used when switching to DATA or BDAT mode).
    pub fn take_rest(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    /// The next line, if a complete one (or an over-long one) is buffered.
    pub fn next_line(&mut self) -> Option<Line> {
        match self.buf.iter().position(|&b| b == b'\n') {
            Some(end) => {
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                line.pop();
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
            None if self.buf.len() > self.limit => {
                let skipped = self.buf.len();
                self.buf.clear();
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
