//! What active attackers read, and what each defense cost (issue 13), from the files only: the
//! attackers' own records (`truth/attacker.jsonl`), the relays' (`truth/sessions.jsonl`), the
//! submitted messages, `truth/systems.json` (each sender's outbound policy: its defense) and the
//! scenario in `manifest.json` (which attack stands on which path).
//!
//! - `analysis/attack_outcomes`: one row per (message, recipient): `read_by_attacker` and the
//!   `outcome` of its copy.
//! - `analysis/attack_matrix`: one row per defense × attack cell with the shares of those copies.
//!
//! Written only for a run whose scenario places attackers.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use polars::prelude::*;
use records::{AttackerSession, JsonlChunks, SessionRecord, TruthMessage};

use crate::error::AnalysisError;
use crate::layout::RunLayout;
use crate::record_frames::str_col;
use crate::table_io::{write_csv, write_parquet};
use records::SystemInfo;

pub const TABLE_ATTACK_OUTCOMES: &str = "attack_outcomes";
pub const TABLE_ATTACK_MATRIX: &str = "attack_matrix";

/// The attack no attacker stands on a path with.
pub const NO_ATTACK: &str = "none";

/// How a recipient's copy ended, from the relays' records: delivered over a hop in
/// `plaintext`, `encrypted-unauthenticated` (STARTTLS, certificate not checked) or
/// `authenticated` (STARTTLS, certificate verified); `local` (sender and recipient in one system:
/// no line crossed); `bounced`; `deferred` (still queued when the run ended).
pub const OUTCOMES: [&str; 6] =
    ["plaintext", "encrypted-unauthenticated", "authenticated", "local", "deferred", "bounced"];

/// Writes both tables when the run's scenario has attackers; returns whether it did.
pub fn write_attack_tables(layout: &RunLayout) -> Result<bool, AnalysisError> {
    let Some(placements) = placements(&layout.manifest_json())? else { return Ok(false) };
    let systems = crate::ingest::read_systems(&layout.truth_systems_json())?.unwrap_or_default();
    let copies = copies(layout, &systems, &placements)?;
    let table_error = |path: &Path, action: &'static str| {
        let path = path.to_path_buf();
        move |source| AnalysisError::Table { path, action, source, hint: "please report this with the run directory" }
    };
    let outcomes_path = layout.table_parquet(TABLE_ATTACK_OUTCOMES);
    let mut outcomes = copies_frame(&copies).map_err(table_error(&outcomes_path, "build the table"))?;
    let matrix_path = layout.table_parquet(TABLE_ATTACK_MATRIX);
    let mut matrix = matrix_frame(&outcomes).map_err(table_error(&matrix_path, "build the table"))?;
    write_parquet(&mut outcomes, &outcomes_path)?;
    write_csv(&mut outcomes, &layout.table_csv(TABLE_ATTACK_OUTCOMES))?;
    write_parquet(&mut matrix, &matrix_path)?;
    write_csv(&mut matrix, &layout.table_csv(TABLE_ATTACK_MATRIX))?;
    Ok(true)
}

/// One cell of a run's `analysis/attack_matrix`, for the report.
#[derive(Debug, Clone, PartialEq)]
pub struct AttackCell {
    pub defense: String,
    pub attack: String,
    pub messages: u64,
    pub read_share: Option<f64>,
    pub delivered_share: Option<f64>,
    pub deferred_share: Option<f64>,
    pub bounced_share: Option<f64>,
    pub plaintext_share: Option<f64>,
    pub authenticated_share: Option<f64>,
    /// Share of the cell's copies whose attack shows in the sender's TLS-RPT report.
    pub reported_share: Option<f64>,
}

