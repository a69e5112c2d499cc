//! A sweep as Slurm jobs: one array job whose tasks run the pending points (`smtplab run
//! POINT.toml --run-dir DIR`, exactly the command `sweep.json` lists), and one job that waits for
//! the array (`--dependency=afterany`) and then checks every point and makes the sweep's analysis
//! and report.
//!
//! Everything a task reads and writes is in the sweep directory, so that directory (and the
//! smtplab binary) must be on a file system every node mounts at the same path. Each submission
//! is recorded in `slurm/submissions.jsonl` (array and analysis job ids, which task ran which
//! point), so a failed point is named with its Slurm log (`slurm/logs/<array job>_<task>.log`).
//!
//! The array is submitted held and released only once the analysis job is queued and the
//! submission recorded: if any step is refused, nothing has run, and the jobs already queued are
//! cancelled. Results already written are never touched by a refused submission.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::plan::Plan;
use crate::error::ScenarioError;

/// Where Slurm writes the logs of a sweep's jobs, under the sweep directory.
pub const LOG_DIR: &str = "slurm/logs";
/// The scripts, task lists and submission records, under the sweep directory.
pub const SLURM_DIR: &str = "slurm";
const SUBMISSIONS: &str = "slurm/submissions.jsonl";
/// Slurm's default `MaxArraySize` (task ids 0 to 1000), assumed when `scontrol` cannot say.
pub const DEFAULT_MAX_ARRAY_SIZE: usize = 1001;
/// The most tasks of this user's sweeps that wait on one node's port slots; each slot moves a
/// run's ports by 10, so 64 slots span 640 ports above the scenario's.
pub const PORT_SLOTS: usize = 64;

/// What `--slurm` was given.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub partition: Option<String>,
    /// At most this many tasks at once (`%N` on the array).
    pub max_parallel: Option<usize>,
    /// Time limit of each task, in a format sbatch takes (`HH:MM:SS`, `D-HH:MM`, minutes).
    pub time: Option<String>,
    /// The smtplab binary the tasks run: an absolute path every node can execute.
    pub exe: PathBuf,
}

/// One submission of a sweep, as `slurm/submissions.jsonl` records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmissionRecord {
    /// 1 for the sweep's first submission, then 2, ...: names its scripts and task list.
    pub number: usize,
    pub array_job: String,
    pub final_job: String,
    /// Tasks of the array; task `i` runs `points[i]`, `points[i + tasks]`, ... one after another
    /// (more than one only when the points outnumber the cluster's MaxArraySize).
    pub tasks: usize,
    /// Run directory names of the points submitted, in task order.
    pub points: Vec<String>,
    pub submitted: String,
    /// The sbatch command lines, as run.
    pub commands: Vec<String>,
}

impl SubmissionRecord {
    /// The Slurm log of the task that ran `dir_name` in this submission, if it was part of it.
    pub fn log_of(&self, sweep_dir: &Path, dir_name: &str) -> Option<PathBuf> {
        let i = self.points.iter().position(|p| p == dir_name)?;
        Some(sweep_dir.join(LOG_DIR).join(format!("{}_{}.log", self.array_job, i % self.tasks.max(1))))
    }
}

/// What a submission did.
#[derive(Debug, Clone)]
pub struct Submitted {
    /// The array job, or `None` when every point was complete and only the analysis job was
    /// submitted.
    pub record: Option<SubmissionRecord>,
    pub final_job: String,
    pub pending: usize,
    pub complete: usize,
    pub final_log: PathBuf,
}

