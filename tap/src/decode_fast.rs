//! The common frame read without etherparse: Ethernet II, IPv4 (options allowed), TCP, not a
//! fragment. etherparse builds a description of every layer, which made it the largest part of
//! the per-packet cost after the copy; here the fields the tap needs are read in place.
//!
//! Anything else (VLAN tags, IPv6, fragments, an authentication header, a length that does not
//! fit) returns `None` and goes through etherparse, which decides what it is. When this path
//! does give a segment, it is exactly the one etherparse gives (`tests::same_as_etherparse`
//! checks this on real frames and on many damaged copies of them).

use std::net::{IpAddr, Ipv4Addr};

use crate::decode::Segment;

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
    let first = *ip.first()?;
    let header_len = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || header_len < 20 || ip.len() < header_len {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    // Flags and fragment offset: more-fragments set, or an offset, is a fragment.
    let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
    if total < header_len || total > ip.len() || fragment || ip[9] != TCP {
        return None;
    }
    let tcp = &ip[header_len..total];
    let tcp_header = usize::from(*tcp.get(12)? >> 4) * 4;
    if tcp.len() < 20 || tcp_header < 20 || tcp.len() < tcp_header {
        return None;
    }
    let flags = tcp[13];
    Some(Segment {
        src: IpAddr::V4(Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15])),
        dst: IpAddr::V4(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19])),
        sport: u16::from_be_bytes([tcp[0], tcp[1]]),
        dport: u16::from_be_bytes([tcp[2], tcp[3]]),
        seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
        fin: flags & 0x01 != 0,
        syn: flags & 0x02 != 0,
        rst: flags & 0x04 != 0,
        ack: flags & 0x10 != 0,
        payload: &tcp[tcp_header..],
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
