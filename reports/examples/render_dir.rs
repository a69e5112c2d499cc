//! Analyses a run or sweep directory and renders its report, as `smtplab analyze` followed by
//! `smtplab report` do, without building the whole binary:
//!
//! ```sh
//! cargo run -p smtplab-reports --example render_dir -- runs/<run>
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: render_dir RUN_DIR|SWEEP_DIR");
        return ExitCode::from(2);
    };
    let manifest = records::read_json_file::<records::Manifest>(&dir.join("manifest.json"), "a run manifest").ok();
    let mut provenance = reports::Provenance::of_run(manifest.as_ref());
    provenance.command_line = std::env::args().collect::<Vec<_>>().join(" ");
    let result = if analysis::is_sweep(&dir) {
        analysis::analyze_sweep(&dir).map_err(reports::ReportError::from).and_then(|s| {
            print!("{}", analysis::format_sweep_table(&s));
            reports::render_sweep(&dir, &provenance)
        })
    } else {
        analysis::ingest(&dir).and_then(|()| analysis::analyze(&dir)).map_err(reports::ReportError::from).and_then(
            |s| {
                print!("{}", analysis::format_table(&s));
                reports::render(&dir, &provenance)
            },
        )
    };
    match result {
        Ok(index) => {
            println!("report: {}", index.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
