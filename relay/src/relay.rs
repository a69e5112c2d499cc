//! Starting a relay: listeners, the queue runner, and the handle a caller keeps to wait for the
//! queue to drain and to shut the relay down without losing mail. The state they share is
//! [`crate::shared::Shared`], built here.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::config::RelayConfig;
use crate::connection_cache::ConnectionCache;
use crate::delivery::{RcptOutcome, deliver_remote};
use crate::domain::normalize_domain;
use crate::error::RelayError;
use crate::records::RecordSink;
use crate::server::{Listener, serve};
use crate::shared::Shared;
use crate::spool::{Envelope, Spool};
use crate::tls::{self, KeyLogFile};
use crate::tlsrpt::TlsReporter;

pub struct Relay;

/// A running relay. Dropping it does not stop it: call [`RelayHandle::shutdown`].
pub struct RelayHandle {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    /// Stops the cover traffic generator (`crate::cover`), when one was started.
    cover_stop: watch::Sender<bool>,
    pub listen: std::net::SocketAddr,
    pub submission: Option<std::net::SocketAddr>,
}

impl Relay {
    /// Binds the listeners, picks up whatever the spool holds, and starts serving.
    pub async fn start(cfg: RelayConfig) -> Result<RelayHandle, RelayError> {
        cfg.delivery.check()?;
        let spool = Spool::open(&cfg.spool)?;
        crate::files::create_private_dir_all(&cfg.mailbox_dir)
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
        let mta_sts = match &cfg.mta_sts {
            Some(m) => Some(crate::mta_sts::MtaSts::new(m, cfg.bind, &cfg.tls)?),
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
        let cfg_delivery = cfg.delivery.clone();
        let contact = format!("tlsrpt@{}", cfg.local_domains.first().unwrap_or(&cfg.hostname));
        let tlsrpt = TlsReporter::new(&cfg.system, &contact);
        let shared = Arc::new(Shared {
            cfg,
            spool,
            records: Arc::new(records),
            tls_server,
            tls_client_any,
            tls_client_verify,
            mta_sts,
            batches: crate::batching::Batcher::new(&cfg_delivery),
            connections: ConnectionCache::new(cfg_delivery),
            ready: ready_tx,
            queued: AtomicUsize::new(backlog.len()),
            queue_changed: Notify::new(),
            duplicates: AtomicUsize::new(0),
            tlsrpt,
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
        let (cover_stop, _) = watch::channel(false);
        Ok(RelayHandle { shared, stop, tasks, cover_stop, listen, submission: submission_addr })
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

    /// Starts sending cover traffic (`crate::cover`): dummy messages queued at `cfg.rate` per
    /// second until [`RelayHandle::stop_cover`] or shutdown. A scenario starts it when its
    /// traffic starts and stops it when the traffic ends, so the drain is bounded.
    pub fn start_cover(&mut self, cfg: crate::cover::CoverConfig) -> Result<(), RelayError> {
        cfg.check()?;
        let _ = self.cover_stop.send(false);
        self.tasks.spawn(crate::cover::generate(self.shared.clone(), cfg, self.cover_stop.subscribe()));
        Ok(())
    }

    /// Stops the cover traffic: no new cover message is queued; those queued are delivered.
    pub fn stop_cover(&self) {
        let _ = self.cover_stop.send(true);
    }

    /// Deliveries recognised as repeats of one made before a crash (local mailboxes).
    pub fn duplicates(&self) -> usize {
        self.shared.duplicates.load(Ordering::SeqCst)
    }

    /// Directory fsyncs the spool ran, and the commits (store, update, remove) they served,
    /// since the relay started: with group commit, fewer fsyncs than commits.
    pub fn spool_sync_counts(&self) -> (u64, u64) {
        self.shared.spool.sync_counts()
    }

    /// What is still queued, for a report of what is stuck.
    pub fn stuck(&self) -> Vec<Envelope> {
        self.shared.spool.list().unwrap_or_default()
    }

    /// Stops accepting, lets sessions and deliveries in flight finish (up to `grace`), then
    /// returns. Whatever is still queued stays in the spool for the next start. With a records
    /// file, the TLS-RPT reports of the relay's life are written to `tlsrpt/` beside it.
    pub async fn shutdown(mut self, grace: Duration) {
        self.stop_cover();
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(grace, async { while self.tasks.join_next().await.is_some() {} }).await;
        self.tasks.abort_all();
        // Cached sessions say QUIT and their records are written; deliveries are over by now.
        let _ = tokio::time::timeout(grace, self.shared.connections.close_all()).await;
        // No finished message's bytes stay behind in the spool's kept files.
        let sh = self.shared.clone();
        let _ = tokio::task::spawn_blocking(move || sh.spool.discard_free()).await;
        if let Some(dir) = self.tls_report_dir() {
            let sh = self.shared.clone();
            let written = tokio::task::spawn_blocking(move || sh.tlsrpt.write(&dir).map_err(|e| (dir, e))).await;
            if let Ok(Err((dir, e))) = written {
                tracing::error!("{}: cannot write TLS-RPT reports to {}: {e}", self.shared.cfg.system, dir.display());
            }
        }
    }

    /// Where [`RelayHandle::shutdown`] writes the TLS-RPT reports: `tlsrpt/` in the directory of
    /// the records file; none without records.
    pub fn tls_report_dir(&self) -> Option<std::path::PathBuf> {
        let records = self.shared.cfg.records.as_ref()?;
        Some(records.parent().unwrap_or(std::path::Path::new(".")).join("tlsrpt"))
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, kind: Listener, mut stop: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(shared.cfg.limits.max_connections));
    let per_client = ClientCounts::default();
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => {
                let Ok((tcp, peer)) = accepted else { continue };
                // SMTP is request/response with small writes: Nagle plus delayed ACKs would add
                // tens of milliseconds to every exchange.
                let _ = tcp.set_nodelay(true);
                let write_limit = shared.cfg.timeouts.write;
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    tokio::spawn(refuse(tcp, "4.7.0 Error: too many connections".into(), write_limit));
                    continue;
                };
                let client_slot = if shared.cfg.is_relay_client(peer.ip()) {
                    None
                } else {
                    match per_client.take(peer.ip(), shared.cfg.limits.max_connections_per_client) {
                        Some(slot) => Some(slot),
                        None => {
                            let text = format!(
                                "4.7.0 {} Error: too many connections from {}",
                                shared.cfg.hostname,
                                peer.ip()
                            );
                            tokio::spawn(refuse(tcp, text, write_limit));
                            continue;
                        }
                    }
                };
                let shared = shared.clone();
                sessions.spawn(async move {
                    serve(shared, tcp, peer, kind).await;
                    drop(client_slot);
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

/// Says 421 and closes, without waiting on a client that does not read.
async fn refuse(mut tcp: tokio::net::TcpStream, text: String, limit: Duration) {
    use tokio::io::AsyncWriteExt;
    let _ = tokio::time::timeout(limit, async {
        let _ = tcp.write_all(&proto::Reply::new(421, text).to_bytes()).await;
        let _ = tcp.shutdown().await;
    })
    .await;
}

/// Sessions open per client address on one listener, as Postfix's anvil counts them for
/// `smtpd_client_connection_count_limit`.
#[derive(Default, Clone)]
struct ClientCounts(Arc<Mutex<HashMap<IpAddr, usize>>>);

/// One session's place in [`ClientCounts`], given back when dropped.
struct ClientSlot {
    counts: ClientCounts,
    ip: IpAddr,
}

impl ClientCounts {
    /// A place for one more session from `ip`, unless it already has `limit`.
    fn take(&self, ip: IpAddr, limit: usize) -> Option<ClientSlot> {
        let mut counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(ip).or_insert(0);
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(ClientSlot { counts: self.clone(), ip })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
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
                    // An attempt that panics (a bug, a poisoned state) leaves its message in the
                    // spool: try it again later rather than leave it for the next restart.
                    let (sh, q) = (shared.clone(), qid.clone());
                    if let Err(e) = tokio::spawn(async move { attempt(&sh, &q).await }).await {
                        tracing::error!("{}: delivery attempt of {qid} failed: {e}; retrying", shared.cfg.system);
                        retry_later(&shared, qid, shared.cfg.timeouts.retry_first);
                    }
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
    let loaded =
        tokio::task::spawn_blocking(move || sh.spool.load(&q)).await.unwrap_or_else(|e| Err(RelayError::Task(e)));
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
    // One spelling per domain: `Dest.Example.` is routed, and its TLS policy found, as
    // `dest.example`.
    let mut by_domain: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &env.pending {
        let domain = r.rsplit_once('@').map(|(_, d)| normalize_domain(d)).unwrap_or_default();
        by_domain.entry(domain).or_default().push(r.clone());
    }
    let mut still_pending = Vec::new();
    let mut failed: Vec<(String, String)> = Vec::new();
    let mut delivered_here = Vec::new();
    for (domain, rcpts) in by_domain {
        let local = shared.cfg.is_local(&domain);
        let outcomes = if local {
            let (sh, m) = (shared.clone(), message.clone());
            let (q, d, rs) = (qid.to_string(), domain.clone(), rcpts.clone());
            let done = tokio::task::spawn_blocking(move || deliver_local(&sh, &q, &d, &rs, &m)).await;
            every_recipient(&rcpts, done.map_err(|e| format!("local delivery task failed: {e}")))
        } else {
            deliver_remote(shared, &env, &domain, &rcpts, &message).await
        };
        for (rcpt, outcome) in outcomes {
            match outcome {
                RcptOutcome::Delivered if local => delivered_here.push(rcpt),
                RcptOutcome::Delivered => {}
                RcptOutcome::Deferred(why) => still_pending.push((rcpt, why)),
                RcptOutcome::Failed(why) => {
                    tracing::warn!("{}: {qid}: <{rcpt}> failed permanently: {why}", shared.cfg.system);
                    failed.push((rcpt, why));
                }
            }
        }
    }
    // Postfix's maximal_queue_lifetime: what is still deferred this long after it arrived is
    // returned to its sender with the last reason it was deferred.
    let age = (crate::now_secs() - env.received_at).max(0.0);
    if !still_pending.is_empty() && age >= shared.cfg.timeouts.queue_lifetime.as_secs_f64() {
        for (rcpt, last) in still_pending.drain(..) {
            let why = format!(
                "5.4.7 message expired after {age:.0} s in the queue (queue lifetime {} s); last error: {last}",
                shared.cfg.timeouts.queue_lifetime.as_secs()
            );
            tracing::warn!("{}: {qid}: <{rcpt}> {why}", shared.cfg.system);
            failed.push((rcpt, why));
        }
    }
    let still_pending: Vec<String> = still_pending.into_iter().map(|(rcpt, _)| rcpt).collect();
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
    retry_later(shared, qid.to_string(), delay);
}

/// Puts `qid` back on the ready queue after `delay`.
fn retry_later(shared: &Arc<Shared>, qid: String, delay: Duration) {
    let shared = shared.clone();
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
            cover: false,
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
            // RFC 8689 §5: the non-delivery report of a REQUIRETLS message is REQUIRETLS too
            // (it carries only the original's header section).
            requiretls: env.requiretls,
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

/// One outcome for every recipient: a delivery task that failed (a panic, a cancelled task), or
/// that left a recipient out, defers those recipients; they are never taken as done.
fn every_recipient(rcpts: &[String], done: Result<Vec<(String, RcptOutcome)>, String>) -> Vec<(String, RcptOutcome)> {
    let mut done = match done {
        Ok(outcomes) => outcomes,
        Err(why) => return rcpts.iter().map(|r| (r.clone(), RcptOutcome::Deferred(why.clone()))).collect(),
    };
    for r in rcpts {
        if !done.iter().any(|(d, _)| d == r) {
            done.push((r.clone(), RcptOutcome::Deferred("no outcome from the delivery task".into())));
        }
    }
    done
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
            let mut user: String =
                user.chars().map(|c| if c.is_alphanumeric() || "._-+".contains(c) { c } else { '_' }).collect();
            // `.`, `..` or nothing would name the domain's directory or its parent.
            if user.chars().all(|c| c == '.') {
                user.insert(0, '_');
            }
            let dir = shared.cfg.mailbox_dir.join(domain).join(&user);
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
            // New directories are fsynced into their parents, the file into its directory: a
            // delivery reported done survives a crash. A symbolic link on the way is refused.
            let result = crate::files::create_dirs_durably(&shared.cfg.mailbox_dir, &[domain, &user])
                .and_then(|_| crate::files::write_durably(&path, message))
                .and_then(|_| crate::files::sync_dir(&dir));
            let outcome = match result {
                Ok(()) => RcptOutcome::Delivered,
                Err(e) => RcptOutcome::Deferred(format!("mailbox {}: {e}", dir.display())),
            };
            (r.clone(), outcome)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A local delivery task that panics is a real `JoinError`, and its recipients wait.
    #[test]
    fn a_crashed_delivery_task_defers_its_recipients() {
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let rcpts = vec!["a@x.example".to_string(), "b@x.example".to_string()];
        let crashed = rt.block_on(async {
            tokio::task::spawn_blocking(|| -> Vec<(String, RcptOutcome)> { panic!("disk on fire") }).await
        });
        let outcomes = every_recipient(&rcpts, crashed.map_err(|e| format!("local delivery task failed: {e}")));
        assert_eq!(outcomes.len(), 2);
        for (_, o) in &outcomes {
            assert!(matches!(o, RcptOutcome::Deferred(why) if why.contains("task failed")), "{o:?}");
        }
        let partial = every_recipient(&rcpts, Ok(vec![("a@x.example".into(), RcptOutcome::Delivered)]));
        assert_eq!(partial[0].1, RcptOutcome::Delivered);
        assert!(matches!(&partial[1].1, RcptOutcome::Deferred(_)), "a recipient left out waits");
    }
}
