//! What a relay is told: names, addresses, TLS policy, routes, limits and timeouts.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use ipnet::IpNet;

pub use crate::cover_limits::{COVER_MAX_BYTES, COVER_MAX_RATE, COVER_MIN_BYTES};
pub use crate::domain::normalize_domain;
/// A value of [`DeliveryOptions`] out of its range; the relay's error carries it.
pub use crate::error::DeliveryOptionError;

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
    /// DANE (RFC 7672, [`crate::dane`]): authenticate by the MX host's TLSA records where they
    /// are DNSSEC-secure, else as `may`; a bogus TLSA answer defers.
    Dane,
    /// DANE required: mail waits unless the MX host has DNSSEC-secure TLSA records.
    #[serde(rename = "dane-only")]
    DaneOnly,
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
            "dane" => Ok(Self::Dane),
            "dane-only" => Ok(Self::DaneOnly),
            _ => Err(format!("unknown outbound TLS policy {s:?}: use none, may, encrypt, verify, dane or dane-only")),
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
    /// Domains delivered locally, each into `mailbox_dir/<domain>/<user>/` (Postfix's
    /// `mydestination`). Compared after [`normalize_domain`].
    pub local_domains: Vec<String>,
    /// Other domains accepted from any client and passed on to their MX (Postfix's
    /// `relay_domains`, default empty).
    pub relay_domains: Vec<String>,
    /// Clients allowed to relay to any domain, on either listener (Postfix's `mynetworks`,
    /// default empty: nobody). Everyone else may only send to local and relay domains, so the
    /// relay is never open, whatever the resolver can route. Scenario runners list the
    /// injector's address here: it stands for the system's authenticated users. These clients
    /// are also exempt from the per-client connection cap and the session deadline, as Postfix
    /// exempts `$mynetworks` from its anvil limits (`smtpd_client_event_limit_exceptions`).
    pub relay_clients: Vec<IpNet>,
    pub mailbox_dir: PathBuf,
    pub tls_identity: Option<TlsIdentity>,
    /// Versions, suites and groups allowed, both directions.
    pub tls: crate::tls::TlsSettings,
    pub inbound_tls: InboundTls,
    pub outbound_tls: OutboundTls,
    /// Per destination domain overrides of `outbound_tls`.
    pub outbound_tls_by_domain: Vec<(String, OutboundTls)>,
    /// Honour MTA-STS (RFC 8461) on top of the outbound policy: where to find policies.
    pub mta_sts: Option<crate::mta_sts::MtaStsConfig>,
    /// CA certificates (PEM) trusted by `verify`.
    pub ca_pem: Option<String>,
    pub resolver: Arc<dyn MxResolver>,
    /// Session records, one JSON line each.
    pub records: Option<PathBuf>,
    /// NSS key log for Wireshark.
    pub keylog: Option<PathBuf>,
    pub limits: Limits,
    pub timeouts: Timeouts,
    /// How outbound sessions are used: connection reuse, pipelining, size padding.
    pub delivery: DeliveryOptions,
}

/// Bounds on what one peer can make the relay hold. Defaults are Postfix's where it has the
/// same knob (named on each field).
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_message_bytes: usize,
    pub max_recipients: usize,
    /// Sessions at once, per listener (Postfix's `default_process_limit` is 100; the lab keeps
    /// 256 because every other system's queue runner may connect to one MX at once).
    pub max_connections: usize,
    /// Sessions at once from one client address, per listener (Postfix's
    /// `smtpd_client_connection_count_limit`, 50). `relay_clients` are exempt.
    pub max_connections_per_client: usize,
    pub max_line: usize,
    /// DATA and BDAT must arrive at least this fast, bytes per second (Postfix's
    /// `smtpd_min_data_rate`, 500): each read extends the deadline by bytes / rate, never beyond
    /// `Timeouts::data_block` from now.
    pub min_data_rate: u64,
    /// Received headers a message may carry when it arrives; more is a mail loop and the
    /// message is refused with `554 5.4.0` (Postfix's `hopcount_limit`, 50).
    pub hop_limit: usize,
    /// Reply codes kept in one session's record; the rest are counted in its `error` (a client
    /// sending a million NOOPs must not make a record of a million codes).
    pub max_logged_replies: usize,
    /// Bytes of one reply from a next hop, all its lines together; a longer (or endless
    /// multi-line) reply ends the session as a deferral.
    pub max_reply_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 50 << 20,
            max_recipients: 1000,
            max_connections: 256,
            max_connections_per_client: 50,
            max_line: 4096,
            min_data_rate: 500,
            hop_limit: 50,
            max_logged_replies: 1000,
            max_reply_bytes: 64 << 10,
        }
    }
}

