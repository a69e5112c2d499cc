//! How numbers are written in reports.

/// 1234567 as "1,234,567": exact, but readable at a glance.
pub fn group_digits(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A byte count in SI units with three significant digits at most: "950 B", "12.3 kB", "4.5 MB".
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut value = n as f64;
    let mut unit = "B";
    for u in UNITS {
        if value < 1000.0 {
            break;
        }
        value /= 1000.0;
        unit = u;
    }
    if value < 10.0 { format!("{value:.1} {unit}") } else { format!("{value:.0} {unit}") }
}

/// A count as a chart label: plain digits (rounded).
pub fn count_text(n: f64) -> String {
    group_digits(n.max(0.0).round() as u64)
}

/// A byte amount as a chart label (see [`human_bytes`]).
pub fn bytes_text(n: f64) -> String {
    human_bytes(n.max(0.0).round() as u64)
}

/// A fraction as a chart label: 0.25 as "25%".
pub fn share_text(x: f64) -> String {
    format!("{:.0}%", x * 100.0)
}

/// Milliseconds as a chart label.
pub fn ms_text(x: f64) -> String {
    if x >= 100.0 { format!("{x:.0} ms") } else { format!("{x:.1} ms") }
}

/// Seconds as an axis label.
pub fn seconds_text(x: f64) -> String {
    if x.abs() >= 10.0 { format!("{x:.0} s") } else { format!("{} s", number_text(x)) }
}

/// A rate per second as an axis label.
pub fn rate_text(x: f64) -> String {
    if x >= 10.0 { format!("{x:.0}/s") } else { format!("{}/s", number_text(x)) }
}

/// A plain number as an axis label: as few decimals as needed.
pub fn number_text(x: f64) -> String {
    let s = format!("{x:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".to_string() } else { s.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(999), "999");
        assert_eq!(group_digits(1000), "1,000");
        assert_eq!(group_digits(1234567), "1,234,567");
        assert_eq!(human_bytes(950), "950 B");
        assert_eq!(human_bytes(1234), "1.2 kB");
        assert_eq!(human_bytes(12_345), "12 kB");
        assert_eq!(human_bytes(4_500_000), "4.5 MB");
        assert_eq!(count_text(1234.4), "1,234");
        assert_eq!(share_text(0.256), "26%");
        assert_eq!(number_text(0.25), "0.25");
        assert_eq!(number_text(1.0), "1");
        assert_eq!(number_text(-0.0001), "0");
        assert_eq!(ms_text(12.34), "12.3 ms");
    }
}
