//! `report/summary.md`: the table and headline numbers as Markdown, for pasting into notes.

use analysis::Summary;

use crate::html::THREAT_MODEL;
use crate::pair_table::{self, HEADINGS, NUMERIC};
use crate::provenance::Provenance;

/// A table cell with the characters that would break a Markdown table escaped.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

pub fn summary_md(summary: &Summary, provenance: &Provenance) -> String {
    let mut md = String::new();
    if provenance.scenario.is_empty() {
        md.push_str("# smtplab report\n\n");
    } else {
        md.push_str(&format!("# smtplab report: {}\n\n", provenance.scenario));
    }
    md.push_str(THREAT_MODEL);
    md.push_str("\n\n## Headline\n\n");
    for line in pair_table::headlines(summary) {
        md.push_str(&format!("- {line}\n"));
    }

    md.push_str("\n## Per link\n\n|");
    for heading in HEADINGS {
        md.push_str(&format!(" {heading} |"));
    }
    md.push_str("\n|");
    for numeric in NUMERIC {
        md.push_str(if numeric { " ---: |" } else { " --- |" });
    }
    md.push('\n');
    for row in &summary.pairs {
        md.push('|');
        for text in pair_table::cells(row) {
            md.push_str(&format!(" {} |", cell(&text)));
        }
        md.push('\n');
    }
    if summary.pairs.is_empty() {
        md.push_str("\nNo mail crossed between systems.\n");
    }

    md.push_str("\n## Provenance\n\n");
    for (label, value) in provenance.lines() {
        md.push_str(&format!("- {label}: `{}`\n", value.replace('`', "'")));
    }
    md
}
