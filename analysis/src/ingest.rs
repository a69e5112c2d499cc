//! Ingest: the JSON-lines records of a run become Parquet tables beside them.
//!
//! Parquet is what the analysis (and anyone exploring a run with polars or pandas) reads: typed,
//! columnar and fast. The JSON lines stay the source of truth; ingesting twice gives the same
//! files.

use std::path::Path;

use polars::prelude::{DataFrame, PolarsResult};
use records::{SessionRecord, TapSession, TapTransaction, TruthMessage, for_each_jsonl, read_jsonl};

use crate::error::{AnalysisError, HINT_RUN};
use crate::layout::RunLayout;
use crate::record_frames::{self, SystemEntry};
use crate::table_io::write_parquet;
use crate::tap_tables::TapTableWriter;

/// Converts the run's JSON-lines inputs into Parquet beside them:
/// `truth/messages.parquet`, `truth/hops.parquet`, `truth/systems.parquet` (when
/// `truth/systems.json` exists), `tap/sessions.parquet` and `tap/transactions.parquet`.
///
/// The ground-truth files must exist. The tap files may be missing (the tap saw nothing): they
/// give empty tables with the full schema.
///
/// A run with a paired plaintext control (`control/`) has the control ingested too; a sweep
/// directory (see [`crate::is_sweep`]) has every run of it ingested.
pub fn ingest(dir: &Path) -> Result<(), AnalysisError> {
    if crate::sweep::is_sweep(dir) {
        for run in crate::sweep::sweep_runs(dir)? {
            ingest(&run)?;
        }
        return Ok(());
    }
    ingest_run(dir)?;
    let layout = RunLayout::new(dir);
    if layout.has_control() {
        ingest_run(&layout.control_dir())?;
    }
    Ok(())
}

fn ingest_run(run_dir: &Path) -> Result<(), AnalysisError> {
    let layout = RunLayout::new(run_dir);

    let messages: Vec<TruthMessage> = read_required(&layout.truth_messages_jsonl())?;
    write_frame(record_frames::truth_messages_frame(&messages), &layout.truth_messages_parquet())?;

    let sessions: Vec<SessionRecord> = read_required(&layout.truth_sessions_jsonl())?;
    write_frame(record_frames::truth_hops_frame(&sessions), &layout.truth_hops_parquet())?;
    let recorded = outcomes_recorded(&layout);
    write_frame(record_frames::truth_outcomes_frame(&messages, &sessions, recorded), &layout.truth_outcomes_parquet())?;

    if let Some(systems) = read_systems(&layout.truth_systems_json())? {
        write_frame(record_frames::systems_frame(&systems), &layout.truth_systems_parquet())?;
    }

    // The tap's records can be many (one per TCP session and per transaction): streamed from
    // the JSON lines into the tables a batch at a time.
    let mut tap = TapTableWriter::create(&layout.tap_sessions_parquet(), &layout.tap_transactions_parquet())?;
    for_each_optional(&layout.tap_sessions_jsonl(), |s: TapSession| tap.push_session(s))?;
    for_each_optional(&layout.tap_transactions_jsonl(), |t: TapTransaction| tap.push_transaction(t))?;
    tap.finish()
}

fn read_required<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, AnalysisError> {
    if !path.is_file() {
        return Err(AnalysisError::Missing { path: path.to_path_buf(), hint: HINT_RUN });
    }
    Ok(read_jsonl(path)?)
}

/// The tap writes nothing when it saw nothing: a missing file is an empty one.
fn for_each_optional<T: serde::de::DeserializeOwned>(
    path: &Path,
    each: impl FnMut(T) -> Result<(), AnalysisError>,
) -> Result<(), AnalysisError> {
    if !path.exists() {
        return Ok(());
    }
    for_each_jsonl(path, each)
}

/// The analysis does not need the system list, so an older run without it still ingests.
pub(crate) fn read_systems(path: &Path) -> Result<Option<Vec<SystemEntry>>, AnalysisError> {
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| AnalysisError::io(path, e))?;
    serde_json::from_str(&text).map(Some).map_err(|source| AnalysisError::Systems { path: path.to_path_buf(), source })
}

fn write_frame(frame: PolarsResult<DataFrame>, path: &Path) -> Result<(), AnalysisError> {
    let mut df = frame.map_err(|source| AnalysisError::Table {
        path: path.to_path_buf(),
        action: "build the table",
        source,
        hint: "please report this with the run directory",
    })?;
    write_parquet(&mut df, path)
}

/// Whether the run's relays recorded final outcomes (`"truth_outcomes": true` in the manifest):
/// runs made before they did, or without a manifest, give `unknown` outcomes.
fn outcomes_recorded(layout: &RunLayout) -> bool {
    std::fs::read_to_string(layout.manifest_json())
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|m| m["truth_outcomes"] == true)
}
