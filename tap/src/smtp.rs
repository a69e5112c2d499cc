//! Passive SMTP dissection of one reassembled TCP session.
//!
//! The client stream is walked command by command and each command is paired with the next
//! server reply, in order, which is also how PIPELINING works (RFC 2920 §3.1: replies come in
//! command order). The reply decides what follows: a `354` to DATA puts the client stream into
//! data mode, a `220` to STARTTLS turns both streams into TLS. A one-sided capture (no server
//! bytes) assumes every command succeeded, as Zeek does.
//!
//! Gaps (bytes the capture lost) are tracked by position in each stream. A message whose
//! content crosses a gap has no sha256 and its headers are read from the part before the gap
//! only; a BDAT chunk that ends inside a gap resumes command parsing after the gap. After any
//! gap the pairing of commands and replies may be off by the lost lines, so the next command
//! is paired with the first reply sent after it (by capture time), as Zeek recovers on replies.

use std::borrow::Cow;

use proto::{BdatChunk, BdatError, Capabilities, Command, DataStatus, Reply, ReplyLine};
use records::{TapSession, TapTransaction};

use crate::message::{read_headers, sha256_hex};
use crate::reassembly::HalfStream;
use crate::unstuff::Unstuffer;

/// Largest message kept in memory for hashing and header parsing; larger ones are counted.
const MAX_MESSAGE: usize = 64 << 20;

/// The reassembled session and what is known about it before dissection.
pub struct SessionInput<'a> {
    pub session: TapSession,
    pub client: &'a HalfStream,
    pub server: &'a HalfStream,
    /// Index into `client.data` where SMTP starts (after a tunnel prefix such as HTTP CONNECT).
    pub client_start: usize,
    /// Index into `server.data` where SMTP starts.
    pub server_start: usize,
    /// Hand each whole message back in [`SessionOutput::messages`] (otherwise `None` there).
    pub keep_messages: bool,
}

pub struct SessionOutput {
    pub session: TapSession,
    pub transactions: Vec<TapTransaction>,
    /// For each transaction, its dot-unstuffed message when it was seen whole (the bytes whose
    /// sha256 the transaction reports) and [`SessionInput::keep_messages`] asked for it, else
    /// `None`.
    pub messages: Vec<Option<Vec<u8>>>,
    /// Where the streams became TLS (indices into the client's and the server's `data`): from
    /// there on, only their TLS records were read.
    pub tls_at: Option<(usize, usize)>,
}

/// A cursor over one direction's reassembled bytes, aware of where the gaps are.
struct Cursor<'a> {
    stream: &'a HalfStream,
    pos: usize,
    /// Each gap as (index into `data` of the first byte after it, its length). Gaps occupy no
    /// bytes in `data`.
    gaps: Vec<(usize, u64)>,
    /// Bytes lost in `gaps[..i]`, for each `i` (one more entry than `gaps`).
    lost_before: Vec<u64>,
    /// Gaps already passed over (a prefix of `gaps`).
    gaps_seen: usize,
    /// Index into `data` where the session's SMTP starts.
    start: usize,
}

impl<'a> Cursor<'a> {
    fn new(stream: &'a HalfStream, start: usize) -> Self {
        let mut before = 0u64;
        let gaps = stream
            .gaps
            .iter()
            .map(|g| {
                let idx = g.at.saturating_sub(before);
                before += g.len;
                (usize::try_from(idx).unwrap_or(usize::MAX), g.len)
            })
            .collect::<Vec<_>>();
        let pos = start.min(stream.data.len());
        let gaps_seen = gaps.iter().filter(|(i, _)| *i < pos).count();
        let mut lost_before = vec![0u64];
        for (_, len) in &gaps {
            lost_before.push(lost_before.last().copied().unwrap_or(0).saturating_add(*len));
        }
        Self { stream, pos, gaps, lost_before, gaps_seen, start: pos }
    }

