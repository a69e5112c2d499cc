//! Hop sessions joined to the tap: the eavesdropper's message and byte estimates, the cost of
//! TLS per message size, and traffic over time.

use polars::prelude::*;

use crate::matching::{TAP_KEY, tap_key_expr};

/// A STARTTLS session counts as carrying one message when the client sent at least this many
/// bytes of TLS application data. Without a message the client sends only its Finished,
/// EHLO and QUIT (about 150 bytes with TLS 1.3 record framing); with one it adds the MAIL/RCPT/
/// DATA group and the message itself (the smallest generated message is several hundred bytes).
/// smtplab's relay moves one message per session; an eavesdropper learns that from any
/// plaintext session of the same software.
pub const TLS_MESSAGE_MIN_CLIENT_BYTES: u64 = 300;

/// Client application-data bytes of a one-message STARTTLS session that are not the message:
/// Finished, EHLO, MAIL/RCPT/DATA, end of data and QUIT, each with 22 bytes of TLS 1.3 record
/// framing. Fit on smtplab's relay (TLS 1.3, one recipient): 310 to 320 bytes.
pub const TLS_CLIENT_OVERHEAD_BYTES: u64 = 315;

/// Upper edges of the message-size buckets of the TLS cost table, in bytes (the last bucket is
/// open-ended): powers of two from 1 KiB to 1 MiB.
pub const SIZE_BUCKET_EDGES: [u64; 11] =
    [1 << 10, 1 << 11, 1 << 12, 1 << 13, 1 << 14, 1 << 15, 1 << 16, 1 << 17, 1 << 18, 1 << 19, 1 << 20];

/// At most this many bins in the timeline.
const TIMELINE_MAX_BINS: f64 = 60.0;

