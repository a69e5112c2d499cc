//! MTA-STS (RFC 8461) on the sending side: before delivering to a domain, look up
//! `_mta-sts.<domain>` TXT, fetch the policy over HTTPS from `mta-sts.<domain>` (certificate
//! checked against the configured CA and that name), cache it for its `max_age`, and refetch
//! when the TXT record's `id` changes.
//!
//! What the relay does with a policy is in [`crate::delivery`]: `enforce` skips MX hosts that
//! match no `mx` pattern and requires STARTTLS with a certificate verified for the MX name,
//! deferring otherwise; `testing` delivers as the outbound policy would and records what would
//! have failed; `none` changes nothing. Every failure is an [`StsFailure`], whose
//! [`StsFailure::result_type`] is the RFC 8460 (TLS-RPT) result type.
//!
//! Trust on first use is the property smtplab measures: a policy, once fetched, holds until it
//! expires whatever DNS or the network says later (RFC 8461 §5.1), so an attacker who arrives
//! after the first contact is stopped; one present from the first contact, who blocks the fetch,
//! leaves the sender with no policy at all (§10.2).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{Name, RData};
use http_body_util::{BodyExt, Empty, Limited};
// RFC 8460's result type, from the records it is written into (not from `crate::tlsrpt`,
// which re-exports it and files sessions under this module's policies).
use records::tlsrpt::ResultType;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{ServerName, UnixTime};
use rustls::{CertificateError, RootCertStore};

use crate::error::RelayError;

/// Bytes a policy body may have. The RFC leaves the limit to the sender; 64 KiB is
/// postfix-mta-sts-resolver's, and a real policy is a few hundred bytes.
pub const MAX_POLICY_BYTES: usize = 64 << 10;

/// RFC 8461 §3.2: `max_age` is at most 31557600 seconds (about a year).
pub const MAX_AGE_LIMIT: u64 = 31_557_600;

/// The well-known path of the policy (RFC 8461 §3.3).
pub const POLICY_PATH: &str = "/.well-known/mta-sts.txt";

/// How a relay finds and fetches policies.
#[derive(Debug, Clone)]
pub struct MtaStsConfig {
    /// The only DNS server asked (TXT of `_mta-sts.D`, A of `mta-sts.D`).
    pub dns: SocketAddr,
    /// Port of the policy servers: 443 in the RFC; the lab moves it as it moves SMTP's 25.
    pub https_port: u16,
    /// CA certificates (PEM) trusted for policy hosts and, under `enforce`, for MX hosts.
    pub ca_pem: String,
    /// The longest a whole fetch (lookup, connect, handshake, response) may take.
    pub fetch_timeout: Duration,
}

/// A policy's mode (RFC 8461 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Enforce,
    Testing,
    None,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Testing => "testing",
            Mode::None => "none",
        }
    }
}

/// A parsed policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub mode: Mode,
    pub max_age: u64,
    /// MX patterns: a host name, or `*.` and a suffix matching exactly one more leftmost label.
    pub mx: Vec<String>,
}

/// Why a policy file is not a policy (all are `sts-policy-invalid`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct PolicyError {
    /// 1-based line of the fault (0: the file as a whole).
    pub line: usize,
    pub message: String,
}

