//! Reading a capture file end to end: frames to segments, segments to flows, flows to records.
//!
//! Files are read by [`crate::pcapfile`] (classic pcap and pcapng, from a file or from memory),
//! so a corrupt record is reported at its byte offset in either format. A flow is SMTP when it
//! starts like SMTP, possibly after an HTTP CONNECT tunnel head (or, joined mid-stream, has an
//! SMTP line early on), or is implicit TLS on port 465. Every flow yields a session record; one
//! that is not SMTP is noted so.

use std::io::Read;
use std::ops::ControlFlow;
use std::path::Path;

use records::{TapRecord, TapSession, TapTransaction};

use crate::defrag::DefragStats;
use crate::error::TapError;
use crate::pcapfile::Reader;

mod classify;
mod engine;
mod finish;
mod flow;
#[cfg(test)]
mod tests;

pub use classify::tunnel_prefix;
use engine::dissect_with_limits;

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

/// Counts of a streamed read ([`stream_reader`]): the records went to the callback.
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

/// Reads a pcap or pcapng file. Fails only when the file cannot be opened, is not a capture, or
/// its link type is not supported; a corrupt tail ends the read with `error` set and the records
/// found before it kept. Records are sorted by time; memory grows with them: for captures of any
/// size, [`stream_file`] streams them instead.
pub fn dissect_file(path: &Path) -> Result<Dissection, TapError> {
    collect(|on_record| stream_file(path, Options::default(), |r, _| on_record(r)))
}

/// [`dissect_file`] over capture bytes in memory; `name` stands for the path in errors.
pub fn dissect_bytes(name: &str, bytes: &[u8]) -> Result<Dissection, TapError> {
    dissect_reader(name, bytes)
}

/// [`dissect_file`] over any byte source.
pub fn dissect_reader<R: Read>(name: &str, input: R) -> Result<Dissection, TapError> {
    collect(|on_record| stream_reader(name, input, Options::default(), |r, _| on_record(r)))
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

/// What a streamed read hands on, and when: the one set of choices of [`stream_file`] and
/// [`stream_reader`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// The input is a live byte stream (a capture in progress, a pipe from tcpdump): each
    /// session's records are handed on as soon as the session ends, not when more packets come.
    /// Slower on a file, where reading on while a finished flow is dissected pays.
    pub live: bool,
    /// Hand each transaction's whole message with it, dot-unstuffed, as the eavesdropper
    /// reassembled it (the bytes whose sha256 the transaction reports; `None` when it was not
    /// seen whole), as dsniff's mailsnarf does. Otherwise messages are dropped once hashed.
    pub messages: bool,
}

impl Options {
    fn limits(self) -> Limits {
        Limits { eager: self.live, keep_messages: self.messages, ..Limits::default() }
    }
}

/// Reads a capture file and hands each record to `on_record` as soon as its flow ends (FINs
/// from both sides or a RST, a new connection's SYN on the same ports, idle for
/// [`IDLE_TIMEOUT`] seconds of capture time, or the end of the file): a session record, then
/// that session's transactions (each with its message under [`Options::messages`]), in the
/// order the flows ended. A flow's bytes count against [`MAX_TOTAL`] until its records are
/// handed on, so memory is bounded by the flows open or waiting at once, not by the size of the
/// file. `on_record` returns `Break` to stop reading.
pub fn stream_file(
    path: &Path,
    options: Options,
    on_record: impl FnMut(TapRecord, Option<Vec<u8>>) -> ControlFlow<()>,
) -> Result<ReadSummary, TapError> {
    let (name, file) = open_capture(path)?;
    dissect_with_limits(&name, Reader::from_file(file), options.limits(), on_record)
}

/// [`stream_file`] over any byte source; `name` stands for the path in errors.
pub fn stream_reader<R: Read>(
    name: &str,
    input: R,
    options: Options,
    on_record: impl FnMut(TapRecord, Option<Vec<u8>>) -> ControlFlow<()>,
) -> Result<ReadSummary, TapError> {
    dissect_with_limits(name, Reader::new(input), options.limits(), on_record)
}

/// The capture file, opened, with its name for errors.
fn open_capture(path: &Path) -> Result<(String, std::fs::File), TapError> {
    let name = path.display().to_string();
    // Opening a directory succeeds on Unix and then reads as an empty file: say what it is.
    if path.is_dir() {
        return Err(TapError::Directory { path: name });
    }
    let file = std::fs::File::open(path).map_err(|source| TapError::Open { path: name.clone(), source })?;
    Ok((name, file))
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
    /// Read the TLS of STARTTLS sessions as it comes ([`Flow::skip_tls_when_started`](flow::Flow::skip_tls_when_started)); off in
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

fn unsupported(path: &str, linktype: u32) -> TapError {
    TapError::LinkType { path: path.into(), linktype: linktype as i32 }
}