/// When a delivered-to connection is kept for further mail to the same destination, as
/// Postfix's SMTP client connection cache decides it (CONNECTION_CACHE_README).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectionReuse {
    /// One connection per delivery (the lab's historical behaviour, and Postfix with
    /// `smtp_connection_cache_on_demand = no`).
    #[default]
    Off,
    /// Postfix's default, `smtp_connection_cache_on_demand = yes`: a connection is kept only
    /// while more mail for its destination is waiting (here: another delivery to the same
    /// destination waits for a connection when this one finishes).
    OnDemand,
    /// Every connection is kept, as Postfix does for the destinations in
    /// `smtp_connection_cache_destinations`.
    Always,
}

impl std::str::FromStr for ConnectionReuse {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(Self::Off),
            "on-demand" => Ok(Self::OnDemand),
            "always" => Ok(Self::Always),
            _ => Err(format!("unknown connection reuse {s:?}: use off, on-demand or always")),
        }
    }
}

/// Outbound session behaviour, one knob per Postfix parameter where Postfix has one (named on
/// each field, with Postfix's default). Times are seconds, as scenarios write them.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryOptions {
    pub connection_reuse: ConnectionReuse,
    /// How long an unused cached connection stays open (`smtp_connection_cache_time_limit`, 2 s).
    pub connection_cache_time_limit: f64,
    /// Times a session may be reused before it is closed, 0 for no limit
    /// (`smtp_connection_reuse_count_limit`, 0): with a limit of N a connection carries up to
    /// N + 1 deliveries.
    pub connection_reuse_count_limit: u32,
    /// How long after it was opened a connection may still be reused
    /// (`smtp_connection_reuse_time_limit`, 300 s).
    pub connection_reuse_time_limit: f64,
    /// Deliveries at once to one destination domain while reuse is on
    /// (`default_destination_concurrency_limit`, 20). With reuse off the relay keeps its
    /// historical behaviour: only the 32 delivery workers bound it.
    pub destination_concurrency_limit: usize,
    /// Pipeline MAIL, RCPT and DATA (RFC 2920) when the server offers PIPELINING. Off is what
    /// Postfix does with `smtp_discard_ehlo_keywords = pipelining`.
    pub pipelining: bool,
    /// Size padding inside TLS: NOOP filler after each message up to a bucket of the
    /// transaction's client bytes (`crate::padding`; no Postfix equivalent).
    pub padding: crate::padding::Padding,
    /// The bucket of `padding = "fixed"`, bytes.
    pub padding_bucket: u64,
    /// Batching (`crate::batching`): hold outbound mail per destination until this many
    /// deliveries wait (0: no size trigger) ...
    pub batch_size: usize,
    /// ... or this many seconds since the first began to wait (0: no time trigger). In
    /// `batch_mode = "pool"`, the time between two flush rounds.
    pub batch_interval: f64,
    /// `threshold` (the batch goes whole when a trigger fires) or `pool` (a timed pool mix: every
    /// `batch_interval` seconds a seeded random part of the held mail goes, the rest waits).
    pub batch_mode: BatchMode,
    /// Pool mix: messages per destination that stay in the pool at a round (unless forced out
    /// by `pool_max_rounds`).
    pub pool_min: usize,
    /// Pool mix: the share of a destination's held messages sent at each round (rounded up),
    /// never dipping below `pool_min`.
    pub pool_fraction: f64,
    /// Pool mix: a message held this many rounds goes at that round whatever the draw, so
    /// nothing is held longer than `pool_max_rounds × batch_interval` after it began to wait.
    pub pool_max_rounds: u32,
    /// Cover traffic (`crate::cover`): dummy messages per second this system sends to the other
    /// systems (Poisson arrivals, destinations uniform), once the caller starts it. 0: none.
    pub cover_rate: f64,
    /// Cover traffic sizes: drawn like the scenario's real traffic, or a fixed size in bytes.
    pub cover_size: CoverSize,
    /// Seeds the pool-mix draws and the cover traffic: set by whoever starts the relay (the
    /// scenario runner, from the scenario's seed), not a scenario key.
    #[serde(skip)]
    pub seed: u64,
}

