//! REQUIRETLS (RFC 8689) and TLS-RPT (RFC 8460) with real relays on loopback, a raw SMTP client
//! over TCP and rustls, Postfix as a next hop that does not implement REQUIRETLS, and swaks.
//! Expected values are worked by hand from the set-up of each test. Needs root and the Debian
//! packages scripts/test installs (Postfix, swaks).

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use proto::{Reply, ReplyParser};
use relay::{InboundTls, OutboundTls, Relay, RelayConfig, RelayHandle, StaticResolver, TlsIdentity};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One CA for every relay of a test, so `verify` can succeed.
struct Ca {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl Ca {
    fn new() -> Ca {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name.push(rcgen::DnType::CommonName, "requiretls test CA");
        let key = rcgen::KeyPair::generate().expect("ca key");
        let cert = p.self_signed(&key).expect("ca cert");
        Ca { cert, key }
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }

    fn issue(&self, host: &str) -> TlsIdentity {
        let mut p = rcgen::CertificateParams::new(vec![host.to_string()]).expect("leaf params");
        p.distinguished_name.push(rcgen::DnType::CommonName, host);
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let cert = p.signed_by(&key, &self.cert, &self.key).expect("leaf cert");
        TlsIdentity { cert_chain_pem: cert.pem(), key_pem: key.serialize_pem() }
    }
}

/// A relay for `domain` at `listen`, with routes to other domains' MX addresses.
struct Node<'a> {
    domain: &'a str,
    listen: SocketAddr,
    identity: Option<TlsIdentity>,
    ca: Option<String>,
    outbound: OutboundTls,
    routes: Vec<(&'a str, SocketAddr)>,
    /// Seconds a deferred message stays queued; zero bounces at the first failure.
    queue_lifetime: u64,
}

async fn start(dir: &Path, n: Node<'_>) -> RelayHandle {
    let mut resolver = StaticResolver::new();
    for (domain, addr) in &n.routes {
        resolver.add(domain, relay::MxTarget { host: format!("mx.{domain}"), addr: *addr, system: None });
    }
    let cfg = RelayConfig {
        system: n.domain.split('.').next().unwrap_or("relay").to_string(),
        hostname: format!("mx.{}", n.domain),
        listen: n.listen,
        submission: None,
        bind: Some(n.listen.ip()),
        spool: dir.join("spool"),
        local_domains: vec![n.domain.to_string()],
        relay_domains: Vec::new(),
        // The test client on 127.0.0.1 stands for the system's users.
        relay_clients: vec![relay::config::parse_client_network("127.0.0.1").expect("network")],
        mailbox_dir: dir.join("mailboxes"),
        tls_identity: n.identity,
        tls: Default::default(),
        inbound_tls: InboundTls::May,
        outbound_tls: n.outbound,
        outbound_tls_by_domain: Vec::new(),
        ca_pem: n.ca,
        resolver: Arc::new(resolver),
        records: Some(dir.join("sessions.jsonl")),
        keylog: None,
        limits: Default::default(),
        timeouts: relay::config::Timeouts {
            retry_first: Duration::from_secs(60),
            retry_max: Duration::from_secs(60),
            server_idle: Duration::from_secs(10),
            queue_lifetime: Duration::from_secs(n.queue_lifetime),
            ..Default::default()
        },
        mta_sts: None,
        delivery: Default::default(),
    };
    Relay::start(cfg).await.expect("relay starts")
}

/// A raw SMTP client: bytes over TCP, upgraded with rustls on request.
struct Raw {
    io: relay::transport::Transport<tokio_rustls::client::TlsStream<TcpStream>>,
    replies: ReplyParser,
}

impl Raw {
    async fn connect(server: SocketAddr) -> Raw {
        let tcp = TcpStream::connect(server).await.expect("connect");
        let mut c = Raw { io: relay::transport::Transport::Plain(tcp), replies: ReplyParser::new(4096) };
        assert_eq!(c.reply().await.code, 220, "greeting");
        c
    }