    fn data(&self) -> &'a [u8] {
        &self.stream.data
    }

    fn rest(&self) -> &'a [u8] {
        self.data().get(self.pos..).unwrap_or(&[])
    }

    /// The rest up to the next gap not yet passed.
    fn rest_until_gap(&self) -> &'a [u8] {
        let end = self.next_gap().map_or(self.data().len(), |(i, _)| i).max(self.pos);
        self.data().get(self.pos..end).unwrap_or(&[])
    }

    fn next_gap(&self) -> Option<(usize, u64)> {
        self.gaps.get(self.gaps_seen).copied()
    }

    /// Moves to `to`, passing over the gaps before it; returns how many were passed.
    fn advance_to(&mut self, to: usize) -> usize {
        let to = to.min(self.data().len());
        let mut passed = 0;
        while let Some((i, _)) = self.next_gap()
            && i < to
        {
            self.gaps_seen += 1;
            passed += 1;
        }
        self.pos = self.pos.max(to);
        passed
    }

    /// Stream offset of the byte at data index `idx`.
    fn offset(&self, idx: usize) -> u64 {
        let n = self.gaps.partition_point(|(i, _)| *i <= idx);
        idx as u64 + self.lost_before.get(n).copied().unwrap_or(0)
    }

    /// Capture time of the byte at data index `idx`.
    fn time_at(&self, idx: usize) -> f64 {
        self.stream.time_at(self.offset(idx))
    }

    /// The next complete line, without its terminator, and whether a gap lies inside it (then
    /// its bytes are not one line of the peer's and must not be trusted).
    fn line(&mut self) -> Option<Line<'a>> {
        let rest = self.rest();
        let end = rest.iter().position(|&b| b == b'\n')?;
        let mut line = rest.get(..end)?;
        let start = self.pos;
        let broken = self.next_gap().is_some_and(|(i, _)| i > start && i <= start + end);
        let after_gap = self.advance_to(start + end + 1) > 0;
        // Any number of CRs before the LF end the line (Zeek accepts `\r*\n` too).
        while let Some(l) = line.strip_suffix(b"\r") {
            line = l;
        }
        Some(Line { bytes: line, start, broken, after_gap })
    }

    /// The next reply, skipping lines that are not replies. With `resync`, or once a gap is
    /// passed on the way, replies whose first line was captured before `cmd_ts` are skipped too:
    /// they answer commands the capture lost.
    fn reply(&mut self, resync: bool, cmd_ts: f64) -> Option<Reply> {
        let mut partial: Option<(Reply, f64)> = None;
        let mut resync = resync;
        loop {
            let line = self.line()?;
            resync |= line.after_gap || line.broken;
            if line.broken {
                partial = None;
                continue;
            }
            let Some(rl) = ReplyLine::parse(line.bytes) else { continue };
            let body = String::from_utf8_lossy(rl.text).into_owned();
            let (r, _) =
                partial.get_or_insert_with(|| (Reply { code: rl.code, lines: Vec::new() }, self.time_at(line.start)));
            r.lines.push(body);
            if rl.last {
                let (r, ts) = partial.take()?;
                if resync && ts < cmd_ts {
                    continue;
                }
                return Some(r);
            }
        }
    }
}

impl Cursor<'_> {
    /// Where the server turned to TLS after STARTTLS, searched from the start of its SMTP: the
    /// first TLS handshake record right after the last line of a 220 reply, with no gap in that
    /// line. Moves the cursor to the record and returns the reply (its last line: what the
    /// relay's 220 says is all on it in practice). A stream read as TLS while reassembled ends
    /// where its TLS started.
    fn tls_turn(&mut self) -> Option<Reply> {
        let data = self.data();
        let start = self.start;
        let mut at = None;
        let mut from = start;
        while let Some(i) = memchr::memmem::find(data.get(from..)?, b"\n\x16\x03").map(|i| from + i + 1) {
            if self.turn_reply(i).is_some() {
                at = Some(i);
                break;
            }
            from = i;
        }
        if at.is_none() && self.stream.tls_skipped_at() == Some(data.len()) && self.turn_reply(data.len()).is_some() {
            at = Some(data.len());
        }
        let at = at?;
        let reply = self.turn_reply(at)?;
        self.pos = at;
        self.gaps_seen = self.gaps.iter().filter(|(i, _)| *i < at).count();
        Some(reply)
    }

    /// Moves to the first TLS record that starts right after a line end, before any gap (or to
    /// where the stream was read as TLS as it arrived, or stays at a gap right here); false,
    /// without moving, when there is none.
    fn skip_to_tls(&mut self) -> bool {
        let rest = self.rest_until_gap();
        if rest.is_empty() && self.next_gap().is_some() {
            // What came right after the STARTTLS line was lost: TLS starts in the gap.
            return true;
        }
        let at = match memchr::memmem::find(rest, b"\n\x16\x03") {
            Some(i) => self.pos + i + 1,
            None if rest.ends_with(b"\n") && self.stream.tls_skipped_at() == Some(self.pos + rest.len()) => {
                self.pos + rest.len()
            }
            None => return false,
        };
        self.advance_to(at);
        true
    }

    /// The reply whose last line ends right before data index `at`, if it is a 220 and no gap
    /// lies inside that line.
    fn turn_reply(&self, at: usize) -> Option<Reply> {
        let data = self.data();
        let before = data.get(self.start..at)?.strip_suffix(b"\n")?;
        let line_start = before.iter().rposition(|&b| b == b'\n').map_or(self.start, |i| self.start + i + 1);
        if self.gaps.iter().any(|(i, _)| *i > line_start && *i < at) {
            return None;
        }
        let mut line = data.get(line_start..at - 1)?;
        while let Some(l) = line.strip_suffix(b"\r") {
            line = l;
        }
        let r = ReplyLine::parse(line).filter(|r| r.code == 220 && r.last)?;
        Some(Reply { code: 220, lines: vec![String::from_utf8_lossy(r.text).into_owned()] })
    }
}

