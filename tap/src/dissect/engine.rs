//! The streamed read: one thread reads and reassembles packets into flows, a pool of threads
//! dissects the finished ones, and their records are handed on in the order the flows ended.

use std::io::Read;
use std::net::SocketAddr;
use std::ops::ControlFlow;

use records::{TapRecord, TapSession, TapTransaction};

use super::finish::{bare_session, finish};
use super::flow::{Dir, Flow, FlowMap, Key, first_ts, key};
use super::{IDLE_SWEEP, Limits, ReadSummary, TIME_WAIT, unsupported};
use crate::decode::{Link, Skip, decode};
use crate::defrag::Defrag;
use crate::error::TapError;
use crate::pcapfile::{ReadError, Reader};

/// Flows waiting for a dissecting thread.
const QUEUE: usize = 16;

/// Dissecting threads: at least two, even on two cores, so that the reading thread and the
/// dissecting ones share both cores whichever side is heavier at the moment (SHA-256 and MIME
/// decoding of a large message, or many small packets); more than four would wait on the one
/// reading thread.
pub(super) fn workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 4)
}

/// Dissecting a flow takes memory of the order of its stored bytes again (the unstuffed message,
/// the decoded attachments). Flows storing more than this are dissected one at a time: the pool
/// holds at most one such flow's working memory, plus that of at most three smaller ones.
const BIG_FLOW: usize = 4 << 20;

/// What the worker made of a finished flow: the session, its transactions, and for each
/// transaction its whole message (kept only when the caller asked for messages).
pub(super) type Finished = (TapSession, Vec<TapTransaction>, Vec<Option<Vec<u8>>>);

/// A flow dissected by the worker: its records (`None`: not SMTP) and the bytes it held.
struct Done {
    records: Option<Finished>,
    stored: usize,
    /// Its dissection panicked.
    failed: bool,
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

pub(super) fn dissect_with_limits<R: Read>(
    name: &str,
    reader: Result<Reader<R>, ReadError>,
    limits: Limits,
    on_record: impl FnMut(TapRecord, Option<Vec<u8>>) -> ControlFlow<()>,
) -> Result<ReadSummary, TapError> {
    let mut reader = match reader {
        Ok(r) => r,
        // A capture whose first record is bad is still a capture, with no records.
        Err(e @ (ReadError::Corrupt { .. } | ReadError::Read { .. })) => {
            return Ok(ReadSummary { error: Some(TapError::from_read(name, e)), ..Default::default() });
        }
        Err(e) => return Err(TapError::from_read(name, e)),
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

/// The packet loop of [`stream_reader`](super::stream_reader).
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
            Err(e) => {
                tap.summary.error = Some(TapError::from_read(name, e));
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
