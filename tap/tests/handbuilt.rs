//! Hand-built captures: each test describes a TCP conversation segment by segment with the
//! [`Conv`] helper below, writes it as a pcap with `tap::pcapwrite` into a temporary directory,
//! runs `tap::dissect_file` on it and checks the records exactly. No binary fixture: the test is
//! the capture's description.

use std::net::SocketAddr;
use std::path::PathBuf;

use records::{TapSession, TapTransaction};
use tap::pcapwrite::{Flags, LinkKind, PcapWriter};

/// One TCP connection, client and server, written segment by segment.
///
/// `client`/`server` send bytes in order (one segment each, sequence numbers tracked);
/// `client_segment` builds a segment at an explicit offset without sending it, to send later
/// with `send` (reordering), twice (retransmission), with other bytes (overlap), or never (a
/// gap). Every segment is 1 ms after the previous one.
struct Conv {
    link: LinkKind,
    client: SocketAddr,
    server: SocketAddr,
    /// Initial sequence numbers; offsets are relative to the first data byte.
    c_isn: u32,
    s_isn: u32,
    c_next: u32,
    s_next: u32,
    ts: f64,
    frames: Vec<(f64, Vec<u8>)>,
}

/// Which IP fragment of a segment to send (see [`Conv::client_fragmented`]).
#[derive(Clone, Copy)]
enum Frag {
    Real(usize),
    Forged(usize),
}

/// A segment built but not yet sent.
struct Seg {
    from_client: bool,
    offset: u32,
    payload: Vec<u8>,
}

impl Conv {
    /// A connection with its three-way handshake.
    fn new(link: LinkKind) -> Self {
        Self::between(link, "192.0.2.1:40001", "192.0.2.25:25")
    }

    /// The same between other addresses (IPv6 ones, say).
    fn between(link: LinkKind, client: &str, server: &str) -> Self {
        // The server's ISN wraps during the session.
        Self::opened(link, client, server, 1000, 0xffff_fff0, 1_700_000_000.0)
    }

    /// A connection with the given initial sequence numbers, its SYN 1 ms after `ts`.
    fn opened(link: LinkKind, client: &str, server: &str, c_isn: u32, s_isn: u32, ts: f64) -> Self {
        let mut c = Self {
            link,
            client: client.parse().expect("addr"),
            server: server.parse().expect("addr"),
            c_isn,
            s_isn,
            c_next: 0,
            s_next: 0,
            ts,
            frames: Vec::new(),
        };
        c.raw(true, c.c_isn, 0, Flags { syn: true, ..Default::default() }, b"");
        c.raw(false, c.s_isn, c.c_isn + 1, Flags { syn: true, ack: true, ..Default::default() }, b"");
        c.raw(true, c.c_isn + 1, c.s_isn.wrapping_add(1), ack(), b"");
        c
    }

    fn raw(&mut self, from_client: bool, seq: u32, ack_no: u32, flags: Flags, payload: &[u8]) {
        let frame = self.frame(from_client, seq, ack_no, flags, payload);
        self.push(frame);
    }

    fn frame(&self, from_client: bool, seq: u32, ack_no: u32, flags: Flags, payload: &[u8]) -> Vec<u8> {
        let (src, dst) = if from_client { (self.client, self.server) } else { (self.server, self.client) };
        tap::pcapwrite::tcp_frame(self.link, src, dst, seq, ack_no, flags, payload).expect("frame builds")
    }

    fn push(&mut self, frame: Vec<u8>) {
        self.ts += 0.001;
        self.frames.push((self.ts, frame));
    }

    /// Sends `data` from the client as one TCP segment cut into IP fragments of `piece` bytes
    /// (IP identification `id`), in the order `order` says. `Frag::Real(n)` is the n-th
    /// fragment; `Frag::Forged(n)` the n-th fragment of the same segment with every data byte
    /// replaced by `X` (an overlap with other content); a fragment left out is lost.
    fn client_fragmented(&mut self, data: &[u8], id: u16, piece: usize, order: &[Frag]) {
        let seq = self.c_isn.wrapping_add(1).wrapping_add(self.c_next);
        let peer = self.s_isn.wrapping_add(1).wrapping_add(self.s_next);
        self.c_next += data.len() as u32;
        let flags = Flags { psh: true, ..ack() };
        let fragments = |payload: &[u8]| {
            tap::pcapwrite::ip_fragments(self.link, &self.frame(true, seq, peer, flags, payload), id, piece)
                .expect("fragments")
        };
        let (real, forged) = (fragments(data), fragments(&vec![b'X'; data.len()]));
        for f in order {
            let frame = match *f {
                Frag::Real(n) => real[n].clone(),
                Frag::Forged(n) => forged[n].clone(),
            };
            self.push(frame);
        }
    }

