//! `reuse-realistic.toml` end to end on loopback, shrunk, with reuse made certain (`always`, one
//! delivery per destination at a time, a long idle limit) so that sessions carry several
//! messages whatever the machine's speed: the relays' hop records (truth) against the live tap's
//! per-session estimates. Needs root or CAP_NET_RAW for the live tap (CI runs as root).

use std::collections::HashMap;

use records::{SessionRecord, TapRecord, TapSession, read_jsonl};
use scenarios::{RunOptions, Scenario};

#[test]
fn reused_hop_sessions_are_counted_and_sized_by_the_tap() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/reuse-realistic.toml");
    let text = std::fs::read_to_string(path).expect("reuse-realistic.toml");
    let mut text = text
        .replace("messages = 600", "messages = 60")
        // Ports and addresses of this test alone (ARCHITECTURE.md, "Tests side by side").
        .replace("smtp_port = 2525", "smtp_port = 22525")
        .replace("submission_port = 2587", "submission_port = 22587")
        .replace(
            "\nconnection_reuse = \"on-demand\"\n",
            "\nconnection_reuse = \"always\"\nconnection_cache_time_limit = 600\n",
        )
        .replace("\ndestination_concurrency_limit = 5\n", "\ndestination_concurrency_limit = 1\n");
    for (name, net) in [("alpha", 54), ("beta", 55), ("gamma", 56)] {
        text =
            text.replace(&format!("name = \"{name}\"\n"), &format!("name = \"{name}\"\naddress = \"127.0.{net}.1\"\n"));
    }
    let scenario = Scenario::parse(&text, "reuse-realistic (shrunk)").expect("valid scenario");
    let out = std::env::temp_dir().join(format!("smtplab-reuse-run-{}", std::process::id()));
    let outcome = scenarios::run(&scenario, &RunOptions::new(out.clone(), "test"))
        .expect("run (needs root or CAP_NET_RAW for the live tap)");
    assert!(outcome.stuck.is_empty(), "stuck: {:?}", outcome.stuck);
    assert!(outcome.tap_error.is_none(), "{:?}", outcome.tap_error);
    let dir = &outcome.run_dir;
    let sessions: Vec<SessionRecord> = read_jsonl(&dir.join("truth/sessions.jsonl")).expect("sessions");
    let hops: Vec<&SessionRecord> =
        sessions.iter().filter(|s| s.direction == "outbound" && !s.messages.is_empty()).collect();
    let tap: Vec<TapRecord> = read_jsonl(&dir.join("tap/sessions.jsonl")).expect("tap sessions");
    let mut by_tuple: HashMap<(String, String), Vec<&TapSession>> = HashMap::new();
    for r in &tap {
        if let TapRecord::Session(s) = r {
            let key = (format!("{}:{}", s.orig_h, s.orig_p), format!("{}:{}", s.resp_h, s.resp_p));
            by_tuple.entry(key).or_default().push(s);
        }
    }
    let mut multi = 0;
    for hop in &hops {
        assert!(hop.starttls_used, "every system speaks STARTTLS");
        let seen = by_tuple
            .get(&(hop.local_addr.clone(), hop.peer_addr.clone()))
            .and_then(|v| {
                v.iter().min_by(|a, b| (a.ts - hop.started_at).abs().total_cmp(&(b.ts - hop.started_at).abs()))
            })
            .unwrap_or_else(|| panic!("hop {} -> {} not seen by the tap", hop.local_addr, hop.peer_addr));
        let n = hop.messages.len();
        multi += usize::from(n > 1);
        let what = format!("{} -> {:?} ({:?}, {n} messages)", hop.system, hop.peer_system, hop.tls_version);
        assert_eq!(seen.est_messages, Some(n as u64), "{what}");
        for (est, m) in seen.est_message_bytes.iter().zip(&hop.messages) {
            // ANALYSIS.md's tolerance, 1% + 8 bytes, plus one byte per dot-stuffed line (the
            // generator writes no line that starts with a dot, so none is expected).
            assert!(est.abs_diff(m.bytes) as f64 <= m.bytes as f64 * 0.01 + 8.0, "{what}: {est} B for {} B", m.bytes);
        }
    }
    assert!(multi > 0, "some hop session carried more than one message");
    // Resumption: every system connects to each other one more than once (reuse of a session
    // ends at shutdown at the latest, and 60 messages need several sessions only with luck), so
    // only check that a resumed handshake is one the record says was TLS.
    assert!(hops.iter().filter(|h| h.tls_resumed).all(|h| h.starttls_used));
    if std::env::var_os("SMTPLAB_KEEP_RUNS").is_none() {
        let _ = std::fs::remove_dir_all(&out);
    }
}
