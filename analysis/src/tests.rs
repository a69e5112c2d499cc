//! End-to-end tests of ingest + analyze on small hand-made run directories.

use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicUsize, Ordering};

use records::{HopMessage, SessionRecord, Submission, TapSession, TapTransaction, TruthMessage, write_jsonl};

use crate::{
    AnalysisError, Exposure, PairRow, RunLayout, Summary, analyze, analyze_sweep, format_share_ci, format_sweep_table,
    format_table, ingest, is_sweep, read_run_metrics, read_summary, read_sweep_summary,
};

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

/// Base of every hand-made timestamp.
const T0: f64 = 1_700_000_000.0;

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
        // An offset from the start of traffic, as the generator writes it: never on the run's clock.
        scheduled_at: seq as f64 * 0.25,
        requiretls: false,
    }
}

fn hop(id: &str, from: &str, to: &str, bytes: u64, sha: &str) -> HopMessage {
    HopMessage {
        message_id: id.to_string(),
        queue_id: format!("q-{id}"),
        mail_from: format!("user@{from}.example"),
        rcpt_to: vec![format!("user@{to}.example")],
        bytes,
        sha256: sha.to_string(),
        reply: 250,
        cover: false,
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

/// alpha and gamma offer and use STARTTLS (`may` both ways), beta has none.
const SYSTEMS_JSON: &str = r#"[{"name":"alpha","domain":"alpha.example","address":"127.0.1.1","starttls":true,"inbound_tls":"may","outbound_tls":"may"},
    {"name":"beta","domain":"beta.example","address":"127.0.1.2","starttls":false,"inbound_tls":"none","outbound_tls":"none"},
    {"name":"gamma","domain":"gamma.example","address":"127.0.1.3","starttls":true}]"#;

/// A run with one hop of every exposure class:
/// - m1 alpha->beta, plaintext, tap hash matches: content
/// - m6 alpha->beta, same session, tap has its Message-ID and Subject but a different hash: headers
/// - m2 alpha->gamma, STARTTLS, tap saw the session only: volume
/// - m3 beta->gamma, plaintext, tap saw nothing: unobserved
/// - m4 beta->alpha, plaintext, tap got MAIL FROM and RCPT TO but no content: envelope
/// - m5 alpha->alpha, delivered locally: no hop at all
///
/// plus a failed alpha->gamma connection without STARTTLS and without messages, an inbound
/// session (not a hop), and a tap session unrelated to any hop.
///
/// Times: message k submitted at T0+k (truth/submissions.jsonl; scheduled 0.25 k s after the start
/// of traffic, an offset that must not reach the timeline); the five hop sessions start at T0+0.5, +1.5, ... +4.5;
/// the tap saw its sessions at T0+0.6, +1.6, +3.6 and the unrelated one at T0+4.6.
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
    let submissions: Vec<Submission> =
        (0..messages.len() as u64).map(|seq| Submission { seq, submitted_at: T0 + seq as f64 }).collect();
    write_jsonl(&layout.truth_submissions_jsonl(), &submissions).expect("write submissions");

    let mut sessions = vec![
        SessionRecord { direction: "inbound".to_string(), system: "beta".to_string(), ..Default::default() },
        outbound(
            "alpha",
            "beta",
            "127.0.1.1:40000",
            "127.0.1.2:25",
            false,
            vec![
                hop("m1@alpha.example", "alpha", "beta", 100, "aa11"),
                hop("m6@alpha.example", "alpha", "beta", 200, "ff66"),
            ],
        ),
        outbound(
            "alpha",
            "gamma",
            "127.0.1.1:40001",
            "127.0.1.3:25",
            true,
            vec![hop("m2@alpha.example", "alpha", "gamma", 300, "bb22")],
        ),
        outbound(
            "beta",
            "gamma",
            "127.0.1.2:40002",
            "127.0.1.3:25",
            false,
            vec![hop("m3@beta.example", "beta", "gamma", 400, "cc33")],
        ),
        outbound(
            "beta",
            "alpha",
            "127.0.1.2:40003",
            "127.0.1.1:25",
            false,
            vec![hop("m4@beta.example", "beta", "alpha", 500, "dd44")],
        ),
        outbound("alpha", "gamma", "127.0.1.1:40004", "127.0.1.3:25", false, vec![]),
    ];
    for (k, s) in sessions.iter_mut().skip(1).enumerate() {
        s.started_at = T0 + 0.5 + k as f64;
        s.ended_at = s.started_at + 0.01;
    }
    sessions[0].started_at = T0;
    write_jsonl(&layout.truth_sessions_jsonl(), &sessions).expect("write truth sessions");
    std::fs::write(layout.truth_systems_json(), SYSTEMS_JSON).expect("write systems");

    let tap_sessions = vec![
        TapSession {
            ts: T0 + 0.6,
            duration: 0.010,
            transactions: 2,
            ..tap_session((ALPHA, 40000), (BETA, 25), false, 1000, 200)
        },
        TapSession {
            ts: T0 + 1.6,
            duration: 0.030,
            // 300 bytes of message plus the 315 bytes of commands and framing ANALYSIS.md states
            // for one message under TLS 1.3: estimated as 1 message of 300 bytes.
            tls_app_bytes_orig: 300 + 315,
            ..tap_session((ALPHA, 40001), (GAMMA, 25), true, 1500, 500)
        },
        TapSession {
            ts: T0 + 3.6,
            duration: 0.020,
            transactions: 1,
            ..tap_session((BETA, 40003), (ALPHA, 25), false, 300, 100)
        },
        TapSession { ts: T0 + 4.6, ..tap_session(("127.0.0.1", 50000), (ALPHA, 587), false, 9999, 9999) },
    ];
    write_jsonl(&layout.tap_sessions_jsonl(), &tap_sessions).expect("write tap sessions");

    let tap_transactions = vec![
        TapTransaction {
            mailfrom: Some("<user@alpha.example>".to_string()),
            rcptto: vec!["<user@beta.example>".to_string()],
            msg_id: Some("<m1@alpha.example>".to_string()),
            subject: Some("subject 0".to_string()),
            message_bytes: Some(100),
            // The tap may spell the hash in upper case; it must still match.
            sha256: Some("AA11".to_string()),
            ..tap_transaction((ALPHA, 40000), (BETA, 25))
        },
        TapTransaction {
            trans_depth: 2,
            mailfrom: Some("user@alpha.example".to_string()),
            msg_id: Some("<m6@alpha.example>".to_string()),
            subject: Some("subject 5".to_string()),
            message_bytes: Some(190),
            sha256: Some("not-the-hash-of-m6".to_string()),
            ..tap_transaction((ALPHA, 40000), (BETA, 25))
        },
        TapTransaction {
            mailfrom: Some("<user@beta.example>".to_string()),
            rcptto: vec!["<User@Alpha.example>".to_string()],
            ..tap_transaction((BETA, 40003), (ALPHA, 25))
        },
    ];
    write_jsonl(&layout.tap_transactions_jsonl(), &tap_transactions).expect("write tap transactions");
}