/// Submits the pending points of `plan` (whose point files and `sweep.json` are written, in a
/// directory given by an absolute path) and the analysis job after them.
pub fn submit(plan: &Plan, opts: &Options, say: impl Fn(&str)) -> Result<Submitted, ScenarioError> {
    let dir = &plan.dir;
    if !dir.is_absolute() || !opts.exe.is_absolute() {
        return Err(slurm_error(format!(
            "the sweep directory ({}) and the smtplab binary ({}) must be given as absolute paths, \
             which every node resolves alike",
            dir.display(),
            opts.exe.display()
        )));
    }
    if let Some(t) = &opts.time
        && !valid_time(t)
    {
        return Err(slurm_error(format!(
            "--time {t:?} is not a Slurm time limit; use HH:MM:SS (e.g. 02:00:00), MM:SS, minutes, or D-HH:MM:SS"
        )));
    }
    if opts.max_parallel == Some(0) {
        return Err(slurm_error("--max-parallel 0 would run nothing; give 1 or more".into()));
    }
    refuse_if_active(dir)?;
    let earlier = read_submissions(dir)?;
    let logs = dir.join(LOG_DIR);
    std::fs::create_dir_all(&logs).map_err(ScenarioError::io(format!("cannot create {}", logs.display())))?;
    let pending = plan.pending();
    let number = earlier.iter().map(|s| s.number).max().unwrap_or(0) + 1;
    let common = |cmd: &mut Vec<String>| {
        if let Some(p) = &opts.partition {
            cmd.extend(["--partition".into(), p.clone()]);
        }
    };

    let final_script = dir.join(SLURM_DIR).join(format!("analysis-{number}.sh"));
    write_script(&final_script, &analysis_script(dir, &opts.exe))?;
    let final_log = logs.join(format!("analysis-{number}-%j.log"));
    let mut final_cmd: Vec<String> =
        vec!["--parsable".into(), "--job-name".into(), format!("smtplab-{}-analysis", plan.name)];
    final_cmd.extend(["--output".into(), final_log.display().to_string()]);
    common(&mut final_cmd);

    if pending.is_empty() {
        final_cmd.push(final_script.display().to_string());
        let final_job = sbatch(&final_cmd)?;
        say(&format!("all {} points complete: submitted only the analysis job {final_job}", plan.points.len()));
        return Ok(Submitted {
            record: None,
            final_log: logs.join(format!("analysis-{number}-{final_job}.log")),
            final_job,
            pending: 0,
            complete: plan.points.len(),
        });
    }

    let tasks = pending.len().min(max_array_size());
    let list = dir.join(SLURM_DIR).join(format!("tasks-{number}.txt"));
    let names: Vec<String> = pending.iter().map(|p| p.dir_name.clone()).collect();
    std::fs::write(&list, names.join("\n") + "\n")
        .map_err(ScenarioError::io(format!("cannot write {}", list.display())))?;
    let array_script = dir.join(SLURM_DIR).join(format!("array-{number}.sh"));
    write_script(&array_script, &array_script_text(dir, &opts.exe, &list, tasks))?;

    let mut array_cmd: Vec<String> = vec!["--parsable".into(), "--hold".into()];
    array_cmd.extend(["--job-name".into(), format!("smtplab-{}", plan.name)]);
    let range = match opts.max_parallel {
        Some(n) => format!("0-{}%{n}", tasks - 1),
        None => format!("0-{}", tasks - 1),
    };
    array_cmd.extend(["--array".into(), range]);
    array_cmd.extend(["--output".into(), logs.join("%A_%a.log").display().to_string()]);
    if let Some(t) = &opts.time {
        array_cmd.extend(["--time".into(), t.clone()]);
    }
    common(&mut array_cmd);
    array_cmd.push(array_script.display().to_string());
    let array_job = sbatch(&array_cmd)?;

    // From here on, a refused step cancels what was queued: nothing has run yet (the array is
    // held), and nothing written before is touched.
    let undo = |jobs: &[&str], e: ScenarioError| -> ScenarioError {
        let cancelled = Command::new("scancel").args(jobs).status().is_ok_and(|s| s.success());
        let jobs = jobs.join(" ");
        let what = if cancelled {
            format!("job(s) {jobs} cancelled; nothing ran")
        } else {
            format!("cancel job(s) {jobs} yourself (scancel {jobs}): they are held, nothing ran")
        };
        slurm_error(format!("{e}; {what}"))
    };
    final_cmd.extend(["--dependency".into(), format!("afterany:{array_job}")]);
    final_cmd.push(final_script.display().to_string());
    let final_job = sbatch(&final_cmd).map_err(|e| undo(&[&array_job], e))?;
    plan.remove_stale(&say).map_err(|e| undo(&[&array_job, &final_job], e))?;
    let record = SubmissionRecord {
        number,
        array_job: array_job.clone(),
        final_job: final_job.clone(),
        tasks,
        points: names,
        submitted: now_utc(),
        commands: [array_cmd, final_cmd].iter().map(|c| format!("sbatch {}", c.join(" "))).collect(),
    };
    append_submission(dir, &record).map_err(|e| undo(&[&array_job, &final_job], e))?;
    run("scontrol", &["release".to_string(), array_job.clone()]).map_err(|e| {
        slurm_error(format!(
            "{e}; array job {array_job} stays held: release it with `scontrol release {array_job}` (or cancel \
             it and job {final_job} with scancel)"
        ))
    })?;
    Ok(Submitted {
        final_log: logs.join(format!("analysis-{number}-{final_job}.log")),
        record: Some(record),
        final_job,
        pending: pending.len(),
        complete: plan.points.len() - pending.len(),
    })
}

