//! Report stage of smtplab: turns an analysed run or sweep directory into a human-readable
//! report.
//!
//! [`render`] reads a run's `analysis/` tables (through [`analysis::read_summary`]) and writes,
//! under `report/`: `index.html` (self-contained: styles and charts inline), `summary.md`, and
//! the charts as SVG and PNG: `exposure`, `volume`, `tls_cost`, `timeline`, `pairs`, `bytes`.
//! [`render_sweep`] does the same for a sweep directory (`<sweep>/report/`), with `exposure`,
//! `adoption` and `tls_cost`. PNG text is drawn with a font compiled into the binary, so reports
//! look the same on a machine without fonts.

mod charts;
mod context;
mod error;
mod figures;
mod fonts;
mod heatmap;
mod html;
mod lines;
mod markdown;
mod numbers;
mod pair_table;
mod prose;
mod provenance;
mod stacked;
mod tables;

#[cfg(test)]
mod figure_tests;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use context::PLOTTERS_VERSION;
pub use error::ReportError;
pub use provenance::Provenance;

use crate::charts::Chart;
use crate::context::{Figures, RunContext, SweepContext};

/// Writes the report of the analysed run in `run_dir` and returns the path of
/// `report/index.html`.
pub fn render(run_dir: &Path, provenance: &Provenance) -> Result<PathBuf, ReportError> {
    let summary = analysis::read_summary(run_dir)?;
    fonts::ensure_registered()?;
    let report_dir = run_dir.join("report");
    std::fs::create_dir_all(&report_dir).map_err(|e| ReportError::io(&report_dir, e))?;

    let mut figs = Figures::default();
    figs.push("exposure", write_chart(&figures::exposure_chart(&summary), &report_dir, "exposure")?);
    figs.push("volume", write_chart(&figures::volume_heatmap(&summary), &report_dir, "volume")?);
    figs.push("tls_cost", write_chart(&figures::tls_cost_chart(&summary.tls_cost), &report_dir, "tls_cost")?);
    figs.push("timeline", write_chart(&figures::timeline_chart(&summary), &report_dir, "timeline")?);
    figs.push("pairs", write_chart(&figures::messages_chart(&summary), &report_dir, "pairs")?);
    figs.push("bytes", write_chart(&figures::bytes_chart(&summary), &report_dir, "bytes")?);

    let mut context = RunContext::load(run_dir);
    context.attacks = analysis::read_attack_matrix(run_dir)?;
    if let Some(cells) = &context.attacks {
        figs.push("attacks", write_chart(&figures::attack_heatmap(cells), &report_dir, "attacks")?);
    }
    if let (Some(rows), Some(sets)) =
        (analysis::read_linkage_summary(run_dir)?, analysis::read_anonymity_sets(run_dir)?)
    {
        figs.push("linkage", write_chart(&figures::linkage_chart(&sets), &report_dir, "linkage")?);
        context.linkage = Some((rows, sets));
    }
    let index = report_dir.join("index.html");
    write_text(&index, &html::index_html(&summary, provenance, &context, &figs))?;
    write_text(&report_dir.join("summary.md"), &markdown::summary_md(&summary, provenance, &context, &figs))?;
    Ok(index)
}

/// Writes the combined report of the analysed sweep in `sweep_dir` (see
/// [`analysis::analyze_sweep`]) under `<sweep_dir>/report/` and returns the path of its
/// `index.html`.
pub fn render_sweep(sweep_dir: &Path, provenance: &Provenance) -> Result<PathBuf, ReportError> {
    let sweep = analysis::read_sweep_summary(sweep_dir)?;
    fonts::ensure_registered()?;
    let report_dir = sweep_dir.join("report");
    std::fs::create_dir_all(&report_dir).map_err(|e| ReportError::io(&report_dir, e))?;

    let mut figs = Figures::default();
    if let Some(chart) = figures::adoption_chart(&sweep) {
        figs.push("adoption", write_chart(&chart, &report_dir, "adoption")?);
    }
    figs.push("exposure", write_chart(&figures::sweep_exposure_chart(&sweep), &report_dir, "exposure")?);
    figs.push("tls_cost", write_chart(&figures::tls_cost_chart(&sweep.tls_cost), &report_dir, "tls_cost")?);
    let effort = analysis::read_attack_effort(sweep_dir)?.unwrap_or_default();
    if let Some(chart) = figures::effort_chart(&effort) {
        figs.push("effort", write_chart(&chart, &report_dir, "effort")?);
    }

    if let Some(chart) = figures::frontier_chart(&sweep) {
        figs.push("frontier", write_chart(&chart, &report_dir, "frontier")?);
    }

    let mut context = SweepContext::load(sweep_dir, &sweep);
    context.effort = effort;
    let index = report_dir.join("index.html");
    write_text(&index, &html::sweep_html(&sweep, provenance, &context, &figs))?;
    write_text(&report_dir.join("summary.md"), &markdown::sweep_md(&sweep, provenance, &context, &figs))?;
    Ok(index)
}

/// Writes `<name>.svg` and `<name>.png`; returns the SVG text for inlining in the page.
fn write_chart<C: Chart>(chart: &C, dir: &Path, name: &str) -> Result<String, ReportError> {
    let svg_path = dir.join(format!("{name}.svg"));
    let svg = charts::to_svg(chart).map_err(|message| ReportError::Chart { path: svg_path.clone(), message })?;
    write_text(&svg_path, &svg)?;
    let png_path = dir.join(format!("{name}.png"));
    charts::write_png(chart, &png_path).map_err(|message| ReportError::Chart { path: png_path, message })?;
    Ok(svg)
}

fn write_text(path: &Path, text: &str) -> Result<(), ReportError> {
    std::fs::write(path, text).map_err(|e| ReportError::io(path, e))
}
