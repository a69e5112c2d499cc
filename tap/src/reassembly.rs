//! TCP reassembly of one direction of a flow.
//!
//! Overlap policy: first data wins (the BSD policy, Zeek's default). Bytes already delivered are
//! never replaced by a retransmission with other content; among buffered out-of-order segments
//! the first one received for a range is kept. Memory is bounded: out-of-order data beyond
//! `max_pending` forces a gap (the missing bytes are recorded and skipped), and the stream stops
//! storing (but keeps counting) past `max_stream`, or from the moment the caller says so
//! ([`HalfStream::stop_storing`], when the capture's total budget is spent).

use std::collections::BTreeMap;

use crate::tls::TlsSummary;
use crate::tls_stream::TlsWalker;

/// A TLS record found after a line end only this early in a stream is a candidate for the start
/// of STARTTLS (the plaintext before it is read twice when it is checked: keep that small).
const TLS_CANDIDATE_BEFORE: usize = 64 << 10;

/// The TLS part of a stream, read as it arrives instead of stored ([`HalfStream::skip_tls_from`]).
#[derive(Debug)]
struct TlsTail {
    /// Index into `data` where it starts (`data` ends there).
    at: usize,
    /// Bytes from `at` on that storing would have kept (the walker stops counting at a gap).
    kept: usize,
    walker: TlsWalker,
}

/// Bytes that never arrived, at `at` (an offset in the reassembled stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub at: u64,
    pub len: u64,
}

#[derive(Debug)]
pub struct HalfStream {
    /// Sequence number of the next byte expected; `None` until the first SYN or segment.
    next_seq: Option<u32>,
    /// The reassembled bytes (up to `max_stream`).
    pub data: Vec<u8>,
    /// Bytes delivered in order, gaps included (the stream offset of `next_seq`).
    pub delivered: u64,
    /// Out-of-order segments by stream offset, with their capture time.
    pending: BTreeMap<u64, (Vec<u8>, f64)>,
    pending_bytes: usize,
    pub gaps: Vec<Gap>,
    /// (stream offset, time) at each segment that added data: maps offsets to capture times.
    pub marks: Vec<(u64, f64)>,
    /// A SYN was seen: the stream starts at its beginning.
    pub saw_syn: bool,
    pub fin: bool,
    /// Bytes carried by payload-bearing segments, retransmissions included (wire volume).
    pub wire_bytes: u64,
    pub retransmitted: u64,
    pub first_ts: Option<f64>,
    pub last_ts: f64,
    max_pending: usize,
    max_stream: usize,
    /// Where a TLS record starts right after a line end, if it does in the first
    /// [`TLS_CANDIDATE_BEFORE`] bytes: maybe where STARTTLS took effect.
    pub tls_candidate: Option<usize>,
    tls: Option<Box<TlsTail>>,
}

impl HalfStream {
    pub fn new(max_pending: usize, max_stream: usize) -> Self {
        Self {
            next_seq: None,
            data: Vec::new(),
            delivered: 0,
            pending: BTreeMap::new(),
            pending_bytes: 0,
            gaps: Vec::new(),
            marks: Vec::new(),
            saw_syn: false,
            fin: false,
            wire_bytes: 0,
            retransmitted: 0,
            first_ts: None,
            last_ts: 0.0,
            max_pending,
            max_stream,
            tls_candidate: None,
            tls: None,
        }
    }

    /// Bytes kept of the stream: stored in `data`, or read as TLS without being stored.
    fn kept(&self) -> usize {
        self.data.len() + self.tls.as_ref().map_or(0, |t| t.kept)
    }

    /// True when the stored data lost bytes to the stream limit.
    pub fn truncated(&self) -> bool {
        self.delivered > self.kept() as u64 + self.gaps.iter().map(|g| g.len).sum::<u64>()
    }

    pub fn syn(&mut self, seq: u32) {
        if self.next_seq.is_none() {
            self.next_seq = Some(seq.wrapping_add(1));
            self.saw_syn = true;
        }
    }

