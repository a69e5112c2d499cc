//! The charts of the reports, built from the analysis summaries.

use analysis::{AttackCell, EffortPoint, Exposure, PairRow, Summary, SweepSummary, TlsCostRow, curve_groups};
use plotters::style::RGBColor;

use crate::charts::{BarSeries, FOURTH_COLOR, GroupedBarChart, SEEN_COLOR, Stack, THIRD_COLOR, TRUTH_COLOR};
use crate::heatmap::{HeatmapFigure, Matrix};
use crate::lines::{Curve, LineChart, Stroke};
use crate::numbers::{bytes_text, count_text, ms_text, number_text, rate_text, seconds_text, share_text};
use crate::stacked::{Layer, StackedShareChart};

/// Colour of each exposure class (Okabe–Ito): the more exposed, the warmer.
pub fn class_color(class: Exposure) -> RGBColor {
    match class {
        Exposure::Content => RGBColor(213, 94, 0),
        Exposure::Headers => RGBColor(230, 159, 0),
        Exposure::Envelope => RGBColor(240, 228, 66),
        Exposure::Volume => RGBColor(86, 180, 233),
        Exposure::Unobserved => RGBColor(200, 200, 200),
    }
}

/// Short pair label for the x axis: "alpha→beta".
fn axis_label(row: &PairRow) -> String {
    format!("{}→{}", row.sender, row.receiver)
}

/// Most links a per-link chart shows; beyond, the busiest (by hop messages) are kept.
pub const MAX_LINKS_CHARTED: usize = 24;

/// The links a per-link chart shows, in table order.
fn charted(summary: &Summary) -> Vec<&PairRow> {
    if summary.pairs.len() <= MAX_LINKS_CHARTED {
        return summary.pairs.iter().collect();
    }
    let mut by_volume: Vec<usize> = (0..summary.pairs.len()).collect();
    by_volume.sort_by(|a, b| summary.pairs[*b].messages.cmp(&summary.pairs[*a].messages).then(a.cmp(b)));
    by_volume.truncate(MAX_LINKS_CHARTED);
    by_volume.sort_unstable();
    by_volume.into_iter().map(|i| &summary.pairs[i]).collect()
}

/// " (the 24 busiest of 90 links)" when a chart leaves links out.
fn charted_note(summary: &Summary) -> String {
    if summary.pairs.len() > MAX_LINKS_CHARTED {
        format!(" (the {MAX_LINKS_CHARTED} busiest of {} links)", summary.pairs.len())
    } else {
        String::new()
    }
}

fn series(summary: &Summary, label: &str, color: RGBColor, value: fn(&PairRow) -> u64) -> BarSeries {
    BarSeries { label: label.to_string(), color, values: charted(summary).iter().map(|p| value(p) as f64).collect() }
}

const NO_LINKS: &str = "No mail crossed between systems in this run.";

/// Messages sent per link vs messages whose content the eavesdropper recovered.
pub fn messages_chart(summary: &Summary) -> GroupedBarChart {
    GroupedBarChart {
        title: format!("Messages per link: sent vs content recovered by the eavesdropper{}", charted_note(summary)),
        x_desc: "system pair (sender→receiver)".to_string(),
        y_desc: "messages".to_string(),
        categories: charted(summary).into_iter().map(axis_label).collect(),
        series: vec![
            series(summary, "messages sent", TRUTH_COLOR, |p| p.messages),
            series(summary, "content recovered", SEEN_COLOR, |p| p.content_recovered),
        ],
        value_text: count_text,
        empty: NO_LINKS.to_string(),
    }
}

