//! How relays find each other's MX: a map in each relay (`network.dns = "in-process"`, the
//! default: nothing on the wire), or a real authoritative DNS server that the runner starts for
//! the run (`"server"`), queried by every relay over UDP from its own address, so the capture also
//! holds what an eavesdropper learns from DNS: who is about to send mail to which domain.
//!
//! The server (hickory-server) holds one zone per system domain, `D. MX 10 mx.D.` and
//! `mx.D. A <address>`, and an empty root zone, so a domain that belongs to no system gets an
//! authoritative NXDOMAIN (the relay then bounces, as for an unknown domain in process). Relays
//! ask it and nothing else ([`relay::DnsResolver`]).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::Server;
use hickory_server::dnssec::NxProofKind;
use hickory_server::net::runtime::{Time, TokioRuntimeProvider};
use hickory_server::proto::dnssec::crypto::EcdsaSigningKey;
use hickory_server::proto::dnssec::rdata::{DNSKEY, DNSSECRData, DS};
use hickory_server::proto::dnssec::{
    Algorithm, DigestType, DnsSecError, DnssecSigner, PublicKeyBuf, SigningKey, TrustAnchors,
};
use hickory_server::proto::op::Message;
use hickory_server::proto::rr::rdata::tlsa::{CertUsage, Matching, Selector};
use hickory_server::proto::rr::rdata::{A, MX, NS, SOA, TLSA, TXT};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};
use relay::{DnsResolver, MxResolver, MxTarget, StaticResolver};

use crate::dane::Dnssec;
use crate::error::{DnsError, ScenarioError};
use crate::schema::Scenario;

/// One mail domain as DNS publishes it.
#[derive(Debug, Clone)]
pub struct MxEntry {
    pub domain: String,
    pub mx_host: String,
    pub addr: Ipv4Addr,
}

/// What a zone publishes beyond its MX and A records (DANE, RFC 7672): its DNSSEC and the
/// TLSA record of its MX host.
#[derive(Debug, Clone)]
pub struct ZoneSecurity {
    pub domain: String,
    pub dnssec: Dnssec,
    pub tlsa: Option<relay::dane::Tlsa>,
}

/// The run's name resolution: the in-process map, and the DNS server when there is one.
pub struct Dns {
    map: Arc<StaticResolver>,
    server: Option<DnsServer>,
    /// The port relays connect to at the addresses found (DNS names hosts, not ports).
    mx_port: u16,
}

impl Dns {
    /// Builds the map and, for `network.dns = "server"`, starts the server: before any relay,
    /// so the first lookup already has an answer.
    pub async fn start(s: &Scenario, mx_port: u16, security: &[ZoneSecurity]) -> Result<Dns, ScenarioError> {
        let entries = entries(s);
        let mut map = StaticResolver::new();
        for (e, sys) in entries.iter().zip(&s.systems) {
            map.add(
                &e.domain,
                MxTarget {
                    host: e.mx_host.clone(),
                    addr: SocketAddr::new(IpAddr::V4(e.addr), mx_port),
                    system: Some(sys.name.clone()),
                },
            );
        }
        let server = match s.dns_server() {
            Some(addr) => {
                let extra = crate::mta_sts::dns_records(s);
                Some(DnsServer::start_secured(addr, &entries, &extra, security, s.network.dns_ttl).await?)
            }
            None => None,
        };
        Ok(Dns { map: Arc::new(map), server, mx_port })
    }

    /// The resolver of the relay at `ip`: the shared map, or its own DNS client (its own cache,
    /// queries sent from `ip`).
    pub fn resolver_for(&self, ip: IpAddr) -> Result<Arc<dyn MxResolver>, ScenarioError> {
        Ok(match &self.server {
            Some(server) => {
                let resolver = DnsResolver::new(server.addr, Some(ip), self.mx_port)?;
                Arc::new(match &server.anchor {
                    Some(anchor) => resolver.with_trust_anchor(anchor.clone())?,
                    None => resolver,
                })
            }
            None => self.map.clone(),
        })
    }

    /// The signed root's DNSKEY record (trust anchor file contents), when any zone is signed.
    pub fn anchor_record(&self) -> Option<&str> {
        self.server.as_ref().and_then(|s| s.anchor_record.as_deref())
    }