/// `analysis/sessions`: one row per outbound session of the ground truth, with what the tap saw
/// of it and the eavesdropper's estimates.
///
/// `keyed_hops` carries each hop's [`TAP_KEY`] (see [`crate::matching::assign_tap_sessions`]);
/// `tap_sessions` may be all of them or only those of hops;
/// `tx` is the output of [`crate::matching::transactions_on_hops`]: its recovered message sizes
/// are the byte estimate of a plaintext session. `uids` says how tap records are keyed.
pub fn session_table(keyed_hops: LazyFrame, tap_sessions: LazyFrame, tx: LazyFrame, uids: bool) -> LazyFrame {
    // Stable: sessions come out in the order of truth/hops.parquet, which is session order.
    let truth = keyed_hops.group_by_stable([col("session_index")]).agg([
        col("sender_system").first(),
        col("receiver_system").first(),
        col(TAP_KEY).first(),
        col("starttls_used").first().alias("starttls"),
        col("started_at").first(),
        col("ended_at").first(),
        // Mail only: a cover message (a countermeasure's dummy) is counted apart.
        col("message_id").filter(col("cover").not()).count().cast(DataType::UInt64).alias("messages"),
        col("bytes").filter(col("cover").not()).sum().cast(DataType::UInt64).alias("message_bytes"),
        col("message_id").filter(col("cover")).count().cast(DataType::UInt64).alias("cover_messages"),
        col("bytes").filter(col("cover")).sum().cast(DataType::UInt64).alias("cover_bytes"),
    ]);
    // A key names one tap session; should tap output without uids log a 4-tuple twice, the
    // first is kept so a hop is never counted twice.
    let tap = tap_sessions.select([
        tap_key_expr(uids),
        col("ts").alias("tap_ts"),
        col("duration"),
        col("starttls_used").alias("tap_starttls"),
        (col("orig_bytes") + col("resp_bytes")).alias("wire_bytes"),
        col("tls_app_bytes_orig"),
        col("tls_app_bytes_resp"),
        col("transactions").alias("tap_transactions"),
        // The tap's own estimate inside TLS (`tap::estimate`, from the records' bursts); null
        // where it had none (CBC suites, sessions it could not read).
        col("est_messages").alias("tap_est_messages"),
        col("est_message_bytes").list().sum().cast(DataType::Int64).alias("tap_est_bytes"),
    ]);
    let tap = if uids { tap } else { tap.unique_stable(Some(vec![TAP_KEY.into()]), UniqueKeepStrategy::First) };
    let clear_bytes = tx
        .group_by([col(TAP_KEY)])
        .agg([col("message_bytes").sum().cast(DataType::Int64).alias("clear_message_bytes")]);

    let seen = col("tap_ts").is_not_null();
    let tls = col("tap_starttls").fill_null(lit(false));
    // Inside TLS: the tap's estimate when it made one, else the volume heuristic (one message
    // per session with enough client data, its bytes less a fixed overhead).
    let has_est = tls.clone().and(col("tap_est_messages").is_not_null());
    let heuristic_messages =
        (tls.clone().and(col("tls_app_bytes_orig").gt_eq(lit(TLS_MESSAGE_MIN_CLIENT_BYTES)))).cast(DataType::Int64);
    let heuristic_payload = col("tls_app_bytes_orig").cast(DataType::Int64)
        - heuristic_messages.clone() * lit(TLS_CLIENT_OVERHEAD_BYTES as i64);
    let heuristic_payload =
        when(tls.clone().and(heuristic_payload.clone().gt(lit(0i64)))).then(heuristic_payload).otherwise(lit(0i64));
    let tls_messages =
        when(has_est.clone()).then(col("tap_est_messages").cast(DataType::Int64)).otherwise(heuristic_messages);
    let tls_payload = when(has_est).then(col("tap_est_bytes").fill_null(lit(0i64))).otherwise(heuristic_payload);

    truth
        .join(tap, [col(TAP_KEY)], [col(TAP_KEY)], JoinArgs::new(JoinType::Left))
        .join(clear_bytes, [col(TAP_KEY)], [col(TAP_KEY)], JoinArgs::new(JoinType::Left))
        .with_columns([
            seen.clone().alias("seen"),
            col("messages").fill_null(lit(0u64)),
            col("message_bytes").fill_null(lit(0u64)),
            col("cover_messages").fill_null(lit(0u64)),
            col("cover_bytes").fill_null(lit(0u64)),
            when(seen.clone())
                .then(col("tap_transactions").cast(DataType::Int64) + tls_messages)
                .otherwise(lit(0i64))
                .cast(DataType::UInt64)
                .alias("messages_est"),
            when(seen)
                .then(col("clear_message_bytes").fill_null(lit(0i64)) + tls_payload)
                .otherwise(lit(0i64))
                .cast(DataType::UInt64)
                .alias("bytes_est"),
        ])
        .select([
            col("session_index"),
            col("sender_system"),
            col("receiver_system"),
            col("starttls"),
            col("started_at"),
            col("ended_at"),
            col("messages"),
            col("message_bytes"),
            col("seen"),
            col("tap_starttls"),
            col("tap_ts"),
            col("duration"),
            col("wire_bytes"),
            col("tls_app_bytes_orig"),
            col("tls_app_bytes_resp"),
            col("tap_transactions"),
            col("messages_est"),
            col("bytes_est"),
            col("cover_messages"),
            col("cover_bytes"),
        ])
}

/// The size buckets as a table: `bucket` (index), `size_bucket` (label), `bucket_lo_bytes`,
/// `bucket_hi_bytes` (null for the open last bucket).
pub fn size_buckets() -> PolarsResult<DataFrame> {
    let n = SIZE_BUCKET_EDGES.len() + 1;
    let lo: Vec<u64> = std::iter::once(0).chain(SIZE_BUCKET_EDGES).collect();
    let hi: Vec<Option<u64>> = SIZE_BUCKET_EDGES.iter().copied().map(Some).chain(std::iter::once(None)).collect();
    let labels: Vec<String> = (0..n)
        .map(|i| match hi[i] {
            Some(h) if lo[i] == 0 => format!("<{}", size_text(h)),
            Some(h) => format!("{}–{}", size_text(lo[i]), size_text(h)),
            None => format!("≥{}", size_text(lo[i])),
        })
        .collect();
    DataFrame::new(vec![
        Column::new("bucket".into(), (0..n as u32).collect::<Vec<u32>>()),
        Column::new("size_bucket".into(), labels),
        Column::new("bucket_lo_bytes".into(), lo),
        Column::new("bucket_hi_bytes".into(), hi),
    ])
}

/// 1024 as "1 KiB", 1048576 as "1 MiB".
fn size_text(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{} KiB", bytes >> 10)
    }
}

