//! Active attackers in real runs (issue 13): real relays with real TLS send through an attacker
//! that the scenario's DNS puts in front of beta's MX, and each test asserts the outcome that
//! RFC 3207 and Postfix's `smtp_tls_security_level` semantics give for the sender's policy:
//!
//! | attack                  | sender policy | expected                                       |
//! |-------------------------|---------------|------------------------------------------------|
//! | strip                   | may           | plaintext: the attacker reads all, delivered   |
//! | strip-xxxxxxxa          | may           | same                                           |
//! | strip                   | encrypt       | no STARTTLS offered: deferred, nothing read    |
//! | 454                     | may           | TLS refused, falls back: read, delivered       |
//! | fake-mx, self-signed    | encrypt       | any certificate accepted: read, delivered      |
//! | fake-mx, self-signed    | verify        | unknown issuer: deferred, nothing read         |
//! | fake-mx, wrong-name     | verify        | name mismatch: deferred, nothing read          |
//! | fake-mx, compromised-CA | verify        | the CA is trusted: read, delivered             |
//! | inject-command          | may           | beta refuses (554, closes): deferred, unread   |
//! | inject-response         | may           | alpha refuses (hangs up): deferred, unread     |
//!
//! beta publishes neither DANE nor MTA-STS, so alpha's TLS-RPT reports (RFC 8460 §4.4) are
//! `no-policy-found` for `mx.beta.example`: a `may` sender stripped into plaintext reports
//! nothing; `verify` refusing the fake MX reports each session as a certificate failure.
//!
//! What was read comes from the attacker's own records; what was sent and delivered from the
//! relays' records (the sender's outbound hops, the receiver's local deliveries), so the two
//! sides check each other. The first test also runs the live tap (root or CAP_NET_RAW, as CI
//! has): the eavesdropper recovers every message the attack forced into the clear.

use std::collections::BTreeSet;

use records::{AttackerSession, SessionRecord, TapRecord, TruthMessage, read_jsonl};
use scenarios::{RunOptions, Scenario};

/// What a run left: the truth, every relay session and the attacker's sessions.
struct Ran {
    dir: std::path::PathBuf,
    out: std::path::PathBuf,
    /// Messages alpha sent with a recipient at beta: the ones that cross the attacked link.
    to_beta: BTreeSet<String>,
    sessions: Vec<SessionRecord>,
    attacker: Vec<AttackerSession>,
    stuck: Vec<String>,
}

impl Ran {
    /// alpha's outbound sessions towards beta's MX.
    fn hops(&self) -> Vec<&SessionRecord> {
        self.sessions
            .iter()
            .filter(|s| s.direction == "outbound" && s.system == "alpha" && s.peer_system.as_deref() == Some("beta"))
            .collect()
    }

    /// Message ids beta delivered into its mailboxes (its own `local` records).
    fn delivered_at_beta(&self) -> BTreeSet<String> {
        self.sessions
            .iter()
            .filter(|s| s.direction == "local" && s.system == "beta" && s.outcome == "delivered")
            .flat_map(|s| s.messages.iter().map(|m| m.message_id.clone()))
            .collect()
    }

    fn read_ids(&self) -> BTreeSet<String> {
        self.attacker.iter().flat_map(|s| s.messages.iter().filter_map(|m| m.message_id.clone())).collect()
    }

