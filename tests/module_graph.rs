//! The modules of every crate of the workspace form no cycle: `scripts/module-cycles.py` reads
//! each crate's sources and lists every pair of modules that import each other, and every cycle
//! through more modules.

use std::path::Path;
use std::process::Command;

#[test]
fn modules_form_no_cycles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("scripts/module-cycles.py");
    let out = Command::new("python3")
        .arg(&script)
        .args(
            ["proto/src", "records/src", "relay/src", "tap/src", "scenarios/src", "analysis/src", "reports/src", "src"]
                .map(|d| root.join(d)),
        )
        .output()
        .unwrap_or_else(|e| panic!("running python3 {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "modules in a cycle (crate, count, pairs; then longer cycles):\n{stdout}{stderr}");
}
