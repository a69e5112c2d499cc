//! Analysis: what the eavesdropper recovered, per hop, per message, per user pair, per system
//! pair and per scenario, against ground truth and against the paired plaintext control.
//!
//! Reads the Parquet tables that [`crate::ingest`] wrote plus `truth/systems.json`,
//! `manifest.json` and `point.json`. A hop message is matched to the tap by its TCP 4-tuple
//! (see [`crate::link_key`]) and then by what the tap recovered on that connection; see
//! [`Exposure`] and [`crate::matching`] for the classes. Every table is computed with lazy
//! polars plans (joins, group-bys, explodes); the intermediate frames used by several tables
//! are materialised once.

use std::path::Path;

use polars::prelude::*;

use crate::analytic::{self, LinkMode, TrafficCell};
use crate::error::{AnalysisError, HINT_INGEST};
use crate::exposure::{self, Exposure};
use crate::ingest::read_systems;
use crate::layout::{
    RunLayout, TABLE_HOPS, TABLE_MESSAGES, TABLE_PAIRS, TABLE_SESSIONS, TABLE_SUMMARY, TABLE_TIMELINE, TABLE_TLS_COST,
    TABLE_USER_PAIRS,
};
use crate::matching::{self, RANK, address_key};
use crate::metrics::{ExposureShares, RunMetrics};
use crate::sessions;
use crate::stats::{relative_error, share};
use crate::summary::Summary;
use crate::table_io::TableRef;
use crate::table_io::{read_parquet, scan_parquet, write_csv, write_parquet};
use records::SystemInfo;

/// Prints how long each step took (wall clock and CPU) to stderr when `SMTPLAB_ANALYSIS_TIMING`
/// is set (for the scale benchmark).
struct Laps(Option<(std::time::Instant, f64)>);

/// CPU seconds (user + system) this process has used, from `/proc/self/stat` (0 elsewhere).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

impl Laps {
    fn start() -> Laps {
        Laps(std::env::var_os("SMTPLAB_ANALYSIS_TIMING").map(|_| (std::time::Instant::now(), cpu_seconds())))
    }

    fn lap(&mut self, what: &str) {
        if let Some((t, cpu)) = self.0 {
            let now = cpu_seconds();
            eprintln!("  {what}: {:.2} s wall, {:.2} s CPU", t.elapsed().as_secs_f64(), now - cpu);
            self.0 = Some((std::time::Instant::now(), now));
        }
    }
}

/// Stands in for the receiving system of an outbound session whose destination is not recorded,
/// so such hops still show up in the pair table.
pub const UNKNOWN_SYSTEM: &str = "(unknown)";

/// The ingested tables, opened lazily, and the scenario's systems.
struct Inputs {
    messages: LazyFrame,
    /// `seq`, `submitted_at` (UTC epoch seconds).
    submissions: LazyFrame,
    hops: LazyFrame,
    tap_sessions: LazyFrame,
    tap_transactions: LazyFrame,
    systems: Vec<SystemInfo>,
}

impl Inputs {
    fn open(layout: &RunLayout) -> Result<Self, AnalysisError> {
        Ok(Inputs {
            messages: scan_parquet(&layout.truth_messages_parquet(), HINT_INGEST)?,
            submissions: scan_parquet(&layout.truth_submissions_parquet(), HINT_INGEST)?,
            hops: scan_parquet(&layout.truth_hops_parquet(), HINT_INGEST)?,
            tap_sessions: scan_parquet(&layout.tap_sessions_parquet(), HINT_INGEST)?,
            tap_transactions: scan_parquet(&layout.tap_transactions_parquet(), HINT_INGEST)?,
            systems: read_systems(&layout.truth_systems_json())?.unwrap_or_default(),
        })
    }

    /// Whether every tap session and transaction has a `uid` to be joined by (the tap always
    /// writes one; hand-made or foreign records may not). Without, records are keyed by 4-tuple.
    fn tap_uids_complete(&self) -> PolarsResult<bool> {
        let missing = |lf: &LazyFrame| -> PolarsResult<bool> {
            let df = lf
                .clone()
                .select([count_where(col("uid").is_null().or(col("uid").eq(lit("")))).alias("n")])
                .collect()?;
            Ok(df.column("n")?.u64()?.get(0).unwrap_or(0) > 0)
        };
        Ok(!missing(&self.tap_sessions)? && !missing(&self.tap_transactions)?)
    }