/// The run's attack matrix as written by [`write_attack_tables`]; `None` for a run without one
/// (its scenario has no attackers).
pub fn read_attack_matrix(run_dir: &Path) -> Result<Option<Vec<AttackCell>>, AnalysisError> {
    let path = RunLayout::new(run_dir).table_parquet(TABLE_ATTACK_MATRIX);
    if !path.is_file() {
        return Ok(None);
    }
    let m = crate::table_io::read_parquet(&path, crate::error::HINT_ANALYZE)?;
    let bad = |column: &str, expected: &'static str| AnalysisError::Column {
        path: path.clone(),
        column: column.into(),
        expected,
        hint: "rerun smtplab analyze on this run",
    };
    let text = |c: &str| m.column(c).ok().and_then(|c| c.str().ok().cloned()).ok_or_else(|| bad(c, "String"));
    let share = |c: &str| m.column(c).ok().and_then(|c| c.f64().ok().cloned()).ok_or_else(|| bad(c, "Float64"));
    let (defense, attack) = (text("defense")?, text("attack")?);
    let messages =
        m.column("messages").ok().and_then(|c| c.u64().ok().cloned()).ok_or_else(|| bad("messages", "UInt64"))?;
    let [read, delivered, deferred, bounced, plaintext, authenticated, reported] = SHARES.map(share);
    let (read, delivered, deferred, bounced, plaintext, authenticated, reported) =
        (read?, delivered?, deferred?, bounced?, plaintext?, authenticated?, reported?);
    Ok(Some(
        (0..m.height())
            .map(|i| AttackCell {
                defense: defense.get(i).unwrap_or("").into(),
                attack: attack.get(i).unwrap_or("").into(),
                messages: messages.get(i).unwrap_or(0),
                read_share: read.get(i),
                delivered_share: delivered.get(i),
                deferred_share: deferred.get(i),
                bounced_share: bounced.get(i),
                plaintext_share: plaintext.get(i),
                authenticated_share: authenticated.get(i),
                reported_share: reported.get(i),
            })
            .collect(),
    ))
}

/// The shares of `attack_matrix` that the sweep table summarises over seeds.
const SHARES: [&str; 7] = [
    "read_share",
    "delivered_share",
    "deferred_share",
    "bounced_share",
    "plaintext_share",
    "authenticated_share",
    "reported_share",
];

/// A sweep's `analysis/attack_matrix`: per point, defense and attack, the mean of each share
/// over the point's seeds with its 95% t-interval (`<share>_low`, `<share>_high`), the runs it
/// is over and the copies they hold. Written when some run of the sweep has an attack matrix;
/// returns whether it did.
pub fn write_sweep_attack_matrix(dir: &Path) -> Result<bool, AnalysisError> {
    // (point, defense, attack) -> (copies, per share: one value per run)
    type Cell = (u64, Vec<Vec<Option<f64>>>);
    let mut cells: std::collections::BTreeMap<(String, String, String), Cell> = Default::default();
    for run in crate::sweep_dir::sweep_runs(dir)? {
        let layout = RunLayout::new(&run);
        let path = layout.table_parquet(TABLE_ATTACK_MATRIX);
        if !path.is_file() {
            continue;
        }
        let point = records::read_json_file_opt::<records::PointInfo>(&layout.point_json(), "a sweep point")
            .map_err(AnalysisError::from)?
            .map(|p| p.point)
            .unwrap_or_default();
        let m = crate::table_io::read_parquet(&path, crate::error::HINT_ANALYZE)?;
        let bad = |column: &str, expected: &'static str| AnalysisError::Column {
            path: path.clone(),
            column: column.into(),
            expected,
            hint: "rerun smtplab analyze on this run",
        };
        let text = |c: &str| m.column(c).ok().and_then(|c| c.str().ok().cloned()).ok_or_else(|| bad(c, "String"));
        let (defense, attack) = (text("defense")?, text("attack")?);
        let messages =
            m.column("messages").ok().and_then(|c| c.u64().ok().cloned()).ok_or_else(|| bad("messages", "UInt64"))?;
        let shares: Vec<Float64Chunked> = SHARES
            .iter()
            .map(|c| m.column(c).ok().and_then(|c| c.f64().ok().cloned()).ok_or_else(|| bad(c, "Float64")))
            .collect::<Result<_, _>>()?;
        for i in 0..m.height() {
            let key = (point.clone(), defense.get(i).unwrap_or("").into(), attack.get(i).unwrap_or("").into());
            let cell = cells.entry(key).or_insert_with(|| (0, vec![Vec::new(); SHARES.len()]));
            cell.0 += messages.get(i).unwrap_or(0);
            for (values, share) in cell.1.iter_mut().zip(&shares) {
                values.push(share.get(i));
            }
        }
    }
    if cells.is_empty() {
        return Ok(false);
    }
    let keys: Vec<&(String, String, String)> = cells.keys().collect();
    let mut columns = vec![
        str_col("point", keys.iter().map(|k| k.0.as_str())),
        str_col("defense", keys.iter().map(|k| k.1.as_str())),
        str_col("attack", keys.iter().map(|k| k.2.as_str())),
        Column::new("runs".into(), cells.values().map(|c| c.1[0].len() as u64).collect::<Vec<_>>()),
        Column::new("messages".into(), cells.values().map(|c| c.0).collect::<Vec<_>>()),
    ];
    for (j, share) in SHARES.iter().enumerate() {
        let ci: Vec<crate::MeanCi> = cells.values().map(|c| crate::MeanCi::of(&c.1[j])).collect();
        columns.push(Column::new((*share).into(), ci.iter().map(|c| c.mean).collect::<Vec<_>>()));
        columns.push(Column::new(format!("{share}_low").into(), ci.iter().map(|c| c.low).collect::<Vec<_>>()));
        columns.push(Column::new(format!("{share}_high").into(), ci.iter().map(|c| c.high).collect::<Vec<_>>()));
    }
    let out = RunLayout::new(dir);
    let path = out.table_parquet(TABLE_ATTACK_MATRIX);
    let mut df = DataFrame::new(columns).map_err(|source| AnalysisError::Table {
        path: path.clone(),
        action: "build the table",
        source,
        hint: "please report this with the sweep directory",
    })?;
    write_parquet(&mut df, &path)?;
    write_csv(&mut df, &out.table_csv(TABLE_ATTACK_MATRIX))?;
    Ok(true)
}

