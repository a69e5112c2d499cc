//! The tap alone on a capture file, its records as JSON lines on stdout: what `smtplab tap FILE
//! --format jsonl` writes, without the CLI (whose polars dependency makes every release build
//! of it long). For profiling the tap (BENCHMARKS.md):
//!
//! ```sh
//! cargo build --release -p smtplab-tap --example jsonl
//! perf record -g target/release/examples/jsonl CAPTURE.pcap > /dev/null
//! ```
//!
//! The read summary (packets, flows, bytes stored at the peak, ...) goes to stderr.

use std::io::Write;
use std::ops::ControlFlow;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: jsonl CAPTURE.pcap");
        return ExitCode::from(2);
    };
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let mut failed = None;
    let summary = tap::stream_file(std::path::Path::new(&path), tap::Options::default(), |r, _| {
        match serde_json::to_writer(&mut out, &r).map_err(std::io::Error::from).and_then(|()| out.write_all(b"\n")) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                failed = Some(e);
                ControlFlow::Break(())
            }
        }
    });
    if let Some(e) = failed.or_else(|| out.flush().err()) {
        eprintln!("error: writing to standard output: {e}");
        return ExitCode::FAILURE;
    }
    match summary {
        Ok(s) => {
            eprintln!("{s:?}");
            if s.error.is_some() { ExitCode::FAILURE } else { ExitCode::SUCCESS }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