impl Policy {
    /// Parses a policy file as RFC 8461 §3.2 defines it: `key: value` lines ended by LF or
    /// CRLF; `version: STSv1`, `mode` and `max_age` required, `mx` at least once unless the
    /// mode is `none`; unknown keys ignored; a repeated `version`, `mode` or `max_age` keeps the
    /// first, as the RFC's parsers do not define more.
    pub fn parse(body: &[u8]) -> Result<Policy, PolicyError> {
        let text =
            std::str::from_utf8(body).map_err(|e| PolicyError { line: 0, message: format!("not UTF-8 text: {e}") })?;
        let (mut version, mut mode, mut max_age, mut mx) = (None, None, None, Vec::new());
        for (i, raw) in text.split('\n').enumerate() {
            let line = i + 1;
            let l = raw.strip_suffix('\r').unwrap_or(raw);
            if l.trim().is_empty() {
                continue;
            }
            let bad = |message: String| PolicyError { line, message };
            let Some((key, value)) = l.split_once(':') else {
                return Err(bad(format!("{l:?} is not a \"key: value\" line")));
            };
            // ABNF: the key is at the line start, whitespace allowed after the colon and at the end.
            let value = value.trim_matches([' ', '\t']);
            match key {
                "version" if version.is_none() => {
                    if value != "STSv1" {
                        return Err(bad(format!("version {value:?}: only STSv1 exists")));
                    }
                    version = Some(line);
                }
                "mode" if mode.is_none() => {
                    mode = Some(match value {
                        "enforce" => Mode::Enforce,
                        "testing" => Mode::Testing,
                        "none" => Mode::None,
                        other => return Err(bad(format!("mode {other:?}: use enforce, testing or none"))),
                    });
                }
                "max_age" if max_age.is_none() => {
                    let ok = !value.is_empty() && value.len() <= 10 && value.bytes().all(|b| b.is_ascii_digit());
                    let n: u64 = if ok { value.parse().unwrap_or(u64::MAX) } else { u64::MAX };
                    if n > MAX_AGE_LIMIT {
                        return Err(bad(format!("max_age {value:?}: seconds, 0 to {MAX_AGE_LIMIT}")));
                    }
                    max_age = Some(n);
                }
                "mx" => {
                    check_mx_pattern(value).map_err(bad)?;
                    mx.push(value.to_ascii_lowercase());
                }
                _ => {}
            }
        }
        let missing = |key: &str| PolicyError { line: 0, message: format!("no {key} line") };
        version.ok_or_else(|| missing("version"))?;
        let mode = mode.ok_or_else(|| missing("mode"))?;
        let max_age = max_age.ok_or_else(|| missing("max_age"))?;
        if mx.is_empty() && mode != Mode::None {
            return Err(missing("mx"));
        }
        Ok(Policy { mode, max_age, mx })
    }

    /// The policy as lines of its file, in RFC 8461 §3.2's order (`version`, `mode`, each `mx`,
    /// `max_age`; the order of RFC 8460's report example and of smtplab's policy servers): the
    /// `policy-string` of a TLS-RPT report. Keys the parser ignores are not kept.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec!["version: STSv1".to_string(), format!("mode: {}", self.mode.name())];
        lines.extend(self.mx.iter().map(|m| format!("mx: {m}")));
        lines.push(format!("max_age: {}", self.max_age));
        lines
    }

    /// Whether `host` (an MX host name) matches a pattern (RFC 8461 §4.1): equal ignoring case
    /// and a root dot, or `*.suffix` with exactly one label before the suffix.
    pub fn matches_mx(&self, host: &str) -> bool {
        let host = crate::domain::normalize_domain(host);
        self.mx.iter().any(|p| match p.strip_prefix("*.") {
            Some(suffix) => host
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == crate::domain::normalize_domain(suffix)),
            None => host == crate::domain::normalize_domain(p),
        })
    }
}

/// An `mx` value: a domain name, or `*.` and a domain name.
fn check_mx_pattern(p: &str) -> Result<(), String> {
    let name = p.strip_prefix("*.").unwrap_or(p);
    let label_ok = |l: &str| {
        !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if name.trim_end_matches('.').split('.').all(label_ok) {
        Ok(())
    } else {
        Err(format!("mx {p:?} is not a host name or *.suffix pattern"))
    }
}

/// The `id` of a `_mta-sts` TXT record (RFC 8461 §3.1): `v=STSv1` first, then `;`-separated
/// fields, `id` of 1 to 32 letters and digits required, other fields ignored.
pub fn parse_txt(txt: &str) -> Result<String, String> {
    let mut fields = txt.split(';').map(|f| f.trim_matches([' ', '\t']));
    if fields.next() != Some("v=STSv1") {
        return Err(format!("{txt:?} does not begin with v=STSv1"));
    }
    let mut id = None;
    for f in fields.filter(|f| !f.is_empty()) {
        let Some((k, v)) = f.split_once('=') else { return Err(format!("field {f:?} has no '='")) };
        if k == "id" && id.is_none() {
            if v.is_empty() || v.len() > 32 || !v.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(format!("id {v:?}: 1 to 32 letters and digits"));
            }
            id = Some(v.to_string());
        }
    }
    id.ok_or_else(|| format!("{txt:?} has no id"))
}

