//! The server side of an SMTP session, sans-IO: what the relay says to a client, and when.
//!
//! [`ServerSession`] holds the session's state (greeting sent, EHLO seen, the open transaction,
//! DATA or BDAT content being received, STARTTLS under way) and nothing else: the driver feeds it
//! the bytes it read ([`ServerSession::feed`]), asks it what to do next
//! ([`ServerSession::poll`]), writes out what it has to say ([`ServerSession::output`]) and
//! answers the two questions it cannot answer itself, because they need the outside world: may
//! this recipient be accepted (local domains, relay rules, DNS), and was this message queued
//! (a durable spool). Timers stay with the driver too: it knows whether the session waits for a
//! command or for message content ([`Wait`]), and ends a session that waited too long with
//! [`ServerSession::abort`]. This is quinn-proto's split: the relay drives the session over
//! tokio sockets and rustls, the tests drive it with byte vectors.
//!
//! What it enforces, as Postfix does: pipelined commands answered in one flight (RFC 2920);
//! nothing pipelined behind STARTTLS (CVE-2011-0411: the session ends with 554); everything
//! learnt before TLS forgotten after it (RFC 3207 §4.2); bare LF and CR refused with 521
//! ([`crate::line_endings`]), a message only ended by `<CRLF>.<CRLF>`; DATA and BDAT
//! (RFC 3030) content counted past the size limit but not kept; REQUIRETLS (RFC 8689) offered and
//! accepted only inside TLS; MAIL refused before TLS where the listener requires it.

use std::mem;

use crate::command::Command;
use crate::data::{DataReceiver, DataStatus};
use crate::ehlo::Capabilities;
use crate::line::{Line, LineBuffer};
use crate::line_endings::{self, Bare, EndOfData, Scanner};
use crate::reply::Reply;

/// The EHLO keyword and MAIL parameter of RFC 8689.
pub const REQUIRETLS: &str = "REQUIRETLS";

/// Whether MAIL's parameters hold `REQUIRETLS` (RFC 8689 §4.1: no value; case insensitive as
/// every ESMTP keyword).
pub fn requiretls_param(params: &[String]) -> bool {
    params.iter().any(|p| p.eq_ignore_ascii_case(REQUIRETLS))
}

/// What the session needs to know of its server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The name in the greeting, the EHLO reply and the 521 refusal.
    pub hostname: String,
    /// Longest command line accepted (terminator excluded).
    pub max_line: usize,
    /// Largest message kept; larger ones are read to their end and refused with 552.
    pub max_message_bytes: usize,
    /// Recipients accepted in one transaction; more get 452 (RFC 5321 §4.5.3.1.8).
    pub max_recipients: usize,
    /// STARTTLS is offered and accepted (the driver can do the handshake).
    pub starttls: bool,
    /// MAIL is refused with 530 until TLS is on (an MX whose policy is `encrypt`).
    pub require_tls: bool,
}

/// What the driver must do next, from [`ServerSession::poll`].
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Send [`ServerSession::output`] and read more; [`Wait`] says for what.
    Read(Wait),
    /// `RCPT TO:<to>`, well formed, within the recipient limit: answer with
    /// [`ServerSession::recipient`].
    Recipient(String),
    /// A whole message with its envelope: queue it and answer with [`ServerSession::queued`].
    Message(Message),
    /// The client may start TLS: its `220` is in the output. Send it, do the handshake, then call
    /// [`ServerSession::tls_established`] (or end the session if the handshake failed).
    StartTls,
    /// The session is over: send the output and close the connection.
    Close(Close),
    /// Still waiting for the answer to the last [`Event::Recipient`] or [`Event::Message`]
    /// (polling again before answering is a driver bug; the session stays as it was).
    Waiting,
}

