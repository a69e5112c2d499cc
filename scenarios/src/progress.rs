//! Progress bars on a terminal, silence in CI and pipes.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub fn interactive() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("CI").is_none()
}

pub fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(
        Some(len),
        if interactive() { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() },
    );
    let style = ProgressStyle::with_template("{prefix:>12} [{bar:40}] {pos}/{len} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    pb.set_style(style);
    pb.set_prefix(what.to_string());
    pb
}

static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

/// Starts the clock that `say` reports against (the first call to either starts it).
pub fn start_clock() {
    START.get_or_init(std::time::Instant::now);
}

/// A line of narration on stderr, with the seconds since the run began: shown on a terminal and
/// in CI too (it is short), so a reader sees where the time goes.
pub fn say(msg: &str) {
    let t = START.get_or_init(std::time::Instant::now).elapsed().as_secs_f64();
    eprintln!("[{t:7.1}s] {msg}");
}
