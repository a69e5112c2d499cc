//! The two charts of a report, built from the summary.

use analysis::{PairRow, Summary};

use crate::charts::{BarSeries, GroupedBarChart, SEEN_COLOR, TRUTH_COLOR};
use crate::numbers::{count_text, human_bytes};

/// Short pair label for the x axis: "alpha→beta".
fn axis_label(row: &PairRow) -> String {
    format!("{}→{}", row.sender, row.receiver)
}

fn series(summary: &Summary, label: &str, color: plotters::style::RGBColor, value: fn(&PairRow) -> u64) -> BarSeries {
    BarSeries { label: label.to_string(), color, values: summary.pairs.iter().map(value).collect() }
}

/// Messages sent per link vs messages whose content the eavesdropper recovered.
pub fn messages_chart(summary: &Summary) -> GroupedBarChart {
    GroupedBarChart {
        title: "Messages per link: sent vs content recovered by the eavesdropper".to_string(),
        x_desc: "system pair (sender→receiver)".to_string(),
        y_desc: "messages".to_string(),
        categories: summary.pairs.iter().map(axis_label).collect(),
        series: vec![
            series(summary, "messages sent", TRUTH_COLOR, |p| p.messages),
            series(summary, "content recovered", SEEN_COLOR, |p| p.content_recovered),
        ],
        value_text: count_text,
    }
}

/// Bytes of mail sent per link vs TCP payload bytes the tap saw for those sessions.
pub fn bytes_chart(summary: &Summary) -> GroupedBarChart {
    GroupedBarChart {
        title: "Bytes per link: mail sent vs bytes seen on the wire".to_string(),
        x_desc: "system pair (sender→receiver)".to_string(),
        y_desc: "bytes".to_string(),
        categories: summary.pairs.iter().map(axis_label).collect(),
        series: vec![
            series(summary, "message bytes sent (truth)", TRUTH_COLOR, |p| p.bytes_true),
            series(summary, "bytes seen by the tap", SEEN_COLOR, |p| p.bytes_seen),
        ],
        value_text: human_bytes,
    }
}
