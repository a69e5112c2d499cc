//! One outbound SMTP connection once it is open (`Client`): commands and replies with their
//! timeouts and limits, a mail transaction as `proto::client` drives it (pipelined or not,
//! padded inside TLS), QUIT; and what a session's failure says (`Failure`). Opening it (connect,
//! greeting, EHLO, STARTTLS under the relay's policies) is in [`crate::delivery`]; the session
//! kept over several transactions is [`crate::outbound_session`].

use std::time::Duration;

use proto::client::{self, ClientTransaction, Step, Wait};
use proto::{Capabilities, RcptOutcome, Reply, ReplyParser, dot_stuff};
use records::SessionRecord;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::requiretls::HopAuthentication;
use crate::spool::Envelope;
use crate::tlsrpt::ResultType;
use crate::transport::Transport;

/// A failure of the whole session.
#[derive(Debug)]
pub(crate) struct Failure {
    pub permanent: bool,
    pub why: String,
    pub kind: FailureKind,
}

/// What a failed session says about TLS (for REQUIRETLS and TLS-RPT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureKind {
    /// Not about TLS (connection, timeouts, replies).
    Other,
    /// The TLS the policy asks for could not be had (RFC 8460's result type).
    Tls(ResultType),
    /// TLS was fine, but the next hop does not offer REQUIRETLS for a message that needs it.
    NoRequireTls,
}

/// A greeting or EHLO refused: not about TLS.
impl From<client::Refused> for Failure {
    fn from(r: client::Refused) -> Self {
        Self { permanent: r.permanent, why: r.why, kind: FailureKind::Other }
    }
}

impl Failure {
    pub(crate) fn transient(why: impl Into<String>) -> Self {
        Self { permanent: false, why: why.into(), kind: FailureKind::Other }
    }

    pub(crate) fn tls(why: impl Into<String>, result: ResultType) -> Self {
        Self { permanent: false, why: why.into(), kind: FailureKind::Tls(result) }
    }
}

pub(crate) fn summarize(outcomes: &[(String, RcptOutcome)]) -> &'static str {
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

/// How one transaction is sent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TransactionMode {
    /// Pipeline MAIL, RCPT and DATA when the server offers PIPELINING.
    pub pipelining: bool,
    /// The session was reused: RSET first.
    pub reset: bool,
    /// Size padding inside TLS (`crate::padding`), and its fixed bucket in bytes.
    pub padding: crate::padding::Padding,
    pub padding_bucket: u64,
}

/// One client connection, plaintext or upgraded, with the record of its session.
pub(crate) struct Client {
    pub(crate) io: Transport<TlsStream<TcpStream>>,
    pub(crate) replies: ReplyParser,
    pub(crate) rec: SessionRecord,
    pub(crate) timeout: Duration,
    /// Bytes one reply may take, all its lines together (`Limits::max_reply_bytes`).
    pub(crate) max_reply_bytes: usize,
    /// The code of the reply to the last transaction's end of data (the message's verdict, for
    /// its record: with padding, NOOP replies come after it).
    pub(crate) end_of_data: Option<u16>,
}

impl Client {
    /// How this session authenticated its server, if it did.
    pub(crate) fn authentication(&self) -> Option<HopAuthentication> {
        if self.rec.dane_authenticated {
            Some(HopAuthentication::Dane)
        } else {
            self.rec.cert_verified.then_some(HopAuthentication::WebPki)
        }
    }

    /// Says QUIT and closes, as a session ends.
    pub(crate) async fn quit(&mut self) {
        let _ = self.command("QUIT").await;
        let _ = self.io.shutdown().await;
    }

    pub(crate) async fn ehlo(&mut self, name: &str) -> Result<Capabilities, Failure> {
        let r = self.command(&format!("EHLO {name}")).await?;
        Ok(client::ehlo(&r)?)
    }

    /// One mail transaction, in the way `mode` says: `proto::client` decides what is sent and
    /// what the replies mean; this does the I/O, with its timeouts and the padding.
    pub(crate) async fn transaction(
        &mut self,
        mode: TransactionMode,
        caps: &Capabilities,
        env: &Envelope,
        rcpts: &[String],
        message: &[u8],
        data_timeout: Duration,
    ) -> Result<Vec<(String, RcptOutcome)>, Failure> {
        let TransactionMode { pipelining, reset, padding, padding_bucket } = mode;
        let envelope = client::Envelope {
            from: env.mail_from.clone(),
            rcpts: rcpts.to_vec(),
            size: message.len() as u64,
            // Passed on to the next hop, which then owes the message the same care (RFC 8689 §4.1).
            requiretls: env.requiretls,
        };
        let mut t = ClientTransaction::new(envelope, caps, client::Mode { pipelining, reset });
        self.end_of_data = None;
        // The transaction's client bytes start here, for padding to a bucket.
        let start = self.rec.bytes_out;
        loop {
            let io = match t.poll() {
                Step::Send(bytes) => self.send(&bytes).await,
                Step::Await(wait) => {
                    let limit = match wait {
                        Wait::Command => self.timeout,
                        Wait::EndOfData => data_timeout,
                    };
                    self.reply_within(limit).await.map(|r| t.on_reply(&r))
                }
                Step::SendContent => {
                    let content = dot_stuff(message);
                    let noops = if self.io.is_tls() {
                        let used = self.rec.bytes_out - start + content.len() as u64;
                        crate::padding::noop_lines(crate::padding::target(padding, padding_bucket, used) - used)
                    } else {
                        Vec::new()
                    };
                    let end = self.send_content(content, noops, t.pipelined(), data_timeout).await;
                    end.map(|end| {
                        self.end_of_data = Some(end.code);
                        t.on_reply(&end)
                    })
                }
                Step::Done(outcomes) => return Ok(outcomes),
                Step::Abort(why) => return Err(Failure::transient(why)),
            };
            if let Err(f) = io {
                // Outcomes already decided (only the RSET after a refusal was left) stand.
                return t.connection_lost().ok_or(f);
            }
        }
    }

    /// Sends the message (dot-stuffed, with its end of data) and then the padding NOOPs, and
    /// returns the reply to the end of data. With pipelining the first NOOP rides behind the
    /// message, last in its group (RFC 2920 §3.1), so it is part of the message's burst on the
    /// wire. A NOOP that fails after the message was taken does not fail the transaction: the
    /// message is delivered, and a session broken by it fails at its next use.
    async fn send_content(
        &mut self,
        mut content: Vec<u8>,
        noops: Vec<String>,
        pipelining: bool,
        data_timeout: Duration,
    ) -> Result<Reply, Failure> {
        let mut noops = noops.into_iter();
        let behind = if pipelining { noops.next() } else { None };
        if let Some(line) = &behind {
            content.extend_from_slice(line.as_bytes());
        }
        self.send(&content).await?;
        let end = self.reply_within(data_timeout).await?;
        if behind.is_some() && self.reply_within(self.timeout).await.is_err() {
            return Ok(end);
        }
        for line in noops {
            if self.send(line.as_bytes()).await.is_err() || self.reply_within(self.timeout).await.is_err() {
                break;
            }
        }
        Ok(end)
    }

    pub(crate) async fn command(&mut self, line: &str) -> Result<Reply, Failure> {
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
    pub(crate) async fn reply_within(&mut self, limit: Duration) -> Result<Reply, Failure> {
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
