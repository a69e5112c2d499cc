//! Sweeps: a scenario file with a `[sweep]` table expands into a grid of points × seeds. Each
//! point becomes a self-contained scenario file and its own run directory, so points can run
//! here (`--jobs N`), be resumed (finished points are skipped), or be handed to a cluster
//! scheduler one command line each: [`plan`] writes the point files and decides what is left to
//! run, [`slurm`] submits that as a Slurm array job, [`status`] says where a sweep stands.
//!
//! ```toml
//! [sweep]
//! seeds = [1, 2, 3]
//! "systems.2.starttls" = [false, true]
//! "traffic.messages" = [100, 200]
//! ```
//! Keys are dotted paths into the scenario; a number selects an element of an array.

pub mod plan;
pub mod slurm;
pub mod status;

use std::collections::BTreeMap;

use crate::error::ScenarioError;
use crate::schema::{PointInfo, Scenario};

/// One run of a sweep.
#[derive(Debug, Clone)]
pub struct Point {
    /// `key=value,...` (empty when the sweep only varies seeds).
    pub label: String,
    /// Directory name of the run: `<label>-s<seed>`, safe for any file system.
    pub dir_name: String,
    pub seed: u64,
    pub scenario: Scenario,
    /// The point's scenario as a complete TOML file.
    pub toml: String,
}

/// The whole sweep.
#[derive(Debug, Clone)]
pub struct Sweep {
    pub name: String,
    pub keys: Vec<String>,
    pub seeds: Vec<u64>,
    pub points: Vec<Point>,
}

pub fn expand(text: &str, path: &str) -> Result<Sweep, ScenarioError> {
    let parse_err = |message: String| ScenarioError::Parse { path: path.to_string(), message };
    let mut table: toml::Table = toml::from_str(text).map_err(|e| parse_err(e.to_string()))?;
    let Some(toml::Value::Table(sweep)) = table.remove("sweep") else {
        return Err(ScenarioError::Invalid {
            path: path.into(),
            key: "sweep".into(),
            message: "a sweep file needs a [sweep] table (see SCENARIOS.md)".into(),
        });
    };
    let base = Scenario::parse_generated(&toml::to_string(&table).unwrap_or_default(), path)?;
    let mut seeds = vec![base.scenario.seed];
    let mut axes: BTreeMap<String, Vec<toml::Value>> = BTreeMap::new();
    for (k, v) in sweep {
        let toml::Value::Array(values) = v else {
            return Err(ScenarioError::Invalid {
                path: path.into(),
                key: format!("sweep.{k}"),
                message: "each sweep key takes an array of values".into(),
            });
        };
        if values.is_empty() {
            return Err(ScenarioError::Invalid {
                path: path.into(),
                key: format!("sweep.{k}"),
                message: "empty".into(),
            });
        }
        if k == "seeds" {
            seeds = values
                .iter()
                .map(|v| v.as_integer().and_then(|i| u64::try_from(i).ok()))
                .collect::<Option<Vec<u64>>>()
                .ok_or_else(|| ScenarioError::Invalid {
                    path: path.into(),
                    key: "sweep.seeds".into(),
                    message: "seeds are non-negative integers".into(),
                })?;
        } else {
            axes.insert(k, values);
        }
    }
    let keys: Vec<String> = axes.keys().cloned().collect();
    let mut combos: Vec<Vec<(String, toml::Value)>> = vec![Vec::new()];
    for (k, values) in &axes {
        combos = combos
            .into_iter()
            .flat_map(|c| {
                values.iter().map(move |v| {
                    let mut c = c.clone();
                    c.push((k.clone(), v.clone()));
                    c
                })
            })
            .collect();
    }
    let mut points = Vec::new();
    for combo in &combos {
        let label = combo.iter().map(|(k, v)| format!("{k}={}", short(v))).collect::<Vec<_>>().join(",");
        for &seed in &seeds {
            let mut t = table.clone();
            // The point's seed before anything is drawn: a seed replicates every seeded choice
            // (population, attacked domains, tap placement, traffic), not only the traffic.
            if let toml::Value::Table(meta) =
                t.entry("scenario").or_insert_with(|| toml::Value::Table(toml::Table::new()))
            {
                meta.insert("seed".into(), toml::Value::Integer(i64::try_from(seed).unwrap_or(i64::MAX)));
            }
            for (k, v) in combo {
                set_path(&mut t, k, v.clone()).map_err(|message| ScenarioError::Invalid {
                    path: path.into(),
                    key: format!("sweep.{k}"),
                    message,
                })?;
            }
            let mut params = serde_json::Map::new();
            for (k, v) in combo {
                let v = serde_json::to_value(v).map_err(|e| parse_err(format!("sweep.{k}: {e}")))?;
                params.insert(k.clone(), v);
            }
            let point_name = if label.is_empty() { "base".to_string() } else { label.clone() };
            let dir_name = format!("{}-s{seed}", sanitize(&point_name));
            let mut scenario = Scenario::parse_generated(
                &toml::to_string(&t).map_err(|e| parse_err(e.to_string()))?,
                &format!("{path} [{point_name}, seed {seed}]"),
            )?;
            scenario.scenario.seed = seed;
            scenario.point = Some(PointInfo {
                sweep: base.scenario.name.clone(),
                point: point_name,
                params,
                seed,
                scenario_sha256: None,
            });
            let toml = toml::to_string_pretty(&scenario).map_err(|e| parse_err(e.to_string()))?;
            points.push(Point { label: label.clone(), dir_name, seed, scenario, toml });
        }
    }
    Ok(Sweep { name: base.scenario.name, keys, seeds, points })
}

