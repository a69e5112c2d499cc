//! The tap's Parquet tables, written as records arrive.
//!
//! A capture of any size must be turned into `sessions.parquet`, `transactions.parquet` and
//! `tls_records.parquet` in
//! bounded memory, so records are buffered a batch at a time and each batch becomes one Parquet
//! row group. Both files are written under a temporary name and renamed when finished: a reader
//! never sees a half-written table, and a read that ends early (a truncated capture) still gives
//! complete files holding every record found before the end.

use std::path::{Path, PathBuf};

use polars::prelude::{DataFrame, PolarsError, PolarsResult};
use records::{TapRecord, TapSession, TapTransaction};

use crate::error::AnalysisError;
use crate::record_frames::{tap_sessions_frame, tap_tls_records_frame, tap_transactions_frame};
use crate::table_io::ParquetChunks;

/// Records per row group: large enough for good compression, small enough that a batch of
/// transactions (a few hundred bytes each) stays a few MB.
const BATCH: usize = 8192;

/// Writes tap records into `sessions.parquet`, `transactions.parquet` and
/// `tls_records.parquet`, a batch at a time, with the schemas [`crate::ingest`] gives them.
pub struct TapTableWriter {
    sessions: BatchedTable<TapSession>,
    transactions: BatchedTable<TapTransaction>,
    /// Sessions reduced to their uid and TLS application-data records: the records are held
    /// once, here, not also with the session's batch.
    tls_records: BatchedTable<TapSession>,
}

impl TapTableWriter {
    /// Creates (or replaces, when finished) the three files.
    pub fn create(sessions: &Path, transactions: &Path, tls_records: &Path) -> Result<Self, AnalysisError> {
        Ok(TapTableWriter {
            sessions: BatchedTable::create(sessions, tap_sessions_frame)?,
            transactions: BatchedTable::create(transactions, tap_transactions_frame)?,
            tls_records: BatchedTable::create(tls_records, tap_tls_records_frame)?,
        })
    }

    pub fn push(&mut self, record: TapRecord) -> Result<(), AnalysisError> {
        match record {
            TapRecord::Session(s) => self.push_session(s),
            TapRecord::Transaction(t) => self.transactions.push(t),
        }
    }

    pub fn push_session(&mut self, mut session: TapSession) -> Result<(), AnalysisError> {
        let records = std::mem::take(&mut session.tls_app_records);
        if !records.is_empty() {
            let uid = session.uid.clone();
            self.tls_records.push(TapSession { uid, tls_app_records: records, ..Default::default() })?;
        }
        self.sessions.push(session)
    }

    pub fn push_transaction(&mut self, transaction: TapTransaction) -> Result<(), AnalysisError> {
        self.transactions.push(transaction)
    }

    /// Writes what is buffered and the files' footers, then puts the files in place.
    pub fn finish(self) -> Result<(), AnalysisError> {
        self.sessions.finish()?;
        self.tls_records.finish()?;
        self.transactions.finish()
    }
}

/// One Parquet file written a row group at a time under `<name>.partial`.
struct BatchedTable<T> {
    path: PathBuf,
    partial: PathBuf,
    pending: Vec<T>,
    frame: fn(&[T]) -> PolarsResult<DataFrame>,
    chunks: ParquetChunks,
    written: bool,
}

impl<T> BatchedTable<T> {
    fn create(path: &Path, frame: fn(&[T]) -> PolarsResult<DataFrame>) -> Result<Self, AnalysisError> {
        let partial = partial_path(path);
        let chunks = ParquetChunks::create(&partial)?;
        Ok(BatchedTable {
            path: path.to_path_buf(),
            partial,
            pending: Vec::with_capacity(BATCH),
            frame,
            chunks,
            written: false,
        })
    }

    fn push(&mut self, row: T) -> Result<(), AnalysisError> {
        self.pending.push(row);
        if self.pending.len() >= BATCH { self.flush() } else { Ok(()) }
    }

    fn flush(&mut self) -> Result<(), AnalysisError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let rows = std::mem::replace(&mut self.pending, Vec::with_capacity(BATCH));
        self.write(&rows)
    }

    fn write(&mut self, rows: &[T]) -> Result<(), AnalysisError> {
        let df = (self.frame)(rows).map_err(|e| compute(&self.path, e))?;
        self.written = true;
        self.chunks.write(&df)
    }

    fn finish(mut self) -> Result<(), AnalysisError> {
        self.flush()?;
        if !self.written {
            // No record: the schema alone, from the same builder applied to no rows.
            self.write(&[])?;
        }
        self.chunks.finish()?;
        std::fs::rename(&self.partial, &self.path).map_err(|e| AnalysisError::io(&self.path, e))
    }
}

pub use records::VolumeRow;

