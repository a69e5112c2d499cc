//! The `smtplab` binary as a user runs it: a scenario end to end with a live capture, the
//! permission error, scenario errors, and the tap on real captures from Zeek's test suite.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn smtplab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_smtplab")).args(args).env("CI", "1").output().expect("run smtplab")
}

fn scratch(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("smtplab-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).expect("scratch");
    p
}

fn data(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(rel).display().to_string()
}

fn only_child(dir: &Path) -> PathBuf {
    let entries: Vec<PathBuf> = std::fs::read_dir(dir).expect("out dir").flatten().map(|e| e.path()).collect();
    assert_eq!(entries.len(), 1, "one run directory in {}: {entries:?}", dir.display());
    entries[0].clone()
}

/// The acceptance facts, read from the analysis table the user gets.
#[test]
fn run_small_scenario_end_to_end() {
    let out = scratch("run");
    let r = smtplab(&["run", &data("small.toml"), "--out", &out.display().to_string()]);
    let stderr = String::from_utf8_lossy(&r.stderr);
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert!(r.status.success(), "smtplab run failed:\n{stderr}\n{stdout}");
    assert!(stdout.contains("alpha -> beta"), "the per-pair table is printed:\n{stdout}");
    let run = only_child(&out);
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

    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("manifest.json")).expect("manifest")).expect("json");
    assert_eq!(manifest["status"], "complete");
    assert!(manifest["files"]["capture.pcap"].is_string(), "file hashes in the manifest");
    for f in ["truth/messages.parquet", "truth/hops.parquet", "tap/sessions.parquet", "report/pairs.png", "keys.log"] {
        assert!(run.join(f).exists(), "{f}");
    }

    // `analyze` and `report` rebuild from the saved files alone.
    let again = smtplab(&["report", &run.display().to_string()]);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    let _ = std::fs::remove_dir_all(&out);
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
