//! A sweep's `tls_cost` table over every session of every run and control, read a batch of
//! runs at a time so that memory stays flat however many runs the sweep has (a 10,000-point
//! sweep must never be loaded at once).
//!
//! Per (size bucket, TLS or not), counts and sums are added up batch by batch, and means are
//! sum / count of the values present, as polars' `mean` takes them. Each group's median
//! duration is found exactly by narrowing: a first pass counts the durations into 65,536 bins
//! between the group's least and greatest value (bins over the floats' order-preserving bit
//! patterns, so every binade gets its share however skewed the durations are); a second keeps
//! only the values of the bins that hold the middle ranks, sorts them and interpolates as
//! polars' median does.

use std::collections::HashMap;
use std::path::PathBuf;

use polars::prelude::*;

use crate::sessions::{moved_sessions, tls_cost_from_sides};

/// Session tables read together.
const BATCH: usize = 256;
/// Bins of the median's first narrowing pass.
const BINS: u128 = 1 << 16;

/// `analysis/tls_cost` over the session tables `files` (each a run's or a control's
/// `analysis/sessions.parquet`), as [`crate::sessions::tls_cost_table`] computes it over them
/// all at once.
pub(crate) fn pooled_tls_cost(files: &[PathBuf]) -> PolarsResult<DataFrame> {
    let groups = totals(files)?;
    let medians = medians(files, &groups)?;
    let side = |tls: bool, prefix: &str| -> PolarsResult<LazyFrame> {
        let name = |s: &str| format!("{prefix}_{s}").into();
        let mine: Vec<(usize, &Totals)> = groups.iter().enumerate().filter(|(_, g)| g.tls == tls).collect();
        let mean = |f: fn(&Totals) -> (f64, u64)| -> Vec<Option<f64>> {
            mine.iter().map(|(_, g)| f(g)).map(|(sum, n)| (n > 0).then(|| sum / n as f64)).collect()
        };
        Ok(DataFrame::new(vec![
            Column::new("bucket".into(), mine.iter().map(|(_, g)| g.bucket).collect::<Vec<u32>>()),
            Column::new(name("sessions"), mine.iter().map(|(_, g)| g.sessions).collect::<Vec<u64>>()),
            Column::new(name("message_bytes_mean"), mean(|g| g.message_bytes)),
            Column::new(name("wire_bytes_mean"), mean(|g| g.wire_bytes)),
            Column::new(name("overhead_bytes_mean"), mean(|g| g.overhead_bytes)),
            Column::new(name("duration_ms_mean"), mean(|g| g.duration_ms)),
            Column::new(
                name("duration_ms_median"),
                mine.iter().map(|(i, _)| medians[*i]).collect::<Vec<Option<f64>>>(),
            ),
        ])?
        .lazy())
    };
    tls_cost_from_sides(side(false, "plain")?, side(true, "tls")?)?.collect()
}

/// One (bucket, TLS or not) group over the whole sweep: sessions, and (sum, count of values
/// present) of each averaged column; the least and greatest duration.
#[derive(Debug, Clone)]
struct Totals {
    bucket: u32,
    tls: bool,
    sessions: u64,
    message_bytes: (f64, u64),
    wire_bytes: (f64, u64),
    overhead_bytes: (f64, u64),
    duration_ms: (f64, u64),
    min_ms: Option<f64>,
    max_ms: Option<f64>,
}

/// The rows [`crate::sessions::tls_cost_table`] counts, from a batch of session tables, with
/// the values it averages.
fn batch(files: &[PathBuf]) -> PolarsResult<LazyFrame> {
    let scans = files
        .iter()
        .map(|f| {
            let mut args = ScanArgsParquet::default();
            args.hive_options.enabled = Some(false);
            LazyFrame::scan_parquet(f, args)
        })
        .collect::<PolarsResult<Vec<_>>>()?;
    let message = col("message_bytes").cast(DataType::Float64);
    let wire = col("wire_bytes").cast(DataType::Float64);
    // A null `tap_starttls` is on neither side, as the filters of `tls_cost_table` have it.
    Ok(moved_sessions(concat(scans, UnionArgs::default())?).filter(col("tap_starttls").is_not_null()).select([
        col("bucket"),
        col("tap_starttls").alias("tls"),
        message.clone().alias("message_bytes"),
        wire.clone().alias("wire_bytes"),
        (wire - message).alias("overhead_bytes"),
        (col("duration") * lit(1000.0)).alias("duration_ms"),
    ]))
}

