//! Cover traffic and the pool mix end to end on loopback: three real relays with STARTTLS, real
//! submission, a live libpcap tap; the run's files checked against each other without the
//! analysis crate: every real message in its mailboxes byte for byte, no cover message in any
//! mailbox, both relays' records marking the same cover messages, one tapped TCP session per
//! hop session (cover included), and the pool mix's bound on delay. Bad countermeasure values
//! are refused when the file is read, naming file, line and key. Needs root or CAP_NET_RAW.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use records::{SessionRecord, Submission, TapRecord, TruthMessage, read_jsonl};
use scenarios::{RunOptions, Scenario};

/// alpha: cover traffic at 4/s drawn like the real traffic's sizes, behind a pool mix (a round
/// every second, half of each pool per round, nothing held more than 4 rounds); beta: cover at
/// 2/s of 3,000 bytes each; gamma: neither. 30 messages at 10/s: about 3 s of traffic.
const SCENARIO: &str = r#"
[scenario]
name = "countermeasures-e2e"
seed = 5

[network]
smtp_port = 27200
submission_port = 27201

[traffic]
messages = 30
rate = 10
users_per_system = 3
size_median = 2500
max_recipients = 2

[[systems]]
name = "alpha"
domain = "alpha.example"
address = "127.0.72.101"
starttls = true

[systems.delivery]
cover_rate = 4
batch_mode = "pool"
batch_interval = 1
pool_fraction = 0.5
pool_max_rounds = 4

[[systems]]
name = "beta"
domain = "beta.example"
address = "127.0.72.102"
starttls = true

[systems.delivery]
cover_rate = 2
cover_size = 3000

[[systems]]
name = "gamma"
domain = "gamma.example"
address = "127.0.72.103"
starttls = true
"#;

#[test]
fn cover_traffic_and_the_pool_mix_in_a_scenario_run() {
    let scenario = Scenario::parse(SCENARIO, "countermeasures-e2e").expect("valid scenario");
    let out = std::env::temp_dir().join(format!("smtplab-countermeasures-e2e-{}", std::process::id()));
    let outcome = scenarios::run(&scenario, &RunOptions::new(out.clone(), "test"))
        .expect("run (needs root or CAP_NET_RAW for the live tap)");
    assert!(outcome.stuck.is_empty(), "stuck: {:?}", outcome.stuck);
    assert!(outcome.tap_error.is_none(), "{:?}", outcome.tap_error);
    let dir = &outcome.run_dir;
    let truth: Vec<TruthMessage> = read_jsonl(&dir.join("truth/messages.jsonl")).expect("truth");
    let sessions: Vec<SessionRecord> = read_jsonl(&dir.join("truth/sessions.jsonl")).expect("sessions");

    // The mail: every recipient copy in a mailbox, equal to the submitted message once the
    // Received fields the relays put on top are removed; nothing else in any mailbox.
    let mut expected: Vec<String> =
        truth.iter().flat_map(|m| std::iter::repeat_n(m.sha256.clone(), m.recipients.len())).collect();
    let mailbox_files: Vec<PathBuf> =
        scenario.systems.iter().flat_map(|s| files(&dir.join("systems").join(&s.name).join("mailboxes"))).collect();
    let mut delivered: Vec<String> = mailbox_files
        .iter()
        .map(|p| relay::sha256_hex(without_received(&std::fs::read(p).expect("mailbox file"))))
        .collect();
    expected.sort();
    delivered.sort();
    assert_eq!(delivered, expected, "the mailboxes hold every copy of the mail, byte for byte, and nothing else");
    assert!(mailbox_files.iter().all(|p| !p.display().to_string().contains("smtplab-cover")));

    // The cover: sent by alpha and beta, received and marked by the other systems, the same
    // messages on both sides; gamma sends none.
    let cover_ids = |direction: &str| -> BTreeMap<String, String> {
        sessions
            .iter()
            .filter(|s| s.direction == direction)
            .flat_map(|s| s.messages.iter().filter(|m| m.cover).map(move |m| (m.message_id.clone(), s.system.clone())))
            .collect()
    };
    let (sent, received) = (cover_ids("outbound"), cover_ids("inbound"));
    assert_eq!(sent.keys().collect::<Vec<_>>(), received.keys().collect::<Vec<_>>(), "the same cover messages");
    let by_sender = |name: &str| sent.values().filter(|s| *s == name).count();
    assert!(by_sender("alpha") > 0 && by_sender("beta") > 0, "cover from alpha and beta: {sent:?}");
    assert_eq!(by_sender("gamma"), 0);
    for s in sessions.iter().filter(|s| s.direction == "outbound" && s.system == "beta") {
        for m in s.messages.iter().filter(|m| m.cover) {
            assert_eq!(m.bytes, 3000, "beta's cover has the configured fixed size");
        }
    }
    // The mail hops carry every message that crossed a system (no cover mixed in).
    let mail_hop_ids: std::collections::BTreeSet<&str> = sessions
        .iter()
        .filter(|s| s.direction == "outbound")
        .flat_map(|s| s.messages.iter().filter(|m| !m.cover).map(|m| m.message_id.as_str()))
        .collect();
    assert!(mail_hop_ids.iter().all(|id| truth.iter().any(|m| m.message_id == *id)));

    // The eavesdropper: one STARTTLS TCP session per hop session (reuse off), mail and cover
    // alike, so what it counts includes the cover.
    let addresses: Vec<String> = (0..3).map(|i| scenario.address(i).to_string()).collect();
    let tap: Vec<TapRecord> = read_jsonl(&dir.join("tap/sessions.jsonl")).expect("tap sessions");
    let tapped: Vec<&records::TapSession> = tap
        .iter()
        .filter_map(|r| match r {
            TapRecord::Session(s) => Some(s),
            TapRecord::Transaction(_) => None,
        })
        .filter(|s| s.resp_p == 27200 && addresses.contains(&s.orig_h) && addresses.contains(&s.resp_h))
        .collect();
    let hop_sessions = sessions.iter().filter(|s| s.direction == "outbound" && !s.local_addr.is_empty()).count();
    assert_eq!(tapped.len(), hop_sessions, "a tapped session per hop session");
    assert!(tapped.iter().all(|s| s.starttls_used && s.transactions == 0));
    assert!(
        sessions.iter().filter(|s| s.direction == "outbound").all(|s| s.messages.len() <= 1),
        "one message per hop session (reuse off), so the tapped sessions count mail and cover"
    );

    // The pool mix's bound: alpha's mail leaves within pool_max_rounds × batch_interval (4 s)
    // per destination of its submission, and a message has at most 2 recipient systems, which
    // the relay serves one after the other: 8 s (2 s more for a busy machine), never before it.
    let submitted: HashMap<u64, f64> = read_jsonl::<Submission>(&dir.join("truth/submissions.jsonl"))
        .expect("submissions")
        .into_iter()
        .map(|s| (s.seq, s.submitted_at))
        .collect();
    let seq_of: HashMap<&str, u64> = truth.iter().map(|m| (m.message_id.as_str(), m.seq)).collect();
    let mut alpha_hops = 0;
    for s in sessions.iter().filter(|s| s.direction == "outbound" && s.system == "alpha") {
        for m in s.messages.iter().filter(|m| !m.cover) {
            let at = submitted[&seq_of[m.message_id.as_str()]];
            let delay = s.started_at - at;
            assert!((0.0..=10.0).contains(&delay), "{}: left {delay:.2} s after submission", m.message_id);
            alpha_hops += 1;
        }
    }
    assert!(alpha_hops > 0, "alpha sent mail to other systems");
    if std::env::var_os("SMTPLAB_KEEP_RUNS").is_none() {
        let _ = std::fs::remove_dir_all(&out);
    }
}

