//! Relay errors, by whose fault: the local machine (an address taken, the spool's files), the
//! configuration (TLS settings, certificates and keys, delivery and cover options, the DNS
//! resolver), or a queue file's own defect. Each keeps what caused it as its `source` (the I/O,
//! rustls, PEM or hickory error) or, when the input itself is wrong, an enum of what was wrong
//! ([`TlsSettingsError`], [`DeliveryOptionError`], [`CoverError`], [`QueueFileDefect`]). Those
//! enums live here, beside the error that carries them (all but the queue file's, which is
//! `queue_file`'s), and the modules whose checks return them re-export them.

use std::net::SocketAddr;
use std::path::PathBuf;

use hickory_resolver::net::NetError;
use hickory_resolver::proto::serialize::txt::ParseError;

pub use crate::queue_file::QueueFileDefect;

use crate::cover_limits::{COVER_MAX_BYTES, COVER_MAX_RATE, COVER_MIN_BYTES};

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    // The local machine.
    #[error(
        "cannot listen on {addr}: {source} (is another process using it? on loopback, any 127.x.y.z works without setup)"
    )]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("spool {path}: {source}")]
    Spool { path: PathBuf, source: std::io::Error },
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A spool task on the blocking pool panicked or was cancelled.
    #[error("a relay task failed: {0}")]
    Task(#[source] tokio::task::JoinError),

    // The TLS configuration.
    /// A TLS version, cipher suite or key-exchange group the relay does not have.
    #[error("TLS configuration: {0}")]
    TlsSettings(#[from] TlsSettingsError),
    /// A certificate chain or key whose PEM text cannot be read.
    #[error("TLS configuration: bad {item} PEM: {source}")]
    Pem { item: PemItem, source: std::io::Error },
    /// A PEM text without the certificate or key it should hold.
    #[error("TLS configuration: no {0} in PEM")]
    NoPem(PemItem),
    #[error("TLS configuration: bad CA certificate: {0}")]
    CaCertificate(#[source] rustls::Error),
    /// The versions allowed leave none of the cipher suites allowed.
    #[error("TLS configuration: {0} (each TLS version allowed needs one of its cipher suites in tls.ciphers)")]
    TlsVersions(#[source] rustls::Error),
    /// The certificate chain and private key do not make a server identity (a key that is not
    /// the certificate's, a key type the provider lacks).
    #[error("TLS configuration: the certificate chain and key: {0}")]
    TlsIdentity(#[source] rustls::Error),
    /// The verifier of MTA-STS policy hosts and MX certificates (from the CA certificates).
    #[error("TLS configuration: MTA-STS verifier: {0}")]
    MtaStsVerifier(#[source] rustls::client::VerifierBuilderError),

    // The delivery configuration.
    #[error("configuration: delivery.{}: {}", .0.field(), .0)]
    Delivery(#[from] DeliveryOptionError),
    #[error("configuration: {0}")]
    Cover(#[from] CoverError),

    // DNS. (hickory's error is boxed: it is 88 bytes, and every `Result` of the relay and of the
    // scenarios that hold a `RelayError` would carry them.)
    #[error("DNS: resolver for {server}: {source}")]
    Resolver { server: SocketAddr, source: Box<NetError> },
    #[error("DNS: MTA-STS resolver for {server}: {source}")]
    MtaStsResolver { server: SocketAddr, source: Box<NetError> },
    #[error(
        "DNS: trust anchor file {path}: {source}; give a file of DNSKEY records in presentation format \
         (a run's pki/dnssec-root.key)"
    )]
    TrustAnchorFile { path: PathBuf, source: ParseError },

    // A queue file's own defect.
    #[error("{path}: unreadable queue file ({defect}); left in place for a person")]
    BadQueueFile { path: PathBuf, defect: QueueFileDefect },
}

/// A name in [`TlsSettings`](crate::tls::TlsSettings) the relay does not have;
/// [`TlsSettingsError::list`] names the list it is in, the message what is available.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsSettingsError {
    #[error("unknown TLS version {version:?}: use 1.2 or 1.3")]
    UnknownVersion { version: String },
    /// `available`: every suite the provider has.
    #[error("unknown cipher suite in {given:?}; available: {}", .available.join(", "))]
    UnknownCipher { given: Vec<String>, available: Vec<String> },
    /// The post-quantum hybrid asked of ring, which lacks it; `ring_has`: its groups.
    #[error("X25519MLKEM768 needs the aws-lc-rs provider (ring has {}); drop provider = \"ring\"", .ring_has.join(", "))]
    HybridNeedsAwsLc { ring_has: Vec<String> },
    #[error("unknown key-exchange group in {given:?}; available: {}", .available.join(", "))]
    UnknownGroup { given: Vec<String>, available: Vec<String> },
}

impl TlsSettingsError {
    /// The list of [`TlsSettings`](crate::tls::TlsSettings) at fault: "versions", "ciphers" or "groups".
    pub fn list(&self) -> &'static str {
        match self {
            TlsSettingsError::UnknownVersion { .. } => "versions",
            TlsSettingsError::UnknownCipher { .. } => "ciphers",
            TlsSettingsError::HybridNeedsAwsLc { .. } | TlsSettingsError::UnknownGroup { .. } => "groups",
        }
    }
}

/// What a PEM text was to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PemItem {
    Certificate,
    PrivateKey,
}

impl std::fmt::Display for PemItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PemItem::Certificate => "certificate",
            PemItem::PrivateKey => "private key",
        })
    }
}

