//! `smtplab sweep --slurm` on a real Slurm: the test starts a one-node cluster from Debian's
//! packages (munged, slurmctld and slurmd on loopback, with a slurm.conf of its own in a scratch
//! directory), submits a sweep of 4 points × 2 seeds through it, and checks that the sweep's
//! tables equal those of the same sweep run here with `smtplab sweep`. Then a point whose task
//! fails is named with its Slurm log, nothing written is lost, and resubmitting finishes it.
//!
//! Without slurm-wlm and munge (scripts/lib.sh installs them) or where the daemons cannot start,
//! the test fails and says why.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::seeded_part;

/// Longest wait for the cluster to come up, and for a submission's jobs to end. Generous: the
/// machine is shared; a healthy run of this sweep takes well under a minute.
const START_LIMIT: Duration = Duration::from_secs(60);
const JOBS_LIMIT: Duration = Duration::from_secs(600);

#[test]
fn slurm_sweep_equals_local_sweep_and_resumes() {
    let dir = common::scratch("slurm", "sweep");
    let sweep_file = write_sweep(&dir);
    let (local_out, slurm_out) = (dir.join("local"), dir.join("cluster"));

    // The reference: the same sweep file run here, one point after the other.
    let local = smtplab(&["sweep", &show(&sweep_file), "--out", &show(&local_out)], &[]);
    assert!(local.status.success(), "local sweep: {}", String::from_utf8_lossy(&local.stderr));
    let local_sweep = local_out.join("slurm-small");

    let cluster = Cluster::start(&dir.join("cluster-state")).unwrap_or_else(|e| panic!("cannot start Slurm: {e}"));
    let env = cluster.env();
    let slurm_args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = ["sweep", &show(&sweep_file), "--out", &show(&slurm_out), "--slurm"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };

    // Refused: a partition the cluster lacks. sbatch's reason and what to do; nothing queued.
    let refused = smtplab(&slurm_args(&["--partition", "nosuch"]), &env);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && !stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("nosuch") && stderr.contains("sinfo -s") && stderr.contains("--partition"), "{stderr}");
    assert_eq!(cluster.queue(), "", "a refused submission leaves nothing queued");
    // No Slurm here: the client commands are missing from PATH.
    let mut no_slurm = env.clone();
    no_slurm.push(("PATH".into(), "/nonexistent".into()));
    let absent = smtplab(&slurm_args(&[]), &no_slurm);
    let stderr = String::from_utf8_lossy(&absent.stderr);
    assert!(!absent.status.success(), "{stderr}");
    assert!(stderr.contains("is not on PATH") && stderr.contains("without --slurm"), "{stderr}");
    // A time limit sbatch would not take is refused before anything is submitted.
    let bad_time = smtplab(&slurm_args(&["--time", "2h"]), &env);
    assert!(String::from_utf8_lossy(&bad_time.stderr).contains("HH:MM:SS"), "{bad_time:?}");

    // The sweep through Slurm: 8 tasks, 2 at a time on the node's 2 CPUs (so two tasks share
    // the node and must use ports of their own), then the analysis job.
    let submit = smtplab(&slurm_args(&["--max-parallel", "2", "--time", "00:10:00"]), &env);
    let stderr = String::from_utf8_lossy(&submit.stderr);
    assert!(submit.status.success(), "{stderr}");
    assert!(stderr.contains("8 points, 8 submitted as array job") && stderr.contains("at most 2 at once"), "{stderr}");
    let slurm_sweep = PathBuf::from(String::from_utf8_lossy(&submit.stdout).trim());
    assert_eq!(slurm_sweep, slurm_out.join("slurm-small"));
    // While it is queued (held here, so that it surely is), the same sweep is not submitted twice.
    let array_job = last_submission(&slurm_sweep)["array_job"].as_str().expect("array job").to_string();
    assert!(cluster.slurm("scontrol", &["hold", &array_job]).is_some(), "hold {array_job}");
    let twice = smtplab(&slurm_args(&[]), &env);
    let stderr = String::from_utf8_lossy(&twice.stderr);
    assert!(!twice.status.success() && stderr.contains("still queued or running"), "{stderr}");
    assert!(stderr.contains(&format!("scancel {array_job}")), "{stderr}");
    assert!(cluster.slurm("scontrol", &["release", &array_job]).is_some(), "release {array_job}");
    cluster.wait_for_jobs(&slurm_sweep);
    let record = last_submission(&slurm_sweep);
    assert_eq!(record["number"], 1, "the refused submission left no record");
    let analysis_log = read_analysis_log(&slurm_sweep, &record);
    assert!(analysis_log.contains("8 of 8 points complete"), "{analysis_log}");
    assert!(slurm_sweep.join("report/index.html").is_file(), "the analysis job made the report:\n{analysis_log}");
    // Two tasks ran side by side on other ports (each task's log says which).
    let logs: String = (0..8)
        .map(|t| {
            std::fs::read_to_string(
                slurm_sweep.join(format!("slurm/logs/{}_{t}.log", record["array_job"].as_str().unwrap_or("?"))),
            )
            .unwrap_or_default()
        })
        .collect();
    assert!(logs.contains("ports +0") && logs.contains("ports +10"), "{logs}");
    assert_same_tables(&local_sweep, &slurm_sweep);

    // A point lost and run again while its port is taken: its task fails. The analysis job names
    // it with its Slurm log and leaves the other points as they were.
    let lost = "systems.2.starttls=true_traffic.users_per_system=3-s2";
    std::fs::remove_dir_all(slurm_sweep.join(lost)).expect("remove a point");
    let kept = std::fs::read(slurm_sweep.join("systems.2.starttls=false_traffic.users_per_system=2-s1/manifest.json"))
        .expect("a complete point's manifest");
    let taken = std::net::TcpListener::bind("127.0.62.1:27525").expect("take beta's port");
    let again = smtplab(&slurm_args(&["--max-parallel", "1"]), &env);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    assert!(stderr.contains("8 points, 1 submitted") && stderr.contains("7 already complete"), "{stderr}");
    cluster.wait_for_jobs(&slurm_sweep);
    drop(taken);
    let record = last_submission(&slurm_sweep);
    let log = slurm_sweep.join(format!("slurm/logs/{}_0.log", record["array_job"].as_str().expect("array job")));
    let analysis_log = read_analysis_log(&slurm_sweep, &record);
    assert!(analysis_log.contains("7 of 8 points complete"), "{analysis_log}");
    assert!(
        analysis_log.contains(&format!("{lost} (seed 2): run failed; log: {}", log.display())),
        "the failed point and its Slurm log are named:\n{analysis_log}"
    );
    assert!(std::fs::read_to_string(&log).expect("the task's log").contains(&format!("point {lost} FAILED")));
    let after = std::fs::read(slurm_sweep.join("systems.2.starttls=false_traffic.users_per_system=2-s1/manifest.json"))
        .expect("still there");
    assert_eq!(kept, after, "a complete point is left as it was");
    // --status says the same, here, and fails.
    let status = smtplab(&["sweep", &show(&slurm_sweep), "--status"], &env);
    assert!(!status.status.success());
    assert!(String::from_utf8_lossy(&status.stdout).contains(&format!("{lost} (seed 2): run failed")), "{status:?}");

    // Resubmitted with the port free: the failed point runs again, the sweep is whole, and its
    // tables still equal the local sweep's.
    let last = smtplab(&slurm_args(&[]), &env);
    let stderr = String::from_utf8_lossy(&last.stderr);
    assert!(last.status.success() && stderr.contains("8 points, 1 submitted"), "{stderr}");
    cluster.wait_for_jobs(&slurm_sweep);
    let record = last_submission(&slurm_sweep);
    let analysis_log = read_analysis_log(&slurm_sweep, &record);
    assert!(analysis_log.contains("8 of 8 points complete"), "{analysis_log}");
    assert_same_tables(&local_sweep, &slurm_sweep);

    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The sweep's tables, and every run's truth and tables, as the local sweep has them (timing
/// columns and TLS handshake sizes aside, as in `same_seed_same_truth_and_tables`).
fn assert_same_tables(local: &Path, slurm: &Path) {
    for table in ["runs", "points", "tls_cost"] {
        let path = |sweep: &Path| sweep.join("analysis").join(format!("{table}.csv"));
        let (a, b) = (seeded_part(&path(local), table), seeded_part(&path(slurm), table));
        assert!(a.len() > 1, "{table} has rows");
        assert_eq!(a, b, "the sweep's analysis/{table}.csv differs between the local and the Slurm sweep");
    }
    let runs = std::fs::read_to_string(local.join("analysis/runs.csv")).expect("runs.csv");
    assert_eq!(runs.lines().count(), 9, "8 runs:\n{runs}");
    let mut compared = 0;
    for entry in std::fs::read_dir(local).expect("local sweep").flatten() {
        let run = entry.file_name();
        if !entry.path().join("truth").is_dir() {
            continue;
        }
        for f in ["truth/messages.jsonl", "truth/messages.parquet"] {
            let a = std::fs::read(local.join(&run).join(f)).expect("local truth");
            let b = std::fs::read(slurm.join(&run).join(f)).expect("Slurm truth");
            assert!(a == b, "{}/{f}: the same seed gave other truth", run.to_string_lossy());
        }
        for table in ["pairs", "messages", "hops", "user_pairs", "sessions", "tls_cost", "summary"] {
            let path = |sweep: &Path| sweep.join(&run).join("analysis").join(format!("{table}.csv"));
            let (a, b) = (seeded_part(&path(local), table), seeded_part(&path(slurm), table));
            assert_eq!(a, b, "{}/analysis/{table}.csv differs", run.to_string_lossy());
        }
        compared += 1;
    }
    assert_eq!(compared, 8);
}

/// 4 points (STARTTLS on gamma or not, 2 or 3 users per system) × seeds 1 and 2; 12 messages
/// each, on ports no other test uses (27525, and 27535 for a second task on the node).
fn write_sweep(dir: &Path) -> PathBuf {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/small.toml");
    let text = std::fs::read_to_string(data)
        .expect("small.toml")
        .replace("name = \"cli-small\"", "name = \"slurm-small\"")
        .replace("smtp_port = 13525", "smtp_port = 27525")
        .replace("submission_port = 13587", "submission_port = 27526")
        .replace("messages = 40", "messages = 12")
        .replace("127.0.51.1", "127.0.61.1")
        .replace("127.0.52.1", "127.0.62.1")
        .replace("127.0.53.1", "127.0.63.1")
        + "\n[sweep]\nseeds = [1, 2]\n\"systems.2.starttls\" = [false, true]\n\"traffic.users_per_system\" = [2, 3]\n";
    let path = dir.join("sweep.toml");
    std::fs::write(&path, text).expect("write the sweep file");
    path
}

fn smtplab<S: AsRef<std::ffi::OsStr>>(args: &[S], env: &[(String, String)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_smtplab"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("CI", "1")
        .output()
        .expect("run smtplab")
}

fn show(p: &Path) -> String {
    p.display().to_string()
}

fn last_submission(sweep: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(sweep.join("slurm/submissions.jsonl")).expect("submission records");
    serde_json::from_str(text.lines().last().expect("a submission")).expect("a record")
}

/// The log of a submission's analysis job.
fn read_analysis_log(sweep: &Path, record: &serde_json::Value) -> String {
    let (number, job) = (record["number"].as_u64().expect("number"), record["final_job"].as_str().expect("job"));
    let path = sweep.join(format!("slurm/logs/analysis-{number}-{job}.log"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("the analysis job's log {}: {e}", path.display()))
}

/// A one-node Slurm cluster of this test's own: its daemons are stopped (by PID) when it drops.
struct Cluster {
    dir: PathBuf,
    conf: PathBuf,
    /// munged, slurmctld, slurmd, as started.
    daemons: Vec<(&'static str, Child)>,
}

impl Cluster {
    fn start(dir: &Path) -> Result<Cluster, String> {
        for tool in ["munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "flock"] {
            if Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .map_or(true, |o| !o.status.success())
            {
                return Err(format!(
                    "{tool} is not installed: install the Debian packages slurm-wlm and munge (scripts/lib.sh's \
                     TEST_PACKAGES; scripts/test installs them)"
                ));
            }
        }
        for sub in ["munge", "run", "state", "spool", "log"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        // munged wants its key private, and every directory above its socket searchable by all
        // (scratch directories are made with the default umask, 0755).
        let key = dir.join("munge/munge.key");
        let mut random = vec![0u8; 1024];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").map_err(|e| e.to_string())?, &mut random)
            .map_err(|e| e.to_string())?;
        std::fs::write(&key, random).map_err(|e| e.to_string())?;
        set_mode(&dir.join("munge"), 0o700)?;
        set_mode(&key, 0o600)?;
        let host = command_output("hostname", &["-s"])?;
        let user = command_output("id", &["-un"])?;
        let root = user == "root";
        let [ctld_port, slurmd_port] = free_ports()?;
        let d = dir.display();
        let conf = dir.join("slurm.conf");
        // A small real cluster's configuration, on loopback: munge authentication, process
        // groups for tracking (no cgroups here), no accounting database.
        let text = format!(
            "ClusterName=smtplabtest\nSlurmctldHost={host}(127.0.0.1)\nSlurmUser={user}\nSlurmdUser={slurmd_user}\n\
             SlurmctldPort={ctld_port}\nSlurmdPort={slurmd_port}\nAuthType=auth/munge\nCredType=cred/munge\n\
             AuthInfo=socket={d}/run/munge.sock\nStateSaveLocation={d}/state\nSlurmdSpoolDir={d}/spool\n\
             SlurmctldPidFile={d}/run/slurmctld.pid\nSlurmdPidFile={d}/run/slurmd.pid\n\
             SlurmctldLogFile={d}/log/slurmctld.log\nSlurmdLogFile={d}/log/slurmd.log\n\
             ProctrackType=proctrack/pgid\nTaskPlugin=task/none\nSelectType=select/cons_tres\n\
             SelectTypeParameters=CR_CPU\nSchedulerType=sched/backfill\nReturnToService=2\nMpiDefault=none\n\
             MailProg=/bin/true\nJobAcctGatherType=jobacct_gather/none\nAccountingStorageType=accounting_storage/none\n\
             NodeName={host} NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN\n\
             PartitionName=smtplab Nodes={host} Default=YES MaxTime=INFINITE State=UP\n",
            slurmd_user = if root { "root" } else { &user },
        );
        std::fs::write(&conf, text).map_err(|e| e.to_string())?;
        let mut cluster = Cluster { dir: dir.to_path_buf(), conf, daemons: Vec::new() };
        let log = |name: &str| std::fs::File::create(dir.join("log").join(name)).map_err(|e| e.to_string());
        let spawn = |program: &str, args: Vec<String>, out: std::fs::File| {
            let err = out.try_clone().map_err(|e| e.to_string())?;
            Command::new(program)
                .args(args)
                .env("SLURM_CONF", dir.join("slurm.conf"))
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .map_err(|e| format!("cannot start {program}: {e}"))
        };
        let munged = spawn(
            "munged",
            vec![
                "--foreground".into(),
                format!("--key-file={d}/munge/munge.key"),
                format!("--socket={d}/run/munge.sock"),
                format!("--pid-file={d}/run/munged.pid"),
                format!("--seed-file={d}/munge/munged.seed"),
            ],
            log("munged.out")?,
        )?;
        cluster.daemons.push(("munged", munged));
        cluster.wait_until("munged to make its socket", START_LIMIT, || dir.join("run/munge.sock").exists())?;
        let conf_arg = cluster.conf.display().to_string();
        let ctld = spawn("slurmctld", vec!["-D".into(), "-f".into(), conf_arg.clone()], log("slurmctld.out")?)?;
        cluster.daemons.push(("slurmctld", ctld));
        cluster.wait_until("slurmctld to answer", START_LIMIT, || cluster.slurm("sinfo", &["-h"]).is_some())?;
        let slurmd =
            spawn("slurmd", vec!["-D".into(), "-f".into(), conf_arg, "-N".into(), host.clone()], log("slurmd.out")?)?;
        cluster.daemons.push(("slurmd", slurmd));
        cluster.wait_until("the node to be idle", START_LIMIT, || {
            cluster.slurm("sinfo", &["-h", "-o", "%T"]).is_some_and(|s| s.trim() == "idle")
        })?;
        Ok(cluster)
    }

    /// The environment smtplab and its jobs need: this cluster's configuration, and port-slot
    /// locks of their own.
    fn env(&self) -> Vec<(String, String)> {
        vec![("SLURM_CONF".into(), show(&self.conf)), ("SMTPLAB_LOCK_DIR".into(), show(&self.dir.join("run")))]
    }

    /// A Slurm client command's output, or `None` when it failed.
    fn slurm(&self, program: &str, args: &[&str]) -> Option<String> {
        let out = Command::new(program).args(args).env("SLURM_CONF", &self.conf).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Every job in the queue, one per line (array tasks pending as one).
    fn queue(&self) -> String {
        self.slurm("squeue", &["-h", "-o", "%i %T"]).unwrap_or_else(|| "(squeue failed)".into()).trim().to_string()
    }

    /// Waits until the queue is empty: the array's tasks and the analysis job ended.
    fn wait_for_jobs(&self, sweep: &Path) {
        if let Err(e) = self.wait_until("the jobs to end", JOBS_LIMIT, || self.queue().is_empty()) {
            let logs = std::fs::read_dir(sweep.join("slurm/logs"))
                .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect::<Vec<_>>())
                .unwrap_or_default();
            panic!("{e}; queue:\n{}\nlogs: {logs:?}", self.queue());
        }
    }

    /// Polls `ready` until it holds; errs with the daemons' logs if a daemon died or the limit
    /// passed.
    fn wait_until(&self, what: &str, limit: Duration, mut ready: impl FnMut() -> bool) -> Result<(), String> {
        let start = Instant::now();
        while !ready() {
            let dead: Vec<&str> = self
                .daemons
                .iter()
                .filter(|(_, c)| std::fs::metadata(format!("/proc/{}", c.id())).is_err())
                .map(|(name, _)| *name)
                .collect();
            if !dead.is_empty() || start.elapsed() > limit {
                let why = if dead.is_empty() { format!("{limit:?} passed") } else { format!("{dead:?} exited") };
                return Err(format!("waiting for {what}: {why}\n{}", self.daemon_logs()));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        Ok(())
    }

    fn daemon_logs(&self) -> String {
        ["munged.out", "slurmctld.out", "slurmctld.log", "slurmd.out", "slurmd.log"]
            .iter()
            .map(|f| {
                let text = std::fs::read_to_string(self.dir.join("log").join(f)).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                format!("--- {f} (last lines)\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Cluster {
    /// Cancels whatever is still queued (a failed assertion may leave jobs), then stops the
    /// daemons it started, newest first, by PID: SIGTERM, and SIGKILL if one lingers.
    fn drop(&mut self) {
        let _ = self
            .slurm("scancel", &["--full", "--quiet", "--user", &command_output("id", &["-un"]).unwrap_or_default()]);
        let _ = self.wait_until("the jobs to end after scancel", START_LIMIT, || self.queue().is_empty());
        while let Some((_, mut child)) = self.daemons.pop() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let start = Instant::now();
            while child.try_wait().ok().flatten().is_none() && start.elapsed() < Duration::from_secs(20) {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn command_output(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program).args(args).output().map_err(|e| format!("{program}: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn set_mode(path: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Two TCP ports free on loopback now, for slurmctld and slurmd.
fn free_ports() -> Result<[u16; 2], String> {
    let a = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let b = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = |l: &std::net::TcpListener| l.local_addr().map(|a| a.port()).map_err(|e| e.to_string());
    Ok([port(&a)?, port(&b)?])
}
