//! End to end: hand-made records -> ingest -> analyze -> render, for runs and sweeps, and the
//! rendered page in headless Chromium.

use std::path::{Path, PathBuf};
use std::process::Command;

use records::{HopMessage, SessionRecord, TapSession, TapTransaction, TruthMessage, write_jsonl};

use crate::{Provenance, render, render_sweep};

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
    let dir = std::env::temp_dir().join(format!("smtplab-reports-{name}-{}", std::process::id()));
    // A leftover from an earlier run with the same process id would hide a missing file.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("truth")).expect("create temp run dir");
    std::fs::create_dir_all(dir.join("tap")).expect("create temp run dir");
    TempRunDir(dir)
}

/// When the hand-made run starts, on the run's clock (UTC epoch seconds), as a real run's times are.
const RUN_T0: f64 = 1_764_900_000.0;

/// Three links: alpha->beta in plaintext (every message recovered), alpha->gamma under
/// STARTTLS (seen, nothing recovered), beta->gamma not captured at all.
///
/// Times as a real run writes them: message k (0..9, in the order above) is scheduled k s
/// after the start of traffic and submitted at RUN_T0 + k; its hop session starts at
/// RUN_T0 + k + 0.5 and lasts 20 ms, and the tap dates the sessions it saw to RUN_T0 + k + 0.5.
pub(crate) fn write_run(dir: &Path) {
    let links = [
        ("alpha", "beta", "127.0.1.1", "127.0.1.2", false, 4u16),
        ("alpha", "gamma", "127.0.1.1", "127.0.1.3", true, 3),
        ("beta", "gamma", "127.0.1.2", "127.0.1.3", false, 2),
    ];
    let mut messages = Vec::new();
    let mut sessions = Vec::new();
    let mut tap_sessions = Vec::new();
    let mut tap_transactions = Vec::new();
    let mut submissions = Vec::new();
    let mut port = 40000u16;
    for (from, to, client, server, tls, count) in links {
        for k in 0..count {
            port += 1;
            let n = messages.len() as f64;
            submissions.push(records::Submission { seq: messages.len() as u64, submitted_at: RUN_T0 + n });
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
                scheduled_at: n,
                requiretls: false,
            });
            sessions.push(SessionRecord {
                direction: "outbound".to_string(),
                system: from.to_string(),
                started_at: RUN_T0 + n + 0.5,
                ended_at: RUN_T0 + n + 0.52,
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
                ts: RUN_T0 + n + 0.5,
                duration: 0.02,
                orig_h: client.to_string(),
                orig_p: port,
                resp_h: server.to_string(),
                resp_p: 25,
                starttls_used: tls,
                orig_bytes: bytes + 600,
                resp_bytes: 400,
                // What the tap reads: the one transaction of a plaintext session; the client's TLS
                // application data of a STARTTLS one (the message and 315 bytes of commands).
                transactions: u64::from(!tls),
                tls_app_bytes_orig: if tls { bytes + OVERHEAD } else { 0 },
                ..Default::default()
            });
            if !tls {
                tap_transactions.push(TapTransaction {
                    orig_h: client.to_string(),
                    orig_p: port,
                    resp_h: server.to_string(),
                    resp_p: 25,
                    mailfrom: Some(format!("u@{from}.example")),
                    message_bytes: Some(bytes),
                    sha256: Some(sha),
                    ..Default::default()
                });
            }
        }
    }
    write_jsonl(&dir.join("truth/messages.jsonl"), &messages).expect("write truth messages");
    write_jsonl(&dir.join("truth/submissions.jsonl"), &submissions).expect("write submissions");
    write_jsonl(&dir.join("truth/sessions.jsonl"), &sessions).expect("write truth sessions");
    // Who owns which address: how the eavesdropper attributes the sessions it sees to systems.
    let systems = serde_json::json!([
        {"name": "alpha", "domain": "alpha.example", "address": "127.0.1.1", "starttls": true},
        {"name": "beta", "domain": "beta.example", "address": "127.0.1.2", "starttls": false},
        {"name": "gamma", "domain": "gamma.example", "address": "127.0.1.3", "starttls": true},
    ]);
    std::fs::write(dir.join("truth/systems.json"), systems.to_string()).expect("write systems");
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

