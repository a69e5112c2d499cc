//! Reading a capture file end to end: frames to segments, segments to flows, flows to records.
//!
//! Files are read by [`crate::pcapfile`] (classic pcap and pcapng, from a file or from memory),
//! so a corrupt record is reported at its byte offset in either format. A flow is SMTP when it
//! starts like SMTP, possibly after an HTTP CONNECT tunnel head (or, joined mid-stream, has an
//! SMTP line early on), or is implicit TLS on port 465. Every flow yields a session record; one
//! that is not SMTP is noted so.

use std::collections::HashMap;
use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::ops::ControlFlow;
use std::path::Path;

use records::{TapRecord, TapSession, TapTransaction};

use crate::decode::{Link, Skip, decode};
use crate::defrag::{Defrag, DefragStats};
use crate::error::TapError;
use crate::pcapfile::{ReadError, Reader};
use crate::reassembly::HalfStream;
use crate::smtp::{SessionInput, dissect_session};

/// Out-of-order bytes buffered per direction before a hole is given up as a gap.
const MAX_PENDING: usize = 8 << 20;
/// Bytes stored per direction; beyond, bytes are counted only. Above the relay's 50 MiB message
/// limit with its dot-stuffing and commands.
const MAX_STREAM: usize = 64 << 20;
/// Bytes stored by all flows together (reassembled data, buffered segments). Past it, every
/// stream that grows stops storing (it keeps counting, and its session is noted
/// `stream_truncated_at_limit`) until finished flows give memory back. With one flow's
/// dissection on top (its message unstuffed, its attachments decoded: at most about twice
/// [`MAX_STREAM`] more), this keeps the tap under 256 MiB whatever the capture (measured in
/// BENCHMARKS.md under 160 MiB with 512 sessions, or 64 sessions of messages up to 50 MB, at once).
/// IP fragments waiting for the rest of their datagram hold at most another
/// [`crate::defrag::MAX_BYTES`] (16 MiB).
const MAX_TOTAL: usize = 96 << 20;
/// A flow with no packet for this long (capture time) is finished, as if closed: RFC 5321's
/// longest server timeout (10 minutes, for the end of DATA). Later packets start a new flow.
const IDLE_TIMEOUT: f64 = 600.0;
/// How often (capture time) flows are checked for idleness.
const IDLE_SWEEP: f64 = 30.0;
/// Flows tracked at once. Past it, the least recently active half are finished early (each
/// flow costs about half a kilobyte before any data: a SYN flood must not grow the tap).
const MAX_FLOWS: usize = 200_000;
/// How long (capture time) a closed connection's ports are remembered, so that its last ACKs
/// and retransmitted FINs do not open a flow that would linger until the idle timeout.
const TIME_WAIT: f64 = 60.0;
/// Bytes each direction needs before a flow can be told not to be SMTP (and stops storing).
const CLASSIFY_BYTES: usize = 12;
/// Bytes of each direction in which a flow the capture joined late is looked at for SMTP lines
/// (its first line may be cut).
const MID_STREAM_LOOK: usize = 1024;
/// Times a flow's plaintext is dissected to learn whether its TLS can be read as it arrives.
const TLS_TRIES: u8 = 3;

/// Everything read from one capture.
#[derive(Debug, Default)]
pub struct Dissection {
    pub sessions: Vec<TapSession>,
    /// Mail transactions seen in the clear, and (with `tls: true`, no envelope) one row for each
    /// session that went into TLS before any transaction, as Zeek's smtp.log has it.
    pub transactions: Vec<TapTransaction>,
    pub packets: u64,
    /// IP fragments and what became of their datagrams ([`crate::defrag`]).
    pub defrag: DefragStats,
    pub malformed: u64,
    /// Packets of a pcapng interface whose link type is not read (other than the first one's).
    pub other_link: u64,
    /// Flows whose dissection panicked ([`ReadSummary::failed_flows`]).
    pub failed_flows: u64,
    /// The read stopped early: the records above are those found before this error.
    pub error: Option<TapError>,
}

/// Counts of a streamed read ([`dissect_reader_with`]): the records went to the callback.
#[derive(Debug, Default)]
pub struct ReadSummary {
    pub packets: u64,
    /// Bytes of the capture read (file offset reached).
    pub bytes: u64,
    /// IP fragments read, datagrams rebuilt, given up (a fragment never came), dropped (memory
    /// bounds) and overlaps with other content ([`crate::defrag`]).
    pub defrag: DefragStats,
    pub malformed: u64,
    /// Packets of a pcapng interface whose link type is not read (other than the first one's).
    pub other_link: u64,
    /// Session records of flows read as SMTP (or implicit TLS), a failed dissection included.
    pub sessions: u64,
    /// Session records of TCP flows that are not SMTP (noted `not_smtp`, or `no_payload` when
    /// neither side sent a byte): every session the tap sees has a record.
    pub other_sessions: u64,
    pub transactions: u64,
    /// Flows finished because they were idle for [`IDLE_TIMEOUT`] seconds of capture time.
    pub idle_expired: u64,
    /// Flows finished early, least recently active first, because [`MAX_FLOWS`] were open.
    pub evicted: u64,
    /// Most flows tracked at once.
    pub peak_flows: u64,
    /// Late packets of an earlier connection on reused ports, seen after the new SYN and
    /// left out of the new flow.
    pub stale_packets: u64,
    /// Streams that stopped storing because all flows together held [`MAX_TOTAL`] bytes.
    pub memory_limited: u64,
    /// Most bytes held by all flows at once.
    pub peak_stored: u64,
    /// Flows whose dissection panicked (a bug in the tap or a parser it uses: report it with the
    /// capture). Each keeps only its bare session record, noted `dissection_failed`.
    pub failed_flows: u64,
    /// The callback asked to stop: the rest of the capture was not read.
    pub stopped: bool,
    /// The read stopped early: the records given before are those found before this error.
    pub error: Option<TapError>,
}

/// A flow's two endpoints, the lower first. Packed as integers because it is hashed and compared
/// for every packet: `SocketAddr`'s own `Hash` writes an address as a byte slice, several times
/// slower. Orders as the pair of `SocketAddr`s would (family, address, port; IPv4 first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    a: Endpoint,
    b: Endpoint,
    /// VLAN ids (outer, inner; 0: untagged): on a trunk, the same addresses and ports on two
    /// VLANs are two connections.
    vlans: [u16; 2],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Endpoint {
    v6: bool,
    ip: u128,
    port: u16,
}

impl Endpoint {
    fn of(addr: SocketAddr) -> Self {
        match addr {
            SocketAddr::V4(a) => Self { v6: false, ip: u128::from(a.ip().to_bits()), port: a.port() },
            SocketAddr::V6(a) => Self { v6: true, ip: a.ip().to_bits(), port: a.port() },
        }
    }
}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u128(self.a.ip);
        state.write_u128(self.b.ip);
        let (a, b) =
            (u64::from(self.a.port) | u64::from(self.a.v6) << 16, u64::from(self.b.port) | u64::from(self.b.v6) << 17);
        state.write_u64(a | b << 32);
        state.write_u32(u32::from(self.vlans[0]) << 16 | u32::from(self.vlans[1]));
    }
}

/// The flow tables: looked up more than once per packet, where the standard SipHash was 7% of
/// the tap's time. foldhash is several times faster, and randomly seeded per table, which keeps
/// flooding a table with chosen colliding addresses impractical.
type FlowMap<V> = HashMap<Key, V, foldhash::fast::RandomState>;

/// A direction of a flow: what its `first` endpoint sent, or what its `second` sent. State kept
/// per direction is a `[T; 2]` read through [`Dir::of`], so no index can fall outside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    First,
    Second,
}

impl Dir {
    fn of<T>(self, pair: &[T; 2]) -> &T {
        let [first, second] = pair;
        match self {
            Dir::First => first,
            Dir::Second => second,
        }
    }

    fn of_mut<T>(self, pair: &mut [T; 2]) -> &mut T {
        let [first, second] = pair;
        match self {
            Dir::First => first,
            Dir::Second => second,
        }
    }

    /// This direction's element of `pair`, then the other direction's.
    fn and_other<T>(self, pair: &[T; 2]) -> (&T, &T) {
        let [first, second] = pair;
        match self {
            Dir::First => (first, second),
            Dir::Second => (second, first),
        }
    }
}

