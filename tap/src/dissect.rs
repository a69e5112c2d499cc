//! Reading a capture file end to end: frames to segments, segments to flows, flows to records.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use records::{TapSession, TapTransaction};

use crate::decode::{Link, Skip, decode};
use crate::error::TapError;
use crate::reassembly::HalfStream;
use crate::smtp::{SessionInput, dissect_session};

/// Out-of-order bytes buffered per direction before a hole is given up as a gap.
const MAX_PENDING: usize = 8 << 20;
/// Bytes stored per direction; beyond, bytes are counted only.
const MAX_STREAM: usize = 256 << 20;

/// Everything read from one capture.
#[derive(Debug, Default)]
pub struct Dissection {
    pub sessions: Vec<TapSession>,
    pub transactions: Vec<TapTransaction>,
    pub packets: u64,
    pub fragments_skipped: u64,
    pub malformed: u64,
    /// The read stopped early: the records above are those found before this error.
    pub error: Option<TapError>,
}

type Key = (SocketAddr, SocketAddr);

struct Flow {
    /// The endpoint that sent the first packet seen; `streams[0]` is what it sent.
    first: SocketAddr,
    second: SocketAddr,
    streams: [HalfStream; 2],
    /// Which direction sent a SYN without ACK: the client.
    syn_from: Option<usize>,
    fins: [bool; 2],
}

impl Flow {
    fn new(first: SocketAddr, second: SocketAddr) -> Self {
        Self {
            first,
            second,
            streams: [HalfStream::new(MAX_PENDING, MAX_STREAM), HalfStream::new(MAX_PENDING, MAX_STREAM)],
            syn_from: None,
            fins: [false; 2],
        }
    }
}

fn key(a: SocketAddr, b: SocketAddr) -> Key {
    if a <= b { (a, b) } else { (b, a) }
}

/// Reads a pcap or pcapng file. Fails only when the file cannot be opened or its link type is
/// not supported; a corrupt tail ends the read with `error` set and the records kept.
pub fn dissect_file(path: &Path) -> Result<Dissection, TapError> {
    let name = path.display().to_string();
    let classic = is_classic_pcap(path);
    let mut cap = pcap::Capture::from_file(path)
        .map_err(|e| TapError::Open { path: name.clone(), detail: format!("{e} (is it a pcap or pcapng file?)") })?;
    let dlt = cap.get_datalink();
    let link = Link::from_dlt(dlt.0).ok_or_else(|| TapError::LinkType {
        path: name.clone(),
        linktype: dlt.0,
        name: dlt.get_name().unwrap_or_else(|_| "unknown".into()),
    })?;
    let mut out = Dissection::default();
    let mut flows: HashMap<Key, Flow> = HashMap::new();
    let mut offset: u64 = 24;
    loop {
        let packet = match cap.next_packet() {
            Ok(p) => p,
            Err(pcap::Error::NoMorePackets) => break,
            Err(e) => {
                let detail = if classic { e.to_string() } else { format!("{e}; after packet {}", out.packets) };
                out.error = Some(TapError::Corrupt { path: name.clone(), offset, detail });
                break;
            }
        };
        out.packets += 1;
        offset += 16 + packet.header.caplen as u64;
        let ts = packet.header.ts.tv_sec as f64 + packet.header.ts.tv_usec as f64 / 1e6;
        let seg = match decode(link, packet.data) {
            Ok(s) => s,
            Err(Skip::NotTcp) => continue,
            Err(Skip::Fragment) => {
                out.fragments_skipped += 1;
                continue;
            }
            Err(Skip::Malformed) => {
                out.malformed += 1;
                continue;
            }
        };
        let src = SocketAddr::new(seg.src, seg.sport);
        let dst = SocketAddr::new(seg.dst, seg.dport);
        let k = key(src, dst);
        // A new SYN on a flow that already carried data is a new connection reusing the ports.
        if seg.syn
            && !seg.ack
            && let Some(old) = flows.get(&k)
            && (old.streams[0].delivered > 0 || old.streams[1].delivered > 0)
            && let Some(old) = flows.remove(&k)
        {
            finish(old, &mut out);
        }
        let flow = flows.entry(k).or_insert_with(|| Flow::new(src, dst));
        let dir = usize::from(src != flow.first);
        let half = &mut flow.streams[dir];
        if seg.syn {
            half.syn(seg.seq);
            if !seg.ack {
                flow.syn_from = Some(dir);
            }
        }
        let seq = if seg.syn { seg.seq.wrapping_add(1) } else { seg.seq };
        half.segment(seq, seg.payload, ts);
        if seg.fin {
            half.set_fin();
            flow.fins[dir] = true;
        }
        if seg.rst || (flow.fins[0] && flow.fins[1]) {
            // Late retransmissions after this start a fresh (data-less) flow and are ignored.
            if let Some(done) = flows.remove(&k) {
                finish(done, &mut out);
            }
        }
    }
    let mut rest: Vec<Flow> = flows.into_values().collect();
    rest.sort_by(|a, b| a.streams[0].first_ts.unwrap_or(0.0).total_cmp(&b.streams[0].first_ts.unwrap_or(0.0)));
    for flow in rest {
        finish(flow, &mut out);
    }
    out.sessions.sort_by(|a, b| a.ts.total_cmp(&b.ts));
    out.transactions.sort_by(|a, b| a.ts.total_cmp(&b.ts));
    Ok(out)
}

