//! `smtplab sweep`: expands a sweep file, writes one self-contained scenario file per point,
//! and runs the points (each as `smtplab run POINT.toml --run-dir DIR`, a command a cluster
//! scheduler could run as well), skipping those already complete.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::json;

/// A run directory whose manifest says it completed.
pub fn is_complete(dir: &Path) -> bool {
    manifest(dir).is_some_and(|m| m["status"] == "complete")
}

fn manifest(dir: &Path) -> Option<serde_json::Value> {
    std::fs::read_to_string(dir.join("manifest.json")).ok().and_then(|t| serde_json::from_str(&t).ok())
}

/// Whether a point's run is complete and ran this very point (the scenario hash its point.json
/// records): a point whose scenario changed since, e.g. a key outside the grid, must run again.
fn is_current(dir: &Path, hash: &str) -> bool {
    let point = std::fs::read_to_string(dir.join("point.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
    is_complete(dir) && point.is_some_and(|p| p["scenario_sha256"] == hash)
}

pub fn sweep(file: &Path, out: &Path, jobs: usize, plan: bool) -> Result<ExitCode> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read sweep file {}", file.display()))?;
    let mut sw = scenarios::sweep::expand(&text, &file.display().to_string())?;
    let dir = out.join(&sw.name);
    let points_dir = dir.join("points");
    std::fs::create_dir_all(&points_dir).with_context(|| format!("cannot create {}", points_dir.display()))?;
    let exe = std::env::current_exe().context("cannot find the smtplab binary")?;
    // Workers run their points one after another on ports of their own, so parallel points
    // never share a listener or a capture filter.
    let mut commands = Vec::new();
    for (i, p) in sw.points.iter_mut().enumerate() {
        // The point as the sweep file defines it, before this invocation's ports (which follow
        // --jobs and change no result) are set.
        let hash = relay::sha256_hex(p.toml.as_bytes());
        if let Some(info) = p.scenario.point.as_mut() {
            info.scenario_sha256 = Some(hash.clone());
        }
        let worker = i % jobs;
        let net = &mut p.scenario.network;
        let shift = |port: u16| u16::try_from(10 * worker).ok().and_then(|d| port.checked_add(d));
        let (Some(smtp), Some(submission)) = (shift(net.smtp_port), shift(net.submission_port)) else {
            bail!(
                "--jobs {jobs}: worker {worker}'s ports (10 per worker above smtp_port {} and submission_port {}) \
                 pass 65535; use fewer jobs or lower ports",
                net.smtp_port,
                net.submission_port
            );
        };
        (net.smtp_port, net.submission_port) = (smtp, submission);
        // The DNS server's address is the same for every point of a loopback sweep: its port
        // moves with the worker too (53, 63, 73, ...).
        p.scenario.network.dns_port = p.scenario.network.dns_port.saturating_add((10 * worker).min(65535) as u16);
        let toml = toml::to_string_pretty(&p.scenario).context("serialising a sweep point")?;
        let path = points_dir.join(format!("{}.toml", p.dir_name));
        std::fs::write(&path, toml).with_context(|| format!("cannot write {}", path.display()))?;
        commands.push((worker, path, dir.join(&p.dir_name), hash));
    }
    let manifest = json!({
        "name": sw.name,
        "keys": sw.keys,
        "seeds": sw.seeds,
        "source": file.display().to_string(),
        "command_line": std::env::args().collect::<Vec<_>>().join(" "),
        "points": sw.points.iter().map(|p| json!({
            "point": p.scenario.point.as_ref().map(|i| i.point.clone()),
            "params": p.scenario.point.as_ref().map(|i| i.params.clone()),
            "seed": p.seed,
            "dir": p.dir_name,
            "command": format!("smtplab run {} --run-dir {}", points_dir.join(format!("{}.toml", p.dir_name)).display(), dir.join(&p.dir_name).display()),
        })).collect::<Vec<_>>(),
    });
    std::fs::write(dir.join("sweep.json"), serde_json::to_string_pretty(&manifest)?)?;
    if plan {
        eprintln!(
            "sweep {}: {} point files in {} and their commands in sweep.json; nothing run (--plan)",
            sw.name,
            commands.len(),
            points_dir.display()
        );
        println!("{}", dir.join("sweep.json").display());
        return Ok(ExitCode::SUCCESS);
    }

    let mut todo: Vec<&(usize, PathBuf, PathBuf, String)> = Vec::new();
    for c in &commands {
        let (_, _, run_dir, hash) = c;
        if is_current(run_dir, hash) {
            continue;
        }
        if is_complete(run_dir) {
            // A run never replaces a complete one by itself: the sweep, which knows this one is
            // stale, removes it.
            eprintln!("{}: the point's scenario changed since it ran; running it again", run_dir.display());
            std::fs::remove_dir_all(run_dir).with_context(|| format!("cannot remove {}", run_dir.display()))?;
        }
        todo.push(c);
    }
    eprintln!(
        "sweep {}: {} points ({} keys × {} seeds), {} to run, {} already complete; {} at a time",
        sw.name,
        commands.len(),
        sw.keys.len(),
        sw.seeds.len(),
        todo.len(),
        commands.len() - todo.len(),
        jobs
    );
    let bar = scenarios::progress::bar(todo.len() as u64, "points");
    let failures = std::sync::Mutex::new(Vec::<String>::new());
    std::thread::scope(|scope| {
        for w in 0..jobs {
            let (todo, bar, failures, exe) = (&todo, &bar, &failures, &exe);
            scope.spawn(move || {
                for (_, toml, run_dir, _) in todo.iter().filter(|(worker, _, _, _)| *worker == w) {
                    let mut log = run_dir.clone().into_os_string();
                    log.push(".log");
                    let log = PathBuf::from(log);
                    let ok = std::fs::File::create(&log).ok().and_then(|f| {
                        let err = f.try_clone().ok()?;
                        Command::new(exe)
                            .arg("run")
                            .arg(toml)
                            .arg("--run-dir")
                            .arg(run_dir)
                            .env("CI", "1")
                            .stdin(Stdio::null())
                            .stdout(f)
                            .stderr(err)
                            .status()
                            .ok()
                    });
                    if !ok.is_some_and(|s| s.success()) {
                        failures.lock().unwrap_or_else(|p| p.into_inner()).push(format!(
                            "{} (log: {})",
                            run_dir.display(),
                            log.display()
                        ));
                    }
                    bar.inc(1);
                }
            });
        }
    });
    bar.finish_and_clear();
    let failures = failures.into_inner().unwrap_or_else(|p| p.into_inner());
    if !failures.is_empty() {
        eprintln!("error: {} points failed; rerun the same command to retry them:", failures.len());
        for f in &failures {
            eprintln!("  {f}");
        }
        return Ok(ExitCode::FAILURE);
    }
    crate::commands::analyze(&dir)?;
    let index = crate::commands::report(&dir)?;
    println!("sweep: {}\nreport: {}", dir.display(), index.display());
    Ok(ExitCode::SUCCESS)
}
