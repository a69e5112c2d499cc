//! Deterministic, realistic message bodies of an exact size.

/// An RFC 5322 message of exactly `size` bytes: a header block like a mail client writes, then
/// base64-like lines of 76 characters (an attachment), every 40th line a text line starting with
/// a dot so DATA dot-stuffing has something to do. CRLF line ends throughout; ends with CRLF.
///
/// `size` must be at least 512 (the header block plus two body lines).
pub fn message(size: usize, seq: u64) -> Vec<u8> {
    assert!(size >= 512, "message size {size} is below the 512-byte minimum");
    let mut out = format!(
        "From: Alice Sender <alice@sender.example>\r\n\
         To: Bob Receiver <bob@bench.example>\r\n\
         Subject: smtplab bench message {seq}\r\n\
         Date: Sun, 29 Nov 2026 10:00:00 +0000\r\n\
         Message-ID: <bench-{seq}-{size}@sender.example>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: application/octet-stream\r\n\
         Content-Transfer-Encoding: base64\r\n\
         \r\n"
    )
    .into_bytes();
    let mut rng = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut line_no = 0u64;
    let mut push_line = |out: &mut Vec<u8>, chars: usize| {
        const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        line_no += 1;
        let start = out.len();
        for _ in 0..chars {
            // xorshift64: cheap, deterministic filler.
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            out.push(B64[(rng & 63) as usize]);
        }
        if line_no.is_multiple_of(40) && chars >= 2 {
            out[start] = b'.';
        }
        out.extend_from_slice(b"\r\n");
    };
    // Full lines while at least two lines' worth remains, then two lines that end exactly at
    // `size` (each at least 39 bytes, so never a lone "." line).
    while size - out.len() >= 156 {
        push_line(&mut out, 76);
    }
    let rest = size - out.len();
    let first = rest / 2;
    push_line(&mut out, first - 2);
    push_line(&mut out, rest - first - 2);
    debug_assert_eq!(out.len(), size);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_sizes_and_clean_round_trip() {
        for size in [512, 1024, 1025, 10 << 10, 100 << 10, 1 << 20] {
            let m = message(size, 7);
            assert_eq!(m.len(), size);
            assert!(m.ends_with(b"\r\n"));
            let wire = proto::dot_stuff(&m);
            let mut rx = proto::DataReceiver::new(usize::MAX);
            assert_eq!(rx.feed(&wire), proto::DataStatus::Done { consumed: wire.len() });
            assert_eq!(rx.message, m);
        }
    }
}