    /// Asserts the attacker read every message alpha sent to beta, exactly as alpha sent it
    /// (sha256 of each hop's message, from alpha's records), and beta received them all.
    fn assert_read_and_delivered(&self) {
        assert!(!self.to_beta.is_empty(), "the traffic has messages from alpha to beta");
        assert!(self.stuck.is_empty(), "stuck: {:?}", self.stuck);
        let sent: BTreeSet<(String, String)> = self
            .hops()
            .iter()
            .flat_map(|h| h.messages.iter().map(|m| (m.message_id.clone(), m.sha256.clone())))
            .collect();
        let read: BTreeSet<(String, String)> = self
            .attacker
            .iter()
            .flat_map(|s| s.messages.iter().map(|m| (m.message_id.clone().unwrap_or_default(), m.sha256.clone())))
            .collect();
        assert_eq!(sent.iter().map(|(id, _)| id.clone()).collect::<BTreeSet<_>>(), self.to_beta);
        assert_eq!(read, sent, "the attacker read each message exactly as alpha sent it");
        for s in &self.attacker {
            assert!(s.attacked && s.read_envelope && s.upstream_tls, "{s:?}");
            assert_eq!(s.victim_system.as_deref(), Some("alpha"));
            assert_eq!((s.target_domain.as_str(), s.target_system.as_str()), ("beta.example", "beta"));
        }
        assert!(!self.hops().is_empty());
        for h in self.hops() {
            assert_eq!(h.outcome, "delivered", "{h:?}");
            assert!(h.peer_addr.starts_with("127.254.1.1:"), "alpha really connected to the attacker: {h:?}");
        }
        let delivered = self.delivered_at_beta();
        assert!(self.to_beta.is_subset(&delivered), "beta delivered {delivered:?}, expected {:?}", self.to_beta);
        // beta's side of the onward leg: from the attacker's address, over TLS.
        let inbound: Vec<&SessionRecord> = self
            .sessions
            .iter()
            .filter(|s| s.direction == "inbound" && s.system == "beta" && !s.messages.is_empty())
            .collect();
        assert!(!inbound.is_empty(), "beta received alpha's mail");
        assert!(inbound.iter().all(|s| s.peer_addr.starts_with("127.254.1.1:") && s.starttls_used), "{inbound:?}");
    }

    /// beta's inbound sessions from the attacker's address: its side of the onward leg.
    fn beta_from_attacker(&self) -> Vec<&SessionRecord> {
        self.sessions
            .iter()
            .filter(|s| s.direction == "inbound" && s.system == "beta" && s.peer_addr.starts_with("127.254.1.1:"))
            .collect()
    }

    /// Asserts nothing alpha sent to beta left alpha's queue, and the attacker read nothing;
    /// alpha's error for each attempt names `why`.
    fn assert_deferred_unread(&self, why: &str) {
        self.assert_held_back_unread();
        for h in self.hops() {
            let e = h.error.as_deref().unwrap_or("");
            assert!(e.contains(why), "expected {why:?} in alpha's error: {e}");
        }
    }

    /// alpha's TLS-RPT report for beta.example, if it wrote one.
    fn report(&self) -> Option<records::tlsrpt::Report> {
        let bytes = std::fs::read(self.dir.join("tlsrpt/alpha/beta.example.json")).ok()?;
        Some(serde_json::from_slice(&bytes).expect("a TLS-RPT report"))
    }

    /// Asserts nothing alpha sent to beta left alpha's queue, and the attacker read nothing.
    fn assert_held_back_unread(&self) {
        assert!(!self.to_beta.is_empty(), "the traffic has messages from alpha to beta");
        let hops = self.hops();
        assert!(!hops.is_empty(), "alpha tried to deliver");
        for h in &hops {
            assert_eq!(h.outcome, "deferred", "{h:?}");
            assert!(h.messages.is_empty(), "{h:?}");
        }
        for id in &self.to_beta {
            assert!(self.stuck.iter().any(|s| s.starts_with("alpha:") && s.contains(id.as_str())), "{id} not queued");
        }
        assert!(self.delivered_at_beta().is_disjoint(&self.to_beta));
        assert!(!self.attacker.is_empty(), "alpha's attempts met the attacker");
        for s in &self.attacker {
            assert!(s.attacked && !s.read_envelope && !s.read_content && s.messages.is_empty(), "{s:?}");
        }
    }

    fn clean(self) {
        if std::env::var_os("SMTPLAB_KEEP_RUNS").is_none() {
            let _ = std::fs::remove_dir_all(&self.out);
        }
    }
}

