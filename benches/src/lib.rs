//! Helpers shared by the criterion benches in `benches/benches/`: certificates and in-memory
//! rustls pairs ([`tls`]), realistic messages ([`mail`]), the bench's small SMTP client
//! ([`smtp`]) and a pcap writer that builds captures for the tap ([`pcap`]).
//!
//! See BENCHMARKS.md at the workspace root for what each bench measures and how to run it.

pub mod mail;
pub mod pcap;
pub mod smtp;
pub mod tls;

/// True when criterion runs the bench binary as a test (`cargo test --benches`, or
/// `cargo bench -- --test`): each routine then runs once, so benches shrink their setup (fewer
/// sessions in generated captures) to keep CI fast. Mirrors criterion 0.5's own rule.
pub fn test_mode() -> bool {
    let args: Vec<String> = std::env::args().collect();
    let bench = args.iter().any(|a| a == "--bench");
    let test = args.iter().any(|a| a == "--test");
    !bench || test
}

/// "1KB", "16KB", "1MB": the labels the benches use for sizes (powers of 1024).
pub fn size_label(bytes: usize) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{}MB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{}KB", bytes >> 10)
    } else {
        format!("{bytes}B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(size_label(1024), "1KB");
        assert_eq!(size_label(10 << 20), "10MB");
        assert_eq!(size_label(100 << 10), "100KB");
        assert_eq!(size_label(1000), "1000B");
    }
}
