//! The outbound side: delivering a queued message to the next system's MX, with STARTTLS per
//! policy, and recording the session.

use std::sync::Arc;
use std::time::Duration;

use proto::{Capabilities, Reply, ReplyParser, dot_stuff};
use records::{HopMessage, SessionRecord};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;

use crate::config::OutboundTls;
use crate::relay::Shared;
use crate::requiretls::{HopAuthentication, MessageTls};
use crate::resolver::MxTarget;
use crate::spool::Envelope;
use crate::tlsrpt::{FailureDetails, ResultType};
use crate::transport::Transport;

/// What became of one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptOutcome {
    Delivered,
    /// Try again later (4xx, connection or policy failure).
    Deferred(String),
    /// Give up (5xx): the sender gets a bounce.
    Failed(String),
}

/// A failure of the whole session.
#[derive(Debug)]
struct Failure {
    permanent: bool,
    why: String,
    kind: FailureKind,
}

/// What a failed session says about TLS (for REQUIRETLS and TLS-RPT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FailureKind {
    /// Not about TLS (connection, timeouts, replies).
    Other,
    /// The TLS the policy asks for could not be had (RFC 8460's result type).
    Tls(ResultType),
    /// TLS was fine, but the next hop does not offer REQUIRETLS for a message that needs it.
    NoRequireTls,
}

impl Failure {
    fn transient(why: impl Into<String>) -> Self {
        Self { permanent: false, why: why.into(), kind: FailureKind::Other }
    }

    fn tls(why: impl Into<String>, result: ResultType) -> Self {
        Self { permanent: false, why: why.into(), kind: FailureKind::Tls(result) }
    }
}

/// Delivers `message` to `rcpts`, all in `domain`, and writes the session record.
pub(crate) async fn deliver_remote(
    shared: &Arc<Shared>,
    env: &Envelope,
    domain: &str,
    rcpts: &[String],
    message: &[u8],
) -> Vec<(String, RcptOutcome)> {
    let targets = match shared.cfg.resolver.resolve(domain).await {
        Ok(targets) => targets,
        Err(e) => {
            tracing::warn!("{}: delivery to {domain} deferred: {e}", shared.cfg.system);
            return rcpts.iter().map(|r| (r.clone(), RcptOutcome::Deferred(e.to_string()))).collect();
        }
    };
    if targets.is_empty() {
        let why = format!("no MX route for domain {domain}");
        return rcpts.iter().map(|r| (r.clone(), RcptOutcome::Failed(why.clone()))).collect();
    }
    // The message's own demand (REQUIRETLS, `TLS-Required: No`) over the relay's policy.
    let demand = MessageTls::of(env.requiretls, message);
    let policy = demand.policy(shared.cfg.outbound_policy(domain));
    let requiretls = demand == MessageTls::RequireTls;
    let mut last = Failure::transient("no MX target tried");
    // RFC 8689 §4.2.1: an MX that cannot keep a REQUIRETLS message on verified TLS is skipped;
    // when none can, the message bounces rather than waits.
    let mut requiretls_refusals = 0;
    for target in &targets {
        let mut rec = SessionRecord {
            direction: "outbound".into(),
            system: shared.cfg.system.clone(),
            peer_system: target.system.clone(),
            started_at: crate::now_secs(),
            peer_addr: target.addr.to_string(),
            peer_name: Some(target.host.clone()),
            ehlo_name: Some(shared.cfg.hostname.clone()),
            ..Default::default()
        };
        let result = Client::session(shared, target, policy, env, rcpts, message, &mut rec).await;
        rec.ended_at = crate::now_secs();
        report_tls(shared, domain, target, policy, &rec, result.as_ref().err());
        match result {
            Ok(outcomes) => {
                let delivered: Vec<String> =
                    outcomes.iter().filter(|(_, o)| *o == RcptOutcome::Delivered).map(|(r, _)| r.clone()).collect();
                if !delivered.is_empty() {
                    rec.messages.push(HopMessage {
                        message_id: env.message_id.clone(),
                        queue_id: env.qid.clone(),
                        mail_from: env.mail_from.clone(),
                        rcpt_to: delivered,
                        bytes: message.len() as u64,
                        sha256: crate::sha256_hex(message),
                        reply: *rec.replies.iter().rev().nth(1).unwrap_or(&0),
                    });
                }
                rec.outcome = summarize(&outcomes).into();
                shared.records.write(&rec);
                return outcomes;
            }
            Err(mut f) => {
                if requiretls && f.kind != FailureKind::Other {
                    requiretls_refusals += 1;
                    f.why = match f.kind {
                        FailureKind::NoRequireTls => crate::requiretls::no_requiretls(&target.host),
                        _ => crate::requiretls::no_tls(&target.host, &f.why),
                    };
                }
                tracing::warn!(
                    "{}: delivery to {} ({}) failed: {}",
                    shared.cfg.system,
                    target.host,
                    target.addr,
                    f.why
                );
                rec.outcome = if f.permanent { "bounced" } else { "deferred" }.into();
                rec.error = Some(f.why.clone());
                shared.records.write(&rec);
                if f.permanent {
                    return rcpts.iter().map(|r| (r.clone(), RcptOutcome::Failed(f.why.clone()))).collect();
                }
                last = f;
            }
        }
    }
    if requiretls && requiretls_refusals == targets.len() {
        return rcpts.iter().map(|r| (r.clone(), RcptOutcome::Failed(last.why.clone()))).collect();
    }
    rcpts.iter().map(|r| (r.clone(), RcptOutcome::Deferred(last.why.clone()))).collect()
}