    /// Every hop row (message-less sessions and cover messages included), numbered, with a
    /// non-null receiver and a `cover` flag (false in hops ingested before cover traffic).
    fn keyed_hops(&self) -> PolarsResult<LazyFrame> {
        let mut hops = self.hops.clone();
        if hops.collect_schema()?.get("cover").is_none() {
            hops = hops.with_column(lit(false).alias("cover"));
        }
        Ok(hops.with_row_index("hop_row", None).with_column(col("receiver_system").fill_null(lit(UNKNOWN_SYSTEM))))
    }
}

/// Analyses the run in `run_dir` (and first its paired plaintext control in `run_dir/control`,
/// when there is one), writes the tables ANALYSIS.md describes under `analysis/`, and returns
/// the summary.
pub fn analyze(run_dir: &Path) -> Result<Summary, AnalysisError> {
    let layout = RunLayout::new(run_dir);
    let control = if layout.has_control() { Some(analyze_run(&layout.control_dir(), None)?) } else { None };
    analyze_run(run_dir, control.as_ref())
}

/// Analyses one run directory; `control` is the already analysed paired control.
fn analyze_run(run_dir: &Path, control: Option<&Summary>) -> Result<Summary, AnalysisError> {
    let layout = RunLayout::new(run_dir);
    let inputs = Inputs::open(&layout)?;
    let step = |what: &'static str| AnalysisError::compute(run_dir, what);
    let mut laps = Laps::start();

    // Materialised once: each is used by several tables.
    let uids = inputs.tap_uids_complete().map_err(step("reading the tap's session ids"))?;
    laps.lap("uids");
    let hops = inputs.keyed_hops().and_then(LazyFrame::collect).map_err(step("reading the hops"))?.lazy();
    laps.lap("reading hops");
    let assigned = matching::assign_tap_sessions(hops.clone(), inputs.tap_sessions.clone(), uids)
        .and_then(LazyFrame::collect)
        .map_err(step("matching hop sessions to tap sessions"))?
        .lazy();
    laps.lap("assignment");
    // Every hop session, cover traffic included: what crossed the lines, which the session
    // table joins to the tap (the eavesdropper counts cover as mail).
    let all_hops = hops
        .join(assigned, [col("session_index")], [col("session_index")], JoinArgs::new(JoinType::Left))
        .collect()
        .map_err(step("matching hop sessions to tap sessions"))?
        .lazy();
    // The mail: every table of truth (exposure, volume, messages, user pairs) counts these only.
    let keyed_hops = all_hops.clone().filter(col("cover").not());
    laps.lap("hops and tap assignment");
    let keys = all_hops
        .clone()
        .select([col(matching::TAP_KEY)])
        .collect()
        .and_then(|df| matching::KeySet::from_column(&df, matching::TAP_KEY))
        .map_err(step("collecting the tap sessions of hops"))?;
    let tx = matching::transactions_on_hops(inputs.tap_transactions.clone(), &keys, uids)
        .collect()
        .map_err(step("selecting the tap transactions on hop connections"))?
        .lazy();
    laps.lap("transactions on hops");
    // The exposure classes and the session table need only the frames above: in parallel.
    let tap_sessions = matching::tap_sessions_on_hops(inputs.tap_sessions.clone(), &keys, uids);
    let (exposed, session_rows) = std::thread::scope(|scope| {
        let sessions = scope.spawn(|| {
            sessions::session_table(all_hops.clone(), tap_sessions, tx.clone(), uids)
                .collect()
                .map_err(step("joining hop sessions to the tap"))
        });
        let exposed = (|| -> Result<(LazyFrame, LazyFrame), AnalysisError> {
            let pairs_found = matching::candidate_pairs(keyed_hops.clone(), tx.clone())
                .collect()
                .map_err(step("pairing hop messages with tap transactions"))?
                .lazy();
            let hits =
                matching::recipient_hits(pairs_found.clone()).collect().map_err(step("matching recipients"))?.lazy();
            let hop_exposure = matching::hop_exposure(keyed_hops.clone(), pairs_found, hits.clone())
                .collect()
                .map_err(step("classifying hop messages"))?
                .lazy();
            Ok((hop_exposure, hits))
        })();
        (exposed, sessions.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    });
    let (hop_exposure, hits) = exposed?;
    let session_rows = session_rows?;
    laps.lap("hop exposure and sessions");

    let modes = link_mode_frame(&inputs.systems).map_err(step("tabulating link modes"))?;
    let control_pairs = control.map(control_pair_frame).transpose().map_err(step("reading the control's pairs"))?;
    // TLS cost pools this run's sessions with its control's (plaintext, same messages).
    let mut cost_input = vec![session_rows.clone().lazy()];
    if control.is_some() {
        cost_input
            .push(scan_parquet(&RunLayout::new(&layout.control_dir()).table_parquet(TABLE_SESSIONS), HINT_INGEST)?);
    }
    let write = |df: &mut DataFrame, name: &str| -> Result<(), AnalysisError> {
        write_parquet(df, &layout.table_parquet(name))?;
        write_csv(df, &layout.table_csv(name))
    };
    // Every table below depends only on what is materialised above: each is built and written
    // in its own thread (polars shares one thread pool between them).
    let built = std::thread::scope(|scope| {
        let join = |h: std::thread::ScopedJoinHandle<'_, Result<DataFrame, AnalysisError>>| {
            h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        };
        let pairs = scope.spawn(|| {
            let mut df =
                pair_table(keyed_hops.clone(), hop_exposure.clone(), session_rows.clone().lazy(), modes, control_pairs)
                    .collect()
                    .map_err(step("building the pair table"))?;
            write(&mut df, TABLE_PAIRS)?;
            Ok(df)
        });
        let messages = scope.spawn(|| {
            let mut df = message_table(inputs.messages.clone(), hop_exposure.clone())
                .collect()
                .map_err(step("building the message table"))?;
            write(&mut df, TABLE_MESSAGES)?;
            Ok(df)
        });
        let hop_rows = scope.spawn(|| {
            let mut df = hop_table(hop_exposure.clone()).collect().map_err(step("building the hop table"))?;
            write(&mut df, TABLE_HOPS)?;
            Ok(df)
        });
        let user_pairs = scope.spawn(|| {
            let linked = matching::linked_deliveries(hop_exposure.clone(), hits);
            let mut df = user_pair_table(inputs.messages.clone(), linked, &inputs.systems)
                .and_then(LazyFrame::collect)
                .map_err(step("building the user-pair table"))?;
            write(&mut df, TABLE_USER_PAIRS)?;
            Ok(df)
        });
        let cost = scope.spawn(|| {
            let mut df = concat(cost_input, UnionArgs::default())
                .and_then(sessions::tls_cost_table)
                .and_then(LazyFrame::collect)
                .map_err(step("building the TLS cost table"))?;
            write(&mut df, TABLE_TLS_COST)?;
            Ok(df)
        });
        let timeline = scope.spawn(|| {
            let mut df = sessions::timeline_table(
                // All three on the run's one clock, UTC epoch seconds. (`scheduled_at` of the
                // messages is an offset from the start of traffic, and must not be mixed in.)
                inputs.submissions.clone().select([col("submitted_at").alias("t")]),
                session_rows.clone().lazy().select([col("started_at").alias("t")]),
                inputs.tap_sessions.clone().select([col("ts").alias("t")]),
            )
            .map_err(step("building the timeline"))?;
            write(&mut df, TABLE_TIMELINE)?;
            Ok(df)
        });
        let matrix = traffic_matrix(inputs.messages.clone()).map_err(step("building the traffic matrix"));
        let sessions_written = write(&mut session_rows.clone(), TABLE_SESSIONS);
        (
            join(pairs),
            join(messages),
            join(hop_rows),
            join(user_pairs),
            join(cost),
            join(timeline),
            matrix,
            sessions_written,
        )
    });
    let (pairs, messages, hop_rows, user_pairs, cost, timeline, matrix, sessions_written) = built;
    let (pairs, messages, _, user_pairs, _, timeline) = (pairs?, messages?, hop_rows?, user_pairs?, cost?, timeline?);
    sessions_written?;
    let analytic = analytic::analytic_expectation(&inputs.systems, &matrix?);
    laps.lap("tables (built and written in parallel)");

    let mut summary = Summary::from_tables(&pairs, &layout.pairs_parquet(), &messages, &layout.messages_parquet())?;
    summary.run = run_metrics(&layout, &summary, &messages, &user_pairs, analytic, control)?;
    summary.run.costs = crate::costs::countermeasure_costs(&layout, &session_rows, summary.run.bytes_true)?;
    // Access lines tapped (when the scenario taps some): linkage of users to recipient systems,
    // its `tls` figures carried into the summary.
    if let Some(rows) = crate::linkage::write_linkage_tables(&layout)? {
        summary.run.linkage = crate::metrics::LinkageMetrics::from_summary(&rows);
    }
    let mut run_frame =
        RunMetrics::to_frame(std::slice::from_ref(&summary.run)).map_err(step("writing the summary"))?;
    write(&mut run_frame, TABLE_SUMMARY)?;
    laps.lap("summary");
    summary.tls_cost = crate::summary::read_tls_cost(&layout.table_parquet(TABLE_TLS_COST))?;
    let timeline_path = layout.table_parquet(TABLE_TIMELINE);
    summary.timeline = crate::summary::timeline_rows(&TableRef { df: &timeline, path: &timeline_path })?;
    // Active attackers (when the scenario has them): what they read, per message and per cell.
    crate::attack::write_attack_tables(&layout)?;
    Ok(summary)
}

