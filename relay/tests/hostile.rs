//! Hostile and broken peers, one test each. Every one gets the RFC reply or a clean close, the
//! relay keeps serving a well-behaved client meanwhile, and nothing accepted is lost.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use relay::{InboundTls, OutboundTls, RelayHandle};

/// A relay on its own runtime, so tests can talk to it with blocking sockets.
struct TestRelay {
    rt: tokio::runtime::Runtime,
    handle: Option<RelayHandle>,
    addr: SocketAddr,
    scratch: Scratch,
}

impl TestRelay {
    fn start(name: &str, addr: &str, tune: impl FnOnce(&mut relay::RelayConfig)) -> TestRelay {
        let scratch = Scratch::new(name);
        let addr: SocketAddr = addr.parse().expect("address");
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
        let (cert_chain_pem, key_pem, _) = certificate("relay.test.example");
        let mut cfg = test_config(&scratch.0, addr);
        cfg.tls_identity = Some(relay::TlsIdentity { cert_chain_pem, key_pem });
        tune(&mut cfg);
        let handle = rt.block_on(relay::Relay::start(cfg)).expect("relay starts");
        TestRelay { rt, handle: Some(handle), addr, scratch }
    }

    fn handle(&self) -> &RelayHandle {
        self.handle.as_ref().expect("running")
    }

    /// Files delivered into the local mailbox of `user@dest.example`.
    fn mailbox(&self, user: &str) -> Vec<Vec<u8>> {
        let dir = self.scratch.0.join("mailboxes/dest.example").join(user);
        let mut files: Vec<_> =
            std::fs::read_dir(dir).map(|r| r.flatten().map(|e| e.path()).collect()).unwrap_or_default();
        files.sort();
        files.iter().map(|p| std::fs::read(p).expect("mail")).collect()
    }

    fn wait_idle(&self) -> usize {
        self.rt.block_on(self.handle().wait_idle(Duration::from_secs(20)))
    }
}

impl Drop for TestRelay {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            self.rt.block_on(h.shutdown(Duration::from_secs(2)));
        }
    }
}

fn test_config(dir: &std::path::Path, addr: SocketAddr) -> relay::RelayConfig {
    relay::RelayConfig {
        system: "relay".into(),
        hostname: "relay.test.example".into(),
        listen: addr,
        submission: None,
        bind: Some(addr.ip()),
        spool: dir.join("spool"),
        local_domains: vec!["dest.example".into()],
        mailbox_dir: dir.join("mailboxes"),
        tls_identity: None,
        tls: relay::TlsSettings::default(),
        inbound_tls: InboundTls::May,
        outbound_tls: OutboundTls::May,
        outbound_tls_by_domain: Vec::new(),
        ca_pem: None,
        resolver: std::sync::Arc::new(relay::StaticResolver::new()),
        records: Some(dir.join("sessions.jsonl")),
        keylog: None,
        limits: relay::config::Limits {
            max_message_bytes: 1 << 20,
            max_recipients: 100,
            max_connections: 8,
            max_line: 4096,
        },
        timeouts: relay::config::Timeouts {
            greeting: Duration::from_secs(5),
            command: Duration::from_secs(5),
            data_block: Duration::from_secs(2),
            data_end: Duration::from_secs(5),
            server_idle: Duration::from_secs(3),
            retry_first: Duration::from_secs(1),
            retry_max: Duration::from_secs(2),
        },
    }
}

/// A blocking SMTP client that reads replies line by line.
struct Client {
    tcp: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(15))).expect("timeout");
        Client { tcp, buf: Vec::new() }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.tcp.write_all(bytes).expect("write");
    }

    /// The next reply (code, last line); `None` when the server closed the connection.
    fn reply(&mut self) -> Option<(u16, String)> {
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                let text = String::from_utf8_lossy(&line).trim_end().to_string();
                let code = text.get(..3).and_then(|c| c.parse().ok()).expect("reply code");
                if text.as_bytes().get(3) != Some(&b'-') {
                    return Some((code, text));
                }
                continue;
            }
            let mut chunk = [0u8; 4096];
            match self.tcp.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    fn expect(&mut self, code: u16) -> String {
        let (got, text) = self.reply().unwrap_or_else(|| panic!("connection closed, expected {code}"));
        assert_eq!(got, code, "{text}");
        text
    }

    fn greet(addr: SocketAddr) -> Client {
        let mut c = Client::connect(addr);
        c.expect(220);
        c.send(b"EHLO client.test\r\n");
        c.expect(250);
        c
    }
}

