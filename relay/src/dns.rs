//! MX and A lookups on the wire, through one DNS server and nothing else.
//!
//! Scenarios with `network.dns = "server"` run an authoritative server for their zones and point
//! every relay here, so the capture holds the MX queries a passive eavesdropper sees before each
//! SMTP connection. The resolver is built from an explicit configuration with hickory's
//! `system-config` feature off: it never reads `/etc/resolv.conf` or `/etc/hosts`, and never asks
//! any other server. Answers are cached per relay for the TTL the zone gives them (hickory's
//! cache), as a real MTA's stub resolver or local cache would.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::dnssec::{Proof, TrustAnchors};
use hickory_resolver::proto::rr::{Name, RData};

use crate::dane::{DaneFailure, Tlsa, TlsaAnswer};
use crate::error::RelayError;
use crate::resolver::{LookingUpTlsa, MxResolver, MxTarget, Resolving, TemporaryFailure};

/// Resolves MX, then A, through `server` only; connects to the addresses found on `smtp_port`
/// (DNS names hosts, not ports).
pub struct DnsResolver {
    resolver: TokioResolver,
    /// The same server asked through hickory's DNSSEC validator, for TLSA (DANE): built only
    /// when the relay was given a trust anchor.
    validating: Option<TokioResolver>,
    server: SocketAddr,
    bind: Option<IpAddr>,
    smtp_port: u16,
}

impl DnsResolver {
    /// `bind`: the source address of the queries (the system's own address, so an eavesdropper
    /// can attribute each query to the system that asked, as on a real network).
    pub fn new(server: SocketAddr, bind: Option<IpAddr>, smtp_port: u16) -> Result<Self, RelayError> {
        let resolver = build(server, bind, None)?;
        Ok(Self { resolver, validating: None, server, bind, smtp_port })
    }

    /// Validates TLSA answers against `anchor` (the scenario's signed root, as unbound's
    /// `trust-anchor-file` would), so DANE can tell secure, insecure and bogus apart.
    pub fn with_trust_anchor(mut self, anchor: Arc<TrustAnchors>) -> Result<Self, RelayError> {
        self.validating = Some(build(self.server, self.bind, Some(anchor))?);
        Ok(self)
    }

    /// [`DnsResolver::with_trust_anchor`] from a file of DNSKEY records in presentation format.
    pub fn with_trust_anchor_file(self, path: &std::path::Path) -> Result<Self, RelayError> {
        let anchor = TrustAnchors::from_file(path)
            .map_err(|source| RelayError::TrustAnchorFile { path: path.to_path_buf(), source })?;
        self.with_trust_anchor(Arc::new(anchor))
    }

    async fn lookup_tlsa(&self, host: &str) -> Result<TlsaAnswer, DaneFailure> {
        let Some(validating) = &self.validating else { return Ok(TlsaAnswer::NotSecure) };
        let host = host.trim_end_matches('.');
        let failed = |why: String| DaneFailure::LookupFailed { host: host.into(), why };
        let name = fqdn(&format!("_{}._tcp.{host}", crate::dane::TLSA_PORT))
            .ok_or_else(|| failed("the MX host is not a DNS name".into()))?;
        match validating.tlsa_lookup(name).await {
            Ok(lookup) => {
                let mut records = Vec::new();
                let mut proofs = Vec::new();
                for r in lookup.answers() {
                    if let RData::TLSA(t) = &r.data {
                        proofs.push(r.proof);
                        records.push(Tlsa {
                            usage: u8::from(t.cert_usage),
                            selector: u8::from(t.selector),
                            matching: u8::from(t.matching),
                            data: t.cert_data.clone(),
                        });
                    }
                }
                if proofs.is_empty() || proofs.iter().all(|p| *p == Proof::Insecure) {
                    Ok(TlsaAnswer::NotSecure)
                } else if proofs.iter().all(|p| *p == Proof::Secure) {
                    Ok(TlsaAnswer::Secure(records))
                } else {
                    Err(DaneFailure::DnssecInvalid { host: host.into(), why: format!("TLSA proofs {proofs:?}") })
                }
            }
            // No TLSA, securely denied or in an unsigned zone: no DANE for this host either way.
            Err(e) if e.is_no_records_found() => Ok(TlsaAnswer::NotSecure),
            Err(e) if is_dnssec_failure(&e) => {
                Err(DaneFailure::DnssecInvalid { host: host.into(), why: e.to_string() })
            }
            Err(e) => Err(failed(e.to_string())),
        }
    }

