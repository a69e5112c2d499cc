//! Domain names as the relay compares them: one spelling for every comparison, lookup and
//! directory name (config, routing, MTA-STS, TLS-RPT and the sessions all use it).

/// The one spelling of a domain used for every comparison, lookup and directory name: ASCII
/// lower case, without surrounding spaces or a trailing root dot (`Dest.Example.` is
/// `dest.example`), as DNS treats them as one name.
pub fn normalize_domain(domain: &str) -> String {
    let d = domain.trim();
    d.strip_suffix('.').unwrap_or(d).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_compare_without_case_or_root_dot() {
        assert_eq!(normalize_domain("Dest.Example."), "dest.example");
        assert_eq!(normalize_domain(" dest.example "), "dest.example");
        // Only one root dot is a spelling of the same name; two are not a domain at all.
        assert_eq!(normalize_domain("dest.example.."), "dest.example.");
    }
}
