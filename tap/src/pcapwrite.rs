//! Writing classic pcap files, and building TCP/IP frames to put in them (etherparse's
//! `PacketBuilder`). Used to make hand-built test captures whose every byte is described in the
//! test that makes them, and by anyone who wants to feed the tap synthetic traffic.

use std::io::{self, Write};
use std::net::SocketAddr;

use etherparse::PacketBuilder;

/// The link layer of the file: Ethernet II (DLT_EN10MB) or raw IP (LINKTYPE_RAW).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    Ethernet,
    RawIp,
}

impl LinkKind {
    pub fn dlt(self) -> u32 {
        match self {
            LinkKind::Ethernet => 1,
            LinkKind::RawIp => 101,
        }
    }
}

/// TCP flags of a built segment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
    pub psh: bool,
}

/// A classic pcap file (microsecond timestamps, little endian, snaplen 262144).
pub struct PcapWriter<W: Write> {
    out: W,
    link: LinkKind,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header.
    pub fn new(mut out: W, link: LinkKind) -> io::Result<Self> {
        out.write_all(&file_header(link.dlt(), 262_144))?;
        Ok(Self { out, link })
    }

    pub fn link(&self) -> LinkKind {
        self.link
    }

    /// Writes one record: `frame` as captured at `ts` seconds since the epoch.
    pub fn write_frame(&mut self, ts: f64, frame: &[u8]) -> io::Result<()> {
        let len = u32::try_from(frame.len()).map_err(|_| io::Error::other("frame longer than 4 GiB"))?;
        let sec = ts.max(0.0).floor();
        let usec = ((ts.max(0.0) - sec) * 1e6).round().min(999_999.0);
        self.out.write_all(&record_header(sec as u32, usec as u32, len, len))?;
        self.out.write_all(frame)
    }

    /// Builds a TCP segment for this file's link type and writes it.
    #[allow(clippy::too_many_arguments)]
    pub fn write_tcp(
        &mut self,
        ts: f64,
        src: SocketAddr,
        dst: SocketAddr,
        seq: u32,
        ack: u32,
        flags: Flags,
        payload: &[u8],
    ) -> io::Result<()> {
        let frame = tcp_frame(self.link, src, dst, seq, ack, flags, payload)?;
        self.write_frame(ts, &frame)
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

/// The 24-byte header of a classic pcap file: microsecond timestamps, little endian.
pub fn file_header(dlt: u32, snaplen: u32) -> [u8; 24] {
    let mut h = [0u8; 24];
    h[..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    h[4..6].copy_from_slice(&2u16.to_le_bytes());
    h[6..8].copy_from_slice(&4u16.to_le_bytes());
    // Bytes 8..16: time zone and timestamp accuracy, both 0.
    h[16..20].copy_from_slice(&snaplen.to_le_bytes());
    h[20..24].copy_from_slice(&dlt.to_le_bytes());
    h
}

/// The 16-byte header of one record of a [`file_header`] file.
pub fn record_header(secs: u32, micros: u32, caplen: u32, len: u32) -> [u8; 16] {
    let mut h = [0u8; 16];
    for (field, v) in h.as_chunks_mut::<4>().0.iter_mut().zip([secs, micros, caplen, len]) {
        *field = v.to_le_bytes();
    }
    h
}

/// One TCP segment over IPv4 or IPv6 (by the addresses' family), with an Ethernet header or none.
pub fn tcp_frame(
    link: LinkKind,
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    flags: Flags,
    payload: &[u8],
) -> io::Result<Vec<u8>> {
    let ip = match link {
        LinkKind::Ethernet => PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]),
        LinkKind::RawIp => {
            return finish_tcp(ip_only(src, dst)?, src, dst, seq, ack, flags, payload);
        }
    };
    let b = match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => ip.ipv4(s.ip().octets(), d.ip().octets(), 64),
        (SocketAddr::V6(s), SocketAddr::V6(d)) => ip.ipv6(s.ip().octets(), d.ip().octets(), 64),
        _ => return Err(io::Error::other("source and destination of different address families")),
    };
    finish_tcp(b, src, dst, seq, ack, flags, payload)
}

fn ip_only(src: SocketAddr, dst: SocketAddr) -> io::Result<etherparse::PacketBuilderStep<etherparse::IpHeaders>> {
    match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => Ok(PacketBuilder::ipv4(s.ip().octets(), d.ip().octets(), 64)),
        (SocketAddr::V6(s), SocketAddr::V6(d)) => Ok(PacketBuilder::ipv6(s.ip().octets(), d.ip().octets(), 64)),
        _ => Err(io::Error::other("source and destination of different address families")),
    }
}