/// Runs alpha (outbound `policy`) and beta (STARTTLS) with `attack` on beta's domain. Each test
/// has its own ports and addresses, so they run in parallel.
fn run(name: &str, port: u16, octet: u8, policy: &str, attack: &str, capture: &str) -> Ran {
    let text = format!(
        r#"
[scenario]
name = "attack-{name}"
seed = 7
drain_timeout = 4
allow_undelivered = true

[network]
smtp_port = {port}
submission_port = {sub}

[traffic]
messages = 16
users_per_system = 3
max_recipients = 2
intra_system_share = 0.0

[tap]
capture = "{capture}"

[[systems]]
name = "alpha"
domain = "alpha.example"
address = "127.0.{octet}.1"
starttls = true
outbound_tls = "{policy}"

[[systems]]
name = "beta"
domain = "beta.example"
address = "127.0.{next}.1"
starttls = true

[[attacks]]
{attack}
domains = ["beta.example"]
"#,
        sub = port + 1,
        next = octet + 1,
    );
    let scenario = Scenario::parse(&text, name).expect("valid scenario");
    let out = std::env::temp_dir().join(format!("smtplab-attack-{name}-{}", std::process::id()));
    let outcome = scenarios::run(&scenario, &RunOptions::new(out.clone(), "test")).expect("run");
    let dir = outcome.run_dir.clone();
    let truth: Vec<TruthMessage> = read_jsonl(&dir.join("truth/messages.jsonl")).expect("truth");
    let to_beta = truth
        .iter()
        .filter(|m| m.sender_system == "alpha" && m.recipient_systems.iter().any(|s| s == "beta"))
        .map(|m| m.message_id.clone())
        .collect();
    Ran {
        sessions: read_jsonl(&dir.join("truth/sessions.jsonl")).expect("sessions"),
        attacker: read_jsonl(&dir.join("truth/attacker.jsonl")).expect("truth/attacker.jsonl"),
        dir,
        out,
        to_beta,
        stuck: outcome.stuck,
    }
}

