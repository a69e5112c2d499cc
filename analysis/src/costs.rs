//! What the countermeasures cost, per run (`analysis/summary`'s cover and latency columns): the
//! bytes cover traffic adds on the wire, and the delay batching and pool mixing add to delivery.
//! What they hide is in the columns beside them: `messages_est_rel_err` (the eavesdropper counts
//! cover as mail) and the exposure shares.

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{AnalysisError, HINT_INGEST};
use crate::layout::RunLayout;
use crate::record_frames::DELIVERED;
use crate::table_io::TableRef;
use crate::table_io::read_parquet;

/// One run's countermeasure costs. Byte counts are TCP payload (both ways) as the tap saw them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CountermeasureCosts {
    /// Cover messages that crossed a link (truth: hop messages marked `cover`), and their bytes
    /// (the messages as sent).
    pub cover_messages: u64,
    pub cover_bytes: u64,
    /// Hop sessions that carried cover messages and no mail, and the bytes the tap saw of them:
    /// the wire cost of cover traffic (exact with one message per session; with connection
    /// reuse a session mixing cover and mail counts as mail, so this is a lower bound).
    pub cover_sessions: u64,
    pub cover_wire_bytes: u64,
    /// Bytes the tap saw of every hop session, cover included.
    pub wire_bytes: u64,
    /// `cover_wire_bytes / wire_bytes`.
    pub cover_wire_share: Option<f64>,
    /// Seconds from a message's submission (its 250, `truth/submissions`) to a copy's delivery
    /// into a mailbox (`truth/outcomes`), over every delivered copy: the nearest-rank median,
    /// 99th percentile and maximum. `None` without delivered copies or submission times.
    pub delivery_latency_p50: Option<f64>,
    pub delivery_latency_p99: Option<f64>,
    pub delivery_latency_max: Option<f64>,
    /// `wire_bytes / bytes_true`: bytes on the wire per byte of mail the hops carried (mail
    /// only, cover excluded). Without countermeasures this is SMTP's and TLS's own overhead
    /// (1.26 for 4 KB messages over STARTTLS, measured); padding and cover add to it. The cost axis
    /// of the sweep report's leak-versus-cost figure.
    #[serde(default)]
    pub wire_per_mail_byte: Option<f64>,
}

/// The costs of the run at `layout`, from its session table (`analysis/sessions`, as built).
pub(crate) fn countermeasure_costs(
    layout: &RunLayout,
    sessions: &DataFrame,
    mail_bytes: u64,
) -> Result<CountermeasureCosts, AnalysisError> {
    let path = layout.table_parquet(crate::layout::TABLE_SESSIONS);
    let t = TableRef { df: sessions, path: &path };
    let (cover, cover_bytes, mail) = (t.counts("cover_messages")?, t.counts("cover_bytes")?, t.counts("messages")?);
    let wire = t.counts("wire_bytes")?;
    let mut c = CountermeasureCosts {
        cover_messages: cover.iter().sum(),
        cover_bytes: cover_bytes.iter().sum(),
        wire_bytes: wire.iter().sum(),
        ..Default::default()
    };
    for i in 0..sessions.height() {
        if cover[i] > 0 && mail[i] == 0 {
            c.cover_sessions += 1;
            c.cover_wire_bytes += wire[i];
        }
    }
    c.cover_wire_share = crate::stats::share(c.cover_wire_bytes, c.wire_bytes);
    c.wire_per_mail_byte = (mail_bytes > 0).then(|| c.wire_bytes as f64 / mail_bytes as f64);
    let mut latencies = delivery_latencies(layout)?;
    latencies.sort_by(f64::total_cmp);
    c.delivery_latency_p50 = nearest_rank(&latencies, 0.5);
    c.delivery_latency_p99 = nearest_rank(&latencies, 0.99);
    c.delivery_latency_max = latencies.last().copied();
    Ok(c)
}

/// Submission to delivery, seconds, per delivered copy (joined by `seq`).
fn delivery_latencies(layout: &RunLayout) -> Result<Vec<f64>, AnalysisError> {
    let (sub_path, out_path) = (layout.truth_submissions_parquet(), layout.truth_outcomes_parquet());
    let (subs, outcomes) = (read_parquet(&sub_path, HINT_INGEST)?, read_parquet(&out_path, HINT_INGEST)?);
    let st = TableRef { df: &subs, path: &sub_path };
    let submitted: std::collections::HashMap<u64, f64> = st
        .counts("seq")?
        .into_iter()
        .zip(st.floats("submitted_at")?)
        .filter_map(|(seq, at)| Some((seq, at?)))
        .collect();
    let ot = TableRef { df: &outcomes, path: &out_path };
    let (seqs, outcome, at) = (ot.counts("seq")?, ot.strings("outcome")?, ot.floats("at")?);
    Ok((0..outcomes.height())
        .filter(|&i| outcome[i].as_deref() == Some(DELIVERED))
        .filter_map(|i| Some(at[i]? - submitted.get(&seqs[i])?))
        .collect())
}

/// The nearest-rank `p`-quantile of sorted values: the smallest value with at least `p` of them
/// at or below it.
pub(crate) fn nearest_rank(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_worked_by_hand() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(nearest_rank(&v, 0.5), Some(5.0));
        assert_eq!(nearest_rank(&v, 0.99), Some(10.0));
        assert_eq!(nearest_rank(&v, 0.0), Some(1.0));
        assert_eq!(nearest_rank(&[], 0.5), None);
        let w: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(nearest_rank(&w, 0.99), Some(198.0));
    }
}
