//! One line of text per record, as `smtplab tap --format table` prints them while the capture
//! is read. Text from the wire is escaped ([`shown`]): a hostile EHLO name must not drive the
//! reader's terminal.

use records::{TapSession, TapTransaction};

use crate::volume::shown;

/// A session: its uid, ends, EHLO name, TLS, bytes each way, transactions and notes.
pub fn session(s: &TapSession) -> String {
    let tls = if s.starttls_used {
        format!("STARTTLS {} {}", s.tls_version.as_deref().unwrap_or("?"), s.tls_cipher.as_deref().unwrap_or(""))
    } else if s.starttls_offered {
        "offered, not used".into()
    } else {
        "plaintext".into()
    };
    format!(
        "{} {}:{} -> {}:{} helo={} {} bytes {}/{} tx={}{}",
        s.uid,
        s.orig_h,
        s.orig_p,
        s.resp_h,
        s.resp_p,
        s.helo.as_deref().map_or("-".into(), shown),
        tls.trim_end(),
        s.orig_bytes,
        s.resp_bytes,
        s.transactions,
        if s.notes.is_empty() { String::new() } else { format!(" [{}]", s.notes.join(",")) }
    )
}

/// A transaction under its session: the envelope, subject, size and hash when seen in the clear.
pub fn transaction(t: &TapTransaction) -> String {
    if t.tls {
        return format!("    #{} (in TLS: envelope and content not visible)", t.trans_depth);
    }
    format!(
        "    #{} {} -> {} subject={:?} bytes={} sha256={}",
        t.trans_depth,
        t.mailfrom.as_deref().map_or("-".into(), shown),
        t.rcptto.iter().map(|r| shown(r)).collect::<Vec<_>>().join(","),
        t.subject.as_deref().unwrap_or(""),
        t.message_bytes.map(|b| b.to_string()).unwrap_or_else(|| "-".into()),
        t.sha256.as_deref().and_then(|h| h.get(..12)).unwrap_or("-"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_as_the_table_prints_them() {
        let s = TapSession {
            uid: "C1".into(),
            orig_h: "127.0.51.1".into(),
            orig_p: 40000,
            resp_h: "127.0.52.1".into(),
            resp_p: 2525,
            helo: Some("mx\u{1b}[31m".into()),
            starttls_offered: true,
            starttls_used: true,
            tls_version: Some("TLSv1.3".into()),
            tls_cipher: Some("TLS_AES_256_GCM_SHA384".into()),
            orig_bytes: 1200,
            resp_bytes: 3400,
            transactions: 1,
            notes: vec!["gap_in_data".into()],
            ..Default::default()
        };
        assert_eq!(
            session(&s),
            "C1 127.0.51.1:40000 -> 127.0.52.1:2525 helo=mx\\x1b[31m STARTTLS TLSv1.3 TLS_AES_256_GCM_SHA384 bytes \
             1200/3400 tx=1 [gap_in_data]"
        );
        let plain = TapSession { starttls_used: false, starttls_offered: false, helo: None, notes: vec![], ..s };
        assert_eq!(session(&plain), "C1 127.0.51.1:40000 -> 127.0.52.1:2525 helo=- plaintext bytes 1200/3400 tx=1");
        let t = TapTransaction {
            trans_depth: 2,
            mailfrom: Some("a@alpha.example".into()),
            rcptto: vec!["b@beta.example".into(), "c@beta.example".into()],
            subject: Some("hi".into()),
            message_bytes: Some(512),
            sha256: Some("0123456789abcdef".into()),
            ..Default::default()
        };
        assert_eq!(
            transaction(&t),
            "    #2 a@alpha.example -> b@beta.example,c@beta.example subject=\"hi\" bytes=512 sha256=0123456789ab"
        );
        let tls = TapTransaction { tls: true, ..t };
        assert_eq!(transaction(&tls), "    #2 (in TLS: envelope and content not visible)");
    }
}
