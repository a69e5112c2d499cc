//! The 1997 proposal's "grand scale" question as a curve (issue 13): what share of all mail an
//! active attacker reads against the share of domains it attacks (its effort), per defense, over
//! the runs of a sweep; and what share of all mail the senders' TLS-RPT reports would have shown
//! attacked, against the same effort.
//!
//! From each run's own `analysis/attack_matrix` (one row per defense × attack cell, with its
//! copies) and its resolved scenario: a defense's shares in a run pool every cell of its row,
//! the attack-free column included, so they are shares of all the mail its senders sent. The
//! effort of a run is the share of the scenario's domains whose MX some attacker intercepts
//! (`domains`, plus the receivers of `links`), from `manifest.json` and `truth/systems.json`.
//! Runs of one sweep point are summarised by the mean and 95% interval over seeds.
//!
//! Written as `analysis/attack_effort` in the sweep directory, for sweeps whose runs have attack
//! matrices.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use polars::prelude::*;

use crate::AttackCell;
use crate::error::AnalysisError;
use crate::layout::RunLayout;
use crate::record_frames::str_col;
use crate::stats::MeanCi;
use crate::table_io::{write_csv, write_parquet};

pub const TABLE_ATTACK_EFFORT: &str = "attack_effort";

/// The defense label of the row pooling every sender, whatever its policy.
pub const ALL_DEFENSES: &str = "all";

/// The measures of the curve, per run and defense: shares of the copies its senders sent.
const MEASURES: [&str; 4] = ["read_share", "delivered_share", "held_share", "reported_share"];

/// A mean over seeds and its 95% interval's ends (the ends `None` below two seeds).
pub type MeanInterval = (Option<f64>, Option<f64>, Option<f64>);

/// One point of one defense's curve, as `analysis/attack_effort` has it.
#[derive(Debug, Clone, PartialEq)]
pub struct EffortPoint {
    pub point: String,
    /// Mean over the point's runs of the share of domains attacked.
    pub effort: f64,
    pub defense: String,
    pub runs: u64,
    pub messages: u64,
    pub read: MeanInterval,
    pub reported: MeanInterval,
    pub held: MeanInterval,
}

/// One run's shares for one defense: copies, and per measure the share.
#[derive(Default)]
struct RunRow {
    copies: u64,
    sums: [f64; MEASURES.len()],
}

impl RunRow {
    fn add(&mut self, c: &AttackCell) {
        let held = match (c.deferred_share, c.bounced_share) {
            (None, None) => None,
            (d, b) => Some(d.unwrap_or(0.0) + b.unwrap_or(0.0)),
        };
        let shares = [c.read_share, c.delivered_share, held, c.reported_share];
        self.copies += c.messages;
        for (sum, share) in self.sums.iter_mut().zip(shares) {
            *sum += share.unwrap_or(0.0) * c.messages as f64;
        }
    }

    fn share(&self, k: usize) -> Option<f64> {
        (self.copies > 0).then(|| self.sums[k] / self.copies as f64)
    }
}

/// The share of the run's domains whose MX an attacker intercepts; `None` when the run has no
/// readable scenario or systems.
fn effort_of(run: &Path) -> Result<Option<f64>, AnalysisError> {
    let layout = RunLayout::new(run);
    if !layout.manifest_json().is_file() {
        return Ok(None);
    }
    // A scenario without attackers is the zero-effort baseline.
    let Some(placements) = crate::attack::placements(&layout.manifest_json())? else { return Ok(Some(0.0)) };
    let Some(systems) = crate::ingest::read_systems(&layout.truth_systems_json())? else { return Ok(None) };
    if systems.is_empty() {
        return Ok(None);
    }
    let mut attacked: HashSet<String> = HashSet::new();
    for p in &placements {
        attacked.extend(p.domains.iter().map(|d| d.to_ascii_lowercase()));
        for (_, receiver) in &p.links {
            if let Some(s) = systems.iter().find(|s| &s.name == receiver) {
                attacked.insert(s.domain.to_ascii_lowercase());
            }
        }
    }
    let domains: HashSet<String> = systems.iter().map(|s| s.domain.to_ascii_lowercase()).collect();
    Ok(Some(attacked.intersection(&domains).count() as f64 / domains.len() as f64))
}

