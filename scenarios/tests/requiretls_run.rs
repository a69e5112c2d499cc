//! REQUIRETLS (RFC 8689) and TLS-RPT (RFC 8460) in real runs: alpha's users all send with
//! REQUIRETLS (`traffic.requiretls_share = 1`), alpha's own policy is only `may`, and beta's
//! MX is behind a stripping attacker, or not. Expected, from RFC 8689 §4.2.1:
//!
//! | attack | expected for alpha → beta                                                     |
//! |--------|-------------------------------------------------------------------------------|
//! | strip  | bounced (5.7.10) at the first attempt; the attacker and the tap read nothing;  |
//! |        | alpha's TLS-RPT report for beta.example counts one starttls-not-supported      |
//! |        | failure per attempt, at the attacker's address                                 |
//! | none   | delivered over verified TLS; the report counts only successes                  |

use std::collections::BTreeSet;

use records::tlsrpt::{PolicyType, Report, ResultType};
use records::{AttackerSession, SessionRecord, TapRecord, TruthMessage, read_jsonl};
use scenarios::{RunOptions, Scenario};

struct Ran {
    dir: std::path::PathBuf,
    out: std::path::PathBuf,
    truth: Vec<TruthMessage>,
    sessions: Vec<SessionRecord>,
}

/// alpha at 127.0.`octet`.1 and beta at 127.0.`octet + 1`.1, on `port` and `port + 1`: this
/// file's block is 17931–17942 and 127.0.111–114 (ARCHITECTURE.md, "Tests side by side").
fn run(name: &str, port: u16, octet: u8, attack: &str, capture: &str) -> Ran {
    let text = format!(
        r#"
[scenario]
name = "requiretls-{name}"
seed = 11
drain_timeout = 6
allow_undelivered = true

[network]
smtp_port = {port}
submission_port = {sub}

[traffic]
messages = 12
users_per_system = 3
max_recipients = 1
intra_system_share = 0.0
requiretls_share = 1.0

[tap]
capture = "{capture}"

[[systems]]
name = "alpha"
domain = "alpha.example"
address = "127.0.{octet}.1"
starttls = true
outbound_tls = "may"

[[systems]]
name = "beta"
domain = "beta.example"
address = "127.0.{next}.1"
starttls = true
{attack}
"#,
        sub = port + 1,
        next = octet + 1,
    );
    let scenario = Scenario::parse(&text, name).expect("valid scenario");
    let out = std::env::temp_dir().join(format!("smtplab-requiretls-{name}-{}", std::process::id()));
    let outcome = scenarios::run(&scenario, &RunOptions::new(out.clone(), "test")).expect("run");
    let dir = outcome.run_dir.clone();
    Ran {
        truth: read_jsonl(&dir.join("truth/messages.jsonl")).expect("truth"),
        sessions: read_jsonl(&dir.join("truth/sessions.jsonl")).expect("sessions"),
        dir,
        out,
    }
}

impl Ran {
    fn alpha_to_beta(&self) -> BTreeSet<String> {
        self.truth
            .iter()
            .filter(|m| m.sender_system == "alpha" && m.recipient_systems.iter().any(|s| s == "beta"))
            .map(|m| m.message_id.clone())
            .collect()
    }

    fn local(&self, system: &str, outcome: &str) -> BTreeSet<String> {
        self.sessions
            .iter()
            .filter(|s| s.direction == "local" && s.system == system && s.outcome == outcome)
            .flat_map(|s| s.messages.iter().map(|m| m.message_id.clone()))
            .collect()
    }

    fn hops(&self) -> Vec<&SessionRecord> {
        self.sessions.iter().filter(|s| s.direction == "outbound" && s.system == "alpha").collect()
    }

    fn report(&self) -> Report {
        let path = self.dir.join("tlsrpt/alpha/beta.example.json");
        serde_json::from_slice(&std::fs::read(&path).expect("alpha's report for beta.example")).expect("a report")
    }

    fn clean(self) {
        if std::env::var_os("SMTPLAB_KEEP_RUNS").is_none() {
            let _ = std::fs::remove_dir_all(&self.out);
        }
    }
}