    async fn reply(&mut self) -> Reply {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(r) = self.replies.next_reply() {
                return r.expect("a well-formed reply");
            }
            let n = tokio::time::timeout(Duration::from_secs(30), self.io.read(&mut buf))
                .await
                .expect("a reply within 30 s")
                .expect("read");
            assert!(n > 0, "server closed the connection");
            self.replies.extend(&buf[..n]);
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.expect("write");
        self.io.flush().await.expect("flush");
    }

    async fn command(&mut self, line: &str) -> Reply {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    async fn starttls(&mut self, ca_pem: &str, host: &str) {
        assert_eq!(self.command("STARTTLS").await.code, 220);
        let config = relay::tls::client_config_verify(ca_pem, &Default::default(), None).expect("client config");
        let tcp = self.io.take_plain().expect("plaintext before STARTTLS");
        let name = rustls::pki_types::ServerName::try_from(host.to_string()).expect("name");
        let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.expect("TLS handshake");
        self.io = relay::transport::Transport::Tls(Box::new(tls));
    }

    /// One message over TLS with REQUIRETLS (or without, `requiretls` false); returns the reply
    /// to its end of data.
    async fn send_message(&mut self, from: &str, to: &str, requiretls: bool, message: &str) -> Reply {
        let param = if requiretls { " REQUIRETLS" } else { "" };
        assert_eq!(self.command(&format!("MAIL FROM:<{from}>{param}")).await.code, 250);
        assert_eq!(self.command(&format!("RCPT TO:<{to}>")).await.code, 250);
        assert_eq!(self.command("DATA").await.code, 354);
        self.send(message.as_bytes()).await;
        self.send(b".\r\n").await;
        self.reply().await
    }
}

fn message(id: &str, extra_header: &str) -> String {
    format!(
        "From: <a@a.example>\r\nTo: <b@b.example>\r\nSubject: secret {id}\r\nMessage-ID: <{id}@a.example>\r\n\
{extra_header}\r\nthe secret body of {id}\r\n"
    )
}

/// Waits (bounded) until the records in `dir` satisfy `done`; returns them.
fn wait_records(
    dir: &Path,
    what: &str,
    done: impl Fn(&[records::SessionRecord]) -> bool,
) -> Vec<records::SessionRecord> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let recs = relay_records(dir);
        if done(&recs) {
            return recs;
        }
        assert!(Instant::now() < deadline, "{what} within 60 s; records: {recs:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn has_local(recs: &[records::SessionRecord], outcome: &str) -> bool {
    recs.iter().any(|r| r.direction == "local" && r.outcome == outcome)
}

fn mailbox_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.join("mailboxes")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
    }
    out
}

fn ehlo_keywords(r: &Reply) -> Vec<String> {
    proto::Capabilities::from_reply(r).keywords.into_iter().map(|(k, _)| k).collect()
}

/// The EHLO keyword only inside TLS; the MAIL parameter refused in the clear and accepted
/// inside TLS, all seen as raw bytes over TCP.
#[test]
fn ehlo_keyword_and_mail_parameter_over_raw_tcp() {
    let scratch = Scratch::new("requiretls-raw");
    let ca = Ca::new();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let b_addr: SocketAddr = "127.0.88.2:2625".parse().expect("addr");
    rt.block_on(async {
        let b = start(
            &scratch.0.join("b"),
            Node {
                domain: "b.example",
                listen: b_addr,
                identity: Some(ca.issue("mx.b.example")),
                ca: Some(ca.pem()),
                outbound: OutboundTls::May,
                routes: vec![],
                queue_lifetime: 3600,
            },
        )
        .await;
        let mut c = Raw::connect(b_addr).await;
        let plain = ehlo_keywords(&c.command("EHLO client.example").await);
        assert!(plain.contains(&"STARTTLS".to_string()) && !plain.contains(&"REQUIRETLS".to_string()), "{plain:?}");
        let refused = c.command("MAIL FROM:<a@a.example> REQUIRETLS").await;
        assert_eq!((refused.code, refused.lines[0].split(' ').next()), (555, Some("5.5.4")), "{refused:?}");
        c.starttls(&ca.pem(), "mx.b.example").await;
        let tls = ehlo_keywords(&c.command("EHLO client.example").await);
        assert!(tls.contains(&"REQUIRETLS".to_string()) && !tls.contains(&"STARTTLS".to_string()), "{tls:?}");
        let end = c.send_message("a@a.example", "b@b.example", true, &message("raw1", "")).await;
        assert_eq!(end.code, 250, "{end:?}");
        assert_eq!(c.command("QUIT").await.code, 221);
        wait_records(&scratch.0.join("b"), "local delivery", |r| has_local(r, "delivered"));
        b.shutdown(Duration::from_secs(2)).await;
    });
    let mail = mailbox_files(&scratch.0.join("b"));
    assert_eq!(mail.len(), 1);
    assert!(mail[0].contains("the secret body of raw1"));
}

