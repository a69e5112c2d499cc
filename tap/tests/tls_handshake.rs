//! Real TLS handshakes, made in memory by rustls (no socket) with a certificate rcgen signs
//! for the test, walked by `tap::tls` as the eavesdropper walks a STARTTLS stream: what the
//! client offered, what the server chose, and in TLS 1.2 the certificate, also when its
//! message spans many records or shares a record with others, when it is over 100 KiB, and when
//! its names hold what a terminal or a parser of the records should not be handed raw.

use std::net::SocketAddr;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tap::tls::{TlsSummary, walk};

const HOST: &str = "mx.example.org";

/// A CA and a leaf for [`HOST`] (and a second DNS name), subject `C=ZZ, O=smtplab test, CN=HOST`.
fn certificates() -> Pki {
    let mut leaf = CertificateParams::new(vec![HOST.to_string(), "mail.example.org".to_string()]).expect("params");
    leaf.distinguished_name = DistinguishedName::new();
    leaf.distinguished_name.push(DnType::CountryName, "ZZ");
    leaf.distinguished_name.push(DnType::OrganizationName, "smtplab test");
    leaf.distinguished_name.push(DnType::CommonName, HOST);
    signed(leaf)
}

/// A server's certificates: the CA (the client's root), the chain the server sends (leaf
/// first, then the CA) and the leaf's key.
struct Pki {
    ca: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

/// `leaf` signed by a new CA, subject `CN=smtplab test CA`.
fn signed(leaf: CertificateParams) -> Pki {
    let ca_key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name.push(DnType::CommonName, "smtplab test CA");
    let ca_cert = ca.self_signed(&ca_key).expect("CA");
    let key = KeyPair::generate().expect("key");
    let leaf_cert = leaf.signed_by(&key, &ca_cert, &ca_key).expect("leaf");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Pki { ca: ca_cert.der().clone(), chain: vec![leaf_cert.der().clone(), ca_cert.der().clone()], key }
}

/// The bytes each way of a complete handshake (client to server, server to client), the
/// server offering only `server_versions` and cutting its records at `max_fragment` bytes.
fn handshake(
    server_versions: &[&'static rustls::SupportedProtocolVersion],
    max_fragment: Option<usize>,
) -> (Vec<u8>, Vec<u8>) {
    let (c2s, s2c, refused) = handshake_with(certificates(), server_versions, max_fragment);
    assert!(refused.is_none(), "{refused:?}");
    (c2s, s2c)
}

/// The bytes each way of a handshake with the server's certificates `pki`, until it completes
/// or the client refuses what the server sent (its error, last).
fn handshake_with(
    pki: Pki,
    server_versions: &[&'static rustls::SupportedProtocolVersion],
    max_fragment: Option<usize>,
) -> (Vec<u8>, Vec<u8>, Option<rustls::Error>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut sc = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(server_versions)
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(pki.chain, pki.key)
        .expect("server config");
    sc.max_fragment_size = max_fragment;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca).expect("root");
    let cc = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(HOST).expect("name");
    let mut client = rustls::ClientConnection::new(Arc::new(cc), name).expect("client");
    let mut server = rustls::ServerConnection::new(Arc::new(sc)).expect("server");
    let (mut c2s, mut s2c) = (Vec::new(), Vec::new());
    // Each round moves everything pending each way; a handshake needs a few.
    for _ in 0..10 {
        let mut buf = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut buf).expect("client writes");
        }
        c2s.extend_from_slice(&buf);
        let mut rd = &buf[..];
        while !rd.is_empty() {
            server.read_tls(&mut rd).expect("server reads");
            server.process_new_packets().expect("server accepts");
        }
        let mut buf = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut buf).expect("server writes");
        }
        s2c.extend_from_slice(&buf);
        let mut rd = &buf[..];
        while !rd.is_empty() {
            client.read_tls(&mut rd).expect("client reads");
            if let Err(e) = client.process_new_packets() {
                // The client's alert goes out, and that is the end.
                while client.wants_write() {
                    client.write_tls(&mut c2s).expect("client writes");
                }
                return (c2s, s2c, Some(e));
            }
        }
        if !client.is_handshaking() && !server.is_handshaking() {
            return (c2s, s2c, None);
        }
    }
    panic!("the handshake did not finish in 10 rounds");
}

