//! One test per figure: the data a figure draws is checked against the tables it claims to show,
//! with expected values worked out by hand from the hand-made run of `tests::write_run` (never
//! read back from the analysis): axes span the run, bars and bins add up to the counted totals,
//! tick labels say something.
//!
//! The hand-made run, as `write_run` documents it: 9 messages on three links (alpha→beta 4 in
//! plaintext, all recovered; alpha→gamma 3 under STARTTLS, seen; beta→gamma 2, not captured),
//! message k submitted at T0 + k s, its hop session started at T0 + k + 0.5 s and seen by the tap
//! (7 of them) at the same time.

use analysis::Summary;

use crate::figures;
use crate::lines::LineChart;
use crate::tests::{temp_run_dir, write_adoption_sweep, write_run};

fn analysed_run(name: &str) -> (crate::tests::TempRunDir, Summary) {
    let dir = temp_run_dir(name);
    write_run(&dir);
    analysis::ingest(&dir).expect("ingest");
    let summary = analysis::analyze(&dir).expect("analyze");
    (dir, summary)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9 * b.abs().max(1.0)
}

/// Tick labels of an axis: at least three, and no two alike (an axis whose labels all read "0/s"
/// or whose span is off by an epoch fails here).
fn assert_labels_distinct(what: &str, labels: &[String]) {
    assert!(labels.len() >= 3, "{what}: only {} tick labels: {labels:?}", labels.len());
    let mut sorted = labels.to_vec();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), labels.len(), "{what}: repeated tick labels {labels:?}");
}

/// Σ rate × bin width over a curve: the count it stands for.
fn integral(chart: &LineChart, series: usize, width: f64) -> f64 {
    chart.series[series].points.iter().map(|p| p.1 * width).sum()
}

#[test]
fn timeline_spans_the_run_and_its_bins_add_up() {
    let (_dir, summary) = analysed_run("fig-timeline");
    let chart = figures::timeline_chart(&summary);
    let width = summary.timeline.first().expect("bins").bin_width_s;
    // The run's events lie between T0 (first submission) and T0 + 8.5 (last session): the x axis
    // covers that and no more than one bin beyond it.
    let xs: Vec<f64> = chart.series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).collect();
    let (lo, hi) = xs.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| (l.min(*x), h.max(*x)));
    assert!(lo >= 0.0 && lo <= width, "first bin centre {lo} s");
    assert!(hi >= 8.5 - width && hi <= 8.5 + width, "last bin centre {hi} s, bins of {width} s");
    assert!(width <= 1.0, "bins of {width} s for a 8.5 s run");
    // 9 messages submitted, 9 hop sessions, 7 of them seen by the tap.
    assert!(close(integral(&chart, 0, width), 9.0), "submitted: {}", integral(&chart, 0, width));
    assert!(close(integral(&chart, 1, width), 9.0), "hop sessions: {}", integral(&chart, 1, width));
    assert!(close(integral(&chart, 2, width), 7.0), "tap sessions: {}", integral(&chart, 2, width));
    let (x_labels, y_labels) = chart.tick_labels();
    assert_labels_distinct("timeline x", &x_labels);
    assert_labels_distinct("timeline y", &y_labels);
}

#[test]
fn timeline_of_a_run_with_the_old_offset_clock_is_not_stretched_over_decades() {
    // The bug this guards against: submission times as offsets from the start of traffic beside
    // epoch session times gave an axis of 1.7e9 s. The messages' `scheduled_at` are offsets
    // (0..8 s) while everything else is on the epoch; the axis must still span seconds.
    let (_dir, summary) = analysed_run("fig-timeline-clock");
    let span: f64 = summary.timeline.iter().map(|r| r.bin_width_s).sum();
    assert!(span < 20.0, "timeline spans {span} s for a 9 s run");
}

#[test]
fn messages_chart_shows_each_links_sent_and_recovered_counts() {
    let (_dir, summary) = analysed_run("fig-messages");
    let chart = figures::messages_chart(&summary);
    assert_eq!(chart.categories, ["alpha→beta", "alpha→gamma", "beta→gamma"]);
    assert_eq!(chart.series[0].values, [4.0, 3.0, 2.0], "messages sent");
    assert_eq!(chart.series[1].values, [4.0, 0.0, 0.0], "content recovered");
    let total: f64 = chart.series[0].values.iter().sum();
    assert!(close(total, summary.hop_messages as f64), "bars add up to the hop messages");
}

#[test]
fn bytes_chart_shows_message_bytes_and_wire_bytes_per_link() {
    let (_dir, summary) = analysed_run("fig-bytes");
    let chart = figures::bytes_chart(&summary);
    // Message k of a link is 20,000 + 1,000 k bytes; the tap saw message + 600 + 400 bytes.
    let truth = [20_000.0 * 4.0 + 6_000.0, 20_000.0 * 3.0 + 3_000.0, 20_000.0 * 2.0 + 1_000.0];
    assert_eq!(chart.series[0].values, truth, "message bytes sent");
    assert_eq!(chart.series[1].values, [truth[0] + 4_000.0, truth[1] + 3_000.0, 0.0], "bytes seen");
}

