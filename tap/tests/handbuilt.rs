//! Hand-built captures: each test describes a TCP conversation segment by segment with the
//! [`Conv`] helper below, writes it as a pcap with `tap::pcapwrite` into a temporary directory,
//! runs `tap::dissect_file` on it and checks the records exactly. No binary fixture: the test is
//! the capture's description.
//!
//! To look at the captures with tshark or Wireshark, have every test keep a copy of each capture
//! it dissects, named after the test (a test's second capture gets `-2`, and so on):
//!
//! ```text
//! SMTPLAB_HANDBUILT_DIR=/tmp/handbuilt cargo test -p smtplab-tap --test handbuilt
//! tshark -r /tmp/handbuilt/reordered_segments_are_put_back_in_order.pcap
//! ```
//!
//! (about 52 MB in all, nearly all of it the 50 MB message).

use std::cell::Cell;
use std::fs::File;
use std::io::BufWriter;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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
    /// Where frames go instead of `frames`, once [`Conv::streaming`].
    sink: Option<Sink>,
}

/// A capture written to a temporary file as it is built, not held in memory.
struct Sink {
    dir: tempfile::TempDir,
    writer: PcapWriter<BufWriter<File>>,
    frames: u64,
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
            sink: None,
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
        match &mut self.sink {
            Some(sink) => {
                sink.writer.write_frame(self.ts, &frame).expect("record");
                sink.frames += 1;
            }
            None => self.frames.push((self.ts, frame)),
        }
    }

    /// From now on (the frames so far included), frames are written to a temporary pcap as
    /// they are built rather than kept: for captures too big to hold.
    fn streaming(mut self) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = File::create(dir.path().join("handbuilt.pcap")).expect("create pcap");
        let mut writer = PcapWriter::new(BufWriter::new(file), self.link).expect("header");
        for (ts, f) in &self.frames {
            writer.write_frame(*ts, f).expect("record");
        }
        let frames = self.frames.len() as u64;
        self.frames.clear();
        self.sink = Some(Sink { dir, writer, frames });
        self
    }

    /// A RST from the client or the server, at its next sequence number.
    fn reset(&mut self, from_client: bool) {
        let (cs, ss) = (self.c_isn.wrapping_add(1 + self.c_next), self.s_isn.wrapping_add(1 + self.s_next));
        let (seq, ack_no) = if from_client { (cs, ss) } else { (ss, cs) };
        self.raw(from_client, seq, ack_no, Flags { rst: true, ..ack() }, b"");
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

    /// Writes the capture (or finishes the streamed one) and dissects it.
    fn dissect(&mut self) -> tap::Dissection {
        let Some(sink) = self.sink.take() else { return dissect_frames(self.link, &self.frames) };
        let mut out = sink.writer.into_inner();
        std::io::Write::flush(&mut out).expect("flush pcap");
        drop(out);
        dissect_written(&sink.dir.path().join("handbuilt.pcap"), sink.frames)
    }
}

/// Writes `frames` as a pcap of `link` and dissects it.
fn dissect_frames(link: LinkKind, frames: &[(f64, Vec<u8>)]) -> tap::Dissection {
    let dir = tempfile::tempdir().expect("temp dir");
    let path: PathBuf = dir.path().join("handbuilt.pcap");
    let file = File::create(&path).expect("create pcap");
    let mut w = PcapWriter::new(BufWriter::new(file), link).expect("header");
    for (ts, f) in frames {
        w.write_frame(*ts, f).expect("record");
    }
    drop(w);
    dissect_written(&path, frames.len() as u64)
}

/// Dissects the capture at `path` (of `frames` packets), keeping a copy if asked to.
fn dissect_written(path: &Path, frames: u64) -> tap::Dissection {
    keep_for_inspection(path);
    let d = tap::dissect_file(path).expect("dissects");
    assert!(d.error.is_none(), "{:?}", d.error);
    assert_eq!(d.packets, frames);
    d
}

