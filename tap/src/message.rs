//! Reading a recovered message: the header fields as Zeek's smtp.log logs them (raw values of
//! the top-level header block), the subject RFC 2047 decoded and the MIME attachments, as
//! mail-parser's full parse gives them ([`crate::mime_parts`] reproduces it for less CPU, and
//! hands the rare messages it does not reproduce back to that parse).

use std::sync::atomic::{AtomicU64, Ordering};

use mail_parser::{MessageParser, MimeHeaders};
use records::{Attachment, TapTransaction};
use sha2::{Digest, Sha256};

use crate::mime_parts::type_name;

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The top-level header block, unfolded the way Zeek's MIME analyzer does it: the CRLF of a
/// folded line is dropped and the continuation's leading whitespace kept. Names as written;
/// values with leading and trailing whitespace trimmed. Headers of nested parts (a forwarded
/// `message/rfc822`, MIME parts) are not read: only the block before the first empty line.
pub fn top_level_headers(bytes: &[u8]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut in_header = false;
    for line in bytes.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if matches!(line.first(), Some(b' ' | b'\t')) {
            if in_header && let Some((_, value)) = out.last_mut() {
                value.push_str(&String::from_utf8_lossy(line));
            }
            continue;
        }
        in_header = false;
        let mut name_value = line.splitn(2, |&b| b == b':');
        let (Some(name), Some(value)) = (name_value.next(), name_value.next()) else { continue };
        let name = String::from_utf8_lossy(name).trim().to_string();
        if name.is_empty() || name.contains([' ', '\t']) {
            continue;
        }
        out.push((name, String::from_utf8_lossy(value).to_string()));
        in_header = true;
    }
    for (_, v) in &mut out {
        *v = v.trim().to_string();
    }
    out
}

/// Zeek's `from` and `reply_to`: the raw value of the (last) header of that name.
fn raw_last(headers: &[(String, String)], name: &str) -> Option<String> {
    headers.iter().rev().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone())
}

/// Zeek's `to` and `cc`: every header of that name, split on commas (with the blanks around
/// them), as a set in first-seen order. Empty parts are dropped.
fn raw_list(headers: &[(String, String)], name: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (_, v) in headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)) {
        for part in v.split(',') {
            let part = part.trim_matches([' ', '\t']);
            if !part.is_empty() && !out.iter().any(|p| p == part) {
                out.push(part.to_string());
            }
        }
    }
    out
}

/// Fills the header fields of `tx` from the message bytes, as Zeek's smtp.log has them: raw
/// values of the top-level header block, the last header of a name winning (`to` and `cc`
/// collect every header of their name). The subject is RFC 2047 decoded (mail-parser, legacy
/// charsets through encoding_rs), which is what a mail client shows and what the ground truth
/// holds.
pub fn read_headers(bytes: &[u8], tx: &mut TapTransaction) {
    let headers = top_level_headers(bytes);
    tx.from = raw_last(&headers, "from");
    tx.reply_to = raw_last(&headers, "reply-to");
    tx.to = raw_list(&headers, "to");
    tx.cc = raw_list(&headers, "cc");
    tx.date = raw_last(&headers, "date");
    tx.msg_id = raw_last(&headers, "message-id");
    tx.in_reply_to = raw_last(&headers, "in-reply-to");
    tx.subject = raw_last(&headers, "subject");
    tx.x_originating_ip = raw_last(&headers, "x-originating-ip").and_then(|v| first_ip(&v));
    tx.user_agent = headers
        .iter()
        .rev()
        .find(|(n, _)| ["x-mailer", "user-agent", "x-user-agent"].iter().any(|u| n.eq_ignore_ascii_case(u)))
        .map(|(_, v)| v.clone());
    // Zeek's first_received is the last Received header (the first hop), second_received the
    // one above it.
    let received: Vec<&String> =
        headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("received")).map(|(_, v)| v).collect();
    tx.first_received = received.last().map(|v| v.to_string());
    tx.second_received = received.len().checked_sub(2).and_then(|i| received.get(i)).map(|v| v.to_string());
    for ip in received.iter().filter_map(|r| bracketed_ip(r)) {
        if tx.path.last() != Some(&ip) {
            tx.path.push(ip);
        }
    }
    let raw_subject = tx.subject.clone();
    match crate::mime_parts::read(bytes) {
        Some(read) => {
            if let Some(subject) = read.subject {
                tx.subject = Some(subject);
            }
            tx.attachments = read.attachments;
        }
        None => {
            FULL_PARSES.fetch_add(1, Ordering::Relaxed);
            full_parse(bytes, tx)
        }
    }
    // mail-parser decodes each encoded-word alone: a character split across two words of one
    // charset becomes replacement characters, which a mail client does not show.
    if let (Some(raw), Some(subject)) = (raw_subject, tx.subject.as_ref())
        && subject.contains('\u{fffd}')
        && raw.contains("=?")
    {
        let joined = crate::encoded_words::decode(&raw);
        if !joined.contains('\u{fffd}') {
            tx.subject = Some(joined);
        }
    }
}

