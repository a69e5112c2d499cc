//! The relays' session records, merged into one file ordered by start time without holding
//! them: a run of 100,000 messages has some 400,000 records (hundreds of MB as structs), and
//! only their start times and places in the files are kept (24 bytes each).

use std::io::{BufRead, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use records::SessionRecord;

use crate::error::ScenarioError;

/// Where one record sits: which file, at which byte, how long, and when its session started.
struct Place {
    started_at: f64,
    file: u32,
    offset: u64,
    len: u32,
}

/// Writes every record of `files` to `out`, ordered by `started_at` (records with equal start
/// times keep their file order), each passed through `fix` first.
pub fn merge_sorted(
    files: &[PathBuf],
    out: &Path,
    mut fix: impl FnMut(&mut SessionRecord),
) -> Result<(), ScenarioError> {
    #[derive(serde::Deserialize)]
    struct Start {
        started_at: f64,
    }
    let io = |p: &Path| {
        let what = p.display().to_string();
        move |e: std::io::Error| ScenarioError::Io { what: what.clone(), source: e }
    };
    let bad = |p: &Path, line: usize, source: serde_json::Error| ScenarioError::RelayRecord {
        path: p.to_path_buf(),
        line,
        source,
    };
    let mut places = Vec::new();
    for (f, path) in files.iter().enumerate() {
        let mut reader = std::io::BufReader::new(std::fs::File::open(path).map_err(io(path))?);
        let (mut offset, mut line, mut n) = (0u64, String::new(), 0usize);
        loop {
            line.clear();
            let read = reader.read_line(&mut line).map_err(io(path))?;
            if read == 0 {
                break;
            }
            n += 1;
            if !line.trim().is_empty() {
                let start: Start = serde_json::from_str(&line).map_err(|e| bad(path, n, e))?;
                places.push(Place { started_at: start.started_at, file: f as u32, offset, len: read as u32 });
            }
            offset += read as u64;
        }
    }
    // Stable: equal start times stay in file order, as a concatenation sorted would have them.
    places.sort_by(|a, b| a.started_at.total_cmp(&b.started_at));
    let handles = files.iter().map(|p| std::fs::File::open(p).map_err(io(p))).collect::<Result<Vec<_>, _>>()?;
    let mut w = std::io::BufWriter::new(std::fs::File::create(out).map_err(io(out))?);
    let mut buf = Vec::new();
    for p in places {
        let path = &files[p.file as usize];
        buf.resize(p.len as usize, 0);
        handles[p.file as usize].read_exact_at(&mut buf, p.offset).map_err(io(path))?;
        let mut record: SessionRecord = serde_json::from_slice(&buf).map_err(|source| {
            ScenarioError::RelayRecordChanged { path: path.to_path_buf(), offset: p.offset, source }
        })?;
        fix(&mut record);
        serde_json::to_writer(&mut w, &record).map_err(|e| io(out)(e.into()))?;
        w.write_all(b"\n").map_err(io(out))?;
    }
    w.flush().map_err(io(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_by_start_time_and_keeps_ties_in_file_order() {
        let dir = std::env::temp_dir().join(format!("smtplab-merge-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let rec = |system: &str, t: f64| SessionRecord {
            direction: "outbound".into(),
            system: system.into(),
            started_at: t,
            ..Default::default()
        };
        let a = vec![rec("a", 3.0), rec("a", 1.0), rec("a", 2.0)];
        let b = vec![rec("b", 2.0), rec("b", 0.5)];
        let (pa, pb) = (dir.join("a.jsonl"), dir.join("b.jsonl"));
        records::write_jsonl(&pa, &a).expect("a");
        std::fs::write(&pb, "").expect("b");
        // A blank line in the middle is skipped, as read_jsonl does.
        let mut text = String::new();
        for r in &b {
            text.push_str(&serde_json::to_string(r).expect("json"));
            text.push_str("\n\n");
        }
        std::fs::write(&pb, text).expect("b");
        let out = dir.join("out.jsonl");
        merge_sorted(&[pa, pb], &out, |r| r.peer_system = Some(format!("seen-{}", r.system))).expect("merge");
        let merged: Vec<SessionRecord> = records::read_jsonl(&out).expect("read");
        let order: Vec<(String, f64)> = merged.iter().map(|r| (r.system.clone(), r.started_at)).collect();
        let want = [("b", 0.5), ("a", 1.0), ("a", 2.0), ("b", 2.0), ("a", 3.0)];
        assert_eq!(order, want.map(|(s, t)| (s.to_string(), t)));
        assert!(merged.iter().all(|r| r.peer_system.as_deref() == Some(&format!("seen-{}", r.system))));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A line a relay left unparseable is named by file and line (counting blank lines, as an
    /// editor does), with serde's reason as the source.
    #[test]
    fn an_unreadable_record_is_named_by_file_and_line() {
        let dir = std::env::temp_dir().join(format!("smtplab-merge-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let good = serde_json::to_string(&SessionRecord { started_at: 1.0, ..Default::default() }).expect("json");
        let path = dir.join("sessions.jsonl");
        std::fs::write(&path, format!("{good}\n\n{{\"started_at\": \n")).expect("write");
        let e = merge_sorted(std::slice::from_ref(&path), &dir.join("out.jsonl"), |_| {}).expect_err("line 3");
        let text = e.to_string();
        let _ = std::fs::remove_dir_all(&dir);
        match e {
            ScenarioError::RelayRecord { path: named, line, source } => {
                assert_eq!((named, line), (path.clone(), 3));
                assert!(source.is_eof(), "{source}");
            }
            e => panic!("expected RelayRecord, got {e}"),
        }
        assert!(text.starts_with(&format!("{}:3: ", path.display())), "{text}");
    }
}
