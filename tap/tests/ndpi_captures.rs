//! nDPI's SMTP captures (tests/data/pcaps/ndpi, see PROVENANCE.md): IPv6 inside VLAN tags, a
//! lost segment inside TLS, implicit TLS on port 465 and a pcapng file all parse without error,
//! into the sessions they hold.

use std::path::{Path, PathBuf};

use records::TapSession;

fn ndpi(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/pcaps/ndpi").join(name)
}

fn read(name: &str) -> tap::Dissection {
    let d = tap::dissect_file(&ndpi(name)).expect("capture opens");
    assert!(d.error.is_none(), "{name}: {:?}", d.error);
    assert_eq!(
        (d.malformed, d.defrag.incomplete + d.defrag.dropped, d.other_link),
        (0, 0, 0),
        "{name}: every frame decodes"
    );
    d
}

fn has(s: &TapSession, note: &str) -> bool {
    s.notes.iter().any(|n| n == note)
}

#[test]
fn smtps_pcapng_is_one_implicit_tls_session_on_465() {
    let d = read("smtps.pcapng");
    assert_eq!(d.packets, 4);
    assert_eq!(d.sessions.len(), 1);
    let s = &d.sessions[0];
    assert_eq!((s.orig_h.as_str(), s.orig_p, s.resp_h.as_str(), s.resp_p), ("62.43.36.99", 37682, "21.65.95.132", 465));
    assert!(has(s, "implicit_tls"), "{:?}", s.notes);
    assert!(!s.starttls_used && !s.starttls_command);
    // One ClientHello (without SNI, as nDPI reports); the server answered in the clear.
    assert_eq!((s.tls_records_orig, s.tls_records_resp), (1, 0));
    assert_eq!(s.sni, None);
    assert!(has(s, "server_not_tls"), "{:?}", s.notes);
    assert_eq!(s.server_name.as_deref(), Some("gator4223.hostgator.com"));
    assert_eq!((s.orig_bytes, s.resp_bytes), (517, 179));
    assert!(d.transactions.is_empty(), "nothing in the clear");
}

#[test]
fn smtp_starttls_pcap_has_two_starttls_sessions_ipv4_and_ipv6_in_vlan() {
    let d = read("smtp-starttls.pcap");
    assert_eq!(d.packets, 69);
    assert_eq!(d.sessions.len(), 2);
    let v4 = &d.sessions[0];
    assert_eq!(
        (v4.orig_h.as_str(), v4.orig_p, v4.resp_h.as_str(), v4.resp_p),
        ("10.0.0.1", 57406, "173.194.68.26", 25)
    );
    assert_eq!(v4.helo.as_deref(), Some("xxxxxxxxxxxxx.xxx.com"));
    assert!(v4.starttls_offered && v4.starttls_command && v4.starttls_used);
    assert_eq!(v4.starttls_reply, Some(220));
    assert_eq!((v4.tls_records_orig, v4.tls_records_resp), (10, 11));
    assert_eq!(v4.tls_version.as_deref(), Some("TLSv1"));
    assert_eq!(v4.tls_cipher.as_deref(), Some("TLS_RSA_WITH_RC4_128_SHA"));
    assert_eq!(v4.gaps, 0);

    let v6 = &d.sessions[1];
    assert_eq!(
        (v6.orig_h.as_str(), v6.orig_p, v6.resp_h.as_str(), v6.resp_p),
        ("2003:de:2016:125:fc36:8317:4e86:cb72", 7562, "2003:de:2016:120::a08:53", 25)
    );
    assert_eq!(v6.helo.as_deref(), Some("[IPv6:2003:de:2016:125:fc36:8317:4e86:cb72]"));
    assert!(v6.starttls_command && v6.starttls_used);
    assert_eq!(v6.sni.as_deref(), Some("dovecot.weberlab.de"));
    assert_eq!(v6.tls_version.as_deref(), Some("TLSv1.2"));
    // The client lost 5760 bytes inside TLS: its records are counted up to the hole (8, as
    // tshark counts them), the server's all (14, one of them an alert).
    assert_eq!(v6.gaps, 1);
    assert!(has(v6, "gap_in_tls") && has(v6, "tls_alert"), "{:?}", v6.notes);
    assert_eq!((v6.tls_records_orig, v6.tls_records_resp), (8, 14));

    // Neither session had a transaction before STARTTLS: one tls row each, as Zeek logs it.
    assert_eq!(d.transactions.len(), 2);
    for (t, s) in d.transactions.iter().zip(&d.sessions) {
        assert!(t.tls && t.mailfrom.is_none() && t.sha256.is_none());
        assert_eq!((&t.uid, &t.helo), (&s.uid, &s.helo));
        assert!(t.last_reply.as_deref().is_some_and(|r| r.starts_with("220")), "{:?}", t.last_reply);
        assert_eq!(s.transactions, 0, "the tls row is not a transaction seen in the clear");
    }
}

#[test]
fn smtp_pcap_is_one_plaintext_transaction_with_30_recipients() {
    let d = read("smtp.pcap");
    assert_eq!(d.sessions.len(), 1);
    let s = &d.sessions[0];
    assert_eq!((s.orig_h.as_str(), s.orig_p, s.resp_p), ("194.7.248.153", 2127, 25));
    // EHLO was refused, HELO accepted: the last name given counts.
    assert_eq!(s.helo.as_deref(), Some("delta.peach.mil"));
    assert!(!s.starttls_offered && !s.starttls_used);
    assert_eq!(d.transactions.len(), 1);
    let t = &d.transactions[0];
    assert_eq!(t.mailfrom.as_deref(), Some("coreys@delta.peach.mil"));
    assert_eq!(t.rcptto.len(), 30);
    assert!(t.rcptto.iter().all(|r| r.ends_with("@pigeon.eyrie.af.mil")));
    assert_eq!(t.subject.as_deref(), Some("Take into The would, for"));
    assert!(t.sha256.is_some(), "the message was recovered whole");
    assert!(t.last_reply.as_deref().is_some_and(|r| r.starts_with("250")));
}