/// A normal transaction, which must succeed whatever else is going on.
fn good_transaction(addr: SocketAddr, user: &str) {
    let mut c = Client::greet(addr);
    c.send(format!("MAIL FROM:<a@src.example>\r\nRCPT TO:<{user}@dest.example>\r\nDATA\r\n").as_bytes());
    c.expect(250);
    c.expect(250);
    c.expect(354);
    c.send(b"Subject: good\r\n\r\nfine\r\n.\r\nQUIT\r\n");
    c.expect(250);
    c.expect(221);
}

#[test]
fn ten_megabyte_line_gets_500_and_session_continues() {
    let r = TestRelay::start("line", "127.0.81.1:2525", |_| {});
    let mut c = Client::greet(r.addr);
    let line = vec![b'x'; 10 << 20];
    c.send(&line);
    c.send(b"\r\nNOOP\r\n");
    c.expect(500);
    c.expect(250);
    good_transaction(r.addr, "good");
    assert_eq!(r.wait_idle(), 0);
    assert_eq!(r.mailbox("good").len(), 1);
}

#[test]
fn binary_garbage_gets_500_per_line() {
    let r = TestRelay::start("garbage", "127.0.81.2:2525", |_| {});
    let mut c = Client::greet(r.addr);
    // Deterministic bytes without line ends: one unparseable line.
    let garbage: Vec<u8> =
        (0..50_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).filter(|&b| b != b'\n').collect();
    c.send(&garbage);
    c.send(b"\r\n\x00\xff\xfe\r\nNOOP\r\n");
    c.expect(500);
    c.expect(500);
    c.expect(250);
    good_transaction(r.addr, "good");
}

#[test]
fn commands_out_of_order_get_503() {
    let r = TestRelay::start("order", "127.0.81.3:2525", |_| {});
    let mut c = Client::connect(r.addr);
    c.expect(220);
    c.send(b"MAIL FROM:<a@src.example>\r\n");
    c.expect(503);
    c.send(b"EHLO x\r\nRCPT TO:<b@dest.example>\r\nDATA\r\nBDAT 5 LAST\r\nhello");
    c.expect(250);
    c.expect(503);
    c.expect(503);
    c.expect(503);
    c.send(b"MAIL FROM:<a@src.example>\r\nMAIL FROM:<a@src.example>\r\nDATA\r\n");
    c.expect(250);
    c.expect(503);
    c.expect(554);
    c.send(b"RSET\r\nQUIT\r\n");
    c.expect(250);
    c.expect(221);
    good_transaction(r.addr, "good");
}

