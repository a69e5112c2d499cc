//! Where a report's numbers came from, printed on the report so a reader can reproduce it.

use serde::{Deserialize, Serialize};

/// How the run behind a report was made.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// Name of the scenario that was run.
    pub scenario: String,
    /// Seed of the traffic generator.
    pub seed: u64,
    /// The command line that made the run.
    pub command_line: String,
    /// smtplab version (and commit, if the caller knows it).
    pub version: String,
    /// sha256 of the packet capture the tap read, when there is one.
    pub capture_sha256: Option<String>,
    /// When the run started, as the caller formats it (RFC 3339 recommended).
    pub started: String,
}

impl Provenance {
    /// The provenance as (label, value) lines, in the order reports show them.
    pub fn lines(&self) -> Vec<(&'static str, String)> {
        vec![
            ("Scenario", self.scenario.clone()),
            ("Seed", self.seed.to_string()),
            ("Command line", self.command_line.clone()),
            ("Version", self.version.clone()),
            ("Capture sha256", self.capture_sha256.clone().unwrap_or_else(|| "none (no capture file)".to_string())),
            ("Run started", self.started.clone()),
        ]
    }
}
