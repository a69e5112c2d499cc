//! `smtplab`: the command line. Each stage of the pipeline is a subcommand of its own, and stages
//! talk through the files of the run directory (see ARCHITECTURE.md).

mod cli;
mod commands;
mod results;
mod sweep;
mod tap_cmd;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc rather than glibc's allocator: the tap's reading thread frees records its
/// dissecting threads allocated, and glibc serialises such frees on the other thread's arena
/// lock; polars, in the same binary, recommends it too. mimalloc 2 rather than 3: 3 keeps freed
/// memory for a second before returning it (a 1.4x higher peak on the tap's large-message
/// capture); and without transparent huge pages (`no_thp`): with them every new 2 MiB region was
/// zeroed whole, 7% of the tap's CPU time on a 1 GB capture. Measured in BENCHMARKS.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SMTPLAB_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = cli::Cli::parse();
    match commands::dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_text(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, `: `-separated, each said once. Many error types show their source
/// in their own message (`"{path}: {source}"`) and also return it as `source()`, so anyhow's
/// `{:#}` would print it twice; a cause already in the text so far is left out.
pub fn error_text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use anyhow::Context;

    #[test]
    fn each_cause_is_said_once() {
        // As thiserror's `#[error("{path}: {source}")]` with a `source` field makes it.
        #[derive(Debug)]
        struct Shown {
            path: String,
            source: std::io::Error,
        }
        impl std::fmt::Display for Shown {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}: {}", self.path, self.source)
            }
        }
        impl std::error::Error for Shown {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.source)
            }
        }
        let io = std::io::Error::from_raw_os_error(17);
        let e = Err::<(), _>(Shown { path: "out".into(), source: io })
            .context("cannot write tables")
            .expect_err("an error");
        let text = super::error_text(&e);
        assert_eq!(text.matches("os error 17").count(), 1, "{text}");
        assert!(text.starts_with("cannot write tables: out: "), "{text}");
        // Causes not in the message are still said.
        let e = Err::<(), _>(std::io::Error::from_raw_os_error(2)).context("cannot read x").expect_err("an error");
        assert!(super::error_text(&e).starts_with("cannot read x: "), "{e:#}");
    }
}