struct Flow {
    /// The endpoint that sent the first packet seen; `streams[0]` is what it sent.
    first: SocketAddr,
    second: SocketAddr,
    streams: [HalfStream; 2],
    /// Which direction sent a SYN without ACK: the client.
    syn_from: Option<Dir>,
    /// Initial sequence number of each direction, from its first SYN.
    isn: [Option<u32>; 2],
    fins: [bool; 2],
    /// The connection ended with a RST (from either side) rather than FINs or a timeout.
    reset: bool,
    /// Capture time of the latest packet (the largest seen).
    last_seen: f64,
    /// Bytes this flow holds, as last accounted in the total.
    stored: usize,
    /// Known not to be SMTP: nothing is stored and no record is made.
    ignored: bool,
    /// Whether the SMTP-or-not question was settled early.
    classified: bool,
    /// An IP fragment of this flow overlapped earlier bytes with other content.
    frag_overlap: bool,
    /// Times [`Flow::skip_tls_when_started`] dissected the flow so far.
    tls_tries: u8,
    /// The VLAN ids its packets carried (part of the flow's key).
    vlans: [u16; 2],
    /// Opened by a packet of a connection already finished (a late retransmission): not a
    /// session of its own unless it turns out to be SMTP.
    after_close: bool,
}

impl Flow {
    fn new(first: SocketAddr, second: SocketAddr, vlans: [u16; 2]) -> Self {
        Self {
            first,
            second,
            vlans,
            streams: [HalfStream::new(MAX_PENDING, MAX_STREAM), HalfStream::new(MAX_PENDING, MAX_STREAM)],
            syn_from: None,
            isn: [None; 2],
            fins: [false; 2],
            reset: false,
            last_seen: f64::MIN,
            stored: 0,
            ignored: false,
            classified: false,
            frag_overlap: false,
            tls_tries: 0,
            after_close: false,
        }
    }

    fn stored_bytes(&self) -> usize {
        self.streams[0].stored_bytes() + self.streams[1].stored_bytes()
    }

    /// Whether a SYN without ACK with initial sequence number `isn` starts a new connection
    /// on this flow's ports rather than retransmitting this flow's own SYN: it does when the
    /// flow saw a FIN from either side (a connection being closed opens nothing again; RSTs
    /// finish a flow at once), or when this flow's client SYN, if any was seen, had another
    /// sequence number (a flow seen without its SYN, mid-stream, is always replaced).
    fn reused_by(&self, isn: u32) -> bool {
        let client_isn = self.syn_from.and_then(|d| *d.of(&self.isn));
        self.fins[0] || self.fins[1] || client_isn != Some(isn)
    }

    /// A packet that belongs to an earlier connection on the same ports, seen after this
    /// flow's SYN: one whose sequence number lies before its direction's SYN (checked in the
    /// stream's first GiB; ISNs of a
    /// reused 4-tuple grow, RFC 6528 and Linux's TIME-WAIT reuse rule), or a bare ACK/FIN from
    /// the side that has not answered the SYN yet. Data is never judged stale by the second
    /// rule: a capture that lost the SYN-ACK keeps the server's bytes.
    fn stale(&self, dir: Dir, seg: &crate::decode::Segment<'_>) -> bool {
        if seg.syn || self.syn_from.is_none() {
            return false;
        }
        match *dir.of(&self.isn) {
            // Past 1 GiB a sequence number of this connection may lie "before" its ISN in the
            // signed 32-bit sense: the rule is only sound early, where late packets come.
            Some(isn) if dir.of(&self.streams).delivered < 1 << 30 => {
                (seg.seq.wrapping_sub(isn.wrapping_add(1)) as i32) < 0
            }
            Some(_) => false,
            None => self.syn_from != Some(dir) && seg.payload.is_empty() && !seg.rst,
        }
    }

    /// Once both directions have their first bytes, a flow that does not start like SMTP never
    /// will ([`finish`] decides on the same prefixes): it is dropped now rather than stored to
    /// its end. HTTP CONNECT heads are left to the end (the tunnelled start comes later).
    fn classify_early(&mut self) {
        let [a, b] = &self.streams;
        if a.data.len() < CLASSIFY_BYTES || b.data.len() < CLASSIFY_BYTES {
            return;
        }
        self.classified = true;
        if starts_connect(&a.data) || starts_connect(&b.data) {
            return;
        }
        let client = client_side(self);
        let (c, s) = client.and_other(&self.streams);
        let mid_stream = !c.saw_syn;
        let (c, s) = (&c.data, &s.data);
        let resp = if client == Dir::First { self.second } else { self.first };
        let smtp = looks_smtp(c, s, mid_stream);
        let implicit_tls = resp.port() == 465 && c.first() == Some(&0x16);
        if !smtp && !implicit_tls && mid_stream && c.len().max(s.len()) < MID_STREAM_LOOK {
            // Joined late, maybe inside a line: wait for the lines after it to decide (a KiB
            // at most, so that a long flow is not stored while waiting for the other side).
            self.classified = false;
            return;
        }
        if !smtp && !implicit_tls {
            self.ignored = true;
            for h in &mut self.streams {
                h.discard();
            }
        }
    }
}

impl Flow {
    /// After STARTTLS the dissector only walks TLS records, so the TLS part of a session need
    /// not be stored (on a mail network, most of the bytes). Once both directions have a TLS
    /// record right after a line end, the session so far is dissected as [`finish`] would; if
    /// the dissector turns to TLS exactly there, it will at the end too (what it read before
    /// does not change), and from there on both streams are read as TLS records as they arrive
    /// instead of stored. Anything else (another turn, HTTP CONNECT, implicit TLS, gaps) leaves
    /// the flow stored as before.
    fn skip_tls_when_started(&mut self) {
        let [a, b] = &self.streams;
        let (Some(at_a), Some(at_b)) = (a.tls_candidate, b.tls_candidate) else { return };
        if self.ignored || self.tls_tries >= TLS_TRIES || a.tls_skipped_at().is_some() {
            return;
        }
        self.tls_tries += 1;
        let client = client_side(self);
        let (c, s) = client.and_other(&self.streams);
        let resp = if client == Dir::First { self.second } else { self.first };
        let implicit_tls = resp.port() == 465 && c.data.first() == Some(&0x16);
        let smtp = looks_smtp(&c.data, &s.data, !c.saw_syn);
        if starts_connect(&c.data) || starts_connect(&s.data) || implicit_tls || !smtp {
            return;
        }
        let input = SessionInput {
            session: TapSession::default(),
            client: c,
            server: s,
            client_start: 0,
            server_start: 0,
            keep_messages: false,
        };
        let (&at_c, &at_s) = client.and_other(&[at_a, at_b]);
        // This runs on the reading thread: a panic in a parser must not end the read. The flow
        // then stays stored, and its dissection (isolated on a worker) fails alone.
        let Ok(tried) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| dissect_session(input))) else {
            self.tls_tries = TLS_TRIES;
            return;
        };
        if tried.tls_at == Some((at_c, at_s)) {
            // `at_a` is where the first direction's TLS starts, whichever side is the client.
            for (half, at) in self.streams.iter_mut().zip([at_a, at_b]) {
                half.skip_tls_from(at);
            }
        } else {
            // Not where the session turned to TLS (a record-like line in a message, say): look
            // for a later start.
            for h in &mut self.streams {
                h.tls_candidate = None;
            }
        }
    }
}

fn key(a: SocketAddr, b: SocketAddr, vlans: [u16; 2]) -> Key {
    let (a, b) = (Endpoint::of(a), Endpoint::of(b));
    if a <= b { Key { a, b, vlans } } else { Key { a: b, b: a, vlans } }
}

/// Reads a pcap or pcapng file. Fails only when the file cannot be opened, is not a capture, or
/// its link type is not supported; a corrupt tail ends the read with `error` set and the records
/// found before it kept. Records are sorted by time; memory grows with them: for captures of any
/// size, [`dissect_file_with`] streams them instead.
pub fn dissect_file(path: &Path) -> Result<Dissection, TapError> {
    collect(|on_record| dissect_file_with(path, on_record))
}

/// [`dissect_file`] over capture bytes in memory; `name` stands for the path in errors.
pub fn dissect_bytes(name: &str, bytes: &[u8]) -> Result<Dissection, TapError> {
    dissect_reader(name, bytes)
}

/// [`dissect_file`] over any byte source.
pub fn dissect_reader<R: Read>(name: &str, input: R) -> Result<Dissection, TapError> {
    collect(|on_record| dissect_reader_with(name, input, on_record))
}

