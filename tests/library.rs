//! Every scenario of the library (`scenarios/*.toml`), shrunk to a few dozen messages, run end to
//! end by the `smtplab` binary on the loopback backend (one also on netns), and its facts checked
//! against the run's ground truth: a plaintext line that is tapped gives up every message's
//! content, a STARTTLS line none, an untapped line nothing at all, as `truth/tap_links.json` says.
//!
//! Shrinking edits the parsed file (fewer messages and systems, a sweep's first and last value
//! and first seed), so the library itself is what runs; each run gets ports and loopback
//! addresses no other test uses (127.120+k.N.1, ports 23525 + 10·k). Needs root for the live
//! capture (CI runs as root).

mod common;

use common::{is_root, require_root, split_csv};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use scenarios::Scenario;

const MESSAGES: i64 = 36;
const MAX_SYSTEMS: i64 = 10;
const MAX_USERS: i64 = 60;

fn library(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios").join(file)
}

/// The library file as a TOML table, made small: a few dozen messages, at most ten generated
/// systems, a sweep reduced to its first and last value of every key and its first seed, and a
/// short drain for scenarios where undelivered mail is the expected outcome.
fn shrunk(file: &str, backend: &str, port: u16) -> toml::Table {
    let text = std::fs::read_to_string(library(file)).expect("library file");
    let mut t: toml::Table = toml::from_str(&text).expect("library file is TOML");
    let section = |t: &mut toml::Table, name: &str| -> toml::Table {
        t.get(name).and_then(|v| v.as_table()).cloned().unwrap_or_default()
    };
    let mut traffic = section(&mut t, "traffic");
    let messages = traffic.get("messages").and_then(|v| v.as_integer()).unwrap_or(300);
    traffic.insert("messages".into(), messages.min(MESSAGES).into());
    t.insert("traffic".into(), traffic.into());
    if let Some(toml::Value::Table(p)) = t.get_mut("population") {
        for (key, max) in [("systems", MAX_SYSTEMS), ("users", MAX_USERS)] {
            if let Some(n) = p.get(key).and_then(|v| v.as_integer()) {
                p.insert(key.into(), n.min(max).into());
            }
        }
    }
    let mut meta = section(&mut t, "scenario");
    if meta.get("allow_undelivered").and_then(|v| v.as_bool()) == Some(true) {
        // The deferred mail waits out the drain: keep that wait short.
        meta.insert("drain_timeout".into(), 8.into());
    }
    t.insert("scenario".into(), meta.into());
    let mut network = section(&mut t, "network");
    network.insert("backend".into(), backend.into());
    network.insert("smtp_port".into(), i64::from(port).into());
    network.insert("submission_port".into(), i64::from(port + 1).into());
    t.insert("network".into(), network.into());
    if let Some(toml::Value::Table(sweep)) = t.get_mut("sweep") {
        for (key, values) in sweep.iter_mut() {
            let Some(v) = values.as_array_mut() else { continue };
            if key == "seeds" {
                v.truncate(1);
            } else if v.len() > 2 {
                let last = v.pop().expect("non-empty");
                v.truncate(1);
                v.push(last);
            }
        }
    }
    t
}

/// The runs of a library file: one scenario, or one per point of its (shrunk) sweep.
fn runs_of(file: &str, t: &toml::Table) -> Vec<Scenario> {
    let text = toml::to_string(t).expect("serialise");
    if t.contains_key("sweep") {
        scenarios::sweep::expand(&text, file)
            .unwrap_or_else(|e| panic!("{e}"))
            .points
            .into_iter()
            .map(|p| p.scenario)
            .collect()
    } else {
        vec![Scenario::parse(&text, file).unwrap_or_else(|e| panic!("{e}"))]
    }
}

/// The runs of one test; removed when the test passes, kept for a look when it fails.
struct Runs {
    dir: PathBuf,
    runs: Vec<PathBuf>,
}

impl Drop for Runs {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Runs `file` shrunk; every run's facts are checked. `k` picks the ports and addresses.
fn run_library_file(file: &str, k: u8) -> Runs {
    assert!(is_root(), "the live tap needs root (CI runs as root)");
    let dir = scratch(file.trim_end_matches(".toml"));
    let port = 23525 + 10 * u16::from(k);
    let mut t = shrunk(file, "loopback", port);
    // Users with tapped access lines submit from addresses of their own: this file's block.
    if let Some(toml::Value::Table(tap)) = t.get_mut("tap")
        && tap.contains_key("access_share")
    {
        tap.insert("access_addresses".into(), format!("127.{}.0.100", 120 + u16::from(k)).into());
    }
    let mut done = Vec::new();
    for (n, mut s) in runs_of(file, &t).into_iter().enumerate() {
        for (i, sys) in s.systems.iter_mut().enumerate() {
            sys.address = Some(Ipv4Addr::new(127, 120 + k, u8::try_from(i + 1).expect("few systems"), 1));
        }
        done.push(run_and_check(&dir, &format!("{n}"), &s).0);
    }
    Runs { dir, runs: done }
}

/// Writes `s` as a scenario file, runs it with `smtplab run` and checks the common facts.
/// Returns the run directory and the runner's process id (which names its namespaces).
fn run_and_check(dir: &Path, tag: &str, s: &Scenario) -> (PathBuf, u32) {
    let (run, pid) = run_only(dir, tag, s);
    check_facts(&run, s);
    if let Some(control) = s.scenario.compare_plaintext.then(|| run.join("control")) {
        check_facts(&control, &s.plaintext_control());
    }
    (run, pid)
}

/// Writes `s` as a scenario file and runs it with `smtplab run` (run, analysis, report), which
/// must succeed and leave a complete run. Returns the run directory and the runner's process id.
fn run_only(dir: &Path, tag: &str, s: &Scenario) -> (PathBuf, u32) {
    let path = dir.join(format!("{}-{tag}.toml", s.scenario.name));
    std::fs::write(&path, toml::to_string_pretty(s).expect("serialise")).expect("write");
    let out = dir.join(format!("runs-{tag}"));
    let child = Command::new(env!("CARGO_BIN_EXE_smtplab"))
        .args(["run", &path.display().to_string(), "--out", &out.display().to_string()])
        .env("CI", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start smtplab");
    let pid = child.id();
    let r = child.wait_with_output().expect("run smtplab");
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(r.status.success(), "{}: smtplab run failed:\n{stderr}", path.display());
    let entries: Vec<PathBuf> = std::fs::read_dir(&out).expect("out").flatten().map(|e| e.path()).collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let run = entries[0].clone();
    assert_eq!(json(&run.join("manifest.json"))["status"], "complete", "{}", run.display());
    (run, pid)
}

/// A CSV table as rows of named fields (the analysis writes RFC 4180 quoting for lists).
fn table(path: &Path) -> Vec<HashMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut rows = text.lines().map(split_csv);
    let header = rows.next().expect("header");
    rows.map(|r| header.iter().cloned().zip(r).collect()).collect()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .expect("json")
}

fn num(row: &HashMap<String, String>, col: &str) -> f64 {
    row.get(col).unwrap_or_else(|| panic!("column {col}")).parse().unwrap_or_else(|_| panic!("{col}: {row:?}"))
}

/// What the policies of the two ends make of a line, by the rule ANALYSIS.md states, computed
/// here from `truth/systems.json` without the analysis crate.
fn expected_mode(from: &serde_json::Value, to: &serde_json::Value) -> &'static str {
    let offers = to["starttls"] == true && to["inbound_tls"] != "none";
    if from["outbound_tls"] != "none" && offers {
        "tls"
    } else if from["outbound_tls"] == "encrypt" || from["outbound_tls"] == "verify" {
        "deferred"
    } else if to["inbound_tls"] == "encrypt" {
        "refused"
    } else {
        "plaintext"
    }
}

