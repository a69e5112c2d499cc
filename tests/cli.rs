//! The `smtplab` binary as a user runs it: a scenario end to end with a live capture, the
//! permission error, scenario errors, and the tap on real captures from Zeek's test suite.

mod common;

use common::{csv_without, seeded_part};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn smtplab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_smtplab")).args(args).env("CI", "1").output().expect("run smtplab")
}

fn data(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(rel).display().to_string()
}

fn only_child(dir: &Path) -> PathBuf {
    let entries: Vec<PathBuf> = std::fs::read_dir(dir).expect("out dir").flatten().map(|e| e.path()).collect();
    assert_eq!(entries.len(), 1, "one run directory in {}: {entries:?}", dir.display());
    entries[0].clone()
}

/// The issue's acceptance facts, read from the analysis table the user gets.
#[test]
fn run_small_scenario_end_to_end() {
    let out = scratch("run");
    let r = smtplab(&["run", &data("small.toml"), "--out", &out.display().to_string()]);
    check_small_run(&out, &r);
}

/// The same facts on the netns backend: relay processes in network namespaces on a bridge,
/// finding each other's MX by `--route` flags, then through the scenario's DNS server on the
/// bridge (one run after the other: two netns runs at once would share the bridge's subnet).
#[test]
fn run_small_scenario_on_netns() {
    let out = scratch("netns");
    for dns in ["in-process", "server"] {
        let text = std::fs::read_to_string(data("small.toml"))
            .expect("small.toml")
            .replace("[network]", &format!("[network]\nbackend = \"netns\"\ndns = \"{dns}\""))
            .lines()
            .filter(|l| !l.starts_with("address = "))
            .collect::<Vec<_>>()
            .join("\n");
        let path = out.join(format!("netns-{dns}.toml"));
        std::fs::write(&path, text).expect("write");
        let runs = out.join(format!("runs-{dns}"));
        let r = smtplab(&["run", &path.display().to_string(), "--out", &runs.display().to_string()]);
        // Read before the common checks, which remove the run.
        let sightings = std::fs::read_dir(&runs)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| std::fs::read_to_string(e.ok()?.path().join("tap/dns.jsonl")).ok())
            .unwrap_or_default();
        check_small_run(&runs, &r);
        if dns == "server" {
            // Each relay process asked the bridge's DNS server, from its namespace's address.
            for (from, domain) in [("10.233.0.1", "beta"), ("10.233.0.2", "gamma"), ("10.233.0.3", "alpha")] {
                let query = format!("\"src\":\"{from}:");
                assert!(
                    sightings.lines().any(|l| l.contains(&query) && l.contains(&format!("{domain}.example. MX"))),
                    "no MX query from {from} for {domain}:\n{sightings}"
                );
            }
        } else {
            assert!(sightings.is_empty(), "in-process resolution puts nothing on the wire");
        }
    }
    dane_on_netns(&out);
    // The only test of this binary using namespaces (tests/library.rs has one too; test binaries
    // run one after the other): none may be left behind.
    let ns = Command::new("ip").args(["netns", "list"]).output().expect("ip netns");
    assert!(!String::from_utf8_lossy(&ns.stdout).contains("smtplab-"), "namespaces torn down");
    let links = Command::new("ip").args(["-o", "link"]).output().expect("ip link");
    assert!(!String::from_utf8_lossy(&links.stdout).contains(": smtplab"), "bridge torn down");
    let _ = std::fs::remove_dir_all(&out);
}

