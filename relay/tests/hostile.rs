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
        relay_domains: Vec::new(),
        // Nobody may relay unless a test says so: the test client is not trusted.
        relay_clients: Vec::new(),
        mailbox_dir: dir.join("mailboxes"),
        tls_identity: None,
        tls: relay::TlsSettings::default(),
        inbound_tls: InboundTls::May,
        outbound_tls: OutboundTls::May,
        outbound_tls_by_domain: Vec::new(),
        mta_sts: None,
        ca_pem: None,
        resolver: std::sync::Arc::new(relay::StaticResolver::new()),
        records: Some(dir.join("sessions.jsonl")),
        keylog: None,
        limits: relay::config::Limits {
            max_message_bytes: 1 << 20,
            max_recipients: 100,
            max_connections: 8,
            max_connections_per_client: 8,
            max_line: 4096,
            min_data_rate: 500,
            hop_limit: 50,
            max_logged_replies: 1000,
            max_reply_bytes: 64 << 10,
        },
        timeouts: relay::config::Timeouts {
            greeting: Duration::from_secs(5),
            command: Duration::from_secs(5),
            data_block: Duration::from_secs(2),
            data_end: Duration::from_secs(5),
            server_idle: Duration::from_secs(3),
            write: Duration::from_secs(2),
            session: Duration::from_secs(120),
            retry_first: Duration::from_secs(1),
            retry_max: Duration::from_secs(2),
            queue_lifetime: Duration::from_secs(3600),
        },
        delivery: Default::default(),
    }
}