/// Bytes of mail sent per link vs TCP payload bytes the tap saw for those sessions.
pub fn bytes_chart(summary: &Summary) -> GroupedBarChart {
    GroupedBarChart {
        title: format!("Bytes per link: mail sent vs bytes seen on the wire{}", charted_note(summary)),
        x_desc: "system pair (sender→receiver)".to_string(),
        y_desc: "bytes".to_string(),
        categories: charted(summary).into_iter().map(axis_label).collect(),
        series: vec![
            series(summary, "message bytes sent (truth)", TRUTH_COLOR, |p| p.bytes_true),
            series(summary, "bytes seen by the tap", SEEN_COLOR, |p| p.bytes_seen),
        ],
        value_text: bytes_text,
        empty: NO_LINKS.to_string(),
    }
}

/// Layers of an exposure chart, most exposed at the bottom, from a share per class and category.
fn class_layers(share: impl Fn(Exposure, usize) -> Option<f64>, categories: usize) -> Vec<Layer> {
    Exposure::ALL
        .into_iter()
        .rev()
        .map(|class| Layer {
            label: class.name().to_string(),
            color: class_color(class),
            shares: (0..categories).map(|i| share(class, i)).collect(),
        })
        .collect()
}

/// Exposure of hop messages: all links of the run, its plaintext control, then each link.
pub fn exposure_chart(summary: &Summary) -> StackedShareChart {
    let run = &summary.run;
    let mut categories = vec!["all links".to_string()];
    let mut shares: Vec<Box<dyn Fn(Exposure) -> Option<f64> + '_>> = vec![Box::new(|c| run.hop_shares.get(c))];
    let mut markers = vec![run.analytic.content_share];
    if run.has_control {
        categories.push("control".to_string());
        shares.push(Box::new(|c| run.control_shares.get(c)));
        markers.push(None);
    }
    for p in charted(summary) {
        categories.push(axis_label(p));
        shares.push(Box::new(move |c| analysis::share(p.exposure_count(c), p.messages)));
        markers.push(p.expected_content_share);
    }
    if summary.pairs.is_empty() {
        categories.clear();
    }
    StackedShareChart {
        title: format!(
            "What the eavesdropper recovered of each hop message, by exposure class{}",
            charted_note(summary)
        ),
        x_desc: "links (sender→receiver); control = the paired plaintext run".to_string(),
        layers: class_layers(|class, i| shares.get(i).and_then(|f| f(class)), categories.len()),
        categories,
        markers,
        marker_label: "analytic content share".to_string(),
        empty: NO_LINKS.to_string(),
    }
}

/// Every system named by the pair table, sorted.
fn systems_of(pairs: &[PairRow]) -> Vec<String> {
    let mut names: Vec<String> = pairs.iter().flat_map(|p| [p.sender.clone(), p.receiver.clone()]).collect();
    names.sort();
    names.dedup();
    names
}

/// Most rows and columns a heatmap draws; beyond, the busiest systems keep their own row and
/// the rest are pooled into one. 200 systems drawn one by one made an 18,000-pixel-wide image
/// (a gigabyte of bitmap) that nobody can read.
pub const MAX_SYSTEMS_MAPPED: usize = 24;

/// The heatmap's rows (and columns): system names, or the pooled rest; and for each system of
/// the run, the row it is drawn in.
fn mapped_systems(pairs: &[PairRow]) -> (Vec<String>, std::collections::HashMap<String, usize>) {
    let systems = systems_of(pairs);
    if systems.len() <= MAX_SYSTEMS_MAPPED {
        let index = systems.iter().enumerate().map(|(i, s)| (s.clone(), i)).collect();
        return (systems, index);
    }
    let mut volume: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    for p in pairs {
        *volume.entry(p.sender.as_str()).or_default() += p.messages;
        *volume.entry(p.receiver.as_str()).or_default() += p.messages;
    }
    let mut busiest: Vec<&String> = systems.iter().collect();
    busiest.sort_by(|a, b| volume[b.as_str()].cmp(&volume[a.as_str()]).then(a.cmp(b)));
    let mut kept: Vec<String> = busiest[..MAX_SYSTEMS_MAPPED - 1].iter().map(|s| s.to_string()).collect();
    kept.sort();
    let pooled = systems.len() - kept.len();
    let mut index: std::collections::HashMap<String, usize> = systems.iter().map(|s| (s.clone(), kept.len())).collect();
    for (i, s) in kept.iter().enumerate() {
        index.insert(s.clone(), i);
    }
    kept.push(format!("{pooled} others"));
    (kept, index)
}

