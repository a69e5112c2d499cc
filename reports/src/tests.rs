//! End to end: hand-made records -> ingest -> analyze -> render.

use std::path::{Path, PathBuf};

use records::{HopMessage, SessionRecord, TapSession, TapTransaction, TruthMessage, write_jsonl};

use crate::{Provenance, render};

/// A fresh, empty run directory under the system temp dir, unique per test and process, removed
/// when the test ends (kept if `SMTPLAB_KEEP_TEST_DIRS` is set, to look at the files).
struct TempRunDir(PathBuf);

impl std::ops::Deref for TempRunDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempRunDir {
    fn drop(&mut self) {
        if std::env::var_os("SMTPLAB_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn temp_run_dir(name: &str) -> TempRunDir {
    let dir = std::env::temp_dir().join(format!("smtplab-reports-{name}-{}", std::process::id()));
    // A leftover from an earlier run with the same process id would hide a missing file.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("truth")).expect("create temp run dir");
    std::fs::create_dir_all(dir.join("tap")).expect("create temp run dir");
    TempRunDir(dir)
}

/// Three links: alpha->beta in plaintext (every message recovered), alpha->gamma under
/// STARTTLS (seen, nothing recovered), beta->gamma not captured at all.
fn write_run(dir: &Path) {
    let links = [
        ("alpha", "beta", "127.0.1.1", "127.0.1.2", false, 4u16),
        ("alpha", "gamma", "127.0.1.1", "127.0.1.3", true, 3),
        ("beta", "gamma", "127.0.1.2", "127.0.1.3", false, 2),
    ];
    let mut messages = Vec::new();
    let mut sessions = Vec::new();
    let mut tap_sessions = Vec::new();
    let mut tap_transactions = Vec::new();
    let mut port = 40000u16;
    for (from, to, client, server, tls, count) in links {
        for k in 0..count {
            port += 1;
            let id = format!("{from}-{to}-{k}@{from}.example");
            let sha = format!("{port:064x}");
            let bytes = 20_000 + 1_000 * u64::from(k);
            messages.push(TruthMessage {
                seq: messages.len() as u64,
                message_id: id.clone(),
                sender: format!("u@{from}.example"),
                sender_system: from.to_string(),
                recipients: vec![format!("u@{to}.example")],
                recipient_systems: vec![to.to_string()],
                subject: "hello".to_string(),
                bytes,
                sha256: sha.clone(),
                submitted_at: 0.0,
            });
            sessions.push(SessionRecord {
                direction: "outbound".to_string(),
                system: from.to_string(),
                peer_system: Some(to.to_string()),
                local_addr: format!("{client}:{port}"),
                peer_addr: format!("{server}:25"),
                starttls_used: tls,
                messages: vec![HopMessage {
                    message_id: id.clone(),
                    mail_from: format!("u@{from}.example"),
                    rcpt_to: vec![format!("u@{to}.example")],
                    bytes,
                    sha256: sha.clone(),
                    ..Default::default()
                }],
                outcome: "delivered".to_string(),
                ..Default::default()
            });
            if from == "beta" {
                continue; // not captured
            }
            tap_sessions.push(TapSession {
                orig_h: client.to_string(),
                orig_p: port,
                resp_h: server.to_string(),
                resp_p: 25,
                starttls_used: tls,
                orig_bytes: bytes + 600,
                resp_bytes: 400,
                ..Default::default()
            });
            if !tls {
                tap_transactions.push(TapTransaction {
                    orig_h: client.to_string(),
                    orig_p: port,
                    resp_h: server.to_string(),
                    resp_p: 25,
                    mailfrom: Some(format!("u@{from}.example")),
                    sha256: Some(sha),
                    ..Default::default()
                });
            }
        }
    }
    write_jsonl(&dir.join("truth/messages.jsonl"), &messages).expect("write truth messages");
    write_jsonl(&dir.join("truth/sessions.jsonl"), &sessions).expect("write truth sessions");
    write_jsonl(&dir.join("tap/sessions.jsonl"), &tap_sessions).expect("write tap sessions");
    write_jsonl(&dir.join("tap/transactions.jsonl"), &tap_transactions).expect("write tap transactions");
}

fn provenance() -> Provenance {
    Provenance {
        scenario: "three-systems".to_string(),
        seed: 42,
        command_line: "smtplab run --scenario three-systems --seed 42".to_string(),
        version: "0.1.0".to_string(),
        capture_sha256: Some("ab".repeat(32)),
        started: "2025-01-01T00:00:00Z".to_string(),
    }
}

#[test]
fn report_has_table_charts_and_provenance() {
    let dir = temp_run_dir("full");
    write_run(&dir);
    analysis::ingest(&dir).expect("ingest");
    analysis::analyze(&dir).expect("analyze");
    let index = render(&dir, &provenance()).expect("render");
    assert_eq!(index, dir.join("report/index.html"));

    let html = std::fs::read_to_string(&index).expect("index.html written");
    assert!(
        html.contains("<td>alpha → beta</td><td>no</td><td class=\"num\">4</td><td class=\"num\">4 (100.0%)</td>"),
        "{html}"
    );
    assert!(
        html.contains("<td>alpha → gamma</td><td>yes</td><td class=\"num\">3</td><td class=\"num\">0 (0.0%)</td>"),
        "{html}"
    );
    assert!(
        html.contains("<td>beta → gamma</td><td>no</td><td class=\"num\">2</td><td class=\"num\">0 (0.0%)</td>"),
        "{html}"
    );
    assert_eq!(html.matches("<svg").count(), 2, "both charts inlined");
    assert!(html.contains("passive eavesdropper"));
    assert!(html.contains("smtplab run --scenario three-systems --seed 42"));
    assert!(html.contains(&"ab".repeat(32)));
    // Self-contained: nothing is fetched.
    for external in ["src=\"http", "href=\"http", "<link", "<script", "@import"] {
        assert!(!html.contains(external), "index.html refers to an outside resource: {external}");
    }

    let md = std::fs::read_to_string(dir.join("report/summary.md")).expect("summary.md written");
    assert!(md.contains("| alpha → beta | no | 4 | 4 (100.0%) |"), "{md}");
    assert!(md.contains("Hops whose full content the eavesdropper recovered: 4 (44.4%)"), "{md}");

    for chart in ["pairs", "bytes"] {
        let svg = std::fs::read_to_string(dir.join(format!("report/{chart}.svg"))).expect("svg written");
        assert!(svg.contains("alpha→beta"), "{chart}.svg lacks pair labels");
        let png = std::fs::metadata(dir.join(format!("report/{chart}.png"))).expect("png written");
        assert!(png.len() > 10_000, "{chart}.png is only {} bytes", png.len());
    }
}

#[test]
fn report_without_analysis_says_what_to_run() {
    let dir = temp_run_dir("unanalysed");
    let err = render(&dir, &Provenance::default()).expect_err("nothing analysed");
    let text = err.to_string();
    assert!(text.contains("analysis/pairs.parquet: missing"), "{text}");
    assert!(text.contains("smtplab analyze"), "{text}");
}

#[test]
fn report_of_a_run_without_links_still_renders() {
    let dir = temp_run_dir("no-links");
    write_jsonl::<TruthMessage>(&dir.join("truth/messages.jsonl"), &[]).expect("write");
    write_jsonl::<SessionRecord>(&dir.join("truth/sessions.jsonl"), &[]).expect("write");
    analysis::ingest(&dir).expect("ingest");
    analysis::analyze(&dir).expect("analyze");
    let index = render(&dir, &Provenance::default()).expect("render");
    let html = std::fs::read_to_string(index).expect("index.html written");
    assert!(html.contains("No mail crossed between systems."));
}
