//! The DATA body as the tap reads it: [`proto::DataReceiver`]'s rules (RFC 5321 §4.5.2: a line
//! `.` ends the body, a leading dot is removed, `.LF` is accepted too), line at a time instead of
//! byte at a time. The relay's receiver reads from sockets a few kilobytes at a time; the tap
//! unstuffs every plaintext message of a capture, so it copies all the lines up to the next one
//! that starts with a dot (found with `memmem`) at once, and looks at bytes only there. `tests::same_as_proto` checks both agree on every
//! split of many inputs.

use proto::DataStatus;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line.
    LineStart,
    /// Inside a line.
    Mid,
    /// A line began with a dot.
    Dot,
    /// `CRLF .` then CR.
    DotCr,
}

/// Receives a DATA body, fed in pieces: unstuffs it into `message` (up to `limit` bytes, the rest
/// counted), and finds the terminator.
#[derive(Debug)]
pub struct Unstuffer {
    /// The unstuffed message, CRLF line ends kept, terminator removed.
    pub message: Vec<u8>,
    /// Unstuffed bytes, counted even past `limit`.
    pub message_bytes: u64,
    limit: usize,
    state: State,
}

impl Unstuffer {
    pub fn new(limit: usize) -> Self {
        Self { message: Vec::new(), message_bytes: 0, limit, state: State::LineStart }
    }

    /// True when the body exceeded `limit` and `message` holds only its first `limit` bytes.
    pub fn truncated(&self) -> bool {
        self.message_bytes > self.message.len() as u64
    }

    fn push(&mut self, bytes: &[u8]) {
        self.message_bytes += bytes.len() as u64;
        let room = self.limit.saturating_sub(self.message.len());
        // The first `room` bytes, or all of them when they fit.
        self.message.extend_from_slice(bytes.get(..room).unwrap_or(bytes));
    }

    pub fn feed(&mut self, input: &[u8]) -> DataStatus {
        // `rest` is what is left of `input`; its first byte is `b`.
        let mut rest = input;
        while let Some((&b, after)) = rest.split_first() {
            match self.state {
                State::LineStart if b == b'.' => {
                    self.state = State::Dot;
                    rest = after;
                }
                State::Dot | State::DotCr if b == b'\n' => {
                    return DataStatus::Done { consumed: input.len() - after.len() };
                }
                State::Dot if b == b'\r' => {
                    self.state = State::DotCr;
                    rest = after;
                }
                State::Dot | State::DotCr => {
                    // A stuffed dot (dropped); after `.CR`, the CR was content.
                    if self.state == State::DotCr {
                        self.push(b"\r");
                    }
                    self.state = State::Mid;
                    // `b` is read as any byte inside a line, below.
                }
                State::LineStart | State::Mid => {
                    // Copy through the next line that starts with a dot (its dot excluded), or to
                    // the end of the input: lines without a leading dot need no look at all.
                    // The line end stays with the line; the dot after it is `dot_on`'s first byte.
                    match memchr::memmem::find(rest, b"\n.").and_then(|n| rest.split_at_checked(n + 1)) {
                        Some((line, dot_on)) => {
                            self.push(line);
                            self.state = State::Dot;
                            rest = dot_on.get(1..).unwrap_or_default();
                        }
                        None => {
                            self.push(rest);
                            self.state = if input.last() == Some(&b'\n') { State::LineStart } else { State::Mid };
                            rest = &[];
                        }
                    }
                }
            }
        }
        DataStatus::Continue
    }
}