/// Errs when a submission of the sweep in `dir` is still queued or running: its tasks read the
/// point files a new submission would rewrite, and run into the directories it would hand out
/// again. Call it before writing the plan.
pub fn refuse_if_active(dir: &Path) -> Result<(), ScenarioError> {
    let earlier = read_submissions(dir)?;
    if earlier.is_empty() {
        return Ok(());
    }
    let active = active_jobs()?;
    match earlier.iter().find(|s| active.iter().any(|id| *id == s.array_job || *id == s.final_job)) {
        Some(s) => Err(slurm_error(format!(
            "submission {} of this sweep is still queued or running (array job {}, analysis job {}): \
             wait for it (squeue --me) or cancel it (scancel {} {}), then submit again",
            s.number, s.array_job, s.final_job, s.array_job, s.final_job
        ))),
        None => Ok(()),
    }
}

/// The submissions of the sweep in `dir`, oldest first (none before its first `--slurm`).
pub fn read_submissions(dir: &Path) -> Result<Vec<SubmissionRecord>, ScenarioError> {
    let path = dir.join(SUBMISSIONS);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ScenarioError::Io { what: format!("cannot read {}", path.display()), source: e }),
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| ScenarioError::Parse {
                path: format!("{}, line {}", path.display(), i + 1),
                message: format!("{e} (a submission record smtplab wrote; remove the line if it was edited by hand)"),
            })
        })
        .collect()
}

/// The job id in `sbatch --parsable` output: `ID` or `ID;CLUSTER`, on the last line.
pub fn parse_job_id(stdout: &str) -> Option<String> {
    let line = stdout.lines().rev().find(|l| !l.trim().is_empty())?.trim();
    let id = line.split(';').next()?.trim();
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())).then(|| id.to_string())
}

/// `MaxArraySize` from `scontrol show config` output.
pub fn parse_max_array_size(config: &str) -> Option<usize> {
    config.lines().find_map(|l| {
        let (key, value) = l.split_once('=')?;
        (key.trim() == "MaxArraySize").then(|| value.trim().parse().ok()).flatten()
    })
}

/// Whether `t` is a time limit sbatch takes: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM,
/// D-HH:MM:SS, or UNLIMITED.
pub fn valid_time(t: &str) -> bool {
    let numbers = |s: &str, max: usize| {
        let parts: Vec<&str> = s.split(':').collect();
        parts.len() <= max && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    };
    if t.eq_ignore_ascii_case("unlimited") || t.eq_ignore_ascii_case("infinite") {
        return true;
    }
    match t.split_once('-') {
        Some((days, rest)) => numbers(days, 1) && numbers(rest, 3),
        None => numbers(t, 3),
    }
}

