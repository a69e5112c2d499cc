//! Fast equivalents of mail-parser 0.11's body scanners (`MessageStream::mime_part` and
//! `decode_base64_mime`), for [`crate::mime_parts`]: same part end, same bytes, same position
//! after the boundary, same failures. mail-parser walks them a byte at a time through a peekable
//! iterator and builds a `Vec`; here the end is found with `memmem` and base64 is decoded in
//! blocks by `base64-simd` (AVX2 or SSE4.1 as the CPU has them; three to four times the `base64`
//! crate's speed, which was half again SHA-256's cost), handing the bytes to a sink (a hasher)
//! instead of a `Vec`.
//!
//! Whatever the fast decoder does not take as is (blanks inside a line, a lone `-`, `=` inside a
//! line, any other byte) goes to mail-parser's own decoder, so the odd cases are exact by
//! construction.

use base64_simd::{Out, STANDARD_NO_PAD};
use mail_parser::parsers::MessageStream;
use memchr::memmem;

/// Characters gathered before a decode call: large enough that the call overhead vanishes,
/// small enough to stay in L2.
const BLOCK: usize = 64 * 1024;

/// The body of a part without transfer encoding: where it ends and how much the stream moves
/// past it (to just after the boundary), as mail-parser's `mime_part` has them. `None` when the
/// boundary never comes (mail-parser's `usize::MAX`, its "encoding problem"). With no boundary
/// (a single-part message) the body runs to the end.
pub(crate) fn plain_part(rest: &[u8], boundary: &[u8]) -> Option<(usize, usize)> {
    if boundary.is_empty() {
        return Some((rest.len(), rest.len()));
    }
    let at = find_delimiter(rest, boundary)?;
    // mail-parser stops at the first "--" + boundary anywhere (not only at a line start). The
    // body ends before it, or before the line break ahead of it when it starts a line.
    let end = match at.checked_sub(1).and_then(|i| rest.get(i)) {
        Some(b'\n') if at >= 2 && rest.get(at - 2) == Some(&b'\r') => at - 2,
        Some(b'\n') => at - 1,
        _ => at,
    };
    Some((end, at + 2 + boundary.len()))
}

/// Where "--" + `boundary` first occurs in `rest`.
fn find_delimiter(rest: &[u8], boundary: &[u8]) -> Option<usize> {
    let mut needle = Vec::with_capacity(boundary.len() + 2);
    needle.extend_from_slice(b"--");
    needle.extend_from_slice(boundary);
    memmem::find(rest, &needle)
}

/// What [`base64_part`] made of a base64 body.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Base64 {
    /// Decoded: the stream moves this far (past the boundary, or to the end without one).
    Done(usize),
    /// mail-parser's decoder fails on it (`usize::MAX`): the caller recovers as it does.
    Failed,
}

/// Decodes a base64 body as mail-parser's `decode_base64_mime` does, handing the bytes to
/// `sink` in order. `reset` is called before mail-parser's decoder takes over from a fast
/// attempt that found something it does not handle, so the sink starts again from nothing.
pub(crate) fn base64_part(rest: &[u8], boundary: &[u8], sink: &mut dyn Sink) -> Base64 {
    if let Some(done) = fast_base64(rest, boundary, sink) {
        return done;
    }
    sink.reset();
    let mut stream = MessageStream::new(rest);
    let (end, bytes) = stream.decode_base64_mime(boundary);
    if end == usize::MAX {
        return Base64::Failed;
    }
    sink.bytes(&bytes);
    Base64::Done(stream.offset())
}

/// Where decoded bytes go.
pub(crate) trait Sink {
    fn bytes(&mut self, decoded: &[u8]);
    fn reset(&mut self);
}