/// A value of [`DeliveryOptions`](crate::config::DeliveryOptions) out of its range; [`DeliveryOptionError::field`] names it,
/// and the message says what it may be.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeliveryOptionError {
    #[error("{value} is not a time in seconds from 0 to 86400")]
    NotSeconds { field: &'static str, value: f64 },
    #[error("{bytes} bytes: a bucket is at least 512 bytes")]
    PaddingBucket { bytes: u64 },
    #[error("{size}: at most 32 (the relay's delivery workers)")]
    BatchSize { size: usize },
    #[error("batch_mode = \"pool\" needs the time between rounds: above 0")]
    PoolWithoutInterval,
    #[error("a pool mix sends by rounds, not by size: leave batch_size at 0")]
    PoolWithBatchSize,
    #[error("{value} is not a share between 0 and 1")]
    PoolFraction { value: f64 },
    #[error("must be at least 1 (mail must leave the pool)")]
    PoolMaxRounds,
    #[error("{value}: at most 32 (the relay's delivery workers)")]
    PoolMin { value: usize },
    #[error("{value} is not a rate in messages per second from 0 to {COVER_MAX_RATE}")]
    CoverRate { value: f64 },
    #[error("{bytes} bytes: use \"traffic\" or a size from {COVER_MIN_BYTES} to {COVER_MAX_BYTES} bytes")]
    CoverSize { bytes: u64 },
    #[error("must be at least 1")]
    DestinationConcurrency,
}

impl DeliveryOptionError {
    /// The field of `[delivery]` at fault.
    pub fn field(&self) -> &'static str {
        match self {
            DeliveryOptionError::NotSeconds { field, .. } => field,
            DeliveryOptionError::PaddingBucket { .. } => "padding_bucket",
            DeliveryOptionError::BatchSize { .. } | DeliveryOptionError::PoolWithBatchSize => "batch_size",
            DeliveryOptionError::PoolWithoutInterval => "batch_interval",
            DeliveryOptionError::PoolFraction { .. } => "pool_fraction",
            DeliveryOptionError::PoolMaxRounds => "pool_max_rounds",
            DeliveryOptionError::PoolMin { .. } => "pool_min",
            DeliveryOptionError::CoverRate { .. } => "cover_rate",
            DeliveryOptionError::CoverSize { .. } => "cover_size",
            DeliveryOptionError::DestinationConcurrency => "destination_concurrency_limit",
        }
    }
}

/// A [`CoverConfig`](crate::cover::CoverConfig) the generator cannot run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CoverError {
    #[error("cover rate {rate}: above 0, at most {}", COVER_MAX_RATE)]
    Rate { rate: f64 },
    #[error("cover traffic needs at least one destination domain")]
    NoDestinations,
    #[error("cover size {bytes}: from {COVER_MIN_BYTES} to {COVER_MAX_BYTES} bytes")]
    Size { bytes: u64 },
    #[error("cover sizes: median {median} must be above 0 and sigma {sigma} not negative")]
    LogNormal { median: f64, sigma: f64 },
}
