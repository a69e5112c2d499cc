//! Writes a large synthetic capture of mixed plaintext and STARTTLS SMTP between mail systems,
//! for the tap's speed and memory benchmark (BENCHMARKS.md, `benches/compare/tap-vs-libpcap-tshark.sh`).
//!
//! ```sh
//! cargo run --release -p smtplab-tap --example gen_capture -- OUT.pcap SIZE_MB \
//!     [--seed N] [--port P] [--concurrency K] [--median BYTES] [--max-message BYTES]
//! ```
//!
//! SIZE_MB is in MiB (1024 gives a file of at least 1 GiB): sessions are started until the file
//! reaches it, then the open ones are finished. The capture is Ethernet, IPv4, 1448-byte TCP
//! segments (a 1500-byte MTU), with the three-way handshake, an ACK every second segment and
//! both FINs. Eight systems at 10.0.N.1 talk to each other on `--port` (default 2525, as the
//! project's relays do; tshark needs `-d tcp.port==2525,smtp`); six of them offer STARTTLS, and
//! a session between two of those goes into TLS after the EHLO (about 54% of sessions): a TLS 1.3
//! ClientHello with SNI, a ServerHello, then application-data records sized as the SMTP they
//! carry. Each session carries 1 to 3 transactions of 1 to 3 recipients; messages are
//! log-normal in size (median `--median`, default 16 KiB; sigma 1.5; clipped to 1 KiB ..
//! `--max-message`, default 1 MiB), with headers, dot-stuffed text and, for a third of them, a
//! base64 attachment. `--concurrency` sessions (default 64) are open at once, their packets
//! interleaved.
//!
//! Deterministic for a seed. On stdout, one JSON object: what was written, so a reader of the
//! capture can check its counts (records the tap should give = sessions + plaintext transactions
//! + one `tls` row per STARTTLS session).

use std::io::{BufWriter, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use tap::pcapwrite::{Flags, LinkKind, PcapWriter};

const MSS: usize = 1448;
const SYSTEMS: usize = 8;
/// Systems 0..TLS_SYSTEMS offer and use STARTTLS.
const TLS_SYSTEMS: usize = 6;
/// TLS 1.3 record overhead: inner content type and AEAD tag.
const TLS_OVERHEAD: usize = 17;

/// SplitMix64: small, fast and good enough for synthetic traffic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Uniform in (0, 1).
    fn unit(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        (-2.0 * self.unit().ln()).sqrt() * (std::f64::consts::TAU * self.unit()).cos()
    }

    fn fill(&mut self, out: &mut Vec<u8>, n: usize) {
        let target = out.len() + n;
        while out.len() + 8 <= target {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        while out.len() < target {
            out.push(self.next() as u8);
        }
    }
}

/// One side's turn: bytes sent by the client or the server.
struct Turn {
    from_client: bool,
    bytes: Vec<u8>,
}

struct Totals {
    sessions: u64,
    starttls_sessions: u64,
    plaintext_transactions: u64,
    tls_transactions: u64,
    message_bytes: u64,
    packets: u64,
    bytes: u64,
}

fn host(i: usize) -> String {
    format!("mx.sys{i}.example")
}

fn addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, i as u8 + 1, 1)
}

const WORDS: &[&str] = &[
    "the",
    "mail",
    "relay",
    "queue",
    "message",
    "system",
    "transport",
    "line",
    "report",
    "meeting",
    "budget",
    "draft",
    "review",
    "attached",
    "please",
    "thanks",
    "tomorrow",
    "schedule",
    "project",
    "update",
    "server",
    "network",
    "threat",
    "passive",
    "observer",
    "volume",
    "encrypted",
    "plaintext",
    "header",
    "envelope",
];

