//! IP fragment reassembly, IPv4 and IPv6, before TCP: the fragments of a datagram are
//! buffered until they cover it, then the datagram is rebuilt as one unfragmented IP packet
//! that [`crate::decode::decode`] reads like any other (as raw IP: the link layer of the
//! fragments does not matter any more, so every link type is covered).
//!
//! etherparse's own `IpDefragPool` is not used: it states that it is not safe against memory
//! exhaustion, and a later fragment overwrites earlier bytes (last wins) without telling.
//!
//! Datagrams are told apart as RFC 791 and RFC 8200 say (source, destination, identification
//! and, for IPv4, protocol) and by the VLAN ids of the frames that carry them (802.1Q, and
//! both tags of 802.1ad QinQ), as Suricata's defragmenter does. A trunk capture sees many
//! networks at once, whose private addresses repeat, and the identification is only 16 bits
//! in IPv4: two datagrams with the same addresses and identification on two VLANs are two
//! datagrams, not one with overlapping fragments. VLAN id 0 is a priority tag, not a VLAN, and
//! counts as untagged. The rebuilt datagram no longer carries its tags.
//!
//! Overlap policy: first wins, as the TCP reassembly of [`crate::reassembly`] (and Suricata's
//! "bsd"-like default, Zeek's `FragReassembler` which keeps the old bytes): bytes of a datagram
//! already received are never replaced by a later fragment. An overlap whose bytes differ
//! from those kept is counted ([`DefragStats::overlaps`]) and the rebuilt packet carries a
//! flag, so its session is noted `ip_fragment_overlap` (Zeek's weird
//! `fragment_inconsistency`). The first fragment with More Fragments clear fixes the
//! datagram's length; a later "last" fragment that says otherwise is an overlap too.
//!
//! Memory is bounded: at most [`MAX_PIECES`] pieces per datagram, [`MAX_DATAGRAMS`] open at
//! once and [`MAX_BYTES`] buffered by all of them; past a bound the oldest datagram is dropped
//! (counted in [`DefragStats::dropped`]). A datagram not complete [`TIMEOUT`] seconds (capture
//! time) after its first fragment is given up (counted in [`DefragStats::incomplete`]), as
//! Linux gives up after `ipfrag_time` (30 s); so are those still open at the end of the
//! capture. A lost fragment thus becomes a gap in the TCP stream, never a stall.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use etherparse::{IpNumber, Ipv4Header, Ipv6ExtensionSlice, Ipv6FlowLabel, Ipv6Header, NetSlice};

use crate::decode::{Link, slice};

/// Seconds (capture time) a datagram may wait for its missing fragments.
pub const TIMEOUT: f64 = 30.0;
/// Pieces kept per datagram: a 64 KiB datagram in 1280-byte fragments needs 52; many more is
/// a tiny-fragment attack, not a network.
pub const MAX_PIECES: usize = 128;
/// Datagrams being reassembled at once.
pub const MAX_DATAGRAMS: usize = 4096;
/// Bytes buffered by all incomplete datagrams together.
pub const MAX_BYTES: usize = 16 << 20;
/// What a buffered piece costs beyond its bytes (its `Vec` and its map entry), counted in
/// [`MAX_BYTES`] so that tiny fragments cannot hold much more memory than large ones.
const PIECE_OVERHEAD: usize = 64;
/// The largest datagram payload IPv4 and IPv6 (without jumbograms) can carry.
const MAX_PAYLOAD: usize = 65_535;

/// What the reassembly did over a read (fragments and datagrams).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DefragStats {
    /// IP fragments read.
    pub fragments: u64,
    /// Datagrams rebuilt whole.
    pub reassembled: u64,
    /// Datagrams given up because a fragment never came ([`TIMEOUT`], or the end of the
    /// capture).
    pub incomplete: u64,
    /// Datagrams dropped by a memory bound, or because a fragment was impossible (past 65535
    /// bytes).
    pub dropped: u64,
    /// Fragments that overlapped bytes already received with different content.
    pub overlaps: u64,
}