/// What went wrong with MTA-STS for one delivery: a label for the measurement and, through
/// [`StsFailure::result_type`], the TLS-RPT (RFC 8460 §4.3) result type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StsFailure {
    /// The policy could not be fetched: no address, connection refused or cut, a timeout, a
    /// status other than 200 (redirects are not followed, §3.3).
    #[error("MTA-STS policy fetch failed: {0}")]
    PolicyFetch(String),
    /// The response was not a policy: wrong content type, too long, or a parse error.
    #[error("MTA-STS policy invalid: {0}")]
    PolicyInvalid(String),
    /// The policy host's certificate did not validate for `mta-sts.<domain>`.
    #[error("MTA-STS policy host certificate invalid: {0}")]
    WebPkiInvalid(String),
    /// The MX did not offer STARTTLS, or refused it.
    #[error("MTA-STS: {0} does not offer STARTTLS")]
    StartTlsNotSupported(String),
    /// The MX's certificate names another host.
    #[error("MTA-STS: certificate does not match the MX host: {0}")]
    CertificateHostMismatch(String),
    #[error("MTA-STS: certificate expired: {0}")]
    CertificateExpired(String),
    /// The MX's certificate does not chain to a trusted CA.
    #[error("MTA-STS: certificate not trusted: {0}")]
    CertificateNotTrusted(String),
    /// The MX host matches no `mx` pattern of the policy.
    #[error("MTA-STS: MX {0} matches no mx pattern of the policy")]
    MxNotInPolicy(String),
    /// Any other TLS failure with the MX.
    #[error("MTA-STS: TLS validation failed: {0}")]
    ValidationFailure(String),
}

impl StsFailure {
    /// The RFC 8460 result type.
    pub fn tlsrpt_result(&self) -> ResultType {
        match self {
            StsFailure::PolicyFetch(_) => ResultType::StsPolicyFetchError,
            StsFailure::PolicyInvalid(_) => ResultType::StsPolicyInvalid,
            StsFailure::WebPkiInvalid(_) => ResultType::StsWebpkiInvalid,
            StsFailure::StartTlsNotSupported(_) => ResultType::StarttlsNotSupported,
            StsFailure::CertificateHostMismatch(_) => ResultType::CertificateHostMismatch,
            StsFailure::CertificateExpired(_) => ResultType::CertificateExpired,
            StsFailure::CertificateNotTrusted(_) => ResultType::CertificateNotTrusted,
            // RFC 8460 has no result type of its own for an MX outside the policy: it is the
            // general "validation-failure".
            StsFailure::MxNotInPolicy(_) | StsFailure::ValidationFailure(_) => ResultType::ValidationFailure,
        }
    }

    /// The result type's name, as session records keep it (`mta_sts_failure`).
    pub fn result_type(&self) -> &'static str {
        self.tlsrpt_result().as_str()
    }

    /// A failed certificate check of the MX, sorted into the RFC 8460 types.
    pub fn from_tls_error(e: &rustls::Error) -> StsFailure {
        match e {
            rustls::Error::InvalidCertificate(c) => match c {
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                    StsFailure::CertificateHostMismatch(e.to_string())
                }
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    StsFailure::CertificateExpired(e.to_string())
                }
                CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                    StsFailure::CertificateNotTrusted(e.to_string())
                }
                _ => StsFailure::ValidationFailure(e.to_string()),
            },
            other => StsFailure::ValidationFailure(other.to_string()),
        }
    }

    /// The rustls error inside an I/O error from a handshake, if there is one.
    pub fn from_handshake(e: &std::io::Error) -> Option<StsFailure> {
        e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()).map(StsFailure::from_tls_error)
    }
}

