//! The summary handed to the terminal and the report, rebuilt from the analysis tables.

use std::path::Path;

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{AnalysisError, HINT_ANALYZE};
use crate::exposure::Exposure;
use crate::layout::{RunLayout, TABLE_TIMELINE, TABLE_TLS_COST};
use crate::metrics::RunMetrics;
use crate::table_io::{TableRef, read_parquet};

/// One link between two systems: what truly crossed it and what the tap saw of it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PairRow {
    pub sender: String,
    pub receiver: String,
    /// Hop messages sent on this link.
    pub messages: u64,
    /// Hop messages whose whole content the tap recovered (exposure `content`).
    pub content_recovered: u64,
    /// Hop messages of which the tap got at least the envelope (`MAIL FROM` or a `RCPT TO`).
    pub envelope_or_better: u64,
    /// Hop messages by exposure class below `content`.
    pub exposure_headers: u64,
    pub exposure_envelope: u64,
    pub exposure_volume: u64,
    pub exposure_unobserved: u64,
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
    /// How the scenario's policies make mail cross this link: `tls`, `plaintext`, `deferred`,
    /// `refused` or `unknown` (see [`crate::LinkMode`]).
    pub link_mode: String,
    /// Share of hop messages a perfect tap recovers on this link (1 plaintext, 0 TLS).
    pub expected_content_share: Option<f64>,
    /// The eavesdropper's estimate of the hop messages on this link, from the tap alone.
    pub messages_est: u64,
    /// `(messages_est − messages) / messages`.
    pub messages_est_rel_err: Option<f64>,
    /// The eavesdropper's estimate of the message bytes on this link, from the tap alone.
    pub bytes_est: u64,
    /// `(bytes_est − bytes_true) / bytes_true`.
    pub bytes_est_rel_err: Option<f64>,
    /// `content_recovered / messages`, as a fraction.
    pub content_share: Option<f64>,
    /// The same link in the paired plaintext control, when the run has one.
    pub control_messages: Option<u64>,
    pub control_content_recovered: Option<u64>,
    pub control_content_share: Option<f64>,
    /// `content_share − control_content_share`.
    pub content_share_diff: Option<f64>,
}

impl PairRow {
    /// Share of hop messages whose content was recovered, in percent; `None` without messages.
    pub fn content_recovered_pct(&self) -> Option<f64> {
        percent(self.content_recovered, self.messages)
    }

    /// Hop messages of this link with exposure `class`.
    pub fn exposure_count(&self, class: Exposure) -> u64 {
        match class {
            Exposure::Content => self.content_recovered,
            Exposure::Headers => self.exposure_headers,
            Exposure::Envelope => self.exposure_envelope,
            Exposure::Volume => self.exposure_volume,
            Exposure::Unobserved => self.exposure_unobserved,
        }
    }
}

/// How many messages have a given worst exposure over their hops.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExposureCount {
    pub exposure: Exposure,
    pub messages: usize,
}

/// One row of `analysis/tls_cost`: one message-size bucket, sessions with and without TLS.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TlsCostRow {
    pub bucket: u32,
    pub size_bucket: String,
    pub bucket_lo_bytes: u64,
    pub bucket_hi_bytes: Option<u64>,
    pub plain_sessions: u64,
    pub tls_sessions: u64,
    pub plain_message_bytes_mean: Option<f64>,
    pub tls_message_bytes_mean: Option<f64>,
    pub plain_wire_bytes_mean: Option<f64>,
    pub tls_wire_bytes_mean: Option<f64>,
    pub plain_overhead_bytes_mean: Option<f64>,
    pub tls_overhead_bytes_mean: Option<f64>,
    pub plain_duration_ms_mean: Option<f64>,
    pub tls_duration_ms_mean: Option<f64>,
    pub plain_duration_ms_median: Option<f64>,
    pub tls_duration_ms_median: Option<f64>,
    pub tls_extra_bytes_mean: Option<f64>,
    pub wire_ratio: Option<f64>,
    pub duration_ratio: Option<f64>,
}

/// One row of `analysis/timeline`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TimelineRow {
    pub t_start_s: f64,
    pub bin_width_s: f64,
    pub submitted: u64,
    pub hop_sessions: u64,
    pub tap_sessions: u64,
}