/// Runs a streaming read, gathering its records sorted by time.
fn collect(
    read: impl FnOnce(&mut dyn FnMut(TapRecord) -> ControlFlow<()>) -> Result<ReadSummary, TapError>,
) -> Result<Dissection, TapError> {
    let mut out = Dissection::default();
    let summary = read(&mut |r| {
        match r {
            TapRecord::Session(s) => out.sessions.push(s),
            TapRecord::Transaction(t) => out.transactions.push(t),
        }
        ControlFlow::Continue(())
    })?;
    out.packets = summary.packets;
    out.defrag = summary.defrag;
    out.malformed = summary.malformed;
    out.other_link = summary.other_link;
    out.failed_flows = summary.failed_flows;
    out.error = summary.error;
    out.sessions.sort_by(|a, b| a.ts.total_cmp(&b.ts));
    out.transactions.sort_by(|a, b| a.ts.total_cmp(&b.ts));
    Ok(out)
}

/// Reads a capture file and hands each record to `on_record` as soon as its flow ends (FINs
/// from both sides or a RST, a new connection's SYN on the same ports, idle for
/// [`IDLE_TIMEOUT`] seconds of capture time, or the end of the file): a session record, then
/// that session's transactions, in the order the flows ended. A flow's bytes count against
/// [`MAX_TOTAL`] until its records are handed on, so memory is bounded by the flows open or
/// waiting at once, not by the size of the file. `on_record` returns `Break` to stop reading.
pub fn dissect_file_with(
    path: &Path,
    mut on_record: impl FnMut(TapRecord) -> ControlFlow<()>,
) -> Result<ReadSummary, TapError> {
    let (name, file) = open_capture(path)?;
    dissect_with_limits(&name, Reader::from_file(file), Limits::default(), |r, _| on_record(r))
}

/// [`dissect_file_with`] that also hands each transaction's whole message, as
/// [`dissect_with_messages`] does.
pub fn dissect_file_with_messages(
    path: &Path,
    on_record: impl FnMut(TapRecord, Option<Vec<u8>>) -> ControlFlow<()>,
) -> Result<ReadSummary, TapError> {
    let (name, file) = open_capture(path)?;
    dissect_with_limits(&name, Reader::from_file(file), Limits { keep_messages: true, ..Limits::default() }, on_record)
}

/// The capture file, opened, with its name for errors.
fn open_capture(path: &Path) -> Result<(String, std::fs::File), TapError> {
    let name = path.display().to_string();
    // Opening a directory succeeds on Unix and then reads as an empty file: say what it is.
    if path.is_dir() {
        return Err(TapError::Open { path: name, detail: "is a directory; give a pcap or pcapng file".into() });
    }
    let file = std::fs::File::open(path).map_err(|e| TapError::Open { path: name.clone(), detail: e.to_string() })?;
    Ok((name, file))
}

/// Flows waiting for a dissecting thread.
const QUEUE: usize = 16;

/// Dissecting threads: at least two, even on two cores, so that the reading thread and the
/// dissecting ones share both cores whichever side is heavier at the moment (SHA-256 and MIME
/// decoding of a large message, or many small packets); more than four would wait on the one
/// reading thread.
fn workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 4)
}

/// Dissecting a flow takes memory of the order of its stored bytes again (the unstuffed message,
/// the decoded attachments). Flows storing more than this are dissected one at a time: the pool
/// holds at most one such flow's working memory, plus that of at most three smaller ones.
const BIG_FLOW: usize = 4 << 20;

/// What the worker made of a finished flow: the session, its transactions, and for each
/// transaction its whole message (kept only when the caller asked for messages).
type Finished = (TapSession, Vec<TapTransaction>, Vec<Option<Vec<u8>>>);

/// A flow dissected by the worker: its records (`None`: not SMTP) and the bytes it held.
struct Done {
    records: Option<Finished>,
    stored: usize,
    /// Its dissection panicked.
    failed: bool,
}

/// Memory and time bounds of a read (the constants above; smaller in tests).
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_total: usize,
    idle_timeout: f64,
    max_flows: usize,
    /// Hand on a closed flow's records before reading on. A live stream needs it: the next
    /// packet may be minutes away, and the records of a session that just ended must not wait
    /// for it. A file does not: reading on while the worker dissects is what makes it fast.
    eager: bool,
    /// Read the TLS of STARTTLS sessions as it comes ([`Flow::skip_tls_when_started`]); off in
    /// tests that check this changes no record.
    skip_tls: bool,
    /// Hand each whole message to the caller with its transaction (`smtplab tap --extract`);
    /// otherwise messages are dropped as soon as they are hashed.
    keep_messages: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_total: MAX_TOTAL,
            idle_timeout: IDLE_TIMEOUT,
            max_flows: MAX_FLOWS,
            eager: false,
            skip_tls: true,
            keep_messages: false,
        }
    }
}

/// The state of a streamed read. Finished flows are dissected on other threads while this one
/// reads and reassembles; their records are handed to `on_record` here, on the caller's thread,
/// in the order the flows finished (as one thread would give them, whichever worker is faster).
struct Tap<F> {
    /// Set when the callback asks to stop: the workers then skip the flows still queued.
    halt: std::sync::Arc<std::sync::atomic::AtomicBool>,
    flows: FlowMap<Flow>,
    /// Connections closed lately (FINs or RST), with the time they closed.
    closed: FlowMap<f64>,
    /// Bytes held by all flows: open, being dissected, or dissected and waiting for their turn to
    /// hand on their records.
    stored: usize,
    /// Flows sent to the workers whose records have not come back.
    in_flight: usize,
    /// Number given to the next flow sent.
    sent: u64,
    /// Flows come back in any order: those ahead of the next one due wait here, by number.
    arrived: std::collections::BTreeMap<u64, Done>,
    /// Number of the next flow whose records are handed on.
    next_due: u64,
    to_worker: Option<crossbeam_channel::Sender<(u64, Flow)>>,
    from_worker: std::sync::mpsc::Receiver<(u64, Done)>,
    summary: ReadSummary,
    limits: Limits,
    /// IP fragments waiting for the rest of their datagram.
    defrag: Defrag,
    on_record: F,
}

impl<F: FnMut(TapRecord, Option<Vec<u8>>) -> ControlFlow<()>> Tap<F> {
    /// Sends a flow taken out of the table to be finished; hands on the records that are ready.
    fn close(&mut self, flow: Flow) {
        if self.summary.stopped {
            self.stored = self.stored.saturating_sub(flow.stored);
            return;
        }
        let sent = self.to_worker.as_ref().is_some_and(|w| w.send((self.sent, flow)).is_ok());
        if sent {
            self.in_flight += 1;
            self.sent += 1;
        } else {
            // The workers are gone (one panicked: the scope will say so).
            self.summary.stopped = true;
        }
        while let Ok((n, done)) = self.from_worker.try_recv() {
            self.arrive(n, done);
        }
        if self.limits.eager {
            while self.wait_one() {}
        }
    }

    /// Waits for one dissected flow; false when none is out.
    fn wait_one(&mut self) -> bool {
        if self.in_flight == 0 {
            return false;
        }
        match self.from_worker.recv() {
            Ok((n, done)) => {
                self.arrive(n, done);
                true
            }
            Err(_) => {
                self.in_flight = 0;
                false
            }
        }
    }

    /// Flow number `n` is back; its records are handed on in their turn, and only then are its
    /// bytes counted as freed: results waiting behind a slower flow (with their messages, under
    /// `--extract`) stay within the memory budget.
    fn arrive(&mut self, n: u64, done: Done) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.summary.failed_flows += u64::from(done.failed);
        self.arrived.insert(n, done);
        while let Some(done) = self.arrived.remove(&self.next_due) {
            self.next_due += 1;
            self.stored = self.stored.saturating_sub(done.stored);
            self.deliver(done);
        }
    }

    fn stop(&mut self) {
        self.summary.stopped = true;
        self.halt.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn deliver(&mut self, done: Done) {
        let Some((session, transactions, messages)) = done.records else { return };
        if self.summary.stopped {
            return;
        }
        if session.notes.iter().any(|n| n == "not_smtp" || n == "no_payload") {
            self.summary.other_sessions += 1;
        } else {
            self.summary.sessions += 1;
        }
        self.summary.transactions += transactions.len() as u64;
        if (self.on_record)(TapRecord::Session(session), None).is_break() {
            self.stop();
            return;
        }
        let mut messages = messages.into_iter();
        for t in transactions {
            if (self.on_record)(TapRecord::Transaction(t), messages.next().flatten()).is_break() {
                self.stop();
                return;
            }
        }
    }

    /// Finishes, oldest first, the flows with no packet since `before`; forgets connections
    /// closed before `closed_before`.
    fn expire(&mut self, before: f64, closed_before: f64) {
        let idle: Vec<Key> = self.flows.iter().filter(|(_, f)| f.last_seen < before).map(|(k, _)| *k).collect();
        self.summary.idle_expired += idle.len() as u64;
        self.close_all(idle);
        self.closed.retain(|_, at| *at >= closed_before);
    }

    /// Too many flows: finishes the least recently active half (and forgets closed ones).
    fn evict(&mut self) {
        let mut seen: Vec<f64> = self.flows.values().map(|f| f.last_seen).collect();
        let mid = seen.len() / 2;
        let (_, cut, _) = seen.select_nth_unstable_by(mid, f64::total_cmp);
        let cut = *cut;
        let old: Vec<Key> = self.flows.iter().filter(|(_, f)| f.last_seen < cut).map(|(k, _)| *k).collect();
        self.summary.evicted += old.len() as u64;
        self.close_all(old);
        self.closed.clear();
    }

    fn close_all(&mut self, keys: Vec<Key>) {
        let mut done: Vec<(Key, Flow)> = keys.into_iter().filter_map(|k| Some((k, self.flows.remove(&k)?))).collect();
        // By start, then by addresses: the table's order is random, the records' must not be.
        done.sort_by(|(ka, a), (kb, b)| first_ts(a).total_cmp(&first_ts(b)).then_with(|| ka.cmp(kb)));
        for (_, flow) in done {
            self.close(flow);
        }
    }
}

