//! End-to-end tests of ingest + analyze on small hand-made run directories.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use records::{HopMessage, SessionRecord, TapSession, TapTransaction, TruthMessage, write_jsonl};

use crate::{AnalysisError, Exposure, PairRow, RunLayout, analyze, format_table, ingest, read_summary};

/// A fresh, empty run directory under the system temp dir, unique per test and process, removed
/// when the test ends (kept if `SMTPLAB_KEEP_TEST_DIRS` is set, to look at the files).
pub(crate) struct TempRunDir(PathBuf);

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

pub(crate) fn temp_run_dir(name: &str) -> TempRunDir {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("smtplab-analysis-{name}-{}-{n}", std::process::id()));
    // A leftover from an earlier run of the same process id would make the test read stale files.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("truth")).expect("create temp run dir");
    std::fs::create_dir_all(dir.join("tap")).expect("create temp run dir");
    TempRunDir(dir)
}

fn truth(seq: u64, id: &str, from: &str, to: &str) -> TruthMessage {
    TruthMessage {
        seq,
        message_id: id.to_string(),
        sender: format!("user@{from}.example"),
        sender_system: from.to_string(),
        recipients: vec![format!("user@{to}.example")],
        recipient_systems: vec![to.to_string()],
        subject: format!("subject {seq}"),
        bytes: 100 * (seq + 1),
        sha256: format!("{seq:064x}"),
        submitted_at: 1_700_000_000.0 + seq as f64,
    }
}

fn hop(id: &str, from: &str, bytes: u64, sha: &str) -> HopMessage {
    HopMessage {
        message_id: id.to_string(),
        queue_id: format!("q-{id}"),
        mail_from: format!("user@{from}.example"),
        rcpt_to: vec!["someone@elsewhere.example".to_string()],
        bytes,
        sha256: sha.to_string(),
        reply: 250,
    }
}

fn outbound(from: &str, to: &str, client: &str, server: &str, tls: bool, messages: Vec<HopMessage>) -> SessionRecord {
    SessionRecord {
        direction: "outbound".to_string(),
        system: from.to_string(),
        peer_system: Some(to.to_string()),
        local_addr: client.to_string(),
        peer_addr: server.to_string(),
        starttls_offered: true,
        starttls_used: tls,
        tls_version: tls.then(|| "TLSv1.3".to_string()),
        outcome: if messages.is_empty() { "error" } else { "delivered" }.to_string(),
        messages,
        ..Default::default()
    }
}

fn tap_session(orig: (&str, u16), resp: (&str, u16), tls: bool, orig_bytes: u64, resp_bytes: u64) -> TapSession {
    TapSession {
        uid: format!("C{}", orig.1),
        orig_h: orig.0.to_string(),
        orig_p: orig.1,
        resp_h: resp.0.to_string(),
        resp_p: resp.1,
        starttls_used: tls,
        orig_bytes,
        resp_bytes,
        ..Default::default()
    }
}

fn tap_transaction(orig: (&str, u16), resp: (&str, u16)) -> TapTransaction {
    TapTransaction {
        uid: format!("C{}", orig.1),
        orig_h: orig.0.to_string(),
        orig_p: orig.1,
        resp_h: resp.0.to_string(),
        resp_p: resp.1,
        trans_depth: 1,
        ..Default::default()
    }
}

const ALPHA: &str = "127.0.1.1";
const BETA: &str = "127.0.1.2";
const GAMMA: &str = "127.0.1.3";