/// Writes `analysis/attack_effort` of the sweep in `dir` when its runs have attack matrices;
/// returns whether it did.
pub fn write_sweep_attack_effort(dir: &Path) -> Result<bool, AnalysisError> {
    // (point, defense) -> (efforts, copies, per measure one share per run)
    type Curve = (Vec<f64>, u64, Vec<Vec<Option<f64>>>);
    let mut curves: BTreeMap<(String, String), Curve> = BTreeMap::new();
    for run in crate::sweep_dir::sweep_runs(dir)? {
        let Some(cells) = crate::attack::read_attack_matrix(&run)? else { continue };
        let Some(effort) = effort_of(&run)? else { continue };
        let layout = RunLayout::new(&run);
        let point = records::read_json_file_opt::<records::PointInfo>(&layout.point_json(), "a sweep point")
            .map_err(AnalysisError::from)?
            .map(|p| p.point)
            .unwrap_or_default();
        let mut rows: BTreeMap<&str, RunRow> = BTreeMap::new();
        for c in &cells {
            rows.entry(c.defense.as_str()).or_default().add(c);
            rows.entry(ALL_DEFENSES).or_default().add(c);
        }
        for (defense, row) in rows {
            let curve = curves
                .entry((point.clone(), defense.to_string()))
                .or_insert_with(|| (Vec::new(), 0, vec![Vec::new(); MEASURES.len()]));
            curve.0.push(effort);
            curve.1 += row.copies;
            for (k, values) in curve.2.iter_mut().enumerate() {
                values.push(row.share(k));
            }
        }
    }
    if curves.is_empty() {
        return Ok(false);
    }
    let keys: Vec<&(String, String)> = curves.keys().collect();
    let mut columns = vec![
        str_col("point", keys.iter().map(|k| k.0.as_str())),
        Column::new(
            "effort".into(),
            curves.values().map(|c| c.0.iter().sum::<f64>() / c.0.len() as f64).collect::<Vec<_>>(),
        ),
        str_col("defense", keys.iter().map(|k| k.1.as_str())),
        Column::new("runs".into(), curves.values().map(|c| c.0.len() as u64).collect::<Vec<_>>()),
        Column::new("messages".into(), curves.values().map(|c| c.1).collect::<Vec<_>>()),
    ];
    for (k, measure) in MEASURES.iter().enumerate() {
        let ci: Vec<MeanCi> = curves.values().map(|c| MeanCi::of(&c.2[k])).collect();
        columns.push(Column::new((*measure).into(), ci.iter().map(|c| c.mean).collect::<Vec<_>>()));
        columns.push(Column::new(format!("{measure}_low").into(), ci.iter().map(|c| c.low).collect::<Vec<_>>()));
        columns.push(Column::new(format!("{measure}_high").into(), ci.iter().map(|c| c.high).collect::<Vec<_>>()));
    }
    let out = RunLayout::new(dir);
    let path = out.table_parquet(TABLE_ATTACK_EFFORT);
    let mut df = DataFrame::new(columns).map_err(|source| AnalysisError::Table {
        path: path.clone(),
        action: "build the table",
        source,
        hint: "please report this with the sweep directory",
    })?;
    write_parquet(&mut df, &path)?;
    write_csv(&mut df, &out.table_csv(TABLE_ATTACK_EFFORT))?;
    Ok(true)
}

