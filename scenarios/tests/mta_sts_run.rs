//! MTA-STS (RFC 8461) in real runs: real relays, the scenario's DNS server on UDP publishing
//! `_mta-sts.beta.example` TXT, beta's policy server on real HTTPS with a certificate from the
//! scenario CA, and an attacker that the DNS puts in front of beta's MX. alpha sends with
//! `outbound_tls = "may"` and honours MTA-STS. Expected outcomes, from RFC 8461 §5 and RFC 8460:
//!
//! | beta's policy | attack                          | expected                                   |
//! |---------------|---------------------------------|--------------------------------------------|
//! | enforce       | strip                           | deferred, nothing read, starttls-not-supported |
//! | testing       | strip                           | delivered in the clear, read, failure recorded |
//! | enforce       | fake-mx (self-signed)           | deferred, nothing read, certificate-not-trusted |
//! | testing       | fake-mx (wrong name)            | delivered, read, certificate-host-mismatch |
//! | enforce       | strip + policy fetch dropped    | no policy: read (TOFU's weak point)        |
//! | enforce       | strip + fetch answered, self-signed | no policy: read, sts-webpki-invalid    |
//! | enforce, malformed file | none                  | no policy, sts-policy-invalid recorded     |
//! | enforce, mx `*.mail.beta.example` | none        | MX refused unconnected: deferred, validation-failure |
//!
//! What was read comes from the attacker's own records; what was sent and delivered from the
//! relays' records.
//!
//! alpha's TLS-RPT report for beta.example (RFC 8460 §4.4), one session one count: under a
//! policy in force (`enforce`, `testing`) the policy is `sts`, its `policy-string` the policy's
//! lines as the scenario makes them (`version: STSv1`, `mode: ...`, `mx: mx.beta.example`, the
//! default `max_age: 86400`) and its `mx-host` the policy's one MX pattern; every attacked
//! session is a failure (`testing` reports what would have failed: RFC 8461 §5). Without a
//! policy (the fetch dropped or answered falsely, the file malformed) it is `no-policy-found`
//! for `mx.beta.example`, and each session a failure of the policy fetch's result type.

use std::collections::BTreeSet;

use records::tlsrpt::{PolicyType, Report, ResultType};
use records::{AttackerSession, SessionRecord, TruthMessage, read_jsonl};
use scenarios::{RunOptions, Scenario};

/// beta's MTA-STS policy as lines, worked by hand from RFC 8461 §3.2 and the scenario's keys.
fn policy_lines(mode: &str) -> Vec<String> {
    ["version: STSv1".to_string(), format!("mode: {mode}"), "mx: mx.beta.example".into(), "max_age: 86400".into()]
        .into()
}

struct Ran {
    out: std::path::PathBuf,
    dir: std::path::PathBuf,
    to_beta: BTreeSet<String>,
    sessions: Vec<SessionRecord>,
    attacker: Vec<AttackerSession>,
    stuck: Vec<String>,
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

    /// Every alpha→beta hop was under `mode` (or no policy for `None`) and recorded `failure`.
    fn assert_hops(&self, mode: Option<&str>, failure: &str) {
        let hops = self.hops();
        assert!(!hops.is_empty(), "alpha tried to deliver to beta");
        for h in &hops {
            assert_eq!(h.mta_sts_mode.as_deref(), mode, "{h:?}");
            assert_eq!(h.mta_sts_failure.as_deref(), Some(failure), "{h:?}");
            assert!(h.mta_sts_failure_detail.is_some(), "{h:?}");
        }
    }

