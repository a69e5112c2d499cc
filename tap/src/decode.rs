//! From a captured frame to a TCP segment: link layers, IPv4/IPv6, TCP. Plain Ethernet/IPv4/TCP
//! frames are read in place ([`fast`]); everything else goes through etherparse.

use std::net::IpAddr;

use etherparse::{NetSlice, SlicedPacket, TransportSlice, VlanSlice};

mod fast;

/// Link types this decoder reads (libpcap's DLT numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Ethernet,
    /// BSD loopback / DLT_NULL: a 4-byte address family in host order.
    Null,
    /// DLT_LOOP: the same with the family in network order.
    Loop,
    LinuxSll,
    LinuxSll2,
    RawIp,
}

impl Link {
    pub fn from_dlt(dlt: i32) -> Option<Link> {
        Some(match dlt {
            1 => Link::Ethernet,
            0 => Link::Null,
            108 => Link::Loop,
            113 => Link::LinuxSll,
            276 => Link::LinuxSll2,
            12 | 14 | 101 | 228 | 229 => Link::RawIp,
            _ => return None,
        })
    }
}

/// One TCP segment, borrowed from the frame.
#[derive(Debug, Clone)]
pub struct Segment<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
    pub payload: &'a [u8],
    /// The VLAN ids of the frame's 802.1Q tags, outer first (0: no tag there). On a trunk the
    /// same addresses and ports on two VLANs are two connections.
    pub vlans: [u16; 2],
}

/// Why a frame gave no segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Not TCP over IP (ARP, UDP, ...): normal, not counted as an error.
    NotTcp,
    /// An IP fragment: the caller hands the frame to [`crate::defrag::Defrag`].
    Fragment,
    /// Could not be decoded (truncated or malformed headers); counted.
    Malformed,
}

pub fn decode(link: Link, frame: &[u8]) -> Result<Segment<'_>, Skip> {
    // Most frames are plain Ethernet/IPv4/TCP: read in place, without etherparse.
    let fast = match link {
        Link::Ethernet => fast::ethernet_ipv4_tcp(frame),
        Link::RawIp => fast::ipv4_tcp(frame),
        _ => None,
    };
    match fast {
        Some(seg) => Ok(seg),
        None => decode_etherparse(link, frame),
    }
}

/// Every link type and layer etherparse reads (the frames [`decode`]'s fast path leaves).
pub(crate) fn decode_etherparse(link: Link, frame: &[u8]) -> Result<Segment<'_>, Skip> {
    let sliced = slice(link, frame)?;
    let (src, dst, fragmented) = match &sliced.net {
        Some(NetSlice::Ipv4(ip)) => {
            let h = ip.header();
            (IpAddr::V4(h.source_addr()), IpAddr::V4(h.destination_addr()), ip.is_payload_fragmented())
        }
        Some(NetSlice::Ipv6(ip)) => {
            let h = ip.header();
            (IpAddr::V6(h.source_addr()), IpAddr::V6(h.destination_addr()), ip.is_payload_fragmented())
        }
        None => return Err(Skip::NotTcp),
    };
    if fragmented {
        return Err(Skip::Fragment);
    }
    let vlans = vlan_ids(&sliced);
    match sliced.transport {
        Some(TransportSlice::Tcp(tcp)) => Ok(Segment {
            src,
            dst,
            sport: tcp.source_port(),
            dport: tcp.destination_port(),
            seq: tcp.sequence_number(),
            syn: tcp.syn(),
            ack: tcp.ack(),
            fin: tcp.fin(),
            rst: tcp.rst(),
            payload: tcp.payload(),
            vlans,
        }),
        _ => Err(Skip::NotTcp),
    }
}

/// The VLAN ids of a frame's tags, outer first (0: no tag there). Only the VLAN id counts: the
/// priority bits may differ between packets of one connection.
pub(crate) fn vlan_ids(sliced: &SlicedPacket<'_>) -> [u16; 2] {
    match &sliced.vlan {
        None => [0, 0],
        Some(VlanSlice::SingleVlan(v)) => [v.vlan_identifier().value(), 0],
        Some(VlanSlice::DoubleVlan(v)) => [v.outer().vlan_identifier().value(), v.inner().vlan_identifier().value()],
    }
}

/// The link layer peeled off and the IP packet sliced (headers checked, payload borrowed).
pub(crate) fn slice(link: Link, frame: &[u8]) -> Result<SlicedPacket<'_>, Skip> {
    match link {
        Link::Ethernet => SlicedPacket::from_ethernet(frame),
        Link::LinuxSll => SlicedPacket::from_linux_sll(frame),
        Link::Null | Link::Loop => {
            let (&family, ip) = frame.split_first_chunk::<4>().ok_or(Skip::Malformed)?;
            let family = if link == Link::Loop {
                u32::from_be_bytes(family)
            } else {
                // Host order of the machine that wrote the file: whichever reading is small.
                let le = u32::from_le_bytes(family);
                if le <= 0xffff { le } else { u32::from_be_bytes(family) }
            };
            // AF_INET everywhere; AF_INET6 on Linux, NetBSD/OpenBSD, FreeBSD, macOS.
            if !matches!(family, 2 | 10 | 24 | 28 | 30) {
                return Err(Skip::NotTcp);
            }
            SlicedPacket::from_ip(ip)
        }
        Link::LinuxSll2 => {
            // SLL2: the protocol type (an EtherType) is the first field of its 20-byte header.
            let (header, ip) = frame.split_first_chunk::<20>().ok_or(Skip::Malformed)?;
            match u16::from_be_bytes([header[0], header[1]]) {
                0x0800 | 0x86dd => SlicedPacket::from_ip(ip),
                _ => return Err(Skip::NotTcp),
            }
        }
        Link::RawIp => SlicedPacket::from_ip(frame),
    }
    .map_err(|_| Skip::Malformed)
}
