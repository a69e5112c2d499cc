//! What a relay is told: names, addresses, TLS policy, routes, limits and timeouts.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::resolver::MxResolver;

/// Inbound STARTTLS policy, as Postfix's `smtpd_tls_security_level` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum InboundTls {
    /// Never offer STARTTLS.
    None,
    /// Offer STARTTLS; accept mail without it.
    #[default]
    May,
    /// Offer STARTTLS and refuse MAIL before it (`530 5.7.0`).
    Encrypt,
}

/// Outbound STARTTLS policy, as Postfix's `smtp_tls_security_level` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OutboundTls {
    /// Never use STARTTLS.
    None,
    /// The 1997 proposal's mode: use STARTTLS when offered, accept any certificate, else send in
    /// the clear.
    #[default]
    May,
    /// STARTTLS required, any certificate accepted; defer when not offered.
    Encrypt,
    /// STARTTLS required and the certificate must chain to the configured CA and name the MX.
    Verify,
}

impl std::str::FromStr for InboundTls {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Self::None),
            "may" => Ok(Self::May),
            "encrypt" => Ok(Self::Encrypt),
            _ => Err(format!("unknown inbound TLS policy {s:?}: use none, may or encrypt")),
        }
    }
}

impl std::str::FromStr for OutboundTls {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Self::None),
            "may" => Ok(Self::May),
            "encrypt" => Ok(Self::Encrypt),
            "verify" => Ok(Self::Verify),
            _ => Err(format!("unknown outbound TLS policy {s:?}: use none, may, encrypt or verify")),
        }
    }
}

/// A certificate chain and key, PEM encoded.
#[derive(Debug, Clone)]
pub struct TlsIdentity {
    pub cert_chain_pem: String,
    pub key_pem: String,
}

/// Everything one relay needs. Scenario runners fill it in; `smtplab relay` builds it from flags.
#[derive(Clone)]
pub struct RelayConfig {
    /// The system's name in records (scenario systems use their own names; standalone, the host).
    pub system: String,
    /// The name in the greeting, EHLO and Received headers.
    pub hostname: String,
    /// The MX listener (system to system).
    pub listen: SocketAddr,
    /// An optional submission listener: where the system's users hand in mail.
    pub submission: Option<SocketAddr>,
    /// Source address of outgoing connections, so an eavesdropper can attribute them.
    pub bind: Option<IpAddr>,
    pub spool: PathBuf,
    /// Domains delivered locally, each into `mailbox_dir/<domain>/<user>/`.
    pub local_domains: Vec<String>,
    pub mailbox_dir: PathBuf,
    pub tls_identity: Option<TlsIdentity>,
    /// Versions, suites and groups allowed, both directions.
    pub tls: crate::tls::TlsSettings,
    pub inbound_tls: InboundTls,
    pub outbound_tls: OutboundTls,
    /// Per destination domain overrides of `outbound_tls`.
    pub outbound_tls_by_domain: Vec<(String, OutboundTls)>,
    /// CA certificates (PEM) trusted by `verify`.
    pub ca_pem: Option<String>,
    pub resolver: Arc<dyn MxResolver>,
    /// Session records, one JSON line each.
    pub records: Option<PathBuf>,
    /// NSS key log for Wireshark.
    pub keylog: Option<PathBuf>,
    pub limits: Limits,
    pub timeouts: Timeouts,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_message_bytes: usize,
    pub max_recipients: usize,
    pub max_connections: usize,
    pub max_line: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_message_bytes: 50 << 20, max_recipients: 1000, max_connections: 256, max_line: 4096 }
    }
}

/// RFC 5321 §4.5.3.2 timeouts. Scenarios shorten them; the defaults are the RFC's.
#[derive(Debug, Clone)]
pub struct Timeouts {
    pub greeting: Duration,
    pub command: Duration,
    pub data_block: Duration,
    pub data_end: Duration,
    /// Server side: how long to wait for the next command.
    pub server_idle: Duration,
    /// Delivery retry: first delay, doubled each time up to `retry_max`.
    pub retry_first: Duration,
    pub retry_max: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            greeting: Duration::from_secs(300),
            command: Duration::from_secs(300),
            data_block: Duration::from_secs(180),
            data_end: Duration::from_secs(600),
            server_idle: Duration::from_secs(300),
            retry_first: Duration::from_secs(60),
            retry_max: Duration::from_secs(3600),
        }
    }
}

impl RelayConfig {
    /// The outbound policy for a destination domain.
    pub fn outbound_policy(&self, domain: &str) -> OutboundTls {
        self.outbound_tls_by_domain
            .iter()
            .find(|(d, _)| d.eq_ignore_ascii_case(domain))
            .map(|(_, p)| *p)
            .unwrap_or(self.outbound_tls)
    }

    pub fn is_local(&self, domain: &str) -> bool {
        self.local_domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
    }
}