/// The records of `data`: (content type, body).
fn records(data: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 5 <= data.len() {
        let len = u16::from_be_bytes([data[pos + 3], data[pos + 4]]) as usize;
        out.push((data[pos], data[pos + 5..pos + 5 + len].to_vec()));
        pos += 5 + len;
    }
    assert_eq!(pos, data.len(), "whole records");
    out
}

/// `data` with the clear handshake bytes (those before ChangeCipherSpec) put in records of at
/// most `size` bytes each, the rest as it was.
fn reframe(data: &[u8], size: usize) -> Vec<u8> {
    let recs = records(data);
    let ccs = recs.iter().position(|(t, _)| *t == 20).unwrap_or(recs.len());
    let handshake: Vec<u8> = recs[..ccs].iter().filter(|(t, _)| *t == 22).flat_map(|(_, b)| b.clone()).collect();
    let mut out = Vec::new();
    for chunk in handshake.chunks(size) {
        out.extend_from_slice(&[22, 3, 3]);
        out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    for (t, b) in &recs[ccs..] {
        out.extend_from_slice(&[*t, 3, 3]);
        out.extend_from_slice(&(b.len() as u16).to_be_bytes());
        out.extend_from_slice(b);
    }
    out
}

fn check_client(c: &TlsSummary) {
    assert_eq!(c.sni.as_deref(), Some(HOST));
    assert_eq!(c.offered_versions, ["TLSv1.3", "TLSv1.2"]);
    assert_eq!(c.offered_groups, ["x25519", "secp256r1", "secp384r1"]);
    // rustls with ring: 3 TLS 1.3 suites, 6 TLS 1.2 ones, and the renegotiation SCSV.
    for suite in [
        "TLS_AES_256_GCM_SHA384",
        "TLS_AES_128_GCM_SHA256",
        "TLS_CHACHA20_POLY1305_SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        "TLS_EMPTY_RENEGOTIATION_INFO_SCSV",
    ] {
        assert!(c.offered_ciphers.iter().any(|s| s == suite), "{suite} in {:?}", c.offered_ciphers);
    }
    assert_eq!(c.offered_ciphers.len(), 10, "{:?}", c.offered_ciphers);
    assert!(c.cert_subject.is_none());
}

fn check_tls12_server(s: &TlsSummary) {
    assert_eq!(s.version.as_deref(), Some("TLSv1.2"));
    assert_eq!(s.cipher.as_deref(), Some("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"));
    assert_eq!(s.cert_subject.as_deref(), Some("CN=mx.example.org,O=smtplab test,C=ZZ"));
    assert_eq!(s.cert_issuer.as_deref(), Some("CN=smtplab test CA"));
    assert_eq!(s.cert_san_dns, [HOST, "mail.example.org"]);
}

#[test]
fn tls12_handshake_shows_the_offer_the_choice_and_the_certificate() {
    let (c2s, s2c) = handshake(&[&rustls::version::TLS12], None);
    check_client(&walk(&c2s));
    let s = walk(&s2c);
    check_tls12_server(&s);
    assert_eq!(s.unparsed, 0);
}

#[test]
fn a_certificate_spanning_many_records_is_reassembled() {
    // rustls cuts its own records at 200 bytes (with headers; the certificate chain is about
    // 900 bytes).
    let (_, s2c) = handshake(&[&rustls::version::TLS12], Some(200));
    let recs = records(&s2c);
    assert!(recs.iter().filter(|(t, _)| *t == 22).count() >= 6, "the handshake is spread over records");
    check_tls12_server(&walk(&s2c));
    // And cut again, byte by byte: each 4-byte message header itself spans records.
    let (_, s2c) = handshake(&[&rustls::version::TLS12], None);
    for size in [1, 3, 7, 100] {
        check_tls12_server(&walk(&reframe(&s2c, size)));
    }
}

#[test]
fn several_messages_in_one_record_are_all_read() {
    let (c2s, s2c) = handshake(&[&rustls::version::TLS12], Some(512));
    // ServerHello, Certificate, ServerKeyExchange and ServerHelloDone in one record.
    let one = reframe(&s2c, 16_000);
    assert!(records(&one).len() < records(&s2c).len());
    check_tls12_server(&walk(&one));
    check_client(&walk(&reframe(&c2s, 16_000)));
}

#[test]
fn tls13_hides_the_certificate() {
    let (c2s, s2c) = handshake(&[&rustls::version::TLS13], None);
    check_client(&walk(&c2s));
    let s = walk(&s2c);
    assert_eq!(s.version.as_deref(), Some("TLSv1.3"));
    assert_eq!(s.cipher.as_deref(), Some("TLS_AES_256_GCM_SHA384"));
    assert_eq!((s.cert_subject.as_deref(), s.cert_san_dns.len()), (None, 0), "encrypted in TLS 1.3");
}

#[test]
fn an_oversized_or_garbled_handshake_is_given_up_quietly() {
    // A message that says it is 16 MiB long, then garbage: no panic, nothing invented.
    let mut d = vec![22, 3, 3, 0, 8, 11, 0xff, 0xff, 0xff, 1, 2, 3, 4];
    d.extend_from_slice(&[22, 3, 3, 0, 4, 2, 0, 0, 0]);
    let s = walk(&d);
    assert_eq!((s.records, s.cert_subject, s.version), (2, None, None));
    assert!(s.handshake_too_long);
    // A Certificate message whose certificate is not DER.
    let cert = [11, 0, 0, 10, 0, 0, 7, 0, 0, 4, 0xde, 0xad, 0xbe, 0xef];
    let mut d = vec![22, 3, 3, 0, cert.len() as u8];
    d.extend_from_slice(&cert);
    let s = walk(&d);
    assert_eq!((s.cert_subject, s.handshake_too_long), (None, false));
}

/// The handshake messages of the clear part of `data` (before ChangeCipherSpec), whatever the
/// records: (type, length).
fn handshake_messages(data: &[u8]) -> Vec<(u8, usize)> {
    let recs = records(data);
    let ccs = recs.iter().position(|(t, _)| *t == 20).unwrap_or(recs.len());
    let hs: Vec<u8> = recs[..ccs].iter().filter(|(t, _)| *t == 22).flat_map(|(_, b)| b.clone()).collect();
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 4 <= hs.len() {
        let len = u32::from_be_bytes([0, hs[pos + 1], hs[pos + 2], hs[pos + 3]]) as usize;
        out.push((hs[pos], len));
        pos += 4 + len;
    }
    out
}

/// A STARTTLS session whose TLS is `tls_c2s` and `tls_s2c` (each direction whole, client
/// first), in 1448-byte segments, dissected by the tap.
fn starttls_session(tls_c2s: &[u8], tls_s2c: &[u8]) -> tap::Dissection {
    use tap::pcapwrite::{Flags, LinkKind, PcapWriter};
    let ends: [SocketAddr; 2] = ["192.0.2.1:40001".parse().expect("addr"), "192.0.2.25:25".parse().expect("addr")];
    let mut w = PcapWriter::new(Vec::new(), LinkKind::Ethernet).expect("header");
    let mut next = [1000u32, 5000u32];
    let mut ts = 1_700_000_000.0;
    let mut send = |w: &mut PcapWriter<Vec<u8>>, from: usize, flags: Flags, data: &[u8]| {
        for chunk in data.chunks(1448).chain(data.is_empty().then_some(&[][..])) {
            ts += 0.0001;
            w.write_tcp(ts, ends[from], ends[1 - from], next[from], next[1 - from], flags, chunk).expect("frame");
            next[from] = next[from].wrapping_add(chunk.len() as u32 + u32::from(flags.syn || flags.fin));
        }
    };
    let ack = Flags { ack: true, psh: true, ..Default::default() };
    send(&mut w, 0, Flags { syn: true, ..Default::default() }, b"");
    send(&mut w, 1, Flags { syn: true, ack: true, ..Default::default() }, b"");
    send(&mut w, 0, Flags { ack: true, ..Default::default() }, b"");
    send(&mut w, 1, ack, b"220 mx.example.org ESMTP\r\n");
    send(&mut w, 0, ack, b"EHLO client.example\r\n");
    send(&mut w, 1, ack, b"250-mx.example.org\r\n250 STARTTLS\r\n");
    send(&mut w, 0, ack, b"STARTTLS\r\n");
    send(&mut w, 1, ack, b"220 ready\r\n");
    send(&mut w, 0, ack, tls_c2s);
    send(&mut w, 1, ack, tls_s2c);
    let fin = Flags { fin: true, ack: true, ..Default::default() };
    send(&mut w, 0, fin, b"");
    send(&mut w, 1, fin, b"");
    tap::dissect_bytes("starttls.pcap", &w.into_inner()).expect("reads")
}

/// A certificate chain of 100 KiB and more in a real rustls TLS 1.2 server flight: a leaf with
/// 1500 names (CDN and hosting certificates carry hundreds to thousands), its CA, and two more
/// such certificates a careless server sends along (a whole bundle). The tap reads the leaf; the
/// 64 KiB bound it had would have given up on the handshake. (rustls itself reads no certificate
/// over 64 KiB and no handshake message over 64 KiB either, so its client stops after this
/// flight; OpenSSL's client accepts 100 KiB by default, Go's 256 KiB.)
#[test]
fn a_certificate_message_over_100_kib_is_read() {
    let many = |first: &str, tag: &str| {
        let mut names = vec![first.to_string()];
        names.extend((0..1500).map(|i| format!("customer-{i:04}.{tag}.example.org")));
        names
    };
    let names = many(HOST, "mx");
    let mut leaf = CertificateParams::new(names.clone()).expect("params");
    leaf.distinguished_name = DistinguishedName::new();
    leaf.distinguished_name.push(DnType::CountryName, "ZZ");
    leaf.distinguished_name.push(DnType::OrganizationName, "smtplab test");
    leaf.distinguished_name.push(DnType::CommonName, HOST);
    let mut pki = signed(leaf);
    for tag in ["bundle1", "bundle2"] {
        let other = CertificateParams::new(many("other.example.org", tag)).expect("params");
        pki.chain.push(other.self_signed(&KeyPair::generate().expect("key")).expect("cert").der().clone());
    }
    assert!(pki.chain.iter().all(|c| c.len() < 64 << 10), "each certificate as rustls can read it");
    let (c2s, s2c, _) = handshake_with(pki, &[&rustls::version::TLS12], None);
    let certificate = handshake_messages(&s2c).into_iter().find(|(t, _)| *t == 11).expect("a Certificate message");
    assert!(certificate.1 > 100 << 10, "{} bytes", certificate.1);
    for s in [walk(&s2c), walk(&reframe(&s2c, 1000))] {
        assert_eq!(s.cert_subject.as_deref(), Some("CN=mx.example.org,O=smtplab test,C=ZZ"));
        assert_eq!(s.cert_issuer.as_deref(), Some("CN=smtplab test CA"));
        assert_eq!(s.cert_san_dns, names);
        assert!(!s.handshake_too_long);
        // The message's buffer is let go once it is read.
        assert!(s.handshake.held_bytes() <= 64 << 10, "{}", s.handshake.held_bytes());
    }
    // The same in a capture, the TLS read as it arrives.
    let d = starttls_session(&c2s, &s2c);
    let [s] = &d.sessions[..] else { panic!("one session: {:#?}", d.sessions) };
    assert!(s.starttls_used);
    assert_eq!(s.cert_subject.as_deref(), Some("CN=mx.example.org,O=smtplab test,C=ZZ"));
    assert_eq!(s.cert_san_dns.len(), names.len());
    assert!(s.notes.is_empty(), "{:?}", s.notes);
}

/// TLS 1.2 handshake records (16 KiB each) holding a Certificate message of `len` bytes: the
/// leaf of [`certificates`], then a filler entry (the tap reads only the leaf).
fn certificate_message_of(len: usize) -> Vec<u8> {
    let leaf = certificates().chain.swap_remove(0);
    let u24 = |n: usize| (n as u32).to_be_bytes()[1..].to_vec();
    let filler = len - 9 - leaf.len();
    let mut msg = vec![11];
    msg.extend(u24(len));
    msg.extend(u24(len - 3));
    msg.extend(u24(leaf.len()));
    msg.extend_from_slice(&leaf);
    msg.extend(u24(filler));
    msg.resize(msg.len() + filler, 0x5a);
    assert_eq!(msg.len(), len + 4);
    let mut out = Vec::new();
    for chunk in msg.chunks(16 << 10) {
        out.extend_from_slice(&[22, 3, 3]);
        out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

#[test]
fn handshake_messages_are_read_up_to_the_bound_and_one_past_it_is_noted() {
    let max = tap::tls::MAX_HANDSHAKE_MESSAGE;
    assert_eq!(max, 1 << 20);
    let client_hello = [22, 3, 1, 0, 4, 1, 0, 0, 0];
    let at_bound = certificate_message_of(max);
    let s = walk(&at_bound);
    assert_eq!(s.cert_subject.as_deref(), Some("CN=mx.example.org,O=smtplab test,C=ZZ"));
    assert!(!s.handshake_too_long);
    let d = starttls_session(&client_hello, &at_bound);
    assert_eq!(d.sessions[0].cert_subject.as_deref(), Some("CN=mx.example.org,O=smtplab test,C=ZZ"));
    assert!(d.sessions[0].notes.is_empty(), "{:?}", d.sessions[0].notes);
    // One byte more: not read, and said so.
    let past = certificate_message_of(max + 1);
    let s = walk(&past);
    assert_eq!((s.cert_subject.as_deref(), s.handshake_too_long), (None, true));
    assert_eq!(s.records as usize, past.len().div_ceil((16 << 10) + 5), "the records are still counted");
    let d = starttls_session(&client_hello, &past);
    let [s] = &d.sessions[..] else { panic!("one session: {:#?}", d.sessions) };
    assert_eq!(s.cert_subject, None);
    assert_eq!(s.notes, ["tls_handshake_message_too_long"]);
}

/// A leaf for [`HOST`] whose subject a hostile or careless CA wrote: UTF-8 in three string
/// types, terminal escapes and other control characters, RFC 4514 specials, an attribute type
/// OpenSSL names and one it does not know. Subject RDNs in order C, O, OU, L, ST,
/// organizationIdentifier, 1.3.6.1.4.1.99999.1, CN.
fn hostile_names() -> CertificateParams {
    let mut p = CertificateParams::new(vec![HOST.to_string()]).expect("params");
    let dn = &mut p.distinguished_name;
    *dn = DistinguishedName::new();
    dn.push(DnType::CountryName, DnValue::PrintableString("ZZ".try_into().expect("printable")));
    dn.push(DnType::OrganizationName, "Müller & Söhne, Zürich");
    // ESC [31m (red), BEL, the one-character CSI U+009B, TAB, DEL.
    dn.push(DnType::OrganizationalUnitName, "ops\u{1b}[31m\u{7}red\u{9b}2J\ttab\u{7f}");
    dn.push(DnType::LocalityName, DnValue::BmpString("Ünïcode 東京".try_into().expect("BMP")));
    dn.push(DnType::StateOrProvinceName, DnValue::UniversalString("Straße 🦀".try_into().expect("UCS-4")));
    dn.push(DnType::CustomDnType(vec![2, 5, 4, 97]), "VATZZ-1");
    dn.push(DnType::CustomDnType(vec![1, 3, 6, 1, 4, 1, 99999, 1]), "hello");
    dn.push(DnType::CommonName, " #mx.例え.jp, \"q\" \\ ");
    p
}

/// [`hostile_names`] as the record keeps it: UTF-8 readable, control characters as `\XX` (each
/// byte of their UTF-8), specials escaped with `\`.
const HOSTILE_SUBJECT: &str = concat!(
    r#"CN=\ #mx.例え.jp\, \"q\" \\\ ,1.3.6.1.4.1.99999.1=#0C0568656C6C6F,organizationIdentifier=VATZZ-1,"#,
    r#"ST=Straße 🦀,L=Ünïcode 東京,OU=ops\1B[31m\07red\C2\9B2J\09tab\7F,O=Müller & Söhne\, Zürich,C=ZZ"#
);

/// What `openssl x509 -noout -subject -nameopt RFC2253` (OpenSSL 3.0.19) prints for the leaf of
/// [`hostile_names`] (its DER written by `write_hostile_certificates`), which is what Zeek's
/// X509 analyzer logs. (Zeek's log writer then writes each `\` as `\x5c`.)
const HOSTILE_SUBJECT_OPENSSL: &str = concat!(
    r#"CN=\ #mx.\E4\BE\8B\E3\81\88.jp\, \"q\" \\\ ,1.3.6.1.4.1.99999.1=#0C0568656C6C6F,"#,
    r#"organizationIdentifier=VATZZ-1,ST=Stra\C3\9Fe \F0\9F\A6\80,L=\C3\9Cn\C3\AFcode \E6\9D\B1\E4\BA\AC,"#,
    r#"OU=ops\1B[31m\07red\C2\9B2J\09tab\7F,O=M\C3\BCller & S\C3\B6hne\, Z\C3\BCrich,C=ZZ"#
);

#[test]
fn hostile_certificate_names_are_escaped_readable_and_as_openssl_writes_them() {
    let (c2s, s2c, refused) = handshake_with(signed(hostile_names()), &[&rustls::version::TLS12], None);
    assert!(refused.is_none(), "{refused:?}");
    let s = walk(&s2c);
    let subject = s.cert_subject.as_deref().expect("the certificate is read");
    assert_eq!(subject, HOSTILE_SUBJECT);
    assert!(!subject.chars().any(char::is_control), "no control character reaches a record");
    assert_eq!(tap::tls::openssl_rfc2253(subject), HOSTILE_SUBJECT_OPENSSL);
    assert_eq!(s.cert_issuer.as_deref(), Some("CN=smtplab test CA"));
    assert_eq!(walk(&c2s).sni.as_deref(), Some(HOST));
}

/// `der` with the only occurrence of `marker` replaced by `with`, of the same length.
fn patch(der: &mut [u8], marker: &[u8], with: &[u8]) {
    assert_eq!(marker.len(), with.len());
    let at: Vec<usize> = der.windows(marker.len()).enumerate().filter(|(_, w)| *w == marker).map(|(i, _)| i).collect();
    let [at] = at[..] else { panic!("{} occurrences of {marker:?}", at.len()) };
    der[at..at + with.len()].copy_from_slice(with);
}

/// A leaf whose names carry bytes no CA would sign (put in after signing: the tap does not check
/// signatures, and a client would refuse it): invalid UTF-8 in a UTF8String (GN), Latin-1 in
/// TeletexStrings (SN, and a C1 control and a NUL in title), and control characters and a
/// backslash in a subjectAltName DNS name. With `invalid_utf8: false`, GN stays valid, so that
/// OpenSSL reads the certificate (it refuses invalid UTF-8 in a name).
fn patched_leaf(invalid_utf8: bool) -> Vec<u8> {
    let mut p = CertificateParams::new(vec![HOST.to_string(), "ctl-MARKER.example".to_string()]).expect("params");
    let dn = &mut p.distinguished_name;
    *dn = DistinguishedName::new();
    dn.push(DnType::CustomDnType(vec![2, 5, 4, 42]), "ok@@@@");
    dn.push(DnType::CustomDnType(vec![2, 5, 4, 4]), DnValue::TeletexString("QQQQQ".try_into().expect("T61")));
    dn.push(DnType::CustomDnType(vec![2, 5, 4, 12]), DnValue::TeletexString("RRRR".try_into().expect("T61")));
    dn.push(DnType::CommonName, "smtp");
    let mut der = signed(p).chain[0].to_vec();
    if invalid_utf8 {
        patch(&mut der, b"@@@@", b"\xff\xc3(A");
    }
    patch(&mut der, b"QQQQQ", b"caf\xe9!");
    patch(&mut der, b"RRRR", b"a\x9b\x00b");
    patch(&mut der, b"MARKER", b"\x1b[2J\\\x07");
    der
}

/// A TLS 1.2 handshake record holding a Certificate message with `der` alone.
fn certificate_record(der: &[u8]) -> Vec<u8> {
    let u24 = |n: usize| (n as u32).to_be_bytes()[1..].to_vec();
    let mut msg = vec![11];
    msg.extend(u24(der.len() + 6));
    msg.extend(u24(der.len() + 3));
    msg.extend(u24(der.len()));
    msg.extend_from_slice(der);
    let mut rec = vec![22, 3, 3];
    rec.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    rec.extend(msg);
    rec
}

#[test]
fn bytes_that_do_not_decode_and_control_characters_are_escaped() {
    let s = walk(&certificate_record(&patched_leaf(true)));
    let subject = s.cert_subject.as_deref().expect("the certificate is read");
    // Latin-1 é kept as a character; U+009B and NUL as the bytes of their UTF-8; FF and C3
    // (which "(" does not continue) are not UTF-8: each byte as it is in the certificate.
    assert_eq!(subject, r"CN=smtp,title=a\C2\9B\00b,SN=café!,GN=ok\FF\C3(A");
    // The same with OpenSSL's escaping of non-ASCII, which `openssl x509 -nameopt RFC2253`
    // (3.0.19) prints for the certificate without the invalid UTF-8.
    assert_eq!(
        tap::tls::openssl_rfc2253(&walk(&certificate_record(&patched_leaf(false))).cert_subject.expect("read")),
        r"CN=smtp,title=a\C2\9B\00b,SN=caf\C3\A9!,GN=ok@@@@"
    );
    // Names that are not distinguished names: Zeek's log escaping, `\` included.
    assert_eq!(s.cert_san_dns, [HOST, r"ctl-\x1b[2J\x5c\x07.example"]);
    let (mut c2s, _) = handshake(&[&rustls::version::TLS12], None);
    patch(&mut c2s, HOST.as_bytes(), b"mx\x1b[2J\\\xff\xc3\xa9.org");
    assert_eq!(walk(&c2s).sni.as_deref(), Some(r"mx\x1b[2J\x5c\xffé.org"));
    for name in [subject, &s.cert_san_dns[1], &walk(&c2s).sni.expect("sni")] {
        assert!(!name.chars().any(char::is_control), "{name:?}");
    }
}

/// Writes the DER of [`hostile_names`]'s leaf to `$HOSTILE_DIR/hostile.der` and that of
/// `patched_leaf(false)` to `patched.der`, for OpenSSL:
/// `HOSTILE_DIR=/tmp cargo test -p smtplab-tap --test tls_handshake -- --ignored write_hostile`.
#[test]
#[ignore = "writes a file; run by hand"]
fn write_hostile_certificates() {
    let dir = std::path::PathBuf::from(std::env::var("HOSTILE_DIR").expect("HOSTILE_DIR"));
    std::fs::write(dir.join("hostile.der"), &signed(hostile_names()).chain[0]).expect("write");
    std::fs::write(dir.join("patched.der"), patched_leaf(false)).expect("write");
}

/// Regenerates the fuzz seed `tests/data/corpus/tls_walk/tls12-server-flight.bin` (a TLS 1.2
/// server flight in 200-byte records, its Certificate message across several):
/// `cargo test -p smtplab-tap --test tls_handshake -- --ignored write_tls12_seed`.
#[test]
#[ignore = "writes a corpus file; run by hand"]
fn write_tls12_seed() {
    let (_, s2c) = handshake(&[&rustls::version::TLS12], Some(200));
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/corpus/tls_walk/tls12-server-flight.bin");
    std::fs::write(path, s2c).expect("write");
}
