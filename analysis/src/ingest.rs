//! Ingest: the JSON-lines records of a run become Parquet tables beside them.
//!
//! Parquet is what the analysis (and anyone exploring a run with polars or pandas) reads: typed,
//! columnar and fast. The JSON lines stay the source of truth; ingesting twice gives the same
//! files.

use std::path::Path;

use polars::prelude::{DataFrame, PolarsResult};
use records::{JsonlChunks, SessionRecord, Submission, TapSession, TapTransaction, TruthMessage};

use crate::error::{AnalysisError, HINT_RUN};
use crate::layout::RunLayout;
use crate::record_frames;
use crate::table_io::{ParquetChunks, write_parquet};
use records::SystemInfo;

/// Converts the run's JSON-lines inputs into Parquet beside them:
/// `truth/messages.parquet`, `truth/submissions.parquet`, `truth/hops.parquet`,
/// `truth/systems.parquet` (when
/// `truth/systems.json` exists), `tap/sessions.parquet`, `tap/transactions.parquet` and
/// `tap/tls_records.parquet`.
///
/// The ground-truth files must exist. The tap files may be missing (the tap saw nothing): they
/// give empty tables with the full schema.
///
/// A run with a paired plaintext control (`control/`) has the control ingested too; a sweep
/// directory (see [`crate::is_sweep`]) has every run of it ingested.
pub fn ingest(dir: &Path) -> Result<(), AnalysisError> {
    if crate::sweep_dir::is_sweep(dir) {
        for run in crate::sweep_dir::sweep_runs(dir)? {
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

    require(&layout.truth_messages_jsonl())?;
    convert::<TruthMessage>(&layout.truth_messages_jsonl(), &layout.truth_messages_parquet(), |m, _| {
        record_frames::truth_messages_frame(m)
    })?;
    // Wall-clock submission times: a run stopped before it wrote them has an empty table.
    convert::<Submission>(&layout.truth_submissions_jsonl(), &layout.truth_submissions_parquet(), |s, _| {
        record_frames::truth_submissions_frame(s)
    })?;

    // `session_index` is the position in the whole file: each chunk starts where the last ended.
    // The relays' final deliveries and bounces are gathered on the way, for the outcomes.
    require(&layout.truth_sessions_jsonl())?;
    let mut finals = record_frames::FinalOutcomes::new(outcomes_recorded(&layout));
    convert::<SessionRecord>(&layout.truth_sessions_jsonl(), &layout.truth_hops_parquet(), |s, first| {
        s.iter().for_each(|s| finals.add(s));
        record_frames::truth_hops_frame_from(s, first)
    })?;
    convert::<TruthMessage>(&layout.truth_messages_jsonl(), &layout.truth_outcomes_parquet(), |m, _| {
        record_frames::truth_outcomes_frame(m, &finals)
    })?;

    if let Some(systems) = read_systems(&layout.truth_systems_json())? {
        write_frame(record_frames::systems_frame(&systems), &layout.truth_systems_parquet())?;
    }

    convert::<TapSession>(&layout.tap_sessions_jsonl(), &layout.tap_sessions_parquet(), |s, _| {
        record_frames::tap_sessions_frame(s)
    })?;
    convert::<TapTransaction>(&layout.tap_transactions_jsonl(), &layout.tap_transactions_parquet(), |t, _| {
        record_frames::tap_transactions_frame(t)
    })?;
    // The sessions' TLS application-data records, one row each (a second pass over the file:
    // a chunk's records can be many times its sessions).
    convert::<TapSession>(&layout.tap_sessions_jsonl(), &layout.tap_tls_records_parquet(), |s, _| {
        record_frames::tap_tls_records_frame(s)
    })?;
    Ok(())
}

/// Records converted at a time: ingest memory stays bounded by a chunk, not by the run (the
/// relays' sessions of a 100,000-message run are 230 MB of JSON, several times that as structs).
/// Fixed, so the same input always gives the same row groups and byte-identical files.
const CHUNK: usize = 20_000;

fn require(path: &Path) -> Result<(), AnalysisError> {
    if path.is_file() { Ok(()) } else { Err(AnalysisError::Missing { path: path.to_path_buf(), hint: HINT_RUN }) }
}

/// Converts a JSON-lines file to Parquet a chunk at a time, each chunk a row group. `frame`
/// gets the chunk and the position of its first record in the file. The tap writes nothing when
/// it saw nothing: a missing file is an empty table with the full schema.
fn convert<T: serde::de::DeserializeOwned>(
    jsonl: &Path,
    parquet: &Path,
    mut frame: impl FnMut(&[T], u64) -> PolarsResult<DataFrame>,
) -> Result<(), AnalysisError> {
    let table = |source| AnalysisError::Table {
        path: parquet.to_path_buf(),
        action: "build the table",
        source,
        hint: "please report this with the run directory",
    };
    let mut chunks = if jsonl.exists() { Some(JsonlChunks::<T>::open(jsonl)?) } else { None };
    let mut next = || -> Result<Vec<T>, AnalysisError> {
        Ok(match chunks.as_mut() {
            Some(c) => c.next_chunk(CHUNK)?,
            None => Vec::new(),
        })
    };
    let first = next()?;
    if first.len() < CHUNK {
        // One chunk: the whole table at once, as before there were chunks.
        return write_frame(frame(&first, 0), parquet);
    }
    let mut writer = ParquetChunks::create(parquet)?;
    let mut done = first.len() as u64;
    writer.write(&frame(&first, 0).map_err(table)?)?;
    drop(first);
    loop {
        let chunk = next()?;
        if chunk.is_empty() {
            break;
        }
        writer.write(&frame(&chunk, done).map_err(table)?)?;
        done += chunk.len() as u64;
    }
    writer.finish()
}

/// The analysis does not need the system list, so an older run without it still ingests.
pub(crate) fn read_systems(path: &Path) -> Result<Option<Vec<SystemInfo>>, AnalysisError> {
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
    records::read_json_file::<records::Manifest>(&layout.manifest_json(), "a run manifest")
        .is_ok_and(|m| m.truth_outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table_io::read_parquet;

    /// A file of several chunks gives the table one frame of all its records would: same rows,
    /// same order, `session_index` counted across chunks.
    #[test]
    fn a_file_of_many_chunks_converts_as_one() {
        let dir = std::env::temp_dir().join(format!("smtplab-ingest-chunks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let sessions: Vec<SessionRecord> = (0..2 * CHUNK + 7)
            .map(|i| SessionRecord {
                direction: if i % 3 == 0 { "inbound" } else { "outbound" }.into(),
                system: format!("s{}", i % 5),
                peer_system: (i % 7 != 0).then(|| format!("s{}", i % 11)),
                local_addr: format!("127.0.0.1:{}", 1024 + i % 60000),
                peer_addr: "127.0.0.2:25".into(),
                started_at: i as f64,
                messages: (0..i % 3)
                    .map(|k| records::HopMessage {
                        message_id: format!("{i}.{k}@x"),
                        rcpt_to: vec![format!("u{k}@y")],
                        bytes: (i * 10 + k) as u64,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
            .collect();
        let jsonl = dir.join("sessions.jsonl");
        records::write_jsonl(&jsonl, &sessions).expect("write");
        let parquet = dir.join("hops.parquet");
        convert::<SessionRecord>(&jsonl, &parquet, record_frames::truth_hops_frame_from).expect("convert");
        let chunked = read_parquet(&parquet, "test").expect("read");
        let whole = record_frames::truth_hops_frame(&sessions).expect("frame");
        assert!(chunked.equals_missing(&whole), "{chunked:?}\n{whole:?}");
        // A missing tap file is an empty table with the full schema.
        convert::<TapSession>(&dir.join("none.jsonl"), &dir.join("tap.parquet"), |s, _| {
            record_frames::tap_sessions_frame(s)
        })
        .expect("empty");
        let empty = read_parquet(&dir.join("tap.parquet"), "test").expect("read");
        assert_eq!((empty.height(), empty.width()), (0, record_frames::tap_sessions_frame(&[]).expect("f").width()));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