fn first_ts(f: &Flow) -> f64 {
    let [a, b] = &f.streams;
    a.first_ts.unwrap_or(f64::MAX).min(b.first_ts.unwrap_or(f64::MAX))
}

fn unsupported(path: &str, linktype: u32) -> TapError {
    TapError::LinkType {
        path: path.into(),
        linktype: linktype as i32,
        name: pcap::Linktype(linktype as i32).get_name().unwrap_or_else(|_| "unknown".into()),
    }
}

/// [`dissect_file_with`] over any byte source; `name` stands for the path in errors.
pub fn dissect_reader_with<R: Read>(
    name: &str,
    input: R,
    mut on_record: impl FnMut(TapRecord) -> ControlFlow<()>,
) -> Result<ReadSummary, TapError> {
    dissect_with_limits(name, Reader::new(input), Limits::default(), |r, _| on_record(r))
}

/// [`dissect_reader_with`] for a live byte stream (a capture in progress, a pipe from tcpdump):
/// each session's records are handed on as soon as the session ends, not when more packets
/// come. Slower than [`dissect_reader_with`] on a file, where reading on while a finished flow
/// is dissected pays.
pub fn dissect_stream_with<R: Read>(
    name: &str,
    input: R,
    mut on_record: impl FnMut(TapRecord) -> ControlFlow<()>,
) -> Result<ReadSummary, TapError> {
    dissect_with_limits(name, Reader::new(input), Limits { eager: true, ..Limits::default() }, |r, _| on_record(r))
}

/// [`dissect_reader_with`] (or, with `live`, [`dissect_stream_with`]) that also hands each
/// transaction's whole message, dot-unstuffed, as the eavesdropper reassembled it (the bytes
/// whose sha256 the transaction reports; `None` when it was not seen whole), as dsniff's
/// mailsnarf does.
pub fn dissect_with_messages<R: Read>(
    name: &str,
    input: R,
    live: bool,
    on_record: impl FnMut(TapRecord, Option<Vec<u8>>) -> ControlFlow<()>,
) -> Result<ReadSummary, TapError> {
    let limits = Limits { eager: live, keep_messages: true, ..Limits::default() };
    dissect_with_limits(name, Reader::new(input), limits, on_record)
}

fn dissect_with_limits<R: Read>(
    name: &str,
    reader: Result<Reader<R>, ReadError>,
    limits: Limits,
    on_record: impl FnMut(TapRecord, Option<Vec<u8>>) -> ControlFlow<()>,
) -> Result<ReadSummary, TapError> {
    let mut reader = match reader {
        Ok(r) => r,
        Err(ReadError::NotCapture(detail)) => {
            return Err(TapError::Open { path: name.into(), detail: format!("not a pcap or pcapng file ({detail})") });
        }
        Err(ReadError::Corrupt { offset, detail }) => {
            return Ok(ReadSummary {
                error: Some(TapError::Corrupt { path: name.into(), offset, detail }),
                ..Default::default()
            });
        }
    };
    if let Some(lt) = reader.linktype()
        && Link::from_dlt(lt as i32).is_none()
    {
        return Err(unsupported(name, lt));
    }
    let big_lane = std::sync::Mutex::new(());
    std::thread::scope(|scope| {
        let (to_worker, worker_in) = crossbeam_channel::bounded::<(u64, Flow)>(QUEUE);
        let (worker_out, from_worker) = std::sync::mpsc::channel::<(u64, Done)>();
        let halt = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        for _ in 0..workers() {
            let (worker_in, worker_out, big_lane) = (worker_in.clone(), worker_out.clone(), &big_lane);
            let halt = halt.clone();
            scope.spawn(move || {
                for (n, mut flow) in worker_in {
                    let stored = flow.stored;
                    if halt.load(std::sync::atomic::Ordering::Relaxed) {
                        // Nobody wants the records any more.
                        if worker_out.send((n, Done { records: None, stored, failed: false })).is_err() {
                            break;
                        }
                        continue;
                    }
                    let lane = (stored > BIG_FLOW).then(|| big_lane.lock().unwrap_or_else(|e| e.into_inner()));
                    // Hostile bytes that find a panic in a parser cost this flow's transactions, not
                    // the read: nothing shared is left half-changed, as `finish` has the flow to
                    // itself, and what it had read of the flow still gives the bare session.
                    let finished = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        finish(&mut flow, limits.keep_messages)
                    }));
                    drop(lane);
                    let failed = finished.is_err();
                    // What failed to parse still leaves the session's bare record, noted.
                    let records = finished.unwrap_or_else(|_| {
                        let mut session = bare_session(&flow);
                        session.notes.push("dissection_failed".into());
                        Some((session, Vec::new(), Vec::new()))
                    });
                    if worker_out.send((n, Done { records, stored, failed })).is_err() {
                        break;
                    }
                }
            });
        }
        // Only the workers' clones remain: when they all end, the reading side sees it.
        drop((worker_in, worker_out));
        let mut tap = Tap {
            halt,
            flows: FlowMap::default(),
            closed: FlowMap::default(),
            stored: 0,
            in_flight: 0,
            sent: 0,
            arrived: std::collections::BTreeMap::new(),
            next_due: 0,
            to_worker: Some(to_worker),
            from_worker,
            summary: ReadSummary::default(),
            limits,
            defrag: Defrag::new(),
            on_record,
        };
        read_all(&mut reader, &mut tap, name)?;
        tap.defrag.finish();
        tap.summary.defrag = tap.defrag.stats;
        let rest: Vec<Key> = tap.flows.keys().copied().collect();
        tap.close_all(rest);
        tap.to_worker = None;
        while tap.wait_one() {}
        Ok(tap.summary)
    })
}

