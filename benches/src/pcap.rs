//! A classic pcap writer (DLT_EN10MB) and generators of SMTP captures for the tap's dissector.

use etherparse::PacketBuilder;

use crate::tls::Dir;

/// TCP payload per segment: Ethernet MTU 1500 minus IPv4 and TCP headers with timestamps.
pub const MSS: usize = 1448;

/// A classic libpcap file in memory: microsecond timestamps, Ethernet link type.
pub struct PcapWriter {
    out: Vec<u8>,
}

impl Default for PcapWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl PcapWriter {
    pub fn new() -> Self {
        let mut out = Vec::with_capacity(1 << 20);
        out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes()); // magic, microseconds
        out.extend_from_slice(&2u16.to_le_bytes()); // version 2.4
        out.extend_from_slice(&4u16.to_le_bytes());
        out.extend_from_slice(&0i32.to_le_bytes()); // thiszone
        out.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
        out.extend_from_slice(&262_144u32.to_le_bytes()); // snaplen
        out.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
        Self { out }
    }

    pub fn packet(&mut self, ts_us: u64, frame: &[u8]) {
        let len = u32::try_from(frame.len()).expect("frames are at most 64 KiB");
        let secs = u32::try_from(ts_us / 1_000_000).expect("bench timestamps fit in 32 bits");
        self.out.extend_from_slice(&secs.to_le_bytes());
        self.out.extend_from_slice(&((ts_us % 1_000_000) as u32).to_le_bytes());
        self.out.extend_from_slice(&len.to_le_bytes());
        self.out.extend_from_slice(&len.to_le_bytes());
        self.out.extend_from_slice(frame);
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.out
    }
}

/// One TCP connection being written into a capture: sequence numbers, ACKs, a clock.
pub struct TcpConn {
    ends: [([u8; 4], u16); 2],
    /// Next sequence number each side sends.
    seq: [u32; 2],
    pub ts_us: u64,
    frame: Vec<u8>,
}

impl TcpConn {
    /// SYN, SYN-ACK, ACK from `client` to `server`.
    pub fn open(w: &mut PcapWriter, client: ([u8; 4], u16), server: ([u8; 4], u16), ts_us: u64) -> Self {
        let mut c = Self { ends: [client, server], seq: [1_000, 5_000_000], ts_us, frame: Vec::with_capacity(1600) };
        c.emit(w, 0, Flags { syn: true, ..Flags::default() }, &[]);
        c.seq[0] = c.seq[0].wrapping_add(1);
        c.emit(w, 1, Flags { syn: true, ack: true, ..Flags::default() }, &[]);
        c.seq[1] = c.seq[1].wrapping_add(1);
        c.emit(w, 0, Flags { ack: true, ..Flags::default() }, &[]);
        c
    }

    /// Sends `bytes` from one side in MSS-sized segments, then a pure ACK from the other side.
    pub fn send(&mut self, w: &mut PcapWriter, dir: Dir, bytes: &[u8]) {
        let from = usize::from(dir == Dir::ServerToClient);
        for chunk in bytes.chunks(MSS) {
            self.emit(w, from, Flags { ack: true, psh: true, ..Flags::default() }, chunk);
            self.seq[from] = self.seq[from].wrapping_add(chunk.len() as u32);
        }
        self.emit(w, 1 - from, Flags { ack: true, ..Flags::default() }, &[]);
    }

    /// FIN from the client, FIN from the server, last ACK.
    pub fn close(mut self, w: &mut PcapWriter) -> u64 {
        self.emit(w, 0, Flags { fin: true, ack: true, ..Flags::default() }, &[]);
        self.seq[0] = self.seq[0].wrapping_add(1);
        self.emit(w, 1, Flags { fin: true, ack: true, ..Flags::default() }, &[]);
        self.seq[1] = self.seq[1].wrapping_add(1);
        self.emit(w, 0, Flags { ack: true, ..Flags::default() }, &[]);
        self.ts_us
    }

    fn emit(&mut self, w: &mut PcapWriter, from: usize, f: Flags, payload: &[u8]) {
        let (src, dst) = (self.ends[from], self.ends[1 - from]);
        let macs = [[2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]];
        let mut b = PacketBuilder::ethernet2(macs[from], macs[1 - from]).ipv4(src.0, dst.0, 64).tcp(
            src.1,
            dst.1,
            self.seq[from],
            65_535,
        );
        if f.syn {
            b = b.syn();
        }
        if f.ack {
            b = b.ack(self.seq[1 - from]);
        }
        if f.psh {
            b = b.psh();
        }
        if f.fin {
            b = b.fin();
        }
        self.frame.clear();
        b.write(&mut self.frame, payload).expect("an Ethernet/IPv4/TCP frame under 64 KiB");
        w.packet(self.ts_us, &self.frame);
        self.ts_us += 20;
    }
}

#[derive(Default, Clone, Copy)]
struct Flags {
    syn: bool,
    ack: bool,
    psh: bool,
    fin: bool,
}

/// Message sizes the generated sessions cycle through (an average near 38 KB).
pub const SESSION_SIZES: [usize; 4] = [2 << 10, 10 << 10, 40 << 10, 100 << 10];

