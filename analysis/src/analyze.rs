//! Analysis: what the eavesdropper recovered, per hop, per message and per system pair.
//!
//! Reads only the Parquet tables that [`crate::ingest`] wrote. A hop message is matched to the tap
//! by its TCP 4-tuple (see [`crate::link_key`]) and then by what the tap recovered on that
//! connection; see [`Exposure`] for the classes.

use std::path::Path;

use polars::prelude::*;

use crate::error::{AnalysisError, HINT_INGEST};
use crate::exposure::{self, Exposure};
use crate::layout::RunLayout;
use crate::link_key::{LINK, hop_link_expr, tap_link_expr};
use crate::summary::{Summary, join_string_lists};
use crate::table_io::{scan_parquet, write_csv, write_parquet};

/// Stands in for the receiving system of an outbound session whose destination is not recorded,
/// so such hops still show up in the pair table.
pub const UNKNOWN_SYSTEM: &str = "(unknown)";

/// Intermediate column: the exposure class of a hop as its [`Exposure::rank`].
const RANK: &str = "exposure_rank";

/// The ingested tables, opened lazily.
struct Inputs {
    messages: LazyFrame,
    hops: LazyFrame,
    tap_sessions: LazyFrame,
    tap_transactions: LazyFrame,
}

impl Inputs {
    fn open(layout: &RunLayout) -> Result<Self, AnalysisError> {
        Ok(Inputs {
            messages: scan_parquet(&layout.truth_messages_parquet(), HINT_INGEST)?,
            hops: scan_parquet(&layout.truth_hops_parquet(), HINT_INGEST)?,
            tap_sessions: scan_parquet(&layout.tap_sessions_parquet(), HINT_INGEST)?,
            tap_transactions: scan_parquet(&layout.tap_transactions_parquet(), HINT_INGEST)?,
        })
    }

    /// Every hop row (message-less sessions included), with the link key and a non-null receiver.
    fn keyed_hops(&self) -> LazyFrame {
        self.hops
            .clone()
            .with_row_index("hop_row", None)
            .with_columns([col("receiver_system").fill_null(lit(UNKNOWN_SYSTEM)), hop_link_expr()])
    }
}

/// Reads the ingested tables of `run_dir`, classifies every hop message, and writes
/// `analysis/pairs.{parquet,csv}` and `analysis/messages.{parquet,csv}`.
pub fn analyze(run_dir: &Path) -> Result<Summary, AnalysisError> {
    let layout = RunLayout::new(run_dir);
    let inputs = Inputs::open(&layout)?;
    let hop_exposure = hop_exposure(&inputs);

    let mut pairs = pair_table(&inputs, hop_exposure.clone())
        .collect()
        .map_err(AnalysisError::compute(run_dir, "building the pair table"))?;
    let messages = message_table(&inputs, hop_exposure)
        .collect()
        .map_err(AnalysisError::compute(run_dir, "building the message table"))?;
    // CSV holds no lists: the recipient systems become one comma-separated string in both files.
    let mut messages = join_string_lists(messages, "recipient_systems", ",")
        .map_err(AnalysisError::compute(run_dir, "joining recipient systems"))?;

    write_parquet(&mut pairs, &layout.pairs_parquet())?;
    write_csv(&mut pairs, &layout.pairs_csv())?;
    write_parquet(&mut messages, &layout.messages_parquet())?;
    write_csv(&mut messages, &layout.messages_csv())?;
    Summary::from_tables(&pairs, &layout.pairs_parquet(), &messages, &layout.messages_parquet())
}

/// One row per hop message (sessions without messages left out) with its exposure rank, in
/// the order of `truth/hops.parquet`.
fn hop_exposure(inputs: &Inputs) -> LazyFrame {
    let hops = inputs.keyed_hops().filter(col("message_id").is_not_null()).with_columns([
        hash_key(col("sha256")).alias("sha_key"),
        address_key(col("mail_from")).alias("from_key"),
        message_id_key(col("message_id")).alias("msgid_key"),
    ]);
    let transactions = inputs.tap_transactions.clone().with_columns([tap_link_expr()]);
    let content_keys = transactions
        .clone()
        .filter(col("sha256").is_not_null())
        .select([col(LINK), hash_key(col("sha256")).alias("sha_key")]);
    let header_keys = transactions
        .clone()
        .filter(col("msg_id").is_not_null())
        .select([col(LINK), message_id_key(col("msg_id")).alias("msgid_key")]);
    let envelope_keys = transactions
        .filter(col("mailfrom").is_not_null())
        .select([col(LINK), address_key(col("mailfrom")).alias("from_key")]);
    let seen_keys = inputs.tap_sessions.clone().select([tap_link_expr()]);

    let hops = flag_matches(hops, content_keys, &[LINK, "sha_key"], "content_match");
    let hops = flag_matches(hops, header_keys, &[LINK, "msgid_key"], "headers_match");
    let hops = flag_matches(hops, envelope_keys, &[LINK, "from_key"], "envelope_match");
    let hops = flag_matches(hops, seen_keys, &[LINK], "session_seen");
    hops.with_column(
        exposure::rank_expr(col("content_match"), col("headers_match"), col("envelope_match"), col("session_seen"))
            .alias(RANK),
    )
    .sort(["hop_row"], SortMultipleOptions::default())
}

