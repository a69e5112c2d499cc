//! The tap's records of a capture as JSON lines, through the entry point named by a flag, so
//! that two builds of the tap (before and after a refactor) can be compared with `cmp` on every
//! path the binary uses:
//!
//! ```sh
//! cargo run --release -p smtplab-tap --example dissect_jsonl -- [--messages|--stream] CAPTURE.pcap > OUT.jsonl
//! ```
//!
//! - no flag: `stream_file` (as the `jsonl` example and `smtplab tap FILE`);
//! - `--messages`: `stream_file` with `Options::messages`, each record followed by a line with the
//!   SHA-256 and length of the message kept with it (or `-`);
//! - `--stream`: `stream_reader` with `Options::live` on the file read as a stream (records emitted as flows
//!   end, as on a live capture).
//!
//! The read summary goes to stderr.

use std::io::Write;
use std::ops::ControlFlow;
use std::process::ExitCode;

use sha2::{Digest, Sha256};

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let (mode, path) = match args.as_slice() {
        [path] => ("", path),
        [flag, path] if flag == "--messages" || flag == "--stream" => (flag.to_str().unwrap_or(""), path),
        _ => {
            eprintln!("usage: dissect_jsonl [--messages|--stream] CAPTURE.pcap");
            return ExitCode::from(2);
        }
    };
    let path = std::path::Path::new(path);
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let mut failed = None;
    let mut write = |r: &records::TapRecord, message: Option<Option<Vec<u8>>>| {
        let mut line = serde_json::to_vec(r).map_err(std::io::Error::from)?;
        line.push(b'\n');
        if let Some(m) = message {
            let kept =
                m.map_or_else(|| "-".to_string(), |m| format!("{} {}", hex::encode(Sha256::digest(&m)), m.len()));
            line.extend_from_slice(format!("message {kept}\n").as_bytes());
        }
        out.write_all(&line)
    };
    let mut on = |r: records::TapRecord, message: Option<Option<Vec<u8>>>| match write(&r, message) {
        Ok(()) => ControlFlow::Continue(()),
        Err(e) => {
            failed = Some(e);
            ControlFlow::Break(())
        }
    };
    let summary = match mode {
        "--messages" => tap::stream_file(path, tap::Options { live: false, messages: true }, |r, m| on(r, Some(m))),
        "--stream" => match std::fs::File::open(path) {
            Ok(file) => {
                let live = tap::Options { live: true, messages: false };
                tap::stream_reader(&path.display().to_string(), file, live, |r, _| on(r, None))
            }
            Err(e) => {
                eprintln!("error: {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        },
        _ => tap::stream_file(path, tap::Options::default(), |r, _| on(r, None)),
    };
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
