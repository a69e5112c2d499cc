//! The inbound side: one task per SMTP session, driving `proto`'s server session over a socket.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use proto::Reply;
use proto::server::{Close, Event, Message, ServerConfig, ServerSession, Wait};
use records::SessionRecord;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;

use crate::config::InboundTls;
use crate::domain::normalize_domain;
use crate::shared::Shared;
use crate::spool::Envelope;
use crate::transport::Transport;

/// Which listener accepted the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// System to system (port 25 in the real world).
    Mx,
    /// Users handing mail to their own system.
    Submission,
}

/// How a session ended, for the record.
enum End {
    /// The protocol session closed it (QUIT, a refused bare line end, ...).
    Closed(Close),
    PeerClosed,
    /// No command, or no DATA progress, within its time.
    Timeout,
    /// The session's total time ran out.
    SessionDeadline,
    /// A write of replies did not finish in time: the client stopped reading.
    WriteTimeout,
    TlsFailed(String),
    Io(String),
}

pub(crate) async fn serve(shared: Arc<Shared>, tcp: TcpStream, peer: SocketAddr, listener: Listener) {
    let mut rec = SessionRecord {
        direction: if listener == Listener::Mx { "inbound" } else { "submission" }.into(),
        system: shared.cfg.system.clone(),
        started_at: crate::now_secs(),
        local_addr: tcp.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        peer_addr: peer.to_string(),
        ..Default::default()
    };
    // Authorised clients (the system's own users, `mynetworks`) have no session deadline, as
    // Postfix exempts them from its anvil limits; a long run reuses one submission session.
    let authorised = shared.cfg.is_relay_client(peer.ip());
    let deadline = (!authorised).then(|| Instant::now() + shared.cfg.timeouts.session);
    let cfg = &shared.cfg;
    let smtp = ServerSession::new(ServerConfig {
        hostname: cfg.hostname.clone(),
        max_line: cfg.limits.max_line,
        max_message_bytes: cfg.limits.max_message_bytes,
        max_recipients: cfg.limits.max_recipients,
        starttls: shared.tls_server.is_some() && cfg.inbound_tls != InboundTls::None,
        require_tls: listener == Listener::Mx && cfg.inbound_tls == InboundTls::Encrypt,
    });
    let mut session = Session {
        shared: &shared,
        arc: shared.clone(),
        rec: &mut rec,
        smtp,
        listener,
        peer,
        authorised,
        deadline,
        unlogged_replies: 0,
    };
    let end = session.run(tcp).await;
    let unlogged = session.unlogged_replies;
    // What the client said of itself and what it was offered, read once from the protocol state.
    let (ehlo_name, starttls_offered) = (session.smtp.ehlo_name().map(str::to_string), session.smtp.starttls_offered());
    rec.ehlo_name = ehlo_name;
    rec.starttls_offered = starttls_offered;
    rec.ended_at = crate::now_secs();
    let (outcome, error) = match end {
        End::Closed(Close::Quit) => ("closed", None),
        End::Closed(Close::BareNewline(bare)) => ("rejected", Some(bare.describe().to_string())),
        End::Closed(Close::PipelinedAfterStartTls) => {
            ("rejected", Some("plaintext pipelined after STARTTLS".to_string()))
        }
        End::Closed(Close::BadBdatSize) => ("error", Some("unparsable BDAT chunk size".to_string())),
        End::Closed(Close::Aborted) => ("error", Some("session aborted".to_string())),
        End::PeerClosed => ("peer-closed", None),
        End::Timeout => ("timeout", None),
        End::SessionDeadline => ("timeout", Some("session time limit exceeded".to_string())),
        End::WriteTimeout => ("timeout", Some("write timed out: the client stopped reading".to_string())),
        End::TlsFailed(e) => ("error", Some(format!("TLS handshake: {e}"))),
        End::Io(e) => ("error", Some(e)),
    };
    rec.outcome = outcome.into();
    rec.error = error;
    if unlogged > 0 {
        let note = format!(
            "{unlogged} more replies not recorded (the record keeps the first {})",
            shared.cfg.limits.max_logged_replies
        );
        rec.error = Some(match rec.error.take() {
            Some(e) => format!("{e}; {note}"),
            None => note,
        });
    }
    shared.records.write(&rec);
}

