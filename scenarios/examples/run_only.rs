//! Runs a scenario up to the tap's records, without analysis or report: for profiling the
//! runner, the relays and the tap on their own. `cargo run --release -p smtplab-scenarios
//! --example run_only -- SCENARIO.toml [OUT_DIR]`
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let file = args.next().ok_or("usage: run_only SCENARIO.toml [OUT_DIR]")?;
    let out = args.next().unwrap_or_else(|| "runs".into());
    scenarios::progress::start_clock();
    let s = scenarios::Scenario::parse(&std::fs::read_to_string(&file)?, &file)?;
    let opts = scenarios::RunOptions {
        out_dir: out.into(),
        run_dir: None,
        source: file.clone(),
        command_line: std::env::args().collect::<Vec<_>>().join(" "),
        relay_exe: None,
    };
    let o = scenarios::run(&s, &opts)?;
    scenarios::progress::say(&format!(
        "done: {} messages, {} tap sessions, {} stuck, {}",
        o.messages,
        o.tap_sessions,
        o.stuck.len(),
        o.run_dir.display()
    ));
    Ok(())
}
