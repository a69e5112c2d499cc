//! The run directory's JSON files other than the record streams: the manifest, the systems and
//! tapped lines the runner describes, the sweep description, and the DNS the tap overheard.
//!
//! Each file has one type here, used by the stage that writes it and by every stage that reads
//! it, so a field renamed in one place cannot silently read as missing in another. Fields added
//! since a file first existed are `#[serde(default)]`: run directories made by older versions
//! still read.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Where a run stands, as `manifest.json`'s `status` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// The runner made the directory and has not finished.
    Running,
    /// The scenario ran and the capture was dissected; analysis and report have not run yet.
    Captured,
    /// Messages were still queued at the drain timeout (and the scenario does not allow it).
    Incomplete,
    /// Stopped by Ctrl-C; what was captured and recorded until then is kept.
    Interrupted,
    /// Ran, analysed and reported: a resumed sweep skips it.
    Complete,
    /// An error ended the run; `error` says which.
    Failed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Captured => "captured",
            RunStatus::Incomplete => "incomplete",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Complete => "complete",
            RunStatus::Failed => "failed",
        }
    }
}

/// What libpcap reported at the end of a live capture.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureStats {
    pub packets_written: u64,
    pub bytes_written: u64,
    /// Dropped by the kernel for lack of buffer space (libpcap's ps_drop).
    pub dropped: u64,
    pub if_dropped: u64,
}

/// `manifest.json`: what ran, from where, with which result, and the hashes of what it wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub status: RunStatus,
    /// The scenario as run, in the `scenarios` crate's schema: that crate owns the type, which
    /// `records` cannot import (scenarios imports records). The same scenario is in
    /// `scenario.toml` beside this file. Null in a manifest that is not a run's.
    #[serde(default)]
    pub scenario: serde_json::Value,
    /// Where the scenario came from: a file path or `built-in default`.
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub command_line: String,
    /// smtplab's version.
    #[serde(default)]
    pub version: String,
    /// The relays wrote a `local` record for every final delivery and bounce, so
    /// `truth/outcomes` can tell undelivered mail from mail nobody recorded (false in runs made
    /// before they did).
    #[serde(default)]
    pub truth_outcomes: bool,
    /// RFC 3339, UTC.
    #[serde(default)]
    pub started: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture_stats: Option<CaptureStats>,
    /// Messages still queued at the drain timeout: `system: qid <message-id> -> rcpts`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stuck: Vec<String>,
    /// Why the run failed (status `failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// sha256 of every file the run and its analysis wrote, by path in the run directory.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, String>,
    /// sha256 of the scenario file as run: a resumed sweep reruns a point whose file changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario_sha256: Option<String>,
}

impl Manifest {
    /// A run that has just started.
    pub fn running(scenario: serde_json::Value, source: &str, seed: u64, command_line: &str, started: String) -> Self {
        Manifest {
            status: RunStatus::Running,
            scenario,
            source: source.into(),
            seed: Some(seed),
            command_line: command_line.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            truth_outcomes: true,
            started,
            ended: None,
            capture_stats: None,
            stuck: Vec::new(),
            error: None,
            files: BTreeMap::new(),
            scenario_sha256: None,
        }
    }

    /// The scenario's name (`[scenario] name`): the one field of the scenario every stage
    /// shows, read here so no other crate indexes the untyped value.
    pub fn scenario_name(&self) -> &str {
        self.scenario.get("scenario").and_then(|s| s.get("name")).and_then(|n| n.as_str()).unwrap_or_default()
    }

    /// A run's manifest names its scenario; any other `manifest.json` is not smtplab's.
    pub fn is_run(&self) -> bool {
        !self.scenario.is_null()
    }
}

/// `truth/systems.json`: one entry per mail system of the scenario.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SystemInfo {
    pub name: String,
    pub domain: String,
    #[serde(default)]
    pub address: String,
    pub starttls: bool,
    #[serde(default)]
    pub mx: Option<String>,
    /// `none`, `may` or `encrypt`.
    #[serde(default)]
    pub inbound_tls: Option<String>,
    /// `none`, `may`, `encrypt` or `verify` (and the policies added since: see SCENARIOS.md).
    #[serde(default)]
    pub outbound_tls: Option<String>,
    /// Whether the system honours MTA-STS (RFC 8461) when sending (absent in older runs: no).
    #[serde(default)]
    pub mta_sts: bool,
    /// The MTA-STS mode the system publishes for its own domain (`none`, `testing`, `enforce`),
    /// if it publishes a policy.
    #[serde(default)]
    pub mta_sts_policy: Option<String>,
    /// How its relay uses outbound sessions (connection reuse, pipelining, padding, batching):
    /// the relay's `DeliveryOptions` as the scenario gives them; that type lives in `relay`,
    /// which `records` cannot import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<serde_json::Value>,
}

impl SystemInfo {
    /// The default TLS level of a system that does not name one: `may` with STARTTLS, else `none`.
    fn default_level(&self) -> &'static str {
        if self.starttls { "may" } else { "none" }
    }

    /// The inbound TLS policy, with the scenario default filled in.
    pub fn inbound(&self) -> &str {
        self.inbound_tls.as_deref().unwrap_or(self.default_level())
    }

    /// The outbound TLS policy, with the scenario default filled in.
    pub fn outbound(&self) -> &str {
        self.outbound_tls.as_deref().unwrap_or(self.default_level())
    }

    /// The sender's defense, as the attack matrix labels it: the outbound policy, with
    /// `+mta-sts` when the system honours MTA-STS on top of it (`may+mta-sts`): MTA-STS raises
    /// the policy only towards domains that publish one, so the base policy stays in the label.
    pub fn defense(&self) -> String {
        if self.mta_sts { format!("{}+mta-sts", self.outbound()) } else { self.outbound().to_string() }
    }
}