    async fn lookup(&self, domain: &str) -> Result<Vec<MxTarget>, TemporaryFailure> {
        // A string that cannot be a DNS name (from a peer's RCPT) names no domain: no mail host.
        let Some(name) = fqdn(domain) else { return Ok(Vec::new()) };
        // RFC 5321 §5.1: the MX records in preference order; without any, the domain itself is
        // the mail host (the implicit MX). A domain that does not exist has no mail host at all.
        let mut exchanges: Vec<(u16, Name)> = match self.resolver.mx_lookup(name.clone()).await {
            Ok(lookup) => lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::MX(mx) => Some((mx.preference, mx.exchange.clone())),
                    _ => None,
                })
                .collect(),
            Err(e) if e.is_nx_domain() => return Ok(Vec::new()),
            Err(e) if e.is_no_records_found() => vec![(0, name)],
            Err(e) => return Err(temporary(domain, "MX", &e)),
        };
        exchanges.sort_by_key(|(pref, _)| *pref);
        let mut targets = Vec::new();
        let mut failure = None;
        for (_, exchange) in exchanges {
            match self.resolver.ipv4_lookup(exchange.clone()).await {
                Ok(lookup) => {
                    let host = exchange.to_ascii().trim_end_matches('.').to_string();
                    targets.extend(lookup.answers().iter().filter_map(|r| match &r.data {
                        RData::A(a) => Some(MxTarget {
                            host: host.clone(),
                            addr: SocketAddr::new(IpAddr::V4(a.0), self.smtp_port),
                            system: None,
                        }),
                        _ => None,
                    }));
                }
                // An MX host without an address is skipped, as MTAs do; the others may do.
                Err(e) if e.is_no_records_found() => {}
                Err(e) => failure = Some(temporary(&exchange.to_ascii(), "A", &e)),
            }
        }
        match failure {
            Some(f) if targets.is_empty() => Err(f),
            _ => Ok(targets),
        }
    }
}

impl MxResolver for DnsResolver {
    fn resolve<'a>(&'a self, domain: &'a str) -> Resolving<'a> {
        Box::pin(self.lookup(domain))
    }

    fn tlsa<'a>(&'a self, host: &'a str) -> LookingUpTlsa<'a> {
        Box::pin(self.lookup_tlsa(host))
    }
}

/// A resolver asking `server` only; validating against `anchor` when given.
fn build(
    server: SocketAddr,
    bind: Option<IpAddr>,
    anchor: Option<Arc<TrustAnchors>>,
) -> Result<TokioResolver, RelayError> {
    let connection = |mut c: ConnectionConfig| {
        c.port = server.port();
        c.bind_addr = bind.map(|ip| SocketAddr::new(ip, 0));
        c
    };
    let ns = NameServerConfig::new(
        server.ip(),
        true,
        vec![connection(ConnectionConfig::udp()), connection(ConnectionConfig::tcp())],
    );
    let config = ResolverConfig::from_parts(None, Vec::new(), vec![ns]);
    let mut opts = ResolverOpts::default();
    opts.use_hosts_file = ResolveHosts::Never;
    opts.timeout = Duration::from_secs(2);
    opts.attempts = 2;
    // Names are always fully qualified here: no search list, no ndots games.
    opts.ndots = 0;
    let mut builder = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default()).with_options(opts);
    if let Some(anchor) = anchor {
        builder = builder.with_trust_anchor(anchor);
    }
    builder.build().map_err(|source| RelayError::Resolver { server, source: Box::new(source) })
}

/// A DNSSEC validation failure (bogus), as opposed to no answer at all.
fn is_dnssec_failure(e: &NetError) -> bool {
    use hickory_resolver::net::DnsError;
    matches!(e, NetError::Dns(DnsError::Nsec { .. } | DnsError::DnssecBogus)) || e.to_string().contains("DNSSEC")
}

fn fqdn(domain: &str) -> Option<Name> {
    let text = if domain.ends_with('.') { domain.to_string() } else { format!("{domain}.") };
    Name::from_ascii(&text).ok()
}