impl TimelineRow {
    pub fn submitted_per_s(&self) -> f64 {
        self.submitted as f64 / self.bin_width_s
    }
    pub fn hop_sessions_per_s(&self) -> f64 {
        self.hop_sessions as f64 / self.bin_width_s
    }
    pub fn tap_sessions_per_s(&self) -> f64 {
        self.tap_sessions as f64 / self.bin_width_s
    }
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
    /// The one-row scenario summary (`analysis/summary`): shares, analytic expectation,
    /// control, linkability, estimates.
    pub run: RunMetrics,
    /// `analysis/tls_cost`, one row per message-size bucket with sessions in it.
    pub tls_cost: Vec<TlsCostRow>,
    /// `analysis/timeline`.
    pub timeline: Vec<TimelineRow>,
}

impl Summary {
    /// Share of hop messages whose content was recovered, in percent; `None` without hops.
    pub fn content_recovered_pct(&self) -> Option<f64> {
        percent(self.content_recovered as u64, self.hop_messages as u64)
    }

    /// Builds the pair part of the summary from the `analysis/pairs` and `analysis/messages`
    /// tables; the paths are only for error messages. `run`, `tls_cost` and `timeline` are
    /// left empty ([`read_summary`] fills them from their own tables).
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
            run: RunMetrics::default(),
            tls_cost: Vec::new(),
            timeline: Vec::new(),
        })
    }
}

/// `part` of `whole` in percent, or `None` when `whole` is 0.
pub fn percent(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 * 100.0 / whole as f64)
}

/// Rebuilds the [`Summary`] of an analysed run from its `analysis/` tables, so a report can be
/// made without analysing again.
pub fn read_summary(run_dir: &Path) -> Result<Summary, AnalysisError> {
    let layout = RunLayout::new(run_dir);
    let pairs_path = layout.pairs_parquet();
    let messages_path = layout.messages_parquet();
    let pairs = read_parquet(&pairs_path, HINT_ANALYZE)?;
    // Only the class column is needed; a million-message run need not be read whole.
    let messages = read_parquet(&messages_path, HINT_ANALYZE)?;
    let mut summary = Summary::from_tables(&pairs, &pairs_path, &messages, &messages_path)?;

    let summary_path = layout.summary_parquet();
    let run = read_parquet(&summary_path, HINT_ANALYZE)?;
    let runs = RunMetrics::from_frame(&run, &summary_path)?;
    summary.run = runs.into_iter().next().unwrap_or_default();

    let tls_path = layout.table_parquet(TABLE_TLS_COST);
    summary.tls_cost = tls_cost_rows(&TableRef { df: &read_parquet(&tls_path, HINT_ANALYZE)?, path: &tls_path })?;
    let timeline_path = layout.table_parquet(TABLE_TIMELINE);
    summary.timeline =
        timeline_rows(&TableRef { df: &read_parquet(&timeline_path, HINT_ANALYZE)?, path: &timeline_path })?;
    Ok(summary)
}

fn pair_rows(table: &TableRef<'_>) -> Result<Vec<PairRow>, AnalysisError> {
    let sender = table.strings("sender_system")?;
    let receiver = table.strings("receiver_system")?;
    let starttls = table.bools("starttls")?;
    let link_mode = table.strings("link_mode")?;
    let counts = |name| table.counts(name);
    let floats = |name| table.floats(name);
    let messages = counts("messages")?;
    let content_recovered = counts("content_recovered")?;
    let envelope_or_better = counts("envelope_or_better")?;
    let headers = counts("exposure_headers")?;
    let envelope = counts("exposure_envelope")?;
    let volume = counts("exposure_volume")?;
    let unobserved = counts("exposure_unobserved")?;
    let bytes_true = counts("bytes_true")?;
    let sessions_true = counts("sessions_true")?;
    let sessions_seen = counts("sessions_seen")?;
    let bytes_seen = counts("bytes_seen")?;
    let tls_sessions_seen = counts("tls_sessions_seen")?;
    let messages_est = counts("messages_est")?;
    let bytes_est = counts("bytes_est")?;
    let expected = floats("expected_content_share")?;
    let messages_err = floats("messages_est_rel_err")?;
    let bytes_err = floats("bytes_est_rel_err")?;
    let content_share = floats("content_share")?;
    let control_messages = table.opt_counts("control_messages")?;
    let control_content = table.opt_counts("control_content_recovered")?;
    let control_share = floats("control_content_share")?;
    let diff = floats("content_share_diff")?;
    Ok((0..table.df.height())
        .map(|i| PairRow {
            sender: sender[i].clone().unwrap_or_default(),
            receiver: receiver[i].clone().unwrap_or_default(),
            messages: messages[i],
            content_recovered: content_recovered[i],
            envelope_or_better: envelope_or_better[i],
            exposure_headers: headers[i],
            exposure_envelope: envelope[i],
            exposure_volume: volume[i],
            exposure_unobserved: unobserved[i],
            bytes_true: bytes_true[i],
            sessions_true: sessions_true[i],
            sessions_seen: sessions_seen[i],
            bytes_seen: bytes_seen[i],
            tls_sessions_seen: tls_sessions_seen[i],
            starttls: starttls[i],
            link_mode: link_mode[i].clone().unwrap_or_default(),
            expected_content_share: expected[i],
            messages_est: messages_est[i],
            messages_est_rel_err: messages_err[i],
            bytes_est: bytes_est[i],
            bytes_est_rel_err: bytes_err[i],
            content_share: content_share[i],
            control_messages: control_messages[i],
            control_content_recovered: control_content[i],
            control_content_share: control_share[i],
            content_share_diff: diff[i],
        })
        .collect())
}

