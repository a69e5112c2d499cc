//! Matching ground-truth hops with what the tap recovered on the same TCP connection.
//!
//! Each hop session is first assigned the tap session of the same 4-tuple (see
//! [`crate::link_key`]) that started closest in time to it ([`assign_tap_sessions`]): a
//! 4-tuple is reused when the kernel hands out the same ephemeral port again, which happens
//! within a second on a busy loopback. From then on hops and tap records are joined by the tap
//! session's `uid` (the column [`TAP_KEY`]). Tap records are first cut down to the tap sessions
//! that are hops by a predicate pushed into the Parquet scan ([`KeySet::contains`]): the scan
//! decodes the key column, and the other columns only for the rows that match, so the rest of
//! the work is on that subset however much other traffic the tap logged. Everything else is
//! lazy joins, group-bys and explodes.

use std::sync::Arc;

use polars::prelude::*;

use crate::exposure::{self, Exposure};
use crate::link_key::tap_link_expr;

/// Column that ties a hop to a tap session: the tap's `uid` (or, for tap output without uids,
/// the 4-tuple text).
pub const TAP_KEY: &str = "tap_key";

/// The [`TAP_KEY`] of a tap record (session or transaction).
pub fn tap_key_expr(uids: bool) -> Expr {
    if uids { col("uid").alias(TAP_KEY) } else { tap_link_expr().alias(TAP_KEY) }
}

/// A tap session belongs to a hop session only if it starts within this many seconds of the
/// hop session (before its start or after its end): relays and tap share a clock, but the tap
/// may date a reused 4-tuple's connection by trailing packets of the previous one.
pub const ASSIGN_TOLERANCE_S: f64 = 2.0;

/// `(session_index, tap_key)`: for each hop session (rows of `keyed_hops` carry
/// `session_index`, `started_at`, `ended_at` and the parsed ends `client_host`, `client_port`,
/// `server_host`, `server_port`), the tap session with its 4-tuple whose first packet is closest
/// in time to the session's start, among those that start between `started_at −`
/// [`ASSIGN_TOLERANCE_S`] and `ended_at +` [`ASSIGN_TOLERANCE_S`]. Hop sessions the tap did not
/// see have no row.
pub fn assign_tap_sessions(keyed_hops: LazyFrame, tap_sessions: LazyFrame, uids: bool) -> PolarsResult<LazyFrame> {
    let hop_sessions = keyed_hops
        .select([
            col("session_index"),
            col("client_host"),
            col("client_port"),
            col("server_host"),
            col("server_port"),
            col("started_at"),
            col("ended_at"),
        ])
        .unique(Some(vec!["session_index".to_string()]), UniqueKeepStrategy::Any)
        .collect()?;
    // Only tap sessions between hosts that appear in hops can match: a cheap test the Parquet
    // scan applies before decoding the rest, which drops unrelated traffic on a tapped network.
    let clients = KeySet::from_column(&hop_sessions, "client_host")?;
    let servers = KeySet::from_column(&hop_sessions, "server_host")?;
    let tap = tap_sessions.filter(clients.contains(col("id.orig_h")).and(servers.contains(col("id.resp_h")))).select([
        col("id.orig_h"),
        col("id.orig_p"),
        col("id.resp_h"),
        col("id.resp_p"),
        tap_key_expr(uids),
        col("ts"),
    ]);
    let hop_ends = [col("client_host"), col("client_port"), col("server_host"), col("server_port")];
    let tap_ends = [col("id.orig_h"), col("id.orig_p"), col("id.resp_h"), col("id.resp_p")];
    let gap = col("ts") - col("started_at");
    let within = col("ts").gt_eq(col("started_at") - lit(ASSIGN_TOLERANCE_S)).and(col("ts").lt_eq(
        // A session record without a sensible end is taken to end when it started.
        when(col("ended_at").gt(col("started_at"))).then(col("ended_at")).otherwise(col("started_at"))
            + lit(ASSIGN_TOLERANCE_S),
    ));
    Ok(hop_sessions
        .lazy()
        .join(tap, hop_ends, tap_ends, JoinArgs::new(JoinType::Inner))
        .filter(within)
        .select([
            col("session_index"),
            col(TAP_KEY),
            when(gap.clone().lt(lit(0.0))).then(lit(0.0) - gap.clone()).otherwise(gap).alias("gap"),
        ])
        // Nearest first, then the first row per session; ties go to the earlier tap row.
        .sort(["gap"], SortMultipleOptions::default().with_maintain_order(true))
        .unique_stable(Some(vec!["session_index".into()]), UniqueKeepStrategy::First)
        .select([col("session_index"), col(TAP_KEY)]))
}