/// One attacker's place in the scenario: its attack's label and the paths it stands on.
#[derive(Debug, Clone)]
pub(crate) struct Placement {
    label: String,
    pub(crate) domains: Vec<String>,
    pub(crate) links: Vec<(String, String)>,
}

/// The attackers of the run's resolved scenario (`manifest.json`); `None` without any.
pub(crate) fn placements(manifest: &Path) -> Result<Option<Vec<Placement>>, AnalysisError> {
    if !manifest.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(manifest).map_err(|e| AnalysisError::io(manifest, e))?;
    let m: serde_json::Value = serde_json::from_str(&text).map_err(|source| AnalysisError::Json {
        path: manifest.to_path_buf(),
        what: "the run's manifest",
        source,
    })?;
    let Some(attacks) = m["scenario"]["attacks"].as_array().filter(|a| !a.is_empty()) else { return Ok(None) };
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect()).unwrap_or_default()
    };
    Ok(Some(
        attacks
            .iter()
            .map(|a| {
                let attack = a["attack"].as_str().unwrap_or("unknown");
                let mut label = if attack == "fake-mx" {
                    format!("fake-mx/{}", a["certificate"].as_str().unwrap_or("self-signed"))
                } else {
                    attack.to_string()
                };
                // An attacker that also blocks the MTA-STS policy fetch is a cell of its own.
                if let Some(block) = a["policy_fetch"].as_str() {
                    label.push_str(&format!("+fetch-{block}"));
                }
                let links = a["links"]
                    .as_array()
                    .map(|l| {
                        l.iter().map(strings).filter_map(|p| Some((p.first()?.clone(), p.get(1)?.clone()))).collect()
                    })
                    .unwrap_or_default();
                Placement { label, domains: strings(&a["domains"]), links }
            })
            .collect(),
    ))
}

/// One recipient's copy of a message.
#[derive(Debug, Clone, PartialEq)]
struct Copy {
    message_id: String,
    sender_system: String,
    recipient: String,
    recipient_system: String,
    defense: String,
    attack: String,
    read_by_attacker: bool,
    outcome: &'static str,
    /// The attack on this copy's path shows in a TLS-RPT report of the sender for the
    /// recipient's domain: a failed session at an address where an attacker listened.
    reported: bool,
}

