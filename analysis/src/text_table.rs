//! The per-pair table as aligned plain text, for the terminal.

use crate::exposure::Exposure;
use crate::metrics::{ExposureShares, RunMetrics};
use crate::stats::MeanCi;
use crate::summary::{PairRow, Summary};
use crate::sweep::SweepSummary;

/// Column headings of the terminal table, in order.
const HEADINGS: [&str; 9] = [
    "pair",
    "STARTTLS",
    "messages",
    "content recovered",
    "control",
    "bytes sent",
    "sessions seen",
    "bytes seen",
    "est. messages",
];

/// A fraction as a percentage: `Some(0.125)` as "12.5%"; `None` as "-".
pub fn format_share(share: Option<f64>) -> String {
    format_percent(share.map(|s| s * 100.0))
}

/// A difference of fractions in percentage points: `Some(-0.5)` as "-50.0 pts".
pub fn format_points(diff: Option<f64>) -> String {
    match diff {
        Some(d) => format!("{:+.1} pts", d * 100.0),
        None => "-".to_string(),
    }
}

/// A relative error: `Some(0.031)` as "+3.1%".
pub fn format_rel_err(err: Option<f64>) -> String {
    match err {
        Some(e) => format!("{:+.1}%", e * 100.0),
        None => "-".to_string(),
    }
}

/// A share with its 95% interval over seeds: "12.3% [10.1%, 14.5%] (n=5)", or
/// "12.3% (n=1, no interval)".
pub fn format_share_ci(ci: &MeanCi) -> String {
    match (ci.mean, ci.low, ci.high) {
        (Some(m), Some(l), Some(h)) => {
            format!("{:.1}% [{:.1}%, {:.1}%] (n={})", m * 100.0, l * 100.0, h * 100.0, ci.n)
        }
        (Some(m), _, _) => format!("{:.1}% (n={}, no interval)", m * 100.0, ci.n),
        _ => "-".to_string(),
    }
}

/// `Some(12.5)` as "12.5%"; `None` (nothing to divide by) as "-".
pub fn format_percent(pct: Option<f64>) -> String {
    match pct {
        Some(p) => format!("{p:.1}%"),
        None => "-".to_string(),
    }
}

/// A pair as "alpha -> beta".
pub fn pair_label(row: &PairRow) -> String {
    format!("{} -> {}", row.sender, row.receiver)
}

/// The cells of one table row, as [`HEADINGS`] orders them.
fn cells(row: &PairRow) -> [String; 9] {
    [
        pair_label(row),
        if row.starttls { "yes" } else { "no" }.to_string(),
        row.messages.to_string(),
        format!("{} ({})", row.content_recovered, format_percent(row.content_recovered_pct())),
        format_share(row.control_content_share),
        row.bytes_true.to_string(),
        format!("{} of {}", row.sessions_seen, row.sessions_true),
        row.bytes_seen.to_string(),
        format!("{} ({})", row.messages_est, format_rel_err(row.messages_est_rel_err)),
    ]
}