/// A message of about `size` bytes: headers, text lines (some starting with a dot), and for a
/// third of them a base64 attachment making up most of the size.
fn message(rng: &mut Rng, size: usize, from: &str, to: &[String], n: u64, client: usize, server: usize) -> Vec<u8> {
    let mut m = Vec::with_capacity(size + 512);
    let subject: Vec<&str> = (0..4).map(|_| WORDS[rng.below(WORDS.len() as u64) as usize]).collect();
    let _ = write!(
        m,
        "Received: from {c} ({c} [{ca}]) by {s} with ESMTP id {n:x}; Tue, 14 Nov 2023 22:13:20 +0000\r\n\
         Received: from user.sys{ci}.example by {c} with ESMTPSA id {n:x}a; Tue, 14 Nov 2023 22:13:19 +0000\r\n\
         From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: Tue, 14 Nov 2023 22:13:19 +0000\r\n\
         Message-ID: <{n:x}.{ci}@sys{ci}.example>\r\nMIME-Version: 1.0\r\nUser-Agent: smtplab-gen\r\n",
        c = host(client),
        ca = addr(client),
        s = host(server),
        ci = client,
        to = to.join(", "),
        subject = subject.join(" "),
    );
    let attach = rng.below(3) == 0 && size > 4096;
    let boundary = format!("b{n:x}");
    if attach {
        let _ = write!(m, "Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n--{boundary}\r\n");
        m.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\n\r\n");
    } else {
        m.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\n\r\n");
    }
    let text_size = if attach { size / 5 } else { size };
    while m.len() < text_size {
        let mut line = String::new();
        if rng.below(40) == 0 {
            line.push('.');
        }
        while line.len() < 72 {
            line.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
            line.push(' ');
        }
        m.extend_from_slice(line.trim_end().as_bytes());
        m.extend_from_slice(b"\r\n");
    }
    if attach {
        let _ = write!(
            m,
            "\r\n--{boundary}\r\nContent-Type: application/pdf; name=\"doc{n}.pdf\"\r\n\
             Content-Disposition: attachment; filename=\"doc{n}.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        );
        let raw = size.saturating_sub(m.len()) * 3 / 4;
        let mut bytes = Vec::with_capacity(raw);
        rng.fill(&mut bytes, raw);
        for chunk in bytes.chunks(57) {
            base64(chunk, &mut m);
            m.extend_from_slice(b"\r\n");
        }
        let _ = write!(m, "--{boundary}--\r\n");
    }
    m
}

fn base64(input: &[u8], out: &mut Vec<u8>) {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for c in input.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(T[(n >> 18) as usize & 63]);
        out.push(T[(n >> 12) as usize & 63]);
        out.push(if c.len() > 1 { T[(n >> 6) as usize & 63] } else { b'=' });
        out.push(if c.len() > 2 { T[n as usize & 63] } else { b'=' });
    }
}

fn dot_stuff(m: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(m.len() + m.len() / 64 + 5);
    let mut at_start = true;
    for &b in m {
        if at_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_start = b == b'\n';
    }
    out.extend_from_slice(b".\r\n");
    out
}

fn u16be(v: usize) -> [u8; 2] {
    (v as u16).to_be_bytes()
}

fn record(ctype: u8, body: &[u8]) -> Vec<u8> {
    let mut r = vec![ctype, 3, 3];
    r.extend_from_slice(&u16be(body.len()));
    r.extend_from_slice(body);
    r
}

fn handshake(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut h = vec![kind];
    h.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    h.extend_from_slice(body);
    h
}

fn ext(kind: u16, body: &[u8]) -> Vec<u8> {
    let mut e = kind.to_be_bytes().to_vec();
    e.extend_from_slice(&u16be(body.len()));
    e.extend_from_slice(body);
    e
}

fn client_hello(rng: &mut Rng, sni: &str) -> Vec<u8> {
    let mut b = vec![3, 3];
    rng.fill(&mut b, 32);
    b.push(32);
    rng.fill(&mut b, 32);
    let suites: [u16; 5] = [0x1301, 0x1302, 0x1303, 0xc02f, 0xc030];
    b.extend_from_slice(&u16be(suites.len() * 2));
    for s in suites {
        b.extend_from_slice(&s.to_be_bytes());
    }
    b.extend_from_slice(&[1, 0]);
    let mut exts = Vec::new();
    let mut name = vec![0];
    name.extend_from_slice(&u16be(sni.len()));
    name.extend_from_slice(sni.as_bytes());
    let mut list = u16be(name.len()).to_vec();
    list.extend_from_slice(&name);
    exts.extend(ext(0x0000, &list));
    exts.extend(ext(0x000a, &[0, 4, 0x00, 0x1d, 0x00, 0x17]));
    exts.extend(ext(0x000d, &[0, 4, 0x04, 0x03, 0x08, 0x04]));
    exts.extend(ext(0x002b, &[4, 3, 4, 3, 3]));
    let mut share = vec![0, 36, 0x00, 0x1d, 0, 32];
    rng.fill(&mut share, 32);
    exts.extend(ext(0x0033, &share));
    b.extend_from_slice(&u16be(exts.len()));
    b.extend_from_slice(&exts);
    let mut r = record(22, &handshake(1, &b));
    r[2] = 1; // record version 3.1 in the ClientHello, as TLS 1.3 clients send
    r
}