/// Messages and bytes per system pair: the ground truth beside what the eavesdropper estimated
/// from the tap alone.
pub fn volume_heatmap(summary: &Summary) -> HeatmapFigure {
    volume_heatmap_of(&summary.pairs)
}

fn volume_heatmap_of(pairs: &[PairRow]) -> HeatmapFigure {
    let (systems, index) = mapped_systems(pairs);
    let n = systems.len();
    let matrix = |value: fn(&PairRow) -> u64| -> Vec<Vec<Option<f64>>> {
        let mut m = vec![vec![None; n]; n];
        for p in pairs {
            let cell: &mut Option<f64> = &mut m[index[&p.sender]][index[&p.receiver]];
            *cell = Some(cell.unwrap_or(0.0) + value(p) as f64);
        }
        m
    };
    let pooled = systems_of(pairs).len() > n;
    HeatmapFigure {
        title: format!(
            "Volume between systems: ground truth beside the eavesdropper's estimate{}",
            if pooled { format!(" (the {} busiest systems; the rest pooled)", n - 1) } else { String::new() }
        ),
        matrices: vec![
            Matrix {
                title: "Messages (truth)".into(),
                values: matrix(|p| p.messages),
                value_text: count_text,
                scale_group: 0,
            },
            Matrix {
                title: "Messages (eavesdropper's estimate)".into(),
                values: matrix(|p| p.messages_est),
                value_text: count_text,
                scale_group: 0,
            },
            Matrix {
                title: "Message bytes (truth)".into(),
                values: matrix(|p| p.bytes_true),
                value_text: bytes_text,
                scale_group: 1,
            },
            Matrix {
                title: "Message bytes (eavesdropper's estimate)".into(),
                values: matrix(|p| p.bytes_est),
                value_text: bytes_text,
                scale_group: 1,
            },
        ],
        columns: systems.clone(),
        rows: systems,
        axes: ("from", "to"),
        scale_max: None,
        fit_columns: false,
        per_row: 2,
    }
}

/// The defense × attack matrix (`analysis/attack_matrix`) as four heatmaps on one 0–100% scale:
/// what the attackers read, what was delivered, what was held back (deferred or bounced), and
/// what the senders' TLS-RPT reports showed. Rows keep the table's order of defenses; the
/// attack-free column comes first, as the baseline each row is read against.
pub fn attack_heatmap(cells: &[AttackCell]) -> HeatmapFigure {
    let mut rows: Vec<String> = Vec::new();
    let mut columns: Vec<String> = Vec::new();
    for c in cells {
        if !rows.contains(&c.defense) {
            rows.push(c.defense.clone());
        }
        if !columns.contains(&c.attack) {
            columns.push(c.attack.clone());
        }
    }
    if let Some(i) = columns.iter().position(|a| a == analysis::NO_ATTACK) {
        let none = columns.remove(i);
        columns.insert(0, none);
    }
    let matrix = |title: &str, share: fn(&AttackCell) -> Option<f64>| Matrix {
        title: title.to_string(),
        values: rows
            .iter()
            .map(|d| {
                columns
                    .iter()
                    .map(|a| {
                        let cell = cells.iter().find(|c| &c.defense == d && &c.attack == a)?;
                        if cell.messages == 0 { None } else { share(cell) }
                    })
                    .collect()
            })
            .collect(),
        value_text: share_text,
        scale_group: 0,
    };
    let held = |c: &AttackCell| match (c.deferred_share, c.bounced_share) {
        (None, None) => None,
        (d, b) => Some(d.unwrap_or(0.0) + b.unwrap_or(0.0)),
    };
    // Side by side only while both panels stay legible: a full matrix (ten attacks) takes the
    // page's width alone.
    let per_row = if columns.len() > 5 { 1 } else { 2 };
    HeatmapFigure {
        title: "Which defense stops which attack (share of the copies per cell)".to_string(),
        matrices: vec![
            matrix("Read by the attacker", |c| c.read_share),
            matrix("Delivered", |c| c.delivered_share),
            matrix("Held back (deferred or bounced)", held),
            matrix("Shown in the sender's TLS-RPT report", |c| c.reported_share),
        ],
        rows,
        columns,
        axes: ("defense", "attack"),
        scale_max: Some(1.0),
        fit_columns: true,
        per_row,
    }
}

