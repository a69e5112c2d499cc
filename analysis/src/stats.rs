//! Small statistics: the Student-t interval of a mean over seeds, and relative errors.
//!
//! The per-seed values of a sweep point are few (typically 3 to 30), so the interval is the
//! textbook t-interval `mean ± t(0.975, n−1) · s / √n` with the sample standard deviation `s`
//! (divisor `n − 1`). The t quantile is computed here (regularized incomplete beta by Lentz's
//! continued fraction, then bisection) rather than taken from a table, so any `n` works.

use serde::{Deserialize, Serialize};

/// Confidence level of every interval smtplab reports.
pub const CONFIDENCE: f64 = 0.95;

/// A mean over seeds with its 95% t-interval. With fewer than two values there is no interval:
/// `sd`, `half_width`, `low` and `high` are `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeanCi {
    /// Values the mean is over (missing values left out).
    pub n: usize,
    pub mean: Option<f64>,
    /// Sample standard deviation (divisor n − 1).
    pub sd: Option<f64>,
    /// `t(0.975, n−1) · sd / √n`.
    pub half_width: Option<f64>,
    pub low: Option<f64>,
    pub high: Option<f64>,
}

impl MeanCi {
    /// The mean and 95% t-interval of the values that are present.
    pub fn of(values: &[Option<f64>]) -> MeanCi {
        let xs: Vec<f64> = values.iter().flatten().copied().filter(|x| x.is_finite()).collect();
        let n = xs.len();
        if n == 0 {
            return MeanCi { n, mean: None, sd: None, half_width: None, low: None, high: None };
        }
        let mean = xs.iter().sum::<f64>() / n as f64;
        if n < 2 {
            return MeanCi { n, mean: Some(mean), sd: None, half_width: None, low: None, high: None };
        }
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let sd = var.sqrt();
        let half = t_quantile(0.5 + CONFIDENCE / 2.0, (n - 1) as f64) * sd / (n as f64).sqrt();
        MeanCi {
            n,
            mean: Some(mean),
            sd: Some(sd),
            half_width: Some(half),
            low: Some(mean - half),
            high: Some(mean + half),
        }
    }
}

/// `(estimate − truth) / truth`, or `None` when the truth is 0 (nothing to be relative to).
pub fn relative_error(estimate: f64, truth: f64) -> Option<f64> {
    (truth != 0.0).then(|| (estimate - truth) / truth)
}

/// `part / whole` as a fraction, or `None` when `whole` is 0.
pub fn share(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// The `p` quantile of Student's t distribution with `df` degrees of freedom (`df > 0`,
/// `0 < p < 1`), to about 1e-12.
pub fn t_quantile(p: f64, df: f64) -> f64 {
    if p == 0.5 {
        return 0.0;
    }
    if p < 0.5 {
        return -t_quantile(1.0 - p, df);
    }
    // Bracket, then bisect on the CDF (monotone): robust for every df, and fast enough for the
    // handful of intervals a report needs.
    let mut hi = 1.0;
    while t_cdf(hi, df) < p && hi < 1e12 {
        hi *= 2.0;
    }
    let mut lo = 0.0;
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if t_cdf(mid, df) < p {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo < 1e-13 * hi.max(1.0) {
            break;
        }
    }
    0.5 * (lo + hi)
}

/// Student's t cumulative distribution function.
pub fn t_cdf(t: f64, df: f64) -> f64 {
    let x = df / (df + t * t);
    let tail = 0.5 * regularized_beta(x, df / 2.0, 0.5);
    if t >= 0.0 { 1.0 - tail } else { tail }
}

/// The regularized incomplete beta function `I_x(a, b)`.
fn regularized_beta(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    let front = ln_front.exp();
    // The continued fraction converges fast for x < (a+1)/(a+b+2); use the symmetry otherwise.
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_fraction(x, a, b) / a
    } else {
        1.0 - front * beta_fraction(1.0 - x, b, a) / b
    }
}

/// Continued fraction of the incomplete beta function (modified Lentz).
fn beta_fraction(x: f64, a: f64, b: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let mut c = 1.0;
    let mut d = 1.0 - (a + b) * x / (a + 1.0);
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..500 {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((a + m2 - 1.0) * (a + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let delta = d * c;
        h *= delta;
        if (delta - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, n = 9; relative error below 1e-14).
fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const COEF: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x)Γ(1−x) = π / sin(πx).
        return std::f64::consts::PI.ln() - (std::f64::consts::PI * x).sin().ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = COEF[0];
    for (i, c) in COEF.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn t_quantiles_match_published_tables() {
        // Two-sided 95% critical values (e.g. NIST/SEMATECH e-Handbook, table 1.3.6.7.2).
        for (df, t) in [
            (1.0, 12.706_204_736),
            (2.0, 4.302_652_730),
            (3.0, 3.182_446_305),
            (4.0, 2.776_445_105),
            (9.0, 2.262_157_163),
            (29.0, 2.045_229_642),
            (120.0, 1.979_930_405),
        ] {
            let q = t_quantile(0.975, df);
            assert!(close(q, t, 1e-8), "df {df}: {q} vs {t}");
        }
        assert!(close(t_quantile(0.025, 4.0), -2.776_445_105, 1e-8));
        // Large df tends to the normal quantile.
        assert!(close(t_quantile(0.975, 1e7), 1.959_963_985, 1e-6));
        assert!(close(t_cdf(0.0, 5.0), 0.5, 1e-15));
    }

    #[test]
    fn t_interval_by_hand() {
        // Values 0.2, 0.4, 0.6: mean 0.4, s = 0.2, n = 3, t(0.975, 2) = 4.302652730,
        // half width = 4.302652730 * 0.2 / sqrt(3) = 0.496827...
        let ci = MeanCi::of(&[Some(0.2), Some(0.4), None, Some(0.6)]);
        assert_eq!(ci.n, 3);
        assert!(close(ci.mean.expect("mean"), 0.4, 1e-12));
        assert!(close(ci.sd.expect("sd"), 0.2, 1e-12));
        let half = 4.302_652_730 * 0.2 / 3f64.sqrt();
        assert!(close(ci.half_width.expect("interval"), half, 1e-8), "{ci:?}");
        assert!(close(ci.low.expect("low"), 0.4 - half, 1e-8));
        assert!(close(ci.high.expect("high"), 0.4 + half, 1e-8));
    }

    #[test]
    fn one_value_has_no_interval() {
        let ci = MeanCi::of(&[Some(0.7)]);
        assert_eq!((ci.n, ci.mean, ci.sd, ci.low, ci.high), (1, Some(0.7), None, None, None));
        let none = MeanCi::of(&[None]);
        assert_eq!((none.n, none.mean), (0, None));
        // Identical values: a zero-width interval, not a missing one.
        let flat = MeanCi::of(&[Some(1.0), Some(1.0)]);
        assert_eq!(flat.half_width, Some(0.0));
    }

    #[test]
    fn relative_errors_and_shares() {
        assert_eq!(relative_error(110.0, 100.0), Some(0.1));
        assert_eq!(relative_error(0.0, 50.0), Some(-1.0));
        assert_eq!(relative_error(3.0, 0.0), None);
        assert_eq!(share(1, 4), Some(0.25));
        assert_eq!(share(0, 0), None);
    }
}