/// The array job's script. Each task claims a port slot on its node (a `flock` on
/// `$SMTPLAB_LOCK_DIR/smtplab-ports-K.lock`, default `/var/tmp`, held while it runs) and moves
/// its points' ports by 10 × K, so tasks that share a node never share a listener or a capture
/// filter; then it runs its points one after another, and fails if any of them failed.
pub fn array_script_text(dir: &Path, exe: &Path, list: &Path, tasks: usize) -> String {
    format!(
        r#"#!/bin/bash
# Written by `smtplab sweep --slurm`: task N of the array runs lines N+1, N+1+{tasks}, ... of the
# task list, each with `smtplab run POINT.toml --run-dir DIR` (the command sweep.json lists).
set -u
export CI=1
sweep={dir}
smtplab={exe}
list={list}
cd "$sweep" || {{ echo "smtplab: cannot enter the sweep directory $sweep on $(hostname): it must be on a file system every node mounts at the same path"; exit 2; }}
command -v flock >/dev/null || {{ echo "smtplab: flock (util-linux) is missing on $(hostname)"; exit 2; }}
lockdir=${{SMTPLAB_LOCK_DIR:-/var/tmp}}
slot=0
while :; do
  lock="$lockdir/smtplab-ports-$slot.lock"
  (umask 0; : >>"$lock") 2>/dev/null
  if exec 9<"$lock" && flock -n 9; then break; fi
  slot=$((slot + 1))
  if [ "$slot" -ge {slots} ]; then echo "smtplab: all {slots} port slots in $lockdir are taken on $(hostname)"; exit 2; fi
done
mapfile -t mine < <(awk -v t="$SLURM_ARRAY_TASK_ID" -v n={tasks} '(NR - 1) % n == t' "$list")
status=0
for point in "${{mine[@]}}"; do
  echo "== smtplab sweep: point $point, task $SLURM_ARRAY_TASK_ID of job $SLURM_ARRAY_JOB_ID on $(hostname), ports +$((10 * slot))"
  "$smtplab" run "points/$point.toml" --run-dir "$point" --port-offset $((10 * slot))
  code=$?
  if [ "$code" -ne 0 ]; then
    echo "== point $point FAILED (exit $code)"
    status=1
  fi
done
exit $status
"#,
        dir = shell_quote(&dir.display().to_string()),
        exe = shell_quote(&exe.display().to_string()),
        list = shell_quote(&list.display().to_string()),
        slots = PORT_SLOTS,
    )
}

/// The analysis job's script: names the points that did not complete (with their logs) and
/// stops there, as a local sweep does; otherwise analyses the sweep (each run keeps the analysis
/// its task made) and renders its report.
pub fn analysis_script(dir: &Path, exe: &Path) -> String {
    format!(
        r#"#!/bin/bash
# Written by `smtplab sweep --slurm`: runs after the array job, whatever became of its tasks.
set -u
export CI=1
sweep={dir}
smtplab={exe}
"$smtplab" sweep "$sweep" --status || exit 1
"$smtplab" analyze "$sweep" --reuse-runs && "$smtplab" report "$sweep"
"#,
        dir = shell_quote(&dir.display().to_string()),
        exe = shell_quote(&exe.display().to_string()),
    )
}

/// `s` as one word for bash.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn slurm_error(message: String) -> ScenarioError {
    ScenarioError::Slurm(message)
}

fn write_script(path: &Path, text: &str) -> Result<(), ScenarioError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(ScenarioError::io(format!("cannot create {}", parent.display())))?;
    }
    std::fs::write(path, text).map_err(ScenarioError::io(format!("cannot write {}", path.display())))
}

fn append_submission(dir: &Path, record: &SubmissionRecord) -> Result<(), ScenarioError> {
    use std::io::Write;
    let path = dir.join(SUBMISSIONS);
    let line = serde_json::to_string(record).map_err(ScenarioError::serialize("a Slurm submission record"))? + "\n";
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .map_err(ScenarioError::io(format!("cannot write {}", path.display())))
}

