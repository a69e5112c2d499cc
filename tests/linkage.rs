//! Linkage across hops, end to end: real relays on loopback, every user's access line tapped
//! with the backbone, the live capture dissected, `smtplab run` analysing it. What the
//! eavesdropper links is checked against the ground truth of each run:
//!
//! - plaintext everywhere: it reads MAIL FROM, RCPT TO and Message-ID, so every message's
//!   anonymity set is exactly its own hops and user → recipient-system precision and recall are 1;
//! - STARTTLS with one message in flight at a time: timing and size alone single out the hop;
//! - STARTTLS with many users submitting at once: the sets grow and precision falls.
//!
//! Addresses 127.0.73.0/24 (systems .1–.3, users from .100), ports 27300–27329. Needs root for
//! the live capture (CI runs as root).

mod common;

use common::{require_root, split_csv};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Three systems, every user's line and every backbone line tapped; `extra` sets the traffic.
fn scenario(name: &str, port: u16, starttls: bool, traffic: &str) -> String {
    let systems: String = ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, n)| {
            format!(
                "[[systems]]\nname = \"{n}\"\ndomain = \"{n}.example\"\naddress = \"127.0.73.{}\"\nstarttls = {starttls}\n\n",
                i + 1
            )
        })
        .collect();
    format!(
        "[scenario]\nname = \"{name}\"\nseed = 5\ndrain_timeout = 30\n\n[network]\nsmtp_port = {port}\n\
         submission_port = {}\n\n[traffic]\n{traffic}\nmax_recipients = 1\nintra_system_share = 0.0\n\n\
         [tap]\naccess_share = 1.0\naccess_addresses = \"127.0.73.100\"\n\n{systems}",
        port + 1
    )
}

/// Runs the scenario with `smtplab run` and returns its run directory.
fn run(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write scenario");
    let out = dir.join(format!("runs-{name}"));
    let r = Command::new(env!("CARGO_BIN_EXE_smtplab"))
        .args(["run", &path.display().to_string(), "--out", &out.display().to_string()])
        .env("CI", "1")
        .output()
        .expect("run smtplab");
    assert!(r.status.success(), "{name}: smtplab run failed:\n{}", String::from_utf8_lossy(&r.stderr));
    let runs: Vec<PathBuf> = std::fs::read_dir(&out).expect("out").flatten().map(|e| e.path()).collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs[0].clone()
}

fn table(path: &Path) -> Vec<HashMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut rows = text.lines().map(split_csv);
    let header = rows.next().expect("header");
    rows.map(|r| header.iter().cloned().zip(r).collect()).collect()
}

fn num(row: &HashMap<String, String>, col: &str) -> f64 {
    row[col].parse().unwrap_or_else(|_| panic!("{col}: {row:?}"))
}

/// Ground truth: each message's sender system and its recipient systems other than the sender's.
fn truth(run: &Path) -> BTreeMap<String, (String, BTreeSet<String>)> {
    let text = std::fs::read_to_string(run.join("truth/messages.jsonl")).expect("truth");
    text.lines()
        .map(|l| {
            let m: serde_json::Value = serde_json::from_str(l).expect("truth line");
            let sender = m["sender_system"].as_str().expect("sender").to_string();
            let rcpt = m["recipient_systems"]
                .as_array()
                .expect("systems")
                .iter()
                .filter_map(|s| s.as_str())
                .filter(|s| *s != sender)
                .map(str::to_string)
                .collect();
            (m["message_id"].as_str().expect("id").to_string(), (sender, rcpt))
        })
        .collect()
}

/// Every message was seen on its user's access line (all lines tapped), and the set of each
/// holds its own hops (the backbone is tapped whole): one row per message of the truth, with
/// `true_candidates` = its recipient systems and its guess covering them.
fn check_every_message_found(run: &Path) -> Vec<HashMap<String, String>> {
    let truth = truth(run);
    let rows = table(&run.join("analysis/linkage.csv"));
    assert_eq!(rows.len(), truth.len(), "one row per submitted message");
    for r in &rows {
        let (sender, rcpt) = &truth[&r["message_id"]];
        assert_eq!(&r["sender_system"], sender, "{r:?}");
        assert_eq!(num(r, "true_candidates") as usize, rcpt.len(), "its own hop is a candidate: {r:?}");
        assert!(num(r, "anonymity_set") >= rcpt.len() as f64, "{r:?}");
        assert_eq!(num(r, "correct_systems") as usize, rcpt.len(), "{r:?}");
    }
    rows
}