    fn client_segment(&self, offset: u32, payload: &[u8]) -> Seg {
        Seg { from_client: true, offset, payload: payload.to_vec() }
    }

    fn send(&mut self, seg: &Seg) {
        let (isn, peer) = if seg.from_client {
            (self.c_isn, self.s_isn.wrapping_add(1).wrapping_add(self.s_next))
        } else {
            (self.s_isn, self.c_isn.wrapping_add(1).wrapping_add(self.c_next))
        };
        let seq = isn.wrapping_add(1).wrapping_add(seg.offset);
        self.raw(seg.from_client, seq, peer, Flags { psh: true, ..ack() }, &seg.payload);
    }

    fn client(&mut self, data: &[u8]) {
        let seg = self.client_segment(self.c_next, data);
        self.c_next += data.len() as u32;
        self.send(&seg);
    }

    fn server(&mut self, data: &[u8]) {
        let seg = Seg { from_client: false, offset: self.s_next, payload: data.to_vec() };
        self.s_next += data.len() as u32;
        self.send(&seg);
    }

    /// Advances the client's offset as if `n` bytes were sent, without sending them.
    fn client_skips(&mut self, n: u32) {
        self.c_next += n;
    }

    /// The client's last ACK, of the server's FIN.
    fn last_ack(&mut self) {
        let (cs, ss) = (self.c_isn.wrapping_add(2 + self.c_next), self.s_isn.wrapping_add(2 + self.s_next));
        self.raw(true, cs, ss, ack(), b"");
    }

    /// FIN both ways.
    fn close(&mut self) {
        let (cs, ss) = (self.c_isn.wrapping_add(1 + self.c_next), self.s_isn.wrapping_add(1 + self.s_next));
        self.raw(true, cs, ss, Flags { fin: true, ..ack() }, b"");
        self.raw(false, ss, cs.wrapping_add(1), Flags { fin: true, ..ack() }, b"");
    }

    /// Writes the capture and dissects it.
    fn dissect(&self) -> tap::Dissection {
        dissect_frames(self.link, &self.frames)
    }
}

/// Writes `frames` as a pcap of `link` and dissects it.
fn dissect_frames(link: LinkKind, frames: &[(f64, Vec<u8>)]) -> tap::Dissection {
    {
        let dir = tempfile::tempdir().expect("temp dir");
        let path: PathBuf = dir.path().join("handbuilt.pcap");
        let file = std::fs::File::create(&path).expect("create pcap");
        let mut w = PcapWriter::new(std::io::BufWriter::new(file), link).expect("header");
        for (ts, f) in frames {
            w.write_frame(*ts, f).expect("record");
        }
        drop(w);
        let d = tap::dissect_file(&path).expect("dissects");
        assert!(d.error.is_none(), "{:?}", d.error);
        assert_eq!(d.packets, frames.len() as u64);
        d
    }
}

fn ack() -> Flags {
    Flags { ack: true, ..Default::default() }
}

/// The usual opening: greeting, EHLO and its reply.
fn hello(c: &mut Conv) {
    c.server(b"220 mx.test ESMTP\r\n");
    c.client(b"EHLO client.test\r\n");
    c.server(b"250-mx.test\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 STARTTLS\r\n");
}

