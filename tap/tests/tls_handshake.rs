//! Real TLS handshakes, made in memory by rustls (no socket) with a certificate rcgen signs
//! for the test, walked by `tap::tls` as the eavesdropper walks a STARTTLS stream: what the
//! client offered, what the server chose, and in TLS 1.2 the certificate, also when its
//! message spans many records or shares a record with others.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tap::tls::{TlsSummary, walk};

const HOST: &str = "mx.example.org";

/// A CA and a leaf for [`HOST`] (and a second DNS name), subject `C=ZZ, O=smtplab test, CN=HOST`.
fn certificates() -> (CertificateDer<'static>, CertificateDer<'static>, PrivateKeyDer<'static>) {
    let ca_key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name.push(DnType::CommonName, "smtplab test CA");
    let ca_cert = ca.self_signed(&ca_key).expect("CA");
    let key = KeyPair::generate().expect("key");
    let mut leaf = CertificateParams::new(vec![HOST.to_string(), "mail.example.org".to_string()]).expect("params");
    leaf.distinguished_name = DistinguishedName::new();
    leaf.distinguished_name.push(DnType::CountryName, "ZZ");
    leaf.distinguished_name.push(DnType::OrganizationName, "smtplab test");
    leaf.distinguished_name.push(DnType::CommonName, HOST);
    let leaf_cert = leaf.signed_by(&key, &ca_cert, &ca_key).expect("leaf");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    (ca_cert.der().clone(), leaf_cert.der().clone(), key)
}

/// The bytes each way of a complete handshake (client to server, server to client), the
/// server offering only `server_versions` and cutting its records at `max_fragment` bytes.
fn handshake(
    server_versions: &[&'static rustls::SupportedProtocolVersion],
    max_fragment: Option<usize>,
) -> (Vec<u8>, Vec<u8>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (ca, leaf, key) = certificates();
    let mut sc = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(server_versions)
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![leaf, ca.clone()], key)
        .expect("server config");
    sc.max_fragment_size = max_fragment;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).expect("root");
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
            client.process_new_packets().expect("client accepts");
        }
        if !client.is_handshaking() && !server.is_handshaking() {
            return (c2s, s2c);
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
    // A Certificate message whose certificate is not DER.
    let cert = [11, 0, 0, 10, 0, 0, 7, 0, 0, 4, 0xde, 0xad, 0xbe, 0xef];
    let mut d = vec![22, 3, 3, 0, cert.len() as u8];
    d.extend_from_slice(&cert);
    assert_eq!(walk(&d).cert_subject, None);
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