/// TLS against plaintext per message-size bucket: mean overhead bytes on the wire, and mean
/// session time.
pub fn tls_cost_chart(rows: &[TlsCostRow]) -> Stack<GroupedBarChart, GroupedBarChart> {
    let categories: Vec<String> = rows.iter().map(|r| r.size_bucket.clone()).collect();
    let values = |f: fn(&TlsCostRow) -> Option<f64>| rows.iter().map(|r| f(r).unwrap_or(0.0)).collect::<Vec<f64>>();
    let empty = "No session moved a message where the tap could see it.".to_string();
    Stack {
        top: GroupedBarChart {
            title: "TLS cost: bytes on the wire beyond the message".to_string(),
            x_desc: "message size".to_string(),
            y_desc: "mean overhead per session (wire − message)".to_string(),
            categories: categories.clone(),
            series: vec![
                BarSeries {
                    label: "plaintext".into(),
                    color: TRUTH_COLOR,
                    values: values(|r| r.plain_overhead_bytes_mean),
                },
                BarSeries {
                    label: "STARTTLS".into(),
                    color: SEEN_COLOR,
                    values: values(|r| r.tls_overhead_bytes_mean),
                },
            ],
            value_text: bytes_text,
            empty: empty.clone(),
        },
        bottom: GroupedBarChart {
            title: "TLS cost: session time".to_string(),
            x_desc: "message size".to_string(),
            y_desc: "mean session duration".to_string(),
            categories,
            series: vec![
                BarSeries {
                    label: "plaintext".into(),
                    color: TRUTH_COLOR,
                    values: values(|r| r.plain_duration_ms_mean),
                },
                BarSeries { label: "STARTTLS".into(), color: SEEN_COLOR, values: values(|r| r.tls_duration_ms_mean) },
            ],
            value_text: ms_text,
            empty,
        },
    }
}

/// Messages submitted per second (ground truth) against SMTP sessions per second: started by
/// the relays (ground truth) and seen by the tap.
pub fn timeline_chart(summary: &Summary) -> LineChart {
    let t = &summary.timeline;
    let mid = |r: &analysis::TimelineRow| r.t_start_s + r.bin_width_s / 2.0;
    let width = t.first().map(|r| r.bin_width_s).unwrap_or(1.0);
    LineChart {
        title: "Traffic over time: messages submitted vs sessions on the tapped lines".to_string(),
        x_desc: "time since the first event".to_string(),
        y_desc: format!("per second (bins of {})", seconds_text(width)),
        series: vec![
            Curve {
                label: "messages submitted (truth)".into(),
                color: TRUTH_COLOR,
                stroke: Stroke::Solid,
                markers: false,
                points: t.iter().map(|r| (mid(r), r.submitted_per_s())).collect(),
                band: Vec::new(),
            },
            Curve {
                label: "hop sessions started (truth)".into(),
                color: THIRD_COLOR,
                stroke: Stroke::Dashed,
                markers: false,
                points: t.iter().map(|r| (mid(r), r.hop_sessions_per_s())).collect(),
                band: Vec::new(),
            },
            Curve {
                label: "sessions seen by the tap".into(),
                color: SEEN_COLOR,
                stroke: Stroke::Solid,
                markers: false,
                points: t.iter().map(|r| (mid(r), r.tap_sessions_per_s())).collect(),
                band: Vec::new(),
            },
        ],
        y_range: None,
        y_text: rate_text,
        x_text: seconds_text,
        empty: "No events to plot.".to_string(),
        band_label: None,
    }
}

