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
    /// A run's provenance from its manifest (`None`: a directory without one, e.g. made by hand
    /// from a capture). The capture hash is the manifest's; `command_line` is the run's own.
    pub fn of_run(manifest: Option<&records::Manifest>) -> Provenance {
        Provenance {
            scenario: manifest.map_or("?", records::Manifest::scenario_name).to_string(),
            seed: manifest.and_then(|m| m.seed).unwrap_or(0),
            command_line: manifest.map(|m| m.command_line.clone()).unwrap_or_default(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            capture_sha256: manifest.and_then(|m| m.files.get("capture.pcap").cloned()),
            started: manifest.map(|m| m.started.clone()).unwrap_or_default(),
        }
    }

    /// A sweep's provenance from its `sweep.json`.
    pub fn of_sweep(sweep: Option<&records::SweepFile>) -> Provenance {
        Provenance {
            scenario: sweep.map_or("?", |s| s.name.as_str()).to_string(),
            seed: 0,
            command_line: sweep.map(|s| s.command_line.clone()).unwrap_or_default(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            capture_sha256: None,
            started: String::new(),
        }
    }

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