/// The facts every run must show, whatever its scenario.
fn check_facts(run: &Path, s: &Scenario) {
    let name = run.display().to_string();
    let systems: HashMap<String, serde_json::Value> = json(&run.join("truth/systems.json"))
        .as_array()
        .expect("systems")
        .iter()
        .map(|s| (s["name"].as_str().expect("name").to_string(), s.clone()))
        .collect();
    assert_eq!(systems.len(), s.systems.len(), "{name}");

    // The placement: every unordered pair listed once, tapped as the scenario places the tap.
    let links = json(&run.join("truth/tap_links.json"));
    let tapped: HashSet<(String, String)> = links
        .as_array()
        .expect("links")
        .iter()
        .filter(|l| l["tapped"] == true)
        .flat_map(|l| {
            let (a, b) = (l["a"].as_str().expect("a").to_string(), l["b"].as_str().expect("b").to_string());
            [(a.clone(), b.clone()), (b, a)]
        })
        .collect();
    let n = s.systems.len();
    assert_eq!(links.as_array().map(Vec::len), Some(n * (n - 1) / 2), "{name}: every line listed");
    let placed = match s.tap.links.as_str() {
        "fraction" => (s.tap.fraction * (n * (n - 1) / 2) as f64).round() as usize,
        "pairs" => s.tap.pairs.len(),
        _ => n * (n - 1) / 2,
    };
    assert_eq!(tapped.len() / 2, placed, "{name}: lines tapped");

    // Ground truth: one hop message per message and recipient system other than the sender's.
    let mut crossing: BTreeMap<(String, String), u64> = BTreeMap::new();
    let truth = std::fs::read_to_string(run.join("truth/messages.jsonl")).expect("truth");
    for line in truth.lines() {
        let m: serde_json::Value = serde_json::from_str(line).expect("truth line");
        let from = m["sender_system"].as_str().expect("sender").to_string();
        for to in m["recipient_systems"].as_array().expect("recipient systems") {
            let to = to.as_str().expect("system").to_string();
            if to != from {
                *crossing.entry((from.clone(), to)).or_default() += 1;
            }
        }
    }
    assert_eq!(truth.lines().count(), s.traffic.message_count(), "{name}: every message is truth");

    let pairs = table(&run.join("analysis/pairs.csv"));
    let mut carried = 0;
    for row in &pairs {
        let (from, to) = (row["sender_system"].clone(), row["receiver_system"].clone());
        let mode = expected_mode(&systems[&from], &systems[&to]);
        assert_eq!(row["link_mode"], mode, "{name}: {row:?}");
        let sent = crossing.get(&(from.clone(), to.clone())).copied().unwrap_or(0);
        let (messages, recovered) = (num(row, "messages"), num(row, "content_recovered"));
        match mode {
            "deferred" | "refused" => assert_eq!(messages, 0.0, "{name}: withheld mail crossed: {row:?}"),
            _ => assert_eq!(messages, sent as f64, "{name}: hop messages against the truth: {row:?}"),
        }
        carried += messages as u64;
        if row["starttls"] == "true" {
            assert_eq!(recovered, 0.0, "{name}: content of a line that used STARTTLS: {row:?}");
        }
        if tapped.contains(&(from.clone(), to.clone())) {
            assert_eq!(row["sessions_seen"], row["sessions_true"], "{name}: a tapped line sees every session {row:?}");
            assert!(num(row, "bytes_seen") > 0.0, "{name}: {row:?}");
            match mode {
                "plaintext" => {
                    assert_eq!(recovered, messages, "{name}: tapped plaintext line, all content: {row:?}");
                    assert_eq!(row["tls_sessions_seen"], "0", "{name}: {row:?}");
                }
                "tls" => {
                    assert_eq!(recovered, 0.0, "{name}: content on a STARTTLS line: {row:?}");
                    assert_eq!(row["tls_sessions_seen"], row["sessions_seen"], "{name}: {row:?}");
                    assert_eq!(row["starttls"], "true", "{name}: {row:?}");
                }
                _ => assert_eq!(recovered, 0.0, "{name}: {row:?}"),
            }
        } else {
            assert_eq!(row["sessions_seen"], "0", "{name}: untapped line seen: {row:?}");
            assert_eq!(num(row, "bytes_seen"), 0.0, "{name}: {row:?}");
            assert_eq!(recovered, 0.0, "{name}: {row:?}");
            assert_eq!(num(row, "exposure_unobserved"), messages, "{name}: {row:?}");
        }
    }
    // Every line that carried mail in the truth has its row (withheld lines carry none).
    let listed: HashSet<(String, String)> =
        pairs.iter().map(|r| (r["sender_system"].clone(), r["receiver_system"].clone())).collect();
    for (pair, _) in crossing.iter().filter(|(p, _)| expected_mode(&systems[&p.0], &systems[&p.1]) != "deferred") {
        assert!(listed.contains(pair), "{name}: no row for {pair:?}");
    }

    let summary = &table(&run.join("analysis/summary.csv"))[0];
    assert_eq!(num(summary, "hop_messages"), carried as f64, "{name}");
    if tapped.len() / 2 == n * (n - 1) / 2 {
        // A tap on every line recovers exactly the analytic share.
        let (measured, analytic) = (num(summary, "share_content"), num(summary, "analytic_content_share"));
        assert!((measured - analytic).abs() < 1e-9, "{name}: measured {measured}, analytic {analytic}");
    }
}

