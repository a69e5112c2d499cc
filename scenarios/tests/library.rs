//! Every scenario of the library (`scenarios/*.toml`) reads without error, and every sweep
//! expands into points that do: a library file that drifted from the schema fails here, not in
//! a user's hands.

use scenarios::Scenario;

#[test]
fn every_library_scenario_and_sweep_point_parses() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("scenarios/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml") && p.file_name().is_some_and(|n| n != "Cargo.toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 7, "{files:?}");
    for path in files {
        let text = std::fs::read_to_string(&path).expect("read");
        let name = path.display().to_string();
        assert!(text.contains("# Question: "), "{name}: says which question it answers");
        if text.contains("\n[sweep]") {
            let sweep = scenarios::sweep::expand(&text, &name).unwrap_or_else(|e| panic!("{e}"));
            assert!(!sweep.points.is_empty(), "{name}");
        } else {
            Scenario::parse(&text, &name).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

/// The stragglers sweep: all `may`, half and half, all `encrypt` over the 4 STARTTLS systems.
#[test]
fn stragglers_sweep_mixes_outbound_policies() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/stragglers.toml");
    let text = std::fs::read_to_string(path).expect("stragglers.toml");
    let sweep = scenarios::sweep::expand(&text, path).expect("sweep");
    let counts: Vec<(usize, usize)> = sweep
        .points
        .iter()
        .map(|p| {
            let tls = p.scenario.systems.iter().filter(|s| s.starttls);
            let may = tls.clone().filter(|s| s.outbound() == relay::OutboundTls::May).count();
            (may, tls.count() - may)
        })
        .collect();
    let mut counts = counts;
    counts.sort();
    assert_eq!(counts, vec![(0, 4), (2, 2), (4, 0)], "(may, encrypt) per point");
}