/// The charts of a run report.
const RUN_CHARTS: [&str; 6] = ["exposure", "volume", "tls_cost", "timeline", "pairs", "bytes"];

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
    assert_eq!(html.matches("<svg").count(), RUN_CHARTS.len(), "every chart inlined");
    assert!(html.contains("passive eavesdropper"));
    assert!(html.contains("smtplab run --scenario three-systems --seed 42"));
    assert!(html.contains(&"ab".repeat(32)));
    assert!(html.contains("polars 0.46; plotters 0.3"), "versions in the provenance block");
    assert!(html.contains("One seed: no confidence interval"));
    assert!(!html.contains("Active attackers"), "no attackers, no attack section");
    assert!(!html.contains("Linkage across hops"), "no access taps, no linkage section");
    // Self-contained: nothing is fetched.
    for external in ["src=\"http", "href=\"http", "<link", "<script", "@import"] {
        assert!(!html.contains(external), "index.html refers to an outside resource: {external}");
    }

    let md = std::fs::read_to_string(dir.join("report/summary.md")).expect("summary.md written");
    assert!(md.contains("| alpha → beta | no | 4 | 4 (100.0%) |"), "{md}");
    assert!(md.contains("Hops whose full content the eavesdropper recovered: 4 (44.4%)"), "{md}");
    assert!(md.contains("![exposure classes per link](exposure.png)"), "{md}");

    for chart in RUN_CHARTS {
        let svg = std::fs::read_to_string(dir.join(format!("report/{chart}.svg"))).expect("svg written");
        assert!(svg.contains("<svg"), "{chart}.svg is an SVG");
        let png = std::fs::metadata(dir.join(format!("report/{chart}.png"))).expect("png written");
        assert!(png.len() > 10_000, "{chart}.png is only {} bytes", png.len());
    }
    let pairs = std::fs::read_to_string(dir.join("report/pairs.svg")).expect("svg");
    assert!(pairs.contains("alpha→beta"), "pairs.svg lacks pair labels");
}

/// A run whose scenario placed a strip attacker on beta's domain: the report shows the defense ×
/// attack matrix; a run without attackers has no such section (checked in the test above).
#[test]
fn report_shows_the_attack_matrix_of_a_run_with_attackers() {
    let dir = temp_run_dir("attack");
    write_run(&dir);
    let systems = serde_json::json!([
        {"name": "alpha", "domain": "alpha.example", "starttls": true, "outbound_tls": "may"},
        {"name": "beta", "domain": "beta.example", "starttls": true},
        {"name": "gamma", "domain": "gamma.example", "starttls": true},
    ]);
    std::fs::write(dir.join("truth/systems.json"), systems.to_string()).expect("systems");
    let manifest = serde_json::json!({"status": "complete", "scenario": {"attacks": [{"attack": "strip", "domains": ["beta.example"]}]}});
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).expect("manifest");
    // beta delivered alpha's four messages; the attacker read them.
    let ids: Vec<String> = (0..4).map(|k| format!("alpha-beta-{k}@alpha.example")).collect();
    let mut sessions: Vec<SessionRecord> = records::read_jsonl(&dir.join("truth/sessions.jsonl")).expect("sessions");
    let hop = |id: &String| HopMessage {
        message_id: id.clone(),
        rcpt_to: vec!["u@beta.example".into()],
        ..Default::default()
    };
    sessions.push(SessionRecord {
        direction: "local".into(),
        system: "beta".into(),
        outcome: "delivered".into(),
        messages: ids.iter().map(hop).collect(),
        ..Default::default()
    });
    write_jsonl(&dir.join("truth/sessions.jsonl"), &sessions).expect("sessions");
    let read = records::AttackerSession {
        attacker: "attacker1".into(),
        attacked: true,
        messages: ids
            .iter()
            .map(|id| records::AttackerMessage {
                message_id: Some(id.clone()),
                rcpt_to: vec!["u@beta.example".into()],
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    write_jsonl(&dir.join("truth/attacker.jsonl"), &[read]).expect("attacker");
    analysis::ingest(&dir).expect("ingest");
    analysis::analyze(&dir).expect("analyze");
    render(&dir, &provenance()).expect("render");
    let html = std::fs::read_to_string(dir.join("report/index.html")).expect("index.html");
    let row = "<td>may</td><td>strip</td><td class=\"num\">4</td><td class=\"num\">100.0%</td>\
               <td class=\"num\">100.0%</td><td class=\"num\">0.0%</td><td class=\"num\">0.0%</td>\
               <td class=\"num\">100.0%</td><td class=\"num\">0.0%</td><td class=\"num\">0.0%</td>";
    assert!(html.contains("<h2>Active attackers</h2>") && html.contains(row), "{html}");
    // No sender wrote a TLS-RPT report in this hand-made run: nothing was shown to the victim.
    let md = std::fs::read_to_string(dir.join("report/summary.md")).expect("summary.md");
    assert!(md.contains("| may | strip | 4 | 100.0% | 100.0% | 0.0% | 0.0% | 100.0% | 0.0% | 0.0% |"), "{md}");
    // The heatmaps are drawn, linked from the Markdown and inlined in the page.
    assert!(md.contains("(attacks.png)"), "{md}");
    let png = std::fs::read(dir.join("report/attacks.png")).expect("attacks.png");
    assert!(png.len() > 10_000, "attacks.png is only {} bytes", png.len());
    let svg = std::fs::read_to_string(dir.join("report/attacks.svg")).expect("attacks.svg");
    // The panel title is in the SVG only (the table's column says "Read by attacker").
    assert!(svg.contains("Read by the attacker") && html.contains("Read by the attacker"), "heatmap not in the page");
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

/// A synthetic run of `systems` (name, STARTTLS) with a uniform traffic matrix: `per_pair`
/// messages on every ordered pair, one session each. The tap sees every session except every
/// `miss_every`-th (0: none missed); it reads plaintext sessions whole.
struct Synthetic<'a> {
    systems: &'a [(&'a str, bool)],
    per_pair: usize,
    seed: u64,
    miss_every: usize,
}