/// [`base64_part`] for bodies laid out as encoders write them: lines of alphabet characters,
/// each ended by LF or CRLF, `=` only at the end of a line. `None` for anything else (nothing is
/// lost: the caller starts again with mail-parser's decoder).
///
/// mail-parser's decoder ends at the first "--" of the body: the boundary must follow it, else
/// the part fails; without a boundary any "--" fails and the end of the data ends the part. One
/// pass finds both the line breaks and that "--".
fn fast_base64(rest: &[u8], boundary: &[u8], sink: &mut dyn Sink) -> Option<Base64> {
    let mut d = Decoder { chars: Vec::with_capacity(BLOCK.min(rest.len()) + 128), out: Vec::new() };
    let mut start = 0;
    for at in memchr::memchr2_iter(b'\n', b'-', rest) {
        if rest.get(at) == Some(&b'\n') {
            d.line(rest.get(start..at)?, sink)?;
            start = at + 1;
        } else if rest.get(at + 1) == Some(&b'-') {
            if boundary.is_empty() || !rest.get(at + 2..)?.starts_with(boundary) {
                return Some(Base64::Failed);
            }
            d.line(rest.get(start..at)?, sink)?;
            d.finish(sink)?;
            return Some(Base64::Done(at + 2 + boundary.len()));
        }
    }
    if !boundary.is_empty() {
        return Some(Base64::Failed);
    }
    d.line(rest.get(start..)?, sink)?;
    d.finish(sink)?;
    Some(Base64::Done(rest.len()))
}

/// The fast decoder's state, with mail-parser's semantics: groups run on across line breaks; an
/// `=` flushes the pending group (one or two characters give one byte, three give two: for one
/// character that byte is its six bits shifted left by two, which a strict decoder would
/// reject) and a new group starts after it; a group still pending at the end is dropped.
/// Characters are gathered into blocks for the SIMD decoder.
struct Decoder {
    chars: Vec<u8>,
    out: Vec<u8>,
}

impl Decoder {
    /// One line, without its LF. `None` if it holds anything but alphabet characters, then
    /// `=`s, then a CR.
    fn line(&mut self, line: &[u8], sink: &mut dyn Sink) -> Option<()> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let body_len = line.iter().rposition(|&b| b != b'=').map_or(0, |i| i + 1);
        let (body, pads) = line.split_at(body_len);
        self.chars.extend_from_slice(body);
        if !pads.is_empty() {
            decode_groups(&mut self.chars, &mut self.out, sink)?;
            let tail = flush_partial(&self.chars)?;
            sink.bytes(&tail);
            self.chars.clear();
        } else if self.chars.len() >= BLOCK {
            decode_groups(&mut self.chars, &mut self.out, sink)?;
        }
        Some(())
    }

    fn finish(mut self, sink: &mut dyn Sink) -> Option<()> {
        decode_groups(&mut self.chars, &mut self.out, sink)?;
        // The dropped partial group must still be valid characters, or mail-parser fails on it.
        self.chars.iter().all(|&c| sextet(c).is_some()).then_some(())
    }
}

/// Decodes the whole groups of `chars` to `sink`, leaving the 0 to 3 characters after them.
/// The decoder sees whole groups only and takes no padding: any `=`, like any byte outside the
/// standard alphabet, is an error, which sends the part to mail-parser's decoder.
fn decode_groups(chars: &mut Vec<u8>, out: &mut Vec<u8>, sink: &mut dyn Sink) -> Option<()> {
    let whole = chars.len() - chars.len() % 4;
    if whole == 0 {
        return Some(());
    }
    out.resize(whole / 4 * 3, 0);
    let decoded = STANDARD_NO_PAD.decode(chars.get(..whole)?, Out::from_slice(out)).ok()?;
    sink.bytes(decoded);
    chars.drain(..whole);
    Some(())
}

/// The bytes mail-parser takes from a partial group (0 to 3 characters) when it meets `=`.
fn flush_partial(chars: &[u8]) -> Option<Vec<u8>> {
    let s: Vec<u8> = chars.iter().map(|&c| sextet(c)).collect::<Option<_>>()?;
    Some(match s.as_slice() {
        [] => Vec::new(),
        [a] => vec![a << 2],
        [a, b] => vec![(a << 2) | (b >> 4)],
        [a, b, c] => vec![(a << 2) | (b >> 4), (b << 4) | (c >> 2)],
        _ => return None,
    })
}