struct Line<'a> {
    bytes: &'a [u8],
    /// Index into `data` of its first byte.
    start: usize,
    /// A gap lies between its first byte and its terminator.
    broken: bool,
    /// A gap was passed over on the way to (or inside) it.
    after_gap: bool,
}

/// Transaction being assembled.
struct Open<'a> {
    tx: TapTransaction,
    /// Message content as far as it is known to be contiguous: borrowed from the stream when the
    /// body needed no unstuffing (the common case), else unstuffed into a copy.
    body: Cow<'a, [u8]>,
    /// Content was lost (gap, cut capture, size limit): no sha256, and nothing more is appended
    /// to `body`, whose headers stay those read before the loss.
    body_cut: bool,
    has_body: bool,
}

struct Dissector<'a> {
    base: TapTransaction,
    client: Cursor<'a>,
    server: Cursor<'a>,
    one_sided: bool,
    session: TapSession,
    open: Option<Open<'a>>,
    keep_messages: bool,
    done: Vec<TapTransaction>,
    /// Aligned with `done`: the whole message of each, when there is one.
    messages: Vec<Option<Vec<u8>>>,
    /// Bytes of each message read in the clear (unstuffed; as far as it was seen).
    sizes: Vec<u64>,
    depth: u32,
    /// A gap was passed in either direction: pair the next command with a reply sent after it.
    resync: bool,
    /// Content crossed a gap: the command after it starts the resynchronisation.
    resync_next: bool,
    /// Capture time of the command being handled.
    cmd_ts: f64,
    tls_at: Option<(usize, usize)>,
    /// The server's stream has no 220 followed by TLS: searched once (hostile client bytes that
    /// look like TLS at many line starts must not make the search quadratic).
    no_server_turn: bool,
}

pub fn dissect_session(input: SessionInput<'_>) -> SessionOutput {
    let s = &input.session;
    let base = TapTransaction {
        uid: s.uid.clone(),
        orig_h: s.orig_h.clone(),
        orig_p: s.orig_p,
        resp_h: s.resp_h.clone(),
        resp_p: s.resp_p,
        ..Default::default()
    };
    let server = Cursor::new(input.server, input.server_start);
    let one_sided = server.rest().is_empty();
    let mut d = Dissector {
        base,
        client: Cursor::new(input.client, input.client_start),
        server,
        one_sided,
        session: input.session,
        open: None,
        keep_messages: input.keep_messages,
        done: Vec::new(),
        messages: Vec::new(),
        sizes: Vec::new(),
        depth: 0,
        resync: false,
        resync_next: false,
        cmd_ts: 0.0,
        tls_at: None,
        no_server_turn: false,
    };
    d.run();
    d.finish_tx();
    d.session.transactions = d.done.iter().filter(|t| !t.tls).count() as u64;
    // Messages read in the clear count as they are; those inside TLS were estimated from its
    // records (`tls::fill_session`) and come after.
    let tls = std::mem::take(&mut d.session.est_message_bytes);
    let in_tls = if d.session.starttls_used { d.session.est_messages } else { Some(0) };
    d.session.est_messages = in_tls.map(|n| n + d.sizes.len() as u64);
    d.session.est_message_bytes = std::mem::take(&mut d.sizes);
    d.session.est_message_bytes.extend(tls);
    SessionOutput { session: d.session, transactions: d.done, messages: d.messages, tls_at: d.tls_at }
}

