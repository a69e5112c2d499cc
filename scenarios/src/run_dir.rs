//! `--run-dir DIR`: which directories a run may take over. A run replaces only what is its own to
//! replace (nothing, or an unfinished smtplab run); anything else is refused, never deleted.

use std::path::Path;

use crate::error::ScenarioError;

/// What is in a directory given as `--run-dir`.
#[derive(Debug, PartialEq)]
pub enum Existing {
    /// Missing or empty: free to use.
    Free,
    /// An smtplab run that did not finish (its manifest's status: running, failed, ...).
    Unfinished(String),
    /// An smtplab run whose manifest says it completed.
    Complete,
    /// A file, or a directory with something other than an smtplab run in it.
    Foreign(String),
}

/// Looks at `dir` without changing it.
pub fn inspect(dir: &Path) -> Existing {
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Existing::Free,
        Err(e) => return Existing::Foreign(format!("cannot be read ({e})")),
    };
    if !meta.is_dir() {
        return Existing::Foreign("is not a directory".into());
    }
    match std::fs::read_dir(dir).map(|mut entries| entries.next().is_none()) {
        Ok(true) => return Existing::Free,
        Ok(false) => {}
        Err(e) => return Existing::Foreign(format!("cannot be read ({e})")),
    }
    let manifest = records::read_json_file::<records::Manifest>(&dir.join("manifest.json"), "a run manifest").ok();
    // A run's manifest names its scenario and status; any other manifest.json is not ours.
    match manifest.filter(records::Manifest::is_run).map(|m| m.status) {
        Some(records::RunStatus::Complete) => Existing::Complete,
        Some(status) => Existing::Unfinished(status.as_str().to_string()),
        None => Existing::Foreign("is not empty and holds no smtplab run (no run manifest.json)".into()),
    }
}

/// Makes `dir` ready for a run: creates it, or replaces the unfinished run in it. Refuses (and
/// deletes nothing) when it holds a complete run or anything that is not an smtplab run.
pub fn prepare(dir: &Path) -> Result<(), ScenarioError> {
    let shown = dir.display().to_string();
    let refuse = |why: String| ScenarioError::RunDir { dir: shown.clone(), message: why };
    match inspect(dir) {
        Existing::Free => {}
        Existing::Unfinished(status) => {
            crate::progress::say(&format!("replacing the unfinished run in {shown} (status {status:?})"));
            std::fs::remove_dir_all(dir).map_err(ScenarioError::io(shown.clone()))?;
        }
        Existing::Complete => {
            return Err(refuse(
                "holds a complete run; nothing was changed. Give another --run-dir, or remove it yourself to \
                 run again"
                    .into(),
            ));
        }
        Existing::Foreign(why) => {
            return Err(refuse(format!(
                "{why}; nothing was changed. Give --run-dir a new or empty directory (a run there is replaced \
                 only while it is unfinished)"
            )));
        }
    }
    std::fs::create_dir_all(dir).map_err(ScenarioError::io(shown))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("smtplab-rundir-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("scratch");
        p
    }

    fn manifest(dir: &Path, status: &str) {
        let m = serde_json::json!({"status": status, "scenario": {}});
        std::fs::write(dir.join("manifest.json"), m.to_string()).expect("manifest");
    }

    #[test]
    fn foreign_directories_and_complete_runs_are_refused_and_kept() {
        let dir = scratch("foreign");
        std::fs::write(dir.join("thesis.tex"), "years of work").expect("file");
        let e = prepare(&dir).expect_err("not a run").to_string();
        assert!(e.contains(&dir.display().to_string()) && e.contains("new or empty directory"), "{e}");
        assert!(dir.join("thesis.tex").exists(), "nothing deleted");

        manifest(&dir, "complete");
        let e = prepare(&dir).expect_err("complete run").to_string();
        assert!(e.contains("complete run") && e.contains("another --run-dir"), "{e}");
        assert!(dir.join("thesis.tex").exists(), "nothing deleted");

        let file = dir.join("thesis.tex");
        let e = prepare(&file).expect_err("a file").to_string();
        assert!(e.contains("not a directory"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn unfinished_runs_are_replaced_and_empty_or_missing_dirs_used() {
        let dir = scratch("unfinished");
        for status in ["running", "failed", "captured", "interrupted", "incomplete"] {
            manifest(&dir, status);
            std::fs::write(dir.join("capture.pcap"), "old").expect("file");
            prepare(&dir).expect("unfinished run replaced");
            assert_eq!(std::fs::read_dir(&dir).expect("dir").count(), 0, "{status}: emptied");
        }
        prepare(&dir).expect("empty");
        let missing = dir.join("new/deeper");
        prepare(&missing).expect("created");
        assert!(missing.is_dir());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