/// A → B, both with certificates from the test CA: a REQUIRETLS message goes over verified TLS
/// although A's own policy is only `may`, and B gets the parameter (it accepts it only because
/// it came inside TLS: checked by B's 250 to MAIL, recorded in A's replies).
#[test]
fn requiretls_on_an_honest_verified_path_is_delivered() {
    let scratch = Scratch::new("requiretls-honest");
    let ca = Ca::new();
    let (a_addr, b_addr): (SocketAddr, SocketAddr) =
        ("127.0.88.11:2625".parse().expect("a"), "127.0.88.12:2625".parse().expect("b"));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let b = start(
            &scratch.0.join("b"),
            Node {
                domain: "b.example",
                listen: b_addr,
                identity: Some(ca.issue("mx.b.example")),
                ca: Some(ca.pem()),
                outbound: OutboundTls::May,
                routes: vec![],
                queue_lifetime: 3600,
            },
        )
        .await;
        let a = start(
            &scratch.0.join("a"),
            Node {
                domain: "a.example",
                listen: a_addr,
                identity: Some(ca.issue("mx.a.example")),
                ca: Some(ca.pem()),
                outbound: OutboundTls::May,
                routes: vec![("b.example", b_addr)],
                queue_lifetime: 3600,
            },
        )
        .await;
        let mut c = Raw::connect(a_addr).await;
        c.command("EHLO client.example").await;
        c.starttls(&ca.pem(), "mx.a.example").await;
        c.command("EHLO client.example").await;
        assert_eq!(c.send_message("a@a.example", "b@b.example", true, &message("honest1", "")).await.code, 250);
        c.command("QUIT").await;
        wait_records(&scratch.0.join("b"), "delivery at B", |r| has_local(r, "delivered"));
        a.shutdown(Duration::from_secs(2)).await;
        b.shutdown(Duration::from_secs(2)).await;
    });
    let a_recs = relay_records(&scratch.0.join("a"));
    let out: Vec<_> = a_recs.iter().filter(|r| r.direction == "outbound").collect();
    assert_eq!(out.len(), 1, "{out:#?}");
    assert!(out[0].starttls_used && out[0].cert_verified, "verified TLS although A's policy is may");
    assert_eq!(out[0].outcome, "delivered");
    // greeting, EHLO, STARTTLS, EHLO, then MAIL ... REQUIRETLS: 250 from B.
    assert_eq!(out[0].replies[..5], [220, 250, 220, 250, 250]);
    let b_in = relay_records(&scratch.0.join("b"));
    let inbound = b_in.iter().find(|r| r.direction == "inbound" && !r.messages.is_empty()).expect("B's inbound record");
    assert!(inbound.starttls_used);
    assert_eq!(mailbox_files(&scratch.0.join("b")).len(), 1);
    // TLS-RPT at A: one verified session to b.example, a success.
    let report: records::tlsrpt::Report = serde_json::from_slice(
        &std::fs::read(scratch.0.join("a/tlsrpt/b.example.json")).expect("A's report for b.example"),
    )
    .expect("a report");
    assert_eq!(report.policies[0].summary.total_successful_session_count, 1);
    assert_eq!(report.policies[0].summary.total_failure_session_count, 0);
}

