//! Starting a relay: listeners, the queue runner, and the handle a caller keeps to wait for the
//! queue to drain and to shut the relay down without losing mail.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rustls::{ClientConfig, ServerConfig};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::config::RelayConfig;
use crate::delivery::{RcptOutcome, deliver_remote};
use crate::error::RelayError;
use crate::records::RecordSink;
use crate::server::{Listener, serve};
use crate::spool::{Envelope, Spool};
use crate::tls::{self, KeyLogFile};

/// State shared by every session and delivery task of one relay.
pub(crate) struct Shared {
    pub cfg: RelayConfig,
    pub spool: Spool,
    pub records: RecordSink,
    pub tls_server: Option<Arc<ServerConfig>>,
    pub tls_client_any: Arc<ClientConfig>,
    pub tls_client_verify: Option<Arc<ClientConfig>>,
    /// Queue ids ready for a delivery attempt.
    ready: mpsc::UnboundedSender<String>,
    /// Messages in the spool (accepted, not yet finished).
    queued: AtomicUsize,
    queue_changed: Notify,
    /// Local deliveries found already done after a restart (at-least-once made visible).
    pub duplicates: AtomicUsize,
}

impl Shared {
    /// Stores a message durably and schedules its delivery. Returns once it is safe to say 250.
    pub fn enqueue(&self, env: &Envelope, message: &[u8]) -> Result<(), RelayError> {
        self.spool.store(env, message)?;
        self.queued.fetch_add(1, Ordering::SeqCst);
        let _ = self.ready.send(env.qid.clone());
        Ok(())
    }
}

pub struct Relay;

/// A running relay. Dropping it does not stop it: call [`RelayHandle::shutdown`].
pub struct RelayHandle {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    pub listen: std::net::SocketAddr,
    pub submission: Option<std::net::SocketAddr>,
}

impl Relay {
    /// Binds the listeners, picks up whatever the spool holds, and starts serving.
    pub async fn start(cfg: RelayConfig) -> Result<RelayHandle, RelayError> {
        let spool = Spool::open(&cfg.spool)?;
        std::fs::create_dir_all(&cfg.mailbox_dir)
            .map_err(|source| RelayError::Spool { path: cfg.mailbox_dir.clone(), source })?;
        let keylog = match &cfg.keylog {
            Some(p) => Some(KeyLogFile::open(p).map_err(|source| RelayError::Spool { path: p.clone(), source })?),
            None => None,
        };
        let tls_server = match &cfg.tls_identity {
            Some(id) => Some(tls::server_config(id, &cfg.tls, keylog.clone())?),
            None => None,
        };
        let tls_client_any = tls::client_config_any_cert(&cfg.tls, keylog.clone())?;
        let tls_client_verify = match &cfg.ca_pem {
            Some(ca) => Some(tls::client_config_verify(ca, &cfg.tls, keylog)?),
            None => None,
        };
        let records = RecordSink::open(cfg.records.as_deref())
            .map_err(|source| RelayError::Spool { path: cfg.records.clone().unwrap_or_default(), source })?;
        let mx =
            TcpListener::bind(cfg.listen).await.map_err(|source| RelayError::Listen { addr: cfg.listen, source })?;
        let submission = match cfg.submission {
            Some(addr) => Some(TcpListener::bind(addr).await.map_err(|source| RelayError::Listen { addr, source })?),
            None => None,
        };
        let (ready_tx, ready_rx) = mpsc::unbounded_channel();
        let backlog = spool.list()?;
        let shared = Arc::new(Shared {
            cfg,
            spool,
            records,
            tls_server,
            tls_client_any,
            tls_client_verify,
            ready: ready_tx,
            queued: AtomicUsize::new(backlog.len()),
            queue_changed: Notify::new(),
            duplicates: AtomicUsize::new(0),
        });
        for env in backlog {
            let _ = shared.ready.send(env.qid);
        }
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let listen = mx.local_addr()?;
        let submission_addr = submission.as_ref().and_then(|l| l.local_addr().ok());
        tasks.spawn(accept_loop(shared.clone(), mx, Listener::Mx, stop_rx.clone()));
        if let Some(l) = submission {
            tasks.spawn(accept_loop(shared.clone(), l, Listener::Submission, stop_rx.clone()));
        }
        tasks.spawn(queue_runner(shared.clone(), ready_rx, stop_rx));
        Ok(RelayHandle { shared, stop, tasks, listen, submission: submission_addr })
    }
}

