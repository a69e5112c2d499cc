//! `smtplab sweep`: expands a sweep file, writes one self-contained scenario file per point,
//! and runs the points (each as `smtplab run POINT.toml --run-dir DIR`, a command a cluster
//! scheduler could run as well), skipping those already complete; or submits them to Slurm
//! (`--slurm`), or says where a sweep stands (`--status`). The logic is in `scenarios::sweep`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context, Result};
use scenarios::sweep::plan::{Plan, PlannedPoint};

pub fn sweep(file: &Path, out: &Path, jobs: usize, plan: bool) -> Result<ExitCode> {
    let sw = write_plan(file, out, jobs)?;
    if plan {
        eprintln!(
            "sweep {}: {} point files in {} and their commands in sweep.json; nothing run (--plan)",
            sw.name,
            sw.points.len(),
            sw.dir.join("points").display()
        );
        println!("{}", sw.dir.join("sweep.json").display());
        return Ok(ExitCode::SUCCESS);
    }
    sw.remove_stale(|s| eprintln!("{s}"))?;
    let todo = sw.pending();
    eprintln!(
        "sweep {}: {} points ({} keys × {} seeds), {} to run, {} already complete; {} at a time",
        sw.name,
        sw.points.len(),
        sw.keys.len(),
        sw.seeds.len(),
        todo.len(),
        sw.points.len() - todo.len(),
        jobs
    );
    let exe = std::env::current_exe().context("cannot find the smtplab binary")?;
    let dir = &sw.dir;
    let bar = scenarios::progress::bar(todo.len() as u64, "points");
    let failures = std::sync::Mutex::new(Vec::<String>::new());
    std::thread::scope(|scope| {
        for w in 0..jobs {
            let (todo, bar, failures, exe) = (&todo, &bar, &failures, &exe);
            scope.spawn(move || {
                for PlannedPoint { toml, run_dir, .. } in todo.iter().filter(|p| p.worker == w) {
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
    crate::results::analyze(dir)?;
    let index = crate::results::report(dir)?;
    println!("sweep: {}\nreport: {}", dir.display(), index.display());
    Ok(ExitCode::SUCCESS)
}

/// `--slurm`: the same plan, its pending points submitted as a Slurm array job.
pub fn submit(file: &Path, out: &Path, opts: &scenarios::sweep::slurm::Options) -> Result<ExitCode> {
    // Tasks and the analysis job run elsewhere: every path they get is absolute.
    let out = std::path::absolute(out).with_context(|| format!("cannot resolve {}", out.display()))?;
    // Before the point files are written again: an earlier submission's tasks may be reading them.
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read sweep file {}", file.display()))?;
    let name = scenarios::sweep::expand(&text, &file.display().to_string())?.name;
    scenarios::sweep::slurm::refuse_if_active(&out.join(name))?;
    let sw = write_plan(file, &out, 1)?;
    let done = scenarios::sweep::slurm::submit(&sw, opts, |s| eprintln!("{s}"))?;
    if let Some(r) = &done.record {
        eprintln!(
            "sweep {}: {} points, {} submitted as array job {} ({} tasks{}), {} already complete; analysis job {} \
             runs after it",
            sw.name,
            sw.points.len(),
            done.pending,
            r.array_job,
            r.tasks,
            opts.max_parallel.map(|n| format!(", at most {n} at once")).unwrap_or_default(),
            done.complete,
            done.final_job
        );
    }
    eprintln!(
        "logs: {}; the analysis job's: {}\n`smtplab sweep {} --status` says where the points stand; \
         submitting again resumes (complete points are skipped)",
        sw.dir.join(scenarios::sweep::slurm::LOG_DIR).display(),
        done.final_log.display(),
        sw.dir.display()
    );
    println!("{}", sw.dir.display());
    Ok(ExitCode::SUCCESS)
}

/// `--status`: where the sweep of a sweep file, or in a sweep directory, stands.
pub fn status(path: &Path, out: &Path) -> Result<ExitCode> {
    let dir = if path.is_dir() {
        path.to_path_buf()
    } else {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read sweep file {}", path.display()))?;
        out.join(scenarios::sweep::expand(&text, &path.display().to_string())?.name)
    };
    let status = scenarios::sweep::status::read(&dir)?;
    println!("{status}");
    Ok(if status.all_complete() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn write_plan(file: &Path, out: &Path, jobs: usize) -> Result<Plan> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read sweep file {}", file.display()))?;
    let command_line = std::env::args().collect::<Vec<_>>().join(" ");
    Ok(scenarios::sweep::plan::write(&text, &file.display().to_string(), out, jobs, &command_line)?)
}