/// The packet loop of [`dissect_reader_with`].
fn read_all<R: Read, F: FnMut(TapRecord, Option<Vec<u8>>) -> ControlFlow<()>>(
    reader: &mut Reader<R>,
    tap: &mut Tap<F>,
    name: &str,
) -> Result<(), TapError> {
    let mut now = f64::MIN;
    let mut next_sweep = f64::MIN;
    // The link type of the last packet, decoded once per change (pcapng may mix interfaces).
    let mut link: Option<(u32, Option<Link>)> = None;
    while !tap.summary.stopped {
        let packet = match reader.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(ReadError::Corrupt { offset, detail }) => {
                tap.summary.error = Some(TapError::Corrupt { path: name.into(), offset, detail });
                break;
            }
            Err(ReadError::NotCapture(detail)) => {
                tap.summary.error = Some(TapError::Corrupt { path: name.into(), offset: 0, detail });
                break;
            }
        };
        tap.summary.packets += 1;
        let this_link = match link {
            Some((lt, l)) if lt == packet.linktype => l,
            _ => {
                let l = Link::from_dlt(packet.linktype as i32);
                link = Some((packet.linktype, l));
                l
            }
        };
        let Some(this_link) = this_link else {
            if tap.summary.packets == 1 {
                // pcapng: the first interface is only known at its first packet.
                return Err(unsupported(name, packet.linktype));
            }
            tap.summary.other_link += 1;
            continue;
        };
        let ts = packet.ts;
        if ts > now {
            now = ts;
            if now >= next_sweep {
                if next_sweep > f64::MIN {
                    tap.expire(now - tap.limits.idle_timeout, now - TIME_WAIT);
                    tap.defrag.expire(now);
                }
                next_sweep = now + IDLE_SWEEP;
            }
        }
        // A datagram rebuilt from fragments outlives the frame that completed it.
        let rebuilt: crate::defrag::Reassembled;
        let mut frag_overlap = false;
        let decoded = match decode(this_link, packet.data) {
            Err(Skip::Fragment) => match tap.defrag.add(this_link, packet.data, ts) {
                Some(r) => {
                    rebuilt = r;
                    frag_overlap = rebuilt.overlap;
                    decode(Link::RawIp, &rebuilt.packet)
                        .map(|seg| crate::decode::Segment { vlans: rebuilt.vlans, ..seg })
                }
                None => continue,
            },
            other => other,
        };
        let seg = match decoded {
            Ok(s) => s,
            Err(Skip::NotTcp | Skip::Fragment) => continue,
            Err(Skip::Malformed) => {
                tap.summary.malformed += 1;
                continue;
            }
        };
        let src = SocketAddr::new(seg.src, seg.sport);
        let dst = SocketAddr::new(seg.dst, seg.dport);
        let k = key(src, dst, seg.vlans);
        // A SYN that is not a retransmission of the flow's own opens a new connection on the
        // same ports: the old flow is finished first, so the new session is dated from its SYN.
        if seg.syn
            && !seg.ack
            && tap.flows.get(&k).is_some_and(|old| old.reused_by(seg.seq))
            && let Some(old) = tap.flows.remove(&k)
        {
            tap.close(old);
        }
        // One lookup for a packet of a known flow, the common case.
        let flow = if let Some(flow) = tap.flows.get_mut(&k) {
            flow
        } else {
            if seg.payload.is_empty() && !seg.syn && tap.closed.contains_key(&k) {
                // The last ACK or a retransmitted FIN of a connection already finished.
                continue;
            }
            if tap.flows.len() >= tap.limits.max_flows {
                tap.evict();
            }
            let after_close = tap.closed.remove(&k).is_some() && !seg.syn;
            tap.flows.entry(k).or_insert_with(|| Flow { after_close, ..Flow::new(src, dst, seg.vlans) })
        };
        let dir = if src == flow.first { Dir::First } else { Dir::Second };
        if flow.stale(dir, &seg) {
            // A late packet of the connection these ports carried before (its last ACK or a
            // retransmitted FIN): it must not date, extend or close the new one.
            tap.summary.stale_packets += 1;
            continue;
        }
        flow.last_seen = flow.last_seen.max(ts);
        flow.frag_overlap |= frag_overlap;
        let half = dir.of_mut(&mut flow.streams);
        if seg.syn {
            dir.of_mut(&mut flow.isn).get_or_insert(seg.seq);
            half.syn(seg.seq);
            if !seg.ack {
                flow.syn_from = Some(dir);
            }
        }
        let seq = if seg.syn { seg.seq.wrapping_add(1) } else { seg.seq };
        half.segment(seq, seg.payload, ts);
        if seg.fin {
            half.set_fin();
            *dir.of_mut(&mut flow.fins) = true;
        }
        flow.reset |= seg.rst;
        let closing = seg.rst || (flow.fins[0] && flow.fins[1]);
        if !seg.payload.is_empty() {
            if !flow.classified {
                flow.classify_early();
            }
            if tap.limits.skip_tls {
                flow.skip_tls_when_started();
            }
            let was = flow.stored;
            flow.stored = flow.stored_bytes();
            tap.stored = (tap.stored + flow.stored).saturating_sub(was);
            let max_total = tap.limits.max_total;
            if tap.stored > max_total && !dir.of(&flow.streams).truncated() {
                // Over budget: flows being dissected give their memory back first; if that is
                // not enough, this stream stops storing.
                while tap.stored > max_total && tap.wait_one() {}
                if tap.stored > max_total
                    && let Some(flow) = tap.flows.get_mut(&k)
                {
                    dir.of_mut(&mut flow.streams).stop_storing();
                    tap.summary.memory_limited += 1;
                    let was = flow.stored;
                    flow.stored = flow.stored_bytes();
                    tap.stored = (tap.stored + flow.stored).saturating_sub(was);
                }
            }
            tap.summary.peak_stored = tap.summary.peak_stored.max(tap.stored as u64);
        }
        if closing {
            // Late retransmissions with data after this start a fresh flow (marked `after_close`:
            // no record unless it reads as SMTP); ACKs and FINs are dropped while the ports are
            // remembered.
            if let Some(done) = tap.flows.remove(&k) {
                tap.closed.insert(k, ts);
                tap.close(done);
            }
        }
        tap.summary.peak_flows = tap.summary.peak_flows.max(tap.flows.len() as u64);
    }
    tap.summary.bytes = reader.offset();
    Ok(())
}

fn starts_cmd(d: &[u8]) -> bool {
    let head = d.get(..5).unwrap_or(&[]);
    head.eq_ignore_ascii_case(b"EHLO ") || head.eq_ignore_ascii_case(b"HELO ")
}

/// Whether a flow's client and server bytes look like SMTP: a first line that is a command
/// (EHLO/HELO; a one-sided capture also MAIL FROM) or a reply. A flow the capture joined late may
/// start inside a line, so there the first lines after a line end in its first
/// [`MID_STREAM_LOOK`] bytes count too, and any command verb (a pipelined group, STARTTLS).
fn looks_smtp(c: &[u8], s: &[u8], mid_stream: bool) -> bool {
    if starts_reply(s) || starts_cmd(c) || (s.is_empty() && c.starts_with(b"MAIL FROM")) {
        return true;
    }
    let later_line = |d: &[u8], f: fn(&[u8]) -> bool| {
        let head = d.get(..MID_STREAM_LOOK).unwrap_or(d);
        f(d) || memchr::memchr_iter(b'\n', head).any(|i| d.get(i + 1..).is_some_and(f))
    };
    mid_stream && (later_line(s, starts_reply) || later_line(c, starts_any_cmd))
}

/// A line that starts with one of the commands a client sends (RFC 5321, 3207, 3030, 4954).
fn starts_any_cmd(d: &[u8]) -> bool {
    const VERBS: &[&[u8]] = &[
        b"EHLO ",
        b"HELO ",
        b"MAIL FROM:",
        b"RCPT TO:",
        b"DATA\r",
        b"DATA\n",
        b"BDAT ",
        b"RSET\r",
        b"NOOP",
        b"QUIT\r",
        b"STARTTLS\r",
        b"STARTTLS\n",
        b"AUTH ",
        b"VRFY ",
        b"EXPN ",
        b"HELP",
    ];
    VERBS.iter().any(|v| d.get(..v.len()).is_some_and(|h| h.eq_ignore_ascii_case(v)))
}

fn starts_reply(d: &[u8]) -> bool {
    let Some(&[a, b, c, sep]) = d.first_chunk::<4>() else { return false };
    [a, b, c].iter().all(u8::is_ascii_digit) && matches!(sep, b' ' | b'-')
}

fn starts_connect(d: &[u8]) -> bool {
    d.get(..8).is_some_and(|h| h.eq_ignore_ascii_case(b"CONNECT "))
}