/// The sweep's `analysis/attack_effort`, ordered by defense then effort; `None` when the sweep
/// has none (its runs have no attackers).
pub fn read_attack_effort(sweep_dir: &Path) -> Result<Option<Vec<EffortPoint>>, AnalysisError> {
    let path = RunLayout::new(sweep_dir).table_parquet(TABLE_ATTACK_EFFORT);
    if !path.is_file() {
        return Ok(None);
    }
    let m = crate::table_io::read_parquet(&path, crate::error::HINT_ANALYZE)?;
    let bad = |column: &str, expected: &'static str| AnalysisError::Column {
        path: path.clone(),
        column: column.into(),
        expected,
        hint: "rerun smtplab analyze on this sweep",
    };
    let text = |c: &str| m.column(c).ok().and_then(|c| c.str().ok().cloned()).ok_or_else(|| bad(c, "String"));
    let float = |c: &str| m.column(c).ok().and_then(|c| c.f64().ok().cloned()).ok_or_else(|| bad(c, "Float64"));
    let count = |c: &str| m.column(c).ok().and_then(|c| c.u64().ok().cloned()).ok_or_else(|| bad(c, "UInt64"));
    let (point, defense, effort, runs, messages) =
        (text("point")?, text("defense")?, float("effort")?, count("runs")?, count("messages")?);
    let triple = |measure: &str| -> Result<_, AnalysisError> {
        Ok((float(measure)?, float(&format!("{measure}_low"))?, float(&format!("{measure}_high"))?))
    };
    let (read, reported, held) = (triple("read_share")?, triple("reported_share")?, triple("held_share")?);
    let at = |t: &(Float64Chunked, Float64Chunked, Float64Chunked), i: usize| (t.0.get(i), t.1.get(i), t.2.get(i));
    let mut points: Vec<EffortPoint> = (0..m.height())
        .map(|i| EffortPoint {
            point: point.get(i).unwrap_or("").into(),
            effort: effort.get(i).unwrap_or(0.0),
            defense: defense.get(i).unwrap_or("").into(),
            runs: runs.get(i).unwrap_or(0),
            messages: messages.get(i).unwrap_or(0),
            read: at(&read, i),
            reported: at(&reported, i),
            held: at(&held, i),
        })
        .collect();
    points.sort_by(|a, b| a.defense.cmp(&b.defense).then(a.effort.total_cmp(&b.effort)));
    Ok(Some(points))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A matrix cell: (defense, attack, copies, read, deferred, reported).
    type Cell<'a> = (&'a str, &'a str, u64, f64, f64, f64);

    /// A hand-made run: four systems, an attacker on `attacked` domains, and its matrix cells.
    fn run(dir: &Path, name: &str, point: &str, attacked: &[&str], cells: &[Cell]) {
        let layout = RunLayout::new(&dir.join(name));
        std::fs::create_dir_all(layout.truth_dir()).expect("dir");
        let info = serde_json::json!({"sweep": "s", "point": point, "params": {}, "seed": 1});
        std::fs::write(layout.point_json(), info.to_string()).expect("point");
        let manifest = serde_json::json!({"status": "complete", "scenario": {"attacks": [
            {"attack": "strip", "domains": attacked, "links": [["a", "b"]]}]}});
        std::fs::write(layout.manifest_json(), manifest.to_string()).expect("manifest");
        let systems: Vec<serde_json::Value> = ["a", "b", "c", "d"]
            .iter()
            .map(|n| serde_json::json!({"name": n, "domain": format!("{n}.example"), "starttls": true}))
            .collect();
        std::fs::write(layout.truth_systems_json(), serde_json::Value::from(systems).to_string()).expect("systems");
        let col = |f: fn(&Cell) -> f64| cells.iter().map(f).collect::<Vec<f64>>();
        let mut df = DataFrame::new(vec![
            str_col("defense", cells.iter().map(|c| c.0)),
            str_col("attack", cells.iter().map(|c| c.1)),
            Column::new("messages".into(), cells.iter().map(|c| c.2).collect::<Vec<u64>>()),
            Column::new("read_share".into(), col(|c| c.3)),
            Column::new("delivered_share".into(), col(|c| 1.0 - c.4)),
            Column::new("deferred_share".into(), col(|c| c.4)),
            Column::new("bounced_share".into(), col(|_| 0.0)),
            Column::new("plaintext_share".into(), col(|c| c.3)),
            Column::new("authenticated_share".into(), col(|_| 0.0)),
            Column::new("reported_share".into(), col(|c| c.5)),
        ])
        .expect("frame");
        write_parquet(&mut df, &layout.table_parquet(crate::TABLE_ATTACK_MATRIX)).expect("write");
    }

    /// Effort from the scenario (domains plus link receivers, of all domains); a defense's
    /// shares pool its row's cells by copies; seeds give the mean and t-interval; the `all` row
    /// pools every sender. Values worked by hand in the comments.
    #[test]
    fn effort_curve_pools_each_defense_row_per_run_and_averages_over_seeds() {
        let dir = std::env::temp_dir().join(format!("smtplab-effort-{}", std::process::id()));
        // Seed 1: c.example attacked, plus b (receiver of the a→b link): effort 2/4 = 0.5.
        // may: 6 copies unattacked + 4 stripped and read → read 4/10 = 0.4.
        // encrypt: 5 unattacked + 5 stripped, deferred and reported → read 0, held 0.5, reported 0.5.
        run(
            &dir,
            "p-s1",
            "half",
            &["c.example"],
            &[
                ("may", "none", 6, 0.0, 0.0, 0.0),
                ("may", "strip", 4, 1.0, 0.0, 0.0),
                ("encrypt", "none", 5, 0.0, 0.0, 0.0),
                ("encrypt", "strip", 5, 0.0, 1.0, 1.0),
            ],
        );
        // Seed 2: the same effort; may: 8 + 2 read → 0.2; encrypt: 10 unattacked → 0.
        run(
            &dir,
            "p-s2",
            "half",
            &["C.example"],
            &[
                ("may", "none", 8, 0.0, 0.0, 0.0),
                ("may", "strip", 2, 1.0, 0.0, 0.0),
                ("encrypt", "none", 10, 0.0, 0.0, 0.0),
            ],
        );
        // No attacked domain but the link's receiver: effort 1/4.
        run(&dir, "q-s1", "quarter", &[], &[("may", "strip", 10, 1.0, 0.0, 0.0)]);
        assert!(write_sweep_attack_effort(&dir).expect("effort"));
        let points = read_attack_effort(&dir).expect("read").expect("table");
        let find = |point: &str, defense: &str| {
            points.iter().find(|p| p.point == point && p.defense == defense).expect("row").clone()
        };
        let may = find("half", "may");
        assert_eq!((may.effort, may.runs, may.messages), (0.5, 2, 20));
        // mean (0.4 + 0.2) / 2 = 0.3; sd 0.1414; half width 12.706 × 0.1414 / √2 = 1.2706.
        assert!((may.read.0.expect("mean") - 0.3).abs() < 1e-12);
        assert!((may.read.2.expect("high") - 0.3 - 1.2706).abs() < 1e-3);
        let encrypt = find("half", "encrypt");
        // read 0 and 0; held 0.5 and 0 → 0.25; reported the same.
        assert_eq!(encrypt.read.0, Some(0.0));
        assert!((encrypt.held.0.expect("held") - 0.25).abs() < 1e-12);
        assert!((encrypt.reported.0.expect("reported") - 0.25).abs() < 1e-12);
        // all senders, seed 1: read 4 of 20 = 0.2; seed 2: 2 of 20 = 0.1 → 0.15.
        let all = find("half", ALL_DEFENSES);
        assert_eq!(all.messages, 40);
        assert!((all.read.0.expect("mean") - 0.15).abs() < 1e-12);
        let quarter = find("quarter", "may");
        assert_eq!((quarter.effort, quarter.runs, quarter.read), (0.25, 1, (Some(1.0), None, None)));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
