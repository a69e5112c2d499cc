//! Reads a capture with `tap::stream_file`, records counted and dropped, and prints the
//! time taken: the tap's own cost without any output format (BENCHMARKS.md).
//!
//! ```sh
//! cargo run --release -p smtplab-tap --example read_capture -- CAPTURE.pcap
//! ```

use std::ops::ControlFlow;
use std::path::Path;
use std::time::Instant;

fn main() -> std::process::ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: read_capture CAPTURE.pcap");
        return std::process::ExitCode::FAILURE;
    };
    let started = Instant::now();
    let mut records = 0u64;
    let summary = match tap::stream_file(Path::new(&path), tap::Options::default(), |_, _| {
        records += 1;
        ControlFlow::Continue(())
    }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{records} records, {} packets, {} bytes in {secs:.3} s ({:.0} MB/s); {} IP fragments, {} stale packets{}",
        summary.packets,
        summary.bytes,
        summary.bytes as f64 / secs / 1e6,
        summary.defrag.fragments,
        summary.stale_packets,
        summary.error.map(|e| format!("; stopped: {e}")).unwrap_or_default()
    );
    std::process::ExitCode::SUCCESS
}
