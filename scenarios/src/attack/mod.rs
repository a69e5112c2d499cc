//! Active attackers on the path (issue 13): middleware around the link between a victim relay
//! and the MX of a domain it sends to, composed into the run the way a real attacker would be.
//!
//! The scenario's DNS (the in-process map or the DNS server) gives each intercepted domain's MX
//! host the attacker's address (`mx.D` keeps its name, so certificate checks still test the real
//! name). The attacker listens there on the SMTP port and relays every session on to the real
//! MX, from its own address, so delivery completes and nothing looks amiss to the victim's users.
//! A targeted session that begins after the attack's start is attacked with the attack's seeded
//! share; the rest are passed through byte for byte. Each session becomes one
//! [`records::AttackerSession`] line in `attackers/<name>/sessions.jsonl`, merged into
//! `truth/attacker.jsonl`: the attacker's own ground truth of what it read.

mod session;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use records::AttackerSession;
use relay::TlsIdentity;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::error::ScenarioError;
use crate::pki::Pki;
use crate::schema::{AttackKind, FakeCertificate, Scenario};

/// When traffic began: set by the runner as the first message is submitted. An attack's `start`
/// counts from here; before it is set no session is attacked.
pub type TrafficStart = Arc<OnceLock<Instant>>;

/// The run's attackers, listening.
pub struct Attackers {
    tasks: JoinSet<()>,
    stop: watch::Sender<bool>,
}

/// Everything a session of one intercepted domain needs to know.
struct Post {
    attacker: String,
    kind: AttackKind,
    certificate: Option<FakeCertificate>,
    domain: String,
    target_system: String,
    mx_host: String,
    listen: SocketAddr,
    upstream: SocketAddr,
    /// Every session to this domain is targeted.
    whole_domain: bool,
    /// Otherwise only sessions from these victims (the targeted links' senders).
    link_victims: HashSet<IpAddr>,
    start: Duration,
    share: f64,
    /// One generator per attacker, shared by its domains, seeded from the scenario seed.
    rng: Arc<Mutex<ChaCha20Rng>>,
    traffic_start: TrafficStart,
    systems_by_ip: Arc<HashMap<IpAddr, String>>,
    /// fake-mx: the attacker's TLS server config with its own certificate.
    tls_server: Option<Arc<rustls::ServerConfig>>,
    /// The attacker's onward leg: any certificate (it only wants the real MX to accept the mail).
    tls_client: Arc<rustls::ClientConfig>,
    sink: Arc<Sink>,
}

impl Post {
    /// Whether the session from `victim` is attacked: targeted, after the start, and within
    /// the share (the draw is made for targeted sessions only, in the order they arrive).
    fn attacks(&self, victim: IpAddr) -> bool {
        let targeted = self.whole_domain || self.link_victims.contains(&victim);
        let started = self.traffic_start.get().is_some_and(|t| t.elapsed() >= self.start);
        if !(targeted && started) {
            return false;
        }
        let draw: f64 = self.rng.lock().unwrap_or_else(|p| p.into_inner()).random();
        draw < self.share
    }
}

impl Attackers {
    /// Starts every attacker of the scenario: one listener per intercepted domain at the
    /// address the scenario's DNS gives for that domain's MX, on `mx_port`.
    pub async fn start(
        s: &Scenario,
        pki: &Pki,
        mx_port: u16,
        run_dir: &Path,
        traffic_start: TrafficStart,
    ) -> Result<Attackers, ScenarioError> {
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let systems_by_ip: Arc<HashMap<IpAddr, String>> =
            Arc::new((0..s.systems.len()).map(|i| (IpAddr::V4(s.address(i)), s.systems[i].name.clone())).collect());
        let tls_client = relay::tls::client_config_any_cert(&Default::default(), None)?;
        for (k, a) in s.attacks.iter().enumerate() {
            let dir = run_dir.join("attackers").join(&a.name);
            std::fs::create_dir_all(&dir).map_err(ScenarioError::io(dir.display().to_string()))?;
            let sink = Arc::new(Sink::open(&dir.join("sessions.jsonl"))?);
            let mut fetch_log = None;
            let rng =
                Arc::new(Mutex::new(ChaCha20Rng::seed_from_u64(s.scenario.seed ^ 0x6174_7461_636b_0000 ^ (k as u64))));
            for (j, domain) in s.intercepted_domains(k).into_iter().enumerate() {
                let Some(t) = s.systems.iter().position(|sys| sys.domain.eq_ignore_ascii_case(&domain)) else {
                    continue;
                };
                let mx_host = s.systems[t].mx_host();
                let tls_server = match a.attack {
                    AttackKind::FakeMx => Some(relay::tls::server_config(
                        &fake_identity(pki, a.certificate.unwrap_or(FakeCertificate::SelfSigned), &mx_host, &a.name)?,
                        &Default::default(),
                        None,
                    )?),
                    _ => None,
                };
                let index = |n: &str| s.systems.iter().position(|sys| sys.name == n);
                let link_victims: HashSet<IpAddr> = a
                    .links
                    .iter()
                    .filter(|[_, to]| index(to) == Some(t))
                    .filter_map(|[from, _]| index(from))
                    .map(|i| IpAddr::V4(s.address(i)))
                    .collect();
                if let Some(block) = a.policy_fetch
                    && s.systems[t].mta_sts_policy.is_some()
                {
                    let (traffic_start, start) = (traffic_start.clone(), Duration::from_secs_f64(a.start));
                    let whole_domain = a.domains.iter().any(|d| d.eq_ignore_ascii_case(&domain));
                    let victims: HashSet<IpAddr> = link_victims.clone();
                    let fetch = crate::mta_sts::FetchPost {
                        attacker: a.name.clone(),
                        block,
                        domain: domain.clone(),
                        listen: SocketAddr::new(IpAddr::V4(s.attacker_address(k, j)), s.network.https_port),
                        upstream: SocketAddr::new(IpAddr::V4(s.address(t)), s.network.https_port),
                        // The fetch is blocked for every targeted victim once the attack has
                        // started (no share: one blocked fetch is all it takes).
                        attacking: Arc::new(move |victim| {
                            (whole_domain || victims.contains(&victim))
                                && traffic_start.get().is_some_and(|t| t.elapsed() >= start)
                        }),
                        systems_by_ip: systems_by_ip.clone(),
                        log: fetch_log.get_or_insert(crate::mta_sts::FetchPost::open_log(&dir)?).clone(),
                    };
                    fetch.run(stop_rx.clone()).await?;
                }
                let post = Arc::new(Post {
                    attacker: a.name.clone(),
                    kind: a.attack,
                    certificate: (a.attack == AttackKind::FakeMx)
                        .then(|| a.certificate.unwrap_or(FakeCertificate::SelfSigned)),
                    whole_domain: a.domains.iter().any(|d| d.eq_ignore_ascii_case(&domain)),
                    domain,
                    target_system: s.systems[t].name.clone(),
                    mx_host,
                    listen: SocketAddr::new(IpAddr::V4(s.attacker_address(k, j)), mx_port),
                    upstream: SocketAddr::new(IpAddr::V4(s.address(t)), mx_port),
                    link_victims,
                    start: Duration::from_secs_f64(a.start),
                    share: a.share,
                    rng: rng.clone(),
                    traffic_start: traffic_start.clone(),
                    systems_by_ip: systems_by_ip.clone(),
                    tls_server,
                    tls_client: tls_client.clone(),
                    sink: sink.clone(),
                });
                let listener = TcpListener::bind(post.listen)
                    .await
                    .map_err(|source| ScenarioError::Relay(relay::RelayError::Listen { addr: post.listen, source }))?;
                tasks.spawn(listen(post, listener, stop_rx.clone()));
            }
        }
        Ok(Attackers { tasks, stop })
    }

