//! The one-row scenario summary of a run (`analysis/summary.parquet`): what a sweep reads
//! from every run with one glob.

use std::path::Path;

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::analytic::Analytic;
use crate::error::AnalysisError;
use crate::exposure::Exposure;
use crate::table_io::TableRef;

/// Shares (fractions, 0 to 1) of hop messages or messages per exposure class; `None` when
/// there is nothing to divide by.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExposureShares {
    pub content: Option<f64>,
    pub headers: Option<f64>,
    pub envelope: Option<f64>,
    pub volume: Option<f64>,
    pub unobserved: Option<f64>,
}

impl ExposureShares {
    pub fn get(&self, class: Exposure) -> Option<f64> {
        match class {
            Exposure::Content => self.content,
            Exposure::Headers => self.headers,
            Exposure::Envelope => self.envelope,
            Exposure::Volume => self.volume,
            Exposure::Unobserved => self.unobserved,
        }
    }

    fn set(&mut self, class: Exposure, value: Option<f64>) {
        match class {
            Exposure::Content => self.content = value,
            Exposure::Headers => self.headers = value,
            Exposure::Envelope => self.envelope = value,
            Exposure::Volume => self.volume = value,
            Exposure::Unobserved => self.unobserved = value,
        }
    }

    /// Shares from a count per class.
    pub fn from_counts(count: impl Fn(Exposure) -> u64) -> ExposureShares {
        let total: u64 = Exposure::ALL.into_iter().map(&count).sum();
        let mut s = ExposureShares::default();
        for class in Exposure::ALL {
            s.set(class, crate::stats::share(count(class), total));
        }
        s
    }
}

/// The scenario-level numbers of one run. Shares are fractions (0 to 1).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunMetrics {
    /// Scenario name, from `manifest.json` (empty when there is none).
    pub scenario: String,
    /// Sweep and point names, from `point.json` when the run is a sweep point.
    pub sweep: Option<String>,
    pub point: Option<String>,
    /// The point's parameters as a JSON object (`{}` outside a sweep).
    pub params: String,
    /// Seed, from `point.json` or `manifest.json`.
    pub seed: Option<u64>,
    /// Messages submitted.
    pub messages_total: u64,
    /// Messages that crossed at least one link.
    pub messages_crossing: u64,
    /// Messages counted once per link crossed.
    pub hop_messages: u64,
    pub sessions_true: u64,
    pub sessions_seen: u64,
    /// Hop messages by exposure class (`share_<class>`).
    pub hop_shares: ExposureShares,
    /// Messages that crossed a link, by their worst exposure over hops (`worst_share_<class>`).
    pub worst_shares: ExposureShares,
    /// The analytic expectation for this run's traffic matrix and policies.
    pub analytic: Analytic,
    /// Distinct (sender, recipient) address pairs, those on different systems, and those the
    /// eavesdropper linked on some hop.
    pub user_pairs: u64,
    pub user_pairs_crossing: u64,
    pub user_pairs_linkable: u64,
    /// `user_pairs_linkable / user_pairs_crossing`.
    pub linkable_share: Option<f64>,
    /// The eavesdropper's message estimate over all links and its relative error.
    pub messages_est: u64,
    pub messages_est_rel_err: Option<f64>,
    pub bytes_true: u64,
    pub bytes_est: u64,
    pub bytes_est_rel_err: Option<f64>,
    /// Whether the run has a paired plaintext control (`control/`).
    pub has_control: bool,
    pub control_hop_messages: Option<u64>,
    /// The control's hop shares (`control_share_<class>`).
    pub control_shares: ExposureShares,
    /// `share_content − control_share_content`: what STARTTLS changed.
    pub content_share_diff: Option<f64>,
    /// Recipient copies of the submitted messages by final outcome (`truth/outcomes`): put in a
    /// mailbox, bounced, or neither when the run ended (what an `encrypt` policy costs); `None`
    /// for a run whose relays did not record outcomes.
    pub copies_delivered: Option<u64>,
    pub copies_bounced: Option<u64>,
    pub copies_undelivered: Option<u64>,
    /// What the countermeasures cost: cover traffic's bytes, delivery latency.
    #[serde(default)]
    pub costs: crate::costs::CountermeasureCosts,
    /// What size and timing still link users to the systems they wrote to, over the messages of
    /// tapped access lines whose every hop used STARTTLS (`analysis/linkage_summary`, scope
    /// `tls`); all `None` for a run without access taps.
    #[serde(default)]
    pub linkage: LinkageMetrics,
}

