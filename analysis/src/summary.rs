//! The summary handed to the terminal and the report, rebuilt from the analysis tables.

use std::path::Path;

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{AnalysisError, HINT_ANALYZE};
use crate::exposure::Exposure;
use crate::layout::RunLayout;
use crate::table_io::read_parquet;

/// One link between two systems: what truly crossed it and what the tap saw of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairRow {
    pub sender: String,
    pub receiver: String,
    /// Hop messages sent on this link.
    pub messages: u64,
    /// Hop messages whose whole content the tap recovered.
    pub content_recovered: u64,
    /// Hop messages of which the tap got at least the envelope (`MAIL FROM`).
    pub envelope_or_better: u64,
    /// Sum of the hop messages' sizes.
    pub bytes_true: u64,
    /// Outbound SMTP sessions on this link.
    pub sessions_true: u64,
    /// Tap sessions whose 4-tuple is one of this link's sessions.
    pub sessions_seen: u64,
    /// TCP payload bytes (both ways) of those tap sessions.
    pub bytes_seen: u64,
    /// Of those tap sessions, how many went into TLS.
    pub tls_sessions_seen: u64,
    /// Every session on this link that moved a message used STARTTLS (every session, when
    /// none moved one).
    pub starttls: bool,
}

impl PairRow {
    /// Share of hop messages whose content was recovered, in percent; `None` without messages.
    pub fn content_recovered_pct(&self) -> Option<f64> {
        percent(self.content_recovered, self.messages)
    }
}

/// How many messages have a given worst exposure over their hops.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExposureCount {
    pub exposure: Exposure,
    pub messages: usize,
}

/// Headline numbers of a run plus the per-pair table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// One row per system pair with at least one hop, sorted by sender then receiver.
    pub pairs: Vec<PairRow>,
    /// Messages submitted (rows of `truth/messages`).
    pub messages_total: usize,
    /// Messages counted once per link they crossed.
    pub hop_messages: usize,
    /// Hop messages whose content the tap recovered.
    pub content_recovered: usize,
    /// Hop messages of which the tap got at least the envelope.
    pub envelope_or_better: usize,
    pub sessions_true: usize,
    pub sessions_seen: usize,
    /// Submitted messages by their worst exposure over all hops, most exposed class first;
    /// every class is listed, with 0 where no message has it.
    pub worst_exposure: Vec<ExposureCount>,
}

impl Summary {
    /// Share of hop messages whose content was recovered, in percent; `None` without hops.
    pub fn content_recovered_pct(&self) -> Option<f64> {
        percent(self.content_recovered as u64, self.hop_messages as u64)
    }

    /// Builds the summary from the `analysis/pairs` and `analysis/messages` tables; the paths
    /// are only for error messages.
    pub fn from_tables(
        pairs: &DataFrame,
        pairs_path: &Path,
        messages: &DataFrame,
        messages_path: &Path,
    ) -> Result<Summary, AnalysisError> {
        let pairs = pair_rows(&TableRef { df: pairs, path: pairs_path })?;
        let worst = TableRef { df: messages, path: messages_path }.strings("worst_exposure")?;
        let worst_exposure = Exposure::ALL
            .into_iter()
            .rev()
            .map(|class| ExposureCount {
                exposure: class,
                messages: worst.iter().filter(|w| w.as_deref() == Some(class.name())).count(),
            })
            .collect();
        let total = |f: fn(&PairRow) -> u64| pairs.iter().map(f).sum::<u64>() as usize;
        Ok(Summary {
            messages_total: messages.height(),
            hop_messages: total(|p| p.messages),
            content_recovered: total(|p| p.content_recovered),
            envelope_or_better: total(|p| p.envelope_or_better),
            sessions_true: total(|p| p.sessions_true),
            sessions_seen: total(|p| p.sessions_seen),
            worst_exposure,
            pairs,
        })
    }
}

/// `part` of `whole` in percent, or `None` when `whole` is 0.
pub fn percent(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 * 100.0 / whole as f64)
}

