use std::collections::HashMap;
use std::net::SocketAddr;

use super::engine::workers;
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
        c.send(100.6 + f64::from(i), "10.0.0.2:25", &client, Flags { fin: true, ack: true, ..Default::default() }, b"");
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
