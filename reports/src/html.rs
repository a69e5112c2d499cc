//! `report/index.html`: one self-contained page (styles and charts inline, nothing fetched),
//! for a run or for a whole sweep.

use analysis::{Summary, SweepSummary, headline_lines};

use crate::context::{Figures, RunContext, SweepContext};
use crate::pair_table;
use crate::prose::{ATTACK_HEATMAP, ATTACKERS, CLASSES, EFFORT, ESTIMATOR, FRONTIER, THREAT_MODEL};
use crate::provenance::Provenance;
use crate::tables::{self, escape};

/// An SVG document ready to sit inside HTML: without an XML declaration, if it has one.
fn inline_svg(svg: &str) -> &str {
    match (svg.trim_start().starts_with("<?xml"), svg.find("?>")) {
        (true, Some(end)) => svg[end + 2..].trim_start(),
        _ => svg,
    }
}

const STYLE: &str = "body{font-family:sans-serif;max-width:80rem;margin:2rem auto;padding:0 1rem;color:#222;line-height:1.45}\
table{border-collapse:collapse;margin:1rem 0}th,td{border-bottom:1px solid #ddd;padding:.35rem .7rem}\
th{background:#f3f3f3;text-align:left}td:first-child{white-space:nowrap}td.num{text-align:right;font-variant-numeric:tabular-nums}\
figure{margin:2rem 0}figure svg{max-width:100%;height:auto}figcaption{color:#555}\
dl{display:grid;grid-template-columns:max-content auto;gap:.25rem 1rem}dt{font-weight:bold}\
dd{margin:0;font-family:monospace;word-break:break-all}.threat{background:#f7f7f2;padding:.8rem 1rem;border-left:4px solid #0072b2}\
.note{color:#555}";

/// The page being built: head, body sections, provenance.
struct Page(String);

impl Page {
    fn new(title: &str) -> Page {
        let mut html = String::new();
        html.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
        html.push_str(&format!("<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n", escape(title)));
        html.push_str(&format!("<h1>{}</h1>\n", escape(title)));
        html.push_str(&format!("<p class=\"threat\">{}</p>\n", escape(THREAT_MODEL)));
        Page(html)
    }

    fn h2(&mut self, text: &str) {
        self.0.push_str(&format!("<h2>{}</h2>\n", escape(text)));
    }

    fn p(&mut self, text: &str) {
        self.0.push_str(&format!("<p>{}</p>\n", escape(text)));
    }

    fn note(&mut self, text: &str) {
        self.0.push_str(&format!("<p class=\"note\">{}</p>\n", escape(text)));
    }

    fn list(&mut self, items: &[String]) {
        self.0.push_str("<ul>\n");
        for item in items {
            self.0.push_str(&format!("<li>{}</li>\n", escape(item)));
        }
        self.0.push_str("</ul>\n");
    }

    fn figure(&mut self, svg: &str, caption: &str) {
        self.0.push_str(&format!(
            "<figure>\n{}\n<figcaption>{}</figcaption>\n</figure>\n",
            inline_svg(svg),
            escape(caption)
        ));
    }

    fn raw(&mut self, html: &str) {
        self.0.push_str(html);
    }

    fn classes(&mut self) {
        self.0.push_str(
            "<p>Exposure classes, most exposed first (a message's class over several links is its worst):</p>\n<ul>\n",
        );
        for (class, meaning) in CLASSES {
            self.0.push_str(&format!("<li><b>{class}</b>: {}</li>\n", escape(meaning)));
        }
        self.0.push_str("</ul>\n");
    }

    fn provenance(&mut self, lines: &[(String, String)]) {
        self.h2("Provenance");
        self.0.push_str("<dl>\n");
        for (label, value) in lines {
            self.0.push_str(&format!("<dt>{}</dt><dd>{}</dd>\n", escape(label), escape(value)));
        }
        self.0.push_str("</dl>\n");
    }

    fn finish(mut self) -> String {
        self.0.push_str("</body>\n</html>\n");
        self.0
    }
}

fn title(kind: &str, name: &str) -> String {
    if name.is_empty() { format!("smtplab {kind}") } else { format!("smtplab {kind}: {name}") }
}