fn temporary(name: &str, kind: &str, e: &NetError) -> TemporaryFailure {
    TemporaryFailure(format!("{kind} lookup of {name}: {e}"))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_resolver::proto::op::{Message, ResponseCode};
    use hickory_resolver::proto::rr::rdata::{A, MX};
    use hickory_resolver::proto::rr::{Record, RecordType};

    use super::*;

    /// A DNS server on a real UDP socket whose answers are chosen per name: preferences out of
    /// order, a domain without MX (implicit MX), a broken one (SERVFAIL), NXDOMAIN for the rest.
    async fn responder(addr: SocketAddr) -> tokio::task::JoinHandle<()> {
        let sock = tokio::net::UdpSocket::bind(addr).await.expect("bind the test DNS server");
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while let Ok((n, peer)) = sock.recv_from(&mut buf).await {
                let Ok(q) = Message::from_vec(&buf[..n]) else { continue };
                if let Some(reply) = answer(&q).and_then(|m| m.to_vec().ok()) {
                    let _ = sock.send_to(&reply, peer).await;
                }
            }
        })
    }

    fn answer(q: &Message) -> Option<Message> {
        let query = q.queries.first()?.clone();
        let name = query.name().to_ascii().to_ascii_lowercase();
        let mut m = Message::response(q.metadata.id, q.metadata.op_code);
        m.metadata.authoritative = true;
        m.add_query(query.clone());
        let n = |s: &str| Name::from_ascii(s).expect("name");
        let a = |host: &str, last: u8| Record::from_rdata(n(host), 60, RData::A(A(Ipv4Addr::new(127, 0, 0, last))));
        match (name.as_str(), query.query_type()) {
            ("mx.example.", RecordType::MX) => {
                m.add_answer(Record::from_rdata(n("mx.example."), 60, RData::MX(MX::new(20, n("b.mx.example.")))));
                m.add_answer(Record::from_rdata(n("mx.example."), 60, RData::MX(MX::new(10, n("a.mx.example.")))));
            }
            ("a.mx.example.", RecordType::A) => {
                m.add_answer(a("a.mx.example.", 41));
            }
            ("b.mx.example.", RecordType::A) => {
                m.add_answer(a("b.mx.example.", 42));
            }
            ("implicit.example.", RecordType::MX) => {}
            ("implicit.example.", RecordType::A) => {
                m.add_answer(a("implicit.example.", 43));
            }
            ("broken.example.", _) => m.metadata.response_code = ResponseCode::ServFail,
            _ => m.metadata.response_code = ResponseCode::NXDomain,
        }
        Some(m)
    }

    /// A trust anchor file that is not one is named, with hickory's reason as the source and
    /// what to give instead.
    #[tokio::test]
    async fn a_bad_trust_anchor_file_is_named() {
        let path = std::env::temp_dir().join(format!("relay-anchor-{}.key", std::process::id()));
        std::fs::write(&path, "this is not a DNSKEY record\n").expect("write");
        let r = DnsResolver::new("127.0.0.1:53".parse().expect("addr"), None, 25).expect("resolver");
        let e = r.with_trust_anchor_file(&path).err().expect("not an anchor");
        let _ = std::fs::remove_file(&path);
        let text = e.to_string();
        assert!(matches!(&e, RelayError::TrustAnchorFile { path: p, .. } if *p == path), "{e:?}");
        assert!(text.starts_with(&format!("DNS: trust anchor file {}: ", path.display())), "{text}");
        assert!(text.ends_with("give a file of DNSKEY records in presentation format (a run's pki/dnssec-root.key)"));
    }

    #[tokio::test]
    async fn mx_in_preference_order_implicit_mx_nxdomain_and_servfail() {
        let addr: SocketAddr = "127.0.0.71:15553".parse().expect("addr");
        let server = responder(addr).await;
        let r = DnsResolver::new(addr, Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 72))), 2525).expect("resolver");
        let target = |host: &str, last: u8| MxTarget {
            host: host.into(),
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)), 2525),
            system: None,
        };
        assert_eq!(
            r.resolve("mx.example").await.expect("answer"),
            vec![target("a.mx.example", 41), target("b.mx.example", 42)],
            "lowest preference first"
        );
        assert_eq!(r.resolve("implicit.example").await.expect("answer"), vec![target("implicit.example", 43)]);
        assert_eq!(r.resolve("nowhere.example").await.expect("NXDOMAIN is an answer"), vec![]);
        assert_eq!(r.resolve("not a name..").await.expect("no such domain"), vec![]);
        let e = r.resolve("broken.example").await.expect_err("SERVFAIL is temporary");
        assert!(e.0.contains("MX lookup of broken.example"), "{e}");
        server.abort();
    }
}