/// Exposure per sweep point: mean shares over seeds, with the analytic content share.
pub fn sweep_exposure_chart(sweep: &SweepSummary) -> StackedShareChart {
    let categories: Vec<String> = sweep.points.iter().map(|p| p.point.clone()).collect();
    let mean = |i: usize, metric: &str| sweep.points[i].metric(metric).and_then(|c| c.mean);
    StackedShareChart {
        title: format!("Exposure of hop messages per point of sweep {} (mean over seeds)", sweep.name),
        x_desc: "sweep point".to_string(),
        layers: class_layers(|class, i| mean(i, &format!("share_{}", class.name())), categories.len()),
        markers: (0..categories.len()).map(|i| mean(i, "analytic_content_share")).collect(),
        categories,
        marker_label: "analytic content share".to_string(),
        empty: "No point of this sweep has been analysed.".to_string(),
    }
}

/// The adoption curve: content-recovered share against the sweep's numeric parameter, mean
/// over seeds with its 95% interval, beside the analytic expectation (and the plaintext control,
/// when the runs have one). `None` when no swept key is numeric.
pub fn adoption_chart(sweep: &SweepSummary) -> Option<LineChart> {
    let x_key = sweep.x_key.clone()?;
    let colors = [SEEN_COLOR, TRUTH_COLOR, THIRD_COLOR, FOURTH_COLOR];
    let groups = curve_groups(sweep);
    let mut series = Vec::new();
    for (g, (label, idx)) in groups.iter().enumerate() {
        let suffix = if label.is_empty() { String::new() } else { format!(" ({label})") };
        let color = colors[g % colors.len()];
        let pts = |metric: &str| -> Vec<(f64, f64)> {
            idx.iter()
                .filter_map(|&i| {
                    let p = &sweep.points[i];
                    Some((p.x?, p.metric(metric)?.mean?))
                })
                .collect()
        };
        let band: Vec<(f64, f64, f64)> = idx
            .iter()
            .filter_map(|&i| {
                let p = &sweep.points[i];
                let ci = p.metric("share_content")?;
                Some((p.x?, ci.low?, ci.high?))
            })
            .collect();
        series.push(Curve {
            label: format!("content recovered, measured{suffix}"),
            color,
            stroke: Stroke::Solid,
            markers: true,
            points: pts("share_content"),
            band,
        });
        let analytic = pts("analytic_content_share");
        if !analytic.is_empty() {
            series.push(Curve {
                label: format!("analytic expectation{suffix}"),
                color: plotters::style::RGBColor(60, 60, 60),
                stroke: Stroke::Dashed,
                markers: false,
                points: analytic,
                band: Vec::new(),
            });
        }
        let control = pts("control_share_content");
        if !control.is_empty() {
            series.push(Curve {
                label: format!("plaintext control{suffix}"),
                color: TRUTH_COLOR,
                stroke: Stroke::Dashed,
                markers: true,
                points: control,
                band: Vec::new(),
            });
        }
    }
    let one_seed = sweep.points.iter().all(|p| p.seeds.len() < 2);
    Some(LineChart {
        title: format!("Adoption curve: content the eavesdropper recovered vs {x_key}"),
        x_desc: x_key,
        y_desc: "content recovered (share of hop messages)".to_string(),
        series,
        y_range: Some((0.0, 1.05)),
        y_text: share_text,
        x_text: number_text,
        empty: "No point of this sweep has been analysed.".to_string(),
        band_label: Some(if one_seed {
            "95% interval (needs 2+ seeds)".to_string()
        } else {
            "95% t-interval over seeds".to_string()
        }),
    })
}

