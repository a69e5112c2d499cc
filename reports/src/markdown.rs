//! `report/summary.md`: the tables and headline numbers as Markdown, for pasting into notes.

use analysis::{Summary, SweepSummary, headline_lines};

use crate::context::{Figures, RunContext, SweepContext};
use crate::pair_table;
use crate::prose::{
    ATTACK_HEATMAP, ATTACKERS, CLASSES, EFFORT, ESTIMATOR, FRONTIER, LINKAGE, LINKAGE_FIGURE, THREAT_MODEL,
    linkage_lines,
};
use crate::provenance::Provenance;
use crate::tables;

fn heading(kind: &str, name: &str) -> String {
    if name.is_empty() { format!("# smtplab {kind}\n\n") } else { format!("# smtplab {kind}: {name}\n\n") }
}

fn provenance_md(md: &mut String, lines: &[(String, String)]) {
    md.push_str("\n## Provenance\n\n");
    for (label, value) in lines {
        md.push_str(&format!("- {label}: `{}`\n", value.replace('`', "'")));
    }
}

fn figure(md: &mut String, figures: &Figures, name: &str, alt: &str) {
    if figures.get(name).is_some() {
        md.push_str(&format!("\n![{alt}]({name}.png)\n"));
    }
}

pub fn summary_md(summary: &Summary, provenance: &Provenance, context: &RunContext, figures: &Figures) -> String {
    let mut md = heading("report", &provenance.scenario);
    md.push_str(THREAT_MODEL);
    md.push_str("\n\n## Headline\n\n");
    let mut headline = pair_table::headlines(summary);
    headline.extend(headline_lines(&summary.run));
    for line in headline {
        md.push_str(&format!("- {line}\n"));
    }
    md.push_str("\n## Exposure\n");
    figure(&mut md, figures, "exposure", "exposure classes per link");
    md.push('\n');
    for (class, meaning) in CLASSES {
        md.push_str(&format!("- **{class}**: {meaning}\n"));
    }
    md.push_str("\n## Per link\n\n");
    md.push_str(&tables::pairs(summary).markdown());
    md.push_str("\n## With and without STARTTLS\n\n");
    md.push_str(&tables::with_without(summary).markdown());
    md.push_str("\n## What leaks anyway: volume between systems\n");
    figure(&mut md, figures, "volume", "volume heatmaps");
    md.push('\n');
    md.push_str(&tables::estimates(summary).markdown());
    md.push_str(&format!("\n{ESTIMATOR}\n"));
    md.push_str("\n## Cost of TLS\n\n");
    md.push_str(&tables::tls_cost(&summary.tls_cost).markdown());
    figure(&mut md, figures, "tls_cost", "TLS overhead by message size");
    if let Some(cells) = &context.attacks {
        md.push_str(&format!("\n## Active attackers\n\n{ATTACKERS}\n"));
        figure(&mut md, figures, "attacks", "defense × attack heatmaps");
        md.push_str(&format!("\n{ATTACK_HEATMAP}\n\n"));
        md.push_str(&tables::attack_matrix(cells).markdown());
    }
    if let Some((rows, _)) = &context.linkage {
        md.push_str(&format!("\n## Linkage across hops: users to recipient systems\n\n{LINKAGE}\n\n"));
        for line in linkage_lines(rows) {
            md.push_str(&format!("- {line}\n"));
        }
        figure(&mut md, figures, "linkage", "anonymity sets, plaintext vs STARTTLS");
        md.push_str(&format!("\n{LINKAGE_FIGURE}\n"));
    }
    md.push_str("\n## Traffic over time\n");
    figure(&mut md, figures, "timeline", "traffic over time");
    provenance_md(&mut md, &context.provenance_lines(provenance));
    md
}

pub fn sweep_md(sweep: &SweepSummary, provenance: &Provenance, context: &SweepContext, figures: &Figures) -> String {
    let mut md = heading("sweep report", &sweep.name);
    md.push_str(THREAT_MODEL);
    md.push_str("\n\n## Headline\n\n");
    for line in context.headlines(sweep) {
        md.push_str(&format!("- {line}\n"));
    }
    md.push_str("\n## Points\n\n");
    md.push_str(&tables::points(sweep).markdown());
    md.push_str(
        "\nContent recovered: mean over seeds with a 95% Student-t interval; with one seed there is no interval.\n",
    );
    md.push_str("\n## Adoption curve\n");
    if figures.get("adoption").is_some() {
        figure(&mut md, figures, "adoption", "adoption curve");
    } else {
        md.push_str("\nNo swept parameter is numeric at every point, so there is no curve to draw.\n");
    }
    md.push_str("\n## Exposure per point\n");
    figure(&mut md, figures, "exposure", "exposure per point");
    md.push_str("\n## Cost of TLS (all runs and controls pooled)\n\n");
    md.push_str(&tables::tls_cost(&sweep.tls_cost).markdown());
    figure(&mut md, figures, "tls_cost", "TLS overhead by message size");
    if figures.get("effort").is_some() {
        md.push_str("\n## Active attackers: the grand-scale curve\n");
        figure(&mut md, figures, "effort", "share of mail read against the share of domains attacked");
        md.push_str(&format!("\n{EFFORT}\n\n"));
        md.push_str(&tables::effort(&context.effort).markdown());
    }
    if figures.get("frontier").is_some() {
        md.push_str("\n## Countermeasures: leak against cost\n");
        figure(&mut md, figures, "frontier", "leak against cost per sweep point");
        md.push_str(&format!("\n{}\n\n", FRONTIER));
        md.push_str(&tables::frontier(sweep).markdown());
    }
    md.push_str("\n## Runs\n\n");
    md.push_str(&tables::runs(sweep, &context.captures, &context.reports).markdown());
    provenance_md(&mut md, &context.provenance_lines(sweep, provenance));
    md
}
