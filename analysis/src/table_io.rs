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

/// A table read back from a file, with typed column access whose errors name the file.
pub(crate) struct TableRef<'a> {
    pub df: &'a DataFrame,
    pub path: &'a Path,
}

impl TableRef<'_> {
    fn column_error(&self, column: &str, expected: &'static str) -> AnalysisError {
        AnalysisError::Column {
            path: self.path.to_path_buf(),
            column: column.to_string(),
            expected,
            hint: "re-run `smtplab analyze` on this directory to rewrite it",
        }
    }

    pub fn strings(&self, name: &str) -> Result<Vec<Option<String>>, AnalysisError> {
        let err = || self.column_error(name, "text");
        let ca = self.df.column(name).map_err(|_| err())?.str().map_err(|_| err())?;
        Ok(ca.into_iter().map(|v| v.map(str::to_string)).collect())
    }

    /// Null counts read as 0: a count that was never filled in counted nothing.
    pub fn counts(&self, name: &str) -> Result<Vec<u64>, AnalysisError> {
        Ok(self.opt_counts(name)?.into_iter().map(Option::unwrap_or_default).collect())
    }

    pub fn opt_counts(&self, name: &str) -> Result<Vec<Option<u64>>, AnalysisError> {
        let err = || self.column_error(name, "an unsigned 64-bit count");
        let column = self.df.column(name).map_err(|_| err())?;
        // A column of nulls only (e.g. no control anywhere in a sweep) may come back untyped.
        if column.dtype() == &DataType::Null {
            return Ok(vec![None; column.len()]);
        }
        let ca = column.u64().map_err(|_| err())?;
        Ok(ca.into_iter().collect())
    }

    pub fn u32s(&self, name: &str) -> Result<Vec<u32>, AnalysisError> {
        let err = || self.column_error(name, "an unsigned 32-bit integer");
        let ca = self.df.column(name).map_err(|_| err())?.u32().map_err(|_| err())?;
        Ok(ca.into_iter().map(Option::unwrap_or_default).collect())
    }

    pub fn floats(&self, name: &str) -> Result<Vec<Option<f64>>, AnalysisError> {
        let err = || self.column_error(name, "a 64-bit float");
        let column = self.df.column(name).map_err(|_| err())?;
        if column.dtype() == &DataType::Null {
            return Ok(vec![None; column.len()]);
        }
        let ca = column.f64().map_err(|_| err())?;
        Ok(ca.into_iter().collect())
    }

    pub fn bools(&self, name: &str) -> Result<Vec<bool>, AnalysisError> {
        let err = || self.column_error(name, "boolean");
        let ca = self.df.column(name).map_err(|_| err())?.bool().map_err(|_| err())?;
        Ok(ca.into_iter().map(Option::unwrap_or_default).collect())
    }

    pub fn opt_strings(&self, name: &str) -> Result<Vec<Option<String>>, AnalysisError> {
        let column = self.df.column(name).map_err(|_| self.column_error(name, "text"))?;
        if column.dtype() == &DataType::Null {
            return Ok(vec![None; column.len()]);
        }
        self.strings(name)
    }
}
