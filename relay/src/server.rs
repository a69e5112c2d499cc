//! The inbound side: one task per SMTP session, driving `proto` over a socket.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use proto::{Command, DataReceiver, DataStatus, Line, LineBuffer, Reply};
use records::SessionRecord;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;

use crate::config::{InboundTls, normalize_domain};
use crate::line_endings::{self, Bare};
use crate::relay::Shared;
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

/// The open mail transaction.
struct Transaction {
    from: String,
    rcpts: Vec<String>,
    /// `MAIL FROM:<...> REQUIRETLS` (RFC 8689), accepted only inside TLS.
    requiretls: bool,
}

/// How a session ended, for the record.
enum End {
    Quit,
    PeerClosed,
    /// No command, or no DATA progress, within its time.
    Timeout,
    /// The session's total time ran out.
    SessionDeadline,
    /// A write of replies did not finish in time: the client stopped reading.
    WriteTimeout,
    BareNewline(Bare),
    PipelinedAfterStartTls,
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
    let mut session = Session {
        shared: &shared,
        arc: shared.clone(),
        rec: &mut rec,
        listener,
        peer,
        authorised,
        deadline,
        unlogged_replies: 0,
    };
    let end = session.run(tcp).await;
    let unlogged = session.unlogged_replies;
    rec.ended_at = crate::now_secs();
    let (outcome, error) = match end {
        End::Quit => ("closed", None),
        End::PeerClosed => ("peer-closed", None),
        End::Timeout => ("timeout", None),
        End::SessionDeadline => ("timeout", Some("session time limit exceeded".to_string())),
        End::WriteTimeout => ("timeout", Some("write timed out: the client stopped reading".to_string())),
        End::BareNewline(bare) => ("rejected", Some(bare.describe().to_string())),
        End::PipelinedAfterStartTls => ("rejected", Some("plaintext pipelined after STARTTLS".to_string())),
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

struct Session<'a> {
    shared: &'a Shared,
    /// The same, owned, for work handed to the blocking pool (fsyncs).
    arc: Arc<Shared>,
    rec: &'a mut SessionRecord,
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
        let mut out = Vec::new();
        self.reply(&mut out, Reply::new(220, format!("{} ESMTP smtplab", cfg.hostname)));
        let mut lines = LineBuffer::new(cfg.limits.max_line);
        let mut helo: Option<String> = None;
        let mut tx: Option<Transaction> = None;
        // Chunks of a BDAT transaction received so far (RFC 3030).
        let mut bdat: Vec<u8> = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            // Answer every complete command buffered; replies to a pipelined group go out in one
            // write, before the next read (RFC 2920).
            while let Some((line, used)) = next_line(&mut lines) {
                if let Some(bare) = line_endings::check_command_line(&line, used) {
                    return self.refuse_bare(&mut io, &mut out, bare).await;
                }
                let line = match line {
                    Line::Complete(l) => l,
                    Line::TooLong { .. } => {
                        self.reply(&mut out, Reply::new(500, "5.5.2 Error: line too long"));
                        continue;
                    }
                };
                match Command::parse(&line) {
                    Command::Ehlo(name) | Command::Helo(name) if name.is_empty() => {
                        self.reply(&mut out, Reply::new(501, "5.5.4 Syntax: EHLO hostname"));
                    }
                    Command::Ehlo(name) => {
                        let caps = self.capabilities(io.is_tls());
                        self.rec.starttls_offered |= caps.starttls();
                        self.rec.ehlo_name = Some(name.clone());
                        helo = Some(name);
                        tx = None;
                        self.reply(&mut out, caps.to_reply(&cfg.hostname));
                    }
                    Command::Helo(name) => {
                        self.rec.ehlo_name = Some(name.clone());
                        helo = Some(name);
                        tx = None;
                        self.reply(&mut out, Reply::new(250, cfg.hostname.clone()));
                    }
                    Command::Mail { from, params } => {
                        let r = self.mail(&helo, &tx, io.is_tls(), &params);
                        if r.code == 250 {
                            let requiretls = crate::requiretls::in_mail_params(&params);
                            tx = Some(Transaction { from, rcpts: Vec::new(), requiretls });
                        }
                        self.reply(&mut out, r);
                    }
                    Command::Rcpt { to, .. } => {
                        let r = match &mut tx {
                            None => Reply::new(503, "5.5.1 Error: need MAIL command"),
                            Some(t) if t.rcpts.len() >= cfg.limits.max_recipients => {
                                Reply::new(452, "4.5.3 Error: too many recipients")
                            }
                            Some(t) => match self.accepts_recipient(&to).await {
                                Ok(()) => {
                                    t.rcpts.push(to);
                                    Reply::new(250, "2.1.5 Ok")
                                }
                                Err(r) => r,
                            },
                        };
                        self.reply(&mut out, r);
                    }
                    Command::Data if !bdat.is_empty() => {
                        bdat.clear();
                        tx = None;
                        self.reply(&mut out, Reply::new(503, "5.5.1 Error: DATA after BDAT in one transaction"));
                    }
                    Command::Data => {
                        let Some(t) = tx.take_if(|t| !t.rcpts.is_empty()) else {
                            let r = if tx.is_none() {
                                Reply::new(503, "5.5.1 Error: need RCPT command")
                            } else {
                                Reply::new(554, "5.5.1 Error: no valid recipients")
                            };
                            self.reply(&mut out, r);
                            continue;
                        };
                        self.reply(&mut out, Reply::new(354, "End data with <CR><LF>.<CR><LF>"));
                        let mut data = DataReceiver::new(cfg.limits.max_message_bytes);
                        let mut strict = line_endings::Scanner::default();
                        // Set at the first bare LF or CR: from there the content is only
                        // searched for `<CRLF>.<CRLF>`, then refused whole, as Postfix does.
                        let mut refused: Option<(Bare, line_endings::EndOfData)> = None;
                        let mut progress = DataDeadline::new(cfg.timeouts.data_block, cfg.limits.min_data_rate);
                        let mut input = lines.take_rest();
                        loop {
                            if refused.is_none() {
                                // Only the well-formed bytes are fed: a terminator after a bare
                                // LF or CR must never end the message (SMTP smuggling).
                                let bare = strict.first_bare(&input);
                                let good = bare.map_or(input.len(), |(i, _)| i);
                                if let DataStatus::Done { consumed } = data.feed(&input[..good]) {
                                    lines.extend(&input[consumed..]);
                                    break;
                                }
                                // (The bytes before the bare one hold no end: the receiver saw them.)
                                if let Some((_, bare)) = bare {
                                    refused = Some((bare, line_endings::EndOfData::default()));
                                }
                            }
                            if let Some((bare, search)) = &mut refused
                                && search.found(&input)
                            {
                                return self.refuse_bare(&mut io, &mut out, *bare).await;
                            }
                            if let Err(end) = self.flush(&mut io, &mut out).await {
                                return end;
                            }
                            match self.read_by(&mut io, &mut buf, progress.deadline).await {
                                Ok(n) => {
                                    progress.received(n);
                                    input = buf[..n].to_vec();
                                }
                                Err(end) => return end,
                            }
                        }
                        let r = if data.truncated() {
                            Reply::new(552, "5.3.4 Error: message size exceeds fixed limit")
                        } else {
                            self.accept_message(t, helo.as_deref(), &io, data.message).await
                        };
                        self.reply(&mut out, r);
                    }
                    Command::Bdat { size, last } => {
                        // RFC 3030: without a size the chunk boundary is lost; the session cannot
                        // continue.
                        let Some(size) = size.and_then(|s| usize::try_from(s).ok()) else {
                            self.reply(&mut out, Reply::new(501, "5.5.4 Syntax: BDAT chunk-size [LAST]"));
                            let _ = self.flush(&mut io, &mut out).await;
                            return End::Io("unparsable BDAT chunk size".into());
                        };
                        // The chunk follows whatever the verdict, and must be consumed.
                        let mut input = lines.take_rest();
                        let mut remaining = size;
                        let mut kept_all = true;
                        let mut progress = DataDeadline::new(cfg.timeouts.data_block, cfg.limits.min_data_rate);
                        loop {
                            let take = remaining.min(input.len());
                            if bdat.len() + take <= cfg.limits.max_message_bytes {
                                bdat.extend_from_slice(&input[..take]);
                            } else {
                                kept_all = false;
                            }
                            remaining -= take;
                            if remaining == 0 {
                                lines.extend(&input[take..]);
                                break;
                            }
                            if let Err(end) = self.flush(&mut io, &mut out).await {
                                return end;
                            }
                            match self.read_by(&mut io, &mut buf, progress.deadline).await {
                                Ok(n) => {
                                    progress.received(n);
                                    input = buf[..n].to_vec();
                                }
                                Err(end) => return end,
                            }
                        }
                        let r = match tx.as_ref() {
                            None => Reply::new(503, "5.5.1 Error: need MAIL command"),
                            Some(t) if t.rcpts.is_empty() => Reply::new(554, "5.5.1 Error: no valid recipients"),
                            Some(_) if !kept_all => {
                                tx = None;
                                Reply::new(552, "5.3.4 Error: message size exceeds fixed limit")
                            }
                            Some(_) if !last => Reply::new(250, format!("2.0.0 {size} octets received")),
                            Some(_) => match tx.take() {
                                Some(t) => {
                                    self.accept_message(t, helo.as_deref(), &io, std::mem::take(&mut bdat)).await
                                }
                                None => Reply::new(503, "5.5.1 Error: need MAIL command"),
                            },
                        };
                        if r.code != 250 || last {
                            bdat.clear();
                        }
                        self.reply(&mut out, r);
                    }
                    Command::Rset => {
                        tx = None;
                        bdat.clear();
                        self.reply(&mut out, Reply::new(250, "2.0.0 Ok"));
                    }
                    Command::Noop => self.reply(&mut out, Reply::new(250, "2.0.0 Ok")),
                    Command::Quit => {
                        self.reply(&mut out, Reply::new(221, "2.0.0 Bye"));
                        let _ = self.flush(&mut io, &mut out).await;
                        let _ = tokio::time::timeout(cfg.timeouts.write, io.shutdown()).await;
                        return End::Quit;
                    }
                    Command::StartTls => {
                        let Some(tls) = self.shared.tls_server.as_ref().filter(|_| cfg.inbound_tls != InboundTls::None)
                        else {
                            self.reply(&mut out, Reply::new(502, "5.5.1 Error: command not implemented"));
                            continue;
                        };
                        if io.is_tls() {
                            self.reply(&mut out, Reply::new(503, "5.5.1 Error: TLS already active"));
                            continue;
                        }
                        if lines.pending() > 0 || lines.next_line().is_some() {
                            // CVE-2011-0411: bytes sent after STARTTLS in the same flight would be
                            // read as if they had come through TLS. Refuse and close.
                            self.reply(&mut out, Reply::new(554, "5.5.1 Error: command pipelined after STARTTLS"));
                            let _ = self.flush(&mut io, &mut out).await;
                            return End::PipelinedAfterStartTls;
                        }
                        self.reply(&mut out, Reply::new(220, "2.0.0 Ready to start TLS"));
                        if let Err(end) = self.flush(&mut io, &mut out).await {
                            return end;
                        }
                        let Some(tcp) = io.take_plain() else { return End::Io("STARTTLS while encrypted".into()) };
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
                        // RFC 3207 §4.2: forget everything learnt before TLS.
                        helo = None;
                        tx = None;
                        bdat.clear();
                        lines = LineBuffer::new(cfg.limits.max_line);
                    }
                    Command::Vrfy(_) => self.reply(
                        &mut out,
                        Reply::new(252, "2.5.2 Cannot VRFY user, but will accept message and attempt delivery"),
                    ),
                    Command::Help => self.reply(&mut out, Reply::new(214, "2.0.0 See RFC 5321")),
                    Command::Auth { .. } | Command::Expn(_) => {
                        self.reply(&mut out, Reply::new(502, "5.5.1 Error: command not implemented"));
                    }
                    Command::Unknown { .. } => {
                        self.reply(&mut out, Reply::new(500, "5.5.2 Error: command not recognized"));
                    }
                }
            }
            if let Err(end) = self.flush(&mut io, &mut out).await {
                return end;
            }
            match self.read_by(&mut io, &mut buf, Instant::now() + cfg.timeouts.server_idle).await {
                Ok(n) => lines.extend(&buf[..n]),
                Err(end) => return end,
            }
        }
    }

    fn reply(&mut self, out: &mut Vec<u8>, r: Reply) {
        self.log_reply(r.code);
        out.extend_from_slice(&r.to_bytes());
    }

    /// Records a reply code, up to the limit; beyond it only counts.
    fn log_reply(&mut self, code: u16) {
        if self.rec.replies.len() < self.shared.cfg.limits.max_logged_replies {
            self.rec.replies.push(code);
        } else {
            self.unlogged_replies += 1;
        }
    }

    /// Sends the replies gathered so far. A write that cannot finish within `Timeouts::write`
    /// means the client is not reading: the session ends.
    async fn flush(&mut self, io: &mut Transport<TlsStream<TcpStream>>, out: &mut Vec<u8>) -> Result<(), End> {
        if out.is_empty() {
            return Ok(());
        }
        self.rec.bytes_out += out.len() as u64;
        let r = tokio::time::timeout(self.shared.cfg.timeouts.write, async {
            io.write_all(out).await?;
            io.flush().await
        })
        .await;
        out.clear();
        match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(End::Io(e.to_string())),
            Err(_) => Err(End::WriteTimeout),
        }
    }

    /// Sends the 521 for a bare LF or CR (at once in a command, at the end of DATA in a
    /// message), after whatever replies came before it, and ends the session.
    async fn refuse_bare(&mut self, io: &mut Transport<TlsStream<TcpStream>>, out: &mut Vec<u8>, bare: Bare) -> End {
        self.reply(out, bare.reply(&self.shared.cfg.hostname));
        let _ = self.flush(io, out).await;
        let _ = tokio::time::timeout(self.shared.cfg.timeouts.write, io.shutdown()).await;
        End::BareNewline(bare)
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
                let mut out = Vec::new();
                self.reply(&mut out, Reply::new(421, text));
                let _ = self.flush(io, &mut out).await;
                Err(end)
            }
        }
    }

    fn capabilities(&self, tls_active: bool) -> proto::Capabilities {
        let cfg = &self.shared.cfg;
        let mut keywords: Vec<(String, Vec<String>)> = vec![
            ("PIPELINING".into(), vec![]),
            ("SIZE".into(), vec![cfg.limits.max_message_bytes.to_string()]),
            ("8BITMIME".into(), vec![]),
            ("ENHANCEDSTATUSCODES".into(), vec![]),
            ("CHUNKING".into(), vec![]),
        ];
        if !tls_active && self.shared.tls_server.is_some() && cfg.inbound_tls != InboundTls::None {
            keywords.push(("STARTTLS".into(), vec![]));
        }
        // RFC 8689 §2: offered only inside TLS, where the client can trust the offer.
        if tls_active {
            keywords.push((crate::requiretls::KEYWORD.into(), vec![]));
        }
        proto::Capabilities { server_name: cfg.hostname.clone(), keywords }
    }

    fn mail(&self, helo: &Option<String>, tx: &Option<Transaction>, tls_active: bool, params: &[String]) -> Reply {
        let cfg = &self.shared.cfg;
        if helo.is_none() {
            return Reply::new(503, "5.5.1 Error: send HELO/EHLO first");
        }
        if tx.is_some() {
            return Reply::new(503, "5.5.1 Error: nested MAIL command");
        }
        if self.listener == Listener::Mx && cfg.inbound_tls == InboundTls::Encrypt && !tls_active {
            return Reply::new(530, "5.7.0 Must issue a STARTTLS command first");
        }
        let size = params
            .iter()
            .find_map(|p| p.get(..5).filter(|k| k.eq_ignore_ascii_case("SIZE=")).map(|_| &p[5..]))
            .and_then(|s| s.parse::<u64>().ok());
        if size.is_some_and(|s| s > cfg.limits.max_message_bytes as u64) {
            return Reply::new(552, "5.3.4 Error: message size exceeds fixed limit");
        }
        // Not offered in the clear (RFC 8689 §2), so there an unrecognised parameter (RFC 5321
        // §4.1.1.11): the client must not send the message without TLS.
        if crate::requiretls::in_mail_params(params) && !tls_active {
            return Reply::new(555, "5.5.4 REQUIRETLS is offered only after STARTTLS");
        }
        Reply::new(250, "2.1.0 Ok")
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

    async fn accept_message(
        &mut self,
        t: Transaction,
        helo: Option<&str>,
        io: &Transport<TlsStream<TcpStream>>,
        body: Vec<u8>,
    ) -> Reply {
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
            helo.unwrap_or("unknown"),
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
            && crate::cover::is_cover(&t.rcpts)
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

/// The next buffered command line and how many buffered bytes it used (its terminator
/// included), which tells a CRLF from a bare LF.
fn next_line(lines: &mut LineBuffer) -> Option<(Line, usize)> {
    let before = lines.pending();
    let line = lines.next_line()?;
    Some((line, before.saturating_sub(lines.pending())))
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