fn tls_cost_rows(t: &TableRef<'_>) -> Result<Vec<TlsCostRow>, AnalysisError> {
    let bucket = t.u32s("bucket")?;
    let label = t.strings("size_bucket")?;
    let lo = t.counts("bucket_lo_bytes")?;
    let hi = t.opt_counts("bucket_hi_bytes")?;
    let f = |name| t.floats(name);
    let (pm, tm, pw, tw) = (
        f("plain_message_bytes_mean")?,
        f("tls_message_bytes_mean")?,
        f("plain_wire_bytes_mean")?,
        f("tls_wire_bytes_mean")?,
    );
    let (po, to) = (f("plain_overhead_bytes_mean")?, f("tls_overhead_bytes_mean")?);
    let (pd, td, pdm, tdm) = (
        f("plain_duration_ms_mean")?,
        f("tls_duration_ms_mean")?,
        f("plain_duration_ms_median")?,
        f("tls_duration_ms_median")?,
    );
    let (extra, wr, dr) = (f("tls_extra_bytes_mean")?, f("wire_ratio")?, f("duration_ratio")?);
    let (ps, ts) = (t.counts("plain_sessions")?, t.counts("tls_sessions")?);
    Ok((0..t.df.height())
        .map(|i| TlsCostRow {
            bucket: bucket[i],
            size_bucket: label[i].clone().unwrap_or_default(),
            bucket_lo_bytes: lo[i],
            bucket_hi_bytes: hi[i],
            plain_sessions: ps[i],
            tls_sessions: ts[i],
            plain_message_bytes_mean: pm[i],
            tls_message_bytes_mean: tm[i],
            plain_wire_bytes_mean: pw[i],
            tls_wire_bytes_mean: tw[i],
            plain_overhead_bytes_mean: po[i],
            tls_overhead_bytes_mean: to[i],
            plain_duration_ms_mean: pd[i],
            tls_duration_ms_mean: td[i],
            plain_duration_ms_median: pdm[i],
            tls_duration_ms_median: tdm[i],
            tls_extra_bytes_mean: extra[i],
            wire_ratio: wr[i],
            duration_ratio: dr[i],
        })
        .collect())
}

/// Reads `analysis/tls_cost` of a run or a sweep.
pub(crate) fn read_tls_cost(path: &Path) -> Result<Vec<TlsCostRow>, AnalysisError> {
    tls_cost_rows(&TableRef { df: &read_parquet(path, HINT_ANALYZE)?, path })
}

pub(crate) fn timeline_rows(t: &TableRef<'_>) -> Result<Vec<TimelineRow>, AnalysisError> {
    let start = t.floats("t_start_s")?;
    let width = t.floats("bin_width_s")?;
    let (s, h, p) = (t.counts("submitted")?, t.counts("hop_sessions")?, t.counts("tap_sessions")?);
    Ok((0..t.df.height())
        .map(|i| TimelineRow {
            t_start_s: start[i].unwrap_or_default(),
            bin_width_s: width[i].unwrap_or(1.0),
            submitted: s[i],
            hop_sessions: h[i],
            tap_sessions: p[i],
        })
        .collect())
}
