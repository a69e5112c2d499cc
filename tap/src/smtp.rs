//! Passive SMTP dissection of one reassembled TCP session.
//!
//! The client stream is walked command by command and each command is paired with the next
//! server reply, in order, which is also how PIPELINING works (RFC 2920 §3.1: replies come in
//! command order). The reply decides what follows: a `354` to DATA puts the client stream into
//! data mode, a `220` to STARTTLS turns both streams into TLS. A one-sided capture (no server
//! bytes) assumes every command succeeded, as Zeek does.

use proto::{Capabilities, Command, DataReceiver, DataStatus, Reply};
use records::{TapSession, TapTransaction};

use crate::message::{read_headers, sha256_hex};
use crate::reassembly::HalfStream;

/// Largest message kept in memory for hashing and header parsing; larger ones are counted.
const MAX_MESSAGE: usize = 256 << 20;

/// The reassembled session and what is known about it before dissection.
pub struct SessionInput<'a> {
    pub session: TapSession,
    pub client: &'a HalfStream,
    pub server: &'a HalfStream,
}

pub struct SessionOutput {
    pub session: TapSession,
    pub transactions: Vec<TapTransaction>,
}

/// A cursor over one direction's reassembled bytes.
struct Cursor<'a> {
    stream: &'a HalfStream,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a [u8] {
        &self.stream.data[self.pos.min(self.stream.data.len())..]
    }

    /// The next complete line, without its terminator.
    fn line(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest();
        let end = rest.iter().position(|&b| b == b'\n')?;
        self.pos += end + 1;
        let mut line = &rest[..end];
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        Some(line)
    }

    /// The next reply, skipping lines that are not replies.
    fn reply(&mut self) -> Option<Reply> {
        let mut partial: Option<Reply> = None;
        loop {
            let line = self.line()?;
            let text = String::from_utf8_lossy(line);
            let Some(code) = text.get(..3).and_then(|c| c.parse::<u16>().ok()) else { continue };
            let body = text.get(4..).unwrap_or("").to_string();
            let r = partial.get_or_insert_with(|| Reply { code, lines: Vec::new() });
            r.lines.push(body);
            if line.get(3) != Some(&b'-') {
                return partial;
            }
        }
    }

    fn time(&self) -> f64 {
        self.stream.time_at(self.pos as u64)
    }
}

/// Transaction being assembled.
struct Open {
    tx: TapTransaction,
    body: Vec<u8>,
    body_complete: bool,
    has_body: bool,
}

struct Dissector<'a> {
    base: TapTransaction,
    client: Cursor<'a>,
    server: Cursor<'a>,
    one_sided: bool,
    session: TapSession,
    open: Option<Open>,
    done: Vec<TapTransaction>,
    depth: u32,
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
    let mut d = Dissector {
        base,
        client: Cursor { stream: input.client, pos: 0 },
        server: Cursor { stream: input.server, pos: 0 },
        one_sided: input.server.data.is_empty(),
        session: input.session,
        open: None,
        done: Vec::new(),
        depth: 0,
    };
    d.run();
    d.finish_tx();
    d.session.transactions = d.done.len() as u64;
    SessionOutput { session: d.session, transactions: d.done }
}