/// A datagram rebuilt from its fragments: an unfragmented IP packet.
#[derive(Debug)]
pub struct Reassembled {
    pub packet: Vec<u8>,
    /// The VLAN ids its fragments carried (outer, inner; 0: no tag), which the rebuilt IP
    /// packet itself no longer has.
    pub vlans: [u16; 2],
    /// Some fragment overlapped received bytes with other content (the first bytes were kept).
    pub overlap: bool,
}

/// The reassembly state of one read.
#[derive(Debug, Default)]
pub struct Defrag {
    open: HashMap<Key, Datagram>,
    /// Memory held by `open` (bytes and per-piece overhead).
    bytes: usize,
    pub stats: DefragStats,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    V4 { vlans: Vlans, src: [u8; 4], dst: [u8; 4], id: u16, proto: u8 },
    V6 { vlans: Vlans, src: [u8; 16], dst: [u8; 16], id: u32 },
}

/// The VLAN ids of the frame, outer first (0: no tag there).
type Vlans = [u16; 2];

#[derive(Debug)]
struct Datagram {
    first_ts: f64,
    /// Received bytes by offset in the datagram's payload, never overlapping.
    pieces: BTreeMap<usize, Vec<u8>>,
    /// Memory the pieces hold (their bytes and [`PIECE_OVERHEAD`] each).
    bytes: usize,
    /// Payload length, known from the fragment with More Fragments clear.
    end: Option<usize>,
    /// What the rebuilt header needs: addresses, protocol, TTL / hop limit.
    src: IpAddr,
    dst: IpAddr,
    proto: IpNumber,
    ttl: u8,
    overlap: bool,
}

/// One fragment, borrowed from its frame.
struct Fragment<'a> {
    key: Key,
    src: IpAddr,
    dst: IpAddr,
    proto: IpNumber,
    ttl: u8,
    offset: usize,
    more: bool,
    payload: &'a [u8],
}

