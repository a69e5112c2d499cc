//! DANE (RFC 7672) in real runs: the scenario's DNS server signs the zones with real DNSSEC and
//! publishes beta's TLSA record; alpha's relay looks it up over UDP, validates it against the
//! signed root's key, and checks beta's certificate against it, with attackers on the path.
//! Expected outcomes are RFC 7672 §2.2's (and Postfix's `dane`/`dane-only`):
//!
//! | beta's zone            | TLSA    | path                 | alpha | expected                        |
//! |------------------------|---------|----------------------|-------|---------------------------------|
//! | signed                 | 3 1 1   | fake-mx, self-signed | dane  | mismatch: deferred, unread      |
//! | unsigned (insecure)    | 3 1 1   | fake-mx, self-signed | dane  | no DANE, `may`: read, delivered |
//! | signed                 | 3 1 1   | strip                | dane  | TLS required: deferred, unread  |
//! | signed                 | 3 1 1   | honest               | dane  | delivered, DANE-authenticated   |
//! | signed                 | 2 1 1   | honest               | dane  | delivered, DANE-authenticated   |
//! | bogus (key ≠ root's DS)| 3 1 1   | honest               | dane  | dnssec-invalid: deferred        |
//! | unsigned               | none    | honest               | dane-only | dane-required: deferred     |
//!
//! alpha's own zone is always signed, so the root is signed and an unsigned beta is a proven
//! insecure delegation (NSEC), not a mere absence of signatures. Outcomes come from the relays'
//! records and the attacker's own records, checked against each other.
//!
//! alpha's TLS-RPT report for beta.example (RFC 8460 §4.4): wherever alpha used beta's
//! DNSSEC-secure TLSA RRset, the policy is `tlsa`, its `policy-string` that RRset in
//! presentation form (the one record beta publishes) and its `mx-host` `mx.beta.example`; every
//! session the table defers is a failure of the row's result type, every delivered one a
//! success. DANE's refusals before any secure RRset (bogus, `dane-only` to an unsigned zone) are
//! `tlsa` failures with no `policy-string`. With the RRset insecure, `dane` is `may` under no
//! policy: `no-policy-found`, and the fake MX's TLS counts as a success, as `may` counts it.

use std::collections::BTreeSet;

use records::tlsrpt::{PolicyType, Report, ResultType};
use records::{AttackerSession, SessionRecord, TruthMessage, read_jsonl};
use scenarios::{RunOptions, Scenario};

struct Ran {
    out: std::path::PathBuf,
    dir: std::path::PathBuf,
    to_beta: BTreeSet<String>,
    sessions: Vec<SessionRecord>,
    attacker: Vec<AttackerSession>,
    stuck: Vec<String>,
    /// alpha's address, the sending MTA of its reports.
    alpha_ip: String,
}