/// Every ordered pair of the scenario's systems with its [`LinkMode`] and expected content share.
fn link_mode_frame(systems: &[SystemInfo]) -> PolarsResult<LazyFrame> {
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    let mut modes = Vec::new();
    let mut expected = Vec::new();
    for s in systems {
        for r in systems {
            let mode = analytic::link_mode(Some(s), Some(r));
            senders.push(s.name.as_str());
            receivers.push(r.name.as_str());
            modes.push(mode.name());
            expected.push(mode.expected_content_share());
        }
    }
    Ok(DataFrame::new(vec![
        Column::new("sender_system".into(), senders),
        Column::new("receiver_system".into(), receivers),
        Column::new("link_mode".into(), modes),
        Column::new("expected_content_share".into(), expected),
    ])?
    .lazy())
}

/// The control's per-pair message and content counts, to join beside this run's.
fn control_pair_frame(control: &Summary) -> PolarsResult<LazyFrame> {
    let p = &control.pairs;
    Ok(DataFrame::new(vec![
        Column::new("sender_system".into(), p.iter().map(|r| r.sender.as_str()).collect::<Vec<_>>()),
        Column::new("receiver_system".into(), p.iter().map(|r| r.receiver.as_str()).collect::<Vec<_>>()),
        Column::new("control_messages".into(), p.iter().map(|r| r.messages).collect::<Vec<u64>>()),
        Column::new("control_content_recovered".into(), p.iter().map(|r| r.content_recovered).collect::<Vec<u64>>()),
    ])?
    .lazy())
}

