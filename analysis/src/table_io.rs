//! Reading and writing table files with polars, with errors that name the file.

use std::fs::File;
use std::path::Path;

use polars::prelude::*;

use crate::error::AnalysisError;

/// Writes `df` as Parquet at `path`, replacing it. Row order is kept, so equal inputs give equal
/// files: the writer stores no timestamps.
pub fn write_parquet(df: &mut DataFrame, path: &Path) -> Result<(), AnalysisError> {
    ensure_parent(path)?;
    let file = File::create(path).map_err(|e| AnalysisError::io(path, e))?;
    // Snappy: several times faster to write than the default zstd for a little more disk, and
    // read by every Parquet tool.
    ParquetWriter::new(file).with_compression(ParquetCompression::Snappy).finish(df).map_err(|source| {
        AnalysisError::Table {
            path: path.to_path_buf(),
            action: "write Parquet",
            source,
            hint: "check free disk space and permissions",
        }
    })?;
    Ok(())
}

/// A Parquet file written a frame at a time (each frame a row group), for tables too large to
/// build whole. Same compression as [`write_parquet`].
pub struct ParquetChunks {
    path: std::path::PathBuf,
    file: Option<File>,
    writer: Option<polars::io::parquet::write::BatchedWriter<File>>,
}

impl ParquetChunks {
    pub fn create(path: &Path) -> Result<Self, AnalysisError> {
        ensure_parent(path)?;
        let file = File::create(path).map_err(|e| AnalysisError::io(path, e))?;
        Ok(Self { path: path.to_path_buf(), file: Some(file), writer: None })
    }

    /// Appends `df`; every frame must have the schema of the first.
    pub fn write(&mut self, df: &DataFrame) -> Result<(), AnalysisError> {
        if self.writer.is_none()
            && let Some(file) = self.file.take()
        {
            let writer = ParquetWriter::new(file).with_compression(ParquetCompression::Snappy).batched(df.schema());
            self.writer = Some(writer.map_err(|e| self.error(e))?);
        }
        match self.writer.as_mut() {
            Some(w) => w.write_batch(df).map_err(|source| AnalysisError::Table {
                path: self.path.clone(),
                action: "write Parquet",
                source,
                hint: "check free disk space and permissions",
            }),
            None => Ok(()),
        }
    }

    pub fn finish(self) -> Result<(), AnalysisError> {
        if let Some(w) = &self.writer {
            w.finish().map_err(|e| self.error(e))?;
        }
        Ok(())
    }

    fn error(&self, source: PolarsError) -> AnalysisError {
        AnalysisError::Table {
            path: self.path.clone(),
            action: "write Parquet",
            source,
            hint: "check free disk space and permissions",
        }
    }
}

/// Writes `df` as CSV with a header row, replacing the file. Only flat columns can go to CSV.
pub fn write_csv(df: &mut DataFrame, path: &Path) -> Result<(), AnalysisError> {
    ensure_parent(path)?;
    let mut file = File::create(path).map_err(|e| AnalysisError::io(path, e))?;
    CsvWriter::new(&mut file).include_header(true).finish(df).map_err(|source| AnalysisError::Table {
        path: path.to_path_buf(),
        action: "write CSV",
        source,
        hint: "check free disk space and permissions",
    })
}

/// Opens a Parquet file lazily. A missing file is reported with `hint` (what to run first).
pub fn scan_parquet(path: &Path, hint: &'static str) -> Result<LazyFrame, AnalysisError> {
    if !path.is_file() {
        return Err(AnalysisError::Missing { path: path.to_path_buf(), hint });
    }
    // Never read `key=value` directories of the path as hive partitions: sweep points are named
    // that way, and polars' partition type inference panics on them.
    let args = ScanArgsParquet {
        hive_options: polars::io::HiveOptions { enabled: Some(false), ..Default::default() },
        ..Default::default()
    };
    LazyFrame::scan_parquet(path, args).map_err(|source| AnalysisError::Table {
        path: path.to_path_buf(),
        action: "open Parquet",
        source,
        hint,
    })
}

/// Reads a whole Parquet file. A missing file is reported with `hint` (what to run first).
pub fn read_parquet(path: &Path, hint: &'static str) -> Result<DataFrame, AnalysisError> {
    if !path.is_file() {
        return Err(AnalysisError::Missing { path: path.to_path_buf(), hint });
    }
    let file = File::open(path).map_err(|e| AnalysisError::io(path, e))?;
    ParquetReader::new(file).finish().map_err(|source| AnalysisError::Table {
        path: path.to_path_buf(),
        action: "read Parquet (the file may be truncated)",
        source,
        hint,
    })
}

fn ensure_parent(path: &Path) -> Result<(), AnalysisError> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir).map_err(|e| AnalysisError::io(dir, e)),
        _ => Ok(()),
    }
}