/// How held outbound mail is released (`crate::batching`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BatchMode {
    /// The whole batch goes when `batch_size` deliveries wait or `batch_interval` has passed.
    #[default]
    Threshold,
    /// Nothing is held, whatever `batch_size` and `batch_interval` say: a sweep's baseline
    /// beside `pool` with the same interval.
    None,
    /// A timed pool mix (Serjantov and Danezis's "timed dynamic pool"): see `pool_*`.
    Pool,
}

/// The sizes of cover messages: `"traffic"` or a number of bytes in a scenario file.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "CoverSizeRepr", into = "CoverSizeRepr")]
pub enum CoverSize {
    /// Drawn from the scenario's own size distribution (log-normal, its median and sigma).
    #[default]
    Traffic,
    /// Every cover message this many bytes (as submitted: headers and body).
    Fixed(u64),
}

/// How a scenario file writes a [`CoverSize`].
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum CoverSizeRepr {
    Word(String),
    Bytes(i64),
}

impl TryFrom<CoverSizeRepr> for CoverSize {
    type Error = String;
    fn try_from(r: CoverSizeRepr) -> Result<Self, String> {
        match r {
            CoverSizeRepr::Word(w) if w == "traffic" => Ok(CoverSize::Traffic),
            CoverSizeRepr::Word(w) => Err(format!("cover_size {w:?}: use \"traffic\" or a size in bytes")),
            CoverSizeRepr::Bytes(n) => u64::try_from(n)
                .map(CoverSize::Fixed)
                .map_err(|_| format!("cover_size {n}: a size in bytes is not negative")),
        }
    }
}

impl From<CoverSize> for CoverSizeRepr {
    fn from(c: CoverSize) -> Self {
        match c {
            CoverSize::Traffic => CoverSizeRepr::Word("traffic".into()),
            CoverSize::Fixed(n) => CoverSizeRepr::Bytes(i64::try_from(n).unwrap_or(i64::MAX)),
        }
    }
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        Self {
            connection_reuse: ConnectionReuse::Off,
            connection_cache_time_limit: 2.0,
            connection_reuse_count_limit: 0,
            connection_reuse_time_limit: 300.0,
            destination_concurrency_limit: 20,
            pipelining: true,
            padding: crate::padding::Padding::None,
            padding_bucket: 4096,
            batch_size: 0,
            batch_interval: 0.0,
            batch_mode: BatchMode::Threshold,
            pool_min: 0,
            pool_fraction: 0.5,
            pool_max_rounds: 10,
            cover_rate: 0.0,
            cover_size: CoverSize::Traffic,
            seed: 0,
        }
    }
}

impl DeliveryOptions {
    /// Checks values a scenario may get wrong; the error names the field
    /// ([`DeliveryOptionError::field`]).
    pub fn check(&self) -> Result<(), DeliveryOptionError> {
        use DeliveryOptionError as E;
        let seconds = |field: &'static str, value: f64| {
            if (0.0..=86_400.0).contains(&value) { Ok(()) } else { Err(E::NotSeconds { field, value }) }
        };
        seconds("connection_cache_time_limit", self.connection_cache_time_limit)?;
        seconds("connection_reuse_time_limit", self.connection_reuse_time_limit)?;
        seconds("batch_interval", self.batch_interval)?;
        if self.padding == crate::padding::Padding::Fixed && self.padding_bucket < 512 {
            return Err(E::PaddingBucket { bytes: self.padding_bucket });
        }
        // Held deliveries keep their delivery workers (32): a larger batch could never fill.
        if self.batch_size > 32 {
            return Err(E::BatchSize { size: self.batch_size });
        }
        if self.batch_mode == BatchMode::Pool {
            if self.batch_interval <= 0.0 {
                return Err(E::PoolWithoutInterval);
            }
            if self.batch_size != 0 {
                return Err(E::PoolWithBatchSize);
            }
        }
        if !(0.0..=1.0).contains(&self.pool_fraction) {
            return Err(E::PoolFraction { value: self.pool_fraction });
        }
        if self.pool_max_rounds == 0 {
            return Err(E::PoolMaxRounds);
        }
        if self.pool_min > 32 {
            return Err(E::PoolMin { value: self.pool_min });
        }
        if !(0.0..=COVER_MAX_RATE).contains(&self.cover_rate) {
            return Err(E::CoverRate { value: self.cover_rate });
        }
        if let CoverSize::Fixed(bytes) = self.cover_size
            && !(COVER_MIN_BYTES..=COVER_MAX_BYTES).contains(&bytes)
        {
            return Err(E::CoverSize { bytes });
        }
        if self.destination_concurrency_limit == 0 {
            return Err(E::DestinationConcurrency);
        }
        Ok(())
    }

    pub fn cache_time_limit(&self) -> Duration {
        Duration::from_secs_f64(self.connection_cache_time_limit.clamp(0.0, 86_400.0))
    }

    pub fn batch_interval(&self) -> Duration {
        Duration::from_secs_f64(self.batch_interval.clamp(0.0, 86_400.0))
    }

    pub fn reuse_time_limit(&self) -> Duration {
        Duration::from_secs_f64(self.connection_reuse_time_limit.clamp(0.0, 86_400.0))
    }
}

