//! The report's tables as cells, rendered to HTML and Markdown from the same rows so the two
//! never differ.

use analysis::{
    AttackCell, EffortPoint, PairRow, Summary, SweepSummary, TlsCostRow, format_points, format_rel_err, format_share,
    format_share_ci, value_text,
};

use crate::numbers::{group_digits, human_bytes};
use crate::pair_table::{self, pair_arrow};

/// A table: headings, which columns are numeric (right-aligned), rows of text, and an optional
/// link for the first cell of each row.
pub struct Table {
    pub headings: Vec<String>,
    pub numeric: Vec<bool>,
    pub rows: Vec<Vec<String>>,
    pub links: Vec<Option<String>>,
    /// Shown as the only row when there are no rows.
    pub empty: String,
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A Markdown table cell with the characters that would break the table escaped.
pub fn md_cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

impl Table {
    fn new(headings: &[&str], numeric: &[bool], rows: Vec<Vec<String>>, empty: &str) -> Table {
        let links = vec![None; rows.len()];
        Table {
            headings: headings.iter().map(|h| h.to_string()).collect(),
            numeric: numeric.to_vec(),
            rows,
            links,
            empty: empty.to_string(),
        }
    }

    pub fn html(&self) -> String {
        let mut t = String::from("<table>\n<thead><tr>");
        for h in &self.headings {
            t.push_str(&format!("<th>{}</th>", escape(h)));
        }
        t.push_str("</tr></thead>\n<tbody>\n");
        for (row, link) in self.rows.iter().zip(&self.links) {
            t.push_str("<tr>");
            for (i, cell) in row.iter().enumerate() {
                let class = if self.numeric.get(i).copied().unwrap_or(false) { " class=\"num\"" } else { "" };
                match (i, link) {
                    (0, Some(href)) => {
                        t.push_str(&format!("<td{class}><a href=\"{}\">{}</a></td>", escape(href), escape(cell)))
                    }
                    _ => t.push_str(&format!("<td{class}>{}</td>", escape(cell))),
                }
            }
            t.push_str("</tr>\n");
        }
        if self.rows.is_empty() {
            t.push_str(&format!("<tr><td colspan=\"{}\">{}</td></tr>\n", self.headings.len(), escape(&self.empty)));
        }
        t.push_str("</tbody>\n</table>\n");
        t
    }

