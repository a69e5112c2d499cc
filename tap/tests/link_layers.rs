//! Link layers, with frames built by hand around one IPv4 (or IPv6) TCP segment: Linux cooked
//! v1 and v2, BSD loopback in both byte orders, raw IP, Ethernet with one and two VLAN tags,
//! and IPv6. Each is decoded directly and also read end to end from a pcap of that link type.

use std::net::{IpAddr, SocketAddr};

use tap::decode::{Link, Skip, decode};
use tap::pcapwrite::{Flags, LinkKind, tcp_frame};

fn addrs(v6: bool) -> (SocketAddr, SocketAddr) {
    if v6 {
        ("[2001:db8::1]:40000".parse().expect("addr"), "[2001:db8::25]:25".parse().expect("addr"))
    } else {
        ("192.0.2.1:40000".parse().expect("addr"), "192.0.2.25:25".parse().expect("addr"))
    }
}

/// An IP packet carrying a TCP segment with `payload`.
fn ip_packet(v6: bool, payload: &[u8]) -> Vec<u8> {
    let (c, s) = addrs(v6);
    tcp_frame(LinkKind::RawIp, c, s, 5, 0, Flags { psh: true, ..Default::default() }, payload).expect("frame")
}

fn ethertype(v6: bool) -> [u8; 2] {
    if v6 { [0x86, 0xdd] } else { [0x08, 0x00] }
}

/// Linux cooked capture v1: packet type, ARPHRD, address length, 8 address bytes, protocol.
fn sll(v6: bool) -> Vec<u8> {
    let mut f = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0];
    f.extend_from_slice(&ethertype(v6));
    f.extend_from_slice(&ip_packet(v6, b"EHLO x\r\n"));
    f
}

/// Linux cooked capture v2: protocol (2), reserved (2), interface index (4), ARPHRD (2),
/// packet type (1), address length (1), 8 address bytes.
fn sll2_with(proto: [u8; 2], rest: &[u8]) -> Vec<u8> {
    let mut f = proto.to_vec();
    f.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
    assert_eq!(f.len(), 20);
    f.extend_from_slice(rest);
    f
}

fn null(family: u32, big_endian: bool, v6: bool) -> Vec<u8> {
    let mut f = if big_endian { family.to_be_bytes() } else { family.to_le_bytes() }.to_vec();
    f.extend_from_slice(&ip_packet(v6, b"EHLO x\r\n"));
    f
}

/// Ethernet II with the given VLAN tags (TPID, VLAN id) before the EtherType.
fn ethernet(tags: &[(u16, u16)], v6: bool) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    for (tpid, id) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&id.to_be_bytes());
    }
    f.extend_from_slice(&ethertype(v6));
    f.extend_from_slice(&ip_packet(v6, b"EHLO x\r\n"));
    f
}

fn check(link: Link, frame: &[u8], v6: bool) {
    let seg = decode(link, frame).unwrap_or_else(|e| panic!("{link:?} v6={v6}: {e:?}"));
    let (c, s) = addrs(v6);
    assert_eq!((seg.src, seg.dst), (c.ip(), s.ip()), "{link:?}");
    assert_eq!((seg.sport, seg.dport, seg.seq), (40000, 25, 5), "{link:?}");
    assert_eq!(seg.payload, b"EHLO x\r\n", "{link:?}");
}

#[test]
fn every_link_layer_decodes_ipv4_and_ipv6() {
    for v6 in [false, true] {
        check(Link::RawIp, &ip_packet(v6, b"EHLO x\r\n"), v6);
        check(Link::LinuxSll, &sll(v6), v6);
        check(Link::LinuxSll2, &sll2_with(ethertype(v6), &ip_packet(v6, b"EHLO x\r\n")), v6);
        let family = if v6 { 10 } else { 2 };
        check(Link::Null, &null(family, false, v6), v6);
        check(Link::Null, &null(family, true, v6), v6);
        check(Link::Loop, &null(family, true, v6), v6);
        check(Link::Ethernet, &ethernet(&[], v6), v6);
        check(Link::Ethernet, &ethernet(&[(0x8100, 125)], v6), v6);
        check(Link::Ethernet, &ethernet(&[(0x88a8, 10), (0x8100, 20)], v6), v6);
    }
    for family in [24, 28, 30] {
        check(Link::Null, &null(family, false, true), true);
    }
}