/// Intermediate column: the exposure class of a hop as its [`Exposure::rank`].
pub const RANK: &str = "exposure_rank";

/// sha256 hex in one case, so the tap's and the relay's spelling compare equal.
pub fn hash_key(sha: Expr) -> Expr {
    normalized(sha, &[])
}

/// An address without the angle brackets some tools keep, in lower case; the null sender is "".
pub fn address_key(addr: Expr) -> Expr {
    normalized(addr, &['<', '>', ' ', '\t'])
}

/// `text` with the characters `strip` trimmed from both ends, in lower case: one pass, and no
/// copy for the usual value that is already trimmed ASCII lower case (polars' own
/// `to_lowercase` converts every value through Unicode case mapping, several times slower).
fn normalized(text: Expr, strip: &'static [char]) -> Expr {
    text.map(
        move |c| {
            let ca = c.str()?;
            let out = ca.apply_values(|s| {
                let s = s.trim_matches(strip);
                if s.bytes().any(|b| b.is_ascii_uppercase() || !b.is_ascii()) {
                    std::borrow::Cow::Owned(s.to_lowercase())
                } else {
                    std::borrow::Cow::Borrowed(s)
                }
            });
            Ok(Some(out.into_column()))
        },
        GetOutput::same_type(),
    )
}

/// Message-ID without angle brackets: ground truth stores it bare, the header has them.
pub fn message_id_key(id: Expr) -> Expr {
    id.str().strip_chars(lit("<> \t"))
}

/// The [`TAP_KEY`]s of the tap sessions that are hops, for filtering tap records in the scan.
#[derive(Clone)]
pub struct KeySet(Arc<PlHashSet<String>>);

impl KeySet {
    /// The non-null values of the string column `column` of `df`.
    pub fn from_column(df: &DataFrame, column: &str) -> PolarsResult<KeySet> {
        let ca = df.column(column)?.str()?;
        let mut set = PlHashSet::with_capacity(ca.len());
        for v in ca.into_iter().flatten() {
            set.insert(v.to_string());
        }
        Ok(KeySet(Arc::new(set)))
    }

    /// A boolean expression: whether the string `key` is in the set. Used in a `filter` right
    /// on a Parquet scan, polars pushes it into the reader (as `is_in` would be).
    pub fn contains(&self, key: Expr) -> Expr {
        let set = self.0.clone();
        key.map(
            move |c| {
                let ca = c.str()?;
                let mask: BooleanChunked = ca.into_iter().map(|v| v.is_some_and(|v| set.contains(v))).collect();
                Ok(Some(mask.with_name(c.name().clone()).into_column()))
            },
            GetOutput::from_type(DataType::Boolean),
        )
    }
}

/// The raw key of a tap record, before aliasing: `uid`, or the 4-tuple text.
fn tap_key_raw(uids: bool) -> Expr {
    if uids { col("uid") } else { tap_link_expr() }
}

/// Tap sessions that are hops only (see [`KeySet::contains`]).
pub fn tap_sessions_on_hops(tap_sessions: LazyFrame, keys: &KeySet, uids: bool) -> LazyFrame {
    tap_sessions.filter(keys.contains(tap_key_raw(uids)))
}

