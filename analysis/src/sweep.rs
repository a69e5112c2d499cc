//! Sweeps: one scenario run at several points of a parameter space, each with several seeds.
//!
//! A sweep directory holds `sweep.json` and one run directory per (point, seed) as its direct
//! subdirectories. [`analyze_sweep`] analyses every run, reads all their one-row summaries with
//! one glob (`*/analysis/summary.parquet`), and writes under `<sweep>/analysis/`:
//! `runs.*` (those rows), `points.*` (per point and metric: mean over seeds with a 95%
//! t-interval) and `tls_cost.*` (the TLS cost over every session of every run and control).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{AnalysisError, HINT_ANALYZE};
use crate::layout::{TABLE_POINTS, TABLE_RUNS, TABLE_SESSIONS, TABLE_SUMMARY, TABLE_TLS_COST};
use crate::metrics::RunMetrics;
use crate::stats::MeanCi;
use crate::summary::TlsCostRow;
pub use crate::sweep_dir::{SWEEP_JSON, is_sweep, sweep_runs};
use crate::table_io::{read_parquet, write_csv, write_parquet};

/// `sweep.json` as the sweep planner writes it (`records::SweepFile`).
pub use records::{SweepEntry, SweepFile};

/// Reads one metric of a run.
pub type MetricGetter = fn(&RunMetrics) -> Option<f64>;

/// The metrics summarised per point, as (column of `analysis/summary`, how to read it).
pub const SWEEP_METRICS: [(&str, MetricGetter); 24] = [
    ("share_content", |r| r.hop_shares.content),
    ("share_headers", |r| r.hop_shares.headers),
    ("share_envelope", |r| r.hop_shares.envelope),
    ("share_volume", |r| r.hop_shares.volume),
    ("share_unobserved", |r| r.hop_shares.unobserved),
    ("worst_share_content", |r| r.worst_shares.content),
    ("analytic_content_share", |r| r.analytic.content_share),
    ("analytic_withheld_share", |r| r.analytic.withheld_share),
    ("control_share_content", |r| r.control_shares.content),
    ("content_share_diff", |r| r.content_share_diff),
    ("linkable_share", |r| r.linkable_share),
    ("messages_est_rel_err", |r| r.messages_est_rel_err),
    ("bytes_est_rel_err", |r| r.bytes_est_rel_err),
    ("messages_est_abs_err", |r| r.messages_est_rel_err.map(f64::abs)),
    ("hop_messages", |r| Some(r.hop_messages as f64)),
    ("messages_crossing", |r| Some(r.messages_crossing as f64)),
    ("cover_wire_share", |r| r.costs.cover_wire_share),
    ("wire_per_mail_byte", |r| r.costs.wire_per_mail_byte),
    ("delivery_latency_p50", |r| r.costs.delivery_latency_p50),
    ("delivery_latency_p99", |r| r.costs.delivery_latency_p99),
    ("link_median_anonymity_set", |r| r.linkage.median_anonymity_set),
    ("link_mean_entropy_bits", |r| r.linkage.mean_entropy_bits),
    ("link_precision", |r| r.linkage.precision),
    ("link_recall", |r| r.linkage.recall),
];

/// One metric of one point over its seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricStat {
    pub metric: String,
    pub ci: MeanCi,
}

/// One point of an analysed sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointSummary {
    pub point: String,
    /// Position in `sweep.json` (points not listed there come last).
    pub index: usize,
    pub params: serde_json::Map<String, serde_json::Value>,
    /// The value of the sweep's numeric x key at this point, if it has one.
    pub x: Option<f64>,
    /// Seeds of the runs found for this point.
    pub seeds: Vec<u64>,
    pub metrics: Vec<MetricStat>,
}

impl PointSummary {
    /// The statistics of `metric` (a name of [`SWEEP_METRICS`]).
    pub fn metric(&self, metric: &str) -> Option<&MeanCi> {
        self.metrics.iter().find(|m| m.metric == metric).map(|m| &m.ci)
    }

    /// The point's parameters as "key=value, ...".
    pub fn params_text(&self) -> String {
        self.params.iter().map(|(k, v)| format!("{k}={}", value_text(v))).collect::<Vec<_>>().join(", ")
    }
}

