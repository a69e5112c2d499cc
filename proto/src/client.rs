//! The client's side of one mail transaction (RFC 5321 §3.3), sans IO: which commands go out, in
//! which writes, and what the server's replies make of each recipient.
//!
//! Why a state machine rather than code around a socket: the relay's delivery client once
//! interleaved these rules with its reads and writes, where they could only be tested through a
//! loopback server. Here the driver (the relay's `delivery::Client`, or a test with byte vectors)
//! does the I/O, in the manner of quinn-proto: it asks [`ClientTransaction::poll`] what to do
//! next, writes the bytes it is given, reads a reply when asked and hands it to
//! [`ClientTransaction::on_reply`]. Timeouts, TLS and the message's transmission (dot-stuffing
//! with [`crate::dot_stuff`], padding) stay with the driver.
//!
//! The rules kept here:
//!
//! - `MAIL FROM:<from>`, with `SIZE=<n>` when the server offers SIZE (RFC 1870 §6) and
//!   `REQUIRETLS` when the message asks for it (RFC 8689 §4.1; the driver checks first that the
//!   server offers it, RFC 8689 §4.2.1); one `RCPT TO:<rcpt>` a recipient; `DATA`.
//! - With PIPELINING wanted and offered (RFC 2920), the whole group goes in one write and the
//!   replies are read in order (§3.1: DATA is last in its group). A reused session's `RSET`
//!   leads the group (RSET may appear anywhere in a group, §3.1), so it costs no round trip and
//!   makes no burst of its own for an eavesdropper to tell apart. Without PIPELINING, one command
//!   at a time: a reused session's `RSET` alone first, as Postfix sends it ("to verify that a
//!   cached session is still usable", postconf(5) `smtp_rset_timeout`), nothing after a MAIL
//!   refused with 4xx or 5xx (the server would answer every RCPT with 503), and no DATA when
//!   every RCPT was refused.
//! - A leading `RSET` that is not answered `250` aborts the transaction: the session is unusable.
//! - Each recipient: `250` or `251` delivered (RFC 5321 §4.2.2), `5yz` failed, anything else
//!   deferred. A MAIL not answered `250` fails (5yz) or defers (otherwise) every recipient. A
//!   DATA not answered `354` defers the recipients that were accepted. After either refusal an
//!   `RSET` clears what the server holds of the transaction (RFC 5321 §4.1.1.5); its answer, or
//!   a connection lost meanwhile, changes nothing ([`ClientTransaction::connection_lost`]).
//! - The reply to the end of data (RFC 5321 §4.1.1.4) decides for the accepted recipients: `250`
//!   delivers them, `5yz` fails them, anything else defers them.

use std::collections::VecDeque;

use crate::{Capabilities, Reply};

/// What became of one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptOutcome {
    Delivered,
    /// Try again later (4xx, connection or policy failure).
    Deferred(String),
    /// Give up (5xx): the sender gets a bounce.
    Failed(String),
}

/// What the transaction carries: the envelope, and the message's size for SIZE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The reverse-path, without angle brackets (empty for the null path `<>`).
    pub from: String,
    /// The forward-paths, without angle brackets, in the order their RCPTs go out.
    pub rcpts: Vec<String>,
    /// The message's size in bytes, declared as `SIZE=` when the server offers SIZE.
    pub size: u64,
    /// Ask the server to keep the message on TLS (RFC 8689 REQUIRETLS).
    pub requiretls: bool,
}

/// How the commands are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode {
    /// Pipeline the group when the server offers PIPELINING.
    pub pipelining: bool,
    /// The session carried a transaction before: `RSET` first.
    pub reset: bool,
}

/// What the driver does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Write these bytes to the server, in one write.
    Send(Vec<u8>),
    /// Read the next reply and hand it to [`ClientTransaction::on_reply`].
    Await(Wait),
    /// The server answered DATA with `354`: send the message, dot-stuffed and terminated
    /// ([`crate::dot_stuff`]), then read the reply to its end (next step: `Await(EndOfData)`).
    SendContent,
    /// The transaction is over: each recipient's outcome, in the envelope's order.
    Done(Vec<(String, RcptOutcome)>),
    /// The transaction could not start (a leading `RSET` refused): the session is unusable and
    /// the whole delivery is to be tried again.
    Abort(String),
}

/// Which reply the driver awaits, for its choice of timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// A reply to a command (RFC 5321 §4.5.3.2: minutes).
    Command,
    /// The reply to the end of data, which the server may take long over (RFC 5321
    /// §4.5.3.2.6: ten minutes).
    EndOfData,
}