    pub fn markdown(&self) -> String {
        let mut md = String::from("|");
        for h in &self.headings {
            md.push_str(&format!(" {} |", md_cell(h)));
        }
        md.push_str("\n|");
        for i in 0..self.headings.len() {
            md.push_str(if self.numeric.get(i).copied().unwrap_or(false) { " ---: |" } else { " --- |" });
        }
        md.push('\n');
        for row in &self.rows {
            md.push('|');
            for cell in row {
                md.push_str(&format!(" {} |", md_cell(cell)));
            }
            md.push('\n');
        }
        if self.rows.is_empty() {
            md.push_str(&format!("\n{}\n", self.empty));
        }
        md
    }
}

const NO_LINKS: &str = "No mail crossed between systems.";

/// The per-link table of the pair analysis.
pub fn pairs(summary: &Summary) -> Table {
    let rows = summary.pairs.iter().map(|r| pair_table::cells(r).to_vec()).collect();
    Table::new(&pair_table::HEADINGS, &pair_table::NUMERIC, rows, NO_LINKS)
}

/// With and without STARTTLS, per link: policy, analytic and measured content share, the
/// plaintext control and the difference.
pub fn with_without(summary: &Summary) -> Table {
    let rows = summary
        .pairs
        .iter()
        .map(|p: &PairRow| {
            vec![
                pair_arrow(p),
                p.link_mode.clone(),
                format_share(p.expected_content_share),
                format_share(p.content_share),
                format_share(p.control_content_share),
                format_points(p.content_share_diff),
            ]
        })
        .collect();
    Table::new(
        &[
            "Pair",
            "Link mode (policies)",
            "Analytic content",
            "Content, with STARTTLS",
            "Content, plaintext control",
            "Difference",
        ],
        &[false, false, true, true, true, true],
        rows,
        NO_LINKS,
    )
}

/// What the eavesdropper estimates of each link's volume from the tap alone, against truth.
pub fn estimates(summary: &Summary) -> Table {
    let rows = summary
        .pairs
        .iter()
        .map(|p| {
            vec![
                pair_arrow(p),
                group_digits(p.messages),
                group_digits(p.messages_est),
                format_rel_err(p.messages_est_rel_err),
                human_bytes(p.bytes_true),
                human_bytes(p.bytes_est),
                format_rel_err(p.bytes_est_rel_err),
                format!("{} of {}", group_digits(p.sessions_seen), group_digits(p.sessions_true)),
            ]
        })
        .collect();
    Table::new(
        &[
            "Pair",
            "Messages (truth)",
            "Messages (estimate)",
            "Error",
            "Bytes (truth)",
            "Bytes (estimate)",
            "Error",
            "Sessions seen",
        ],
        &[false, true, true, true, true, true, true, true],
        rows,
        NO_LINKS,
    )
}

/// TLS against plaintext per message-size bucket.
pub fn tls_cost(rows: &[TlsCostRow]) -> Table {
    let bytes = |x: Option<f64>| x.map(|v| human_bytes(v.max(0.0).round() as u64)).unwrap_or_else(|| "-".into());
    let signed_bytes = |x: Option<f64>| match x {
        Some(v) if v < 0.0 => format!("−{}", human_bytes((-v).round() as u64)),
        Some(v) => format!("+{}", human_bytes(v.round() as u64)),
        None => "-".into(),
    };
    let ms = |x: Option<f64>| x.map(|v| format!("{v:.1} ms")).unwrap_or_else(|| "-".into());
    let ratio = |x: Option<f64>| x.map(|v| format!("{v:.2}×")).unwrap_or_else(|| "-".into());
    let cells = rows
        .iter()
        .map(|r| {
            vec![
                r.size_bucket.clone(),
                format!("{} / {}", group_digits(r.plain_sessions), group_digits(r.tls_sessions)),
                bytes(r.plain_overhead_bytes_mean),
                bytes(r.tls_overhead_bytes_mean),
                signed_bytes(r.tls_extra_bytes_mean),
                ratio(r.wire_ratio),
                ms(r.plain_duration_ms_mean),
                ms(r.tls_duration_ms_mean),
                ratio(r.duration_ratio),
            ]
        })
        .collect();
    Table::new(
        &[
            "Message size",
            "Sessions (plain / TLS)",
            "Overhead, plaintext",
            "Overhead, TLS",
            "TLS extra",
            "Wire bytes TLS / plain",
            "Time, plaintext",
            "Time, TLS",
            "Time TLS / plain",
        ],
        &[false, true, true, true, true, true, true, true, true],
        cells,
        "No session moved a message where the tap could see it.",
    )
}

/// One row per sweep point.
pub fn points(sweep: &SweepSummary) -> Table {
    let mut headings: Vec<&str> = vec!["Point"];
    headings.extend(sweep.keys.iter().map(String::as_str));
    headings.extend([
        "Seeds",
        "Content recovered (95% CI)",
        "Analytic",
        "Plaintext control",
        "Difference",
        "Linkable user pairs",
        "Message estimate error",
    ]);
    let mut numeric = vec![false; 1 + sweep.keys.len()];
    numeric.extend([true; 7]);
    let mean = |p: &analysis::PointSummary, m: &str| p.metric(m).and_then(|c| c.mean);
    let rows = sweep
        .points
        .iter()
        .map(|p| {
            let mut row = vec![p.point.clone()];
            row.extend(sweep.keys.iter().map(|k| p.params.get(k).map(value_text).unwrap_or_else(|| "-".into())));
            row.push(p.seeds.len().to_string());
            row.push(p.metric("share_content").map(format_share_ci).unwrap_or_else(|| "-".into()));
            row.push(format_share(mean(p, "analytic_content_share")));
            row.push(format_share(mean(p, "control_share_content")));
            row.push(format_points(mean(p, "content_share_diff")));
            row.push(format_share(mean(p, "linkable_share")));
            row.push(format_rel_err(mean(p, "messages_est_rel_err")));
            row
        })
        .collect();
    Table::new(&headings, &numeric, rows, "No point of this sweep has been analysed.")
}

/// The effort curve's points (`analysis/attack_effort`): per defense and sweep point, the shares
/// of all its senders' mail read, held back and reported, mean over seeds with its 95% interval.
pub fn effort(points: &[EffortPoint]) -> Table {
    let ci = |(mean, low, high): analysis::MeanInterval| match (mean, low, high) {
        (Some(m), Some(l), Some(h)) => format!("{:.1}% [{:.1}%, {:.1}%]", m * 100.0, l * 100.0, h * 100.0),
        (m, _, _) => format_share(m),
    };
    let rows = points
        .iter()
        .map(|p| {
            vec![
                p.defense.clone(),
                p.point.clone(),
                format!("{:.1}%", p.effort * 100.0),
                p.runs.to_string(),
                group_digits(p.messages),
                ci(p.read),
                ci(p.held),
                ci(p.reported),
            ]
        })
        .collect();
    Table::new(
        &[
            "Defense",
            "Point",
            "Domains attacked",
            "Seeds",
            "Copies",
            "Read by attacker (95% CI)",
            "Held back",
            "Shown in TLS-RPT",
        ],
        &[false, false, true, true, true, true, true, true],
        rows,
        "No run of this sweep has an attack matrix.",
    )
}

/// The leak-versus-cost figure's numbers, one row per sweep point (means over seeds).
pub fn frontier(sweep: &SweepSummary) -> Table {
    let mean = |p: &analysis::PointSummary, m: &str| p.metric(m).and_then(|c| c.mean);
    let num = |v: Option<f64>, digits: usize| v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.digits$}"));
    let rows = sweep
        .points
        .iter()
        .map(|p| {
            vec![
                p.params_text(),
                p.seeds.len().to_string(),
                num(mean(p, "wire_per_mail_byte"), 3),
                format_share(mean(p, "cover_wire_share")),
                num(mean(p, "delivery_latency_p50"), 2),
                num(mean(p, "delivery_latency_p99"), 2),
                format_rel_err(mean(p, "messages_est_rel_err")),
                format_rel_err(mean(p, "bytes_est_rel_err")),
                num(mean(p, "link_mean_entropy_bits"), 2),
                format_share(mean(p, "link_precision")),
                format_share(mean(p, "link_recall")),
            ]
        })
        .collect();
    Table::new(
        &[
            "Point",
            "Seeds",
            "Wire bytes per mail byte",
            "Cover share of wire",
            "Latency p50 (s)",
            "Latency p99 (s)",
            "Count error",
            "Size error",
            "Linkage entropy (bits)",
            "Linkage precision",
            "Linkage recall",
        ],
        &[false, true, true, true, true, true, true, true, true, true, true],
        rows,
        "No point of this sweep has been analysed.",
    )
}