#[test]
fn non_ip_protocol_types_are_not_misread() {
    let ip = ip_packet(false, b"EHLO x\r\n");
    // SLL2 carrying ARP (0x0806) whose bytes happen to be an IPv4 packet: not TCP.
    assert_eq!(decode(Link::LinuxSll2, &sll2_with([0x08, 0x06], &ip)).err(), Some(Skip::NotTcp));
    // An IPX frame type in the Linux cooked v1 header: not TCP either.
    let mut f = sll(false);
    f[14..16].copy_from_slice(&[0x81, 0x37]);
    assert_eq!(decode(Link::LinuxSll, &f).err(), Some(Skip::NotTcp));
    // BSD loopback with an unknown family (AF_APPLETALK = 16).
    assert_eq!(decode(Link::Null, &null(16, false, false)).err(), Some(Skip::NotTcp));
    // Headers cut short.
    assert_eq!(decode(Link::LinuxSll2, &[0x08, 0x00, 0, 0]).err(), Some(Skip::Malformed));
    assert_eq!(decode(Link::Null, &[2, 0]).err(), Some(Skip::Malformed));
    assert_eq!(decode(Link::RawIp, &ip[..10]).err(), Some(Skip::Malformed));
    // ARP over Ethernet is normal traffic, not an error.
    let mut arp = vec![0xff; 12];
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.extend_from_slice(&[0; 28]);
    assert_eq!(decode(Link::Ethernet, &arp).err(), Some(Skip::NotTcp));
}

#[test]
fn ipv4_fragments_are_left_to_reassembly() {
    let mut ip = ip_packet(false, b"EHLO x\r\n");
    // More-fragments flag set: the first fragment of a datagram.
    ip[6] |= 0x20;
    assert_eq!(decode(Link::RawIp, &ip).err(), Some(Skip::Fragment));
}

/// A classic pcap of link type `dlt` holding `frames`.
fn pcap(dlt: u32, frames: &[Vec<u8>]) -> Vec<u8> {
    let mut f = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    f.extend_from_slice(&65535u32.to_le_bytes());
    f.extend_from_slice(&dlt.to_le_bytes());
    for (i, frame) in frames.iter().enumerate() {
        f.extend_from_slice(&1_700_000_000u32.to_le_bytes());
        f.extend_from_slice(&(i as u32).to_le_bytes());
        f.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        f.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        f.extend_from_slice(frame);
    }
    f
}

#[test]
fn each_link_type_reads_end_to_end() {
    let cases: Vec<(u32, Vec<u8>)> = vec![
        (1, ethernet(&[(0x88a8, 10), (0x8100, 20)], true)),
        (0, null(2, false, false)),
        (108, null(30, true, true)),
        (101, ip_packet(false, b"EHLO x\r\n")),
        (113, sll(true)),
        (276, sll2_with(ethertype(false), &ip_packet(false, b"EHLO x\r\n"))),
    ];
    for (dlt, frame) in cases {
        let d = tap::dissect_bytes("mem.pcap", &pcap(dlt, &[frame])).expect("reads");
        assert!(d.error.is_none(), "dlt {dlt}: {:?}", d.error);
        assert_eq!(d.sessions.len(), 1, "dlt {dlt}: one (one-sided) session");
        let s = &d.sessions[0];
        assert_eq!(s.helo.as_deref(), Some("x"), "dlt {dlt}");
        assert_eq!(s.resp_p, 25);
        let ip: IpAddr = s.orig_h.parse().expect("an address");
        assert!(matches!(ip, IpAddr::V4(_) | IpAddr::V6(_)));
    }
    match tap::dissect_bytes("mem.pcap", &pcap(147, &[])) {
        Err(tap::TapError::LinkType { linktype: 147, .. }) => {}
        other => panic!("unsupported link type is an error: {other:?}"),
    }
}