/// `part / whole` as a Float64 expression, null where `whole` is 0 or null.
fn share_expr(part: Expr, whole: Expr) -> Expr {
    when(whole.clone().gt(lit(0u64)))
        .then(part.cast(DataType::Float64) / whole.cast(DataType::Float64))
        .otherwise(lit(NULL).cast(DataType::Float64))
}

/// `(estimate − truth) / truth` as a Float64 expression, null where `truth` is 0.
fn rel_err_expr(estimate: Expr, truth: Expr) -> Expr {
    when(truth.clone().gt(lit(0u64)))
        .then(
            (estimate.cast(DataType::Float64) - truth.clone().cast(DataType::Float64)) / truth.cast(DataType::Float64),
        )
        .otherwise(lit(NULL).cast(DataType::Float64))
}

/// How many rows of a group satisfy a boolean expression.
fn count_where(condition: Expr) -> Expr {
    condition.cast(DataType::UInt64).sum()
}

/// `analysis/pairs`: one row per (sender_system, receiver_system) with at least one hop.
fn pair_table(
    keyed_hops: LazyFrame,
    hop_exposure: LazyFrame,
    sessions: LazyFrame,
    modes: LazyFrame,
    control: Option<LazyFrame>,
) -> LazyFrame {
    let pair = || [col("sender_system"), col("receiver_system")];
    let truth = keyed_hops.group_by(pair()).agg([
        col("message_id").count().cast(DataType::UInt64).alias("messages"),
        col("bytes").sum().cast(DataType::UInt64).alias("bytes_true"),
        col("starttls_used").filter(col("message_id").is_not_null()).all(true).alias("starttls_carrying"),
        col("starttls_used").all(true).alias("starttls_any"),
    ]);
    let rank_is = |class: Exposure| count_where(col(RANK).eq(lit(class.rank())));
    let recovered = hop_exposure.group_by(pair()).agg([
        rank_is(Exposure::Content).alias("content_recovered"),
        count_where(col(RANK).gt_eq(lit(Exposure::Envelope.rank()))).alias("envelope_or_better"),
        rank_is(Exposure::Headers).alias("exposure_headers"),
        rank_is(Exposure::Envelope).alias("exposure_envelope"),
        rank_is(Exposure::Volume).alias("exposure_volume"),
        rank_is(Exposure::Unobserved).alias("exposure_unobserved"),
    ]);
    let seen = sessions.group_by(pair()).agg([
        len().cast(DataType::UInt64).alias("sessions_true"),
        count_where(col("seen")).alias("sessions_seen"),
        col("wire_bytes").sum().cast(DataType::UInt64).alias("bytes_seen"),
        count_where(col("tap_starttls").fill_null(lit(false))).alias("tls_sessions_seen"),
        col("messages_est").sum().cast(DataType::UInt64).alias("messages_est"),
        col("bytes_est").sum().cast(DataType::UInt64).alias("bytes_est"),
    ]);

    let zero = || lit(0u64);
    // A session that failed before STARTTLS carried nothing to hide, so a link counts as
    // STARTTLS when every session that moved a message used it (all sessions, if none did).
    let truth = truth.with_column(
        when(col("messages").gt(zero()))
            .then(col("starttls_carrying"))
            .otherwise(col("starttls_any"))
            .alias("starttls"),
    );
    let left = || JoinArgs::new(JoinType::Left);
    let mut joined = truth.join(recovered, pair(), pair(), left()).join(seen, pair(), pair(), left()).join(
        modes,
        pair(),
        pair(),
        left(),
    );
    joined = match control {
        Some(control) => joined.join(control, pair(), pair(), left()),
        None => joined.with_columns([
            lit(NULL).cast(DataType::UInt64).alias("control_messages"),
            lit(NULL).cast(DataType::UInt64).alias("control_content_recovered"),
        ]),
    };
    let counts = [
        "content_recovered",
        "envelope_or_better",
        "exposure_headers",
        "exposure_envelope",
        "exposure_volume",
        "exposure_unobserved",
        "sessions_true",
        "sessions_seen",
        "bytes_seen",
        "tls_sessions_seen",
        "messages_est",
        "bytes_est",
    ];
    joined
        .with_columns(counts.map(|c| col(c).fill_null(zero())))
        .with_columns([
            col("link_mode").fill_null(lit(LinkMode::Unknown.name())),
            share_expr(col("content_recovered") * lit(100u64), col("messages")).alias("content_recovered_pct"),
            share_expr(col("content_recovered"), col("messages")).alias("content_share"),
            share_expr(col("control_content_recovered"), col("control_messages")).alias("control_content_share"),
            rel_err_expr(col("messages_est"), col("messages")).alias("messages_est_rel_err"),
            rel_err_expr(col("bytes_est"), col("bytes_true")).alias("bytes_est_rel_err"),
        ])
        .with_column((col("content_share") - col("control_content_share")).alias("content_share_diff"))
        .sort(["sender_system", "receiver_system"], SortMultipleOptions::default())
        .select([
            col("sender_system"),
            col("receiver_system"),
            col("starttls"),
            col("messages"),
            col("content_recovered"),
            col("content_recovered_pct"),
            col("envelope_or_better"),
            col("bytes_true"),
            col("sessions_true"),
            col("sessions_seen"),
            col("bytes_seen"),
            col("tls_sessions_seen"),
            col("link_mode"),
            col("expected_content_share"),
            col("content_share"),
            col("exposure_headers"),
            col("exposure_envelope"),
            col("exposure_volume"),
            col("exposure_unobserved"),
            col("messages_est"),
            col("messages_est_rel_err"),
            col("bytes_est"),
            col("bytes_est_rel_err"),
            col("control_messages"),
            col("control_content_recovered"),
            col("control_content_share"),
            col("content_share_diff"),
        ])
}