impl Defrag {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the fragment carried by `frame` (one that [`crate::decode::decode`] answered
    /// `Skip::Fragment`); returns the datagram when this fragment completes it.
    pub fn add(&mut self, link: Link, frame: &[u8], ts: f64) -> Option<Reassembled> {
        let frag = fragment(link, frame)?;
        self.stats.fragments += 1;
        if frag.offset + frag.payload.len() > MAX_PAYLOAD {
            // Impossible on the wire (the "ping of death" shape): the whole datagram goes.
            if let Some(d) = self.open.remove(&frag.key) {
                self.bytes -= d.bytes;
            }
            self.stats.dropped += 1;
            return None;
        }
        if let Some(d) = self.open.get(&frag.key)
            && ts - d.first_ts > TIMEOUT
        {
            self.give_up(frag.key);
        }
        if !self.open.contains_key(&frag.key) {
            if self.open.len() >= MAX_DATAGRAMS {
                self.drop_oldest();
            }
            self.open.insert(
                frag.key,
                Datagram {
                    first_ts: ts,
                    pieces: BTreeMap::new(),
                    bytes: 0,
                    end: None,
                    src: frag.src,
                    dst: frag.dst,
                    proto: frag.proto,
                    ttl: frag.ttl,
                    overlap: false,
                },
            );
        }
        // The entry was just made or found. No unwrap: a missing one would only lose a fragment.
        let d = self.open.get_mut(&frag.key)?;
        let before = d.bytes;
        let differs = d.insert(frag.offset, frag.payload, frag.more);
        self.bytes += d.bytes - before;
        if differs {
            self.stats.overlaps += 1;
        }
        if d.pieces.len() > MAX_PIECES {
            self.discard(frag.key);
            self.stats.dropped += 1;
            return None;
        }
        if d.complete() {
            let d = self.open.remove(&frag.key)?;
            self.bytes -= d.bytes;
            self.stats.reassembled += 1;
            let vlans = match frag.key {
                Key::V4 { vlans, .. } | Key::V6 { vlans, .. } => vlans,
            };
            return d.rebuild().map(|r| Reassembled { vlans, ..r });
        }
        while self.bytes > MAX_BYTES && !self.open.is_empty() {
            self.drop_oldest();
        }
        None
    }

    /// Gives up the datagrams whose first fragment is more than [`TIMEOUT`] before `now`.
    pub fn expire(&mut self, now: f64) {
        let old: Vec<Key> = self.open.iter().filter(|(_, d)| now - d.first_ts > TIMEOUT).map(|(k, _)| *k).collect();
        for k in old {
            self.give_up(k);
        }
    }

    /// The end of the capture: whatever is still open will never complete.
    pub fn finish(&mut self) {
        self.stats.incomplete += self.open.len() as u64;
        self.open.clear();
        self.bytes = 0;
    }

    /// Bytes buffered now.
    pub fn stored_bytes(&self) -> usize {
        self.bytes
    }

    fn give_up(&mut self, k: Key) {
        if self.discard(k) {
            self.stats.incomplete += 1;
        }
    }

    fn drop_oldest(&mut self) {
        let oldest = self.open.iter().min_by(|a, b| a.1.first_ts.total_cmp(&b.1.first_ts)).map(|(k, _)| *k);
        if let Some(k) = oldest
            && self.discard(k)
        {
            self.stats.dropped += 1;
        }
    }

    fn discard(&mut self, k: Key) -> bool {
        match self.open.remove(&k) {
            Some(d) => {
                self.bytes -= d.bytes;
                true
            }
            None => false,
        }
    }
}

impl Datagram {
    /// Keeps the parts of `data` (at `offset`) not received yet: first wins. Returns whether an
    /// overlap had other bytes than those kept.
    fn insert(&mut self, offset: usize, data: &[u8], more: bool) -> bool {
        let mut differs = false;
        let end = offset + data.len();
        if !more {
            match self.end {
                None => self.end = Some(end),
                Some(e) if e != end => differs = true,
                Some(_) => {}
            }
        }
        // Pieces that overlap [offset, end): the one starting before, and those inside.
        let mut covered: Vec<(usize, usize)> = Vec::new();
        if let Some((&o, p)) = self.pieces.range(..offset).next_back()
            && o + p.len() > offset
        {
            covered.push((o, o + p.len()));
        }
        covered.extend(self.pieces.range(offset..end).map(|(&o, p)| (o, o + p.len())));
        let mut new_pieces: Vec<(usize, Vec<u8>)> = Vec::new();
        let mut at = offset;
        for (o, e) in covered.iter().copied().chain(std::iter::once((end, end))) {
            if o > at
                && let Some(piece) = data.get(at - offset..o.min(end) - offset)
            {
                new_pieces.push((at, piece.to_vec()));
            }
            // Compare the overlapped bytes with those kept.
            let (s, t) = (o.max(offset), e.min(end));
            if s < t
                && let Some(kept) = self.pieces.get(&o)
                && kept.get(s - o..t - o) != data.get(s - offset..t - offset)
            {
                differs = true;
            }
            at = at.max(e);
        }
        if differs {
            self.overlap = true;
        }
        for (o, p) in new_pieces {
            self.bytes += p.len() + PIECE_OVERHEAD;
            self.pieces.insert(o, p);
        }
        differs
    }

    /// The length is known and every byte below it was received.
    fn complete(&self) -> bool {
        let Some(end) = self.end else { return false };
        let mut at = 0usize;
        for (&o, p) in &self.pieces {
            if o > at || at >= end {
                break;
            }
            at = at.max(o + p.len());
        }
        at >= end
    }

