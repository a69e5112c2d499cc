//! The eavesdropper's estimators inside TLS: how many messages a session carried and how large
//! each was, from nothing but the lengths, directions and times of its application-data
//! records. ANALYSIS.md ("Messages and sizes inside TLS") states the method, its assumptions
//! and its tolerance; in short:
//!
//! 1. Each record's plaintext is its length less the record overhead of the negotiated version
//!    and cipher ([`overhead`]); suites whose overhead is not fixed (CBC with its padding) are
//!    not estimated.
//! 2. In TLS 1.3 the client's Finished (and a client certificate before it) is an
//!    application-data record too: the client's leading records up to its Finished are left
//!    out, as is a last client record of 2 bytes (its close_notify alert).
//! 3. The client's records are cut into bursts at every server record: SMTP is a dialogue in
//!    which the client waits for replies (RFC 5321; with PIPELINING, RFC 2920, at DATA and at
//!    the end of the message).
//! 4. The burst after a burst whose last record carries exactly `DATA<CRLF>` (6 bytes) is a
//!    message. When no such burst is seen, or when that reading leaves more than one command
//!    line after its last message (a lone 6-byte burst was an RSET: Postfix's shape), the
//!    client pipelined its commands into one record: after the EHLO burst, bursts alternate
//!    command group, message, group, message, ..., a lone 6-byte burst after a message (RSET
//!    before the next transaction, or QUIT) left out.
//! 5. A message's size is its burst's plaintext less the `.<CRLF>` that ends DATA.

use records::TlsAppRecord;

