//! Streamed submission: the generator builds each message just before it is due, one task per
//! sending system submits it over that system's submission port, and the ground truth is
//! written as the messages are made.
//!
//! Nothing here holds the whole traffic: messages waiting for their submitter are bounded by a
//! byte budget, so a run of 100,000 messages needs no more memory than one of 1,000. The
//! generator runs on a blocking thread (building MIME and hashing is CPU work that would stall
//! the relays sharing the runtime) and waits for budget when the submitters fall behind.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use records::TruthMessage;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::error::{ScenarioError, SubmissionError};
use crate::inject::{Submission, Submitter};
use crate::progress::bar;
use crate::schema::Scenario;
use crate::traffic::{Generated, Generator, User};

/// Bytes of generated messages allowed to wait for their submitter. Large enough to keep every
/// system's connection busy, small next to the traffic of a large run.
const BUDGET: usize = 32 * 1024 * 1024;

/// A submission connection idle for longer than this (waiting for its next message to be due,
/// or to be generated) is closed and opened again when the next message comes, as a mail client
/// would; the relay's own idle timeout is 30 s.
const IDLE_RECONNECT: Duration = Duration::from_secs(10);

/// What was submitted: the wall-clock time of each message's 250 reply, by sequence number.
pub struct Submitted {
    pub times: BTreeMap<u64, f64>,
    /// The first error of the generator or of a submitter; the run fails with it.
    pub error: Option<ScenarioError>,
}

/// Generates the scenario's traffic and submits it, each message at its scheduled time counted
/// from this call; writes the truth of every generated message to `truth_path` in sequence
/// order, then keeps only what was submitted (an interrupted or failed run stops early).
///
/// With `tls` (the runner gives it when some users send with REQUIRETLS), every submission
/// session upgrades by STARTTLS where the system offers it.
pub async fn submit_all(
    s: &Scenario,
    users: Arc<Vec<User>>,
    truth_path: &Path,
    tls: Option<crate::inject::SubmissionTls>,
) -> Submitted {
    submit_all_from(s, users, truth_path, tls, None).await
}

/// [`submit_all`] with, in `sources`, each user's own source address (by user index): then
/// every message is submitted over a connection of its own from its sender's address, so each
/// user's access line carries that user's mail only (`tap.access_share`).
pub async fn submit_all_from(
    s: &Scenario,
    users: Arc<Vec<User>>,
    truth_path: &Path,
    tls: Option<crate::inject::SubmissionTls>,
    sources: Option<Arc<Vec<IpAddr>>>,
) -> Submitted {
    let expected = match Generator::new(s, &users) {
        Ok(g) => g.expected(),
        Err(e) => return Submitted { times: BTreeMap::new(), error: Some(e) },
    };
    let pb = bar(expected, "submitting");
    let budget = Arc::new(Semaphore::new(BUDGET));
    let start = tokio::time::Instant::now();
    // One channel and one task per system; a system's task connects when its first message comes.
    let mut senders = Vec::with_capacity(s.systems.len());
    let mut tasks = tokio::task::JoinSet::new();
    for sys in 0..s.systems.len() {
        let (tx, rx) = mpsc::unbounded_channel();
        senders.push(tx);
        let addr = SocketAddr::new(IpAddr::V4(s.address(sys)), s.network.submission_port);
        let tls = tls.clone().map(|t| crate::inject::SubmissionTls { server_name: s.systems[sys].mx_host(), ..t });
        let client = Client { tls, sources: sources.clone() };
        tasks.spawn(submit_system(addr, rx, users.clone(), start, pb.clone(), IDLE_RECONNECT, client));
    }
    let producer = {
        let (s, users, path) = (Arc::new(s.clone()), users.clone(), truth_path.to_path_buf());
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || produce(&s, &users, senders, &budget, &path, &handle))
    };
    let mut times: BTreeMap<u64, f64> = BTreeMap::new();
    let mut error = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(t)) => times.extend(t),
            Ok(Err(e)) => error = error.or(Some(e)),
            Err(e) => error = error.or(Some(SubmissionError::TaskFailed(e).into())),
        }
    }
    pb.finish_and_clear();
    let generated = match producer.await {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => {
            error = error.or(Some(e));
            u64::MAX
        }
        Err(e) => {
            error = error.or(Some(SubmissionError::GeneratorFailed(e).into()));
            u64::MAX
        }
    };
    if generated != times.len() as u64
        && let Err(e) = keep_submitted(truth_path, &times)
    {
        error = error.or(Some(e));
    }
    Submitted { times, error }
}

/// A generated message on its way to its submitter, holding its share of the budget.
struct Queued {
    message: Generated,
    _budget: OwnedSemaphorePermit,
}