fn summary(run: &Path) -> HashMap<String, String> {
    table(&run.join("analysis/summary.csv")).remove(0)
}

fn modes(run: &Path) -> HashSet<String> {
    table(&run.join("analysis/pairs.csv")).into_iter().map(|r| r["link_mode"].clone()).collect()
}

/// Every file of the library has a test here: a new scenario cannot slip past.
#[test]
fn every_library_file_is_run_here() {
    let mut files: Vec<String> = std::fs::read_dir(library(""))
        .expect("scenarios/")
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".toml") && n != "Cargo.toml")
        .collect();
    files.sort();
    let mut covered: Vec<&str> = LIBRARY.to_vec();
    covered.sort();
    assert_eq!(files, covered, "add a test for each new library file to tests/library.rs");
}

const LIBRARY: [&str; 13] = [
    "default.toml",
    "baseline-1997.toml",
    "full-adoption.toml",
    "adoption-sweep.toml",
    "partial-tap.toml",
    "provider-concentration.toml",
    "stragglers.toml",
    "attack-matrix.toml",
    "mta-sts-tofu.toml",
    "reuse-realistic.toml",
    "grand-scale.toml",
    "countermeasures-sweep.toml",
    "access-taps.toml",
];

/// Connection reuse as Postfix does it: every line is TLS, and the eavesdropper still counts
/// each pair's messages from the TLS records' bursts (ANALYSIS.md: exact for smtplab's client,
/// pipelined or not, TLS 1.2 or 1.3), whether a session carried one message or several.
#[test]
fn library_reuse_realistic_messages_are_still_counted_inside_tls() {
    let Runs { runs, .. } = &run_library_file(LIBRARY[9], 9);
    assert_eq!(modes(&runs[0]), HashSet::from(["tls".into()]));
    let pairs = table(&runs[0].join("analysis/pairs.csv"));
    assert!(!pairs.is_empty());
    for p in &pairs {
        if num(p, "messages") > 0.0 {
            assert!(num(p, "messages_est_rel_err").abs() < 0.02, "{p:?}");
        }
    }
}

#[test]
fn library_default() {
    let Runs { runs, .. } = &run_library_file(LIBRARY[0], 0);
    let s = summary(&runs[0]);
    assert_eq!(modes(&runs[0]), HashSet::from(["tls".into(), "plaintext".into()]));
    assert!(num(&s, "share_content") > 0.0 && num(&s, "share_content") < 1.0, "{s:?}");
    assert_eq!(s["control_share_content"], "1.0", "the plaintext control leaks everything");
}

#[test]
fn library_baseline_1997_is_all_plaintext() {
    let Runs { runs, .. } = &run_library_file(LIBRARY[1], 1);
    assert_eq!(modes(&runs[0]), HashSet::from(["plaintext".into()]));
    assert_eq!(summary(&runs[0])["share_content"], "1.0");
}

#[test]
fn library_full_adoption_leaks_no_content() {
    let Runs { runs, .. } = &run_library_file(LIBRARY[2], 2);
    assert_eq!(modes(&runs[0]), HashSet::from(["tls".into()]));
    let s = summary(&runs[0]);
    assert_eq!(s["share_content"], "0.0");
    assert_eq!(s["share_volume"], "1.0", "only volume is left");
    assert_eq!(s["control_share_content"], "1.0");
}

#[test]
fn library_adoption_sweep_ends() {
    let Runs { runs, .. } = &run_library_file(LIBRARY[3], 3);
    let shares: Vec<String> = runs.iter().map(|r| summary(r)["share_content"].clone()).collect();
    assert_eq!(shares, ["1.0", "0.0"], "no adoption: everything; full adoption: nothing");
}

#[test]
fn library_partial_tap_follows_the_placement() {
    let Runs { runs, .. } = &run_library_file(LIBRARY[4], 4);
    let s = summary(&runs[0]);
    assert!(num(&s, "share_unobserved") > 0.0 && num(&s, "share_content") > 0.0, "{s:?}");
}

#[test]
fn library_provider_concentration() {
    let Runs { runs, .. } = &run_library_file(LIBRARY[5], 5);
    let pairs = table(&runs[0].join("analysis/pairs.csv"));
    let between_providers =
        |r: &&HashMap<String, String>| r["sender_system"].starts_with('p') && r["receiver_system"].starts_with('p');
    assert!(pairs.iter().any(|r| between_providers(&r)), "providers wrote to each other");
    assert!(pairs.iter().filter(between_providers).all(|r| r["link_mode"] == "tls"));
}

#[test]
fn library_stragglers_trade_exposure_for_undelivered_mail() {
    let Runs { runs, .. } = &run_library_file(LIBRARY[6], 6);
    let (may, encrypt) = (&runs[0], &runs[1]);
    assert!(modes(may).contains("plaintext"), "`may` falls back to plaintext");
    assert!(
        !modes(encrypt).contains("plaintext") || {
            // Only stragglers writing to stragglers remain in the clear.
            let systems = json(&encrypt.join("truth/systems.json"));
            let starttls: HashSet<&str> = systems
                .as_array()
                .expect("systems")
                .iter()
                .filter(|s| s["starttls"] == true)
                .filter_map(|s| s["name"].as_str())
                .collect();
            table(&encrypt.join("analysis/pairs.csv"))
                .iter()
                .filter(|r| r["link_mode"] == "plaintext")
                .all(|r| !starttls.contains(r["sender_system"].as_str()))
        }
    );
    assert!(modes(encrypt).contains("deferred"), "`encrypt` holds mail for stragglers back");
    let stuck = &json(&encrypt.join("manifest.json"))["stuck"];
    assert!(stuck.as_array().is_some_and(|v| !v.is_empty()), "the held-back mail is reported: {stuck}");
}

