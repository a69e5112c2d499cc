//! The inbound side: one task per SMTP session, driving `proto` over a socket.

use std::net::SocketAddr;
use std::sync::Arc;

use proto::{Command, DataReceiver, DataStatus, Line, LineBuffer, Reply};
use records::SessionRecord;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::config::InboundTls;
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
}

/// How a session ended, for the record.
enum End {
    Quit,
    PeerClosed,
    Timeout,
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
    let end = Session { shared: &shared, arc: shared.clone(), rec: &mut rec, listener, peer }.run(tcp).await;
    rec.ended_at = crate::now_secs();
    let (outcome, error) = match end {
        End::Quit => ("closed", None),
        End::PeerClosed => ("peer-closed", None),
        End::Timeout => ("timeout", None),
        End::PipelinedAfterStartTls => ("rejected", Some("plaintext pipelined after STARTTLS".to_string())),
        End::TlsFailed(e) => ("error", Some(format!("TLS handshake: {e}"))),
        End::Io(e) => ("error", Some(e)),
    };
    rec.outcome = outcome.into();
    rec.error = error;
    shared.records.write(&rec);
}

struct Session<'a> {
    shared: &'a Shared,
    /// The same, owned, for work handed to the blocking pool (fsyncs).
    arc: Arc<Shared>,
    rec: &'a mut SessionRecord,
    listener: Listener,
    peer: SocketAddr,
}

impl Session<'_> {
    async fn run(&mut self, tcp: TcpStream) -> End {
        let cfg = &self.shared.cfg;
        let mut io: Transport<TlsStream<TcpStream>> = Transport::Plain(tcp);
        let mut out = Reply::new(220, format!("{} ESMTP smtplab", cfg.hostname)).to_bytes();
        self.rec.replies.push(220);
        let mut lines = LineBuffer::new(cfg.limits.max_line);
        let mut helo: Option<String> = None;
        let mut tx: Option<Transaction> = None;
        // Chunks of a BDAT transaction received so far (RFC 3030).
        let mut bdat: Vec<u8> = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            // Answer every complete command buffered; replies to a pipelined group go out in one
            // write, before the next read (RFC 2920).
            while let Some(line) = lines.next_line() {
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
                            tx = Some(Transaction { from, rcpts: Vec::new() });
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
                        let mut input = lines.take_rest();
                        loop {
                            if let DataStatus::Done { consumed } = data.feed(&input) {
                                lines.extend(&input[consumed..]);
                                break;
                            }
                            if let Err(end) = flush(&mut io, &mut out, self.rec).await {
                                return end;
                            }
                            match self.read(&mut io, &mut buf, cfg.timeouts.data_block).await {
                                Ok(n) => input = buf[..n].to_vec(),
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
                            let _ = flush(&mut io, &mut out, self.rec).await;
                            return End::Io("unparsable BDAT chunk size".into());
                        };
                        // The chunk follows whatever the verdict, and must be consumed.
                        let mut input = lines.take_rest();
                        let mut remaining = size;
                        let mut kept_all = true;
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
                            if let Err(end) = flush(&mut io, &mut out, self.rec).await {
                                return end;
                            }
                            match self.read(&mut io, &mut buf, cfg.timeouts.data_block).await {
                                Ok(n) => input = buf[..n].to_vec(),
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
                        let _ = flush(&mut io, &mut out, self.rec).await;
                        let _ = io.shutdown().await;
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
                            let _ = flush(&mut io, &mut out, self.rec).await;
                            return End::PipelinedAfterStartTls;
                        }
                        self.reply(&mut out, Reply::new(220, "2.0.0 Ready to start TLS"));
                        if let Err(end) = flush(&mut io, &mut out, self.rec).await {
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
            if let Err(end) = flush(&mut io, &mut out, self.rec).await {
                return end;
            }
            match self.read(&mut io, &mut buf, cfg.timeouts.server_idle).await {
                Ok(n) => lines.extend(&buf[..n]),
                Err(end) => return end,
            }
        }
    }

    fn reply(&mut self, out: &mut Vec<u8>, r: Reply) {
        self.rec.replies.push(r.code);
        out.extend_from_slice(&r.to_bytes());
    }

    async fn read(
        &mut self,
        io: &mut Transport<TlsStream<TcpStream>>,
        buf: &mut [u8],
        limit: std::time::Duration,
    ) -> Result<usize, End> {
        match tokio::time::timeout(limit, io.read(buf)).await {
            Ok(Ok(0)) => Err(End::PeerClosed),
            Ok(Ok(n)) => {
                self.rec.bytes_in += n as u64;
                Ok(n)
            }
            Ok(Err(e)) => Err(End::Io(e.to_string())),
            Err(_) => {
                let _ = io.write_all(&Reply::new(421, "4.4.2 Error: timeout exceeded").to_bytes()).await;
                Err(End::Timeout)
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
        Reply::new(250, "2.1.0 Ok")
    }

    /// Local domains and domains the resolver can route are accepted; anything else would make
    /// this an open relay.
    /// A temporary DNS failure is a temporary refusal (the client retries), as in Postfix.
    async fn accepts_recipient(&self, to: &str) -> Result<(), Reply> {
        let Some((_, domain)) = to.rsplit_once('@') else {
            return Err(Reply::new(501, "5.1.3 Error: bad recipient address syntax"));
        };
        if self.shared.cfg.is_local(domain) {
            return Ok(());
        }
        match self.shared.cfg.resolver.resolve(domain).await {
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
        let env = Envelope {
            qid: qid.clone(),
            message_id: message_id(&message).unwrap_or_default(),
            mail_from: t.from.clone(),
            pending: t.rcpts.clone(),
            received_at: crate::now_secs(),
            attempts: 0,
            deliveries: 0,
        };
        // The fsyncs run on the blocking pool: on the async workers they would stall every
        // other session of every relay in the process.
        let (shared, env2) = (self.arc.clone(), env.clone());
        let stored = tokio::task::spawn_blocking(move || shared.enqueue(&env2, &message).map(|()| message))
            .await
            .unwrap_or_else(|e| Err(crate::RelayError::Io(std::io::Error::other(e.to_string()))));
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

async fn flush(
    io: &mut Transport<TlsStream<TcpStream>>,
    out: &mut Vec<u8>,
    rec: &mut SessionRecord,
) -> Result<(), End> {
    if out.is_empty() {
        return Ok(());
    }
    rec.bytes_out += out.len() as u64;
    let r = async {
        io.write_all(out).await?;
        io.flush().await
    }
    .await;
    out.clear();
    r.map_err(|e| End::Io(e.to_string()))
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