fn server_hello(rng: &mut Rng) -> Vec<u8> {
    let mut b = vec![3, 3];
    rng.fill(&mut b, 32);
    b.push(32);
    rng.fill(&mut b, 32);
    b.extend_from_slice(&0x1301u16.to_be_bytes());
    b.push(0);
    let mut exts = ext(0x002b, &[3, 4]);
    let mut share = vec![0x00, 0x1d, 0, 32];
    rng.fill(&mut share, 32);
    exts.extend(ext(0x0033, &share));
    b.extend_from_slice(&u16be(exts.len()));
    b.extend_from_slice(&exts);
    record(22, &handshake(2, &b))
}

/// Application-data records carrying `plain` bytes of SMTP (random ciphertext of the right size).
fn app_data(rng: &mut Rng, plain: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(plain + plain / 16384 * 22 + 22);
    let mut left = plain;
    loop {
        let n = left.min(16384);
        let len = n + TLS_OVERHEAD;
        out.extend_from_slice(&[23, 3, 3]);
        out.extend_from_slice(&u16be(len));
        rng.fill(&mut out, len);
        left -= n;
        if left == 0 {
            break;
        }
    }
    out
}

/// One session's turns, from the greeting to the QUIT reply.
fn session(rng: &mut Rng, client: usize, server: usize, sizes: (f64, usize), totals: &mut Totals) -> Vec<Turn> {
    let (median, max_message) = sizes;
    let tls = client < TLS_SYSTEMS && server < TLS_SYSTEMS;
    let mut turns = Vec::new();
    let mut say = |from_client: bool, bytes: Vec<u8>| turns.push(Turn { from_client, bytes });
    say(false, format!("220 {} ESMTP smtplab\r\n", host(server)).into_bytes());
    say(true, format!("EHLO {}\r\n", host(client)).into_bytes());
    let starttls = if server < TLS_SYSTEMS { "250-STARTTLS\r\n" } else { "" };
    let caps = format!(
        "250-{}\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 52428800\r\n{starttls}250 ENHANCEDSTATUSCODES\r\n",
        host(server)
    );
    say(false, caps.clone().into_bytes());
    totals.sessions += 1;
    let txs = 1 + usize::from(rng.below(4) == 0) + usize::from(rng.below(8) == 0);
    let mut script: Vec<(bool, Vec<u8>)> = Vec::new();
    for _ in 0..txs {
        let size = (median * (1.5 * rng.normal()).exp()).clamp(1024.0, max_message as f64) as usize;
        let from = format!("user{}@sys{client}.example", rng.below(50));
        let rcpts: Vec<String> =
            (0..1 + rng.below(3)).map(|_| format!("user{}@sys{server}.example", rng.below(50))).collect();
        let n = rng.next();
        let msg = message(rng, size, &from, &rcpts, n, client, server);
        totals.message_bytes += msg.len() as u64;
        script.push((true, format!("MAIL FROM:<{from}> SIZE={}\r\n", msg.len()).into_bytes()));
        script.push((false, b"250 2.1.0 sender ok\r\n".to_vec()));
        for r in &rcpts {
            script.push((true, format!("RCPT TO:<{r}>\r\n").into_bytes()));
            script.push((false, b"250 2.1.5 recipient ok\r\n".to_vec()));
        }
        script.push((true, b"DATA\r\n".to_vec()));
        script.push((false, b"354 end with <CRLF>.<CRLF>\r\n".to_vec()));
        script.push((true, dot_stuff(&msg)));
        script.push((false, format!("250 2.0.0 queued as {n:016x}\r\n").into_bytes()));
    }
    script.push((true, b"QUIT\r\n".to_vec()));
    script.push((false, format!("221 2.0.0 {} closing\r\n", host(server)).into_bytes()));
    if tls {
        totals.starttls_sessions += 1;
        totals.tls_transactions += txs as u64;
        say(true, b"STARTTLS\r\n".to_vec());
        say(false, b"220 2.0.0 ready to start TLS\r\n".to_vec());
        say(true, client_hello(rng, &host(server)));
        // ServerHello, ChangeCipherSpec, then the encrypted EncryptedExtensions, Certificate,
        // CertificateVerify and Finished as application data.
        let mut flight = server_hello(rng);
        flight.extend_from_slice(&[20, 3, 3, 0, 1, 1]);
        let certificates = 2400 + rng.below(1200) as usize;
        flight.extend(app_data(rng, certificates));
        say(false, flight);
        let mut fin = vec![20, 3, 3, 0, 1, 1];
        fin.extend(app_data(rng, 36));
        say(true, fin);
        say(false, app_data(rng, 250)); // session ticket
        say(true, app_data(rng, 6 + host(client).len()));
        say(false, app_data(rng, caps.len() - starttls.len()));
        for (from_client, bytes) in script {
            let r = app_data(rng, bytes.len());
            say(from_client, r);
        }
    } else {
        totals.plaintext_transactions += txs as u64;
        for (from_client, bytes) in script {
            say(from_client, bytes);
        }
    }
    turns
}

