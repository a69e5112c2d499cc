//! Where each file lives inside a run directory.
//!
//! Kept in one place so ingest, analysis and the report agree on names without repeating string
//! literals, and so error messages show paths the user can paste.

use std::path::{Path, PathBuf};

/// The files of one run directory that the analysis stage reads or writes.
#[derive(Debug, Clone)]
pub struct RunLayout {
    root: PathBuf,
}

impl RunLayout {
    pub fn new(run_dir: &Path) -> Self {
        RunLayout { root: run_dir.to_path_buf() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn truth_dir(&self) -> PathBuf {
        self.root.join("truth")
    }
    pub fn tap_dir(&self) -> PathBuf {
        self.root.join("tap")
    }
    pub fn analysis_dir(&self) -> PathBuf {
        self.root.join("analysis")
    }

    pub fn truth_messages_jsonl(&self) -> PathBuf {
        self.truth_dir().join("messages.jsonl")
    }
    pub fn truth_sessions_jsonl(&self) -> PathBuf {
        self.truth_dir().join("sessions.jsonl")
    }
    pub fn truth_systems_json(&self) -> PathBuf {
        self.truth_dir().join("systems.json")
    }
    pub fn truth_submissions_jsonl(&self) -> PathBuf {
        self.truth_dir().join("submissions.jsonl")
    }
    pub fn tap_sessions_jsonl(&self) -> PathBuf {
        self.tap_dir().join("sessions.jsonl")
    }
    pub fn tap_transactions_jsonl(&self) -> PathBuf {
        self.tap_dir().join("transactions.jsonl")
    }

    pub fn truth_messages_parquet(&self) -> PathBuf {
        self.truth_dir().join("messages.parquet")
    }
    pub fn truth_hops_parquet(&self) -> PathBuf {
        self.truth_dir().join("hops.parquet")
    }
    pub fn truth_outcomes_parquet(&self) -> PathBuf {
        self.truth_dir().join("outcomes.parquet")
    }
    pub fn truth_systems_parquet(&self) -> PathBuf {
        self.truth_dir().join("systems.parquet")
    }
    pub fn truth_submissions_parquet(&self) -> PathBuf {
        self.truth_dir().join("submissions.parquet")
    }
    pub fn tap_sessions_parquet(&self) -> PathBuf {
        self.tap_dir().join("sessions.parquet")
    }
    pub fn tap_transactions_parquet(&self) -> PathBuf {
        self.tap_dir().join("transactions.parquet")
    }
    pub fn tap_tls_records_parquet(&self) -> PathBuf {
        self.tap_dir().join("tls_records.parquet")
    }

    pub fn pairs_parquet(&self) -> PathBuf {
        self.analysis_dir().join("pairs.parquet")
    }
    pub fn pairs_csv(&self) -> PathBuf {
        self.analysis_dir().join("pairs.csv")
    }
    pub fn messages_parquet(&self) -> PathBuf {
        self.analysis_dir().join("messages.parquet")
    }
    pub fn messages_csv(&self) -> PathBuf {
        self.analysis_dir().join("messages.csv")
    }

    /// `analysis/<name>.parquet`.
    pub fn table_parquet(&self, name: &str) -> PathBuf {
        self.analysis_dir().join(format!("{name}.parquet"))
    }
    /// `analysis/<name>.csv`.
    pub fn table_csv(&self, name: &str) -> PathBuf {
        self.analysis_dir().join(format!("{name}.csv"))
    }
    /// `analysis/summary.parquet`: the one-row summary of the run that sweeps read by glob.
    pub fn summary_parquet(&self) -> PathBuf {
        self.table_parquet(TABLE_SUMMARY)
    }

    /// `control/`: the paired plaintext run of the same scenario and seed, when there is one.
    pub fn control_dir(&self) -> PathBuf {
        self.root.join("control")
    }
    /// Whether this run has a paired plaintext control with ground truth in it.
    pub fn has_control(&self) -> bool {
        self.control_dir().join("truth").is_dir()
    }
    /// `point.json`: which point of which sweep this run is, when it is one.
    pub fn point_json(&self) -> PathBuf {
        self.root.join("point.json")
    }
    pub fn manifest_json(&self) -> PathBuf {
        self.root.join("manifest.json")
    }
}

/// Names of the analysis tables (`analysis/<name>.{parquet,csv}`).
pub const TABLE_PAIRS: &str = "pairs";
pub const TABLE_MESSAGES: &str = "messages";
pub const TABLE_HOPS: &str = "hops";
pub const TABLE_USER_PAIRS: &str = "user_pairs";
pub const TABLE_SESSIONS: &str = "sessions";
pub const TABLE_TLS_COST: &str = "tls_cost";
pub const TABLE_TIMELINE: &str = "timeline";
pub const TABLE_SUMMARY: &str = "summary";
/// Sweep-level tables, under `<sweep>/analysis/`.
pub const TABLE_RUNS: &str = "runs";
pub const TABLE_POINTS: &str = "points";