/// The test client's address (it connects without choosing one), as a trusted network.
fn trusted_test_client() -> Vec<relay::config::IpNet> {
    vec![relay::config::parse_client_network("127.0.0.1").expect("network")]
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

    /// Connects from a chosen source address, optionally with a small receive buffer (so a
    /// client that stops reading fills it fast).
    fn connect_from(addr: SocketAddr, source: &str, recv_buffer: Option<u32>) -> Client {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
        let tcp = rt.block_on(async {
            let s = tokio::net::TcpSocket::new_v4().expect("socket");
            if let Some(size) = recv_buffer {
                s.set_recv_buffer_size(size).expect("SO_RCVBUF");
            }
            s.bind(SocketAddr::new(source.parse().expect("source"), 0)).expect("bind");
            s.connect(addr).await.expect("connect")
        });
        let tcp = tcp.into_std().expect("std socket");
        tcp.set_nonblocking(false).expect("blocking");
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
    // Deterministic bytes without line ends (no LF, no CR): one unparseable line.
    let garbage: Vec<u8> = (0..50_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .filter(|&b| b != b'\n' && b != b'\r')
        .collect();
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
        cfg.relay_clients = trusted_test_client();
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
        cfg.relay_clients = trusted_test_client();
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
        cfg.relay_clients = trusted_test_client();
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

/// Waits (up to 20 s) for a session record that `want` accepts; the relay writes a session's
/// record just after the connection ends.
fn wait_for_record(dir: &std::path::Path, want: impl Fn(&records::SessionRecord) -> bool) -> records::SessionRecord {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(r) = relay_records(dir).into_iter().find(|r| want(r)) {
            return r;
        }
        assert!(Instant::now() < deadline, "no such record in {:#?}", relay_records(dir));
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Domains the resolver can route, the way DNS would, and which it was asked about: a refusal
/// must come before any lookup (an open relay's DNS queries are already a leak).
struct RoutingResolver {
    routes: relay::StaticResolver,
    asked: std::sync::Mutex<Vec<String>>,
}

impl relay::MxResolver for RoutingResolver {
    fn resolve<'a>(&'a self, domain: &'a str) -> relay::resolver::Resolving<'a> {
        self.asked.lock().expect("lock").push(domain.to_string());
        self.routes.resolve(domain)
    }
}

/// Open relay: a domain the resolver (DNS) can route is still refused to a client that may not
/// relay, on both listeners; local and relay domains are accepted from anyone; a trusted client
/// may send anywhere.
#[test]
fn relaying_is_only_for_local_and_relay_domains_or_trusted_clients() {
    let mut routes = relay::StaticResolver::new();
    for domain in ["elsewhere.example", "partner.example"] {
        let target = relay::MxTarget {
            host: format!("mx.{domain}"),
            addr: "127.0.81.99:2525".parse().expect("addr"),
            system: None,
        };
        routes.add(domain, target);
    }
    let resolver = std::sync::Arc::new(RoutingResolver { routes, asked: Default::default() });
    let open = resolver.clone();
    let r = TestRelay::start("open-relay", "127.0.82.1:2525", |cfg| {
        cfg.resolver = open;
        cfg.relay_domains = vec!["partner.example".into()];
        cfg.submission = Some("127.0.82.1:2587".parse().expect("addr"));
    });
    for addr in [r.addr, r.handle().submission.expect("submission listener")] {
        let mut c = Client::greet(addr);
        c.send(b"MAIL FROM:<spammer@src.example>\r\n");
        c.expect(250);
        for (rcpt, code) in [
            ("victim@elsewhere.example", 554),
            ("victim@Elsewhere.Example.", 554),
            ("user@dest.example", 250),
            ("user@partner.example", 250),
        ] {
            c.send(format!("RCPT TO:<{rcpt}>\r\n").as_bytes());
            let text = c.expect(code);
            if code == 554 {
                assert!(text.contains("5.7.1") && text.contains("Relay access denied"), "{text}");
            }
        }
        c.send(b"QUIT\r\n");
        c.expect(221);
    }
    let asked = resolver.asked.lock().expect("lock").clone();
    assert!(!asked.iter().any(|d| d.contains("elsewhere")), "no lookup for a refused domain: {asked:?}");

    let trusting = TestRelay::start("open-relay-trusted", "127.0.82.2:2525", |cfg| {
        cfg.resolver = resolver.clone();
        cfg.relay_clients = trusted_test_client();
    });
    let mut c = Client::greet(trusting.addr);
    c.send(b"MAIL FROM:<user@src.example>\r\nRCPT TO:<friend@elsewhere.example>\r\nQUIT\r\n");
    c.expect(250);
    c.expect(250);
    c.expect(221);
}

/// A client that sends and never reads fills its buffers; the relay's write then cannot finish
/// and the session is cut off, instead of being held forever.
#[test]
fn a_client_that_stops_reading_is_cut_off() {
    let r = TestRelay::start("no-read", "127.0.82.3:2525", |_| {});
    let mut c = Client::connect_from(r.addr, "127.0.82.103", Some(4096));
    c.tcp.set_write_timeout(Some(Duration::from_secs(5))).expect("write timeout");
    // Each EHLO costs 8 bytes and its reply over a hundred: the replies outgrow every buffer.
    let batch = b"EHLO x\r\n".repeat(1024);
    for _ in 0..2000 {
        if c.tcp.write_all(&batch).is_err() {
            break;
        }
    }
    let rec = wait_for_record(&r.scratch.0, |s| s.peer_addr.starts_with("127.0.82.103:"));
    assert_eq!(rec.outcome, "timeout", "{rec:?}");
    assert!(rec.error.as_deref().unwrap_or("").contains("stopped reading"), "{rec:?}");
    good_transaction(r.addr, "good");
}

/// Postfix's anvil: the connection beyond `smtpd_client_connection_count_limit` from one address
/// gets 421; other addresses are served, and a freed place can be taken again.
#[test]
fn the_connection_beyond_the_per_client_limit_gets_421() {
    let r = TestRelay::start("per-client", "127.0.82.4:2525", |cfg| cfg.limits.max_connections_per_client = 3);
    let mut held: Vec<Client> = (0..3)
        .map(|_| {
            let mut c = Client::connect_from(r.addr, "127.0.82.104", None);
            c.expect(220);
            c
        })
        .collect();
    let mut fourth = Client::connect_from(r.addr, "127.0.82.104", None);
    let text = fourth.expect(421);
    assert!(text.contains("4.7.0") && text.contains("too many connections from 127.0.82.104"), "{text}");
    assert!(fourth.reply().is_none(), "closed after the 421");
    let mut other = Client::connect_from(r.addr, "127.0.82.105", None);
    other.expect(220);
    // A place is given back when a session ends.
    let mut leaving = held.pop().expect("a held client");
    leaving.send(b"QUIT\r\n");
    leaving.expect(221);
    let _ = wait_for_record(&r.scratch.0, |s| s.peer_addr.starts_with("127.0.82.104:") && s.outcome == "closed");
    let mut again = Client::connect_from(r.addr, "127.0.82.104", None);
    again.expect(220);
}

/// A client that sends DATA a byte at a time, each byte well inside the read timeout, runs out
/// of its DATA deadline (Postfix's smtpd_min_data_rate) instead of holding the session.
#[test]
fn data_trickled_below_the_minimum_rate_is_cut_off() {
    // A rate no trickle reaches: each byte buys almost nothing beyond the first data_block.
    let r = TestRelay::start("trickle", "127.0.82.5:2525", |cfg| cfg.limits.min_data_rate = 1_000_000);
    let mut c = Client::greet(r.addr);
    c.send(b"MAIL FROM:<a@src.example>\r\nRCPT TO:<slow@dest.example>\r\nDATA\r\n");
    c.expect(250);
    c.expect(250);
    c.expect(354);
    c.tcp.set_read_timeout(Some(Duration::from_millis(300))).expect("timeout");
    let mut got = Vec::new();
    // Well under data_block (2 s) between bytes; 200 bytes would take a minute.
    for b in b"Subject: slow\r\n\r\n".iter().chain(&[b'x'; 200]) {
        let _ = c.tcp.write_all(&[*b]);
        let mut chunk = [0u8; 256];
        match c.tcp.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
        if got.ends_with(b"\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("421 4.4.2"), "cut off before the trickle ended: {text:?}");
    assert_eq!(r.wait_idle(), 0);
    assert!(r.mailbox("slow").is_empty());
}

/// However busy a client keeps it, a session ends at its deadline.
#[test]
fn a_session_ends_at_its_deadline() {
    let r = TestRelay::start("session-deadline", "127.0.82.6:2525", |cfg| {
        cfg.timeouts.session = Duration::from_secs(2);
    });
    let mut c = Client::greet(r.addr);
    let mut last = None;
    // 300 ms apart, each well inside the idle timeout; 200 of them would take a minute.
    for _ in 0..200 {
        c.send(b"NOOP\r\n");
        last = c.reply();
        if last.as_ref().map(|r| r.0) != Some(250) {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let (code, text) = last.expect("a reply before the close");
    assert_eq!(code, 421, "{text}");
    assert!(text.contains("session time limit"), "{text}");
    let rec = wait_for_record(&r.scratch.0, |s| s.outcome == "timeout");
    assert_eq!(rec.error.as_deref(), Some("session time limit exceeded"));
}

/// SMTP smuggling: a second message hidden behind an end of DATA that is not `<CRLF>.<CRLF>`.
/// In each variant the outer message, smuggled one included, is refused whole with Postfix's
/// 521 at its standard end and the session closed; neither message is delivered.
#[test]
fn smuggled_messages_behind_bare_line_ends_are_never_delivered() {
    let r = TestRelay::start("smuggle", "127.0.82.7:2525", |_| {});
    let smuggled = "MAIL FROM:<ceo@dest.example>\r\nRCPT TO:<victim@dest.example>\r\nDATA\r\nSubject: smuggled\r\n\r\npay now\r\n.\r\n";
    for (ending, bare) in
        [("\n.\n", "<LF>"), ("\r.\r", "<CR>"), ("\r\n.\n", "<LF>"), ("\n.\r\n", "<LF>"), ("\r.\r\n", "<CR>")]
    {
        let mut c = Client::greet(r.addr);
        c.send(b"MAIL FROM:<a@src.example>\r\nRCPT TO:<outer@dest.example>\r\nDATA\r\n");
        c.expect(250);
        c.expect(250);
        c.expect(354);
        c.send(format!("Subject: outer\r\n\r\nhello{ending}{smuggled}").as_bytes());
        let text = c.expect(521);
        assert!(text.contains("5.5.2") && text.contains(&format!("bare {bare} received")), "{ending:?}: {text}");
        assert!(c.reply().is_none(), "{ending:?}: closed after the 521");
    }
    // Bare line ends in commands too.
    for (line, bare) in [("NOOP\n", "<LF>"), ("NO\rOP\r\n", "<CR>")] {
        let mut c = Client::greet(r.addr);
        c.send(line.as_bytes());
        let text = c.expect(521);
        assert!(text.contains(&format!("bare {bare} received")), "{line:?}: {text}");
    }
    good_transaction(r.addr, "good");
    assert_eq!(r.wait_idle(), 0);
    assert!(r.mailbox("victim").is_empty(), "the smuggled message was delivered");
    assert!(r.mailbox("outer").is_empty(), "a message with a bare line end was accepted");
    assert_eq!(r.mailbox("good").len(), 1);
}

/// `Dest.Example.` is the local domain `dest.example`: delivered here, not sent out through DNS
/// to come back in a loop.
#[test]
fn a_local_domain_in_capitals_with_a_root_dot_is_local() {
    let r = TestRelay::start("dot", "127.0.82.8:2525", |_| {});
    let mut c = Client::greet(r.addr);
    c.send(b"MAIL FROM:<a@src.example>\r\nRCPT TO:<dotted@Dest.Example.>\r\nDATA\r\n");
    c.expect(250);
    c.expect(250);
    c.expect(354);
    c.send(b"Subject: dot\r\n\r\nhi\r\n.\r\n");
    c.expect(250);
    assert_eq!(r.wait_idle(), 0);
    assert_eq!(r.mailbox("dotted").len(), 1);
    assert!(relay_records(&r.scratch.0).iter().all(|s| s.direction != "outbound"), "nothing went out");
}

/// A domain routed back to the relay itself loops until the Received count reaches the hop
/// limit; the hop that refuses it bounces it to the sender.
#[test]
fn a_mail_loop_is_bounced_at_the_hop_limit() {
    const HOPS: usize = 5;
    let r = TestRelay::start("loop", "127.0.82.9:2525", |cfg| {
        let mut res = relay::StaticResolver::new();
        let me = relay::MxTarget {
            host: "mx.loop.example".into(),
            addr: "127.0.82.9:2525".parse().expect("addr"),
            system: None,
        };
        res.add("loop.example", me);
        cfg.resolver = std::sync::Arc::new(res);
        cfg.relay_domains = vec!["loop.example".into()];
        cfg.limits.hop_limit = HOPS;
    });
    let mut c = Client::greet(r.addr);
    c.send(b"MAIL FROM:<looper@dest.example>\r\nRCPT TO:<x@loop.example>\r\nDATA\r\n");
    c.expect(250);
    c.expect(250);
    c.expect(354);
    c.send(b"Subject: round and round\r\n\r\nhi\r\n.\r\n");
    c.expect(250);
    assert_eq!(r.wait_idle(), 0);
    let dsn = r.mailbox("looper");
    assert_eq!(dsn.len(), 1, "one bounce");
    let text = String::from_utf8_lossy(&dsn[0]);
    assert!(text.contains("554 5.4.0 Error: too many hops"), "{text}");
    // The returned header section is the copy that was refused: it carried HOPS Received lines.
    let received = text.lines().filter(|l| l.starts_with("Received:")).count();
    assert_eq!(received, HOPS, "{text}");
    let refused = relay_records(&r.scratch.0).iter().filter(|s| s.replies.contains(&554)).count();
    assert!(refused >= 1, "the refusing hop is recorded");
}

/// A client sending thousands of commands leaves a record of bounded size, which says how much
/// it left out.
#[test]
fn the_reply_log_of_a_session_is_bounded() {
    let r = TestRelay::start("reply-log", "127.0.82.10:2525", |cfg| cfg.limits.max_logged_replies = 10);
    let mut c = Client::greet(r.addr);
    c.send(&b"NOOP\r\n".repeat(50));
    for _ in 0..50 {
        c.expect(250);
    }
    c.send(b"QUIT\r\n");
    c.expect(221);
    let rec = wait_for_record(&r.scratch.0, |s| s.direction == "inbound" && s.outcome == "closed");
    // 220, 250 to EHLO, 50 x 250, 221: 53 replies, 10 recorded.
    assert_eq!(rec.replies.len(), 10);
    assert_eq!(rec.error.as_deref(), Some("43 more replies not recorded (the record keeps the first 10)"));
}

/// A next hop that answers EHLO with a multi-line reply that never ends is cut off at the
/// reply limit; the session is recorded as deferred with the reason, and the mail stays queued.
#[test]
fn an_endless_multiline_reply_is_cut_off() {
    let fake = TcpListener::bind("127.0.82.20:2525").expect("fake server");
    let server = std::thread::spawn(move || {
        let (mut s, _) = fake.accept().expect("relay connects");
        s.set_write_timeout(Some(Duration::from_secs(10))).expect("timeout");
        s.write_all(b"220 endless ESMTP\r\n").expect("greet");
        let mut buf = [0u8; 256];
        let _ = s.read(&mut buf);
        let mut lines = 0u64;
        // Bounded: 2 million lines is 20 MB, far past any limit; the relay closes long before.
        while lines < 2_000_000 && s.write_all(b"250-more to come\r\n").is_ok() {
            lines += 1;
        }
        lines
    });
    let r = TestRelay::start("endless", "127.0.82.21:2525", |cfg| {
        let mut res = relay::StaticResolver::new();
        let mx = relay::MxTarget {
            host: "mx.endless.example".into(),
            addr: "127.0.82.20:2525".parse().expect("addr"),
            system: None,
        };
        res.add("endless.example", mx);
        cfg.resolver = std::sync::Arc::new(res);
        cfg.relay_clients = trusted_test_client();
        cfg.limits.max_reply_bytes = 4096;
    });
    let mut c = Client::greet(r.addr);
    c.send(b"MAIL FROM:<a@src.example>\r\nRCPT TO:<b@endless.example>\r\nDATA\r\n");
    c.expect(250);
    c.expect(250);
    c.expect(354);
    c.send(b"Subject: x\r\n\r\nx\r\n.\r\n");
    c.expect(250);
    let lines = server.join().expect("fake server");
    assert!(lines < 2_000_000, "the relay stopped reading and closed");
    let rec = wait_for_record(&r.scratch.0, |s| s.direction == "outbound");
    assert_eq!(rec.outcome, "deferred", "{rec:?}");
    let error = rec.error.as_deref().unwrap_or("");
    assert!(error.contains("reply too long") && error.contains("4096"), "{error}");
    assert!(rec.bytes_in < 1 << 20, "read about the limit, not the flood: {}", rec.bytes_in);
    assert_eq!(r.handle().queued(), 1, "the message waits for a retry");
}

/// The key log and session records are created 0600; a key log path that is a planted
/// symbolic link is refused at start, and nothing is written through it.
#[test]
fn key_log_is_private_and_a_planted_link_is_refused() {
    let r = TestRelay::start("keylog", "127.0.82.22:2525", |cfg| {
        cfg.keylog = Some(cfg.spool.parent().expect("scratch").join("keys.log"));
    });
    good_transaction(r.addr, "good");
    assert_eq!(r.wait_idle(), 0);
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).expect("file").permissions().mode() & 0o777;
    assert_eq!(mode(&r.scratch.0.join("keys.log")), 0o600);
    assert_eq!(mode(&r.scratch.0.join("sessions.jsonl")), 0o600);
    let delivered = std::fs::read_dir(r.scratch.0.join("mailboxes/dest.example/good"))
        .expect("mailbox")
        .flatten()
        .map(|e| e.path())
        .collect::<Vec<_>>();
    assert_eq!(delivered.len(), 1);
    assert_eq!(mode(&delivered[0]), 0o600);
    assert_eq!(mode(&r.scratch.0.join("mailboxes/dest.example/good")), 0o700);

    let scratch = Scratch::new("keylog-link");
    let secret = scratch.0.join("elsewhere");
    std::fs::write(&secret, b"not yours\n").expect("target");
    std::os::unix::fs::symlink(&secret, scratch.0.join("keys.log")).expect("planted link");
    let mut cfg = test_config(&scratch.0, "127.0.82.23:2525".parse().expect("addr"));
    cfg.keylog = Some(scratch.0.join("keys.log"));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    let err = match rt.block_on(relay::Relay::start(cfg)) {
        Ok(_) => panic!("a relay started with a key log through a symbolic link"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("symbolic link"), "{err}");
    assert_eq!(std::fs::read(&secret).expect("target"), b"not yours\n");
}

/// A local delivery that fails (a symbolic link planted where the mailbox goes) is deferred and
/// stays queued, never written through the link and never counted as done; once the link is
/// gone, a retry delivers it.
#[test]
fn a_failed_local_delivery_is_deferred_not_dropped() {
    let r = TestRelay::start("local-fail", "127.0.82.24:2525", |_| {});
    let outside = Scratch::new("local-fail-outside");
    let domain_dir = r.scratch.0.join("mailboxes/dest.example");
    std::fs::create_dir_all(&domain_dir).expect("domain dir");
    std::os::unix::fs::symlink(&outside.0, domain_dir.join("victim")).expect("planted link");
    let mut c = Client::greet(r.addr);
    c.send(b"MAIL FROM:<a@src.example>\r\nRCPT TO:<victim@dest.example>\r\nDATA\r\n");
    c.expect(250);
    c.expect(250);
    c.expect(354);
    c.send(b"Subject: kept\r\n\r\nkept\r\n.\r\n");
    c.expect(250);
    // Still queued after attempts (retries every second here): deferred, not dropped.
    let deadline = Instant::now() + Duration::from_secs(20);
    while r.handle().stuck().first().map(|e| e.attempts).unwrap_or(0) < 2 {
        assert!(Instant::now() < deadline, "no second attempt");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(r.handle().queued(), 1);
    assert_eq!(std::fs::read_dir(&outside.0).expect("outside").count(), 0, "nothing written through the link");
    std::fs::remove_file(domain_dir.join("victim")).expect("remove link");
    assert_eq!(r.wait_idle(), 0);
    assert_eq!(r.mailbox("victim").len(), 1);
}

/// Postfix's maximal_queue_lifetime: mail that cannot be delivered within the lifetime goes back
/// to its sender with the last reason. Zero: bounced after the first failed attempt.
#[test]
fn mail_past_its_queue_lifetime_is_bounced() {
    let r = TestRelay::start("lifetime", "127.0.82.25:2525", |cfg| {
        let mut res = relay::StaticResolver::new();
        // Nothing listens there: every attempt is deferred (connection refused).
        let down = relay::MxTarget {
            host: "mx.down.example".into(),
            addr: "127.0.82.26:2525".parse().expect("addr"),
            system: None,
        };
        res.add("down.example", down);
        cfg.resolver = std::sync::Arc::new(res);
        cfg.relay_clients = trusted_test_client();
        cfg.timeouts.queue_lifetime = Duration::ZERO;
    });
    let mut c = Client::greet(r.addr);
    c.send(b"MAIL FROM:<patient@dest.example>\r\nRCPT TO:<b@down.example>\r\nDATA\r\n");
    c.expect(250);
    c.expect(250);
    c.expect(354);
    c.send(b"Subject: too late\r\n\r\nx\r\n.\r\n");
    c.expect(250);
    assert_eq!(r.wait_idle(), 0);
    let dsn = r.mailbox("patient");
    assert_eq!(dsn.len(), 1, "one bounce");
    let text = String::from_utf8_lossy(&dsn[0]);
    assert!(text.contains("Final-Recipient: rfc822; b@down.example"), "{text}");
    assert!(text.contains("Status: 5.4.7") && text.contains("expired"), "{text}");
    assert!(text.contains("connect to 127.0.82.26:2525"), "the last reason is given: {text}");
}