impl<'a> Dissector<'a> {
    fn run(&mut self) {
        if self.client.stream.truncated() || self.server.stream.truncated() {
            self.note("stream_truncated_at_limit");
        }
        if !self.one_sided {
            // The greeting: the first reply of a session seen from its SYN. In one the capture
            // joined later, only a 220 is taken for it; other replies answer commands sent
            // before the capture began, and the first command's reply skips them (resync).
            let rest = self.server.rest();
            let starts_with_reply = rest.first().is_some_and(u8::is_ascii_digit);
            let mid_stream = self.session.notes.iter().any(|n| n == "mid_stream_start");
            let greeting = starts_with_reply && (!mid_stream || ReplyLine::parse(rest).is_some_and(|r| r.code == 220));
            if greeting && let Some(g) = self.reply() {
                self.session.server_name =
                    g.lines.first().and_then(|l| l.split_whitespace().next()).map(str::to_string);
            } else if mid_stream {
                self.resync = true;
            }
        }
        loop {
            if !self.one_sided
                && self.client_turned_tls()
                && let Some(turn) = self.server_tls_turn()
            {
                // TLS where a command should be, and the server's 220 right before its own
                // first record: the STARTTLS line was not seen whole (the capture joined after
                // it, or lost part of it), but the session turned to TLS there.
                self.note("starttls_not_seen");
                self.session.starttls_reply = Some(turn.code);
                self.finish_tx();
                self.tls();
                return;
            }
            let Some(line) = self.client.line() else { break };
            self.cmd_ts = self.client.time_at(line.start);
            if line.after_gap || std::mem::take(&mut self.resync_next) {
                self.resync = true;
            }
            if line.broken {
                // Part of this line was lost: it is not a command that can be trusted.
                self.note("gap_in_commands");
                continue;
            }
            match Command::parse(line.bytes) {
                Command::Ehlo(name) | Command::Helo(name) => {
                    self.session.helo = Some(name);
                    if let Some(r) = self.reply()
                        && r.code == 250
                    {
                        let caps = Capabilities::from_reply(&r);
                        self.session.starttls_offered |= caps.starttls();
                        if self.session.server_name.is_none() && !caps.server_name.is_empty() {
                            self.session.server_name = Some(caps.server_name);
                        }
                    }
                }
                Command::Mail { from, .. } => {
                    self.finish_tx();
                    let tx = self.tx_mut();
                    tx.mailfrom = Some(from);
                    self.reply();
                }
                Command::Rcpt { to, .. } => {
                    self.tx_mut().rcptto.push(to);
                    self.reply();
                }
                Command::Data => {
                    self.tx_mut();
                    let r = self.reply();
                    if r.as_ref().is_none_or(|r| r.code == 354) {
                        self.data();
                        self.reply();
                        self.finish_tx();
                    }
                }
                Command::Bdat(chunk) => self.bdat(chunk),
                Command::Rset | Command::Quit => {
                    self.reply();
                    self.finish_tx();
                }
                Command::StartTls => {
                    self.session.starttls_command = true;
                    let mut r = self.reply();
                    let looks_tls = self.client.rest().first() == Some(&0x16);
                    if r.as_ref().is_none_or(|r| r.code != 220)
                        && self.client_turned_tls()
                        && let Some(turn) = self.server_tls_turn()
                    {
                        // Replies paired by order were off (a reply lost in a gap, a capture
                        // that began mid-line, a server answering a pipelined group oddly), but
                        // both sides turned to TLS: the server's turn is its 220 right before
                        // its first TLS record, which is what Zeek's analyzer acts on too.
                        self.note("starttls_reply_found_by_tls");
                        self.set_last_reply(&turn);
                        r = Some(turn);
                    }
                    self.session.starttls_reply = r.as_ref().map(|r| r.code);
                    if !r.as_ref().map(|r| r.code == 220).unwrap_or(looks_tls) {
                        continue;
                    }
                    if !looks_tls && !self.client.rest().is_empty() {
                        let lost_here = self.client.rest_until_gap().is_empty();
                        if !(self.server_turned_tls() && self.client.skip_to_tls()) {
                            // The client went on in the clear after the 220 (a stripped or
                            // broken upgrade): keep reading what it says.
                            self.note("plaintext_after_starttls");
                            continue;
                        }
                        if !lost_here {
                            // Lines pipelined behind STARTTLS, then TLS from both sides: the
                            // upgrade happened, and the lines (RFC 3207 §5 forbids them; an
                            // injection, CVE-2011-0411) are left unread as commands.
                            self.note("plaintext_after_starttls");
                        }
                    }
                    let had_tx = !self.done.is_empty() || self.open.is_some();
                    self.finish_tx();
                    self.tls();
                    if self.session.starttls_used && !had_tx {
                        self.tls_row(r.as_ref());
                    }
                    return;
                }
                Command::Auth { mechanism, initial } => {
                    // Challenge/response lines are not commands. Only the user name is kept, for
                    // the mechanisms that send it readably; never a password, digest or token.
                    // A bearer token (XOAUTH2, OAUTHBEARER) in the clear is a credential too.
                    let readable = matches!(mechanism.as_str(), "PLAIN" | "LOGIN" | "XOAUTH2" | "OAUTHBEARER");
                    self.session.auth_cleartext |= readable;
                    let mut user = initial.as_deref().and_then(|i| sasl_user(&mechanism, i, 1));
                    let mut responses = 0;
                    while let Some(r) = self.reply() {
                        if r.code != 334 {
                            break;
                        }
                        let Some(line) = self.client.line() else { break };
                        responses += 1;
                        if user.is_none() {
                            // With an initial response, the next one is no longer the first.
                            let n = responses + usize::from(initial.is_some());
                            user = sasl_user(&mechanism, String::from_utf8_lossy(line.bytes).trim(), n);
                        }
                    }
                    self.session.auth_mechanism = Some(mechanism);
                    self.session.auth_user = user;
                }
                _ => {
                    self.reply();
                }
            }
        }
    }