impl RelayHandle {
    /// Messages accepted and not yet delivered, bounced or given up.
    pub fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::SeqCst)
    }

    /// Waits until the queue is empty or `limit` passes; returns the number still queued.
    pub async fn wait_idle(&self, limit: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.shared.queue_changed.notified();
            let n = self.queued();
            if n == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.queued();
            }
        }
    }

    /// Deliveries recognised as repeats of one made before a crash (local mailboxes).
    pub fn duplicates(&self) -> usize {
        self.shared.duplicates.load(Ordering::SeqCst)
    }

    /// What is still queued, for a report of what is stuck.
    pub fn stuck(&self) -> Vec<Envelope> {
        self.shared.spool.list().unwrap_or_default()
    }

    /// Stops accepting, lets sessions and deliveries in flight finish (up to `grace`), then
    /// returns. Whatever is still queued stays in the spool for the next start.
    pub async fn shutdown(mut self, grace: Duration) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(grace, async { while self.tasks.join_next().await.is_some() {} }).await;
        self.tasks.abort_all();
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, kind: Listener, mut stop: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(shared.cfg.limits.max_connections));
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => {
                let Ok((tcp, peer)) = accepted else { continue };
                // SMTP is request/response with small writes: Nagle plus delayed ACKs would add
                // tens of milliseconds to every exchange.
                let _ = tcp.set_nodelay(true);
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    tokio::spawn(refuse_busy(tcp));
                    continue;
                };
                let shared = shared.clone();
                sessions.spawn(async move {
                    serve(shared, tcp, peer, kind).await;
                    drop(permit);
                });
            }
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
    drop(listener);
    // Sessions in flight finish on their own timeouts; a message they accept is spooled.
    while sessions.join_next().await.is_some() {}
}

async fn refuse_busy(mut tcp: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    let _ = tcp.write_all(&proto::Reply::new(421, "4.7.0 Error: too many connections").to_bytes()).await;
    let _ = tcp.shutdown().await;
}

/// Takes ready queue ids and delivers each in its own task; schedules retries with backoff.
async fn queue_runner(
    shared: Arc<Shared>,
    mut ready: mpsc::UnboundedReceiver<String>,
    mut stop: watch::Receiver<bool>,
) {
    let workers = Arc::new(Semaphore::new(32));
    let mut jobs = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            Some(qid) = ready.recv() => {
                let shared = shared.clone();
                let Ok(permit) = workers.clone().acquire_owned().await else { break };
                jobs.spawn(async move {
                    attempt(&shared, &qid).await;
                    drop(permit);
                });
            }
            Some(_) = jobs.join_next(), if !jobs.is_empty() => {}
        }
    }
    while jobs.join_next().await.is_some() {}
}

/// One delivery attempt of one queued message, to every pending recipient. File work (reads,
/// fsyncs) runs on the blocking pool so it never stalls the sessions sharing the runtime.
async fn attempt(shared: &Arc<Shared>, qid: &str) {
    let (sh, q) = (shared.clone(), qid.to_string());
    let loaded = tokio::task::spawn_blocking(move || -> Result<Option<(Envelope, Vec<u8>)>, RelayError> {
        let Some(env) = sh.spool.envelope(&q)? else { return Ok(None) };
        let message = sh.spool.message(&q)?;
        Ok(Some((env, message)))
    })
    .await
    .unwrap_or_else(|e| Err(RelayError::Io(std::io::Error::other(e.to_string()))));
    let (mut env, message) = match loaded {
        Ok(Some(x)) => x,
        Ok(None) => return,
        Err(e) => {
            tracing::error!("{}: queued message {qid} unreadable: {e}", shared.cfg.system);
            return;
        }
    };
    let message = Arc::new(message);
    env.attempts += 1;
    let mut by_domain: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &env.pending {
        let domain = r.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()).unwrap_or_default();
        by_domain.entry(domain).or_default().push(r.clone());
    }
    let mut still_pending = Vec::new();
    let mut failed: Vec<(String, String)> = Vec::new();
    let mut delivered_here = Vec::new();
    for (domain, rcpts) in by_domain {
        let local = shared.cfg.is_local(&domain);
        let outcomes = if local {
            let (sh, m) = (shared.clone(), message.clone());
            let q = qid.to_string();
            tokio::task::spawn_blocking(move || deliver_local(&sh, &q, &domain, &rcpts, &m)).await.unwrap_or_default()
        } else {
            deliver_remote(shared, &env, &domain, &rcpts, &message).await
        };
        for (rcpt, outcome) in outcomes {
            match outcome {
                RcptOutcome::Delivered if local => delivered_here.push(rcpt),
                RcptOutcome::Delivered => {}
                RcptOutcome::Deferred(_) => still_pending.push(rcpt),
                RcptOutcome::Failed(why) => {
                    tracing::warn!("{}: {qid}: <{rcpt}> failed permanently: {why}", shared.cfg.system);
                    failed.push((rcpt, why));
                }
            }
        }
    }
    record_final_outcomes(shared, &env, &message, delivered_here, &failed);
    env.deliveries += 1;
    let sh = shared.clone();
    let finished = still_pending.is_empty();
    let attempts = env.attempts;
    let done = tokio::task::spawn_blocking(move || finish_attempt(&sh, env, still_pending, failed, &message)).await;
    if let Err(e) = done {
        tracing::error!("{}: {qid}: {e}", shared.cfg.system);
    }
    if finished {
        shared.queued.fetch_sub(1, Ordering::SeqCst);
        shared.queue_changed.notify_waiters();
        return;
    }
    let t = &shared.cfg.timeouts;
    let delay = t.retry_first.saturating_mul(1 << attempts.saturating_sub(1).min(16)).min(t.retry_max);
    let shared = shared.clone();
    let qid = qid.to_string();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let _ = shared.ready.send(qid);
    });
}