/// Messages that [`crate::mime_parts::read`] declined, read by the full parse instead.
static FULL_PARSES: AtomicU64 = AtomicU64::new(0);

/// How many messages this process has read with mail-parser's full parse because the fast
/// reader does not reproduce them (nested messages that are not transfer-encoded): a measure
/// of how much of a capture the fast path covers.
pub fn full_parses() -> u64 {
    FULL_PARSES.load(Ordering::Relaxed)
}

/// The subject and attachments from mail-parser's full parse: what [`crate::mime_parts::read`]
/// reproduces, for the messages it declines.
fn full_parse(bytes: &[u8], tx: &mut TapTransaction) {
    let Some(m) = MessageParser::default().parse(bytes) else { return };
    if let Some(subject) = m.subject() {
        tx.subject = Some(subject.to_string());
    }
    tx.attachments = m
        .attachments()
        .map(|p| Attachment {
            name: p.attachment_name().map(str::to_string),
            content_type: p.content_type().map_or_else(|| "application/octet-stream".into(), type_name),
            size: p.contents().len() as u64,
            sha256: sha256_hex(p.contents()),
        })
        .collect();
}

/// The first IPv4 or IPv6 address in a header value (`X-Originating-IP: [1.2.3.4]`).
fn first_ip(value: &str) -> Option<String> {
    value
        .split(|c: char| !(c.is_ascii_hexdigit() || c == '.' || c == ':'))
        .filter(|w| w.contains(['.', ':']))
        .find_map(|w| w.parse::<std::net::IpAddr>().ok())
        .map(|a| a.to_string())
}

/// The first `[a.b.c.d]`-style address in a Received header.
fn bracketed_ip(received: &str) -> Option<String> {
    let start = received.find('[')? + 1;
    let end = start + received[start..].find(']')?;
    let ip = &received[start..end];
    ip.trim_start_matches("IPv6:").parse::<std::net::IpAddr>().ok().map(|a| a.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small cases of every kind give what a full parse gives (`mime_parts::tests` has many
    /// more).
    #[test]
    fn read_headers_matches_a_full_parse() {
        let messages: &[&[u8]] = &[
            b"Subject: =?utf-8?q?caf=C3=A9?=\r\nFrom: a@b\r\n\r\nhello\r\n",
            b"Subject: x\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\r\n",
            b"Subject: x\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64\r\n",
            b"Subject: x\r\nContent-Type: text/plain\r\nContent-Disposition: inline\r\n\r\nhello\r\n",
            b"Subject: x\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=a.txt\r\n\r\nhi\r\n",
            b"Subject: x\r\nContent-Type: text/plain; name=a.txt\r\n\r\nhi\r\n",
            b"Subject: x\r\nContent-Type: Text/Plain\r\n\r\nhi\r\n",
            b"Subject: x\r\nContent-Type: text/html\r\n\r\n<p>hi</p>\r\n",
            b"Subject: x\r\nContent-Type: application/pdf\r\n\r\n%PDF\r\n",
            b"Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: image/png; name=a.png\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n--b--\r\n",
            b"no headers at all",
            b"",
            // mail-parser reads a header after a line without a colon even when it is indented;
            // the header-only shortcut this replaced took such a message for plain text.
            b"Garbage line\r\n Content-Type: image/png; name=a.png\r\n\r\nbody",
        ];
        for m in messages {
            let mut fast = TapTransaction::default();
            read_headers(m, &mut fast);
            let mut full = TapTransaction::default();
            let headers = top_level_headers(m);
            full.subject = raw_last(&headers, "subject");
            if let Some(p) = MessageParser::default().parse(*m) {
                if let Some(s) = p.subject() {
                    full.subject = Some(s.to_string());
                }
                full.attachments = p
                    .attachments()
                    .map(|a| Attachment {
                        name: a.attachment_name().map(str::to_string),
                        content_type: String::new(),
                        size: a.contents().len() as u64,
                        sha256: sha256_hex(a.contents()),
                    })
                    .collect();
            }
            let view = |t: &TapTransaction| {
                (
                    t.subject.clone(),
                    t.attachments.iter().map(|a| (a.name.clone(), a.sha256.clone())).collect::<Vec<_>>(),
                )
            };
            assert_eq!(view(&fast), view(&full), "{}", String::from_utf8_lossy(m));
        }
    }

    #[test]
    fn an_indented_content_type_after_a_garbage_line_counts() {
        let mut tx = TapTransaction::default();
        read_headers(b"Garbage line\r\n Content-Type: image/png; name=a.png\r\n\r\nbody", &mut tx);
        let names: Vec<_> =
            tx.attachments.iter().map(|a| (a.name.as_deref(), a.content_type.as_str(), a.size)).collect();
        assert_eq!(names, [(Some("a.png"), "image/png", 4)]);
    }
}