/// The driver of one inbound session: `proto`'s [`ServerSession`] over a socket, with the
/// session's clocks, its record, and the answers it needs from the relay (may this recipient be
/// accepted, was the message queued).
struct Session<'a> {
    shared: &'a Shared,
    /// The same, owned, for work handed to the blocking pool (fsyncs).
    arc: Arc<Shared>,
    rec: &'a mut SessionRecord,
    smtp: ServerSession,
    listener: Listener,
    peer: SocketAddr,
    /// The client may relay to any domain (`relay_clients`).
    authorised: bool,
    /// When the session ends whatever it is doing (`Timeouts::session`); none for authorised
    /// clients.
    deadline: Option<Instant>,
    /// Replies sent beyond `Limits::max_logged_replies`, counted instead of recorded.
    unlogged_replies: usize,
}

impl Session<'_> {
    async fn run(&mut self, tcp: TcpStream) -> End {
        let cfg = &self.shared.cfg;
        let mut io: Transport<TlsStream<TcpStream>> = Transport::Plain(tcp);
        let mut buf = vec![0u8; 16 * 1024];
        // The DATA or BDAT transfer being timed, and its deadline.
        let mut content: Option<(u64, DataDeadline)> = None;
        loop {
            match self.smtp.poll() {
                Event::Read(wait) => {
                    if let Err(end) = self.flush(&mut io).await {
                        return end;
                    }
                    let until = match wait {
                        Wait::Command => {
                            content = None;
                            Instant::now() + cfg.timeouts.server_idle
                        }
                        Wait::Content { transfer } => {
                            // A new deadline for each transfer, as each DATA or BDAT starts one.
                            if content.as_ref().is_none_or(|(t, _)| *t != transfer) {
                                let progress = DataDeadline::new(cfg.timeouts.data_block, cfg.limits.min_data_rate);
                                content = Some((transfer, progress));
                            }
                            content.as_ref().map_or_else(Instant::now, |(_, p)| p.deadline)
                        }
                    };
                    match self.read_by(&mut io, &mut buf, until).await {
                        Ok(n) => {
                            if let (Wait::Content { .. }, Some((_, progress))) = (wait, content.as_mut()) {
                                progress.received(n);
                            }
                            self.smtp.feed(&buf[..n]);
                        }
                        Err(end) => return end,
                    }
                }
                Event::Recipient(to) => {
                    let verdict = self.accepts_recipient(&to).await;
                    self.smtp.recipient(verdict);
                }
                Event::Message(message) => {
                    let r = self.accept_message(message, &io).await;
                    self.smtp.queued(r);
                }
                Event::StartTls => {
                    if let Err(end) = self.flush(&mut io).await {
                        return end;
                    }
                    let (Some(tcp), Some(tls)) = (io.take_plain(), self.shared.tls_server.as_ref()) else {
                        return End::Io("STARTTLS while encrypted, or without a TLS configuration".into());
                    };
                    let acceptor = tokio_rustls::TlsAcceptor::from(tls.clone());
                    let stream = match tokio::time::timeout(cfg.timeouts.command, acceptor.accept(tcp)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => return End::TlsFailed(e.to_string()),
                        Err(_) => return End::TlsFailed("timed out".into()),
                    };
                    let conn = stream.get_ref().1;
                    self.rec.starttls_used = true;
                    self.rec.tls_version = conn.protocol_version().map(crate::tls::version_name);
                    self.rec.tls_cipher = conn.negotiated_cipher_suite().map(crate::tls::cipher_name);
                    io = Transport::Tls(Box::new(stream));
                    self.smtp.tls_established();
                }
                Event::Close(why) => {
                    let _ = self.flush(&mut io).await;
                    // After QUIT and a refused bare line end the server closes first, as Postfix
                    // does; a client that pipelined past STARTTLS is left to close.
                    if matches!(why, Close::Quit | Close::BareNewline(_)) {
                        let _ = tokio::time::timeout(cfg.timeouts.write, io.shutdown()).await;
                    }
                    return End::Closed(why);
                }
                Event::Waiting => return End::Io("internal error: the SMTP session waited for an answer".into()),
            }
        }
    }

    /// Records a reply code, up to the limit; beyond it only counts.
    fn log_replies(&mut self) {
        for code in self.smtp.take_reply_codes() {
            if self.rec.replies.len() < self.shared.cfg.limits.max_logged_replies {
                self.rec.replies.push(code);
            } else {
                self.unlogged_replies += 1;
            }
        }
    }

    /// Sends the replies gathered so far. A write that cannot finish within `Timeouts::write`
    /// means the client is not reading: the session ends.
    async fn flush(&mut self, io: &mut Transport<TlsStream<TcpStream>>) -> Result<(), End> {
        self.log_replies();
        let out = self.smtp.output();
        if out.is_empty() {
            return Ok(());
        }
        self.rec.bytes_out += out.len() as u64;
        let r = tokio::time::timeout(self.shared.cfg.timeouts.write, async {
            io.write_all(out).await?;
            io.flush().await
        })
        .await;
        self.smtp.output_sent();
        match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(End::Io(e.to_string())),
            Err(_) => Err(End::WriteTimeout),
        }
    }

    /// Reads what the client sent, waiting until `until` or the session deadline, whichever
    /// comes first; when that passes, says 421 (if the client will take it) and ends.
    async fn read_by(
        &mut self,
        io: &mut Transport<TlsStream<TcpStream>>,
        buf: &mut [u8],
        until: Instant,
    ) -> Result<usize, End> {
        let (until, session_ends) = match self.deadline {
            Some(d) if d <= until => (d, true),
            _ => (until, false),
        };
        match tokio::time::timeout_at(until, io.read(buf)).await {
            Ok(Ok(0)) => Err(End::PeerClosed),
            Ok(Ok(n)) => {
                self.rec.bytes_in += n as u64;
                Ok(n)
            }
            Ok(Err(e)) => Err(End::Io(e.to_string())),
            Err(_) => {
                let (text, end) = if session_ends {
                    ("4.4.2 Error: session time limit exceeded", End::SessionDeadline)
                } else {
                    ("4.4.2 Error: timeout exceeded", End::Timeout)
                };
                self.smtp.abort(Reply::new(421, text));
                let _ = self.flush(io).await;
                Err(end)
            }
        }
    }

    /// Local domains are accepted from anyone; other domains only when they are relay domains
    /// or the client may relay (`relay_clients`), and then only when the resolver can route
    /// them. Anything else would make this an open relay: refused before any DNS query, with
    /// Postfix's `554 5.7.1 <rcpt>: Relay access denied`.
    /// A temporary DNS failure is a temporary refusal (the client retries), as in Postfix.
    async fn accepts_recipient(&self, to: &str) -> Result<(), Reply> {
        let Some((_, domain)) = to.rsplit_once('@').filter(|(_, d)| !normalize_domain(d).is_empty()) else {
            return Err(Reply::new(501, "5.1.3 Error: bad recipient address syntax"));
        };
        let cfg = &self.shared.cfg;
        let domain = normalize_domain(domain);
        if cfg.is_local(&domain) {
            return Ok(());
        }
        if !self.authorised && !cfg.is_relay_domain(&domain) {
            return Err(Reply::new(554, format!("5.7.1 <{to}>: Relay access denied")));
        }
        match cfg.resolver.resolve(&domain).await {
            Ok(targets) if !targets.is_empty() => Ok(()),
            Ok(_) => Err(Reply::new(554, "5.7.1 Error: relay access denied")),
            Err(e) => Err(Reply::new(451, format!("4.4.3 Error: cannot route {domain} now ({e})"))),
        }
    }

    async fn accept_message(&mut self, t: Message, io: &Transport<TlsStream<TcpStream>>) -> Reply {
        let body = t.content;
        // A message that has crossed this many MTAs is in a loop: refusing it makes the hop
        // before bounce it to its sender (Postfix's cleanup: hopcount_limit, "too many hops").
        if received_headers(&body) >= self.shared.cfg.limits.hop_limit {
            return Reply::new(554, "5.4.0 Error: too many hops");
        }
        let qid = self.shared.spool.new_qid();
        let tls = match io {
            Transport::Tls(s) => {
                let c = s.get_ref().1;
                let v = c.protocol_version().map(crate::tls::version_name).unwrap_or_default();
                let cipher = c.negotiated_cipher_suite().map(crate::tls::cipher_name).unwrap_or_default();
                Some(format!("{v} with cipher {cipher}"))
            }
            Transport::Plain(_) | Transport::Upgrading => None,
        };
        let received = received_header(
            t.helo.as_deref().unwrap_or("unknown"),
            self.peer,
            &self.shared.cfg.hostname,
            &qid,
            tls.as_deref(),
            &t.rcpts,
        );
        let mut message = received.into_bytes();
        message.extend_from_slice(&body);
        // Cover traffic (`crate::cover`) for this system: answered as mail is, then dropped,
        // never spooled, so never in a mailbox. Its record says so.
        if self.listener == Listener::Mx
            && crate::cover_marker::is_cover(&t.rcpts)
            && t.rcpts.iter().all(|r| r.rsplit_once('@').is_some_and(|(_, d)| self.shared.cfg.is_local(d)))
        {
            self.rec.messages.push(records::HopMessage {
                message_id: message_id(&message).unwrap_or_default(),
                queue_id: qid.clone(),
                mail_from: t.from,
                rcpt_to: t.rcpts,
                bytes: message.len() as u64,
                sha256: crate::sha256_hex(&message),
                reply: 250,
                cover: true,
            });
            return Reply::new(250, format!("2.0.0 Ok: queued as {qid}"));
        }
        let env = Envelope {
            qid: qid.clone(),
            message_id: message_id(&message).unwrap_or_default(),
            mail_from: t.from.clone(),
            pending: t.rcpts.clone(),
            received_at: crate::now_secs(),
            attempts: 0,
            deliveries: 0,
            requiretls: t.requiretls,
        };
        // The fsyncs run on the blocking pool: on the async workers they would stall every
        // other session of every relay in the process.
        let (shared, env2) = (self.arc.clone(), env.clone());
        let stored = tokio::task::spawn_blocking(move || shared.enqueue(&env2, &message).map(|()| message))
            .await
            .unwrap_or_else(|e| Err(crate::RelayError::Task(e)));
        match stored {
            Ok(message) => {
                self.rec.messages.push(records::HopMessage {
                    message_id: env.message_id.clone(),
                    queue_id: qid.clone(),
                    mail_from: t.from,
                    rcpt_to: t.rcpts,
                    bytes: message.len() as u64,
                    sha256: crate::sha256_hex(&message),
                    reply: 250,
                    cover: false,
                });
                Reply::new(250, format!("2.0.0 Ok: queued as {qid}"))
            }
            Err(e) => {
                tracing::error!("{}: cannot queue message: {e}", self.shared.cfg.system);
                Reply::new(451, "4.3.0 Error: queue file write error")
            }
        }
    }
}