/// Both directions' records in capture order. On equal times the client's come first: a
/// server's reply cannot precede the command it answers, which is the tie seen most often (a
/// command and its reply within one clock tick of the capture).
pub fn merge(client: &[(f64, u32)], server: &[(f64, u32)]) -> Vec<TlsAppRecord> {
    let mut out = Vec::with_capacity(client.len() + server.len());
    let (mut c, mut s) = (client.iter().peekable(), server.iter().peekable());
    loop {
        let take_client = match (c.peek(), s.peek()) {
            (Some(a), Some(b)) => a.0 <= b.0,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let (orig, next) = if take_client { (true, c.next()) } else { (false, s.next()) };
        if let Some(&(ts, len)) = next {
            out.push(TlsAppRecord { ts, orig, len });
        }
    }
    out
}

/// Plaintext bytes of `DATA<CRLF>` (and of `RSET<CRLF>`, `QUIT<CRLF>`, `NOOP<CRLF>`).
const DATA_COMMAND: u64 = 6;
/// The longest command line, CRLF included (RFC 5321 §4.5.3.1.4).
const COMMAND_LINE_MAX: u64 = 512;
/// `.<CRLF>`, the end of the message inside DATA.
const END_OF_DATA: u64 = 3;

/// The estimated size of each message the session carried (so their number), or `None` when
/// the version or cipher is unknown or has no fixed record overhead, or no client record came.
pub fn messages(records: &[TlsAppRecord], version: Option<&str>, cipher: Option<&str>) -> Option<Vec<u64>> {
    let (version, cipher) = (version?, cipher?);
    let overhead = overhead(version, cipher)?;
    let plain = |r: &TlsAppRecord| u64::from(r.len).saturating_sub(overhead);
    let clients: Vec<(usize, &TlsAppRecord)> = records.iter().enumerate().filter(|(_, r)| r.orig).collect();
    if clients.is_empty() {
        return None;
    }
    let mut skip = std::collections::HashSet::new();
    if version == "TLSv1.3" {
        // Certificate and CertificateVerify (when the client authenticates), then Finished:
        // 4 bytes of handshake header and the suite's hash.
        let finished = 4 + if cipher.contains("SHA384") { 48 } else { 32 };
        let end = clients.iter().take(3).position(|(_, r)| plain(r) == finished).unwrap_or(0);
        skip.extend(clients.iter().take(end + 1).map(|(i, _)| *i));
        if let Some(&(last, r)) = clients.last()
            && plain(r) == 2
        {
            skip.insert(last);
        }
    }
    // Bursts: (plaintext bytes, plaintext of the last record).
    let mut bursts: Vec<(u64, u64)> = Vec::new();
    let mut open = false;
    for (i, r) in records.iter().enumerate() {
        if !r.orig {
            open = false;
        } else if !skip.contains(&i) {
            let p = plain(r);
            match bursts.last_mut() {
                Some(b) if open => *b = (b.0 + p, p),
                _ => bursts.push((p, p)),
            }
            open = true;
        }
    }
    // A burst ending in DATA that some burst follows.
    let data_seen = bursts.iter().take(bursts.len().saturating_sub(1)).any(|b| b.1 == DATA_COMMAND);
    if data_seen && let Some(out) = data_alone(&bursts) {
        return Some(out);
    }
    Some(pipelined(&bursts))
}

/// Messages when the client writes `DATA<CRLF>` on its own (bursts as (plaintext, plaintext of
/// the last record)): each burst after one that ends in a 6-byte record. `None` when this reading
/// leaves a burst of more than one command line after its last message: the 6-byte bursts were
/// not DATA but RSETs between pipelined transactions (Postfix reusing a connection sends RSET on
/// its own, then MAIL, RCPT and DATA in one record), and the last message was left over. A
/// client that sends DATA alone ends with QUIT, RSET, NOOP, a transaction refused before DATA, or
/// nothing.
fn data_alone(bursts: &[(u64, u64)]) -> Option<Vec<u64>> {
    let mut out = Vec::new();
    let mut after_last = 0;
    let mut i = 0;
    while let (Some(burst), Some(next)) = (bursts.get(i), bursts.get(i + 1)) {
        if burst.1 == DATA_COMMAND {
            out.push(next.0.saturating_sub(END_OF_DATA));
            // The message's own last record cannot announce another.
            i += 2;
            after_last = i;
            // Nor can a lone 6-byte command right after a message: DATA always follows
            // MAIL and RCPT, so that is RSET (a reused session, as Postfix sends it before
            // its next transaction), NOOP or QUIT.
            if bursts.get(i + 1).is_some() && bursts.get(i).is_some_and(|b| b.0 == DATA_COMMAND) {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    let left_over = bursts.get(after_last..).unwrap_or_default();
    left_over.iter().all(|b| b.0 <= COMMAND_LINE_MAX).then_some(out)
}

/// Messages when the client pipelines MAIL, RCPT and DATA into one record: after EHLO, bursts
/// alternate command group and message; a lone 6-byte burst right after a message (RSET before
/// the next transaction, as Postfix sends it on a reused connection, or QUIT) is neither.
fn pipelined(bursts: &[(u64, u64)]) -> Vec<u64> {
    let mut out = Vec::new();
    let mut group = 1;
    while let Some(message) = bursts.get(group + 1) {
        out.push(message.0.saturating_sub(END_OF_DATA));
        group += 2;
        if bursts.get(group).is_some_and(|b| b.0 == DATA_COMMAND) {
            group += 1;
        }
    }
    out
}

/// Bytes a record adds to the plaintext it carries: the 5-byte header (RFC 8446 §5.1, RFC 5246
/// §6.2.1) and what the AEAD adds. TLS 1.3 (RFC 8446 §5.2): the inner content type byte and
/// the tag (16 bytes for every suite but AES_128_CCM_8, 8; RFC 8446 §B.4, RFC 6655), no
/// padding assumed. TLS 1.2: AES-GCM an 8-byte explicit nonce and a 16-byte tag (RFC 5288 §3),
/// AES-CCM an 8-byte nonce and a 16- or 8-byte tag (RFC 6655 §3, RFC 7251), ChaCha20-Poly1305
/// no explicit nonce and a 16-byte tag (RFC 7905 §2). Other suites (CBC: a MAC and padding
/// the eavesdropper cannot tell apart from the plaintext) give `None`.
pub fn overhead(version: &str, cipher: &str) -> Option<u64> {
    const HEADER: u64 = 5;
    let ccm8 = cipher.contains("CCM_8");
    match version {
        "TLSv1.3" => Some(HEADER + 1 + if ccm8 { 8 } else { 16 }),
        "TLSv1.2" if cipher.contains("CHACHA20_POLY1305") => Some(HEADER + 16),
        "TLSv1.2" if cipher.contains("_GCM_") || cipher.contains("_CCM") => {
            Some(HEADER + 8 + if ccm8 { 8 } else { 16 })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V13: (&str, &str) = ("TLSv1.3", "TLS_AES_128_GCM_SHA256");

    /// Records from (client?, plaintext) pairs, one per time tick, with TLS 1.3 AES-GCM's 22
    /// bytes of overhead worked by hand.
    fn recs(parts: &[(bool, u64)]) -> Vec<TlsAppRecord> {
        parts
            .iter()
            .enumerate()
            .map(|(i, &(orig, p))| TlsAppRecord { ts: i as f64, orig, len: (p + 22) as u32 })
            .collect()
    }

    #[test]
    fn commands_in_their_own_records_two_messages() {
        // Server flight, client Finished (36), EHLO, MAIL, RCPT, DATA, message, MAIL, RCPT,
        // DATA, message in two records, QUIT, close_notify.
        let r = recs(&[
            (false, 900),
            (true, 36),
            (true, 20),
            (false, 200),
            (true, 30),
            (false, 10),
            (true, 25),
            (false, 10),
            (true, 6),
            (false, 30),
            (true, 1003),
            (false, 20),
            (true, 30),
            (false, 10),
            (true, 25),
            (false, 10),
            (true, 6),
            (false, 30),
            (true, 16384),
            (true, 619),
            (false, 20),
            (true, 6),
            (false, 10),
            (true, 2),
        ]);
        assert_eq!(messages(&r, Some(V13.0), Some(V13.1)), Some(vec![1000, 17000]));
    }

    /// A reused session without pipelining: RSET (6 bytes, like DATA) starts each further
    /// transaction, and must not make the MAIL after it a message.
    #[test]
    fn a_lone_rset_after_a_message_is_not_data() {
        let r = recs(&[
            (true, 36),
            (true, 20),
            (false, 200),
            (true, 30),
            (false, 10),
            (true, 25),
            (false, 10),
            (true, 6),
            (false, 30),
            (true, 703),
            (false, 20),
            (true, 6),
            (false, 10),
            (true, 30),
            (false, 10),
            (true, 25),
            (false, 10),
            (true, 6),
            (false, 30),
            (true, 403),
            (false, 20),
            (true, 6),
            (false, 10),
        ]);
        assert_eq!(messages(&r, Some(V13.0), Some(V13.1)), Some(vec![700, 400]));
    }

    /// Postfix 3.7 reusing a TLS connection (`smtp_tls_connection_reuse = yes`, through
    /// tlsproxy), as captured by `tests/postfix_reuse_tap.rs` (TLS 1.3, AES-256-GCM-SHA384, so a
    /// 52-byte Finished): MAIL, RCPT and DATA in one record, the message in records of 4,096
    /// bytes (tlsproxy's), then RSET alone before the next transaction; the cached connection
    /// was closed on idle with close_notify and no QUIT. The lone RSETs must not be read as DATA.
    #[test]
    fn postfix_reused_connection_rset_alone_between_pipelined_transactions() {
        let mut parts = vec![(false, 6), (false, 437), (false, 78), (false, 52), (true, 52), (false, 233)];
        parts.extend([(true, 23), (false, 152)]);
        let mut forty_k = vec![4096; 9];
        forty_k.push(3301);
        let bodies = [vec![1065], forty_k, vec![4096, 4096, 972], vec![4096, 4096, 4096, 2877]];
        for (k, records) in bodies.iter().enumerate() {
            if k > 0 {
                parts.extend([(true, 6), (false, 14)]);
            }
            parts.extend([(true, 102), (false, 65)]);
            parts.extend(records.iter().map(|&p| (true, p)));
            parts.push((false, 37));
        }
        parts.push((true, 2));
        let got = messages(&recs(&parts), Some("TLSv1.3"), Some("TLS_AES_256_GCM_SHA384"));
        let want: Vec<u64> = bodies.iter().map(|m| m.iter().sum::<u64>() - 3).collect();
        assert_eq!(want, [1062, 40162, 9161, 15162], "worked by hand");
        assert_eq!(got, Some(want));
    }

    /// Without pipelining a session may end in a transaction refused before DATA: the commands
    /// after the last message are single lines, and the DATA-alone reading stands.
    #[test]
    fn data_alone_with_a_last_transaction_refused_before_data() {
        let r = recs(&[
            (true, 36),
            (true, 20),
            (false, 200),
            (true, 30),
            (false, 10),
            (true, 25),
            (false, 10),
            (true, 6),
            (false, 30),
            (true, 2003),
            (false, 20),
            (true, 30),
            (false, 10),
            (true, 25),
            (false, 40),
            (true, 6),
            (false, 10),
        ]);
        assert_eq!(messages(&r, Some(V13.0), Some(V13.1)), Some(vec![2000]));
    }

    #[test]
    fn pipelined_groups_in_one_record_alternate_with_messages() {
        let r = recs(&[
            (true, 36),
            (true, 20),
            (false, 200),
            (true, 70),
            (false, 50),
            (true, 503),
            (false, 20),
            (true, 70),
            (false, 50),
            (true, 803),
            (false, 20),
            (true, 6),
        ]);
        assert_eq!(messages(&r, Some(V13.0), Some(V13.1)), Some(vec![500, 800]));
    }

    #[test]
    fn overheads_from_the_rfcs() {
        assert_eq!(overhead("TLSv1.3", "TLS_AES_256_GCM_SHA384"), Some(22));
        assert_eq!(overhead("TLSv1.3", "TLS_AES_128_CCM_8_SHA256"), Some(14));
        assert_eq!(overhead("TLSv1.2", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"), Some(29));
        assert_eq!(overhead("TLSv1.2", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"), Some(21));
        assert_eq!(overhead("TLSv1.2", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"), None);
        assert_eq!(messages(&recs(&[(true, 10)]), Some("TLSv1.2"), Some("TLS_RSA_WITH_AES_128_CBC_SHA")), None);
    }

    #[test]
    fn merge_keeps_time_order_client_first_on_ties() {
        let m = merge(&[(1.0, 10), (3.0, 30)], &[(1.0, 11), (2.0, 20)]);
        let got: Vec<(bool, u32)> = m.iter().map(|r| (r.orig, r.len)).collect();
        assert_eq!(got, [(true, 10), (false, 11), (false, 20), (true, 30)]);
    }
}