/// `truth/tap_links.json`: every unordered pair of systems and whether the tap sat on its line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TapLink {
    pub a: String,
    pub b: String,
    pub tapped: bool,
}

/// `truth/access_taps.json`: every user, the address its access line (its submission sessions
/// to its own system) comes from, and whether the tap sat on that line (`tap.access_share`).
/// An eavesdropper on a user's access line knows whose line it is: the analysis uses `user` for
/// the tapped lines only (ANALYSIS.md, "Linkage across hops").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessTap {
    /// The user's mail address.
    pub user: String,
    /// The user's own system.
    pub system: String,
    /// The source address of the user's submission sessions.
    pub address: String,
    pub tapped: bool,
}

/// `tap/dns.jsonl`: one DNS message the tap saw on the DNS server's port, what an eavesdropper
/// learns before each SMTP connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DnsSighting {
    pub ts: f64,
    pub src: String,
    pub dst: String,
    pub id: u16,
    pub response: bool,
    /// `NoError`, `NXDomain`, ... (responses).
    pub rcode: String,
    /// `name TYPE`, e.g. `beta.example. MX`.
    pub questions: Vec<String>,
    /// `name TYPE data`, e.g. `beta.example. MX 10 mx.beta.example.`.
    pub answers: Vec<String>,
}

/// `point.json` in a sweep's run (and `[point]` in the point's scenario file): which sweep
/// point this run is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointInfo {
    pub sweep: String,
    pub point: String,
    /// The value of each swept key at this point, by key path.
    pub params: serde_json::Map<String, serde_json::Value>,
    pub seed: u64,
    /// sha256 of the point's scenario as the sweep file defines it (set by `smtplab sweep`): a
    /// resumed sweep reruns a complete point whose scenario changed since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario_sha256: Option<String>,
}

/// `sweep.json`: the sweep as planned, one entry per point and seed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SweepFile {
    pub name: String,
    /// The scenario key paths the sweep varies, in order.
    #[serde(default)]
    pub keys: Vec<String>,
    #[serde(default)]
    pub seeds: Vec<u64>,
    /// The sweep file it was planned from.
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub command_line: String,
    #[serde(default)]
    pub points: Vec<SweepEntry>,
}

/// One run of a sweep: a point at one seed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SweepEntry {
    pub point: String,
    #[serde(default)]
    pub params: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub seed: u64,
    /// The run's directory, under the sweep's.
    #[serde(default)]
    pub dir: String,
    #[serde(default)]
    pub scenario_sha256: String,
    /// How to run it by hand (what a Slurm task runs).
    #[serde(default)]
    pub command: String,
}

impl SweepFile {
    /// Each point once, in the order the file first lists it (it lists a point once per seed).
    pub fn distinct_points(&self) -> Vec<&SweepEntry> {
        let mut seen = std::collections::HashSet::new();
        self.points.iter().filter(|p| seen.insert(p.point.as_str())).collect()
    }
}

/// Why a run file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RunFileError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: not {what} ({source}); the file is damaged or not smtplab's: run again")]
    Json { path: String, what: &'static str, source: serde_json::Error },
}

/// Reads a JSON run file into its type; `what` names the file's kind in the error.
pub fn read_json_file<T: serde::de::DeserializeOwned>(path: &Path, what: &'static str) -> Result<T, RunFileError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| RunFileError::Io { path: path.display().to_string(), source })?;
    serde_json::from_str(&text).map_err(|source| RunFileError::Json { path: path.display().to_string(), what, source })
}

/// [`read_json_file`], or `None` when the file does not exist (runs made before it did).
pub fn read_json_file_opt<T: serde::de::DeserializeOwned>(
    path: &Path,
    what: &'static str,
) -> Result<Option<T>, RunFileError> {
    if !path.exists() {
        return Ok(None);
    }
    read_json_file(path, what).map(Some)
}

/// Writes a run file as pretty JSON (people read these).
pub fn write_json_file<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    std::fs::write(path, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_of_an_older_run_still_reads() {
        // As the runner wrote it before `files` and `scenario_sha256` existed.
        let m: Manifest = serde_json::from_str(
            r#"{"status": "complete", "scenario": {"scenario": {"name": "x"}}, "seed": 3, "started": "t"}"#,
        )
        .expect("older manifest");
        assert_eq!((m.status, m.seed, m.is_run(), m.scenario_name()), (RunStatus::Complete, Some(3), true, "x"));
        let other: Manifest = serde_json::from_str(r#"{"status": "running"}"#).expect("bare manifest");
        assert!(!other.is_run(), "no scenario: not a run's manifest");
    }

    #[test]
    fn status_spellings_are_the_files() {
        for (s, text) in [(RunStatus::Captured, "\"captured\""), (RunStatus::Failed, "\"failed\"")] {
            assert_eq!(serde_json::to_string(&s).expect("status"), text);
            assert_eq!(format!("\"{}\"", s.as_str()), text);
        }
        let bad = serde_json::from_str::<RunStatus>("\"done\"");
        assert!(bad.is_err(), "an unknown status is an error, not a default");
    }

    #[test]
    fn a_damaged_file_is_named_in_the_error() {
        let dir = std::env::temp_dir().join(format!("records-run-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let p = dir.join("systems.json");
        std::fs::write(&p, "[{\"name\": 1}]").expect("write");
        let e = read_json_file::<Vec<SystemInfo>>(&p, "the system list").expect_err("bad");
        let text = e.to_string();
        assert!(text.contains("systems.json") && text.contains("the system list"), "{text}");
        assert!(read_json_file_opt::<Vec<SystemInfo>>(&dir.join("none.json"), "x").expect("absent").is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
