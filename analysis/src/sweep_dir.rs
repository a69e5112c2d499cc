//! Which runs a sweep directory holds: what the per-run stages (ingest, the attack matrix, the
//! effort curve) need to walk a sweep, apart from the sweep's own analysis (`sweep`), which
//! calls them.

use std::path::{Path, PathBuf};

use crate::error::AnalysisError;

/// File that marks a sweep directory.
pub const SWEEP_JSON: &str = "sweep.json";

/// Whether `dir` is a sweep directory (it holds `sweep.json`).
pub fn is_sweep(dir: &Path) -> bool {
    dir.join(SWEEP_JSON).is_file()
}

/// The run directories of a sweep: direct subdirectories with ground truth, by name.
pub fn sweep_runs(dir: &Path) -> Result<Vec<PathBuf>, AnalysisError> {
    let entries = std::fs::read_dir(dir).map_err(|e| AnalysisError::io(dir, e))?;
    let mut runs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.join("truth").is_dir()).collect();
    runs.sort();
    Ok(runs)
}