/// DANE across namespaces: each relay process validates TLSA answers against the run's
/// `pki/dnssec-root.key` (`smtplab relay --trust-anchor`). alpha sends with `dane-only` to beta,
/// whose signed zone publishes `2 1 1` for the scenario CA: every hop is delivered and
/// DANE-authenticated (without the anchor, `dane-only` would defer them all).
fn dane_on_netns(out: &Path) {
    let text = r#"
[scenario]
name = "cli-dane-netns"
seed = 5
drain_timeout = 10

[network]
backend = "netns"
dns = "server"
smtp_port = 13525
submission_port = 13587

[traffic]
messages = 16
users_per_system = 2
intra_system_share = 0.0

[tap]
capture = "none"

[[systems]]
name = "alpha"
domain = "alpha.example"
starttls = true
dnssec = true
outbound_tls = "dane-only"

[[systems]]
name = "beta"
domain = "beta.example"
starttls = true
dnssec = true
dane = "2 1 1"
"#;
    let path = out.join("netns-dane.toml");
    std::fs::write(&path, text).expect("write");
    let runs = out.join("runs-dane");
    let r = smtplab(&["run", &path.display().to_string(), "--out", &runs.display().to_string()]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let run = only_child(&runs);
    assert!(run.join("pki/dnssec-root.key").is_file());
    let sessions = std::fs::read_to_string(run.join("truth/sessions.jsonl")).expect("sessions");
    let hops: Vec<serde_json::Value> = sessions
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .filter(|s: &serde_json::Value| s["direction"] == "outbound" && s["system"] == "alpha")
        .collect();
    assert!(!hops.is_empty(), "alpha sent to beta");
    for h in &hops {
        assert_eq!((&h["outcome"], &h["dane_authenticated"]), (&"delivered".into(), &true.into()), "{h}");
    }
}

/// The same facts under Shadow: each system a host of the simulation running the real relay
/// binary, the traffic generator a process on a host of its own, the capture merged from the
/// hosts' own pcaps. Fails when Shadow is not installed (scripts/install-shadow builds it).
#[test]
fn run_small_scenario_on_shadow() {
    let out = scratch("shadow");
    let scenario = shadow_scenario(&out);
    let runs = out.join("runs");
    let r = smtplab(&["run", &scenario.display().to_string(), "--out", &runs.display().to_string()]);
    assert!(
        r.status.success(),
        "smtplab run under Shadow failed:\n{}\n{}",
        String::from_utf8_lossy(&r.stderr),
        String::from_utf8_lossy(&r.stdout)
    );
    // Checked before the common checks, which remove the run.
    let capture = only_child(&runs).join("capture.pcap");
    // tshark, not the tap, on the merged capture: the STARTTLS commands it finds are the relays'
    // own TLS hops, and each packet is there once (a packet kept from both hosts' pcaps would be
    // a duplicate to tshark's TCP analysis; the links lose nothing, so nothing is retransmitted).
    let tshark = |filter: &str| -> usize {
        let o = Command::new("tshark")
            .args(["-r", &capture.display().to_string(), "-d", "tcp.port==13525,smtp", "-Y", filter])
            .output()
            .expect("tshark (Debian package tshark)");
        assert!(o.status.success(), "tshark: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).lines().count()
    };
    let sessions: Vec<serde_json::Value> = std::fs::read_to_string(only_child(&runs).join("truth/sessions.jsonl"))
        .expect("sessions")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    let tls_hops = sessions.iter().filter(|s| s["direction"] == "outbound" && s["starttls_used"] == true).count();
    assert!(tls_hops > 0, "alpha and beta use STARTTLS");
    assert_eq!(tshark("smtp.req.command == \"STAR\""), tls_hops, "STARTTLS commands on the wire");
    assert_eq!(tshark("tcp.analysis.retransmission or tcp.analysis.duplicate_ack"), 0, "each packet once");
    check_small_run_on(&runs, &r, Clock::Simulated);
    let _ = std::fs::remove_dir_all(&out);
}

/// A Shadow that is not where it is said to be: the run fails at once, saying how to install it.
#[test]
fn shadow_backend_without_shadow_says_how_to_install_it() {
    let out = scratch("no-shadow");
    let scenario = shadow_scenario(&out);
    let r = Command::new(env!("CARGO_BIN_EXE_smtplab"))
        .args(["run", &scenario.display().to_string(), "--out", &out.join("runs").display().to_string()])
        .env("SMTPLAB_SHADOW", "/nonexistent/shadow")
        .env("CI", "1")
        .output()
        .expect("run smtplab");
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success());
    assert!(stderr.contains("scripts/install-shadow") && stderr.contains("SMTPLAB_SHADOW"), "{stderr}");
    let manifest = std::fs::read_to_string(only_child(&out.join("runs")).join("manifest.json")).expect("manifest");
    assert!(manifest.contains("\"failed\""), "the run is marked failed: {manifest}");
    let _ = std::fs::remove_dir_all(&out);
}

/// `small.toml` on the shadow backend, with 10 ms between systems (the backend assigns the
/// addresses).
fn shadow_scenario(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(data("small.toml"))
        .expect("small.toml")
        .replace("[network]", "[network]\nbackend = \"shadow\"\ndelay_ms = 10.0")
        .lines()
        .filter(|l| !l.starts_with("address = "))
        .collect::<Vec<_>>()
        .join("\n");
    let path = dir.join("shadow.toml");
    std::fs::write(&path, text).expect("write");
    path
}

/// Without privileges, the link recorder writes the capture: the same facts hold.
#[test]
fn recorder_needs_no_privileges() {
    let out = scratch("recorder");
    let status = Command::new("chmod").args(["777", &out.display().to_string()]).status().expect("chmod");
    assert!(status.success());
    let scenario = small_on_port(&out, 20525, "\n[tap]\ncapture = \"recorder\"\n");
    let _ = Command::new("chmod").args(["644", &scenario.display().to_string()]).status();
    let runs = out.join("runs");
    std::fs::create_dir_all(&runs).expect("runs");
    let _ = Command::new("chmod").args(["777", &runs.display().to_string()]).status();
    let r = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--"])
        .arg(env!("CARGO_BIN_EXE_smtplab"))
        .args(["run", &scenario.display().to_string(), "--out", &runs.display().to_string()])
        .env("CI", "1")
        .output()
        .expect("setpriv (util-linux)");
    check_small_run(&runs, &r);
    let _ = std::fs::remove_dir_all(&out);
}

fn check_small_run(out: &Path, r: &Output) {
    check_small_run_on(out, r, Clock::Wall)
}

/// Whose clock the run's records keep: the machine's, or Shadow's simulated one.
#[derive(PartialEq)]
enum Clock {
    Wall,
    Simulated,
}

fn check_small_run_on(out: &Path, r: &Output, clock: Clock) {
    let stderr = String::from_utf8_lossy(&r.stderr);
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert!(r.status.success(), "smtplab run failed:\n{stderr}\n{stdout}");
    assert!(stdout.contains("alpha -> beta"), "the per-pair table is printed:\n{stdout}");
    let run = only_child(out);
    assert!(stdout.contains(&format!("report: {}", run.join("report/index.html").display())), "{stdout}");

    let csv = std::fs::read_to_string(run.join("analysis/pairs.csv")).expect("pairs.csv");
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap_or_else(|| panic!("column {name}"));
    let (snd, rcv, tls, msgs, rec, seen) = (
        col("sender_system"),
        col("receiver_system"),
        col("starttls"),
        col("messages"),
        col("content_recovered"),
        col("bytes_seen"),
    );
    let mut pairs = 0;
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        let n: u64 = f[msgs].parse().expect("messages");
        let recovered: u64 = f[rec].parse().expect("content_recovered");
        let bytes_seen: u64 = f[seen].parse().expect("bytes_seen");
        let both_tls = matches!((f[snd], f[rcv]), ("alpha", "beta") | ("beta", "alpha"));
        assert_eq!(f[tls] == "true", both_tls, "{line}");
        assert!(n > 0 && bytes_seen > 0, "every link's volume is visible: {line}");
        if both_tls {
            assert_eq!(recovered, 0, "STARTTLS link leaked content: {line}");
        } else {
            assert_eq!(recovered, n, "plaintext link not fully recovered: {line}");
        }
        pairs += 1;
    }
    assert_eq!(pairs, 6, "all six ordered pairs carried mail");

    // Known answer: with opportunistic STARTTLS between alpha and beta only, the share of hop
    // messages whose content is recovered is the traffic matrix's weight on the pairs that do
    // not both use TLS. The analysis computes that expectation from the policies alone.
    let summary = csv_without(&run.join("analysis/summary.csv"), &[]);
    let at = |name: &str| summary[0].iter().position(|h| h == name).unwrap_or_else(|| panic!("column {name}"));
    let measured: f64 = summary[1][at("share_content")].parse().expect("share_content");
    let analytic: f64 = summary[1][at("analytic_content_share")].parse().expect("analytic_content_share");
    assert!(measured > 0.0 && measured < 1.0, "{measured}");
    assert!((measured - analytic).abs() < 1e-9, "measured {measured} against analytic {analytic}");

    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("manifest.json")).expect("manifest")).expect("json");
    assert_eq!(manifest["status"], "complete");
    // Every line is tapped here, whether captured live or by the recorder.
    let links: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("truth/tap_links.json")).expect("tap_links"))
            .expect("json");
    let links = links.as_array().expect("array");
    assert!(links.len() == 3 && links.iter().all(|l| l["tapped"] == true), "{links:?}");
    assert!(manifest["files"]["capture.pcap"].is_string(), "file hashes in the manifest");
    for f in [
        "truth/messages.parquet",
        "truth/hops.parquet",
        "truth/outcomes.parquet",
        "tap/sessions.parquet",
        "report/pairs.png",
        "keys.log",
    ] {
        assert!(run.join(f).exists(), "{f}");
    }

    // Ground truth of outcomes: every recipient's copy of every submitted message was put in a
    // mailbox of the recipient's system, once, as the relays recorded it.
    let jsonl = |f: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(run.join(f))
            .expect(f)
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect()
    };
    let mut delivered = std::collections::HashMap::<(String, String), Vec<String>>::new();
    for s in jsonl("truth/sessions.jsonl").iter().filter(|s| s["direction"] == "local" && s["outcome"] == "delivered") {
        for m in s["messages"].as_array().expect("messages") {
            for r in m["rcpt_to"].as_array().expect("rcpt_to") {
                let key = (m["message_id"].as_str().expect("id").to_string(), r.as_str().expect("rcpt").to_string());
                delivered.entry(key).or_default().push(s["system"].as_str().expect("system").to_string());
            }
        }
    }
    let mut copies = 0;
    for m in jsonl("truth/messages.jsonl") {
        let id = m["message_id"].as_str().expect("message_id");
        for r in m["recipients"].as_array().expect("recipients") {
            let r = r.as_str().expect("rcpt");
            let at = delivered.get(&(id.to_string(), r.to_string())).map(Vec::as_slice).unwrap_or_default();
            assert!(matches!(at, [sys] if r.ends_with(&format!("@{sys}.example"))), "{id} to {r}: delivered at {at:?}");
            copies += 1;
        }
    }
    assert!(copies > 0);

    // The timeline is on one clock: its bins cover the run's wall-clock span (from the
    // manifest's times, not the analysis), and each series adds up to the records counted here.
    let timeline = csv_without(&run.join("analysis/timeline.csv"), &[]);
    let tcol = |name: &str| timeline[0].iter().position(|h| h == name).unwrap_or_else(|| panic!("column {name}"));
    let sum = |name: &str| timeline[1..].iter().map(|r| r[tcol(name)].parse::<u64>().expect(name)).sum::<u64>();
    let submitted = std::fs::read_to_string(run.join("truth/submissions.jsonl")).expect("submissions").lines().count();
    let hop_sessions = jsonl("truth/sessions.jsonl").iter().filter(|s| s["direction"] == "outbound").count();
    let tap_sessions = std::fs::read_to_string(run.join("tap/sessions.jsonl")).expect("tap").lines().count();
    assert_eq!(sum("submitted") as usize, submitted, "submissions in the timeline");
    assert_eq!(sum("hop_sessions") as usize, hop_sessions, "hop sessions in the timeline");
    assert_eq!(sum("tap_sessions") as usize, tap_sessions, "tap sessions in the timeline");
    let rfc3339 = |key: &str| {
        let text = manifest[key].as_str().unwrap_or_else(|| panic!("manifest {key}"));
        let out = Command::new("date").args(["-u", "-d", text, "+%s"]).output().expect("date");
        String::from_utf8_lossy(&out.stdout).trim().parse::<f64>().expect("epoch seconds")
    };
    if clock == Clock::Wall {
        let run_span = rfc3339("ended") - rfc3339("started");
        let bins = timeline.len() - 1;
        let width: f64 = timeline[1][tcol("bin_width_s")].parse().expect("bin width");
        assert!(bins as f64 * width <= run_span + width + 1.0, "{bins} bins of {width} s for a run of {run_span} s");
    } else {
        // Shadow's clock starts at 2000-01-01T00:00:00Z (946684800; its documentation, "Shadow's
        // simulated time"), whatever the wall clock says: every record is dated in that run.
        for s in jsonl("truth/submissions.jsonl") {
            let at = s["submitted_at"].as_f64().expect("submitted_at");
            assert!((946_684_800.0..946_684_800.0 + 86_400.0).contains(&at), "not simulated time: {s}");
        }
    }

    // `analyze` and `report` rebuild from the saved files alone.
    let again = smtplab(&["report", &run.display().to_string()]);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn without_capture_rights_run_says_how_to_fix_and_leaves_nothing() {
    let out = scratch("nobody");
    let status = Command::new("chmod").args(["777", &out.display().to_string()]).status().expect("chmod");
    assert!(status.success());
    // Drop root: user and group nobody, no capabilities.
    let r = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--"])
        .arg(env!("CARGO_BIN_EXE_smtplab"))
        .args(["run", &data("small.toml"), "--out", &out.display().to_string()])
        .env("CI", "1")
        .output()
        .expect("setpriv (util-linux)");
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no permission to capture on lo"), "{stderr}");
    assert!(stderr.contains("setcap cap_net_raw"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(std::fs::read_dir(&out).expect("out").count(), 0, "no half-made run directory");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn scenario_errors_name_file_line_and_key() {
    let dir = scratch("badtoml");
    let path = dir.join("bad.toml");
    let text =
        std::fs::read_to_string(data("small.toml")).expect("small.toml").replace("messages = 40", "mesages = 40");
    std::fs::write(&path, text).expect("write");
    let r = smtplab(&["run", &path.display().to_string(), "--out", &dir.display().to_string()]);
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success());
    assert!(stderr.contains("bad.toml") && stderr.contains("line 11") && stderr.contains("mesages"), "{stderr}");
    let missing = smtplab(&["run", "/nonexistent/scenario.toml"]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read scenario /nonexistent/scenario.toml"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tap_reads_zeeks_smtp_trace() {
    let r = smtplab(&["tap", &data("pcaps/zeek/smtp.pcap"), "--format", "jsonl"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let records: Vec<serde_json::Value> = String::from_utf8_lossy(&r.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let tx: Vec<&serde_json::Value> = records.iter().filter(|r| r["record"] == "transaction").collect();
    // Zeek's baseline (scripts.base.protocols.smtp.basic/smtp.log) has these two rows.
    let first = tx.iter().find(|t| t["helo"] == "GP").expect("GP transaction");
    assert_eq!(first["mailfrom"], "gurpartap@patriots.in");
    assert_eq!(first["rcptto"], serde_json::json!(["raj_deol2002in@yahoo.co.in"]));
    assert_eq!(first["subject"], "SMTP");
    let second = tx.iter().find(|t| t["helo"] == "[192.168.133.100]").expect("second transaction");
    assert_eq!(second["subject"], "Re: Bro SMTP CC Header");
    assert_eq!(second["rcptto"].as_array().map(Vec::len), Some(3));
    assert!(records.iter().any(|r| r["record"] == "session" && r["starttls_offered"] == true));
    // AUTH LOGIN in the clear: mechanism and user name recorded, never the password.
    let auth = records.iter().find(|r| r["record"] == "session" && r["helo"] == "GP").expect("GP session");
    assert_eq!(auth["auth_mechanism"], "LOGIN");
    assert_eq!(auth["auth_user"], "gurpartap@patriots.in");
    assert_eq!(auth["auth_cleartext"], true);
}

#[test]
fn tap_on_a_truncated_capture_keeps_records_and_names_the_offset() {
    let dir = scratch("truncated");
    let bytes = std::fs::read(data("pcaps/zeek/smtp.pcap")).expect("pcap");
    let cut = dir.join("cut.pcap");
    std::fs::write(&cut, &bytes[..bytes.len() - 700]).expect("write");
    let r = smtplab(&["tap", &cut.display().to_string(), "--format", "jsonl"]);
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success());
    assert!(stderr.contains("cut.pcap: corrupt or truncated capture at byte offset"), "{stderr}");
    assert!(String::from_utf8_lossy(&r.stdout).contains("\"record\":\"session\""), "records before the cut kept");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `small.toml` moved to other ports, so tests running at the same time never share a listener
/// or a capture filter.
fn small_on_port(dir: &Path, port_base: u16, extra: &str) -> PathBuf {
    let text = std::fs::read_to_string(data("small.toml"))
        .expect("small.toml")
        .replace("smtp_port = 13525", &format!("smtp_port = {port_base}"))
        .replace("submission_port = 13587", &format!("submission_port = {}", port_base + 1))
        + extra;
    let path = dir.join(format!("small-{port_base}.toml"));
    std::fs::write(&path, text).expect("write scenario");
    path
}

/// The same file and seed give byte-identical truth and the same analysis tables, timing
/// columns aside. Poisson arrivals, attachments and Zipf correspondents: every draw of the
/// generator is exercised.
#[test]
fn same_seed_same_truth_and_tables() {
    let dir = scratch("determinism");
    let scenario = small_on_port(&dir, 14525, "");
    let text = std::fs::read_to_string(&scenario).expect("scenario").replace(
        "users_per_system = 3",
        "users_per_system = 3\nrate = 40.0\nattachment_probability = 0.3\nattachment_median = 3000\n\
         correspondents = \"zipf\"",
    );
    std::fs::write(&scenario, text).expect("write");
    let mut runs = Vec::new();
    for i in 0..2 {
        let out = dir.join(format!("out{i}"));
        let r = smtplab(&["run", &scenario.display().to_string(), "--out", &out.display().to_string()]);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        runs.push(only_child(&out));
    }
    for f in ["truth/messages.jsonl", "truth/messages.parquet"] {
        let a = std::fs::read(runs[0].join(f)).expect("first");
        let b = std::fs::read(runs[1].join(f)).expect("second");
        assert!(a == b, "{f} differs between two runs of the same seed");
    }
    let truth = std::fs::read_to_string(runs[0].join("truth/messages.jsonl")).expect("truth");
    assert!(truth.lines().any(|l| !l.contains("\"scheduled_at\":0.0")), "Poisson arrivals were drawn");
    let tables = |run: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(run.join("analysis"))
            .expect("analysis/")
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".csv").map(str::to_string))
            .collect();
        names.sort();
        names
    };
    let names = tables(&runs[0]);
    assert_eq!(names, tables(&runs[1]));
    assert!(names.len() >= 8, "{names:?}");
    let mut compared = 0;
    for table in names.iter().filter(|t| *t != "timeline") {
        let path = |run: &Path| run.join("analysis").join(format!("{table}.csv"));
        let (a, b) = (seeded_part(&path(&runs[0]), table), seeded_part(&path(&runs[1]), table));
        assert!(a.len() > 1, "{table} has rows");
        assert_eq!(a, b, "analysis/{table}.csv differs between two runs of the same seed");
        compared += 1;
    }
    assert_eq!(compared, names.len() - 1);
    // Attachments travelled, and the tap took them apart on the plaintext lines.
    let tx = std::fs::read_to_string(runs[0].join("tap/transactions.jsonl")).expect("transactions");
    assert!(tx.contains("\"attachments\":[{"), "an attachment was recovered");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Duration mode: Poisson arrivals for a few seconds of real time. The same file and seed give
/// the same message set (byte-identical truth), every arrival inside the duration.
#[test]
fn duration_runs_same_seed_same_truth() {
    let dir = scratch("duration");
    let scenario = small_on_port(&dir, 17525, "");
    let text =
        std::fs::read_to_string(&scenario).expect("scenario").replace("messages = 40", "duration = 3.0\nrate = 8.0");
    std::fs::write(&scenario, text).expect("write");
    let mut truths = Vec::new();
    for i in 0..2 {
        let out = dir.join(format!("out{i}"));
        let r = smtplab(&["run", &scenario.display().to_string(), "--out", &out.display().to_string()]);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        let run = only_child(&out);
        truths.push(std::fs::read(run.join("truth/messages.parquet")).expect("parquet"));
        let lines = std::fs::read_to_string(run.join("truth/messages.jsonl")).expect("truth");
        let scheduled: Vec<f64> = lines
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).expect("json")["scheduled_at"].as_f64().expect("time")
            })
            .collect();
        // About 24 expected; a seeded draw, so the exact count is fixed but not chosen here.
        assert!(scheduled.len() > 5, "{} messages in 3 s at 8/s", scheduled.len());
        assert!(scheduled.iter().all(|&t| (0.0..3.0).contains(&t)), "{scheduled:?}");
        let subs = std::fs::read_to_string(run.join("truth/submissions.jsonl")).expect("submissions");
        assert_eq!(subs.lines().count(), scheduled.len(), "every generated message was submitted");
    }
    assert!(truths[0] == truths[1], "truth/messages.parquet differs between two runs of the same seed");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A tap on one line sees that line only; the others are unobserved.
#[test]
fn tap_placement_on_listed_pairs() {
    let dir = scratch("placement");
    let scenario = small_on_port(&dir, 15525, "\n[tap]\nlinks = \"pairs\"\npairs = [[\"alpha\", \"gamma\"]]\n");
    let out = dir.join("out");
    let r = smtplab(&["run", &scenario.display().to_string(), "--out", &out.display().to_string()]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let run = only_child(&out);
    let rows = csv_without(&run.join("analysis/pairs.csv"), &[]);
    let col = |name: &str| rows[0].iter().position(|h| h == name).expect("column");
    let (s, rcv, m, seen, rec) =
        (col("sender_system"), col("receiver_system"), col("messages"), col("sessions_seen"), col("content_recovered"));
    for row in &rows[1..] {
        let tapped = matches!((row[s].as_str(), row[rcv].as_str()), ("alpha", "gamma") | ("gamma", "alpha"));
        if tapped {
            assert_eq!(row[seen], row[col("sessions_true")], "{row:?}");
            assert_eq!(row[rec], row[m], "plaintext line, tapped: all content {row:?}");
        } else {
            assert_eq!(row[seen], "0", "untapped line seen: {row:?}");
            assert_eq!(row[rec], "0", "{row:?}");
        }
    }
    let links: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("truth/tap_links.json")).expect("tap_links"))
            .expect("json");
    let tapped: Vec<&serde_json::Value> =
        links.as_array().expect("array").iter().filter(|l| l["tapped"] == true).collect();
    assert_eq!(tapped.len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `tap.access_lines` captures the users' submissions to their own systems (the injector's
/// sessions to the submission port) beside the lines between systems: the tap writes one session
/// record per submission session the relays recorded (their own `truth/sessions.jsonl`), with
/// and without a placement of the tap on system pairs.
#[test]
fn access_lines_capture_the_submission_sessions() {
    let dir = scratch("access-lines");
    for (n, placement) in ["", "links = \"pairs\"\npairs = [[\"alpha\", \"gamma\"]]\n"].into_iter().enumerate() {
        let scenario = small_on_port(&dir, 28525, &format!("\n[tap]\naccess_lines = true\n{placement}"));
        let out = dir.join(format!("out{n}"));
        let r = smtplab(&["run", &scenario.display().to_string(), "--out", &out.display().to_string()]);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        let run = only_child(&out);
        let lines = |path: &str| -> Vec<serde_json::Value> {
            std::fs::read_to_string(run.join(path))
                .expect(path)
                .lines()
                .map(|l| serde_json::from_str(l).expect("JSON line"))
                .collect()
        };
        let submitted = lines("truth/sessions.jsonl").iter().filter(|s| s["direction"] == "submission").count();
        let seen = lines("tap/sessions.jsonl").iter().filter(|s| s["id.resp_p"] == 28526).count();
        assert!(submitted > 0, "the relays recorded submission sessions");
        assert_eq!(seen, submitted, "placement {placement:?}: every submission session captured");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A sweep runs every point × seed into its own directory, in parallel, and resumes.
#[test]
fn sweep_runs_points_and_resumes() {
    let dir = scratch("sweep");
    let scenario = small_on_port(&dir, 16525, "\n[sweep]\nseeds = [1, 2]\n\"systems.2.starttls\" = [false, true]\n");
    let text = std::fs::read_to_string(&scenario).expect("sweep file").replace("messages = 40", "messages = 12");
    std::fs::write(&scenario, text).expect("write");
    let out = dir.join("sweeps");
    let sweep = out.join("cli-small");

    // --plan: the point files and their commands, nothing run; one point is then run by its
    // command line, as a cluster scheduler would.
    let plan = smtplab(&["sweep", &scenario.display().to_string(), "--out", &out.display().to_string(), "--plan"]);
    assert!(plan.status.success(), "{}", String::from_utf8_lossy(&plan.stderr));
    let listed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sweep.join("sweep.json")).expect("sweep.json")).expect("json");
    let points = listed["points"].as_array().expect("points");
    assert_eq!(points.len(), 4);
    assert!(points.iter().all(|p| !sweep.join(p["dir"].as_str().expect("dir")).exists()), "--plan runs nothing");
    let command = points[0]["command"].as_str().expect("command");
    let words: Vec<&str> = command.split_whitespace().collect();
    assert_eq!(words[..2], ["smtplab", "run"], "{command}");
    let one = Command::new(env!("CARGO_BIN_EXE_smtplab")).args(&words[1..]).env("CI", "1").output().expect("run");
    assert!(one.status.success(), "{command}: {}", String::from_utf8_lossy(&one.stderr));

    let args = ["sweep", &scenario.display().to_string(), "--out", &out.display().to_string(), "--jobs", "2"];
    let r = smtplab(&args);
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(r.status.success(), "{stderr}");
    assert!(stderr.contains("4 points (1 keys × 2 seeds), 3 to run, 1 already complete"), "{stderr}");
    for point in ["systems.2.starttls=false-s1", "systems.2.starttls=true-s2"] {
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(sweep.join(point).join("manifest.json")).expect("manifest"))
                .expect("json");
        assert_eq!(m["status"], "complete", "{point}");
        assert!(sweep.join(point).join("point.json").exists());
    }
    let again = smtplab(&args);
    assert!(String::from_utf8_lossy(&again.stderr).contains("0 to run, 4 already complete"));
    // Other ports (--jobs) are the same points; a changed key outside the grid is not.
    let jobs1 = smtplab(&args[..4]);
    assert!(String::from_utf8_lossy(&jobs1.stderr).contains("0 to run, 4 already complete"));
    let text = std::fs::read_to_string(&scenario).expect("sweep file").replace("messages = 12", "messages = 10");
    std::fs::write(&scenario, text).expect("write");
    let changed = smtplab(&args);
    let stderr = String::from_utf8_lossy(&changed.stderr);
    assert!(changed.status.success(), "{stderr}");
    assert!(stderr.contains("4 to run, 0 already complete"), "{stderr}");
    assert_eq!(stderr.matches("the point's scenario changed since it ran").count(), 4, "{stderr}");
    let truth = std::fs::read_to_string(sweep.join("systems.2.starttls=true-s2/truth/messages.jsonl")).expect("truth");
    assert_eq!(truth.lines().count(), 10, "the point ran with the new messages");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Workers' ports that would pass 65535 are an error, not an overflow.
#[test]
fn sweep_ports_beyond_65535_are_refused() {
    let dir = scratch("sweep-ports");
    let scenario = small_on_port(&dir, 65530, "\n[sweep]\nseeds = [1, 2]\n");
    let out = dir.join("sweeps").display().to_string();
    let r = smtplab(&["sweep", &scenario.display().to_string(), "--out", &out, "--jobs", "2", "--plan"]);
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success() && !stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("--jobs 2: worker 1's ports") && stderr.contains("use fewer jobs"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A run that fails after it started says so in its manifest, with the error; `--run-dir` then
/// replaces that failed run, but refuses a directory that is not a run, deleting nothing.
#[test]
fn a_failed_run_is_marked_failed_and_run_dir_keeps_what_is_not_a_run() {
    let dir = scratch("failed");
    // beta's SMTP port is taken (a free port the system picks, held here): its relay cannot start.
    let taken = std::net::TcpListener::bind("127.0.52.1:0").expect("bind");
    let port = taken.local_addr().expect("address").port();
    let scenario = small_on_port(&dir, port, "\n[tap]\ncapture = \"none\"\n");
    let run_dir = dir.join("run");
    let (s, r) = (scenario.display().to_string(), run_dir.display().to_string());
    let out = smtplab(&["run", &s, "--run-dir", &r]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && !stderr.contains("panicked"), "{stderr}");
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("manifest.json")).expect("manifest")).expect("json");
    assert_eq!(m["status"], "failed", "{m}");
    assert!(m["error"].as_str().is_some_and(|e| e.contains(&format!("127.0.52.1:{port}"))), "{m}");
    // The failed run is replaced by the next attempt (which fails the same way).
    let again = smtplab(&["run", &s, "--run-dir", &r]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("replacing the unfinished run"));

    let mine = dir.join("mine");
    std::fs::create_dir_all(&mine).expect("dir");
    std::fs::write(mine.join("notes.txt"), "keep me").expect("file");
    let refused = smtplab(&["run", &s, "--run-dir", &mine.display().to_string()]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("--run-dir {}", mine.display())) && stderr.contains("nothing was changed"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(mine.join("notes.txt")).expect("kept"), "keep me");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Ctrl-C stops the run cleanly: relays stopped, capture kept and dissected, status recorded.
#[test]
fn interrupt_keeps_what_was_captured() {
    let dir = scratch("interrupt");
    // Slow Poisson arrivals so the run is still submitting when interrupted.
    let scenario = small_on_port(&dir, 19525, "");
    let text =
        std::fs::read_to_string(&scenario).expect("scenario").replace("messages = 40", "messages = 400\nrate = 20.0");
    std::fs::write(&scenario, text).expect("write");
    let out = dir.join("out");
    let child = Command::new(env!("CARGO_BIN_EXE_smtplab"))
        .args(["run", &scenario.display().to_string(), "--out", &out.display().to_string()])
        .env("CI", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start");
    std::thread::sleep(std::time::Duration::from_secs(3));
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill -INT");
    assert!(status.success());
    let r = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(130), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let run = only_child(&out);
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("manifest.json")).expect("manifest")).expect("json");
    assert_eq!(m["status"], "interrupted");
    let truth = std::fs::read_to_string(run.join("truth/messages.jsonl")).expect("truth");
    let n = truth.lines().count();
    assert!(n > 0 && n < 400, "only what was submitted is truth: {n}");
    // The narration says the run was cut short, with the count the truth holds.
    assert!(!stderr.contains("all messages submitted"), "{stderr}");
    assert!(stderr.contains(&format!("interrupted after {n} messages submitted")), "{stderr}");
    assert!(std::fs::metadata(run.join("capture.pcap")).expect("capture kept").len() > 24);
    assert!(run.join("tap/sessions.jsonl").exists(), "the capture was dissected");
    let _ = std::fs::remove_dir_all(&dir);
}

fn scratch(name: &str) -> PathBuf {
    common::scratch("cli", name)
}

/// The post-quantum hybrid key exchange through a whole scenario: alpha and beta allow only
/// X25519MLKEM768, so every STARTTLS session between them uses it. The tap reads the group the
/// server chose, and tshark (a dissector of its own) sees the same key share on the wire:
/// IANA's 0x11EC = 4588. The same group on the ring provider is refused before the run starts.
#[test]
fn hybrid_post_quantum_group_end_to_end() {
    let dir = scratch("pq");
    let scenario = small_on_port(&dir, 17625, "");
    let text = std::fs::read_to_string(&scenario)
        .expect("scenario")
        .replace("starttls = true", "starttls = true\ntls = { groups = [\"X25519MLKEM768\"] }");
    std::fs::write(&scenario, text).expect("write");
    let out = dir.join("out");
    let r = smtplab(&["run", &scenario.display().to_string(), "--out", &out.display().to_string()]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let run = only_child(&out);
    let tap = std::fs::read_to_string(run.join("tap/sessions.jsonl")).expect("tap sessions");
    let tls: Vec<serde_json::Value> = tap
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
        .filter(|s| s["starttls_used"] == true)
        .collect();
    assert!(!tls.is_empty(), "alpha and beta exchanged mail under STARTTLS");
    for s in &tls {
        assert_eq!(s["tls_group"], "X25519MLKEM768", "{s}");
        assert_eq!(s["tls_version"], "TLSv1.3", "{s}");
    }
    let shark = Command::new("tshark")
        .args(["-r", &run.join("capture.pcap").display().to_string(), "-d", "tcp.port==17625,smtp"])
        .args(["-Y", "tls.handshake.type == 2", "-T", "fields", "-e", "tls.handshake.extensions_key_share_group"])
        .output()
        .expect("tshark runs (scripts/test installs it)");
    let groups: Vec<String> = String::from_utf8_lossy(&shark.stdout).lines().map(str::to_string).collect();
    assert_eq!(groups.len(), tls.len(), "one ServerHello per STARTTLS session: {groups:?}");
    assert!(groups.iter().all(|g| g == "4588"), "{groups:?}");

    let ring = std::fs::read_to_string(&scenario).expect("scenario").replacen(
        "groups = [\"X25519MLKEM768\"]",
        "provider = \"ring\", groups = [\"X25519MLKEM768\"]",
        1,
    );
    std::fs::write(&scenario, ring).expect("write");
    let r = smtplab(&["run", &scenario.display().to_string(), "--out", &dir.join("ring").display().to_string()]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success(), "ring has no hybrid group");
    assert!(err.contains("small-17625.toml") && err.contains("aws-lc-rs"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