/// Where the policy of a delivery came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Fetched for this delivery (first contact, expiry or a new id).
    Fetched,
    /// From the cache: still valid and the TXT id unchanged, or no live policy to be had.
    Cached,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Fetched => "fetched",
            Source::Cached => "cached",
        }
    }
}

/// The policy a delivery is under, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub policy: Policy,
    pub id: String,
    pub source: Source,
}

/// The outcome of looking a domain up: the policy that applies (none when the domain has none,
/// or none could be had and none is cached), and what failed on the way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lookup {
    pub applied: Option<Applied>,
    pub failure: Option<StsFailure>,
}

impl Lookup {
    /// The mode in force: `None` without a policy.
    pub fn mode(&self) -> Option<Mode> {
        self.applied.as_ref().map(|a| a.policy.mode)
    }

    /// Writes the policy and any failure into a session record.
    pub fn annotate(&self, rec: &mut records::SessionRecord) {
        if let Some(a) = &self.applied {
            rec.mta_sts_mode = Some(a.policy.mode.name().into());
            rec.mta_sts_policy_id = Some(a.id.clone());
            rec.mta_sts_source = Some(a.source.name().into());
        }
        if let Some(f) = &self.failure {
            record_failure(rec, f);
        }
    }
}

/// Puts `f` into the record (a later failure of the same delivery replaces a fetch failure:
/// it is the one that decided the session).
pub fn record_failure(rec: &mut records::SessionRecord, f: &StsFailure) {
    rec.mta_sts_failure = Some(f.result_type().into());
    rec.mta_sts_failure_detail = Some(f.to_string());
}

/// One cached policy.
#[derive(Debug, Clone)]
struct Cached {
    policy: Policy,
    id: String,
    expires: Instant,
}

/// A sending relay's MTA-STS: its own DNS client, its HTTPS client and its policy cache.
pub struct MtaSts {
    resolver: TokioResolver,
    https_port: u16,
    bind: Option<IpAddr>,
    https: Arc<rustls::ClientConfig>,
    /// Checks an MX certificate after the fact, for `testing` (the session itself accepted it).
    verifier: Arc<WebPkiServerVerifier>,
    fetch_timeout: Duration,
    cache: Mutex<HashMap<String, Cached>>,
}