/// A library scenario on the netns backend: relay processes in namespaces on a bridge, the tap
/// on the bridge with the partial placement. Skipped without root (namespaces need it).
#[test]
fn library_partial_tap_on_netns() {
    require_root("the netns backend");
    let dir = scratch("netns");
    let _cleanup = Runs { dir: dir.clone(), runs: Vec::new() };
    let t = shrunk("partial-tap.toml", "netns", 24525);
    let runs = runs_of("partial-tap.toml", &t);
    let (run, pid) = run_and_check(&dir, "netns", &runs[0]);
    assert!(num(&summary(&run), "share_unobserved") > 0.0);
    let ns = Command::new("ip").args(["netns", "list"]).output().expect("ip netns");
    assert!(!String::from_utf8_lossy(&ns.stdout).contains(&format!("smtplab-{pid}-")), "namespaces torn down");
    let links = Command::new("ip").args(["-o", "link"]).output().expect("ip link");
    assert!(!String::from_utf8_lossy(&links.stdout).contains(&format!(": smtplab{pid}")), "bridge torn down");
}

fn scratch(name: &str) -> PathBuf {
    common::scratch("library", name)
}

/// The attack matrix, shrunk: for every message and receiving system, what the sender's policy
/// and the attack in front of the receiver give (RFC 3207 and Postfix's semantics, the table in
/// SCENARIOS.md), checked from the attackers' own records and the receivers' deliveries. The
/// passive tap's per-line facts do not hold under an active attacker (a line whose policies say
/// TLS is forced into plaintext), so `check_facts` is not applied; the run, analysis and report
/// must still complete.
#[test]
fn library_attack_matrix_each_policy_stops_what_it_should() {
    assert!(is_root(), "the live tap needs root (CI runs as root)");
    let file = LIBRARY[7];
    let k = 7;
    let dir = scratch(file.trim_end_matches(".toml"));
    let mut s = runs_of(file, &shrunk(file, "loopback", 23525 + 10 * u16::from(k))).remove(0);
    for (i, sys) in s.systems.iter_mut().enumerate() {
        sys.address = Some(Ipv4Addr::new(127, 120 + k, u8::try_from(i + 1).expect("few systems"), 1));
        // More users at fetchblocked, so that the shrunk traffic has `may+mta-sts` mail to it:
        // the one cell whose TLS-RPT outcome rests on a policy fetch that never succeeded.
        if sys.name == "fetchblocked" {
            sys.users = Some(24);
        }
    }
    let (run, _) = run_only(&dir, "0", &s);
    let policy: HashMap<String, String> = json(&run.join("truth/systems.json"))
        .as_array()
        .expect("systems")
        .iter()
        .map(|s| {
            // The matrix's label: the outbound policy, `+mta-sts` for a sender honouring it.
            let label = format!(
                "{}{}",
                s["outbound_tls"].as_str().expect("policy"),
                if s["mta_sts"] == true { "+mta-sts" } else { "" }
            );
            (s["name"].as_str().expect("name").into(), label)
        })
        .collect();
    let (delivered, read) = delivered_and_read(&run);
    let lines = |path: &str| jsonl(&run, path);
    let mut seen: HashSet<(&str, &str)> = HashSet::new();
    for m in lines("truth/messages.jsonl") {
        let (id, from) = (m["message_id"].as_str().expect("id"), m["sender_system"].as_str().expect("sender"));
        for to in m["recipient_systems"].as_array().expect("rcpt systems").iter().map(|t| t.as_str().expect("t")) {
            let key = (id.to_string(), to.to_string());
            let p = policy[from].as_str();
            // Hand-worked from the RFC and Postfix, not from the code under test.
            // Every attacked receiver publishes an `enforce` MTA-STS policy (RFC 8461 §5); the
            // `may+mta-sts` sender fetches it from the real policy server, except behind
            // `fetchblocked`'s attacker, which drops the fetch from the first contact.
            let expected = match (to, p) {
                ("clean", _) => "delivered-unread",
                ("stripped" | "overwritten" | "refused" | "fetchblocked", "may") => "read",
                ("fetchblocked", "may+mta-sts") => "read",
                ("stripped" | "overwritten" | "refused" | "fetchblocked", _) => "deferred",
                // The injection attacks meet refusals before any policy could be read: the
                // receiving relay's 554 and close after plaintext pipelined behind STARTTLS
                // (`may` falls back and finds the connection gone), and the sending relay's own
                // refusal of data after the 220 (CVE-2011-0411 and its client-side twin).
                ("cmdinjected" | "respinjected", _) => "deferred",
                ("selfsigned" | "wrongname", "verify" | "may+mta-sts") => "deferred",
                // RFC 7672: every zone is signed with a 3 1 1 record for the real MX key, which
                // no fake MX has, the compromised CA's certificate included.
                ("selfsigned" | "wrongname" | "compromised", "dane" | "dane-only") => "deferred",
                ("selfsigned" | "wrongname" | "compromised", _) => "read",
                ("may" | "encrypt" | "verify" | "mtasts" | "dane" | "dane-only", _) => "delivered-unread",
                _ => panic!("{to}: a system the matrix does not have"),
            };
            let got = match (read.contains(&key), delivered.contains(&key)) {
                (true, true) => "read",
                (false, true) => "delivered-unread",
                (false, false) => "deferred",
                (true, false) => "read-undelivered",
            };
            assert_eq!(got, expected, "{id} from {from} ({p}) to {to}");
            seen.insert((expected, p));
        }
    }
    for outcome in ["read", "deferred", "delivered-unread"] {
        assert!(seen.iter().any(|(o, _)| *o == outcome), "no {outcome} cell in {seen:?}");
    }
    assert!(run.join("analysis/pairs.csv").is_file() && run.join("report/index.html").is_file());
    // The policy each sender's TLS-RPT reports are filed under (RFC 8460 §4.4), worked by hand:
    // every zone is signed with a 3 1 1 record, so the DANE senders report `tlsa` with that one
    // record for `mx.<domain>`; `may+mta-sts` reports `sts` with the receiver's enforce policy
    // (the scenario's defaults: its MX host, max_age 86400) where it fetched one, and
    // `no-policy-found` where a domain publishes none or, at fetchblocked, the fetch was dropped
    // (each session an sts-policy-fetch-error); every other sender `no-policy-found`.
    let publishes: HashSet<String> = json(&run.join("truth/systems.json"))
        .as_array()
        .expect("systems")
        .iter()
        .filter(|s| s["mta_sts_policy"] == "enforce")
        .map(|s| s["domain"].as_str().expect("domain").to_string())
        .collect();
    let mut types_seen: HashSet<String> = HashSet::new();
    for sender in std::fs::read_dir(run.join("tlsrpt")).expect("tlsrpt/").flatten() {
        let name = sender.file_name().to_string_lossy().into_owned();
        for file in std::fs::read_dir(sender.path()).expect("a sender's reports").flatten() {
            let domain = file.file_name().to_string_lossy().trim_end_matches(".json").to_string();
            let report = json(&file.path());
            let policies = report["policies"].as_array().expect("policies");
            assert!(!policies.is_empty(), "{report}");
            for p in policies {
                let (t, strings) = (p["policy"]["policy-type"].as_str().expect("type"), &p["policy"]["policy-string"]);
                assert_eq!(p["policy"]["policy-domain"], domain.as_str(), "{name}: {p}");
                let mx = format!("mx.{domain}");
                assert_eq!(p["policy"]["mx-host"], serde_json::json!([mx]), "{name}: {p}");
                match policy[&name].as_str() {
                    "dane" | "dane-only" => {
                        assert_eq!(t, "tlsa", "{name} to {domain}: {p}");
                        let rrset = strings.as_array().expect("the TLSA RRset");
                        assert_eq!(rrset.len(), 1, "{name} to {domain}: {p}");
                        let text = rrset[0].as_str().expect("a record");
                        assert!(text.starts_with("3 1 1 ") && text.len() == 6 + 64, "{name} to {domain}: {p}");
                    }
                    "may+mta-sts" if publishes.contains(&domain) && domain != "fetchblocked.example" => {
                        assert_eq!(t, "sts", "{name} to {domain}: {p}");
                        let lines = [
                            "version: STSv1".to_string(),
                            "mode: enforce".into(),
                            format!("mx: {mx}"),
                            "max_age: 86400".into(),
                        ];
                        assert_eq!(strings, &serde_json::json!(lines), "{name} to {domain}: {p}");
                    }
                    label => {
                        assert_eq!(t, "no-policy-found", "{name} ({label}) to {domain}: {p}");
                        assert!(strings.is_null(), "no policy-string without a policy: {p}");
                        if label == "may+mta-sts" && domain == "fetchblocked.example" {
                            let details = p["failure-details"].as_array().expect("the dropped fetches");
                            assert!(details.iter().all(|d| d["result-type"] == "sts-policy-fetch-error"), "{p}");
                        }
                    }
                }
                types_seen.insert(t.to_string());
            }
        }
    }
    assert_eq!(types_seen.len(), 3, "tlsa, sts and no-policy-found reports: {types_seen:?}");
    // The analysis' matrix: each cell's shares are all-or-nothing here, as worked out above.
    let cells = table(&run.join("analysis/attack_matrix.csv"));
    assert!(cells.len() >= 6, "{cells:?}");
    for attack in ["inject-command", "inject-response"] {
        assert!(cells.iter().any(|c| c["attack"] == attack), "the shrunk traffic reaches {attack}: {cells:?}");
    }
    assert!(
        cells.iter().any(|c| c["attack"] == "strip+fetch-drop" && c["defense"] == "may+mta-sts"),
        "the shrunk traffic reaches fetchblocked from may+mta-sts: {cells:?}"
    );
    for c in &cells {
        let (defense, attack) = (c["defense"].as_str(), c["attack"].as_str());
        let read = match (attack, defense) {
            ("none", _) => false,
            ("inject-command" | "inject-response", _) => false,
            (_, "dane" | "dane-only") => false,
            ("strip" | "strip-xxxxxxxa" | "454", "may") => true,
            ("strip+fetch-drop", "may" | "may+mta-sts") => true,
            ("strip" | "strip-xxxxxxxa" | "454" | "strip+fetch-drop", _) => false,
            ("fake-mx/self-signed" | "fake-mx/wrong-name", "verify" | "may+mta-sts") => false,
            _ => true,
        };
        let deferred = !read && attack != "none";
        assert!(num(c, "messages") > 0.0, "{c:?}");
        assert_eq!(num(c, "read_share"), if read { 1.0 } else { 0.0 }, "{c:?}");
        assert_eq!(num(c, "deferred_share"), if deferred { 1.0 } else { 0.0 }, "{c:?}");
        assert_eq!(num(c, "delivered_share"), if deferred { 0.0 } else { 1.0 }, "{c:?}");
        let plaintext = read && matches!(attack, "strip" | "strip-xxxxxxxa" | "454" | "strip+fetch-drop");
        assert_eq!(num(c, "plaintext_share"), if plaintext { 1.0 } else { 0.0 }, "{c:?}");
        // TLS-RPT (RFC 8460, counted as SCENARIOS.md states): a session fails in the sender's
        // report only when its policy noticed: never under `may` (a plaintext fallback or any
        // certificate is no failure to it, and a `may` sender that implements neither DANE nor
        // MTA-STS knows of no published policy to fail), not for a certificate the policy
        // accepts (any under `encrypt`, the compromised CA's under `verify` and MTA-STS); always
        // under DANE, which refused every attack here. MTA-STS that never learned the policy
        // still reports: `_mta-sts.fetchblocked.example` TXT announces a policy, the attacker
        // drops every fetch of it, so each session of `may+mta-sts` there is an
        // `sts-policy-fetch-error` failure (under `no-policy-found`, no policy being in force)
        // at the MX address the scenario's DNS gave, the attacker's: reported, although the
        // mail was read (RFC 8461 §10.2 defeats the policy, not the report).
        let reported = match (attack, defense) {
            ("none", _) => false,
            // The client's refusal of an injected reply is a failure before TLS, not a TLS
            // result (SCENARIOS.md: only failures a policy noticed count), under every policy.
            ("inject-response", _) => false,
            (_, "dane" | "dane-only") => true,
            (_, "may") => false,
            ("strip+fetch-drop", "may+mta-sts") => true,
            ("fake-mx/compromised-ca", _) => false,
            ("fake-mx/self-signed" | "fake-mx/wrong-name", "encrypt") => false,
            _ => true,
        };
        assert_eq!(num(c, "reported_share"), if reported { 1.0 } else { 0.0 }, "{c:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The grand-scale sweep, shrunk to its ends (no domain attacked, every domain attacked) and one
/// seed, run by `smtplab sweep` as a user runs it, whose analysis writes the effort curve. Worked
/// by hand (RFC 3207, Postfix's levels): with no target nothing is read; with every domain's MX
/// taken over by the self-signed fake MX, `may` and `encrypt` senders (which accept any
/// certificate) lose every copy, `verify` senders none and hold them all back, and only
/// `verify`'s failures show in a TLS-RPT report. The `all senders` row is the share of copies
/// sent by `may` and `encrypt` systems, counted here from the ground truth's messages.
#[test]
fn library_grand_scale_effort_curve_from_none_to_every_domain() {
    assert!(is_root(), "the live tap needs root (CI runs as root)");
    let file = LIBRARY[10];
    let dir = scratch(file.trim_end_matches(".toml"));
    let t = shrunk(file, "loopback", 23525 + 10 * 10);
    let sweep_file = dir.join(file);
    std::fs::write(&sweep_file, toml::to_string(&t).expect("serialise")).expect("write");
    let out = dir.join("sweeps");
    let r = Command::new(env!("CARGO_BIN_EXE_smtplab"))
        .args(["sweep", &sweep_file.display().to_string(), "--out", &out.display().to_string()])
        .env("CI", "1")
        .output()
        .expect("smtplab sweep");
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let sweep = out.join("grand-scale");
    let rows = table(&sweep.join("analysis/attack_effort.csv"));
    let row = |effort: f64, defense: &str| {
        rows.iter()
            .find(|r| num(r, "effort") == effort && r["defense"] == defense)
            .unwrap_or_else(|| panic!("no {defense} row at effort {effort}: {rows:?}"))
    };
    // Copies, one per (message, recipient) as ANALYSIS.md counts them, by sender policy at the
    // full-effort point, from the ground truth alone.
    let full = std::fs::read_dir(&sweep)
        .expect("sweep dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().contains("domain_share=1")) && p.is_dir())
        .expect("the full-effort run");
    let policy: HashMap<String, String> = json(&full.join("truth/systems.json"))
        .as_array()
        .expect("systems")
        .iter()
        .map(|s| (s["name"].as_str().expect("name").into(), s["outbound_tls"].as_str().expect("policy").into()))
        .collect();
    let mut copies: HashMap<String, f64> = HashMap::new();
    for m in jsonl(&full, "truth/messages.jsonl") {
        let n = m["recipients"].as_array().expect("recipients").len() as f64;
        *copies.entry(policy[m["sender_system"].as_str().expect("sender")].clone()).or_default() += n;
    }
    let total: f64 = copies.values().sum();
    for defense in ["may", "encrypt", "verify", "all"] {
        let none = row(0.0, defense);
        assert_eq!((num(none, "read_share"), num(none, "held_share")), (0.0, 0.0), "{none:?}");
        let every = row(1.0, defense);
        let (read, held, reported) = match defense {
            "may" | "encrypt" => (1.0, 0.0, 0.0),
            "verify" => (0.0, 1.0, 1.0),
            _ => {
                let lost = (copies["may"] + copies["encrypt"]) / total;
                (lost, 1.0 - lost, 1.0 - lost)
            }
        };
        assert!((num(every, "read_share") - read).abs() < 1e-9, "{every:?}");
        assert!((num(every, "held_share") - held).abs() < 1e-9, "{every:?}");
        assert!((num(every, "reported_share") - reported).abs() < 1e-9, "{every:?}");
    }
    let html = std::fs::read_to_string(sweep.join("report/index.html")).expect("sweep report");
    assert!(html.contains("the grand-scale curve") && sweep.join("report/effort.png").is_file());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A run's JSON-lines file as values.
fn jsonl(run: &Path, path: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

/// (message id, receiving system) pairs delivered into a mailbox, and read by an attacker.
type Copies = HashSet<(String, String)>;

fn delivered_and_read(run: &Path) -> (Copies, Copies) {
    let mut delivered = HashSet::new();
    for r in jsonl(run, "truth/sessions.jsonl") {
        if r["direction"] == "local" && r["outcome"] == "delivered" {
            for m in r["messages"].as_array().expect("messages") {
                delivered
                    .insert((m["message_id"].as_str().expect("id").into(), r["system"].as_str().expect("s").into()));
            }
        }
    }
    let mut read = HashSet::new();
    for r in jsonl(run, "truth/attacker.jsonl") {
        for m in r["messages"].as_array().expect("messages") {
            read.insert((m["message_id"].as_str().expect("id").into(), r["target_system"].as_str().expect("t").into()));
        }
    }
    (delivered, read)
}

/// MTA-STS trust on first use, shrunk: alpha (`may` + MTA-STS) to `early` (a stripping attacker
/// that drops the policy fetch from the first contact) is read, every message; to `late` (the
/// same attacker, 10 s into the traffic) nothing is read: what went before was delivered under
/// the fetched `enforce` policy over verified TLS, what came after is deferred by the cached
/// policy (RFC 8461 §5.1, §10.2). Hand-worked from the RFC, checked from the relays' and the
/// attackers' records. The arrivals are seeded: the shrunk traffic (36 messages at 2/s) has
/// alpha→late messages on both sides of 10 s.
#[test]
fn library_mta_sts_tofu_the_cache_stops_only_the_late_attacker() {
    assert!(is_root(), "the live tap needs root (CI runs as root)");
    let file = LIBRARY[8];
    let k = 8;
    let dir = scratch(file.trim_end_matches(".toml"));
    let mut s = runs_of(file, &shrunk(file, "loopback", 23525 + 10 * u16::from(k))).remove(0);
    for (i, sys) in s.systems.iter_mut().enumerate() {
        sys.address = Some(Ipv4Addr::new(127, 120 + k, u8::try_from(i + 1).expect("few systems"), 1));
    }
    let (run, _) = run_only(&dir, "0", &s);
    let (delivered, read) = delivered_and_read(&run);
    let hops = jsonl(&run, "truth/sessions.jsonl");
    // alpha's hop to `to` that delivered message `id`.
    let delivered_hop = |id: &str, to: &str| {
        hops.iter().find(|h| {
            h["direction"] == "outbound"
                && h["system"] == "alpha"
                && h["peer_system"] == to
                && h["outcome"] == "delivered"
                && h["messages"].as_array().is_some_and(|m| m.iter().any(|m| m["message_id"] == id))
        })
    };
    let (mut early, mut late_delivered, mut late_deferred) = (0, 0, 0);
    for m in jsonl(&run, "truth/messages.jsonl") {
        if m["sender_system"] != "alpha" {
            continue;
        }
        let id = m["message_id"].as_str().expect("id");
        for to in m["recipient_systems"].as_array().expect("rcpt systems").iter().map(|t| t.as_str().expect("t")) {
            let key = (id.to_string(), to.to_string());
            match to {
                "early" => {
                    early += 1;
                    assert!(read.contains(&key) && delivered.contains(&key), "{id} to early: read and delivered");
                }
                "late" => {
                    assert!(!read.contains(&key), "{id} to late was read");
                    if delivered.contains(&key) {
                        late_delivered += 1;
                        let hop = delivered_hop(id, "late").unwrap_or_else(|| panic!("alpha's hop of {id}"));
                        assert_eq!(hop["mta_sts_mode"], "enforce", "{hop}");
                        assert!(hop["cert_verified"] == true && hop["starttls_used"] == true, "{hop}");
                    } else {
                        late_deferred += 1;
                    }
                }
                other => panic!("alpha sends to {other}: the scenario has no such recipient"),
            }
        }
    }
    assert!(early > 0 && late_delivered > 0 && late_deferred > 0, "{early} {late_delivered} {late_deferred}");
    // alpha's deferred attempts to late were under the cached policy, and say why.
    let deferred: Vec<&serde_json::Value> = hops
        .iter()
        .filter(|h| h["direction"] == "outbound" && h["system"] == "alpha" && h["peer_system"] == "late")
        .filter(|h| h["outcome"] == "deferred")
        .collect();
    assert!(!deferred.is_empty());
    for h in deferred {
        assert_eq!(
            (h["mta_sts_mode"].as_str(), h["mta_sts_source"].as_str()),
            (Some("enforce"), Some("cached")),
            "{h}"
        );
        assert_eq!(h["mta_sts_failure"], "starttls-not-supported", "{h}");
    }
    // To early, alpha never had a policy: every hop records the failed fetch.
    for h in
        hops.iter().filter(|h| h["direction"] == "outbound" && h["system"] == "alpha" && h["peer_system"] == "early")
    {
        assert_eq!(h["mta_sts_failure"], "sts-policy-fetch-error", "{h}");
        assert!(h.get("mta_sts_mode").is_none_or(|m| m.is_null()), "{h}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The countermeasures sweep, shrunk (one seed): its eight points, padding, cover (0 or 8 per
/// second) and the pool mix each on or off. Mail is counted apart from cover (the common facts
/// hold: every pair's hop messages are the truth's mail), and the same seed's mail gives the same
/// hop messages, exposure and delivered copies with and without cover; every line is STARTTLS, so
/// only volume is exposed; the eavesdropper counts each cover message as at least one message
/// (the tap's estimate rises by at least the cover count), each in a session of its own (reuse
/// off); at the baseline (nothing on) it counts the mail exactly, one message per session; the
/// pool holds a message at most 8 rounds of 1 s per destination, a message has at most 2
/// recipient systems (`max_recipients = 2`), so 16 s (plus 5 s for a busy machine); every run
/// carries its linkage figures into the summary (half the users' lines are tapped), and the
/// sweep's report draws the leak-against-cost figure with one marker per point.
#[test]
fn library_countermeasures_cover_is_seen_as_mail_and_counted_apart() {
    let Runs { runs, dir } = &run_library_file(LIBRARY[11], 11);
    assert_eq!(runs.len(), 8, "padding × cover × pool, each on or off");
    type Row = HashMap<String, String>;
    let mut by_rest: BTreeMap<String, Vec<(f64, Row)>> = BTreeMap::new();
    for run in runs {
        let s = summary(run);
        let params: serde_json::Value = serde_json::from_str(&s["params"]).expect("params");
        let rate = params["systems.0.delivery.cover_rate"].as_f64().expect("cover_rate");
        let padding = params["systems.0.delivery.padding"].as_str().expect("padding").to_string();
        let batch = params["systems.0.delivery.batch_mode"].as_str().expect("batch_mode").to_string();
        assert_eq!(modes(run), HashSet::from(["tls".into()]));
        assert_eq!(s["share_volume"], "1.0", "{run:?}: only volume is exposed");
        let cover = num(&s, "cover_messages");
        assert_eq!(cover > 0.0, rate > 0.0, "{run:?}: cover_rate {rate}, {cover} cover messages");
        assert_eq!(num(&s, "cover_sessions"), cover, "{run:?}: a session per cover message");
        assert_eq!(num(&s, "cover_wire_bytes") > 0.0, rate > 0.0, "{run:?}");
        if batch == "pool" {
            assert!(num(&s, "delivery_latency_max") <= 2.0 * 8.0 + 5.0, "{run:?}: {s:?}");
        }
        if (padding.as_str(), rate, batch.as_str()) == ("none", 0.0, "none") {
            assert_eq!(s["messages_est"], s["hop_messages"], "{run:?}: the baseline's count is exact");
            assert_eq!(s["sessions_true"], s["hop_messages"], "{run:?}: one message per session");
        }
        // More bytes on the wire than mail carried (SMTP and TLS framing at the least).
        assert!(num(&s, "wire_per_mail_byte") > 1.0, "{run:?}: {s:?}");
        let tapped = num(&s, "link_messages");
        assert!(tapped > 0.0, "{run:?}: half the users' lines are tapped: {s:?}");
        assert!((0.0..=1.0).contains(&num(&s, "link_precision")), "{run:?}: {s:?}");
        by_rest.entry(format!("{padding},{batch}")).or_default().push((rate, s));
    }
    assert_eq!(by_rest.len(), 4);
    for (rest, mut pair) in by_rest {
        pair.sort_by(|a, b| a.0.total_cmp(&b.0));
        let [(_, plain), (_, cover)] = &pair[..] else { panic!("{rest}: {pair:?}") };
        for col in ["hop_messages", "messages_total", "bytes_true", "share_volume", "copies_delivered"] {
            assert_eq!(plain[col], cover[col], "{rest}: {col} moved with cover");
        }
        let seen_more = num(cover, "messages_est") - num(plain, "messages_est");
        assert!(seen_more >= num(cover, "cover_messages"), "{rest}: the tap saw {seen_more} more");
    }
    // The sweep's own analysis and report: one frontier marker per point and leak measure.
    let sweep = analyze_as_sweep(dir, runs);
    let md = std::fs::read_to_string(sweep.join("report/summary.md")).expect("sweep summary.md");
    assert!(md.contains("## Countermeasures: leak against cost"), "{md}");
    assert!(sweep.join("report/frontier.svg").is_file() && sweep.join("report/frontier.png").is_file());
    let svg = std::fs::read_to_string(sweep.join("report/frontier.svg")).expect("frontier.svg");
    assert!(svg.contains("message-count error") && svg.contains("linkage precision"), "both leak measures drawn");
}

/// Gathers runs of one sweep's points (made one by one with `smtplab run`) into a sweep
/// directory as `smtplab sweep` lays it out (the runs linked in, `sweep.json` listing them), then
/// runs `smtplab analyze` and `smtplab report` on it. Returns the sweep directory.
fn analyze_as_sweep(dir: &Path, runs: &[PathBuf]) -> PathBuf {
    let sweep = dir.join("sweep");
    std::fs::create_dir_all(&sweep).expect("sweep dir");
    let mut points = Vec::new();
    let mut name = String::new();
    for (n, run) in runs.iter().enumerate() {
        let s = summary(run);
        let link = format!("run{n}");
        std::os::unix::fs::symlink(run, sweep.join(&link)).expect("link the run");
        let params: serde_json::Value = serde_json::from_str(&s["params"]).expect("params");
        name = s["scenario"].clone();
        points.push(serde_json::json!({
            "point": s["point"], "params": params, "seed": num(&s, "seed") as u64, "dir": link,
        }));
    }
    let file = serde_json::json!({ "name": name, "points": points });
    std::fs::write(sweep.join("sweep.json"), file.to_string()).expect("sweep.json");
    for cmd in ["analyze", "report"] {
        let out = Command::new(env!("CARGO_BIN_EXE_smtplab"))
            .args([cmd, &sweep.display().to_string()])
            .env("CI", "1")
            .output()
            .expect("run smtplab");
        assert!(out.status.success(), "smtplab {cmd} {}: {}", sweep.display(), String::from_utf8_lossy(&out.stderr));
    }
    sweep
}

/// Access taps: 30% of users' lines (exactly round(0.3 × users), as `truth/access_taps.json`
/// places them) with the whole backbone. Every message of a tapped user is a row of
/// `analysis/linkage` and none of another; each row's own hops are among its candidates (the
/// backbone is tapped whole); plaintext rows link the user to its systems outright. Runs on
/// 127.0.73.0/24 (systems .1–.8, users from .100) and ports 27330–27331.
#[test]
fn library_access_taps_linkage_against_truth() {
    require_root("the live tap");
    let file = LIBRARY[12];
    let dir = scratch("access-taps");
    let mut t = shrunk(file, "loopback", 27330);
    if let Some(toml::Value::Table(tap)) = t.get_mut("tap") {
        tap.insert("access_addresses".into(), "127.0.73.100".into());
    }
    let mut s = runs_of(file, &t).remove(0);
    for (i, sys) in s.systems.iter_mut().enumerate() {
        sys.address = Some(Ipv4Addr::new(127, 0, 73, u8::try_from(i + 1).expect("few systems")));
    }
    let (run, _) = run_and_check(&dir, "0", &s);
    let _cleanup = Runs { dir, runs: vec![run.clone()] };

    let taps = json(&run.join("truth/access_taps.json"));
    let taps = taps.as_array().expect("access taps");
    let tapped: HashSet<&str> =
        taps.iter().filter(|t| t["tapped"] == true).filter_map(|t| t["user"].as_str()).collect();
    assert_eq!(tapped.len(), (0.3 * taps.len() as f64).round() as usize, "round(share × users) lines tapped");
    let truth = std::fs::read_to_string(run.join("truth/messages.jsonl")).expect("truth");
    let mut expected: HashMap<String, usize> = HashMap::new();
    for line in truth.lines() {
        let m: serde_json::Value = serde_json::from_str(line).expect("truth line");
        if tapped.contains(m["sender"].as_str().expect("sender")) {
            let own = m["sender_system"].as_str().expect("sender system");
            let others = m["recipient_systems"].as_array().expect("systems").iter().filter(|r| *r != own).count();
            expected.insert(m["message_id"].as_str().expect("id").to_string(), others);
        }
    }
    let rows = table(&run.join("analysis/linkage.csv"));
    assert_eq!(rows.len(), expected.len(), "one row per message of a tapped user");
    for r in &rows {
        let hops = expected.get(&r["message_id"]).copied().unwrap_or_else(|| panic!("not a tapped user's: {r:?}"));
        assert!(tapped.contains(r["user"].as_str()), "{r:?}");
        if r["link_tls"] == "tls" || r["link_tls"] == "plaintext" {
            assert_eq!(num(r, "true_candidates") as usize, hops, "its own hops are candidates: {r:?}");
        }
        if r["link_tls"] == "plaintext" {
            assert_eq!(r["guessed_systems"], r["recipient_systems"], "plaintext names the systems: {r:?}");
        }
    }
    let scopes: HashMap<String, HashMap<String, String>> =
        table(&run.join("analysis/linkage_summary.csv")).into_iter().map(|r| (r["scope"].clone(), r)).collect();
    eprintln!("access-taps linkage summary: {scopes:?}");
    if let Some(p) = scopes.get("plaintext") {
        assert_eq!((num(p, "precision"), num(p, "recall")), (1.0, 1.0), "{p:?}");
    }
    assert!(scopes.contains_key("all"));
    // The report has its section and figure, only because this run tapped access lines.
    assert!(run.join("report/linkage.svg").is_file() && run.join("report/linkage.png").is_file());
    let md = std::fs::read_to_string(run.join("report/summary.md")).expect("summary.md");
    assert!(md.contains("## Linkage across hops"), "{md}");
}