/// The link header of each link type, put in front of any IP packet.
fn wrap(dlt: u32, v6: bool, ip: &[u8]) -> Vec<u8> {
    let mut f = match dlt {
        1 => {
            let mut e = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x81, 0x00, 0, 125];
            e.extend_from_slice(&ethertype(v6));
            e
        }
        0 => u32::to_le_bytes(if v6 { 10 } else { 2 }).to_vec(),
        108 => u32::to_be_bytes(if v6 { 30 } else { 2 }).to_vec(),
        101 => Vec::new(),
        113 => {
            let mut h = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0];
            h.extend_from_slice(&ethertype(v6));
            h
        }
        276 => sll2_with(ethertype(v6), &[]),
        _ => unreachable!("a link type of this test"),
    };
    f.extend_from_slice(ip);
    f
}

#[test]
fn ip_fragments_are_reassembled_on_every_link_type() {
    let name = "relay-with-a-rather-long-name-so-that-the-command-needs-several-fragments.example";
    let ehlo = format!("EHLO {name}\r\n");
    for v6 in [false, true] {
        let frags =
            tap::pcapwrite::ip_fragments(LinkKind::RawIp, &ip_packet(v6, ehlo.as_bytes()), 7, 24).expect("fragments");
        assert!(frags.len() >= 4);
        for dlt in [1, 0, 108, 101, 113, 276] {
            // Last fragment first: the datagram's length is known before its start arrives.
            let frames: Vec<Vec<u8>> = frags.iter().rev().map(|f| wrap(dlt, v6, f)).collect();
            let d = tap::dissect_bytes("mem.pcap", &pcap(dlt, &frames)).expect("reads");
            assert!(d.error.is_none(), "dlt {dlt}: {:?}", d.error);
            assert_eq!(d.defrag.fragments, frags.len() as u64, "dlt {dlt} v6 {v6}");
            assert_eq!(d.defrag.reassembled, 1, "dlt {dlt} v6 {v6}");
            assert_eq!(d.sessions.len(), 1, "dlt {dlt} v6 {v6}");
            assert_eq!(d.sessions[0].helo.as_deref(), Some(name), "dlt {dlt} v6 {v6}");
        }
    }
}

/// A trunk capture: two clients with the same address, one on VLAN 10 and one on VLAN 20 (the
/// same private network twice), send their EHLO in IP fragments with the same identification,
/// interleaved. Each datagram is rebuilt from its own VLAN's fragments: two sessions, two
/// names, no overlap. Keyed by addresses and identification only, the fragments would make one
/// datagram with overlaps (the first fragments win) and lose the other.
#[test]
fn the_same_ip_identification_on_two_vlans_gives_two_datagrams() {
    let names = [
        "relay-on-vlan-ten.example-with-a-long-name-to-need-several-fragments",
        "relay-on-vlan-two.example-with-a-long-name-to-need-several-fragments",
    ];
    assert_eq!(names[0].len(), names[1].len());
    for v6 in [false, true] {
        let (c, s) = addrs(v6);
        let frags: Vec<Vec<Vec<u8>>> = names
            .iter()
            .zip([40000, 40001])
            .map(|(name, port)| {
                let c = SocketAddr::new(c.ip(), port);
                let ehlo = format!("EHLO {name}\r\n");
                let ip =
                    tcp_frame(LinkKind::RawIp, c, s, 5, 0, Flags { psh: true, ..Default::default() }, ehlo.as_bytes())
                        .expect("frame");
                tap::pcapwrite::ip_fragments(LinkKind::RawIp, &ip, 7, 24).expect("fragments")
            })
            .collect();
        assert!(frags[0].len() >= 4 && frags[0].len() == frags[1].len());
        let vlan = |id: u16, ip: &[u8]| {
            let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x81, 0x00];
            f.extend_from_slice(&id.to_be_bytes());
            f.extend_from_slice(&ethertype(v6));
            f.extend_from_slice(ip);
            f
        };
        let frames: Vec<Vec<u8>> =
            frags[0].iter().zip(&frags[1]).flat_map(|(a, b)| [vlan(10, a), vlan(20, b)]).collect();
        let d = tap::dissect_bytes("trunk.pcap", &pcap(1, &frames)).expect("reads");
        assert_eq!(d.defrag.fragments, frames.len() as u64, "v6 {v6}");
        assert_eq!(
            (d.defrag.reassembled, d.defrag.overlaps, d.defrag.incomplete),
            (2, 0, 0),
            "v6 {v6}: {:?}",
            d.defrag
        );
        let mut seen: Vec<(u16, Option<&str>)> = d.sessions.iter().map(|s| (s.orig_p, s.helo.as_deref())).collect();
        seen.sort();
        assert_eq!(seen, [(40000, Some(names[0])), (40001, Some(names[1]))], "v6 {v6}");
        assert!(d.sessions.iter().all(|s| !s.notes.iter().any(|n| n == "ip_fragment_overlap")), "v6 {v6}");
    }
}

