//! Report stage of smtplab: turns an analysed run directory into a human-readable report.
//!
//! [`render`] reads `analysis/pairs.parquet` (through [`analysis::read_summary`]) and writes, under
//! `report/`: `index.html` (self-contained), `summary.md`, and the charts `pairs.{svg,png}` and
//! `bytes.{svg,png}`. PNG text is drawn with a font compiled into the binary, so reports look
//! the same on a machine without fonts.

mod charts;
mod error;
mod figures;
mod fonts;
mod html;
mod markdown;
mod numbers;
mod pair_table;
mod provenance;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use error::ReportError;
pub use provenance::Provenance;

use crate::charts::GroupedBarChart;

/// Writes the report of the analysed run in `run_dir` and returns the path of
/// `report/index.html`.
pub fn render(run_dir: &Path, provenance: &Provenance) -> Result<PathBuf, ReportError> {
    let summary = analysis::read_summary(run_dir)?;
    fonts::ensure_registered()?;
    let report_dir = run_dir.join("report");
    std::fs::create_dir_all(&report_dir).map_err(|e| ReportError::io(&report_dir, e))?;

    let pairs_svg = write_chart(&figures::messages_chart(&summary), &report_dir, "pairs")?;
    let bytes_svg = write_chart(&figures::bytes_chart(&summary), &report_dir, "bytes")?;

    let index = report_dir.join("index.html");
    write_text(&index, &html::index_html(&summary, provenance, &pairs_svg, &bytes_svg))?;
    write_text(&report_dir.join("summary.md"), &markdown::summary_md(&summary, provenance))?;
    Ok(index)
}

/// Writes `<name>.svg` and `<name>.png`; returns the SVG text for inlining in the page.
fn write_chart(chart: &GroupedBarChart, dir: &Path, name: &str) -> Result<String, ReportError> {
    let svg_path = dir.join(format!("{name}.svg"));
    let svg = chart.to_svg().map_err(|message| ReportError::Chart { path: svg_path.clone(), message })?;
    write_text(&svg_path, &svg)?;
    let png_path = dir.join(format!("{name}.png"));
    chart.write_png(&png_path).map_err(|message| ReportError::Chart { path: png_path, message })?;
    Ok(svg)
}

fn write_text(path: &Path, text: &str) -> Result<(), ReportError> {
    std::fs::write(path, text).map_err(|e| ReportError::io(path, e))
}