#[test]
fn exposure_chart_stacks_to_one_per_link_with_the_known_classes() {
    let (_dir, summary) = analysed_run("fig-exposure");
    let chart = figures::exposure_chart(&summary);
    assert_eq!(chart.categories, ["all links", "alpha→beta", "alpha→gamma", "beta→gamma"]);
    let share =
        |layer: &str, i: usize| chart.layers.iter().find(|l| l.label == layer).and_then(|l| l.shares[i]).unwrap_or(0.0);
    for i in 0..chart.categories.len() {
        let sum: f64 = chart.layers.iter().map(|l| l.shares[i].unwrap_or(0.0)).sum();
        assert!(close(sum, 1.0), "{}: shares add up to {sum}", chart.categories[i]);
    }
    assert!(close(share("content", 0), 4.0 / 9.0));
    assert!(close(share("volume", 0), 3.0 / 9.0));
    assert!(close(share("unobserved", 0), 2.0 / 9.0));
    assert!(close(share("content", 1), 1.0));
    assert!(close(share("volume", 2), 1.0));
    assert!(close(share("unobserved", 3), 1.0));
}

#[test]
fn volume_heatmap_cells_are_the_links_counts_and_bytes() {
    let (_dir, summary) = analysed_run("fig-volume");
    let map = figures::volume_heatmap(&summary);
    assert_eq!(map.rows, ["alpha", "beta", "gamma"]);
    let cell = |m: usize, r: usize, c: usize| map.matrices[m].values[r][c];
    // Truth: alpha→beta 4, alpha→gamma 3, beta→gamma 2; no other pair.
    assert_eq!((cell(0, 0, 1), cell(0, 0, 2), cell(0, 1, 2)), (Some(4.0), Some(3.0), Some(2.0)));
    assert_eq!((cell(0, 1, 0), cell(0, 2, 0), cell(0, 0, 0)), (None, None, None));
    // The estimate counts the sessions the tap saw: 4, 3 and none on the uncaptured link.
    assert_eq!((cell(1, 0, 1), cell(1, 0, 2), cell(1, 1, 2)), (Some(4.0), Some(3.0), Some(0.0)));
    assert_eq!(cell(2, 0, 1), Some(86_000.0), "message bytes alpha→beta");
    // Bytes estimated: what the tap read whole in plaintext; TLS application data less the
    // commands' 315 bytes a message under STARTTLS (ANALYSIS.md); nothing on the uncaptured link.
    assert_eq!((cell(3, 0, 1), cell(3, 0, 2), cell(3, 1, 2)), (Some(86_000.0), Some(63_000.0), Some(0.0)));
    let truth_sum: f64 = map.matrices[0].values.iter().flatten().flatten().sum();
    assert!(close(truth_sum, 9.0));
}

#[test]
fn tls_cost_chart_draws_the_table_per_size_bucket() {
    let (_dir, summary) = analysed_run("fig-tls-cost");
    let chart = figures::tls_cost_chart(&summary.tls_cost);
    // Every message is 20-23 KB: one bucket, plaintext and TLS sessions both seen.
    assert_eq!(chart.top.categories.len(), 1, "{:?}", chart.top.categories);
    // Overhead on the wire: 600 + 400 bytes around every message, plaintext and TLS alike.
    assert_eq!(chart.top.series[0].values, [1_000.0], "plaintext overhead");
    assert_eq!(chart.top.series[1].values, [1_000.0], "STARTTLS overhead");
    // Sessions of 20 ms, both kinds.
    assert!(chart.bottom.series.iter().all(|s| s.values.iter().all(|v| close(*v, 20.0))), "durations");
}

#[test]
fn adoption_chart_spans_the_swept_values_with_distinct_labels() {
    let dir = temp_run_dir("fig-adoption");
    write_adoption_sweep(&dir);
    let sweep = analysis::analyze_sweep(&dir).expect("analyze sweep");
    let chart = figures::adoption_chart(&sweep).expect("a numeric key");
    let xs: Vec<f64> = chart.series[0].points.iter().map(|p| p.0).collect();
    assert_eq!(xs, [0.0, 0.25, 0.5, 0.75, 1.0], "one point per adoption level");
    // Analytic content share for k of 4 systems with STARTTLS: 1 - k(k-1)/12.
    let analytic: Vec<f64> = chart.series[1].points.iter().map(|p| p.1).collect();
    let expected: Vec<f64> = (0..5).map(|k| 1.0 - (k * (k.max(1) - 1)) as f64 / 12.0).collect();
    assert!(analytic.iter().zip(&expected).all(|(a, e)| close(*a, *e)), "{analytic:?} vs {expected:?}");
    let (x_labels, y_labels) = chart.tick_labels();
    assert_labels_distinct("adoption x", &x_labels);
    assert_labels_distinct("adoption y", &y_labels);
    let exposure = figures::sweep_exposure_chart(&sweep);
    assert_eq!(exposure.categories.len(), 5);
    for i in 0..5 {
        let sum: f64 = exposure.layers.iter().map(|l| l.shares[i].unwrap_or(0.0)).sum();
        assert!(close(sum, 1.0), "point {i}: mean shares add up to {sum}");
    }
}

