//! The eavesdropper's estimators inside TLS, on real TLS: rustls client and server in memory
//! (no socket), STARTTLS sessions carrying N messages of sizes the test chose, written as a
//! pcap segment by segment and read by `tap::dissect_bytes`. Expected counts and sizes are the
//! messages the test generated; expected records are the test's own walk of the bytes rustls
//! wrote, dated by the segment that carried each record's last byte.
//!
//! The tolerance checked is the one ANALYSIS.md states ("Messages and sizes inside TLS"):
//! each size within 1% + 8 bytes of the message's.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use records::TlsAppRecord;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tap::pcapwrite::{Flags, LinkKind, PcapWriter};

const HOST: &str = "mx.example.org";
const SEGMENT: usize = 1448;

/// A TLS version with one cipher suite, as the server and client both allow.
#[derive(Clone, Copy, Debug)]
struct Tls {
    version: &'static rustls::SupportedProtocolVersion,
    suite: rustls::SupportedCipherSuite,
    /// How the tap names the suite.
    name: &'static str,
}

fn variants() -> Vec<Tls> {
    use rustls::crypto::ring::cipher_suite as cs;
    use rustls::version::{TLS12, TLS13};
    vec![
        Tls { version: &TLS13, suite: cs::TLS13_AES_256_GCM_SHA384, name: "TLS_AES_256_GCM_SHA384" },
        Tls { version: &TLS13, suite: cs::TLS13_CHACHA20_POLY1305_SHA256, name: "TLS_CHACHA20_POLY1305_SHA256" },
        Tls {
            version: &TLS12,
            suite: cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            name: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        },
        Tls {
            version: &TLS12,
            suite: cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            name: "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        },
    ]
}

/// A connected rustls pair for `tls`, with a CA and leaf made for the test.
fn pair(tls: Tls) -> (rustls::Connection, rustls::Connection) {
    let ca_key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).expect("CA");
    let key = KeyPair::generate().expect("key");
    let leaf = CertificateParams::new(vec![HOST.to_string()]).expect("params");
    let leaf = leaf.signed_by(&key, &ca_cert, &ca_key).expect("leaf");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let chain: Vec<CertificateDer<'static>> = vec![leaf.der().clone(), ca_cert.der().clone()];
    let provider = Arc::new(rustls::crypto::CryptoProvider {
        cipher_suites: vec![tls.suite],
        ..rustls::crypto::ring::default_provider()
    });
    let sc = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[tls.version])
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_cert.der().clone()).expect("root");
    let cc = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[tls.version])
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let client = rustls::ClientConnection::new(Arc::new(cc), ServerName::try_from(HOST).expect("name")).expect("c");
    let server = rustls::ServerConnection::new(Arc::new(sc)).expect("server");
    (client.into(), server.into())
}

/// One TCP connection written to a pcap, every segment 1 ms after the one before; what the
/// test expects the tap to list of its application-data records.
struct Wire {
    w: PcapWriter<Vec<u8>>,
    ends: [SocketAddr; 2],
    next: [u32; 2],
    ts: f64,
    expected: Vec<TlsAppRecord>,
}

impl Wire {
    fn new() -> Self {
        Self {
            w: PcapWriter::new(Vec::new(), LinkKind::Ethernet).expect("header"),
            ends: ["192.0.2.1:40001".parse().expect("addr"), "192.0.2.25:25".parse().expect("addr")],
            next: [1000, 5000],
            ts: 1_700_000_000.0,
            expected: Vec::new(),
        }
    }

    /// Sends `data` in segments; returns the time of each.
    fn send(&mut self, from: usize, flags: Flags, data: &[u8]) -> Vec<f64> {
        let mut times = Vec::new();
        for chunk in data.chunks(SEGMENT).chain(data.is_empty().then_some(&[][..])) {
            self.ts += 0.001;
            times.push(self.ts);
            let (a, b) = (self.ends[from], self.ends[1 - from]);
            self.w.write_tcp(self.ts, a, b, self.next[from], self.next[1 - from], flags, chunk).expect("frame");
            self.next[from] = self.next[from].wrapping_add(chunk.len() as u32 + u32::from(flags.syn || flags.fin));
        }
        times
    }

    fn data(&mut self, from: usize, data: &[u8]) -> Vec<f64> {
        self.send(from, Flags { ack: true, psh: true, ..Default::default() }, data)
    }

    /// TLS bytes (whole records, as rustls writes them): sent, and their application-data
    /// records noted with the time of the segment holding each one's last byte.
    fn tls(&mut self, from: usize, data: &[u8]) {
        let times = self.data(from, data);
        let mut pos = 0;
        while pos + 5 <= data.len() {
            let len = usize::from(u16::from_be_bytes([data[pos + 3], data[pos + 4]]));
            let end = pos + 5 + len;
            if data[pos] == 23 {
                let ts = times[(end - 1) / SEGMENT];
                self.expected.push(TlsAppRecord { ts, orig: from == 0, len: (5 + len) as u32 });
            }
            pos = end;
        }
        assert_eq!(pos, data.len(), "whole records");
    }
}