#[test]
fn five_thousand_recipients_are_capped() {
    let r = TestRelay::start("rcpts", "127.0.81.4:2525", |_| {});
    let mut c = Client::greet(r.addr);
    let mut batch = b"MAIL FROM:<a@src.example>\r\n".to_vec();
    for i in 0..5000 {
        batch.extend_from_slice(format!("RCPT TO:<u{i}@dest.example>\r\n").as_bytes());
    }
    c.send(&batch);
    c.expect(250);
    let mut accepted = 0;
    for _ in 0..5000 {
        match c.reply() {
            Some((250, _)) => accepted += 1,
            Some((452, _)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(accepted, 100, "max_recipients");
    c.send(b"DATA\r\n");
    c.expect(354);
    c.send(b"Subject: many\r\n\r\nhi\r\n.\r\n");
    c.expect(250);
    assert_eq!(r.wait_idle(), 0);
    assert_eq!(r.mailbox("u0").len(), 1);
    assert_eq!(r.mailbox("u99").len(), 1);
    assert!(r.mailbox("u100").is_empty());
}

#[test]
fn data_that_never_ends_times_out_and_nothing_is_queued() {
    let r = TestRelay::start("stall", "127.0.81.5:2525", |_| {});
    let mut c = Client::greet(r.addr);
    c.send(b"MAIL FROM:<a@src.example>\r\nRCPT TO:<x@dest.example>\r\nDATA\r\n");
    c.expect(250);
    c.expect(250);
    c.expect(354);
    c.send(b"Subject: stall\r\n\r\nand then nothing");
    good_transaction(r.addr, "good");
    // The server's 421 (not the client's own read timeout) proves its data timeout fired.
    c.expect(421);
    assert!(c.reply().is_none(), "closed after 421");
    assert_eq!(r.wait_idle(), 0);
    assert!(r.mailbox("x").is_empty());
    assert_eq!(r.mailbox("good").len(), 1);
}

#[test]
fn plaintext_pipelined_after_starttls_is_refused() {
    let r = TestRelay::start("cve", "127.0.81.6:2525", |_| {});
    let mut c = Client::greet(r.addr);
    c.send(b"STARTTLS\r\nRSET\r\n");
    let (code, text) = c.reply().expect("a reply");
    assert_eq!(code, 554, "no 220 when plaintext follows STARTTLS: {text}");
    assert!(c.reply().is_none(), "and the connection is closed");
    good_transaction(r.addr, "good");
}

#[test]
fn one_byte_per_second_is_served_or_closed() {
    let r = TestRelay::start("slow", "127.0.81.7:2525", |_| {});
    let mut c = Client::greet(r.addr);
    for b in b"NOOP\r\n" {
        c.send(&[*b]);
        std::thread::sleep(Duration::from_millis(1000));
    }
    good_transaction(r.addr, "good");
    assert_eq!(c.reply().map(|r| r.0), Some(250));
    // Then silence: the idle timeout closes it with 421.
    assert_eq!(c.reply().map(|r| r.0), Some(421));
}

#[test]
fn connections_beyond_the_limit_get_421() {
    let r = TestRelay::start("conns", "127.0.81.8:2525", |_| {});
    let idle: Vec<Client> = (0..8).map(|_| Client::greet(r.addr)).collect();
    let mut extra = Client::connect(r.addr);
    let (code, _) = extra.reply().expect("a reply");
    assert_eq!(code, 421);
    assert!(extra.reply().is_none());
    drop(idle);
    std::thread::sleep(Duration::from_millis(300));
    good_transaction(r.addr, "good");
}

#[test]
fn bdat_chunks_are_joined_and_size_is_enforced() {
    let r = TestRelay::start("bdat", "127.0.81.9:2525", |_| {});
    let mut c = Client::greet(r.addr);
    c.send(b"MAIL FROM:<a@src.example>\r\nRCPT TO:<chunky@dest.example>\r\nBDAT 21\r\nSubject: bdat\r\n\r\n.dotBDAT 9 LAST\r\n ending\r\n");
    c.expect(250);
    c.expect(250);
    c.expect(250);
    c.expect(250);
    // A message over the size limit is refused, and its chunk consumed.
    c.send(b"MAIL FROM:<a@src.example>\r\nRCPT TO:<big@dest.example>\r\n");
    c.expect(250);
    c.expect(250);
    let big = vec![b'a'; (1 << 20) + 10];
    c.send(format!("BDAT {} LAST\r\n", big.len()).as_bytes());
    c.send(&big);
    c.expect(552);
    c.send(b"NOOP\r\n");
    c.expect(250);
    assert_eq!(r.wait_idle(), 0);
    let got = r.mailbox("chunky");
    assert_eq!(got.len(), 1);
    assert_eq!(strip_trace_headers(&got[0]), b"Subject: bdat\r\n\r\n.dot ending\r\n", "no unstuffing in BDAT");
    assert!(r.mailbox("big").is_empty());
}

/// A next hop that answers STARTTLS with its 220 and, in the same write, an injected reply
/// (the NO STARTTLS study's response injection). The relay must not go on.
#[test]
fn response_injection_after_starttls_220_is_refused() {
    let fake = TcpListener::bind("127.0.81.20:2525").expect("fake server");
    let server = std::thread::spawn(move || {
        let (mut s, _) = fake.accept().expect("relay connects");
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let mut seen = Vec::new();
        s.write_all(b"220 evil ESMTP\r\n").expect("greet");
        let mut buf = [0u8; 1024];
        let mut said_starttls = false;
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&seen).to_string();
            if text.ends_with("EHLO relay.test.example\r\n") && !said_starttls {
                s.write_all(b"250-evil\r\n250 STARTTLS\r\n").expect("ehlo");
            }
            if text.ends_with("STARTTLS\r\n") && !said_starttls {
                said_starttls = true;
                s.write_all(b"220 go ahead\r\n250 injected\r\n").expect("inject");
            }
        }
        String::from_utf8_lossy(&seen).to_string()
    });
    let r = TestRelay::start("inject", "127.0.81.21:2525", |cfg| {
        let mut res = relay::StaticResolver::new();
        res.add(
            "evil.example",
            relay::MxTarget {
                host: "mx.evil.example".into(),
                addr: "127.0.81.20:2525".parse().expect("addr"),
                system: None,
            },
        );
        cfg.resolver = std::sync::Arc::new(res);
    });
    let mut c = Client::greet(r.addr);
    c.send(b"MAIL FROM:<a@src.example>\r\nRCPT TO:<victim@evil.example>\r\nDATA\r\n");
    c.expect(250);
    c.expect(250);
    c.expect(354);
    c.send(b"Subject: secret\r\n\r\nsecret\r\n.\r\n");
    c.expect(250);
    let seen = server.join().expect("fake server");
    assert!(!seen.contains("MAIL FROM"), "nothing sent after the injection: {seen}");
    // The record is written just after the connection closes: give it a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut records = relay_records(&r.scratch.0);
    while !records.iter().any(|s| s.direction == "outbound") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        records = relay_records(&r.scratch.0);
    }
    let out = records.iter().find(|s| s.direction == "outbound").expect("outbound record");
    assert_eq!(out.outcome, "deferred");
    assert!(out.error.as_deref().unwrap_or("").contains("response injection"), "{:?}", out.error);
    assert_eq!(r.handle().queued(), 1, "the message stays queued, not lost");
}