const GREETING: &[u8] = b"220 mx.bench.example ESMTP smtplab\r\n";
const EHLO: &[u8] = b"EHLO client.sender.example\r\n";
const EHLO_REPLY: &[u8] = b"250-mx.bench.example\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 STARTTLS\r\n";

fn endpoints(i: usize) -> (([u8; 4], u16), ([u8; 4], u16)) {
    let client = ([127, 0, 1, 1 + (i / 20_000) as u8], 20_000 + (i % 20_000) as u16);
    (client, ([127, 0, 2, 1], 2525))
}

/// A capture of `sessions` plaintext SMTP sessions, each with one DATA transaction whose
/// message size cycles through [`SESSION_SIZES`].
pub fn plaintext_capture(sessions: usize) -> Vec<u8> {
    let mut w = PcapWriter::new();
    let mut ts = 1_790_000_000_000_000u64;
    for i in 0..sessions {
        let size = SESSION_SIZES[i % SESSION_SIZES.len()];
        let wire = proto::dot_stuff(&crate::mail::message(size, i as u64));
        let (client, server) = endpoints(i);
        let mut c = TcpConn::open(&mut w, client, server, ts);
        c.send(&mut w, Dir::ServerToClient, GREETING);
        c.send(&mut w, Dir::ClientToServer, EHLO);
        c.send(&mut w, Dir::ServerToClient, EHLO_REPLY);
        let mail = format!("MAIL FROM:<alice@sender.example> SIZE={size}\r\nRCPT TO:<bob@bench.example>\r\nDATA\r\n");
        c.send(&mut w, Dir::ClientToServer, mail.as_bytes());
        c.send(&mut w, Dir::ServerToClient, b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n");
        c.send(&mut w, Dir::ClientToServer, &wire);
        c.send(&mut w, Dir::ServerToClient, b"250 2.0.0 Ok: queued as 18F0A2B3C4D5E0001\r\n");
        c.send(&mut w, Dir::ClientToServer, b"QUIT\r\n");
        c.send(&mut w, Dir::ServerToClient, b"221 2.0.0 Bye\r\n");
        ts = c.close(&mut w) + 1_000;
    }
    w.into_bytes()
}

/// A capture of `sessions` STARTTLS sessions: plaintext up to the `220` to STARTTLS, then real
/// TLS 1.3 bytes (one recorded rustls session per message size, replayed in every session of
/// that size: the dissector only walks records, it holds no keys).
pub fn starttls_capture(sessions: usize) -> Vec<u8> {
    let id = crate::tls::Identity::new(crate::tls::KeyKind::EcdsaP256);
    let recorded: Vec<Vec<(Dir, Vec<u8>)>> = SESSION_SIZES
        .iter()
        .map(|&size| {
            let wire = proto::dot_stuff(&crate::mail::message(size, size as u64));
            crate::tls::recorded_starttls_session(&id, &wire)
        })
        .collect();
    let mut w = PcapWriter::new();
    let mut ts = 1_790_000_000_000_000u64;
    for i in 0..sessions {
        let (client, server) = endpoints(i);
        let mut c = TcpConn::open(&mut w, client, server, ts);
        c.send(&mut w, Dir::ServerToClient, GREETING);
        c.send(&mut w, Dir::ClientToServer, EHLO);
        c.send(&mut w, Dir::ServerToClient, EHLO_REPLY);
        c.send(&mut w, Dir::ClientToServer, b"STARTTLS\r\n");
        c.send(&mut w, Dir::ServerToClient, b"220 2.0.0 Ready to start TLS\r\n");
        for (dir, bytes) in &recorded[i % recorded.len()] {
            c.send(&mut w, *dir, bytes);
        }
        ts = c.close(&mut w) + 1_000;
    }
    w.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dissect(bytes: &[u8]) -> tap::Dissection {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("c.pcap");
        std::fs::write(&path, bytes).expect("write capture");
        tap::dissect_file(&path).expect("dissect")
    }

    #[test]
    fn the_tap_reads_generated_captures() {
        let d = dissect(&plaintext_capture(4));
        assert!(d.error.is_none(), "{:?}", d.error);
        assert_eq!(d.malformed, 0);
        assert_eq!(d.sessions.len(), 4);
        assert_eq!(d.transactions.len(), 4);
        assert!(d.sessions.iter().all(|s| s.gaps == 0 && !s.starttls_used));

        let d = dissect(&starttls_capture(4));
        assert!(d.error.is_none(), "{:?}", d.error);
        assert_eq!(d.sessions.len(), 4);
        // Zeek-style, the tap logs one row per STARTTLS session, with nothing recovered.
        assert!(d.transactions.iter().all(|t| t.tls && t.mailfrom.is_none() && t.message_bytes.is_none()));
        for s in &d.sessions {
            assert!(s.starttls_used, "{s:?}");
            assert!(s.tls_app_bytes_orig > 2 << 10, "{s:?}");
            assert_eq!(s.sni.as_deref(), Some(crate::tls::SERVER_NAME));
        }
    }
}