/// What a sent command was, to know what its reply decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    /// The `RSET` that leads a reused session's transaction.
    Reset,
    Mail,
    Rcpt,
    Data,
    EndOfData,
    /// The `RSET` after a refused MAIL or DATA: its reply decides nothing.
    Cleanup,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// MAIL, RCPT and DATA (and a leading RSET) going out, their replies coming in.
    Envelope,
    /// DATA answered `354`: the content is the driver's to send.
    Content,
    /// The content was handed to the driver; its end's reply is awaited.
    EndOfData,
    /// A refused MAIL or DATA: outcomes decided, the cleanup `RSET` under way.
    Cleanup,
    Done,
    Aborted(String),
}

/// One mail transaction, from its first command to each recipient's outcome. See the module
/// documentation for the rules it follows.
#[derive(Debug)]
pub struct ClientTransaction {
    rcpts: Vec<String>,
    pipelined: bool,
    phase: Phase,
    /// The driver's next write.
    outbox: Vec<u8>,
    /// Command lines not yet sent, without CRLF (without pipelining, one goes at a time).
    unsent: VecDeque<(Sent, String)>,
    /// Sent commands whose replies have not come, oldest first.
    awaiting: VecDeque<Sent>,
    mail: Option<Reply>,
    /// One per recipient answered so far, in order.
    rcpt_outcomes: Vec<RcptOutcome>,
    data: Option<Reply>,
    /// Decided once the envelope's replies are in, amended by the end of data.
    outcomes: Vec<(String, RcptOutcome)>,
}

impl ClientTransaction {
    /// A transaction for `envelope` to a server with `caps` (its reply to EHLO), sent as `mode`
    /// says. Nothing is sent until the driver polls.
    pub fn new(envelope: Envelope, caps: &Capabilities, mode: Mode) -> Self {
        let Envelope { from, rcpts, size, requiretls } = envelope;
        let size = if caps.has("SIZE") { format!(" SIZE={size}") } else { String::new() };
        let requiretls = if requiretls { " REQUIRETLS" } else { "" };
        let mut unsent = VecDeque::with_capacity(rcpts.len() + 3);
        if mode.reset {
            unsent.push_back((Sent::Reset, "RSET".to_string()));
        }
        unsent.push_back((Sent::Mail, format!("MAIL FROM:<{from}>{size}{requiretls}")));
        unsent.extend(rcpts.iter().map(|r| (Sent::Rcpt, format!("RCPT TO:<{r}>"))));
        unsent.push_back((Sent::Data, "DATA".to_string()));
        let pipelined = mode.pipelining && caps.pipelining();
        let mut t = Self {
            rcpts,
            pipelined,
            phase: Phase::Envelope,
            outbox: Vec::new(),
            unsent,
            awaiting: VecDeque::new(),
            mail: None,
            rcpt_outcomes: Vec::new(),
            data: None,
            outcomes: Vec::new(),
        };
        if pipelined {
            // RFC 2920 §3.1: the whole group, RSET first, in one write.
            while let Some(c) = t.unsent.pop_front() {
                t.queue(c);
            }
        }
        t
    }

    /// Whether the commands go pipelined (wanted, and offered by the server). A driver that
    /// sends commands of its own behind the content (padding NOOPs) may put the first in the
    /// content's write only then.
    pub fn pipelined(&self) -> bool {
        self.pipelined
    }

    /// What the driver does next. Polling again without doing it gives the same step again,
    /// except that `Send` and `SendContent` are handed out once.
    pub fn poll(&mut self) -> Step {
        loop {
            if !self.outbox.is_empty() {
                return Step::Send(std::mem::take(&mut self.outbox));
            }
            if let Some(&sent) = self.awaiting.front() {
                return Step::Await(if sent == Sent::EndOfData { Wait::EndOfData } else { Wait::Command });
            }
            match &self.phase {
                Phase::Envelope => match self.unsent.pop_front() {
                    Some(c) => self.queue(c),
                    None => self.conclude_envelope(),
                },
                Phase::Content => {
                    self.phase = Phase::EndOfData;
                    self.awaiting.push_back(Sent::EndOfData);
                    return Step::SendContent;
                }
                // The reply awaited came: these phases end on it.
                Phase::EndOfData | Phase::Cleanup | Phase::Done => {
                    self.phase = Phase::Done;
                    return Step::Done(self.outcomes.clone());
                }
                Phase::Aborted(why) => return Step::Abort(why.clone()),
            }
        }
    }