/// A REQUIRETLS message to a next hop that offers no STARTTLS (as a stripping attacker makes
/// it look): bounced with 5.7.10 after one attempt, and the next hop never saw MAIL, let alone
/// the content. The bounce returns to the sender's mailbox with only the original's headers.
#[test]
fn requiretls_without_starttls_bounces_and_never_goes_in_the_clear() {
    let scratch = Scratch::new("requiretls-strip");
    let ca = Ca::new();
    let (a_addr, c_addr): (SocketAddr, SocketAddr) =
        ("127.0.88.21:2625".parse().expect("a"), "127.0.88.23:2625".parse().expect("c"));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        // C has no certificate: it offers no STARTTLS at all.
        let c_relay = start(
            &scratch.0.join("c"),
            Node {
                domain: "c.example",
                listen: c_addr,
                identity: None,
                ca: None,
                outbound: OutboundTls::May,
                routes: vec![],
                queue_lifetime: 3600,
            },
        )
        .await;
        let a = start(
            &scratch.0.join("a"),
            Node {
                domain: "a.example",
                listen: a_addr,
                identity: Some(ca.issue("mx.a.example")),
                ca: Some(ca.pem()),
                // `may` would send in the clear; the message's REQUIRETLS must not let it.
                outbound: OutboundTls::May,
                routes: vec![("c.example", c_addr)],
                // A long queue lifetime: a bounce can only come from REQUIRETLS itself.
                queue_lifetime: 3600,
            },
        )
        .await;
        let mut c = Raw::connect(a_addr).await;
        c.command("EHLO client.example").await;
        c.starttls(&ca.pem(), "mx.a.example").await;
        c.command("EHLO client.example").await;
        assert_eq!(c.send_message("a@a.example", "x@c.example", true, &message("strip1", "")).await.code, 250);
        c.command("QUIT").await;
        wait_records(&scratch.0.join("a"), "the bounce", |r| {
            has_local(r, "bounced")
                && r.iter().filter(|r| r.direction == "local" && r.outcome == "delivered").count() == 1
        });
        a.shutdown(Duration::from_secs(2)).await;
        c_relay.shutdown(Duration::from_secs(2)).await;
    });
    let a_recs = relay_records(&scratch.0.join("a"));
    let bounced = a_recs.iter().find(|r| r.direction == "local" && r.outcome == "bounced").expect("bounce record");
    assert!(bounced.error.as_deref().unwrap_or("").contains("5.7.10"), "{bounced:?}");
    let out: Vec<_> = a_recs.iter().filter(|r| r.direction == "outbound").collect();
    assert_eq!(out.len(), 1, "one attempt, no retry: {out:#?}");
    assert!(out[0].messages.is_empty() && !out[0].starttls_used);
    // C's side of that session: greeting and EHLO, then A hung up: never a MAIL, never a byte
    // of the message.
    let c_recs = relay_records(&scratch.0.join("c"));
    assert_eq!(c_recs.len(), 1, "{c_recs:#?}");
    assert!(c_recs[0].messages.is_empty());
    assert_eq!(c_recs[0].replies, [220, 250], "greeting and EHLO only: no MAIL");
    assert!(mailbox_files(&scratch.0.join("c")).is_empty());
    // The DSN in a@a.example's mailbox: Status 5.7.10, the original's headers, not its body.
    let dsn = mailbox_files(&scratch.0.join("a")).pop().expect("the bounce in the sender's mailbox");
    assert!(dsn.contains("Status: 5.7.10"), "{dsn}");
    assert!(dsn.contains("Subject: secret strip1") && !dsn.contains("the secret body"), "{dsn}");
    // TLS-RPT at A: REQUIRETLS noticed the missing STARTTLS: one failure, worked by hand.
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(scratch.0.join("a/tlsrpt/c.example.json")).expect("report"))
            .expect("json");
    let f = &v["policies"][0]["failure-details"][0];
    assert_eq!(f["result-type"], "starttls-not-supported");
    assert_eq!(f["receiving-ip"], "127.0.88.23");
    assert_eq!(f["sending-mta-ip"], "127.0.88.21");
    assert_eq!(f["failed-session-count"], 1);
}