    /// The datagram as one unfragmented IP packet (bytes past the length are left out).
    fn rebuild(self) -> Option<Reassembled> {
        let end = self.end?;
        let mut payload = Vec::with_capacity(end);
        for (o, p) in &self.pieces {
            if *o >= end {
                break;
            }
            // The piece up to the datagram's end, or all of it.
            payload.extend_from_slice(p.get(..end - o).unwrap_or(p));
        }
        let mut packet = Vec::with_capacity(payload.len() + 40);
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let len = u16::try_from(payload.len()).ok()?;
                let mut h = Ipv4Header::new(len, self.ttl, self.proto, s.octets(), d.octets()).ok()?;
                h.header_checksum = h.calc_header_checksum();
                h.write(&mut packet).ok()?;
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let h = Ipv6Header {
                    traffic_class: 0,
                    flow_label: Ipv6FlowLabel::ZERO,
                    payload_length: u16::try_from(payload.len()).ok()?,
                    next_header: self.proto,
                    hop_limit: self.ttl,
                    source: s.octets(),
                    destination: d.octets(),
                };
                h.write(&mut packet).ok()?;
            }
            _ => return None,
        }
        packet.extend_from_slice(&payload);
        Some(Reassembled { packet, vlans: [0, 0], overlap: self.overlap })
    }
}