/// What the session waits for when it asks for input: drivers time the two differently
/// (Postfix's `smtpd_timeout` for a command, `smtpd_min_data_rate` for content).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// A command.
    Command,
    /// More of a DATA or BDAT transfer; `transfer` counts the transfers of the session, so a
    /// driver knows when a new one starts.
    Content { transfer: u64 },
}

/// Why a session closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// The client said QUIT (and was answered 221).
    Quit,
    /// A command or message had a bare LF or CR (answered 521).
    BareNewline(Bare),
    /// Bytes came after STARTTLS in the same flight (answered 554).
    PipelinedAfterStartTls,
    /// A BDAT without a usable size: the chunk's end cannot be found (answered 501).
    BadBdatSize,
    /// The driver ended it ([`ServerSession::abort`]).
    Aborted,
}

/// A message received whole, with its envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub from: String,
    pub rcpts: Vec<String>,
    /// `MAIL FROM:<...> REQUIRETLS` (RFC 8689), accepted only inside TLS.
    pub requiretls: bool,
    /// The client's EHLO or HELO name in force (after TLS, the one given inside it).
    pub helo: Option<String>,
    /// The content: unstuffed for DATA, the chunks joined for BDAT.
    pub content: Vec<u8>,
}

/// One SMTP server session. See the module doc.
#[derive(Debug)]
pub struct ServerSession {
    cfg: ServerConfig,
    state: State,
    /// Bytes read and not yet acted on.
    input: LineBuffer,
    /// Replies not yet sent.
    out: Vec<u8>,
    /// Codes of the replies put in `out` since the driver last took them (for its records).
    codes: Vec<u16>,
    tls: bool,
    /// The EHLO or HELO name in force; forgotten at STARTTLS.
    helo: Option<String>,
    /// The last EHLO or HELO name given, TLS or not (for the session record).
    last_helo: Option<String>,
    /// STARTTLS was offered in an EHLO reply.
    starttls_offered: bool,
    tx: Option<Transaction>,
    /// BDAT chunks of the open transaction received so far.
    bdat: Vec<u8>,
    /// DATA and BDAT transfers started.
    transfers: u64,
}

/// What follows a command.
enum Next {
    /// The next command.
    Command,
    /// A DATA or BDAT transfer, in the state now set.
    Transfer,
    Event(Event),
}

#[derive(Debug)]
struct Transaction {
    from: String,
    rcpts: Vec<String>,
    requiretls: bool,
}

#[derive(Debug)]
enum State {
    /// Reading commands.
    Commands,
    /// Reading DATA content.
    Data(Box<DataTransfer>),
    /// Reading a BDAT chunk.
    Bdat(BdatChunk),
    /// Waiting for the driver's verdict on a recipient.
    Recipient(String),
    /// Waiting for the driver to queue a message.
    Queueing,
    /// The `220` to STARTTLS was given; waiting for the handshake.
    StartingTls,
    Closed(Close),
}

#[derive(Debug)]
struct DataTransfer {
    tx: Transaction,
    receiver: DataReceiver,
    strict: Scanner,
    /// Set at the first bare LF or CR: from there the content is only searched for
    /// `<CRLF>.<CRLF>`, then refused whole, as Postfix does.
    refused: Option<(Bare, EndOfData)>,
}

#[derive(Debug)]
struct BdatChunk {
    size: usize,
    last: bool,
    remaining: usize,
    /// Every byte of the chunk fitted under the size limit.
    kept_all: bool,
}

impl ServerSession {
    /// A new session; its greeting is already in the output.
    pub fn new(cfg: ServerConfig) -> Self {
        let input = LineBuffer::new(cfg.max_line);
        let mut s = Self {
            cfg,
            state: State::Commands,
            input,
            out: Vec::new(),
            codes: Vec::new(),
            tls: false,
            helo: None,
            last_helo: None,
            starttls_offered: false,
            tx: None,
            bdat: Vec::new(),
            transfers: 0,
        };
        let greeting = Reply::new(220, format!("{} ESMTP smtplab", s.cfg.hostname));
        s.reply(greeting);
        s
    }