impl Synthetic<'_> {
    fn write(&self, dir: &Path, point: Option<(&str, serde_json::Value)>) {
        std::fs::create_dir_all(dir.join("truth")).expect("truth dir");
        std::fs::create_dir_all(dir.join("tap")).expect("tap dir");
        let systems: Vec<serde_json::Value> = self
            .systems
            .iter()
            .enumerate()
            .map(|(i, (name, tls))| {
                serde_json::json!({"name": name, "domain": format!("{name}.example"), "mx": format!("mx.{name}.example"),
                    "address": format!("127.0.{}.1", i + 1), "starttls": tls,
                    "inbound_tls": if *tls { "may" } else { "none" }, "outbound_tls": if *tls { "may" } else { "none" }})
            })
            .collect();
        std::fs::write(dir.join("truth/systems.json"), serde_json::Value::Array(systems).to_string()).expect("systems");
        let (mut messages, mut sessions, mut tap, mut txs) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut submissions = Vec::new();
        let mut n = 0usize;
        for (si, (s, s_tls)) in self.systems.iter().enumerate() {
            for (ri, (r, r_tls)) in self.systems.iter().enumerate() {
                if si == ri {
                    continue;
                }
                for _ in 0..self.per_pair {
                    let tls = *s_tls && *r_tls;
                    let id = format!("x{}.{n}@{s}.example", self.seed);
                    let sha = format!("{:064x}", n as u64 * 1_000 + self.seed);
                    let bytes = 600 + ((n as u64 * 7919 + self.seed * 104_729) % 60_000);
                    let t = 1_800_000_000.0 + n as f64 * 0.01;
                    let (from, to) = (format!("u{}@{s}.example", n % 3), format!("u{}@{r}.example", n % 4));
                    messages.push(TruthMessage {
                        seq: n as u64,
                        message_id: id.clone(),
                        sender: from.clone(),
                        sender_system: s.to_string(),
                        recipients: vec![to.clone()],
                        recipient_systems: vec![r.to_string()],
                        subject: format!("s{n}"),
                        bytes: bytes - 150,
                        sha256: format!("{n:064x}"),
                        scheduled_at: t - 1_800_000_000.0,
                        requiretls: false,
                    });
                    submissions.push(records::Submission { seq: n as u64, submitted_at: t });
                    let port = 30_000 + n as u16;
                    sessions.push(SessionRecord {
                        direction: "outbound".to_string(),
                        system: s.to_string(),
                        peer_system: Some(r.to_string()),
                        started_at: t + 0.002,
                        ended_at: t + 0.02,
                        local_addr: format!("127.0.{}.1:{port}", si + 1),
                        peer_addr: format!("127.0.{}.1:2525", ri + 1),
                        starttls_used: tls,
                        messages: vec![HopMessage {
                            message_id: id.clone(),
                            mail_from: from.clone(),
                            rcpt_to: vec![to.clone()],
                            bytes,
                            sha256: sha.clone(),
                            reply: 250,
                            ..Default::default()
                        }],
                        outcome: "delivered".to_string(),
                        ..Default::default()
                    });
                    let missed = self.miss_every > 0 && n % self.miss_every == self.miss_every - 1;
                    if !missed {
                        let uid = format!("C{}x{n}", self.seed);
                        let (orig_h, resp_h) = (format!("127.0.{}.1", si + 1), format!("127.0.{}.1", ri + 1));
                        tap.push(TapSession {
                            ts: t + 0.0021,
                            uid: uid.clone(),
                            orig_h: orig_h.clone(),
                            orig_p: port,
                            resp_h: resp_h.clone(),
                            resp_p: 2525,
                            duration: if tls { 0.012 + bytes as f64 * 1e-7 } else { 0.006 + bytes as f64 * 5e-8 },
                            starttls_used: tls,
                            orig_bytes: bytes + if tls { 1_650 } else { 380 },
                            resp_bytes: if tls { 2_400 } else { 260 },
                            tls_app_bytes_orig: if tls { bytes + crate::tests::OVERHEAD } else { 0 },
                            transactions: u64::from(!tls),
                            ..Default::default()
                        });
                        if !tls {
                            txs.push(TapTransaction {
                                ts: t + 0.003,
                                uid,
                                orig_h,
                                orig_p: port,
                                resp_h,
                                resp_p: 2525,
                                mailfrom: Some(from),
                                rcptto: vec![to.clone()],
                                to: vec![to],
                                subject: Some(format!("s{n}")),
                                msg_id: Some(format!("<{id}>")),
                                message_bytes: Some(bytes),
                                sha256: Some(sha),
                                ..Default::default()
                            });
                        }
                    }
                    n += 1;
                }
            }
        }
        write_jsonl(&dir.join("truth/messages.jsonl"), &messages).expect("write");
        write_jsonl(&dir.join("truth/submissions.jsonl"), &submissions).expect("write");
        write_jsonl(&dir.join("truth/sessions.jsonl"), &sessions).expect("write");
        write_jsonl(&dir.join("tap/sessions.jsonl"), &tap).expect("write");
        write_jsonl(&dir.join("tap/transactions.jsonl"), &txs).expect("write");
        let manifest = serde_json::json!({
            "scenario": {"scenario": {"name": "uniform", "seed": self.seed}},
            "seed": self.seed,
            "status": "complete",
            "files": {"capture.pcap": format!("{:064x}", self.seed)},
        });
        std::fs::write(dir.join("manifest.json"), manifest.to_string()).expect("manifest");
        if let Some((label, params)) = point {
            let p = serde_json::json!({"sweep": "adoption", "point": label, "params": params, "seed": self.seed});
            std::fs::write(dir.join("point.json"), p.to_string()).expect("point.json");
        }
    }
}