fn finish_tcp(
    ip: etherparse::PacketBuilderStep<etherparse::IpHeaders>,
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    flags: Flags,
    payload: &[u8],
) -> io::Result<Vec<u8>> {
    let mut b = ip.tcp(src.port(), dst.port(), seq, 65_535);
    if flags.syn {
        b = b.syn();
    }
    if flags.ack {
        b = b.ack(ack);
    }
    if flags.fin {
        b = b.fin();
    }
    if flags.rst {
        b = b.rst();
    }
    if flags.psh {
        b = b.psh();
    }
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload).map_err(io::Error::other)?;
    Ok(out)
}

/// Splits the IP packet in `frame` (as [`tcp_frame`] builds it, for `link`) into IP fragments
/// of at most `max_piece` payload bytes (rounded down to a multiple of 8), with identification
/// `id`, each behind the same link header: IPv4 fragments with the offset and More Fragments
/// fields, IPv6 ones with a Fragment extension header. For test captures of fragmented traffic.
pub fn ip_fragments(link: LinkKind, frame: &[u8], id: u16, max_piece: usize) -> io::Result<Vec<Vec<u8>>> {
    let link_len = match link {
        LinkKind::Ethernet => 14,
        LinkKind::RawIp => 0,
    };
    let (head, ip) =
        frame.split_at_checked(link_len).ok_or_else(|| io::Error::other("frame shorter than its link header"))?;
    let piece = max_piece / 8 * 8;
    if piece == 0 {
        return Err(io::Error::other("fragments must carry at least 8 bytes"));
    }
    let offset_of = |at: usize| {
        u16::try_from(at / 8)
            .ok()
            .and_then(|o| etherparse::IpFragOffset::try_new(o).ok())
            .ok_or_else(|| io::Error::other("datagram too long to fragment"))
    };
    let mut out = Vec::new();
    match ip.first().map(|b| b >> 4) {
        Some(4) => {
            let (h, payload) = etherparse::Ipv4Header::from_slice(ip).map_err(io::Error::other)?;
            let payload = payload.get(..h.payload_len().map_err(io::Error::other)? as usize).unwrap_or(payload);
            for (i, chunk) in payload.chunks(piece).enumerate() {
                let mut f = h.clone();
                f.identification = id;
                f.fragment_offset = offset_of(i * piece)?;
                f.more_fragments = (i + 1) * piece < payload.len();
                f.set_payload_len(chunk.len()).map_err(io::Error::other)?;
                f.header_checksum = f.calc_header_checksum();
                let mut frame = head.to_vec();
                f.write(&mut frame)?;
                frame.extend_from_slice(chunk);
                out.push(frame);
            }
        }
        Some(6) => {
            let (h, payload) = etherparse::Ipv6Header::from_slice(ip).map_err(io::Error::other)?;
            for (i, chunk) in payload.chunks(piece).enumerate() {
                let mut f = h.clone();
                f.next_header = etherparse::IpNumber::IPV6_FRAGMENTATION_HEADER;
                f.set_payload_length(chunk.len() + 8).map_err(io::Error::other)?;
                let fh = etherparse::Ipv6FragmentHeader::new(
                    h.next_header,
                    offset_of(i * piece)?,
                    (i + 1) * piece < payload.len(),
                    u32::from(id),
                );
                let mut frame = head.to_vec();
                f.write(&mut frame)?;
                fh.write(&mut frame)?;
                frame.extend_from_slice(chunk);
                out.push(frame);
            }
        }
        _ => return Err(io::Error::other("not an IP packet")),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Link, decode};

    #[test]
    fn built_frames_decode_back() {
        let c: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
        let s: SocketAddr = "[::1]:25".parse().expect("addr");
        let s4: SocketAddr = "127.0.0.2:25".parse().expect("addr");
        let f = tcp_frame(LinkKind::Ethernet, c, s4, 7, 9, Flags { psh: true, ack: true, ..Default::default() }, b"hi")
            .expect("frame");
        let seg = decode(Link::Ethernet, &f).expect("decodes");
        assert_eq!((seg.seq, seg.payload, seg.dport, seg.ack), (7, &b"hi"[..], 25, true));
        let v6: SocketAddr = "[::2]:41000".parse().expect("addr");
        let f = tcp_frame(LinkKind::RawIp, v6, s, 1, 0, Flags { syn: true, ..Default::default() }, b"").expect("frame");
        let seg = decode(Link::RawIp, &f).expect("decodes");
        assert!(seg.syn && seg.payload.is_empty());
        assert!(tcp_frame(LinkKind::RawIp, c, s, 1, 0, Flags::default(), b"").is_err());
    }
}