/// Moves what `from` has to send to `to`, onto the wire; false when there was nothing.
fn pump(wire: &mut Wire, dir: usize, from: &mut rustls::Connection, to: &mut rustls::Connection) -> bool {
    let mut buf = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut buf).expect("writes");
    }
    if buf.is_empty() {
        return false;
    }
    let mut rd = &buf[..];
    while !rd.is_empty() {
        to.read_tls(&mut rd).expect("reads");
        to.process_new_packets().expect("accepts");
        // The plaintext is not looked at, but must not fill rustls's buffer. (The read ends
        // with WouldBlock once it has taken all there is.)
        let _ = std::io::Read::read_to_end(&mut to.reader(), &mut Vec::new());
    }
    wire.tls(dir, &buf);
    true
}

/// A message of exactly `size` bytes: headers, then lines of text, CRLF-terminated; no line
/// starts with a dot, so DATA carries it unchanged.
fn message(k: usize, size: usize) -> Vec<u8> {
    let mut m = format!("From: a@client.example\r\nTo: b@{HOST}\r\nSubject: message {k}\r\n\r\n").into_bytes();
    let line = b"The quick brown fox jumps over the lazy dog, again and again.\r\n";
    while m.len() + line.len() <= size {
        m.extend_from_slice(line);
    }
    let rest = size - m.len();
    assert!(rest == 0 || rest >= 2, "size {size}");
    if rest > 0 {
        m.extend(std::iter::repeat_n(b'x', rest - 2));
        m.extend_from_slice(b"\r\n");
    }
    assert_eq!(m.len(), size);
    m
}

/// Sizes from a few hundred bytes to 70 kB (several 16 KiB records).
fn sizes(n: usize) -> Vec<usize> {
    (0..n).map(|k| 300 + (k * 7919 + 1234) % 70_000).collect()
}

/// How the client writes its commands.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Shape {
    /// Each command on its own turn (no PIPELINING), QUIT at the end.
    OneByOne,
    /// MAIL, RCPT and DATA in one write, one write for their replies; QUIT at the end.
    Pipelined,
    /// Postfix reusing a cached connection: MAIL, RCPT and DATA in one write, RSET on its own
    /// turn before each further transaction, and the connection closed with close_notify and no
    /// QUIT (the cache's idle limit).
    PostfixReuse,
}

/// A STARTTLS session carrying messages of `sizes` over `tls`, its commands written as `shape`
/// says.
fn session(tls: Tls, sizes: &[usize], shape: Shape) -> (records::TapSession, Vec<TlsAppRecord>) {
    let mut wire = Wire::new();
    wire.send(0, Flags { syn: true, ..Default::default() }, b"");
    wire.send(1, Flags { syn: true, ack: true, ..Default::default() }, b"");
    wire.send(0, Flags { ack: true, ..Default::default() }, b"");
    wire.data(1, b"220 mx.example.org ESMTP\r\n");
    wire.data(0, b"EHLO client.example\r\n");
    wire.data(1, b"250-mx.example.org\r\n250-PIPELINING\r\n250 STARTTLS\r\n");
    wire.data(0, b"STARTTLS\r\n");
    wire.data(1, b"220 2.0.0 Ready to start TLS\r\n");
    let (mut c, mut s) = pair(tls);
    for _ in 0..10 {
        let up = pump(&mut wire, 0, &mut c, &mut s);
        let down = pump(&mut wire, 1, &mut s, &mut c);
        if !up && !down && !c.is_handshaking() && !s.is_handshaking() {
            break;
        }
    }
    assert!(!c.is_handshaking() && !s.is_handshaking());
    c.set_buffer_limit(None);
    s.set_buffer_limit(None);
    // The client writes `up` (one write: rustls makes records of up to 16 KiB of it), the
    // server answers with `down`.
    let turn = |wire: &mut Wire, c: &mut rustls::Connection, s: &mut rustls::Connection, up: &[u8], down: &[u8]| {
        c.writer().write_all(up).expect("client writes");
        pump(wire, 0, c, s);
        s.writer().write_all(down).expect("server writes");
        pump(wire, 1, s, c);
    };
    turn(
        &mut wire,
        &mut c,
        &mut s,
        b"EHLO client.example\r\n",
        b"250-mx.example.org\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
    );
    for (k, &size) in sizes.iter().enumerate() {
        let mail = format!("MAIL FROM:<a{k}@client.example> SIZE={size}\r\n");
        let rcpt = format!("RCPT TO:<b{k}@{HOST}>\r\n");
        if shape == Shape::PostfixReuse && k > 0 {
            turn(&mut wire, &mut c, &mut s, b"RSET\r\n", b"250 2.0.0 Ok\r\n");
        }
        if shape != Shape::OneByOne {
            let group = [mail.as_bytes(), rcpt.as_bytes(), b"DATA\r\n"].concat();
            turn(
                &mut wire,
                &mut c,
                &mut s,
                &group,
                b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n",
            );
        } else {
            turn(&mut wire, &mut c, &mut s, mail.as_bytes(), b"250 2.1.0 Ok\r\n");
            turn(&mut wire, &mut c, &mut s, rcpt.as_bytes(), b"250 2.1.5 Ok\r\n");
            turn(&mut wire, &mut c, &mut s, b"DATA\r\n", b"354 End data with <CR><LF>.<CR><LF>\r\n");
        }
        let body = [message(k, size).as_slice(), b".\r\n"].concat();
        turn(&mut wire, &mut c, &mut s, &body, format!("250 2.0.0 Ok: queued as Q{k}\r\n").as_bytes());
    }
    if shape != Shape::PostfixReuse {
        turn(&mut wire, &mut c, &mut s, b"QUIT\r\n", b"221 2.0.0 Bye\r\n");
    }
    c.send_close_notify();
    pump(&mut wire, 0, &mut c, &mut s);
    s.send_close_notify();
    pump(&mut wire, 1, &mut s, &mut c);
    let fin = Flags { fin: true, ack: true, ..Default::default() };
    wire.send(0, fin, b"");
    wire.send(1, fin, b"");
    let expected = std::mem::take(&mut wire.expected);
    let d = tap::dissect_bytes("estimates.pcap", &wire.w.into_inner()).expect("reads");
    assert_eq!(d.sessions.len(), 1);
    (d.sessions.into_iter().next().expect("one"), expected)
}