fn totals(files: &[PathBuf]) -> PolarsResult<Vec<Totals>> {
    let mut partials: Option<DataFrame> = None;
    for chunk in files.chunks(BATCH) {
        let mut aggs = vec![len().cast(DataType::UInt64).alias("sessions")];
        for c in ["message_bytes", "wire_bytes", "overhead_bytes", "duration_ms"] {
            aggs.push(col(c).sum().alias(format!("{c}_sum")));
            aggs.push(col(c).count().cast(DataType::UInt64).alias(format!("{c}_count")));
        }
        aggs.push(col("duration_ms").min().alias("min_ms"));
        aggs.push(col("duration_ms").max().alias("max_ms"));
        let part = batch(chunk)?.group_by([col("bucket"), col("tls")]).agg(aggs).collect()?;
        match partials.as_mut() {
            Some(all) => {
                all.vstack_mut(&part)?;
            }
            None => partials = Some(part),
        }
    }
    let Some(partials) = partials else { return Ok(Vec::new()) };
    let mut aggs = vec![col("sessions").sum()];
    for c in ["message_bytes", "wire_bytes", "overhead_bytes", "duration_ms"] {
        aggs.push(col(format!("{c}_sum")).sum());
        aggs.push(col(format!("{c}_count")).sum());
    }
    aggs.extend([col("min_ms").min(), col("max_ms").max()]);
    let all = partials
        .lazy()
        .group_by([col("bucket"), col("tls")])
        .agg(aggs)
        .sort(["tls", "bucket"], SortMultipleOptions::default())
        .collect()?;
    let u64s = |name: &str| -> PolarsResult<Vec<u64>> {
        Ok(all.column(name)?.u64()?.into_iter().map(Option::unwrap_or_default).collect())
    };
    let f64s = |name: &str| -> PolarsResult<Vec<Option<f64>>> { Ok(all.column(name)?.f64()?.into_iter().collect()) };
    let pair = |c: &str| -> PolarsResult<Vec<(f64, u64)>> {
        let sums = f64s(&format!("{c}_sum"))?;
        Ok(sums.into_iter().map(Option::unwrap_or_default).zip(u64s(&format!("{c}_count"))?).collect())
    };
    let (message, wire, overhead, duration) =
        (pair("message_bytes")?, pair("wire_bytes")?, pair("overhead_bytes")?, pair("duration_ms")?);
    let (sessions, min, max) = (u64s("sessions")?, f64s("min_ms")?, f64s("max_ms")?);
    let buckets: Vec<u32> = all.column("bucket")?.u32()?.into_iter().map(Option::unwrap_or_default).collect();
    let tls: Vec<bool> = all.column("tls")?.bool()?.into_iter().map(Option::unwrap_or_default).collect();
    Ok((0..all.height())
        .map(|i| Totals {
            bucket: buckets[i],
            tls: tls[i],
            sessions: sessions[i],
            message_bytes: message[i],
            wire_bytes: wire[i],
            overhead_bytes: overhead[i],
            duration_ms: duration[i],
            min_ms: min[i],
            max_ms: max[i],
        })
        .collect())
}

/// Where a group's middle values are: the ranks (0-based; equal for an odd count), the first and
/// last bin holding them, and how many values lie in the bins before the first.
#[derive(Debug, Clone, Copy)]
struct Middle {
    first: usize,
    last: usize,
    before: u64,
    r_lo: u64,
    r_hi: u64,
}

/// A float as an integer of the same order (negative floats below positive ones).
fn order_key(v: f64) -> u64 {
    let bits = v.to_bits();
    if bits >> 63 == 1 { !bits } else { bits | (1 << 63) }
}

/// The exact median duration of each group (`None` for a group without durations).
fn medians(files: &[PathBuf], groups: &[Totals]) -> PolarsResult<Vec<Option<f64>>> {
    let index: HashMap<(u32, bool), usize> = groups.iter().enumerate().map(|(i, g)| ((g.bucket, g.tls), i)).collect();
    let ranges: Vec<Option<(u64, u64)>> =
        groups.iter().map(|g| Some((order_key(g.min_ms?), order_key(g.max_ms?)))).collect();
    let bin = |g: usize, v: f64| -> Option<usize> {
        let (lo, hi) = ranges[g]?;
        let k = order_key(v).clamp(lo, hi);
        Some(((k - lo) as u128 * BINS / ((hi - lo) as u128 + 1)) as usize)
    };
    // Pass 1: counts per bin.
    let mut hist: Vec<Vec<u64>> =
        ranges.iter().map(|r| if r.is_some() { vec![0; BINS as usize] } else { Vec::new() }).collect();
    each_duration(files, &index, |g, v| {
        if let Some(b) = bin(g, v) {
            hist[g][b] += 1;
        }
    })?;
    // The middle ranks (one for an odd count, two for an even one), the bins that hold them,
    // and how many values lie in the bins before.
    let mut wanted: Vec<Option<Middle>> = Vec::new();
    for (g, totals) in groups.iter().enumerate() {
        let n = totals.duration_ms.1;
        if n == 0 || hist[g].is_empty() {
            wanted.push(None);
            continue;
        }
        let (r_lo, r_hi) = ((n - 1) / 2, n / 2);
        let (mut seen, mut first, mut last, mut before) = (0u64, None, None, 0u64);
        for (b, &c) in hist[g].iter().enumerate() {
            if first.is_none() && seen + c > r_lo {
                first = Some(b);
                before = seen;
            }
            if seen + c > r_hi {
                last = Some(b);
                break;
            }
            seen += c;
        }
        wanted.push(first.zip(last).map(|(first, last)| Middle { first, last, before, r_lo, r_hi }));
    }
    // Pass 2: the values of those bins only.
    let mut kept: Vec<Vec<f64>> = vec![Vec::new(); groups.len()];
    each_duration(files, &index, |g, v| {
        if let (Some(m), Some(b)) = (&wanted[g], bin(g, v))
            && (m.first..=m.last).contains(&b)
        {
            kept[g].push(v);
        }
    })?;
    Ok(wanted
        .iter()
        .zip(kept.iter_mut())
        .map(|(w, values)| {
            let Middle { before, r_lo, r_hi, .. } = *w.as_ref()?;
            values.sort_by(f64::total_cmp);
            let at = |r: u64| values.get(usize::try_from(r - before).ok()?).copied();
            let (a, b) = (at(r_lo)?, at(r_hi)?);
            // polars' median: linear interpolation between the two middle values.
            Some(if r_lo == r_hi { a } else { a + (b - a) * 0.5 })
        })
        .collect())
}

