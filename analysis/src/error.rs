//! The one error type of the analysis stage.
//!
//! Every message names the file involved and, where there is one, what the user can do about it:
//! the person reading it is usually looking at a run directory made hours ago.

use std::path::{Path, PathBuf};

use polars::prelude::PolarsError;
use records::RecordError;

/// What to tell the user when a ground-truth or tap file is missing.
pub(crate) const HINT_RUN: &str = "was this directory made by `smtplab run`?";
/// What to tell the user when an ingested Parquet file is missing.
pub(crate) const HINT_INGEST: &str = "run `smtplab analyze` on this run directory (it ingests the JSON lines first)";
/// What to tell the user when an analysis output is missing.
pub(crate) const HINT_ANALYZE: &str = "run `smtplab analyze` on this run directory first";

#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    /// A file the stage needs is not there.
    #[error("{}: missing; {hint}", path.display())]
    Missing { path: PathBuf, hint: &'static str },

    /// A JSON-lines record file is unreadable (the inner error names file and line).
    #[error(transparent)]
    Record(#[from] RecordError),

    /// `truth/systems.json` is not the JSON array of systems the scenario stage writes.
    #[error("{}: not a JSON array of systems ({source}); was this directory made by `smtplab run`?", path.display())]
    Systems { path: PathBuf, source: serde_json::Error },

    /// A JSON file of the run or sweep (`manifest.json`, `point.json`, `sweep.json`) is unreadable.
    #[error("{}: not {what} ({source})", path.display())]
    Json { path: PathBuf, what: &'static str, source: serde_json::Error },

    /// A sweep directory holds no analysable run.
    #[error("{}: no run directories with ground truth (`*/truth/`) in this sweep; was it made by `smtplab sweep`?", path.display())]
    EmptySweep { path: PathBuf },

    /// Plain file-system trouble: permissions, a full disk.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },

    /// Polars could not read or write a table file.
    #[error("{}: could not {action} ({source}); {hint}", path.display())]
    Table { path: PathBuf, action: &'static str, source: PolarsError, hint: &'static str },

    /// A table file was readable but lacks a column of the expected type: it was written by
    /// another version of smtplab, or by hand.
    #[error("{}: column `{column}` missing or not {expected}; {hint}", path.display())]
    Column { path: PathBuf, column: String, expected: &'static str, hint: &'static str },

    /// A computation over tables that were read fine failed: a bug, not bad input.
    #[error("analysis of {}: {step} failed ({source}); please report this with the run directory", run_dir.display())]
    Compute { run_dir: PathBuf, step: &'static str, source: PolarsError },
}

impl AnalysisError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        AnalysisError::Io { path: path.to_path_buf(), source }
    }

    pub(crate) fn compute(run_dir: &Path, step: &'static str) -> impl FnOnce(PolarsError) -> Self {
        let run_dir = run_dir.to_path_buf();
        move |source| AnalysisError::Compute { run_dir, step, source }
    }
}

impl From<records::RunFileError> for AnalysisError {
    fn from(e: records::RunFileError) -> Self {
        match e {
            records::RunFileError::Io { path, source } => AnalysisError::Io { path: path.into(), source },
            records::RunFileError::Json { path, what, source } => {
                AnalysisError::Json { path: path.into(), what, source }
            }
        }
    }
}
