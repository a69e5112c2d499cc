//! The per-pair table as cells, shared by the HTML and Markdown renderings so they never differ.

use analysis::{PairRow, Summary, format_percent};

use crate::numbers::group_digits;

/// Column headings, in order.
pub const HEADINGS: [&str; 9] = [
    "Pair",
    "STARTTLS",
    "Messages",
    "Content recovered",
    "Envelope or more",
    "Bytes sent",
    "Sessions seen",
    "Bytes seen",
    "TLS sessions seen",
];

/// Which columns hold numbers (right-aligned).
pub const NUMERIC: [bool; 9] = [false, false, true, true, true, true, true, true, true];

/// A pair as "alpha → beta".
pub fn pair_arrow(row: &PairRow) -> String {
    format!("{} → {}", row.sender, row.receiver)
}

/// The cells of one pair's row.
pub fn cells(row: &PairRow) -> [String; 9] {
    [
        pair_arrow(row),
        if row.starttls { "yes" } else { "no" }.to_string(),
        group_digits(row.messages),
        format!("{} ({})", group_digits(row.content_recovered), format_percent(row.content_recovered_pct())),
        group_digits(row.envelope_or_better),
        group_digits(row.bytes_true),
        format!("{} of {}", group_digits(row.sessions_seen), group_digits(row.sessions_true)),
        group_digits(row.bytes_seen),
        group_digits(row.tls_sessions_seen),
    ]
}

/// Headline sentences shared by the HTML page and the Markdown summary.
pub fn headlines(summary: &Summary) -> Vec<String> {
    let mut lines = vec![
        format!("Messages submitted: {}", group_digits(summary.messages_total as u64)),
        format!(
            "Message hops between systems: {} over {} sessions, of which the tap saw {}",
            group_digits(summary.hop_messages as u64),
            group_digits(summary.sessions_true as u64),
            group_digits(summary.sessions_seen as u64),
        ),
        format!(
            "Hops whose full content the eavesdropper recovered: {} ({})",
            group_digits(summary.content_recovered as u64),
            format_percent(summary.content_recovered_pct()),
        ),
        format!(
            "Hops whose envelope (sender address) or more leaked: {} ({})",
            group_digits(summary.envelope_or_better as u64),
            format_percent(analysis::percent(summary.envelope_or_better as u64, summary.hop_messages as u64)),
        ),
    ];
    let worst: Vec<String> =
        summary.worst_exposure.iter().map(|c| format!("{} {}", c.exposure, group_digits(c.messages as u64))).collect();
    lines.push(format!("Messages by worst exposure on any link: {}", worst.join(", ")));
    lines
}