    pub fn segment(&mut self, seq: u32, payload: &[u8], ts: f64) {
        self.first_ts.get_or_insert(ts);
        self.last_ts = ts;
        if payload.is_empty() {
            return;
        }
        self.wire_bytes += payload.len() as u64;
        let next = *self.next_seq.get_or_insert(seq);
        if seq == next && self.pending.is_empty() {
            // In order with nothing buffered, the common case: straight to the stream.
            self.append(payload, ts);
            return;
        }
        // Offsets relative to the next expected byte, as a signed 32-bit distance: correct across
        // sequence wrap-around and for streams longer than 4 GiB.
        let rel = seq.wrapping_sub(next) as i32 as i64;
        let off = self.delivered as i64 + rel;
        let end = off + payload.len() as i64;
        if end <= self.delivered as i64 {
            self.retransmitted += payload.len() as u64;
            return;
        }
        // Bytes before `delivered` were delivered already: first data wins, drop them.
        let skip = (self.delivered as i64 - off).max(0) as usize;
        self.retransmitted += skip as u64;
        // `end > delivered` above: some of the payload is new, so `skip` is within it.
        let Some(data) = payload.get(skip..) else { return };
        let start = self.delivered + (off - self.delivered as i64).max(0) as u64;
        let end = start + data.len() as u64;
        // Ranges already buffered were received first and win too: keep only the uncovered pieces.
        let mut covered: Vec<(u64, u64)> = Vec::new();
        if let Some((&o, (b, _))) = self.pending.range(..start).next_back()
            && o + b.len() as u64 > start
        {
            covered.push((o, o + b.len() as u64));
        }
        covered.extend(self.pending.range(start..end).map(|(&o, (b, _))| (o, o + b.len() as u64)));
        let mut at = start;
        let mut kept = 0usize;
        for (o, e) in covered.into_iter().chain(std::iter::once((end, end))) {
            if o > at
                && let Some(piece) = data.get((at - start) as usize..(o.min(end) - start) as usize)
            {
                kept += piece.len();
                self.pending_bytes += piece.len();
                self.pending.insert(at, (piece.to_vec(), ts));
            }
            at = at.max(e);
        }
        self.retransmitted += (data.len() - kept) as u64;
        self.drain_pending();
        // Out-of-order data past the budget: give up on the hole, as a real tap under load
        // must, and record it.
        while self.pending_bytes > self.max_pending && !self.pending.is_empty() {
            self.skip_to_pending();
        }
    }

    /// Memory held (bytes, approximately): stored data, buffered segments, time marks, gaps.
    pub fn stored_bytes(&self) -> usize {
        self.data.capacity()
            + self.pending_bytes
            + self.marks.capacity() * std::mem::size_of::<(u64, f64)>()
            + self.gaps.capacity() * std::mem::size_of::<Gap>()
            + self.tls.as_ref().map_or(0, |t| t.walker.held_bytes())
    }

    /// From data index `at` on, the stream is TLS (the dissector will only walk its records):
    /// reads what is stored from there as TLS, drops it, and reads what comes next as it comes
    /// instead of storing it. What the dissector then gets from [`Self::tls_summary`] is what
    /// walking the stored bytes would have given, up to the stream limit and the first gap.
    /// Refused (false) after a gap, which would end the walk before any later byte.
    pub fn skip_tls_from(&mut self, at: usize) -> bool {
        if self.tls.is_some() || at > self.data.len() || !self.gaps.is_empty() {
            return false;
        }
        let mut walker = TlsWalker::new();
        // Fed as the segments brought the bytes, each with its time, so that records are dated
        // as storing them would date them (`time_at`; no gaps here, so offsets are indices).
        let first = self.marks.partition_point(|(o, _)| *o <= at as u64).saturating_sub(1);
        let mut from = at;
        for (i, &(_, ts)) in self.marks.iter().enumerate().skip(first) {
            let to = self.marks.get(i + 1).map_or(self.data.len(), |(o, _)| (*o as usize).min(self.data.len()));
            if to > from
                && let Some(piece) = self.data.get(from..to)
            {
                walker.feed(piece, ts);
                from = to;
            }
        }
        if let Some(rest) = self.data.get(from..)
            && !rest.is_empty()
        {
            walker.feed(rest, self.first_ts.unwrap_or(0.0));
        }
        let kept = self.data.len() - at;
        self.data.truncate(at);
        self.data.shrink_to_fit();
        self.tls = Some(Box::new(TlsTail { at, kept, walker }));
        true
    }

    /// The walk of the TLS records from data index `at`, when the stream was read as TLS from
    /// there ([`Self::skip_tls_from`]).
    pub fn tls_summary(&self, at: usize) -> Option<TlsSummary> {
        self.tls.as_ref().filter(|t| t.at == at).map(|t| t.walker.summary())
    }

    /// Whether the stream from `at` on was read as TLS rather than stored.
    pub fn tls_skipped_at(&self) -> Option<usize> {
        self.tls.as_ref().map(|t| t.at)
    }