/// End of an HTTP head (the empty line), searched in its first 8 KiB.
fn http_head_end(d: &[u8]) -> Option<usize> {
    let d = d.get(..8192).unwrap_or(d);
    let crlf = d.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = d.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// An HTTP CONNECT tunnel in front of the session (`CONNECT host:port HTTP/1.x` and a 2xx
/// `HTTP/1.x` answer): where the tunnelled bytes start in the client and server streams.
pub fn tunnel_prefix(client: &[u8], server: &[u8]) -> Option<(usize, usize)> {
    if !starts_connect(client) {
        return None;
    }
    let c = http_head_end(client)?;
    if server.is_empty() {
        // One-sided: believe it only if a command follows.
        return client.get(c..).is_some_and(starts_cmd).then_some((c, 0));
    }
    // `HTTP/1.x 2xx`.
    let status = server.first_chunk::<12>()?;
    if !status.starts_with(b"HTTP/1.") || status[9] != b'2' {
        return None;
    }
    Some((c, http_head_end(server)?))
}

/// Which direction is the client's: the one that sent the SYN, else the one that speaks first
/// as a client (or whose peer answers as a server), else the one from the higher port.
fn client_side(flow: &Flow) -> Dir {
    let [a, b] = &flow.streams;
    flow.syn_from.unwrap_or_else(|| {
        if starts_cmd(&a.data) || starts_connect(&a.data) || starts_reply(&b.data) || b.data.starts_with(b"HTTP/1.") {
            Dir::First
        } else if starts_cmd(&b.data)
            || starts_connect(&b.data)
            || starts_reply(&a.data)
            || a.data.starts_with(b"HTTP/1.")
        {
            Dir::Second
        } else if flow.first.port() < flow.second.port() {
            // Neither side says: the higher port is the client.
            Dir::Second
        } else {
            Dir::First
        }
    })
}

/// The session record of a flow before its SMTP is read: who is the client, addresses, times,
/// volumes and what the TCP layer noticed. What is recorded of a flow that is not SMTP, or whose
/// dissection failed: every TCP session the tap sees yields a record.
fn bare_session(flow: &Flow) -> TapSession {
    let client = client_side(flow);
    let (c, s) = client.and_other(&flow.streams);
    let (&orig, &resp) = client.and_other(&[flow.first, flow.second]);
    let ts = c.first_ts.unwrap_or(0.0).min(s.first_ts.unwrap_or(f64::MAX));
    let end = c.last_ts.max(s.last_ts);
    let mut session = TapSession {
        ts,
        uid: uid(ts, orig, resp, flow.vlans),
        vlan: Some(flow.vlans[0]).filter(|&v| v != 0),
        inner_vlan: Some(flow.vlans[1]).filter(|&v| v != 0),
        orig_h: ip_string(orig.ip()),
        orig_p: orig.port(),
        resp_h: ip_string(resp.ip()),
        resp_p: resp.port(),
        duration: (end - ts).max(0.0),
        orig_bytes: c.delivered,
        resp_bytes: s.delivered,
        gaps: (c.gaps.len() + s.gaps.len()) as u64,
        ..Default::default()
    };
    // A flow not read as SMTP dropped its bytes: its counts say the same.
    let one_sided =
        if flow.ignored { s.delivered == 0 && c.delivered > 0 } else { s.data.is_empty() && !c.data.is_empty() };
    if one_sided {
        session.notes.push("one_sided".into());
    }
    if !c.saw_syn {
        session.notes.push("mid_stream_start".into());
    }
    if flow.frag_overlap {
        session.notes.push("ip_fragment_overlap".into());
    }
    if flow.reset {
        session.notes.push("closed_by_rst".into());
    }
    session
}

/// Decides who is the client, whether the flow is SMTP, and dissects it: the session record and
/// its transactions. A flow that is not SMTP gives its bare session record, noted `no_payload`
/// (nothing was sent either way: a refused or scanned port) or `not_smtp`; `None` only for the
/// late packets of a connection already finished.
fn finish(flow: &mut Flow, keep_messages: bool) -> Option<Finished> {
    for s in &mut flow.streams {
        s.finish();
    }
    let mut session = bare_session(flow);
    let not_smtp = |mut session: TapSession, after_close: bool| {
        if after_close {
            return None;
        }
        let payload = session.orig_bytes > 0 || session.resp_bytes > 0;
        session.notes.push(if payload { "not_smtp" } else { "no_payload" }.into());
        Some((session, Vec::new(), Vec::new()))
    };
    if flow.ignored {
        return not_smtp(session, flow.after_close);
    }
    let client = client_side(flow);
    let (c, s) = client.and_other(&flow.streams);
    let resp = if client == Dir::First { flow.second } else { flow.first };
    let tunnel = tunnel_prefix(&c.data, &s.data);
    let (c_start, s_start) = tunnel.unwrap_or((0, 0));
    // Both within their streams: the ends of the HTTP heads found there.
    let (Some(cd), Some(sd)) = (c.data.get(c_start..), s.data.get(s_start..)) else {
        return not_smtp(session, flow.after_close);
    };
    // A stand-in for a parser bug, so that a test can see what a panic costs.
    #[cfg(test)]
    assert!(!cd.starts_with(tests::PANIC_HELO), "test panic");
    let smtp = looks_smtp(cd, sd, !c.saw_syn);
    let implicit_tls = resp.port() == 465 && cd.first() == Some(&0x16);
    if !smtp && !implicit_tls {
        return not_smtp(session, flow.after_close);
    }
    if tunnel.is_some() {
        session.notes.insert(0, "http_connect_tunnel".into());
    }
    if implicit_tls {
        // Dated by stream offset, exact before the first gap (where record boundaries are lost
        // anyway).
        let ct = crate::tls::walk_timed(cd, |i| c.time_at((c_start + i) as u64));
        let st = crate::tls::walk_timed(sd, |i| s.time_at((s_start + i) as u64));
        session.notes.push("implicit_tls".into());
        session.starttls_used = false;
        let server_not_tls = st.not_tls;
        crate::tls::fill_session(ct, st, &mut session);
        if server_not_tls && starts_reply(sd) {
            // The server answered the ClientHello with a plaintext greeting: no TLS here.
            session.notes.push("server_not_tls".into());
            let greeting = sd.split(|&b| b == b'\n').next().unwrap_or(&[]);
            session.server_name =
                String::from_utf8_lossy(greeting.get(4..).unwrap_or(&[])).split_whitespace().next().map(str::to_string);
        }
        return Some((session, Vec::new(), Vec::new()));
    }
    let result = dissect_session(SessionInput {
        session,
        client: c,
        server: s,
        client_start: c_start,
        server_start: s_start,
        keep_messages,
    });
    Some((result.session, result.transactions, result.messages))
}

fn ip_string(ip: IpAddr) -> String {
    ip.to_canonical().to_string()
}

/// A Zeek-style connection id: stable for the same flow and start time. The VLAN ids count only
/// when there are any, so untagged flows keep the ids they always had.
fn uid(ts: f64, orig: SocketAddr, resp: SocketAddr, vlans: [u16; 2]) -> String {
    let text = match vlans {
        [0, 0] => format!("{ts:.6}{orig}{resp}"),
        [outer, inner] => format!("{ts:.6}{orig}{resp}vlan{outer}.{inner}"),
    };
    let h = crate::message::sha256_hex(text.as_bytes());
    format!("C{}", &h[..17])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pcapwrite::{Flags, LinkKind, PcapWriter};

    /// A capture in memory, one TCP connection at a time, sequence numbers tracked per port.
    struct Cap {
        w: PcapWriter<Vec<u8>>,
        seq: HashMap<SocketAddr, u32>,
    }

    impl Cap {
        fn new() -> Self {
            Self { w: PcapWriter::new(Vec::new(), LinkKind::Ethernet).expect("header"), seq: HashMap::new() }
        }

        fn send(&mut self, ts: f64, from: &str, to: &str, flags: Flags, payload: &[u8]) {
            let (from, to): (SocketAddr, SocketAddr) = (from.parse().expect("addr"), to.parse().expect("addr"));
            let seq = self.seq.entry(from).or_insert(1000);
            let at = *seq;
            *seq = seq.wrapping_add(payload.len() as u32 + u32::from(flags.syn || flags.fin));
            self.w.write_tcp(ts, from, to, at, 0, flags, payload).expect("frame");
        }

        fn data(&mut self, ts: f64, from: &str, to: &str, payload: &[u8]) {
            self.send(ts, from, to, Flags { ack: true, psh: true, ..Default::default() }, payload);
        }

        /// A plaintext session with one message, left open (no FIN) unless `close`.
        fn session(&mut self, ts: f64, client: &str, server: &str, body: &[u8], close: bool) {
            self.send(ts, client, server, Flags { syn: true, ..Default::default() }, b"");
            self.send(ts, server, client, Flags { syn: true, ack: true, ..Default::default() }, b"");
            self.data(ts, server, client, b"220 mx.test ESMTP\r\n");
            self.data(ts, client, server, b"EHLO c.test\r\n");
            self.data(ts, server, client, b"250 mx.test\r\n");
            self.data(ts, client, server, b"MAIL FROM:<a@c.test>\r\n");
            self.data(ts, server, client, b"250 ok\r\n");
            self.data(ts, client, server, b"RCPT TO:<b@mx.test>\r\n");
            self.data(ts, server, client, b"250 ok\r\n");
            self.data(ts, client, server, b"DATA\r\n");
            self.data(ts, server, client, b"354 go\r\n");
            for chunk in body.chunks(1400) {
                self.data(ts, client, server, chunk);
            }
            self.data(ts, client, server, b".\r\n");
            self.data(ts, server, client, b"250 queued\r\n");
            if close {
                let fin = Flags { fin: true, ack: true, ..Default::default() };
                self.send(ts, client, server, fin, b"");
                self.send(ts, server, client, fin, b"");
            }
        }

        fn bytes(self) -> Vec<u8> {
            self.w.into_inner()
        }
    }

    fn read(bytes: &[u8], limits: Limits) -> (Vec<TapRecord>, ReadSummary) {
        let mut records = Vec::new();
        let summary = dissect_with_limits("mem.pcap", Reader::new(bytes), limits, |r, _| {
            records.push(r);
            ControlFlow::Continue(())
        })
        .expect("reads");
        (records, summary)
    }

    fn body(n: usize) -> Vec<u8> {
        let mut b = b"Subject: s\r\n\r\n".to_vec();
        while b.len() < n {
            b.extend_from_slice(b"0123456789012345678901234567890123456789012345678901234567890123456789\r\n");
        }
        b
    }

    #[test]
    fn streamed_records_are_those_of_dissect_bytes_each_session_before_its_transactions() {
        let mut c = Cap::new();
        c.session(100.0, "10.0.0.1:40000", "10.0.0.2:25", &body(5000), true);
        c.session(101.0, "10.0.0.3:40001", "10.0.0.2:25", &body(300), false);
        let bytes = c.bytes();
        let (records, summary) = read(&bytes, Limits::default());
        let whole = dissect_bytes("mem.pcap", &bytes).expect("reads");
        assert_eq!((summary.sessions, summary.transactions), (2, 2));
        let kinds: Vec<&str> = records
            .iter()
            .map(|r| match r {
                TapRecord::Session(_) => "s",
                TapRecord::Transaction(_) => "t",
            })
            .collect();
        assert_eq!(kinds, ["s", "t", "s", "t"]);
        for r in &records {
            match r {
                TapRecord::Session(s) => assert!(whole.sessions.contains(s)),
                TapRecord::Transaction(t) => assert!(whole.transactions.contains(t)),
            }
        }
        assert_eq!(summary.bytes, bytes.len() as u64);
    }

    /// Several dissecting threads finish flows in any order (a large message takes longer than
    /// the small ones closed after it); records still come out in the order the flows ended,
    /// which is the order of a read that dissects each flow before reading on.
    #[test]
    fn records_come_in_the_order_flows_ended_whichever_worker_is_faster() {
        let mut c = Cap::new();
        for i in 0..40u16 {
            // Every fourth flow carries a 300 kB message, the others a few hundred bytes.
            let size = if i % 4 == 0 { 300_000 } else { 200 + 37 * usize::from(i) };
            let client = format!("10.0.1.{}:{}", 1 + i % 7, 41000 + i);
            c.session(100.0 + f64::from(i), &client, "10.0.0.2:25", &body(size), true);
        }
        let bytes = c.bytes();
        let (pooled, summary) = read(&bytes, Limits::default());
        let (one_by_one, _) = read(&bytes, Limits { eager: true, ..Limits::default() });
        assert!(workers() >= 2);
        assert_eq!((summary.sessions, summary.transactions), (40, 40));
        assert_eq!(pooled, one_by_one);
    }

    pub(super) const PANIC_HELO: &[u8] = b"EHLO panic.invalid";

    /// A flow whose dissection panics keeps only its bare session record, noted and counted; the
    /// read goes on and the flows before and after it keep theirs.
    #[test]
    fn a_panic_in_one_flow_costs_that_flow_only() {
        let mut c = Cap::new();
        c.session(100.0, "10.0.0.1:40000", "10.0.0.2:25", &body(300), true);
        let (client, server) = ("10.0.0.3:40001", "10.0.0.2:25");
        c.send(101.0, client, server, Flags { syn: true, ..Default::default() }, b"");
        c.send(101.0, server, client, Flags { syn: true, ack: true, ..Default::default() }, b"");
        c.data(101.0, server, client, b"220 mx.test ESMTP\r\n");
        c.data(101.0, client, server, &[PANIC_HELO, b"\r\n"].concat());
        c.data(101.0, server, client, b"250 mx.test\r\n");
        c.session(102.0, "10.0.0.4:40002", "10.0.0.2:25", &body(300), true);
        let (records, summary) = read(&c.bytes(), Limits::default());
        assert_eq!(summary.failed_flows, 1);
        assert_eq!((summary.sessions, summary.transactions), (3, 2));
        let sessions = sessions_of(&records);
        let clients: Vec<&str> = sessions.iter().map(|s| s.orig_h.as_str()).collect();
        // Records come in the order flows ended: the failing one never closed.
        assert_eq!(clients, ["10.0.0.1", "10.0.0.4", "10.0.0.3"]);
        let failed = sessions[2];
        assert_eq!(failed.notes, ["dissection_failed"]);
        assert_eq!((failed.orig_p, failed.resp_p, failed.helo.as_deref()), (40001, 25, None));
    }

    #[test]
    fn an_idle_flow_is_finished_before_the_capture_ends() {
        let mut c = Cap::new();
        c.session(100.0, "10.0.0.1:40000", "10.0.0.2:25", &body(500), false);
        c.session(100.0 + IDLE_TIMEOUT + 60.0, "10.0.0.3:40001", "10.0.0.2:25", &body(500), false);
        let (records, summary) = read(&c.bytes(), Limits::default());
        assert_eq!(summary.idle_expired, 1, "the first flow, not the one open at the end");
        let first = records.first().and_then(|r| match r {
            TapRecord::Session(s) => Some(s.orig_h.clone()),
            TapRecord::Transaction(_) => None,
        });
        assert_eq!(first.as_deref(), Some("10.0.0.1"));
        assert_eq!(summary.transactions, 2, "both read whole");
    }

    #[test]
    fn past_the_total_budget_streams_stop_storing_but_keep_counting() {
        let mut c = Cap::new();
        // Two sessions open at once, 200 kB each, against a 150 kB budget.
        c.session(100.0, "10.0.0.1:40000", "10.0.0.2:25", &body(200_000), false);
        c.session(100.0, "10.0.0.3:40001", "10.0.0.2:25", &body(200_000), false);
        let (records, summary) = read(&c.bytes(), Limits { max_total: 150_000, ..Limits::default() });
        assert!(summary.memory_limited >= 1);
        assert!(summary.peak_stored < 150_000 + 300_000, "{}", summary.peak_stored);
        let sessions = sessions_of(&records);
        assert_eq!(sessions.len(), 2);
        assert!(sessions.iter().any(|s| s.notes.iter().any(|n| n == "stream_truncated_at_limit")));
        assert!(sessions.iter().all(|s| s.orig_bytes > 200_000), "volume counted in full");
    }

    #[test]
    fn closed_connections_leave_no_flow_behind() {
        let mut c = Cap::new();
        for i in 0..50u16 {
            let client = format!("10.0.0.1:{}", 40000 + i);
            c.session(100.0 + f64::from(i), &client, "10.0.0.2:25", &body(300), true);
            // The client's last ACK, and a retransmitted FIN, after both FINs.
            c.send(100.5 + f64::from(i), &client, "10.0.0.2:25", Flags { ack: true, ..Default::default() }, b"");
            c.send(
                100.6 + f64::from(i),
                "10.0.0.2:25",
                &client,
                Flags { fin: true, ack: true, ..Default::default() },
                b"",
            );
        }
        let (records, summary) = read(&c.bytes(), Limits::default());
        assert_eq!(records.len(), 100);
        assert_eq!(summary.peak_flows, 1, "one connection at a time, and nothing lingering");
    }

    /// A data segment of a connection already finished (a late retransmission of its message)
    /// opens a flow that is no session: it yields no record of its own.
    #[test]
    fn a_late_retransmission_after_the_fins_is_no_session() {
        let mut c = Cap::new();
        let client = "10.0.0.1:40000";
        c.session(100.0, client, "10.0.0.2:25", &body(3000), true);
        c.data(100.5, client, "10.0.0.2:25", b"0123456789012345678901234567890123456789\r\n");
        c.session(101.0, "10.0.0.3:40001", "10.0.0.2:25", &body(300), true);
        let (records, summary) = read(&c.bytes(), Limits::default());
        assert_eq!(sessions_of(&records).len(), 2, "{records:#?}");
        assert_eq!((summary.sessions, summary.other_sessions, summary.transactions), (2, 0, 2));
    }

    #[test]
    fn too_many_flows_finish_the_least_recently_active() {
        let mut c = Cap::new();
        for i in 0..40u16 {
            let client = format!("10.0.0.1:{}", 40000 + i);
            c.send(1.0 + f64::from(i) / 100.0, &client, "10.0.0.2:25", Flags { syn: true, ..Default::default() }, b"");
        }
        c.session(2.0, "10.0.0.9:50000", "10.0.0.2:25", &body(300), true);
        let (records, summary) = read(&c.bytes(), Limits { max_flows: 10, ..Limits::default() });
        assert!(summary.evicted >= 30, "{summary:?}");
        assert!(summary.peak_flows <= 10, "{summary:?}");
        let sessions = sessions_of(&records);
        assert_eq!(sessions.len(), 41, "a record for each SYN, and the session");
        let bare = sessions.iter().filter(|s| s.notes == ["no_payload"] && s.orig_h == "10.0.0.1").count();
        assert_eq!(bare, 40, "the unanswered SYNs");
        assert_eq!((summary.sessions, summary.other_sessions), (1, 40));
        assert_eq!(summary.transactions, 1, "the session read whole");
    }

    /// Joined mid-stream: the flow is kept a KiB longer in case its first line was cut, then
    /// dropped like any flow that is not SMTP.
    #[test]
    fn a_flow_joined_mid_stream_that_is_not_smtp_stores_nothing() {
        let mut c = Cap::new();
        let (client, server) = ("10.0.0.1:40000", "10.0.0.2:443");
        c.data(1.0, client, server, &[0x17, 3, 3, 0, 20, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17]);
        for _ in 0..200 {
            c.data(1.0, server, client, &[b'x'; 1400]);
        }
        let (records, summary) = read(&c.bytes(), Limits::default());
        let s = only_session(&records);
        assert_eq!(s.notes, ["mid_stream_start", "not_smtp"]);
        assert_eq!(s.resp_bytes, 200 * 1400);
        assert!(summary.peak_stored < 64 << 10, "{}", summary.peak_stored);
    }

    #[test]
    fn a_flow_that_is_not_smtp_stores_nothing() {
        let mut c = Cap::new();
        let (client, server) = ("10.0.0.1:40000", "10.0.0.2:80");
        c.send(1.0, client, server, Flags { syn: true, ..Default::default() }, b"");
        c.data(1.0, client, server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        c.data(1.0, server, client, b"HTTP/1.1 200 OK\r\n\r\n");
        for _ in 0..200 {
            c.data(1.0, server, client, &[b'x'; 1400]);
        }
        let (records, summary) = read(&c.bytes(), Limits::default());
        let s = only_session(&records);
        assert_eq!(records.len(), 1, "no transaction");
        assert_eq!(s.notes, ["not_smtp"]);
        assert_eq!((s.orig_p, s.resp_p), (40000, 80));
        assert_eq!((s.orig_bytes, s.resp_bytes), (27, 19 + 200 * 1400), "counted, not stored");
        assert_eq!((summary.sessions, summary.other_sessions), (0, 1));
        assert!(summary.peak_stored < 64 << 10, "{}", summary.peak_stored);
    }

    /// A STARTTLS session: greeting, EHLO, STARTTLS answered with `reply`, then a handshake
    /// record each way and `records` application-data records of 16 KiB from the client.
    fn starttls(c: &mut Cap, client: &str, server: &str, reply: &[u8], records: usize) {
        c.send(1.0, client, server, Flags { syn: true, ..Default::default() }, b"");
        c.send(1.0, server, client, Flags { syn: true, ack: true, ..Default::default() }, b"");
        c.data(1.0, server, client, b"220 mx.test ESMTP\r\n");
        c.data(1.0, client, server, b"EHLO c.test\r\n");
        c.data(1.0, server, client, b"250-mx.test\r\n250 STARTTLS\r\n");
        c.data(1.0, client, server, b"STARTTLS\r\n");
        c.data(1.0, server, client, reply);
        // Not parsed as a ClientHello (tls-parser rejects it): a handshake record all the same.
        c.data(1.0, client, server, &[22, 3, 1, 0, 4, 1, 0, 0, 0]);
        c.data(1.0, server, client, &[22, 3, 3, 0, 4, 2, 0, 0, 0]);
        let mut record = vec![23, 3, 3, 0x40, 0x00];
        record.resize(5 + 0x4000, 0xab);
        for _ in 0..records {
            for chunk in record.chunks(1400) {
                c.data(1.0, client, server, chunk);
            }
        }
        let fin = Flags { fin: true, ack: true, ..Default::default() };
        c.send(2.0, client, server, fin, b"");
        c.send(2.0, server, client, fin, b"");
    }

    fn sessions_of(records: &[TapRecord]) -> Vec<&TapSession> {
        records
            .iter()
            .filter_map(|r| match r {
                TapRecord::Session(s) => Some(s),
                TapRecord::Transaction(_) => None,
            })
            .collect()
    }

    fn only_session(records: &[TapRecord]) -> &TapSession {
        let sessions = sessions_of(records);
        assert_eq!(sessions.len(), 1);
        sessions[0]
    }

    #[test]
    fn the_tls_part_of_a_starttls_session_is_read_as_it_comes_not_stored() {
        let mut c = Cap::new();
        starttls(&mut c, "10.0.0.1:40000", "10.0.0.2:25", b"220 go ahead\r\n", 200);
        let (records, summary) = read(&c.bytes(), Limits::default());
        let s = only_session(&records);
        assert!(s.starttls_used);
        assert_eq!((s.tls_records_orig, s.tls_records_resp), (201, 1));
        assert_eq!(s.tls_app_bytes_orig, 200 * (5 + 0x4000));
        assert!(s.orig_bytes > 3_000_000);
        // 3.2 MB went by; what was stored is the plaintext and the first records.
        assert!(summary.peak_stored < 256 << 10, "{}", summary.peak_stored);
        assert!(s.notes.is_empty(), "{:?}", s.notes);
    }

    #[test]
    fn tls_after_a_refused_starttls_is_stored_and_read_as_before() {
        let mut c = Cap::new();
        starttls(&mut c, "10.0.0.1:40000", "10.0.0.2:25", b"454 not now\r\n", 20);
        let (records, summary) = read(&c.bytes(), Limits::default());
        let s = only_session(&records);
        // The server refused: the client's records are read as (junk) command lines.
        assert!(!s.starttls_used);
        assert_eq!(s.starttls_reply, Some(454));
        assert!(summary.peak_stored > 20 * 0x4000, "{}", summary.peak_stored);
    }

    /// Captures with lost, reordered and repeated segments (in the plaintext, at the turn to TLS
    /// and inside it): reading TLS as it comes gives the records that storing it gives.
    #[test]
    fn reading_tls_as_it_comes_changes_no_record_even_with_loss_and_reordering() {
        let mut c = Cap::new();
        for i in 0..12u16 {
            let client = format!("10.0.0.{}:{}", 1 + i % 3, 40000 + i);
            let reply: &[u8] = if i % 5 == 4 { b"454 not now\r\n" } else { b"220 go ahead\r\n" };
            starttls(&mut c, &client, "10.0.0.9:25", reply, 3 + usize::from(i));
            c.session(3.0 + f64::from(i), &format!("10.0.1.1:{}", 41000 + i), "10.0.0.9:25", &body(20_000), true);
        }
        let whole = c.bytes();
        let mut frames = Vec::new();
        let mut reader = crate::pcapfile::Reader::new(&whole[..]).expect("capture");
        while let Ok(Some(p)) = reader.next_packet() {
            frames.push((p.ts, p.data.to_vec()));
        }
        for (step, seed) in [(0usize, 0usize), (7, 1), (11, 3), (13, 5), (29, 2)] {
            let mut perturbed = frames.clone();
            if let Some(every) = std::num::NonZeroUsize::new(step) {
                let mut i = seed;
                while i + 1 < perturbed.len() {
                    match (i / every) % 3 {
                        0 => perturbed.swap(i, i + 1),
                        1 => {
                            perturbed.remove(i);
                        }
                        _ => perturbed.insert(i, perturbed[i].clone()),
                    }
                    i += step;
                }
            }
            let mut w = PcapWriter::new(Vec::new(), LinkKind::Ethernet).expect("header");
            // Each frame a millisecond after the one before (the order they are written in), so
            // that the TLS records' times tell the frames apart.
            for (i, (ts, f)) in perturbed.iter().enumerate() {
                w.write_frame(ts + i as f64 * 0.001, f).expect("frame");
            }
            let bytes = w.into_inner();
            let (skipped, _) = read(&bytes, Limits::default());
            let (stored, _) = read(&bytes, Limits { skip_tls: false, ..Limits::default() });
            assert_eq!(skipped, stored, "perturbed every {step} frames");
            let tls = stored
                .iter()
                .filter(|r| matches!(r, TapRecord::Session(s) if s.starttls_used && s.tls_records_orig > 1))
                .count();
            assert!(tls >= 3, "{tls} sessions went into TLS with records read, every {step} frames");
            let dated = stored
                .iter()
                .any(|r| matches!(r, TapRecord::Session(s) if s.tls_app_records.windows(2).any(|w| w[0].ts < w[1].ts)));
            // Unperturbed, the records are read whole (perturbed, gaps may end the walks early).
            assert!(dated || step > 0, "records of a session at different times");
        }
    }
}
