//! Scale benchmark of the analysis: a synthetic run with 1 million hops and 10 million tap
//! transaction records, written directly as the Parquet tables `ingest` would produce, then
//! analysed.
//!
//! ```sh
//! cargo build --release -p smtplab-analysis --example scale
//! target/release/examples/scale generate /tmp/smtplab-scale        # once: writes the tables
//! /usr/bin/time -v target/release/examples/scale analyze /tmp/smtplab-scale
//! ```
//!
//! `generate` takes `--hops N` and `--transactions M` (defaults 1,000,000 and 10,000,000).
//!
//! The run has 10 systems, 5 with STARTTLS (`may`) and 5 without; each hop is its own session
//! (as smtplab's relay does), client ports wrap at 60,000 so 4-tuples are reused, 2% of hop
//! sessions are not captured, and one plaintext hop in 20 is recovered with a wrong hash
//! (headers only). Transactions beyond those of the plaintext hops belong to 1 million tap
//! sessions unrelated to any hop (other traffic on the tapped network): the analysis has to
//! find the hop traffic among them.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use analysis::frames;
use analysis::{RunLayout, SystemInfo};
use polars::prelude::*;
use records::{HopMessage, SessionRecord, TapSession, TapTransaction, TruthMessage};

const SYSTEMS: usize = 10;
const TLS_SYSTEMS: usize = 5;
const T0: f64 = 1_800_000_000.0;
const CHUNK: usize = 500_000;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: scale generate DIR [--hops N] [--transactions M] | scale analyze DIR";
    let (Some(mode), Some(dir)) = (args.first(), args.get(1)) else {
        eprintln!("{usage}");
        return ExitCode::from(2);
    };
    let flag = |name: &str, default: usize| -> usize {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let dir = PathBuf::from(dir);
    let result = match mode.as_str() {
        "generate" => generate(&dir, flag("--hops", 1_000_000), flag("--transactions", 10_000_000)),
        "analyze" => run_analysis(&dir),
        _ => Err(usage.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_analysis(dir: &Path) -> Result<(), String> {
    let start = Instant::now();
    let summary = analysis::analyze(dir).map_err(|e| e.to_string())?;
    let secs = start.elapsed().as_secs_f64();
    print!("{}", analysis::format_table(&summary));
    println!("analysis of {} hop messages took {secs:.2} s", summary.hop_messages);
    Ok(())
}

fn system(i: usize) -> String {
    format!("s{i}")
}

fn address(i: usize) -> String {
    format!("127.0.{}.1", i + 1)
}

struct Hop {
    sender: usize,
    receiver: usize,
    tls: bool,
    seen: bool,
    port: u16,
    bytes: u64,
    started: f64,
}

/// A cheap hash of `i`, so that "every 50th" does not line up with the 10 senders.
fn mix(i: usize) -> u64 {
    (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 17
}

fn hop(i: usize) -> Hop {
    let sender = i % SYSTEMS;
    let receiver = (sender + 1 + (i / SYSTEMS) % (SYSTEMS - 1)) % SYSTEMS;
    Hop {
        sender,
        receiver,
        tls: sender < TLS_SYSTEMS && receiver < TLS_SYSTEMS,
        seen: !mix(i).is_multiple_of(50),
        port: 1024 + (i % 60_000) as u16,
        bytes: 500 + (i as u64 * 7919) % 50_000,
        started: T0 + i as f64 * 0.001,
    }
}

fn message_id(i: usize, h: &Hop) -> String {
    format!("m{i}@{}.example", system(h.sender))
}
fn sender(i: usize, h: &Hop) -> String {
    format!("u{}@{}.example", i % 100, system(h.sender))
}
fn recipient(i: usize, h: &Hop) -> String {
    format!("u{}@{}.example", (i / 7) % 100, system(h.receiver))
}
fn sha(i: usize) -> String {
    format!("{:064x}", (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835))
}

/// Writes `frames` (built chunk by chunk) into one Parquet file.
fn write_chunks(
    path: &Path,
    total: usize,
    mut chunk: impl FnMut(std::ops::Range<usize>) -> PolarsResult<DataFrame>,
) -> Result<(), String> {
    let err = |e: PolarsError| format!("{}: {e}", path.display());
    let file = File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let first = chunk(0..CHUNK.min(total)).map_err(err)?;
    let mut writer = ParquetWriter::new(file).batched(first.schema()).map_err(err)?;
    writer.write_batch(&first).map_err(err)?;
    let mut start = CHUNK.min(total);
    while start < total {
        let end = (start + CHUNK).min(total);
        writer.write_batch(&chunk(start..end).map_err(err)?).map_err(err)?;
        start = end;
    }
    writer.finish().map_err(err)?;
    Ok(())
}

fn generate(dir: &Path, hops: usize, transactions: usize) -> Result<(), String> {
    let start = Instant::now();
    let layout = RunLayout::new(dir);
    for d in [layout.truth_dir(), layout.tap_dir()] {
        std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let systems: Vec<SystemInfo> = (0..SYSTEMS)
        .map(|i| SystemInfo {
            name: system(i),
            domain: format!("{}.example", system(i)),
            address: address(i),
            starttls: i < TLS_SYSTEMS,
            ..Default::default()
        })
        .collect();
    let json = serde_json::to_string_pretty(&systems).map_err(|e| e.to_string())?;
    std::fs::write(layout.truth_systems_json(), json).map_err(|e| e.to_string())?;

    write_chunks(&layout.truth_messages_parquet(), hops, |range| {
        let rows: Vec<TruthMessage> = range
            .map(|i| {
                let h = hop(i);
                TruthMessage {
                    seq: i as u64,
                    message_id: message_id(i, &h),
                    sender: sender(i, &h),
                    sender_system: system(h.sender),
                    recipients: vec![recipient(i, &h)],
                    recipient_systems: vec![system(h.receiver)],
                    subject: format!("subject {i}"),
                    bytes: h.bytes - 200,
                    sha256: sha(i + 1),
                    scheduled_at: h.started - 0.05 - T0,
                    requiretls: false,
                }
            })
            .collect();
        frames::truth_messages_frame(&rows)
    })?;
    write_chunks(&layout.truth_submissions_parquet(), hops, |range| {
        let rows: Vec<records::Submission> =
            range.map(|i| records::Submission { seq: i as u64, submitted_at: hop(i).started - 0.05 }).collect();
        frames::truth_submissions_frame(&rows)
    })?;

    write_chunks(&layout.truth_hops_parquet(), hops, |range| {
        let base = range.start;
        let rows: Vec<SessionRecord> = range
            .map(|i| {
                let h = hop(i);
                SessionRecord {
                    direction: frames::OUTBOUND.to_string(),
                    system: system(h.sender),
                    peer_system: Some(system(h.receiver)),
                    started_at: h.started,
                    ended_at: h.started + if h.tls { 0.02 } else { 0.01 },
                    local_addr: format!("{}:{}", address(h.sender), h.port),
                    peer_addr: format!("{}:2525", address(h.receiver)),
                    starttls_used: h.tls,
                    messages: vec![HopMessage {
                        message_id: message_id(i, &h),
                        mail_from: sender(i, &h),
                        rcpt_to: vec![recipient(i, &h)],
                        bytes: h.bytes,
                        sha256: sha(i),
                        reply: 250,
                        ..Default::default()
                    }],
                    outcome: "delivered".to_string(),
                    ..Default::default()
                }
            })
            .collect();
        let mut df = frames::truth_hops_frame(&rows)?;
        // session_index is the position in truth/sessions.jsonl: offset by the chunk.
        let idx: Vec<u64> = (0..rows.len()).map(|k| (base + k) as u64).collect();
        df.with_column(Column::new("session_index".into(), idx))?;
        Ok(df)
    })?;

    // Tap sessions: one per captured hop, then the unrelated ones.
    let unrelated = hops;
    write_chunks(&layout.tap_sessions_parquet(), hops + unrelated, |range| {
        let rows: Vec<TapSession> = range
            .filter_map(|i| {
                if i < hops {
                    let h = hop(i);
                    h.seen.then(|| TapSession {
                        ts: h.started + 0.0001,
                        uid: format!("H{i}"),
                        orig_h: address(h.sender),
                        orig_p: h.port,
                        resp_h: address(h.receiver),
                        resp_p: 2525,
                        duration: if h.tls { 0.02 } else { 0.01 },
                        starttls_offered: h.receiver < TLS_SYSTEMS,
                        starttls_command: h.tls,
                        starttls_used: h.tls,
                        orig_bytes: h.bytes + if h.tls { 1_700 } else { 400 },
                        resp_bytes: 300,
                        tls_app_bytes_orig: if h.tls { h.bytes + 315 } else { 0 },
                        transactions: u64::from(!h.tls),
                        ..Default::default()
                    })
                } else {
                    let j = i - hops;
                    Some(TapSession {
                        ts: T0 + j as f64 * 0.001,
                        uid: format!("U{j}"),
                        orig_h: format!("10.{}.{}.{}", j % 250, (j / 250) % 250, 1 + j % 200),
                        orig_p: 1024 + (j % 60_000) as u16,
                        resp_h: "10.255.0.25".to_string(),
                        resp_p: 25,
                        duration: 0.5,
                        orig_bytes: 200_000,
                        resp_bytes: 3_000,
                        transactions: 9,
                        ..Default::default()
                    })
                }
            })
            .collect();
        frames::tap_sessions_frame(&rows)
    })?;

    let plain_hops: Vec<usize> = (0..hops)
        .filter(|&i| {
            let h = hop(i);
            h.seen && !h.tls
        })
        .collect();
    let other = transactions.saturating_sub(plain_hops.len());
    let per_session = other.div_ceil(unrelated.max(1)).max(1);
    write_chunks(&layout.tap_transactions_parquet(), plain_hops.len() + other, |range| {
        let rows: Vec<TapTransaction> = range
            .map(|k| {
                if let Some(&i) = plain_hops.get(k) {
                    let h = hop(i);
                    TapTransaction {
                        ts: h.started + 0.001,
                        uid: format!("H{i}"),
                        orig_h: address(h.sender),
                        orig_p: h.port,
                        resp_h: address(h.receiver),
                        resp_p: 2525,
                        trans_depth: 1,
                        mailfrom: Some(sender(i, &h)),
                        rcptto: vec![recipient(i, &h)],
                        from: Some(format!("\"User\" <{}>", sender(i, &h))),
                        to: vec![format!("<{}>", recipient(i, &h))],
                        msg_id: Some(format!("<{}>", message_id(i, &h))),
                        subject: Some(format!("subject {i}")),
                        message_bytes: Some(h.bytes),
                        sha256: Some(if mix(i) % 20 == 3 { sha(i + 7) } else { sha(i) }),
                        ..Default::default()
                    }
                } else {
                    let n = k - plain_hops.len();
                    let j = (n / per_session).min(unrelated - 1);
                    TapTransaction {
                        ts: T0 + j as f64 * 0.001,
                        uid: format!("U{j}"),
                        orig_h: format!("10.{}.{}.{}", j % 250, (j / 250) % 250, 1 + j % 200),
                        orig_p: 1024 + (j % 60_000) as u16,
                        resp_h: "10.255.0.25".to_string(),
                        resp_p: 25,
                        trans_depth: (n % per_session) as u32 + 1,
                        mailfrom: Some(format!("bulk{}@news.example", n % 1000)),
                        rcptto: vec![format!("r{}@elsewhere.example", n % 100_000)],
                        from: Some(format!("\"News\" <bulk{}@news.example>", n % 1000)),
                        to: vec![format!("<r{}@elsewhere.example>", n % 100_000)],
                        msg_id: Some(format!("<n{n}@news.example>")),
                        subject: Some(format!("newsletter {}", n % 5000)),
                        message_bytes: Some(20_000),
                        sha256: Some(sha(hops + n)),
                        ..Default::default()
                    }
                }
            })
            .collect();
        frames::tap_transactions_frame(&rows)
    })?;
    println!(
        "generated {hops} hops, {} tap sessions, {} tap transactions in {} ({:.1} s)",
        (0..hops).filter(|&i| hop(i).seen).count() + unrelated,
        plain_hops.len() + other,
        dir.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