/// Adds one session to the TLS-RPT aggregate, by the rules in [`crate::tlsrpt`]: `none` never
/// reports; TLS as the policy asks is a success; a TLS failure the policy noticed is a failure;
/// a plaintext fallback of `may` (no published policy) and a failure unrelated to TLS before
/// any TLS are not counted. `failure` is the session's, if it failed.
fn report_tls(
    shared: &Shared,
    domain: &str,
    target: &MxTarget,
    policy: OutboundTls,
    rec: &SessionRecord,
    failure: Option<&Failure>,
) {
    if policy == OutboundTls::None {
        return;
    }
    let reported = crate::tlsrpt::no_policy_found(domain, &target.host);
    match failure.map(|f| (f.kind, f)) {
        Some((FailureKind::Tls(result_type), f)) => {
            let sending = rec.local_addr.parse::<std::net::SocketAddr>().ok().map(|a| a.ip().to_string());
            shared.tlsrpt.failure(
                &reported,
                FailureDetails {
                    result_type,
                    sending_mta_ip: sending.or_else(|| shared.cfg.bind.map(|ip| ip.to_string())),
                    receiving_mx_hostname: Some(target.host.clone()),
                    receiving_mx_helo: None,
                    receiving_ip: Some(target.addr.ip().to_string()),
                    failed_session_count: 1,
                    additional_information: None,
                    // The relay's own words, as RFC 8460 §4.4 allows implementations to add.
                    failure_reason_code: Some(f.why.clone()),
                },
            );
        }
        _ if rec.starttls_used => shared.tlsrpt.success(&reported),
        _ => {}
    }
}

fn summarize(outcomes: &[(String, RcptOutcome)]) -> &'static str {
    if outcomes.iter().all(|(_, o)| *o == RcptOutcome::Delivered) {
        "delivered"
    } else if outcomes.iter().any(|(_, o)| *o == RcptOutcome::Delivered) {
        "partial"
    } else if outcomes.iter().any(|(_, o)| matches!(o, RcptOutcome::Deferred(_))) {
        "deferred"
    } else {
        "bounced"
    }
}

/// One client connection, plaintext or upgraded.
struct Client<'r> {
    io: Transport<TlsStream<TcpStream>>,
    replies: ReplyParser,
    rec: &'r mut SessionRecord,
    timeout: Duration,
    /// Bytes one reply may take, all its lines together (`Limits::max_reply_bytes`).
    max_reply_bytes: usize,
}