/// A run with one hop of every exposure class:
/// - m1 alpha->beta, plaintext, tap hash matches: content
/// - m6 alpha->beta, same session, tap has its Message-ID but a different hash: headers
/// - m2 alpha->gamma, STARTTLS, tap saw the session only: volume
/// - m3 beta->gamma, plaintext, tap saw nothing: unobserved
/// - m4 beta->alpha, plaintext, tap got MAIL FROM but no content: envelope
/// - m5 alpha->alpha, delivered locally: no hop at all
///
/// plus a failed alpha->gamma connection without STARTTLS and without messages, an inbound
/// session (not a hop), and a tap session unrelated to any hop.
fn write_mixed_run(dir: &Path) {
    let layout = RunLayout::new(dir);
    let messages = vec![
        truth(0, "m1@alpha.example", "alpha", "beta"),
        truth(1, "m2@alpha.example", "alpha", "gamma"),
        truth(2, "m3@beta.example", "beta", "gamma"),
        truth(3, "m4@beta.example", "beta", "alpha"),
        truth(4, "m5@alpha.example", "alpha", "alpha"),
        truth(5, "m6@alpha.example", "alpha", "beta"),
    ];
    write_jsonl(&layout.truth_messages_jsonl(), &messages).expect("write truth messages");

    let sessions = vec![
        SessionRecord { direction: "inbound".to_string(), system: "beta".to_string(), ..Default::default() },
        outbound(
            "alpha",
            "beta",
            "127.0.1.1:40000",
            "127.0.1.2:25",
            false,
            vec![hop("m1@alpha.example", "alpha", 100, "aa11"), hop("m6@alpha.example", "alpha", 200, "ff66")],
        ),
        outbound(
            "alpha",
            "gamma",
            "127.0.1.1:40001",
            "127.0.1.3:25",
            true,
            vec![hop("m2@alpha.example", "alpha", 300, "bb22")],
        ),
        outbound(
            "beta",
            "gamma",
            "127.0.1.2:40002",
            "127.0.1.3:25",
            false,
            vec![hop("m3@beta.example", "beta", 400, "cc33")],
        ),
        outbound(
            "beta",
            "alpha",
            "127.0.1.2:40003",
            "127.0.1.1:25",
            false,
            vec![hop("m4@beta.example", "beta", 500, "dd44")],
        ),
        outbound("alpha", "gamma", "127.0.1.1:40004", "127.0.1.3:25", false, vec![]),
    ];
    write_jsonl(&layout.truth_sessions_jsonl(), &sessions).expect("write truth sessions");
    std::fs::write(
        layout.truth_systems_json(),
        r#"[{"name":"alpha","domain":"alpha.example","address":"127.0.1.1","starttls":false},
            {"name":"beta","domain":"beta.example","address":"127.0.1.2","starttls":false},
            {"name":"gamma","domain":"gamma.example","address":"127.0.1.3","starttls":true}]"#,
    )
    .expect("write systems");

    let tap_sessions = vec![
        tap_session((ALPHA, 40000), (BETA, 25), false, 1000, 200),
        tap_session((ALPHA, 40001), (GAMMA, 25), true, 1500, 500),
        tap_session((BETA, 40003), (ALPHA, 25), false, 300, 100),
        tap_session(("127.0.0.1", 50000), (ALPHA, 587), false, 9999, 9999),
    ];
    write_jsonl(&layout.tap_sessions_jsonl(), &tap_sessions).expect("write tap sessions");

    let tap_transactions = vec![
        TapTransaction {
            mailfrom: Some("<user@alpha.example>".to_string()),
            msg_id: Some("<m1@alpha.example>".to_string()),
            // The tap may spell the hash in upper case; it must still match.
            sha256: Some("AA11".to_string()),
            ..tap_transaction((ALPHA, 40000), (BETA, 25))
        },
        TapTransaction {
            trans_depth: 2,
            mailfrom: Some("user@alpha.example".to_string()),
            msg_id: Some("<m6@alpha.example>".to_string()),
            sha256: Some("not-the-hash-of-m6".to_string()),
            ..tap_transaction((ALPHA, 40000), (BETA, 25))
        },
        TapTransaction {
            mailfrom: Some("<user@beta.example>".to_string()),
            ..tap_transaction((BETA, 40003), (ALPHA, 25))
        },
    ];
    write_jsonl(&layout.tap_transactions_jsonl(), &tap_transactions).expect("write tap transactions");
}

#[allow(clippy::too_many_arguments)]
fn pair(
    sender: &str,
    receiver: &str,
    starttls: bool,
    messages: u64,
    content_recovered: u64,
    envelope_or_better: u64,
    bytes_true: u64,
    sessions: (u64, u64),
    bytes_seen: u64,
    tls_sessions_seen: u64,
) -> PairRow {
    PairRow {
        sender: sender.to_string(),
        receiver: receiver.to_string(),
        messages,
        content_recovered,
        envelope_or_better,
        bytes_true,
        sessions_true: sessions.0,
        sessions_seen: sessions.1,
        bytes_seen,
        tls_sessions_seen,
        starttls,
    }
}

