//! The smtplab relay: a real ESMTP relay (RFC 5321) with opportunistic STARTTLS (RFC 3207).
//!
//! It accepts mail on an MX listener (and optionally a submission listener that the threat model
//! keeps off the tapped lines), writes each accepted message durably to a spool before replying
//! `250`, and delivers it: locally into a mailbox directory, or to the next system's MX found
//! through an [`MxResolver`], from the system's own address, with STARTTLS per [`OutboundTls`].
//! Every SMTP session, inbound and outbound, becomes one JSON line in the records file: the
//! ground truth of what crossed each line.

mod batching;
pub mod bounce;
mod client;
pub mod config;
mod connection_cache;
pub mod cover;
mod cover_limits;
mod cover_marker;
pub mod dane;
pub mod delivery;
pub mod dns;
pub mod domain;
pub mod error;
pub mod files;
pub mod mta_sts;
mod outbound_session;
pub mod padding;
mod queue_file;
pub mod records;
pub mod requiretls;
pub mod resolver;
pub mod server;
mod shared;
pub mod spool;
pub mod tls;
pub mod tlsrpt;
pub mod transport;

mod relay;

pub use config::{
    BatchMode, ConnectionReuse, CoverSize, DeliveryOptions, InboundTls, OutboundTls, RelayConfig, TlsIdentity,
};
pub use dns::DnsResolver;
pub use error::RelayError;
pub use relay::{Relay, RelayHandle};
pub use resolver::{MxResolver, MxTarget, StaticResolver, TemporaryFailure};
pub use tls::{CryptoBackend, TlsSettings};

/// Seconds since the Unix epoch as a float, the time format of every record.
pub fn now_secs() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Lower-case hex sha256, the content hash every record uses.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