/// The client's TLS application data around one message beyond the message itself, as ANALYSIS.md
/// states it (measured on smtplab's relay): written out here, not read from the analysis, so the
/// fixtures check the estimator rather than its own constant.
const OVERHEAD: u64 = 315;

const FOUR: [(&str, bool); 4] = [("a", true), ("b", true), ("c", false), ("d", false)];
const FOUR_PLAIN: [(&str, bool); 4] = [("a", false), ("b", false), ("c", false), ("d", false)];

/// The known answer: 2 of 4 systems with STARTTLS and a uniform traffic matrix. TLS
/// runs on 2 of the 12 ordered pairs, so a perfect tap recovers 10/12 of the hop messages; the
/// plaintext control recovers all of them.
#[test]
fn two_of_four_with_starttls_uniform_matrix_matches_the_analytic_answer() {
    let dir = temp_run_dir("known-answer");
    Synthetic { systems: &FOUR, per_pair: 5, seed: 7, miss_every: 0 }.write(&dir, None);
    Synthetic { systems: &FOUR_PLAIN, per_pair: 5, seed: 7, miss_every: 0 }.write(&dir.join("control"), None);
    analysis::ingest(&dir).expect("ingest");
    let summary = analysis::analyze(&dir).expect("analyze");
    let run = &summary.run;
    let expected = 10.0 / 12.0;
    assert_eq!(run.hop_messages, 60);
    assert!(run.analytic.content_share.is_some_and(|a| (a - expected).abs() < 1e-12), "{run:?}");
    assert!(run.hop_shares.content.is_some_and(|m| (m - expected).abs() < 1e-12), "{run:?}");
    assert!(run.hop_shares.volume.is_some_and(|m| (m - 2.0 / 12.0).abs() < 1e-12), "{run:?}");
    assert_eq!(run.control_shares.content, Some(1.0));
    assert!(run.content_share_diff.is_some_and(|d| (d - (expected - 1.0)).abs() < 1e-12));
    assert_eq!((run.messages_est, run.bytes_est), (60, run.bytes_true), "estimates exact on a perfect tap");
    // Linkable: every plaintext pair of users; none on a<->b.
    assert_eq!(run.linkable_share.map(|s| (s * 1e6).round() / 1e6), Some(((10.0 / 12.0) * 1e6_f64).round() / 1e6));

    let index = render(&dir, &provenance()).expect("render");
    let html = std::fs::read_to_string(index).expect("html");
    assert!(html.contains("Plaintext control (same scenario and seed, STARTTLS off): content 100.0%; with STARTTLS 83.3%; difference -16.7 pts."), "{html}");
    assert!(html.contains("<td>a → b</td><td>tls</td><td class=\"num\">0.0%</td><td class=\"num\">0.0%</td><td class=\"num\">100.0%</td><td class=\"num\">-100.0 pts</td>"), "{html}");
}

