//! Flows: a TCP connection's key, its two directions and what is kept of each while it is read.

use std::collections::HashMap;
use std::net::SocketAddr;

use records::TapSession;

use super::classify::{client_side, looks_smtp, starts_connect};
use super::{CLASSIFY_BYTES, MAX_PENDING, MAX_STREAM, MID_STREAM_LOOK, TLS_TRIES};
use crate::reassembly::HalfStream;
use crate::smtp::{SessionInput, dissect_session};

/// A flow's two endpoints, the lower first. Packed as integers because it is hashed and compared
/// for every packet: `SocketAddr`'s own `Hash` writes an address as a byte slice, several times
/// slower. Orders as the pair of `SocketAddr`s would (family, address, port; IPv4 first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Key {
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
    pub(super) fn of(addr: SocketAddr) -> Self {
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
pub(super) type FlowMap<V> = HashMap<Key, V, foldhash::fast::RandomState>;

/// A direction of a flow: what its `first` endpoint sent, or what its `second` sent. State kept
/// per direction is a `[T; 2]` read through [`Dir::of`], so no index can fall outside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dir {
    First,
    Second,
}

impl Dir {
    pub(super) fn of<T>(self, pair: &[T; 2]) -> &T {
        let [first, second] = pair;
        match self {
            Dir::First => first,
            Dir::Second => second,
        }
    }

    pub(super) fn of_mut<T>(self, pair: &mut [T; 2]) -> &mut T {
        let [first, second] = pair;
        match self {
            Dir::First => first,
            Dir::Second => second,
        }
    }

    /// This direction's element of `pair`, then the other direction's.
    pub(super) fn and_other<T>(self, pair: &[T; 2]) -> (&T, &T) {
        let [first, second] = pair;
        match self {
            Dir::First => (first, second),
            Dir::Second => (second, first),
        }
    }
}

pub(super) struct Flow {
    /// The endpoint that sent the first packet seen; `streams[0]` is what it sent.
    pub(super) first: SocketAddr,
    pub(super) second: SocketAddr,
    pub(super) streams: [HalfStream; 2],
    /// Which direction sent a SYN without ACK: the client.
    pub(super) syn_from: Option<Dir>,
    /// Initial sequence number of each direction, from its first SYN.
    pub(super) isn: [Option<u32>; 2],
    pub(super) fins: [bool; 2],
    /// The connection ended with a RST (from either side) rather than FINs or a timeout.
    pub(super) reset: bool,
    /// Capture time of the latest packet (the largest seen).
    pub(super) last_seen: f64,
    /// Bytes this flow holds, as last accounted in the total.
    pub(super) stored: usize,
    /// Known not to be SMTP: nothing is stored and no record is made.
    pub(super) ignored: bool,
    /// Whether the SMTP-or-not question was settled early.
    pub(super) classified: bool,
    /// An IP fragment of this flow overlapped earlier bytes with other content.
    pub(super) frag_overlap: bool,
    /// Times [`Flow::skip_tls_when_started`] dissected the flow so far.
    pub(super) tls_tries: u8,
    /// The VLAN ids its packets carried (part of the flow's key).
    pub(super) vlans: [u16; 2],
    /// Opened by a packet of a connection already finished (a late retransmission): not a
    /// session of its own unless it turns out to be SMTP.
    pub(super) after_close: bool,
}

impl Flow {
    pub(super) fn new(first: SocketAddr, second: SocketAddr, vlans: [u16; 2]) -> Self {
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

    pub(super) fn stored_bytes(&self) -> usize {
        self.streams[0].stored_bytes() + self.streams[1].stored_bytes()
    }

    /// Whether a SYN without ACK with initial sequence number `isn` starts a new connection
    /// on this flow's ports rather than retransmitting this flow's own SYN: it does when the
    /// flow saw a FIN from either side (a connection being closed opens nothing again; RSTs
    /// finish a flow at once), or when this flow's client SYN, if any was seen, had another
    /// sequence number (a flow seen without its SYN, mid-stream, is always replaced).
    pub(super) fn reused_by(&self, isn: u32) -> bool {
        let client_isn = self.syn_from.and_then(|d| *d.of(&self.isn));
        self.fins[0] || self.fins[1] || client_isn != Some(isn)
    }

    /// A packet that belongs to an earlier connection on the same ports, seen after this
    /// flow's SYN: one whose sequence number lies before its direction's SYN (checked in the
    /// stream's first GiB; ISNs of a
    /// reused 4-tuple grow, RFC 6528 and Linux's TIME-WAIT reuse rule), or a bare ACK/FIN from
    /// the side that has not answered the SYN yet. Data is never judged stale by the second
    /// rule: a capture that lost the SYN-ACK keeps the server's bytes.
    pub(super) fn stale(&self, dir: Dir, seg: &crate::decode::Segment<'_>) -> bool {
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
    /// will ([`finish`](super::finish::finish) decides on the same prefixes): it is dropped now rather than stored to
    /// its end. HTTP CONNECT heads are left to the end (the tunnelled start comes later).
    pub(super) fn classify_early(&mut self) {
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
    /// record right after a line end, the session so far is dissected as [`finish`](super::finish::finish) would; if
    /// the dissector turns to TLS exactly there, it will at the end too (what it read before
    /// does not change), and from there on both streams are read as TLS records as they arrive
    /// instead of stored. Anything else (another turn, HTTP CONNECT, implicit TLS, gaps) leaves
    /// the flow stored as before.
    pub(super) fn skip_tls_when_started(&mut self) {
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

pub(super) fn key(a: SocketAddr, b: SocketAddr, vlans: [u16; 2]) -> Key {
    let (a, b) = (Endpoint::of(a), Endpoint::of(b));
    if a <= b { Key { a, b, vlans } } else { Key { a: b, b: a, vlans } }
}

pub(super) fn first_ts(f: &Flow) -> f64 {
    let [a, b] = &f.streams;
    a.first_ts.unwrap_or(f64::MAX).min(b.first_ts.unwrap_or(f64::MAX))
}
