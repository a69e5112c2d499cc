//! `report/index.html`: one self-contained page (styles and charts inline, nothing fetched).

use analysis::Summary;

use crate::pair_table::{self, HEADINGS, NUMERIC};
use crate::provenance::Provenance;

/// What the numbers measure, for a reader who did not set up the run.
pub const THREAT_MODEL: &str = "This report measures what a passive eavesdropper on the network links \
between mail systems recovers: an observer who records every packet exchanged between the systems' \
relays but cannot alter traffic or break TLS. Each count is checked against the ground truth logged by \
the relays themselves. Where a link runs in plaintext, every message crosses it readable; where both \
relays negotiate STARTTLS, the eavesdropper should recover no content at all, yet it still sees which \
systems exchange mail, when, and how many bytes: STARTTLS hides content, not system-to-system volume.";

/// What each exposure class means, as listed under the table.
const CLASSES: [(&str, &str); 5] = [
    ("content", "the tap reassembled the whole message (its sha256 matches the one that was sent)"),
    ("headers", "the tap read the message's headers (its Message-ID) but not the whole message"),
    ("envelope", "the tap read the SMTP envelope (MAIL FROM) in the clear"),
    ("volume", "the tap saw the session, but encrypted: timing and sizes only"),
    ("unobserved", "the tap saw nothing of the session"),
];

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

/// An SVG document ready to sit inside HTML: without an XML declaration, if it has one.
fn inline_svg(svg: &str) -> &str {
    match (svg.trim_start().starts_with("<?xml"), svg.find("?>")) {
        (true, Some(end)) => svg[end + 2..].trim_start(),
        _ => svg,
    }
}

const STYLE: &str = "body{font-family:sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#222;line-height:1.45}\
table{border-collapse:collapse;margin:1rem 0}th,td{border-bottom:1px solid #ddd;padding:.35rem .7rem}\
th{background:#f3f3f3;text-align:left}td:first-child{white-space:nowrap}td.num{text-align:right;font-variant-numeric:tabular-nums}\
figure{margin:2rem 0}figure svg{max-width:100%;height:auto}figcaption{color:#555}\
dl{display:grid;grid-template-columns:max-content auto;gap:.25rem 1rem}dt{font-weight:bold}\
dd{margin:0;font-family:monospace;word-break:break-all}.threat{background:#f7f7f2;padding:.8rem 1rem;border-left:4px solid #0072b2}";

/// The whole page.
pub fn index_html(summary: &Summary, provenance: &Provenance, pairs_svg: &str, bytes_svg: &str) -> String {
    let title = if provenance.scenario.is_empty() {
        "smtplab report".to_string()
    } else {
        format!("smtplab report: {}", provenance.scenario)
    };
    let mut html = String::new();
    html.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    html.push_str(&format!("<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n", escape(&title)));
    html.push_str(&format!("<h1>{}</h1>\n", escape(&title)));
    html.push_str(&format!("<p class=\"threat\">{}</p>\n", escape(THREAT_MODEL)));

    html.push_str("<h2>Headline</h2>\n<ul>\n");
    for line in pair_table::headlines(summary) {
        html.push_str(&format!("<li>{}</li>\n", escape(&line)));
    }
    html.push_str("</ul>\n");

    html.push_str("<h2>Per link</h2>\n");
    html.push_str(&pairs_table(summary));
    html.push_str("<p>Exposure classes, most exposed first:</p>\n<ul>\n");
    for (class, meaning) in CLASSES {
        html.push_str(&format!("<li><b>{class}</b>: {}</li>\n", escape(meaning)));
    }
    html.push_str("</ul>\n");

    html.push_str("<h2>Charts</h2>\n");
    html.push_str(&format!(
        "<figure>\n{}\n<figcaption>Messages sent on each link, and how many of them the eavesdropper recovered in full.</figcaption>\n</figure>\n",
        inline_svg(pairs_svg)
    ));
    html.push_str(&format!(
        "<figure>\n{}\n<figcaption>Bytes of mail sent on each link (ground truth), and TCP payload bytes the tap saw on the wire for those sessions, encrypted or not.</figcaption>\n</figure>\n",
        inline_svg(bytes_svg)
    ));

    html.push_str("<h2>Provenance</h2>\n<dl>\n");
    for (label, value) in provenance.lines() {
        html.push_str(&format!("<dt>{}</dt><dd>{}</dd>\n", escape(label), escape(&value)));
    }
    html.push_str("</dl>\n</body>\n</html>\n");
    html
}

fn pairs_table(summary: &Summary) -> String {
    let mut table = String::from("<table>\n<thead><tr>");
    for heading in HEADINGS {
        table.push_str(&format!("<th>{}</th>", escape(heading)));
    }
    table.push_str("</tr></thead>\n<tbody>\n");
    for row in &summary.pairs {
        table.push_str("<tr>");
        for (cell, numeric) in pair_table::cells(row).iter().zip(NUMERIC) {
            let class = if numeric { " class=\"num\"" } else { "" };
            table.push_str(&format!("<td{class}>{}</td>", escape(cell)));
        }
        table.push_str("</tr>\n");
    }
    if summary.pairs.is_empty() {
        table.push_str(&format!("<tr><td colspan=\"{}\">No mail crossed between systems.</td></tr>\n", HEADINGS.len()));
    }
    table.push_str("</tbody>\n</table>\n");
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_svg_inlining() {
        assert_eq!(escape("a<b>&\"c\""), "a&lt;b&gt;&amp;&quot;c&quot;");
        assert_eq!(inline_svg("<?xml version=\"1.0\"?>\n<svg/>"), "<svg/>");
        assert_eq!(inline_svg("<svg/>"), "<svg/>");
    }
}
