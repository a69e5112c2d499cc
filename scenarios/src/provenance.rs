//! What a run directory's manifest says about its files: the sha256 of each, so a reader can
//! tell the files are the ones the run wrote, and a resumed sweep can tell a point's inputs
//! changed.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use sha2::Digest;

/// sha256 of every file of the run directory except the manifest (which holds the hashes) and
/// the relays' spools (their working files, gone or reused when the run ends), by path relative
/// to `dir`. Files that cannot be read are left out.
pub fn file_hashes(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                if !p.ends_with("spool") {
                    stack.push(p);
                }
            } else if p.file_name().is_some_and(|n| n != "manifest.json")
                && let Ok(hash) = sha256_file(&p)
            {
                let rel = p.strip_prefix(dir).unwrap_or(&p).display().to_string();
                out.insert(rel, hash);
            }
        }
    }
    out
}

/// sha256 of a file, read in blocks (captures can be gigabytes), as lower-case hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(buf.get(..n).unwrap_or_default());
    }
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_every_file_but_the_manifest_and_spools() {
        let dir = std::env::temp_dir().join(format!("smtplab-provenance-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("truth")).expect("write the test directory");
        std::fs::create_dir_all(dir.join("systems/a/spool")).expect("write the test directory");
        std::fs::write(dir.join("truth/x.jsonl"), b"abc").expect("write the test directory");
        std::fs::write(dir.join("empty"), b"").expect("write the test directory");
        std::fs::write(dir.join("manifest.json"), b"{}").expect("write the test directory");
        std::fs::write(dir.join("systems/a/spool/q.queued"), b"q").expect("write the test directory");
        let got = file_hashes(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        // FIPS 180-2's test vector for "abc", and the hash of the empty string.
        let want: BTreeMap<String, String> = [
            ("truth/x.jsonl", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            ("empty", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(got, want);
    }
}