/// With `SMTPLAB_HANDBUILT_DIR` set, copies the capture there, named after the running test
/// (libtest names each test's thread after it): `<test>.pcap`, then `<test>-2.pcap`, ...
fn keep_for_inspection(path: &Path) {
    let Some(dir) = std::env::var_os("SMTPLAB_HANDBUILT_DIR") else { return };
    thread_local!(static CAPTURES: Cell<u32> = const { Cell::new(0) });
    let n = CAPTURES.with(|c| {
        c.set(c.get() + 1);
        c.get()
    });
    let test = std::thread::current().name().unwrap_or("capture").replace("::", "-");
    let name = if n == 1 { format!("{test}.pcap") } else { format!("{test}-{n}.pcap") };
    let dir = Path::new(&dir);
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("SMTPLAB_HANDBUILT_DIR {}: {e}", dir.display()));
    std::fs::copy(path, dir.join(&name)).unwrap_or_else(|e| panic!("copy to {}: {e}", dir.join(&name).display()));
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

/// One TCP segment's payload on Ethernet (MSS 1448 with TCP timestamps), as a sender cuts a
/// long DATA.
const MSS: usize = 1448;

/// A 50 MB message (text lines, one in a thousand starting with a dot) in 1448-byte segments.
/// The capture is written to disk as it is built and the message is never held whole by the
/// test: its sha256 is computed line by line.
#[test]
fn a_50_mb_message_in_1448_byte_segments_is_recovered_whole() {
    use sha2::Digest;
    const SIZE: usize = 50_000_000;
    let mut c = Conv::new(LinkKind::Ethernet).streaming();
    hello(&mut c);
    c.client(b"MAIL FROM:<alice@a.test>\r\nRCPT TO:<bob@b.test>\r\nDATA\r\n");
    c.server(b"250 ok\r\n250 ok\r\n354 go\r\n");
    let mut hash = sha2::Sha256::new();
    let mut size = 0;
    let mut wire = Vec::with_capacity(2 * MSS);
    let mut segments = 0;
    let header = b"From: Alice <alice@a.test>\r\nTo: bob@b.test\r\nSubject: fifty megabytes\r\n\r\n";
    let lines = std::iter::once(header.to_vec()).chain((0u64..).map(|i| {
        let dot = if i % 1000 == 0 { "." } else { "" };
        format!("{dot}{i:010} the quick brown fox jumps over the lazy dog, 0123456789 abcdef\r\n").into_bytes()
    }));
    for line in lines {
        if size >= SIZE {
            break;
        }
        hash.update(&line);
        size += line.len();
        if line.starts_with(b".") {
            wire.push(b'.');
        }
        wire.extend_from_slice(&line);
        while wire.len() >= MSS {
            c.client(&wire[..MSS]);
            wire.drain(..MSS);
            segments += 1;
        }
    }
    wire.extend_from_slice(b".\r\n");
    for seg in wire.chunks(MSS) {
        c.client(seg);
    }
    c.server(b"250 queued\r\n");
    c.client(b"QUIT\r\n");
    c.server(b"221 bye\r\n");
    c.close();
    assert!(segments > SIZE / MSS - 1, "{segments} segments");
    let d = c.dissect();
    let (s, t) = one(&d);
    assert_eq!(s.gaps, 0);
    assert!(s.notes.is_empty(), "{:?}", s.notes);
    assert_eq!(t.message_bytes, Some(size as u64));
    assert_eq!(t.sha256.as_deref(), Some(hex::encode(hash.finalize()).as_str()));
    assert_eq!(t.subject.as_deref(), Some("fifty megabytes"));
    assert_eq!(t.last_reply.as_deref(), Some("250 queued"));
    assert_eq!(s.orig_bytes, u64::from(c.c_next), "every client byte delivered");
}

#[test]
fn a_session_reset_after_its_transaction_is_recorded_and_noted() {
    let mut c = Conv::new(LinkKind::Ethernet);
    hello(&mut c);
    c.client(b"MAIL FROM:<alice@a.test>\r\nRCPT TO:<bob@b.test>\r\nDATA\r\n");
    c.server(b"250 ok\r\n250 ok\r\n354 go\r\n");
    c.client(&proto::dot_stuff(MESSAGE));
    c.server(b"250 queued\r\n");
    c.client(b"QUIT\r\n");
    // The server resets instead of answering QUIT; no FIN from anyone.
    c.reset(false);
    let rst_ts = c.ts;
    let d = c.dissect();
    let (s, t) = one(&d);
    assert!(s.notes.iter().any(|n| n == "closed_by_rst"), "{:?}", s.notes);
    assert_eq!((s.gaps, s.transactions), (0, 1));
    assert!((s.ts + s.duration - rst_ts).abs() < 1e-6, "the session ends at the RST");
    assert_eq!(t.sha256.as_deref(), Some(sha256(MESSAGE).as_str()));
    assert_eq!(t.last_reply.as_deref(), Some("250 queued"));
}