/// A session being written: its turns and how far it has got.
struct Live {
    client: SocketAddr,
    server: SocketAddr,
    turns: Vec<Turn>,
    turn: usize,
    offset: usize,
    /// Next sequence number of the client and of the server.
    seq: [u32; 2],
    /// Data segments since the last ACK from the receiver.
    unacked: u32,
    stage: Stage,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Handshake,
    Data,
    Closing,
    Done,
}

struct Out<W: Write> {
    w: PcapWriter<W>,
    ts: f64,
    totals: Totals,
}

impl<W: Write> Out<W> {
    fn tcp(&mut self, src: SocketAddr, dst: SocketAddr, seq: u32, ack: u32, flags: Flags, payload: &[u8]) {
        self.ts += 0.000_02;
        let frame =
            tap::pcapwrite::tcp_frame(self.w.link(), src, dst, seq, ack, flags, payload).expect("IPv4 frames build");
        self.w.write_frame(self.ts, &frame).expect("write the capture");
        self.totals.packets += 1;
        self.totals.bytes += 16 + frame.len() as u64;
    }
}

fn ack() -> Flags {
    Flags { ack: true, ..Default::default() }
}

impl Live {
    /// Writes the next packet (and the ACK it calls for) of this session.
    fn step<W: Write>(&mut self, out: &mut Out<W>) {
        let (c, s) = (self.client, self.server);
        match self.stage {
            Stage::Handshake => {
                out.tcp(c, s, self.seq[0], 0, Flags { syn: true, ..Default::default() }, b"");
                self.seq[0] = self.seq[0].wrapping_add(1);
                out.tcp(s, c, self.seq[1], self.seq[0], Flags { syn: true, ack: true, ..Default::default() }, b"");
                self.seq[1] = self.seq[1].wrapping_add(1);
                out.tcp(c, s, self.seq[0], self.seq[1], ack(), b"");
                self.stage = Stage::Data;
            }
            Stage::Data => {
                let Some(turn) = self.turns.get(self.turn) else {
                    self.stage = Stage::Closing;
                    return;
                };
                let from = usize::from(!turn.from_client);
                let (src, dst) = if turn.from_client { (c, s) } else { (s, c) };
                let end = (self.offset + MSS).min(turn.bytes.len());
                let piece = &turn.bytes[self.offset..end];
                let flags = Flags { ack: true, psh: end == turn.bytes.len(), ..Default::default() };
                out.tcp(src, dst, self.seq[from], self.seq[1 - from], flags, piece);
                self.seq[from] = self.seq[from].wrapping_add(piece.len() as u32);
                self.offset = end;
                self.unacked += 1;
                let turn_done = end == turn.bytes.len();
                if self.unacked == 2 || turn_done {
                    out.tcp(dst, src, self.seq[1 - from], self.seq[from], ack(), b"");
                    self.unacked = 0;
                }
                if turn_done {
                    self.turn += 1;
                    self.offset = 0;
                    out.ts += 0.000_2;
                }
            }
            Stage::Closing => {
                let fin = Flags { fin: true, ack: true, ..Default::default() };
                out.tcp(s, c, self.seq[1], self.seq[0], fin, b"");
                self.seq[1] = self.seq[1].wrapping_add(1);
                out.tcp(c, s, self.seq[0], self.seq[1], fin, b"");
                self.seq[0] = self.seq[0].wrapping_add(1);
                out.tcp(s, c, self.seq[1], self.seq[0], ack(), b"");
                self.stage = Stage::Done;
            }
            Stage::Done => {}
        }
    }
}

