//! DNS on the wire: a loopback run with `network.dns = "server"`, where every relay finds the
//! next MX through the scenario's own DNS server, and the live capture holds the MX queries and
//! answers an eavesdropper sees. Needs root or CAP_NET_RAW (the live tap) and root for port 53
//! (CI runs as root). Also: a relay resolving through the server refuses a domain that has no
//! system (NXDOMAIN) and defers when the server does not answer.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use records::{SessionRecord, TruthMessage, read_jsonl};
use scenarios::dns::{DnsServer, DnsSighting, MxEntry};
use scenarios::inject::{Submission, Submitter};
use scenarios::{RunOptions, Scenario, ScenarioError, SubmissionError};

/// Ports 26525 and 26587 (and 26625–26627 below) are this file's alone (ARCHITECTURE.md, "Tests side by side").
const SCENARIO: &str = r#"
[scenario]
name = "e2e-dns"
seed = 13

[network]
smtp_port = 26525
submission_port = 26587
dns = "server"
dns_ttl = 600

[traffic]
messages = 45
users_per_system = 3
max_recipients = 2

[[systems]]
name = "alpha"
domain = "alpha.example"
address = "127.0.61.1"
starttls = true

[[systems]]
name = "beta"
domain = "beta.example"
address = "127.0.62.1"
starttls = true

[[systems]]
name = "gamma"
domain = "gamma.example"
address = "127.0.63.1"
starttls = false
"#;

#[test]
fn relays_find_mx_through_dns_and_the_tap_sees_the_queries() {
    let scenario = Scenario::parse(SCENARIO, "e2e-dns").expect("valid scenario");
    let dns = scenario.dns_server().expect("a DNS server");
    assert_eq!(dns, "127.0.61.53:53".parse::<SocketAddr>().expect("addr"), "the documented default");
    let out = std::env::temp_dir().join(format!("smtplab-e2e-dns-{}", std::process::id()));
    let opts = RunOptions::new(out.clone(), "test");
    let outcome = scenarios::run(&scenario, &opts).expect("run (needs root: live tap, port 53)");
    assert!(outcome.stuck.is_empty(), "stuck: {:?}", outcome.stuck);
    let dir = &outcome.run_dir;

    // Every message delivered, over the hops the truth says.
    let truth: Vec<TruthMessage> = read_jsonl(&dir.join("truth/messages.jsonl")).expect("truth");
    assert_eq!(truth.len(), 45);
    let sessions: Vec<SessionRecord> = read_jsonl(&dir.join("truth/sessions.jsonl")).expect("sessions");
    let hops: Vec<&SessionRecord> = sessions.iter().filter(|s| s.direction == "outbound").collect();
    let mut expected: BTreeSet<(String, String, String)> = BTreeSet::new();
    for m in &truth {
        for sys in m.recipient_systems.iter().filter(|s| **s != m.sender_system) {
            expected.insert((m.message_id.clone(), m.sender_system.clone(), sys.clone()));
        }
    }
    let address: HashMap<&str, &str> =
        [("alpha", "127.0.61.1"), ("beta", "127.0.62.1"), ("gamma", "127.0.63.1")].into_iter().collect();
    let mut seen = BTreeSet::new();
    for hop in &hops {
        assert_eq!(hop.outcome, "delivered", "{hop:?}");
        let peer = hop.peer_system.as_deref().expect("peer system named from the address DNS gave");
        assert_eq!(hop.peer_addr, format!("{}:26525", address[peer]), "DNS answer → the peer's MX");
        assert_eq!(hop.peer_name.as_deref(), Some(format!("mx.{peer}.example").as_str()), "MX host from DNS");
        for m in &hop.messages {
            assert!(seen.insert((m.message_id.clone(), hop.system.clone(), peer.to_string())), "one hop each");
        }
    }
    assert_eq!(seen, expected, "the hops are exactly the truth's (message, sender system, receiver system)");

    // What the eavesdropper saw of DNS: each sending system asked for the MX of each domain it
    // sent to, from its own address, and the answer named the MX host.
    let dns_seen: Vec<DnsSighting> = read_jsonl(&dir.join("tap/dns.jsonl")).expect("tap/dns.jsonl");
    let pairs: BTreeSet<(&str, &str)> = expected.iter().map(|(_, a, b)| (a.as_str(), b.as_str())).collect();
    assert!(!pairs.is_empty());
    for (sender, receiver) in pairs {
        let from = address[sender];
        let question = format!("{receiver}.example. MX");
        let query = dns_seen
            .iter()
            .find(|d| !d.response && d.src.starts_with(&format!("{from}:")) && d.questions.contains(&question))
            .unwrap_or_else(|| panic!("no MX query from {sender} for {receiver} in {dns_seen:#?}"));
        let answer = dns_seen
            .iter()
            .find(|d| d.response && d.id == query.id && d.dst == query.src)
            .unwrap_or_else(|| panic!("no answer to {query:?}"));
        assert_eq!(answer.rcode, "NoError");
        assert!(answer.answers.contains(&format!("{receiver}.example. MX 10 mx.{receiver}.example.")), "{answer:?}");
    }
    // Queries were cached for the zone's TTL: at most a few per (relay, name), not one per message.
    let queries = dns_seen.iter().filter(|d| !d.response).count();
    assert!(queries < truth.len(), "{queries} queries for {} messages: the cache is not used", truth.len());
    if std::env::var_os("SMTPLAB_KEEP_RUNS").is_none() {
        let _ = std::fs::remove_dir_all(&out);
    }
}