    /// The next reply from the server, answering the oldest command without one. A reply when
    /// none is awaited (a driver's mistake) is ignored.
    pub fn on_reply(&mut self, reply: &Reply) {
        let Some(sent) = self.awaiting.pop_front() else {
            return;
        };
        match sent {
            Sent::Reset if reply.code != 250 => {
                self.awaiting.clear();
                self.unsent.clear();
                self.outbox.clear();
                self.phase = Phase::Aborted(format!("RSET refused: {}", reply.summary()));
            }
            Sent::Reset | Sent::Cleanup => {}
            Sent::Mail => {
                if !self.pipelined && reply.code >= 400 {
                    // Nothing more: every RCPT would get 503.
                    self.unsent.clear();
                }
                self.mail = Some(reply.clone());
            }
            Sent::Rcpt => {
                self.rcpt_outcomes.push(match reply.code {
                    250 | 251 => RcptOutcome::Delivered,
                    c if c >= 500 => RcptOutcome::Failed(reply.summary()),
                    _ => RcptOutcome::Deferred(reply.summary()),
                });
                let answered_all = self.rcpt_outcomes.len() == self.rcpts.len();
                if !self.pipelined && answered_all && !self.rcpt_outcomes.contains(&RcptOutcome::Delivered) {
                    // No recipient to send the message to: no DATA (Postfix's client does not
                    // ask either), only the RSET that clears the transaction.
                    self.unsent.clear();
                }
            }
            Sent::Data => self.data = Some(reply.clone()),
            Sent::EndOfData => {
                if reply.code != 250 {
                    let why = format!("message refused: {}", reply.summary());
                    let o = if reply.code >= 500 { RcptOutcome::Failed(why) } else { RcptOutcome::Deferred(why) };
                    self.amend_delivered(&o);
                }
            }
        }
    }

    /// The connection failed (a write, a read, a timeout, a reply that did not parse). When the
    /// outcomes were already decided, with only the cleanup `RSET` outstanding, they stand and
    /// come back; otherwise `None`: the transaction failed with its session.
    pub fn connection_lost(&mut self) -> Option<Vec<(String, RcptOutcome)>> {
        match self.phase {
            Phase::Cleanup | Phase::Done => {
                self.phase = Phase::Done;
                self.awaiting.clear();
                self.outbox.clear();
                Some(self.outcomes.clone())
            }
            _ => None,
        }
    }

    fn queue(&mut self, (sent, line): (Sent, String)) {
        self.outbox.extend_from_slice(line.as_bytes());
        self.outbox.extend_from_slice(b"\r\n");
        self.awaiting.push_back(sent);
    }

    /// Every reply of the envelope is in: the transaction goes on to the content, or stops.
    fn conclude_envelope(&mut self) {
        let Some(mail) = &self.mail else {
            // Unreachable: MAIL is always sent and answered before this.
            self.phase = Phase::Aborted("MAIL not answered".into());
            return;
        };
        if mail.code != 250 {
            let why = format!("MAIL refused: {}", mail.summary());
            let o = if mail.code >= 500 { RcptOutcome::Failed(why) } else { RcptOutcome::Deferred(why) };
            self.outcomes = self.rcpts.iter().map(|r| (r.clone(), o.clone())).collect();
            self.cleanup();
            return;
        }
        self.outcomes = self.rcpts.iter().cloned().zip(std::mem::take(&mut self.rcpt_outcomes)).collect();
        let why = match &self.data {
            Some(r) if r.code == 354 => {
                self.phase = Phase::Content;
                return;
            }
            Some(r) => format!("DATA refused: {}", r.summary()),
            // Not pipelined and no recipient accepted (nothing to amend then).
            None => "DATA not sent: no recipient accepted".into(),
        };
        self.amend_delivered(&RcptOutcome::Deferred(why));
        self.cleanup();
    }

    /// A refused MAIL or DATA: `RSET` (RFC 5321 §4.1.1.5), whose reply decides nothing.
    fn cleanup(&mut self) {
        self.phase = Phase::Cleanup;
        self.queue((Sent::Cleanup, "RSET".into()));
    }

    fn amend_delivered(&mut self, to: &RcptOutcome) {
        for (_, o) in &mut self.outcomes {
            if *o == RcptOutcome::Delivered {
                *o = to.clone();
            }
        }
    }
}

/// A server's refusal to open a session: its greeting or its reply to EHLO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// A 5yz reply: the server will not take mail from this client.
    pub permanent: bool,
    pub why: String,
}

/// Checks the server's greeting: `220` opens the session (RFC 5321 §4.3.1, §3.1; a `554`
/// greeting refuses it).
pub fn greeting(reply: &Reply) -> Result<(), Refused> {
    if reply.code == 220 {
        Ok(())
    } else {
        Err(Refused { permanent: reply.code >= 500, why: format!("greeting {}", reply.summary()) })
    }
}