/// Runs a Slurm client command; its standard output, or an error that says what to do.
fn run(program: &str, args: &[String]) -> Result<String, ScenarioError> {
    let shown = format!("{program} {}", args.join(" "));
    let out = Command::new(program).args(args).output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            slurm_error(format!(
                "`{program}` is not on PATH: --slurm needs Slurm's client commands (sbatch, squeue, scontrol, \
                 scancel; Debian: slurm-client) where you submit, usually a login node of the cluster. Without \
                 a cluster, run the sweep here without --slurm"
            ))
        } else {
            slurm_error(format!("cannot run `{shown}`: {e}"))
        }
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(slurm_error(format!("`{shown}` was refused ({}): {stderr}{}", out.status, refusal_hint(&stderr))));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn sbatch(args: &[String]) -> Result<String, ScenarioError> {
    let out = run("sbatch", args)?;
    parse_job_id(&out).ok_or_else(|| {
        slurm_error(format!("sbatch {} printed no job id ({out:?}); check `squeue --me`", args.join(" ")))
    })
}

/// What to do about a refusal, from sbatch's words.
fn refusal_hint(stderr: &str) -> &'static str {
    let s = stderr.to_ascii_lowercase();
    if s.contains("partition") {
        "; `sinfo -s` lists the partitions you may use: pick one with --partition"
    } else if s.contains("time limit") {
        "; --time must fit the partition's limit (`sinfo -o \"%P %l\"` shows them)"
    } else if s.contains("array") || s.contains("maxsubmit") || s.contains("qos") {
        "; the cluster limits array jobs or submissions (`scontrol show config | grep -i array`): \
         ask for fewer points at once with a smaller sweep, or ask its administrators"
    } else if s.contains("unable to contact") || s.contains("connection") || s.contains("authentication") {
        "; the Slurm controller cannot be reached from here: submit from a login node (`sinfo` should answer)"
    } else {
        "; nothing was submitted"
    }
}

/// Job ids of this user's queued or running jobs (array jobs by their array id).
fn active_jobs() -> Result<Vec<String>, ScenarioError> {
    let out = run("squeue", &["--me".into(), "--noheader".into(), "--format".into(), "%F %A".into()])?;
    Ok(out.split_whitespace().map(str::to_string).collect())
}

fn max_array_size() -> usize {
    run("scontrol", &["show".into(), "config".into()])
        .ok()
        .and_then(|c| parse_max_array_size(&c))
        // Task ids run from 0 to MaxArraySize - 1.
        .map(|n| n.max(1))
        .unwrap_or(DEFAULT_MAX_ARRAY_SIZE)
}