/// The paired plaintext control of [`write_mixed_run`]: the same messages, every link in the
/// clear and the tap recovering every message whole.
fn write_plain_control(dir: &Path) {
    let layout = RunLayout::new(dir);
    std::fs::create_dir_all(layout.truth_dir()).expect("control truth dir");
    std::fs::create_dir_all(layout.tap_dir()).expect("control tap dir");
    let links = [
        ("m1@alpha.example", "alpha", "beta", ALPHA, BETA, 100, "aa11"),
        ("m2@alpha.example", "alpha", "gamma", ALPHA, GAMMA, 300, "bb22"),
        ("m3@beta.example", "beta", "gamma", BETA, GAMMA, 400, "cc33"),
        ("m4@beta.example", "beta", "alpha", BETA, ALPHA, 500, "dd44"),
        ("m6@alpha.example", "alpha", "beta", ALPHA, BETA, 200, "ff66"),
    ];
    let messages = vec![
        truth(0, "m1@alpha.example", "alpha", "beta"),
        truth(1, "m2@alpha.example", "alpha", "gamma"),
        truth(2, "m3@beta.example", "beta", "gamma"),
        truth(3, "m4@beta.example", "beta", "alpha"),
        truth(4, "m5@alpha.example", "alpha", "alpha"),
        truth(5, "m6@alpha.example", "alpha", "beta"),
    ];
    write_jsonl(&layout.truth_messages_jsonl(), &messages).expect("write");
    let mut sessions = Vec::new();
    let mut tap = Vec::new();
    let mut txs = Vec::new();
    for (k, (id, from, to, client, server, bytes, sha)) in links.into_iter().enumerate() {
        let port = 41000 + k as u16;
        let mut s = outbound(
            from,
            to,
            &format!("{client}:{port}"),
            &format!("{server}:25"),
            false,
            vec![hop(id, from, to, bytes, sha)],
        );
        s.started_at = T0 + k as f64;
        sessions.push(s);
        tap.push(TapSession {
            ts: T0 + k as f64,
            duration: 0.005,
            transactions: 1,
            ..tap_session((client, port), (server, 25), false, bytes + 150, 200)
        });
        txs.push(TapTransaction {
            mailfrom: Some(format!("user@{from}.example")),
            rcptto: vec![format!("user@{to}.example")],
            msg_id: Some(format!("<{id}>")),
            subject: Some("s".to_string()),
            message_bytes: Some(bytes),
            sha256: Some(sha.to_string()),
            ..tap_transaction((client, port), (server, 25))
        });
    }
    write_jsonl(&layout.truth_sessions_jsonl(), &sessions).expect("write");
    std::fs::write(
        layout.truth_systems_json(),
        SYSTEMS_JSON.replace("\"starttls\":true", "\"starttls\":false").replace("\"may\"", "\"none\""),
    )
    .expect("write");
    write_jsonl(&layout.tap_sessions_jsonl(), &tap).expect("write");
    write_jsonl(&layout.tap_transactions_jsonl(), &txs).expect("write");
}

/// The columns the pair table had before issue 6, as one comparable tuple.
type CorePair = (&'static str, &'static str, bool, u64, u64, u64, u64, (u64, u64), u64, u64);
type CoreOwned = (String, String, bool, u64, u64, u64, u64, (u64, u64), u64, u64);

fn core(p: &PairRow) -> CoreOwned {
    (
        p.sender.clone(),
        p.receiver.clone(),
        p.starttls,
        p.messages,
        p.content_recovered,
        p.envelope_or_better,
        p.bytes_true,
        (p.sessions_true, p.sessions_seen),
        p.bytes_seen,
        p.tls_sessions_seen,
    )
}

fn owned(c: &CorePair) -> CoreOwned {
    (c.0.to_string(), c.1.to_string(), c.2, c.3, c.4, c.5, c.6, c.7, c.8, c.9)
}

fn find<'a>(summary: &'a Summary, sender: &str, receiver: &str) -> &'a PairRow {
    summary.pairs.iter().find(|p| p.sender == sender && p.receiver == receiver).expect("pair present")
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

fn analysed_mixed_run(name: &str) -> (TempRunDir, Summary) {
    let dir = temp_run_dir(name);
    write_mixed_run(&dir);
    ingest(&dir).expect("ingest");
    let summary = analyze(&dir).expect("analyze");
    (dir, summary)
}