/// Every (message, recipient) with what the relays and attackers recorded of it. The relays'
/// sessions are read a chunk at a time; only per-copy facts are kept.
fn copies(layout: &RunLayout, systems: &[SystemInfo], placements: &[Placement]) -> Result<Vec<Copy>, AnalysisError> {
    let key = |id: &str, rcpt: &str| (id.to_string(), rcpt.to_ascii_lowercase());
    // Final outcomes (the receiving relay's `local` rows) and the TLS of the sender's hop.
    let mut ended: HashMap<(String, String), bool> = HashMap::new();
    let mut hop_tls: HashMap<(String, String, String), (bool, bool)> = HashMap::new();
    let mut sessions = JsonlChunks::<SessionRecord>::open(&layout.truth_sessions_jsonl())?;
    loop {
        let chunk = sessions.next_chunk(20_000)?;
        if chunk.is_empty() {
            break;
        }
        for s in &chunk {
            for m in &s.messages {
                for r in &m.rcpt_to {
                    match (s.direction.as_str(), s.outcome.as_str()) {
                        ("local", "delivered" | "bounced") => {
                            ended.entry(key(&m.message_id, r)).or_insert(s.outcome == "delivered");
                        }
                        ("outbound", _) => {
                            let (id, rcpt) = key(&m.message_id, r);
                            hop_tls.insert((id, rcpt, s.system.clone()), (s.starttls_used, s.cert_verified));
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    let mut read: HashSet<(String, String)> = HashSet::new();
    let attacker_path = layout.truth_dir().join("attacker.jsonl");
    if attacker_path.exists() {
        for s in records::read_jsonl::<AttackerSession>(&attacker_path)? {
            for m in s.messages {
                for r in &m.rcpt_to {
                    read.insert(key(m.message_id.as_deref().unwrap_or(""), r));
                }
            }
        }
    }
    let reported_pairs = reported_pairs(layout)?;
    let system_of_domain: HashMap<String, &SystemInfo> =
        systems.iter().map(|s| (s.domain.to_ascii_lowercase(), s)).collect();
    let defense: HashMap<&str, String> = systems.iter().map(|s| (s.name.as_str(), s.defense())).collect();
    let mut out = Vec::new();
    let mut messages = JsonlChunks::<TruthMessage>::open(&layout.truth_messages_jsonl())?;
    loop {
        let chunk = messages.next_chunk(20_000)?;
        if chunk.is_empty() {
            break;
        }
        for m in &chunk {
            for r in &m.recipients {
                let domain = r.rsplit_once('@').map_or("", |(_, d)| d).to_ascii_lowercase();
                let to = system_of_domain.get(&domain).map_or(crate::UNKNOWN_SYSTEM, |s| s.name.as_str());
                let attack = placements
                    .iter()
                    .find(|p| {
                        p.domains.iter().any(|d| d.eq_ignore_ascii_case(&domain))
                            || p.links.iter().any(|(a, b)| *a == m.sender_system && b == to)
                    })
                    .map_or(NO_ATTACK, |p| p.label.as_str());
                let k = key(&m.message_id, r);
                let outcome = match ended.get(&k) {
                    None => "deferred",
                    Some(false) => "bounced",
                    Some(true) if to == m.sender_system => "local",
                    Some(true) => match hop_tls.get(&(k.0.clone(), k.1.clone(), m.sender_system.clone())) {
                        Some((true, true)) => "authenticated",
                        Some((true, false)) => "encrypted-unauthenticated",
                        _ => "plaintext",
                    },
                };
                out.push(Copy {
                    message_id: m.message_id.clone(),
                    sender_system: m.sender_system.clone(),
                    recipient: r.clone(),
                    recipient_system: to.to_string(),
                    defense: defense.get(m.sender_system.as_str()).map_or("unknown", String::as_str).to_string(),
                    attack: attack.to_string(),
                    read_by_attacker: read.contains(&k),
                    outcome,
                    reported: attack != NO_ATTACK
                        && reported_pairs.contains(&(m.sender_system.clone(), domain.clone())),
                });
            }
        }
    }
    Ok(out)
}

/// (sending system, policy domain) whose TLS-RPT report (`tlsrpt/<system>/<domain>.json`)
/// counts a failed session at an address some attacker listened on (`truth/attacker.jsonl`'s
/// `local_addr`), under any of its policies (`tlsa`, `sts` or `no-policy-found`: the domain
/// receives them all; a failed MTA-STS policy fetch counts too, filed at the MX address the
/// sender was given). TLS-RPT is an aggregate: the victim domain learns of failures per sender and
/// MX address, not per message, so a copy counts as reported when its path's attack does.
fn reported_pairs(layout: &RunLayout) -> Result<HashSet<(String, String)>, AnalysisError> {
    let mut out = HashSet::new();
    let attacker_path = layout.truth_dir().join("attacker.jsonl");
    if !attacker_path.exists() {
        return Ok(out);
    }
    let attacker_ips: HashSet<String> = records::read_jsonl::<AttackerSession>(&attacker_path)?
        .iter()
        .filter_map(|s| s.local_addr.parse::<std::net::SocketAddr>().ok().map(|a| a.ip().to_string()))
        .collect();
    let root = layout.truth_dir().parent().map(|p| p.join("tlsrpt")).unwrap_or_default();
    let Ok(senders) = std::fs::read_dir(&root) else { return Ok(out) };
    for sender in senders.flatten() {
        let system = sender.file_name().to_string_lossy().into_owned();
        for file in std::fs::read_dir(sender.path()).into_iter().flatten().flatten() {
            let path = file.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let text = std::fs::read_to_string(&path).map_err(|e| AnalysisError::io(&path, e))?;
            let report: records::tlsrpt::Report = serde_json::from_str(&text)
                .map_err(|source| AnalysisError::Json { path: path.clone(), what: "a TLS-RPT report", source })?;
            for p in &report.policies {
                let seen = p.failure_details.iter().any(|f| {
                    f.failed_session_count > 0 && f.receiving_ip.as_ref().is_some_and(|ip| attacker_ips.contains(ip))
                });
                if seen {
                    out.insert((system.clone(), p.policy.policy_domain.to_ascii_lowercase()));
                }
            }
        }
    }
    Ok(out)
}

fn copies_frame(copies: &[Copy]) -> PolarsResult<DataFrame> {
    DataFrame::new(vec![
        str_col("message_id", copies.iter().map(|c| c.message_id.as_str())),
        str_col("sender_system", copies.iter().map(|c| c.sender_system.as_str())),
        str_col("recipient", copies.iter().map(|c| c.recipient.as_str())),
        str_col("recipient_system", copies.iter().map(|c| c.recipient_system.as_str())),
        str_col("defense", copies.iter().map(|c| c.defense.as_str())),
        str_col("attack", copies.iter().map(|c| c.attack.as_str())),
        Column::new("read_by_attacker".into(), copies.iter().map(|c| c.read_by_attacker).collect::<Vec<_>>()),
        str_col("outcome", copies.iter().map(|c| c.outcome)),
        Column::new("reported".into(), copies.iter().map(|c| c.reported).collect::<Vec<_>>()),
    ])
}

/// Defense × attack: the copies of each cell and the shares read, delivered, deferred,
/// bounced and reported (TLS-RPT).
fn matrix_frame(copies: &DataFrame) -> PolarsResult<DataFrame> {
    let share = |e: Expr, name: &str| e.cast(DataType::Float64).mean().alias(name);
    let delivered = ["encrypted-unauthenticated", "authenticated", "local"]
        .into_iter()
        .fold(col("outcome").eq(lit("plaintext")), |any, o| any.or(col("outcome").eq(lit(o))));
    copies
        .clone()
        .lazy()
        .group_by([col("defense"), col("attack")])
        .agg([
            len().cast(DataType::UInt64).alias("messages"),
            share(col("read_by_attacker"), "read_share"),
            share(delivered, "delivered_share"),
            share(col("outcome").eq(lit("deferred")), "deferred_share"),
            share(col("outcome").eq(lit("bounced")), "bounced_share"),
            share(col("outcome").eq(lit("plaintext")), "plaintext_share"),
            share(col("outcome").eq(lit("authenticated")), "authenticated_share"),
            share(col("reported"), "reported_share"),
        ])
        .sort(["defense", "attack"], SortMultipleOptions::default())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use records::{AttackerMessage, HopMessage};

    fn session(
        direction: &str,
        system: &str,
        id: &str,
        rcpts: &[&str],
        outcome: &str,
        tls: (bool, bool),
    ) -> SessionRecord {
        SessionRecord {
            direction: direction.into(),
            system: system.into(),
            starttls_used: tls.0,
            cert_verified: tls.1,
            outcome: outcome.into(),
            messages: vec![HopMessage {
                message_id: id.into(),
                rcpt_to: rcpts.iter().map(|r| r.to_string()).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    /// Two seeds of one point and one of another, with hand-made run matrices: the means and
    /// t-intervals are worked by hand (t(0.975, 1) = 12.706).
    #[test]
    fn sweep_matrix_summarises_each_cell_over_seeds() {
        let dir = std::env::temp_dir().join(format!("smtplab-attack-sweep-{}", std::process::id()));
        let run = |name: &str, point: &str, read: f64| {
            let layout = RunLayout::new(&dir.join(name));
            std::fs::create_dir_all(layout.truth_dir()).expect("dir");
            let info = serde_json::json!({"sweep": "s", "point": point, "params": {}, "seed": 1});
            std::fs::write(layout.point_json(), info.to_string()).expect("point");
            let mut df = DataFrame::new(vec![
                str_col("defense", ["may"].into_iter()),
                str_col("attack", ["strip"].into_iter()),
                Column::new("messages".into(), [10u64]),
                Column::new("read_share".into(), [read]),
                Column::new("delivered_share".into(), [1.0]),
                Column::new("deferred_share".into(), [0.0]),
                Column::new("bounced_share".into(), [0.0]),
                Column::new("plaintext_share".into(), [read]),
                Column::new("authenticated_share".into(), [0.0]),
                Column::new("reported_share".into(), [0.0]),
            ])
            .expect("frame");
            write_parquet(&mut df, &layout.table_parquet(TABLE_ATTACK_MATRIX)).expect("write");
        };
        run("a-s1", "half", 0.4);
        run("a-s2", "half", 0.6);
        run("b-s1", "all", 1.0);
        assert!(write_sweep_attack_matrix(&dir).expect("sweep matrix"));
        let m =
            crate::table_io::read_parquet(&RunLayout::new(&dir).table_parquet(TABLE_ATTACK_MATRIX), "t").expect("read");
        let f = |c: &str, i: usize| m.column(c).expect(c).f64().expect("f64").get(i);
        let points: Vec<&str> = m.column("point").expect("c").str().expect("s").into_no_null_iter().collect();
        assert_eq!(points, ["all", "half"]);
        assert_eq!((f("read_share", 0), f("read_share_low", 0)), (Some(1.0), None), "one seed: no interval");
        // mean 0.5, sd = 0.1414, half width = 12.706 * 0.1414 / sqrt(2) = 1.2706
        assert!((f("read_share", 1).expect("mean") - 0.5).abs() < 1e-12);
        let half = f("read_share_high", 1).expect("high") - 0.5;
        assert!((half - 1.2706).abs() < 1e-3, "{half}");
        let sums: Vec<u64> = m.column("messages").expect("c").u64().expect("u64").into_no_null_iter().collect();
        assert_eq!(sums, [10, 20]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Attack labels: fake-mx carries its certificate, a blocked MTA-STS fetch its own suffix.
    #[test]
    fn attack_labels_from_the_manifest() {
        let dir = std::env::temp_dir().join(format!("smtplab-attack-labels-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let manifest = dir.join("manifest.json");
        let attacks = serde_json::json!({"scenario": {"attacks": [
            {"attack": "strip", "domains": ["a.example"]},
            {"attack": "fake-mx", "certificate": "wrong-name", "domains": ["b.example"]},
            {"attack": "strip", "policy_fetch": "drop", "domains": ["c.example"]},
        ]}});
        std::fs::write(&manifest, attacks.to_string()).expect("manifest");
        let labels: Vec<String> =
            placements(&manifest).expect("read").expect("attackers").into_iter().map(|p| p.label).collect();
        assert_eq!(labels, ["strip", "fake-mx/wrong-name", "strip+fetch-drop"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A hand-made run: alpha (`may`) and gamma (`verify`) send to beta, behind a strip attacker,
    /// and to delta, behind nobody. Every value below is worked out by hand from these records.
    #[test]
    fn outcomes_and_matrix_from_hand_made_records() {
        let dir = std::env::temp_dir().join(format!("smtplab-attack-tables-{}", std::process::id()));
        let layout = RunLayout::new(&dir);
        std::fs::create_dir_all(layout.truth_dir()).expect("dir");
        let systems = serde_json::json!([
            {"name": "alpha", "domain": "alpha.example", "starttls": true, "outbound_tls": "may"},
            {"name": "beta", "domain": "beta.example", "starttls": true},
            {"name": "gamma", "domain": "gamma.example", "starttls": true, "outbound_tls": "verify"},
            {"name": "delta", "domain": "delta.example", "starttls": true},
        ]);
        std::fs::write(layout.truth_systems_json(), systems.to_string()).expect("systems");
        let manifest = serde_json::json!({"scenario": {"attacks": [
            {"name": "m", "attack": "strip", "domains": ["beta.example"], "links": []}
        ]}});
        std::fs::write(layout.manifest_json(), manifest.to_string()).expect("manifest");
        let msg = |seq: u64, from: &str, to: &[&str]| TruthMessage {
            seq,
            message_id: format!("m{seq}"),
            sender: format!("u@{from}.example"),
            sender_system: from.into(),
            recipients: to.iter().map(|r| r.to_string()).collect(),
            recipient_systems: vec![],
            subject: String::new(),
            bytes: 1,
            sha256: String::new(),
            scheduled_at: 0.0,
            requiretls: false,
        };
        let messages = vec![
            msg(0, "alpha", &["b1@beta.example", "d1@delta.example"]),
            msg(1, "gamma", &["b1@beta.example"]),
            msg(2, "gamma", &["d1@delta.example"]),
            msg(3, "alpha", &["b2@beta.example"]),
        ];
        records::write_jsonl(&layout.truth_messages_jsonl(), &messages).expect("messages");
        let sessions = vec![
            // m0 to beta: stripped, delivered in plaintext; to delta: verified TLS.
            session("outbound", "alpha", "m0", &["b1@beta.example"], "delivered", (false, false)),
            session("local", "beta", "m0", &["b1@beta.example"], "delivered", (false, false)),
            session("outbound", "alpha", "m0", &["d1@delta.example"], "delivered", (true, false)),
            session("local", "delta", "m0", &["d1@delta.example"], "delivered", (false, false)),
            // m1: gamma's verify defers (no local row). m2: authenticated.
            session("outbound", "gamma", "m2", &["d1@delta.example"], "delivered", (true, true)),
            session("local", "delta", "m2", &["d1@delta.example"], "delivered", (false, false)),
            // m3: beta bounced it.
            session("outbound", "alpha", "m3", &["b2@beta.example"], "delivered", (false, false)),
            session("local", "beta", "m3", &["b2@beta.example"], "bounced", (false, false)),
        ];
        records::write_jsonl(&layout.truth_sessions_jsonl(), &sessions).expect("sessions");
        // gamma's report for beta.example: a DANE policy (the reported key is the policy domain,
        // whatever the policy type).
        let gamma_report = serde_json::json!({
            "organization-name": "gamma", "contact-info": "t@gamma.example", "report-id": "r",
            "date-range": {"start-datetime": "2026-01-01T00:00:00Z", "end-datetime": "2026-01-01T00:00:01Z"},
            "policies": [{"policy": {"policy-type": "tlsa", "policy-domain": "beta.example",
                    "policy-string": ["3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"],
                    "mx-host": ["mx.beta.example"]},
                "summary": {"total-successful-session-count": 0, "total-failure-session-count": 1},
                "failure-details": [{"result-type": "starttls-not-supported", "receiving-ip": "127.254.1.1",
                    "failed-session-count": 1}]}]
        });
        std::fs::create_dir_all(dir.join("tlsrpt/gamma")).expect("tlsrpt dir");
        std::fs::write(dir.join("tlsrpt/gamma/beta.example.json"), gamma_report.to_string()).expect("report");
        // alpha's report for beta.example: a policy in force (sts) whose sessions all met it,
        // at the attacker's address too. Successes are no sign of the attack, whatever the type.
        let alpha_report = serde_json::json!({
            "organization-name": "alpha", "contact-info": "t@alpha.example", "report-id": "s",
            "date-range": {"start-datetime": "2026-01-01T00:00:00Z", "end-datetime": "2026-01-01T00:00:01Z"},
            "policies": [{"policy": {"policy-type": "sts", "policy-domain": "beta.example",
                    "policy-string": ["version: STSv1", "mode: testing", "mx: mx.beta.example", "max_age: 60"],
                    "mx-host": ["mx.beta.example"]},
                "summary": {"total-successful-session-count": 2, "total-failure-session-count": 0}}]
        });
        std::fs::create_dir_all(dir.join("tlsrpt/alpha")).expect("tlsrpt dir");
        std::fs::write(dir.join("tlsrpt/alpha/beta.example.json"), alpha_report.to_string()).expect("report");
        let read = vec![AttackerSession {
            attacker: "m".into(),
            local_addr: "127.254.1.1:25".into(),
            messages: vec![
                AttackerMessage {
                    message_id: Some("m0".into()),
                    rcpt_to: vec!["b1@beta.example".into()],
                    ..Default::default()
                },
                AttackerMessage {
                    message_id: Some("m3".into()),
                    rcpt_to: vec!["B2@beta.example".into()],
                    ..Default::default()
                },
            ],
            ..Default::default()
        }];
        records::write_jsonl(&layout.truth_dir().join("attacker.jsonl"), &read).expect("attacker");

        assert!(write_attack_tables(&layout).expect("tables"));
        let outcomes = crate::table_io::read_parquet(&layout.table_parquet(TABLE_ATTACK_OUTCOMES), "t").expect("read");
        let rows: Vec<(String, String, bool, String)> = (0..outcomes.height())
            .map(|i| {
                let s = |c: &str| outcomes.column(c).expect(c).get(i).expect("row").get_str().expect("str").to_string();
                let read = outcomes.column("read_by_attacker").expect("c").bool().expect("bool").get(i).expect("v");
                (s("message_id"), s("attack"), read, s("outcome"))
            })
            .collect();
        let row = |id: &str, attack: &str, read: bool, outcome: &str| {
            (id.to_string(), attack.to_string(), read, outcome.to_string())
        };
        assert_eq!(
            rows,
            vec![
                row("m0", "strip", true, "plaintext"),
                row("m0", "none", false, "encrypted-unauthenticated"),
                row("m1", "strip", false, "deferred"),
                row("m2", "none", false, "authenticated"),
                row("m3", "strip", true, "bounced"),
            ]
        );
        let m = crate::table_io::read_parquet(&layout.table_parquet(TABLE_ATTACK_MATRIX), "t").expect("read");
        let f = |c: &str, i: usize| m.column(c).expect(c).f64().expect("f64").get(i);
        let s = |c: &str, i: usize| m.column(c).expect(c).get(i).expect("row").get_str().expect("str").to_string();
        // Sorted: (may, none), (may, strip), (verify, none), (verify, strip).
        let cells: Vec<(String, String)> = (0..m.height()).map(|i| (s("defense", i), s("attack", i))).collect();
        assert_eq!(
            cells,
            [("may", "none"), ("may", "strip"), ("verify", "none"), ("verify", "strip")]
                .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        let messages: Vec<u64> = m.column("messages").expect("c").u64().expect("u64").into_no_null_iter().collect();
        assert_eq!(messages, vec![1, 2, 1, 1]);
        assert_eq!(
            (f("read_share", 1), f("delivered_share", 1), f("bounced_share", 1)),
            (Some(1.0), Some(0.5), Some(0.5))
        );
        assert_eq!(
            (f("read_share", 3), f("deferred_share", 3), f("delivered_share", 3)),
            (Some(0.0), Some(1.0), Some(0.0))
        );
        assert_eq!(f("authenticated_share", 2), Some(1.0));
        // alpha (may) reported only successes; gamma's (verify) report for beta.example counts a
        // failure at the attacker's 127.254.1.1: its one strip copy is reported.
        assert_eq!((f("reported_share", 1), f("reported_share", 3)), (Some(0.0), Some(1.0)));
        assert_eq!(f("reported_share", 2), Some(0.0), "no attack, nothing to report");
        let cells = read_attack_matrix(&dir).expect("read").expect("a matrix");
        assert_eq!(cells.len(), 4);
        assert_eq!((cells[1].attack.as_str(), cells[1].messages, cells[1].read_share), ("strip", 2, Some(1.0)));
        let csv = std::fs::read_to_string(layout.table_csv(TABLE_ATTACK_MATRIX)).expect("csv");
        assert!(csv.starts_with("defense,attack,messages,read_share,"), "{csv}");
        // Without attackers in the scenario: no tables.
        std::fs::write(layout.manifest_json(), "{\"scenario\": {}}").expect("manifest");
        assert!(!write_attack_tables(&RunLayout::new(&dir)).expect("no attackers"));
        std::fs::remove_file(layout.table_parquet(TABLE_ATTACK_MATRIX)).expect("remove");
        assert_eq!(read_attack_matrix(&dir).expect("no table"), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