fn short(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn sanitize(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || "._=-".contains(c) { c } else { '_' }).collect()
}

/// Sets `a.b.2.c` in a TOML table.
fn set_path(t: &mut toml::Table, path: &str, value: toml::Value) -> Result<(), String> {
    let parts: Vec<&str> = path.split('.').collect();
    let mut cur: &mut toml::Value =
        t.get_mut(parts[0]).ok_or_else(|| format!("no key {:?} in the scenario", parts[0]))?;
    for (i, p) in parts.iter().enumerate().skip(1) {
        let last = i + 1 == parts.len();
        cur = match cur {
            toml::Value::Table(tab) => {
                if last && !tab.contains_key(*p) {
                    tab.insert(p.to_string(), value.clone());
                    return Ok(());
                }
                tab.get_mut(*p).ok_or_else(|| format!("no key {p:?} under {:?}", parts[..i].join(".")))?
            }
            toml::Value::Array(arr) => {
                let idx: usize =
                    p.parse().map_err(|_| format!("{p:?} is not an index into {:?}", parts[..i].join(".")))?;
                let len = arr.len();
                arr.get_mut(idx).ok_or_else(|| format!("index {idx} out of range ({len} elements)"))?
            }
            _ => return Err(format!("{:?} is not a table or array", parts[..i].join("."))),
        };
    }
    *cur = value;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_times_seeds() {
        let text = format!(
            "{}\n[sweep]\nseeds = [1, 2]\n\"systems.2.starttls\" = [false, true]\n\"traffic.messages\" = [10, 20, 30]\n",
            crate::DEFAULT_SCENARIO
        );
        let s = expand(&text, "x.toml").expect("sweep");
        assert_eq!(s.points.len(), 12);
        assert_eq!(s.keys, vec!["systems.2.starttls", "traffic.messages"]);
        let p = &s.points[0];
        assert_eq!(p.dir_name, "systems.2.starttls=false_traffic.messages=10-s1");
        assert_eq!(p.scenario.traffic.messages, Some(10));
        assert!(!p.scenario.systems[2].starttls);
        let last = &s.points[11];
        assert_eq!((last.seed, last.scenario.traffic.messages, last.scenario.systems[2].starttls), (2, Some(30), true));
        // Each point's file is self-contained: it parses back to the same scenario.
        let again = Scenario::parse(&last.toml, "point").expect("point file");
        assert_eq!(again.point, last.scenario.point);
    }

    #[test]
    fn bad_key_is_named() {
        let text = format!("{}\n[sweep]\n\"traffic.nope.x\" = [1]\n", crate::DEFAULT_SCENARIO);
        let e = expand(&text, "x.toml").expect_err("bad key").to_string();
        assert!(e.contains("sweep.traffic.nope.x"), "{e}");
    }
}
