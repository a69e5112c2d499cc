//! Where a sweep stands, read from its directory alone (`sweep.json`, each run's manifest and
//! `point.json`, the Slurm submissions): which points are complete, which failed or never ran,
//! and the log that says why. `smtplab sweep DIR --status` prints it; the analysis job of a
//! Slurm sweep runs it first, so a failed task is named by its point and its Slurm log.

use std::fmt;
use std::path::{Path, PathBuf};

use super::plan::{is_complete, is_current, read_manifest};
use super::slurm;
use crate::error::ScenarioError;

/// What became of one point × seed.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// A complete run of the point's current scenario.
    Complete,
    /// A complete run of an earlier version of the point (the sweep file changed since).
    Stale,
    /// A run that started and did not complete: its manifest's status (`failed`, `running`,
    /// `incomplete`, `interrupted`).
    Unfinished(String),
    /// No run directory (or one without a manifest): never started, or its task could not
    /// write to the sweep directory.
    NotRun,
}

/// One point × seed and the log of its last attempt.
#[derive(Debug, Clone)]
pub struct PointStatus {
    pub point: String,
    pub seed: u64,
    pub dir: String,
    pub state: State,
    /// The Slurm task's log of the last submission that ran it, or the local sweep's log.
    pub log: Option<PathBuf>,
}

/// Every point of a sweep directory.
#[derive(Debug, Clone)]
pub struct SweepStatus {
    pub name: String,
    pub dir: PathBuf,
    pub points: Vec<PointStatus>,
    /// The last Slurm submission of this sweep, if any.
    pub last_submission: Option<slurm::SubmissionRecord>,
}

impl SweepStatus {
    pub fn all_complete(&self) -> bool {
        self.points.iter().all(|p| p.state == State::Complete)
    }

    /// Points that are not complete.
    pub fn open(&self) -> impl Iterator<Item = &PointStatus> {
        self.points.iter().filter(|p| p.state != State::Complete)
    }
}

/// Reads the status of the sweep in `dir` (which holds `sweep.json`).
pub fn read(dir: &Path) -> Result<SweepStatus, ScenarioError> {
    let path = dir.join("sweep.json");
    if !path.is_file() {
        return Err(ScenarioError::NotASweep { path });
    }
    let spec: records::SweepFile = records::read_json_file(&path, "a sweep description")
        .map_err(|e| ScenarioError::Parse { path: path.display().to_string(), message: e.to_string() })?;
    let submissions = slurm::read_submissions(dir)?;
    let mut points = Vec::new();
    for p in &spec.points {
        let dir_name = p.dir.clone();
        if dir_name.is_empty() {
            continue;
        }
        let run_dir = dir.join(&dir_name);
        let hash = Some(p.scenario_sha256.as_str()).filter(|h| !h.is_empty());
        let state = match hash {
            Some(hash) if is_current(&run_dir, hash) => State::Complete,
            // A sweep.json from before hashes were listed: complete is all it can say.
            None if is_complete(&run_dir) => State::Complete,
            _ if is_complete(&run_dir) => State::Stale,
            _ => match read_manifest(&run_dir) {
                Some(m) => State::Unfinished(m.status.as_str().to_string()),
                None => State::NotRun,
            },
        };
        let slurm_log = submissions.iter().rev().find_map(|s| s.log_of(dir, &dir_name));
        let local_log = dir.join(format!("{dir_name}.log"));
        let log = slurm_log.or_else(|| local_log.is_file().then_some(local_log));
        points.push(PointStatus { point: p.point.clone(), seed: p.seed, dir: dir_name, state, log });
    }
    Ok(SweepStatus { name: spec.name, dir: dir.to_path_buf(), points, last_submission: submissions.last().cloned() })
}