/// The `tls` row of `analysis/linkage_summary`, as `link_*` columns of `analysis/summary`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LinkageMetrics {
    /// Tapped access-line messages whose hops were all STARTTLS.
    pub messages: Option<u64>,
    pub median_anonymity_set: Option<f64>,
    pub mean_entropy_bits: Option<f64>,
    /// User→system guesses: correct over guessed (precision) and over true (recall), pooled.
    pub precision: Option<f64>,
    pub recall: Option<f64>,
}

impl LinkageMetrics {
    /// The `tls` row of a run's linkage summary (empty when there is none).
    pub fn from_summary(rows: &[crate::LinkageSummary]) -> LinkageMetrics {
        rows.iter()
            .find(|r| r.scope == "tls")
            .map(|r| LinkageMetrics {
                messages: Some(r.messages),
                median_anonymity_set: r.median_anonymity_set,
                mean_entropy_bits: r.mean_entropy_bits,
                precision: r.precision,
                recall: r.recall,
            })
            .unwrap_or_default()
    }
}

fn shares_columns(prefix: &str, rows: &[RunMetrics], pick: fn(&RunMetrics) -> &ExposureShares) -> Vec<Column> {
    Exposure::ALL
        .into_iter()
        .rev()
        .map(|class| {
            let values: Vec<Option<f64>> = rows.iter().map(|r| pick(r).get(class)).collect();
            Column::new(format!("{prefix}{}", class.name()).into(), values)
        })
        .collect()
}

