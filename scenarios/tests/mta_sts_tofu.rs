//! Trust on first use, the property MTA-STS (RFC 8461 §10.2) rests on, with real parts: the
//! scenario's DNS server, beta's policy server (HTTPS), a strip attacker in front of beta's MX
//! that also drops policy fetches once its attack is on, and two real relays. The test itself
//! decides when the attacker arrives (its start is counted from a moment the test sets), so the
//! order of events is fixed, not timed:
//!
//! - attacker after first contact: alpha fetched beta's `enforce` policy while the path was clean
//!   and delivered under verified TLS; then the attack begins, and alpha's cached policy makes it
//!   defer the next message instead of sending it in the clear. Nothing is read.
//! - attacker from first contact: the fetch is dropped, alpha has no policy, its `may` falls back
//!   to plaintext when STARTTLS is stripped, and the attacker reads the message.
//!
//! alpha's TLS-RPT report for beta.example (RFC 8460) tells the two apart: after first contact,
//! every session ran under the `sts` policy alpha fetched then cached (its lines, its one MX
//! pattern), the first a success and each stripped one a `starttls-not-supported` failure; from
//! first contact there never was a policy, and the one session is a `sts-policy-fetch-error`
//! failure under `no-policy-found`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use records::tlsrpt::{PolicyType, Report, ResultType};
use records::{AttackerSession, SessionRecord, read_jsonl};
use relay::{Relay, RelayConfig, TlsIdentity};
use scenarios::Scenario;
use scenarios::inject::{Submission, Submitter};
use scenarios::pki::Pki;

struct Outcome {
    alpha: Vec<SessionRecord>,
    attacker: Vec<AttackerSession>,
    /// Message ids in beta's mailboxes (its `local` records).
    delivered: Vec<String>,
    /// alpha's TLS-RPT report for beta.example.
    report: Report,
}

/// The one policy of alpha's report: its type, string, domain and MX hosts, worked by hand.
fn assert_policy<'a>(
    report: &'a Report,
    policy_type: PolicyType,
    policy_string: &[&str],
) -> &'a records::tlsrpt::PolicyReport {
    assert_eq!(report.policies.len(), 1, "{report:#?}");
    let p = &report.policies[0];
    assert_eq!(p.policy.policy_type, policy_type, "{report:#?}");
    assert_eq!(p.policy.policy_string, policy_string, "{report:#?}");
    assert_eq!(p.policy.policy_domain, "beta.example");
    assert_eq!(p.policy.mx_host, ["mx.beta.example"], "{report:#?}");
    p
}