#[test]
fn a_reset_inside_data_keeps_what_was_seen_without_a_sha256() {
    let mut c = Conv::new(LinkKind::Ethernet);
    hello(&mut c);
    c.client(b"MAIL FROM:<alice@a.test>\r\nRCPT TO:<bob@b.test>\r\nDATA\r\n");
    c.server(b"250 ok\r\n250 ok\r\n354 go\r\n");
    let cut = b"Subject: cut short\r\n\r\nthe client gives up\r\n";
    c.client(cut);
    c.reset(true);
    // A late segment of the reset connection: not a new session.
    c.client(b"more\r\n");
    let d = c.dissect();
    let (s, t) = one(&d);
    assert!(s.notes.iter().any(|n| n == "closed_by_rst"), "{:?}", s.notes);
    assert_eq!(t.subject.as_deref(), Some("cut short"));
    assert_eq!(t.sha256, None, "no end of data: the message is not known whole");
    assert_eq!(t.message_bytes, Some(cut.len() as u64));
}

/// The capture starts after the handshake, the greeting and EHLO: the first packet is the
/// client's MAIL FROM.
#[test]
fn a_capture_started_mid_session_still_reads_the_commands_and_notes_it() {
    for server_first in [false, true] {
        let mut c = Conv::new(LinkKind::Ethernet);
        hello(&mut c);
        c.frames.clear();
        if server_first {
            // The tail of the EHLO reply is the first thing captured.
            c.server(b"250 SIZE 10240000\r\n");
        }
        c.client(b"MAIL FROM:<alice@a.test>\r\nRCPT TO:<bob@b.test>\r\nDATA\r\n");
        c.server(b"250 ok\r\n250 ok\r\n354 go\r\n");
        c.client(&proto::dot_stuff(MESSAGE));
        c.server(b"250 queued\r\n");
        c.client(b"QUIT\r\n");
        c.server(b"221 bye\r\n");
        c.close();
        let d = c.dissect();
        let (s, t) = one(&d);
        assert!(s.notes.iter().any(|n| n == "mid_stream_start"), "{:?}", s.notes);
        assert_eq!((s.orig_h.as_str(), s.orig_p, s.resp_p), ("192.0.2.1", 40001, 25), "the client is found");
        assert_eq!(s.helo, None, "EHLO was before the capture");
        assert_eq!(t.mailfrom.as_deref(), Some("alice@a.test"));
        assert_eq!(t.rcptto, vec!["bob@b.test"]);
        assert_eq!(t.sha256.as_deref(), Some(sha256(MESSAGE).as_str()));
        assert_eq!(t.last_reply.as_deref(), Some("250 queued"));
    }
}

