//! The per-pair table as aligned plain text, for the terminal.

use crate::summary::{PairRow, Summary};

/// Column headings of the terminal table, in order.
const HEADINGS: [&str; 7] =
    ["pair", "STARTTLS", "messages", "content recovered", "bytes sent", "sessions seen", "bytes seen"];

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
fn cells(row: &PairRow) -> [String; 7] {
    [
        pair_label(row),
        if row.starttls { "yes" } else { "no" }.to_string(),
        row.messages.to_string(),
        format!("{} ({})", row.content_recovered, format_percent(row.content_recovered_pct())),
        row.bytes_true.to_string(),
        format!("{} of {}", row.sessions_seen, row.sessions_true),
        row.bytes_seen.to_string(),
    ]
}

/// Renders the per-pair table as aligned text (pair and STARTTLS left-aligned, numbers
/// right-aligned), followed by one line of headline numbers.
pub fn format_table(summary: &Summary) -> String {
    let rows: Vec<[String; 7]> = summary.pairs.iter().map(cells).collect();
    let mut widths = HEADINGS.map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[String; 7]| {
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
    out
}
