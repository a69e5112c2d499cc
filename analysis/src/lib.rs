//! Analysis stage of smtplab: what a passive eavesdropper on the links between mail systems
//! recovered, measured against ground truth.
//!
//! Two steps, both on a run directory:
//! 1. [`ingest`] turns the JSON-lines records (ground truth from the relays, observations from
//!    the tap) into Parquet tables beside them.
//! 2. [`analyze`] joins the two by TCP 4-tuple, classifies each message on each link by
//!    [`Exposure`], and writes the per-pair and per-message tables under `analysis/`.
//!
//! [`read_summary`] rebuilds the [`Summary`] from those tables for reporting later.
//!
//! A sweep directory (`sweep.json` plus one run directory per point and seed) is analysed with
//! [`analyze_sweep`] and read back with [`read_sweep_summary`]. ANALYSIS.md (at the top of the
//! repository) documents every table and how each metric is computed.

mod analytic;
mod analyze;
mod attack;
mod costs;
mod effort;
mod error;
mod exposure;
mod ingest;
mod layout;
mod link_key;
mod linkage;
mod matching;
mod metrics;
mod pooled_tls_cost;
mod record_frames;
mod sessions;
mod stats;
mod summary;
mod sweep;
mod sweep_dir;
mod table_io;
mod tap_tables;
mod text_table;

#[cfg(test)]
mod tests;

pub use analytic::{Analytic, LinkMode, TrafficCell, analytic_expectation, link_mode};
pub use analyze::{UNKNOWN_SYSTEM, analyze, read_run_metrics};
pub use attack::{
    AttackCell, NO_ATTACK, OUTCOMES, TABLE_ATTACK_MATRIX, TABLE_ATTACK_OUTCOMES, read_attack_matrix,
    write_attack_tables, write_sweep_attack_matrix,
};
pub use costs::CountermeasureCosts;
pub use effort::{ALL_DEFENSES, EffortPoint, MeanInterval, TABLE_ATTACK_EFFORT, read_attack_effort};
pub use error::AnalysisError;
pub use exposure::Exposure;
pub use ingest::ingest;
pub use layout::RunLayout;
pub use link_key::socket_text;
pub use linkage::{
    AccessMessage, LinkageRule, LinkageSummary, MessageLinkage, OutboundMessage, SIZE_ABOVE, SIZE_BELOW, TABLE_LINKAGE,
    TABLE_LINKAGE_SUMMARY, TABLE_LINKAGE_USERS, UserScore, WINDOW_SECS, consistent, link, read_anonymity_sets,
    read_linkage_summary, summarise, user_scores, write_linkage_tables,
};
pub use metrics::{ExposureShares, LinkageMetrics, RunMetrics};
pub use records::SystemInfo;
pub use sessions::{SIZE_BUCKET_EDGES, TLS_CLIENT_OVERHEAD_BYTES, TLS_MESSAGE_MIN_CLIENT_BYTES};
pub use stats::{CONFIDENCE, MeanCi, relative_error, share, t_quantile};
pub use summary::{ExposureCount, PairRow, Summary, TimelineRow, TlsCostRow, percent, read_summary};
pub use sweep::{
    MetricGetter, MetricStat, PointSummary, SWEEP_METRICS, SweepEntry, SweepFile, SweepSummary, analyze_sweep,
    analyze_sweep_with, curve_groups, is_sweep, read_sweep_spec, read_sweep_summary, sweep_runs, value_text,
};
pub use tap_tables::{TapTableWriter, VolumeRow, write_volume_table};
pub use text_table::{
    format_percent, format_points, format_rel_err, format_share, format_share_ci, format_sweep_table, format_table,
    headline_lines, pair_label, shares_text,
};

/// Builders of the ingested tables from records, for tools that write a run's Parquet files
/// directly (the scale benchmark does): the same schemas as [`ingest`] writes.
pub mod frames {
    pub use crate::record_frames::{
        OUTBOUND, systems_frame, tap_sessions_frame, tap_transactions_frame, truth_hops_frame, truth_messages_frame,
        truth_submissions_frame,
    };
}

/// Versions of the libraries the analysis and its report are built with, for provenance.
pub const POLARS_VERSION: &str = "0.46";