    /// Stops listening and lets the sessions in progress end (the relays have stopped by now,
    /// so they end at once) before giving up on them after `limit`.
    pub async fn stop(mut self, limit: Duration) {
        let _ = self.stop.send(true);
        let drained = tokio::time::timeout(limit, async { while self.tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!("attackers: sessions still open after {limit:?}; their records are lost");
            self.tasks.abort_all();
        }
    }
}

/// Merges every attacker's sessions into `truth/attacker.jsonl`, by start time. Written even
/// without attackers (empty), so analysis can tell "no attacker" from "no record".
pub fn merge_truth(s: &Scenario, run_dir: &Path) -> Result<usize, ScenarioError> {
    let mut all: Vec<AttackerSession> = Vec::new();
    for a in &s.attacks {
        let path: PathBuf = run_dir.join("attackers").join(&a.name).join("sessions.jsonl");
        if path.exists() {
            all.extend(records::read_jsonl::<AttackerSession>(&path)?);
        }
    }
    all.sort_by(|a, b| a.started_at.total_cmp(&b.started_at));
    records::write_jsonl(&run_dir.join("truth/attacker.jsonl"), &all)?;
    Ok(all.len())
}

/// The fake MX's certificate chain and key.
fn fake_identity(
    pki: &Pki,
    certificate: FakeCertificate,
    mx_host: &str,
    attacker: &str,
) -> Result<TlsIdentity, ScenarioError> {
    let (cert_chain_pem, key_pem) = match certificate {
        FakeCertificate::SelfSigned => Pki::self_signed(mx_host)?,
        // A name the victim did not ask for: the attacker's own host, as a CA would issue it.
        FakeCertificate::WrongName => pki.issue(&format!("mx.{attacker}.attacker.example"))?,
        FakeCertificate::CompromisedCa => pki.issue(mx_host)?,
    };
    Ok(TlsIdentity { cert_chain_pem, key_pem })
}

async fn listen(post: Arc<Post>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((victim, peer)) = accepted else { continue };
                sessions.spawn(session::handle(post.clone(), victim, peer));
            }
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    while sessions.join_next().await.is_some() {}
}

/// Connects to the real MX from the attacker's own address, so the capture attributes the
/// onward leg to the attacker.
async fn connect_upstream(post: &Post) -> std::io::Result<TcpStream> {
    let socket =
        if post.upstream.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }?;
    socket.bind(SocketAddr::new(post.listen.ip(), 0))?;
    let tcp = tokio::time::timeout(session::TIMEOUT, socket.connect(post.upstream))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// An attacker's records file: one JSON line per session, written whole under a lock as each
/// session ends.
struct Sink(Mutex<std::fs::File>);

impl Sink {
    fn open(path: &Path) -> Result<Sink, ScenarioError> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(ScenarioError::io(path.display().to_string()))?;
        Ok(Sink(Mutex::new(f)))
    }

    fn write(&self, record: &AttackerSession) {
        let Ok(mut line) = serde_json::to_string(record) else { return };
        line.push('\n');
        let mut f = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = f.write_all(line.as_bytes()) {
            tracing::error!("cannot write the attacker's record: {e}");
        }
    }
}