/// Writes the volume table as Parquet (`*.parquet`), one row per ordered pair; name lists are
/// `List(String)`.
pub fn write_volume_table(rows: &[VolumeRow], path: &Path) -> Result<(), AnalysisError> {
    use crate::record_frames::{str_col, str_list_col};
    use polars::prelude::Column;
    let r = rows;
    let mut df = DataFrame::new(vec![
        str_col("client", r.iter().map(|x| x.client.as_str())),
        str_col("server", r.iter().map(|x| x.server.as_str())),
        Column::new("sessions".into(), r.iter().map(|x| x.sessions).collect::<Vec<_>>()),
        Column::new("starttls_sessions".into(), r.iter().map(|x| x.starttls_sessions).collect::<Vec<_>>()),
        Column::new("orig_bytes".into(), r.iter().map(|x| x.orig_bytes).collect::<Vec<_>>()),
        Column::new("resp_bytes".into(), r.iter().map(|x| x.resp_bytes).collect::<Vec<_>>()),
        Column::new("transactions".into(), r.iter().map(|x| x.transactions).collect::<Vec<_>>()),
        str_list_col("helo_names", r.iter().map(|x| Some(x.helo_names.as_slice()))),
        str_list_col("server_names", r.iter().map(|x| Some(x.server_names.as_slice()))),
        str_list_col("sni", r.iter().map(|x| Some(x.sni.as_slice()))),
        str_list_col("cert_names", r.iter().map(|x| Some(x.cert_names.as_slice()))),
    ])
    .map_err(|e| compute(path, e))?;
    crate::table_io::write_parquet(&mut df, path)
}

fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".partial");
    path.with_file_name(name)
}

/// Building a frame from records cannot fail on good records: if it does, it is a bug.
fn compute(path: &Path, source: PolarsError) -> AnalysisError {
    AnalysisError::Compute { run_dir: path.to_path_buf(), step: "building a tap table", source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table_io::read_parquet;

    fn session(i: usize) -> TapSession {
        TapSession {
            ts: i as f64,
            uid: format!("C{i}"),
            orig_h: "10.0.0.1".into(),
            orig_p: 40000,
            resp_h: "10.0.0.2".into(),
            resp_p: 25,
            helo: i.is_multiple_of(2).then(|| "mx.example".into()),
            auth_mechanism: i.is_multiple_of(3).then(|| "PLAIN".into()),
            notes: vec![format!("n{i}")],
            ..Default::default()
        }
    }

    #[test]
    fn batches_become_one_table_in_order_with_the_ingest_schema() {
        let dir = tempfile::tempdir().expect("tmp");
        let (s, t, r) = (dir.path().join("s.parquet"), dir.path().join("t.parquet"), dir.path().join("r.parquet"));
        let mut w = TapTableWriter::create(&s, &t, &r).expect("create");
        let n = BATCH * 2 + 17;
        let record = |i: usize| records::TlsAppRecord { ts: i as f64, orig: i.is_multiple_of(2), len: 22 + i as u32 };
        for i in 0..n {
            let tls_app_records = if i % 1000 == 1 { vec![record(i), record(i + 1)] } else { Vec::new() };
            w.push(TapRecord::Session(TapSession { tls_app_records, ..session(i) })).expect("push");
        }
        w.push(TapRecord::Transaction(TapTransaction { uid: "C1".into(), ..Default::default() })).expect("push");
        assert!(!s.exists(), "the table appears only when finished");
        w.finish().expect("finish");
        assert!(!partial_path(&s).exists());

        let read = read_parquet(&s, "test").expect("read");
        assert_eq!(read.height(), n);
        let expected: Vec<TapSession> = (0..n).map(session).collect();
        let whole = tap_sessions_frame(&expected).expect("frame");
        assert_eq!(read.schema(), whole.schema());
        assert!(read.equals_missing(&whole), "streamed table differs from the one-shot table");
        assert_eq!(read_parquet(&t, "test").expect("read").height(), 1);
        let tls = read_parquet(&r, "test").expect("read");
        let with_records: Vec<TapSession> = (0..n)
            .filter(|i| i % 1000 == 1)
            .map(|i| TapSession { tls_app_records: vec![record(i), record(i + 1)], ..session(i) })
            .collect();
        assert_eq!(tls.height(), 2 * with_records.len());
        assert!(tls.equals_missing(&tap_tls_records_frame(&with_records).expect("frame")));
    }

    #[test]
    fn the_volume_table_keeps_its_rows_and_name_lists() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("volume.parquet");
        let row = VolumeRow {
            client: "10.0.0.1".into(),
            server: "10.0.0.2".into(),
            sessions: 3,
            starttls_sessions: 2,
            sni: vec!["mx.b.example".into()],
            ..Default::default()
        };
        write_volume_table(&[row.clone(), VolumeRow { client: "10.0.0.2".into(), ..row }], &path).expect("write");
        let read = read_parquet(&path, "test").expect("read");
        assert_eq!(read.height(), 2);
        assert_eq!(read.column("starttls_sessions").expect("column").u64().expect("u64").get(0), Some(2));
        let sni = read.column("sni").expect("column").list().expect("list").get_as_series(0).expect("row");
        assert_eq!(sni.str().expect("str").get(0), Some("mx.b.example"));
    }

    #[test]
    fn no_records_give_empty_tables_with_the_full_schema() {
        let dir = tempfile::tempdir().expect("tmp");
        let (s, t, r) = (dir.path().join("s.parquet"), dir.path().join("t.parquet"), dir.path().join("r.parquet"));
        TapTableWriter::create(&s, &t, &r).expect("create").finish().expect("finish");
        let read = read_parquet(&t, "test").expect("read");
        assert_eq!(read.height(), 0);
        assert_eq!(read.schema(), tap_transactions_frame(&[]).expect("frame").schema());
        let read = read_parquet(&r, "test").expect("read");
        assert_eq!(read.height(), 0);
        assert_eq!(read.schema(), tap_tls_records_frame(&[]).expect("frame").schema());
    }
}