/// The generator's side: builds each message, writes its truth, and hands it to its sender's
/// system. Returns how many messages it generated. Stops early on Ctrl-C or when a submitter
/// has failed (the run fails then anyway).
fn produce(
    s: &Scenario,
    users: &[User],
    senders: Vec<mpsc::UnboundedSender<Queued>>,
    budget: &Arc<Semaphore>,
    truth_path: &Path,
    handle: &tokio::runtime::Handle,
) -> Result<u64, ScenarioError> {
    let io = |e: std::io::Error| ScenarioError::Io { what: truth_path.display().to_string(), source: e };
    let mut truth = std::io::BufWriter::new(std::fs::File::create(truth_path).map_err(io)?);
    let mut generated = 0;
    for message in Generator::new(s, users)? {
        if crate::interrupt::interrupted() {
            break;
        }
        let message = message?;
        let line = serde_json::to_string(&truth_of(s, users, &message)).map_err(|e| io(e.into()))?;
        writeln!(truth, "{line}").map_err(io)?;
        generated += 1;
        // A message larger than the whole budget takes all of it: it then travels alone.
        let cost = message.bytes.len().clamp(1, BUDGET) as u32;
        let Ok(permit) = handle.block_on(budget.clone().acquire_many_owned(cost)) else { break };
        let system = users[message.sender].system;
        if senders[system].send(Queued { message, _budget: permit }).is_err() {
            break;
        }
    }
    truth.flush().map_err(io)?;
    Ok(generated)
}

/// The ground truth of one generated message.
fn truth_of(s: &Scenario, users: &[User], g: &Generated) -> TruthMessage {
    let mut systems: Vec<String> = g.recipients.iter().map(|&r| s.systems[users[r].system].name.clone()).collect();
    systems.dedup();
    TruthMessage {
        seq: g.seq,
        message_id: g.message_id.clone(),
        sender: users[g.sender].address.clone(),
        sender_system: s.systems[users[g.sender].system].name.clone(),
        recipients: g.recipients.iter().map(|&r| users[r].address.clone()).collect(),
        recipient_systems: systems,
        subject: g.subject.clone(),
        bytes: g.bytes.len() as u64,
        sha256: relay::sha256_hex(&g.bytes),
        scheduled_at: g.scheduled_at,
        requiretls: g.requiretls,
    }
}

/// How a system's submitter connects: STARTTLS or not, and each user's own source address
/// (by user index) when users submit from addresses of their own.
struct Client {
    tls: Option<crate::inject::SubmissionTls>,
    sources: Option<Arc<Vec<IpAddr>>>,
}

/// One system's users submitting, in order, each message at its scheduled time, over a
/// connection closed when idle for `idle`. Returns the wall-clock time of each 250 reply by
/// sequence number.
async fn submit_system(
    addr: SocketAddr,
    mut queue: mpsc::UnboundedReceiver<Queued>,
    users: Arc<Vec<User>>,
    start: tokio::time::Instant,
    pb: indicatif::ProgressBar,
    idle: Duration,
    Client { tls, sources }: Client,
) -> Result<Vec<(u64, f64)>, ScenarioError> {
    let mut client: Option<Submitter> = None;
    let mut times = Vec::new();
    loop {
        // The generator may feed other systems for a while (its budget is shared): an idle
        // connection is closed before the relay's idle timeout would cut it.
        let next = if client.is_some() {
            match tokio::time::timeout(idle, queue.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    if let Some(c) = client.take() {
                        c.quit().await;
                    }
                    continue;
                }
            }
        } else {
            queue.recv().await
        };
        let Some(Queued { message: g, _budget }) = next else { break };
        // Poisson arrivals: each message waits for its scheduled time.
        // Validation bounds the rate, so arrival times are finite; a time no clock can hold is
        // an error, never a panic.
        let due = Duration::try_from_secs_f64(g.scheduled_at)
            .ok()
            .and_then(|d| start.checked_add(d))
            .ok_or(SubmissionError::Unschedulable { seq: g.seq, at: g.scheduled_at })?;
        if due.saturating_duration_since(tokio::time::Instant::now()) > idle
            && let Some(c) = client.take()
        {
            c.quit().await;
        }
        if !wait_until(due).await {
            break;
        }
        // A user of its own address: one connection per message, from that address (it is
        // closed after each message, so none is open here then).
        let bind = sources.as_ref().and_then(|v| v.get(g.sender).copied());
        let c = match &mut client {
            Some(c) => c,
            None => client.insert(Submitter::connect_from(addr, bind, "submitter.localhost", tls.as_ref()).await?),
        };
        let sub = Submission {
            from: &users[g.sender].address,
            to: g.recipients.iter().map(|&r| users[r].address.as_str()).collect(),
            bytes: &g.bytes,
            requiretls: g.requiretls,
        };
        c.submit(&sub).await?;
        times.push((g.seq, relay::now_secs()));
        if bind.is_some()
            && let Some(c) = client.take()
        {
            c.quit().await;
        }
        pb.inc(1);
    }
    if let Some(c) = client {
        c.quit().await;
    }
    Ok(times)
}