/// Tap transactions on hop connections only, with match keys: [`TAP_KEY`], `sha_key`,
/// `msgid_key`, `from_key`, `rcptto`, `has_headers` (Subject, From or To was read),
/// `message_bytes`. `keys` are the [`TAP_KEY`]s of the hops' tap sessions.
pub fn transactions_on_hops(transactions: LazyFrame, keys: &KeySet, uids: bool) -> LazyFrame {
    transactions.filter(keys.contains(tap_key_raw(uids))).select([
        tap_key_expr(uids),
        hash_key(col("sha256")).alias("sha_key"),
        message_id_key(col("msg_id")).alias("msgid_key"),
        address_key(col("mailfrom")).alias("from_key"),
        col("rcptto"),
        (col("subject").is_not_null().or(col("from").is_not_null()).or(col("to")
            .list()
            .len()
            .fill_null(lit(0))
            .gt(lit(0))))
        .alias("has_headers"),
        col("message_bytes"),
    ])
}

/// Adds boolean column `flag`: whether `keys` has a row equal to this row on the columns `on`.
pub fn flag_matches(rows: LazyFrame, keys: LazyFrame, on: &[&str], flag: &str) -> LazyFrame {
    let on: Vec<Expr> = on.iter().map(|c| col(*c)).collect();
    let keys = keys.unique(None, UniqueKeepStrategy::Any).with_column(lit(true).alias(flag));
    rows.join(keys, on.clone(), on, JoinArgs::new(JoinType::Left)).with_column(col(flag).fill_null(lit(false)))
}

/// Every (hop message, tap transaction on the hop's tap session) pair, with what matched:
/// `hop_row`, `content_match` (same sha256), `headers_match` (same Message-ID, and Subject, From
/// or To read), `from_match` (same MAIL FROM), and both recipient lists (`rcpt_to` of the hop,
/// `rcptto` of the transaction). One join on [`TAP_KEY`]; everything else is per row.
/// `tx` is the output of [`transactions_on_hops`].
pub fn candidate_pairs(keyed_hops: LazyFrame, tx: LazyFrame) -> LazyFrame {
    let hops = keyed_hops.filter(col("message_id").is_not_null().and(col(TAP_KEY).is_not_null())).select([
        col("hop_row"),
        col(TAP_KEY),
        col("sha256"),
        col("mail_from"),
        col("message_id"),
        col("rcpt_to"),
    ]);
    let tx = tx.select([
        col(TAP_KEY),
        col("sha_key").alias("tx_sha_key"),
        col("msgid_key").alias("tx_msgid_key"),
        col("from_key").alias("tx_from_key"),
        col("has_headers"),
        col("rcptto"),
    ]);
    // Keys of the hop side only for the rows that met a transaction.
    let same = |a: Expr, b: &str| a.eq(col(b)).fill_null(lit(false));
    hops.join(tx, [col(TAP_KEY)], [col(TAP_KEY)], JoinArgs::new(JoinType::Inner)).select([
        col("hop_row"),
        same(hash_key(col("sha256")), "tx_sha_key").alias("content_match"),
        same(message_id_key(col("message_id")), "tx_msgid_key")
            .and(col("has_headers").fill_null(lit(false)))
            .alias("headers_match"),
        same(address_key(col("mail_from")), "tx_from_key").alias("from_match"),
        col("rcpt_to"),
        col("rcptto"),
    ])
}

/// `(hop_row, rcpt_key, from_match)` for every recipient of a hop that a transaction on its
/// session names in its RCPT TO (addresses compared as [`address_key`]s). `pairs` is the output
/// of [`candidate_pairs`].
pub fn recipient_hits(pairs: LazyFrame) -> LazyFrame {
    pairs
        .select([col("hop_row"), col("from_match"), col("rcpt_to"), col("rcptto")])
        .explode(["rcpt_to"])
        .explode(["rcptto"])
        .with_columns([address_key(col("rcpt_to")).alias("rcpt_key"), address_key(col("rcptto")).alias("tx_rcpt_key")])
        .filter(col("rcpt_key").eq(col("tx_rcpt_key")))
        .select([col("hop_row"), col("rcpt_key"), col("from_match")])
}

