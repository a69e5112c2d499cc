//! Scenario errors: a bad file (with where and a hint), a run that could not start, or a run
//! that went wrong.

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: {key}: {message}")]
    Invalid { path: String, key: String, message: String },
    #[error(transparent)]
    Capture(#[from] tap::TapError),
    #[error(transparent)]
    Relay(#[from] relay::RelayError),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("--run-dir {dir}: {message}")]
    RunDir { dir: String, message: String },
    #[error("{0}")]
    Run(String),
    /// Slurm refused or could not be reached; the message says what to do.
    #[error("{0}")]
    Slurm(String),
}

impl ScenarioError {
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| ScenarioError::Io { what, source }
    }
}