/// Ground truth of where each recipient's copy ended: a `local` session record per attempt
/// that put copies in mailboxes here (`delivered`) or gave up on recipients for good
/// (`bounced`, with the reasons). A copy handed to the next hop is not final: that system
/// records its fate. Recipients in neither are still queued somewhere when the run ends.
fn record_final_outcomes(
    shared: &Shared,
    env: &Envelope,
    message: &[u8],
    delivered: Vec<String>,
    failed: &[(String, String)],
) {
    let now = crate::now_secs();
    let hop = |rcpt_to: Vec<String>, reply: u16| {
        vec![records::HopMessage {
            message_id: env.message_id.clone(),
            queue_id: env.qid.clone(),
            mail_from: env.mail_from.clone(),
            rcpt_to,
            bytes: message.len() as u64,
            sha256: crate::sha256_hex(message),
            reply,
        }]
    };
    let record = |outcome: &str, messages, error| records::SessionRecord {
        direction: "local".into(),
        system: shared.cfg.system.clone(),
        started_at: now,
        ended_at: now,
        messages,
        outcome: outcome.into(),
        error,
        ..Default::default()
    };
    if !delivered.is_empty() {
        shared.records.write(&record("delivered", hop(delivered, 250), None));
    }
    if !failed.is_empty() {
        let why = failed.iter().map(|(r, why)| format!("<{r}>: {why}")).collect::<Vec<_>>().join("; ");
        let rcpts = failed.iter().map(|(r, _)| r.clone()).collect();
        shared.records.write(&record("bounced", hop(rcpts, 550), Some(why)));
    }
}

/// After an attempt: bounce what failed for good, then dequeue the message or record what is
/// still pending.
fn finish_attempt(
    shared: &Shared,
    mut env: Envelope,
    still_pending: Vec<String>,
    failed: Vec<(String, String)>,
    message: &[u8],
) {
    let qid = env.qid.clone();
    // A bounce never bounces: the null reverse-path gets no DSN.
    if !failed.is_empty() && !env.mail_from.is_empty() {
        let dsn_qid = shared.spool.new_qid();
        let dsn = crate::bounce::build(&shared.cfg.hostname, &dsn_qid, &env, &failed, message);
        let dsn_env = Envelope {
            qid: dsn_qid,
            message_id: crate::server::message_id(&dsn).unwrap_or_default(),
            mail_from: String::new(),
            pending: vec![env.mail_from.clone()],
            received_at: crate::now_secs(),
            attempts: 0,
            deliveries: 0,
        };
        if let Err(e) = shared.enqueue(&dsn_env, &dsn) {
            tracing::error!("{}: cannot queue the bounce for {qid}: {e}", shared.cfg.system);
        }
    }
    if still_pending.is_empty() {
        if let Err(e) = shared.spool.remove(&qid) {
            tracing::error!("{}: cannot remove {qid} from the spool: {e}", shared.cfg.system);
        }
        return;
    }
    env.pending = still_pending;
    if let Err(e) = shared.spool.update(&env) {
        tracing::error!("{}: cannot update {qid}: {e}", shared.cfg.system);
    }
}

/// Writes the message into `mailbox_dir/<domain>/<user>/<qid>.eml` for each recipient.
fn deliver_local(
    shared: &Shared,
    qid: &str,
    domain: &str,
    rcpts: &[String],
    message: &[u8],
) -> Vec<(String, RcptOutcome)> {
    rcpts
        .iter()
        .map(|r| {
            let user = r.rsplit_once('@').map(|(u, _)| u).unwrap_or(r);
            let user: String =
                user.chars().map(|c| if c.is_alphanumeric() || "._-+".contains(c) { c } else { '_' }).collect();
            let dir = shared.cfg.mailbox_dir.join(domain).join(user);
            // Named by queue id, which survives restarts: a message delivered just before a
            // crash, and attempted again after it, is found here and counted, not written twice.
            let path = dir.join(format!("{qid}.eml"));
            if path.exists() {
                shared.duplicates.fetch_add(1, Ordering::SeqCst);
                shared.records.write(&records::SessionRecord {
                    direction: "local".into(),
                    system: shared.cfg.system.clone(),
                    started_at: crate::now_secs(),
                    ended_at: crate::now_secs(),
                    outcome: "duplicate".into(),
                    error: Some(format!("{qid} to <{r}> was already delivered before a restart; not written again")),
                    ..Default::default()
                });
                return (r.clone(), RcptOutcome::Delivered);
            }
            let result = std::fs::create_dir_all(&dir)
                .and_then(|_| crate::spool::write_durably(&path, message))
                .and_then(|_| crate::spool::sync_dir(&dir));
            let outcome = match result {
                Ok(()) => RcptOutcome::Delivered,
                Err(e) => RcptOutcome::Deferred(format!("mailbox {}: {e}", dir.display())),
            };
            (r.clone(), outcome)
        })
        .collect()
}