fn now_utc() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_from_parsable_output() {
        assert_eq!(parse_job_id("1234\n").as_deref(), Some("1234"));
        assert_eq!(parse_job_id("77;cluster-a\n").as_deref(), Some("77"));
        assert_eq!(parse_job_id("sbatch: warning: something\n88\n").as_deref(), Some("88"));
        assert_eq!(parse_job_id("Submitted batch job 5\n"), None, "--parsable output only");
        assert_eq!(parse_job_id(""), None);
    }

    #[test]
    fn max_array_size_from_config() {
        let config = "MailProg                = /bin/mail\nMaxArraySize            = 40001\nMaxJobCount = 10000\n";
        assert_eq!(parse_max_array_size(config), Some(40001));
        assert_eq!(parse_max_array_size("MaxJobCount = 3\n"), None);
    }

    #[test]
    fn time_limits() {
        for good in ["30", "30:00", "02:00:00", "1-00", "1-12:00", "2-00:30:00", "UNLIMITED"] {
            assert!(valid_time(good), "{good}");
        }
        for bad in ["", "2h", "1:2:3:4", "1-", "-1", "1-2-3", "02::00", "soon"] {
            assert!(!valid_time(bad), "{bad}");
        }
    }

    #[test]
    fn quoting_survives_quotes_and_spaces() {
        assert_eq!(shell_quote("/a b/it's"), r"'/a b/it'\''s'");
    }

    /// The array script as a task runs it, with bash, flock and awk and a stand-in for smtplab:
    /// more points than tasks are dealt out by stride, a taken port slot moves the ports, and a
    /// failed point fails the task after the others ran.
    #[test]
    fn array_script_deals_points_claims_a_slot_and_reports_failure() {
        use std::io::BufRead;
        let dir = std::env::temp_dir().join(format!("smtplab-array-script-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("locks")).expect("mkdir");
        let exe = dir.join("fake-smtplab");
        let calls = dir.join("calls.txt");
        let fake =
            format!("#!/bin/bash\necho \"$*\" >> {}\n[ \"$4\" != p3 ]\n", shell_quote(&calls.display().to_string()));
        std::fs::write(&exe, fake).expect("write");
        std::fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        let list = dir.join("tasks.txt");
        std::fs::write(&list, "p1\np2\np3\np4\np5\n").expect("write");
        let script = dir.join("array.sh");
        std::fs::write(&script, array_script_text(&dir, &exe, &list, 2)).expect("write");
        // Slot 0 is taken (by another task on the node): this one takes slot 1.
        // One process holds it (bash becomes the sleep, keeping the locked descriptor), so that
        // ending that PID frees the slot and leaves nothing behind.
        let mut holder = Command::new("bash")
            .args(["-c", "exec 9>\"$0\" && flock 9 && echo held && exec sleep 60"])
            .arg(dir.join("locks/smtplab-ports-0.lock"))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("flock");
        let mut line = String::new();
        std::io::BufReader::new(holder.stdout.take().expect("stdout")).read_line(&mut line).expect("read");
        assert_eq!(line.trim(), "held");
        let task = |id: &str| {
            Command::new("bash")
                .arg(&script)
                .env("SLURM_ARRAY_TASK_ID", id)
                .env("SLURM_ARRAY_JOB_ID", "9")
                .env("SMTPLAB_LOCK_DIR", dir.join("locks"))
                .output()
                .expect("bash")
        };
        let first = task("0");
        let second = task("1");
        let _ = Command::new("kill").arg(holder.id().to_string()).status();
        let _ = holder.wait();
        let out = String::from_utf8_lossy(&first.stdout);
        assert_eq!(first.status.code(), Some(1), "p3 failed: {out}");
        assert!(out.contains("== point p3 FAILED (exit 1)"), "{out}");
        assert_eq!(second.status.code(), Some(0), "{}", String::from_utf8_lossy(&second.stdout));
        let calls = std::fs::read_to_string(&calls).expect("calls");
        let runs: Vec<&str> = calls.lines().collect();
        assert_eq!(
            runs,
            [
                "run points/p1.toml --run-dir p1 --port-offset 10",
                "run points/p3.toml --run-dir p3 --port-offset 10",
                "run points/p5.toml --run-dir p5 --port-offset 10",
                "run points/p2.toml --run-dir p2 --port-offset 10",
                "run points/p4.toml --run-dir p4 --port-offset 10",
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_point_s_log_is_its_task_s() {
        let r = SubmissionRecord {
            number: 1,
            array_job: "41".into(),
            final_job: "42".into(),
            tasks: 2,
            points: vec!["a-s1".into(), "b-s1".into(), "c-s1".into()],
            submitted: String::new(),
            commands: Vec::new(),
        };
        let dir = Path::new("/shared/sweeps/x");
        assert_eq!(r.log_of(dir, "c-s1"), Some(dir.join("slurm/logs/41_0.log")));
        assert_eq!(r.log_of(dir, "b-s1"), Some(dir.join("slurm/logs/41_1.log")));
        assert_eq!(r.log_of(dir, "d-s1"), None);
    }
}