#[test]
fn pair_table_counts_every_exposure_class_exactly() {
    let (dir, summary) = analysed_mixed_run("mixed");
    let expected: Vec<CorePair> = vec![
        ("alpha", "beta", false, 2, 1, 2, 300, (1, 1), 1200, 0),
        ("alpha", "gamma", true, 1, 0, 0, 300, (2, 1), 2000, 1),
        ("beta", "alpha", false, 1, 0, 1, 500, (1, 1), 400, 0),
        ("beta", "gamma", false, 1, 0, 0, 400, (1, 0), 0, 0),
    ];
    assert_eq!(summary.pairs.iter().map(core).collect::<Vec<_>>(), expected.iter().map(owned).collect::<Vec<_>>());
    let classes: Vec<[u64; 5]> = summary.pairs.iter().map(|p| Exposure::ALL.map(|c| p.exposure_count(c))).collect();
    // [unobserved, volume, envelope, headers, content] per pair.
    assert_eq!(classes, [[0, 0, 0, 1, 1], [0, 1, 0, 0, 0], [0, 0, 1, 0, 0], [1, 0, 0, 0, 0]]);
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
fn link_modes_and_expected_shares_follow_the_policies() {
    let (_dir, summary) = analysed_mixed_run("modes");
    let modes: Vec<(&str, Option<f64>)> =
        summary.pairs.iter().map(|p| (p.link_mode.as_str(), p.expected_content_share)).collect();
    assert_eq!(
        modes,
        [("plaintext", Some(1.0)), ("tls", Some(0.0)), ("plaintext", Some(1.0)), ("plaintext", Some(1.0))]
    );
    let a = &summary.run.analytic;
    // Traffic matrix: alpha->beta 2, alpha->gamma 1 (TLS), beta->gamma 1, beta->alpha 1; m5 stays home.
    assert_eq!((a.weight_tls, a.weight_plaintext, a.weight_withheld, a.weight_unknown), (1, 4, 0, 0));
    assert!(close(a.content_share, 0.8), "{a:?}");
}

#[test]
fn scenario_shares_are_exact() {
    let (_dir, summary) = analysed_mixed_run("shares");
    let run = &summary.run;
    for class in Exposure::ALL {
        assert!(close(run.hop_shares.get(class), 0.2), "{class}: {:?}", run.hop_shares);
        // Five messages crossed a link (m5 did not), one per class.
        assert!(close(run.worst_shares.get(class), 0.2), "{class}: {:?}", run.worst_shares);
    }
    assert_eq!((run.messages_total, run.messages_crossing, run.hop_messages), (6, 5, 5));
    assert!(!run.has_control);
    assert_eq!(run.content_share_diff, None);
}

#[test]
fn eavesdropper_estimates_and_their_errors() {
    let (_dir, summary) = analysed_mixed_run("estimates");
    let est: Vec<(u64, Option<f64>, u64)> =
        summary.pairs.iter().map(|p| (p.messages_est, p.messages_est_rel_err, p.bytes_est)).collect();
    // alpha->beta: 2 transactions read, bytes as read (100 + 190);
    // alpha->gamma: one TLS session over the threshold, 615 - 315 = 300 bytes;
    // beta->alpha: 1 transaction, no size read; beta->gamma: not seen.
    assert_eq!(est, [(2, Some(0.0), 290), (1, Some(0.0), 300), (1, Some(0.0), 0), (0, Some(-1.0), 0)]);
    assert!(close(find(&summary, "alpha", "beta").bytes_est_rel_err, -10.0 / 300.0));
    assert!(close(find(&summary, "alpha", "gamma").bytes_est_rel_err, 0.0));
    assert!(close(find(&summary, "beta", "alpha").bytes_est_rel_err, -1.0));
    let run = &summary.run;
    assert_eq!((run.messages_est, run.bytes_est, run.bytes_true), (4, 590, 1500));
    assert!(close(run.messages_est_rel_err, -0.2));
    assert!(close(run.bytes_est_rel_err, (590.0 - 1500.0) / 1500.0));
}

#[test]
fn the_taps_own_estimate_inside_tls_replaces_the_volume_heuristic() {
    let dir = temp_run_dir("tap-estimates");
    write_mixed_run(&dir);
    let layout = RunLayout::new(&dir);
    let mut tap: Vec<TapSession> = records::read_jsonl(&layout.tap_sessions_jsonl()).expect("tap sessions");
    let tls = tap.iter_mut().find(|s| s.starttls_used).expect("the TLS session");
    // The heuristic would say 1 message of 4000 - 315 bytes; the tap's record bursts say two
    // messages of 150 and 149 bytes (one true message of 300: one too many, one byte short).
    tls.tls_app_bytes_orig = 4000;
    tls.est_messages = Some(2);
    tls.est_message_bytes = vec![150, 149];
    write_jsonl(&layout.tap_sessions_jsonl(), &tap).expect("rewrite tap sessions");
    ingest(&dir).expect("ingest");
    let summary = analyze(&dir).expect("analyze");
    let p = find(&summary, "alpha", "gamma");
    assert_eq!((p.messages_est, p.bytes_est), (2, 299));
    assert_eq!(p.messages_est_rel_err, Some(1.0));
    assert!(close(p.bytes_est_rel_err, -1.0 / 300.0));
}

#[test]
fn user_pairs_are_linkable_only_when_both_ends_leak() {
    let (dir, summary) = analysed_mixed_run("users");
    let csv = std::fs::read_to_string(RunLayout::new(&dir).table_csv("user_pairs")).expect("user_pairs.csv");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines,
        [
            "sender,recipient,sender_system,recipient_system,messages,crosses_link,linked_messages,linkable",
            // never left alpha
            "user@alpha.example,user@alpha.example,alpha,alpha,1,false,0,false",
            // content (m1) and headers (m6)
            "user@alpha.example,user@beta.example,alpha,beta,2,true,2,true",
            // volume only (TLS)
            "user@alpha.example,user@gamma.example,alpha,gamma,1,true,0,false",
            // envelope with that recipient in RCPT TO (spelled in another case)
            "user@beta.example,user@alpha.example,beta,alpha,1,true,1,true",
            // unobserved
            "user@beta.example,user@gamma.example,beta,gamma,1,true,0,false",
        ]
    );
    let run = &summary.run;
    assert_eq!((run.user_pairs, run.user_pairs_crossing, run.user_pairs_linkable), (5, 4, 2));
    assert!(close(run.linkable_share, 0.5));
}