fn is_classic_pcap(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok()
        && matches!(
            magic,
            [0xd4, 0xc3, 0xb2, 0xa1] | [0xa1, 0xb2, 0xc3, 0xd4] | [0x4d, 0x3c, 0xb2, 0xa1] | [0xa1, 0xb2, 0x3c, 0x4d]
        )
}

/// Decides who is the client, whether the flow is SMTP, and dissects it.
fn finish(mut flow: Flow, out: &mut Dissection) {
    for s in &mut flow.streams {
        s.finish();
    }
    let starts_cmd = |s: &HalfStream| {
        let head = s.data.get(..5).unwrap_or(&[]);
        head.eq_ignore_ascii_case(b"EHLO ") || head.eq_ignore_ascii_case(b"HELO ")
    };
    let starts_reply = |s: &HalfStream| {
        s.data.len() >= 4 && s.data[..3].iter().all(u8::is_ascii_digit) && matches!(s.data[3], b' ' | b'-')
    };
    let client = flow.syn_from.unwrap_or_else(|| {
        if starts_cmd(&flow.streams[0]) || starts_reply(&flow.streams[1]) {
            0
        } else if starts_cmd(&flow.streams[1]) || starts_reply(&flow.streams[0]) {
            1
        } else {
            // Neither side says: the higher port is the client.
            usize::from(flow.first.port() < flow.second.port())
        }
    });
    let (c, s) = (&flow.streams[client], &flow.streams[1 - client]);
    let (orig, resp) = if client == 0 { (flow.first, flow.second) } else { (flow.second, flow.first) };
    let smtp = starts_reply(s) || starts_cmd(c) || (s.data.is_empty() && c.data.starts_with(b"MAIL FROM"));
    let implicit_tls = resp.port() == 465 && c.data.first() == Some(&0x16);
    if !smtp && !implicit_tls {
        return;
    }
    let ts = c.first_ts.unwrap_or(0.0).min(s.first_ts.unwrap_or(f64::MAX));
    let end = c.last_ts.max(s.last_ts);
    let mut session = TapSession {
        ts,
        uid: uid(ts, orig, resp),
        orig_h: ip_string(orig.ip()),
        orig_p: orig.port(),
        resp_h: ip_string(resp.ip()),
        resp_p: resp.port(),
        duration: (end - ts).max(0.0),
        orig_bytes: c.delivered,
        resp_bytes: s.delivered,
        gaps: (c.gaps.len() + s.gaps.len()) as u64,
        ..Default::default()
    };
    if s.data.is_empty() && !c.data.is_empty() {
        session.notes.push("one_sided".into());
    }
    if !c.saw_syn {
        session.notes.push("mid_stream_start".into());
    }
    if implicit_tls {
        let ct = crate::tls::walk(&c.data);
        let st = crate::tls::walk(&s.data);
        session.notes.push("implicit_tls".into());
        session.starttls_used = false;
        session.tls_records_orig = ct.records;
        session.tls_records_resp = st.records;
        session.tls_app_bytes_orig = ct.app_bytes;
        session.tls_app_bytes_resp = st.app_bytes;
        session.sni = ct.sni;
        session.tls_version = st.version;
        session.tls_cipher = st.cipher;
        out.sessions.push(session);
        return;
    }
    let result = dissect_session(SessionInput { session, client: c, server: s });
    out.sessions.push(result.session);
    out.transactions.extend(result.transactions);
}

fn ip_string(ip: IpAddr) -> String {
    ip.to_canonical().to_string()
}

/// A Zeek-style connection id: stable for the same flow and start time.
fn uid(ts: f64, orig: SocketAddr, resp: SocketAddr) -> String {
    let h = crate::message::sha256_hex(format!("{ts:.6}{orig}{resp}").as_bytes());
    format!("C{}", &h[..17])
}
