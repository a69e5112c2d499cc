//! End to end on loopback: three real relays (two with STARTTLS), real submission, a live
//! libpcap tap, and the tap's records checked against the relays' ground truth directly, without
//! the analysis crate. Needs root or CAP_NET_RAW (CI runs as root).

use std::collections::HashMap;

use records::{SessionRecord, TapRecord, TruthMessage, read_jsonl};
use scenarios::{RunOptions, Scenario};

const SCENARIO: &str = r#"
[scenario]
name = "e2e-small"
seed = 7

[network]
smtp_port = 12525
submission_port = 12587

[traffic]
messages = 60
users_per_system = 4
size_median = 3000
max_recipients = 3
intra_system_share = 0.1

[[systems]]
name = "alpha"
domain = "alpha.example"
address = "127.0.41.1"
starttls = true

[[systems]]
name = "beta"
domain = "beta.example"
address = "127.0.42.1"
starttls = true

[[systems]]
name = "gamma"
domain = "gamma.example"
address = "127.0.43.1"
starttls = false
"#;

#[test]
fn plaintext_links_leak_everything_starttls_links_only_volume() {
    let scenario = Scenario::parse(SCENARIO, "e2e-small").expect("valid scenario");
    let out = std::env::temp_dir().join(format!("smtplab-e2e-{}", std::process::id()));
    let opts = RunOptions::new(out.clone(), "test");
    let outcome = scenarios::run(&scenario, &opts).expect("run (needs root or CAP_NET_RAW for the live tap)");
    assert!(outcome.stuck.is_empty(), "stuck: {:?}", outcome.stuck);
    assert!(outcome.tap_error.is_none(), "{:?}", outcome.tap_error);
    let dir = &outcome.run_dir;

    let truth: Vec<TruthMessage> = read_jsonl(&dir.join("truth/messages.jsonl")).expect("truth");
    assert_eq!(truth.len(), 60);
    let sessions: Vec<SessionRecord> = read_jsonl(&dir.join("truth/sessions.jsonl")).expect("sessions");
    let hops: Vec<&SessionRecord> = sessions.iter().filter(|s| s.direction == "outbound").collect();
    let tap_sessions: Vec<TapRecord> = read_jsonl(&dir.join("tap/sessions.jsonl")).expect("tap sessions");
    let tap_tx: Vec<TapRecord> = read_jsonl(&dir.join("tap/transactions.jsonl")).expect("tap tx");

    // Every inter-system recipient of the truth crossed exactly one hop.
    let crossing: usize =
        truth.iter().map(|m| m.recipient_systems.iter().filter(|s| **s != m.sender_system).count()).sum();
    let hop_messages: usize = hops.iter().map(|h| h.messages.len()).sum();
    assert_eq!(hop_messages, crossing, "one hop message per (message, other system)");

    // A 4-tuple can be used twice in one run (ephemeral ports come round again): a hop is the
    // tap session of its 4-tuple that started nearest to it, as analysis matches them.
    let mut by_tuple: HashMap<(String, String), Vec<&records::TapSession>> = HashMap::new();
    for r in &tap_sessions {
        if let TapRecord::Session(s) = r {
            let key = (format!("{}:{}", s.orig_h, s.orig_p), format!("{}:{}", s.resp_h, s.resp_p));
            by_tuple.entry(key).or_default().push(s);
        }
    }
    let hashes_seen: HashMap<&str, Vec<&str>> = tap_tx.iter().fold(HashMap::new(), |mut m, r| {
        if let TapRecord::Transaction(t) = r
            && let Some(h) = &t.sha256
        {
            m.entry(t.uid.as_str()).or_default().push(h.as_str());
        }
        m
    });

    let (mut tls_msgs, mut plain_msgs) = (0, 0);
    for hop in &hops {
        let seen = by_tuple
            .get(&(hop.local_addr.clone(), hop.peer_addr.clone()))
            .and_then(|v| {
                v.iter().min_by(|a, b| (a.ts - hop.started_at).abs().total_cmp(&(b.ts - hop.started_at).abs()))
            })
            .unwrap_or_else(|| panic!("hop {} -> {} not seen by the tap", hop.local_addr, hop.peer_addr));
        let recovered = hashes_seen.get(seen.uid.as_str()).cloned().unwrap_or_default();
        let pair = (hop.system.as_str(), hop.peer_system.as_deref().unwrap_or("?"));
        let both_tls = matches!(pair, ("alpha", "beta") | ("beta", "alpha"));
        assert_eq!(hop.starttls_used, both_tls, "relay record for {pair:?}");
        assert_eq!(seen.starttls_used, both_tls, "tap view of {pair:?}");
        for m in &hop.messages {
            if both_tls {
                tls_msgs += 1;
                assert!(!recovered.contains(&m.sha256.as_str()), "content leaked on a STARTTLS link");
                assert!(seen.tls_app_bytes_orig >= m.bytes, "volume is visible: app bytes cover the message");
            } else {
                plain_msgs += 1;
                assert!(recovered.contains(&m.sha256.as_str()), "plaintext content recovered byte for byte");
            }
        }
    }
    assert!(tls_msgs > 0 && plain_msgs > 0, "both kinds of link carried mail: tls {tls_msgs}, plain {plain_msgs}");

    // The key log lets Wireshark decrypt: one secret set per TLS session, both sides logged.
    let keys = std::fs::read_to_string(dir.join("keys.log")).expect("keys.log");
    let tls_hops = hops.iter().filter(|h| h.starttls_used).count();
    assert!(keys.lines().filter(|l| l.starts_with("CLIENT_TRAFFIC_SECRET_0 ")).count() >= tls_hops);
    // Secrets are for the run's owner only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("keys.log")).expect("keys.log").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "keys.log mode {mode:o}");
    if std::env::var_os("SMTPLAB_KEEP_RUNS").is_none() {
        let _ = std::fs::remove_dir_all(&out);
    }
}