/// The "grand scale" curves (`analysis/attack_effort`): against the share of domains attacked,
/// the share of all mail the attackers read (top) and the share the senders' TLS-RPT reports
/// would have shown attacked (bottom), one curve per defense with its 95% band over seeds, and
/// all senders pooled as a dashed black line. `None` when the sweep has no attackers.
pub fn effort_chart(points: &[EffortPoint]) -> Option<Stack<LineChart, LineChart>> {
    if points.is_empty() {
        return None;
    }
    let colors = [SEEN_COLOR, TRUTH_COLOR, THIRD_COLOR, FOURTH_COLOR];
    let mut defenses: Vec<&str> = points.iter().map(|p| p.defense.as_str()).collect();
    defenses.dedup();
    // The pooled row last, drawn over the others.
    defenses.sort_by_key(|d| *d == analysis::ALL_DEFENSES);
    let curves = |measure: fn(&EffortPoint) -> analysis::MeanInterval| -> Vec<Curve> {
        defenses
            .iter()
            .enumerate()
            .map(|(i, &defense)| {
                let own: Vec<&EffortPoint> = points.iter().filter(|p| p.defense == defense).collect();
                let all = defense == analysis::ALL_DEFENSES;
                Curve {
                    label: if all { "all senders".to_string() } else { defense.to_string() },
                    color: if all { RGBColor(0, 0, 0) } else { colors[i % colors.len()] },
                    stroke: if all || i >= colors.len() { Stroke::Dashed } else { Stroke::Solid },
                    markers: true,
                    points: own.iter().filter_map(|p| Some((p.effort, measure(p).0?))).collect(),
                    band: own.iter().filter_map(|p| Some((p.effort, measure(p).1?, measure(p).2?))).collect(),
                }
            })
            .collect()
    };
    let one_seed = points.iter().all(|p| p.runs < 2);
    let chart = |title: &str, y_desc: &str, series: Vec<Curve>| LineChart {
        title: title.to_string(),
        x_desc: "effort: share of the domains whose MX an attacker intercepts".to_string(),
        y_desc: y_desc.to_string(),
        series,
        y_range: Some((0.0, 1.05)),
        y_text: share_text,
        x_text: share_text,
        empty: "No run of this sweep has an attack matrix.".to_string(),
        band_label: Some(if one_seed {
            "95% interval (needs 2+ seeds)".to_string()
        } else {
            "95% t-interval over seeds".to_string()
        }),
    };
    Some(Stack {
        top: chart("Grand scale: share of all mail the attackers read", "read by an attacker", curves(|p| p.read)),
        bottom: chart(
            "What the victims would have seen: share of all mail whose attack a TLS-RPT report shows",
            "shown in the senders' TLS-RPT reports",
            curves(|p| p.reported),
        ),
    })
}

/// Anonymity sets above this are drawn in one last bar.
const LINKAGE_MAX_SET: u64 = 10;

/// How many messages seen on tapped access lines had each anonymity-set size, plaintext
/// lines beside STARTTLS lines (`analysis/linkage`'s `link_tls`).
pub fn linkage_chart(sets: &[(String, u64)]) -> GroupedBarChart {
    let top = sets.iter().map(|s| s.1).max().unwrap_or(0).min(LINKAGE_MAX_SET);
    let categories: Vec<String> =
        (0..=top).map(|n| if n == LINKAGE_MAX_SET { format!("{n}+") } else { n.to_string() }).collect();
    let count = |class: &str| -> Vec<f64> {
        (0..=top)
            .map(|n| sets.iter().filter(|s| s.0 == class && s.1.min(LINKAGE_MAX_SET) == n).count() as f64)
            .collect()
    };
    GroupedBarChart {
        title: "Anonymity set of each message seen on a tapped access line".to_string(),
        x_desc: "consistent outbound observations (anonymity set)".to_string(),
        y_desc: "messages".to_string(),
        categories: if sets.is_empty() { Vec::new() } else { categories },
        series: vec![
            BarSeries { label: "plaintext hops".into(), color: SEEN_COLOR, values: count("plaintext") },
            BarSeries { label: "STARTTLS hops".into(), color: TRUTH_COLOR, values: count("tls") },
        ],
        value_text: count_text,
        empty: "No message was seen on a tapped access line.".to_string(),
    }
}