/// The fragment in `frame`, if it is one that can be read.
fn fragment(link: Link, frame: &[u8]) -> Option<Fragment<'_>> {
    let sliced = slice(link, frame).ok()?;
    let vlans = crate::decode::vlan_ids(&sliced);
    match sliced.net? {
        NetSlice::Ipv4(ip) => {
            let h = ip.header();
            if !ip.is_payload_fragmented() {
                return None;
            }
            let (src, dst) = (h.source(), h.destination());
            Some(Fragment {
                key: Key::V4 { vlans, src, dst, id: h.identification(), proto: h.protocol().0 },
                src: IpAddr::from(src),
                dst: IpAddr::from(dst),
                proto: h.protocol(),
                ttl: h.ttl(),
                offset: usize::from(h.fragments_offset().value()) * 8,
                more: h.more_fragments(),
                payload: ip.payload().payload,
            })
        }
        NetSlice::Ipv6(ip) => {
            if !ip.is_payload_fragmented() {
                return None;
            }
            let h = ip.header();
            let fh = ip.extensions().clone().into_iter().find_map(|e| match e {
                Ipv6ExtensionSlice::Fragment(f) => Some(f),
                _ => None,
            })?;
            let (src, dst) = (h.source(), h.destination());
            Some(Fragment {
                key: Key::V6 { vlans, src, dst, id: fh.identification() },
                src: IpAddr::from(src),
                dst: IpAddr::from(dst),
                proto: fh.next_header(),
                ttl: h.hop_limit(),
                offset: usize::from(fh.fragment_offset().value()) * 8,
                more: fh.more_fragments(),
                payload: ip.payload().payload,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::decode::decode;
    use crate::pcapwrite::{Flags, LinkKind, ip_fragments, tcp_frame};

    fn segment(link: LinkKind, src: &str, dst: &str, payload: &[u8]) -> Vec<u8> {
        let (s, d): (SocketAddr, SocketAddr) = (src.parse().expect("addr"), dst.parse().expect("addr"));
        tcp_frame(link, s, d, 5, 0, Flags { ack: true, ..Default::default() }, payload).expect("frame")
    }

    fn payload(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn fragments_in_any_order_give_the_segment_back() {
        for (link, src, dst, dlt) in [
            (LinkKind::Ethernet, "10.0.0.1:40000", "10.0.0.2:25", Link::Ethernet),
            (LinkKind::RawIp, "[2001:db8::1]:40000", "[2001:db8::2]:25", Link::RawIp),
            (LinkKind::Ethernet, "[2001:db8::1]:40000", "[2001:db8::2]:25", Link::Ethernet),
        ] {
            let data = payload(3000);
            let frags = ip_fragments(link, &segment(link, src, dst, &data), 7, 1000).expect("fragments");
            assert_eq!(frags.len(), 4);
            for f in &frags {
                assert_eq!(decode(dlt, f).err(), Some(crate::decode::Skip::Fragment));
            }
            let mut d = Defrag::new();
            let order = [3, 1, 0, 2];
            let mut out = None;
            for (i, &n) in order.iter().enumerate() {
                let r = d.add(dlt, &frags[n], 1.0 + i as f64);
                assert_eq!(r.is_some(), i == 3, "complete only at the last one");
                out = out.or(r);
            }
            let r = out.expect("reassembled");
            assert!(!r.overlap);
            let seg = decode(Link::RawIp, &r.packet).expect("decodes");
            assert_eq!(seg.payload, &data[..]);
            assert_eq!((seg.sport, seg.dport, seg.seq), (40000, 25, 5));
            assert_eq!(d.stats, DefragStats { fragments: 4, reassembled: 1, ..Default::default() });
            assert_eq!(d.stored_bytes(), 0);
        }
    }

    /// VLAN tags: (TPID, tag control information), outer first.
    type Tags<'a> = &'a [(u16, u16)];

    /// Ethernet with the given VLAN tags (TPID, tag control information) around an IP packet.
    fn tagged(tags: Tags<'_>, ip: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
        for (tpid, tci) in tags {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&tci.to_be_bytes());
        }
        f.extend_from_slice(if ip[0] >> 4 == 6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });
        f.extend_from_slice(ip);
        f
    }

    #[test]
    fn the_same_identification_on_two_vlans_is_two_datagrams() {
        let q = |vid: u16| (0x8100, vid);
        let s = |vid: u16| (0x88a8, vid);
        // (tags of datagram A, tags of datagram B): differing in the only tag, the inner or
        // the outer one of QinQ, or tagged against untagged.
        let apart: [(Tags<'_>, Tags<'_>); 4] = [
            (&[q(10)], &[q(20)]),
            (&[s(100), q(10)], &[s(100), q(20)]),
            (&[s(100), q(10)], &[s(200), q(10)]),
            (&[], &[q(10)]),
        ];
        for (src, dst) in [("10.0.0.1:40000", "10.0.0.2:25"), ("[2001:db8::1]:40000", "[2001:db8::2]:25")] {
            let (a, b) = (payload(3000), payload(3001)[1..].to_vec());
            assert_ne!(a, b);
            let frags = |data: &[u8]| {
                ip_fragments(LinkKind::RawIp, &segment(LinkKind::RawIp, src, dst, data), 7, 1000).expect("fragments")
            };
            let (fa, fb) = (frags(&a), frags(&b));
            assert_eq!((fa.len(), fb.len()), (4, 4));
            for (ta, tb) in apart {
                // Interleaved, each datagram's last fragment first.
                let mut d = Defrag::new();
                let mut out = Vec::new();
                for n in [3, 0, 1, 2] {
                    out.extend(d.add(Link::Ethernet, &tagged(ta, &fa[n]), 1.0));
                    out.extend(d.add(Link::Ethernet, &tagged(tb, &fb[n]), 1.0));
                }
                assert_eq!(out.len(), 2, "{ta:?} {tb:?}: both datagrams complete");
                for (r, want) in out.iter().zip([&a, &b]) {
                    assert!(!r.overlap, "{ta:?} {tb:?}");
                    assert_eq!(decode(Link::RawIp, &r.packet).expect("decodes").payload, &want[..], "{ta:?} {tb:?}");
                }
                assert_eq!(d.stats, DefragStats { fragments: 8, reassembled: 2, ..Default::default() });
                assert_eq!(d.stored_bytes(), 0);
            }
            // The priority bits are not the VLAN, and VLAN 0 is a priority tag: the fragments
            // of one datagram tagged so are still one datagram.
            for (ta, tb) in [(&[q(10)][..], &[q(0x6000 | 10)][..]), (&[], &[q(0x2000)])] {
                let mut d = Defrag::new();
                let mut out = Vec::new();
                for (n, f) in fa.iter().enumerate() {
                    out.extend(d.add(Link::Ethernet, &tagged(if n % 2 == 0 { ta } else { tb }, f), 1.0));
                }
                let [r] = &out[..] else { panic!("{ta:?} {tb:?}: one datagram, {} rebuilt", out.len()) };
                assert_eq!(decode(Link::RawIp, &r.packet).expect("decodes").payload, &a[..]);
            }
        }
    }

    #[test]
    fn an_overlap_keeps_the_first_bytes_and_is_counted() {
        let data = payload(2000);
        let frame = segment(LinkKind::Ethernet, "10.0.0.1:40000", "10.0.0.2:25", &data);
        let frags = ip_fragments(LinkKind::Ethernet, &frame, 9, 800).expect("fragments");
        let mut forged = data.clone();
        forged[900..1000].fill(b'X');
        let forged = ip_fragments(
            LinkKind::Ethernet,
            &segment(LinkKind::Ethernet, "10.0.0.1:40000", "10.0.0.2:25", &forged),
            9,
            800,
        )
        .expect("fragments");
        let mut d = Defrag::new();
        assert!(d.add(Link::Ethernet, &frags[1], 1.0).is_none());
        assert!(d.add(Link::Ethernet, &forged[1], 1.0).is_none(), "a retransmission with other bytes");
        assert!(d.add(Link::Ethernet, &frags[0], 1.0).is_none());
        let r = d.add(Link::Ethernet, &frags[2], 1.0).expect("complete");
        assert!(r.overlap);
        assert_eq!(decode(Link::RawIp, &r.packet).expect("decodes").payload, &data[..]);
        assert_eq!(d.stats.overlaps, 1);
    }

    #[test]
    fn a_missing_fragment_times_out_and_memory_is_bounded() {
        let mut d = Defrag::new();
        let data = payload(1500);
        for i in 0..(MAX_DATAGRAMS + 10) {
            let frags = ip_fragments(
                LinkKind::RawIp,
                &segment(LinkKind::RawIp, "10.0.0.1:40000", "10.0.0.2:25", &data),
                i as u16,
                1000,
            )
            .expect("fragments");
            assert!(d.add(Link::RawIp, &frags[0], 1.0 + i as f64 / 1e4).is_none());
        }
        assert_eq!(d.stats.dropped, 10, "the oldest go first");
        assert!(d.stored_bytes() <= MAX_DATAGRAMS * (1000 + PIECE_OVERHEAD));
        d.expire(1.0 + TIMEOUT + 10.0);
        assert_eq!(d.stats.incomplete, MAX_DATAGRAMS as u64);
        assert_eq!(d.stored_bytes(), 0);
    }

    #[test]
    fn buffered_bytes_stay_under_the_total_bound() {
        let mut d = Defrag::new();
        let data = payload(61_000);
        let frame = segment(LinkKind::RawIp, "10.0.0.1:40000", "10.0.0.2:25", &data);
        for i in 0..300u16 {
            // The first 60000 bytes of each datagram, never the rest.
            let frags = ip_fragments(LinkKind::RawIp, &frame, i, 60_000).expect("fragments");
            assert!(d.add(Link::RawIp, &frags[0], 1.0 + f64::from(i) / 1e3).is_none());
            assert!(d.stored_bytes() <= MAX_BYTES, "{}", d.stored_bytes());
        }
        assert!(d.stats.dropped >= 300 - (MAX_BYTES / 60_000) as u64, "{:?}", d.stats);
    }

    #[test]
    fn a_fragment_past_64k_drops_its_datagram() {
        let mut ip = Ipv4Header::new(16, 64, IpNumber::TCP, [10, 0, 0, 1], [10, 0, 0, 2]).expect("header");
        ip.fragment_offset = etherparse::IpFragOffset::try_new(8190).expect("offset");
        ip.more_fragments = true;
        ip.header_checksum = ip.calc_header_checksum();
        let mut f = Vec::new();
        ip.write(&mut f).expect("write");
        f.extend_from_slice(&[0u8; 16]);
        let mut d = Defrag::new();
        assert!(d.add(Link::RawIp, &f, 1.0).is_none());
        assert_eq!((d.stats.dropped, d.stored_bytes()), (1, 0));
    }
}
