//! Size padding of mail transactions inside TLS, a remailer-style countermeasure against an
//! eavesdropper who sizes messages from TLS record lengths: after the message, the client sends
//! NOOP commands whose arguments are filler (RFC 5321 §4.1.1.9 allows NOOP a string argument,
//! which the server ignores), so that the transaction's client bytes, from its first command to
//! its last NOOP, reach a bucket boundary. The message itself is untouched, and any RFC 5321
//! server accepts the NOOPs.
//!
//! Each NOOP line keeps to RFC 5321's 512-octet command line (§4.5.3.1.4), CRLF included.

/// Where transaction sizes are rounded up to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Padding {
    #[default]
    None,
    /// The next power of two.
    PowerOfTwo,
    /// The next multiple of `padding_bucket` bytes.
    Fixed,
}

/// The longest command line RFC 5321 lets a client send, CRLF included.
pub const MAX_LINE: u64 = 512;
/// `NOOP<CRLF>`, the shortest NOOP line.
const MIN_LINE: u64 = 6;

/// The bucket `used` bytes round up to: at least `used`, and at least `MIN_LINE` more when it is
/// not `used` itself (no NOOP line is shorter), and never 7 more (`NOOP <CRLF>` would carry an
/// empty argument). `bucket` is the fixed bucket size (ignored for powers of two).
pub fn target(mode: Padding, bucket: u64, used: u64) -> u64 {
    let next = |n: u64| match mode {
        Padding::None => n,
        Padding::PowerOfTwo => n.max(1).next_power_of_two(),
        Padding::Fixed => n.div_ceil(bucket.max(1)) * bucket.max(1),
    };
    let mut t = next(used);
    while t != used && (t - used < MIN_LINE || t - used == MIN_LINE + 1) {
        t = next(t + 1);
    }
    t
}

/// NOOP lines, CRLF included, of `need` bytes in all: as few lines as RFC 5321's line limit
/// allows, of nearly equal length. `need` is 0, 6, or at least 8 ([`target`] sees to it).
pub fn noop_lines(need: u64) -> Vec<String> {
    if need == 0 {
        return Vec::new();
    }
    let k = need.div_ceil(MAX_LINE);
    let (base, extra) = (need / k, need % k);
    (0..k)
        .map(|i| {
            let len = base + u64::from(i < extra);
            // "NOOP" + (" " + filler) + CRLF; a line of 6 has no argument.
            let filler = len.saturating_sub(7) as usize;
            if filler == 0 { "NOOP\r\n".to_string() } else { format!("NOOP {}\r\n", "x".repeat(filler)) }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_worked_by_hand() {
        assert_eq!(target(Padding::PowerOfTwo, 0, 4096), 4096, "already on a bucket");
        assert_eq!(target(Padding::PowerOfTwo, 0, 3000), 4096);
        // 4093 needs 3 bytes: no NOOP line is that short, so the next bucket.
        assert_eq!(target(Padding::PowerOfTwo, 0, 4093), 8192);
        // 4089 needs 7: "NOOP <CRLF>" would have an empty argument, so the next bucket.
        assert_eq!(target(Padding::PowerOfTwo, 0, 4089), 8192);
        assert_eq!(target(Padding::PowerOfTwo, 0, 4090), 4096, "6 bytes: NOOP<CRLF>");
        assert_eq!(target(Padding::Fixed, 4096, 5000), 8192);
        assert_eq!(target(Padding::Fixed, 4096, 8190), 12288);
        assert_eq!(target(Padding::None, 4096, 5000), 5000);
    }

    #[test]
    fn noop_lines_add_up_and_keep_to_512_octets() {
        for need in [0u64, 6, 8, 9, 511, 512, 513, 1024, 1025, 3096, 100_000] {
            let lines = noop_lines(need);
            assert_eq!(lines.iter().map(|l| l.len() as u64).sum::<u64>(), need, "{need}");
            for l in &lines {
                assert!(l.len() as u64 <= MAX_LINE && l.starts_with("NOOP") && l.ends_with("\r\n"), "{l:?}");
                assert!(l == "NOOP\r\n" || l.as_bytes()[4] == b' ' && l.len() > 7, "{l:?}");
            }
        }
        assert_eq!(noop_lines(8), vec!["NOOP x\r\n".to_string()]);
        assert_eq!(noop_lines(1025).len(), 3, "1025 bytes need three lines of at most 512");
    }
}