/// The defense × attack heatmaps draw the matrix's cells where the table has them: rows in the
/// table's order, the attack-free column first, a dash for an empty cell, held back = deferred +
/// bounced, all on one 0–100% scale.
#[test]
fn attack_heatmap_cells_are_the_matrix_shares() {
    let cell =
        |defense: &str, attack: &str, messages: u64, read: f64, deferred: f64, bounced: f64| analysis::AttackCell {
            defense: defense.into(),
            attack: attack.into(),
            messages,
            read_share: Some(read),
            delivered_share: Some(1.0 - deferred - bounced),
            deferred_share: Some(deferred),
            bounced_share: Some(bounced),
            plaintext_share: Some(read),
            authenticated_share: Some(0.0),
            reported_share: Some(deferred),
        };
    let cells = [
        cell("may", "strip", 10, 1.0, 0.0, 0.0),
        cell("may", "none", 5, 0.0, 0.0, 0.0),
        cell("encrypt", "strip", 8, 0.0, 0.75, 0.25),
        cell("encrypt", "none", 0, 0.0, 0.0, 0.0),
    ];
    let map = figures::attack_heatmap(&cells);
    assert_eq!(map.rows, ["may", "encrypt"]);
    assert_eq!(map.columns, ["none", "strip"]);
    assert_eq!(map.scale_max, Some(1.0));
    let titles: Vec<&str> = map.matrices.iter().map(|m| m.title.as_str()).collect();
    assert_eq!(
        titles,
        [
            "Read by the attacker",
            "Delivered",
            "Held back (deferred or bounced)",
            "Shown in the sender's TLS-RPT report"
        ]
    );
    let read = &map.matrices[0].values;
    assert_eq!(read, &vec![vec![Some(0.0), Some(1.0)], vec![None, Some(0.0)]], "encrypt × none has no copies: a dash");
    assert_eq!(map.matrices[2].values[1][1], Some(1.0), "0.75 deferred + 0.25 bounced");
    assert_eq!(map.matrices[3].values[1][1], Some(0.75));
}

/// A sweep point with the given means (one seed each), for the leak-versus-cost figure.
fn cost_point(name: &str, values: &[(&str, f64)]) -> analysis::PointSummary {
    analysis::PointSummary {
        point: name.to_string(),
        index: 0,
        params: serde_json::Map::new(),
        x: None,
        seeds: vec![1],
        metrics: values
            .iter()
            .map(|(m, v)| analysis::MetricStat { metric: m.to_string(), ci: analysis::MeanCi::of(&[Some(*v)]) })
            .collect(),
    }
}

#[test]
fn frontier_marks_each_point_at_its_cost_and_joins_the_unbeaten_ones() {
    // Three countermeasure settings, worked by hand: none (cheap, the count exact, linkage 90%
    // right), padding (dearer in bytes, the count still exact, linkage 20%), cover + pool (dearest,
    // the count 80% off, linkage 10%).
    let row = |wire: f64, p99: f64, err: f64, precision: f64| {
        [
            ("wire_per_mail_byte", wire),
            ("delivery_latency_p99", p99),
            ("messages_est_abs_err", err),
            ("link_precision", precision),
        ]
    };
    let mut sweep = analysis::SweepSummary {
        name: "cm".into(),
        keys: vec!["systems.0.delivery.padding".into()],
        x_key: None,
        points: vec![
            cost_point("none", &row(1.1, 0.2, 0.0, 0.9)),
            cost_point("padding", &row(1.4, 0.3, 0.0, 0.2)),
            cost_point("all", &row(2.0, 2.5, 0.8, 0.1)),
        ],
        runs: Vec::new(),
        run_dirs: Vec::new(),
        tls_cost: Vec::new(),
        missing: Vec::new(),
    };
    let chart = figures::frontier_chart(&sweep).expect("a countermeasures sweep has the figure");
    for (panel, costs) in [(&chart.top, [1.1, 1.4, 2.0]), (&chart.bottom, [0.2, 0.3, 2.5])] {
        let s = &panel.series;
        assert_eq!(s.len(), 4, "markers and frontier for each of the two leak measures");
        assert_eq!(s[0].points, vec![(costs[0], 0.0), (costs[1], 0.0), (costs[2], 0.8)]);
        // Padding's exact count is no better than the cheaper baseline's: off the frontier.
        assert_eq!(s[1].points, vec![(costs[0], 0.0), (costs[2], 0.8)]);
        assert_eq!(s[2].points, vec![(costs[0], 0.9), (costs[1], 0.2), (costs[2], 0.1)]);
        assert_eq!(s[3].points, s[2].points, "each dearer point leaks less: all on the frontier");
        let (x_labels, y_labels) = panel.tick_labels();
        assert_labels_distinct("frontier x", &x_labels);
        assert_labels_distinct("frontier y", &y_labels);
    }
    // A sweep that varies no countermeasure has no such figure.
    sweep.keys = vec!["population.starttls_share".into()];
    assert!(figures::frontier_chart(&sweep).is_none());
}