#[test]
fn pair_table_counts_every_exposure_class_exactly() {
    let dir = temp_run_dir("mixed");
    write_mixed_run(&dir);
    ingest(&dir).expect("ingest");
    let summary = analyze(&dir).expect("analyze");

    let expected = vec![
        pair("alpha", "beta", false, 2, 1, 2, 300, (1, 1), 1200, 0),
        pair("alpha", "gamma", true, 1, 0, 0, 300, (2, 1), 2000, 1),
        pair("beta", "alpha", false, 1, 0, 1, 500, (1, 1), 400, 0),
        pair("beta", "gamma", false, 1, 0, 0, 400, (1, 0), 0, 0),
    ];
    assert_eq!(summary.pairs, expected);
    assert_eq!(summary.messages_total, 6);
    assert_eq!(summary.hop_messages, 5);
    assert_eq!(summary.content_recovered, 1);
    assert_eq!(summary.envelope_or_better, 3);
    assert_eq!(summary.sessions_true, 5);
    assert_eq!(summary.sessions_seen, 3);
    let worst: Vec<(Exposure, usize)> = summary.worst_exposure.iter().map(|c| (c.exposure, c.messages)).collect();
    assert_eq!(
        worst,
        [
            (Exposure::Content, 1),
            (Exposure::Headers, 1),
            (Exposure::Envelope, 1),
            (Exposure::Volume, 1),
            (Exposure::Unobserved, 2)
        ]
    );

    // The saved tables give back the same summary.
    assert_eq!(read_summary(&dir).expect("read summary"), summary);
}

#[test]
fn message_table_has_worst_exposure_in_submission_order() {
    let dir = temp_run_dir("messages");
    write_mixed_run(&dir);
    ingest(&dir).expect("ingest");
    analyze(&dir).expect("analyze");
    let csv = std::fs::read_to_string(RunLayout::new(&dir).messages_csv()).expect("messages.csv written");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines,
        [
            "message_id,sender_system,recipient_systems,hops,worst_exposure",
            "m1@alpha.example,alpha,beta,1,content",
            "m2@alpha.example,alpha,gamma,1,volume",
            "m3@beta.example,beta,gamma,1,unobserved",
            "m4@beta.example,beta,alpha,1,envelope",
            "m5@alpha.example,alpha,alpha,0,unobserved",
            "m6@alpha.example,alpha,beta,1,headers",
        ]
    );
    let pairs_csv = std::fs::read_to_string(RunLayout::new(&dir).pairs_csv()).expect("pairs.csv written");
    assert!(
        pairs_csv
            .starts_with("sender_system,receiver_system,starttls,messages,content_recovered,content_recovered_pct,")
    );
    assert!(pairs_csv.contains("alpha,beta,false,2,1,50.0,"), "{pairs_csv}");
}

#[test]
fn missing_tap_files_mean_nothing_was_seen() {
    let dir = temp_run_dir("no-tap");
    write_mixed_run(&dir);
    let layout = RunLayout::new(&dir);
    std::fs::remove_file(layout.tap_sessions_jsonl()).expect("remove tap sessions");
    std::fs::remove_file(layout.tap_transactions_jsonl()).expect("remove tap transactions");
    ingest(&dir).expect("ingest without tap output");
    let summary = analyze(&dir).expect("analyze");
    assert_eq!(summary.hop_messages, 5);
    assert_eq!(summary.content_recovered, 0);
    assert!(summary.pairs.iter().all(|p| p.sessions_seen == 0 && p.bytes_seen == 0));
    assert_eq!(summary.worst_exposure.last().map(|c| c.messages), Some(6));
}

