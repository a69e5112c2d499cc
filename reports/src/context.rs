//! What a report states besides the analysis tables: where the run sits in a sweep, the
//! versions, the capture hashes, and the rendered figures.

use std::path::Path;

use analysis::{SweepSummary, format_share, value_text};

use crate::provenance::Provenance;

/// The plotting library, for the provenance block.
pub const PLOTTERS_VERSION: &str = "0.3";

/// The rendered figures of a report, by name, as SVG text.
#[derive(Default)]
pub struct Figures(Vec<(String, String)>);

impl Figures {
    pub fn push(&mut self, name: &str, svg: String) {
        self.0.push((name.to_string(), svg));
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, s)| s.as_str())
    }

    /// The SVG of `name`, or nothing if it was not drawn.
    pub fn svg(&self, name: &str) -> &str {
        self.get(name).unwrap_or_default()
    }
}

/// A run's manifest, if it has a readable one (a report still renders without it).
fn manifest(run_dir: &Path) -> Option<records::Manifest> {
    records::read_json_file(&run_dir.join("manifest.json"), "a run manifest").ok()
}

fn versions(provenance: &Provenance) -> String {
    let smtplab = if provenance.version.is_empty() { "?" } else { provenance.version.as_str() };
    format!("smtplab {smtplab}; polars {}; plotters {PLOTTERS_VERSION}", analysis::POLARS_VERSION)
}

/// A run's place in a sweep and whether it has a control, from its directory.
pub struct RunContext {
    pub point: Option<String>,
    pub has_control: bool,
    pub status: Option<String>,
    /// The defense × attack matrix, for a run with active attackers (set by `render`).
    pub attacks: Option<Vec<analysis::AttackCell>>,
    /// Linkage across hops, for a run with access taps (set by `render`): the summary rows
    /// and each message's (`link_tls`, anonymity set).
    pub linkage: Option<Linkage>,
}

/// `analysis/linkage_summary` rows, and (`link_tls`, anonymity set) per message.
pub type Linkage = (Vec<analysis::LinkageSummary>, Vec<(String, u64)>);

impl RunContext {
    pub fn load(run_dir: &Path) -> RunContext {
        let point = records::read_json_file::<records::PointInfo>(&run_dir.join("point.json"), "a sweep point").ok();
        let point = point.map(|p| {
            let params = p.params.iter().map(|(k, v)| format!("{k}={}", value_text(v))).collect::<Vec<_>>().join(", ");
            format!("{} of sweep {} ({params})", p.point, p.sweep)
        });
        RunContext {
            point,
            has_control: run_dir.join("control").join("truth").is_dir(),
            status: manifest(run_dir).map(|m| m.status.as_str().to_string()),
            attacks: None,
            linkage: None,
        }
    }

    pub fn provenance_lines(&self, provenance: &Provenance) -> Vec<(String, String)> {
        let mut lines: Vec<(String, String)> = Vec::new();
        for (label, value) in provenance.lines() {
            lines.push((label.to_string(), value));
            if label == "Seed"
                && let Some(point) = &self.point
            {
                lines.push(("Sweep point".to_string(), point.clone()));
            }
        }
        lines.insert(3.min(lines.len()), ("Versions".to_string(), versions(provenance)));
        lines.push((
            "Paired plaintext control".to_string(),
            if self.has_control { "control/ (same scenario and seed, STARTTLS off)" } else { "none" }.to_string(),
        ));
        if let Some(status) = &self.status {
            lines.push(("Run status".to_string(), status.clone()));
        }
        lines
    }
}

/// Per-run facts of a sweep: capture hashes (from each run's manifest) and links to the runs'
/// own reports, in the order of `SweepSummary::runs`.
pub struct SweepContext {
    pub captures: Vec<Option<String>>,
    pub reports: Vec<Option<String>>,
    /// The effort curve's points, for a sweep whose runs have attackers (set by `render_sweep`).
    pub effort: Vec<analysis::EffortPoint>,
}