    /// The reply to the current command. After a gap, replies sent before the command are
    /// skipped: they answer lines the capture lost.
    fn reply(&mut self) -> Option<Reply> {
        if self.one_sided {
            return None;
        }
        let resync = std::mem::take(&mut self.resync);
        let r = self.server.reply(resync, self.cmd_ts)?;
        // Zeek's last_reply: the last reply seen while the transaction is open, whatever the
        // command (an unknown line inside a refused DATA gets its 500 too).
        self.set_last_reply(&r);
        Some(r)
    }

    /// The client's bytes after its STARTTLS line are a TLS record (or were read as TLS as they
    /// arrived, from exactly there).
    fn client_turned_tls(&self) -> bool {
        let c = &self.client;
        c.rest_until_gap().starts_with(&[0x16, 0x03])
            || (c.rest().is_empty() && c.stream.tls_skipped_at() == Some(c.pos))
    }

    /// The server's bytes after its 220 to STARTTLS are a TLS record (or were read as TLS as
    /// they arrived, from exactly there).
    fn server_turned_tls(&self) -> bool {
        let s = &self.server;
        s.rest_until_gap().starts_with(&[0x16, 0x03])
            || (s.rest().is_empty() && s.stream.tls_skipped_at() == Some(s.pos))
    }

    /// [`Cursor::tls_turn`] of the server, remembered when there is none.
    fn server_tls_turn(&mut self) -> Option<Reply> {
        if self.no_server_turn {
            return None;
        }
        let turn = self.server.tls_turn();
        self.no_server_turn = turn.is_none();
        turn
    }

    fn set_last_reply(&mut self, r: &Reply) {
        if let Some(o) = self.open.as_mut() {
            o.tx.last_reply = Some(r.summary());
        }
    }

    fn note(&mut self, what: &str) {
        if !self.session.notes.iter().any(|n| n == what) {
            self.session.notes.push(what.to_string());
        }
    }

    fn new_tx(&mut self) -> TapTransaction {
        self.depth += 1;
        let mut tx = self.base.clone();
        tx.ts = self.cmd_ts;
        tx.trans_depth = self.depth;
        tx.helo = self.session.helo.clone();
        tx
    }

    fn tx_mut(&mut self) -> &mut TapTransaction {
        if self.open.is_none() {
            let tx = self.new_tx();
            self.open = Some(Open { tx, body: Cow::Borrowed(&[]), body_cut: false, has_body: false });
        }
        match self.open.as_mut() {
            Some(o) => &mut o.tx,
            None => unreachable!("just inserted"),
        }
    }