/// A sweep of STARTTLS adoption among 4 systems: 0, 1, 2, 3 or 4 of them, 3 seeds each; the
/// tap misses a different share of sessions per seed, so the intervals have width.
pub(crate) fn write_adoption_sweep(dir: &Path) {
    let levels = [0usize, 1, 2, 3, 4];
    let seeds = [1u64, 2, 3];
    let points: Vec<serde_json::Value> = levels
        .iter()
        .map(|k| serde_json::json!({"point": format!("tls{k}"), "params": {"tls.adoption": *k as f64 / 4.0}}))
        .collect();
    let spec = serde_json::json!({"name": "adoption", "keys": ["tls.adoption"], "seeds": seeds, "points": points});
    std::fs::write(dir.join("sweep.json"), spec.to_string()).expect("sweep.json");
    let names = ["a", "b", "c", "d"];
    for k in levels {
        let systems: Vec<(&str, bool)> = names.iter().enumerate().map(|(i, n)| (*n, i < k)).collect();
        let plain: Vec<(&str, bool)> = names.iter().map(|n| (*n, false)).collect();
        for seed in seeds {
            let run = dir.join(format!("tls{k}-s{seed}"));
            let params = serde_json::json!({"tls.adoption": k as f64 / 4.0});
            let miss_every = 6 + 3 * seed as usize;
            Synthetic { systems: &systems, per_pair: 3, seed, miss_every }
                .write(&run, Some((&format!("tls{k}"), params)));
            Synthetic { systems: &plain, per_pair: 3, seed, miss_every }.write(&run.join("control"), None);
        }
    }
}