/// Sleeps until `due`, waking each second to notice Ctrl-C (a duration run may schedule a
/// message minutes ahead). Returns false when interrupted.
async fn wait_until(due: tokio::time::Instant) -> bool {
    loop {
        if crate::interrupt::interrupted() {
            return false;
        }
        let now = tokio::time::Instant::now();
        if now >= due {
            return true;
        }
        tokio::time::sleep_until(due.min(now + Duration::from_secs(1))).await;
    }
}

/// Rewrites the truth file with only the submitted messages, line by line.
fn keep_submitted(path: &Path, submitted: &BTreeMap<u64, f64>) -> Result<(), ScenarioError> {
    let io = |p: &PathBuf| {
        let what = p.display().to_string();
        move |e: std::io::Error| ScenarioError::Io { what: what.clone(), source: e }
    };
    let tmp = path.with_extension("jsonl.part");
    let src = std::io::BufReader::new(std::fs::File::open(path).map_err(io(&path.to_path_buf()))?);
    let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(io(&tmp))?);
    for (i, line) in src.lines().enumerate() {
        let line = line.map_err(io(&path.to_path_buf()))?;
        let t: TruthMessage = serde_json::from_str(&line).map_err(|source| ScenarioError::TruthRecord {
            path: path.to_path_buf(),
            line: i + 1,
            source,
        })?;
        if submitted.contains_key(&t.seq) {
            writeln!(out, "{line}").map_err(io(&tmp))?;
        }
    }
    out.flush().map_err(io(&tmp))?;
    drop(out);
    std::fs::rename(&tmp, path).map_err(io(&path.to_path_buf()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay::{Relay, RelayConfig, StaticResolver};

    /// The generator may leave a system without a message for longer than the relay waits for
    /// a command: the submitter must reopen its connection instead of failing on a 421.
    #[test]
    fn an_idle_submission_connection_is_reopened_not_cut() {
        let dir = std::env::temp_dir().join(format!("smtplab-submission-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            let local = |port| SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), port);
            let cfg = RelayConfig {
                system: "a".into(),
                hostname: "mx.a.example".into(),
                listen: local(0),
                submission: Some(local(0)),
                bind: None,
                spool: dir.join("spool"),
                local_domains: vec!["a.example".into()],
                relay_domains: Vec::new(),
                relay_clients: Vec::new(),
                mailbox_dir: dir.join("mailboxes"),
                tls_identity: None,
                tls: Default::default(),
                inbound_tls: relay::InboundTls::None,
                outbound_tls: relay::OutboundTls::None,
                outbound_tls_by_domain: Vec::new(),
                mta_sts: None,
                ca_pem: None,
                resolver: Arc::new(StaticResolver::new()),
                records: None,
                keylog: None,
                limits: Default::default(),
                timeouts: relay::config::Timeouts { server_idle: Duration::from_secs(1), ..Default::default() },
                delivery: Default::default(),
            };
            let relay = Relay::start(cfg).await.expect("relay starts");
            let addr = relay.submission.expect("submission listener");
            let users = Arc::new(vec![User { system: 0, address: "u@a.example".into(), display: "U".into() }]);
            let budget = Arc::new(Semaphore::new(2));
            let message = |seq: u64| Queued {
                message: Generated {
                    seq,
                    sender: 0,
                    recipients: vec![0],
                    message_id: format!("{seq}@a.example"),
                    subject: "s".into(),
                    bytes: format!("Message-ID: <{seq}@a.example>\r\nSubject: s\r\n\r\nhello\r\n").into_bytes(),
                    scheduled_at: 0.0,
                    requiretls: false,
                },
                _budget: budget.clone().try_acquire_owned().expect("budget"),
            };
            let (tx, rx) = mpsc::unbounded_channel();
            let pb = indicatif::ProgressBar::hidden();
            let idle = Duration::from_millis(300);
            let client = Client { tls: None, sources: None };
            let task = tokio::spawn(submit_system(addr, rx, users, tokio::time::Instant::now(), pb, idle, client));
            assert!(tx.send(message(0)).is_ok());
            // Longer than the relay's idle timeout: a connection kept open would be cut.
            tokio::time::sleep(Duration::from_millis(2500)).await;
            assert!(tx.send(message(1)).is_ok());
            drop(tx);
            let times = task.await.expect("task").expect("both messages submitted");
            assert_eq!(times.iter().map(|t| t.0).collect::<Vec<_>>(), [0, 1]);
            assert_eq!(budget.available_permits(), 2, "each message gave its budget back");
            relay.shutdown(Duration::from_secs(2)).await;
        });
        let _ = std::fs::remove_dir_all(&dir);
    }
}
