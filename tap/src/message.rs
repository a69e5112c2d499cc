//! Reading a recovered message the way a mail client would, with mail-parser: headers (RFC 2047
//! decoded) and MIME attachments.

use mail_parser::{Address, MessageParser, MimeHeaders};
use records::{Attachment, TapTransaction};
use sha2::{Digest, Sha256};

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn addresses(a: Option<&Address>) -> Vec<String> {
    a.map(|a| {
        a.iter()
            .map(|addr| match (addr.name(), addr.address()) {
                (Some(n), Some(e)) => format!("\"{n}\" <{e}>"),
                (None, Some(e)) => format!("<{e}>"),
                (Some(n), None) => n.to_string(),
                (None, None) => String::new(),
            })
            .collect()
    })
    .unwrap_or_default()
}

fn raw(m: &mail_parser::Message, name: &str) -> Option<String> {
    m.header_raw(name).map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Fills the header fields of `tx` from the message bytes.
pub fn read_headers(bytes: &[u8], tx: &mut TapTransaction) {
    let Some(m) = MessageParser::default().parse(bytes) else { return };
    tx.date = raw(&m, "Date");
    tx.from = addresses(m.from()).into_iter().next();
    tx.to = addresses(m.to());
    tx.cc = addresses(m.cc());
    tx.reply_to = addresses(m.reply_to()).into_iter().next();
    tx.msg_id = m.message_id().map(|id| format!("<{id}>"));
    tx.in_reply_to = raw(&m, "In-Reply-To");
    tx.subject = m.subject().map(str::to_string);
    tx.x_originating_ip = raw(&m, "X-Originating-IP");
    tx.user_agent = raw(&m, "User-Agent").or_else(|| raw(&m, "X-Mailer"));
    let chain = received_chain(bytes);
    tx.first_received = chain.first().cloned();
    tx.second_received = chain.get(1).cloned();
    tx.path.extend(chain.iter().filter_map(|r| bracketed_ip(r)));
    tx.attachments = m
        .attachments()
        .map(|p| Attachment {
            name: p.attachment_name().map(str::to_string),
            content_type: p
                .content_type()
                .map(|c| match c.subtype() {
                    Some(sub) => format!("{}/{}", c.ctype(), sub),
                    None => c.ctype().to_string(),
                })
                .unwrap_or_else(|| "application/octet-stream".into()),
            size: p.contents().len() as u64,
            sha256: sha256_hex(p.contents()),
        })
        .collect();
}

/// The Received headers in order, unfolded, from the raw header block.
fn received_chain(bytes: &[u8]) -> Vec<String> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(bytes.len());
    let head = String::from_utf8_lossy(&bytes[..end]);
    let mut out: Vec<String> = Vec::new();
    let mut in_received = false;
    for line in head.split('\n') {
        let line = line.trim_end_matches('\r');
        if line.starts_with([' ', '\t']) {
            if in_received && let Some(last) = out.last_mut() {
                last.push(' ');
                last.push_str(line.trim());
            }
            continue;
        }
        in_received = false;
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("received")
        {
            out.push(value.trim().to_string());
            in_received = true;
        }
    }
    out
}

/// The first `[a.b.c.d]`-style address in a Received header.
fn bracketed_ip(received: &str) -> Option<String> {
    let start = received.find('[')? + 1;
    let end = start + received[start..].find(']')?;
    let ip = &received[start..end];
    ip.trim_start_matches("IPv6:").parse::<std::net::IpAddr>().ok().map(|a| a.to_string())
}
