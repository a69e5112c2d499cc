//! A sweep's directory made ready to run: one scenario file per point, `sweep.json`, and which
//! points still need a run. The local runner (`smtplab sweep`) and Slurm submission
//! (`smtplab sweep --slurm`) both start here, so both skip exactly the same points.

use std::path::{Path, PathBuf};

use crate::error::ScenarioError;

/// One point × seed of a planned sweep.
#[derive(Debug, Clone)]
pub struct PlannedPoint {
    /// The point's label (`key=value,...`, or `base`).
    pub point: String,
    pub seed: u64,
    /// Name of its run directory (and of its point file, with `.toml`).
    pub dir_name: String,
    /// `points/<dir_name>.toml`: the complete scenario the run reads.
    pub toml: PathBuf,
    pub run_dir: PathBuf,
    /// sha256 of the point as the sweep file defines it (before any worker's ports): a complete
    /// run that recorded another hash ran a different scenario.
    pub hash: String,
    /// Which local worker runs it (its ports are moved by 10 per worker); 0 for Slurm, whose
    /// tasks move their ports when they start.
    pub worker: usize,
}

/// A sweep whose point files and `sweep.json` are written.
#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    /// The sweep directory, `<out>/<name>`.
    pub dir: PathBuf,
    pub keys: Vec<String>,
    pub seeds: Vec<u64>,
    pub points: Vec<PlannedPoint>,
}

/// Expands the sweep file `text` (named `source` in errors) into `<out>/<name>/`: writes every
/// point's scenario file under `points/` and `sweep.json` (keys, seeds, and per point its
/// parameters, hash and the command that runs it). Points are dealt to `workers` local workers
/// round-robin; each worker's ports are moved by 10 above the previous one's. Runs nothing and
/// touches no run directory.
pub fn write(text: &str, source: &str, out: &Path, workers: usize, command_line: &str) -> Result<Plan, ScenarioError> {
    let workers = workers.max(1);
    let mut sw = super::expand(text, source)?;
    let dir = out.join(&sw.name);
    let points_dir = dir.join("points");
    std::fs::create_dir_all(&points_dir)
        .map_err(ScenarioError::io(format!("cannot create {}", points_dir.display())))?;
    let mut points = Vec::new();
    let mut entries = Vec::new();
    for (i, p) in sw.points.iter_mut().enumerate() {
        // The point as the sweep file defines it, before this invocation's ports (which follow
        // the workers and change no result) are set.
        let hash = relay::sha256_hex(p.toml.as_bytes());
        if let Some(info) = p.scenario.point.as_mut() {
            info.scenario_sha256 = Some(hash.clone());
        }
        let worker = i % workers;
        let by = u16::try_from(10 * worker).unwrap_or(u16::MAX);
        p.scenario.shift_ports(by).map_err(|why| ScenarioError::Invalid {
            path: source.into(),
            key: "network".into(),
            message: format!(
                "--jobs {workers}: worker {worker}'s {why} (10 ports per worker); use fewer jobs or lower ports"
            ),
        })?;
        let toml = toml::to_string_pretty(&p.scenario)
            .map_err(ScenarioError::serialize(format!("sweep point {}", p.dir_name)))?;
        let path = points_dir.join(format!("{}.toml", p.dir_name));
        std::fs::write(&path, toml).map_err(ScenarioError::io(format!("cannot write {}", path.display())))?;
        let run_dir = dir.join(&p.dir_name);
        let info = p.scenario.point.as_ref();
        entries.push(records::SweepEntry {
            point: info.map(|i| i.point.clone()).unwrap_or_default(),
            params: info.map(|i| i.params.clone()).unwrap_or_default(),
            seed: p.seed,
            dir: p.dir_name.clone(),
            scenario_sha256: hash.clone(),
            command: format!("smtplab run {} --run-dir {}", path.display(), run_dir.display()),
        });
        points.push(PlannedPoint {
            point: info.map(|i| i.point.clone()).unwrap_or_default(),
            seed: p.seed,
            dir_name: p.dir_name.clone(),
            toml: path,
            run_dir,
            hash,
            worker,
        });
    }
    let manifest = records::SweepFile {
        name: sw.name.clone(),
        keys: sw.keys.clone(),
        seeds: sw.seeds.clone(),
        source: source.into(),
        command_line: command_line.into(),
        points: entries,
    };
    let path = dir.join("sweep.json");
    records::write_json_file(&path, &manifest)
        .map_err(ScenarioError::io(format!("cannot write {}", path.display())))?;
    Ok(Plan { name: sw.name, dir, keys: sw.keys, seeds: sw.seeds, points })
}

impl Plan {
    /// The points without a complete run of their current scenario: what is left to run.
    pub fn pending(&self) -> Vec<&PlannedPoint> {
        self.points.iter().filter(|p| !is_current(&p.run_dir, &p.hash)).collect()
    }

    /// Removes the complete runs of points whose scenario changed since they ran (a key outside
    /// the grid was edited), telling `say` about each: a run never replaces a complete one by
    /// itself, so the sweep, which knows these are stale, clears the way.
    pub fn remove_stale(&self, say: impl Fn(&str)) -> Result<(), ScenarioError> {
        for p in &self.points {
            if is_complete(&p.run_dir) && !is_current(&p.run_dir, &p.hash) {
                say(&format!("{}: the point's scenario changed since it ran; running it again", p.run_dir.display()));
                std::fs::remove_dir_all(&p.run_dir)
                    .map_err(ScenarioError::io(format!("cannot remove {}", p.run_dir.display())))?;
            }
        }
        Ok(())
    }
}

/// A run directory whose manifest says it completed.
pub fn is_complete(dir: &Path) -> bool {
    read_manifest(dir).is_some_and(|m| m.status == records::RunStatus::Complete)
}

/// Whether a point's run is complete and ran this very point (the scenario hash its
/// `point.json` records): a point whose scenario changed since, e.g. a key outside the grid,
/// must run again.
pub fn is_current(dir: &Path, hash: &str) -> bool {
    is_complete(dir)
        && records::read_json_file::<records::PointInfo>(&dir.join("point.json"), "a sweep point")
            .is_ok_and(|p| p.scenario_sha256.as_deref() == Some(hash))
}

/// A run directory's manifest; `None` when it has none or one that is not smtplab's (a damaged
/// manifest makes the point run again, which is what a resumed sweep should do with it).
pub(crate) fn read_manifest(dir: &Path) -> Option<records::Manifest> {
    records::read_json_file(&dir.join("manifest.json"), "a run manifest").ok()
}