#[test]
fn envelope_links_only_the_recipients_it_names_and_headers_need_header_fields() {
    let dir = temp_run_dir("envelope-rcpt");
    let layout = RunLayout::new(&dir);
    let mut m = truth(0, "e1@alpha.example", "alpha", "beta");
    m.recipients = vec!["ann@beta.example".into(), "bob@beta.example".into()];
    let mut m2 = truth(1, "e2@alpha.example", "alpha", "beta");
    m2.recipients = vec!["cy@beta.example".into()];
    write_jsonl(&layout.truth_messages_jsonl(), &[m, m2]).expect("write");
    let mut h = hop("e1@alpha.example", "alpha", "beta", 10, "e1");
    h.rcpt_to = vec!["ann@beta.example".into(), "bob@beta.example".into()];
    let mut h2 = hop("e2@alpha.example", "alpha", "beta", 10, "e2");
    h2.mail_from = "other@alpha.example".into();
    h2.rcpt_to = vec!["cy@beta.example".into()];
    let sessions = vec![
        outbound("alpha", "beta", "127.0.1.1:40000", "127.0.1.2:25", false, vec![h]),
        outbound("alpha", "beta", "127.0.1.1:40001", "127.0.1.2:25", false, vec![h2]),
    ];
    write_jsonl(&layout.truth_sessions_jsonl(), &sessions).expect("write");
    write_jsonl(
        &layout.tap_sessions_jsonl(),
        &[
            tap_session((ALPHA, 40000), (BETA, 25), false, 10, 10),
            tap_session((ALPHA, 40001), (BETA, 25), false, 10, 10),
        ],
    )
    .expect("write");
    let txs = vec![
        // The capture lost bob's RCPT TO: ann is linked, bob is not.
        TapTransaction {
            mailfrom: Some("user@alpha.example".into()),
            rcptto: vec!["ann@beta.example".into()],
            // A Message-ID alone is no header recovery (no Subject, From or To): envelope.
            msg_id: Some("<e1@alpha.example>".into()),
            ..tap_transaction((ALPHA, 40000), (BETA, 25))
        },
        // Only the recipient was read (MAIL FROM lost): envelope, but the sender is unknown.
        TapTransaction { rcptto: vec!["cy@beta.example".into()], ..tap_transaction((ALPHA, 40001), (BETA, 25)) },
    ];
    write_jsonl(&layout.tap_transactions_jsonl(), &txs).expect("write");
    ingest(&dir).expect("ingest");
    let summary = analyze(&dir).expect("analyze");
    let pair = find(&summary, "alpha", "beta");
    assert_eq!((pair.exposure_envelope, pair.exposure_headers), (2, 0));
    let csv = std::fs::read_to_string(layout.table_csv("user_pairs")).expect("user_pairs.csv");
    assert!(csv.contains("user@alpha.example,ann@beta.example,alpha,beta,1,true,1,true"), "{csv}");
    assert!(csv.contains("user@alpha.example,bob@beta.example,alpha,beta,1,true,0,false"), "{csv}");
    assert!(csv.contains("user@alpha.example,cy@beta.example,alpha,beta,1,true,0,false"), "{csv}");
    let hops = std::fs::read_to_string(layout.table_csv("hops")).expect("hops.csv");
    assert!(hops.lines().skip(1).all(|l| l.ends_with(",envelope")), "{hops}");
}

#[test]
fn plaintext_control_is_analysed_and_compared() {
    let dir = temp_run_dir("control");
    write_mixed_run(&dir);
    write_plain_control(&dir.join("control"));
    ingest(&dir).expect("ingest run and control");
    let summary = analyze(&dir).expect("analyze");
    let run = &summary.run;
    assert!(run.has_control);
    assert_eq!(run.control_hop_messages, Some(5));
    assert!(close(run.control_shares.content, 1.0), "{run:?}");
    assert!(close(run.content_share_diff, 0.2 - 1.0));
    let ab = find(&summary, "alpha", "beta");
    assert_eq!((ab.control_messages, ab.control_content_recovered), (Some(2), Some(2)));
    assert!(close(ab.control_content_share, 1.0) && close(ab.content_share_diff, -0.5));
    let ag = find(&summary, "alpha", "gamma");
    assert!(close(ag.content_share_diff, -1.0));
    // The control has its own analysis.
    let control = read_run_metrics(&dir.join("control")).expect("control analysed");
    assert!(close(control.analytic.content_share, 1.0));
    assert_eq!(read_summary(&dir).expect("read back").run, summary.run);
}

#[test]
fn tls_cost_compares_tls_with_plaintext_per_size_bucket() {
    let (_dir, summary) = analysed_mixed_run("tls-cost");
    // Seen sessions with a message: 40000 (plain, 300 B of mail, 1200 B on the wire, 10 ms),
    // 40003 (plain, 500 B, 400 B, 20 ms), 40001 (TLS, 300 B, 2000 B, 30 ms): all under 1 KiB.
    assert_eq!(summary.tls_cost.len(), 1, "{:?}", summary.tls_cost);
    let row = &summary.tls_cost[0];
    assert_eq!((row.size_bucket.as_str(), row.plain_sessions, row.tls_sessions), ("<1 KiB", 2, 1));
    assert!(close(row.plain_wire_bytes_mean, 800.0));
    assert!(close(row.plain_overhead_bytes_mean, 400.0));
    assert!(close(row.tls_overhead_bytes_mean, 1700.0));
    assert!(close(row.tls_extra_bytes_mean, 1300.0));
    assert!(close(row.wire_ratio, 2.5));
    assert!(close(row.plain_duration_ms_mean, 15.0));
    assert!(close(row.tls_duration_ms_mean, 30.0));
    assert!(close(row.duration_ratio, 2.0));
}