    /// Stops the server (after the relays: a relay still retrying would otherwise see timeouts).
    pub async fn stop(self) {
        if let Some(server) = self.server {
            server.stop().await;
        }
    }
}

/// `smtplab relay` arguments telling a relay process how to find MXs: every system's route, or
/// the DNS server.
pub fn relay_process_args(s: &Scenario) -> Vec<String> {
    if let Some(dns) = s.dns_server() {
        return vec!["--dns".into(), dns.to_string(), "--mx-port".into(), s.network.smtp_port.to_string()];
    }
    entries(s)
        .into_iter()
        .flat_map(|e| ["--route".into(), format!("{}={}@{}:{}", e.domain, e.mx_host, e.addr, s.network.smtp_port)])
        .collect()
}

/// The scenario's MX records, one per system, in system order. The MX host of a domain an
/// attacker intercepts has the attacker's address: the victims' DNS is what puts it on the path.
pub fn entries(s: &Scenario) -> Vec<MxEntry> {
    let intercepted = s.interceptions();
    s.systems
        .iter()
        .enumerate()
        .map(|(i, sys)| {
            let addr = intercepted
                .iter()
                .find(|(d, _, _)| d.eq_ignore_ascii_case(&sys.domain))
                .map_or(s.address(i), |(_, _, a)| *a);
            MxEntry { domain: sys.domain.clone(), mx_host: sys.mx_host(), addr }
        })
        .collect()
}

/// An authoritative DNS server on UDP and TCP, serving the scenario's zones.
pub struct DnsServer {
    pub addr: SocketAddr,
    /// The signed root's key, when any zone is signed: what validating resolvers trust.
    pub anchor: Option<Arc<TrustAnchors>>,
    /// The same key as a DNSKEY record in presentation format, the trust anchor file format of
    /// unbound (`trust-anchor-file`) and of hickory (`TrustAnchors::from_str`).
    pub anchor_record: Option<String>,
    server: Server<Zones>,
}

impl DnsServer {
    pub async fn start(addr: SocketAddr, entries: &[MxEntry], ttl: u32) -> Result<DnsServer, ScenarioError> {
        Self::start_secured(addr, entries, &[], &[], ttl).await
    }

    /// Also publishes `extra` records in the systems' zones (MTA-STS's TXT and A) and the TLSA
    /// records in `security`, and signs the root and the zones it says are signed when any is.
    pub async fn start_secured(
        addr: SocketAddr,
        entries: &[MxEntry],
        extra: &[crate::mta_sts::DnsRecord],
        security: &[ZoneSecurity],
        ttl: u32,
    ) -> Result<DnsServer, ScenarioError> {
        let (catalog, anchor) = catalog(entries, extra, security, ttl)?;
        let anchor_record = anchor.as_ref().map(|(_, record)| record.clone());
        let anchor = anchor.map(|(anchors, _)| Arc::new(anchors));
        let udp = tokio::net::UdpSocket::bind(addr).await.map_err(|e| bind_error(addr, "UDP", e))?;
        let tcp = tokio::net::TcpListener::bind(addr).await.map_err(|e| bind_error(addr, "TCP", e))?;
        let mut server = Server::new(catalog);
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 64 << 10);
        Ok(DnsServer { addr, anchor, anchor_record, server })
    }

    pub async fn stop(mut self) {
        if let Err(e) = self.server.shutdown_gracefully().await {
            tracing::warn!("DNS server on {}: {e}", self.addr);
        }
    }
}

fn bind_error(addr: SocketAddr, protocol: &'static str, source: std::io::Error) -> ScenarioError {
    let fix = match source.kind() {
        std::io::ErrorKind::PermissionDenied => {
            "ports below 1024 need root or CAP_NET_BIND_SERVICE: set network.dns_port to 1024 or above \
             (e.g. 5353), or run as root"
        }
        std::io::ErrorKind::AddrInUse => {
            "another process (another run?) uses it: set network.dns_address or network.dns_port to a free one"
        }
        std::io::ErrorKind::AddrNotAvailable => {
            "the address is not on this machine: on the loopback backend use a 127.x.y.z network.dns_address"
        }
        _ => "set network.dns_address and network.dns_port to a free address and port, or network.dns = \"in-process\"",
    };
    DnsError::Bind { addr, protocol, source, fix }.into()
}