/// One row per run of a sweep; `captures[i]` is the sha256 of run i's capture, if known, and
/// `reports[i]` the relative path of its own report, if it has one.
pub fn runs(sweep: &SweepSummary, captures: &[Option<String>], reports: &[Option<String>]) -> Table {
    let rows: Vec<Vec<String>> = sweep
        .runs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            vec![
                sweep.run_dirs.get(i).cloned().unwrap_or_default(),
                r.point.clone().unwrap_or_default(),
                r.seed.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
                group_digits(r.hop_messages),
                format_share(r.hop_shares.content),
                format_share(r.analytic.content_share),
                format_share(r.control_shares.content),
                format_share(r.linkable_share),
                captures.get(i).cloned().flatten().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let mut t = Table::new(
        &["Run", "Point", "Seed", "Hop messages", "Content", "Analytic", "Control", "Linkable", "Capture sha256"],
        &[false, false, true, true, true, true, true, true, false],
        rows,
        "No runs.",
    );
    t.links = (0..t.rows.len()).map(|i| reports.get(i).cloned().flatten()).collect();
    t
}

/// Defense × attack: what the attackers read and what became of the mail (`analysis/attack_matrix`).
pub fn attack_matrix(cells: &[AttackCell]) -> Table {
    let rows = cells
        .iter()
        .map(|c| {
            vec![
                c.defense.clone(),
                c.attack.clone(),
                group_digits(c.messages),
                format_share(c.read_share),
                format_share(c.delivered_share),
                format_share(c.deferred_share),
                format_share(c.bounced_share),
                format_share(c.plaintext_share),
                format_share(c.authenticated_share),
                format_share(c.reported_share),
            ]
        })
        .collect();
    Table::new(
        &[
            "Defense (sender's policy)",
            "Attack",
            "Copies",
            "Read by attacker",
            "Delivered",
            "Deferred",
            "Bounced",
            "Delivered in plaintext",
            "Delivered over verified TLS",
            "Shown in TLS-RPT",
        ],
        &[false, false, true, true, true, true, true, true, true, true],
        rows,
        "No mail was sent.",
    )
}