#[test]
fn timeline_counts_submissions_hop_sessions_and_tap_sessions() {
    let (_dir, summary) = analysed_mixed_run("timeline");
    let t = &summary.timeline;
    // Events span T0 .. T0+5: bins of 0.1 s, 51 of them.
    assert_eq!(t.len(), 51);
    assert!(t.iter().all(|r| (r.bin_width_s - 0.1).abs() < 1e-12));
    assert_eq!(t.iter().map(|r| r.submitted).sum::<u64>(), 6);
    assert_eq!(t.iter().map(|r| r.hop_sessions).sum::<u64>(), 5);
    assert_eq!(t.iter().map(|r| r.tap_sessions).sum::<u64>(), 4);
    assert_eq!((t[0].submitted, t[5].hop_sessions, t[6].tap_sessions), (1, 1, 1));
    assert!((t[0].submitted_per_s() - 10.0).abs() < 1e-9);
}

#[test]
fn message_table_has_worst_exposure_in_submission_order() {
    let (dir, _) = analysed_mixed_run("messages");
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
    // Every table of the run is written, Parquet and CSV.
    for name in ["pairs", "messages", "hops", "user_pairs", "sessions", "tls_cost", "timeline", "summary"] {
        let layout = RunLayout::new(&dir);
        assert!(layout.table_parquet(name).is_file(), "{name}.parquet");
        assert!(layout.table_csv(name).is_file(), "{name}.csv");
    }
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
    assert!(summary.pairs.iter().all(|p| p.sessions_seen == 0 && p.bytes_seen == 0 && p.messages_est == 0));
    assert_eq!(summary.worst_exposure.last().map(|c| c.messages), Some(6));
    assert!(close(summary.run.hop_shares.unobserved, 1.0));
}

#[test]
fn ipv6_hops_match_tap_records() {
    let dir = temp_run_dir("ipv6");
    let layout = RunLayout::new(&dir);
    write_jsonl(&layout.truth_messages_jsonl(), &[truth(0, "v6@alpha.example", "alpha", "beta")]).expect("write");
    let session = outbound(
        "alpha",
        "beta",
        "[::1]:40000",
        "[::1]:25",
        false,
        vec![hop("v6@alpha.example", "alpha", "beta", 10, "ab")],
    );
    write_jsonl(&layout.truth_sessions_jsonl(), &[session]).expect("write");
    write_jsonl(&layout.tap_sessions_jsonl(), &[tap_session(("::1", 40000), ("::1", 25), false, 50, 20)])
        .expect("write");
    let tx = TapTransaction { sha256: Some("ab".to_string()), ..tap_transaction(("::1", 40000), ("::1", 25)) };
    write_jsonl(&layout.tap_transactions_jsonl(), &[tx]).expect("write");
    ingest(&dir).expect("ingest");
    let summary = analyze(&dir).expect("analyze");
    assert_eq!(
        summary.pairs.iter().map(core).collect::<Vec<_>>(),
        vec![owned(&("alpha", "beta", false, 1, 1, 1, 10, (1, 1), 70, 0))]
    );
    // No systems.json: the link mode is unknown and there is no analytic expectation.
    assert_eq!(summary.pairs[0].link_mode, "unknown");
    assert_eq!(summary.run.analytic.content_share, None);
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
        layout.tap_tls_records_parquet(),
    ];
    ingest(&dir).expect("first ingest");
    let first: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).expect("parquet written")).collect();
    ingest(&dir).expect("second ingest");
    let second: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).expect("parquet written")).collect();
    assert!(first == second, "ingesting twice changed a Parquet file");

    analyze(&dir).expect("first analysis");
    let names = ["pairs", "messages", "hops", "user_pairs", "sessions", "tls_cost", "timeline", "summary"];
    let first: Vec<Vec<u8>> = names.iter().map(|n| std::fs::read(layout.table_parquet(n)).expect("written")).collect();
    analyze(&dir).expect("second analysis");
    for (name, before) in names.iter().zip(first) {
        assert!(before == std::fs::read(layout.table_parquet(name)).expect("written"), "{name} not deterministic");
    }
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
    let (_dir, summary) = analysed_mixed_run("table");
    let table = format_table(&summary);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("pair"), "{table}");
    assert!(lines[2].starts_with("alpha -> beta "), "{table}");
    assert!(lines[2].contains("1 (50.0%)"), "{table}");
    assert!(lines[3].contains("yes"), "{table}");
    assert!(table.contains("content recovered for 1 (20.0%)"), "{table}");
    assert!(
        table.contains(
            "Analytic expectation (policies x traffic matrix): content 80.0% of hop messages; measured 20.0%."
        ),
        "{table}"
    );
    assert!(table.contains("content 20.0%, headers 20.0%, envelope 20.0%, volume 20.0%, unobserved 20.0%"), "{table}");
    assert!(table.contains("Linkable user pairs (sender and recipient identified on some hop): 2 of 4"), "{table}");
    assert!(table.contains("One seed: no confidence interval"), "{table}");
    assert!(table.contains("control/ is absent"), "{table}");
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
    assert_eq!(summary.run.hop_shares.content, None);
    assert!(format_table(&summary).contains("no mail crossed between systems"));
    assert_eq!(read_summary(&dir).expect("read summary"), summary);
}

