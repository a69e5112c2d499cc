//! Analysis and report of a run or sweep directory from its saved files: the last steps of
//! `smtplab run` and `smtplab sweep`, and the commands `analyze` and `report`.

use std::path::Path;

use anyhow::Result;

/// Analyses a run directory, or every run of a sweep directory and the sweep, and prints the
/// headline table.
pub fn analyze(dir: &Path) -> Result<()> {
    analyze_with(dir, false)
}

/// [`analyze`]; with `reuse_runs`, a sweep's complete runs keep their own analysis.
pub fn analyze_with(dir: &Path, reuse_runs: bool) -> Result<()> {
    if analysis::is_sweep(dir) {
        let summary = analysis::analyze_sweep_with(dir, reuse_runs)?;
        println!("{}", analysis::format_sweep_table(&summary));
    } else {
        analysis::ingest(dir)?;
        let summary = analysis::analyze(dir)?;
        println!("{}", analysis::format_table(&summary));
        if let Some(cells) = analysis::read_attack_matrix(dir)? {
            print_attack_matrix(&cells);
        }
    }
    Ok(())
}

/// The defense × attack matrix of a run with attackers, one line per cell.
fn print_attack_matrix(cells: &[analysis::AttackCell]) {
    println!("\nActive attackers: recipient copies per sender policy (defense) and attack on the path");
    println!("{:<10} {:<24} {:>7} {:>8} {:>10} {:>9}", "defense", "attack", "copies", "read", "delivered", "deferred");
    for c in cells {
        println!(
            "{:<10} {:<24} {:>7} {:>8} {:>10} {:>9}",
            c.defense,
            c.attack,
            c.messages,
            analysis::format_share(c.read_share),
            analysis::format_share(c.delivered_share),
            analysis::format_share(c.deferred_share)
        );
    }
}

/// Renders the report of a run or sweep directory from its saved files.
pub fn report(dir: &Path) -> Result<std::path::PathBuf> {
    if analysis::is_sweep(dir) {
        let sweep = records::read_json_file::<records::SweepFile>(&dir.join("sweep.json"), "a sweep description").ok();
        return Ok(reports::render_sweep(dir, &reports::Provenance::of_sweep(sweep.as_ref()))?);
    }
    let manifest = records::read_json_file::<records::Manifest>(&dir.join("manifest.json"), "a run manifest").ok();
    let mut provenance = reports::Provenance::of_run(manifest.as_ref());
    // The manifest has the capture's hash when `run` made the directory; otherwise hash it here.
    if provenance.capture_sha256.is_none() {
        provenance.capture_sha256 = scenarios::provenance::sha256_file(&dir.join("capture.pcap")).ok();
    }
    Ok(reports::render(dir, &provenance)?)
}