impl RunMetrics {
    /// The rows as a table with the columns ANALYSIS.md lists for `analysis/summary`.
    pub fn to_frame(rows: &[RunMetrics]) -> PolarsResult<DataFrame> {
        let u =
            |name: &str, f: fn(&RunMetrics) -> u64| Column::new(name.into(), rows.iter().map(f).collect::<Vec<u64>>());
        let ou = |name: &str, f: fn(&RunMetrics) -> Option<u64>| {
            Column::new(name.into(), rows.iter().map(f).collect::<Vec<Option<u64>>>())
        };
        let of = |name: &str, f: fn(&RunMetrics) -> Option<f64>| {
            Column::new(name.into(), rows.iter().map(f).collect::<Vec<Option<f64>>>())
        };
        let os = |name: &str, f: fn(&RunMetrics) -> Option<&str>| {
            Column::new(name.into(), rows.iter().map(f).collect::<Vec<Option<&str>>>())
        };
        let mut cols = vec![
            Column::new("scenario".into(), rows.iter().map(|r| r.scenario.as_str()).collect::<Vec<&str>>()),
            os("sweep", |r| r.sweep.as_deref()),
            os("point", |r| r.point.as_deref()),
            Column::new("params".into(), rows.iter().map(|r| r.params.as_str()).collect::<Vec<&str>>()),
            ou("seed", |r| r.seed),
            u("messages_total", |r| r.messages_total),
            u("messages_crossing", |r| r.messages_crossing),
            u("hop_messages", |r| r.hop_messages),
            u("sessions_true", |r| r.sessions_true),
            u("sessions_seen", |r| r.sessions_seen),
        ];
        cols.extend(shares_columns("share_", rows, |r| &r.hop_shares));
        cols.extend(shares_columns("worst_share_", rows, |r| &r.worst_shares));
        cols.extend([
            u("analytic_weight_tls", |r| r.analytic.weight_tls),
            u("analytic_weight_plaintext", |r| r.analytic.weight_plaintext),
            u("analytic_weight_withheld", |r| r.analytic.weight_withheld),
            u("analytic_weight_unknown", |r| r.analytic.weight_unknown),
            of("analytic_content_share", |r| r.analytic.content_share),
            of("analytic_withheld_share", |r| r.analytic.withheld_share),
            u("user_pairs", |r| r.user_pairs),
            u("user_pairs_crossing", |r| r.user_pairs_crossing),
            u("user_pairs_linkable", |r| r.user_pairs_linkable),
            of("linkable_share", |r| r.linkable_share),
            u("messages_est", |r| r.messages_est),
            of("messages_est_rel_err", |r| r.messages_est_rel_err),
            u("bytes_true", |r| r.bytes_true),
            u("bytes_est", |r| r.bytes_est),
            of("bytes_est_rel_err", |r| r.bytes_est_rel_err),
            Column::new("has_control".into(), rows.iter().map(|r| r.has_control).collect::<Vec<bool>>()),
            ou("control_hop_messages", |r| r.control_hop_messages),
        ]);
        cols.extend(shares_columns("control_share_", rows, |r| &r.control_shares));
        cols.push(of("content_share_diff", |r| r.content_share_diff));
        cols.extend([
            ou("copies_delivered", |r| r.copies_delivered),
            ou("copies_bounced", |r| r.copies_bounced),
            ou("copies_undelivered", |r| r.copies_undelivered),
            u("cover_messages", |r| r.costs.cover_messages),
            u("cover_bytes", |r| r.costs.cover_bytes),
            u("cover_sessions", |r| r.costs.cover_sessions),
            u("cover_wire_bytes", |r| r.costs.cover_wire_bytes),
            u("wire_bytes", |r| r.costs.wire_bytes),
            of("cover_wire_share", |r| r.costs.cover_wire_share),
            of("delivery_latency_p50", |r| r.costs.delivery_latency_p50),
            of("delivery_latency_p99", |r| r.costs.delivery_latency_p99),
            of("delivery_latency_max", |r| r.costs.delivery_latency_max),
            of("wire_per_mail_byte", |r| r.costs.wire_per_mail_byte),
            ou("link_messages", |r| r.linkage.messages),
            of("link_median_anonymity_set", |r| r.linkage.median_anonymity_set),
            of("link_mean_entropy_bits", |r| r.linkage.mean_entropy_bits),
            of("link_precision", |r| r.linkage.precision),
            of("link_recall", |r| r.linkage.recall),
        ]);
        DataFrame::new(cols)
    }