/// Postfix does not implement REQUIRETLS (3.7 offers no such EHLO keyword; swaks shows it): a
/// REQUIRETLS message to it over verified TLS bounces with 5.7.30 and Postfix receives nothing.
#[test]
fn requiretls_to_postfix_which_lacks_it_bounces_5_7_30() {
    let scratch = Scratch::new("requiretls-postfix");
    let dir = &scratch.0;
    let ca = Ca::new();
    let (a_addr, p_addr): (SocketAddr, SocketAddr) =
        ("127.0.88.31:2625".parse().expect("a"), "127.0.88.32:2627".parse().expect("p"));
    let p_id = ca.issue("mx.p.example");
    std::fs::create_dir_all(dir.join("p")).expect("dir");
    std::fs::write(dir.join("p/cert.pem"), &p_id.cert_chain_pem).expect("cert");
    std::fs::write(dir.join("p/key.pem"), &p_id.key_pem).expect("key");
    let postfix = Postfix::start(
        &dir.join("p"),
        "mx.p.example",
        p_addr,
        &[
            "virtual_mailbox_domains = p.example".into(),
            format!("smtpd_tls_cert_file = {}/p/cert.pem", dir.display()),
            format!("smtpd_tls_key_file = {}/p/key.pem", dir.display()),
            "smtpd_tls_security_level = may".into(),
        ],
    );
    // swaks: Postfix's EHLO inside TLS, raw, has no REQUIRETLS keyword.
    let out = std::process::Command::new("swaks")
        .args(["--server", &p_addr.to_string(), "--tls", "--quit-after", "EHLO", "--ehlo", "client.example"])
        .output()
        .expect("swaks");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("250-STARTTLS"), "{text}");
    assert!(text.contains("<~ ") && !text.contains("REQUIRETLS"), "Postfix offers no REQUIRETLS: {text}");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let a = start(
            &dir.join("a"),
            Node {
                domain: "a.example",
                listen: a_addr,
                identity: Some(ca.issue("mx.a.example")),
                ca: Some(ca.pem()),
                outbound: OutboundTls::Verify,
                routes: vec![("p.example", p_addr)],
                queue_lifetime: 3600,
            },
        )
        .await;
        let mut c = Raw::connect(a_addr).await;
        c.command("EHLO client.example").await;
        c.starttls(&ca.pem(), "mx.a.example").await;
        c.command("EHLO client.example").await;
        assert_eq!(c.send_message("a@a.example", "x@p.example", true, &message("pf1", "")).await.code, 250);
        c.command("QUIT").await;
        wait_records(&dir.join("a"), "the bounce", |r| has_local(r, "bounced"));
        a.shutdown(Duration::from_secs(2)).await;
    });
    let a_recs = relay_records(&dir.join("a"));
    let bounced = a_recs.iter().find(|r| r.direction == "local" && r.outcome == "bounced").expect("bounce");
    assert!(bounced.error.as_deref().unwrap_or("").contains("5.7.30"), "{bounced:?}");
    let out = a_recs.iter().find(|r| r.direction == "outbound").expect("outbound");
    assert!(out.starttls_used && out.cert_verified && out.messages.is_empty(), "{out:?}");
    assert!(postfix.log().contains("TLS connection established from"), "{}", postfix.log());
    assert!(postfix.wait_for_mail(0, Duration::ZERO).is_empty(), "Postfix got no mail");
    assert!(!postfix.log().contains("from=<a@a.example>"), "no MAIL reached Postfix: {}", postfix.log());
}

