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
    pub fn truth_systems_parquet(&self) -> PathBuf {
        self.truth_dir().join("systems.parquet")
    }
    pub fn tap_sessions_parquet(&self) -> PathBuf {
        self.tap_dir().join("sessions.parquet")
    }
    pub fn tap_transactions_parquet(&self) -> PathBuf {
        self.tap_dir().join("transactions.parquet")
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
}