/// The zones, answering a DS query from the parent side of the zone cut (RFC 4035 §3.1.4.1):
/// hickory's catalog hands every query to the deepest zone it holds, and a child zone has no DS
/// for its own apex; the root zone holds the delegations and their DS records.
pub struct Zones {
    all: Catalog,
    parents: Catalog,
}

#[async_trait::async_trait]
impl RequestHandler for Zones {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, response_handle: R) -> ResponseInfo {
        let ds = request.request_info().is_ok_and(|info| info.query.query_type() == RecordType::DS);
        let zones = if ds { &self.parents } else { &self.all };
        zones.handle_request::<R, T>(request, response_handle).await
    }
}

/// How long signatures hold: longer than any run, so none expires mid-run.
const SIGNATURE_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// One zone per domain, and the root zone for everything else. When any zone is signed, the root
/// is signed too and delegates every domain (with a DS for each signed one, and NSEC proving
/// that the unsigned ones have none); its key is the trust anchor returned.
fn catalog(
    entries: &[MxEntry],
    extra: &[crate::mta_sts::DnsRecord],
    security: &[ZoneSecurity],
    ttl: u32,
) -> Result<(Zones, Option<(TrustAnchors, String)>), ScenarioError> {
    let name = |text: &str| {
        let fq = if text.ends_with('.') { text.to_string() } else { format!("{text}.") };
        Name::from_ascii(&fq).map_err(|source| ScenarioError::from(DnsError::Name { name: text.to_string(), source }))
    };
    let security_of = |domain: &str| security.iter().find(|z| z.domain.eq_ignore_ascii_case(domain));
    let signing = security.iter().any(|z| z.dnssec != Dnssec::Unsigned);
    let ns_host = name("ns.smtplab.invalid")?;
    let zone = |origin: &Name, records: Vec<Record>, key: Option<&ZoneKey>| {
        let nx = key.map(|_| NxProofKind::Nsec);
        let mut z =
            InMemoryZoneHandler::<TokioRuntimeProvider>::empty(origin.clone(), ZoneType::Primary, AxfrPolicy::Deny, nx);
        let soa = SOA::new(ns_host.clone(), name("hostmaster.smtplab.invalid")?, 1, 3600, 600, 86400, ttl);
        z.upsert_mut(Record::from_rdata(origin.clone(), ttl, RData::SOA(soa)), 1);
        z.upsert_mut(Record::from_rdata(origin.clone(), ttl, RData::NS(NS(ns_host.clone()))), 1);
        for r in records {
            z.upsert_mut(r, 1);
        }
        if let Some(key) = key {
            let signer = DnssecSigner::new(
                DNSKEY::from_key(&key.public()?),
                Box::new(key.signing()?),
                origin.clone(),
                SIGNATURE_LIFETIME,
            );
            z.add_zone_signing_key_mut(signer).map_err(|e| dnssec_error(origin, e))?;
            z.secure_zone_mut().map_err(|e| dnssec_error(origin, e))?;
        }
        Ok::<_, ScenarioError>(z)
    };
    let mut all = Catalog::new();
    let root = Name::root();
    let root_key = if signing { Some(ZoneKey::new()?) } else { None };
    let mut delegations = Vec::new();
    for e in entries {
        let (domain, mx) = (name(&e.domain)?, name(&e.mx_host)?);
        let mut records = vec![
            Record::from_rdata(domain.clone(), ttl, RData::MX(MX::new(10, mx.clone()))),
            Record::from_rdata(mx.clone(), ttl, RData::A(A(e.addr))),
        ];
        for x in extra.iter().filter(|x| x.zone.eq_ignore_ascii_case(&e.domain)) {
            let data = match &x.data {
                crate::mta_sts::DnsData::A(a) => RData::A(A(*a)),
                crate::mta_sts::DnsData::Txt(t) => RData::TXT(TXT::new(vec![t.clone()])),
            };
            records.push(Record::from_rdata(name(&x.name)?, ttl, data));
        }
        let zone_security = security_of(&e.domain);
        if let Some(t) = zone_security.and_then(|z| z.tlsa.as_ref()) {
            let owner = name(&format!("_{}._tcp.{}", relay::dane::TLSA_PORT, e.mx_host))?;
            let tlsa = TLSA::new(
                CertUsage::from(t.usage),
                Selector::from(t.selector),
                Matching::from(t.matching),
                t.data.clone(),
            );
            records.push(Record::from_rdata(owner, ttl, RData::TLSA(tlsa)));
        }
        let dnssec = zone_security.map_or(Dnssec::Unsigned, |z| z.dnssec);
        let key = match dnssec {
            Dnssec::Unsigned => None,
            Dnssec::Signed | Dnssec::Bogus => Some(ZoneKey::new()?),
        };
        if signing {
            delegations.push(Record::from_rdata(domain.clone(), ttl, RData::NS(NS(ns_host.clone()))));
            if let Some(key) = &key {
                // The parent vouches for this key; a bogus zone then signs with another one.
                let ds =
                    DS::from_key(&key.public()?, &domain, DigestType::SHA256).map_err(|e| dnssec_error(&domain, e))?;
                delegations.push(Record::from_rdata(domain.clone(), ttl, RData::DNSSEC(DNSSECRData::DS(ds))));
            }
        }
        let signing_key = match dnssec {
            Dnssec::Bogus => Some(ZoneKey::new()?),
            _ => key,
        };
        all.upsert(LowerName::new(&domain), vec![Arc::new(zone(&domain, records, signing_key.as_ref())?)]);
    }
    let root_zone = Arc::new(zone(&root, delegations, root_key.as_ref())?);
    all.upsert(LowerName::new(&root), vec![root_zone.clone()]);
    let mut parents = Catalog::new();
    parents.upsert(LowerName::new(&root), vec![root_zone]);
    let anchor = match &root_key {
        Some(key) => {
            let public = key.public()?;
            let mut anchors = TrustAnchors::empty();
            anchors.insert(&public);
            let dnskey =
                Record::from_rdata(root.clone(), ttl, RData::DNSSEC(DNSSECRData::DNSKEY(DNSKEY::from_key(&public))));
            Some((anchors, format!("{dnskey}\n")))
        }
        None => None,
    };
    Ok((Zones { all, parents }, anchor))
}