/// A JSON parameter value as plain text (strings without quotes).
pub fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Everything a sweep report needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepSummary {
    pub name: String,
    pub keys: Vec<String>,
    /// The first swept key whose value is a number at every point: the x axis of the adoption
    /// curve. `None` when no swept key is numeric.
    pub x_key: Option<String>,
    pub points: Vec<PointSummary>,
    /// The one-row summary of every run, in point then seed order.
    pub runs: Vec<RunMetrics>,
    /// Relative paths (from the sweep directory) of those runs, in the same order.
    pub run_dirs: Vec<String>,
    /// TLS cost over the sessions of every run and control of the sweep.
    pub tls_cost: Vec<TlsCostRow>,
    /// `(point, seed)` pairs that `sweep.json` lists but no run directory has.
    pub missing: Vec<(String, u64)>,
}

/// Reads `sweep.json`.
pub fn read_sweep_spec(dir: &Path) -> Result<SweepFile, AnalysisError> {
    let path = dir.join(SWEEP_JSON);
    if !path.is_file() {
        return Err(AnalysisError::Missing { path, hint: "not a sweep directory" });
    }
    let text = std::fs::read_to_string(&path).map_err(|e| AnalysisError::io(&path, e))?;
    serde_json::from_str(&text).map_err(|source| AnalysisError::Json { path, what: "a sweep description", source })
}

/// Analyses every run of the sweep in `dir` (ingesting its JSON lines first), then the sweep
/// as a whole; writes `<dir>/analysis/{runs,points,tls_cost}.{parquet,csv}`.
pub fn analyze_sweep(dir: &Path) -> Result<SweepSummary, AnalysisError> {
    analyze_sweep_with(dir, false)
}

/// [`analyze_sweep`], or with `reuse_runs`, keeping the analysis a complete run already has:
/// `smtplab run` wrote it just before it marked the run complete, so only the other runs are
/// analysed, then the sweep. The analysis job of a Slurm sweep does this, where analysing
/// thousands of runs again, one after another, would take longer than running them did.
pub fn analyze_sweep_with(dir: &Path, reuse_runs: bool) -> Result<SweepSummary, AnalysisError> {
    let spec = read_sweep_spec(dir)?;
    let runs = sweep_runs(dir)?;
    if runs.is_empty() {
        return Err(AnalysisError::EmptySweep { path: dir.to_path_buf() });
    }
    for run in &runs {
        if reuse_runs && has_own_analysis(run) {
            continue;
        }
        crate::ingest(run)?;
        crate::analyze(run)?;
    }
    aggregate(dir, &spec)
}

/// A complete run (its manifest says so) with its summary table.
fn has_own_analysis(run: &Path) -> bool {
    let complete = records::read_json_file::<records::Manifest>(&run.join("manifest.json"), "a run manifest")
        .is_ok_and(|m| m.status == records::RunStatus::Complete);
    complete && crate::RunLayout::new(run).table_parquet(TABLE_SUMMARY).is_file()
}

fn glob(dir: &Path, rest: &str) -> String {
    format!("{}/*/{rest}", dir.display())
}

fn scan_glob(pattern: &str, with_paths: bool) -> PolarsResult<LazyFrame> {
    let mut args = ScanArgsParquet::default();
    args.hive_options.enabled = Some(false);
    if with_paths {
        args.include_file_paths = Some("source_file".into());
    }
    LazyFrame::scan_parquet(pattern, args)
}