/// "content 33.3%, headers 0.0%, ..." most exposed first.
pub fn shares_text(shares: &ExposureShares) -> String {
    Exposure::ALL
        .into_iter()
        .rev()
        .map(|c| format!("{} {}", c.name(), format_share(shares.get(c))))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The headline lines under the pair table: exposure shares, analytic expectation, control,
/// linkability, the eavesdropper's volume estimate, and what can be said about uncertainty.
pub fn headline_lines(run: &RunMetrics) -> Vec<String> {
    let mut lines = vec![
        match (run.copies_delivered, run.copies_bounced, run.copies_undelivered) {
            (Some(d), Some(b), Some(u)) => {
                format!("Recipient copies: {d} delivered, {b} bounced, {u} undelivered when the run ended.")
            }
            _ => "Recipient copies: outcomes not recorded (a run made by an earlier smtplab).".to_string(),
        },
        format!("Exposure of {} hop messages: {}.", run.hop_messages, shares_text(&run.hop_shares)),
        format!(
            "Worst exposure of the {} messages that crossed a link: {}.",
            run.messages_crossing,
            shares_text(&run.worst_shares)
        ),
        format!(
            "Analytic expectation (policies x traffic matrix): content {} of hop messages; measured {}.{}",
            format_share(run.analytic.content_share),
            format_share(run.hop_shares.content),
            if run.analytic.weight_withheld > 0 {
                format!(
                    " {} hop messages ({}) are withheld by policy (deferred or refused), never sent in the clear.",
                    run.analytic.weight_withheld,
                    format_share(run.analytic.withheld_share)
                )
            } else {
                String::new()
            }
        ),
    ];
    if run.has_control {
        lines.push(format!(
            "Plaintext control (same scenario and seed, STARTTLS off): content {}; with STARTTLS {}; difference {}.",
            format_share(run.control_shares.content),
            format_share(run.hop_shares.content),
            format_points(run.content_share_diff),
        ));
    } else {
        lines.push("No paired plaintext control in this run directory (control/ is absent).".to_string());
    }
    lines.push(format!(
        "Linkable user pairs (sender and recipient identified on some hop): {} of {} that cross systems ({}).",
        run.user_pairs_linkable,
        run.user_pairs_crossing,
        format_share(run.linkable_share)
    ));
    lines.push(format!(
        "Eavesdropper's estimate from the tap alone: {} messages (error {}), {} bytes (error {}).",
        run.messages_est,
        format_rel_err(run.messages_est_rel_err),
        run.bytes_est,
        format_rel_err(run.bytes_est_rel_err)
    ));
    let c = &run.costs;
    if c.cover_messages > 0 {
        lines.push(format!(
            "Cover traffic (counted apart from mail): {} messages, {} bytes; {} cover-only sessions carried {} of the {} \
             bytes the tap saw on hop sessions ({}).",
            c.cover_messages,
            c.cover_bytes,
            c.cover_sessions,
            c.cover_wire_bytes,
            c.wire_bytes,
            format_share(c.cover_wire_share)
        ));
    }
    if let (Some(p50), Some(p99)) = (c.delivery_latency_p50, c.delivery_latency_p99) {
        lines.push(format!("Delivery latency, submission to mailbox: median {p50:.2} s, 99th percentile {p99:.2} s."));
    }
    lines.push(
        "One seed: no confidence interval (intervals over seeds come from a sweep with several seeds).".to_string(),
    );
    lines
}

/// Renders the per-pair table as aligned text (pair and STARTTLS left-aligned, numbers
/// right-aligned), followed by one line of headline numbers.
pub fn format_table(summary: &Summary) -> String {
    let rows: Vec<[String; 9]> = summary.pairs.iter().map(cells).collect();
    let mut widths = HEADINGS.map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[String; 9]| {
        let parts: Vec<String> = cells
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (cell, w))| if i < 2 { format!("{cell:<w$}") } else { format!("{cell:>w$}") })
            .collect();
        parts.join("  ").trim_end().to_string()
    };
    let mut out = String::new();
    out.push_str(&line(&HEADINGS.map(str::to_string)));
    out.push('\n');
    let rule: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
    out.push_str(&"-".repeat(rule));
    out.push('\n');
    for row in &rows {
        out.push_str(&line(row));
        out.push('\n');
    }
    if rows.is_empty() {
        out.push_str("(no mail crossed between systems)\n");
    }
    out.push_str(&format!(
        "{} messages submitted; {} hop messages crossed a link; content recovered for {} ({}).\n",
        summary.messages_total,
        summary.hop_messages,
        summary.content_recovered,
        format_percent(summary.content_recovered_pct()),
    ));
    for l in headline_lines(&summary.run) {
        out.push_str(&l);
        out.push('\n');
    }
    out
}

/// The headline table of a sweep: one row per point with the content share and its interval,
/// the analytic expectation, the control and the difference.
pub fn format_sweep_table(sweep: &SweepSummary) -> String {
    let mut headings: Vec<String> = vec!["point".to_string()];
    headings.extend(sweep.keys.iter().cloned());
    headings.extend(
        ["seeds", "content recovered (95% CI)", "analytic", "control", "difference", "linkable pairs"]
            .map(str::to_string),
    );
    let mean = |p: &crate::sweep::PointSummary, m: &str| p.metric(m).and_then(|c| c.mean);
    let rows: Vec<Vec<String>> = sweep
        .points
        .iter()
        .map(|p| {
            let mut row = vec![p.point.clone()];
            row.extend(
                sweep.keys.iter().map(|k| p.params.get(k).map(crate::sweep::value_text).unwrap_or_else(|| "-".into())),
            );
            row.push(p.seeds.len().to_string());
            row.push(p.metric("share_content").map(format_share_ci).unwrap_or_else(|| "-".into()));
            row.push(format_share(mean(p, "analytic_content_share")));
            row.push(format_share(mean(p, "control_share_content")));
            row.push(format_points(mean(p, "content_share_diff")));
            row.push(format_share(mean(p, "linkable_share")));
            row
        })
        .collect();
    let mut widths: Vec<usize> = headings.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let text_cols = 1 + sweep.keys.len();
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| if i < text_cols { format!("{c:<w$}") } else { format!("{c:>w$}") })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = format!(
        "sweep {}: {} points, {} runs{}\n",
        sweep.name,
        sweep.points.len(),
        sweep.runs.len(),
        sweep.x_key.as_ref().map(|k| format!(", x = {k}")).unwrap_or_default()
    );
    out.push_str(&line(&headings));
    out.push('\n');
    out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len().saturating_sub(1))));
    out.push('\n');
    for row in &rows {
        out.push_str(&line(row));
        out.push('\n');
    }
    out.push_str(
        "content recovered: share of hop messages whose whole content the tap recovered, mean over seeds with a 95% \
         t-interval; analytic: plaintext share of the traffic matrix under the scenario's policies.\n",
    );
    if !sweep.missing.is_empty() {
        out.push_str(&format!(
            "missing runs ({}): {}\n",
            sweep.missing.len(),
            sweep.missing.iter().map(|(p, s)| format!("{p} seed {s}")).collect::<Vec<_>>().join(", ")
        ));
    }
    out
}