/// `analysis/messages`: one row per submitted message, in submission order. A message that
/// crossed no link (delivered inside its own system) has 0 hops and is `unobserved`.
/// `recipient_systems` is one comma-separated string (CSV holds no lists).
fn message_table(messages: LazyFrame, hop_exposure: LazyFrame) -> LazyFrame {
    let per_message = hop_exposure
        .group_by([col("message_id")])
        .agg([len().cast(DataType::UInt64).alias("hops"), col(RANK).max().alias("worst_rank")]);
    messages
        .with_row_index("message_row", None)
        .select([col("message_row"), col("message_id"), col("sender_system"), col("recipient_systems")])
        .join(per_message, [col("message_id")], [col("message_id")], JoinArgs::new(JoinType::Left))
        .with_columns([
            col("recipient_systems").list().join(lit(","), true),
            col("hops").fill_null(lit(0u64)),
            exposure::name_expr(col("worst_rank").fill_null(lit(Exposure::Unobserved.rank()))).alias("worst_exposure"),
        ])
        .sort(["message_row"], SortMultipleOptions::default())
        .select([col("message_id"), col("sender_system"), col("recipient_systems"), col("hops"), col("worst_exposure")])
}

/// `analysis/hops`: one row per hop message with its exposure class.
fn hop_table(hop_exposure: LazyFrame) -> LazyFrame {
    hop_exposure.select([
        col("hop_row"),
        col("session_index"),
        col("sender_system"),
        col("receiver_system"),
        col("message_id"),
        col("bytes"),
        col("starttls_used"),
        exposure::name_expr(col(RANK)).alias("exposure"),
    ])
}