    /// Bytes read from the client (decrypted, once TLS is on).
    pub fn feed(&mut self, bytes: &[u8]) {
        self.input.extend(bytes);
    }

    /// Replies to send, in order.
    pub fn output(&self) -> &[u8] {
        &self.out
    }

    /// The output was sent (or given up on): forget it.
    pub fn output_sent(&mut self) {
        self.out.clear();
    }

    /// The codes of the replies put in the output since the last call, in order.
    pub fn take_reply_codes(&mut self) -> std::vec::Drain<'_, u16> {
        self.codes.drain(..)
    }

    /// The last EHLO or HELO name the client gave.
    pub fn ehlo_name(&self) -> Option<&str> {
        self.last_helo.as_deref()
    }

    /// Whether an EHLO reply offered STARTTLS.
    pub fn starttls_offered(&self) -> bool {
        self.starttls_offered
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Acts on the input held until the driver has something to do.
    pub fn poll(&mut self) -> Event {
        // Each step takes the state and leaves the next one; `None` means the state changed
        // (a transfer began or ended) and the input goes on in it. A loop, not recursion: a
        // client can pipeline any number of BDAT chunks in one flight.
        loop {
            let event = match mem::replace(&mut self.state, State::Commands) {
                State::Commands => self.commands(),
                State::Data(transfer) => self.data(transfer),
                State::Bdat(chunk) => self.bdat(chunk),
                waiting @ (State::Recipient(_) | State::Queueing | State::StartingTls) => {
                    self.state = waiting;
                    Some(Event::Waiting)
                }
                State::Closed(why) => Some(self.close(why)),
            };
            if let Some(event) = event {
                return event;
            }
        }
    }

    /// The driver's verdict on the recipient of the last [`Event::Recipient`]: `Ok` accepts it,
    /// `Err` refuses it with that reply.
    pub fn recipient(&mut self, verdict: Result<(), Reply>) {
        let State::Recipient(to) = mem::replace(&mut self.state, State::Commands) else {
            return self.not_waiting();
        };
        match (verdict, &mut self.tx) {
            (Ok(()), Some(tx)) => {
                tx.rcpts.push(to);
                self.reply(Reply::new(250, "2.1.5 Ok"));
            }
            (Ok(()), None) => self.reply(Reply::new(503, "5.5.1 Error: need MAIL command")),
            (Err(r), _) => self.reply(r),
        }
    }

    /// The driver's answer to the last [`Event::Message`]: `250 ... queued as ...` or why not.
    pub fn queued(&mut self, reply: Reply) {
        if !matches!(self.state, State::Queueing) {
            return self.not_waiting();
        }
        self.state = State::Commands;
        self.reply(reply);
    }

    /// The TLS handshake after [`Event::StartTls`] succeeded: everything learnt before it is
    /// forgotten (RFC 3207 §4.2), and the session reads commands again, now through TLS.
    pub fn tls_established(&mut self) {
        if !matches!(self.state, State::StartingTls) {
            return self.not_waiting();
        }
        self.state = State::Commands;
        self.tls = true;
        self.helo = None;
        self.tx = None;
        self.bdat.clear();
        self.input = LineBuffer::new(self.cfg.max_line);
    }

    /// Ends the session with `reply` (a driver's timeout: `421 4.4.2 ...`) after whatever
    /// replies are still unsent.
    pub fn abort(&mut self, reply: Reply) {
        self.reply(reply);
        self.state = State::Closed(Close::Aborted);
    }

    fn reply(&mut self, r: Reply) {
        self.codes.push(r.code);
        self.out.extend_from_slice(&r.to_bytes());
    }

    /// An answer came for a question not asked: the driver is confused. Nothing it said is
    /// acted on; the session ends rather than guess.
    fn not_waiting(&mut self) {
        self.reply(Reply::new(421, "4.3.0 Error: internal error"));
        self.state = State::Closed(Close::Aborted);
    }

    fn close(&mut self, why: Close) -> Event {
        self.state = State::Closed(why);
        Event::Close(why)
    }

    /// Answers every complete command buffered, until one needs the driver, starts a transfer
    /// (`None`) or the input runs out. Replies to a pipelined group gather in the output and go
    /// out in one write.
    fn commands(&mut self) -> Option<Event> {
        loop {
            let before = self.input.pending();
            let Some(line) = self.input.next_line() else {
                return Some(Event::Read(Wait::Command));
            };
            let used = before.saturating_sub(self.input.pending());
            if let Some(bare) = line_endings::check_command_line(&line, used) {
                self.reply(bare.reply(&self.cfg.hostname));
                return Some(self.close(Close::BareNewline(bare)));
            }
            let line = match line {
                Line::Complete(l) => l,
                Line::TooLong { .. } => {
                    self.reply(Reply::new(500, "5.5.2 Error: line too long"));
                    continue;
                }
            };
            match self.command(Command::parse(&line)) {
                Next::Command => {}
                Next::Transfer => return None,
                Next::Event(event) => return Some(event),
            }
        }
    }

    /// One command: its reply, and what comes next.
    fn command(&mut self, command: Command) -> Next {
        match command {
            Command::Ehlo(name) | Command::Helo(name) if name.is_empty() => {
                self.reply(Reply::new(501, "5.5.4 Syntax: EHLO hostname"));
            }
            Command::Ehlo(name) => {
                let caps = self.capabilities();
                self.starttls_offered |= caps.starttls();
                self.greeted(name);
                self.reply(caps.to_reply(&self.cfg.hostname));
            }
            Command::Helo(name) => {
                self.greeted(name);
                self.reply(Reply::new(250, self.cfg.hostname.clone()));
            }
            Command::Mail { from, params } => {
                let r = self.mail(&params);
                if r.code == 250 {
                    let requiretls = requiretls_param(&params);
                    self.tx = Some(Transaction { from, rcpts: Vec::new(), requiretls });
                }
                self.reply(r);
            }
            Command::Rcpt { to, .. } => match &self.tx {
                None => self.reply(Reply::new(503, "5.5.1 Error: need MAIL command")),
                Some(t) if t.rcpts.len() >= self.cfg.max_recipients => {
                    self.reply(Reply::new(452, "4.5.3 Error: too many recipients"));
                }
                Some(_) => {
                    self.state = State::Recipient(to.clone());
                    return Next::Event(Event::Recipient(to));
                }
            },
            Command::Data if !self.bdat.is_empty() => {
                self.bdat.clear();
                self.tx = None;
                self.reply(Reply::new(503, "5.5.1 Error: DATA after BDAT in one transaction"));
            }
            Command::Data => match self.tx.take_if(|t| !t.rcpts.is_empty()) {
                Some(tx) => {
                    self.reply(Reply::new(354, "End data with <CR><LF>.<CR><LF>"));
                    self.transfers += 1;
                    let receiver = DataReceiver::new(self.cfg.max_message_bytes);
                    let transfer = DataTransfer { tx, receiver, strict: Scanner::default(), refused: None };
                    self.state = State::Data(Box::new(transfer));
                    return Next::Transfer;
                }
                None if self.tx.is_none() => self.reply(Reply::new(503, "5.5.1 Error: need RCPT command")),
                None => self.reply(Reply::new(554, "5.5.1 Error: no valid recipients")),
            },
            Command::Bdat(chunk) => {
                // RFC 3030: without a size the chunk's end is lost; the session cannot go on.
                let Some((size, last)) = chunk.ok().and_then(|c| Some((usize::try_from(c.size).ok()?, c.last))) else {
                    self.reply(Reply::new(501, "5.5.4 Syntax: BDAT chunk-size [LAST]"));
                    return Next::Event(self.close(Close::BadBdatSize));
                };
                // The chunk follows whatever the verdict, and must be consumed.
                self.transfers += 1;
                self.state = State::Bdat(BdatChunk { size, last, remaining: size, kept_all: true });
                return Next::Transfer;
            }
            Command::Rset => {
                self.tx = None;
                self.bdat.clear();
                self.reply(Reply::new(250, "2.0.0 Ok"));
            }
            Command::Noop => self.reply(Reply::new(250, "2.0.0 Ok")),
            Command::Quit => {
                self.reply(Reply::new(221, "2.0.0 Bye"));
                return Next::Event(self.close(Close::Quit));
            }
            Command::StartTls if !self.cfg.starttls => {
                self.reply(Reply::new(502, "5.5.1 Error: command not implemented"));
            }
            Command::StartTls if self.tls => self.reply(Reply::new(503, "5.5.1 Error: TLS already active")),
            Command::StartTls if self.input.pending() > 0 => {
                // CVE-2011-0411: bytes sent after STARTTLS in the same flight would be read as if
                // they had come through TLS. Refuse and close.
                self.reply(Reply::new(554, "5.5.1 Error: command pipelined after STARTTLS"));
                return Next::Event(self.close(Close::PipelinedAfterStartTls));
            }
            Command::StartTls => {
                self.reply(Reply::new(220, "2.0.0 Ready to start TLS"));
                self.state = State::StartingTls;
                return Next::Event(Event::StartTls);
            }
            Command::Vrfy(_) => {
                self.reply(Reply::new(252, "2.5.2 Cannot VRFY user, but will accept message and attempt delivery"));
            }
            Command::Help => self.reply(Reply::new(214, "2.0.0 See RFC 5321")),
            Command::Auth { .. } | Command::Expn(_) => {
                self.reply(Reply::new(502, "5.5.1 Error: command not implemented"));
            }
            Command::Unknown { .. } => self.reply(Reply::new(500, "5.5.2 Error: command not recognized")),
        }
        Next::Command
    }

    /// EHLO or HELO: a new greeting ends any transaction (RFC 5321 §4.1.4).
    fn greeted(&mut self, name: String) {
        self.last_helo = Some(name.clone());
        self.helo = Some(name);
        self.tx = None;
    }

    fn capabilities(&self) -> Capabilities {
        let mut keywords: Vec<(String, Vec<String>)> = vec![
            ("PIPELINING".into(), vec![]),
            ("SIZE".into(), vec![self.cfg.max_message_bytes.to_string()]),
            ("8BITMIME".into(), vec![]),
            ("ENHANCEDSTATUSCODES".into(), vec![]),
            ("CHUNKING".into(), vec![]),
        ];
        if !self.tls && self.cfg.starttls {
            keywords.push(("STARTTLS".into(), vec![]));
        }
        // RFC 8689 §2: offered only inside TLS, where the client can trust the offer.
        if self.tls {
            keywords.push((REQUIRETLS.into(), vec![]));
        }
        Capabilities { server_name: self.cfg.hostname.clone(), keywords }
    }

    fn mail(&self, params: &[String]) -> Reply {
        if self.helo.is_none() {
            return Reply::new(503, "5.5.1 Error: send HELO/EHLO first");
        }
        if self.tx.is_some() {
            return Reply::new(503, "5.5.1 Error: nested MAIL command");
        }
        if self.cfg.require_tls && !self.tls {
            return Reply::new(530, "5.7.0 Must issue a STARTTLS command first");
        }
        let size = params
            .iter()
            .find_map(|p| p.get(..5).filter(|k| k.eq_ignore_ascii_case("SIZE=")).and(p.get(5..)))
            .and_then(|s| s.parse::<u64>().ok());
        if size.is_some_and(|s| s > self.cfg.max_message_bytes as u64) {
            return Reply::new(552, "5.3.4 Error: message size exceeds fixed limit");
        }
        // Not offered in the clear (RFC 8689 §2), so there an unrecognised parameter (RFC 5321
        // §4.1.1.11): the client must not send the message without TLS.
        if !self.tls && requiretls_param(params) {
            return Reply::new(555, "5.5.4 REQUIRETLS is offered only after STARTTLS");
        }
        Reply::new(250, "2.1.0 Ok")
    }

    /// DATA content: unstuffed up to `<CRLF>.<CRLF>`; the bytes after it are the next commands.
    fn data(&mut self, mut t: Box<DataTransfer>) -> Option<Event> {
        let input = self.input.rest();
        if t.refused.is_none() {
            // Only the well-formed bytes are fed: a terminator after a bare LF or CR must never
            // end the message (SMTP smuggling).
            let bare = t.strict.first_bare(input);
            let good = bare.map_or(input.len(), |(i, _)| i);
            if let DataStatus::Done { consumed } = t.receiver.feed(input.get(..good).unwrap_or_default()) {
                self.input.consume(consumed);
                let DataTransfer { tx, receiver, .. } = *t;
                if receiver.truncated() {
                    self.reply(Reply::new(552, "5.3.4 Error: message size exceeds fixed limit"));
                    return None;
                }
                return Some(self.message(tx, receiver.message));
            }
            // (The bytes before the bare one hold no end: the receiver saw them.)
            if let Some((_, bare)) = bare {
                t.refused = Some((bare, EndOfData::default()));
            }
        }
        let found = t.refused.as_mut().and_then(|(bare, search)| search.found(input).then_some(*bare));
        let all = input.len();
        self.input.consume(all);
        if let Some(bare) = found {
            self.reply(bare.reply(&self.cfg.hostname));
            return Some(self.close(Close::BareNewline(bare)));
        }
        self.state = State::Data(t);
        Some(Event::Read(Wait::Content { transfer: self.transfers }))
    }

    /// A BDAT chunk: exactly `size` bytes, whatever they hold.
    fn bdat(&mut self, mut c: BdatChunk) -> Option<Event> {
        let input = self.input.rest();
        let chunk = input.get(..c.remaining.min(input.len())).unwrap_or_default();
        if self.bdat.len() + chunk.len() <= self.cfg.max_message_bytes {
            self.bdat.extend_from_slice(chunk);
        } else {
            c.kept_all = false;
        }
        c.remaining -= chunk.len();
        let used = chunk.len();
        self.input.consume(used);
        if c.remaining > 0 {
            self.state = State::Bdat(c);
            return Some(Event::Read(Wait::Content { transfer: self.transfers }));
        }
        let r = match &self.tx {
            None => Reply::new(503, "5.5.1 Error: need MAIL command"),
            Some(t) if t.rcpts.is_empty() => Reply::new(554, "5.5.1 Error: no valid recipients"),
            Some(_) if !c.kept_all => {
                self.tx = None;
                Reply::new(552, "5.3.4 Error: message size exceeds fixed limit")
            }
            Some(_) if !c.last => Reply::new(250, format!("2.0.0 {} octets received", c.size)),
            Some(_) => match self.tx.take() {
                Some(tx) => {
                    let content = mem::take(&mut self.bdat);
                    return Some(self.message(tx, content));
                }
                None => Reply::new(503, "5.5.1 Error: need MAIL command"),
            },
        };
        if r.code != 250 || c.last {
            self.bdat.clear();
        }
        self.reply(r);
        None
    }

    fn message(&mut self, tx: Transaction, content: Vec<u8>) -> Event {
        self.state = State::Queueing;
        Event::Message(Message {
            from: tx.from,
            rcpts: tx.rcpts,
            requiretls: tx.requiretls,
            helo: self.helo.clone(),
            content,
        })
    }
}

#[cfg(test)]
mod tests;