/// Standard base64, for the SASL responses below.
fn b64(raw: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in raw.chunks(3) {
        let n = c.iter().enumerate().fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..=c.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    while !out.len().is_multiple_of(4) {
        out.push('=');
    }
    out
}

/// AUTH with `mechanism`: the client's lines after the command, each after a 334; returns the
/// session's JSONL record.
fn auth_session(command: &str, responses: &[String], last: &[u8]) -> (TapSession, String) {
    let mut c = Conv::new(LinkKind::Ethernet);
    hello(&mut c);
    c.client(format!("{command}\r\n").as_bytes());
    for r in responses {
        c.server(b"334 PDQxODkuNjk2MzE1NjNAbXgudGVzdD4=\r\n");
        c.client(format!("{r}\r\n").as_bytes());
    }
    c.server(last);
    c.client(b"QUIT\r\n");
    c.server(b"221 bye\r\n");
    c.close();
    let d = c.dissect();
    let [s] = &d.sessions[..] else { panic!("one session: {:#?}", d.sessions) };
    (s.clone(), serde_json::to_string(s).expect("json"))
}

#[test]
fn auth_user_names_are_read_but_never_secrets() {
    let digest = "b913a602c7eda7a495b4e6e7334d3890";
    let token = "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg";
    let xoauth2 = b64(format!("user=carol@c.test\x01auth=Bearer {token}\x01\x01").as_bytes());
    let bearer = b64(format!("n,a=dave@d.test,\x01host=mx.test\x01port=25\x01auth=Bearer {token}\x01\x01").as_bytes());
    let cases: Vec<(String, Vec<String>, &str, bool, &str)> = vec![
        ("AUTH CRAM-MD5".into(), vec![b64(format!("bob@b.test {digest}").as_bytes())], "bob@b.test", false, digest),
        (format!("AUTH XOAUTH2 {xoauth2}"), vec![], "carol@c.test", true, token),
        // Without an initial response, the token comes after an empty 334.
        ("AUTH XOAUTH2".into(), vec![xoauth2.clone()], "carol@c.test", true, token),
        (format!("AUTH OAUTHBEARER {bearer}"), vec![], "dave@d.test", true, token),
        ("AUTH PLAIN".into(), vec![b64(b"\0alice@a.test\0hunter2")], "alice@a.test", true, "hunter2"),
        ("AUTH LOGIN".into(), vec![b64(b"erin@e.test"), b64(b"hunter2")], "erin@e.test", true, "hunter2"),
    ];
    for (command, responses, user, cleartext, secret) in cases {
        let (s, json) = auth_session(&command, &responses, b"235 2.7.0 accepted\r\n");
        let mechanism = command.split(' ').nth(1).expect("mechanism");
        assert_eq!(s.auth_mechanism.as_deref(), Some(mechanism), "{command}");
        assert_eq!(s.auth_user.as_deref(), Some(user), "{command}");
        assert_eq!(s.auth_cleartext, cleartext, "{command}");
        assert!(!json.contains(secret), "{command}: the secret is not in the record: {json}");
    }
    // A failed XOAUTH2: the server's error challenge and the client's empty answer.
    let (s, json) = auth_session(&format!("AUTH XOAUTH2 {xoauth2}"), &[String::new()], b"535 5.7.8 bad token\r\n");
    assert_eq!(s.auth_user.as_deref(), Some("carol@c.test"));
    assert!(!json.contains(token));
}

/// One side's turn in a conversation: who sends, and the bytes (one segment unless cut).
type Turn = (bool, &'static [u8]);

/// A session whose STARTTLS is pipelined behind EHLO and NOOP in one client turn (RFC 2920
/// allows STARTTLS as the last command of a group), answered in one server turn, then a TLS
/// handshake record and an application-data record each way.
const PIPELINED_STARTTLS: &[Turn] = &[
    (false, b"220 mx.test ESMTP\r\n"),
    (true, b"EHLO client.test\r\nNOOP\r\nSTARTTLS\r\n"),
    (false, b"250-mx.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n250 2.0.0 ok\r\n220 2.0.0 Ready to start TLS\r\n"),
    (true, &[22, 3, 1, 0, 4, 1, 0, 0, 0]),
    (false, &[22, 3, 3, 0, 4, 2, 0, 0, 0]),
    (true, &[23, 3, 3, 0, 3, 0xaa, 0xbb, 0xcc]),
    (false, &[23, 3, 3, 0, 3, 0xdd, 0xee, 0xff]),
];

/// Sends `turns`, each cut into segments of `piece` bytes, except turn `cut.0`, cut once at byte
/// `cut.1` (when given).
fn replay(turns: &[Turn], piece: usize, cut: Option<(usize, usize)>) -> tap::Dissection {
    let mut c = Conv::new(LinkKind::Ethernet);
    for (i, (from_client, bytes)) in turns.iter().enumerate() {
        let pieces: Vec<&[u8]> = match cut {
            Some((turn, at)) if turn == i => vec![&bytes[..at], &bytes[at..]],
            _ => bytes.chunks(piece).collect(),
        };
        for p in pieces {
            if *from_client { c.client(p) } else { c.server(p) }
        }
    }
    c.close();
    c.dissect()
}

/// What the session above must give, worked out by hand from its bytes: Zeek logs a session
/// that went into TLS before any mail transaction as one row with `tls` set.
fn assert_pipelined_starttls(d: &tap::Dissection, how: &str) {
    let (s, t) = one(d);
    assert!(s.starttls_offered && s.starttls_command && s.starttls_used, "{how}: {s:#?}");
    assert_eq!(s.starttls_reply, Some(220), "{how}");
    assert_eq!((s.tls_records_orig, s.tls_records_resp), (2, 2), "{how}");
    assert!(t.tls, "{how}: {t:#?}");
    assert_eq!(t.helo.as_deref(), Some("client.test"), "{how}");
    assert_eq!(t.last_reply.as_deref(), Some("220 2.0.0 Ready to start TLS"), "{how}");
}

#[test]
fn pipelined_starttls_is_found_in_one_byte_segments() {
    let d = replay(PIPELINED_STARTTLS, 1, None);
    assert_pipelined_starttls(&d, "1-byte segments");
}

#[test]
fn pipelined_starttls_is_found_whichever_byte_a_turn_is_cut_at() {
    for (turn, (_, bytes)) in PIPELINED_STARTTLS.iter().enumerate() {
        for at in 1..bytes.len() {
            let d = replay(PIPELINED_STARTTLS, usize::MAX, Some((turn, at)));
            assert_pipelined_starttls(&d, &format!("turn {turn} cut at byte {at}"));
        }
    }
}

/// The capture joins the session above at every byte of the pipelined client turn, or of the
/// server's answer to it (the SYNs, the greeting and what came before that byte are not in
/// it): a session record each time, and the turn to TLS found whenever the STARTTLS line and
/// the server's 220 line are captured whole.
#[test]
fn pipelined_starttls_is_found_wherever_the_capture_joins() {
    let group = PIPELINED_STARTTLS[1].1;
    let answer = PIPELINED_STARTTLS[2].1;
    let starttls_line = group.len() - b"STARTTLS\r\n".len();
    let reply_line = answer.len() - b"220 2.0.0 Ready to start TLS\r\n".len();
    for (turn, bytes, whole_until) in [(1, group, starttls_line), (2, answer, reply_line)] {
        for at in 1..bytes.len() {
            let mut c = Conv::new(LinkKind::Ethernet);
            for (i, (from_client, b)) in PIPELINED_STARTTLS.iter().enumerate() {
                let b: &[u8] = if i == turn {
                    let (before, after) = b.split_at(at);
                    if *from_client {
                        c.client(before)
                    } else {
                        c.server(before)
                    }
                    c.frames.clear();
                    after
                } else {
                    b
                };
                if *from_client { c.client(b) } else { c.server(b) }
            }
            c.close();
            let d = c.dissect();
            let how = format!("capture joins turn {turn} at byte {at}");
            assert_eq!(d.sessions.len(), 1, "{how}: {:#?}", d.sessions);
            let s = &d.sessions[0];
            assert!(s.notes.iter().any(|n| n == "mid_stream_start"), "{how}: {:?}", s.notes);
            assert_eq!((s.orig_p, s.resp_p), (40001, 25), "{how}: the client is found");
            if at <= whole_until {
                assert!(s.starttls_used, "{how}: {s:#?}");
                assert_eq!(s.starttls_reply, Some(220), "{how}");
                assert_eq!((s.tls_records_orig, s.tls_records_resp), (2, 2), "{how}");
            }
        }
    }
}

/// A segment of the pipelined group is lost (a gap inside NOOP): the reply that answers
/// NOOP is then the first one sent after STARTTLS, which pairing by order takes for the answer
/// to STARTTLS; the turn to TLS is still found.
#[test]
fn pipelined_starttls_is_found_past_a_gap_in_the_group() {
    let mut c = Conv::new(LinkKind::Ethernet);
    c.server(PIPELINED_STARTTLS[0].1);
    let group = PIPELINED_STARTTLS[1].1;
    let noop = group.len() - b"OOP\r\nSTARTTLS\r\n".len();
    c.client(&group[..noop]);
    c.client_skips(2);
    c.client(&group[noop + 2..]);
    for (from_client, b) in &PIPELINED_STARTTLS[2..] {
        if *from_client { c.client(b) } else { c.server(b) }
    }
    c.close();
    let d = c.dissect();
    let s = &d.sessions[0];
    assert_eq!(d.sessions.len(), 1);
    assert!(s.starttls_command && s.starttls_used, "{s:#?}");
    assert_eq!(s.starttls_reply, Some(220));
    assert_eq!((s.tls_records_orig, s.tls_records_resp), (2, 2));
}

/// Subjects in legacy charsets, as RFC 2047 encoded-words, and what a mail client shows for
/// them. The encoded bytes are each charset's own codes for the text (GB2312 C4E3 BAC3 A3AC
/// CAC0 BDE7 for 你好，世界; Big5 A741 A66E for 你好; Shift_JIS 93FA 967B 8CEA and ISO-2022-JP
/// ESC $ B 467C 4B5C 386C ESC ( B for 日本語; EUC-KR BEC8 B3E7 for 안녕), checked with Python's
/// codecs; `ks_c_5601-1987` and `x-gbk` are labels mail software writes that WHATWG maps to EUC-KR
/// and GBK.
const LEGACY_SUBJECTS: &[(&str, &str)] = &[
    ("=?GB2312?B?xOO6w6OsysC95w==?=", "你好，世界"),
    ("=?gb2312?Q?=C4=E3=BA=C3?=", "你好"),
    ("=?x-gbk?B?xOO6ww==?=", "你好"),
    ("=?big5?Q?=A7A=A6n?=", "你好"),
    ("=?Shift_JIS?B?k/qWe4zq?=", "日本語"),
    ("=?ISO-2022-JP?B?GyRCRnxLXDhsGyhC?=", "日本語"),
    ("=?ks_c_5601-1987?B?vsiz5w==?=", "안녕"),
    ("=?EUC-KR?Q?=BE=C8=B3=E7?= world", "안녕 world"),
    // Cut inside 好 (BAC3) across two words, as some mailers cut long subjects: a mail client
    // joins the words' bytes before decoding.
    ("=?gb2312?B?xOO6?=\r\n =?gb2312?B?w6OsysC95w==?=", "你好，世界"),
];

/// A message whose subject, attachment name and text attachment are in GB2312: the subject and
/// the name decoded, the attachment hashed as its text in UTF-8 (你好，世界 and CRLF: 17 bytes).
const GB2312_MESSAGE: &[u8] = b"From: li@example.cn\r\nTo: bob@b.test\r\nSubject: =?GB2312?B?xOO6w6OsysC95w==?=\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
--b\r\nContent-Type: text/plain; charset=GB2312\r\nContent-Transfer-Encoding: base64\r\n\r\nxOO6w6OsysC95w0K\r\n\
--b\r\nContent-Type: text/plain; charset=gb2312; name=\"=?GB2312?B?uL28/i50eHQ=?=\"\r\n\
Content-Disposition: attachment; filename=\"=?GB2312?B?uL28/i50eHQ=?=\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nxOO6w6OsysC95w0K\r\n--b--\r\n";

#[test]
fn legacy_charsets_are_decoded_as_mail_clients_decode_them() {
    let mut c = Conv::new(LinkKind::Ethernet);
    hello(&mut c);
    let mut messages: Vec<Vec<u8>> = LEGACY_SUBJECTS
        .iter()
        .map(|(raw, _)| format!("From: a@a.test\r\nTo: b@b.test\r\nSubject: {raw}\r\n\r\nbody\r\n").into_bytes())
        .collect();
    messages.push(GB2312_MESSAGE.to_vec());
    for m in &messages {
        c.client(b"MAIL FROM:<a@a.test>\r\nRCPT TO:<b@b.test>\r\nDATA\r\n");
        c.server(b"250 ok\r\n250 ok\r\n354 go\r\n");
        c.client(&proto::dot_stuff(m));
        c.server(b"250 queued\r\n");
    }
    c.close();
    let d = c.dissect();
    assert_eq!(d.transactions.len(), messages.len());
    for (t, (raw, shown)) in d.transactions.iter().zip(LEGACY_SUBJECTS) {
        assert_eq!(t.subject.as_deref(), Some(*shown), "{raw}");
    }
    let t = d.transactions.last().expect("the GB2312 message");
    assert_eq!(t.subject.as_deref(), Some("你好，世界"));
    let a: Vec<_> = t.attachments.iter().map(|a| (a.name.as_deref(), a.content_type.as_str(), a.size)).collect();
    assert_eq!(a, [(Some("附件.txt"), "text/plain", 17)]);
    assert_eq!(t.attachments[0].sha256, sha256("你好，世界\r\n".as_bytes()));
}

/// Lines pipelined behind STARTTLS in the same turn (RFC 3207 §5 forbids it; the command
/// injection of CVE-2011-0411), then TLS from both sides: the upgrade is found past them and
/// noted, in whatever segments the turns come.
const INJECTED_AFTER_STARTTLS: &[Turn] = &[
    (false, b"220 mx.test ESMTP\r\n"),
    (true, b"EHLO client.test\r\n"),
    (false, b"250-mx.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n"),
    (true, b"STARTTLS\r\nMAIL FROM:<mallory@m.test>\r\n"),
    (false, b"220 2.0.0 Ready to start TLS\r\n"),
    (true, &[22, 3, 1, 0, 4, 1, 0, 0, 0]),
    (false, &[22, 3, 3, 0, 4, 2, 0, 0, 0]),
    (true, &[23, 3, 3, 0, 3, 0xaa, 0xbb, 0xcc]),
    (false, &[23, 3, 3, 0, 3, 0xdd, 0xee, 0xff]),
];

#[test]
fn starttls_is_found_past_lines_injected_behind_it() {
    let mut runs = vec![("whole turns".to_string(), replay(INJECTED_AFTER_STARTTLS, usize::MAX, None))];
    runs.push(("1-byte segments".into(), replay(INJECTED_AFTER_STARTTLS, 1, None)));
    for (turn, (_, bytes)) in INJECTED_AFTER_STARTTLS.iter().enumerate() {
        for at in 1..bytes.len() {
            runs.push((
                format!("turn {turn} cut at {at}"),
                replay(INJECTED_AFTER_STARTTLS, usize::MAX, Some((turn, at))),
            ));
        }
    }
    for (how, d) in &runs {
        let (s, t) = one(d);
        assert!(s.starttls_command && s.starttls_used, "{how}: {s:#?}");
        assert!(s.notes.iter().any(|n| n == "plaintext_after_starttls"), "{how}: {:?}", s.notes);
        assert_eq!((s.tls_records_orig, s.tls_records_resp), (2, 2), "{how}");
        assert!(t.tls && t.mailfrom.is_none(), "{how}: the injected MAIL is no transaction: {t:#?}");
    }
}

/// Part of the STARTTLS line itself is lost: the command is not seen, but the turn to TLS is
/// (TLS where the next command would be, the server's 220 right before its first record).
#[test]
fn a_starttls_line_cut_by_a_gap_still_turns_the_session_to_tls() {
    let mut c = Conv::new(LinkKind::Ethernet);
    c.server(PIPELINED_STARTTLS[0].1);
    let group = PIPELINED_STARTTLS[1].1;
    let tls = group.len() - b"TLS\r\n".len();
    c.client(&group[..tls]);
    c.client_skips(3);
    c.client(&group[tls + 3..]);
    for (from_client, b) in &PIPELINED_STARTTLS[2..] {
        if *from_client { c.client(b) } else { c.server(b) }
    }
    c.close();
    let d = c.dissect();
    assert_eq!(d.sessions.len(), 1);
    let s = &d.sessions[0];
    assert!(!s.starttls_command && s.starttls_used, "{s:#?}");
    assert_eq!(s.starttls_reply, Some(220));
    assert!(s.notes.iter().any(|n| n == "starttls_not_seen"), "{:?}", s.notes);
    assert_eq!((s.tls_records_orig, s.tls_records_resp), (2, 2));
}

/// The client's first TLS segment after the 220 is lost: the server's records show the turn,
/// the client's are not walked past the gap (as Zeek's SSL analyzer stops at a gap).
#[test]
fn a_lost_first_tls_segment_still_turns_the_session_to_tls() {
    let mut c = Conv::new(LinkKind::Ethernet);
    for (from_client, b) in &PIPELINED_STARTTLS[..3] {
        if *from_client { c.client(b) } else { c.server(b) }
    }
    c.client_skips(PIPELINED_STARTTLS[3].1.len() as u32);
    for (from_client, b) in &PIPELINED_STARTTLS[4..] {
        if *from_client { c.client(b) } else { c.server(b) }
    }
    c.close();
    let d = c.dissect();
    let (s, t) = one(&d);
    assert!(s.starttls_command && s.starttls_used, "{s:#?}");
    assert_eq!((s.tls_records_orig, s.tls_records_resp), (0, 2));
    assert!(s.notes.iter().any(|n| n == "gap_in_tls"), "{:?}", s.notes);
    assert!(t.tls);
}
