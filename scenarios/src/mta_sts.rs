//! MTA-STS (RFC 8461) in scenarios: the policy a system publishes (`systems[i].mta_sts_policy`),
//! served over real HTTPS by a policy server at the system's address on `network.https_port`
//! with a certificate for `mta-sts.<domain>` from the scenario CA; the DNS records that announce
//! it (`_mta-sts.<domain> TXT "v=STSv1; id=..."`, `mta-sts.<domain> A`); and the attacker's side
//! (`attacks[k].policy_fetch`): DNS sends the fetch to the attacker, which drops it or answers
//! with a certificate of its own once its attack has started, and passes it through before.
//!
//! Senders honour MTA-STS with `systems[i].mta_sts = true`; their side is [`relay::mta_sts`].
//! The keys' types ([`PolicySpec`], [`FetchBlock`]) and their check belong to [`crate::schema`].

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use relay::TlsIdentity;
use relay::mta_sts::POLICY_PATH;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::error::ScenarioError;
use crate::pki::Pki;
use crate::schema::Scenario;
/// The MTA-STS keys' types, which live with the rest of the scenario schema (as does their check).
pub use crate::schema::{FetchBlock, PolicySpec};

/// The policy host of a domain.
pub fn policy_host(domain: &str) -> String {
    format!("mta-sts.{domain}")
}

/// The attacker (index, address) that takes the policy fetches of `domain`, if one does.
fn fetch_interceptor(s: &Scenario, domain: &str) -> Option<(usize, Ipv4Addr)> {
    s.interceptions()
        .into_iter()
        .find(|(d, k, _)| d.eq_ignore_ascii_case(domain) && s.attacks[*k].policy_fetch.is_some())
        .map(|(_, k, a)| (k, a))
}

/// The DNS records that announce each published policy, with the zone (domain) each goes into:
/// `_mta-sts.D TXT "v=STSv1; id=ID;"` and `mta-sts.D A` (the system's address, or the address of
/// the attacker that intercepts the fetch).
pub fn dns_records(s: &Scenario) -> Vec<DnsRecord> {
    let mut out = Vec::new();
    for (i, sys) in s.systems.iter().enumerate() {
        let Some(p) = &sys.mta_sts_policy else { continue };
        let addr = fetch_interceptor(s, &sys.domain).map_or(s.address(i), |(_, a)| a);
        out.push(DnsRecord {
            zone: sys.domain.clone(),
            name: format!("_mta-sts.{}", sys.domain),
            data: DnsData::Txt(format!("v=STSv1; id={};", p.id)),
        });
        out.push(DnsRecord { zone: sys.domain.clone(), name: policy_host(&sys.domain), data: DnsData::A(addr) });
    }
    out
}

/// One record the scenario's DNS server adds to a system's zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsRecord {
    pub zone: String,
    pub name: String,
    pub data: DnsData,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsData {
    A(Ipv4Addr),
    Txt(String),
}

/// What a relay honouring MTA-STS is told.
pub fn relay_config(s: &Scenario, ca_pem: &str) -> Option<relay::mta_sts::MtaStsConfig> {
    Some(relay::mta_sts::MtaStsConfig {
        dns: s.dns_server()?,
        https_port: s.network.https_port,
        ca_pem: ca_pem.to_string(),
        fetch_timeout: Duration::from_secs(5),
    })
}

/// The run's policy servers, one per publishing system.
pub struct PolicyServers {
    servers: Vec<PolicyServer>,
}

impl PolicyServers {
    /// Starts a policy server for every system that publishes a policy, before the relays.
    pub async fn start(s: &Scenario, pki: &Pki) -> Result<PolicyServers, ScenarioError> {
        let mut servers = Vec::new();
        for (i, sys) in s.systems.iter().enumerate() {
            let Some(p) = &sys.mta_sts_policy else { continue };
            let (cert_chain_pem, key_pem) = pki.issue(&policy_host(&sys.domain))?;
            let addr = SocketAddr::new(IpAddr::V4(s.address(i)), s.network.https_port);
            let identity = TlsIdentity { cert_chain_pem, key_pem };
            servers.push(PolicyServer::start(addr, &identity, p.text(&sys.mx_host()), p.content_type()).await?);
        }
        Ok(PolicyServers { servers })
    }

    pub async fn stop(self) {
        for s in self.servers {
            s.stop().await;
        }
    }
}

/// An HTTPS server (hyper, HTTP/1.1, over tokio-rustls) answering `GET /.well-known/mta-sts.txt`
/// with one policy, and 404 for anything else.
pub struct PolicyServer {
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl PolicyServer {
    pub async fn start(
        addr: SocketAddr,
        identity: &TlsIdentity,
        body: String,
        content_type: &str,
    ) -> Result<PolicyServer, ScenarioError> {
        let tls = relay::tls::server_config(identity, &Default::default(), None)?;
        let listener =
            TcpListener::bind(addr).await.map_err(|source| ScenarioError::PolicyServerBind { addr, source })?;
        let addr = listener.local_addr().map_err(ScenarioError::io("policy server address"))?;
        let (stop, stop_rx) = watch::channel(false);
        let page = Arc::new((Bytes::from(body), content_type.to_string()));
        let task = tokio::spawn(serve(listener, tokio_rustls::TlsAcceptor::from(tls), page, stop_rx));
        Ok(PolicyServer { addr, stop, task })
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

async fn serve(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    page: Arc<(Bytes, String)>,
    mut stop: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else { continue };
                let (acceptor, page) = (acceptor.clone(), page.clone());
                conns.spawn(async move {
                    let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| answer(req, page.clone()));
                    let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service);
                    let _ = tokio::time::timeout(Duration::from_secs(30), conn).await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = stop.changed() => break,
        }
    }
    conns.abort_all();
}

async fn answer(
    req: Request<hyper::body::Incoming>,
    page: Arc<(Bytes, String)>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, body, content_type) = if req.method() == hyper::Method::GET && req.uri().path() == POLICY_PATH {
        (StatusCode::OK, page.0.clone(), page.1.as_str())
    } else {
        (StatusCode::NOT_FOUND, Bytes::from_static(b"not found\n"), "text/plain")
    };
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    Ok(r)
}