/// Rebuilds the [`Summary`] of an analysed run from `analysis/pairs.parquet` and
/// `analysis/messages.parquet`, so a report can be made without analysing again.
pub fn read_summary(run_dir: &Path) -> Result<Summary, AnalysisError> {
    let layout = RunLayout::new(run_dir);
    let pairs_path = layout.pairs_parquet();
    let messages_path = layout.messages_parquet();
    let pairs = read_parquet(&pairs_path, HINT_ANALYZE)?;
    let messages = read_parquet(&messages_path, HINT_ANALYZE)?;
    Summary::from_tables(&pairs, &pairs_path, &messages, &messages_path)
}

fn pair_rows(table: &TableRef<'_>) -> Result<Vec<PairRow>, AnalysisError> {
    let sender = table.strings("sender_system")?;
    let receiver = table.strings("receiver_system")?;
    let starttls = table.bools("starttls")?;
    let messages = table.counts("messages")?;
    let content_recovered = table.counts("content_recovered")?;
    let envelope_or_better = table.counts("envelope_or_better")?;
    let bytes_true = table.counts("bytes_true")?;
    let sessions_true = table.counts("sessions_true")?;
    let sessions_seen = table.counts("sessions_seen")?;
    let bytes_seen = table.counts("bytes_seen")?;
    let tls_sessions_seen = table.counts("tls_sessions_seen")?;
    Ok((0..table.df.height())
        .map(|i| PairRow {
            sender: sender[i].clone().unwrap_or_default(),
            receiver: receiver[i].clone().unwrap_or_default(),
            messages: messages[i],
            content_recovered: content_recovered[i],
            envelope_or_better: envelope_or_better[i],
            bytes_true: bytes_true[i],
            sessions_true: sessions_true[i],
            sessions_seen: sessions_seen[i],
            bytes_seen: bytes_seen[i],
            tls_sessions_seen: tls_sessions_seen[i],
            starttls: starttls[i],
        })
        .collect())
}

/// A table read back from a file, with typed column access whose errors name the file.
struct TableRef<'a> {
    df: &'a DataFrame,
    path: &'a Path,
}

impl TableRef<'_> {
    fn column_error(&self, column: &str, expected: &'static str) -> AnalysisError {
        AnalysisError::Column {
            path: self.path.to_path_buf(),
            column: column.to_string(),
            expected,
            hint: "re-run `smtplab analyze` on this run directory to rewrite it",
        }
    }

    fn strings(&self, name: &str) -> Result<Vec<Option<String>>, AnalysisError> {
        let err = || self.column_error(name, "text");
        let ca = self.df.column(name).map_err(|_| err())?.str().map_err(|_| err())?;
        Ok(ca.into_iter().map(|v| v.map(str::to_string)).collect())
    }

    /// Null counts read as 0: a count that was never filled in counted nothing.
    fn counts(&self, name: &str) -> Result<Vec<u64>, AnalysisError> {
        let err = || self.column_error(name, "an unsigned 64-bit count");
        let ca = self.df.column(name).map_err(|_| err())?.u64().map_err(|_| err())?;
        Ok(ca.into_iter().map(Option::unwrap_or_default).collect())
    }

    fn bools(&self, name: &str) -> Result<Vec<bool>, AnalysisError> {
        let err = || self.column_error(name, "boolean");
        let ca = self.df.column(name).map_err(|_| err())?.bool().map_err(|_| err())?;
        Ok(ca.into_iter().map(Option::unwrap_or_default).collect())
    }
}

/// Replaces the `List(String)` column `name` by its items joined with `separator`.
pub(crate) fn join_string_lists(mut df: DataFrame, name: &str, separator: &str) -> PolarsResult<DataFrame> {
    let joined: Vec<Option<String>> = df
        .column(name)?
        .list()?
        .into_iter()
        .map(|items| {
            items
                .map(|series| {
                    let strings = series.str()?;
                    Ok(strings.into_iter().flatten().collect::<Vec<_>>().join(separator))
                })
                .transpose()
        })
        .collect::<PolarsResult<_>>()?;
    df.with_column(Column::new(name.into(), joined))?;
    Ok(df)
}