/// RFC 5321 §4.5.3.2 timeouts, and the deadlines no single read or write can stretch.
/// Scenarios shorten them; the defaults are the RFC's and Postfix's.
#[derive(Debug, Clone)]
pub struct Timeouts {
    pub greeting: Duration,
    pub command: Duration,
    /// Server side: the longest wait for one read of DATA or BDAT content, and the most a
    /// read can extend the DATA deadline to (see `Limits::min_data_rate`).
    pub data_block: Duration,
    pub data_end: Duration,
    /// Server side: how long to wait for the next command.
    pub server_idle: Duration,
    /// Server side: how long one write of replies may take; a client that stops reading is cut
    /// off after it (Postfix's `smtpd_timeout`, 300 s, bounds writes as well as reads).
    pub write: Duration,
    /// Server side: the longest a session may last, whatever it does (Postfix has no such
    /// limit; one hour is this relay's choice). `relay_clients` are exempt.
    pub session: Duration,
    /// Delivery retry: first delay, doubled each time up to `retry_max`.
    pub retry_first: Duration,
    pub retry_max: Duration,
    /// A message still undelivered this long after it was received is bounced (Postfix's
    /// `maximal_queue_lifetime`, 5 days). Zero bounces after the first failed attempt.
    pub queue_lifetime: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            greeting: Duration::from_secs(300),
            command: Duration::from_secs(300),
            data_block: Duration::from_secs(180),
            data_end: Duration::from_secs(600),
            server_idle: Duration::from_secs(300),
            write: Duration::from_secs(300),
            session: Duration::from_secs(3600),
            retry_first: Duration::from_secs(60),
            retry_max: Duration::from_secs(3600),
            queue_lifetime: Duration::from_secs(5 * 24 * 3600),
        }
    }
}

impl RelayConfig {
    /// The outbound policy for a destination domain. `Example.ORG.` gets the policy of
    /// `example.org`: a trailing dot or capitals must not escape a `verify`.
    pub fn outbound_policy(&self, domain: &str) -> OutboundTls {
        let domain = normalize_domain(domain);
        self.outbound_tls_by_domain
            .iter()
            .find(|(d, _)| normalize_domain(d) == domain)
            .map(|(_, p)| *p)
            .unwrap_or(self.outbound_tls)
    }

    /// Whether mail for `domain` is delivered here. A trailing-dot spelling of a local domain
    /// is local too (otherwise it would go out through DNS and come back, in a loop).
    pub fn is_local(&self, domain: &str) -> bool {
        let domain = normalize_domain(domain);
        self.local_domains.iter().any(|d| normalize_domain(d) == domain)
    }

    /// Whether any client may send mail for `domain` here to be passed on.
    pub fn is_relay_domain(&self, domain: &str) -> bool {
        let domain = normalize_domain(domain);
        self.relay_domains.iter().any(|d| normalize_domain(d) == domain)
    }

    /// Whether a client at `ip` may relay to any domain.
    pub fn is_relay_client(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.relay_clients.iter().any(|net| net.contains(&ip))
    }
}