    fn assert_deferred_unread(&self, why: &str) {
        assert!(!self.to_beta.is_empty(), "the traffic has messages from alpha to beta");
        for h in self.hops() {
            assert_eq!(h.outcome, "deferred", "{h:?}");
            assert!(h.messages.is_empty(), "{h:?}");
            let e = h.error.as_deref().unwrap_or("");
            assert!(e.contains(why), "expected {why:?} in alpha's error: {e}");
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

    fn assert_read_and_delivered(&self) {
        assert!(!self.to_beta.is_empty(), "the traffic has messages from alpha to beta");
        assert!(self.stuck.is_empty(), "stuck: {:?}", self.stuck);
        assert_eq!(self.read_ids(), self.to_beta, "the attacker read every message alpha sent to beta");
        assert!(self.to_beta.is_subset(&self.delivered_at_beta()));
    }

    /// A policy fetched once is used from the cache afterwards: every hop that started after
    /// a fetched hop had ended says `cached`.
    fn assert_cached_after_first_fetch(&self) {
        let hops = self.hops();
        let first_end = hops
            .iter()
            .filter(|h| h.mta_sts_source.as_deref() == Some("fetched"))
            .map(|h| h.ended_at)
            .fold(f64::INFINITY, f64::min);
        assert!(first_end.is_finite(), "one hop fetched the policy: {hops:?}");
        for h in hops.iter().filter(|h| h.started_at > first_end) {
            assert_eq!(h.mta_sts_source.as_deref(), Some("cached"), "{h:?}");
        }
    }

    /// alpha's TLS-RPT report for beta.example has one policy, of `policy_type` with
    /// `policy_string` and `mx_host`, and counts every alpha→beta session as a `failure` (at
    /// `receiving_ip`), none as a success.
    fn assert_report(
        &self,
        policy_type: PolicyType,
        policy_string: &[String],
        mx_host: &[&str],
        failure: ResultType,
        receiving_ip: &str,
    ) {
        let path = self.dir.join("tlsrpt/alpha/beta.example.json");
        let report: Report =
            serde_json::from_slice(&std::fs::read(&path).expect("alpha's report for beta.example")).expect("a report");
        assert_eq!(report.policies.len(), 1, "{report:#?}");
        let p = &report.policies[0];
        assert_eq!(p.policy.policy_type, policy_type, "{report:#?}");
        assert_eq!(p.policy.policy_string, policy_string, "{report:#?}");
        assert_eq!(p.policy.policy_domain, "beta.example");
        assert_eq!(p.policy.mx_host, mx_host, "{report:#?}");
        let sessions = self.hops().len() as u64;
        assert_eq!((p.summary.total_successful_session_count, p.summary.total_failure_session_count), (0, sessions));
        // Details are told apart by the relay's own reason text too (a fetch reset by the
        // peer, or cut during the handshake), so there may be several, all of one type.
        assert!(!p.failure_details.is_empty(), "{report:#?}");
        for d in &p.failure_details {
            assert_eq!(d.result_type, failure, "{d:?}");
            assert_eq!(d.receiving_ip.as_deref(), Some(receiving_ip), "{d:?}");
            assert_eq!(d.receiving_mx_hostname.as_deref(), Some("mx.beta.example"), "{d:?}");
        }
        assert_eq!(p.failure_details.iter().map(|d| d.failed_session_count).sum::<u64>(), sessions);
    }

    fn clean(self) {
        if std::env::var_os("SMTPLAB_KEEP_RUNS").is_none() {
            let _ = std::fs::remove_dir_all(&self.out);
        }
    }
}

/// alpha (`may`, honouring MTA-STS) and beta (publishing `policy`), with `attack` (a TOML
/// fragment, may be empty) on beta's domain. Each test has its own ports and addresses:
/// alpha at 127.0.`octet`.1, beta at 127.0.`octet + 1`.1; `port` to `port + 4`, from this
/// file's block 18011–18075 (ARCHITECTURE.md, "Tests side by side": the attacker's address
/// 127.254.1.1 is shared by every attack test, so its ports must not be).
fn run(name: &str, port: u16, octet: u8, policy: &str, attack: &str) -> Ran {
    run_at(name, port, [format!("127.0.{octet}.1"), format!("127.0.{}.1", octet + 1)], policy, attack)
}

/// [`run`] with alpha's and beta's addresses given.
fn run_at(name: &str, port: u16, [alpha, beta]: [String; 2], policy: &str, attack: &str) -> Ran {
    let attack = if attack.is_empty() {
        String::new()
    } else {
        format!("[[attacks]]\n{attack}\ndomains = [\"beta.example\"]\n")
    };
    let text = format!(
        r#"
[scenario]
name = "sts-{name}"
seed = 7
drain_timeout = 4
allow_undelivered = true

[network]
smtp_port = {port}
submission_port = {sub}
dns = "server"
dns_port = {dns}
https_port = {https}

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
address = "{alpha}"
starttls = true
outbound_tls = "may"
mta_sts = true

[[systems]]
name = "beta"
domain = "beta.example"
address = "{beta}"
starttls = true
mta_sts_policy = {policy}

{attack}
"#,
        sub = port + 1,
        dns = port + 3,
        https = port + 4,
    );
    let scenario = Scenario::parse(&text, name).expect("valid scenario");
    let out = std::env::temp_dir().join(format!("smtplab-sts-{name}-{}", std::process::id()));
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
fn enforce_against_strip_is_deferred_unread_and_uses_the_cache() {
    let ran = run("enforce-strip", 18011, 141, r#"{ mode = "enforce", id = "e1" }"#, r#"attack = "strip""#);
    ran.assert_deferred_unread("does not offer STARTTLS");
    ran.assert_hops(Some("enforce"), "starttls-not-supported");
    ran.assert_cached_after_first_fetch();
    let lines = policy_lines("enforce");
    let mx = ["mx.beta.example"];
    ran.assert_report(PolicyType::Sts, &lines, &mx, ResultType::StarttlsNotSupported, "127.254.1.1");
    for h in ran.hops() {
        assert_eq!(h.mta_sts_policy_id.as_deref(), Some("e1"), "{h:?}");
    }
    // The scenario's record of what beta publishes and what alpha honours.
    let systems: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ran.dir.join("truth/systems.json")).expect("systems.json"))
            .expect("JSON");
    assert_eq!(systems[0]["mta_sts"], true);
    assert_eq!(systems[1]["mta_sts_policy"], "enforce");
    ran.clean();
}

#[test]
fn testing_against_strip_is_delivered_read_and_the_failure_recorded() {
    let ran = run("testing-strip", 18021, 143, r#"{ mode = "testing" }"#, r#"attack = "strip""#);
    ran.assert_read_and_delivered();
    ran.assert_hops(Some("testing"), "starttls-not-supported");
    for h in ran.hops() {
        assert!(!h.starttls_used, "in the clear: {h:?}");
    }
    // The plaintext fallback under a policy in force is reported, although it went ahead.
    let lines = policy_lines("testing");
    ran.assert_report(PolicyType::Sts, &lines, &["mx.beta.example"], ResultType::StarttlsNotSupported, "127.254.1.1");
    ran.clean();
}

#[test]
fn enforce_against_a_self_signed_fake_mx_is_deferred_and_unread() {
    let ran = run("enforce-fake", 18031, 145, r#"{ mode = "enforce" }"#, r#"attack = "fake-mx""#);
    ran.assert_deferred_unread("UnknownIssuer");
    ran.assert_hops(Some("enforce"), "certificate-not-trusted");
    let lines = policy_lines("enforce");
    ran.assert_report(PolicyType::Sts, &lines, &["mx.beta.example"], ResultType::CertificateNotTrusted, "127.254.1.1");
    assert!(ran.attacker.iter().all(|s| s.outcome == "victim-refused-tls"), "{:?}", ran.attacker);
    ran.clean();
}

/// `testing` lets the fake MX's certificate pass (alpha's own policy is `may`) and records why
/// it would not have under `enforce`.
#[test]
fn testing_against_a_wrong_name_fake_mx_is_read_and_the_mismatch_recorded() {
    let ran = run(
        "testing-wrongname",
        18041,
        147,
        r#"{ mode = "testing" }"#,
        "attack = \"fake-mx\"\ncertificate = \"wrong-name\"",
    );
    ran.assert_read_and_delivered();
    ran.assert_hops(Some("testing"), "certificate-host-mismatch");
    for h in ran.hops() {
        assert!(h.starttls_used && !h.cert_verified, "{h:?}");
    }
    let lines = policy_lines("testing");
    let mx = ["mx.beta.example"];
    ran.assert_report(PolicyType::Sts, &lines, &mx, ResultType::CertificateHostMismatch, "127.254.1.1");
    ran.clean();
}

/// The attacker is on the path from the first contact and drops every policy fetch: alpha never
/// learns beta's policy, falls back to `may`, and the stripped mail is read (RFC 8461 §10.2).
#[test]
fn an_attacker_from_first_contact_who_drops_the_fetch_reads_everything() {
    let ran =
        run("fetch-dropped", 18051, 149, r#"{ mode = "enforce" }"#, "attack = \"strip\"\npolicy_fetch = \"drop\"");
    ran.assert_read_and_delivered();
    ran.assert_hops(None, "sts-policy-fetch-error");
    // No policy in force: the failed fetch is reported under no-policy-found, at the MX
    // address alpha was given (the attacker's), so beta.example learns of it.
    let mx = ["mx.beta.example"];
    ran.assert_report(PolicyType::NoPolicyFound, &[], &mx, ResultType::StsPolicyFetchError, "127.254.1.1");
    let fetches: Vec<scenarios::mta_sts::InterceptedFetch> =
        read_jsonl(&ran.dir.join("attackers/attacker1/policy_fetches.jsonl")).expect("the attacker's fetch log");
    assert!(!fetches.is_empty());
    for f in &fetches {
        assert_eq!(
            (f.action.as_str(), f.domain.as_str(), f.victim_system.as_deref()),
            ("drop", "beta.example", Some("alpha"))
        );
    }
    ran.clean();
}

/// The attacker answers the fetch itself, under a self-signed certificate for the policy host:
/// the certificate does not validate (`sts-webpki-invalid`), so again no policy, and the mail is
/// read.
#[test]
fn an_attacker_answering_the_fetch_with_its_own_certificate_reads_everything() {
    let ran = run(
        "fetch-self-signed",
        18071,
        153,
        r#"{ mode = "enforce" }"#,
        "attack = \"strip\"\npolicy_fetch = \"self-signed\"",
    );
    ran.assert_read_and_delivered();
    ran.assert_hops(None, "sts-webpki-invalid");
    let mx = ["mx.beta.example"];
    ran.assert_report(PolicyType::NoPolicyFound, &[], &mx, ResultType::StsWebpkiInvalid, "127.254.1.1");
    ran.clean();
}

/// A malformed policy file is no policy (RFC 8461 §3.2): mail goes as `may` says (TLS here, no
/// attacker) and every hop records sts-policy-invalid.
#[test]
fn a_malformed_policy_is_no_policy_and_is_recorded() {
    let ran = run(
        "malformed",
        18061,
        151,
        r#"{ mode = "enforce", body = "version: STSv2\nmode: enforce\nmx: mx.beta.example\nmax_age: 600\n" }"#,
        "",
    );
    assert!(ran.stuck.is_empty(), "{:?}", ran.stuck);
    assert!(ran.to_beta.is_subset(&ran.delivered_at_beta()));
    ran.assert_hops(None, "sts-policy-invalid");
    for h in ran.hops() {
        assert!(h.starttls_used && h.outcome == "delivered", "{h:?}");
        assert!(h.mta_sts_failure_detail.as_deref().unwrap_or("").contains("STSv1"), "{h:?}");
    }
    // Each session negotiated TLS, but the domain's announced policy could not be had: a
    // failure, at beta's own address (127.0.152.1).
    let mx = ["mx.beta.example"];
    ran.assert_report(PolicyType::NoPolicyFound, &[], &mx, ResultType::StsPolicyInvalid, "127.0.152.1");
    ran.clean();
}

/// An `enforce` policy whose one MX pattern (`*.mail.beta.example`) does not match beta's MX
/// host (`mx.beta.example`: the wildcard stands for one label before `mail.beta.example`,
/// RFC 8461 §4.1): alpha never connects and defers, and each refusal is a failure of the `sts`
/// policy in its TLS-RPT report, `validation-failure` (RFC 8460 has no type of its own for it)
/// at the MX address alpha was given, beta's. The report's `mx-host` is the policy's pattern,
/// not the MX host (RFC 8460 §4.4), and its `policy-string` the policy's lines.
#[test]
fn an_mx_outside_the_enforce_policy_is_refused_and_reported_under_sts() {
    let policy = r#"{ mode = "enforce", mx = ["*.mail.beta.example"] }"#;
    let ran = run_at("mx-outside", 27100, ["127.0.71.1".into(), "127.0.71.2".into()], policy, "");
    assert!(!ran.to_beta.is_empty(), "the traffic has messages from alpha to beta");
    assert!(ran.delivered_at_beta().is_disjoint(&ran.to_beta));
    for h in ran.hops() {
        assert_eq!((h.outcome.as_str(), h.bytes_out), ("deferred", 0), "never connected: {h:?}");
    }
    ran.assert_hops(Some("enforce"), "validation-failure");
    let lines: Vec<String> =
        ["version: STSv1", "mode: enforce", "mx: *.mail.beta.example", "max_age: 86400"].map(String::from).into();
    let pattern = ["*.mail.beta.example"];
    ran.assert_report(PolicyType::Sts, &lines, &pattern, ResultType::ValidationFailure, "127.0.71.2");
    ran.clean();
}

/// Bad MTA-STS knobs are refused before the run with the file, key, line and column.
#[test]
fn bad_knobs_name_file_key_and_line() {
    let base = |network: &str, alpha: &str, beta: &str, attack: &str| {
        format!(
            "[scenario]\nname = \"k\"\n\n[network]\n{network}\n\n[[systems]]\nname = \"alpha\"\ndomain = \"alpha.example\"\nstarttls = true\n{alpha}\n\n[[systems]]\nname = \"beta\"\ndomain = \"beta.example\"\nstarttls = true\n{beta}\n{attack}"
        )
    };
    let dns = "dns = \"server\"\ndns_port = 15999";
    let cases = [
        (base("", "mta_sts = true", "", ""), "systems[0].mta_sts (line 11", "network.dns"),
        (base(dns, "", "mta_sts_policy = { mode = \"strict\" }", ""), "line 18", "unknown variant `strict`"),
        (base(dns, "", "mta_sts_policy = { mode = \"enforce\", max_age = 31557601 }", ""), "line 18", "max_age"),
        (base(dns, "", "mta_sts_policy = { mode = \"enforce\", id = \"a-b\" }", ""), "line 18", "id"),
        (base(dns, "", "mta_sts_policy = { mode = \"enforce\", mx = [\"a..b\"] }", ""), "line 18", "mx"),
        (base(dns, "", "mta_sts_policy = { mode = \"enforce\", color = 1 }", ""), "line 18", "unknown field `color`"),
        (
            base(dns, "", "", "[[attacks]]\nattack = \"strip\"\npolicy_fetch = \"drop\"\ndomains = [\"beta.example\"]"),
            "attacks[0].policy_fetch (line 21",
            "publishes",
        ),
        (
            base(&format!("{dns}\nhttps_port = 2525"), "", "mta_sts_policy = { mode = \"enforce\" }", ""),
            "network.https_port (line 7",
            "a port of their own",
        ),
    ];
    for (text, place, what) in cases {
        let e = Scenario::parse(&text, "bad.toml").expect_err(&text).to_string();
        assert!(e.starts_with("bad.toml"), "{e}");
        assert!(e.contains(place) && e.contains(what), "expected {place:?} and {what:?} in: {e}\n{text}");
    }
}