/// The server's capabilities from its reply to EHLO (RFC 5321 §4.1.1.1: `250`, else refused).
pub fn ehlo(reply: &Reply) -> Result<Capabilities, Refused> {
    if reply.code == 250 {
        Ok(Capabilities::from_reply(reply))
    } else {
        Err(Refused { permanent: reply.code >= 500, why: format!("EHLO refused: {}", reply.summary()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ReplyParser;

    /// Postfix 3.x's reply to EHLO (`smtpd_discard_ehlo_keywords` empty).
    const POSTFIX: &[u8] = b"250-mx.b.example\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n250-ETRN\r\n\
250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n";
    /// Postfix with `smtpd_discard_ehlo_keywords = pipelining`.
    const NO_PIPELINING: &[u8] =
        b"250-mx.b.example\r\n250-SIZE 10240000\r\n250-ENHANCEDSTATUSCODES\r\n250 8BITMIME\r\n";
    /// A server that offers nothing, not even SIZE.
    const BARE: &[u8] = b"250 mx.b.example\r\n";
    /// Inside TLS, with REQUIRETLS (RFC 8689 §3) and SIZE without a limit (RFC 1870 §4).
    const REQUIRETLS: &[u8] = b"250-mx.b.example\r\n250-PIPELINING\r\n250-SIZE\r\n250 REQUIRETLS\r\n";

    const PIPELINED: Mode = Mode { pipelining: true, reset: false };
    const PIPELINED_REUSED: Mode = Mode { pipelining: true, reset: true };
    const LOCKSTEP: Mode = Mode { pipelining: false, reset: false };
    const LOCKSTEP_REUSED: Mode = Mode { pipelining: false, reset: true };

    /// How a driven transaction ended.
    #[derive(Debug, PartialEq)]
    enum End {
        Done(Vec<(String, RcptOutcome)>),
        Abort(String),
        /// The server's replies ran out while one was awaited: what `connection_lost` said.
        Lost(Option<Vec<(String, RcptOutcome)>>),
    }

    fn replies(bytes: &[u8]) -> VecDeque<Reply> {
        let mut p = ReplyParser::new(512);
        p.extend(bytes);
        let mut out = VecDeque::new();
        while let Some(r) = p.next_reply() {
            out.push_back(r.expect("a reply"));
        }
        assert_eq!(p.pending(), 0, "a test's server bytes end in a whole reply");
        out
    }

    fn caps(ehlo_reply: &[u8]) -> Capabilities {
        Capabilities::from_reply(&replies(ehlo_reply)[0])
    }

    /// Drives a transaction against a server that answers with `server`: the client's writes,
    /// one string each (`<content>` where the driver sends the message), and how it ended.
    fn drive(t: &mut ClientTransaction, server: &[u8]) -> (Vec<String>, End) {
        let mut server = replies(server);
        let mut writes = Vec::new();
        for _ in 0..100 {
            match t.poll() {
                Step::Send(bytes) => writes.push(String::from_utf8(bytes).expect("ASCII")),
                Step::SendContent => writes.push("<content>".into()),
                Step::Await(_) => match server.pop_front() {
                    Some(r) => t.on_reply(&r),
                    None => return (writes, End::Lost(t.connection_lost())),
                },
                Step::Done(o) => {
                    assert!(server.is_empty(), "replies left over: {server:?}");
                    return (writes, End::Done(o));
                }
                Step::Abort(why) => return (writes, End::Abort(why)),
            }
        }
        panic!("no end after 100 steps; wrote {writes:?}");
    }

    fn outcomes(o: &[(&str, RcptOutcome)]) -> Vec<(String, RcptOutcome)> {
        o.iter().map(|(r, o)| (r.to_string(), o.clone())).collect()
    }
    fn failed(why: &str) -> RcptOutcome {
        RcptOutcome::Failed(why.into())
    }
    fn deferred(why: &str) -> RcptOutcome {
        RcptOutcome::Deferred(why.into())
    }
    const DELIVERED: RcptOutcome = RcptOutcome::Delivered;

    const BOB: &str = "bob@b.example";
    const CAROL: &str = "carol@b.example";

    struct Case {
        name: &'static str,
        ehlo: &'static [u8],
        mode: Mode,
        from: &'static str,
        rcpts: &'static [&'static str],
        requiretls: bool,
        server: &'static [u8],
        writes: &'static [&'static str],
        end: End,
    }

    /// Bob and Carol, from Alice, 1234 bytes.
    fn case(name: &'static str, ehlo: &'static [u8], mode: Mode) -> Case {
        Case {
            name,
            ehlo,
            mode,
            from: "alice@a.example",
            rcpts: &[BOB, CAROL],
            requiretls: false,
            server: b"",
            writes: &[],
            end: End::Abort(String::new()),
        }
    }

    #[test]
    fn transactions_against_real_replies() {
        let both_delivered = || End::Done(outcomes(&[(BOB, DELIVERED), (CAROL, DELIVERED)]));
        let cases = vec![
            Case {
                server: b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n\
250 2.0.0 Ok: queued as ABC\r\n",
                writes: &[
                    "MAIL FROM:<alice@a.example> SIZE=1234\r\nRCPT TO:<bob@b.example>\r\nRCPT TO:<carol@b.example>\r\nDATA\r\n",
                    "<content>",
                ],
                end: both_delivered(),
                ..case("pipelined, one write for the group", POSTFIX, PIPELINED)
            },
            Case {
                server: b"250 2.0.0 Ok\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n\
354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as ABC\r\n",
                writes: &[
                    "RSET\r\nMAIL FROM:<alice@a.example> SIZE=1234\r\nRCPT TO:<bob@b.example>\r\nRCPT TO:<carol@b.example>\r\nDATA\r\n",
                    "<content>",
                ],
                end: both_delivered(),
                ..case("reused and pipelined: RSET leads the group", POSTFIX, PIPELINED_REUSED)
            },
            Case {
                server: b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n\
250 2.0.0 Ok: queued as ABC\r\n",
                writes: &[
                    "MAIL FROM:<alice@a.example> SIZE=1234\r\n",
                    "RCPT TO:<bob@b.example>\r\n",
                    "RCPT TO:<carol@b.example>\r\n",
                    "DATA\r\n",
                    "<content>",
                ],
                end: both_delivered(),
                ..case("not pipelined: one command a write", POSTFIX, LOCKSTEP)
            },
            Case {
                server: b"250 2.0.0 Ok\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n\
354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as ABC\r\n",
                writes: &[
                    "RSET\r\n",
                    "MAIL FROM:<alice@a.example> SIZE=1234\r\n",
                    "RCPT TO:<bob@b.example>\r\n",
                    "RCPT TO:<carol@b.example>\r\n",
                    "DATA\r\n",
                    "<content>",
                ],
                end: both_delivered(),
                ..case("reused, not pipelined: a lone RSET first", POSTFIX, LOCKSTEP_REUSED)
            },
            Case {
                server: b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n\
250 2.0.0 Ok: queued as ABC\r\n",
                writes: &[
                    "MAIL FROM:<alice@a.example> SIZE=1234\r\n",
                    "RCPT TO:<bob@b.example>\r\n",
                    "RCPT TO:<carol@b.example>\r\n",
                    "DATA\r\n",
                    "<content>",
                ],
                end: both_delivered(),
                ..case("pipelining wanted, not offered: one at a time", NO_PIPELINING, PIPELINED)
            },
            Case {
                server: b"250 Ok\r\n250 Ok\r\n250 Ok\r\n354 go ahead\r\n250 Ok\r\n",
                writes: &[
                    "MAIL FROM:<alice@a.example>\r\n",
                    "RCPT TO:<bob@b.example>\r\n",
                    "RCPT TO:<carol@b.example>\r\n",
                    "DATA\r\n",
                    "<content>",
                ],
                end: both_delivered(),
                ..case("no SIZE unless offered", BARE, PIPELINED)
            },
            Case {
                requiretls: true,
                server: b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n\
250 2.0.0 Ok: queued as ABC\r\n",
                writes: &[
                    "MAIL FROM:<alice@a.example> SIZE=1234 REQUIRETLS\r\nRCPT TO:<bob@b.example>\r\nRCPT TO:<carol@b.example>\r\nDATA\r\n",
                    "<content>",
                ],
                end: both_delivered(),
                ..case("REQUIRETLS after SIZE", REQUIRETLS, PIPELINED)
            },
            Case {
                from: "",
                rcpts: &[BOB],
                server: b"250 2.1.0 Ok\r\n251 2.1.5 User not local; will forward to <bob@c.example>\r\n\
354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as ABC\r\n",
                writes: &["MAIL FROM:<> SIZE=1234\r\nRCPT TO:<bob@b.example>\r\nDATA\r\n", "<content>"],
                end: End::Done(outcomes(&[(BOB, DELIVERED)])),
                ..case("null reverse-path; 251 delivers", POSTFIX, PIPELINED)
            },
            Case {
                server: b"553 5.7.1 <alice@a.example>: Sender address rejected: not owned by user\r\n\
503 5.5.1 Error: need MAIL command\r\n503 5.5.1 Error: need MAIL command\r\n554 5.5.1 Error: no valid recipients\r\n\
250 2.0.0 Ok\r\n",
                writes: &[
                    "MAIL FROM:<alice@a.example> SIZE=1234\r\nRCPT TO:<bob@b.example>\r\nRCPT TO:<carol@b.example>\r\nDATA\r\n",
                    "RSET\r\n",
                ],
                end: End::Done(outcomes(&[
                    (
                        BOB,
                        failed("MAIL refused: 553 5.7.1 <alice@a.example>: Sender address rejected: not owned by user"),
                    ),
                    (
                        CAROL,
                        failed("MAIL refused: 553 5.7.1 <alice@a.example>: Sender address rejected: not owned by user"),
                    ),
                ])),
                ..case("pipelined, MAIL refused 5xx: every reply read, then RSET", POSTFIX, PIPELINED)
            },
            Case {
                server: b"451 4.3.0 Error: queue file write error\r\n503 5.5.1 Error: need MAIL command\r\n\
503 5.5.1 Error: need MAIL command\r\n554 5.5.1 Error: no valid recipients\r\n250 2.0.0 Ok\r\n",
                writes: &[
                    "MAIL FROM:<alice@a.example> SIZE=1234\r\nRCPT TO:<bob@b.example>\r\nRCPT TO:<carol@b.example>\r\nDATA\r\n",
                    "RSET\r\n",
                ],
                end: End::Done(outcomes(&[
                    (BOB, deferred("MAIL refused: 451 4.3.0 Error: queue file write error")),
                    (CAROL, deferred("MAIL refused: 451 4.3.0 Error: queue file write error")),
                ])),
                ..case("pipelined, MAIL refused 4xx", POSTFIX, PIPELINED)
            },
            Case {
                server: b"553 5.7.1 <alice@a.example>: Sender address rejected: not owned by user\r\n250 2.0.0 Ok\r\n",
                writes: &["MAIL FROM:<alice@a.example> SIZE=1234\r\n", "RSET\r\n"],
                end: End::Done(outcomes(&[
                    (
                        BOB,
                        failed("MAIL refused: 553 5.7.1 <alice@a.example>: Sender address rejected: not owned by user"),
                    ),
                    (
                        CAROL,
                        failed("MAIL refused: 553 5.7.1 <alice@a.example>: Sender address rejected: not owned by user"),
                    ),
                ])),
                ..case("not pipelined, MAIL refused 5xx: no RCPT, RSET", POSTFIX, LOCKSTEP)
            },
            Case {
                server: b"452 4.3.1 Insufficient system storage\r\n250 2.0.0 Ok\r\n",
                writes: &["MAIL FROM:<alice@a.example> SIZE=1234\r\n", "RSET\r\n"],
                end: End::Done(outcomes(&[
                    (BOB, deferred("MAIL refused: 452 4.3.1 Insufficient system storage")),
                    (CAROL, deferred("MAIL refused: 452 4.3.1 Insufficient system storage")),
                ])),
                ..case("not pipelined, MAIL refused 4xx", POSTFIX, LOCKSTEP)
            },
            Case {
                server: b"421 4.3.2 Service shutting down\r\n",
                writes: &["MAIL FROM:<alice@a.example> SIZE=1234\r\n", "RSET\r\n"],
                end: End::Lost(Some(outcomes(&[
                    (BOB, deferred("MAIL refused: 421 4.3.2 Service shutting down")),
                    (CAROL, deferred("MAIL refused: 421 4.3.2 Service shutting down")),
                ]))),
                ..case("MAIL refused, connection gone before the RSET's reply: the outcomes stand", POSTFIX, LOCKSTEP)
            },
            Case {
                server: b"250 2.1.0 Ok\r\n554 5.7.1 <bob@b.example>: Relay access denied\r\n250 2.1.5 Ok\r\n\
354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as ABC\r\n",
                writes: &[
                    "MAIL FROM:<alice@a.example> SIZE=1234\r\nRCPT TO:<bob@b.example>\r\nRCPT TO:<carol@b.example>\r\nDATA\r\n",
                    "<content>",
                ],
                end: End::Done(outcomes(&[
                    (BOB, failed("554 5.7.1 <bob@b.example>: Relay access denied")),
                    (CAROL, DELIVERED),
                ])),
                ..case("one recipient refused", POSTFIX, PIPELINED)
            },
            Case {
                server: b"250 2.1.0 Ok\r\n554 5.7.1 <bob@b.example>: Relay access denied\r\n\
450 4.1.1 <carol@b.example>: Recipient address rejected: unverified address\r\n\
554 5.5.1 Error: no valid recipients\r\n250 2.0.0 Ok\r\n",
                writes: &[
                    "MAIL FROM:<alice@a.example> SIZE=1234\r\nRCPT TO:<bob@b.example>\r\nRCPT TO:<carol@b.example>\r\nDATA\r\n",
                    "RSET\r\n",
                ],
                end: End::Done(outcomes(&[
                    (BOB, failed("554 5.7.1 <bob@b.example>: Relay access denied")),
                    (CAROL, deferred("450 4.1.1 <carol@b.example>: Recipient address rejected: unverified address")),
                ])),
                ..case("pipelined, every recipient refused: DATA refused, RSET", POSTFIX, PIPELINED)
            },
            Case {
                server: b"250 2.1.0 Ok\r\n554 5.7.1 <bob@b.example>: Relay access denied\r\n\
554 5.7.1 <carol@b.example>: Relay access denied\r\n250 2.0.0 Ok\r\n",
                writes: &[
                    "MAIL FROM:<alice@a.example> SIZE=1234\r\n",
                    "RCPT TO:<bob@b.example>\r\n",
                    "RCPT TO:<carol@b.example>\r\n",
                    "RSET\r\n",
                ],
                end: End::Done(outcomes(&[
                    (BOB, failed("554 5.7.1 <bob@b.example>: Relay access denied")),
                    (CAROL, failed("554 5.7.1 <carol@b.example>: Relay access denied")),
                ])),
                ..case("not pipelined, every recipient refused: no DATA, RSET", POSTFIX, LOCKSTEP)
            },
            Case {
                server: b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n554 5.7.1 <carol@b.example>: Relay access denied\r\n\
451 4.3.0 Error: queue file write error\r\n250 2.0.0 Ok\r\n",
                writes: &[
                    "MAIL FROM:<alice@a.example> SIZE=1234\r\nRCPT TO:<bob@b.example>\r\nRCPT TO:<carol@b.example>\r\nDATA\r\n",
                    "RSET\r\n",
                ],
                end: End::Done(outcomes(&[
                    (BOB, deferred("DATA refused: 451 4.3.0 Error: queue file write error")),
                    (CAROL, failed("554 5.7.1 <carol@b.example>: Relay access denied")),
                ])),
                ..case("DATA refused: the accepted recipient waits", POSTFIX, PIPELINED)
            },
            Case {
                server: b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n554 5.7.1 <carol@b.example>: Relay access denied\r\n\
354 End data with <CR><LF>.<CR><LF>\r\n452 4.3.1 Insufficient system storage\r\n",
                writes: &[
                    "MAIL FROM:<alice@a.example> SIZE=1234\r\nRCPT TO:<bob@b.example>\r\nRCPT TO:<carol@b.example>\r\nDATA\r\n",
                    "<content>",
                ],
                end: End::Done(outcomes(&[
                    (BOB, deferred("message refused: 452 4.3.1 Insufficient system storage")),
                    (CAROL, failed("554 5.7.1 <carol@b.example>: Relay access denied")),
                ])),
                ..case("end of data 452: accepted recipients wait, no RSET", POSTFIX, PIPELINED)
            },
            Case {
                server: b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n\
354 End data with <CR><LF>.<CR><LF>\r\n554 5.7.1 Message rejected: spam\r\n",
                writes: &[
                    "MAIL FROM:<alice@a.example> SIZE=1234\r\n",
                    "RCPT TO:<bob@b.example>\r\n",
                    "RCPT TO:<carol@b.example>\r\n",
                    "DATA\r\n",
                    "<content>",
                ],
                end: End::Done(outcomes(&[
                    (BOB, failed("message refused: 554 5.7.1 Message rejected: spam")),
                    (CAROL, failed("message refused: 554 5.7.1 Message rejected: spam")),
                ])),
                ..case("end of data 554: bounces", POSTFIX, LOCKSTEP)
            },
            Case {
                server: b"421 4.4.2 mx.b.example Error: timeout exceeded\r\n",
                writes: &[
                    "RSET\r\nMAIL FROM:<alice@a.example> SIZE=1234\r\nRCPT TO:<bob@b.example>\r\nRCPT TO:<carol@b.example>\r\nDATA\r\n",
                ],
                end: End::Abort("RSET refused: 421 4.4.2 mx.b.example Error: timeout exceeded".into()),
                ..case("reused, pipelined, RSET refused: abort at once", POSTFIX, PIPELINED_REUSED)
            },
            Case {
                server: b"421 4.4.2 mx.b.example Error: timeout exceeded\r\n",
                writes: &["RSET\r\n"],
                end: End::Abort("RSET refused: 421 4.4.2 mx.b.example Error: timeout exceeded".into()),
                ..case("reused, not pipelined, RSET refused: nothing more sent", POSTFIX, LOCKSTEP_REUSED)
            },
            Case {
                server: b"250 2.1.0 Ok\r\n",
                writes: &[
                    "MAIL FROM:<alice@a.example> SIZE=1234\r\nRCPT TO:<bob@b.example>\r\nRCPT TO:<carol@b.example>\r\nDATA\r\n",
                ],
                end: End::Lost(None),
                ..case("connection lost amid the replies: the transaction fails", POSTFIX, PIPELINED)
            },
            Case {
                server: b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n",
                writes: &[
                    "MAIL FROM:<alice@a.example> SIZE=1234\r\nRCPT TO:<bob@b.example>\r\nRCPT TO:<carol@b.example>\r\nDATA\r\n",
                    "<content>",
                ],
                end: End::Lost(None),
                ..case("connection lost before the end of data's reply: the transaction fails", POSTFIX, PIPELINED)
            },
        ];
        for c in cases {
            let env = Envelope {
                from: c.from.into(),
                rcpts: c.rcpts.iter().map(|r| r.to_string()).collect(),
                size: 1234,
                requiretls: c.requiretls,
            };
            let mut t = ClientTransaction::new(env, &caps(c.ehlo), c.mode);
            let (writes, end) = drive(&mut t, c.server);
            assert_eq!(writes, c.writes, "{}: writes", c.name);
            assert_eq!(end, c.end, "{}: end", c.name);
        }
    }

    #[test]
    fn the_end_of_data_gets_its_own_wait_and_steps_repeat_until_acted_on() {
        let env = Envelope { from: "a@a.example".into(), rcpts: vec![BOB.into()], size: 10, requiretls: false };
        let mut t = ClientTransaction::new(env, &caps(POSTFIX), PIPELINED);
        assert!(t.pipelined());
        assert_eq!(
            t.poll(),
            Step::Send(b"MAIL FROM:<a@a.example> SIZE=10\r\nRCPT TO:<bob@b.example>\r\nDATA\r\n".to_vec())
        );
        for r in replies(b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n") {
            assert_eq!(t.poll(), Step::Await(Wait::Command));
            assert_eq!(t.poll(), Step::Await(Wait::Command), "awaiting until a reply comes");
            t.on_reply(&r);
        }
        assert_eq!(t.connection_lost(), None, "nothing decided before the end of data");
        assert_eq!(t.poll(), Step::SendContent);
        assert_eq!(t.poll(), Step::Await(Wait::EndOfData));
        t.on_reply(&Reply::new(250, "2.0.0 Ok: queued as ABC"));
        let done = Step::Done(outcomes(&[(BOB, DELIVERED)]));
        assert_eq!(t.poll(), done);
        t.on_reply(&Reply::new(250, "2.0.0 Ok"));
        assert_eq!(t.poll(), done, "a reply nobody asked for changes nothing");
        let caps_without = caps(NO_PIPELINING);
        let t = ClientTransaction::new(
            Envelope { from: String::new(), rcpts: vec![], size: 0, requiretls: false },
            &caps_without,
            PIPELINED,
        );
        assert!(!t.pipelined());
    }

    #[test]
    fn greeting_and_ehlo() {
        let one = |b: &[u8]| replies(b).pop_front().expect("one reply");
        assert_eq!(greeting(&one(b"220 mx.b.example ESMTP Postfix\r\n")), Ok(()));
        assert_eq!(
            greeting(&one(b"554 5.7.1 No SMTP service here\r\n")),
            Err(Refused { permanent: true, why: "greeting 554 5.7.1 No SMTP service here".into() })
        );
        assert_eq!(
            greeting(&one(b"421 4.3.2 mx.b.example Service not available\r\n")),
            Err(Refused { permanent: false, why: "greeting 421 4.3.2 mx.b.example Service not available".into() })
        );
        let c = ehlo(&one(POSTFIX)).expect("250");
        assert_eq!(c.server_name, "mx.b.example");
        assert!(c.pipelining() && c.starttls() && c.size() == Some(10_240_000));
        assert_eq!(
            ehlo(&one(b"502 5.5.2 Error: command not recognized\r\n")),
            Err(Refused { permanent: true, why: "EHLO refused: 502 5.5.2 Error: command not recognized".into() })
        );
        assert_eq!(
            ehlo(&one(b"421 4.7.0 mx.b.example Error: too many errors\r\n")),
            Err(Refused {
                permanent: false,
                why: "EHLO refused: 421 4.7.0 mx.b.example Error: too many errors".into()
            })
        );
    }
}