    /// Content of the open transaction: appended while the content is known to be whole.
    fn add_body(&mut self, bytes: &[u8], cut_after: bool, counted: u64) {
        if let Some(o) = self.open.as_mut() {
            o.has_body = true;
            if !o.body_cut {
                if o.body.len() + bytes.len() <= MAX_MESSAGE {
                    o.body.to_mut().extend_from_slice(bytes);
                } else {
                    o.body_cut = true;
                }
            }
            o.body_cut |= cut_after;
            o.tx.message_bytes = Some(o.tx.message_bytes.unwrap_or(0) + counted);
        }
    }

    /// [`Self::add_body`] with bytes the transaction can take over (no copy when its body is
    /// still empty, the usual case of one DATA per transaction).
    fn add_body_whole(&mut self, bytes: Cow<'a, [u8]>, cut_after: bool, counted: u64) {
        match self.open.as_mut() {
            Some(o) if o.body.is_empty() && !o.body_cut && bytes.len() <= MAX_MESSAGE => {
                o.has_body = true;
                o.body = bytes;
                o.body_cut |= cut_after;
                o.tx.message_bytes = Some(o.tx.message_bytes.unwrap_or(0) + counted);
            }
            _ => self.add_body(&bytes, cut_after, counted),
        }
    }

    fn data(&mut self) {
        // A body without a stuffed dot, whose end is before any gap, is the stream's own bytes.
        let piece = self.client.rest_until_gap();
        if let Some((len, consumed)) = crate::unstuff::plain_body(piece)
            && len <= MAX_MESSAGE
            && let Some(body) = piece.get(..len)
        {
            self.client.advance_to(self.client.pos + consumed);
            self.add_body_whole(Cow::Borrowed(body), false, len as u64);
            return;
        }
        let mut rx = Unstuffer::new(MAX_MESSAGE);
        // The body is at most the rest of the stream: one allocation instead of a doubling series.
        rx.message.reserve(self.client.rest().len().min(MAX_MESSAGE));
        // Fed piece by piece between gaps: the content before the first gap is the part whose
        // headers can be trusted.
        let mut before_gap: Option<usize> = None;
        let mut complete = false;
        loop {
            let piece = self.client.rest_until_gap();
            if let DataStatus::Done { consumed } = rx.feed(piece) {
                self.client.advance_to(self.client.pos + consumed);
                complete = true;
                break;
            }
            self.client.advance_to(self.client.pos + piece.len());
            match self.client.next_gap() {
                Some((i, _)) if i == self.client.pos && self.client.pos < self.client.data().len() => {
                    before_gap.get_or_insert(rx.message.len());
                    self.client.gaps_seen += 1;
                    self.resync_next = true;
                }
                _ => break,
            }
        }
        if before_gap.is_some() {
            self.note("gap_in_data");
        }
        if !complete {
            self.note("data_incomplete");
        }
        let cut = before_gap.is_some() || !complete || rx.truncated();
        let keep = before_gap.unwrap_or(rx.message.len()).min(rx.message.len());
        let counted = rx.message_bytes;
        let mut message = rx.message;
        message.truncate(keep);
        self.add_body_whole(Cow::Owned(message), cut, counted);
    }

    fn bdat(&mut self, chunk: Result<BdatChunk, BdatError>) {
        let BdatChunk { size, last } = match chunk {
            Ok(c) => c,
            Err(_) => {
                // Not a chunk: the server answers it as a bad command and reads no data.
                self.note("smtp_invalid_bdat_command");
                self.reply();
                return;
            }
        };
        if size > i64::MAX as u64 {
            // Zeek will not deliver such a chunk either; what follows is read as commands.
            self.note("smtp_huge_bdat_chunk");
            self.reply();
            return;
        }
        self.tx_mut();
        self.bdat_chunk(size);
        self.reply();
        if last {
            self.finish_tx();
        }
    }