/// Runs alpha (`may` + MTA-STS) → beta (`enforce`) with the attacker arriving before the first
/// message (`from_first_contact`) or between the first and the second.
fn tofu(name: &str, octet: u8, port: u16, from_first_contact: bool) -> Outcome {
    let text = format!(
        r#"
[scenario]
name = "tofu-{name}"

[network]
smtp_port = {port}
submission_port = {sub}
dns = "server"
dns_port = {dns}
https_port = {https}

[tap]
capture = "none"

[[systems]]
name = "alpha"
domain = "alpha.example"
address = "127.0.{octet}.1"
starttls = true
outbound_tls = "may"
mta_sts = true

[[systems]]
name = "beta"
domain = "beta.example"
address = "127.0.{next}.1"
starttls = true
mta_sts_policy = {{ mode = "enforce", max_age = 86400, id = "t1" }}

[[attacks]]
attack = "strip"
policy_fetch = "drop"
domains = ["beta.example"]
"#,
        sub = port + 1,
        dns = port + 3,
        https = port + 4,
        next = octet + 1,
    );
    let s = Scenario::parse(&text, name).expect("valid scenario");
    let dir = std::env::temp_dir().join(format!("smtplab-tofu-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let outcome = rt.block_on(async {
        let pki = Pki::new(&s.scenario.name).expect("CA");
        let dns = scenarios::dns::Dns::start(&s, port, &[]).await.expect("DNS");
        let policies = scenarios::mta_sts::PolicyServers::start(&s, &pki).await.expect("policy server");
        let attack_on: scenarios::attack::TrafficStart = Default::default();
        let attackers =
            scenarios::attack::Attackers::start(&s, &pki, port, &dir, attack_on.clone()).await.expect("attacker");
        let mut relays = Vec::new();
        for i in 0..2 {
            relays.push(Relay::start(config(&s, i, &pki, &dns, &dir)).await.expect("relay"));
        }
        let submission = SocketAddr::new(IpAddr::V4(s.address(0)), s.network.submission_port);
        let submit = |id: &'static str| async move {
            let body = format!("Message-ID: <{id}>\r\nSubject: tofu\r\n\r\nread me if you can\r\n");
            let mut c = Submitter::connect(submission, "client").await.expect("connect");
            c.submit(&Submission {
                from: "a@alpha.example",
                to: vec!["b@beta.example"],
                bytes: body.as_bytes(),
                requiretls: false,
            })
            .await
            .expect("submitted");
            c.quit().await;
        };
        if from_first_contact {
            let _ = attack_on.set(std::time::Instant::now());
        }
        submit("first@alpha.example").await;
        assert_eq!(relays[0].wait_idle(Duration::from_secs(60)).await, 0, "the first message left alpha");
        if !from_first_contact {
            let _ = attack_on.set(std::time::Instant::now());
            submit("second@alpha.example").await;
            // The second message is deferred, not lost: wait (bounded) for alpha's record of it.
            let records = dir.join("alpha/sessions.jsonl");
            let mut seen = false;
            for _ in 0..300 {
                let recs: Vec<SessionRecord> = read_jsonl(&records).unwrap_or_default();
                if recs.iter().any(|r| r.direction == "outbound" && r.outcome == "deferred") {
                    seen = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(seen, "alpha recorded no deferred attempt");
            assert_eq!(relays[0].queued(), 1, "the second message waits in alpha's queue");
        }
        // beta's local delivery of the first message is recorded once beta's queue is empty.
        assert_eq!(relays[1].wait_idle(Duration::from_secs(60)).await, 0);
        for r in relays {
            r.shutdown(Duration::from_secs(5)).await;
        }
        attackers.stop(Duration::from_secs(5)).await;
        policies.stop().await;
        dns.stop().await;
        let beta: Vec<SessionRecord> = read_jsonl(&dir.join("beta/sessions.jsonl")).expect("beta's records");
        Outcome {
            alpha: read_jsonl(&dir.join("alpha/sessions.jsonl")).expect("alpha's records"),
            attacker: read_jsonl(&dir.join("attackers/attacker1/sessions.jsonl")).expect("attacker's records"),
            report: serde_json::from_slice(
                &std::fs::read(dir.join("alpha/tlsrpt/beta.example.json")).expect("alpha's report for beta.example"),
            )
            .expect("a report"),
            delivered: beta
                .iter()
                .filter(|r| r.direction == "local" && r.outcome == "delivered")
                .flat_map(|r| r.messages.iter().map(|m| m.message_id.clone()))
                .collect(),
        }
    });
    if std::env::var_os("SMTPLAB_KEEP_RUNS").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    outcome
}

/// A relay as the runner makes one, with short retries.
fn config(s: &Scenario, i: usize, pki: &Pki, dns: &scenarios::dns::Dns, dir: &Path) -> RelayConfig {
    let sys = &s.systems[i];
    let ip = IpAddr::V4(s.address(i));
    let (cert_chain_pem, key_pem) = pki.issue(&sys.mx_host()).expect("certificate");
    let home = dir.join(&sys.name);
    RelayConfig {
        system: sys.name.clone(),
        hostname: sys.mx_host(),
        listen: SocketAddr::new(ip, s.network.smtp_port),
        submission: Some(SocketAddr::new(ip, s.network.submission_port)),
        bind: Some(ip),
        spool: home.join("spool"),
        local_domains: vec![sys.domain.clone()],
        relay_domains: Vec::new(),
        relay_clients: vec![relay::config::IpNet::from(IpAddr::V4(Ipv4Addr::LOCALHOST))],
        mailbox_dir: home.join("mailboxes"),
        tls_identity: Some(TlsIdentity { cert_chain_pem, key_pem }),
        tls: Default::default(),
        inbound_tls: sys.inbound(),
        outbound_tls: sys.outbound(),
        outbound_tls_by_domain: Vec::new(),
        mta_sts: if sys.mta_sts { scenarios::mta_sts::relay_config(s, &pki.ca_pem) } else { None },
        ca_pem: Some(pki.ca_pem.clone()),
        resolver: dns.resolver_for(ip).expect("resolver"),
        records: Some(home.join("sessions.jsonl")),
        keylog: None,
        limits: Default::default(),
        timeouts: relay::config::Timeouts {
            greeting: Duration::from_secs(30),
            command: Duration::from_secs(30),
            retry_first: Duration::from_secs(1),
            retry_max: Duration::from_secs(2),
            ..Default::default()
        },
        delivery: Default::default(),
    }
}

fn hops(o: &Outcome) -> Vec<&SessionRecord> {
    o.alpha.iter().filter(|r| r.direction == "outbound").collect()
}

#[test]
fn an_attacker_after_first_contact_is_stopped_by_the_cached_policy() {
    let o = tofu("after", 171, 17911, false);
    let hops = hops(&o);
    let first = hops.iter().find(|h| h.outcome == "delivered").expect("the first message was delivered");
    assert_eq!(first.messages[0].message_id, "first@alpha.example");
    assert_eq!(first.mta_sts_mode.as_deref(), Some("enforce"));
    assert_eq!(first.mta_sts_source.as_deref(), Some("fetched"));
    assert_eq!(first.mta_sts_policy_id.as_deref(), Some("t1"));
    assert!(first.starttls_used && first.cert_verified, "{first:?}");
    let deferred: Vec<&&SessionRecord> = hops.iter().filter(|h| h.outcome == "deferred").collect();
    assert!(!deferred.is_empty());
    for h in &deferred {
        assert_eq!(h.mta_sts_mode.as_deref(), Some("enforce"), "{h:?}");
        assert_eq!(h.mta_sts_source.as_deref(), Some("cached"), "{h:?}");
        assert_eq!(h.mta_sts_failure.as_deref(), Some("starttls-not-supported"), "{h:?}");
        assert!(h.messages.is_empty(), "{h:?}");
    }
    assert_eq!(o.delivered, ["first@alpha.example"]);
    // The attacker passed the first session through and read nothing of the rest.
    assert!(o.attacker.iter().any(|a| !a.attacked && a.outcome == "passed"), "{:?}", o.attacker);
    assert!(o.attacker.iter().any(|a| a.attacked), "{:?}", o.attacker);
    for a in &o.attacker {
        assert!(!a.read_envelope && !a.read_content && a.messages.is_empty(), "{a:?}");
    }
    // One policy throughout, fetched then cached: the first session a success, each stripped
    // one a failure at the attacker's address.
    let lines = ["version: STSv1", "mode: enforce", "mx: mx.beta.example", "max_age: 86400"];
    let p = assert_policy(&o.report, PolicyType::Sts, &lines);
    let failed = deferred.len() as u64;
    assert_eq!((p.summary.total_successful_session_count, p.summary.total_failure_session_count), (1, failed));
    for d in &p.failure_details {
        assert_eq!((d.result_type, d.receiving_ip.as_deref()), (ResultType::StarttlsNotSupported, Some("127.254.1.1")));
    }
    assert_eq!(p.failure_details.iter().map(|d| d.failed_session_count).sum::<u64>(), failed);
}

#[test]
fn an_attacker_from_first_contact_who_drops_the_fetch_reads_the_mail() {
    let o = tofu("before", 173, 17921, true);
    let hops = hops(&o);
    assert_eq!(hops.len(), 1, "{hops:?}");
    let h = hops[0];
    assert_eq!((h.outcome.as_str(), h.starttls_used), ("delivered", false), "{h:?}");
    assert_eq!(h.mta_sts_mode, None, "no policy could be had: {h:?}");
    assert_eq!(h.mta_sts_failure.as_deref(), Some("sts-policy-fetch-error"), "{h:?}");
    assert_eq!(o.delivered, ["first@alpha.example"]);
    let read: Vec<String> =
        o.attacker.iter().flat_map(|a| a.messages.iter().filter_map(|m| m.message_id.clone())).collect();
    assert_eq!(read, ["first@alpha.example"]);
    // The plaintext session had no policy to fail, but the fetch the TXT record called for did.
    let p = assert_policy(&o.report, PolicyType::NoPolicyFound, &[]);
    assert_eq!((p.summary.total_successful_session_count, p.summary.total_failure_session_count), (0, 1));
    let d = &p.failure_details[0];
    assert_eq!(
        (d.result_type, d.receiving_ip.as_deref(), d.failed_session_count),
        (ResultType::StsPolicyFetchError, Some("127.254.1.1"), 1)
    );
}