#[test]
fn messages_and_their_sizes_are_recovered_from_tls_records() {
    for tls in variants() {
        for shape in [Shape::OneByOne, Shape::Pipelined, Shape::PostfixReuse] {
            for n in [1, 3, 10] {
                let want = sizes(n);
                let (s, records) = session(tls, &want, shape);
                let case = format!("{:?} {} {shape:?} n={n}", tls.version.version, tls.name);
                assert!(s.starttls_used, "{case}");
                assert_eq!(s.tls_cipher.as_deref(), Some(tls.name), "{case}");
                // The records the test wrote, dated as sent (a pcap keeps microseconds).
                let seen: Vec<(bool, u32)> = s.tls_app_records.iter().map(|r| (r.orig, r.len)).collect();
                let sent: Vec<(bool, u32)> = records.iter().map(|r| (r.orig, r.len)).collect();
                assert_eq!(seen, sent, "{case}");
                for (a, b) in s.tls_app_records.iter().zip(&records) {
                    assert!((a.ts - b.ts).abs() < 2e-6, "{case}: {} for {}", a.ts, b.ts);
                }
                assert_eq!(s.tls_app_records_beyond, 0);
                assert_eq!(s.est_messages, Some(n as u64), "{case}: {:?}", s.est_message_bytes);
                assert_eq!(s.est_message_bytes.len(), n, "{case}");
                for (got, &size) in s.est_message_bytes.iter().zip(&want) {
                    let tolerance = size as f64 * 0.01 + 8.0;
                    assert!((*got as f64 - size as f64).abs() <= tolerance, "{case}: {got} for {size}");
                }
            }
        }
    }
}

/// A plaintext session: the count and sizes are those of the messages read in the clear.
#[test]
fn in_the_clear_the_messages_read_are_the_estimate() {
    let mut wire = Wire::new();
    wire.send(0, Flags { syn: true, ..Default::default() }, b"");
    wire.send(1, Flags { syn: true, ack: true, ..Default::default() }, b"");
    wire.data(1, b"220 mx.example.org ESMTP\r\n");
    wire.data(0, b"EHLO client.example\r\n");
    wire.data(1, b"250 mx.example.org\r\n");
    let want = sizes(3);
    for (k, &size) in want.iter().enumerate() {
        wire.data(0, b"MAIL FROM:<a@client.example>\r\nRCPT TO:<b@mx.example.org>\r\nDATA\r\n");
        wire.data(1, b"250 ok\r\n250 ok\r\n354 go\r\n");
        wire.data(0, &[message(k, size).as_slice(), b".\r\n"].concat());
        wire.data(1, b"250 queued\r\n");
    }
    let fin = Flags { fin: true, ack: true, ..Default::default() };
    wire.send(0, fin, b"");
    wire.send(1, fin, b"");
    let d = tap::dissect_bytes("clear.pcap", &wire.w.into_inner()).expect("reads");
    let s = &d.sessions[0];
    assert_eq!(s.est_messages, Some(3));
    assert_eq!(s.est_message_bytes, want.iter().map(|&n| n as u64).collect::<Vec<_>>());
    assert!(s.tls_app_records.is_empty());
}
