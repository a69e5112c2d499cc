//! The common frame read without etherparse: Ethernet II, IPv4 (options allowed), TCP, not a
//! fragment. etherparse builds a description of every layer, which made it the largest part of
//! the per-packet cost after the copy; here the fields the tap needs are read in place.
//!
//! Anything else (VLAN tags, IPv6, fragments, an authentication header, a length that does not
//! fit) returns `None` and goes through etherparse, which decides what it is. When this path
//! does give a segment, it is exactly the one etherparse gives (`tests::same_as_etherparse`
//! checks this on real frames and on many damaged copies of them).

use std::net::{IpAddr, Ipv4Addr};

use super::Segment;

const ETHERNET_HEADER: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const TCP: u8 = 6;

/// An Ethernet II frame carrying an unfragmented IPv4 TCP segment.
#[inline]
pub fn ethernet_ipv4_tcp(frame: &[u8]) -> Option<Segment<'_>> {
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    if ethertype != ETHERTYPE_IPV4 {
        return None;
    }
    ipv4_tcp(frame.get(ETHERNET_HEADER..)?)
}

/// An unfragmented IPv4 packet carrying TCP, from its first byte.
#[inline]
pub fn ipv4_tcp(ip: &[u8]) -> Option<Segment<'_>> {
    // The fixed headers are read as arrays: one length check each, then constant offsets.
    let fixed: &[u8; 20] = ip.first_chunk()?;
    let header_len = usize::from(fixed[0] & 0x0f) * 4;
    if fixed[0] >> 4 != 4 || header_len < 20 {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([fixed[2], fixed[3]]));
    // Flags and fragment offset: more-fragments set, or an offset, is a fragment.
    let fragment = u16::from_be_bytes([fixed[6], fixed[7]]) & 0x3fff != 0;
    if total < header_len || fragment || fixed[9] != TCP {
        return None;
    }
    // `None` when the header or the total length does not fit in the packet.
    let tcp = ip.get(header_len..total)?;
    let th: &[u8; 20] = tcp.first_chunk()?;
    let tcp_header = usize::from(th[12] >> 4) * 4;
    if tcp_header < 20 {
        return None;
    }
    let payload = tcp.get(tcp_header..)?;
    let flags = th[13];
    Some(Segment {
        src: IpAddr::V4(Ipv4Addr::new(fixed[12], fixed[13], fixed[14], fixed[15])),
        dst: IpAddr::V4(Ipv4Addr::new(fixed[16], fixed[17], fixed[18], fixed[19])),
        sport: u16::from_be_bytes([th[0], th[1]]),
        dport: u16::from_be_bytes([th[2], th[3]]),
        seq: u32::from_be_bytes([th[4], th[5], th[6], th[7]]),
        fin: flags & 0x01 != 0,
        syn: flags & 0x02 != 0,
        rst: flags & 0x04 != 0,
        ack: flags & 0x10 != 0,
        payload,
        // Tagged frames are left to etherparse.
        vlans: [0, 0],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Link, Skip, decode_etherparse};
    use crate::pcapwrite::{Flags, LinkKind, PcapWriter};

    fn view(s: &Segment<'_>) -> String {
        format!(
            "{}:{} > {}:{} seq {} syn {} ack {} fin {} rst {} payload {:?}",
            s.src, s.sport, s.dst, s.dport, s.seq, s.syn, s.ack, s.fin, s.rst, s.payload
        )
    }

    fn check(frame: &[u8]) -> bool {
        let Some(fast) = ethernet_ipv4_tcp(frame) else { return false };
        let slow: Result<Segment<'_>, Skip> = decode_etherparse(Link::Ethernet, frame);
        match slow {
            Ok(slow) => assert_eq!(view(&fast), view(&slow), "{frame:02x?}"),
            Err(e) => panic!("etherparse says {e:?}, the fast path gave {} for {frame:02x?}", view(&fast)),
        }
        true
    }

    /// Real frames, and copies with header bytes changed, truncated or padded: wherever the fast
    /// path answers, etherparse gives the same segment.
    #[test]
    fn same_as_etherparse() {
        let mut w = PcapWriter::new(Vec::new(), LinkKind::Ethernet).expect("header");
        let (a, b) = ("10.0.0.1:40000".parse().expect("addr"), "10.0.0.2:25".parse().expect("addr"));
        w.write_tcp(1.0, a, b, 7, 0, Flags { syn: true, ..Default::default() }, b"").expect("frame");
        w.write_tcp(1.0, b, a, 9, 8, Flags { syn: true, ack: true, ..Default::default() }, b"").expect("frame");
        w.write_tcp(1.0, a, b, 8, 10, Flags { ack: true, psh: true, ..Default::default() }, b"EHLO x\r\n")
            .expect("frame");
        w.write_tcp(1.0, b, a, 10, 16, Flags { fin: true, ack: true, ..Default::default() }, b"221 bye\r\n")
            .expect("frame");
        let file = w.into_inner();
        let mut frames = Vec::new();
        let mut reader = crate::pcapfile::Reader::new(&file[..]).expect("capture");
        while let Ok(Some(p)) = reader.next_packet() {
            frames.push(p.data.to_vec());
        }
        assert_eq!(frames.len(), 4);
        let mut answered = 0;
        for f in &frames {
            assert!(check(f), "a plain frame takes the fast path");
            answered += 1;
            // Every header byte (Ethernet type, IPv4, TCP) set to values that matter.
            for at in 12..f.len().min(14 + 20 + 20 + 4) {
                for v in [0x00, 0x01, 0x02, 0x06, 0x0f, 0x20, 0x3f, 0x40, 0x45, 0x46, 0x4f, 0x50, 0x80, 0xf0, 0xff] {
                    let mut g = f.clone();
                    g[at] = v;
                    answered += usize::from(check(&g));
                }
            }
            // Cut anywhere, and padded past the IP total length (Ethernet minimum frame).
            for cut in 0..f.len() {
                answered += usize::from(check(&f[..cut]));
            }
            let mut padded = f.clone();
            padded.extend_from_slice(&[0xee; 30]);
            assert!(check(&padded));
        }
        assert!(answered > 1000, "{answered}");
    }
}