/// `analysis/user_pairs`: one row per (sender address, recipient address) of the ground truth,
/// as submitted, with how many of their messages the eavesdropper linked (see
/// [`matching::linked_deliveries`]; addresses are matched there case-insensitively).
fn user_pair_table(messages: LazyFrame, linked: LazyFrame, systems: &[SystemInfo]) -> PolarsResult<LazyFrame> {
    let domains = DataFrame::new(vec![
        Column::new("domain".into(), systems.iter().map(|s| s.domain.to_lowercase()).collect::<Vec<_>>()),
        Column::new("domain_system".into(), systems.iter().map(|s| s.name.as_str()).collect::<Vec<_>>()),
    ])?
    .lazy()
    .unique(Some(vec!["domain".to_string()]), UniqueKeepStrategy::First);
    let deliveries = messages
        .select([
            col("message_id"),
            col("sender"),
            col("sender_system"),
            col("recipients"),
            // Without systems.json, a message to one system names it.
            when(col("recipient_systems").list().len().eq(lit(1)))
                .then(col("recipient_systems").list().first())
                .otherwise(lit(NULL).cast(DataType::String))
                .alias("only_system"),
        ])
        .explode(["recipients"])
        .filter(col("recipients").is_not_null())
        .with_column(address_key(col("recipients")).alias("rcpt_key"));
    // The recipient's system from its domain, worked out once per distinct address.
    let recipient_systems = deliveries
        .clone()
        .select([col("rcpt_key")])
        .unique(None, UniqueKeepStrategy::Any)
        .with_column(col("rcpt_key").str().split(lit("@")).list().last().alias("domain"))
        .join(domains, [col("domain")], [col("domain")], JoinArgs::new(JoinType::Left))
        .select([col("rcpt_key"), col("domain"), col("domain_system")]);
    let deliveries = deliveries
        .join(recipient_systems, [col("rcpt_key")], [col("rcpt_key")], JoinArgs::new(JoinType::Left))
        .with_column(
            col("domain_system").fill_null(col("only_system")).fill_null(col("domain")).alias("recipient_system"),
        )
        .join(
            linked,
            [col("message_id"), col("rcpt_key")],
            [col("message_id"), col("rcpt_key")],
            JoinArgs::new(JoinType::Left),
        );
    Ok(deliveries
        .group_by([col("sender"), col("recipients"), col("sender_system"), col("recipient_system")])
        .agg([
            len().cast(DataType::UInt64).alias("messages"),
            count_where(col("linked").fill_null(lit(false))).alias("linked_messages"),
        ])
        .with_columns([
            col("sender_system").neq(col("recipient_system")).alias("crosses_link"),
            col("linked_messages").gt(lit(0u64)).alias("linkable"),
        ])
        .sort(["sender", "recipients"], SortMultipleOptions::default())
        .select([
            col("sender"),
            col("recipients").alias("recipient"),
            col("sender_system"),
            col("recipient_system"),
            col("messages"),
            col("crosses_link"),
            col("linked_messages"),
            col("linkable"),
        ]))
}