#[test]
fn ipv6_hops_match_tap_records() {
    let dir = temp_run_dir("ipv6");
    let layout = RunLayout::new(&dir);
    write_jsonl(&layout.truth_messages_jsonl(), &[truth(0, "v6@alpha.example", "alpha", "beta")]).expect("write");
    let session =
        outbound("alpha", "beta", "[::1]:40000", "[::1]:25", false, vec![hop("v6@alpha.example", "alpha", 10, "ab")]);
    write_jsonl(&layout.truth_sessions_jsonl(), &[session]).expect("write");
    write_jsonl(&layout.tap_sessions_jsonl(), &[tap_session(("::1", 40000), ("::1", 25), false, 50, 20)])
        .expect("write");
    let tx = TapTransaction { sha256: Some("ab".to_string()), ..tap_transaction(("::1", 40000), ("::1", 25)) };
    write_jsonl(&layout.tap_transactions_jsonl(), &[tx]).expect("write");
    ingest(&dir).expect("ingest");
    let summary = analyze(&dir).expect("analyze");
    assert_eq!(summary.pairs, vec![pair("alpha", "beta", false, 1, 1, 1, 10, (1, 1), 70, 0)]);
}

#[test]
fn ingest_is_deterministic() {
    let dir = temp_run_dir("determinism");
    write_mixed_run(&dir);
    let layout = RunLayout::new(&dir);
    let files = [
        layout.truth_messages_parquet(),
        layout.truth_hops_parquet(),
        layout.truth_systems_parquet(),
        layout.tap_sessions_parquet(),
        layout.tap_transactions_parquet(),
    ];
    ingest(&dir).expect("first ingest");
    let first: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).expect("parquet written")).collect();
    ingest(&dir).expect("second ingest");
    let second: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).expect("parquet written")).collect();
    assert!(first == second, "ingesting twice changed a Parquet file");

    analyze(&dir).expect("first analysis");
    let pairs = std::fs::read(layout.pairs_parquet()).expect("pairs written");
    analyze(&dir).expect("second analysis");
    assert!(pairs == std::fs::read(layout.pairs_parquet()).expect("pairs written"), "analysis not deterministic");
}

#[test]
fn missing_truth_names_the_file_and_the_fix() {
    let dir = temp_run_dir("missing");
    let err = ingest(&dir).expect_err("no truth files");
    let text = err.to_string();
    assert!(text.contains("truth/messages.jsonl: missing"), "{text}");
    assert!(text.contains("smtplab run"), "{text}");

    let err = analyze(&dir).expect_err("nothing ingested");
    assert!(matches!(err, AnalysisError::Missing { .. }), "{err}");
    let err = read_summary(&dir).expect_err("nothing analysed");
    assert!(err.to_string().contains("analysis/pairs.parquet: missing"), "{err}");
}

#[test]
fn bad_json_line_is_reported_with_its_line() {
    let dir = temp_run_dir("bad-json");
    write_mixed_run(&dir);
    std::fs::write(RunLayout::new(&dir).tap_sessions_jsonl(), "{\"ts\": 1}\n").expect("write");
    let err = ingest(&dir).expect_err("tap session lacks fields");
    assert!(err.to_string().contains("tap/sessions.jsonl:1:"), "{err}");
}

#[test]
fn terminal_table_is_aligned_and_complete() {
    let dir = temp_run_dir("table");
    write_mixed_run(&dir);
    ingest(&dir).expect("ingest");
    let summary = analyze(&dir).expect("analyze");
    let table = format_table(&summary);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("pair"), "{table}");
    assert!(lines[2].starts_with("alpha -> beta "), "{table}");
    assert!(lines[2].contains("1 (50.0%)"), "{table}");
    assert!(lines[3].contains("yes"), "{table}");
    assert!(table.contains("content recovered for 1 (20.0%)"), "{table}");
    // Right-aligned numbers end in the same column.
    assert_eq!(lines[0].len(), lines[2].len(), "{table}");
}

#[test]
fn run_without_hops_gives_empty_pair_table() {
    let dir = temp_run_dir("no-hops");
    let layout = RunLayout::new(&dir);
    write_jsonl(&layout.truth_messages_jsonl(), &[truth(0, "local@alpha.example", "alpha", "alpha")]).expect("write");
    write_jsonl::<SessionRecord>(&layout.truth_sessions_jsonl(), &[]).expect("write");
    ingest(&dir).expect("ingest");
    let summary = analyze(&dir).expect("analyze");
    assert!(summary.pairs.is_empty());
    assert_eq!(summary.messages_total, 1);
    assert_eq!(summary.content_recovered_pct(), None);
    assert!(format_table(&summary).contains("no mail crossed between systems"));
    assert_eq!(read_summary(&dir).expect("read summary"), summary);
}