impl MtaSts {
    /// `bind`: the system's address, the source of its queries and fetches (so an eavesdropper
    /// attributes them to it, as on a real network).
    pub fn new(cfg: &MtaStsConfig, bind: Option<IpAddr>, tls: &crate::TlsSettings) -> Result<MtaSts, RelayError> {
        let connection = |mut c: ConnectionConfig| {
            c.port = cfg.dns.port();
            c.bind_addr = bind.map(|ip| SocketAddr::new(ip, 0));
            c
        };
        let ns = NameServerConfig::new(
            cfg.dns.ip(),
            true,
            vec![connection(ConnectionConfig::udp()), connection(ConnectionConfig::tcp())],
        );
        let mut opts = ResolverOpts::default();
        opts.use_hosts_file = ResolveHosts::Never;
        opts.timeout = Duration::from_secs(2);
        opts.attempts = 2;
        opts.ndots = 0;
        let resolver = TokioResolver::builder_with_config(
            ResolverConfig::from_parts(None, Vec::new(), vec![ns]),
            TokioRuntimeProvider::default(),
        )
        .with_options(opts)
        .build()
        .map_err(|source| RelayError::MtaStsResolver { server: cfg.dns, source: Box::new(source) })?;
        let mut roots = RootCertStore::empty();
        for c in crate::tls::parse_certs(&cfg.ca_pem)? {
            roots.add(c).map_err(RelayError::CaCertificate)?;
        }
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::new(tls.provider.default_provider()))
                .build()
                .map_err(RelayError::MtaStsVerifier)?;
        Ok(MtaSts {
            resolver,
            https_port: cfg.https_port,
            bind,
            https: crate::tls::client_config_verify(&cfg.ca_pem, tls, None)?,
            verifier,
            fetch_timeout: cfg.fetch_timeout,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The policy for mail to `domain` now.
    pub async fn lookup(&self, domain: &str) -> Lookup {
        self.lookup_at(domain, Instant::now()).await
    }

    /// The policy for mail to `domain` at `now` (a parameter so expiry can be tested without
    /// waiting): RFC 8461 §3.3 and §5.1.
    pub async fn lookup_at(&self, domain: &str, now: Instant) -> Lookup {
        let domain = crate::domain::normalize_domain(domain);
        let cached = {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            cache.retain(|_, c| c.expires > now);
            cache.get(&domain).cloned()
        };
        let from_cache = |c: Cached| Applied { policy: c.policy, id: c.id, source: Source::Cached };
        // No usable TXT record (absent, invalid, or the lookup failed): the cached policy, if
        // any, still applies; that is what defeats an attacker who arrives later.
        let Some(id) = self.txt_id(&domain).await else {
            return Lookup { applied: cached.map(from_cache), failure: None };
        };
        if let Some(c) = cached.as_ref().filter(|c| c.id == id) {
            return Lookup { applied: Some(from_cache(c.clone())), failure: None };
        }
        match tokio::time::timeout(self.fetch_timeout, self.fetch(&domain)).await {
            Ok(Ok(policy)) => {
                let entry = Cached { policy: policy.clone(), id: id.clone(), expires: now + secs(policy.max_age) };
                self.cache.lock().unwrap_or_else(|p| p.into_inner()).insert(domain, entry);
                Lookup { applied: Some(Applied { policy, id, source: Source::Fetched }), failure: None }
            }
            // A new id whose policy cannot be had: the old policy holds until it expires.
            Ok(Err(failure)) => Lookup { applied: cached.map(from_cache), failure: Some(failure) },
            Err(_) => Lookup {
                applied: cached.map(from_cache),
                failure: Some(StsFailure::PolicyFetch(format!("no policy within {:?}", self.fetch_timeout))),
            },
        }
    }

    /// Checks an MX certificate chain for `host` without failing the session (`testing`).
    pub fn check_certificate(&self, conn: &rustls::ClientConnection, host: &str) -> Result<(), StsFailure> {
        let Some((end, intermediates)) = conn.peer_certificates().and_then(|c| c.split_first()) else {
            return Err(StsFailure::ValidationFailure("no certificate".into()));
        };
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| StsFailure::ValidationFailure(format!("MX name {host}: {e}")))?;
        self.verifier
            .verify_server_cert(end, intermediates, &name, &[], UnixTime::now())
            .map(|_| ())
            .map_err(|e| StsFailure::from_tls_error(&e))
    }

    /// The id of the domain's single valid `v=STSv1` TXT record; `None` for no record, several,
    /// an invalid one, or a failed lookup (§3.1: all mean "no available policy").
    async fn txt_id(&self, domain: &str) -> Option<String> {
        let name = Name::from_ascii(format!("_mta-sts.{domain}.")).ok()?;
        let lookup = self.resolver.txt_lookup(name).await.ok()?;
        let sts: Vec<String> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                // The strings of one record are one text (RFC 7208 §3.3 style concatenation).
                RData::TXT(t) => Some(t.txt_data.iter().map(|s| String::from_utf8_lossy(s)).collect::<String>()),
                _ => None,
            })
            .filter(|t| t.starts_with("v=STSv1"))
            .collect();
        match sts.as_slice() {
            [one] => parse_txt(one).ok(),
            _ => None,
        }
    }

    /// GET `https://mta-sts.<domain>/.well-known/mta-sts.txt`.
    async fn fetch(&self, domain: &str) -> Result<Policy, StsFailure> {
        let host = format!("mta-sts.{domain}");
        let fetch_error = |m: String| StsFailure::PolicyFetch(m);
        let name = Name::from_ascii(format!("{host}.")).map_err(|e| fetch_error(format!("{host}: {e}")))?;
        let addr = self
            .resolver
            .ipv4_lookup(name)
            .await
            .map_err(|e| fetch_error(format!("A lookup of {host}: {e}")))?
            .answers()
            .iter()
            .find_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                _ => None,
            })
            .ok_or_else(|| fetch_error(format!("{host} has no address")))?;
        let addr = SocketAddr::new(addr, self.https_port);
        let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }
            .map_err(|e| fetch_error(format!("socket: {e}")))?;
        if let Some(ip) = self.bind {
            socket.bind(SocketAddr::new(ip, 0)).map_err(|e| fetch_error(format!("bind {ip}: {e}")))?;
        }
        let tcp = socket.connect(addr).await.map_err(|e| fetch_error(format!("connect to {addr}: {e}")))?;
        let server_name = ServerName::try_from(host.clone()).map_err(|e| fetch_error(format!("{host}: {e}")))?;
        let tls = tokio_rustls::TlsConnector::from(self.https.clone()).connect(server_name, tcp).await.map_err(
            |e| match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                Some(rustls::Error::InvalidCertificate(_)) => {
                    StsFailure::WebPkiInvalid(format!("{host} ({addr}): {e}"))
                }
                _ => fetch_error(format!("TLS with {host} ({addr}): {e}")),
            },
        )?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| fetch_error(format!("HTTP with {host}: {e}")))?;
        // The connection task ends with the response (or when `sender` is dropped).
        let driver = tokio::spawn(conn);
        let request = hyper::Request::get(POLICY_PATH)
            .header(hyper::header::HOST, &host)
            .body(Empty::<Bytes>::new())
            .map_err(|e| fetch_error(format!("request: {e}")))?;
        let result = async {
            let response =
                sender.send_request(request).await.map_err(|e| fetch_error(format!("GET from {host}: {e}")))?;
            if response.status() != hyper::StatusCode::OK {
                // 3xx included: §3.3 forbids following redirects.
                return Err(fetch_error(format!("HTTP status {} from {host}", response.status())));
            }
            let media_type = response
                .headers()
                .get(hyper::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
            if media_type.as_deref() != Some("text/plain") {
                return Err(StsFailure::PolicyInvalid(format!(
                    "content type {media_type:?} from {host}; the RFC requires text/plain"
                )));
            }
            let body = Limited::new(response.into_body(), MAX_POLICY_BYTES).collect().await.map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    StsFailure::PolicyInvalid(format!("policy from {host} is over {MAX_POLICY_BYTES} bytes"))
                } else {
                    fetch_error(format!("reading the policy from {host}: {e}"))
                }
            })?;
            Policy::parse(&body.to_bytes()).map_err(|e| StsFailure::PolicyInvalid(format!("{host}: {e}")))
        }
        .await;
        driver.abort();
        result
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Policy, PolicyError> {
        Policy::parse(text.as_bytes())
    }

    /// The RFC 8461 §3.2 example, with CRLF, and with LF and spaces after the colon.
    #[test]
    fn the_rfc_example_parses() {
        let rfc = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\n";
        let p = parse(rfc).expect("the RFC's own example");
        assert_eq!(p.mode, Mode::Enforce);
        assert_eq!(p.max_age, 604_800);
        assert_eq!(p.mx, ["mail.example.com", "*.example.net", "backupmx.example.com"]);
        // Its TLS-RPT policy-string: the file's lines without their CRLF (RFC 8460 §4.4).
        assert_eq!(
            p.lines(),
            [
                "version: STSv1",
                "mode: enforce",
                "mx: mail.example.com",
                "mx: *.example.net",
                "mx: backupmx.example.com",
                "max_age: 604800"
            ]
        );
        let lf =
            parse("version: STSv1\nmode:   testing\nmx:mx.b.example\nmax_age: 86400\nfuture_key: x\n").expect("LF");
        assert_eq!((lf.mode, lf.max_age, lf.mx.as_slice()), (Mode::Testing, 86_400, &["mx.b.example".to_string()][..]));
        let none = parse("version: STSv1\nmode: none\nmax_age: 0\n").expect("mode none needs no mx");
        assert_eq!((none.mode, none.max_age), (Mode::None, 0));
    }

    /// Each malformation is "no policy" (the caller records sts-policy-invalid); the error says
    /// which line.
    #[test]
    fn malformed_policies_are_errors_naming_the_line() {
        let cases = [
            ("version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1\n", 1, "STSv1"),
            ("mode: enforce\nmx: a.example\nmax_age: 1\n", 0, "no version"),
            ("version: STSv1\nmx: a.example\nmax_age: 1\n", 0, "no mode"),
            ("version: STSv1\nmode: strict\nmx: a.example\nmax_age: 1\n", 2, "mode"),
            ("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -5\n", 4, "max_age"),
            ("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 31557601\n", 4, "max_age"),
            ("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 99999999999\n", 4, "max_age"),
            ("version: STSv1\nmode: enforce\nmx: a.example\n", 0, "no max_age"),
            ("version: STSv1\nmode: enforce\nmax_age: 10\n", 0, "no mx"),
            ("version: STSv1\nmode: enforce\nmx: a..example\nmax_age: 1\n", 3, "mx"),
            ("version: STSv1\nmode enforce\n", 2, "key: value"),
        ];
        for (text, line, what) in cases {
            let e = parse(text).expect_err(text);
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.to_string().contains(what), "{text:?}: {e}");
        }
        assert!(Policy::parse(b"version: STSv1\nmode: \xff\n").is_err(), "not UTF-8");
    }

    #[test]
    fn mx_patterns_match_as_section_4_1_says() {
        let p =
            parse("version: STSv1\nmode: enforce\nmx: mx.b.example\nmx: *.mail.example\nmax_age: 60\n").expect("ok");
        assert!(p.matches_mx("mx.b.example") && p.matches_mx("MX.B.Example.") && p.matches_mx("a.mail.example"));
        // The wildcard is one label only, and not the bare suffix.
        assert!(!p.matches_mx("a.b.mail.example") && !p.matches_mx("mail.example"));
        assert!(!p.matches_mx("mx.c.example") && !p.matches_mx("xmx.b.example"));
    }

    #[test]
    fn txt_records_parse_as_section_3_1_says() {
        assert_eq!(parse_txt("v=STSv1; id=20160831085700Z;").as_deref(), Ok("20160831085700Z"));
        assert_eq!(parse_txt("v=STSv1;id=abc").as_deref(), Ok("abc"));
        assert_eq!(parse_txt("v=STSv1; ext=1; id=x9").as_deref(), Ok("x9"));
        for bad in ["v=STSv2; id=1", "id=1; v=STSv1", "v=STSv1;", "v=STSv1; id=", "v=STSv1; id=a-b", "v=STSv1; id"] {
            assert!(parse_txt(bad).is_err(), "{bad}");
        }
        assert!(parse_txt(&format!("v=STSv1; id={}", "a".repeat(33))).is_err());
    }

    /// RFC 8460 §4.3 names, written out by hand from the RFC.
    #[test]
    fn failures_carry_the_tls_rpt_result_types() {
        let s = String::new;
        let cases = [
            (StsFailure::PolicyFetch(s()), "sts-policy-fetch-error"),
            (StsFailure::PolicyInvalid(s()), "sts-policy-invalid"),
            (StsFailure::WebPkiInvalid(s()), "sts-webpki-invalid"),
            (StsFailure::StartTlsNotSupported(s()), "starttls-not-supported"),
            (StsFailure::CertificateHostMismatch(s()), "certificate-host-mismatch"),
            (StsFailure::CertificateExpired(s()), "certificate-expired"),
            (StsFailure::CertificateNotTrusted(s()), "certificate-not-trusted"),
            (StsFailure::MxNotInPolicy(s()), "validation-failure"),
            (StsFailure::ValidationFailure(s()), "validation-failure"),
        ];
        for (f, t) in cases {
            assert_eq!(f.result_type(), t);
        }
        let name = rustls::Error::InvalidCertificate(CertificateError::NotValidForName);
        assert_eq!(StsFailure::from_tls_error(&name).result_type(), "certificate-host-mismatch");
        let issuer = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        assert_eq!(StsFailure::from_tls_error(&issuer).result_type(), "certificate-not-trusted");
    }
}