/// A run of five plaintext alpha->beta messages of which the tap recovers the first
/// `recovered` whole (the rest: session seen only), as point `point` of sweep "adoption".
fn write_sweep_run(dir: &Path, point: &str, adoption: f64, seed: u64, recovered: usize) {
    let layout = RunLayout::new(dir);
    std::fs::create_dir_all(layout.truth_dir()).expect("truth dir");
    std::fs::create_dir_all(layout.tap_dir()).expect("tap dir");
    let mut messages = Vec::new();
    let mut sessions = Vec::new();
    let mut tap = Vec::new();
    let mut txs = Vec::new();
    for k in 0..5u16 {
        let id = format!("s{seed}-{k}@alpha.example");
        let sha = format!("{k:064x}");
        messages.push(truth(u64::from(k), &id, "alpha", "beta"));
        let port = 40000 + k;
        let mut s = outbound(
            "alpha",
            "beta",
            &format!("{ALPHA}:{port}"),
            &format!("{BETA}:25"),
            false,
            vec![hop(&id, "alpha", "beta", 2000, &sha)],
        );
        s.started_at = T0 + f64::from(k);
        sessions.push(s);
        tap.push(TapSession {
            ts: T0 + f64::from(k),
            duration: 0.01,
            ..tap_session((ALPHA, port), (BETA, 25), false, 2300, 300)
        });
        if usize::from(k) < recovered {
            txs.push(TapTransaction { sha256: Some(sha), ..tap_transaction((ALPHA, port), (BETA, 25)) });
        }
    }
    write_jsonl(&layout.truth_messages_jsonl(), &messages).expect("write");
    write_jsonl(&layout.truth_sessions_jsonl(), &sessions).expect("write");
    write_jsonl(&layout.tap_sessions_jsonl(), &tap).expect("write");
    write_jsonl(&layout.tap_transactions_jsonl(), &txs).expect("write");
    let point_json =
        serde_json::json!({"sweep": "adoption", "point": point, "params": {"tls.adoption": adoption}, "seed": seed});
    std::fs::write(layout.point_json(), point_json.to_string()).expect("write point.json");
}