    /// Stores nothing more: later bytes are counted only, as past `max_stream`, and what is
    /// buffered out of order is delivered now, after recorded gaps (its holes are given up).
    pub fn stop_storing(&mut self) {
        self.max_stream = self.kept();
        self.finish();
        self.data.shrink_to_fit();
        if let Some(t) = self.tls.as_mut() {
            // Fed no more: the record and handshake message it holds will never complete.
            t.walker.release();
        }
    }

    /// Drops the stored bytes and stores nothing more (the flow is not one the tap reads); the
    /// counts go on.
    pub fn discard(&mut self) {
        self.finish();
        self.data = Vec::new();
        self.marks = Vec::new();
        self.tls = None;
        self.max_stream = 0;
    }

    pub fn set_fin(&mut self) {
        self.fin = true;
    }

    /// End of input: whatever is still out of order is delivered after recorded gaps.
    pub fn finish(&mut self) {
        while !self.pending.is_empty() {
            self.skip_to_pending();
        }
    }

    fn skip_to_pending(&mut self) {
        if let Some((&first, _)) = self.pending.iter().next() {
            if first > self.delivered {
                let len = first - self.delivered;
                self.gaps.push(Gap { at: self.delivered, len });
                if let Some(t) = self.tls.as_mut() {
                    // The walk of stored bytes would end here.
                    t.walker.freeze();
                }
                self.advance(len);
            }
            self.drain_pending();
        }
    }

    /// Delivers the buffered segments that now follow the delivered bytes, each with the time
    /// it was captured (so a command after a hole keeps its own time).
    fn drain_pending(&mut self) {
        while let Some((&off, _)) = self.pending.iter().next() {
            if off > self.delivered {
                break;
            }
            let Some((bytes, ts)) = self.pending.remove(&off) else { break };
            self.pending_bytes -= bytes.len();
            let end = off + bytes.len() as u64;
            // `off <= delivered < end`: the bytes from `delivered` on are new.
            if end > self.delivered
                && let Some(new) = bytes.get((self.delivered - off) as usize..)
            {
                self.append(new, ts);
            } else {
                self.retransmitted += bytes.len() as u64;
            }
        }
    }

    fn append(&mut self, bytes: &[u8], ts: f64) {
        let room = self.max_stream.saturating_sub(self.kept());
        if room > 0
            && let Some(t) = self.tls.as_mut()
        {
            // At most `room` bytes: all of them when they fit.
            let take = bytes.get(..room).unwrap_or(bytes);
            t.kept += take.len();
            t.walker.feed(take, ts);
        } else if room > 0 {
            if self.tls_candidate.is_none()
                && self.data.len() < TLS_CANDIDATE_BEFORE
                && self.data.last() == Some(&b'\n')
                && bytes.starts_with(&[0x16, 0x03])
            {
                self.tls_candidate = Some(self.data.len());
            }
            // Times are only asked of stored bytes: no marks once storing stopped.
            self.marks.push((self.delivered, ts));
            let take = bytes.get(..room).unwrap_or(bytes);
            if self.data.capacity() - self.data.len() < take.len() {
                // Grow fourfold rather than twofold while the stream is small: each reallocation
                // copies the stream so far, and copying is most of what reassembly costs. Large
                // streams double, so that reserved but unused memory stays modest.
                let cap = self.data.capacity();
                let grown = if cap < 256 << 10 { cap * 4 } else { cap * 2 };
                let want = grown.max(self.data.len() + take.len()).max(16 << 10).min(self.max_stream);
                self.data.reserve_exact(want.max(self.data.len() + take.len()) - self.data.len());
            }
            self.data.extend_from_slice(take);
        }
        self.advance(bytes.len() as u64);
    }

    fn advance(&mut self, n: u64) {
        self.delivered += n;
        if let Some(s) = self.next_seq.as_mut() {
            *s = s.wrapping_add(n as u32);
        }
    }

    /// Time of the byte at `offset`.
    pub fn time_at(&self, offset: u64) -> f64 {
        // The last mark at or before `offset`; none before the first mark.
        let i = self.marks.partition_point(|(o, _)| *o <= offset);
        match i.checked_sub(1).and_then(|last| self.marks.get(last)) {
            Some(&(_, ts)) => ts,
            None => self.first_ts.unwrap_or(0.0),
        }
    }

    /// Whether any gap lies within `[from, to)` of the stream.
    pub fn gap_within(&self, from: u64, to: u64) -> bool {
        self.gaps.iter().any(|g| g.at < to && g.at + g.len > from)
    }