fn summary(run: &Path, scope: &str) -> HashMap<String, String> {
    table(&run.join("analysis/linkage_summary.csv"))
        .into_iter()
        .find(|r| r["scope"] == scope)
        .unwrap_or_else(|| panic!("no {scope} row"))
}

#[test]
fn plaintext_backbone_gives_up_every_user_to_system_link() {
    require_root("the live tap");
    let dir = common::scratch("linkage", "plaintext");
    let run = run(&dir, "link-plain", &scenario("link-plain", 27300, false, "messages = 24\nusers_per_system = 4"));
    let rows = check_every_message_found(&run);
    for r in &rows {
        // MAIL FROM and Message-ID single out the one hop; RCPT TO names its system.
        assert_eq!(r["anonymity_set"], "1", "{r:?}");
        assert_eq!(r["link_tls"], "plaintext", "{r:?}");
        assert_eq!(r["guessed_systems"], r["recipient_systems"], "{r:?}");
    }
    let s = summary(&run, "plaintext");
    assert_eq!((num(&s, "precision"), num(&s, "recall")), (1.0, 1.0), "{s:?}");
    for u in table(&run.join("analysis/linkage_users.csv")) {
        assert_eq!((u["precision"].as_str(), u["recall"].as_str()), ("1.0", "1.0"), "{u:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// One message at a time (Poisson arrivals at 0.08/s: gaps checked below to exceed the
/// adversary's 10 s window plus delivery), over STARTTLS: the only outbound session of the
/// sender's system after a submission is the message's own, so each set is its one hop.
/// Then 40 messages from 15 users at once: each set holds its own hop and others too.
#[test]
fn starttls_timing_links_a_lone_message_and_crowds_hide_it() {
    require_root("the live tap");
    let dir = common::scratch("linkage", "tls");
    let lone = run(&dir, "link-lone", &scenario("link-lone", 27310, true, "messages = 4\nrate = 0.08"));
    let subs = std::fs::read_to_string(lone.join("truth/submissions.jsonl")).expect("submissions");
    let mut times: Vec<f64> = subs
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("line")["submitted_at"].as_f64().expect("time"))
        .collect();
    times.sort_by(f64::total_cmp);
    let lone_in_flight = times.windows(2).all(|w| w[1] - w[0] > 11.0);
    // The premise of this check, not a condition to skip it on: if the seeded arrivals ever put
    // two submissions within the 10 s window (plus slack), choose a seed or rate that does not.
    assert!(lone_in_flight, "the lone-message scenario needs submissions more than 11 s apart: {times:?}");
    let rows = check_every_message_found(&lone);
    for r in &rows {
        assert_eq!(r["anonymity_set"], "1", "a lone message in flight: {r:?}");
        assert_eq!(r["link_tls"], "tls", "{r:?}");
        assert_eq!(r["entropy_bits"], "0.0", "{r:?}");
    }
    let s = summary(&lone, "tls");
    assert_eq!((num(&s, "precision"), num(&s, "recall")), (1.0, 1.0), "{s:?}");

    let crowd = run(
        &dir,
        "link-crowd",
        &scenario(
            "link-crowd",
            27320,
            true,
            "messages = 40\nusers_per_system = 5\nsize_median = 3000\nsize_sigma = 0.3",
        ),
    );
    let rows = check_every_message_found(&crowd);
    assert!(rows.iter().all(|r| r["link_tls"] == "tls"));
    let s = summary(&crowd, "tls");
    eprintln!("crowd: {s:?}");
    assert!(num(&s, "median_anonymity_set") > 1.0, "many users at once hide each other: {s:?}");
    assert!(num(&s, "mean_entropy_bits") > 0.0, "{s:?}");
    assert!(num(&s, "precision") < 1.0, "{s:?}");
    assert_eq!(num(&s, "recall"), 1.0, "the true system is always among the guesses: {s:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