    /// Takes `size` bytes of chunk, gaps included: a chunk that ends inside a gap resumes the
    /// command stream after the gap.
    fn bdat_chunk(&mut self, size: u64) {
        let mut remaining = size;
        let mut lost = false;
        while remaining > 0 {
            match self.client.next_gap() {
                Some((i, len)) if i == self.client.pos && i < self.client.data().len() => {
                    self.client.gaps_seen += 1;
                    self.resync_next = true;
                    lost = true;
                    if let Some(o) = self.open.as_mut() {
                        o.body_cut = true;
                    }
                    remaining = remaining.saturating_sub(len);
                }
                _ => {
                    let piece = self.client.rest_until_gap();
                    if piece.is_empty() {
                        break;
                    }
                    // The chunk's rest, or the piece when the chunk goes on past it.
                    let body = piece.get(..usize::try_from(remaining).unwrap_or(usize::MAX)).unwrap_or(piece);
                    let take = body.len();
                    self.add_body(body, false, take as u64);
                    self.client.advance_to(self.client.pos + take);
                    remaining -= take as u64;
                }
            }
        }
        if lost {
            self.note("gap_in_data");
        }
        if remaining > 0 {
            self.note("bdat_chunk_incomplete");
        }
        let cut = lost || remaining > 0;
        if let Some(o) = self.open.as_mut() {
            o.has_body = true;
            o.body_cut |= cut;
            o.tx.message_bytes.get_or_insert(0);
        }
    }

    fn finish_tx(&mut self) {
        let Some(mut o) = self.open.take() else { return };
        let mut whole = None;
        if o.has_body {
            self.sizes.push(o.body.len() as u64);
            read_headers(&o.body, &mut o.tx);
            if !o.body_cut {
                o.tx.sha256 = Some(sha256_hex(&o.body));
                whole = self.keep_messages.then(|| o.body.into_owned());
            }
        }
        let mut path = vec![o.tx.resp_h.clone(), o.tx.orig_h.clone()];
        path.append(&mut o.tx.path);
        o.tx.path = path;
        self.done.push(o.tx);
        self.messages.push(whole);
    }

    /// Zeek logs a session that went into TLS before any mail transaction as one row with
    /// `tls` set: the helo and the reply to STARTTLS are all there is to see.
    fn tls_row(&mut self, reply: Option<&Reply>) {
        let mut tx = self.new_tx();
        tx.tls = true;
        tx.last_reply = reply.map(Reply::summary);
        tx.path = vec![tx.resp_h.clone(), tx.orig_h.clone()];
        self.done.push(tx);
        self.messages.push(None);
    }

    fn tls(&mut self) {
        self.tls_at = Some((self.client.pos, self.server.pos));
        // Records are walked up to the first gap: past it, record boundaries are lost. A stream
        // the tap read as TLS while reassembling it has the walk done already.
        let walk = |c: &Cursor<'_>| {
            c.stream
                .tls_summary(c.pos)
                .unwrap_or_else(|| crate::tls::walk_timed(c.rest_until_gap(), |i| c.time_at(c.pos + i)))
        };
        let c = walk(&self.client);
        let s = walk(&self.server);
        if self.client.next_gap().is_some() || self.server.next_gap().is_some() {
            self.note("gap_in_tls");
        }
        self.session.starttls_used = !c.not_tls && (c.records > 0 || s.records > 0);
        let alerts = c.alerts + s.alerts;
        crate::tls::fill_session(c, s, &mut self.session);
        if alerts > 0 {
            self.note("tls_alert");
        }
    }
}

/// The user name carried by the `n`-th client response (1 = the first, or the initial response)
/// of a SASL exchange, for the mechanisms that send it readably. Only the name is returned:
/// the password (PLAIN, LOGIN), the HMAC digest (CRAM-MD5) and the bearer token (XOAUTH2,
/// OAUTHBEARER) are never kept.
fn sasl_user(mechanism: &str, b64: &str, n: usize) -> Option<String> {
    match (mechanism, n) {
        ("PLAIN", 1) => plain_user(b64),
        // LOGIN: the first response is the user name, the second the password.
        ("LOGIN", 1) => decode_b64_text(b64),
        ("CRAM-MD5", 1) => cram_md5_user(b64),
        ("XOAUTH2", 1) => xoauth2_user(b64),
        ("OAUTHBEARER", 1) => oauthbearer_user(b64),
        _ => None,
    }
}

/// The authentication identity of a SASL PLAIN response (`authzid NUL authcid NUL password`).
fn plain_user(b64: &str) -> Option<String> {
    let raw = decode_b64(b64)?;
    let mut parts = raw.split(|&b| b == 0);
    let authzid = parts.next()?;
    let authcid = parts.next()?;
    let name = if authcid.is_empty() { authzid } else { authcid };
    String::from_utf8(name.to_vec()).ok().filter(|s| !s.is_empty())
}