#[test]
fn requiretls_against_strip_bounces_and_is_never_in_the_clear() {
    let ran = run("strip", 17931, 111, "\n[[attacks]]\nattack = \"strip\"\ndomains = [\"beta.example\"]\n", "live");
    let sent = ran.alpha_to_beta();
    assert!(!sent.is_empty(), "the traffic has messages from alpha to beta");
    assert!(ran.truth.iter().all(|m| m.requiretls), "every user sets REQUIRETLS at share 1");
    // Each bounced at alpha (its local `bounced` record, 5.7.10), none delivered at beta.
    let bounced = ran.local("alpha", "bounced");
    assert!(sent.is_subset(&bounced), "bounced {bounced:?}, sent {sent:?}");
    assert!(ran.local("beta", "delivered").is_disjoint(&sent));
    for s in ran.sessions.iter().filter(|s| s.direction == "local" && s.outcome == "bounced") {
        assert!(s.error.as_deref().unwrap_or("").contains("5.7.10"), "{s:?}");
    }
    // One attempt per message, never a message on the wire.
    let hops = ran.hops();
    assert_eq!(hops.len(), sent.len(), "{hops:#?}");
    assert!(
        hops.iter().all(|h| h.messages.is_empty() && !h.starttls_offered && h.peer_addr.starts_with("127.254.1.1:"))
    );
    // The attacker's own record: attacked every session, read no envelope and no content.
    let attacker: Vec<AttackerSession> = read_jsonl(&ran.dir.join("truth/attacker.jsonl")).expect("attacker");
    assert_eq!(attacker.len(), sent.len());
    for s in &attacker {
        assert!(s.attacked && !s.read_envelope && !s.read_content && s.messages.is_empty(), "{s:?}");
    }
    // The live tap saw the victim's leg: no mail transaction in the clear on it.
    let tap: Vec<TapRecord> = read_jsonl(&ran.dir.join("tap/transactions.jsonl")).expect("tap");
    let clear: Vec<&TapRecord> =
        tap.iter().filter(|r| matches!(r, TapRecord::Transaction(t) if t.resp_h == "127.254.1.1")).collect();
    assert!(clear.is_empty(), "{clear:?}");
    // TLS-RPT: alpha reports one starttls-not-supported failure per attempt, at the attacker.
    let report = ran.report();
    assert_eq!(report.organization_name, "alpha");
    assert_eq!(report.policies.len(), 1, "{report:#?}");
    let p = &report.policies[0];
    // beta publishes neither DANE nor MTA-STS: REQUIRETLS is alpha's own policy (RFC 8460 §4.4).
    assert_eq!(p.policy.policy_type, PolicyType::NoPolicyFound);
    assert!(p.policy.policy_string.is_empty());
    assert_eq!(
        (p.policy.policy_domain.as_str(), p.policy.mx_host.as_slice()),
        ("beta.example", &["mx.beta.example".to_string()][..])
    );
    assert_eq!(p.summary.total_failure_session_count, sent.len() as u64);
    assert_eq!(p.summary.total_successful_session_count, 0);
    assert_eq!(p.failure_details.len(), 1);
    let d = &p.failure_details[0];
    assert_eq!(d.result_type, ResultType::StarttlsNotSupported);
    assert_eq!(d.receiving_ip.as_deref(), Some("127.254.1.1"));
    assert_eq!(d.sending_mta_ip.as_deref(), Some("127.0.111.1"));
    ran.clean();
}

#[test]
fn requiretls_on_an_honest_path_is_delivered_verified() {
    let ran = run("honest", 17941, 113, "", "none");
    let sent = ran.alpha_to_beta();
    assert!(!sent.is_empty());
    assert!(sent.is_subset(&ran.local("beta", "delivered")));
    assert!(ran.local("alpha", "bounced").is_empty());
    let hops = ran.hops();
    assert_eq!(hops.len(), sent.len());
    assert!(hops.iter().all(|h| h.starttls_used && h.cert_verified && h.outcome == "delivered"), "{hops:#?}");
    let p = &ran.report().policies[0];
    assert_eq!(
        (p.summary.total_successful_session_count, p.summary.total_failure_session_count),
        (sent.len() as u64, 0)
    );
    ran.clean();
}