/// One policy fetch an attacker intercepted: `attackers/<name>/policy_fetches.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InterceptedFetch {
    pub attacker: String,
    pub started_at: f64,
    pub victim_addr: String,
    pub victim_system: Option<String>,
    pub domain: String,
    /// `drop` or `self-signed` when blocked; `passed` when relayed to the real policy server.
    pub action: String,
}

/// An attacker's post in front of one domain's policy server.
pub struct FetchPost {
    pub attacker: String,
    pub block: FetchBlock,
    pub domain: String,
    pub listen: SocketAddr,
    pub upstream: SocketAddr,
    /// Decides per victim whether the attack is on (started, targeted).
    pub attacking: Arc<dyn Fn(IpAddr) -> bool + Send + Sync>,
    pub systems_by_ip: Arc<std::collections::HashMap<IpAddr, String>>,
    pub log: Arc<std::sync::Mutex<std::fs::File>>,
}

impl FetchPost {
    /// The log file of an attacker's intercepted fetches.
    pub fn open_log(dir: &Path) -> Result<Arc<std::sync::Mutex<std::fs::File>>, ScenarioError> {
        let path = dir.join("policy_fetches.jsonl");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(ScenarioError::io(path.display().to_string()))?;
        Ok(Arc::new(std::sync::Mutex::new(f)))
    }

    /// Listens until `stop`: blocks fetches while attacking, passes them through otherwise.
    pub async fn run(self, mut stop: watch::Receiver<bool>) -> Result<(), ScenarioError> {
        let listener = TcpListener::bind(self.listen)
            .await
            .map_err(|source| ScenarioError::Relay(relay::RelayError::Listen { addr: self.listen, source }))?;
        let tls = match self.block {
            FetchBlock::SelfSigned => {
                let (cert_chain_pem, key_pem) = Pki::self_signed(&policy_host(&self.domain))?;
                let id = TlsIdentity { cert_chain_pem, key_pem };
                Some(tokio_rustls::TlsAcceptor::from(relay::tls::server_config(&id, &Default::default(), None)?))
            }
            FetchBlock::Drop => None,
        };
        let post = Arc::new(self);
        tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((tcp, peer)) = accepted else { continue };
                        conns.spawn(intercept(post.clone(), tls.clone(), tcp, peer));
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                    _ = stop.changed() => break,
                }
            }
            conns.abort_all();
        });
        Ok(())
    }
}

async fn intercept(
    post: Arc<FetchPost>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut tcp: tokio::net::TcpStream,
    peer: SocketAddr,
) {
    let attacking = (post.attacking)(peer.ip());
    let action = if attacking { post.block.name() } else { "passed" };
    let record = InterceptedFetch {
        attacker: post.attacker.clone(),
        started_at: relay::now_secs(),
        victim_addr: peer.to_string(),
        victim_system: post.systems_by_ip.get(&peer.ip()).cloned(),
        domain: post.domain.clone(),
        action: action.into(),
    };
    if let Ok(mut line) = serde_json::to_string(&record) {
        line.push('\n');
        let mut f = post.log.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = std::io::Write::write_all(&mut *f, line.as_bytes()) {
            tracing::error!("cannot write the attacker's fetch record: {e}");
        }
    }
    if attacking {
        if let Some(acceptor) = tls {
            // The victim's handshake fails on the certificate; nothing more is said.
            let _ = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await;
        }
        return;
    }
    let socket = match tokio::net::TcpSocket::new_v4() {
        Ok(s) => s,
        Err(_) => return,
    };
    if socket.bind(SocketAddr::new(post.listen.ip(), 0)).is_err() {
        return;
    }
    let Ok(Ok(mut upstream)) = tokio::time::timeout(Duration::from_secs(10), socket.connect(post.upstream)).await
    else {
        return;
    };
    let _ = tokio::time::timeout(Duration::from_secs(30), tokio::io::copy_bidirectional(&mut tcp, &mut upstream)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay::mta_sts::Mode;

    /// The generated file is the RFC's format, with the system's MX by default.
    #[test]
    fn generated_policy_text() {
        let p = PolicySpec {
            mode: Mode::Enforce,
            max_age: 600,
            mx: Vec::new(),
            id: "7".into(),
            body: None,
            content_type: None,
        };
        assert_eq!(p.text("mx.b.example"), "version: STSv1\r\nmode: enforce\r\nmx: mx.b.example\r\nmax_age: 600\r\n");
        let two = PolicySpec { mx: vec!["a.example".into(), "*.b.example".into()], ..p.clone() };
        assert_eq!(
            two.text("ignored"),
            "version: STSv1\r\nmode: enforce\r\nmx: a.example\r\nmx: *.b.example\r\nmax_age: 600\r\n"
        );
        assert_eq!(PolicySpec { body: Some("junk".into()), ..p }.text("x"), "junk");
    }
}
