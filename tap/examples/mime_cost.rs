//! The CPU cost of the tap's per-message reading (`tap::read_headers`: header fields, subject,
//! attachments with their sha256) on its own, over the messages of a capture.
//!
//! ```sh
//! cargo run --release -p smtplab-tap --example gen_capture -- /var/tmp/mime-cap.pcap 100
//! cargo run --release -p smtplab-tap --example mime_cost -- /var/tmp/mime-cap.pcap [ROUNDS]
//! ```
//!
//! The messages are recovered once (not timed), then read `ROUNDS` times (default 20). Reported
//! per MB of message bytes: the best round's wall time (on a shared machine the least disturbed
//! one) and the mean CPU time of this thread (/proc ticks, 10 ms: good over many rounds), with
//! the count of attachments found and a digest of every result, so that two builds can be
//! compared for equality; then the time SHA-256 alone takes over as many bytes as the
//! attachments hold, the floor of any reader.

use std::ops::ControlFlow;
use std::path::Path;
use std::time::Instant;

use records::TapTransaction;
use sha2::{Digest, Sha256};

fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: mime_cost CAPTURE.pcap [ROUNDS]");
        return std::process::ExitCode::FAILURE;
    };
    let rounds: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(20).max(1);
    let mut messages: Vec<Vec<u8>> = Vec::new();
    if let Err(e) = tap::stream_file(Path::new(&path), tap::Options { live: false, messages: true }, |_, m| {
        messages.extend(m);
        ControlFlow::Continue(())
    }) {
        eprintln!("error: {e}");
        return std::process::ExitCode::FAILURE;
    }
    let bytes: usize = messages.iter().map(Vec::len).sum();
    let mut best = f64::INFINITY;
    let mut digest = String::new();
    let mut attachments = 0;
    let mut attached_bytes = 0;
    let cpu_start = cpu_time();
    for _ in 0..rounds {
        let start = Instant::now();
        let mut h = Sha256::new();
        attachments = 0;
        attached_bytes = 0;
        for m in &messages {
            let mut tx = TapTransaction::default();
            tap::read_headers(m, &mut tx);
            attachments += tx.attachments.len();
            attached_bytes += tx.attachments.iter().map(|a| a.size).sum::<u64>();
            h.update(format!("{:?}{:?}", tx.subject, tx.attachments).as_bytes());
        }
        best = best.min(start.elapsed().as_secs_f64());
        digest = hex::encode(h.finalize());
    }
    let cpu = (cpu_time() - cpu_start) / rounds as f64;
    let full = tap::full_parses() / rounds as u64;
    let mb = bytes as f64 / 1e6;
    println!(
        "{} messages, {mb:.1} MB, {attachments} attachments, {rounds} rounds: best wall {:.3} ms/MB \
         ({:.0} MB/s), mean CPU {:.3} ms/MB; {full} messages a round read by the full parse; results digest {}",
        messages.len(),
        best * 1e3 / mb,
        mb / best,
        cpu * 1e3 / mb,
        &digest[..16]
    );
    // The floor: hashing is what the tap reports, so no reader can skip it.
    let block = vec![0x5au8; 1 << 20];
    let mut floor = f64::INFINITY;
    for _ in 0..rounds.min(5) {
        let start = Instant::now();
        let mut h = Sha256::new();
        let mut left = attached_bytes as usize;
        while left > 0 {
            let n = left.min(block.len());
            h.update(&block[..n]);
            left -= n;
        }
        std::hint::black_box(h.finalize());
        floor = floor.min(start.elapsed().as_secs_f64());
    }
    println!(
        "SHA-256 alone of the attachments' {:.1} MB: {:.3} ms/MB of messages",
        attached_bytes as f64 / 1e6,
        floor * 1e3 / mb
    );
    std::process::ExitCode::SUCCESS
}

/// CPU time of this process (one thread does the work), from /proc: no extra dependency.
fn cpu_time() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces, hence the last ')').
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}