/// The DATA (or BDAT) deadline, as Postfix's `smtpd_min_data_rate`: it starts `cap` ahead; each
/// read moves it on by bytes / rate, never more than `cap` past now. A client trickling a few
/// bytes just inside every read timeout runs out of time.
struct DataDeadline {
    deadline: Instant,
    cap: Duration,
    rate: u64,
}

impl DataDeadline {
    fn new(cap: Duration, rate: u64) -> Self {
        Self { deadline: Instant::now() + cap, cap, rate: rate.max(1) }
    }

    fn received(&mut self, bytes: usize) {
        let credit = Duration::from_secs_f64(bytes as f64 / self.rate as f64);
        self.deadline = (self.deadline + credit).min(Instant::now() + self.cap);
    }
}

/// Received header fields in a message's header section (continuation lines not counted).
fn received_headers(message: &[u8]) -> usize {
    message
        .split(|&b| b == b'\n')
        .take_while(|line| !line.is_empty() && *line != b"\r")
        .filter(|line| line.get(..9).is_some_and(|name| name.eq_ignore_ascii_case(b"received:")))
        .count()
}

/// A Received header carrying the TLS facts, in Postfix's wording.
fn received_header(helo: &str, peer: SocketAddr, host: &str, qid: &str, tls: Option<&str>, rcpts: &[String]) -> String {
    let date =
        time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc2822).unwrap_or_default();
    let with = if tls.is_some() { "ESMTPS" } else { "ESMTP" };
    let using = tls.map(|t| format!("\r\n\t(using {t})")).unwrap_or_default();
    let for_ = if rcpts.len() == 1 { format!("\r\n\tfor <{}>", rcpts[0]) } else { String::new() };
    format!(
        "Received: from {helo} ([{}]){using}\r\n\tby {host} (smtplab) with {with} id {qid}{for_};\r\n\t{date}\r\n",
        peer.ip()
    )
}

/// The Message-ID header's value without angle brackets.
pub fn message_id(message: &[u8]) -> Option<String> {
    let head_end = message.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(message.len());
    let head = String::from_utf8_lossy(&message[..head_end]);
    head.split("\r\n").find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("message-id")
            .then(|| value.trim().trim_start_matches('<').trim_end_matches('>').to_string())
    })
}