#[test]
fn strip_against_may_is_read_delivered_and_seen_by_the_tap() {
    let ran = run("strip-may", 17611, 81, "may", r#"attack = "strip""#, "live");
    ran.assert_read_and_delivered();
    for h in ran.hops() {
        assert!(!h.starttls_offered && !h.starttls_used, "alpha never saw STARTTLS: {h:?}");
    }
    // The passive tap on the victim's leg recovers exactly what the attacker read.
    let tap: Vec<TapRecord> = read_jsonl(&ran.dir.join("tap/transactions.jsonl")).expect("tap");
    let clear: BTreeSet<String> = tap
        .iter()
        .filter_map(|r| match r {
            TapRecord::Transaction(t) if t.resp_h == "127.254.1.1" => t.sha256.clone(),
            _ => None,
        })
        .collect();
    let read: BTreeSet<String> =
        ran.attacker.iter().flat_map(|s| s.messages.iter().map(|m| m.sha256.clone())).collect();
    assert_eq!(clear, read, "the tap recovered every message forced into the clear on alpha's leg");
    ran.clean();
}

#[test]
fn strip_xxxxxxxa_against_may_is_read_and_delivered() {
    let ran = run("xxx-may", 17621, 83, "may", r#"attack = "strip-xxxxxxxa""#, "none");
    ran.assert_read_and_delivered();
    assert!(ran.hops().iter().all(|h| !h.starttls_offered));
    // `may` noticed nothing and beta publishes no policy: nothing to report.
    assert_eq!(ran.report(), None);
    ran.clean();
}

#[test]
fn strip_against_encrypt_is_deferred_and_unread() {
    let ran = run("strip-encrypt", 17631, 85, "encrypt", r#"attack = "strip""#, "none");
    ran.assert_deferred_unread("does not offer STARTTLS");
    assert!(ran.attacker.iter().all(|s| s.outcome == "victim-left"), "{:?}", ran.attacker);
    ran.clean();
}

#[test]
fn refusing_starttls_with_454_against_may_is_read() {
    let ran = run("454-may", 17641, 87, "may", r#"attack = "454""#, "none");
    ran.assert_read_and_delivered();
    for h in ran.hops() {
        assert!(h.starttls_offered && !h.starttls_used && h.replies.contains(&454), "{h:?}");
    }
    ran.clean();
}

#[test]
fn fake_mx_self_signed_against_encrypt_is_read() {
    let ran = run("fake-encrypt", 17651, 89, "encrypt", r#"attack = "fake-mx""#, "none");
    ran.assert_read_and_delivered();
    for h in ran.hops() {
        assert!(h.starttls_used && !h.cert_verified, "alpha used TLS with the attacker: {h:?}");
    }
    assert!(ran.attacker.iter().all(|s| s.victim_tls && s.certificate.as_deref() == Some("self-signed")));
    ran.clean();
}

#[test]
fn fake_mx_self_signed_against_verify_is_deferred_and_unread() {
    let ran = run("fake-verify", 17661, 91, "verify", r#"attack = "fake-mx""#, "none");
    ran.assert_deferred_unread("UnknownIssuer");
    assert!(ran.attacker.iter().all(|s| s.outcome == "victim-refused-tls"), "{:?}", ran.attacker);
    let report = ran.report().expect("alpha's report for beta.example");
    assert_eq!(report.policies.len(), 1, "{report:#?}");
    let p = &report.policies[0];
    assert_eq!(p.policy.policy_type, records::tlsrpt::PolicyType::NoPolicyFound);
    assert!(p.policy.policy_string.is_empty(), "{report:#?}");
    assert_eq!(
        (p.policy.policy_domain.as_str(), p.policy.mx_host.as_slice()),
        ("beta.example", &["mx.beta.example".to_string()][..])
    );
    let sessions = ran.hops().len() as u64;
    assert_eq!((p.summary.total_successful_session_count, p.summary.total_failure_session_count), (0, sessions));
    for d in &p.failure_details {
        assert_eq!(d.result_type, records::tlsrpt::ResultType::CertificateNotTrusted, "{d:?}");
        assert_eq!(d.receiving_ip.as_deref(), Some("127.254.1.1"), "{d:?}");
    }
    assert_eq!(p.failure_details.iter().map(|d| d.failed_session_count).sum::<u64>(), sessions);
    ran.clean();
}

#[test]
fn fake_mx_wrong_name_against_verify_is_deferred_and_unread() {
    let ran =
        run("wrongname-verify", 17671, 93, "verify", "attack = \"fake-mx\"\ncertificate = \"wrong-name\"", "none");
    ran.assert_deferred_unread("not valid for name \"mx.beta.example\"");
    ran.clean();
}

#[test]
fn fake_mx_with_a_compromised_ca_against_verify_is_read() {
    let ran = run("ca-verify", 17681, 95, "verify", "attack = \"fake-mx\"\ncertificate = \"compromised-ca\"", "none");
    ran.assert_read_and_delivered();
    for h in ran.hops() {
        assert!(h.starttls_used && h.cert_verified, "verify passed against the attacker's certificate: {h:?}");
    }
    ran.clean();
}

/// inject-command (CVE-2011-0411; "NO STARTTLS", USENIX Security 2021) against beta's relay:
/// the attacker writes alpha's STARTTLS to beta with an envelope of its own behind it. beta's
/// relay refuses plaintext pipelined after STARTTLS with 554 and closes, so no TLS session
/// begins, alpha (`may`) gets no TLS and no delivery through the attacker, and nothing is read.
#[test]
fn command_injection_after_starttls_is_refused_by_the_receiving_relay() {
    let ran = run("inject-command", 17711, 105, "may", r#"attack = "inject-command""#, "none");
    ran.assert_held_back_unread();
    // alpha was offered STARTTLS, said it, and got beta's 554 passed on: never TLS.
    for h in ran.hops() {
        assert!(h.starttls_offered && !h.starttls_used && h.replies.contains(&554), "{h:?}");
    }
    // beta's own record of each onward session: the rejection, no TLS, no message.
    let beta = ran.beta_from_attacker();
    assert_eq!(beta.len(), ran.attacker.len(), "one onward session per attacked session: {beta:?}");
    for s in &beta {
        assert_eq!((s.outcome.as_str(), s.error.as_deref()), ("rejected", Some("plaintext pipelined after STARTTLS")));
        assert!(!s.starttls_used && s.messages.is_empty() && s.replies.last() == Some(&554), "{s:?}");
    }
    // The attacker's record agrees: it injected, beta refused, it read nothing and had no TLS.
    for s in &ran.attacker {
        assert_eq!(s.injection_refused, Some(true), "{s:?}");
        assert_eq!(s.outcome, "injection-refused", "{s:?}");
        assert!(!s.victim_tls && !s.upstream_tls, "{s:?}");
    }
    // No message was taken under the injected envelope (its sender read from the attacker's
    // record of what it injected), by beta or anyone.
    let injected_from: BTreeSet<String> = ran
        .attacker
        .iter()
        .filter_map(|s| s.injected.as_deref())
        .filter_map(|i| Some(i.split_once("MAIL FROM:<")?.1.split_once('>')?.0.to_string()))
        .collect();
    assert_eq!(injected_from.len(), 1, "one injected envelope: {:?}", ran.attacker);
    for s in &ran.sessions {
        assert!(s.messages.iter().all(|m| !injected_from.contains(&m.mail_from)), "{s:?}");
    }
    ran.clean();
}

/// inject-response against alpha's relay: the attacker passes beta's 220 to STARTTLS with a fake
/// post-TLS EHLO reply behind it in the same write. alpha's client sees data after the 220,
/// gives up before any handshake (a transient failure) and defers; nothing is read, and beta
/// never sees TLS either.
#[test]
fn response_injection_after_starttls_is_refused_by_the_sending_relay() {
    let ran = run("inject-response", 17721, 107, "may", r#"attack = "inject-response""#, "none");
    ran.assert_deferred_unread("response injection");
    for h in ran.hops() {
        assert!(h.starttls_offered && !h.starttls_used && h.replies.last() == Some(&220), "{h:?}");
    }
    // beta answered the forwarded STARTTLS with 220 and never got a handshake.
    let beta = ran.beta_from_attacker();
    assert_eq!(beta.len(), ran.attacker.len(), "one onward session per attacked session: {beta:?}");
    for s in &beta {
        assert!(!s.starttls_used && s.messages.is_empty() && s.replies.last() == Some(&220), "{s:?}");
    }
    for s in &ran.attacker {
        assert!(s.injected.is_some(), "{s:?}");
        assert_eq!(s.injection_refused, Some(true), "{s:?}");
        // alpha's record says it gave up before TLS: the attacker saw it hang up.
        assert_eq!(s.injection_reaction.as_deref(), Some("victim hung up before TLS"), "{s:?}");
        assert_eq!(s.outcome, "injection-refused", "{s:?}");
        assert!(!s.victim_tls && !s.upstream_tls, "{s:?}");
    }
    ran.clean();
}

/// share = 0: the attacker is on the path but attacks nothing; every session passes through
/// untouched, so alpha's `may` gets TLS end to end and nothing is read.
#[test]
fn a_zero_share_passes_everything_through_unread() {
    let ran = run("share0", 17691, 97, "may", "attack = \"strip\"\nshare = 0.0", "none");
    assert!(ran.stuck.is_empty(), "{:?}", ran.stuck);
    assert!(!ran.attacker.is_empty());
    assert!(ran.read_ids().is_empty());
    for s in &ran.attacker {
        assert!(!s.attacked && s.outcome == "passed" && !s.read_envelope, "{s:?}");
    }
    for h in ran.hops() {
        assert!(h.starttls_used && h.outcome == "delivered", "{h:?}");
    }
    assert!(ran.to_beta.is_subset(&ran.delivered_at_beta()));
    ran.clean();
}

/// The attacker placed by the scenario's DNS server (over UDP, not the in-process map), on one
/// link only: alpha's sessions to beta are attacked, gamma's to beta pass through. A second
/// attacker on gamma's domain starts an hour into the traffic, so in this run it attacks nothing.
#[test]
fn dns_server_placement_links_and_start_time() {
    let text = r#"
[scenario]
name = "attack-links"
seed = 11
drain_timeout = 30

[network]
smtp_port = 17701
submission_port = 17702
dns = "server"
dns_address = "127.0.99.53"
dns_port = 15399

[traffic]
messages = 24
users_per_system = 3
max_recipients = 2
intra_system_share = 0.0

[tap]
capture = "none"

[[systems]]
name = "alpha"
domain = "alpha.example"
address = "127.0.101.1"
starttls = true

[[systems]]
name = "beta"
domain = "beta.example"
address = "127.0.102.1"
starttls = true

[[systems]]
name = "gamma"
domain = "gamma.example"
address = "127.0.103.1"
starttls = true

[[attacks]]
name = "mallory"
attack = "strip"
links = [["alpha", "beta"]]

[[attacks]]
name = "late"
attack = "strip"
domains = ["gamma.example"]
start = 3600
"#;
    let scenario = Scenario::parse(text, "links").expect("valid scenario");
    let out = std::env::temp_dir().join(format!("smtplab-attack-links-{}", std::process::id()));
    let outcome = scenarios::run(&scenario, &RunOptions::new(out.clone(), "test")).expect("run");
    assert!(outcome.stuck.is_empty(), "{:?}", outcome.stuck);
    let dir = &outcome.run_dir;
    let truth: Vec<TruthMessage> = read_jsonl(&dir.join("truth/messages.jsonl")).expect("truth");
    let sessions: Vec<SessionRecord> = read_jsonl(&dir.join("truth/sessions.jsonl")).expect("sessions");
    let attacker: Vec<AttackerSession> = read_jsonl(&dir.join("truth/attacker.jsonl")).expect("attacker");
    let sent = |from: &str, to: &str| -> BTreeSet<String> {
        truth
            .iter()
            .filter(|m| m.sender_system == from && m.recipient_systems.iter().any(|s| s == to))
            .map(|m| m.message_id.clone())
            .collect()
    };
    let hops = |from: &str, to: &str| -> Vec<&SessionRecord> {
        sessions
            .iter()
            .filter(|s| s.direction == "outbound" && s.system == from && s.peer_system.as_deref() == Some(to))
            .collect()
    };
    let (alpha_beta, gamma_beta) = (sent("alpha", "beta"), sent("gamma", "beta"));
    assert!(!alpha_beta.is_empty() && !gamma_beta.is_empty() && !sent("beta", "gamma").is_empty());
    // The DNS server sent both of beta's senders to mallory, who attacked alpha's sessions only
    // (the runner names the system behind an attacker's address in the relays' records).
    assert!(
        !hops("alpha", "beta").is_empty() && !hops("gamma", "beta").is_empty() && !hops("beta", "gamma").is_empty()
    );
    for h in hops("alpha", "beta") {
        assert!(h.peer_addr.starts_with("127.254.1.1:") && !h.starttls_offered && h.outcome == "delivered", "{h:?}");
    }
    for h in hops("gamma", "beta") {
        assert!(h.peer_addr.starts_with("127.254.1.1:") && h.starttls_used && h.outcome == "delivered", "{h:?}");
    }
    let mallory: Vec<&AttackerSession> = attacker.iter().filter(|s| s.attacker == "mallory").collect();
    let read: BTreeSet<String> =
        mallory.iter().flat_map(|s| s.messages.iter().filter_map(|m| m.message_id.clone())).collect();
    assert_eq!(read, alpha_beta);
    for s in &mallory {
        let from_alpha = s.victim_system.as_deref() == Some("alpha");
        assert_eq!(s.attacked, from_alpha, "{s:?}");
        assert_eq!(s.outcome, if from_alpha { "relayed" } else { "passed" }, "{s:?}");
    }
    assert!(mallory.iter().any(|s| s.victim_system.as_deref() == Some("gamma")));
    // The late attacker was on the path to gamma and attacked nothing.
    let late: Vec<&AttackerSession> = attacker.iter().filter(|s| s.attacker == "late").collect();
    assert!(!late.is_empty() && late.iter().all(|s| !s.attacked && s.messages.is_empty()), "{late:?}");
    for h in hops("beta", "gamma") {
        assert!(h.peer_addr.starts_with("127.254.2.1:") && h.starttls_used, "{h:?}");
    }
    if std::env::var_os("SMTPLAB_KEEP_RUNS").is_none() {
        let _ = std::fs::remove_dir_all(&out);
    }
}