/// The bucket index of a message size.
fn bucket_expr(bytes: Expr) -> Expr {
    let edge = |i: usize| lit(SIZE_BUCKET_EDGES[i]);
    let mut chain = when(bytes.clone().lt(edge(0))).then(lit(0u32)).when(bytes.clone().lt(edge(1))).then(lit(1u32));
    for i in 2..SIZE_BUCKET_EDGES.len() {
        chain = chain.when(bytes.clone().lt(edge(i))).then(lit(i as u32));
    }
    chain.otherwise(lit(SIZE_BUCKET_EDGES.len() as u32)).cast(DataType::UInt32)
}

/// `analysis/tls_cost`: per message-size bucket, sessions with and without TLS side by side:
/// mean message size, mean bytes on the wire (TCP payload both ways), mean overhead (wire −
/// message), and session time, with TLS − plaintext overhead and TLS / plaintext ratios.
///
/// `sessions` are rows of [`session_table`] (of one run and its control, or of a whole sweep);
/// only sessions the tap saw that moved at least one message count. TLS or not is what the
/// tap saw (`tap_starttls`).
pub fn tls_cost_table(sessions: LazyFrame) -> PolarsResult<LazyFrame> {
    let moved = moved_sessions(sessions);
    let side = |tls: bool, prefix: &str| {
        let name = |s: &str| format!("{prefix}_{s}");
        let filter = if tls { col("tap_starttls") } else { col("tap_starttls").not() };
        moved.clone().filter(filter).group_by([col("bucket")]).agg([
            len().cast(DataType::UInt64).alias(name("sessions")),
            col("message_bytes").cast(DataType::Float64).mean().alias(name("message_bytes_mean")),
            col("wire_bytes").cast(DataType::Float64).mean().alias(name("wire_bytes_mean")),
            (col("wire_bytes").cast(DataType::Float64) - col("message_bytes").cast(DataType::Float64))
                .mean()
                .alias(name("overhead_bytes_mean")),
            (col("duration") * lit(1000.0)).mean().alias(name("duration_ms_mean")),
            (col("duration") * lit(1000.0)).median().alias(name("duration_ms_median")),
        ])
    };
    tls_cost_from_sides(side(false, "plain"), side(true, "tls"))
}

/// The sessions [`tls_cost_table`] counts (seen by the tap, with at least one message), with
/// their size `bucket`.
pub(crate) fn moved_sessions(sessions: LazyFrame) -> LazyFrame {
    sessions
        .filter(col("seen").and(col("messages").gt(lit(0u64))))
        .with_column(bucket_expr(col("message_bytes")).alias("bucket"))
}

/// `analysis/tls_cost` from its two sides, one row per bucket each: `bucket`, then
/// `{plain,tls}_` `sessions`, `message_bytes_mean`, `wire_bytes_mean`, `overhead_bytes_mean`,
/// `duration_ms_mean`, `duration_ms_median`.
pub(crate) fn tls_cost_from_sides(plain: LazyFrame, tls: LazyFrame) -> PolarsResult<LazyFrame> {
    let left = JoinArgs::new(JoinType::Left);
    Ok(size_buckets()?
        .lazy()
        .join(plain, [col("bucket")], [col("bucket")], left.clone())
        .join(tls, [col("bucket")], [col("bucket")], left)
        .filter(col("plain_sessions").is_not_null().or(col("tls_sessions").is_not_null()))
        .with_columns([
            col("plain_sessions").fill_null(lit(0u64)),
            col("tls_sessions").fill_null(lit(0u64)),
            (col("tls_overhead_bytes_mean") - col("plain_overhead_bytes_mean")).alias("tls_extra_bytes_mean"),
            (col("tls_wire_bytes_mean") / col("plain_wire_bytes_mean")).alias("wire_ratio"),
            (col("tls_duration_ms_mean") / col("plain_duration_ms_mean")).alias("duration_ratio"),
        ])
        .sort(["bucket"], SortMultipleOptions::default()))
}