fn sha256(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

fn one(d: &tap::Dissection) -> (&TapSession, &TapTransaction) {
    assert_eq!(d.sessions.len(), 1, "{:#?}", d.sessions);
    assert_eq!(d.transactions.len(), 1, "{:#?}", d.transactions);
    (&d.sessions[0], &d.transactions[0])
}

const MESSAGE: &[u8] = b"From: Alice <alice@a.test>\r\nTo: bob@b.test, carol@c.test\r\nSubject: hello\r\n\r\nbody\r\n";

#[test]
fn reordered_segments_are_put_back_in_order() {
    for link in [LinkKind::Ethernet, LinkKind::RawIp] {
        let mut c = Conv::new(link);
        hello(&mut c);
        let cmds = b"MAIL FROM:<alice@a.test>\r\nRCPT TO:<bob@b.test>\r\nDATA\r\n";
        let base = c.c_next;
        let (a, b, cc) = (&cmds[..10], &cmds[10..30], &cmds[30..]);
        let segs = [c.client_segment(base + 30, cc), c.client_segment(base, a), c.client_segment(base + 10, b)];
        c.client_skips(cmds.len() as u32);
        for s in &segs {
            c.send(s);
        }
        c.server(b"250 ok\r\n250 ok\r\n354 go\r\n");
        c.client(&proto::dot_stuff(MESSAGE));
        c.server(b"250 queued\r\n");
        c.close();
        let d = c.dissect();
        let (s, t) = one(&d);
        assert_eq!(s.gaps, 0);
        assert_eq!(t.mailfrom.as_deref(), Some("alice@a.test"));
        assert_eq!(t.rcptto, vec!["bob@b.test"]);
        assert_eq!(t.from.as_deref(), Some("Alice <alice@a.test>"));
        assert_eq!(t.to, vec!["bob@b.test", "carol@c.test"]);
        assert_eq!(t.sha256.as_deref(), Some(sha256(MESSAGE).as_str()));
        assert_eq!(t.last_reply.as_deref(), Some("250 queued"));
    }
}

#[test]
fn overlapping_retransmission_with_other_content_first_data_wins() {
    let mut c = Conv::new(LinkKind::Ethernet);
    hello(&mut c);
    let base = c.c_next;
    // Out of order: the second half arrives first, then a segment covering both halves whose
    // second half says something else, then a retransmission of the first with other bytes.
    let first = c.client_segment(base, b"MAIL FROM:<alice@a.test>\r\n");
    let second = c.client_segment(base + 26, b"RCPT TO:<bob@b.test>\r\n");
    let forged_both = c.client_segment(base, b"MAIL FROM:<alice@a.test>\r\nRCPT TO:<eve@e.test>\r\n");
    let forged_first = c.client_segment(base, b"MAIL FROM:<mallory@m.test>\r\n");
    c.client_skips(26 + 22);
    c.send(&second);
    c.send(&forged_both);
    c.send(&forged_first);
    c.send(&first);
    c.server(b"250 ok\r\n250 ok\r\n");
    c.client(b"QUIT\r\n");
    c.server(b"221 bye\r\n");
    c.close();
    let d = c.dissect();
    let (_, t) = one(&d);
    assert_eq!(t.mailfrom.as_deref(), Some("alice@a.test"), "delivered bytes are never replaced");
    assert_eq!(t.rcptto, vec!["bob@b.test"], "buffered bytes received first are kept");
}

#[test]
fn gap_inside_data_leaves_no_sha256_and_the_next_transaction_intact() {
    let mut c = Conv::new(LinkKind::Ethernet);
    hello(&mut c);
    c.client(b"MAIL FROM:<alice@a.test>\r\nRCPT TO:<bob@b.test>\r\nDATA\r\n");
    c.server(b"250 ok\r\n250 ok\r\n354 go\r\n");
    let body = b"Subject: lost\r\n\r\nline one\r\nline two\r\nline three\r\n";
    let wire = proto::dot_stuff(body);
    c.client(&wire[..17]); // "Subject: lost\r\n\r\n"
    c.client_skips(10); // "line one\r\n" never captured
    c.client(&wire[27..]);
    c.server(b"250 queued 1\r\n");
    c.client(b"MAIL FROM:<carol@c.test>\r\nRCPT TO:<dan@d.test>\r\nDATA\r\n");
    c.server(b"250 ok\r\n250 ok\r\n354 go\r\n");
    c.client(&proto::dot_stuff(MESSAGE));
    c.server(b"250 queued 2\r\n");
    c.close();
    let d = c.dissect();
    assert_eq!(d.sessions.len(), 1);
    let s = &d.sessions[0];
    assert_eq!(s.gaps, 1);
    assert!(s.notes.iter().any(|n| n == "gap_in_data"), "{:?}", s.notes);
    let [t1, t2] = &d.transactions[..] else { panic!("two transactions: {:#?}", d.transactions) };
    assert_eq!(t1.sha256, None, "content with a hole is not recovered");
    assert_eq!(t1.subject.as_deref(), Some("lost"), "headers before the hole are read");
    assert_eq!(t1.message_bytes, Some((body.len() - 10) as u64), "bytes actually seen");
    assert_eq!(t1.last_reply.as_deref(), Some("250 queued 1"));
    assert_eq!(t2.mailfrom.as_deref(), Some("carol@c.test"));
    assert_eq!(t2.sha256.as_deref(), Some(sha256(MESSAGE).as_str()));
    assert_eq!(t2.last_reply.as_deref(), Some("250 queued 2"));
}

#[test]
fn pipelined_commands_pair_with_replies_in_order() {
    let mut c = Conv::new(LinkKind::Ethernet);
    hello(&mut c);
    c.client(b"MAIL FROM:<alice@a.test>\r\nRCPT TO:<bob@b.test>\r\nRCPT TO:<nobody@b.test>\r\nDATA\r\n");
    c.server(b"250 ok\r\n250 ok\r\n550 no such user\r\n354 go\r\n");
    c.client(&proto::dot_stuff(MESSAGE));
    c.client(b"MAIL FROM:<>\r\nRCPT TO:<bob@b.test>\r\nDATA\r\n");
    c.server(b"250 queued\r\n250 ok\r\n250 ok\r\n354 go\r\n");
    c.client(&proto::dot_stuff(b"Subject: bounce\r\n\r\nx\r\n"));
    c.client(b"QUIT\r\n");
    c.server(b"250 queued again\r\n221 bye\r\n");
    c.close();
    let d = c.dissect();
    let [t1, t2] = &d.transactions[..] else { panic!("two transactions: {:#?}", d.transactions) };
    // Zeek's rcptto: every RCPT sent, accepted or not.
    assert_eq!(t1.rcptto, vec!["bob@b.test", "nobody@b.test"]);
    assert_eq!(t1.last_reply.as_deref(), Some("250 queued"));
    assert_eq!(t1.sha256.as_deref(), Some(sha256(MESSAGE).as_str()));
    assert_eq!(t2.mailfrom.as_deref(), Some(""));
    assert_eq!(t2.subject.as_deref(), Some("bounce"));
    assert_eq!(t2.last_reply.as_deref(), Some("250 queued again"));
    assert_eq!(d.sessions[0].transactions, 2);
}

#[test]
fn bdat_chunks_are_joined_without_unstuffing() {
    let mut c = Conv::new(LinkKind::Ethernet);
    hello(&mut c);
    let part1 = b"Subject: chunks\r\n\r\n.not stuffed\r\n";
    let part2 = b".\r\nend\r\n";
    let mut wire = b"MAIL FROM:<alice@a.test>\r\nRCPT TO:<bob@b.test>\r\n".to_vec();
    wire.extend_from_slice(format!("BDAT {}\r\n", part1.len()).as_bytes());
    wire.extend_from_slice(part1);
    wire.extend_from_slice(format!("BDAT {} LAST\r\n", part2.len()).as_bytes());
    wire.extend_from_slice(part2);
    c.client(&wire[..40]);
    c.client(&wire[40..]);
    c.server(b"250 ok\r\n250 ok\r\n250 chunk\r\n250 done\r\n");
    c.client(b"BDAT 0 LAST\r\nQUIT\r\n");
    c.server(b"503 no transaction\r\n221 bye\r\n");
    c.close();
    let d = c.dissect();
    let [t, empty] = &d.transactions[..] else { panic!("two transactions: {:#?}", d.transactions) };
    let whole = [&part1[..], &part2[..]].concat();
    assert_eq!(t.sha256.as_deref(), Some(sha256(&whole).as_str()));
    assert_eq!(t.message_bytes, Some(whole.len() as u64));
    assert_eq!(t.subject.as_deref(), Some("chunks"));
    assert_eq!(t.last_reply.as_deref(), Some("250 done"));
    // BDAT 0 LAST outside a transaction: an empty one, as Zeek opens it.
    assert_eq!((empty.mailfrom.as_deref(), empty.message_bytes), (None, Some(0)));
    assert_eq!(empty.last_reply.as_deref(), Some("503 no transaction"));
}

#[test]
fn dot_stuffed_data_is_unstuffed() {
    let mut c = Conv::new(LinkKind::RawIp);
    hello(&mut c);
    let message = b"Subject: dots\r\n\r\n.leading\r\n..two\r\n.\r\nnot the end\r\n";
    c.client(b"MAIL FROM:<alice@a.test>\r\nRCPT TO:<bob@b.test>\r\nDATA\r\n");
    c.server(b"250 ok\r\n250 ok\r\n354 go\r\n");
    let wire = proto::dot_stuff(message);
    // The terminator split across segments.
    let cut = wire.len() - 2;
    c.client(&wire[..cut]);
    c.client(&wire[cut..]);
    c.server(b"250 queued\r\n");
    c.close();
    let d = c.dissect();
    let (_, t) = one(&d);
    assert_eq!(t.sha256.as_deref(), Some(sha256(message).as_str()));
    assert_eq!(t.message_bytes, Some(message.len() as u64));
}

#[test]
fn plaintext_after_starttls_is_read_and_noted() {
    let mut c = Conv::new(LinkKind::Ethernet);
    hello(&mut c);
    c.client(b"STARTTLS\r\n");
    c.server(b"220 go ahead\r\n");
    c.client(b"MAIL FROM:<alice@a.test>\r\nRCPT TO:<bob@b.test>\r\nDATA\r\n");
    c.server(b"250 ok\r\n250 ok\r\n354 go\r\n");
    c.client(&proto::dot_stuff(MESSAGE));
    c.server(b"250 queued\r\n");
    c.close();
    let d = c.dissect();
    let (s, t) = one(&d);
    assert!(s.starttls_command && !s.starttls_used);
    assert_eq!(s.starttls_reply, Some(220));
    assert!(s.notes.iter().any(|n| n == "plaintext_after_starttls"), "{:?}", s.notes);
    assert!(!t.tls);
    assert_eq!(t.sha256.as_deref(), Some(sha256(MESSAGE).as_str()));
}

#[test]
fn starttls_after_a_transaction_adds_no_tls_row() {
    let mut c = Conv::new(LinkKind::Ethernet);
    hello(&mut c);
    c.client(b"MAIL FROM:<alice@a.test>\r\nRCPT TO:<bob@b.test>\r\nDATA\r\n");
    c.server(b"250 ok\r\n250 ok\r\n354 go\r\n");
    c.client(&proto::dot_stuff(MESSAGE));
    c.server(b"250 queued\r\n");
    c.client(b"STARTTLS\r\n");
    c.server(b"220 go ahead\r\n");
    // A TLS record each way (a handshake record and an alert): enough to call it TLS.
    c.client(&[22, 3, 1, 0, 4, 1, 0, 0, 0]);
    c.server(&[21, 3, 3, 0, 2, 2, 40]);
    c.close();
    let d = c.dissect();
    let (s, t) = one(&d);
    assert!(s.starttls_used);
    assert_eq!((s.tls_records_orig, s.tls_records_resp), (1, 1));
    assert!(!t.tls && t.sha256.is_some());
}

#[test]
fn starttls_first_gives_one_tls_row() {
    let mut c = Conv::new(LinkKind::Ethernet);
    hello(&mut c);
    c.client(b"STARTTLS\r\n");
    c.server(b"220 2.0.0 Ready to start TLS\r\n");
    c.client(&[22, 3, 1, 0, 4, 1, 0, 0, 0]);
    c.server(&[22, 3, 3, 0, 4, 2, 0, 0, 0]);
    c.close();
    let d = c.dissect();
    let (s, t) = one(&d);
    assert!(s.starttls_used);
    assert_eq!(s.transactions, 0);
    assert!(t.tls);
    assert_eq!(t.helo.as_deref(), Some("client.test"));
    assert_eq!(t.last_reply.as_deref(), Some("220 2.0.0 Ready to start TLS"));
    assert_eq!((t.mailfrom.as_deref(), t.rcptto.len(), t.message_bytes), (None, 0, None));
}

/// A message long enough to need several IP fragments.
fn long_message() -> Vec<u8> {
    let mut m = b"From: Alice <alice@a.test>\r\nTo: bob@b.test\r\nSubject: in pieces\r\n\r\n".to_vec();
    for i in 0..40 {
        m.extend_from_slice(format!("line {i:02} of a message that crosses the wire in IP fragments\r\n").as_bytes());
    }
    m
}

/// A session whose commands and message travel in IP fragments, out of order, with one
/// fragment sent twice, the second time with other bytes (first wins: the message is intact).
fn fragmented_session(link: LinkKind, client: &str, server: &str) -> tap::Dissection {
    use Frag::{Forged, Real};
    let mut c = Conv::between(link, client, server);
    hello(&mut c);
    // Commands: 20 bytes of TCP header and 48 of commands in 16-byte fragments (5), last first.
    c.client_fragmented(
        b"MAIL FROM:<alice@a.test>\r\nRCPT TO:<bob@b.test>\r\n",
        1,
        16,
        &[Real(4), Real(1), Real(0), Real(3), Real(2)],
    );
    c.server(b"250 ok\r\n250 ok\r\n");
    c.client(b"DATA\r\n");
    c.server(b"354 go\r\n");
    let message = long_message();
    let wire = proto::dot_stuff(&message);
    // The message in 1000-byte fragments: reordered, and fragment 0 overlapped by a forgery
    // after it arrived (before the datagram is complete).
    let n = (wire.len() + 20).div_ceil(1000);
    assert!(n >= 3, "{n} fragments");
    let mut order = vec![Real(2), Real(0), Forged(0)];
    order.extend((3..n).map(Real));
    order.push(Real(1));
    c.client_fragmented(&wire, 2, 1000, &order);
    c.server(b"250 queued\r\n");
    c.close();
    c.dissect()
}

#[test]
fn ipv4_fragments_are_reassembled_out_of_order_and_first_wins_on_overlap() {
    for link in [LinkKind::Ethernet, LinkKind::RawIp] {
        let d = fragmented_session(link, "192.0.2.1:40001", "192.0.2.25:25");
        let (s, t) = one(&d);
        assert_eq!(s.gaps, 0);
        assert_eq!(t.mailfrom.as_deref(), Some("alice@a.test"));
        assert_eq!(t.rcptto, vec!["bob@b.test"]);
        assert_eq!(t.subject.as_deref(), Some("in pieces"));
        assert_eq!(t.sha256.as_deref(), Some(sha256(&long_message()).as_str()));
        assert!(s.notes.iter().any(|n| n == "ip_fragment_overlap"), "{:?}", s.notes);
        assert_eq!((d.defrag.reassembled, d.defrag.overlaps, d.defrag.incomplete, d.defrag.dropped), (2, 1, 0, 0));
    }
}

#[test]
fn ipv6_fragments_are_reassembled() {
    let d = fragmented_session(LinkKind::Ethernet, "[2001:db8::1]:40001", "[2001:db8::25]:25");
    let (s, t) = one(&d);
    assert_eq!((s.orig_h.as_str(), s.resp_h.as_str()), ("2001:db8::1", "2001:db8::25"));
    assert_eq!(t.sha256.as_deref(), Some(sha256(&long_message()).as_str()));
    assert_eq!((d.defrag.reassembled, d.defrag.overlaps, d.defrag.incomplete), (2, 1, 0));
}

#[test]
fn a_lost_fragment_is_a_gap_not_a_stall() {
    let mut c = Conv::new(LinkKind::Ethernet);
    hello(&mut c);
    c.client(b"MAIL FROM:<alice@a.test>\r\nRCPT TO:<bob@b.test>\r\nDATA\r\n");
    c.server(b"250 ok\r\n250 ok\r\n354 go\r\n");
    let message = long_message();
    let wire = proto::dot_stuff(&message);
    // The message but its last line ".\r\n" in one segment, whose fragment 1 is never
    // captured: the datagram never completes, the segment is lost; the last line comes whole.
    let (body, end) = wire.split_at(wire.len() - 3);
    let n = (body.len() + 20).div_ceil(1000);
    let order: Vec<Frag> = (0..n).filter(|&i| i != 1).map(Frag::Real).collect();
    c.client_fragmented(body, 3, 1000, &order);
    c.client(end);
    // The next transaction, in one whole segment, after the hole.
    c.client(b"MAIL FROM:<carol@c.test>\r\nRCPT TO:<dan@d.test>\r\nDATA\r\n");
    c.server(b"250 queued 1\r\n250 ok\r\n250 ok\r\n354 go\r\n");
    c.client(&proto::dot_stuff(MESSAGE));
    c.server(b"250 queued 2\r\n");
    c.close();
    let d = c.dissect();
    assert_eq!((d.defrag.incomplete, d.defrag.reassembled), (1, 0));
    let s = &d.sessions[0];
    assert_eq!(s.gaps, 1);
    let [t1, t2] = &d.transactions[..] else { panic!("two transactions: {:#?}", d.transactions) };
    assert_eq!(t1.sha256, None, "the message lost a segment");
    assert_eq!(t2.mailfrom.as_deref(), Some("carol@c.test"));
    assert_eq!(t2.sha256.as_deref(), Some(sha256(MESSAGE).as_str()));
}

/// One plaintext session with `message`, from its SYN (at `ts` + 1 ms) to its FINs (no last
/// ACK), on the usual 4-tuple with the client ISN `c_isn`.
fn session_on_the_usual_ports(c_isn: u32, ts: f64, message: &[u8]) -> Conv {
    let mut c = Conv::opened(LinkKind::Ethernet, "192.0.2.1:40001", "192.0.2.25:25", c_isn, c_isn ^ 0x5555_0000, ts);
    hello(&mut c);
    c.client(b"MAIL FROM:<alice@a.test>\r\nRCPT TO:<bob@b.test>\r\nDATA\r\n");
    c.server(b"250 ok\r\n250 ok\r\n354 go\r\n");
    c.client(&proto::dot_stuff(message));
    c.server(b"250 queued\r\n");
    c.close();
    c
}

const SECOND: &[u8] = b"Subject: second\r\n\r\nthe second connection on the same ports\r\n";

fn check_two_sessions(d: &tap::Dissection, first_syn: f64, second_syn: f64) {
    let [s1, s2] = &d.sessions[..] else { panic!("two sessions: {:#?}", d.sessions) };
    assert_eq!((s1.orig_p, s2.orig_p), (40001, 40001), "the same 4-tuple");
    assert!((s1.ts - first_syn).abs() < 1e-6, "{} vs {first_syn}", s1.ts);
    assert!((s2.ts - second_syn).abs() < 1e-6, "dated from its own SYN: {} vs {second_syn}", s2.ts);
    assert!(s1.ts + s1.duration <= s2.ts, "the first ends before the second starts");
    assert_ne!(s1.uid, s2.uid);
    for s in [s1, s2] {
        assert_eq!((s.gaps, s.transactions), (0, 1), "{:?}", s.notes);
        assert!(!s.notes.iter().any(|n| n == "mid_stream_start"), "{:?}", s.notes);
    }
    let [t1, t2] = &d.transactions[..] else { panic!("two transactions: {:#?}", d.transactions) };
    assert_eq!(t1.sha256.as_deref(), Some(sha256(MESSAGE).as_str()));
    assert_eq!(t2.sha256.as_deref(), Some(sha256(SECOND).as_str()));
    assert_eq!((t1.uid.as_str(), t2.uid.as_str()), (s1.uid.as_str(), s2.uid.as_str()));
}

#[test]
fn a_reused_four_tuple_right_after_the_fins_is_a_new_session() {
    let mut a = session_on_the_usual_ports(1000, 1_700_000_000.0, MESSAGE);
    a.last_ack();
    let b = session_on_the_usual_ports(a.c_isn.wrapping_add(100_000), a.ts, SECOND);
    let first_syn = a.frames[0].0;
    let second_syn = b.frames[0].0;
    let frames: Vec<(f64, Vec<u8>)> = a.frames.into_iter().chain(b.frames).collect();
    let d = dissect_frames(LinkKind::Ethernet, &frames);
    check_two_sessions(&d, first_syn, second_syn);
}

#[test]
fn late_packets_of_the_old_connection_after_the_new_syn_stay_out_of_it() {
    let mut a = session_on_the_usual_ports(1000, 1_700_000_000.0, MESSAGE);
    let first_syn = a.frames[0].0;
    // The new SYN, then the old connection's last ACK and both its FINs again (the last ACK
    // was lost on the way, and both sides retransmit), then the rest of the new connection.
    let mut b = session_on_the_usual_ports(a.c_isn.wrapping_add(100_000), a.ts, SECOND);
    let second_syn = b.frames[0].0;
    let fins: Vec<Vec<u8>> = a.frames[a.frames.len() - 2..].iter().map(|(_, f)| f.clone()).collect();
    a.ts = second_syn;
    a.last_ack();
    for f in fins {
        a.push(f);
    }
    let late: Vec<(f64, Vec<u8>)> = a.frames.split_off(a.frames.len() - 3);
    let rest = b.frames.split_off(1);
    // Every late packet between the new SYN and its SYN-ACK, 0.1 ms apart.
    let late = late.into_iter().enumerate().map(|(i, (_, f))| (second_syn + 1e-4 * (i + 1) as f64, f));
    let frames: Vec<(f64, Vec<u8>)> = a.frames.into_iter().chain(b.frames).chain(late).chain(rest).collect();
    let d = dissect_frames(LinkKind::Ethernet, &frames);
    check_two_sessions(&d, first_syn, second_syn);
}

#[test]
fn a_new_syn_on_a_flow_that_never_closed_starts_a_new_session_but_a_retransmitted_one_does_not() {
    // The first connection's FINs are not in the capture (lost, or the tap started late).
    let mut a = session_on_the_usual_ports(1000, 1_700_000_000.0, MESSAGE);
    a.frames.truncate(a.frames.len() - 2);
    let first_syn = a.frames[0].0;
    let mut b = session_on_the_usual_ports(a.c_isn.wrapping_add(100_000), a.ts + 1.0, SECOND);
    // The second SYN sent twice (its first copy unanswered): one connection.
    let syn = b.frames[0].1.clone();
    b.frames.insert(1, (b.frames[0].0 + 0.0005, syn));
    let second_syn = b.frames[0].0;
    let frames: Vec<(f64, Vec<u8>)> = a.frames.into_iter().chain(b.frames).collect();
    let d = dissect_frames(LinkKind::Ethernet, &frames);
    check_two_sessions(&d, first_syn, second_syn);
}

/// Regenerates the fuzz seed `tests/data/corpus/dissect_pcap/ip-fragments.pcap` (IPv4 and IPv6
/// fragments, reordered, overlapping, one datagram incomplete):
/// `cargo test -p smtplab-tap --test handbuilt -- --ignored write_fragment_seed`.
#[test]
#[ignore = "writes a corpus file; run by hand"]
fn write_fragment_seed() {
    use Frag::{Forged, Real};
    let mut c = Conv::new(LinkKind::Ethernet);
    hello(&mut c);
    c.client_fragmented(
        b"MAIL FROM:<alice@a.test>\r\nRCPT TO:<bob@b.test>\r\n",
        1,
        16,
        &[Real(4), Real(1), Forged(1), Real(0), Real(3), Real(2)],
    );
    c.server(b"250 ok\r\n250 ok\r\n");
    c.client_fragmented(b"DATA\r\nSubject: x\r\n\r\nlost\r\n.\r\n", 2, 16, &[Real(0), Real(2)]);
    let mut v6 = Conv::between(LinkKind::Ethernet, "[2001:db8::1]:40001", "[2001:db8::25]:25");
    hello(&mut v6);
    v6.client_fragmented(
        b"MAIL FROM:<alice@a.test>\r\n",
        3,
        8,
        &[Real(5), Real(0), Real(1), Real(2), Real(3), Real(4)],
    );
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/corpus/dissect_pcap/ip-fragments.pcap");
    let mut w = PcapWriter::new(std::fs::File::create(&path).expect("create"), LinkKind::Ethernet).expect("header");
    for (ts, f) in c.frames.iter().chain(&v6.frames) {
        w.write_frame(*ts, f).expect("record");
    }
}