#[test]
fn sweep_report_has_adoption_curve_points_and_runs() {
    let dir = temp_run_dir("sweep");
    write_adoption_sweep(&dir);
    let sweep = analysis::analyze_sweep(&dir).expect("analyze sweep");
    assert_eq!(sweep.points.len(), 5);
    assert_eq!(sweep.x_key.as_deref(), Some("tls.adoption"));
    // Analytic: 1 - k(k-1)/12 for k of 4 systems with STARTTLS.
    for (p, k) in sweep.points.iter().zip(0..) {
        let analytic = p.metric("analytic_content_share").and_then(|c| c.mean).expect("analytic");
        assert!((analytic - (1.0 - f64::from(k * (k - 1).max(0)) / 12.0)).abs() < 1e-12, "{}: {analytic}", p.point);
        let ci = p.metric("share_content").expect("share");
        assert_eq!(ci.n, 3);
        assert!(ci.low.is_some() && ci.high.is_some());
    }
    let index = render_sweep(&dir, &provenance()).expect("render sweep");
    assert_eq!(index, dir.join("report/index.html"));
    let html = std::fs::read_to_string(&index).expect("html");
    assert_eq!(html.matches("<svg").count(), 3, "adoption, exposure and TLS cost inlined");
    assert!(html.contains("Adoption curve"));
    assert!(html.contains("<td>tls2</td><td>0.5</td><td class=\"num\">3</td>"), "{html}");
    assert!(html.contains(&format!("{:064x}", 2)), "capture hashes of the runs");
    for chart in ["adoption", "exposure", "tls_cost"] {
        let png = std::fs::metadata(dir.join(format!("report/{chart}.png"))).expect("png written");
        assert!(png.len() > 10_000, "{chart}.png is only {} bytes", png.len());
    }
    let md = std::fs::read_to_string(dir.join("report/summary.md")).expect("summary.md");
    assert!(md.contains("![adoption curve](adoption.png)"), "{md}");
    if let Some(keep) = std::env::var_os("SMTPLAB_REPORT_SAMPLES") {
        copy_dir(&dir.join("report"), &PathBuf::from(keep).join("sweep"));
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("sample dir");
    for e in std::fs::read_dir(from).expect("read").flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}

const CHROMIUM: &str = "/usr/bin/chromium";

/// Runs headless Chromium on `page` with `extra` arguments; returns (stdout, stderr).
fn chromium(profile: &Path, page: &Path, extra: &[String]) -> (String, String) {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} not found: the report test needs Debian's chromium package, which scripts/test installs \
         (apt-get install chromium)"
    );
    let url = format!("file://{}", page.display());
    let out = Command::new("timeout")
        .arg("120")
        .arg(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(&url)
        .output()
        .expect("run chromium");
    assert!(out.status.success(), "chromium failed on {url}: {}", String::from_utf8_lossy(&out.stderr));
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Screenshot of `page` at 1280x2000; returns the PNG's size in bytes.
fn screenshot(profile: &Path, page: &Path, png: &Path) -> u64 {
    let args = [format!("--screenshot={}", png.display()), "--window-size=1280,2000".to_string()];
    let (_, stderr) = chromium(profile, page, &args);
    console_clean(&stderr, page);
    std::fs::metadata(png).unwrap_or_else(|e| panic!("no screenshot of {}: {e}\n{stderr}", page.display())).len()
}

/// No console message, script error or failed resource load in Chromium's log.
fn console_clean(stderr: &str, page: &Path) {
    for line in stderr.lines() {
        let bad = line.contains(":CONSOLE") || line.contains("Uncaught") || line.contains("Failed to load resource");
        assert!(!bad, "{}: browser console reported: {line}", page.display());
    }
}

/// The run and sweep reports open in a real browser: every inline chart is in the DOM, the
/// console is clean, and the screenshot is not blank (a blank page of the same size compresses
/// to a few kilobytes; a report with charts and tables is far larger).
#[test]
fn reports_render_in_headless_chromium() {
    let dir = temp_run_dir("chromium");
    let run = dir.join("run");
    Synthetic { systems: &FOUR, per_pair: 4, seed: 3, miss_every: 7 }.write(&run, None);
    Synthetic { systems: &FOUR_PLAIN, per_pair: 4, seed: 3, miss_every: 7 }.write(&run.join("control"), None);
    analysis::ingest(&run).expect("ingest");
    analysis::analyze(&run).expect("analyze");
    let run_index = render(&run, &provenance()).expect("render");
    let sweep = dir.join("sweep");
    std::fs::create_dir_all(&sweep).expect("sweep dir");
    write_adoption_sweep(&sweep);
    analysis::analyze_sweep(&sweep).expect("analyze sweep");
    let sweep_index = render_sweep(&sweep, &provenance()).expect("render sweep");

    let blank = dir.join("blank.html");
    std::fs::write(&blank, "<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body></body></html>")
        .expect("blank page");
    let profile = dir.join("profile");
    let blank_size = screenshot(&profile, &blank, &dir.join("blank.png"));

    for (index, charts) in [(&run_index, RUN_CHARTS.len()), (&sweep_index, 3)] {
        let (dom, stderr) = chromium(&profile, index, &["--dump-dom".to_string()]);
        console_clean(&stderr, index);
        assert_eq!(dom.matches("<svg").count(), charts, "{}: charts in the rendered DOM", index.display());
        assert!(dom.contains("<table>") && dom.contains("Provenance"), "{}: tables and provenance", index.display());
        assert!(!dom.contains("<img"), "{}: no external images", index.display());
        let png = index.with_file_name("screenshot.png");
        let size = screenshot(&profile, index, &png);
        assert!(
            size > 8 * blank_size.max(1) && size > 100_000,
            "{}: screenshot of {size} bytes looks blank (an empty page gives {blank_size})",
            index.display()
        );
    }
    if let Some(keep) = std::env::var_os("SMTPLAB_REPORT_SAMPLES") {
        copy_dir(&run.join("report"), &PathBuf::from(&keep).join("run"));
        copy_dir(&sweep.join("report"), &PathBuf::from(&keep).join("sweep"));
    }
}