/// A relay resolving through the DNS server: a domain of no system is refused at RCPT (NXDOMAIN,
/// as an unknown domain is in process), a known one accepted; with no server answering, the
/// refusal is temporary (451), so a client retries.
#[test]
fn relay_refuses_nxdomain_and_defers_without_dns() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let dns: SocketAddr = "127.0.66.53:15453".parse().expect("addr");
        let entries = vec![MxEntry {
            domain: "beta.example".into(),
            mx_host: "mx.beta.example".into(),
            addr: "127.0.67.1".parse().expect("ip"),
        }];
        let server = DnsServer::start(dns, &entries, 60).await.expect("DNS server");
        let dir = std::env::temp_dir().join(format!("smtplab-dns-relay-{}", std::process::id()));
        let start = |submission: &str, resolver: Arc<dyn relay::MxResolver>| {
            let submission: SocketAddr = submission.parse().expect("addr");
            let mut listen = submission;
            listen.set_port(submission.port() - 1);
            relay::RelayConfig {
                system: "alpha".into(),
                hostname: "mx.alpha.example".into(),
                listen,
                submission: Some(submission),
                bind: Some(submission.ip()),
                spool: dir.join(submission.to_string()).join("spool"),
                local_domains: vec!["alpha.example".into()],
                relay_domains: Vec::new(),
                // The submitter connects from 127.0.0.1: the system's user, who may relay.
                relay_clients: vec![relay::config::parse_client_network("127.0.0.1").expect("network")],
                mailbox_dir: dir.join(submission.to_string()).join("mailboxes"),
                tls_identity: None,
                tls: Default::default(),
                inbound_tls: relay::InboundTls::None,
                outbound_tls: relay::OutboundTls::None,
                outbound_tls_by_domain: Vec::new(),
                mta_sts: None,
                ca_pem: None,
                resolver,
                records: None,
                keylog: None,
                limits: Default::default(),
                timeouts: Default::default(),
                delivery: Default::default(),
            }
        };
        let via_dns = relay::DnsResolver::new(dns, Some("127.0.66.1".parse().expect("ip")), 26625).expect("resolver");
        let r = relay::Relay::start(start("127.0.66.1:26627", Arc::new(via_dns))).await.expect("relay");
        let msg = b"Subject: x\r\n\r\nhello\r\n";
        let submit = |to: &'static str| async move {
            let mut c = Submitter::connect("127.0.66.1:26627".parse().expect("addr"), "t").await.expect("connect");
            c.submit(&Submission { from: "a@alpha.example", to: vec![to], bytes: msg, requiretls: false }).await
        };
        // Refused at RCPT, not lost to a broken connection: the relay's own 554 reaches the caller.
        match submit("x@nobody.example").await.expect_err("NXDOMAIN") {
            ScenarioError::Submission(SubmissionError::Refused { after, reply, expected: 250, .. }) => {
                assert_eq!((after.as_str(), reply.code), ("RCPT TO:<x@nobody.example>", 554), "{}", reply.summary());
            }
            e => panic!("expected a refusal, got {e}"),
        }
        submit("b@beta.example").await.expect("beta has an MX");
        r.shutdown(std::time::Duration::from_secs(5)).await;
        server.stop().await;

        // Nobody answers on the server's address now: temporary.
        let silent = relay::DnsResolver::new(dns, None, 26625).expect("resolver");
        let r = relay::Relay::start(start("127.0.66.2:26627", Arc::new(silent))).await.expect("relay");
        let mut c = Submitter::connect("127.0.66.2:26627".parse().expect("addr"), "t").await.expect("connect");
        let e = c
            .submit(&Submission { from: "a@alpha.example", to: vec!["b@beta.example"], bytes: msg, requiretls: false })
            .await
            .expect_err("no DNS answer")
            .to_string();
        assert!(e.contains("451") && e.contains("temporary DNS failure"), "{e}");
        r.shutdown(std::time::Duration::from_secs(5)).await;
        let _ = std::fs::remove_dir_all(&dir);
    });
}
