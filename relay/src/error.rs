//! Relay errors, by whose fault: the local machine, the peer, or a policy.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(
        "cannot listen on {addr}: {source} (is another process using it? on loopback, any 127.x.y.z works without setup)"
    )]
    Listen { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("spool {path}: {source}")]
    Spool { path: PathBuf, source: std::io::Error },
    #[error("TLS configuration: {0}")]
    TlsConfig(String),
    #[error("{path}: {why}")]
    BadFile { path: PathBuf, why: String },
    #[error("configuration: {0}")]
    Config(String),
    #[error("DNS: {0}")]
    Dns(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}
