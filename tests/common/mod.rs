//! Helpers shared by the binary's integration tests (each test file compiles this module on its
//! own and uses a part of it, hence the allowance).
#![allow(dead_code)]

use std::path::PathBuf;

/// A fresh, empty scratch directory for one test of one test file, in this process.
pub fn scratch(file: &str, name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("smtplab-{file}-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).expect("scratch directory");
    p
}

/// Whether this process runs as root (live capture and network namespaces need it; CI is root).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}

/// Fails the calling test, with the reason, when it does not run as root: a test that needs
/// root never passes without having run (CI runs as root).
pub fn require_root(what: &str) {
    assert!(
        is_root(),
        "{what} needs root or CAP_NET_RAW/CAP_NET_ADMIN: run the tests as root (scripts/test does in CI)"
    );
}

/// One CSV line's fields, RFC 4180 quoting undone (lists and JSON are quoted in the tables).
pub fn split_csv(line: &str) -> Vec<String> {
    let (mut out, mut field, mut quoted, mut chars) = (Vec::new(), String::new(), false, line.chars().peekable());
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut field)),
            _ => field.push(c),
        }
    }
    out.push(field);
    out
}
