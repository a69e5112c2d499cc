//! Helpers shared by the binary's integration tests (each test file compiles this module on its
//! own and uses a part of it, hence the allowance).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// A fresh, empty scratch directory for one test of one test file, in this process.
pub fn scratch(file: &str, name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("smtplab-{file}-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).expect("scratch directory");
    p
}

/// Whether this process runs as root (live capture and network namespaces need it; CI is root).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}

/// Fails the calling test, with the reason, when it does not run as root: a test that needs
/// root never passes without having run (CI runs as root).
pub fn require_root(what: &str) {
    assert!(
        is_root(),
        "{what} needs root or CAP_NET_RAW/CAP_NET_ADMIN: run the tests as root (scripts/test does in CI)"
    );
}

/// One CSV line's fields, RFC 4180 quoting undone (lists and JSON are quoted in the tables).
pub fn split_csv(line: &str) -> Vec<String> {
    let (mut out, mut field, mut quoted, mut chars) = (Vec::new(), String::new(), false, line.chars().peekable());
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut field)),
            _ => field.push(c),
        }
    }
    out.push(field);
    out
}

pub fn csv_without(path: &Path, drop: &[&str]) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let rows: Vec<Vec<String>> = text.lines().map(split_csv).collect();
    let keep: Vec<usize> = (0..rows[0].len()).filter(|&i| !drop.contains(&rows[0][i].as_str())).collect();
    rows.into_iter().map(|row| keep.iter().map(|&i| row[i].clone()).collect()).collect()
}

/// Columns of the analysis tables that are not a function of the scenario file and seed, and
/// are left out of the determinism checks (ANALYSIS.md, "Determinism", says the same):
///
/// * timing: wall-clock times and durations; the order of sessions and hops, which is the order
///   in which sessions started (`session_index`, `hop_row`), so those two tables are compared
///   as sorted rows; the whole `timeline` table (its bins are laid over wall-clock times).
/// * TLS handshake sizes, on STARTTLS rows only: each run makes fresh ECDSA keys (DER signatures
///   of 70 to 72 bytes), and whether a connection resumes an earlier TLS session (no certificate
///   sent: about 830 bytes fewer from the server) depends on whether that earlier session's
///   ticket had arrived when it started, a race. The client's application data is unaffected, so
///   `tls_app_bytes_orig` and the estimates built on it are compared.
const TIMING: &[(&str, &[&str])] = &[
    ("sessions", &["session_index", "started_at", "ended_at", "tap_ts", "duration"]),
    ("hops", &["hop_row", "session_index"]),
    ("summary", SUMMARY_TIMING),
    // A sweep's `runs` table is its runs' summaries, one row each.
    ("runs", SUMMARY_TIMING),
    (
        "tls_cost",
        &[
            "plain_duration_ms_mean",
            "plain_duration_ms_median",
            "tls_duration_ms_mean",
            "tls_duration_ms_median",
            "duration_ratio",
        ],
    ),
];
/// The summary's columns that depend on when things happened: delivery delays, and the linkage
/// figures, which rest on when each session started (the matching window).
const SUMMARY_TIMING: &[&str] = &[
    "delivery_latency_p50",
    "delivery_latency_p99",
    "delivery_latency_max",
    "link_messages",
    "link_median_anonymity_set",
    "link_mean_entropy_bits",
    "link_precision",
    "link_recall",
];
const SUMMARY_TLS_SIZES: &[&str] = &["wire_bytes", "cover_wire_bytes", "cover_wire_share", "wire_per_mail_byte"];
const TLS_SIZES: &[(&str, &[&str])] = &[
    ("pairs", &["bytes_seen"]),
    ("summary", SUMMARY_TLS_SIZES),
    ("runs", SUMMARY_TLS_SIZES),
    ("sessions", &["wire_bytes", "tls_app_bytes_resp"]),
    ("tls_cost", &["tls_wire_bytes_mean", "tls_overhead_bytes_mean", "tls_extra_bytes_mean", "wire_ratio"]),
];
const ORDERED_BY_TIME: &[&str] = &["sessions", "hops"];

/// An analysis table without the columns that may differ between two runs of the same seed.
pub fn seeded_part(path: &Path, table: &str) -> Vec<Vec<String>> {
    let of = |list: &[(&str, &'static [&'static str])]| -> &'static [&'static str] {
        list.iter().find(|(t, _)| *t == table).map(|(_, c)| *c).unwrap_or(&[])
    };
    let mut rows = csv_without(path, of(TIMING));
    // TLS sizes are blanked on rows whose session(s) used STARTTLS; plaintext rows keep them.
    let tls_col = rows[0].iter().position(|h| h == "starttls");
    let blank: Vec<usize> = (0..rows[0].len()).filter(|&i| of(TLS_SIZES).contains(&rows[0][i].as_str())).collect();
    for row in rows.iter_mut().skip(1) {
        if tls_col.is_none_or(|c| row[c] == "true") {
            for &i in &blank {
                row[i] = "(TLS size)".into();
            }
        }
    }
    // A sweep's `points` has one row per metric: those of the columns above lose their values.
    if table == "points"
        && let Some(m) = rows[0].iter().position(|h| h == "metric")
    {
        let varying: Vec<&str> = [SUMMARY_TIMING, SUMMARY_TLS_SIZES].concat();
        let values: Vec<usize> = (0..rows[0].len())
            .filter(|&i| ["n", "mean", "sd", "ci_low", "ci_high", "ci_half_width"].contains(&rows[0][i].as_str()))
            .collect();
        for row in rows.iter_mut().skip(1) {
            if varying.contains(&row[m].as_str()) {
                for &i in &values {
                    row[i] = "(varies)".into();
                }
            }
        }
    }
    if ORDERED_BY_TIME.contains(&table) {
        rows[1..].sort();
    }
    rows
}