    /// Reads the rows of a table written by [`RunMetrics::to_frame`] (one run, or every run of a
    /// sweep read by glob); `path` is for error messages.
    pub fn from_frame(df: &DataFrame, path: &Path) -> Result<Vec<RunMetrics>, AnalysisError> {
        let t = TableRef { df, path };
        let shares = |prefix: &str| -> Result<Vec<ExposureShares>, AnalysisError> {
            let mut out = vec![ExposureShares::default(); df.height()];
            for class in Exposure::ALL {
                for (row, v) in out.iter_mut().zip(t.floats(&format!("{prefix}{}", class.name()))?) {
                    row.set(class, v);
                }
            }
            Ok(out)
        };
        let hop = shares("share_")?;
        let worst = shares("worst_share_")?;
        let control = shares("control_share_")?;
        let scenario = t.strings("scenario")?;
        let sweep = t.opt_strings("sweep")?;
        let point = t.opt_strings("point")?;
        let params = t.strings("params")?;
        let seed = t.opt_counts("seed")?;
        let c = |name| t.counts(name);
        let f = |name| t.floats(name);
        let (total, crossing, hops, st, ss) = (
            c("messages_total")?,
            c("messages_crossing")?,
            c("hop_messages")?,
            c("sessions_true")?,
            c("sessions_seen")?,
        );
        let (wt, wp, ww, wu) = (
            c("analytic_weight_tls")?,
            c("analytic_weight_plaintext")?,
            c("analytic_weight_withheld")?,
            c("analytic_weight_unknown")?,
        );
        let (acs, aws) = (f("analytic_content_share")?, f("analytic_withheld_share")?);
        let (up, upc, upl, ls) =
            (c("user_pairs")?, c("user_pairs_crossing")?, c("user_pairs_linkable")?, f("linkable_share")?);
        let (me, mer, bt, be, ber) = (
            c("messages_est")?,
            f("messages_est_rel_err")?,
            c("bytes_true")?,
            c("bytes_est")?,
            f("bytes_est_rel_err")?,
        );
        let has_control = t.bools("has_control")?;
        let control_hops = t.opt_counts("control_hop_messages")?;
        let diff = f("content_share_diff")?;
        let oc = |name| t.opt_counts(name);
        let (cd, cb, cu) = (oc("copies_delivered")?, oc("copies_bounced")?, oc("copies_undelivered")?);
        // Summaries written before the countermeasure costs lack their columns: zeros and nulls.
        let has = |name: &str| df.column(name).is_ok();
        let oc0 = |name: &str| if has(name) { t.counts(name) } else { Ok(vec![0; df.height()]) };
        let of0 = |name: &str| if has(name) { t.floats(name) } else { Ok(vec![None; df.height()]) };
        let (cm, cby, cs, cw, wb) = (
            oc0("cover_messages")?,
            oc0("cover_bytes")?,
            oc0("cover_sessions")?,
            oc0("cover_wire_bytes")?,
            oc0("wire_bytes")?,
        );
        let (cws, l50, l99, lmax) = (
            of0("cover_wire_share")?,
            of0("delivery_latency_p50")?,
            of0("delivery_latency_p99")?,
            of0("delivery_latency_max")?,
        );
        // Summaries written before the wire overhead and linkage columns: nulls.
        let oc0n = |name: &str| if has(name) { t.opt_counts(name) } else { Ok(vec![None; df.height()]) };
        let wpm = of0("wire_per_mail_byte")?;
        let (lm, lset, lent, lp, lr) = (
            oc0n("link_messages")?,
            of0("link_median_anonymity_set")?,
            of0("link_mean_entropy_bits")?,
            of0("link_precision")?,
            of0("link_recall")?,
        );
        Ok((0..df.height())
            .map(|i| RunMetrics {
                scenario: scenario[i].clone().unwrap_or_default(),
                sweep: sweep[i].clone(),
                point: point[i].clone(),
                params: params[i].clone().unwrap_or_else(|| "{}".to_string()),
                seed: seed[i],
                messages_total: total[i],
                messages_crossing: crossing[i],
                hop_messages: hops[i],
                sessions_true: st[i],
                sessions_seen: ss[i],
                hop_shares: hop[i].clone(),
                worst_shares: worst[i].clone(),
                analytic: Analytic {
                    weight_tls: wt[i],
                    weight_plaintext: wp[i],
                    weight_withheld: ww[i],
                    weight_unknown: wu[i],
                    content_share: acs[i],
                    withheld_share: aws[i],
                },
                user_pairs: up[i],
                user_pairs_crossing: upc[i],
                user_pairs_linkable: upl[i],
                linkable_share: ls[i],
                messages_est: me[i],
                messages_est_rel_err: mer[i],
                bytes_true: bt[i],
                bytes_est: be[i],
                bytes_est_rel_err: ber[i],
                has_control: has_control[i],
                control_hop_messages: control_hops[i],
                control_shares: control[i].clone(),
                content_share_diff: diff[i],
                copies_delivered: cd[i],
                copies_bounced: cb[i],
                copies_undelivered: cu[i],
                costs: crate::costs::CountermeasureCosts {
                    cover_messages: cm[i],
                    cover_bytes: cby[i],
                    cover_sessions: cs[i],
                    cover_wire_bytes: cw[i],
                    wire_bytes: wb[i],
                    cover_wire_share: cws[i],
                    delivery_latency_p50: l50[i],
                    delivery_latency_p99: l99[i],
                    delivery_latency_max: lmax[i],
                    wire_per_mail_byte: wpm[i],
                },
                linkage: LinkageMetrics {
                    messages: lm[i],
                    median_anonymity_set: lset[i],
                    mean_entropy_bits: lent[i],
                    precision: lp[i],
                    recall: lr[i],
                },
            })
            .collect())
    }
}