impl<'r> Client<'r> {
    async fn session(
        shared: &Arc<Shared>,
        target: &MxTarget,
        policy: OutboundTls,
        env: &Envelope,
        rcpts: &[String],
        message: &[u8],
        rec: &'r mut SessionRecord,
    ) -> Result<Vec<(String, RcptOutcome)>, Failure> {
        let cfg = &shared.cfg;
        // The envelope's flag is the whole of REQUIRETLS (`policy` already says verify).
        let requiretls = env.requiretls;
        let socket = if target.addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }
            .map_err(|e| Failure::transient(format!("socket: {e}")))?;
        if let Some(ip) = cfg.bind {
            socket
                .bind(std::net::SocketAddr::new(ip, 0))
                .map_err(|e| Failure::transient(format!("cannot bind to {ip}: {e}")))?;
        }
        let tcp = tokio::time::timeout(cfg.timeouts.greeting, socket.connect(target.addr))
            .await
            .map_err(|_| Failure::transient(format!("connect to {} timed out", target.addr)))?
            .map_err(|e| Failure::transient(format!("connect to {}: {e}", target.addr)))?;
        rec.local_addr = tcp.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let _ = tcp.set_nodelay(true);
        let mut c = Client {
            io: Transport::Plain(tcp),
            replies: ReplyParser::new(cfg.limits.max_line),
            rec,
            timeout: cfg.timeouts.command,
            max_reply_bytes: cfg.limits.max_reply_bytes,
        };
        let greeting = c.reply_within(cfg.timeouts.greeting).await?;
        if greeting.code != 220 {
            return Err(Failure {
                permanent: greeting.code >= 500,
                why: format!("greeting {}", greeting.summary()),
                kind: FailureKind::Other,
            });
        }
        let mut caps = c.ehlo(&cfg.hostname).await?;
        c.rec.starttls_offered = caps.starttls();
        match policy {
            OutboundTls::None => {}
            _ if caps.starttls() => {
                let r = c.command("STARTTLS").await?;
                if r.code == 220 {
                    c.upgrade(shared, target, policy).await?;
                    caps = c.ehlo(&cfg.hostname).await?;
                } else if policy != OutboundTls::May {
                    return Err(Failure::tls(
                        format!("STARTTLS refused ({}); policy {policy:?} requires TLS", r.summary()),
                        ResultType::StarttlsNotSupported,
                    ));
                }
            }
            OutboundTls::May => {}
            OutboundTls::Encrypt | OutboundTls::Verify => {
                return Err(Failure::tls(
                    format!("{} does not offer STARTTLS; policy {policy:?} requires TLS", target.host),
                    ResultType::StarttlsNotSupported,
                ));
            }
        }
        if requiretls {
            // The DANE code sets `HopAuthentication::Dane` for a hop it authenticated.
            let auth = c.rec.cert_verified.then_some(HopAuthentication::WebPki);
            if !crate::requiretls::satisfies_requiretls(auth) {
                return Err(Failure::tls("the server was not authenticated", ResultType::ValidationFailure));
            }
            if !caps.has(crate::requiretls::KEYWORD) {
                let _ = c.command("QUIT").await;
                return Err(Failure { permanent: false, why: "no REQUIRETLS".into(), kind: FailureKind::NoRequireTls });
            }
        }
        let outcomes = c.transaction(&caps, env, rcpts, message, requiretls, cfg.timeouts.data_end).await?;
        let _ = c.command("QUIT").await;
        let _ = c.io.shutdown().await;
        Ok(outcomes)
    }

    async fn upgrade(&mut self, shared: &Shared, target: &MxTarget, policy: OutboundTls) -> Result<(), Failure> {
        if self.replies.pending() > 0 {
            // The server sent more after its 220 in plaintext: response injection (the NO
            // STARTTLS study). Whatever it says must not be believed after the handshake.
            return Err(Failure::transient("server sent data after its 220 to STARTTLS (response injection)"));
        }
        let config = match policy {
            OutboundTls::Verify => shared.tls_client_verify.clone().ok_or_else(|| {
                Failure::tls(
                    "policy verify needs a CA (--ca or the scenario CA) and none is configured",
                    ResultType::ValidationFailure,
                )
            })?,
            _ => shared.tls_client_any.clone(),
        };
        let name = ServerName::try_from(target.host.clone())
            .map_err(|e| Failure::transient(format!("bad MX name {}: {e}", target.host)))?;
        let Some(tcp) = self.io.take_plain() else {
            return Err(Failure::transient("STARTTLS on an encrypted connection"));
        };
        let stream = tokio::time::timeout(self.timeout, tokio_rustls::TlsConnector::from(config).connect(name, tcp))
            .await
            .map_err(|_| Failure::tls("TLS handshake timed out", ResultType::ValidationFailure))?
            .map_err(|e| {
                Failure::tls(format!("TLS handshake with {}: {e}", target.host), crate::tlsrpt::handshake_result(&e))
            })?;
        let conn = stream.get_ref().1;
        self.rec.starttls_used = true;
        self.rec.cert_verified = policy == OutboundTls::Verify;
        self.rec.tls_version = conn.protocol_version().map(crate::tls::version_name);
        self.rec.tls_cipher = conn.negotiated_cipher_suite().map(crate::tls::cipher_name);
        self.io = Transport::Tls(Box::new(stream));
        Ok(())
    }

    async fn ehlo(&mut self, name: &str) -> Result<Capabilities, Failure> {
        let r = self.command(&format!("EHLO {name}")).await?;
        if r.code != 250 {
            return Err(Failure {
                permanent: r.code >= 500,
                why: format!("EHLO refused: {}", r.summary()),
                kind: FailureKind::Other,
            });
        }
        Ok(Capabilities::from_reply(&r))
    }

    async fn transaction(
        &mut self,
        caps: &Capabilities,
        env: &Envelope,
        rcpts: &[String],
        message: &[u8],
        requiretls: bool,
        data_timeout: Duration,
    ) -> Result<Vec<(String, RcptOutcome)>, Failure> {
        let size = if caps.has("SIZE") { format!(" SIZE={}", message.len()) } else { String::new() };
        // Passed on to the next hop, which then owes the message the same care (RFC 8689 §4.1).
        let requiretls = if requiretls { " REQUIRETLS" } else { "" };
        let mut commands = vec![format!("MAIL FROM:<{}>{size}{requiretls}", env.mail_from)];
        commands.extend(rcpts.iter().map(|r| format!("RCPT TO:<{r}>")));
        commands.push("DATA".into());
        let replies = if caps.pipelining() {
            // RFC 2920: the whole group in one write, replies read in order.
            let mut batch = String::new();
            for c in &commands {
                batch.push_str(c);
                batch.push_str("\r\n");
            }
            self.send(batch.as_bytes()).await?;
            let mut replies = Vec::new();
            for _ in &commands {
                replies.push(self.reply_within(self.timeout).await?);
            }
            replies
        } else {
            let mut replies = Vec::new();
            for c in &commands {
                let r = self.command(c).await?;
                let stop = r.code >= 400;
                replies.push(r);
                if stop && replies.len() == 1 {
                    break;
                }
            }
            replies
        };
        let mail = &replies[0];
        if mail.code != 250 {
            let _ = self.command("RSET").await;
            let why = format!("MAIL refused: {}", mail.summary());
            let o = if mail.code >= 500 { RcptOutcome::Failed(why) } else { RcptOutcome::Deferred(why) };
            return Ok(rcpts.iter().map(|r| (r.clone(), o.clone())).collect());
        }
        let mut outcomes: Vec<(String, RcptOutcome)> = rcpts
            .iter()
            .zip(&replies[1..])
            .map(|(rcpt, r)| {
                let o = match r.code {
                    250 | 251 => RcptOutcome::Delivered,
                    c if c >= 500 => RcptOutcome::Failed(r.summary()),
                    _ => RcptOutcome::Deferred(r.summary()),
                };
                (rcpt.clone(), o)
            })
            .collect();
        let data = replies.get(rcpts.len() + 1);
        if data.map(|r| r.code) != Some(354) {
            let why = data.map(|r| format!("DATA refused: {}", r.summary())).unwrap_or_else(|| "DATA not sent".into());
            let _ = self.command("RSET").await;
            for (_, o) in &mut outcomes {
                if *o == RcptOutcome::Delivered {
                    *o = RcptOutcome::Deferred(why.clone());
                }
            }
            return Ok(outcomes);
        }
        self.send(&dot_stuff(message)).await?;
        let end = self.reply_within(data_timeout).await?;
        if end.code != 250 {
            let why = format!("message refused: {}", end.summary());
            for (_, o) in &mut outcomes {
                if *o == RcptOutcome::Delivered {
                    *o = if end.code >= 500 {
                        RcptOutcome::Failed(why.clone())
                    } else {
                        RcptOutcome::Deferred(why.clone())
                    };
                }
            }
        }
        Ok(outcomes)
    }

    async fn command(&mut self, line: &str) -> Result<Reply, Failure> {
        let mut bytes = line.as_bytes().to_vec();
        bytes.extend_from_slice(b"\r\n");
        self.send(&bytes).await?;
        self.reply_within(self.timeout).await
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        self.rec.bytes_out += bytes.len() as u64;
        let r = async {
            self.io.write_all(bytes).await?;
            self.io.flush().await
        };
        tokio::time::timeout(self.timeout, r)
            .await
            .map_err(|_| Failure::transient("write timed out"))?
            .map_err(|e| Failure::transient(format!("write: {e}")))
    }

    /// The next reply, whole within `limit` (a server trickling a byte now and then cannot
    /// stretch it) and within `max_reply_bytes` (an endless multi-line reply is cut off, not
    /// gathered until memory runs out).
    async fn reply_within(&mut self, limit: Duration) -> Result<Reply, Failure> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut buf = [0u8; 4096];
        let mut read_for_this_reply = 0usize;
        loop {
            if let Some(r) = self.replies.next_reply() {
                let r = r.map_err(|e| Failure::transient(format!("bad reply from server: {e:?}")))?;
                self.rec.replies.push(r.code);
                return Ok(r);
            }
            if read_for_this_reply > self.max_reply_bytes {
                return Err(Failure::transient(format!(
                    "reply too long: over {} bytes without its last line (an endless multi-line reply?); connection closed",
                    self.max_reply_bytes
                )));
            }
            let n = tokio::time::timeout_at(deadline, self.io.read(&mut buf))
                .await
                .map_err(|_| Failure::transient("timed out waiting for a reply"))?
                .map_err(|e| Failure::transient(format!("read: {e}")))?;
            if n == 0 {
                return Err(Failure::transient("server closed the connection"));
            }
            self.rec.bytes_in += n as u64;
            read_for_this_reply += n;
            self.replies.extend(&buf[..n]);
        }
    }
}