/// A `verify` sender and a next hop with a self-signed certificate (as a fake MX presents):
/// an ordinary message waits (deferred), one with `TLS-Required: No` goes through encrypted
/// without a verified certificate, as RFC 8689 §4.2.2 allows.
#[test]
fn tls_required_no_overrides_verify() {
    let scratch = Scratch::new("requiretls-no");
    let ca = Ca::new();
    let (a_addr, f_addr): (SocketAddr, SocketAddr) =
        ("127.0.88.41:2625".parse().expect("a"), "127.0.88.42:2625".parse().expect("f"));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let (cert, key, _) = certificate("mx.f.example"); // from a CA A does not trust
        let f = start(
            &scratch.0.join("f"),
            Node {
                domain: "f.example",
                listen: f_addr,
                identity: Some(TlsIdentity { cert_chain_pem: cert, key_pem: key }),
                ca: None,
                outbound: OutboundTls::May,
                routes: vec![],
                queue_lifetime: 3600,
            },
        )
        .await;
        let a = start(
            &scratch.0.join("a"),
            Node {
                domain: "a.example",
                listen: a_addr,
                identity: Some(ca.issue("mx.a.example")),
                ca: Some(ca.pem()),
                outbound: OutboundTls::Verify,
                routes: vec![("f.example", f_addr)],
                queue_lifetime: 3600,
            },
        )
        .await;
        let mut c = Raw::connect(a_addr).await;
        c.command("EHLO client.example").await;
        assert_eq!(c.send_message("a@a.example", "x@f.example", false, &message("plain1", "")).await.code, 250);
        assert_eq!(
            c.send_message("a@a.example", "x@f.example", false, &message("no1", "TLS-Required: No\r\n")).await.code,
            250
        );
        c.command("QUIT").await;
        wait_records(&scratch.0.join("f"), "the TLS-Required: No message", |r| has_local(r, "delivered"));
        wait_records(&scratch.0.join("a"), "the deferral", |r| {
            r.iter().any(|r| r.direction == "outbound" && r.outcome == "deferred")
        });
        a.shutdown(Duration::from_secs(2)).await;
        f.shutdown(Duration::from_secs(2)).await;
    });
    let mail = mailbox_files(&scratch.0.join("f"));
    assert_eq!(mail.len(), 1);
    assert!(mail[0].contains("secret no1"), "only the TLS-Required: No message");
    let a_recs = relay_records(&scratch.0.join("a"));
    let delivered = a_recs.iter().find(|r| r.direction == "outbound" && r.outcome == "delivered").expect("delivered");
    assert!(delivered.starttls_used && !delivered.cert_verified);
    let deferred = a_recs.iter().find(|r| r.direction == "outbound" && r.outcome == "deferred").expect("deferred");
    assert!(deferred.messages.is_empty());
    // TLS-RPT at A for f.example: the verify failure is certificate-not-trusted (unknown
    // issuer); the TLS-Required: No session negotiated TLS as `may` asks, a success.
    let report: records::tlsrpt::Report =
        serde_json::from_slice(&std::fs::read(scratch.0.join("a/tlsrpt/f.example.json")).expect("report"))
            .expect("report");
    let p = &report.policies[0];
    assert_eq!((p.summary.total_successful_session_count, p.summary.total_failure_session_count), (1, 1));
    assert_eq!(p.failure_details[0].result_type, records::tlsrpt::ResultType::CertificateNotTrusted);
}

