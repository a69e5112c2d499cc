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

mod analyze;
mod error;
mod exposure;
mod ingest;
mod layout;
mod link_key;
mod record_frames;
mod summary;
mod table_io;
mod text_table;

#[cfg(test)]
mod tests;

pub use analyze::{UNKNOWN_SYSTEM, analyze};
pub use error::AnalysisError;
pub use exposure::Exposure;
pub use ingest::ingest;
pub use layout::RunLayout;
pub use link_key::socket_text;
pub use record_frames::SystemEntry;
pub use summary::{ExposureCount, PairRow, Summary, percent, read_summary};
pub use text_table::{format_percent, format_table, pair_label};
