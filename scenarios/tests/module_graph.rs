//! The modules of this crate form no cycle: `scripts/module-cycles.py` (shared by relay, tap and
//! scenarios) reads the crate's own sources and lists every pair of modules that import each
//! other, and every cycle through more modules.

use std::path::Path;
use std::process::Command;

#[test]
fn modules_form_no_cycles() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = crate_dir.join("../scripts/module-cycles.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(crate_dir.join("src"))
        .output()
        .unwrap_or_else(|e| panic!("running python3 {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "modules in a cycle (crate, count, pairs; then longer cycles):\n{stdout}{stderr}");
}
