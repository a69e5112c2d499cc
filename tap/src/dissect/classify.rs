//! Is a flow SMTP, and which side is the client: the first bytes of each direction.

use super::MID_STREAM_LOOK;
use super::flow::{Dir, Flow};

pub(super) fn starts_cmd(d: &[u8]) -> bool {
    let head = d.get(..5).unwrap_or(&[]);
    head.eq_ignore_ascii_case(b"EHLO ") || head.eq_ignore_ascii_case(b"HELO ")
}

/// Whether a flow's client and server bytes look like SMTP: a first line that is a command
/// (EHLO/HELO; a one-sided capture also MAIL FROM) or a reply. A flow the capture joined late may
/// start inside a line, so there the first lines after a line end in its first
/// [`MID_STREAM_LOOK`] bytes count too, and any command verb (a pipelined group, STARTTLS).
pub(super) fn looks_smtp(c: &[u8], s: &[u8], mid_stream: bool) -> bool {
    if starts_reply(s) || starts_cmd(c) || (s.is_empty() && c.starts_with(b"MAIL FROM")) {
        return true;
    }
    let later_line = |d: &[u8], f: fn(&[u8]) -> bool| {
        let head = d.get(..MID_STREAM_LOOK).unwrap_or(d);
        f(d) || memchr::memchr_iter(b'\n', head).any(|i| d.get(i + 1..).is_some_and(f))
    };
    mid_stream && (later_line(s, starts_reply) || later_line(c, starts_any_cmd))
}

/// A line that starts with one of the commands a client sends (RFC 5321, 3207, 3030, 4954).
pub(super) fn starts_any_cmd(d: &[u8]) -> bool {
    const VERBS: &[&[u8]] = &[
        b"EHLO ",
        b"HELO ",
        b"MAIL FROM:",
        b"RCPT TO:",
        b"DATA\r",
        b"DATA\n",
        b"BDAT ",
        b"RSET\r",
        b"NOOP",
        b"QUIT\r",
        b"STARTTLS\r",
        b"STARTTLS\n",
        b"AUTH ",
        b"VRFY ",
        b"EXPN ",
        b"HELP",
    ];
    VERBS.iter().any(|v| d.get(..v.len()).is_some_and(|h| h.eq_ignore_ascii_case(v)))
}

pub(super) fn starts_reply(d: &[u8]) -> bool {
    let Some(&[a, b, c, sep]) = d.first_chunk::<4>() else { return false };
    [a, b, c].iter().all(u8::is_ascii_digit) && matches!(sep, b' ' | b'-')
}

pub(super) fn starts_connect(d: &[u8]) -> bool {
    d.get(..8).is_some_and(|h| h.eq_ignore_ascii_case(b"CONNECT "))
}

/// End of an HTTP head (the empty line), searched in its first 8 KiB.
pub(super) fn http_head_end(d: &[u8]) -> Option<usize> {
    let d = d.get(..8192).unwrap_or(d);
    let crlf = d.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = d.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// An HTTP CONNECT tunnel in front of the session (`CONNECT host:port HTTP/1.x` and a 2xx
/// `HTTP/1.x` answer): where the tunnelled bytes start in the client and server streams.
pub fn tunnel_prefix(client: &[u8], server: &[u8]) -> Option<(usize, usize)> {
    if !starts_connect(client) {
        return None;
    }
    let c = http_head_end(client)?;
    if server.is_empty() {
        // One-sided: believe it only if a command follows.
        return client.get(c..).is_some_and(starts_cmd).then_some((c, 0));
    }
    // `HTTP/1.x 2xx`.
    let status = server.first_chunk::<12>()?;
    if !status.starts_with(b"HTTP/1.") || status[9] != b'2' {
        return None;
    }
    Some((c, http_head_end(server)?))
}

/// Which direction is the client's: the one that sent the SYN, else the one that speaks first
/// as a client (or whose peer answers as a server), else the one from the higher port.
pub(super) fn client_side(flow: &Flow) -> Dir {
    let [a, b] = &flow.streams;
    flow.syn_from.unwrap_or_else(|| {
        if starts_cmd(&a.data) || starts_connect(&a.data) || starts_reply(&b.data) || b.data.starts_with(b"HTTP/1.") {
            Dir::First
        } else if starts_cmd(&b.data)
            || starts_connect(&b.data)
            || starts_reply(&a.data)
            || a.data.starts_with(b"HTTP/1.")
        {
            Dir::Second
        } else if flow.first.port() < flow.second.port() {
            // Neither side says: the higher port is the client.
            Dir::Second
        } else {
            Dir::First
        }
    })
}
