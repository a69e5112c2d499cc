//! Analyses a run or sweep directory and prints the headline table, as `smtplab analyze` does,
//! without building the whole binary:
//!
//! ```sh
//! cargo run -p smtplab-analysis --example analyze_dir -- runs/<run> [--schema]
//! ```
//!
//! With `--schema`, prints the column names and types of every table under `analysis/`.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: analyze_dir RUN_DIR|SWEEP_DIR");
        return ExitCode::from(2);
    };
    let result = if analysis::is_sweep(&dir) {
        analysis::analyze_sweep(&dir).map(|s| analysis::format_sweep_table(&s))
    } else {
        analysis::ingest(&dir).and_then(|()| analysis::analyze(&dir)).map(|s| analysis::format_table(&s))
    };
    match result {
        Ok(table) => {
            print!("{table}");
            if std::env::args().any(|a| a == "--schema") {
                print_schemas(&dir.join("analysis"));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn print_schemas(dir: &std::path::Path) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "parquet")).collect())
        .unwrap_or_default();
    files.sort();
    for f in files {
        let Ok(file) = std::fs::File::open(&f) else { continue };
        use polars::prelude::SerReader;
        match polars::prelude::ParquetReader::new(file).finish() {
            Ok(df) => {
                println!("\n{} ({} rows)", f.display(), df.height());
                for (name, dtype) in df.schema().iter() {
                    println!("  {name}: {dtype}");
                }
            }
            Err(e) => eprintln!("{}: {e}", f.display()),
        }
    }
}