/// The user of a CRAM-MD5 response (RFC 2195: `user SP hex-digest`); the name may hold spaces,
/// the digest is the last word.
fn cram_md5_user(b64: &str) -> Option<String> {
    let text = decode_b64_text(b64)?;
    let (user, digest) = text.rsplit_once(' ')?;
    let is_digest = digest.len() == 32 && digest.bytes().all(|b| b.is_ascii_hexdigit());
    (is_digest && !user.is_empty()).then(|| user.to_string())
}

/// The user of an XOAUTH2 initial response (`user=NAME ^A auth=Bearer TOKEN ^A ^A`, Google's
/// and Microsoft's SASL XOAUTH2).
fn xoauth2_user(b64: &str) -> Option<String> {
    let raw = decode_b64(b64)?;
    let field = raw.split(|&b| b == 1).find_map(|f| f.strip_prefix(b"user="))?;
    String::from_utf8(field.to_vec()).ok().filter(|s| !s.is_empty())
}

/// The authorization identity of an OAUTHBEARER initial response (RFC 7628: a GS2 header
/// `n,a=NAME,` then `^A`-separated key=value pairs with the token); `=2C` and `=3D` escape
/// `,` and `=` in the name (RFC 5801).
fn oauthbearer_user(b64: &str) -> Option<String> {
    let raw = decode_b64(b64)?;
    let header = raw.split(|&b| b == 1).next()?;
    let name = header.split(|&b| b == b',').find_map(|f| f.strip_prefix(b"a="))?;
    let name = String::from_utf8(name.to_vec()).ok()?.replace("=2C", ",").replace("=3D", "=");
    (!name.is_empty()).then_some(name)
}

fn decode_b64_text(b64: &str) -> Option<String> {
    decode_b64(b64).and_then(|v| String::from_utf8(v).ok()).filter(|s| !s.is_empty())
}

/// Standard base64 (RFC 4648), padding optional; `None` on any other byte.
fn decode_b64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod auth_tests {
    use super::*;

    #[test]
    fn sasl_user_names() {
        // "\0alice\0secret" and "bob"
        assert_eq!(plain_user("AGFsaWNlAHNlY3JldA==").as_deref(), Some("alice"));
        assert_eq!(decode_b64_text("Ym9i").as_deref(), Some("bob"));
        assert_eq!(decode_b64("not base64!"), None);
    }

    fn b64(raw: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for c in raw.chunks(3) {
            let n = c.iter().enumerate().fold(0u32, |n, (i, &b)| n | ((b as u32) << (16 - 8 * i)));
            for i in 0..=c.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        while !out.len().is_multiple_of(4) {
            out.push('=');
        }
        out
    }

    #[test]
    fn cram_md5_gives_the_user_not_the_digest() {
        let r = b64(b"tim b913a602c7eda7a495b4e6e7334d3890");
        assert_eq!(sasl_user("CRAM-MD5", &r, 1).as_deref(), Some("tim"));
        let spaced = b64(b"Tim Smith b913a602c7eda7a495b4e6e7334d3890");
        assert_eq!(sasl_user("CRAM-MD5", &spaced, 1).as_deref(), Some("Tim Smith"));
        // Not a response of the mechanism's shape (no digest): nothing, rather than a guess.
        assert_eq!(sasl_user("CRAM-MD5", &b64(b"tim secret"), 1), None);
        assert_eq!(sasl_user("CRAM-MD5", &r, 2), None);
    }

    #[test]
    fn xoauth2_and_oauthbearer_give_the_user_not_the_token() {
        let x = b64(b"user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01");
        assert_eq!(sasl_user("XOAUTH2", &x, 1).as_deref(), Some("someuser@example.com"));
        assert_eq!(sasl_user("XOAUTH2", &b64(b"auth=Bearer t\x01\x01"), 1), None);
        let o = b64(
            b"n,a=user=2Cx@example.com,\x01host=server.example.com\x01port=143\x01auth=Bearer vF9dft4qmTc2\x01\x01",
        );
        assert_eq!(sasl_user("OAUTHBEARER", &o, 1).as_deref(), Some("user,x@example.com"));
        assert_eq!(sasl_user("OAUTHBEARER", &b64(b"n,,\x01auth=Bearer t\x01\x01"), 1), None);
        // The error exchange: the client's empty second response.
        assert_eq!(sasl_user("XOAUTH2", "", 2), None);
    }
}