/// Hop messages (rows of `keyed_hops` with a message) with their exposure rank in column
/// [`RANK`], in `hop_row` order (left joins keep the order of `keyed_hops`). `pairs` and `hits`
/// are the outputs of [`candidate_pairs`] and [`recipient_hits`].
///
/// * `content`: a transaction on the connection hashes to the hop's sha256;
/// * `headers`: a transaction on the connection carries the hop's Message-ID and at least one of
///   Subject, From, To (the Message-ID says which message the headers belong to);
/// * `envelope`: a transaction on the connection shows the hop's MAIL FROM, or one of its RCPT TO;
/// * `volume`: the tap saw the connection (the hop has a [`TAP_KEY`]);
/// * `unobserved`: it did not.
pub fn hop_exposure(keyed_hops: LazyFrame, pairs: LazyFrame, hits: LazyFrame) -> LazyFrame {
    // "Any row matched" as a sum: polars aggregates sums per group natively, while `any` over
    // hundreds of thousands of groups goes group by group.
    let any = |name: &str| col(name).cast(DataType::UInt32).sum().gt(lit(0u32)).alias(name);
    let flags = pairs.group_by([col("hop_row")]).agg([any("content_match"), any("headers_match"), any("from_match")]);
    let rcpt = hits.select([col("hop_row")]);
    let left = JoinArgs::new(JoinType::Left);
    // Only the columns the tables need, so the joins move as little as possible.
    let hops = keyed_hops
        .filter(col("message_id").is_not_null())
        .select([
            col("hop_row"),
            col("session_index"),
            col("sender_system"),
            col("receiver_system"),
            col("message_id"),
            col("rcpt_to"),
            col("bytes"),
            col("starttls_used"),
            col(TAP_KEY),
        ])
        .join(flags, [col("hop_row")], [col("hop_row")], left);
    let hops = flag_matches(hops, rcpt, &["hop_row"], "rcpt_match");
    let flag = |name: &str| col(name).fill_null(lit(false));
    hops.with_column(
        exposure::rank_expr(
            flag("content_match"),
            flag("headers_match"),
            flag("from_match").or(col("rcpt_match")),
            col(TAP_KEY).is_not_null(),
        )
        .alias(RANK),
    )
}

/// `(message_id, rcpt_key)` of every delivery on which the eavesdropper identified both the
/// sender and that recipient: the hop is `headers` or `content`, or one transaction on its
/// connection shows the hop's MAIL FROM with that recipient among its RCPT TO. `hits` is the
/// output of [`recipient_hits`].
pub fn linked_deliveries(hop_exposure: LazyFrame, hits: LazyFrame) -> LazyFrame {
    let by_envelope = hits.filter(col("from_match")).select([col("hop_row"), col("rcpt_key")]);
    let by_headers = hop_exposure
        .clone()
        .filter(col(RANK).gt_eq(lit(Exposure::Headers.rank())))
        .select([col("hop_row"), col("rcpt_to")])
        .explode(["rcpt_to"])
        .filter(col("rcpt_to").is_not_null())
        .select([col("hop_row"), address_key(col("rcpt_to")).alias("rcpt_key")]);
    let ids = hop_exposure.select([col("hop_row"), col("message_id")]);
    concat([by_envelope, by_headers], UnionArgs::default())
        .unwrap_or_else(|_| DataFrame::empty().lazy())
        .join(ids, [col("hop_row")], [col("hop_row")], JoinArgs::new(JoinType::Inner))
        .select([col("message_id"), col("rcpt_key")])
        .unique(None, UniqueKeepStrategy::Any)
        .with_column(lit(true).alias("linked"))
}