/// The page of one run.
pub fn index_html(summary: &Summary, provenance: &Provenance, context: &RunContext, figures: &Figures) -> String {
    let mut page = Page::new(&title("report", &provenance.scenario));
    page.h2("Headline");
    let mut headline = pair_table::headlines(summary);
    headline.extend(headline_lines(&summary.run));
    page.list(&headline);

    page.h2("Exposure");
    page.figure(
        figures.svg("exposure"),
        "Share of hop messages (a message counted once per link it crossed) in each exposure class: over all links, \
         in the paired plaintext control if there is one, and per link. The diamond marks the share a perfect tap \
         recovers in full under the scenario's TLS policies (the analytic expectation).",
    );
    page.classes();

    page.h2("Per link");
    page.raw(&tables::pairs(summary).html());

    page.h2("With and without STARTTLS");
    if !summary.run.has_control {
        page.note(
            "This run has no paired plaintext control (a control/ directory with the same scenario and seed, \
             STARTTLS off): the control columns are empty.",
        );
    }
    page.raw(&tables::with_without(summary).html());
    page.p(&format!(
        "Analytic expectation: a link runs STARTTLS when the sender's outbound policy is not none and the receiver \
         offers STARTTLS; weighted by the scenario's own traffic matrix, {} of the hop messages that are sent \
         cross in plaintext.",
        analysis::format_share(summary.run.analytic.content_share)
    ));

    page.h2("What leaks anyway: volume between systems");
    page.figure(
        figures.svg("volume"),
        "Messages and message bytes per system pair (rows send, columns receive): the ground truth beside what the \
         eavesdropper estimates from the tap alone.",
    );
    page.raw(&tables::estimates(summary).html());
    page.note(ESTIMATOR);

    page.h2("Who wrote to whom");
    page.p(&format!(
        "{} of {} sender–recipient address pairs on different systems are linkable: on some hop the eavesdropper \
         read the sender and that recipient (in the envelope's MAIL FROM and RCPT TO, or in the headers).",
        summary.run.user_pairs_linkable, summary.run.user_pairs_crossing
    ));

    page.h2("Cost of TLS");
    page.raw(&tables::tls_cost(&summary.tls_cost).html());
    page.figure(
        figures.svg("tls_cost"),
        "Per message-size bucket, sessions with STARTTLS against plaintext sessions (of this run and its control): \
         mean bytes on the wire beyond the message itself (TCP payload both ways minus message size), and mean \
         session duration as the tap timed it.",
    );

    if let Some(cells) = &context.attacks {
        page.h2("Active attackers");
        page.p(ATTACKERS);
        page.figure(figures.svg("attacks"), ATTACK_HEATMAP);
        page.raw(&tables::attack_matrix(cells).html());
    }

    if let Some((rows, _)) = &context.linkage {
        page.h2("Linkage across hops: users to recipient systems");
        page.p(crate::prose::LINKAGE);
        for line in crate::prose::linkage_lines(rows) {
            page.p(&line);
        }
        page.figure(figures.svg("linkage"), crate::prose::LINKAGE_FIGURE);
    }

    page.h2("Traffic over time");
    page.figure(
        figures.svg("timeline"),
        "Messages submitted per second (ground truth, not visible to the tap), SMTP sessions the relays started \
         between systems, and sessions the tap saw on the lines.",
    );

    page.h2("Per link, as charts");
    page.figure(
        figures.svg("pairs"),
        "Messages sent on each link, and how many of them the eavesdropper recovered in full.",
    );
    page.figure(
        figures.svg("bytes"),
        "Bytes of mail sent on each link (ground truth), and TCP payload bytes the tap saw on the wire for those \
         sessions, encrypted or not.",
    );

    page.provenance(&context.provenance_lines(provenance));
    page.finish()
}

/// The combined page of a sweep.
pub fn sweep_html(sweep: &SweepSummary, provenance: &Provenance, context: &SweepContext, figures: &Figures) -> String {
    let mut page = Page::new(&title("sweep report", &sweep.name));
    page.h2("Headline");
    page.list(&context.headlines(sweep));

    page.h2("Points");
    page.raw(&tables::points(sweep).html());
    page.note(
        "Content recovered: share of hop messages whose whole content the tap recovered; mean over the point's seeds \
         with a 95% Student-t interval (mean ± t(0.975, n−1)·s/√n). With one seed there is no interval. Analytic: \
         the plaintext share of the point's traffic matrix under its TLS policies. Difference: with STARTTLS minus \
         the paired plaintext control, in percentage points.",
    );

    page.h2("Adoption curve");
    match figures.get("adoption") {
        Some(svg) => page.figure(
            svg,
            "Content recovered against the swept parameter: mean over seeds (dots) with its 95% interval (band), the \
             analytic expectation (dashed), and the plaintext control where runs have one.",
        ),
        None => page.note("No swept parameter is numeric at every point, so there is no curve to draw."),
    }

    page.h2("Exposure per point");
    page.figure(
        figures.svg("exposure"),
        "Mean share of hop messages in each exposure class per point; the diamond is the analytic content share.",
    );
    page.classes();

    page.h2("Cost of TLS (all runs and controls pooled)");
    page.raw(&tables::tls_cost(&sweep.tls_cost).html());
    page.figure(
        figures.svg("tls_cost"),
        "Per message-size bucket, sessions with STARTTLS against plaintext sessions over every run of the sweep: \
         mean bytes on the wire beyond the message, and mean session duration.",
    );

    if let Some(svg) = figures.get("effort") {
        page.h2("Active attackers: the grand-scale curve");
        page.figure(svg, EFFORT);
        page.raw(&tables::effort(&context.effort).html());
    }

    if let Some(svg) = figures.get("frontier") {
        page.h2("Countermeasures: leak against cost");
        page.figure(svg, FRONTIER);
        page.raw(&tables::frontier(sweep).html());
    }

    page.h2("Runs");
    page.raw(&tables::runs(sweep, &context.captures, &context.reports).html());
    if !sweep.missing.is_empty() {
        page.note(&format!(
            "sweep.json lists runs that are not here: {}.",
            sweep.missing.iter().map(|(p, s)| format!("{p} seed {s}")).collect::<Vec<_>>().join(", ")
        ));
    }

    page.provenance(&context.provenance_lines(sweep, provenance));
    page.finish()
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