impl fmt::Display for SweepStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let done = self.points.iter().filter(|p| p.state == State::Complete).count();
        writeln!(f, "sweep {}: {done} of {} points complete ({})", self.name, self.points.len(), self.dir.display())?;
        if let Some(s) = &self.last_submission {
            writeln!(
                f,
                "last Slurm submission: array job {} ({} points in {} tasks), analysis job {}, logs in {}",
                s.array_job,
                s.points.len(),
                s.tasks,
                s.final_job,
                self.dir.join(slurm::LOG_DIR).display()
            )?;
        }
        for p in self.open() {
            let what = match &p.state {
                State::Complete => continue,
                State::Stale => "complete, but its scenario changed since it ran".to_string(),
                State::Unfinished(status) => format!("run {status}"),
                State::NotRun => "not run".to_string(),
            };
            write!(f, "  {} (seed {}): {what}", p.dir, p.seed)?;
            match &p.log {
                Some(log) if log.is_file() => write!(f, "; log: {}", log.display())?,
                Some(log) => write!(
                    f,
                    "; no log at {}: the task never started, or its node cannot write there (the sweep \
                     directory must be on a file system every node mounts at the same path)",
                    log.display()
                )?,
                None => {}
            }
            writeln!(f)?;
        }
        if done < self.points.len() {
            write!(
                f,
                "rerun the same `smtplab sweep` command (with --slurm to resubmit) to run the {} open points; \
                 complete ones are kept and skipped",
                self.points.len() - done
            )?;
        } else {
            write!(f, "all points complete")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    /// Each state read from the files a sweep leaves, and the log named for each open point.
    #[test]
    fn states_and_logs_from_the_directory() {
        let dir = std::env::temp_dir().join(format!("smtplab-status-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let point = |name: &str, hash: &str| serde_json::json!({"point": name, "seed": 1, "dir": format!("{name}-s1"), "scenario_sha256": hash});
        let spec = serde_json::json!({"name": "t", "points": [
            point("done", "h1"), point("changed", "h2"), point("broke", "h3"), point("lost", "h4")]});
        write(&dir.join("sweep.json"), &spec.to_string());
        let run = |name: &str, status: &str, hash: &str| {
            write(&dir.join(format!("{name}-s1/manifest.json")), &format!(r#"{{"status": "{status}"}}"#));
            let point = format!(
                r#"{{"sweep": "t", "point": "{name}", "params": {{}}, "seed": 1, "scenario_sha256": "{hash}"}}"#
            );
            write(&dir.join(format!("{name}-s1/point.json")), &point);
        };
        run("done", "complete", "h1");
        run("changed", "complete", "old");
        run("broke", "failed", "h3");
        write(&dir.join("broke-s1.log"), "local log");
        let record = serde_json::json!({"number": 1, "array_job": "7", "final_job": "8", "tasks": 1,
            "points": ["lost-s1"], "submitted": "", "commands": []});
        write(&dir.join("slurm/submissions.jsonl"), &format!("{record}\n"));

        let s = read(&dir).expect("status");
        let states: Vec<&State> = s.points.iter().map(|p| &p.state).collect();
        assert_eq!(states, [&State::Complete, &State::Stale, &State::Unfinished("failed".into()), &State::NotRun]);
        assert!(!s.all_complete());
        assert_eq!(s.points[2].log, Some(dir.join("broke-s1.log")));
        assert_eq!(s.points[3].log, Some(dir.join("slurm/logs/7_0.log")));
        let text = s.to_string();
        assert!(text.contains("sweep t: 1 of 4 points complete"), "{text}");
        assert!(text.contains(&format!("broke-s1 (seed 1): run failed; log: {}", dir.join("broke-s1.log").display())));
        assert!(text.contains("lost-s1 (seed 1): not run; no log at") && text.contains("same path"), "{text}");
        assert!(text.contains("changed-s1 (seed 1): complete, but its scenario changed"), "{text}");
        assert!(!text.contains("done-s1"), "complete points are not listed: {text}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A directory without `sweep.json` is told apart from a damaged one, and the message says
    /// which command makes the file.
    #[test]
    fn a_directory_without_a_sweep_says_so() {
        let dir = std::env::temp_dir().join(format!("smtplab-status-none-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let e = read(&dir).expect_err("no sweep.json");
        let text = e.to_string();
        let _ = std::fs::remove_dir_all(&dir);
        match e {
            ScenarioError::NotASweep { path } => assert_eq!(path, dir.join("sweep.json")),
            e => panic!("expected NotASweep, got {e}"),
        }
        assert!(text.contains("--plan"), "{text}");
    }
}