/// TLS-RPT field by field for a hand-worked run: A (`encrypt`, queue lifetime zero so each
/// message makes one session) sends two messages to B (STARTTLS with a certificate) and one to
/// C (no STARTTLS, as after a strip). Three sessions: b.example 2 successful, 0 failed;
/// c.example 0 successful, 1 failed (starttls-not-supported from 127.0.88.51 to 127.0.88.53).
#[test]
fn tlsrpt_report_of_three_sessions_field_by_field() {
    let scratch = Scratch::new("tlsrpt-three");
    let ca = Ca::new();
    let (a_addr, b_addr, c_addr): (SocketAddr, SocketAddr, SocketAddr) = (
        "127.0.88.51:2625".parse().expect("a"),
        "127.0.88.52:2625".parse().expect("b"),
        "127.0.88.53:2625".parse().expect("c"),
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let node = |domain, listen, identity| Node {
            domain,
            listen,
            identity,
            ca: None,
            outbound: OutboundTls::May,
            routes: vec![],
            queue_lifetime: 3600,
        };
        let b = start(&scratch.0.join("b"), node("b.example", b_addr, Some(ca.issue("mx.b.example")))).await;
        let c_relay = start(&scratch.0.join("c"), node("c.example", c_addr, None)).await;
        let a = start(
            &scratch.0.join("a"),
            Node {
                domain: "a.example",
                listen: a_addr,
                identity: None,
                ca: Some(ca.pem()),
                outbound: OutboundTls::Encrypt,
                routes: vec![("b.example", b_addr), ("c.example", c_addr)],
                queue_lifetime: 0,
            },
        )
        .await;
        let mut c = Raw::connect(a_addr).await;
        c.command("EHLO client.example").await;
        for (id, to) in [("t1", "x@b.example"), ("t2", "y@b.example"), ("t3", "z@c.example")] {
            assert_eq!(c.send_message("a@a.example", to, false, &message(id, "")).await.code, 250);
        }
        c.command("QUIT").await;
        wait_records(&scratch.0.join("a"), "three outbound sessions", |r| {
            r.iter().filter(|r| r.direction == "outbound").count() == 3 && has_local(r, "bounced")
        });
        a.shutdown(Duration::from_secs(2)).await;
        b.shutdown(Duration::from_secs(2)).await;
        c_relay.shutdown(Duration::from_secs(2)).await;
    });
    let dir = scratch.0.join("a/tlsrpt");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("tlsrpt dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["b.example.json", "c.example.json"]);
    let read = |f: &str| -> (serde_json::Value, records::tlsrpt::Report) {
        let bytes = std::fs::read(dir.join(f)).expect("report file");
        (serde_json::from_slice(&bytes).expect("JSON"), serde_json::from_slice(&bytes).expect("a Report"))
    };
    let (b, b_parsed) = read("b.example.json");
    let (c, c_parsed) = read("c.example.json");
    for v in [&b, &c] {
        assert_eq!(v["organization-name"], "a");
        assert_eq!(v["contact-info"], "tlsrpt@a.example");
        let start = v["date-range"]["start-datetime"].as_str().expect("start");
        let end = v["date-range"]["end-datetime"].as_str().expect("end");
        // RFC 3339 in UTC, whole seconds: 2026-12-05T12:00:00Z
        assert!(start.len() == 20 && start.ends_with('Z') && start.as_bytes()[10] == b'T', "{start}");
        assert!(end.len() == 20 && end >= start, "{start} .. {end}");
        assert!(v["report-id"].as_str().is_some_and(|s| !s.is_empty()));
        assert_eq!(v["policies"].as_array().map(Vec::len), Some(1));
        assert_eq!(v["policies"][0]["policy"]["policy-type"], "no-policy-found");
        assert!(v["policies"][0]["policy"].get("policy-string").is_none(), "no policy text without a policy");
    }
    assert_ne!(b["report-id"], c["report-id"]);
    let bp = &b["policies"][0];
    assert_eq!(bp["policy"]["policy-domain"], "b.example");
    assert_eq!(bp["policy"]["mx-host"], serde_json::json!(["mx.b.example"]));
    assert_eq!(bp["summary"]["total-successful-session-count"], 2);
    assert_eq!(bp["summary"]["total-failure-session-count"], 0);
    assert!(bp.get("failure-details").is_none());
    let cp = &c["policies"][0];
    assert_eq!(cp["policy"]["policy-domain"], "c.example");
    assert_eq!(cp["policy"]["mx-host"], serde_json::json!(["mx.c.example"]));
    assert_eq!(cp["summary"]["total-successful-session-count"], 0);
    assert_eq!(cp["summary"]["total-failure-session-count"], 1);
    let details = cp["failure-details"].as_array().expect("failure details");
    assert_eq!(details.len(), 1);
    let d = &details[0];
    assert_eq!(d["result-type"], "starttls-not-supported");
    assert_eq!(d["sending-mta-ip"], "127.0.88.51");
    assert_eq!(d["receiving-mx-hostname"], "mx.c.example");
    assert_eq!(d["receiving-ip"], "127.0.88.53");
    assert_eq!(d["failed-session-count"], 1);
    // Parsed back into the typed report, the same numbers.
    assert_eq!(b_parsed.policies[0].summary.total_successful_session_count, 2);
    assert_eq!(c_parsed.policies[0].failure_details[0].result_type, records::tlsrpt::ResultType::StarttlsNotSupported);
    assert_eq!(serde_json::to_value(&c_parsed).expect("json"), c, "serde round trip keeps every field");
}