/// The scenario's traffic matrix: hop messages per ordered system pair, one per message and
/// distinct recipient system other than the sender's.
fn traffic_matrix(messages: LazyFrame) -> PolarsResult<Vec<TrafficCell>> {
    let df = messages
        .with_row_index("message_row", None)
        .select([col("message_row"), col("sender_system"), col("recipient_systems")])
        .explode(["recipient_systems"])
        .filter(col("recipient_systems").is_not_null().and(col("recipient_systems").neq(col("sender_system"))))
        .unique(None, UniqueKeepStrategy::Any)
        .group_by([col("sender_system"), col("recipient_systems")])
        .agg([len().cast(DataType::UInt64).alias("hop_messages")])
        .sort(["sender_system", "recipient_systems"], SortMultipleOptions::default())
        .collect()?;
    let s = df.column("sender_system")?.str()?;
    let r = df.column("recipient_systems")?.str()?;
    let n = df.column("hop_messages")?.u64()?;
    Ok((0..df.height())
        .map(|i| TrafficCell {
            sender_system: s.get(i).unwrap_or_default().to_string(),
            receiver_system: r.get(i).unwrap_or_default().to_string(),
            hop_messages: n.get(i).unwrap_or_default(),
        })
        .collect())
}

/// Scenario name, seed and sweep point of a run, from `point.json` and `manifest.json`.
#[derive(Debug, Default, Clone)]
pub(crate) struct RunIdentity {
    pub scenario: String,
    pub sweep: Option<String>,
    pub point: Option<String>,
    pub params: String,
    pub seed: Option<u64>,
}

pub(crate) fn run_identity(layout: &RunLayout) -> Result<RunIdentity, AnalysisError> {
    let manifest = records::read_json_file_opt::<records::Manifest>(&layout.manifest_json(), "a run manifest")?;
    let point = records::read_json_file_opt::<records::PointInfo>(&layout.point_json(), "a sweep point")?;
    let scenario = manifest.as_ref().map(records::Manifest::scenario_name).unwrap_or_default();
    Ok(RunIdentity {
        scenario: scenario.to_string(),
        sweep: point.as_ref().map(|p| p.sweep.clone()),
        point: point.as_ref().map(|p| p.point.clone()),
        params: point
            .as_ref()
            .map_or_else(|| "{}".to_string(), |p| serde_json::Value::Object(p.params.clone()).to_string()),
        seed: point.as_ref().map(|p| p.seed).or_else(|| manifest.as_ref().and_then(|m| m.seed)),
    })
}