/// On a trunk, one client and server pair talking on two VLANs with the same ports are two TCP
/// connections: their segments, interleaved, must not be reassembled into one stream. Each
/// session keeps its own EHLO name and gets its own uid; untagged, the same frames would be one
/// flow with overlapping data.
#[test]
fn the_same_ports_on_two_vlans_are_two_sessions() {
    for (v6, tags) in [(false, [10u16, 20]), (true, [10, 20])] {
        let (c, s) = addrs(v6);
        let names = ["mta-on-vlan-a.example", "mta-on-vlan-b.example"];
        // Frame by frame, both connections with the same sequence numbers and ports.
        let script = |name: &str| -> Vec<(bool, Vec<u8>, Flags)> {
            vec![
                (true, Vec::new(), Flags { syn: true, ..Default::default() }),
                (false, Vec::new(), Flags { syn: true, ack: true, ..Default::default() }),
                (false, b"220 mx.example ESMTP\r\n".to_vec(), Flags { psh: true, ack: true, ..Default::default() }),
                (true, format!("EHLO {name}\r\n").into_bytes(), Flags { psh: true, ack: true, ..Default::default() }),
                (false, b"250 mx.example\r\n".to_vec(), Flags { psh: true, ack: true, ..Default::default() }),
                (true, b"QUIT\r\n".to_vec(), Flags { psh: true, ack: true, ..Default::default() }),
                (false, b"221 bye\r\n".to_vec(), Flags { psh: true, ack: true, ..Default::default() }),
            ]
        };
        let mut frames = Vec::new();
        let mut seq = [[1000u32, 5000u32]; 2];
        let scripts = [script(names[0]), script(names[1])];
        for (a, b) in scripts[0].iter().zip(&scripts[1]) {
            for (conn, (vlan, (from_client, payload, flags))) in tags.iter().zip([a, b]).enumerate() {
                let (src, dst, dir) = if *from_client { (c, s, 0) } else { (s, c, 1) };
                let ip = tcp_frame(LinkKind::RawIp, src, dst, seq[conn][dir], seq[conn][1 - dir], *flags, payload)
                    .expect("frame");
                seq[conn][dir] = seq[conn][dir].wrapping_add(payload.len() as u32 + u32::from(flags.syn));
                let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x81, 0x00];
                f.extend_from_slice(&vlan.to_be_bytes());
                f.extend_from_slice(&ethertype(v6));
                f.extend_from_slice(&ip);
                frames.push(f);
            }
        }
        let d = tap::dissect_bytes("trunk.pcap", &pcap(1, &frames)).expect("reads");
        let mut seen: Vec<(Option<u16>, Option<&str>)> =
            d.sessions.iter().map(|s| (s.vlan, s.helo.as_deref())).collect();
        seen.sort();
        assert_eq!(
            seen,
            [(Some(tags[0]), Some(names[0])), (Some(tags[1]), Some(names[1]))],
            "v6 {v6}: {:?}",
            d.sessions
        );
        assert!(d.sessions.iter().all(|s| s.inner_vlan.is_none()), "v6 {v6}");
        assert_ne!(d.sessions[0].uid, d.sessions[1].uid, "v6 {v6}");
        assert!(d.sessions.iter().all(|s| s.notes.is_empty()), "v6 {v6}: {:?}", d.sessions);
    }
}
