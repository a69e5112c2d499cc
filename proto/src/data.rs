//! The DATA body (RFC 5321 §4.5.2): dot-stuffing on the way out, and on the way in a receiver
//! that finds the `CRLF.CRLF` terminator across arbitrary read boundaries and removes the stuffing.

/// Dot-stuffs a message and appends the terminator, ready to send after a 354. A message that
/// does not end in CRLF gets one, as RFC 5321 requires before the final dot.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 5);
    let mut at_line_start = true;
    for &b in message {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !message.is_empty() && !message.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Progress of a [`DataReceiver`] after a call to `feed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataStatus {
    /// More body bytes are expected.
    Continue,
    /// The terminator was seen; `consumed` bytes of the last input belonged to the body
    /// (terminator included). The rest is the next command.
    Done { consumed: usize },
}

/// Receives a DATA body: unstuffs it into `message`, stops at the terminator, and stops
/// storing (while still counting) past `limit` bytes, so a peer cannot exhaust memory.
#[derive(Debug)]
pub struct DataReceiver {
    /// The unstuffed message, CRLF line ends kept, terminator removed.
    pub message: Vec<u8>,
    /// Wire bytes of the body seen so far, terminator excluded.
    pub wire_bytes: u64,
    /// Unstuffed bytes, counted even past `limit`.
    pub message_bytes: u64,
    limit: usize,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line.
    LineStart,
    /// Inside a line.
    Mid,
    /// Inside a line, after a CR.
    Cr,
    /// A line began with a dot.
    Dot,
    /// `CRLF .` then CR.
    DotCr,
}

impl DataReceiver {
    pub fn new(limit: usize) -> Self {
        Self { message: Vec::new(), wire_bytes: 0, message_bytes: 0, limit, state: State::LineStart }
    }

    /// True when the body exceeded `limit` and `message` holds only its first `limit` bytes.
    pub fn truncated(&self) -> bool {
        self.message_bytes > self.message.len() as u64
    }

    fn push(&mut self, b: u8) {
        self.message_bytes += 1;
        if self.message.len() < self.limit {
            self.message.push(b);
        }
    }

    pub fn feed(&mut self, input: &[u8]) -> DataStatus {
        for (i, &b) in input.iter().enumerate() {
            self.state = match (self.state, b) {
                (State::LineStart, b'.') => State::Dot,
                (State::Dot, b'\r') => State::DotCr,
                (State::Dot, b'\n') | (State::DotCr, b'\n') => {
                    // `.CRLF` (or a lenient `.LF`) at a line start ends the body. The wire
                    // bytes exclude the terminator line: the CRLF before it belongs to the body.
                    return DataStatus::Done { consumed: i + 1 };
                }
                (State::Dot, other) => {
                    // A stuffed dot: drop it, keep the byte that follows.
                    self.wire_bytes += 1;
                    self.after_dot(other)
                }
                (State::DotCr, other) => {
                    // `.\r` followed by something else: the dot was stuffing for `\r`.
                    self.wire_bytes += 2;
                    self.push(b'\r');
                    self.after_dot(other)
                }
                (_, b'\r') => {
                    self.wire_bytes += 1;
                    self.push(b'\r');
                    State::Cr
                }
                (_, b'\n') => {
                    self.wire_bytes += 1;
                    self.push(b'\n');
                    State::LineStart
                }
                (_, other) => {
                    self.wire_bytes += 1;
                    self.push(other);
                    State::Mid
                }
            };
        }
        DataStatus::Continue
    }

    fn after_dot(&mut self, b: u8) -> State {
        self.wire_bytes += 1;
        self.push(b);
        match b {
            b'\r' => State::Cr,
            b'\n' => State::LineStart,
            _ => State::Mid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receive_in_pieces(wire: &[u8], piece: usize) -> (Vec<u8>, usize) {
        let mut r = DataReceiver::new(1 << 20);
        let mut offset = 0;
        for chunk in wire.chunks(piece) {
            if let DataStatus::Done { consumed } = r.feed(chunk) {
                return (r.message, offset + consumed);
            }
            offset += chunk.len();
        }
        panic!("terminator not found");
    }

    #[test]
    fn stuff_then_unstuff_is_identity_at_every_split() {
        let msg = b"Subject: x\r\n\r\n.leading dot\r\n..two\r\n.\r\nnot end\r\nlast\r\n";
        let mut wire = dot_stuff(msg);
        wire.extend_from_slice(b"QUIT\r\n");
        for piece in 1..wire.len() {
            let (got, consumed) = receive_in_pieces(&wire, piece);
            assert_eq!(got, msg, "piece size {piece}");
            assert_eq!(&wire[consumed..], b"QUIT\r\n");
        }
    }

    #[test]
    fn empty_message_and_missing_final_crlf() {
        assert_eq!(dot_stuff(b""), b".\r\n");
        assert_eq!(dot_stuff(b"abc"), b"abc\r\n.\r\n");
        let (got, _) = receive_in_pieces(b".\r\n", 1);
        assert!(got.is_empty());
    }

    #[test]
    fn limit_keeps_counting() {
        let mut r = DataReceiver::new(4);
        assert_eq!(r.feed(b"abcdefgh\r\n.\r\n"), DataStatus::Done { consumed: 13 });
        assert_eq!(r.message, b"abcd");
        assert_eq!(r.message_bytes, 10);
        assert!(r.truncated());
    }
}
