//! Interop (issue 13): Postfix with `smtp_tls_security_level = dane`, behind a validating
//! unbound that trusts the scenario's signed root (the anchor file a run writes), delivers to an
//! smtplab relay under DANE and refuses a fake MX. Everything DNS says comes from smtplab's own
//! DNS server (`scenarios::dns`); Postfix checks it with its own DANE code, so this is the
//! outside check of what smtplab publishes:
//!
//! - `beta.example`: signed, `3 1 1` for the key of the certificate beta's relay presents:
//!   Postfix logs "Verified TLS connection" and beta's mailbox gets the message.
//! - `fake.example`: signed, `3 1 1` for the real MX's key, but the relay answering at the MX
//!   address presents another key (a fake MX): Postfix defers and the fake MX reads nothing.
//!
//! Needs root (Postfix's master, unbound on port 53, a mount namespace for Postfix's own
//! resolv.conf), postfix, unbound and swaks; fails saying so otherwise.

#[path = "../../relay/tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use relay::dane::Tlsa;
use relay::{InboundTls, OutboundTls, Relay, RelayConfig, TlsIdentity};
use scenarios::dane::Dnssec;
use scenarios::dns::{DnsServer, MxEntry, ZoneSecurity};

/// unbound, running until dropped (killed by its own PID).
struct Unbound(Child);

