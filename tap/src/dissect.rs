//! Reading a capture file end to end: frames to segments, segments to flows, flows to records.
//!
//! Files are read by [`crate::pcapfile`] (classic pcap and pcapng, from a file or from memory),
//! so a corrupt record is reported at its byte offset in either format. A flow is SMTP when it
//! starts like SMTP, possibly after an HTTP CONNECT tunnel head, or is implicit TLS on port 465.

use std::collections::HashMap;
use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use records::{TapSession, TapTransaction};

use crate::decode::{Link, Skip, decode};
use crate::error::TapError;
use crate::pcapfile::{ReadError, Reader};
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
    /// Mail transactions seen in the clear, and (with `tls: true`, no envelope) one row for each
    /// session that went into TLS before any transaction, as Zeek's smtp.log has it.
    pub transactions: Vec<TapTransaction>,
    pub packets: u64,
    pub fragments_skipped: u64,
    pub malformed: u64,
    /// Packets of a pcapng interface whose link type is not read (other than the first one's).
    pub other_link: u64,
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

/// Reads a pcap or pcapng file. Fails only when the file cannot be opened, is not a capture, or
/// its link type is not supported; a corrupt tail ends the read with `error` set and the records
/// found before it kept.
pub fn dissect_file(path: &Path) -> Result<Dissection, TapError> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| TapError::Open { path: name.clone(), detail: e.to_string() })?;
    dissect_reader(&name, std::io::BufReader::with_capacity(1 << 20, file))
}

/// [`dissect_file`] over capture bytes in memory; `name` stands for the path in errors.
pub fn dissect_bytes(name: &str, bytes: &[u8]) -> Result<Dissection, TapError> {
    dissect_reader(name, bytes)
}