/// The DATA body at the start of `input` when unstuffing would change nothing: no line before
/// its terminator starts with a dot, and the terminator (a line `.`, CRLF or LF ended) is in
/// `input`. Gives the body's length (its last line end included) and the bytes up to the end of
/// the terminator; `None` when [`Unstuffer`] is needed (a stuffed dot, an empty body, or no end in
/// `input`). Lets the tap hash most messages where they lie in the stream, without a copy.
pub fn plain_body(input: &[u8]) -> Option<(usize, usize)> {
    if input.first() == Some(&b'.') {
        return None;
    }
    let i = memchr::memmem::find(input, b"\n.")?;
    match input.get(i + 2..i + 4) {
        Some([b'\r', b'\n']) => Some((i + 1, i + 4)),
        Some([b'\n', _]) => Some((i + 1, i + 3)),
        None if input.get(i + 2) == Some(&b'\n') => Some((i + 1, i + 3)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::DataReceiver;

    /// Where [`plain_body`] answers, it answers what the unstuffing receiver gives.
    fn compare_plain(wire: &[u8]) {
        let Some((len, consumed)) = plain_body(wire) else { return };
        let mut rx = Unstuffer::new(usize::MAX);
        assert_eq!(rx.feed(wire), DataStatus::Done { consumed }, "{:?}", String::from_utf8_lossy(wire));
        assert_eq!(rx.message, &wire[..len], "{:?}", String::from_utf8_lossy(wire));
    }

    #[test]
    fn plain_bodies_are_what_unstuffing_gives() {
        let answered: &[&[u8]] = &[b"a\r\n.\r\n", b"a\n.\n", b"a\r\nb\r\n.\r\nQUIT\r\n", b"a\n.\nrest", b"x\r\n.\n"];
        for wire in answered {
            assert!(plain_body(wire).is_some(), "{:?}", String::from_utf8_lossy(wire));
            compare_plain(wire);
        }
        let declined: &[&[u8]] =
            &[b".\r\n", b"a\r\n..b\r\n.\r\n", b"a\r\n.\rx\r\n.\r\n", b"a\r\n.", b"a\r\n.\r", b"no end\r\n"];
        for wire in declined {
            assert_eq!(plain_body(wire), None, "{:?}", String::from_utf8_lossy(wire));
        }
        let mut x = 0x0bad_cafe_f00d_1234u64;
        let mut answers = 0;
        for len in 0..3000usize {
            let wire: Vec<u8> = (0..len % 300)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    [b'.', b'\r', b'\n', b'a', b'b', b'\n', b'c'][(x % 7) as usize]
                })
                .collect();
            answers += usize::from(plain_body(&wire).is_some());
            compare_plain(&wire);
        }
        assert!(answers > 300, "the random bodies exercise the answered case ({answers})");
    }

    /// Feeds `wire` to both receivers in pieces of `piece` bytes and compares every outcome.
    fn compare(wire: &[u8], piece: usize, limit: usize) {
        let mut a = DataReceiver::new(limit);
        let mut b = Unstuffer::new(limit);
        for chunk in wire.chunks(piece.max(1)) {
            let (ra, rb) = (a.feed(chunk), b.feed(chunk));
            assert_eq!(ra, rb, "{:?} in pieces of {piece}", String::from_utf8_lossy(wire));
            if matches!(ra, DataStatus::Done { .. }) {
                break;
            }
        }
        assert_eq!(a.message, b.message, "{:?} in pieces of {piece}", String::from_utf8_lossy(wire));
        assert_eq!(a.message_bytes, b.message_bytes);
        assert_eq!(a.truncated(), b.truncated());
    }

    #[test]
    fn same_as_proto() {
        let cases: &[&[u8]] = &[
            b"Subject: x\r\n\r\n.leading dot\r\n..two\r\n.\r\nQUIT\r\n",
            b".\r\n",
            b".\n",
            b"a\n.\nb",
            b".\r.\r\n.\rx\r\n.\r\n",
            b"line\r\n.\r\r\n.\r\n",
            b"no terminator\r\n..",
            b"\r\n\r\n.x\n..\n.\r",
            b"",
        ];
        for wire in cases {
            for piece in 1..=wire.len().max(1) {
                compare(wire, piece, 1 << 20);
                compare(wire, piece, 5);
            }
        }
        // Pseudo-random bodies over a small alphabet that makes every state likely.
        let mut x = 0x1234_5678_9abc_def0u64;
        for len in 0..400usize {
            let wire: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    [b'.', b'\r', b'\n', b'a', b'.', b'\n'][(x % 6) as usize]
                })
                .collect();
            for piece in [1, 2, 3, 7, 64, 1000] {
                compare(&wire, piece, 1 << 20);
                compare(&wire, piece, 17);
            }
        }
    }
}
