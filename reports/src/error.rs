//! The one error type of the report stage; every message names the file involved.

use std::path::PathBuf;

use analysis::AnalysisError;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The analysis tables could not be read (the inner message names the file and the fix).
    #[error(transparent)]
    Analysis(#[from] AnalysisError),

    /// Writing a report file failed: permissions, a full disk.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },

    /// The font compiled into the binary was rejected: the build is broken, not the input.
    #[error("the bundled font {name} could not be loaded; the smtplab build is broken")]
    Font { name: &'static str },

    /// Plotting a chart failed.
    #[error("{}: could not draw the chart ({message})", path.display())]
    Chart { path: PathBuf, message: String },
}

impl ReportError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        ReportError::Io { path: path.to_path_buf(), source }
    }
}