/// [`dissect_file`] over any byte source.
pub fn dissect_reader<R: Read>(name: &str, input: R) -> Result<Dissection, TapError> {
    let mut out = Dissection::default();
    let mut reader = match Reader::new(input) {
        Ok(r) => r,
        Err(ReadError::NotCapture(detail)) => {
            return Err(TapError::Open { path: name.into(), detail: format!("not a pcap or pcapng file ({detail})") });
        }
        Err(ReadError::Corrupt { offset, detail }) => {
            out.error = Some(TapError::Corrupt { path: name.into(), offset, detail });
            return Ok(out);
        }
    };
    let unsupported = |linktype: u32| TapError::LinkType {
        path: name.into(),
        linktype: linktype as i32,
        name: pcap::Linktype(linktype as i32).get_name().unwrap_or_else(|_| "unknown".into()),
    };
    if let Some(lt) = reader.linktype()
        && Link::from_dlt(lt as i32).is_none()
    {
        return Err(unsupported(lt));
    }
    let mut flows: HashMap<Key, Flow> = HashMap::new();
    loop {
        let packet = match reader.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(ReadError::Corrupt { offset, detail }) => {
                out.error = Some(TapError::Corrupt { path: name.into(), offset, detail });
                break;
            }
            Err(ReadError::NotCapture(detail)) => {
                out.error = Some(TapError::Corrupt { path: name.into(), offset: 0, detail });
                break;
            }
        };
        out.packets += 1;
        let Some(link) = Link::from_dlt(packet.linktype as i32) else {
            if out.packets == 1 {
                // pcapng: the first interface is only known at its first packet.
                return Err(unsupported(packet.linktype));
            }
            out.other_link += 1;
            continue;
        };
        let ts = packet.ts;
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

fn starts_cmd(d: &[u8]) -> bool {
    let head = d.get(..5).unwrap_or(&[]);
    head.eq_ignore_ascii_case(b"EHLO ") || head.eq_ignore_ascii_case(b"HELO ")
}

fn starts_reply(d: &[u8]) -> bool {
    d.len() >= 4 && d[..3].iter().all(u8::is_ascii_digit) && matches!(d[3], b' ' | b'-')
}

fn starts_connect(d: &[u8]) -> bool {
    d.get(..8).is_some_and(|h| h.eq_ignore_ascii_case(b"CONNECT "))
}

/// End of an HTTP head (the empty line), searched in its first 8 KiB.
fn http_head_end(d: &[u8]) -> Option<usize> {
    let d = &d[..d.len().min(8192)];
    let crlf = d.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = d.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// An HTTP CONNECT tunnel in front of the session (`CONNECT host:port HTTP/1.x` and a 2xx
/// `HTTP/1.x` answer): where the tunnelled bytes start in the client and server streams.
pub fn tunnel_prefix(client: &[u8], server: &[u8]) -> Option<(usize, usize)> {
    if !starts_connect(client) {
        return None;
    }
    let c = http_head_end(client)?;
    if server.is_empty() {
        // One-sided: believe it only if a command follows.
        return starts_cmd(&client[c..]).then_some((c, 0));
    }
    let status = server.get(..12)?;
    if !status.starts_with(b"HTTP/1.") || status[9] != b'2' {
        return None;
    }
    Some((c, http_head_end(server)?))
}

/// Decides who is the client, whether the flow is SMTP, and dissects it.
fn finish(mut flow: Flow, out: &mut Dissection) {
    for s in &mut flow.streams {
        s.finish();
    }
    let [a, b] = &flow.streams;
    let client = flow.syn_from.unwrap_or_else(|| {
        if starts_cmd(&a.data) || starts_connect(&a.data) || starts_reply(&b.data) || b.data.starts_with(b"HTTP/1.") {
            0
        } else if starts_cmd(&b.data)
            || starts_connect(&b.data)
            || starts_reply(&a.data)
            || a.data.starts_with(b"HTTP/1.")
        {
            1
        } else {
            // Neither side says: the higher port is the client.
            usize::from(flow.first.port() < flow.second.port())
        }
    });
    let (c, s) = (&flow.streams[client], &flow.streams[1 - client]);
    let (orig, resp) = if client == 0 { (flow.first, flow.second) } else { (flow.second, flow.first) };
    let tunnel = tunnel_prefix(&c.data, &s.data);
    let (c_start, s_start) = tunnel.unwrap_or((0, 0));
    let (cd, sd) = (&c.data[c_start..], &s.data[s_start..]);
    let smtp = starts_reply(sd) || starts_cmd(cd) || (sd.is_empty() && cd.starts_with(b"MAIL FROM"));
    let implicit_tls = resp.port() == 465 && cd.first() == Some(&0x16);
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
    if tunnel.is_some() {
        session.notes.push("http_connect_tunnel".into());
    }
    if s.data.is_empty() && !c.data.is_empty() {
        session.notes.push("one_sided".into());
    }
    if !c.saw_syn {
        session.notes.push("mid_stream_start".into());
    }
    if implicit_tls {
        let ct = crate::tls::walk(cd);
        let st = crate::tls::walk(sd);
        session.notes.push("implicit_tls".into());
        session.starttls_used = false;
        session.tls_records_orig = ct.records;
        session.tls_records_resp = st.records;
        session.tls_app_bytes_orig = ct.app_bytes;
        session.tls_app_bytes_resp = st.app_bytes;
        session.sni = ct.sni;
        session.tls_version = st.version;
        session.tls_cipher = st.cipher;
        if st.not_tls && starts_reply(sd) {
            // The server answered the ClientHello with a plaintext greeting: no TLS here.
            session.notes.push("server_not_tls".into());
            let greeting = sd.split(|&b| b == b'\n').next().unwrap_or(&[]);
            session.server_name =
                String::from_utf8_lossy(greeting.get(4..).unwrap_or(&[])).split_whitespace().next().map(str::to_string);
        }
        out.sessions.push(session);
        return;
    }
    let result =
        dissect_session(SessionInput { session, client: c, server: s, client_start: c_start, server_start: s_start });
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