impl Dissector<'_> {
    fn run(&mut self) {
        if self.client.stream.truncated() || self.server.stream.truncated() {
            self.note("stream_truncated_at_limit");
        }
        if !self.one_sided {
            // The greeting, unless the capture started mid-session.
            let starts_with_reply = self.server.rest().first().is_some_and(u8::is_ascii_digit);
            if starts_with_reply && let Some(g) = self.server.reply() {
                self.session.server_name =
                    g.lines.first().and_then(|l| l.split_whitespace().next()).map(str::to_string);
            }
        }
        while let Some(line) = self.client.line() {
            let cmd_ts = self.client.time();
            match Command::parse(line) {
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
                    let tx = self.tx_mut(cmd_ts);
                    tx.mailfrom = Some(from);
                    self.reply_to_tx();
                }
                Command::Rcpt { to, .. } => {
                    self.tx_mut(cmd_ts).rcptto.push(to);
                    self.reply_to_tx();
                }
                Command::Data => {
                    self.tx_mut(cmd_ts);
                    let r = self.reply();
                    if let Some(r) = &r {
                        self.set_last_reply(r);
                    }
                    if r.as_ref().is_none_or(|r| r.code == 354) {
                        self.data();
                        self.reply_to_tx();
                        self.finish_tx();
                    }
                }
                Command::Bdat { size, last } => {
                    self.tx_mut(cmd_ts);
                    let Some(size) = size.and_then(|s| usize::try_from(s).ok()) else {
                        self.note("bdat_bad_chunk_size");
                        return;
                    };
                    self.bdat_chunk(size);
                    self.reply_to_tx();
                    if last {
                        self.finish_tx();
                    }
                }
                Command::Rset | Command::Quit => {
                    self.reply();
                    self.finish_tx();
                }
                Command::StartTls => {
                    self.session.starttls_command = true;
                    let r = self.reply();
                    self.session.starttls_reply = r.as_ref().map(|r| r.code);
                    let looks_tls = self.client.rest().first() == Some(&0x16);
                    if r.as_ref().map(|r| r.code == 220).unwrap_or(looks_tls) {
                        self.finish_tx();
                        self.tls();
                        return;
                    }
                }
                Command::Auth { initial, .. } => {
                    // Challenge/response lines are not commands; never record them (credentials).
                    let _ = initial;
                    while let Some(r) = self.reply() {
                        if r.code != 334 || self.client.line().is_none() {
                            break;
                        }
                    }
                }
                _ => {
                    self.reply();
                }
            }
        }
    }

    fn reply(&mut self) -> Option<Reply> {
        if self.one_sided { None } else { self.server.reply() }
    }

    fn reply_to_tx(&mut self) {
        if let Some(r) = self.reply() {
            self.set_last_reply(&r);
        }
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

    fn tx_mut(&mut self, ts: f64) -> &mut TapTransaction {
        if self.open.is_none() {
            self.depth += 1;
            let mut tx = self.base.clone();
            tx.ts = ts;
            tx.trans_depth = self.depth;
            tx.helo = self.session.helo.clone();
            self.open = Some(Open { tx, body: Vec::new(), body_complete: true, has_body: false });
        }
        match self.open.as_mut() {
            Some(o) => &mut o.tx,
            None => unreachable!("just inserted"),
        }
    }

    fn data(&mut self) {
        let start = self.client.pos;
        let mut rx = DataReceiver::new(MAX_MESSAGE);
        let status = rx.feed(self.client.rest());
        let (consumed, complete) = match status {
            DataStatus::Done { consumed } => (consumed, true),
            DataStatus::Continue => (self.client.rest().len(), false),
        };
        self.client.pos += consumed;
        let gap = self.client.stream.gap_within(self.stream_offset(start), self.stream_offset(self.client.pos) + 1);
        if gap {
            self.note("gap_in_data");
        }
        if !complete {
            self.note("data_incomplete");
        }
        if let Some(o) = self.open.as_mut() {
            o.has_body = true;
            o.body_complete = complete && !gap && !rx.truncated();
            o.tx.message_bytes = Some(rx.message_bytes);
            o.body = rx.message;
        }
    }

    fn bdat_chunk(&mut self, size: usize) {
        let rest = self.client.rest();
        let take = size.min(rest.len());
        let chunk = &rest[..take];
        self.client.pos += take;
        if let Some(o) = self.open.as_mut() {
            o.has_body = true;
            if take < size {
                o.body_complete = false;
            }
            if o.body.len() + chunk.len() <= MAX_MESSAGE {
                o.body.extend_from_slice(chunk);
            } else {
                o.body_complete = false;
            }
            o.tx.message_bytes = Some(o.tx.message_bytes.unwrap_or(0) + take as u64);
        }
        if take < size {
            self.note("bdat_chunk_incomplete");
        }
    }

    /// Data index back to a stream offset (inverse of `HalfStream::data_index`).
    fn stream_offset(&self, index: usize) -> u64 {
        let mut off = index as u64;
        for g in &self.client.stream.gaps {
            if g.at <= off {
                off += g.len;
            }
        }
        off
    }

    fn finish_tx(&mut self) {
        let Some(mut o) = self.open.take() else { return };
        if o.has_body {
            read_headers(&o.body, &mut o.tx);
            if o.body_complete {
                o.tx.sha256 = Some(sha256_hex(&o.body));
            }
        }
        let mut path = vec![o.tx.resp_h.clone(), o.tx.orig_h.clone()];
        path.append(&mut o.tx.path);
        o.tx.path = path;
        self.done.push(o.tx);
    }

    fn tls(&mut self) {
        let c = crate::tls::walk(self.client.rest());
        let s = crate::tls::walk(self.server.rest());
        self.session.starttls_used = !c.not_tls && (c.records > 0 || s.records > 0);
        if c.not_tls {
            self.note("plaintext_after_starttls");
        }
        self.session.tls_records_orig = c.records;
        self.session.tls_records_resp = s.records;
        self.session.tls_app_bytes_orig = c.app_bytes;
        self.session.tls_app_bytes_resp = s.app_bytes;
        self.session.sni = c.sni;
        self.session.tls_version = s.version;
        self.session.tls_cipher = s.cipher;
        if c.alerts + s.alerts > 0 {
            self.note("tls_alert");
        }
    }
}