/// A zone's key, made fresh per run as the scenario CA is: ECDSA P-256 (algorithm 13), which
/// every validator (hickory, unbound) supports. Kept as PKCS#8: ring's key pairs cannot be
/// cloned, and the key both signs its zone and makes its DS in the parent.
struct ZoneKey(rustls::pki_types::PrivatePkcs8KeyDer<'static>);

impl ZoneKey {
    fn new() -> Result<ZoneKey, ScenarioError> {
        EcdsaSigningKey::generate_pkcs8(Algorithm::ECDSAP256SHA256)
            .map(ZoneKey)
            .map_err(|e| DnsError::KeyGeneration(e).into())
    }

    fn signing(&self) -> Result<EcdsaSigningKey, ScenarioError> {
        EcdsaSigningKey::from_pkcs8(&self.0, Algorithm::ECDSAP256SHA256).map_err(|e| DnsError::Key(e).into())
    }

    fn public(&self) -> Result<PublicKeyBuf, ScenarioError> {
        self.signing()?.to_public_key().map_err(|e| DnsError::PublicKey(e).into())
    }
}

fn dnssec_error(zone: &Name, source: DnsSecError) -> ScenarioError {
    DnsError::Signing { zone: zone.to_string(), source }.into()
}

/// One DNS message the tap saw on the DNS server's port (`tap/dns.jsonl`).
pub use records::DnsSighting;

/// Reads the DNS messages over UDP to and from `server` out of a capture. DNS over TCP (only
/// after a truncated UDP answer, which these small zones never give) is not read.
pub fn sightings(pcap: &Path, server: SocketAddr) -> Result<Vec<DnsSighting>, ScenarioError> {
    let file = std::fs::File::open(pcap).map_err(ScenarioError::io(pcap.display().to_string()))?;
    let mut reader = tap::pcapfile::Reader::new(std::io::BufReader::new(file))
        .map_err(|source| ScenarioError::CaptureFile { path: pcap.to_path_buf(), source })?;
    let mut out = Vec::new();
    // A damaged tail ends the reading; what came before is kept (the SMTP dissection reports it).
    while let Ok(Some(p)) = reader.next_packet() {
        if let Some(s) = sighting(p.linktype, p.data, p.ts, server) {
            out.push(s);
        }
    }
    Ok(out)
}

/// Writes `tap/dns.jsonl` from the capture and returns how many messages it holds.
pub fn write_sightings(run_dir: &Path, server: SocketAddr) -> Result<usize, ScenarioError> {
    let seen = sightings(&run_dir.join("capture.pcap"), server)?;
    records::write_jsonl(&run_dir.join("tap/dns.jsonl"), &seen)?;
    Ok(seen.len())
}

fn sighting(linktype: u32, frame: &[u8], ts: f64, server: SocketAddr) -> Option<DnsSighting> {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    let sliced = match linktype {
        1 => SlicedPacket::from_ethernet(frame),
        113 => SlicedPacket::from_linux_sll(frame),
        12 | 14 | 101 | 228 | 229 => SlicedPacket::from_ip(frame),
        _ => return None,
    }
    .ok()?;
    let (src, dst) = match &sliced.net {
        Some(NetSlice::Ipv4(ip)) => (IpAddr::V4(ip.header().source_addr()), IpAddr::V4(ip.header().destination_addr())),
        Some(NetSlice::Ipv6(ip)) => (IpAddr::V6(ip.header().source_addr()), IpAddr::V6(ip.header().destination_addr())),
        _ => return None,
    };
    let Some(TransportSlice::Udp(udp)) = &sliced.transport else { return None };
    let (src, dst) = (SocketAddr::new(src, udp.source_port()), SocketAddr::new(dst, udp.destination_port()));
    if src != server && dst != server {
        return None;
    }
    let m = Message::from_vec(udp.payload()).ok()?;
    let rr = |r: &Record| format!("{} {} {}", r.name, r.record_type(), r.data);
    Some(DnsSighting {
        ts,
        src: src.to_string(),
        dst: dst.to_string(),
        id: m.metadata.id,
        response: src == server,
        rcode: format!("{:?}", m.metadata.response_code),
        questions: m.queries.iter().map(|q| format!("{} {}", q.name(), q.query_type())).collect(),
        answers: m.answers.iter().map(rr).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> Vec<MxEntry> {
        vec![
            MxEntry {
                domain: "alpha.example".into(),
                mx_host: "mx.alpha.example".into(),
                addr: Ipv4Addr::new(127, 0, 64, 1),
            },
            MxEntry {
                domain: "beta.example".into(),
                mx_host: "mx.beta.example".into(),
                addr: Ipv4Addr::new(127, 0, 65, 1),
            },
        ]
    }

    /// The relay's DNS client against this server, over real UDP on loopback.
    #[tokio::test]
    async fn relay_resolver_finds_mx_and_a_and_nxdomain_is_empty() {
        let addr: SocketAddr = "127.0.64.53:15353".parse().expect("addr");
        let server = DnsServer::start(addr, &entries(), 60).await.expect("server");
        let r = DnsResolver::new(addr, Some("127.0.64.1".parse().expect("ip")), 15357).expect("resolver");
        let beta = r.resolve("beta.example").await.expect("answer");
        assert_eq!(
            beta,
            vec![MxTarget {
                host: "mx.beta.example".into(),
                addr: "127.0.65.1:15357".parse().expect("a"),
                system: None
            }]
        );
        assert_eq!(r.resolve("BETA.example").await.expect("case"), beta, "DNS names are case-insensitive");
        assert_eq!(r.resolve("nobody.example").await.expect("NXDOMAIN is an answer"), vec![]);
        server.stop().await;
    }

    /// No server: a temporary failure (mail waits), not "no such domain" (mail would bounce).
    #[tokio::test]
    async fn no_server_is_a_temporary_failure() {
        let r = DnsResolver::new("127.0.64.53:15354".parse().expect("addr"), None, 25).expect("resolver");
        let e = r.resolve("alpha.example").await.expect_err("nobody answers");
        assert!(e.to_string().contains("temporary DNS failure"), "{e}");
    }

    /// The relay's validating lookup against the signed server, through the trust anchor file
    /// the run writes: a signed zone's TLSA is secure and exactly what was published, an unsigned
    /// zone's is not secure (a proven insecure delegation), a bogus zone's fails validation, and
    /// a name with no TLSA in a signed zone is securely absent.
    #[tokio::test]
    async fn tlsa_is_secure_insecure_or_bogus_as_the_zone_is_signed() {
        use relay::dane::{Tlsa, TlsaAnswer};
        let addr: SocketAddr = "127.0.64.55:15356".parse().expect("addr");
        let mut zones = entries();
        zones.push(MxEntry {
            domain: "gamma.example".into(),
            mx_host: "mx.gamma.example".into(),
            addr: Ipv4Addr::new(127, 0, 66, 1),
        });
        zones.push(MxEntry {
            domain: "delta.example".into(),
            mx_host: "mx.delta.example".into(),
            addr: Ipv4Addr::new(127, 0, 67, 1),
        });
        let tlsa = |byte: u8| Some(Tlsa { usage: 3, selector: 1, matching: 1, data: vec![byte; 32] });
        let security = [
            ZoneSecurity { domain: "alpha.example".into(), dnssec: Dnssec::Signed, tlsa: tlsa(0xa1) },
            ZoneSecurity { domain: "beta.example".into(), dnssec: Dnssec::Unsigned, tlsa: tlsa(0xb2) },
            ZoneSecurity { domain: "gamma.example".into(), dnssec: Dnssec::Bogus, tlsa: tlsa(0xc3) },
            ZoneSecurity { domain: "delta.example".into(), dnssec: Dnssec::Signed, tlsa: None },
        ];
        let server = DnsServer::start_secured(addr, &zones, &[], &security, 60).await.expect("server");
        let record = server.anchor_record.clone().expect("a signed root has an anchor");
        assert!(record.starts_with(". 60 IN DNSKEY 257 3 13 "), "{record}");
        let anchor: TrustAnchors = record.parse().expect("the anchor file parses");
        let r = DnsResolver::new(addr, Some("127.0.64.1".parse().expect("ip")), 25)
            .expect("resolver")
            .with_trust_anchor(Arc::new(anchor))
            .expect("validating resolver");
        assert_eq!(r.tlsa("mx.alpha.example").await, Ok(TlsaAnswer::Secure(vec![tlsa(0xa1).expect("record")])));
        assert_eq!(r.tlsa("mx.beta.example").await, Ok(TlsaAnswer::NotSecure));
        let bogus = r.tlsa("mx.gamma.example").await.expect_err("bogus");
        assert_eq!(bogus.result_type(), "dnssec-invalid", "{bogus}");
        assert_eq!(r.tlsa("mx.delta.example").await, Ok(TlsaAnswer::NotSecure));
        // MX lookups stay unvalidated and work for every zone, signed or not.
        assert_eq!(r.resolve("gamma.example").await.expect("MX").len(), 1);
        // Without the anchor nothing is secure: the same signed TLSA is not used.
        let plain = DnsResolver::new(addr, Some("127.0.64.1".parse().expect("ip")), 25).expect("resolver");
        assert_eq!(plain.tlsa("mx.alpha.example").await, Ok(TlsaAnswer::NotSecure));
        server.stop().await;
    }

    #[tokio::test]
    async fn bind_failure_names_address_and_fix() {
        let addr: SocketAddr = "127.0.64.54:15355".parse().expect("addr");
        let _taken = tokio::net::UdpSocket::bind(addr).await.expect("bind");
        let e = DnsServer::start(addr, &entries(), 60).await.err().expect("address in use");
        let text = e.to_string();
        match e {
            ScenarioError::Dns(DnsError::Bind { addr: at, protocol, source, .. }) => {
                assert_eq!((at, protocol, source.kind()), (addr, "UDP", std::io::ErrorKind::AddrInUse));
            }
            e => panic!("expected a bind error, got {e}"),
        }
        assert!(text.contains("127.0.64.54:15355") && text.contains("network.dns_port"), "{text}");
    }

    /// A file that is not a capture is named, with the reader's own reason as the source.
    #[test]
    fn sightings_of_a_file_that_is_no_capture_name_it() {
        let path = std::env::temp_dir().join(format!("smtplab-dns-not-pcap-{}.pcap", std::process::id()));
        std::fs::write(&path, b"this is text, not a capture\n").expect("write");
        let e = sightings(&path, "127.0.64.53:53".parse().expect("addr")).expect_err("not a capture");
        let text = e.to_string();
        let _ = std::fs::remove_file(&path);
        match e {
            ScenarioError::CaptureFile { path: named, source: tap::pcapfile::ReadError::NotCapture(_) } => {
                assert_eq!(named, path);
            }
            e => panic!("expected CaptureFile, got {e}"),
        }
        assert!(text.starts_with(&path.display().to_string()) && text.contains("not a pcap or pcapng file"), "{text}");
    }
}