impl Drop for Unbound {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn unbound(dir: &std::path::Path, listen: SocketAddr, upstream: SocketAddr, anchor: &str) -> Unbound {
    common::require("unbound");
    std::fs::write(dir.join("root.key"), anchor).expect("anchor file");
    let conf = format!(
        r#"server:
  interface: {ip}
  port: {port}
  do-ip6: no
  do-not-query-localhost: no
  access-control: 127.0.0.0/8 allow
  username: ""
  chroot: ""
  directory: "{d}"
  pidfile: "{d}/unbound.pid"
  use-syslog: no
  logfile: "{d}/unbound.log"
  verbosity: 1
  val-log-level: 2
  module-config: "validator iterator"
  trust-anchor-file: "{d}/root.key"
  qname-minimisation: no
forward-zone:
  name: "."
  forward-addr: {up_ip}@{up_port}
"#,
        ip = listen.ip(),
        port = listen.port(),
        d = dir.display(),
        up_ip = upstream.ip(),
        up_port = upstream.port(),
    );
    let path = dir.join("unbound.conf");
    std::fs::write(&path, conf).expect("unbound.conf");
    let child = Command::new("unbound").arg("-d").arg("-c").arg(&path).spawn().expect("unbound starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect_timeout(&listen, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "unbound did not listen on {listen}");
        std::thread::sleep(Duration::from_millis(100));
    }
    Unbound(child)
}

fn relay_config(dir: &std::path::Path, name: &str, listen: SocketAddr, identity: TlsIdentity) -> RelayConfig {
    RelayConfig {
        system: name.into(),
        hostname: format!("mx.{name}.example"),
        listen,
        submission: None,
        bind: Some(listen.ip()),
        spool: dir.join(name).join("spool"),
        local_domains: vec![format!("{name}.example")],
        relay_domains: Vec::new(),
        relay_clients: Vec::new(),
        mailbox_dir: dir.join(name).join("mailboxes"),
        tls_identity: Some(identity),
        tls: Default::default(),
        inbound_tls: InboundTls::May,
        outbound_tls: OutboundTls::May,
        outbound_tls_by_domain: Vec::new(),
        ca_pem: None,
        resolver: Arc::new(relay::StaticResolver::new()),
        records: Some(dir.join(name).join("sessions.jsonl")),
        keylog: None,
        limits: Default::default(),
        timeouts: Default::default(),
        mta_sts: None,
        delivery: Default::default(),
    }
}

fn identity(host: &str) -> (TlsIdentity, Tlsa) {
    let (cert_chain_pem, key_pem, _) = common::certificate(host);
    let leaf = rustls_pemfile::certs(&mut cert_chain_pem.as_bytes()).next().expect("a certificate").expect("PEM");
    let tlsa = Tlsa::spki_sha256(3, &leaf).expect("TLSA");
    (TlsIdentity { cert_chain_pem, key_pem }, tlsa)
}

#[test]
fn postfix_dane_delivers_to_smtplab_and_refuses_the_fake_mx() {
    assert!(
        is_root(),
        "this test needs root: Postfix's master, unbound on port 53 and a mount namespace for Postfix's resolv.conf"
    );
    let scratch = common::Scratch::new("dane-postfix");
    let dir = scratch.0.clone();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (dns_addr, unbound_addr): (SocketAddr, SocketAddr) =
        ("127.0.79.54:5378".parse().expect("addr"), "127.0.79.53:53".parse().expect("addr"));
    let (beta_addr, fake_addr): (SocketAddr, SocketAddr) =
        ("127.0.79.2:25".parse().expect("addr"), "127.0.79.3:25".parse().expect("addr"));
    let (beta_id, beta_tlsa) = identity("mx.beta.example");
    // The real MX of fake.example would present this key; the one at its address presents another.
    let (_, real_fake_tlsa) = identity("mx.fake.example");
    let (impostor_id, _) = identity("mx.fake.example");
    let entries = vec![
        MxEntry {
            domain: "beta.example".into(),
            mx_host: "mx.beta.example".into(),
            addr: "127.0.79.2".parse().expect("ip"),
        },
        MxEntry {
            domain: "fake.example".into(),
            mx_host: "mx.fake.example".into(),
            addr: "127.0.79.3".parse().expect("ip"),
        },
    ];
    let security = vec![
        ZoneSecurity { domain: "beta.example".into(), dnssec: Dnssec::Signed, tlsa: Some(beta_tlsa) },
        ZoneSecurity { domain: "fake.example".into(), dnssec: Dnssec::Signed, tlsa: Some(real_fake_tlsa) },
    ];
    let (server, beta, fake) = rt.block_on(async {
        let server = DnsServer::start_secured(dns_addr, &entries, &[], &security, 60).await.expect("DNS server");
        let beta = Relay::start(relay_config(&dir, "beta", beta_addr, beta_id)).await.expect("beta");
        let fake = Relay::start(relay_config(&dir, "fake", fake_addr, impostor_id)).await.expect("fake MX");
        (server, beta, fake)
    });
    let anchor = server.anchor_record.clone().expect("signed root");
    let _unbound = unbound(&dir, unbound_addr, dns_addr, &anchor);
    let resolv = dir.join("resolv.conf");
    // trust-ad: glibc passes the AD bit on to Postfix only when told to trust the resolver.
    std::fs::write(&resolv, format!("nameserver {}\noptions edns0 trust-ad\n", unbound_addr.ip())).expect("resolv");
    let postfix_listen: SocketAddr = "127.0.79.1:2625".parse().expect("addr");
    let postfix = common::Postfix::start_with_resolver(
        &dir.join("postfix"),
        "mx.alpha.example",
        postfix_listen,
        &[
            "disable_dns_lookups = no".into(),
            "smtp_dns_support_level = dnssec".into(),
            "smtp_host_lookup = dns".into(),
            "smtp_tls_security_level = dane".into(),
            "smtp_bind_address = 127.0.79.1".into(),
            "maximal_backoff_time = 10s".into(),
            "minimal_backoff_time = 5s".into(),
        ],
        Some(&resolv),
    );
    let message = dir.join("message.txt");
    std::fs::write(&message, "Subject: dane interop\r\n\r\nhello over DANE\r\n").expect("message");
    for to in ["alice@beta.example", "bob@fake.example"] {
        let out = common::swaks(postfix_listen, "carol@alpha.example", to, &message, &[]);
        assert!(out.status.success(), "swaks to {to}: {}", String::from_utf8_lossy(&out.stdout));
    }
    // Bounded wait for Postfix's verdict on both (no timing asserted: only what it logged).
    let deadline = Instant::now() + Duration::from_secs(60);
    let log = loop {
        let log = postfix.log();
        let beta_done = log.contains("to=<alice@beta.example>") && log.contains("status=sent");
        let fake_done = log.contains("to=<bob@fake.example>") && log.contains("status=deferred");
        if (beta_done && fake_done) || Instant::now() >= deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let unbound_log = std::fs::read_to_string(dir.join("unbound.log")).unwrap_or_default();
    let context = format!("postfix log:\n{log}\nunbound log:\n{unbound_log}");
    // Postfix has no CA file here: "Verified" can only come from the TLSA record.
    assert!(log.contains("Verified TLS connection established to mx.beta.example[127.0.79.2]:25"), "{context}");
    assert!(log.contains("mx.fake.example[127.0.79.3]:25: num=65:no matching DANE TLSA records"), "{context}");
    let sent = log.lines().find(|l| l.contains("to=<alice@beta.example>") && l.contains("status=sent"));
    assert!(sent.is_some(), "{context}");
    let deferred = log.lines().find(|l| l.contains("to=<bob@fake.example>") && l.contains("status=deferred"));
    assert!(deferred.is_some_and(|l| l.contains("Server certificate not verified")), "{context}");
    // The smtplab side: beta delivered the message into its mailbox; the fake MX got none.
    let beta_records = common::relay_records(&dir.join("beta"));
    assert!(
        beta_records.iter().any(|r| r.direction == "inbound" && r.starttls_used && !r.messages.is_empty()),
        "{beta_records:?}"
    );
    let fake_records = common::relay_records(&dir.join("fake"));
    assert!(fake_records.iter().all(|r| r.messages.is_empty()), "the fake MX read a message: {fake_records:?}");
    drop(postfix);
    rt.block_on(async {
        beta.shutdown(Duration::from_secs(2)).await;
        fake.shutdown(Duration::from_secs(2)).await;
        server.stop().await;
    });
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}