/// The smallest "nice" bin width (1, 2 or 5 times a power of ten seconds) that covers `span`
/// seconds in at most [`TIMELINE_MAX_BINS`] bins.
pub fn timeline_bin_width(span: f64) -> f64 {
    if !(span.is_finite() && span > 0.0) {
        return 1.0;
    }
    let raw = (span / TIMELINE_MAX_BINS).max(1e-3);
    let mut decade = 10f64.powf(raw.log10().floor());
    loop {
        for m in [1.0, 2.0, 5.0] {
            if m * decade >= raw * (1.0 - 1e-12) {
                return m * decade;
            }
        }
        decade *= 10.0;
    }
}

/// `analysis/timeline`: submissions (ground truth), hop sessions started (ground truth) and
/// sessions the tap saw, counted per time bin from the first event, as counts and per second.
///
/// Each input is a frame with one `Float64` column `t` (seconds since the epoch).
pub fn timeline_table(
    submitted: LazyFrame,
    hop_sessions: LazyFrame,
    tap_sessions: LazyFrame,
) -> PolarsResult<DataFrame> {
    let sources = [("submitted", submitted), ("hop_sessions", hop_sessions), ("tap_sessions", tap_sessions)];
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for (_, lf) in &sources {
        let bounds = lf.clone().select([col("t").min().alias("lo"), col("t").max().alias("hi")]).collect()?;
        if let (Some(l), Some(h)) = (bounds.column("lo")?.f64()?.get(0), bounds.column("hi")?.f64()?.get(0)) {
            lo = lo.min(l);
            hi = hi.max(h);
        }
    }
    if !lo.is_finite() {
        lo = 0.0;
        hi = 0.0;
    }
    let width = timeline_bin_width(hi - lo);
    let bins = ((hi - lo) / width).floor() as u32 + 1;
    let mut out = DataFrame::new(vec![
        Column::new("bin".into(), (0..bins).collect::<Vec<u32>>()),
        Column::new("t_start_s".into(), (0..bins).map(|b| b as f64 * width).collect::<Vec<f64>>()),
        Column::new("bin_width_s".into(), vec![width; bins as usize]),
    ])?
    .lazy();
    for (name, lf) in sources {
        let counts = lf
            .filter(col("t").is_not_null())
            // A millionth of a bin of slack: epoch seconds carry about 2e-7 s of rounding, which
            // must not push an event sitting on a bin edge into the bin before.
            .select([((col("t") - lit(lo)) / lit(width) + lit(1e-6)).cast(DataType::UInt32).alias("bin")])
            .group_by([col("bin")])
            .agg([len().cast(DataType::UInt64).alias(name)]);
        out = out.join(counts, [col("bin")], [col("bin")], JoinArgs::new(JoinType::Left)).with_columns([
            col(name).fill_null(lit(0u64)),
            (col(name).fill_null(lit(0u64)).cast(DataType::Float64) / lit(width)).alias(format!("{name}_per_s")),
        ]);
    }
    out.sort(["bin"], SortMultipleOptions::default()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bin_widths_are_nice_and_cover_the_span() {
        assert_eq!(timeline_bin_width(0.0), 1.0);
        assert_eq!(timeline_bin_width(60.0), 1.0);
        assert_eq!(timeline_bin_width(61.0), 2.0);
        assert!((timeline_bin_width(1.18) - 0.02).abs() < 1e-12);
        assert_eq!(timeline_bin_width(3000.0), 50.0);
        assert_eq!(timeline_bin_width(1e-6), 0.001);
    }

    #[test]
    fn buckets_cover_every_size_once() {
        let df = df!("b" => [0u64, 1023, 1024, 4000, 4096, 1 << 20, 5 << 20]).expect("frame");
        let out = df.lazy().select([bucket_expr(col("b")).alias("bucket")]).collect().expect("buckets");
        let got: Vec<Option<u32>> = out.column("bucket").expect("col").u32().expect("u32").into_iter().collect();
        assert_eq!(got, [Some(0), Some(0), Some(1), Some(2), Some(3), Some(11), Some(11)]);
        let labels = size_buckets().expect("buckets");
        let label: Vec<Option<&str>> =
            labels.column("size_bucket").expect("col").str().expect("str").into_iter().collect();
        assert_eq!(label[0], Some("<1 KiB"));
        assert_eq!(label[2], Some("2 KiB–4 KiB"));
        assert_eq!(label[11], Some("≥1 MiB"));
    }
}