/// Countermeasure values out of range are refused when the file is read, naming the file, the
/// key and its line; never a panic.
#[test]
fn bad_countermeasure_values_name_file_line_and_key() {
    let cases = [
        ("cover_rate = 4", "cover_rate = -1", "systems[0].delivery.cover_rate"),
        ("pool_fraction = 0.5", "pool_fraction = 1.5", "systems[0].delivery.pool_fraction"),
        ("pool_max_rounds = 4", "pool_max_rounds = 0", "systems[0].delivery.pool_max_rounds"),
        ("batch_interval = 1", "batch_interval = 0", "systems[0].delivery.batch_interval"),
        ("cover_rate = 2", "cover_rate = nan", "systems[1].delivery.cover_rate"),
        ("cover_size = 3000", "cover_size = 12", "systems[1].delivery.cover_size"),
    ];
    for (good, bad, key) in cases {
        let text = SCENARIO.replace(good, bad);
        assert_ne!(text, SCENARIO, "{good} is in the scenario");
        let line = text.lines().position(|l| l == bad).expect("the bad line") + 1;
        let err = Scenario::parse(&text, "cm.toml").expect_err(bad).to_string();
        assert!(err.starts_with("cm.toml: "), "{bad}: {err}");
        assert!(err.contains(&format!("{key} (line {line}, column 1)")), "{bad}: {err}");
    }
    // Type errors come from the TOML reader, with the file and line too.
    for (good, bad) in [("cover_size = 3000", "cover_size = -5"), ("batch_mode = \"pool\"", "batch_mode = \"mix\"")] {
        let err = Scenario::parse(&SCENARIO.replace(good, bad), "cm.toml").expect_err(bad).to_string();
        assert!(err.contains("cm.toml") && err.contains("line"), "{bad}: {err}");
    }
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() { dirs.push(p) } else { out.push(p) }
        }
    }
    out
}

/// The message without the Received fields at its top (folded lines included).
fn without_received(message: &[u8]) -> &[u8] {
    let mut at = 0;
    let mut in_received = false;
    for line in message.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b" ") || line.starts_with(b"\t") {
            if !in_received {
                break;
            }
        } else if line.len() >= 9 && line[..9].eq_ignore_ascii_case(b"received:") {
            in_received = true;
        } else {
            break;
        }
        at += line.len();
    }
    &message[at..]
}