/// Adds boolean column `flag`: whether `keys` has a row equal to this row on the columns `on`.
fn flag_matches(rows: LazyFrame, keys: LazyFrame, on: &[&str], flag: &str) -> LazyFrame {
    let on: Vec<Expr> = on.iter().map(|c| col(*c)).collect();
    let keys = keys.unique(None, UniqueKeepStrategy::Any).with_column(lit(true).alias(flag));
    rows.join(keys, on.clone(), on, JoinArgs::new(JoinType::Left)).with_column(col(flag).fill_null(lit(false)))
}

/// sha256 hex in one case, so the tap's and the relay's spelling compare equal.
fn hash_key(sha: Expr) -> Expr {
    sha.str().to_lowercase()
}

/// An envelope address without the angle brackets some tools keep; the null sender is "".
fn address_key(addr: Expr) -> Expr {
    addr.str().strip_chars(lit("<> \t"))
}

/// Message-ID without angle brackets: ground truth stores it bare, the header has them.
fn message_id_key(id: Expr) -> Expr {
    id.str().strip_chars(lit("<> \t"))
}

/// `analysis/pairs`: one row per (sender_system, receiver_system) with at least one hop.
fn pair_table(inputs: &Inputs, hop_exposure: LazyFrame) -> LazyFrame {
    let pair = || [col("sender_system"), col("receiver_system")];
    let hops = inputs.keyed_hops();

    let truth = hops.clone().group_by(pair()).agg([
        col("message_id").count().cast(DataType::UInt64).alias("messages"),
        col("bytes").sum().cast(DataType::UInt64).alias("bytes_true"),
        col("session_index").n_unique().cast(DataType::UInt64).alias("sessions_true"),
        col("starttls_used").filter(col("message_id").is_not_null()).all(true).alias("starttls_carrying"),
        col("starttls_used").all(true).alias("starttls_any"),
    ]);

    let recovered = hop_exposure.group_by(pair()).agg([
        count_where(col(RANK).eq(lit(Exposure::Content.rank()))).alias("content_recovered"),
        count_where(col(RANK).gt_eq(lit(Exposure::Envelope.rank()))).alias("envelope_or_better"),
    ]);

    // Each hop connection once per pair, however many messages it carried.
    let hop_links =
        hops.select([col("sender_system"), col("receiver_system"), col(LINK)]).unique(None, UniqueKeepStrategy::Any);
    let tap_sessions = inputs.tap_sessions.clone().select([
        tap_link_expr(),
        (col("orig_bytes") + col("resp_bytes")).alias("wire_bytes"),
        col("starttls_used").alias("tap_starttls"),
    ]);
    let seen =
        hop_links.join(tap_sessions, [col(LINK)], [col(LINK)], JoinArgs::new(JoinType::Inner)).group_by(pair()).agg([
            len().cast(DataType::UInt64).alias("sessions_seen"),
            col("wire_bytes").sum().cast(DataType::UInt64).alias("bytes_seen"),
            count_where(col("tap_starttls")).alias("tls_sessions_seen"),
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
    truth
        .join(recovered, pair(), pair(), JoinArgs::new(JoinType::Left))
        .join(seen, pair(), pair(), JoinArgs::new(JoinType::Left))
        .with_columns([
            col("content_recovered").fill_null(zero()),
            col("envelope_or_better").fill_null(zero()),
            col("sessions_seen").fill_null(zero()),
            col("bytes_seen").fill_null(zero()),
            col("tls_sessions_seen").fill_null(zero()),
        ])
        .with_column(
            when(col("messages").gt(zero()))
                .then(
                    col("content_recovered").cast(DataType::Float64) * lit(100.0)
                        / col("messages").cast(DataType::Float64),
                )
                .otherwise(lit(NULL).cast(DataType::Float64))
                .alias("content_recovered_pct"),
        )
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
        ])
}

/// How many rows of a group satisfy a boolean expression.
fn count_where(condition: Expr) -> Expr {
    condition.cast(DataType::UInt64).sum()
}

/// `analysis/messages`: one row per submitted message, in submission order. A message that
/// crossed no link (delivered inside its own system) has 0 hops and is `unobserved`.
fn message_table(inputs: &Inputs, hop_exposure: LazyFrame) -> LazyFrame {
    let per_message = hop_exposure
        .group_by([col("message_id")])
        .agg([len().cast(DataType::UInt64).alias("hops"), col(RANK).max().alias("worst_rank")]);
    inputs
        .messages
        .clone()
        .with_row_index("message_row", None)
        .select([col("message_row"), col("message_id"), col("sender_system"), col("recipient_systems")])
        .join(per_message, [col("message_id")], [col("message_id")], JoinArgs::new(JoinType::Left))
        .with_columns([
            col("hops").fill_null(lit(0u64)),
            exposure::name_expr(col("worst_rank").fill_null(lit(Exposure::Unobserved.rank()))).alias("worst_exposure"),
        ])
        .sort(["message_row"], SortMultipleOptions::default())
        .select([col("message_id"), col("sender_system"), col("recipient_systems"), col("hops"), col("worst_exposure")])
}
