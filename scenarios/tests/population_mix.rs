//! A generated population with a mix of outbound policies, run on loopback (no capture, so no
//! privileges needed): `encrypt` senders meeting systems without STARTTLS defer (the relay's
//! behaviour, as Postfix's `smtp_tls_security_level = encrypt`), and that mail stays queued;
//! `may` senders fall back to plaintext and deliver.

use std::collections::HashMap;

use records::{SessionRecord, TruthMessage, read_jsonl};
use scenarios::{RunOptions, Scenario};

/// Ports 25525 and 25527 are this test's alone (ARCHITECTURE.md, "Tests side by side").
const SCENARIO: &str = r#"
[scenario]
name = "e2e-mix"
seed = 21
drain_timeout = 4
allow_undelivered = true

[network]
smtp_port = 25525
submission_port = 25527

[tap]
capture = "none"

[traffic]
messages = 60
intra_system_share = 0.0

[population]
systems = 6
users = 36
starttls_share = 0.5
outbound_mix = { may = 0.5, encrypt = 0.5 }
"#;

#[test]
fn encrypt_senders_defer_towards_systems_without_starttls() {
    let scenario = Scenario::parse(SCENARIO, "e2e-mix").expect("valid scenario");
    // 3 STARTTLS systems × (0.5, 0.5) = 1.5 each: floors 1 and 1, the one left over to `may`
    // (equal remainders go in the order none, may, encrypt, verify).
    let policy = |p: relay::OutboundTls| scenario.systems.iter().filter(|s| s.starttls && s.outbound() == p).count();
    assert_eq!((policy(relay::OutboundTls::May), policy(relay::OutboundTls::Encrypt)), (2, 1));

    let out = std::env::temp_dir().join(format!("smtplab-e2e-mix-{}", std::process::id()));
    let opts = RunOptions::new(out.clone(), "test");
    let outcome = scenarios::run(&scenario, &opts).expect("run");
    let dir = &outcome.run_dir;
    let truth: Vec<TruthMessage> = read_jsonl(&dir.join("truth/messages.jsonl")).expect("truth");
    let sessions: Vec<SessionRecord> = read_jsonl(&dir.join("truth/sessions.jsonl")).expect("sessions");
    let sys: HashMap<&str, &scenarios::schema::SystemSpec> =
        scenario.systems.iter().map(|s| (s.name.as_str(), s)).collect();

    let mut refused = 0;
    let mut plaintext = 0;
    for hop in sessions.iter().filter(|s| s.direction == "outbound") {
        let (from, to) = (sys[hop.system.as_str()], sys[hop.peer_system.as_deref().expect("peer")]);
        if from.outbound() == relay::OutboundTls::Encrypt && !to.starttls {
            refused += 1;
            assert_eq!(hop.outcome, "deferred", "{hop:?}");
            assert!(hop.messages.is_empty(), "nothing crossed: {hop:?}");
            assert!(hop.error.as_deref().is_some_and(|e| e.contains("STARTTLS")), "{hop:?}");
        } else if from.outbound() == relay::OutboundTls::May && !to.starttls && !hop.messages.is_empty() {
            plaintext += 1;
            assert!(!hop.starttls_used, "{hop:?}");
        }
    }
    assert!(refused > 0 && plaintext > 0, "both meetings happened: refused {refused}, plaintext {plaintext}");

    // Every message an encrypt sender addressed to a system without STARTTLS is still queued.
    let must_wait: Vec<&TruthMessage> = truth
        .iter()
        .filter(|m| {
            sys[m.sender_system.as_str()].outbound() == relay::OutboundTls::Encrypt
                && m.recipient_systems.iter().any(|r| !sys[r.as_str()].starttls)
        })
        .collect();
    assert!(!must_wait.is_empty());
    for m in must_wait {
        assert!(
            outcome.stuck.iter().any(|s| s.contains(&format!("<{}>", m.message_id))),
            "{} should be stuck: {:?}",
            m.message_id,
            outcome.stuck
        );
    }
    let _ = std::fs::remove_dir_all(&out);
}