#[test]
fn sweep_means_and_t_intervals_over_seeds() {
    let dir = temp_run_dir("sweep");
    // As `smtplab sweep` writes it: every point once per seed.
    let listed: Vec<serde_json::Value> = [("p0", 0.0), ("p1", 1.0)]
        .iter()
        .flat_map(|(point, adoption)| {
            (1..=4).map(move |seed| {
                serde_json::json!({"point": point, "params": {"tls.adoption": adoption}, "seed": seed,
                    "dir": format!("{point}-s{seed}")})
            })
        })
        .collect();
    let spec = serde_json::json!({
        "name": "adoption",
        "keys": ["tls.adoption"],
        "seeds": [1, 2, 3, 4],
        "points": listed,
    });
    std::fs::write(dir.join("sweep.json"), spec.to_string()).expect("write sweep.json");
    // p0: 1, 2 and 3 of 5 recovered (0.2, 0.4, 0.6); p1: none of 5 in each seed. Seed 4 is missing.
    for (seed, k) in [(1, 1), (2, 2), (3, 3)] {
        write_sweep_run(&dir.join(format!("p0-s{seed}")), "p0", 0.0, seed, k);
        write_sweep_run(&dir.join(format!("p1-s{seed}")), "p1", 1.0, seed, 0);
    }
    assert!(is_sweep(&dir));
    ingest(&dir).expect("ingest the sweep");
    let sweep = analyze_sweep(&dir).expect("analyze the sweep");
    assert_eq!(sweep.x_key.as_deref(), Some("tls.adoption"));
    assert_eq!(sweep.runs.len(), 6);
    assert_eq!(sweep.run_dirs, ["p0-s1", "p0-s2", "p0-s3", "p1-s1", "p1-s2", "p1-s3"]);
    assert_eq!(sweep.missing, [("p0".to_string(), 4), ("p1".to_string(), 4)]);
    assert_eq!(sweep.points.len(), 2, "each point once, whatever its seeds");
    let p0 = &sweep.points[0];
    assert_eq!((p0.point.as_str(), p0.x, p0.seeds.as_slice()), ("p0", Some(0.0), &[1, 2, 3][..]));
    let ci = p0.metric("share_content").expect("content share");
    // Mean 0.4, s = 0.2, n = 3: half width t(0.975, 2) * 0.2 / sqrt(3) with t = 4.302652730.
    let half = 4.302_652_730 * 0.2 / 3f64.sqrt();
    assert_eq!(ci.n, 3);
    assert!(close(ci.mean, 0.4) && close(ci.sd, 0.2));
    assert!(ci.half_width.is_some_and(|h| (h - half).abs() < 1e-8), "{ci:?}");
    assert!(ci.low.is_some_and(|l| (l - (0.4 - half)).abs() < 1e-8));
    let p1 = sweep.points[1].metric("share_content").expect("content share");
    assert!(close(p1.mean, 0.0) && close(p1.half_width, 0.0));
    // No systems.json in these runs: no analytic expectation.
    assert_eq!(sweep.points[0].metric("analytic_content_share").and_then(|c| c.mean), None);

    let points = std::fs::read_to_string(dir.join("analysis/points.csv")).expect("points.csv");
    assert!(points.starts_with("point,point_index,params,x,metric,n,mean,sd,ci_low,ci_high,ci_half_width"), "{points}");
    assert!(dir.join("analysis/runs.parquet").is_file() && dir.join("analysis/tls_cost.csv").is_file());
    assert_eq!(sweep.tls_cost.iter().map(|r| r.plain_sessions).sum::<u64>(), 30);

    let table = format_sweep_table(&sweep);
    assert!(table.contains(&format_share_ci(ci)), "{table}");
    assert!(table.contains("40.0% ["), "{table}");
    assert!(table.contains("missing runs (2): p0 seed 4, p1 seed 4"), "{table}");

    // Read back for the report without analysing again.
    let again = read_sweep_summary(&dir).expect("read sweep");
    assert_eq!(again, sweep);

    // Reusing runs' analyses: a complete run keeps its own (a table removed here stays away),
    // a run that is not complete is analysed again; the sweep's tables come out the same.
    std::fs::write(dir.join("p0-s1/manifest.json"), r#"{"status": "complete"}"#).expect("manifest");
    for run in ["p0-s1", "p0-s2"] {
        std::fs::remove_file(dir.join(run).join("analysis/pairs.csv")).expect("remove a table");
    }
    let reused = crate::analyze_sweep_with(&dir, true).expect("analyze the sweep, reusing runs");
    assert!(!dir.join("p0-s1/analysis/pairs.csv").exists(), "the complete run was not analysed again");
    assert!(dir.join("p0-s2/analysis/pairs.csv").is_file(), "the other run was");
    assert_eq!(reused, sweep);
}

#[test]
fn empty_sweep_says_so() {
    let dir = temp_run_dir("empty-sweep");
    std::fs::write(dir.join("sweep.json"), r#"{"name":"x","keys":[],"seeds":[],"points":[]}"#).expect("write");
    let err = analyze_sweep(&dir).expect_err("no runs");
    assert!(err.to_string().contains("no run directories"), "{err}");
}

#[test]
fn reused_four_tuple_is_told_apart_by_time_and_uid() {
    let dir = temp_run_dir("port-reuse");
    let layout = RunLayout::new(&dir);
    write_jsonl(
        &layout.truth_messages_jsonl(),
        &[
            truth(0, "r1@alpha.example", "alpha", "beta"),
            truth(1, "r2@alpha.example", "alpha", "beta"),
            truth(2, "r3@alpha.example", "alpha", "beta"),
        ],
    )
    .expect("write");
    let mut first = outbound(
        "alpha",
        "beta",
        "127.0.1.1:40000",
        "127.0.1.2:25",
        false,
        vec![hop("r1@alpha.example", "alpha", "beta", 100, "r1")],
    );
    first.started_at = T0;
    let mut second = outbound(
        "alpha",
        "beta",
        "127.0.1.1:40000",
        "127.0.1.2:25",
        false,
        vec![hop("r2@alpha.example", "alpha", "beta", 700, "r2")],
    );
    second.started_at = T0 + 0.1;
    // A third connection on the same 4-tuple a minute later, which the tap missed: it must not
    // borrow either of the other two's tap sessions.
    let mut third = outbound(
        "alpha",
        "beta",
        "127.0.1.1:40000",
        "127.0.1.2:25",
        false,
        vec![hop("r3@alpha.example", "alpha", "beta", 50, "r3")],
    );
    third.started_at = T0 + 60.0;
    third.ended_at = T0 + 60.01;
    write_jsonl(&layout.truth_sessions_jsonl(), &[first, second, third]).expect("write");
    // The tap dates the second connection a little early (trailing packets of the first).
    let tap = vec![
        TapSession {
            uid: "Cfirst".into(),
            ts: T0 + 0.0001,
            ..tap_session((ALPHA, 40000), (BETA, 25), false, 300, 100)
        },
        TapSession { uid: "Csecond".into(), ts: T0 + 0.07, ..tap_session((ALPHA, 40000), (BETA, 25), false, 900, 100) },
    ];
    write_jsonl(&layout.tap_sessions_jsonl(), &tap).expect("write");
    let txs = vec![
        TapTransaction {
            uid: "Csecond".into(),
            sha256: Some("r2".into()),
            message_bytes: Some(700),
            ..tap_transaction((ALPHA, 40000), (BETA, 25))
        },
        TapTransaction {
            uid: "Cfirst".into(),
            sha256: Some("r1".into()),
            message_bytes: Some(100),
            ..tap_transaction((ALPHA, 40000), (BETA, 25))
        },
    ];
    write_jsonl(&layout.tap_transactions_jsonl(), &txs).expect("write");
    ingest(&dir).expect("ingest");
    let summary = analyze(&dir).expect("analyze");
    let p = find(&summary, "alpha", "beta");
    assert_eq!((p.messages, p.content_recovered, p.sessions_seen, p.bytes_seen, p.bytes_est), (3, 2, 2, 1400, 800));
    assert_eq!(p.exposure_unobserved, 1);
    let sessions = std::fs::read_to_string(layout.table_csv("sessions")).expect("sessions.csv");
    let wire: Vec<&str> = sessions.lines().skip(1).map(|l| l.split(',').nth(12).unwrap_or_default()).collect();
    assert_eq!(wire, ["400", "1000", ""], "{sessions}");
}

/// `truth/outcomes.parquet` says, per message and recipient, what the relays' `local` records
/// say: delivered, bounced (with the reason), or nothing final (undelivered).
#[test]
fn outcomes_follow_the_relays_final_records() {
    use crate::record_frames::{FinalOutcomes, truth_outcomes_frame};
    let finals = |sessions: &[SessionRecord], recorded: bool| {
        let mut f = FinalOutcomes::new(recorded);
        sessions.iter().for_each(|s| f.add(s));
        f
    };
    let mut two = truth(2, "<m2>", "alpha", "beta");
    two.recipients.push("other@gamma.example".into());
    two.recipient_systems.push("gamma".into());
    let messages = vec![truth(1, "<m1>", "alpha", "beta"), two];
    let local = |outcome: &str, system: &str, id: &str, rcpt: &str, error: Option<&str>| SessionRecord {
        direction: "local".into(),
        system: system.into(),
        ended_at: T0 + 9.0,
        messages: vec![HopMessage { rcpt_to: vec![rcpt.into()], ..hop(id, "alpha", "beta", 1, "x") }],
        outcome: outcome.into(),
        error: error.map(str::to_string),
        ..Default::default()
    };
    let sessions = vec![
        outbound("alpha", "beta", "127.0.1.1:4000", "127.0.2.1:25", true, vec![hop("<m1>", "alpha", "beta", 1, "x")]),
        local("delivered", "beta", "<m1>", "user@beta.example", None),
        local("bounced", "alpha", "<m2>", "other@gamma.example", Some("<other@gamma.example>: 550 no")),
        // A repeat after a restart does not change the first final word.
        local("delivered", "gamma", "<m2>", "other@gamma.example", None),
    ];
    let df = truth_outcomes_frame(&messages, &finals(&sessions, true)).expect("frame");
    assert_eq!(df.height(), 3);
    let col = |name: &str| -> Vec<Option<String>> {
        df.column(name).expect(name).str().expect("str").into_iter().map(|v| v.map(str::to_string)).collect()
    };
    let s = |v: &str| Some(v.to_string());
    assert_eq!(col("recipient"), [s("user@beta.example"), s("user@beta.example"), s("other@gamma.example")]);
    assert_eq!(col("outcome"), [s("delivered"), s("undelivered"), s("bounced")]);
    assert_eq!(col("system"), [s("beta"), None, s("alpha")]);
    assert_eq!(col("reason"), [None, None, s("<other@gamma.example>: 550 no")]);

    // A run whose relays did not record outcomes says so, rather than "undelivered".
    let old = truth_outcomes_frame(&messages, &finals(&sessions[..1], false)).expect("frame");
    let outcomes: Vec<Option<&str>> = old.column("outcome").expect("outcome").str().expect("str").into_iter().collect();
    assert_eq!(outcomes, [Some("unknown"); 3]);
}

/// Cover traffic changes what the eavesdropper sees and nothing of the mail: the mixed run,
/// with and without one STARTTLS cover session alpha→gamma (a 1,000-byte cover message; the tap
/// saw 2,000 + 500 bytes, 1,000 + 315 of client application data: one message by the volume
/// heuristic). Exposure, volume, outcomes and user pairs are the same; the eavesdropper's
/// message estimate is one higher; the cover is counted apart with its bytes. Latency is
/// worked by hand from the delivery records added to both runs.
#[test]
fn cover_traffic_is_counted_apart_from_mail() {
    let with_deliveries = |dir: &Path, cover: bool| {
        write_mixed_run(dir);
        let layout = RunLayout::new(dir);
        let manifest = records::Manifest::running(serde_json::json!({}), "test", 1, "test", "now".into());
        records::write_json_file(&layout.manifest_json(), &manifest).expect("manifest");
        let mut sessions: Vec<SessionRecord> = records::read_jsonl(&layout.truth_sessions_jsonl()).expect("read");
        // Submitted at T0 + seq: m1 (seq 0) delivered after 10 s, m2 (1) after 2 s, m4 (3) after 0.5 s.
        for (id, to, at) in
            [("m1@alpha.example", "beta", 10.0), ("m2@alpha.example", "gamma", 3.0), ("m4@beta.example", "alpha", 3.5)]
        {
            sessions.push(SessionRecord {
                direction: "local".into(),
                system: to.into(),
                started_at: T0 + at,
                ended_at: T0 + at,
                messages: vec![hop(id, "x", to, 1, "x")],
                outcome: "delivered".into(),
                ..Default::default()
            });
        }
        if cover {
            let mut c = outbound(
                "alpha",
                "gamma",
                "127.0.1.1:40009",
                "127.0.1.3:25",
                true,
                vec![HopMessage {
                    mail_from: "smtplab-cover@alpha.example".into(),
                    rcpt_to: vec!["smtplab-cover@gamma.example".into()],
                    cover: true,
                    ..hop("cover.0@mx.alpha.example", "alpha", "gamma", 1000, "c0c0")
                }],
            );
            c.started_at = T0 + 5.5;
            c.ended_at = T0 + 5.6;
            sessions.push(c);
            let mut tap: Vec<TapSession> = records::read_jsonl(&layout.tap_sessions_jsonl()).expect("tap sessions");
            tap.push(TapSession {
                ts: T0 + 5.6,
                duration: 0.02,
                tls_app_bytes_orig: 1000 + 315,
                ..tap_session((ALPHA, 40009), (GAMMA, 25), true, 2000, 500)
            });
            write_jsonl(&layout.tap_sessions_jsonl(), &tap).expect("tap sessions");
        }
        write_jsonl(&layout.truth_sessions_jsonl(), &sessions).expect("sessions");
        ingest(dir).expect("ingest");
        analyze(dir).expect("analyze").run
    };
    let (a, b) = (temp_run_dir("cover-off"), temp_run_dir("cover-on"));
    let (plain, cover) = (with_deliveries(&a, false), with_deliveries(&b, true));
    assert_eq!(plain.costs.cover_messages, 0);
    for (what, x, y) in [
        ("hop_messages", plain.hop_messages, cover.hop_messages),
        ("messages_crossing", plain.messages_crossing, cover.messages_crossing),
        ("bytes_true", plain.bytes_true, cover.bytes_true),
        ("user_pairs_linkable", plain.user_pairs_linkable, cover.user_pairs_linkable),
    ] {
        assert_eq!(x, y, "{what} unchanged by cover");
    }
    assert_eq!(plain.hop_shares, cover.hop_shares);
    assert_eq!(plain.worst_shares, cover.worst_shares);
    assert_eq!((plain.copies_delivered, plain.copies_undelivered), (Some(3), Some(3)));
    assert_eq!((cover.copies_delivered, cover.copies_undelivered), (Some(3), Some(3)));
    assert_eq!(cover.messages_est, plain.messages_est + 1, "the eavesdropper counts the cover as mail");
    assert_eq!(cover.sessions_true, plain.sessions_true + 1, "the cover session crossed the line");
    let c = &cover.costs;
    assert_eq!((c.cover_messages, c.cover_bytes, c.cover_sessions, c.cover_wire_bytes), (1, 1000, 1, 2500));
    assert_eq!(c.wire_bytes, plain.costs.wire_bytes + 2500);
    assert_eq!(c.cover_wire_share, Some(2500.0 / c.wire_bytes as f64));
    // Latencies 10, 2 and 0.5 s: nearest-rank median 2 s, 99th percentile and maximum 10 s.
    for run in [&plain, &cover] {
        assert_eq!(run.costs.delivery_latency_p50, Some(2.0));
        assert_eq!(run.costs.delivery_latency_p99, Some(10.0));
        assert_eq!(run.costs.delivery_latency_max, Some(10.0));
    }
    // The summary table carries the costs and reads back.
    let back = read_run_metrics(&b).expect("summary reads back");
    assert_eq!(back.costs, cover.costs);
}