    /// Maps a stream offset to an index into `data` (gaps occupy no bytes there).
    pub fn data_index(&self, offset: u64) -> usize {
        let before: u64 = self.gaps.iter().filter(|g| g.at + g.len <= offset).map(|g| g.len).sum();
        (offset - before) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream() -> HalfStream {
        HalfStream::new(1 << 20, 1 << 20)
    }

    #[test]
    fn in_order_out_of_order_and_retransmission() {
        let mut s = stream();
        s.syn(999);
        s.segment(1006, b"world", 2.0);
        s.segment(1000, b"hello ", 1.0);
        s.segment(1000, b"HELLO ", 3.0); // retransmission with other content: first wins
        s.finish();
        assert_eq!(s.data, b"hello world");
        assert!(s.gaps.is_empty());
        assert_eq!(s.retransmitted, 6);
    }

    #[test]
    fn overlap_keeps_first_data() {
        let mut s = stream();
        s.syn(0);
        s.segment(1, b"abcd", 1.0);
        s.segment(3, b"XXef", 2.0);
        assert_eq!(s.data, b"abcdef");
    }

    #[test]
    fn buffered_bytes_received_first_win_over_later_overlaps() {
        let mut s = stream();
        s.syn(0);
        s.segment(5, b"EFGH", 1.0); // out of order, buffered
        s.segment(3, b"cdXXXXij", 2.0); // overlaps the buffered range with other bytes
        s.segment(1, b"AB", 3.0); // fills the hole: all in order now
        s.segment(1, b"zzzzzzzzzz", 4.0); // a late retransmission of everything
        s.finish();
        assert_eq!(s.data, b"ABcdEFGHij");
        assert!(s.gaps.is_empty());
        assert_eq!(s.retransmitted, 4 + 10);
        // Each piece keeps the time it was captured at.
        assert_eq!((s.time_at(0), s.time_at(2), s.time_at(4), s.time_at(8)), (3.0, 2.0, 1.0, 2.0));
    }

    #[test]
    fn gap_is_recorded_at_finish() {
        let mut s = stream();
        s.syn(0);
        s.segment(1, b"ab", 1.0);
        s.segment(6, b"fg", 2.0);
        s.finish();
        assert_eq!(s.data, b"abfg");
        assert_eq!(s.gaps, vec![Gap { at: 2, len: 3 }]);
        assert_eq!(s.data_index(5), 2);
        assert!(s.gap_within(0, 4));
    }

    #[test]
    fn sequence_wraps() {
        let mut s = stream();
        s.syn(u32::MAX - 2);
        s.segment(u32::MAX - 1, b"ab", 1.0);
        s.segment(0, b"cd", 1.0);
        assert_eq!(s.data, b"abcd");
    }

    /// A stream read as TLS that stops storing (the tap's budget is spent) lets go of the
    /// handshake message it was putting together: it will never be fed its end.
    #[test]
    fn stopping_storing_lets_go_of_a_handshake_being_reassembled() {
        let mut s = HalfStream::new(1 << 20, 64 << 20);
        s.syn(0);
        s.segment(1, b"STARTTLS\r\n", 1.0);
        assert!(s.skip_tls_from(10));
        // The first 500 kB of a Certificate message that says it is 1 MB long.
        let mut tls = Vec::new();
        tls.extend_from_slice(&[22, 3, 3, 0x3e, 0x80, 11, 0x0f, 0x42, 0x40]);
        tls.resize(tls.len() + 16_000 - 4, 0);
        let record = tls.clone();
        for _ in 1..32 {
            tls.extend_from_slice(&[22, 3, 3, 0x3e, 0x80]);
            tls.resize(tls.len() + 16_000, 0);
        }
        assert_eq!(tls.len(), 32 * record.len());
        s.segment(11, &tls, 2.0);
        assert!(s.stored_bytes() > 500_000, "{}", s.stored_bytes());
        s.stop_storing();
        assert!(s.stored_bytes() < 1000, "{}", s.stored_bytes());
        let summary = s.tls_summary(10).expect("read as TLS");
        assert_eq!((summary.records, summary.unparsed), (32, 0));
    }

    #[test]
    fn pending_budget_forces_gap() {
        let mut s = HalfStream::new(4, 1 << 20);
        s.syn(0);
        s.segment(11, b"xyz", 1.0);
        s.segment(21, b"uvw", 1.0);
        assert_eq!(s.gaps.first(), Some(&Gap { at: 0, len: 10 }));
    }
}