/// Whether a sweep varies a countermeasure: a swept key under a system's `delivery` table
/// (padding, batching, pool mix, cover traffic, connection reuse), the only knobs whose cost
/// the leak-versus-cost figure is about.
pub fn sweeps_countermeasures(sweep: &SweepSummary) -> bool {
    sweep.keys.iter().any(|k| k.contains(".delivery."))
}

/// The points of `points` that no other point beats: cheaper or as cheap and leaking less
/// (`better(a, b)`: leak `a` is better than leak `b`). Sorted by cost; a point is kept when it
/// is strictly better than every cheaper point kept before it. Points are (cost, leak).
pub fn pareto_front(points: &[(f64, f64)], better: fn(f64, f64) -> bool) -> Vec<(f64, f64)> {
    let mut sorted: Vec<(f64, f64)> = points.iter().copied().filter(|p| p.0.is_finite() && p.1.is_finite()).collect();
    // Equal costs: the better leak first, so the worse one at the same cost is dropped.
    sorted.sort_by(|a, b| {
        a.0.total_cmp(&b.0).then(if better(a.1, b.1) {
            std::cmp::Ordering::Less
        } else if better(b.1, a.1) {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        })
    });
    let mut front: Vec<(f64, f64)> = Vec::new();
    for p in sorted {
        if front.last().is_none_or(|last| better(p.1, last.1)) {
            front.push(p);
        }
    }
    front
}

/// A leak measure of the frontier figure: its metric in `points`, its legend label, its colour,
/// and when one value is better than another (leaks less).
type LeakMeasure = (&'static str, &'static str, RGBColor, fn(f64, f64) -> bool);