/// Parses a client network as Postfix's `mynetworks` writes them: `10.0.0.0/8`, `::1/128`, or a
/// bare address (one host).
pub fn parse_client_network(text: &str) -> Result<IpNet, String> {
    let t = text.trim();
    t.parse::<IpNet>()
        .or_else(|_| t.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{text:?} is not a network or an address: use e.g. 10.0.0.0/8, 127.0.0.1 or ::1/128"))
}

/// An IPv4 client seen through an IPv6 socket (`::ffff:127.0.0.1`) is the IPv4 client.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each value out of range names its field, and says what it may be.
    #[test]
    fn delivery_option_errors_name_the_field() {
        let check = |change: fn(&mut DeliveryOptions)| {
            let mut o = DeliveryOptions::default();
            change(&mut o);
            let e = o.check().expect_err("out of range");
            (e.field(), e.to_string())
        };
        assert_eq!(
            check(|o| o.connection_reuse_time_limit = -1.0),
            ("connection_reuse_time_limit", "-1 is not a time in seconds from 0 to 86400".into())
        );
        assert_eq!(
            check(|o| o.batch_size = 33),
            ("batch_size", "33: at most 32 (the relay's delivery workers)".into())
        );
        assert_eq!(check(|o| o.batch_mode = BatchMode::Pool).0, "batch_interval");
        assert_eq!(check(|o| o.pool_max_rounds = 0).0, "pool_max_rounds");
        assert_eq!(
            check(|o| o.destination_concurrency_limit = 0),
            ("destination_concurrency_limit", "must be at least 1".into())
        );
        let (field, text) = check(|o| o.cover_size = CoverSize::Fixed(10));
        assert_eq!(field, "cover_size");
        assert!(text.starts_with("10 bytes: use \"traffic\" or a size from 300 to "), "{text}");
        // The relay's error puts the field after `delivery.`.
        let o = DeliveryOptions { pool_fraction: 2.0, ..Default::default() };
        let e = crate::RelayError::from(o.check().expect_err("fraction"));
        assert_eq!(e.to_string(), "configuration: delivery.pool_fraction: 2 is not a share between 0 and 1");
    }

    /// A per-domain `verify` holds for every spelling of the domain.
    #[test]
    fn per_domain_policy_ignores_case_and_root_dot() {
        let cfg = RelayConfig {
            system: "t".into(),
            hostname: "mx.t.example".into(),
            listen: "127.0.0.1:25".parse().expect("addr"),
            submission: None,
            bind: None,
            spool: PathBuf::new(),
            local_domains: vec!["Home.Example".into()],
            relay_domains: vec!["relayed.example.".into()],
            relay_clients: Vec::new(),
            mailbox_dir: PathBuf::new(),
            tls_identity: None,
            tls: Default::default(),
            inbound_tls: InboundTls::May,
            outbound_tls: OutboundTls::May,
            outbound_tls_by_domain: vec![("secure.example".into(), OutboundTls::Verify)],
            mta_sts: None,
            ca_pem: None,
            resolver: Arc::new(crate::StaticResolver::new()),
            records: None,
            keylog: None,
            limits: Limits::default(),
            timeouts: Timeouts::default(),
            delivery: DeliveryOptions::default(),
        };
        for spelling in ["secure.example", "Secure.Example", "SECURE.EXAMPLE.", "secure.example."] {
            assert_eq!(cfg.outbound_policy(spelling), OutboundTls::Verify, "{spelling}");
        }
        assert_eq!(cfg.outbound_policy("other.example"), OutboundTls::May);
        assert!(cfg.is_local("home.example.") && cfg.is_local("HOME.example"));
        assert!(cfg.is_relay_domain("Relayed.Example"));
        assert!(!cfg.is_local("home.example.evil"));
    }

    #[test]
    fn client_networks_parse_as_postfix_writes_them() {
        let host = parse_client_network("127.0.0.1").expect("address");
        assert!(host.contains(&"127.0.0.1".parse::<IpAddr>().expect("ip")));
        assert!(!host.contains(&"127.0.0.2".parse::<IpAddr>().expect("ip")));
        let net = parse_client_network("10.233.0.0/16").expect("network");
        assert!(net.contains(&"10.233.255.254".parse::<IpAddr>().expect("ip")));
        assert!(parse_client_network("10.0.0.0/33").is_err());
        assert!(parse_client_network("mail.example").is_err());
    }
}