/// `verify`: the certificate must chain to the configured CA and name the MX.
#[test]
fn verify_policy_checks_chain_and_name() {
    let (cert, key, ca) = certificate("mx.dest.example");
    let dest = TestRelay::start("verify-dest", "127.0.81.30:2525", |cfg| {
        cfg.tls_identity = Some(relay::TlsIdentity { cert_chain_pem: cert.clone(), key_pem: key.clone() });
    });
    let route = |cfg: &mut relay::RelayConfig, ca_pem: String| {
        let mut res = relay::StaticResolver::new();
        res.add(
            "dest.example",
            relay::MxTarget {
                host: "mx.dest.example".into(),
                addr: "127.0.81.30:2525".parse().expect("addr"),
                system: None,
            },
        );
        cfg.resolver = std::sync::Arc::new(res);
        cfg.local_domains = vec![];
        cfg.outbound_tls = OutboundTls::Verify;
        cfg.ca_pem = Some(ca_pem);
    };
    let (_, _, other_ca) = certificate("unrelated");
    let trusting = TestRelay::start("verify-good", "127.0.81.31:2525", |cfg| route(cfg, ca.clone()));
    let doubting = TestRelay::start("verify-bad", "127.0.81.32:2525", |cfg| route(cfg, other_ca.clone()));
    for (r, user) in [(&trusting, "trusted"), (&doubting, "doubted")] {
        let mut c = Client::greet(r.addr);
        c.send(format!("MAIL FROM:<a@src.example>\r\nRCPT TO:<{user}@dest.example>\r\nDATA\r\n").as_bytes());
        c.expect(250);
        c.expect(250);
        c.expect(354);
        c.send(b"Subject: v\r\n\r\nv\r\n.\r\n");
        c.expect(250);
    }
    assert_eq!(trusting.wait_idle(), 0);
    assert_eq!(dest.wait_idle(), 0);
    assert_eq!(dest.mailbox("trusted").len(), 1);
    let good = relay_records(&trusting.scratch.0);
    let hop = good.iter().find(|s| s.direction == "outbound").expect("hop");
    assert!(hop.starttls_used && hop.cert_verified, "{hop:?}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(dest.mailbox("doubted").is_empty(), "an unverifiable certificate gets no mail");
    let bad = relay_records(&doubting.scratch.0);
    let hop = bad.iter().find(|s| s.direction == "outbound").expect("hop");
    assert_eq!(hop.outcome, "deferred");
    assert!(hop.error.as_deref().unwrap_or("").contains("TLS handshake"), "{:?}", hop.error);
}

/// A 5xx from the next hop bounces the message to its sender as an RFC 3464 report.
#[test]
fn permanent_failure_bounces_to_the_sender() {
    // The next hop refuses the domain (554 5.7.1 relay access denied).
    let _refuser = TestRelay::start("bounce-refuser", "127.0.81.40:2525", |cfg| cfg.local_domains = vec![]);
    let r = TestRelay::start("bounce", "127.0.81.41:2525", |cfg| {
        let mut res = relay::StaticResolver::new();
        res.add(
            "gone.example",
            relay::MxTarget {
                host: "mx.gone.example".into(),
                addr: "127.0.81.40:2525".parse().expect("addr"),
                system: None,
            },
        );
        cfg.resolver = std::sync::Arc::new(res);
    });
    let mut c = Client::greet(r.addr);
    c.send(b"MAIL FROM:<sender@dest.example>\r\nRCPT TO:<nobody@gone.example>\r\nDATA\r\n");
    c.expect(250);
    c.expect(250);
    c.expect(354);
    c.send(b"Subject: doomed\r\nMessage-ID: <doomed@dest.example>\r\n\r\nbye\r\n.\r\n");
    c.expect(250);
    assert_eq!(r.wait_idle(), 0);
    let dsn = r.mailbox("sender");
    assert_eq!(dsn.len(), 1, "one bounce");
    let text = String::from_utf8_lossy(&dsn[0]);
    assert!(text.contains("Content-Type: multipart/report; report-type=delivery-status"), "{text}");
    assert!(text.contains("Final-Recipient: rfc822; nobody@gone.example"), "{text}");
    assert!(text.contains("Status: 5.7.1"), "{text}");
    assert!(text.contains("Subject: doomed"), "original headers returned: {text}");
}