/// Calls `f(group, duration)` for every duration present, a batch of tables at a time.
fn each_duration(
    files: &[PathBuf],
    index: &HashMap<(u32, bool), usize>,
    mut f: impl FnMut(usize, f64),
) -> PolarsResult<()> {
    for chunk in files.chunks(BATCH) {
        let df = batch(chunk)?
            .select([col("bucket"), col("tls"), col("duration_ms")])
            .filter(col("duration_ms").is_not_null())
            .collect()?;
        let (buckets, tls, durations) =
            (df.column("bucket")?.u32()?, df.column("tls")?.bool()?, df.column("duration_ms")?.f64()?);
        for ((b, t), d) in buckets.into_iter().zip(tls).zip(durations) {
            if let (Some(b), Some(t), Some(d)) = (b, t, d)
                && let Some(&g) = index.get(&(b, t))
            {
                f(g, d);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 300 session tables (more than one batch): skewed durations with outliers, ties, nulls,
    /// even and odd group sizes. The batched table equals polars' own over all rows at once.
    #[test]
    fn batched_equals_all_at_once() {
        let dir = crate::tests::temp_run_dir("pooled-tls-cost");
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut files = Vec::new();
        for f in 0..300 {
            let rows = 1 + (next() % 7) as usize;
            let (mut seen, mut messages, mut bytes, mut tls, mut wire, mut duration) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for _ in 0..rows {
                let r = next();
                seen.push(r % 11 != 0);
                messages.push(r % 5);
                bytes.push([300u64, 5_000, 70_000, 900_000, 3_000_000][(r >> 8) as usize % 5]);
                tls.push(if r % 13 == 0 { None } else { Some(r % 3 != 0) });
                wire.push(if r % 17 == 0 { None } else { Some(bytes[bytes.len() - 1] + (r >> 20) % 4000) });
                duration.push(match (r >> 32) % 23 {
                    0 => None,
                    1 => Some(600.0 + f as f64),
                    2 => Some(0.05),
                    k => Some(0.01 + k as f64 * 1e-3 + ((r >> 40) % 1000) as f64 * 1e-7),
                });
            }
            let mut df = DataFrame::new(vec![
                Column::new("seen".into(), seen),
                Column::new("messages".into(), messages),
                Column::new("message_bytes".into(), bytes),
                Column::new("tap_starttls".into(), tls),
                Column::new("wire_bytes".into(), wire),
                Column::new("duration".into(), duration),
            ])
            .expect("frame");
            let path = dir.join(format!("s{f}.parquet"));
            crate::table_io::write_parquet(&mut df, &path).expect("write");
            files.push(path);
        }
        let batched = pooled_tls_cost(&files).expect("batched");
        let scans: Vec<LazyFrame> =
            files.iter().map(|f| LazyFrame::scan_parquet(f, ScanArgsParquet::default()).expect("scan")).collect();
        let expected = crate::sessions::tls_cost_table(concat(scans, UnionArgs::default()).expect("concat"))
            .and_then(LazyFrame::collect)
            .expect("all at once");
        assert_eq!(batched.get_column_names(), expected.get_column_names());
        assert_eq!(batched.height(), expected.height());
        assert!(batched.height() >= 4, "{expected}");
        for c in expected.get_columns() {
            let name = c.name().as_str();
            let b = batched.column(name).expect("column");
            if let Ok(e) = c.f64() {
                let b = b.f64().expect("f64");
                for (x, y) in e.into_iter().zip(b) {
                    let close = match (x, y) {
                        (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(1.0),
                        (None, None) => true,
                        _ => false,
                    };
                    assert!(close, "{name}: {x:?} against {y:?}\n{expected}\n{batched}");
                }
            } else {
                assert!(c.equals_missing(b), "{name}\n{expected}\n{batched}");
            }
        }
    }
}