impl SweepContext {
    pub fn load(dir: &Path, sweep: &SweepSummary) -> SweepContext {
        let mut captures = Vec::new();
        let mut reports = Vec::new();
        for run in &sweep.run_dirs {
            captures.push(manifest(&dir.join(run)).and_then(|mut m| m.files.remove("capture.pcap")));
            let report = dir.join(run).join("report").join("index.html");
            reports.push(report.is_file().then(|| format!("../{run}/report/index.html")));
        }
        SweepContext { captures, reports, effort: Vec::new() }
    }

    /// Headline sentences of a sweep.
    pub fn headlines(&self, sweep: &SweepSummary) -> Vec<String> {
        let mut seeds: Vec<u64> = sweep.runs.iter().filter_map(|r| r.seed).collect();
        seeds.sort_unstable();
        seeds.dedup();
        let mut lines = vec![format!(
            "{} points, {} seeds, {} runs analysed{}.",
            sweep.points.len(),
            seeds.len(),
            sweep.runs.len(),
            sweep.x_key.as_ref().map(|k| format!("; swept numeric parameter: {k}")).unwrap_or_default()
        )];
        let mut inside = 0;
        let mut with_interval = 0;
        let mut worst: Option<(String, f64)> = None;
        for p in &sweep.points {
            let (Some(ci), Some(analytic)) =
                (p.metric("share_content"), p.metric("analytic_content_share").and_then(|c| c.mean))
            else {
                continue;
            };
            if let Some(mean) = ci.mean {
                let gap = (mean - analytic).abs();
                if worst.as_ref().is_none_or(|(_, w)| gap > *w) {
                    worst = Some((p.point.clone(), gap));
                }
            }
            if let (Some(lo), Some(hi)) = (ci.low, ci.high) {
                with_interval += 1;
                if lo - 1e-12 <= analytic && analytic <= hi + 1e-12 {
                    inside += 1;
                }
            }
        }
        if let Some((point, gap)) = worst {
            lines.push(format!(
                "Largest gap between measured and analytic content share: {:.1} percentage points (at {point}).",
                gap * 100.0
            ));
        }
        if with_interval > 0 {
            lines.push(format!(
                "The analytic expectation lies inside the 95% interval of the measured share at {inside} of {with_interval} points."
            ));
        } else {
            lines.push(
                "One seed per point: no confidence intervals (a sweep needs 2+ seeds per point for them).".into(),
            );
        }
        let controls: Vec<f64> = sweep.runs.iter().filter_map(|r| r.control_shares.content).collect();
        if !controls.is_empty() {
            let mean = controls.iter().sum::<f64>() / controls.len() as f64;
            lines.push(format!(
                "Paired plaintext controls ({} runs): content recovered {} on average.",
                controls.len(),
                format_share(Some(mean))
            ));
        } else {
            lines.push("No run of this sweep has a paired plaintext control.".to_string());
        }
        if !sweep.missing.is_empty() {
            lines.push(format!("{} runs listed in sweep.json are missing.", sweep.missing.len()));
        }
        lines
    }

    pub fn provenance_lines(&self, sweep: &SweepSummary, provenance: &Provenance) -> Vec<(String, String)> {
        let mut seeds: Vec<u64> = sweep.runs.iter().filter_map(|r| r.seed).collect();
        seeds.sort_unstable();
        seeds.dedup();
        let scenarios: Vec<String> = {
            let mut s: Vec<String> = sweep.runs.iter().map(|r| r.scenario.clone()).filter(|s| !s.is_empty()).collect();
            s.sort();
            s.dedup();
            s
        };
        vec![
            ("Sweep".to_string(), sweep.name.clone()),
            (
                "Scenario".to_string(),
                if scenarios.is_empty() { provenance.scenario.clone() } else { scenarios.join(", ") },
            ),
            ("Swept keys".to_string(), sweep.keys.join(", ")),
            ("Seeds".to_string(), seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")),
            ("Versions".to_string(), versions(provenance)),
            ("Command line".to_string(), provenance.command_line.clone()),
            ("Started".to_string(), provenance.started.clone()),
            ("Capture sha256".to_string(), "per run, in the Runs table (from each run's manifest.json)".to_string()),
        ]
    }
}