fn run_metrics(
    layout: &RunLayout,
    summary: &Summary,
    messages: &DataFrame,
    user_pairs: &DataFrame,
    analytic: analytic::Analytic,
    control: Option<&Summary>,
) -> Result<RunMetrics, AnalysisError> {
    let id = run_identity(layout)?;
    let step = AnalysisError::compute(layout.root(), "summing the tables");
    let crossing =
        messages.column("hops").and_then(|c| Ok(c.u64()?.into_iter().filter(|h| h.unwrap_or(0) > 0).count()));
    let crossing = crossing.map_err(step)? as u64;
    let step = AnalysisError::compute(layout.root(), "summing the tables");
    let worst_counts = (|| -> PolarsResult<[u64; 5]> {
        let hops = messages.column("hops")?.u64()?;
        let worst = messages.column("worst_exposure")?.str()?;
        let mut counts = [0u64; 5];
        for (h, w) in hops.into_iter().zip(worst) {
            if h.unwrap_or(0) > 0
                && let Some(class) = w.and_then(Exposure::from_name)
            {
                counts[class.rank() as usize] += 1;
            }
        }
        Ok(counts)
    })()
    .map_err(step)?;
    let pairs_path = layout.table_parquet(TABLE_USER_PAIRS);
    let up = TableRef { df: user_pairs, path: &pairs_path };
    let crosses = up.bools("crosses_link")?;
    let linkable = up.bools("linkable")?;
    let user_pairs_crossing = crosses.iter().filter(|c| **c).count() as u64;
    let user_pairs_linkable = crosses.iter().zip(&linkable).filter(|(c, l)| **c && **l).count() as u64;

    let p = &summary.pairs;
    let sum = |f: fn(&crate::PairRow) -> u64| p.iter().map(f).sum::<u64>();
    let hop_messages = sum(|r| r.messages);
    let hop_shares = ExposureShares::from_counts(|class| p.iter().map(|r| r.exposure_count(class)).sum());
    let messages_est = sum(|r| r.messages_est);
    let bytes_true = sum(|r| r.bytes_true);
    let bytes_est = sum(|r| r.bytes_est);
    let control_shares = control.map(|c| c.run.hop_shares.clone()).unwrap_or_default();
    let [copies_delivered, copies_bounced, copies_undelivered] = outcome_counts(layout)?;
    Ok(RunMetrics {
        scenario: id.scenario,
        sweep: id.sweep,
        point: id.point,
        params: id.params,
        seed: id.seed,
        messages_total: summary.messages_total as u64,
        messages_crossing: crossing,
        hop_messages,
        sessions_true: sum(|r| r.sessions_true),
        sessions_seen: sum(|r| r.sessions_seen),
        content_share_diff: match (hop_shares.content, control_shares.content) {
            (Some(a), Some(b)) => Some(a - b),
            _ => None,
        },
        hop_shares,
        worst_shares: ExposureShares::from_counts(|class| worst_counts[class.rank() as usize]),
        analytic,
        user_pairs: user_pairs.height() as u64,
        user_pairs_crossing,
        user_pairs_linkable,
        linkable_share: share(user_pairs_linkable, user_pairs_crossing),
        messages_est,
        messages_est_rel_err: relative_error(messages_est as f64, hop_messages as f64),
        bytes_true,
        bytes_est,
        bytes_est_rel_err: relative_error(bytes_est as f64, bytes_true as f64),
        has_control: control.is_some(),
        control_hop_messages: control.map(|c| c.hop_messages as u64),
        control_shares,
        copies_delivered,
        copies_bounced,
        copies_undelivered,
        costs: Default::default(),
        linkage: Default::default(),
    })
}

/// Recipient copies by final outcome: delivered, bounced, undelivered (`truth/outcomes`);
/// `None` for a run whose relays did not record outcomes.
fn outcome_counts(layout: &RunLayout) -> Result<[Option<u64>; 3], AnalysisError> {
    use crate::record_frames::{BOUNCED, DELIVERED, UNDELIVERED, UNKNOWN};
    let path = layout.truth_outcomes_parquet();
    let df = read_parquet(&path, crate::error::HINT_INGEST)?;
    let outcomes = TableRef { df: &df, path: &path }.strings("outcome")?;
    let count = |what: &str| outcomes.iter().filter(|o| o.as_deref() == Some(what)).count() as u64;
    if count(UNKNOWN) > 0 {
        return Ok([None; 3]);
    }
    Ok([DELIVERED, BOUNCED, UNDELIVERED].map(|o| Some(count(o))))
}

/// Reads `analysis/summary.parquet` of an analysed run.
pub fn read_run_metrics(run_dir: &Path) -> Result<RunMetrics, AnalysisError> {
    let path = RunLayout::new(run_dir).summary_parquet();
    let df = read_parquet(&path, crate::error::HINT_ANALYZE)?;
    Ok(RunMetrics::from_frame(&df, &path)?.into_iter().next().unwrap_or_default())
}