fn usage() -> ! {
    eprintln!("usage: gen_capture OUT.pcap SIZE_MB [--seed N] [--port P] [--concurrency K] [--max-message BYTES]");
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(path), Some(size_mb)) = (args.first(), args.get(1).and_then(|s| s.parse::<u64>().ok())) else { usage() };
    let mut seed = 1u64;
    let mut port = 2525u16;
    let mut concurrency = 64usize;
    let mut max_message = 1usize << 20;
    let mut median = 16384.0f64;
    let mut rest = args[2..].iter();
    while let Some(flag) = rest.next() {
        let value = rest.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--seed" => seed = value.parse().unwrap_or_else(|_| usage()),
            "--port" => port = value.parse().unwrap_or_else(|_| usage()),
            "--concurrency" => concurrency = value.parse::<usize>().unwrap_or_else(|_| usage()).max(1),
            "--median" => median = value.parse::<f64>().unwrap_or_else(|_| usage()).max(1024.0),
            "--max-message" => max_message = value.parse::<usize>().unwrap_or_else(|_| usage()).max(1024),
            _ => usage(),
        }
    }
    let target = size_mb << 20;
    let file = std::fs::File::create(path).unwrap_or_else(|e| {
        eprintln!("cannot create {path}: {e}");
        std::process::exit(1)
    });
    let mut rng = Rng(seed);
    let w = PcapWriter::new(BufWriter::with_capacity(1 << 20, file), LinkKind::Ethernet).expect("write the header");
    let mut out = Out {
        w,
        ts: 1_700_000_000.0,
        totals: Totals {
            sessions: 0,
            starttls_sessions: 0,
            plaintext_transactions: 0,
            tls_transactions: 0,
            message_bytes: 0,
            packets: 0,
            bytes: 24,
        },
    };
    let mut live: Vec<Live> = Vec::new();
    let mut next_port = 0u32;
    loop {
        while out.totals.bytes < target && live.len() < concurrency {
            let client = rng.below(SYSTEMS as u64) as usize;
            let server = (client + 1 + rng.below(SYSTEMS as u64 - 1) as usize) % SYSTEMS;
            let turns = session(&mut rng, client, server, (median, max_message), &mut out.totals);
            let cport = 32768 + (next_port % 28000) as u16;
            next_port += 1;
            live.push(Live {
                client: SocketAddr::V4(SocketAddrV4::new(addr(client), cport)),
                server: SocketAddr::V4(SocketAddrV4::new(addr(server), port)),
                turns,
                turn: 0,
                offset: 0,
                seq: [rng.next() as u32, rng.next() as u32],
                unacked: 0,
                stage: Stage::Handshake,
            });
        }
        if live.is_empty() {
            break;
        }
        let i = rng.below(live.len() as u64) as usize;
        live[i].step(&mut out);
        if live[i].stage == Stage::Done {
            live.swap_remove(i);
        }
    }
    out.w.into_inner().flush().expect("flush the capture");
    let t = &out.totals;
    println!(
        "{{\"file\":{path:?},\"bytes\":{},\"packets\":{},\"sessions\":{},\"starttls_sessions\":{},\
         \"plaintext_transactions\":{},\"tls_transactions\":{},\"message_bytes\":{},\"expected_tap_records\":{}}}",
        t.bytes,
        t.packets,
        t.sessions,
        t.starttls_sessions,
        t.plaintext_transactions,
        t.tls_transactions,
        t.message_bytes,
        t.sessions + t.plaintext_transactions + t.starttls_sessions,
    );
}