/// A `3 1 1` record's presentation form: usage, selector, matching type and 64 hex digits.
fn is_dane_ee_spki_sha256(text: &str) -> bool {
    text.strip_prefix("3 1 1 ")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

/// The `2 1 1` record for the scenario CA (`pki/ca.pem`), made with OpenSSL as RFC 7671 §5.1
/// practice makes it (SHA-256 of the DER SubjectPublicKeyInfo), from outside smtplab's code.
fn openssl_2_1_1(ca_pem: &std::path::Path) -> String {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let run = |args: &[&str], input: &[u8]| {
        let mut child = Command::new("openssl")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("openssl must be installed for this test (Debian package openssl)");
        child.stdin.take().expect("stdin").write_all(input).expect("write to openssl");
        let out = child.wait_with_output().expect("openssl ran");
        assert!(out.status.success(), "openssl {args:?} failed");
        out.stdout
    };
    let pem = std::fs::read(ca_pem).expect("pki/ca.pem");
    let pubkey = run(&["x509", "-pubkey", "-noout"], &pem);
    let spki = run(&["pkey", "-pubin", "-outform", "DER"], &pubkey);
    let digest = run(&["dgst", "-sha256", "-binary"], &spki);
    format!("2 1 1 {}", digest.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

impl Ran {
    fn hops(&self) -> Vec<&SessionRecord> {
        self.sessions
            .iter()
            .filter(|s| s.direction == "outbound" && s.system == "alpha" && s.peer_system.as_deref() == Some("beta"))
            .collect()
    }

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

    /// Every message alpha sent to beta was delivered, by sessions that pass `check`.
    fn assert_delivered(&self, check: impl Fn(&SessionRecord) -> bool) {
        assert!(!self.to_beta.is_empty(), "the traffic has messages from alpha to beta");
        assert!(self.stuck.is_empty(), "stuck: {:?}", self.stuck);
        assert!(self.to_beta.is_subset(&self.delivered_at_beta()));
        let hops = self.hops();
        assert!(!hops.is_empty());
        for h in hops {
            assert_eq!(h.outcome, "delivered", "{h:?}");
            assert!(check(h), "{h:?}");
        }
    }

    /// Nothing alpha sent to beta left alpha: every attempt deferred with `result_type` (RFC 8460)
    /// and `why` in its error, and no attacker read anything.
    fn assert_deferred_unread(&self, result_type: &str, why: &str) {
        assert!(!self.to_beta.is_empty(), "the traffic has messages from alpha to beta");
        let hops = self.hops();
        assert!(!hops.is_empty(), "alpha tried to deliver");
        for h in &hops {
            assert_eq!(h.outcome, "deferred", "{h:?}");
            assert!(h.messages.is_empty() && !h.dane_authenticated, "{h:?}");
            assert_eq!(h.dane_failure.as_deref(), Some(result_type), "{h:?}");
            let e = h.error.as_deref().unwrap_or("");
            assert!(e.contains(why), "expected {why:?} in alpha's error: {e}");
        }
        for id in &self.to_beta {
            assert!(self.stuck.iter().any(|s| s.starts_with("alpha:") && s.contains(id.as_str())), "{id} not queued");
        }
        assert!(self.delivered_at_beta().is_disjoint(&self.to_beta));
        assert!(self.read_ids().is_empty(), "the attacker read {:?}", self.read_ids());
        for s in &self.attacker {
            assert!(!s.read_envelope && !s.read_content, "{s:?}");
        }
    }

    /// alpha's TLS-RPT report for beta.example: its one policy is of `policy_type` for
    /// `mx.beta.example`, and counts every alpha→beta session as a failure of `failure` (at
    /// `receiving_ip`), or, with `None`, as a success. Returns the policy-string.
    fn assert_report(&self, policy_type: PolicyType, failure: Option<ResultType>, receiving_ip: &str) -> Vec<String> {
        let path = self.dir.join("tlsrpt/alpha/beta.example.json");
        let report: Report =
            serde_json::from_slice(&std::fs::read(&path).expect("alpha's report for beta.example")).expect("a report");
        assert_eq!(report.policies.len(), 1, "{report:#?}");
        let p = &report.policies[0];
        assert_eq!(p.policy.policy_type, policy_type, "{report:#?}");
        assert_eq!(
            (p.policy.policy_domain.as_str(), p.policy.mx_host.as_slice()),
            ("beta.example", &["mx.beta.example".to_string()][..])
        );
        let sessions = self.hops().len() as u64;
        assert!(sessions > 0);
        match failure {
            None => {
                assert_eq!(
                    (p.summary.total_successful_session_count, p.summary.total_failure_session_count),
                    (sessions, 0)
                );
                assert!(p.failure_details.is_empty(), "{report:#?}");
            }
            Some(result_type) => {
                assert_eq!(
                    (p.summary.total_successful_session_count, p.summary.total_failure_session_count),
                    (0, sessions)
                );
                assert!(!p.failure_details.is_empty(), "{report:#?}");
                for d in &p.failure_details {
                    assert_eq!(d.result_type, result_type, "{d:?}");
                    assert_eq!(d.receiving_ip.as_deref(), Some(receiving_ip), "{d:?}");
                    assert_eq!(d.sending_mta_ip.as_deref(), Some(self.alpha_ip.as_str()), "{d:?}");
                }
                assert_eq!(p.failure_details.iter().map(|d| d.failed_session_count).sum::<u64>(), sessions);
            }
        }
        p.policy.policy_string.clone()
    }

    fn clean(self) {
        if std::env::var_os("SMTPLAB_KEEP_RUNS").is_none() {
            let _ = std::fs::remove_dir_all(&self.out);
        }
    }
}

/// alpha (outbound `policy`, its zone signed) sends to beta (`beta` lines: its dnssec and dane),
/// with `attack` (an `[[attacks]]` body, or empty) on beta's domain. Own ports and addresses per
/// test, so they run in parallel: `port` to `port + 2` from this file's block 17811–17893
/// (ARCHITECTURE.md, "Tests side by side").
fn run(name: &str, port: u16, octet: u8, policy: &str, beta: &str, attack: &str) -> Ran {
    let attack = if attack.is_empty() {
        String::new()
    } else {
        format!("[[attacks]]\n{attack}\ndomains = [\"beta.example\"]\n")
    };
    let text = format!(
        r#"
[scenario]
name = "dane-{name}"
seed = 7
drain_timeout = 4
allow_undelivered = true

[network]
smtp_port = {port}
submission_port = {sub}
dns = "server"
dns_port = {dns}

[traffic]
messages = 12
users_per_system = 3
max_recipients = 2
intra_system_share = 0.0

[tap]
capture = "none"

[[systems]]
name = "alpha"
domain = "alpha.example"
address = "127.0.{octet}.1"
starttls = true
outbound_tls = "{policy}"
dnssec = true

[[systems]]
name = "beta"
domain = "beta.example"
address = "127.0.{next}.1"
starttls = true
{beta}

{attack}"#,
        sub = port + 1,
        dns = port + 2,
        next = octet + 1,
    );
    let scenario = Scenario::parse(&text, name).expect("valid scenario");
    let out = std::env::temp_dir().join(format!("smtplab-dane-{name}-{}", std::process::id()));
    let outcome = scenarios::run(&scenario, &RunOptions::new(out.clone(), "test")).expect("run");
    let dir = outcome.run_dir.clone();
    let truth: Vec<TruthMessage> = read_jsonl(&dir.join("truth/messages.jsonl")).expect("truth");
    let to_beta = truth
        .iter()
        .filter(|m| m.sender_system == "alpha" && m.recipient_systems.iter().any(|s| s == "beta"))
        .map(|m| m.message_id.clone())
        .collect();
    let attacker_file = dir.join("truth/attacker.jsonl");
    Ran {
        sessions: read_jsonl(&dir.join("truth/sessions.jsonl")).expect("sessions"),
        attacker: if attacker_file.exists() { read_jsonl(&attacker_file).expect("attacker") } else { Vec::new() },
        dir,
        out,
        to_beta,
        stuck: outcome.stuck,
        alpha_ip: format!("127.0.{octet}.1"),
    }
}

#[test]
fn fake_mx_against_dane_with_signed_tlsa_is_deferred_and_unread() {
    let ran = run("fake-signed", 17811, 121, "dane", "dnssec = true\ndane = \"3 1 1\"", r#"attack = "fake-mx""#);
    ran.assert_deferred_unread("tlsa-invalid", "no TLSA record of mx.beta.example matches");
    assert!(!ran.attacker.is_empty(), "alpha's attempts met the attacker");
    assert!(ran.attacker.iter().all(|s| s.outcome == "victim-refused-tls"), "{:?}", ran.attacker);
    let rrset = ran.assert_report(PolicyType::Tlsa, Some(ResultType::TlsaInvalid), "127.254.1.1");
    assert!(rrset.len() == 1 && is_dane_ee_spki_sha256(&rrset[0]), "{rrset:?}");
    ran.clean();
}

/// RFC 7672 §2.2: TLSA records in an insecure zone are not used; `dane` is `may`, and a fake MX
/// with any certificate reads the mail.
#[test]
fn fake_mx_against_dane_with_unsigned_zone_is_read() {
    let ran = run("fake-unsigned", 17821, 123, "dane", "dnssec = false\ndane = \"3 1 1\"", r#"attack = "fake-mx""#);
    ran.assert_delivered(|h| h.starttls_used && !h.cert_verified && !h.dane_authenticated && h.dane_failure.is_none());
    assert_eq!(ran.read_ids(), ran.to_beta, "the attacker read every message to beta");
    // No DANE policy in force: the attacked sessions look like `may`'s successes.
    assert!(ran.assert_report(PolicyType::NoPolicyFound, None, "").is_empty());
    ran.clean();
}

#[test]
fn strip_against_dane_with_signed_tlsa_is_deferred_and_unread() {
    let ran = run("strip-signed", 17831, 125, "dane", "dnssec = true\ndane = \"3 1 1\"", r#"attack = "strip""#);
    ran.assert_deferred_unread("starttls-not-supported", "did not offer STARTTLS");
    let rrset = ran.assert_report(PolicyType::Tlsa, Some(ResultType::StarttlsNotSupported), "127.254.1.1");
    assert!(rrset.len() == 1 && is_dane_ee_spki_sha256(&rrset[0]), "{rrset:?}");
    ran.clean();
}

#[test]
fn honest_path_with_dane_ee_is_delivered_authenticated() {
    let ran = run("honest-311", 17841, 127, "dane", "dnssec = true\ndane = \"3 1 1\"", "");
    ran.assert_delivered(|h| h.starttls_used && h.cert_verified && h.dane_authenticated);
    let rrset = ran.assert_report(PolicyType::Tlsa, None, "");
    assert!(rrset.len() == 1 && is_dane_ee_spki_sha256(&rrset[0]), "{rrset:?}");
    ran.clean();
}

/// RFC 8461 §2: a sender that implements both DANE and MTA-STS lets DANE decide for an MX host
/// with a DNSSEC-secure TLSA RRset, even when the domain also publishes an `enforce` policy:
/// the hop is authenticated by the TLSA record and reported under `tlsa`. (The policy's own MX
/// pattern admits the host; `enforce` alone would have made the hop `verify` by the CA.)
#[test]
fn dane_takes_precedence_over_mta_sts_enforce() {
    // alpha honours MTA-STS too (the line after `outbound_tls` is commented out by the `#`).
    let policy = "dane\"\nmta_sts = true #";
    let beta = "dnssec = true\ndane = \"3 1 1\"\nmta_sts_policy = { mode = \"enforce\" }";
    let ran = run("dane-and-sts", 17891, 137, policy, beta, "");
    ran.assert_delivered(|h| h.starttls_used && h.dane_authenticated && h.mta_sts_mode.as_deref() == Some("enforce"));
    let rrset = ran.assert_report(PolicyType::Tlsa, None, "");
    assert!(rrset.len() == 1 && is_dane_ee_spki_sha256(&rrset[0]), "{rrset:?}");
    ran.clean();
}

#[test]
fn honest_path_with_dane_ta_is_delivered_authenticated() {
    let ran = run("honest-211", 17851, 129, "dane", "dnssec = true\ndane = \"2 1 1\"", "");
    ran.assert_delivered(|h| h.starttls_used && h.cert_verified && h.dane_authenticated);
    // The one record beta publishes, for the scenario CA's key, computed here with OpenSSL.
    let expected = openssl_2_1_1(&ran.dir.join("pki/ca.pem"));
    assert_eq!(ran.assert_report(PolicyType::Tlsa, None, ""), [expected]);
    ran.clean();
}

/// beta's zone is signed with a key the root's DS does not vouch for: the TLSA answer is bogus,
/// and RFC 7672 §2.2 says defer, even though nobody attacks the path.
#[test]
fn bogus_signature_defers() {
    let ran = run("bogus", 17861, 131, "dane", "dnssec = \"bogus\"\ndane = \"3 1 1\"", "");
    ran.assert_deferred_unread("dnssec-invalid", "DNSSEC-bogus");
    // No validated RRset to show; beta's real MX at 127.0.132.1 was never contacted.
    assert!(ran.assert_report(PolicyType::Tlsa, Some(ResultType::DnssecInvalid), "127.0.132.1").is_empty());
    ran.clean();
}

#[test]
fn dane_only_to_an_unsigned_zone_defers() {
    let ran = run("only-unsigned", 17871, 133, "dane-only", "dane = \"3 1 1\"", "");
    ran.assert_deferred_unread("dane-required", "no DNSSEC-secure TLSA");
    assert!(ran.assert_report(PolicyType::Tlsa, Some(ResultType::DaneRequired), "127.0.134.1").is_empty());
    ran.clean();
}

/// A malformed TLSA option names the file, line and column and says what to write.
#[test]
fn bad_tlsa_option_names_file_line_and_fix() {
    let text = "[scenario]\nname = \"x\"\n\n[network]\ndns = \"server\"\n\n[[systems]]\nname = \"a\"\n\
                domain = \"a.example\"\nstarttls = true\ndane = \"3 0 1\"\n\n[[systems]]\nname = \"b\"\n\
                domain = \"b.example\"\nstarttls = true\n";
    let e = Scenario::parse(text, "bad-dane.toml").expect_err("3 0 1 is not offered").to_string();
    assert!(e.contains("bad-dane.toml") && e.contains("line 11") && e.contains("\"3 1 1\""), "{e}");
    let e = Scenario::parse(&text.replace("dane = \"3 0 1\"", "dnssec = \"maybe\""), "bad-dnssec.toml")
        .expect_err("not a DNSSEC mode")
        .to_string();
    assert!(e.contains("bad-dnssec.toml") && e.contains("line 11") && e.contains("\"bogus\""), "{e}");
    let in_process = text.replace("dns = \"server\"", "dns = \"in-process\"").replace("3 0 1", "3 1 1");
    let e = Scenario::parse(&in_process, "no-server.toml").expect_err("DANE needs the DNS server").to_string();
    assert!(e.contains("no-server.toml") && e.contains("systems[0].dane") && e.contains("line 11"), "{e}");
}