/// The value of a standard base64 character.
fn sextet(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect(Vec<u8>);

    impl Sink for Collect {
        fn bytes(&mut self, decoded: &[u8]) {
            self.0.extend_from_slice(decoded);
        }
        fn reset(&mut self) {
            self.0.clear();
        }
    }

    /// mail-parser's own result: (decoded bytes, position after) or None for a failure.
    fn reference(rest: &[u8], boundary: &[u8]) -> Option<(Vec<u8>, usize)> {
        let mut s = MessageStream::new(rest);
        let (end, bytes) = s.decode_base64_mime(boundary);
        (end != usize::MAX).then(|| (bytes.into_owned(), s.offset()))
    }

    fn ours(rest: &[u8], boundary: &[u8]) -> Option<(Vec<u8>, usize)> {
        let mut c = Collect::default();
        match base64_part(rest, boundary, &mut c) {
            Base64::Done(n) => Some((c.0, n)),
            Base64::Failed => None,
        }
    }

    #[test]
    fn base64_matches_mail_parser() {
        let cases: &[&[u8]] = &[
            b"aGVsbG8=\r\n--b--\r\n",
            b"aGVsbG8\r\n--b--\r\n",
            b"aGVsbG8gd29ybGQ=\r\n--b\r\n",
            b"aGVs\r\nbG8g\r\nd29y\r\nbGQ=\r\n--b--",
            b"aGV\r\nsbG8gd2\r\n9ybGQ\r\n--b--",
            b"QQ==QUJD\r\n--b",
            b"Q=\r\nQUJD\r\n--b",
            b"QUJ=QUJDRA==\r\n--b",
            b"QUJD RA==\r\n--b",
            b"QUJD\tRA==\r\n--b",
            b"QUJD-RA==\r\n--b",
            b"QUJD--RA==\r\n--b",
            b"QUJD!RA==\r\n--b",
            b"QUJD\r\r\nRA==\r\n--b",
            b"QUJDRA==\r\n--c",
            b"QUJDRA==\r\n",
            b"QUJDRA==",
            b"--b",
            b"",
            b"\r\n\r\n--b",
            b"====\r\n--b",
            b"QUJDRA==x\r\n--b",
            b"QUJDR!\r\n--b",
            b"QUJDR\xc3\xa9\r\n--b",
            b"QUJDRA==\n--b",
            b"QUJDRA==--b",
        ];
        for case in cases {
            for boundary in [&b"b"[..], b""] {
                assert_eq!(
                    ours(case, boundary),
                    reference(case, boundary),
                    "{:?} boundary {:?}",
                    String::from_utf8_lossy(case),
                    String::from_utf8_lossy(boundary)
                );
            }
        }
    }

    #[test]
    fn long_base64_matches_mail_parser() {
        // Several blocks' worth, with the padding on the last line and line lengths that are
        // not multiples of four, so groups straddle lines and blocks.
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let encoded = base64_simd::STANDARD.encode_to_string(&data);
        for width in [76, 64, 75, 1000] {
            let mut body = Vec::new();
            for line in encoded.as_bytes().chunks(width) {
                body.extend_from_slice(line);
                body.extend_from_slice(b"\r\n");
            }
            body.extend_from_slice(b"--bnd--\r\n");
            let got = ours(&body, b"bnd");
            assert_eq!(got, reference(&body, b"bnd"), "width {width}");
            assert_eq!(got.map(|g| g.0), Some(data.clone()));
        }
    }

    /// mail-parser's `mime_part`: (body, position after), None for a missing boundary.
    fn plain_reference(rest: &[u8], boundary: &[u8]) -> Option<(Vec<u8>, usize)> {
        let mut s = MessageStream::new(rest);
        let (end, bytes) = s.mime_part(boundary);
        (end != usize::MAX).then(|| (bytes.into_owned(), s.offset()))
    }

    #[test]
    fn plain_part_matches_mail_parser() {
        let cases: &[&[u8]] = &[
            b"hello\r\n--b\r\n",
            b"hello\n--b\n",
            b"hello--b\r\n",
            b"--b\r\n",
            b"\r\n--b\r\n",
            b"\n--b",
            b"\r--b",
            b"x\r\n\r\n--b--",
            b"---b",
            b"a---b",
            b"a\r\n---b",
            b"-b--b",
            b"no boundary here",
            b"",
            b"--",
            b"--bb",
            b"text\r\n--c\r\nmore\r\n--b",
        ];
        for case in cases {
            for boundary in [&b"b"[..], b"-b", b""] {
                let got = plain_part(case, boundary).map(|(end, n)| (case[..end].to_vec(), n));
                let want = plain_reference(case, boundary);
                // Without a boundary mail-parser's position runs one past the end (its iterator
                // counts the final `None`); `offset()` clamps it, so compare clamped.
                assert_eq!(got, want, "{:?} boundary {:?}", String::from_utf8_lossy(case), boundary);
            }
        }
    }
}