/// The leak-versus-cost figure of a countermeasures sweep: one marker per sweep point (means
/// over seeds) for each leak measure, against the bytes on the wire per byte of mail (top) and
/// the 99th-percentile delivery latency (bottom), with each measure's frontier (the points no
/// cheaper point beats) dashed. Leak measures: the eavesdropper's message-count error
/// (|relative error| of `messages_est`; higher hides more) and, when the runs tap access lines,
/// the precision of its user→system guesses on STARTTLS hops (lower hides more). `None` for a
/// sweep that varies no countermeasure.
pub fn frontier_chart(sweep: &SweepSummary) -> Option<Stack<LineChart, LineChart>> {
    if !sweeps_countermeasures(sweep) {
        return None;
    }
    let mean = |p: &analysis::PointSummary, metric: &str| p.metric(metric).and_then(|c| c.mean);
    let panel = |cost: &str, title: &str, x_desc: &str, x_text: fn(f64) -> String| {
        let mut series = Vec::new();
        let leaks: [LeakMeasure; 2] = [
            ("messages_est_abs_err", "message-count error (higher hides more)", SEEN_COLOR, |a, b| a > b),
            ("link_precision", "user→system linkage precision (lower hides more)", TRUTH_COLOR, |a, b| a < b),
        ];
        for (metric, label, color, better) in leaks {
            let points: Vec<(f64, f64)> =
                sweep.points.iter().filter_map(|p| Some((mean(p, cost)?, mean(p, metric)?))).collect();
            if points.is_empty() {
                continue;
            }
            let front = pareto_front(&points, better);
            series.push(Curve {
                label: label.to_string(),
                color,
                stroke: Stroke::None,
                markers: true,
                points,
                band: Vec::new(),
            });
            series.push(Curve {
                label: "its frontier".to_string(),
                color,
                stroke: Stroke::Dashed,
                markers: false,
                points: front,
                band: Vec::new(),
            });
        }
        LineChart {
            title: title.to_string(),
            x_desc: x_desc.to_string(),
            y_desc: "leak measure (mean over seeds)".to_string(),
            series,
            y_range: None,
            y_text: share_text,
            x_text,
            empty: "No point of this sweep has both the cost and a leak measure.".to_string(),
            band_label: None,
        }
    };
    Some(Stack {
        top: panel(
            "wire_per_mail_byte",
            "Leak against cost: bytes on the wire per byte of mail (one marker per sweep point)",
            "bytes on the wire per byte of mail (cover and padding included)",
            number_text,
        ),
        bottom: panel(
            "delivery_latency_p99",
            "Leak against cost: 99th-percentile delivery latency",
            "delivery latency, 99th percentile, submission to mailbox",
            seconds_text,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(sender: &str, receiver: &str, messages: u64) -> PairRow {
        PairRow {
            sender: sender.into(),
            receiver: receiver.into(),
            messages,
            bytes_true: messages * 10,
            ..Default::default()
        }
    }

    #[test]
    fn a_heatmap_of_many_systems_keeps_the_busiest_and_pools_the_rest() {
        // 40 systems in a ring; s00 -> s01 carries the most, so s00 and s01 must keep their rows.
        let pairs: Vec<PairRow> = (0..40)
            .map(|i| pair(&format!("s{i:02}"), &format!("s{:02}", (i + 1) % 40), if i == 0 { 1000 } else { 1 + i }))
            .collect();
        let fig = volume_heatmap_of(&pairs);
        assert_eq!(fig.rows.len(), MAX_SYSTEMS_MAPPED);
        assert_eq!(fig.rows.last().map(String::as_str), Some("17 others"));
        assert!(fig.rows.contains(&"s00".to_string()) && fig.rows.contains(&"s01".to_string()));
        let total = |m: &Matrix| m.values.iter().flatten().flatten().sum::<f64>();
        let truth: u64 = pairs.iter().map(|p| p.messages).sum();
        assert_eq!(total(&fig.matrices[0]), truth as f64, "pooling keeps every message");
        assert_eq!(total(&fig.matrices[2]), truth as f64 * 10.0);
        assert_eq!(fig.matrices[0].values[0][1], Some(1000.0), "s00 -> s01 in its own cell");
        assert!(fig.title.contains("23 busiest"), "{}", fig.title);
    }

    #[test]
    fn pareto_front_worked_by_hand() {
        // (cost, leak) with higher leak better: (1, 0.1) kept; (2, 0.05) beaten by a cheaper
        // point; (2, 0.3) kept (the better of the two at cost 2); (3, 0.3) no better; (4, 0.9)
        // kept.
        let pts = [(3.0, 0.3), (2.0, 0.05), (1.0, 0.1), (4.0, 0.9), (2.0, 0.3)];
        assert_eq!(pareto_front(&pts, |a, b| a > b), vec![(1.0, 0.1), (2.0, 0.3), (4.0, 0.9)]);
        // Lower leak better: (1, 0.1); (2, 0.05) leaks less (the worse (2, 0.3) is dropped);
        // nothing dearer leaks less than 0.05.
        assert_eq!(pareto_front(&pts, |a, b| a < b), vec![(1.0, 0.1), (2.0, 0.05)]);
        let pts = [(1.0, 0.8), (2.0, 0.5), (3.0, 0.6), (5.0, 0.2), (f64::NAN, 0.0)];
        assert_eq!(pareto_front(&pts, |a, b| a < b), vec![(1.0, 0.8), (2.0, 0.5), (5.0, 0.2)]);
    }

    #[test]
    fn a_heatmap_of_few_systems_draws_each() {
        let pairs = vec![pair("a", "b", 3), pair("b", "c", 2)];
        let fig = volume_heatmap_of(&pairs);
        assert_eq!(fig.rows, ["a", "b", "c"]);
        assert_eq!(fig.matrices[0].values[0], vec![None, Some(3.0), None]);
        assert!(!fig.title.contains("pooled"));
    }
}