/// Sweep-level tables from the runs' saved analysis.
fn aggregate(dir: &Path, spec: &SweepFile) -> Result<SweepSummary, AnalysisError> {
    let step = |what: &'static str| AnalysisError::compute(dir, what);
    let pattern = glob(dir, &format!("analysis/{TABLE_SUMMARY}.parquet"));
    let mut runs = scan_glob(&pattern, true).and_then(LazyFrame::collect).map_err(|source| AnalysisError::Table {
        path: PathBuf::from(&pattern),
        action: "read the runs' summaries",
        source,
        hint: HINT_ANALYZE,
    })?;
    // Rows in point order (as sweep.json lists them), then seed; the file path says which run.
    let order: Vec<u32> = {
        let points = runs.column("point").ok().and_then(|c| c.str().ok().cloned());
        let listed = spec.distinct_points();
        let index: std::collections::HashMap<&str, usize> =
            listed.iter().enumerate().map(|(i, p)| (p.point.as_str(), i)).collect();
        (0..runs.height())
            .map(|i| {
                let p = points.as_ref().and_then(|c| c.get(i));
                p.and_then(|p| index.get(p).copied()).unwrap_or(listed.len()) as u32
            })
            .collect()
    };
    runs.with_column(Column::new("point_index".into(), order)).map_err(step("ordering runs"))?;
    let source = runs.column("source_file").and_then(|c| c.str().cloned()).map_err(step("naming runs"))?;
    let run_dirs: Vec<String> = source
        .into_iter()
        .map(|p| {
            let p = Path::new(p.unwrap_or_default());
            // <dir>/<run>/analysis/summary.parquet -> <run>
            p.parent()
                .and_then(Path::parent)
                .and_then(Path::file_name)
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .collect();
    runs.with_column(Column::new("run_dir".into(), run_dirs)).map_err(step("naming runs"))?;
    let mut runs = runs
        .drop("source_file")
        .map_err(step("naming runs"))?
        .sort(["point_index", "seed", "run_dir"], SortMultipleOptions::default())
        .map_err(step("ordering runs"))?;
    let out = crate::RunLayout::new(dir);
    write_parquet(&mut runs, &out.table_parquet(TABLE_RUNS))?;
    write_csv(&mut runs, &out.table_csv(TABLE_RUNS))?;

    let mut summary = summarize(dir, spec, &runs, &out.table_parquet(TABLE_RUNS))?;
    let mut points = points_frame(&summary).map_err(step("building the points table"))?;
    write_parquet(&mut points, &out.table_parquet(TABLE_POINTS))?;
    write_csv(&mut points, &out.table_csv(TABLE_POINTS))?;

    // Every session of every run and every control, pooled, a batch of runs at a time.
    let mut cost = crate::pooled_tls_cost::pooled_tls_cost(&session_tables(dir)?)
        .map_err(step("building the sweep's TLS cost table"))?;
    write_parquet(&mut cost, &out.table_parquet(TABLE_TLS_COST))?;
    write_csv(&mut cost, &out.table_csv(TABLE_TLS_COST))?;
    summary.tls_cost = crate::summary::read_tls_cost(&out.table_parquet(TABLE_TLS_COST))?;
    crate::attack::write_sweep_attack_matrix(dir)?;
    crate::effort::write_sweep_attack_effort(dir)?;
    Ok(summary)
}

/// The session tables of every run of the sweep and of their controls.
fn session_tables(dir: &Path) -> Result<Vec<PathBuf>, AnalysisError> {
    let table = format!("{TABLE_SESSIONS}.parquet");
    Ok(sweep_runs(dir)?
        .iter()
        .flat_map(|r| [r.join("analysis").join(&table), r.join("control/analysis").join(&table)])
        .filter(|p| p.is_file())
        .collect())
}

/// Rebuilds the [`SweepSummary`] of an analysed sweep from `<dir>/analysis/runs.parquet` and
/// `tls_cost.parquet`, for the report.
pub fn read_sweep_summary(dir: &Path) -> Result<SweepSummary, AnalysisError> {
    let spec = read_sweep_spec(dir)?;
    let out = crate::RunLayout::new(dir);
    let path = out.table_parquet(TABLE_RUNS);
    let runs = read_parquet(&path, HINT_ANALYZE)?;
    let mut summary = summarize(dir, &spec, &runs, &path)?;
    summary.tls_cost = crate::summary::read_tls_cost(&out.table_parquet(TABLE_TLS_COST))?;
    Ok(summary)
}

/// The numeric value of a parameter.
fn number(v: Option<&serde_json::Value>) -> Option<f64> {
    v.and_then(serde_json::Value::as_f64)
}

/// Per-point statistics from the runs table.
fn summarize(dir: &Path, spec: &SweepFile, runs: &DataFrame, path: &Path) -> Result<SweepSummary, AnalysisError> {
    let rows = RunMetrics::from_frame(runs, path)?;
    let run_dirs = crate::table_io::TableRef { df: runs, path }.strings("run_dir")?;
    let run_dirs: Vec<String> = run_dirs.into_iter().map(Option::unwrap_or_default).collect();

    // Points: those of sweep.json in order (it lists each point once per seed), then any other
    // point label the runs carry.
    let mut points: Vec<(String, serde_json::Map<String, serde_json::Value>)> =
        spec.distinct_points().into_iter().map(|p| (p.point.clone(), p.params.clone())).collect();
    let listed = points.len();
    // The runs of each point, found once: a sweep may have 10,000 points.
    let mut by_point: std::collections::HashMap<&str, Vec<&RunMetrics>> = std::collections::HashMap::new();
    for r in &rows {
        by_point.entry(r.point.as_deref().unwrap_or_default()).or_default().push(r);
    }
    let mut known: std::collections::HashSet<String> = points.iter().map(|(p, _)| p.clone()).collect();
    for r in &rows {
        let label = r.point.clone().unwrap_or_default();
        if known.insert(label.clone()) {
            let params = serde_json::from_str(&r.params).unwrap_or_default();
            points.push((label, params));
        }
    }
    let keys: Vec<String> = if spec.keys.is_empty() {
        let mut keys: Vec<String> = Vec::new();
        for (_, params) in &points {
            for k in params.keys() {
                if !keys.contains(k) {
                    keys.push(k.clone());
                }
            }
        }
        keys
    } else {
        spec.keys.clone()
    };
    let x_key =
        keys.iter().find(|k| !points.is_empty() && points.iter().all(|(_, p)| number(p.get(*k)).is_some())).cloned();

    let mut summaries = Vec::new();
    for (index, (label, params)) in points.into_iter().enumerate() {
        let mine: &[&RunMetrics] = by_point.get(label.as_str()).map(Vec::as_slice).unwrap_or_default();
        if mine.is_empty() && index >= listed {
            continue;
        }
        let metrics = SWEEP_METRICS
            .iter()
            .map(|(name, get)| MetricStat {
                metric: name.to_string(),
                ci: MeanCi::of(&mine.iter().map(|r| get(r)).collect::<Vec<_>>()),
            })
            .collect();
        let mut seeds: Vec<u64> = mine.iter().filter_map(|r| r.seed).collect();
        seeds.sort_unstable();
        summaries.push(PointSummary {
            x: x_key.as_ref().and_then(|k| number(params.get(k))),
            point: label,
            index,
            params,
            seeds,
            metrics,
        });
    }
    let mut missing = Vec::new();
    for p in summaries.iter().take(listed) {
        for seed in &spec.seeds {
            if !p.seeds.contains(seed) {
                missing.push((p.point.clone(), *seed));
            }
        }
    }
    let _ = dir;
    Ok(SweepSummary {
        name: spec.name.clone(),
        keys,
        x_key,
        points: summaries,
        runs: rows,
        run_dirs,
        tls_cost: Vec::new(),
        missing,
    })
}

/// `analysis/points`: one row per (point, metric).
fn points_frame(summary: &SweepSummary) -> PolarsResult<DataFrame> {
    let mut point = Vec::new();
    let mut index = Vec::new();
    let mut params = Vec::new();
    let mut x = Vec::new();
    let mut metric = Vec::new();
    let mut n = Vec::new();
    let mut mean = Vec::new();
    let mut sd = Vec::new();
    let mut low = Vec::new();
    let mut high = Vec::new();
    let mut half = Vec::new();
    for p in &summary.points {
        for m in &p.metrics {
            point.push(p.point.clone());
            index.push(p.index as u32);
            params.push(serde_json::Value::Object(p.params.clone()).to_string());
            x.push(p.x);
            metric.push(m.metric.clone());
            n.push(m.ci.n as u32);
            mean.push(m.ci.mean);
            sd.push(m.ci.sd);
            low.push(m.ci.low);
            high.push(m.ci.high);
            half.push(m.ci.half_width);
        }
    }
    DataFrame::new(vec![
        Column::new("point".into(), point),
        Column::new("point_index".into(), index),
        Column::new("params".into(), params),
        Column::new("x".into(), x),
        Column::new("metric".into(), metric),
        Column::new("n".into(), n),
        Column::new("mean".into(), mean),
        Column::new("sd".into(), sd),
        Column::new("ci_low".into(), low),
        Column::new("ci_high".into(), high),
        Column::new("ci_half_width".into(), half),
    ])
}

/// Groups the point labels by the values of every swept key except `x_key`, for one curve
/// per group; returns (group label, point indices into `summary.points`).
pub fn curve_groups(summary: &SweepSummary) -> Vec<(String, Vec<usize>)> {
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for (i, p) in summary.points.iter().enumerate() {
        let label = p
            .params
            .iter()
            .filter(|(k, _)| Some(*k) != summary.x_key.as_ref())
            .map(|(k, v)| format!("{k}={}", value_text(v)))
            .collect::<Vec<_>>()
            .join(", ");
        if !groups.contains_key(&label) {
            order.push(label.clone());
        }
        groups.entry(label).or_default().push(i);
    }
    order
        .into_iter()
        .map(|label| {
            let mut idx = groups.remove(&label).unwrap_or_default();
            idx.sort_by(|a, b| {
                summary.points[*a].x.partial_cmp(&summary.points[*b].x).unwrap_or(std::cmp::Ordering::Equal)
            });
            (label, idx)
        })
        .collect()
}
