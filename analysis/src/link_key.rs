//! The TCP 4-tuple as one text key, for tap records without a `uid`.
//!
//! Ground truth stores each end as the text of a Rust `SocketAddr` ("127.0.1.1:40000",
//! "[::1]:40000") and ingest also stores it parsed (host, port), which is what hops are joined to
//! the tap's Zeek-style `id.*` columns by. When tap records lack uids, they are keyed by
//! "client|server" with the hosts written the `SocketAddr` way, IPv6 in brackets.

use polars::prelude::*;

/// Column name of the key in intermediate frames.
pub const LINK: &str = "link";

/// One end written as `SocketAddr` does: IPv6 hosts in brackets.
pub fn socket_text(host: &str, port: u16) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

/// The key of a tap record from its Zeek `id.*` columns.
pub fn tap_link_expr() -> Expr {
    (socket_expr("id.orig_h", "id.orig_p") + lit("|") + socket_expr("id.resp_h", "id.resp_p")).alias(LINK)
}

/// [`socket_text`] as a polars expression.
fn socket_expr(host: &str, port: &str) -> Expr {
    let port = col(port).cast(DataType::String);
    let is_ipv6 = col(host).str().count_matches(lit(":"), true).gt(lit(0));
    let host = when(is_ipv6).then(lit("[") + col(host) + lit("]")).otherwise(col(host));
    host + lit(":") + port
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_key_matches_socket_addr_text() {
        let df = df!(
            "id.orig_h" => ["127.0.1.1", "::1"],
            "id.orig_p" => [40000u32, 40001],
            "id.resp_h" => ["127.0.1.2", "::1"],
            "id.resp_p" => [25u32, 2525],
        )
        .expect("small frame");
        let out = df.lazy().select([tap_link_expr()]).collect().expect("key expression runs");
        let keys: Vec<Option<&str>> =
            out.column(LINK).expect("key column").str().expect("string").into_iter().collect();
        assert_eq!(keys, [Some("127.0.1.1:40000|127.0.1.2:25"), Some("[::1]:40001|[::1]:2525")]);
        let addr: std::net::SocketAddr = "[::1]:40001".parse().expect("valid address");
        assert_eq!(socket_text("::1", 40001), addr.to_string());
    }
}
